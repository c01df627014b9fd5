//! The records of one run, independent of any file layout: what `slim merge` turns into
//! timeline events and what `slim report` draws. Times are nanoseconds on the engine's
//! CLOCK_MONOTONIC unless a record names another [`Clock`].
//!
//! [`load`] fills a [`RunData`] from a run directory and records, per input file, whether it was
//! loaded, missing, unreadable, or not connected yet (phase 2 wires in the engine's readers).

mod load;
mod stats;

pub use load::{bpf_from_ndjson, load, LoadError, BPF_NDJSON_PREFIX, STACKS_FILE};
pub use stats::{percentile, union_ns, RunStats, TokenStats};

use crate::manifest_compat::Manifest;
use serde::Serialize;
use std::path::PathBuf;

/// A clock that raw timestamps are taken on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Clock {
    /// CLOCK_MONOTONIC: the engine's clock and the merged time base.
    Monotonic,
    /// CLOCK_BOOTTIME: bpftrace's `nsecs` (monotonic plus time suspended).
    Boottime,
}

/// Pairs of simultaneous readings used to convert one clock to CLOCK_MONOTONIC (from the
/// engine's `clock_sync` records, which bpftrace prints next to its own `nsecs`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ClockSync {
    /// `(other-clock ns, monotonic ns)` pairs for [`Clock::Boottime`].
    pub boottime_pairs: Vec<(u64, u64)>,
}

impl ClockSync {
    /// `t` (on `clock`) as CLOCK_MONOTONIC ns; `None` when no sync pair relates the clocks or the
    /// result would be negative. The offset is the median over the pairs (robust to one late
    /// reading).
    pub fn to_monotonic(&self, clock: Clock, t: u64) -> Option<u64> {
        match clock {
            Clock::Monotonic => Some(t),
            Clock::Boottime => {
                let mut d: Vec<i128> = self
                    .boottime_pairs
                    .iter()
                    .map(|&(b, m)| m as i128 - b as i128)
                    .collect();
                if d.is_empty() {
                    return None;
                }
                d.sort_unstable();
                let off = d[d.len() / 2];
                u64::try_from(t as i128 + off).ok()
            }
        }
    }
}

/// Prefill or decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The prompt pass (produces the first token).
    Prefill,
    /// One generated token per pass.
    Decode,
}

/// One engine stage (`load_model`, `prefill`, `decode`, ...).
#[derive(Clone, Debug, Serialize)]
pub struct StageSpan {
    /// Stage name.
    pub name: String,
    /// Engine thread id that ran it.
    pub thread: u32,
    /// Start, end (ns).
    pub start_ns: u64,
    /// End (ns), `>= start_ns`.
    pub end_ns: u64,
}

/// One generated token: the pass that produced it.
#[derive(Clone, Debug, Serialize)]
pub struct TokenSpan {
    /// 0 for the token the prefill produced, then 1, 2, ...
    pub index: u32,
    /// Which pass.
    pub phase: Phase,
    /// Pass start (ns).
    pub start_ns: u64,
    /// Token sampled (ns).
    pub end_ns: u64,
}

/// One operator execution from the tensor trace.
#[derive(Clone, Debug, Serialize)]
pub struct OpSpan {
    /// Token index the pass belongs to.
    pub token: u32,
    /// Layer, `None` for embedding and output ops.
    pub layer: Option<u32>,
    /// Op name (`qkv`, `ffn_down`, ...).
    pub op: String,
    /// Compute thread.
    pub thread: u32,
    /// Start (ns).
    pub start_ns: u64,
    /// End (ns).
    pub end_ns: u64,
}

/// One chunk read issued by the streaming source.
#[derive(Clone, Debug, Serialize)]
pub struct IoRequest {
    /// Request id (unique within the run).
    pub id: u64,
    /// File offset and length.
    pub offset: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Pool buffer slot.
    pub slot: Option<u32>,
    /// Submitted (ns).
    pub submit_ns: u64,
    /// Completed (ns).
    pub complete_ns: u64,
}

/// Compute waiting for I/O.
#[derive(Clone, Debug, Serialize)]
pub struct Stall {
    /// Stall start (ns).
    pub start_ns: u64,
    /// Stall end (ns).
    pub end_ns: u64,
    /// The chunk/request waited for.
    pub request: Option<u64>,
    /// The layer that waited, if known.
    pub layer: Option<u32>,
}

/// What a counter measures (decides axis formatting).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Unit {
    /// Bytes.
    Bytes,
    /// A plain count.
    Count,
}

/// A sampled counter: resident weight bytes, buffer occupancy, RSS.
#[derive(Clone, Debug, Serialize)]
pub struct CounterSeries {
    /// Name (`resident_bytes`, `buffer_occupancy`, `rss_bytes`).
    pub name: String,
    /// Unit.
    pub unit: Unit,
    /// `(ns, value)` samples in time order.
    pub points: Vec<(u64, f64)>,
}

/// Tensor reads during one token: a cell of the heatmap.
#[derive(Clone, Debug, Serialize)]
pub struct TensorAccess {
    /// Token index.
    pub token: u32,
    /// Tensor name (`blk.3.ffn_down.weight`).
    pub tensor: String,
    /// Accesses in that token.
    pub count: u32,
    /// Bytes read from the tensor in that token.
    pub bytes: u64,
}

/// A block-layer request seen by bpftrace.
#[derive(Clone, Debug, Serialize)]
pub struct BlockIo {
    /// Clock of `issue_ns`/`complete_ns`.
    pub clock: Clock,
    /// Issued to the device.
    pub issue_ns: u64,
    /// Completed.
    pub complete_ns: u64,
    /// Device (`179:0`).
    pub dev: String,
    /// Start sector.
    pub sector: u64,
    /// Size.
    pub bytes: u64,
}

/// One histogram bucket: `[lo, hi]` (inclusive), `None` for an open end.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bucket {
    /// Lower bound, `None` below the first power of two.
    pub lo: Option<i64>,
    /// Upper bound, `None` for "and above".
    pub hi: Option<i64>,
    /// Samples.
    pub count: u64,
}

/// A bpftrace `hist()`/`lhist()` map (optionally one of several keys).
#[derive(Clone, Debug, Serialize)]
pub struct Histogram {
    /// Map name with key (`@usecs`, `@usecs[decode]`).
    pub name: String,
    /// Source file.
    pub file: String,
    /// Buckets in order.
    pub buckets: Vec<Bucket>,
}

/// A bpftrace map of scalar values (`@faults[stage] = count()`) or a `stats()` map.
#[derive(Clone, Debug, Serialize)]
pub struct KeyedValues {
    /// Map name.
    pub name: String,
    /// Source file.
    pub file: String,
    /// `(key, value)`; the key is empty for a scalar map.
    pub entries: Vec<(String, f64)>,
}

/// Which kind of input a run file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Family {
    /// `manifest.json`.
    Manifest,
    /// `stages.jsonl`.
    Stages,
    /// `tokens.jsonl`.
    Tokens,
    /// `io.jsonl`.
    Io,
    /// `tensor-trace.bin`.
    TensorTrace,
    /// `bpf-*.ndjson`.
    BpfJson,
    /// `bpf-*.tsv`.
    BpfTsv,
    /// `stacks.folded`.
    Stacks,
}

/// What happened to one input.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum InputState {
    /// Read; the text says what it held.
    Loaded(String),
    /// Not in the run directory.
    Missing,
    /// Present but refused (the reason).
    Unreadable(String),
    /// Present, but no reader is connected in this build (phase 2 of issue #5).
    NotConnected,
}

/// One input file and its state.
#[derive(Clone, Debug, Serialize)]
pub struct Input {
    /// Kind.
    pub family: Family,
    /// File name in the run directory (a glob for families with several files).
    pub file: String,
    /// State.
    pub state: InputState,
}

/// Everything known about one run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunData {
    /// Short label: run id, else directory name.
    pub label: String,
    /// Run directory, when loaded from one.
    pub dir: Option<PathBuf>,
    /// The manifest, if it parsed.
    #[serde(skip)]
    pub manifest: Option<Manifest>,
    /// Per-input status (what the report marks as present or missing).
    pub inputs: Vec<Input>,
    /// Engine stages.
    pub stages: Vec<StageSpan>,
    /// Generated tokens.
    pub tokens: Vec<TokenSpan>,
    /// Operator executions.
    pub ops: Vec<OpSpan>,
    /// Streaming reads.
    pub io: Vec<IoRequest>,
    /// Compute stalls on I/O.
    pub stalls: Vec<Stall>,
    /// Counters.
    pub counters: Vec<CounterSeries>,
    /// Tensor accesses per token.
    pub accesses: Vec<TensorAccess>,
    /// Block-layer requests.
    pub block_io: Vec<BlockIo>,
    /// Clock conversion pairs.
    pub clock: ClockSync,
    /// bpftrace histograms.
    pub histograms: Vec<Histogram>,
    /// bpftrace scalar/keyed maps.
    pub maps: Vec<KeyedValues>,
    /// Folded stacks (`frame;frame COUNT` lines), for the flamegraph.
    pub folded: Option<String>,
    /// Measured sequential read bound of the device's storage (bytes/s).
    pub storage_bound_bytes_per_s: Option<f64>,
}

impl RunData {
    /// The state of the first input of `family`, if the loader looked for it.
    pub fn input(&self, family: Family) -> Option<&Input> {
        self.inputs.iter().find(|i| i.family == family)
    }

    /// Earliest monotonic timestamp among the timed records (the merged trace's origin).
    pub fn origin_ns(&self) -> Option<u64> {
        let mut ts: Vec<u64> = Vec::new();
        ts.extend(self.stages.iter().map(|s| s.start_ns));
        ts.extend(self.tokens.iter().map(|s| s.start_ns));
        ts.extend(self.ops.iter().map(|s| s.start_ns));
        ts.extend(self.io.iter().map(|s| s.submit_ns));
        ts.extend(self.stalls.iter().map(|s| s.start_ns));
        ts.extend(
            self.counters
                .iter()
                .flat_map(|c| c.points.first().map(|p| p.0)),
        );
        ts.extend(
            self.block_io
                .iter()
                .filter_map(|b| self.clock.to_monotonic(b.clock, b.issue_ns)),
        );
        ts.into_iter().min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boottime_converts_through_the_median_offset() {
        let c = ClockSync {
            boottime_pairs: vec![(1_000, 400), (2_000, 1_400), (3_000, 2_500)],
        };
        assert_eq!(c.to_monotonic(Clock::Boottime, 10_000), Some(9_400));
        assert_eq!(c.to_monotonic(Clock::Monotonic, 7), Some(7));
        assert_eq!(
            c.to_monotonic(Clock::Boottime, 100),
            None,
            "negative result"
        );
        assert_eq!(ClockSync::default().to_monotonic(Clock::Boottime, 5), None);
    }
}
