//! USDT probes, provider `flashslim` (SystemTap SDT notes from the `probe` crate; bpftrace attaches
//! with `usdt:/usr/bin/flashslim:flashslim:<name>`). Unattached, each probe is one NOP. Build without
//! the `probes` cargo feature and every function here is empty.
//!
//! Each probe lives in its own non-inlined function so the binary has exactly one SDT note per
//! probe name (one attach point, and `readelf -n` reads like the table below).
//!
//! | probe | args |
//! |---|---|
//! | `stage_begin`, `stage_end` | stage id ([`Stage`]) |
//! | `token` | index, phase (0 prefill, 1 decode) |
//! | `layer_begin`, `layer_end` | layer |
//! | `op_begin`, `op_end` | layer, op kind ([`crate::model::OpKind`]), tensor id (-1: none) |
//! | `chunk_submit`, `chunk_complete` | chunk id, file offset, bytes, buffer slot |
//! | `wait_begin`, `wait_end` | chunk id (compute stalled on I/O) |
//! | `clock_sync` | CLOCK_MONOTONIC ns |

/// Stage ids carried by `stage_begin`/`stage_end` (stable: scripts and logs use the numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Stage {
    Run = 0,
    LoadModel = 1,
    LoadTokenizer = 2,
    Plan = 3,
    Prefill = 4,
    Decode = 5,
    Sample = 6,
    Detokenize = 7,
    LoadWeights = 8,
    Warmup = 9,
}

impl Stage {
    pub const ALL: [Stage; 10] = [
        Stage::Run,
        Stage::LoadModel,
        Stage::LoadTokenizer,
        Stage::Plan,
        Stage::Prefill,
        Stage::Decode,
        Stage::Sample,
        Stage::Detokenize,
        Stage::LoadWeights,
        Stage::Warmup,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Stage::Run => "run",
            Stage::LoadModel => "load_model",
            Stage::LoadTokenizer => "load_tokenizer",
            Stage::Plan => "plan",
            Stage::Prefill => "prefill",
            Stage::Decode => "decode",
            Stage::Sample => "sample",
            Stage::Detokenize => "detokenize",
            Stage::LoadWeights => "load_weights",
            Stage::Warmup => "warmup",
        }
    }
    pub fn from_id(id: u8) -> Option<Stage> {
        Self::ALL.iter().copied().find(|s| *s as u8 == id)
    }
    pub fn from_name(name: &str) -> Option<Stage> {
        Self::ALL.iter().copied().find(|s| s.name() == name)
    }
}

macro_rules! probes {
    ($( $(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*); )*) => {
        $(
            $(#[$doc])*
            #[inline(never)]
            #[allow(unused_variables)]
            pub fn $name($($arg: $ty),*) {
                #[cfg(feature = "probes")]
                probe::probe!(flashslim, $name $(, $arg as isize)*);
            }
        )*
        /// Every probe name, in declaration order (tests check the binary's notes against it).
        pub const PROBE_NAMES: &[&str] = &[$(stringify!($name)),*];
    };
}

probes! {
    fn stage_begin(stage: u64);
    fn stage_end(stage: u64);
    fn token(index: u64, phase: u64);
    fn layer_begin(layer: u64);
    fn layer_end(layer: u64);
    fn op_begin(layer: i64, op: u64, tensor: i64);
    fn op_end(layer: i64, op: u64, tensor: i64);
    fn chunk_submit(chunk: u64, offset: u64, bytes: u64, slot: u64);
    fn chunk_complete(chunk: u64, offset: u64, bytes: u64, slot: u64);
    fn wait_begin(chunk: u64);
    fn wait_end(chunk: u64);
    fn clock_sync(monotonic_ns: u64);
}

/// CLOCK_MONOTONIC now, in ns (the engine's one time base).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_BOOTTIME now, in ns (bpftrace's `nsecs`); recorded next to [`monotonic_ns`] so logs can
/// be aligned even without a `clock_sync` probe hit.
pub fn boottime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer; CLOCK_BOOTTIME exists on Linux >= 2.6.39.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Fire `clock_sync` with the current monotonic time and return it.
pub fn sync_clock() -> u64 {
    retain_all();
    let now = monotonic_ns();
    clock_sync(now);
    now
}

/// Keep every probe function (and so its SDT note) in the final binary, even the ones only a
/// later component calls: the linker drops unreferenced functions together with their notes, and
/// `readelf -n` / `bpftrace -l` must list all twelve on every build.
#[inline(never)]
pub fn retain_all() {
    let table: [usize; 12] = [
        stage_begin as fn(u64) as usize,
        stage_end as fn(u64) as usize,
        token as fn(u64, u64) as usize,
        layer_begin as fn(u64) as usize,
        layer_end as fn(u64) as usize,
        op_begin as fn(i64, u64, i64) as usize,
        op_end as fn(i64, u64, i64) as usize,
        chunk_submit as fn(u64, u64, u64, u64) as usize,
        chunk_complete as fn(u64, u64, u64, u64) as usize,
        wait_begin as fn(u64) as usize,
        wait_end as fn(u64) as usize,
        clock_sync as fn(u64) as usize,
    ];
    std::hint::black_box(table);
}

/// The gettid() of the calling thread (what bpftrace calls `tid`).
pub fn thread_id() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_ids_roundtrip_and_are_unique() {
        for s in Stage::ALL {
            assert_eq!(Stage::from_id(s as u8), Some(s));
            assert_eq!(Stage::from_name(s.name()), Some(s));
        }
        assert_eq!(Stage::from_id(200), None);
    }

    #[test]
    fn boottime_is_not_behind_monotonic() {
        assert!(boottime_ns() >= monotonic_ns() - 1_000_000);
    }
}
