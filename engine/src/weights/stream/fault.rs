// Storage fault injection for tests: turn chosen sub-read completions into EIO, short reads or
// late completions, so every error path of the streaming source runs on demand (library tests
// build `Fault`s; the CLI reads `FLASHSLIM_STREAM_FAULTS`).

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// The read fails with EIO.
    Eio,
    /// The read returns half of what was asked (rounded down to 4 KiB).
    Short,
    /// The completion is held back this long.
    Delay(Duration),
}

/// One rule: hit the next `times` reads that cover file offset `at` (any read when None).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub at: Option<u64>,
    pub times: u32,
}

impl Fault {
    fn matches(&self, offset: u64, len: u64) -> bool {
        self.times > 0 && self.at.is_none_or(|a| offset <= a && a < offset + len)
    }
}

/// Parse `kind[=ms][@offset][*times]` rules separated by commas: `eio@40000000*2`, `short*1`,
/// `delay=3000`. `times` defaults to 1.
pub fn parse_list(s: &str) -> Result<Vec<Fault>, String> {
    s.split(',')
        .filter(|r| !r.trim().is_empty())
        .map(|r| {
            let r = r.trim();
            let (r, times) = match r.split_once('*') {
                Some((a, t)) => (a, t.parse().map_err(|_| format!("bad count in `{r}`"))?),
                None => (r, 1),
            };
            let (r, at) = match r.split_once('@') {
                Some((a, o)) => (
                    a,
                    Some(o.parse().map_err(|_| format!("bad offset in `{r}`"))?),
                ),
                None => (r, None),
            };
            let kind = match r.split_once('=') {
                Some(("delay", ms)) => FaultKind::Delay(Duration::from_millis(
                    ms.parse().map_err(|_| format!("bad delay in `{r}`"))?,
                )),
                None if r == "eio" => FaultKind::Eio,
                None if r == "short" => FaultKind::Short,
                _ => return Err(format!("unknown fault `{r}` (eio, short, delay=MS)")),
            };
            Ok(Fault { kind, at, times })
        })
        .collect()
}

/// If a delay rule hits this read, consume it and return the delay.
pub fn delay_for(faults: &mut [Fault], offset: u64, len: u64) -> Option<Duration> {
    let f = faults
        .iter_mut()
        .find(|f| matches!(f.kind, FaultKind::Delay(_)) && f.matches(offset, len))?;
    f.times -= 1;
    match f.kind {
        FaultKind::Delay(d) => Some(d),
        _ => None,
    }
}

/// Apply the first EIO/short rule that hits this read to its result (bytes or -errno).
pub fn apply(faults: &mut [Fault], offset: u64, len: u64, res: i32) -> i32 {
    let Some(f) = faults
        .iter_mut()
        .find(|f| !matches!(f.kind, FaultKind::Delay(_)) && f.matches(offset, len))
    else {
        return res;
    };
    f.times -= 1;
    match f.kind {
        FaultKind::Eio => -libc::EIO,
        FaultKind::Short => res.min((len / 2 / 4096 * 4096) as i32),
        FaultKind::Delay(_) => res,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_count_down() {
        let mut f = parse_list("eio@8192*2, short@20000, delay=5").unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!(
            apply(&mut f, 0, 4096, 4096),
            4096,
            "offset 8192 not covered"
        );
        assert_eq!(apply(&mut f, 4096, 8192, 8192), -libc::EIO);
        assert_eq!(apply(&mut f, 4096, 8192, 8192), -libc::EIO);
        assert_eq!(apply(&mut f, 4096, 8192, 8192), 8192, "eio used up");
        assert_eq!(apply(&mut f, 16384, 8192, 8192), 4096, "short hits");
        assert_eq!(apply(&mut f, 16384, 8192, 8192), 8192, "all used up");
        assert_eq!(delay_for(&mut f, 0, 1), Some(Duration::from_millis(5)));
        assert_eq!(delay_for(&mut f, 0, 1), None);
        assert!(parse_list("boom").is_err());
        assert!(parse_list("eio@x").is_err());
    }
}
