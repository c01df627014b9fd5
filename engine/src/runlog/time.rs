// UTC timestamps for run ids and the manifest, from the system clock (civil-from-days
// arithmetic, so no date crate is needed for two formats).

use std::time::{SystemTime, UNIX_EPOCH};

/// (year, month, day, hour, minute, second, nanosecond) of `t` in UTC.
fn civil(t: SystemTime) -> (i64, u32, u32, u32, u32, u32, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    (
        year,
        month,
        day,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
        d.subsec_nanos(),
    )
}

/// `20261123T101502Z` (run directory names).
pub fn utc_compact(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, _) = civil(t);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// `2026-11-23T10:15:02.123456Z` (manifest times).
pub fn utc_rfc3339(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, ns) = civil(t);
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:06}Z",
        ns / 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn known_dates() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_428_902); // 2026-11-23 10:15:02 UTC
        assert_eq!(utc_compact(t), "20261123T101502Z");
        assert_eq!(utc_compact(UNIX_EPOCH), "19700101T000000Z");
        // 2000-02-29 (leap day) 23:59:59.5
        let leap = UNIX_EPOCH + Duration::from_millis(951_868_799_500);
        assert_eq!(utc_rfc3339(leap), "2000-02-29T23:59:59.500000Z");
    }
}
