//! In-process profiling of a generation: scoped stages (USDT `stage_begin`/`stage_end` plus, when
//! a run directory is active, `stages.jsonl` records with getrusage deltas), per-token records
//! (`token` probe, `tokens.jsonl`), streamed-chunk events (`io.jsonl`), and the forward-pass
//! observer that fires the layer/op probes and writes the tensor-access trace.

mod observer;
mod sink;

pub use observer::ProbeObserver;
pub use sink::ProfiledSink;

use crate::probes::{self, Stage};
use crate::procstat::{rusage, Usage, Who};
use crate::runlog::records::{
    IoRecord, JsonlWriter, StageRecord, TokenRecord, IO_FORMAT, STAGES_FORMAT, TOKENS_FORMAT,
};
use crate::runlog::{RunDir, RunlogError, IO, STAGES, TOKENS};
use crate::trace::TraceThread;
use crate::weights::IoEvent;
use std::cell::{Cell, RefCell};

struct Open {
    stage: Stage,
    index: Option<u64>,
    gen: Option<u32>,
    start_ns: u64,
    tid: u32,
    process: Usage,
    thread: Usage,
}

/// Stage/token/io recorder. Without a run directory it only fires the probes.
pub struct Profiler {
    stages: Option<JsonlWriter>,
    tokens: Option<JsonlWriter>,
    io: Option<JsonlWriter>,
    open: Vec<Open>,
    /// Current generation (prompt) index, stamped on per-generation records.
    pub gen: Option<u32>,
    error: Option<RunlogError>,
    /// I/O totals seen in drained events (for stall/overlap metrics).
    pub io_totals: IoTotals,
}

/// Totals over the drained [`IoEvent`]s.
#[derive(Clone, Copy, Debug, Default)]
pub struct IoTotals {
    pub submitted_bytes: u64,
    pub completed_bytes: u64,
    pub chunks: u64,
    /// Sum of wait_begin→wait_end.
    pub stall_ns: u64,
    /// Time with at least one read in flight (union of submit→complete intervals).
    pub busy_ns: u64,
    in_flight: u64,
    busy_since: u64,
    wait_since: Option<u64>,
}

impl IoTotals {
    fn add(&mut self, e: &IoEvent) {
        use crate::weights::IoEventKind as K;
        match e.kind {
            K::Submit => {
                self.submitted_bytes += e.bytes;
                if self.in_flight == 0 {
                    self.busy_since = e.t_ns;
                }
                self.in_flight += 1;
            }
            K::Complete => {
                self.completed_bytes += e.bytes;
                self.chunks += 1;
                if self.in_flight > 0 {
                    self.in_flight -= 1;
                    if self.in_flight == 0 {
                        self.busy_ns += e.t_ns.saturating_sub(self.busy_since);
                    }
                }
            }
            K::WaitBegin => self.wait_since = Some(e.t_ns),
            K::WaitEnd => {
                if let Some(s) = self.wait_since.take() {
                    self.stall_ns += e.t_ns.saturating_sub(s);
                }
            }
        }
    }

    /// Share of I/O busy time during which compute was not stalled, in percent.
    pub fn overlap_pct(&self) -> Option<f64> {
        if self.busy_ns == 0 {
            return None;
        }
        Some((100.0 * (1.0 - self.stall_ns as f64 / self.busy_ns as f64)).clamp(0.0, 100.0))
    }
}

pub(crate) fn event_kind_name(k: crate::weights::IoEventKind) -> &'static str {
    use crate::weights::IoEventKind as K;
    match k {
        K::Submit => "submit",
        K::Complete => "complete",
        K::WaitBegin => "wait_begin",
        K::WaitEnd => "wait_end",
    }
}

impl Profiler {
    /// Probes only: nothing is recorded.
    pub fn probes_only() -> Profiler {
        Profiler {
            stages: None,
            tokens: None,
            io: None,
            open: Vec::new(),
            gen: None,
            error: None,
            io_totals: IoTotals::default(),
        }
    }

    /// Record into `dir`: `stages.jsonl`, `tokens.jsonl`, and `io.jsonl` when `io` (streaming).
    pub fn recording(dir: &RunDir, io: bool) -> Result<Profiler, RunlogError> {
        let mut p = Profiler::probes_only();
        p.stages = Some(JsonlWriter::create(&dir.file(STAGES), STAGES_FORMAT)?);
        p.tokens = Some(JsonlWriter::create(&dir.file(TOKENS), TOKENS_FORMAT)?);
        if io {
            p.io = Some(JsonlWriter::create(&dir.file(IO), IO_FORMAT)?);
        }
        Ok(p)
    }

    pub fn is_recording(&self) -> bool {
        self.stages.is_some()
    }

    /// Enter `stage` (`index`: pass or token index, when the stage repeats).
    #[inline]
    pub fn begin(&mut self, stage: Stage, index: Option<u64>) {
        probes::stage_begin(stage as u64);
        if self.stages.is_some() {
            self.open.push(Open {
                stage,
                index,
                gen: self.gen,
                start_ns: probes::monotonic_ns(),
                tid: probes::thread_id(),
                process: rusage(Who::Process),
                thread: rusage(Who::Thread),
            });
        }
    }

    /// Leave `stage` (stages still open inside it are closed as unfinished first).
    #[inline]
    pub fn end(&mut self, stage: Stage) {
        if self.stages.is_some() {
            if let Some(at) = self.open.iter().rposition(|o| o.stage == stage) {
                while self.open.len() > at + 1 {
                    self.close_top(true);
                }
                self.close_top(false);
            }
        }
        probes::stage_end(stage as u64);
    }

    fn close_top(&mut self, unfinished: bool) {
        let Some(o) = self.open.pop() else { return };
        let (p, t) = (rusage(Who::Process), rusage(Who::Thread));
        let rec = StageRecord {
            stage: o.stage.name().into(),
            id: o.stage as u8,
            gen: o.gen,
            index: o.index,
            depth: self.open.len() as u32,
            start_ns: o.start_ns,
            end_ns: probes::monotonic_ns(),
            tid: o.tid,
            process: p.since(&o.process).into(),
            thread: t.since(&o.thread).into(),
            unfinished,
        };
        if unfinished {
            probes::stage_end(o.stage as u64);
        }
        self.write_stage(&rec);
    }

    fn keep_err(&mut self, r: Result<(), RunlogError>) {
        if let Err(e) = r {
            if self.error.is_none() {
                self.error = Some(e);
            }
        }
    }

    fn write_stage(&mut self, rec: &StageRecord) {
        if let Some(w) = self.stages.as_mut() {
            let r = w.write(rec);
            self.keep_err(r);
        }
    }

    pub fn token(&mut self, rec: &TokenRecord) {
        if let Some(w) = self.tokens.as_mut() {
            let r = w.write(rec);
            self.keep_err(r);
        }
    }

    /// Write drained I/O events (`token`: the token being worked toward).
    pub fn io_events(&mut self, events: &[IoEvent], token: u64) {
        for e in events {
            self.io_totals.add(e);
        }
        let gen = self.gen.unwrap_or(0);
        if let Some(w) = self.io.as_mut() {
            for e in events {
                let r = w.write(&IoRecord {
                    t_ns: e.t_ns,
                    kind: event_kind_name(e.kind).into(),
                    chunk: e.chunk,
                    offset: e.offset,
                    bytes: e.bytes,
                    slot: e.slot,
                    gen,
                    token,
                });
                if let Err(err) = r {
                    if self.error.is_none() {
                        self.error = Some(err);
                    }
                    break;
                }
            }
        }
    }

    /// Push buffered records to the files (once per pass).
    pub fn flush(&mut self) {
        for w in [&mut self.stages, &mut self.tokens, &mut self.io]
            .into_iter()
            .flatten()
        {
            if let Err(e) = w.flush() {
                if self.error.is_none() {
                    self.error = Some(e);
                }
            }
        }
    }

    /// Close stages left open (as unfinished), flush, and report the first write error.
    pub fn finish(&mut self) -> Result<(), RunlogError> {
        while !self.open.is_empty() {
            self.close_top(true);
        }
        self.flush();
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// What the current pass is doing, shared by the token sink (which sets it) and the observer
/// (which stamps it on trace records). Single-threaded: the generation loop's thread.
#[derive(Default)]
pub struct PassCtx {
    pub gen: Cell<u16>,
    /// Generated-token index the pass works toward (0 for prefill passes).
    pub token: Cell<u32>,
    pub phase: Cell<u8>,
    /// First position of the pass, and its token count.
    pub pos: Cell<u32>,
    pub n_tokens: Cell<u32>,
    /// The generation thread's tensor-trace buffer (when `--trace tensors`).
    pub trace: RefCell<Option<TraceThread>>,
}

impl PassCtx {
    pub fn new(trace: Option<TraceThread>) -> PassCtx {
        PassCtx {
            trace: RefCell::new(trace),
            ..Default::default()
        }
    }
    pub fn tracing(&self) -> bool {
        self.trace.borrow().is_some()
    }
    /// Give the trace buffer back (so the writer can finish).
    pub fn take_trace(&self) -> Option<TraceThread> {
        self.trace.borrow_mut().take()
    }
}
