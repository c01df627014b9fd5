//! Process counters from the kernel: peak RSS, bytes read from storage (`/proc/self/io`), and
//! `getrusage` snapshots (CPU time, faults, context switches, block I/O) for per-stage deltas.

use std::fs;

/// Bytes this process caused to be read from storage (`read_bytes` in `/proc/self/io`); None when
/// the file is unavailable (kernel without task I/O accounting).
pub fn storage_read_bytes() -> Option<u64> {
    let s = fs::read_to_string("/proc/self/io").ok()?;
    s.lines().find_map(|l| {
        l.strip_prefix("read_bytes:")
            .and_then(|v| v.trim().parse().ok())
    })
}

/// Peak resident set size in bytes (`VmHWM`).
pub fn peak_rss_bytes() -> u64 {
    status_kib("VmHWM:")
        .map(|k| k * 1024)
        .unwrap_or_else(|| rusage(Who::Process).max_rss_bytes)
}

/// Current resident set size in bytes from `/proc/self/statm` (one short read: cheap enough to
/// take once per generated token), or `None` when it cannot be read.
pub fn rss_bytes() -> Option<u64> {
    let s = fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_ascii_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    (page > 0).then(|| pages * page as u64)
}

fn status_kib(key: &str) -> Option<u64> {
    let s = fs::read_to_string("/proc/self/status").ok()?;
    s.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    })
}

/// Whose usage to read.
#[derive(Clone, Copy, Debug)]
pub enum Who {
    /// All threads of the process.
    Process,
    /// The calling thread only.
    Thread,
}

/// A `getrusage` snapshot.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Usage {
    pub user_ns: u64,
    pub sys_ns: u64,
    pub minor_faults: u64,
    pub major_faults: u64,
    pub voluntary_cs: u64,
    pub involuntary_cs: u64,
    /// 512-byte blocks read / written (`ru_inblock` / `ru_oublock`).
    pub block_in: u64,
    pub block_out: u64,
    pub max_rss_bytes: u64,
}

pub fn rusage(who: Who) -> Usage {
    // SAFETY: zeroed rusage is a valid value; getrusage only writes into it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let w = match who {
        Who::Process => libc::RUSAGE_SELF,
        Who::Thread => libc::RUSAGE_THREAD,
    };
    // SAFETY: valid `who` and out-pointer.
    unsafe { libc::getrusage(w, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    Usage {
        user_ns: tv(ru.ru_utime),
        sys_ns: tv(ru.ru_stime),
        minor_faults: ru.ru_minflt as u64,
        major_faults: ru.ru_majflt as u64,
        voluntary_cs: ru.ru_nvcsw as u64,
        involuntary_cs: ru.ru_nivcsw as u64,
        block_in: ru.ru_inblock as u64,
        block_out: ru.ru_oublock as u64,
        max_rss_bytes: ru.ru_maxrss as u64 * 1024,
    }
}

impl Usage {
    /// `self - earlier`, saturating (max RSS is kept as the later value).
    pub fn since(&self, earlier: &Usage) -> Usage {
        Usage {
            user_ns: self.user_ns.saturating_sub(earlier.user_ns),
            sys_ns: self.sys_ns.saturating_sub(earlier.sys_ns),
            minor_faults: self.minor_faults.saturating_sub(earlier.minor_faults),
            major_faults: self.major_faults.saturating_sub(earlier.major_faults),
            voluntary_cs: self.voluntary_cs.saturating_sub(earlier.voluntary_cs),
            involuntary_cs: self.involuntary_cs.saturating_sub(earlier.involuntary_cs),
            block_in: self.block_in.saturating_sub(earlier.block_in),
            block_out: self.block_out.saturating_sub(earlier.block_out),
            max_rss_bytes: self.max_rss_bytes,
        }
    }
}

/// Parse a size like `40MiB`, `1.5GiB`, `64M`, `4096` (bytes). Binary units; `K/M/G` alone are
/// binary too, as in llama.cpp's and systemd's size options.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("invalid size `{s}` (examples: 64MiB, 1.5GiB, 4096)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "invalid size unit `{other}` in `{s}` (use B, KiB, MiB or GiB)"
            ))
        }
    };
    if !(v >= 0.0) || !v.is_finite() {
        return Err(format!("invalid size `{s}`"));
    }
    Ok((v * mult as f64).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("40MiB").unwrap(), 40 << 20);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("12XB").is_err());
    }

    #[test]
    fn counters_are_live() {
        assert!(peak_rss_bytes() > 0);
        let a = rusage(Who::Thread);
        // Spin for 60 ms of wall time: CPU time may be accounted in scheduler ticks (4 ms at
        // 250 Hz), so a few milliseconds of work can legitimately read as zero.
        let t0 = std::time::Instant::now();
        let mut x = 0u64;
        while t0.elapsed() < std::time::Duration::from_millis(60) {
            for i in 0..10_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }
        let d = rusage(Who::Thread).since(&a);
        assert!(
            d.user_ns + d.sys_ns > 0,
            "no CPU time after a 60 ms busy loop: {d:?}"
        );
    }
}

/// The CPU model name (`model name` on x86, implementer/part on arm64), for logs and benchmarks.
pub fn cpu_model() -> String {
    let s = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |k: &str| {
        s.lines().find_map(|l| {
            l.split_once(':')
                .filter(|(a, _)| a.trim() == k)
                .map(|(_, v)| v.trim().to_string())
        })
    };
    if let Some(m) = field("model name") {
        return m;
    }
    match (field("CPU implementer"), field("CPU part")) {
        (Some(i), Some(p)) => format!("arm implementer {i} part {p}"),
        _ => std::env::consts::ARCH.to_string(),
    }
}

/// Engine version, git commit and build target.
pub fn build_info() -> (&'static str, &'static str, &'static str) {
    (
        env!("CARGO_PKG_VERSION"),
        env!("FLASHSLIM_GIT_COMMIT"),
        env!("FLASHSLIM_TARGET"),
    )
}
