//! The records of one run, independent of any file layout: what `slim merge` turns into
//! timeline events and what `slim report` draws. Every time is nanoseconds on the engine's
//! CLOCK_MONOTONIC (bpftrace's BOOTTIME rows are converted by the loader through the engine's
//! `clock_sync` reader), so nothing downstream converts clocks.
//!
//! [`load`] fills a [`RunData`] from a run directory through the engine's readers and records,
//! per input file, whether it was loaded (and how much of it), missing, or unreadable.

mod load;
mod stats;

pub use load::{load, maps_from_bpf, LoadError, BPF_PREFIX, STACKS_FILE};
pub use stats::{percentile, union_ns, RunStats, TokenStats};

use crate::manifest_compat::Manifest;
use serde::Serialize;
use std::path::PathBuf;

/// Prefill or decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The prompt pass (produces the first token).
    Prefill,
    /// One generated token per pass.
    Decode,
}

impl Phase {
    /// `prefill` / `decode`.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Prefill => "prefill",
            Phase::Decode => "decode",
        }
    }
}

/// One engine stage (`load_model`, `prefill`, `decode`, ...), from `stages.jsonl`.
#[derive(Clone, Debug, Serialize)]
pub struct StageSpan {
    /// Stage name.
    pub name: String,
    /// Linux thread id that ran it.
    pub thread: u32,
    /// Generation (prompt) index, for per-generation stages.
    pub gen: Option<u32>,
    /// Pass index (prefill/decode) or token index (sample, detokenize).
    pub index: Option<u64>,
    /// Start (ns).
    pub start_ns: u64,
    /// End (ns), `>= start_ns`.
    pub end_ns: u64,
    /// Major faults of the whole process during the stage (getrusage).
    pub major_faults: u64,
    /// Closed by an error or interrupt rather than normally.
    pub unfinished: bool,
}

/// One generated token: the time from the previous token (or the prompt's start) to its sample.
#[derive(Clone, Debug, Serialize)]
pub struct TokenSpan {
    /// Generation (prompt) index.
    pub gen: u32,
    /// 0 for the token the prefill produced, then 1, 2, ...
    pub index: u32,
    /// Which pass.
    pub phase: Phase,
    /// Start: the previous token's sample time, or the generation's prefill start (ns).
    pub start_ns: u64,
    /// Token sampled (ns).
    pub end_ns: u64,
    /// Time of the pass(es) that produced its logits (ns).
    pub pass_ns: u64,
    /// `/proc/self/io` read_bytes added while producing it (None if unavailable).
    pub storage_read_bytes: Option<u64>,
    /// Streaming source: bytes streamed for this token.
    pub streamed_bytes: u64,
    /// Streaming source: compute stalled on I/O for this token (ns).
    pub stall_ns: u64,
    /// Resident set size when it was sampled (None in older run logs).
    pub rss_bytes: Option<u64>,
}

/// One operator execution, from the tensor trace (its records grouped by op).
#[derive(Clone, Debug, Serialize)]
pub struct OpSpan {
    /// Generation index.
    pub gen: u32,
    /// Generated-token index the pass works toward (0 for prefill passes).
    pub token: u32,
    /// Prefill or decode.
    pub phase: Phase,
    /// Layer, `None` for embedding and output ops.
    pub layer: Option<u32>,
    /// Op name (`qkv`, `ffn_down`, ...).
    pub op: String,
    /// Thread that ran it (Linux tid).
    pub thread: u32,
    /// Start (ns).
    pub start_ns: u64,
    /// End (ns).
    pub end_ns: u64,
    /// Weight bytes the op read.
    pub weight_bytes: u64,
}

/// One streamed read (a `submit`/`complete` pair of `io.jsonl`).
#[derive(Clone, Debug, Serialize)]
pub struct IoRequest {
    /// Request id: position of its `submit` in `io.jsonl` (unique within the run).
    pub id: u64,
    /// The plan's chunk index (`0x80000000 | i` resident extents, `0xFFFFFFFF` direct reads).
    pub chunk: u32,
    /// File offset.
    pub offset: u64,
    /// Bytes the read returned.
    pub bytes: u64,
    /// Pool buffer slot, `None` outside the pool.
    pub slot: Option<u32>,
    /// Submitted (ns).
    pub submit_ns: u64,
    /// Completed (ns).
    pub complete_ns: u64,
}

/// What kept compute waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum StallKind {
    /// The streaming source: compute needed a chunk not read yet (`wait_begin`/`wait_end`).
    StreamWait,
    /// A major page fault (bpftrace `faults`): an mmap'd weight not in the page cache.
    MajorFault,
}

/// Compute waiting for weights.
#[derive(Clone, Debug, Serialize)]
pub struct Stall {
    /// Kind.
    pub kind: StallKind,
    /// Start (ns).
    pub start_ns: u64,
    /// End (ns).
    pub end_ns: u64,
    /// The chunk waited for (stream) or the thread that faulted (fault).
    pub what: u64,
    /// The layer and op running when it happened (from the tensor trace), if known.
    pub layer: Option<u32>,
    /// Op name, if known.
    pub op: Option<String>,
    /// Engine stage active at its start (bpftrace rows), empty if unknown.
    pub stage: String,
}

/// What a counter measures (decides axis formatting).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Unit {
    /// Bytes.
    Bytes,
    /// A plain count.
    Count,
}

/// A sampled counter (cumulative bytes read, reads in flight, faults...).
#[derive(Clone, Debug, Serialize)]
pub struct CounterSeries {
    /// Name.
    pub name: String,
    /// Unit.
    pub unit: Unit,
    /// `(ns, value)` samples in time order.
    pub points: Vec<(u64, f64)>,
}

/// Weight reads of one tensor during one token: a cell of the heatmap.
#[derive(Clone, Debug, Serialize)]
pub struct TensorAccess {
    /// Generation index.
    pub gen: u32,
    /// Token index.
    pub token: u32,
    /// Tensor name (`blk.3.ffn_down.weight`).
    pub tensor: String,
    /// Accesses in that token.
    pub count: u32,
    /// Bytes read from the tensor in that token.
    pub bytes: u64,
}

/// A block-layer request seen by bpftrace (`rq` rows), on CLOCK_MONOTONIC.
#[derive(Clone, Debug, Serialize)]
pub struct BlockIo {
    /// Issued to the device.
    pub issue_ns: u64,
    /// Completed.
    pub complete_ns: u64,
    /// Device number as bpftrace prints it.
    pub dev: String,
    /// Start sector.
    pub sector: u64,
    /// Size.
    pub bytes: u64,
    /// `rwbs` flags (`R`, `RA`, `W`...).
    pub rwbs: String,
    /// Engine stage active when issued.
    pub stage: String,
}

/// Another kernel event with a duration (bpftrace rows other than `rq`), on CLOCK_MONOTONIC.
#[derive(Clone, Debug, Serialize)]
pub struct KernelSpan {
    /// Row kind: `major` (fault), `offcpu`, `rd` (read syscall), `uring`.
    pub kind: String,
    /// Thread (Linux tid; 0 when the row has none).
    pub tid: u32,
    /// Start (ns).
    pub start_ns: u64,
    /// End (ns).
    pub end_ns: u64,
    /// Short label (`S`, `pread64 fd 3 4096 B`, ...).
    pub label: String,
    /// Engine stage active at the start.
    pub stage: String,
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
    /// Map name with key (`@rq_lat_us`, `@lat[decode]`).
    pub name: String,
    /// Source file.
    pub file: String,
    /// Buckets in order.
    pub buckets: Vec<Bucket>,
}

/// A bpftrace map of scalar values (`@major[stage] = count()`) or a `stats()` map.
#[derive(Clone, Debug, Serialize)]
pub struct KeyedValues {
    /// Map name.
    pub name: String,
    /// Source file.
    pub file: String,
    /// `(key, value)`; keys have stage ids replaced by stage names; empty for a scalar map.
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
    /// `bpf-*.ndjson` / `bpf-*.tsv`.
    Bpf,
    /// `stacks.folded`.
    Stacks,
}

/// What happened to one input.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum InputState {
    /// Read whole; the text says what it held.
    Loaded(String),
    /// Read as far as it goes (a killed run's cut-short tail, a truncated copy); the text says
    /// what was read and where it stopped.
    Partial(String),
    /// Not in the run directory.
    Missing,
    /// Present but refused (the reason).
    Unreadable(String),
}

impl InputState {
    /// Loaded or partial: something was read.
    pub fn is_read(&self) -> bool {
        matches!(self, InputState::Loaded(_) | InputState::Partial(_))
    }
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
    /// Per-input status (what the report marks as present, partial or missing).
    pub inputs: Vec<Input>,
    /// Remarks of the loader (rows left out, clock fallbacks), shown by merge and report.
    pub notes: Vec<String>,
    /// Engine stages.
    pub stages: Vec<StageSpan>,
    /// Generated tokens.
    pub tokens: Vec<TokenSpan>,
    /// Operator executions.
    pub ops: Vec<OpSpan>,
    /// Streaming reads.
    pub io: Vec<IoRequest>,
    /// Compute waiting for weights (stream waits, major faults).
    pub stalls: Vec<Stall>,
    /// Counters.
    pub counters: Vec<CounterSeries>,
    /// Tensor accesses per token.
    pub accesses: Vec<TensorAccess>,
    /// Block-layer requests.
    pub block_io: Vec<BlockIo>,
    /// Other kernel events (faults, off-CPU, read syscalls, io_uring).
    pub kernel: Vec<KernelSpan>,
    /// bpftrace histograms.
    pub histograms: Vec<Histogram>,
    /// bpftrace scalar/keyed maps.
    pub maps: Vec<KeyedValues>,
    /// Folded stacks (`frame;frame COUNT` lines), for the flamegraph.
    pub folded: Option<String>,
    /// Measured read bandwidth of the device's storage (bytes/s), from the manifest.
    pub storage_bound_bytes_per_s: Option<f64>,
    /// Weights mode (`ram`, `mmap`, `stream`) from the manifest's configuration.
    pub weights_mode: Option<String>,
}

impl RunData {
    /// The state of the first input of `family`, if the loader looked for it.
    pub fn input(&self, family: Family) -> Option<&Input> {
        self.inputs.iter().find(|i| i.family == family)
    }

    /// Earliest timestamp among the timed records (the merged trace's origin).
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
        ts.extend(self.block_io.iter().map(|b| b.issue_ns));
        ts.extend(self.kernel.iter().map(|k| k.start_ns));
        ts.into_iter().min()
    }
}
