//! `--weights stream`: run a model larger than the memory it may use. A [`Plan`] keeps some
//! matrices resident and cuts the rest into chunks; chunks are read with O_DIRECT into a ring of
//! aligned pool buffers (io_uring, or pread threads) ahead of use, `prefetch_depth` chunks ahead
//! of the one computing, wrapping from the end of one pass into the next. The kernels compute
//! straight from the buffers; a chunk's buffers return to the pool when the last [`Weight`]
//! guard of its tensors drops. Everything that can go wrong is an error, never a hang.

mod backend;
pub mod fault;
pub mod file;
pub mod pool;

pub use backend::BackendChoice;
pub use fault::Fault;

use self::backend::{Backend, Pread, SubRead, Uring};
use self::file::ModelFile;
use self::pool::{ceil_align, floor_align, AlignedBuf, Pool, PoolBuf, ALIGN};
use super::{
    IoEvent, IoEventKind, MemOrigin, Phase, Release, SharedGguf, SourceKind, SourceStats, TensorId,
    Weight, WeightError, WeightSource,
};
use crate::model::Model;
use crate::plan::optimize::{make_plan, DeviceModel, PhaseCompute};
use crate::plan::{Layout, Method, Plan, PlanFigures, PlanModel};
use crate::probes::{self, monotonic_ns};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// `IoEvent::chunk` of reads outside the plan's chunks: resident extents are
/// `RESIDENT_CHUNK | extent index`, `read_at` (embedding rows, small tensors) is `READ_AT_CHUNK`.
pub const RESIDENT_CHUNK: u32 = 0x8000_0000;
pub const READ_AT_CHUNK: u32 = u32::MAX;
/// `IoEvent::slot` of reads that do not go to a pool buffer.
pub const NO_SLOT: u32 = u32::MAX;
/// Events kept while recording; later ones are counted as dropped.
const EVENT_CAPACITY: usize = 1 << 18;

/// Where the plan comes from.
#[derive(Clone, Debug)]
pub enum PlanSource {
    /// Made at attach time by the quick heuristic.
    Heuristic,
    /// A plan file from `flashslim plan`.
    File(PathBuf),
    /// A plan already in memory (tests, the planner's profiling pass).
    Given(Box<Plan>),
}

/// How to run the streaming source.
#[derive(Clone, Debug)]
pub struct StreamOptions {
    /// Resident weights + buffers + small tensors stay within this (bytes). Required unless the
    /// plan carries it.
    pub budget: Option<u64>,
    pub plan: PlanSource,
    pub backend: BackendChoice,
    /// Use buffered reads (+ POSIX_FADV_DONTNEED) even where O_DIRECT works.
    pub force_buffered: bool,
    /// Longest a `get` waits for its chunk before failing.
    pub wait_timeout: Duration,
    /// Injected storage faults (tests).
    pub faults: Vec<Fault>,
    /// Override the plan's prefetch depth (tests, experiments).
    pub depth: Option<u32>,
    /// Record per-access timings for `flashslim plan`.
    pub profile: bool,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            budget: None,
            plan: PlanSource::Heuristic,
            backend: BackendChoice::Auto,
            force_buffered: false,
            wait_timeout: Duration::from_secs(30),
            faults: Vec::new(),
            depth: None,
            profile: false,
        }
    }
}

impl StreamOptions {
    /// Defaults plus the developer/test knobs from the environment (docs/streaming.md):
    /// `FLASHSLIM_STREAM_IO=auto|uring|pread`, `FLASHSLIM_STREAM_BUFFERED=1`,
    /// `FLASHSLIM_STREAM_TIMEOUT_MS=N`, `FLASHSLIM_STREAM_DEPTH=N`, `FLASHSLIM_STREAM_FAULTS=...`.
    pub fn from_env(budget: Option<u64>, plan: Option<&Path>) -> Result<Self, WeightError> {
        let mut o = StreamOptions {
            budget,
            plan: plan.map_or(PlanSource::Heuristic, |p| PlanSource::File(p.to_path_buf())),
            ..Default::default()
        };
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let bad = |k: &str, v: &str, want: &str| {
            WeightError::Corrupt(format!("{k}={v}: expected {want}"))
        };
        if let Some(v) = var("FLASHSLIM_STREAM_IO") {
            o.backend = match v.as_str() {
                "auto" => BackendChoice::Auto,
                "uring" | "io_uring" => BackendChoice::Uring,
                "pread" => BackendChoice::Pread,
                _ => return Err(bad("FLASHSLIM_STREAM_IO", &v, "auto, uring or pread")),
            };
        }
        if let Some(v) = var("FLASHSLIM_STREAM_BUFFERED") {
            o.force_buffered = v != "0";
        }
        if let Some(v) = var("FLASHSLIM_STREAM_TIMEOUT_MS") {
            let ms: u64 = v
                .parse()
                .map_err(|_| bad("FLASHSLIM_STREAM_TIMEOUT_MS", &v, "milliseconds"))?;
            o.wait_timeout = Duration::from_millis(ms.max(1));
        }
        if let Some(v) = var("FLASHSLIM_STREAM_DEPTH") {
            o.depth = Some(
                v.parse()
                    .map_err(|_| bad("FLASHSLIM_STREAM_DEPTH", &v, "a chunk count"))?,
            );
        }
        if let Some(v) = var("FLASHSLIM_STREAM_FAULTS") {
            o.faults = fault::parse_list(&v)
                .map_err(|e| WeightError::Corrupt(format!("FLASHSLIM_STREAM_FAULTS: {e}")))?;
        }
        Ok(o)
    }
}

/// Per-phase streaming counters.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PhaseStreamStats {
    pub passes: u64,
    pub tokens: u64,
    /// Aligned bytes of the chunks this phase's passes used.
    pub streamed_bytes: u64,
    pub stall_ns: u64,
    /// Time with at least one read in flight while a pass of this phase ran (or after it).
    pub io_busy_ns: u64,
}

/// What `--summary` and `flashslim plan` need from the streaming source.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct StreamStats {
    pub budget_bytes: u64,
    pub small_bytes: u64,
    pub buffer_bytes: u64,
    pub buffer_count: u32,
    pub prefetch_depth: u32,
    pub chunks: u32,
    pub streamed_bytes_per_pass: u64,
    pub backend: String,
    pub direct_io: bool,
    pub plan_method: String,
    /// Every byte read from the model file (chunks, unused prefetch, resident set, read_at).
    pub read_bytes: u64,
    pub prefill: PhaseStreamStats,
    pub decode: PhaseStreamStats,
    pub io_events_dropped: u64,
}

/// One chunk as the runtime needs it.
#[derive(Clone, Debug)]
struct RtChunk {
    offset: u64,
    size: u64,
    slots: u32,
    n_tensors: u32,
}

/// Where access `p` of a pass finds its bytes.
#[derive(Clone, Copy, Debug)]
enum Loc {
    /// `resident[off..off+len]`.
    Resident { off: usize },
    /// Chunk `chunk`, `off` bytes into its buffer; `first` = first access of the chunk.
    Streamed { chunk: u32, off: usize, first: bool },
}

#[derive(Clone, Copy, Debug)]
struct Access {
    tensor: TensorId,
    len: usize,
    loc: Loc,
}

/// One pass's occurrence of a chunk (its sequence number `seq` counts chunks across passes).
struct Occ {
    chunk: u32,
    buf: Option<PoolBuf>,
    /// Sub-reads not yet complete.
    pending: u32,
    failed: Option<String>,
    /// Live `Weight` guards into it.
    refs: u32,
    /// Its tensors handed out so far.
    fetched: u32,
    ready_ns: u64,
}

/// A sub-read in the table.
struct Req {
    seq: u64,
    chunk: u32,
    offset: u64,
    len: u32,
    dst: *mut u8,
    slot: u32,
    retried: bool,
}

/// Access timings for the planner (sums over passes, ns).
#[derive(Clone, Debug, Default)]
pub struct AccessProfile {
    pub passes: u64,
    /// get returned → next get called (or end_pass for the last access).
    pub to_next_ns: Vec<u64>,
    /// get returned → guard dropped.
    pub hold_ns: Vec<u64>,
    /// guard dropped → next get called.
    pub gap_ns: Vec<u64>,
    /// end_pass → next pass's first get.
    pub pass_gap_ns: u64,
    pub pass_gaps: u64,
}

#[derive(Default)]
struct Profiler {
    prefill: AccessProfile,
    decode: AccessProfile,
    last_get: Option<(usize, u64)>,
    got_at: Vec<u64>,
    release_at: Vec<u64>,
    end_pass_at: Option<u64>,
}

/// Everything that changes while streaming; guarded by `Shared::core`.
struct Core {
    chunks: Vec<RtChunk>,
    depth: u64,
    queue_depth: u32,
    request_bytes: u64,
    file: Arc<ModelFile>,
    pool: Option<Arc<Pool>>,
    backend: Option<Box<dyn Backend>>,
    // The pass cursor.
    in_pass: bool,
    broken_pass: bool,
    pass_base: u64,
    pos: usize,
    phase: Phase,
    consume: u64,
    next_submit: u64,
    front_seq: u64,
    occs: VecDeque<Occ>,
    // Sub-reads.
    reqs: Vec<Option<Req>>,
    free_reqs: Vec<u32>,
    queued: VecDeque<u32>,
    inflight: u32,
    delayed: Vec<(u64, u32, i32)>,
    faults: Vec<Fault>,
    fatal: Option<String>,
    // Counters.
    busy_since: Option<u64>,
    read_bytes: u64,
    prefill: PhaseStreamStats,
    decode: PhaseStreamStats,
    recording: bool,
    events: Vec<IoEvent>,
    events_dropped: u64,
    /// Time of the last recorded event (checks the ordering rule in debug builds).
    last_event_ns: u64,
    profiler: Option<Profiler>,
}

// SAFETY: the raw pointers in `reqs` point into the pool arena, which `Core` keeps alive (via
// `pool` and the occurrences' leases) for as long as any request refers to it; they are only
// dereferenced by the kernel or a backend thread for the read they describe.
unsafe impl Send for Core {}

/// The core plus the condition compute waits on.
pub struct Shared {
    core: Mutex<Core>,
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Completions from a backend thread: (sub-read id, result as the kernel returns it).
    /// The completion time is read under the core lock, like every other event's, so the I/O
    /// event log is in time order by construction.
    pub(crate) fn complete(&self, done: &[(u64, i32)]) {
        let mut c = self.lock();
        let t_ns = monotonic_ns();
        for &(id, res) in done {
            c.on_complete(id as u32, res, t_ns);
        }
        c.pump();
        drop(c);
        self.cv.notify_all();
    }

    /// A read done on the calling thread, outside the core lock: its submit and completion
    /// events (and probes) are stamped under the lock, before and after `read`.
    fn sync_read<E>(
        &self,
        chunk: u32,
        start: u64,
        len: u64,
        read: impl FnOnce() -> Result<u64, E>,
    ) -> Result<u64, E> {
        {
            let mut c = self.lock();
            let t0 = monotonic_ns();
            probes::chunk_submit(chunk as u64, start, len, NO_SLOT as u64);
            c.record(IoEventKind::Submit, chunk, start, len, NO_SLOT, t0);
        }
        let got = read()?;
        let mut c = self.lock();
        let t1 = monotonic_ns();
        probes::chunk_complete(chunk as u64, start, got, NO_SLOT as u64);
        c.read_bytes += got;
        c.record(IoEventKind::Complete, chunk, start, got, NO_SLOT, t1);
        Ok(got)
    }

    /// A backend thread died: fail every wait.
    pub(crate) fn fail(&self, msg: String) {
        self.lock().fatal = Some(msg);
        self.cv.notify_all();
    }
}

impl Core {
    fn stats_mut(&mut self) -> &mut PhaseStreamStats {
        match self.phase {
            Phase::Prefill => &mut self.prefill,
            Phase::Decode => &mut self.decode,
        }
    }

    /// Append one event. `t` must have been read while holding the core lock (the log's order
    /// is the lock's order, so events are in time order).
    fn record(
        &mut self,
        kind: IoEventKind,
        chunk: u32,
        offset: u64,
        bytes: u64,
        slot: u32,
        t: u64,
    ) {
        debug_assert!(
            t >= self.last_event_ns,
            "event time read outside the core lock"
        );
        self.last_event_ns = t;
        if !self.recording {
            return;
        }
        if self.events.len() < EVENT_CAPACITY {
            self.events.push(IoEvent {
                t_ns: t,
                kind,
                chunk,
                offset,
                bytes,
                slot,
            });
        } else {
            self.events_dropped += 1;
        }
    }

    fn busy_change(&mut self, t: u64) {
        match (self.inflight > 0, self.busy_since) {
            (true, None) => self.busy_since = Some(t),
            (false, Some(s)) => {
                self.stats_mut().io_busy_ns += t.saturating_sub(s);
                self.busy_since = None;
            }
            _ => {}
        }
    }

    fn occ(&mut self, seq: u64) -> Option<&mut Occ> {
        let i = seq.checked_sub(self.front_seq)?;
        self.occs.get_mut(i as usize)
    }

    /// Lease buffers and queue reads for chunk occurrences up to `depth` ahead of the one
    /// computing.
    fn fill(&mut self) {
        let Some(pool) = self.pool.clone() else {
            return;
        };
        let n = self.chunks.len() as u64;
        while self.fatal.is_none() && self.next_submit <= self.consume + self.depth {
            let seq = self.next_submit;
            let ci = (seq % n) as u32;
            let ch = self.chunks[ci as usize].clone();
            let Some(buf) = pool.try_acquire(ch.slots) else {
                break;
            };
            let base = buf.as_ptr();
            let first_slot = buf.first_slot();
            let mut pending = 0;
            let mut at = 0u64;
            while at < ch.size {
                let len = self.request_bytes.min(ch.size - at);
                let req = Req {
                    seq,
                    chunk: ci,
                    offset: ch.offset + at,
                    len: len as u32,
                    // SAFETY: at + len <= ch.size <= the lease's length.
                    dst: unsafe { base.add(at as usize) },
                    slot: first_slot + (at / pool.slot_bytes() as u64) as u32,
                    retried: false,
                };
                let id = match self.free_reqs.pop() {
                    Some(id) => {
                        self.reqs[id as usize] = Some(req);
                        id
                    }
                    None => {
                        self.reqs.push(Some(req));
                        self.reqs.len() as u32 - 1
                    }
                };
                self.queued.push_back(id);
                pending += 1;
                at += len;
            }
            self.occs.push_back(Occ {
                chunk: ci,
                buf: Some(buf),
                pending,
                failed: None,
                refs: 0,
                fetched: 0,
                ready_ns: 0,
            });
            self.next_submit += 1;
        }
        self.pump();
    }

    /// Hand queued sub-reads to the backend while fewer than `queue_depth` are in flight.
    fn pump(&mut self) {
        if self.fatal.is_some() {
            return;
        }
        let mut batch: Vec<SubRead> = Vec::new();
        let t = monotonic_ns();
        while self.inflight < self.queue_depth {
            let Some(id) = self.queued.pop_front() else {
                break;
            };
            let r = self.reqs[id as usize]
                .as_ref()
                .expect("queued ids are live");
            let (chunk, offset, len, slot, dst) = (r.chunk, r.offset, r.len, r.slot, r.dst);
            batch.push(SubRead {
                id,
                offset,
                len,
                dst,
            });
            self.inflight += 1;
            self.busy_change(t);
            probes::chunk_submit(chunk as u64, offset, len as u64, slot as u64);
            self.record(IoEventKind::Submit, chunk, offset, len as u64, slot, t);
        }
        if batch.is_empty() {
            return;
        }
        if let Some(b) = self.backend.as_mut() {
            if let Err(e) = b.submit(&batch) {
                self.fatal = Some(e.to_string());
            }
        }
    }

    /// A sub-read finished (`res`: bytes or -errno).
    fn on_complete(&mut self, id: u32, res: i32, t: u64) {
        let Some(r) = self.reqs.get(id as usize).and_then(|r| r.as_ref()) else {
            return;
        };
        let (offset, len) = (r.offset, r.len as u64);
        if let Some(d) = fault::delay_for(&mut self.faults, offset, len) {
            self.delayed.push((t + d.as_nanos() as u64, id, res));
            return;
        }
        self.finish(id, res, t);
    }

    fn process_delayed(&mut self, now: u64) {
        let mut i = 0;
        while i < self.delayed.len() {
            if self.delayed[i].0 <= now {
                let (_, id, res) = self.delayed.swap_remove(i);
                self.finish(id, res, now);
            } else {
                i += 1;
            }
        }
    }

    fn finish(&mut self, id: u32, res: i32, t: u64) {
        self.inflight -= 1;
        self.busy_change(t);
        let file_len = self.file.len;
        let direct = self.file.direct;
        let r = self.reqs[id as usize]
            .as_mut()
            .expect("completed ids are live");
        let res = fault::apply(&mut self.faults, r.offset, r.len as u64, res);
        let want = (r.len as u64).min(file_len.saturating_sub(r.offset));
        let mut failure = None;
        if res >= 0 && res as u64 >= want {
            // Complete (a read ending at the end of the file is complete at EOF).
        } else if res == -libc::EINTR || res == -libc::EAGAIN {
            self.queued.push_front(id);
            return;
        } else if !r.retried {
            r.retried = true;
            if res > 0 {
                let mut n = res as u64;
                if direct {
                    n = floor_align(n);
                }
                self.read_bytes += n;
                r.offset += n;
                r.len -= n as u32;
                // SAFETY: n < len, so the new start stays inside the same lease.
                r.dst = unsafe { r.dst.add(n as usize) };
            }
            self.queued.push_front(id);
            return;
        } else {
            failure = Some(if res < 0 {
                format!(
                    "read of {} bytes at offset {} of {} failed after one retry: {}",
                    r.len,
                    r.offset,
                    self.file.path.display(),
                    std::io::Error::from_raw_os_error(-res)
                )
            } else {
                format!(
                    "short read at offset {} of {}: got {res} of {want} bytes after one retry",
                    r.offset,
                    self.file.path.display()
                )
            });
        }
        let r = self.reqs[id as usize].take().expect("live");
        self.free_reqs.push(id);
        let got = res.max(0) as u64;
        self.read_bytes += got;
        if failure.is_none() {
            self.file.drop_cache(r.offset, got);
        }
        probes::chunk_complete(r.chunk as u64, r.offset, got, r.slot as u64);
        self.record(IoEventKind::Complete, r.chunk, r.offset, got, r.slot, t);
        if let Some(o) = self.occ(r.seq) {
            o.pending -= 1;
            if failure.is_some() && o.failed.is_none() {
                o.failed = failure;
            }
            if o.pending == 0 {
                o.ready_ns = t;
            }
        }
    }

    /// Drop occurrences that are used up, oldest first, returning their buffers.
    fn retire(&mut self) {
        while let Some(o) = self.occs.front() {
            let n = self.chunks[o.chunk as usize].n_tensors;
            let used_up = o.refs == 0 && o.fetched == n && o.pending == 0;
            if !used_up {
                break;
            }
            self.occs.pop_front();
            self.front_seq += 1;
        }
    }

    /// Sub-reads the device still owns (delayed ones already finished on the device).
    fn device_inflight(&self) -> u32 {
        self.inflight - self.delayed.len() as u32
    }
}
/// The streaming weight source.
pub struct StreamSource {
    gguf: SharedGguf,
    file: Arc<ModelFile>,
    opts: StreamOptions,
    shared: Arc<Shared>,
    order: Vec<Access>,
    resident: Option<AlignedBuf>,
    resident_ranges: HashMap<TensorId, usize>,
    bounce: Mutex<Option<AlignedBuf>>,
    plan: Option<(Plan, PlanFigures)>,
    summary: String,
    backend_name: String,
    fallback_note: Option<String>,
    budget: u64,
}

impl StreamSource {
    /// Open the model file (O_DIRECT when allowed). Planning happens in `attach_model`.
    pub fn open(path: &Path, gguf: SharedGguf, opts: StreamOptions) -> Result<Self, WeightError> {
        let file = Arc::new(ModelFile::open(path, opts.force_buffered)?);
        if file.len != gguf.file_size {
            return Err(WeightError::FileChanged(format!(
                "{} is {} bytes now but {} bytes when its header was read",
                path.display(),
                file.len,
                gguf.file_size
            )));
        }
        let core = Core {
            chunks: Vec::new(),
            depth: 0,
            queue_depth: 1,
            request_bytes: ALIGN,
            file: file.clone(),
            pool: None,
            backend: None,
            in_pass: false,
            broken_pass: false,
            pass_base: 0,
            pos: 0,
            phase: Phase::Prefill,
            consume: 0,
            next_submit: 0,
            front_seq: 0,
            occs: VecDeque::new(),
            reqs: Vec::new(),
            free_reqs: Vec::new(),
            queued: VecDeque::new(),
            inflight: 0,
            delayed: Vec::new(),
            faults: opts.faults.clone(),
            fatal: None,
            busy_since: None,
            read_bytes: 0,
            prefill: Default::default(),
            decode: Default::default(),
            recording: false,
            events: Vec::new(),
            events_dropped: 0,
            last_event_ns: 0,
            profiler: opts.profile.then(Profiler::default),
        };
        Ok(StreamSource {
            gguf,
            file,
            opts,
            shared: Arc::new(Shared {
                core: Mutex::new(core),
                cv: Condvar::new(),
            }),
            order: Vec::new(),
            resident: None,
            resident_ranges: HashMap::new(),
            bounce: Mutex::new(None),
            plan: None,
            summary: String::new(),
            backend_name: String::new(),
            fallback_note: None,
            budget: 0,
        })
    }

    /// One line on the plan in use (for stderr).
    pub fn summary(&self) -> &str {
        &self.summary
    }

    pub fn plan(&self) -> Option<&Plan> {
        self.plan.as_ref().map(|(p, _)| p)
    }

    /// Per-access timings recorded with `StreamOptions::profile` (prefill, decode).
    pub fn access_profile(&self) -> Option<(AccessProfile, AccessProfile)> {
        let c = self.shared.lock();
        c.profiler
            .as_ref()
            .map(|p| (p.prefill.clone(), p.decode.clone()))
    }

    pub fn stream_stats(&self) -> StreamStats {
        let c = self.shared.lock();
        let (p, fig) = match &self.plan {
            Some((p, f)) => (Some(p), Some(f)),
            None => (None, None),
        };
        let mut prefill = c.prefill.clone();
        let mut decode = c.decode.clone();
        if let Some(s) = c.busy_since {
            let extra = monotonic_ns().saturating_sub(s);
            match c.phase {
                Phase::Prefill => prefill.io_busy_ns += extra,
                Phase::Decode => decode.io_busy_ns += extra,
            }
        }
        StreamStats {
            budget_bytes: self.budget,
            small_bytes: fig.map_or(0, |f| f.small_bytes),
            buffer_bytes: fig.map_or(0, |f| f.buffers_bytes),
            buffer_count: p.map_or(0, |p| p.buffer_count),
            prefetch_depth: c.depth as u32,
            chunks: c.chunks.len() as u32,
            streamed_bytes_per_pass: fig.map_or(0, |f| f.streamed_bytes_per_pass),
            backend: self.backend_name.clone(),
            direct_io: self.file.direct,
            plan_method: p.map_or(String::new(), |p| p.method.name().to_string()),
            read_bytes: c.read_bytes,
            prefill,
            decode,
            io_events_dropped: c.events_dropped,
        }
    }

    /// Synchronous aligned read of `out.len()` bytes at `offset` (read_at, small tensors).
    fn read_direct(&self, offset: u64, out: &mut [u8]) -> Result<(), WeightError> {
        let start = floor_align(offset);
        let len = ceil_align(offset + out.len() as u64) - start;
        self.shared.sync_read(READ_AT_CHUNK, start, len, || {
            let mut b = self.bounce.lock().unwrap_or_else(|e| e.into_inner());
            self.file.read_unaligned(offset, out, &mut b)
        })?;
        Ok(())
    }

    fn make_plan(&self, layout: &Layout) -> Result<Plan, WeightError> {
        let plan = match &self.opts.plan {
            PlanSource::Given(p) => (**p).clone(),
            PlanSource::File(path) => {
                let text = std::fs::read(path).map_err(|e| WeightError::Io {
                    what: format!("reading plan {}", path.display()),
                    source: e,
                })?;
                let p = crate::plan::json::parse(&text, &layout.gguf)?;
                p.check_file(&self.file, layout)?;
                p
            }
            PlanSource::Heuristic => {
                let budget = self.opts.budget.ok_or_else(|| {
                    WeightError::Budget(
                        "--weights stream needs --budget SIZE (or --plan FILE)".into(),
                    )
                })?;
                let model = PlanModel {
                    identity: layout.gguf.identity.clone(),
                    data_fingerprint: String::new(),
                };
                let compute = [
                    PhaseCompute::estimate(layout, Phase::Decode, 1),
                    PhaseCompute::estimate(layout, Phase::Prefill, 32),
                ];
                make_plan(
                    layout,
                    model,
                    budget,
                    &DeviceModel::default(),
                    &compute,
                    Method::Heuristic,
                )?
            }
        };
        Ok(plan)
    }

    /// Read the resident extents into one aligned allocation.
    fn load_resident(&mut self, layout: &Layout, plan: &Plan) -> Result<(), WeightError> {
        let extents = layout.extents(plan.resident.iter().copied());
        let total: u64 = extents.iter().map(|r| r.end - r.start).sum();
        let mut buf = AlignedBuf::new(total as usize)?;
        let mut at = 0usize;
        let mut base_of = Vec::with_capacity(extents.len());
        for (i, r) in extents.iter().enumerate() {
            let len = (r.end - r.start) as usize;
            let chunk = RESIDENT_CHUNK | i as u32;
            let dst = &mut buf.as_mut_slice()[at..at + len];
            self.shared.sync_read(chunk, r.start, len as u64, || {
                self.file.read_aligned(r.start, dst)
            })?;
            base_of.push((r.clone(), at));
            at += len;
        }
        for &id in &plan.resident {
            let t = layout.tensor(id);
            let (r, base) = base_of
                .iter()
                .find(|(r, _)| r.start <= t.offset && t.end() <= r.end)
                .expect("extents cover every resident tensor");
            self.resident_ranges
                .insert(id, base + (t.offset - r.start) as usize);
        }
        self.resident = Some(buf);
        Ok(())
    }

    fn start_backend(
        &mut self,
        pool: &Arc<Pool>,
        queue_depth: u32,
    ) -> Result<Box<dyn Backend>, WeightError> {
        let fd = self.file.raw_fd();
        let pread = || -> Box<dyn Backend> { Box::new(Pread::new(fd, queue_depth as usize)) };
        Ok(match self.opts.backend {
            BackendChoice::Pread => pread(),
            BackendChoice::Uring => Box::new(
                Uring::new(fd, pool.arena())
                    .map_err(|e| WeightError::Storage(format!("io_uring is unavailable: {e}")))?,
            ),
            BackendChoice::Auto => match Uring::new(fd, pool.arena()) {
                Ok(u) => Box::new(u),
                Err(e) => {
                    log::info!("io_uring unavailable ({e}); streaming with pread threads");
                    self.fallback_note = Some(format!("io_uring unavailable ({e})"));
                    pread()
                }
            },
        })
    }
}

/// Ticket bits: the position in the pass (low 20 bits) and the chunk occurrence (the rest); the
/// top bit marks a resident weight (only handed out with a release while profiling).
const POS_BITS: u32 = 20;
const RESIDENT_TICKET: u64 = 1 << 63;

impl StreamSource {
    /// Wait (bounded) until the device owns no read; then nothing writes into the pool.
    fn wait_quiet<'a>(
        &'a self,
        mut c: MutexGuard<'a, Core>,
    ) -> Result<MutexGuard<'a, Core>, (MutexGuard<'a, Core>, WeightError)> {
        let deadline = monotonic_ns() + self.opts.wait_timeout.as_nanos() as u64;
        loop {
            if c.device_inflight() == 0 {
                return Ok(c);
            }
            let now = monotonic_ns();
            if now >= deadline {
                let e = WeightError::Storage(format!(
                    "timed out after {} ms waiting for {} reads of {} to finish",
                    self.opts.wait_timeout.as_millis(),
                    c.device_inflight(),
                    self.file.path.display()
                ));
                return Err((c, e));
            }
            c = self
                .shared
                .cv
                .wait_timeout(c, Duration::from_nanos(deadline - now))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Abandon a pass that did not finish (an error in the forward pass): wait for its reads,
    /// return every buffer, and restart prefetching at the next pass boundary.
    fn reset_pass<'a>(
        &'a self,
        c: MutexGuard<'a, Core>,
    ) -> Result<MutexGuard<'a, Core>, WeightError> {
        let mut c = self.wait_quiet(c).map_err(|(_, e)| e)?;
        let now = monotonic_ns();
        c.process_delayed(now);
        if c.occs.iter().any(|o| o.refs > 0) {
            return Err(WeightError::OrderMismatch(
                "a new pass began while weights of the unfinished one are still borrowed".into(),
            ));
        }
        c.queued.clear();
        for i in 0..c.reqs.len() {
            if c.reqs[i].take().is_some() {
                c.free_reqs.push(i as u32);
            }
        }
        c.occs.clear();
        let n = c.chunks.len().max(1) as u64;
        let base = c.next_submit.max(c.pass_base + 1).div_ceil(n) * n;
        c.front_seq = base;
        c.next_submit = base;
        c.consume = base;
        c.pass_base = base;
        c.pos = 0;
        c.in_pass = false;
        c.broken_pass = false;
        c.fill();
        Ok(c)
    }

    fn tensor_name(&self, id: TensorId) -> &str {
        self.gguf.tensors.get(id).map_or("?", |t| t.name.as_str())
    }

    /// Wait until occurrence `seq` is complete; Err on failure or timeout.
    fn wait_ready<'a>(
        &'a self,
        mut c: MutexGuard<'a, Core>,
        seq: u64,
        chunk: u32,
    ) -> Result<MutexGuard<'a, Core>, WeightError> {
        let t0 = monotonic_ns();
        let deadline = t0 + self.opts.wait_timeout.as_nanos() as u64;
        let mut waited = false;
        loop {
            let now = monotonic_ns();
            c.process_delayed(now);
            c.pump();
            let (pending, failed) = match c.occ(seq) {
                Some(o) => (o.pending, o.failed.clone()),
                None => {
                    return Err(WeightError::OrderMismatch(format!(
                        "chunk {chunk} was not read for this pass"
                    )))
                }
            };
            if pending == 0 {
                if let Some(f) = failed {
                    return Err(WeightError::Storage(f));
                }
                break;
            }
            if let Some(f) = &c.fatal {
                return Err(WeightError::Storage(f.clone()));
            }
            if !waited {
                waited = true;
                probes::wait_begin(chunk as u64);
                let ch = &c.chunks[chunk as usize];
                let (off, size) = (ch.offset, ch.size);
                // Not t0: pump() above may have stamped submits after it.
                let tw = monotonic_ns();
                c.record(IoEventKind::WaitBegin, chunk, off, size, NO_SLOT, tw);
            }
            if now >= deadline {
                let ch = &c.chunks[chunk as usize];
                return Err(WeightError::Storage(format!(
                    "timed out after {} ms waiting for chunk {chunk} ({} bytes at offset {} of {})",
                    self.opts.wait_timeout.as_millis(),
                    ch.size,
                    ch.offset,
                    self.file.path.display()
                )));
            }
            let wake = c
                .delayed
                .iter()
                .map(|d| d.0)
                .min()
                .unwrap_or(deadline)
                .min(deadline);
            c = self
                .shared
                .cv
                .wait_timeout(c, Duration::from_nanos(wake.saturating_sub(now).max(1000)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if waited {
            let t1 = monotonic_ns();
            probes::wait_end(chunk as u64);
            let ch = &c.chunks[chunk as usize];
            let (off, size) = (ch.offset, ch.size);
            c.record(IoEventKind::WaitEnd, chunk, off, size, NO_SLOT, t1);
            c.stats_mut().stall_ns += t1 - t0;
        }
        Ok(c)
    }
}

impl Profiler {
    fn got(&mut self, p: usize, now: u64) {
        if self.got_at.len() <= p {
            self.got_at.resize(p + 1, 0);
        }
        self.got_at[p] = now;
        self.last_get = Some((p, now));
    }
    fn phase(&mut self, ph: Phase) -> &mut AccessProfile {
        match ph {
            Phase::Prefill => &mut self.prefill,
            Phase::Decode => &mut self.decode,
        }
    }
    fn on_get_call(&mut self, ph: Phase, n: usize, now: u64) {
        let end = self.end_pass_at.take();
        let last = self.last_get.take();
        let rel = self.release_at.clone();
        let p = self.phase(ph);
        if p.to_next_ns.len() != n {
            p.to_next_ns = vec![0; n];
            p.hold_ns = vec![0; n];
            p.gap_ns = vec![0; n];
        }
        if let Some(e) = end {
            p.pass_gap_ns += now.saturating_sub(e);
            p.pass_gaps += 1;
        } else if let Some((pp, t)) = last {
            p.to_next_ns[pp] += now.saturating_sub(t);
            if let Some(&r) = rel.get(pp) {
                p.gap_ns[pp] += now.saturating_sub(r);
            }
        }
    }
}

impl Release for StreamSource {
    fn release(&self, ticket: u64) {
        let mut c = self.shared.lock();
        let pos = (ticket & ((1 << POS_BITS) - 1)) as usize;
        let now = monotonic_ns();
        let ph = c.phase;
        if let Some(p) = c.profiler.as_mut() {
            if p.release_at.len() <= pos {
                p.release_at.resize(pos + 1, 0);
            }
            p.release_at[pos] = now;
            if let Some(&got) = p.got_at.get(pos) {
                if let Some(h) = p.phase(ph).hold_ns.get_mut(pos) {
                    *h += now.saturating_sub(got);
                }
            }
        }
        if ticket & RESIDENT_TICKET != 0 {
            return;
        }
        let seq = (ticket & !RESIDENT_TICKET) >> POS_BITS;
        if let Some(o) = c.occ(seq) {
            o.refs -= 1;
        }
        c.retire();
        c.fill();
    }
}

impl WeightSource for StreamSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Stream
    }

    fn attach_model(&mut self, model: &Model) -> Result<(), WeightError> {
        let layout = Layout::new(model);
        let plan = self.make_plan(&layout)?;
        let fig = plan.check(&layout, self.opts.budget)?;
        self.budget = plan.budget_bytes;
        self.load_resident(&layout, &plan)?;
        // The pass as a table: where each access finds its bytes.
        let mut chunk_of = HashMap::new();
        for (ci, ch) in plan.chunks.iter().enumerate() {
            for (k, &t) in ch.tensors.iter().enumerate() {
                chunk_of.insert(t, (ci as u32, ch.aligned_offset, k == 0));
            }
        }
        self.order = layout
            .order
            .iter()
            .map(|&id| {
                let t = layout.tensor(id);
                let loc = match self.resident_ranges.get(&id) {
                    Some(&off) => Loc::Resident { off },
                    None => {
                        let (chunk, base, first) = chunk_of[&id];
                        Loc::Streamed {
                            chunk,
                            off: (t.offset - base) as usize,
                            first,
                        }
                    }
                };
                Access {
                    tensor: id,
                    len: t.size as usize,
                    loc,
                }
            })
            .collect();
        let chunks: Vec<RtChunk> = plan
            .chunks
            .iter()
            .map(|c| RtChunk {
                offset: c.aligned_offset,
                size: c.aligned_size,
                slots: c.aligned_size.div_ceil(plan.buffer_bytes) as u32,
                n_tensors: c.tensors.len() as u32,
            })
            .collect();
        let depth = self.opts.depth.unwrap_or(plan.prefetch_depth);
        let mut backend_name = "none (everything resident)".to_string();
        if !chunks.is_empty() {
            let pool = Pool::new(plan.buffer_count, plan.buffer_bytes as usize)?;
            let mut backend = self.start_backend(&pool, plan.queue_depth)?;
            backend_name = backend.name().to_string();
            backend.start(self.shared.clone());
            let mut c = self.shared.lock();
            c.pool = Some(pool);
            c.backend = Some(backend);
        }
        {
            let mut c = self.shared.lock();
            c.chunks = chunks;
            c.depth = depth as u64;
            c.queue_depth = plan.queue_depth;
            c.request_bytes = plan.request_bytes;
            c.fill();
        }
        let mut summary = String::new();
        if matches!(self.opts.plan, PlanSource::Heuristic) {
            summary += "no --plan: planned on the fly with the quick heuristic (run `flashslim plan` for a measured plan); ";
        }
        summary += &plan.describe(&layout, &fig);
        summary += &format!(
            "; reads: {}, {}",
            backend_name,
            match &self.file.buffered_reason {
                None => "O_DIRECT".to_string(),
                Some(r) => format!("buffered + POSIX_FADV_DONTNEED ({r})"),
            }
        );
        if let Some(n) = &self.fallback_note {
            summary += &format!(" ({n})");
        }
        if self.opts.depth.is_some() {
            summary += &format!("; prefetch depth overridden to {depth}");
        }
        self.summary = summary;
        self.backend_name = backend_name;
        self.plan = Some((plan, fig));
        Ok(())
    }

    fn begin_pass(&self, phase: Phase, n_tokens: usize) -> Result<(), WeightError> {
        self.file.check_unchanged()?;
        let mut c = self.shared.lock();
        if let Some(f) = &c.fatal {
            return Err(WeightError::Storage(f.clone()));
        }
        if c.in_pass || c.broken_pass || c.pos != 0 {
            c = self.reset_pass(c)?;
        }
        let now = monotonic_ns();
        if let Some(s) = c.busy_since {
            c.stats_mut().io_busy_ns += now.saturating_sub(s);
            c.busy_since = Some(now);
        }
        c.in_pass = true;
        c.phase = phase;
        let st = c.stats_mut();
        st.passes += 1;
        st.tokens += n_tokens as u64;
        Ok(())
    }

    fn end_pass(&self) -> Result<(), WeightError> {
        let mut c = self.shared.lock();
        if !c.in_pass || c.pos != self.order.len() {
            c.broken_pass = true;
            return Err(WeightError::OrderMismatch(format!(
                "the pass ended after {} of the {} planned weight accesses",
                c.pos,
                self.order.len()
            )));
        }
        c.in_pass = false;
        c.pos = 0;
        c.pass_base += c.chunks.len() as u64;
        let now = monotonic_ns();
        let ph = c.phase;
        if let Some(p) = c.profiler.as_mut() {
            if let Some((pp, t)) = p.last_get.take() {
                let prof = p.phase(ph);
                if let Some(x) = prof.to_next_ns.get_mut(pp) {
                    *x += now.saturating_sub(t);
                }
                prof.passes += 1;
            }
            p.end_pass_at = Some(now);
        }
        Ok(())
    }

    fn get(&self, id: TensorId) -> Result<Weight<'_>, WeightError> {
        let mut c = self.shared.lock();
        let p = c.pos;
        if !c.in_pass {
            return Err(WeightError::OrderMismatch(format!(
                "`{}` was requested outside a pass (begin_pass not called)",
                self.tensor_name(id)
            )));
        }
        let Some(acc) = self.order.get(p).copied() else {
            c.broken_pass = true;
            return Err(WeightError::OrderMismatch(format!(
                "the pass asked for `{}` after its {} planned weight accesses",
                self.tensor_name(id),
                self.order.len()
            )));
        };
        if acc.tensor != id {
            c.broken_pass = true;
            return Err(WeightError::OrderMismatch(format!(
                "the pass asked for `{}` at access {p} but the plan expects `{}`",
                self.tensor_name(id),
                self.tensor_name(acc.tensor)
            )));
        }
        c.pos += 1;
        let ph = c.phase;
        let n = self.order.len();
        if let Some(pr) = c.profiler.as_mut() {
            pr.on_get_call(ph, n, monotonic_ns());
        }
        match acc.loc {
            Loc::Resident { off } => {
                let res = self.resident.as_ref().expect("loaded with the plan");
                let bytes = &res.as_slice()[off..off + acc.len];
                if let Some(pr) = c.profiler.as_mut() {
                    pr.got(p, monotonic_ns());
                    return Ok(Weight::with_release(
                        bytes,
                        MemOrigin::Resident,
                        self,
                        RESIDENT_TICKET | p as u64,
                    ));
                }
                Ok(Weight::borrowed(bytes, MemOrigin::Resident))
            }
            Loc::Streamed { chunk, off, first } => {
                let seq = c.pass_base + chunk as u64;
                if first {
                    c.consume = seq;
                    let size = c.chunks[chunk as usize].size;
                    c.stats_mut().streamed_bytes += size;
                    c.fill();
                }
                if c.occ(seq).is_none() {
                    c.broken_pass = true;
                    let pool = c.pool.as_ref().expect("chunks imply a pool");
                    let held = pool.leased_slots() as u64 * pool.slot_bytes() as u64;
                    return Err(WeightError::Budget(format!(
                        "the buffer pool cannot take chunk {chunk} ({} bytes) while {} bytes are held by live weights: the forward pass holds more at once than the plan allows",
                        c.chunks[chunk as usize].size, held
                    )));
                }
                c = match self.wait_ready(c, seq, chunk) {
                    Ok(c) => c,
                    Err(e) => {
                        self.shared.lock().broken_pass = true;
                        return Err(e);
                    }
                };
                let o = c.occ(seq).expect("checked above");
                o.refs += 1;
                o.fetched += 1;
                let buf = o.buf.as_ref().expect("live occurrences hold their buffers");
                let (base, slot, cap) = (buf.as_ptr(), buf.first_slot(), buf.len());
                assert!(
                    off + acc.len <= cap,
                    "tensor inside its chunk (checked by the plan)"
                );
                // SAFETY: the bytes lie in a lease held by occurrence `seq`, whose reads have all
                // completed (pending == 0) so nothing writes them any more; the occurrence keeps
                // the lease until refs drops to 0, which happens only when this guard's release
                // runs; the arena outlives `self`.
                let bytes = unsafe { std::slice::from_raw_parts(base.add(off), acc.len) };
                if let Some(pr) = c.profiler.as_mut() {
                    pr.got(p, monotonic_ns());
                }
                Ok(Weight::with_release(
                    bytes,
                    MemOrigin::StreamSlot(slot),
                    self,
                    (seq << POS_BITS) | p as u64,
                ))
            }
        }
    }

    fn read_at(&self, id: TensorId, offset: u64, out: &mut [u8]) -> Result<(), WeightError> {
        let t = self
            .gguf
            .tensors
            .get(id)
            .ok_or(WeightError::UnknownTensor(id))?;
        if offset
            .checked_add(out.len() as u64)
            .is_none_or(|e| e > t.size)
        {
            return Err(WeightError::Corrupt(format!(
                "read of {} bytes at {offset} is outside tensor `{}` ({} bytes)",
                out.len(),
                t.name,
                t.size
            )));
        }
        if let (Some(&base), Some(res)) = (self.resident_ranges.get(&id), &self.resident) {
            let at = base + offset as usize;
            out.copy_from_slice(&res.as_slice()[at..at + out.len()]);
            return Ok(());
        }
        self.read_direct(t.offset + offset, out)
    }

    fn stats(&self) -> SourceStats {
        let s = self.stream_stats();
        let resident = self
            .plan
            .as_ref()
            .map_or(0, |(_, f)| f.resident_bytes + f.small_bytes);
        SourceStats {
            resident_bytes: resident,
            streamed_bytes: s.prefill.streamed_bytes + s.decode.streamed_bytes,
            stall_ns: s.prefill.stall_ns + s.decode.stall_ns,
            passes: s.prefill.passes + s.decode.passes,
            stream: Some(s),
        }
    }

    fn record_io(&self, on: bool) {
        let mut c = self.shared.lock();
        c.recording = on;
        if on && c.events.capacity() == 0 {
            c.events.reserve(EVENT_CAPACITY);
        }
    }

    fn drain_io_events(&self, out: &mut Vec<IoEvent>) {
        out.append(&mut self.shared.lock().events);
    }

    fn describe(&self) -> Option<String> {
        Some(self.summary.clone())
    }
}

impl Drop for StreamSource {
    fn drop(&mut self) {
        let c = self.shared.lock();
        let (mut c, quiet) = match self.wait_quiet(c) {
            Ok(c) => (c, true),
            Err((c, _)) => (c, false),
        };
        let backend = c.backend.take();
        let pool = c.pool.take();
        let occs = std::mem::take(&mut c.occs);
        drop(c);
        if quiet {
            if let Some(mut b) = backend {
                b.shutdown();
            }
            drop(occs);
            drop(pool);
        } else {
            // Reads still owned by the device after the timeout: leak the buffers and the ring
            // rather than let the kernel write into freed memory.
            std::mem::forget(backend);
            std::mem::forget(occs);
            std::mem::forget(pool);
        }
    }
}
