// Fill a `RunData` from a run directory through the engine's readers — `runlog::Manifest`,
// `runlog::records::read_jsonl_file` (stages, tokens, io), `trace::TraceReader` (via
// `tensor_trace::open`), `runlog::bpf::BpfOutput` (rows, END maps, clock_sync alignment) — and
// map their records onto the tool's format-independent records. Nothing here parses a file.

use super::{
    BlockIo, Bucket, CounterSeries, Family, Histogram, Input, InputState, IoRequest, KernelSpan,
    KeyedValues, OpSpan, Phase, RunData, StageSpan, Stall, StallKind, TensorAccess, TokenSpan,
    Unit,
};
use crate::manifest_compat::{self, status_name, ManifestError, RunStatus, MANIFEST_FILE};
use crate::tensor_trace;
use flashslim::probes::Stage;
use flashslim::runlog::bpf::{BpfOutput, BpfRow};
use flashslim::runlog::records::{
    read_jsonl_file, IoRecord, JsonlFile, StageRecord, TokenRecord, IO_FORMAT, STAGES_FORMAT,
    TOKENS_FORMAT,
};
use flashslim::runlog::{RunlogError, IO, STACKS, STAGES, TENSOR_TRACE, TOKENS};
use flashslim::trace::NO_TENSOR;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};

/// Folded stacks for the flamegraph.
pub const STACKS_FILE: &str = STACKS;
/// bpftrace outputs are `bpf-<script>.ndjson` / `bpf-<script>.tsv`.
pub const BPF_PREFIX: &str = "bpf-";

/// `IoEvent.chunk` of reads outside the plan's chunks (docs/formats.md).
const CHUNK_DIRECT: u32 = u32::MAX;
/// `IoEvent.slot` outside the pool.
const SLOT_NONE: u32 = u32::MAX;

/// Why a run directory could not be loaded at all. (A missing, partial or unreadable input is
/// not an error: it is recorded in [`RunData::inputs`] and the report marks it.)
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadError {
    /// The path does not exist or is not a directory.
    NotADirectory(PathBuf),
    /// The directory cannot be listed.
    Io {
        /// Path.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The manifest's schema is newer than this build: nothing in the run can be trusted.
    NewerSchema {
        /// Run directory.
        dir: PathBuf,
        /// The error (carries the version).
        source: ManifestError,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::NotADirectory(p) => {
                write!(f, "{}: no run directory there", p.display())
            }
            LoadError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            LoadError::NewerSchema { dir, source } => write!(f, "{}: {source}", dir.display()),
        }
    }
}

impl std::error::Error for LoadError {}

fn runlog_state(e: RunlogError) -> InputState {
    match e {
        RunlogError::Newer(m) => InputState::Unreadable(format!("{m}; update flashslim-tools")),
        e => InputState::Unreadable(e.to_string()),
    }
}

/// Load what a run directory holds.
pub fn load(dir: &Path) -> Result<RunData, LoadError> {
    if !dir.is_dir() {
        return Err(LoadError::NotADirectory(dir.to_path_buf()));
    }
    let mut run = RunData {
        label: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string()),
        dir: Some(dir.to_path_buf()),
        ..RunData::default()
    };
    let names = list_dir(dir)?;
    load_manifest(dir, &mut run)?;

    // stages.jsonl
    let stages = read_jsonl::<StageRecord>(dir, STAGES, STAGES_FORMAT, &mut run, Family::Stages);
    if let Some(f) = stages {
        let unfinished = f.records.iter().filter(|s| s.unfinished).count();
        run.stages = f
            .records
            .iter()
            .map(|s| StageSpan {
                name: s.stage.clone(),
                thread: s.tid,
                gen: s.gen,
                index: s.index,
                start_ns: s.start_ns,
                end_ns: s.end_ns.max(s.start_ns),
                major_faults: s.process.major_faults,
                unfinished: s.unfinished,
            })
            .collect();
        let mut text = format!("{} stage record(s)", f.records.len());
        if unfinished > 0 {
            text.push_str(&format!(
                "; {unfinished} closed unfinished (error or interrupt)"
            ));
        }
        set_state(
            &mut run,
            Family::Stages,
            text,
            f.truncated || unfinished > 0,
            f.truncated,
        );
    }

    // tokens.jsonl
    if let Some(f) = read_jsonl::<TokenRecord>(dir, TOKENS, TOKENS_FORMAT, &mut run, Family::Tokens)
    {
        run.tokens = token_spans(&f.records, &run.stages);
        let text = format!("{} token(s)", f.records.len());
        set_state(&mut run, Family::Tokens, text, f.truncated, f.truncated);
    }

    // io.jsonl (streaming only)
    if let Some(f) = read_jsonl::<IoRecord>(dir, IO, IO_FORMAT, &mut run, Family::Io) {
        let (reqs, stalls, text) = io_requests(&f.records);
        run.io = reqs;
        run.stalls.extend(stalls);
        set_state(&mut run, Family::Io, text, f.truncated, f.truncated);
    }

    // tensor-trace.bin
    let tpath = dir.join(TENSOR_TRACE);
    let tstate = if tpath.is_file() {
        match tensor_trace::open(&tpath) {
            Err(e) => InputState::Unreadable(e.to_string()),
            Ok(d) => {
                let (ops, accesses) = ops_and_accesses(&d);
                let text = format!(
                    "{} record(s), {} op(s); {}",
                    d.records.len(),
                    ops.len(),
                    d.end_text()
                );
                run.ops = ops;
                run.accesses = accesses;
                if d.is_complete() {
                    InputState::Loaded(text)
                } else {
                    InputState::Partial(text)
                }
            }
        }
    } else {
        InputState::Missing
    };
    run.inputs.push(Input {
        family: Family::TensorTrace,
        file: TENSOR_TRACE.into(),
        state: tstate,
    });

    // bpftrace outputs.
    let mut any_bpf = false;
    for n in names.iter().filter(|n| n.starts_with(BPF_PREFIX)) {
        if !(n.ends_with(".ndjson") || n.ends_with(".tsv")) {
            continue; // bpf-<script>.log: bpftrace's stderr
        }
        any_bpf = true;
        let state = match BpfOutput::read(&dir.join(n)) {
            Err(e) => runlog_state(e),
            Ok(o) => bpf_into(&o, n, &mut run),
        };
        run.inputs.push(Input {
            family: Family::Bpf,
            file: n.clone(),
            state,
        });
    }
    if !any_bpf {
        run.inputs.push(Input {
            family: Family::Bpf,
            file: "bpf-*.ndjson".into(),
            state: InputState::Missing,
        });
    }

    // Folded stacks (the standard `frame;frame COUNT` format; inferno reads it).
    let spath = dir.join(STACKS_FILE);
    let state = if spath.is_file() {
        match std::fs::read_to_string(&spath) {
            Err(e) => InputState::Unreadable(e.to_string()),
            Ok(text) => {
                let (good, bad) = check_folded(&text);
                if text.trim().is_empty() {
                    // cpuprofile ran but sampled nothing (a run shorter than its period).
                    InputState::Partial("empty: no stack was sampled".into())
                } else if good == 0 {
                    InputState::Unreadable(format!(
                        "no `frame;frame COUNT` lines ({bad} other line(s))"
                    ))
                } else {
                    run.folded = Some(text);
                    let mut s = format!("{good} stack(s)");
                    if bad > 0 {
                        s.push_str(&format!("; {bad} malformed line(s) ignored"));
                    }
                    InputState::Loaded(s)
                }
            }
        }
    } else {
        InputState::Missing
    };
    run.inputs.push(Input {
        family: Family::Stacks,
        file: STACKS_FILE.into(),
        state,
    });

    attribute_stalls(&mut run);
    add_counters(&mut run);
    Ok(run)
}

fn list_dir(dir: &Path) -> Result<Vec<String>, LoadError> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|source| LoadError::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

fn load_manifest(dir: &Path, run: &mut RunData) -> Result<(), LoadError> {
    let mpath = dir.join(MANIFEST_FILE);
    let state = if !mpath.exists() {
        InputState::Missing
    } else {
        match manifest_compat::read_dir_manifest(dir) {
            Err(e @ ManifestError::NewerSchema(_)) => {
                return Err(LoadError::NewerSchema {
                    dir: dir.to_path_buf(),
                    source: e,
                })
            }
            Err(e) => InputState::Unreadable(e.to_string()),
            Ok(m) => {
                run.label = m.run_id.clone();
                run.weights_mode = m
                    .generations
                    .first()
                    .map(|g| g.weights_mode.clone())
                    .or_else(|| {
                        m.config
                            .pointer("/run/weights")
                            .and_then(|w| w.as_str())
                            .map(str::to_string)
                    });
                run.storage_bound_bytes_per_s = m
                    .plan
                    .as_ref()
                    .and_then(|p| p.device_bandwidth_bytes_per_s)
                    .filter(|b| b.is_finite() && *b > 0.0);
                // Every listed file checked against its entry (a partial pull or a damaged
                // copy shows here); files the run added later (report.html) are not checked.
                let mut missing = Vec::new();
                let mut differ = Vec::new();
                for f in &m.files {
                    let p = dir.join(&f.path);
                    match crate::util::sha256_file(&p) {
                        Err(_) => missing.push(f.path.clone()),
                        Ok((n, sha)) if n != f.bytes || sha != f.sha256 => {
                            differ.push(f.path.clone())
                        }
                        Ok(_) => {}
                    }
                }
                let mut s = format!(
                    "status {}, {} file(s) listed ({})",
                    status_name(m.status),
                    m.files.len(),
                    crate::util::human_bytes(manifest_compat::total_bytes(&m))
                );
                if let Some(e) = &m.error {
                    s.push_str(&format!(", error: {e}"));
                }
                let ok = missing.is_empty() && differ.is_empty();
                if !m.files.is_empty() && ok {
                    s.push_str(", every one verified (size + sha256)");
                }
                if !missing.is_empty() {
                    s.push_str(&format!("; missing here: {}", missing.join(", ")));
                }
                if !differ.is_empty() {
                    s.push_str(&format!(
                        "; differ from the manifest: {}",
                        differ.join(", ")
                    ));
                }
                let running = m.status == RunStatus::Running;
                if running {
                    s.push_str("; the run never finished (killed, or still running): its file list is not final");
                }
                run.manifest = Some(m);
                if ok && !running {
                    InputState::Loaded(s)
                } else {
                    InputState::Partial(s)
                }
            }
        }
    };
    run.inputs.push(Input {
        family: Family::Manifest,
        file: MANIFEST_FILE.into(),
        state,
    });
    Ok(())
}

/// Read a JSON-lines input; records its state (Unreadable / Missing, or Loaded as a
/// placeholder that the caller refines with [`set_state`]).
fn read_jsonl<T: serde::de::DeserializeOwned>(
    dir: &Path,
    file: &str,
    format: &str,
    run: &mut RunData,
    family: Family,
) -> Option<JsonlFile<T>> {
    let p = dir.join(file);
    let (state, out) = if !p.is_file() {
        (InputState::Missing, None)
    } else {
        match read_jsonl_file::<T>(&p, format) {
            Err(e) => (runlog_state(e), None),
            Ok(f) => (InputState::Loaded(String::new()), Some(f)),
        }
    };
    run.inputs.push(Input {
        family,
        file: file.into(),
        state,
    });
    out
}

fn set_state(run: &mut RunData, family: Family, mut text: String, partial: bool, cut: bool) {
    if cut {
        text.push_str("; the last line was cut short (killed run) and is left out");
    }
    if let Some(i) = run.inputs.iter_mut().rev().find(|i| i.family == family) {
        i.state = if partial {
            InputState::Partial(text)
        } else {
            InputState::Loaded(text)
        };
    }
}

/// Token spans: a decode token spans from the previous token's sample (its `gap_ns`), token 0
/// from its generation's prefill start (else from its pass start).
fn token_spans(recs: &[TokenRecord], stages: &[StageSpan]) -> Vec<TokenSpan> {
    let prefill_start = |gen: u32| {
        stages
            .iter()
            .filter(|s| s.name == "prefill" && s.gen == Some(gen))
            .map(|s| s.start_ns)
            .min()
    };
    recs.iter()
        .map(|t| {
            let decode = t.phase == "decode";
            let start = if decode && t.gap_ns > 0 {
                t.t_ns.saturating_sub(t.gap_ns)
            } else if !decode {
                prefill_start(t.gen)
                    .filter(|&s| s <= t.t_ns)
                    .unwrap_or_else(|| t.t_ns.saturating_sub(t.pass_ns + t.sample_ns))
            } else {
                t.t_ns.saturating_sub(t.pass_ns + t.sample_ns)
            };
            TokenSpan {
                gen: t.gen,
                index: t.index.min(u32::MAX as u64) as u32,
                phase: if decode {
                    Phase::Decode
                } else {
                    Phase::Prefill
                },
                start_ns: start,
                end_ns: t.t_ns,
                pass_ns: t.pass_ns,
                storage_read_bytes: t.storage_read_bytes,
                streamed_bytes: t.streamed_bytes,
                stall_ns: t.stall_ns,
                rss_bytes: t.rss_bytes,
            }
        })
        .collect()
}

/// Pair `submit`/`complete` events into requests (by chunk and offset, oldest submit first; a
/// retried read's earlier submits are dropped and counted) and `wait_begin`/`wait_end` into
/// stalls (by chunk).
fn io_requests(recs: &[IoRecord]) -> (Vec<IoRequest>, Vec<Stall>, String) {
    let mut open: HashMap<(u32, u64), VecDeque<(u64, &IoRecord)>> = HashMap::new();
    let mut waits: HashMap<u32, u64> = HashMap::new();
    let mut reqs = Vec::new();
    let mut stalls = Vec::new();
    let (mut retried, mut unmatched, mut unknown) = (0usize, 0usize, 0usize);
    let mut next_id = 0u64;
    for e in recs {
        match e.kind.as_str() {
            "submit" => {
                next_id += 1;
                open.entry((e.chunk, e.offset))
                    .or_default()
                    .push_back((next_id, e));
            }
            "complete" => match open.get_mut(&(e.chunk, e.offset)) {
                Some(q) if !q.is_empty() => {
                    let (id, s) = q.pop_front().expect("not empty");
                    // Later submits of the same range before this completion are retries.
                    retried += q.len();
                    q.clear();
                    reqs.push(IoRequest {
                        id,
                        chunk: e.chunk,
                        offset: e.offset,
                        bytes: e.bytes,
                        slot: (s.slot != SLOT_NONE).then_some(s.slot),
                        submit_ns: s.t_ns,
                        complete_ns: e.t_ns.max(s.t_ns),
                    });
                }
                _ => unmatched += 1,
            },
            "wait_begin" => {
                waits.insert(e.chunk, e.t_ns);
            }
            "wait_end" => match waits.remove(&e.chunk) {
                Some(b) => stalls.push(Stall {
                    kind: StallKind::StreamWait,
                    start_ns: b,
                    end_ns: e.t_ns.max(b),
                    what: e.chunk as u64,
                    layer: None,
                    op: None,
                    stage: String::new(),
                }),
                None => unmatched += 1,
            },
            _ => unknown += 1,
        }
    }
    let in_flight: usize = open.values().map(|q| q.len()).sum();
    reqs.sort_by_key(|r| (r.submit_ns, r.id));
    let bytes: u64 = reqs.iter().map(|r| r.bytes).sum();
    let direct = reqs.iter().filter(|r| r.chunk == CHUNK_DIRECT).count();
    let mut text = format!(
        "{} event(s): {} read(s) ({}), {} of them direct, {} stall(s)",
        recs.len(),
        reqs.len(),
        crate::util::human_bytes(bytes),
        direct,
        stalls.len()
    );
    if retried > 0 {
        text.push_str(&format!("; {retried} retried submit(s)"));
    }
    if in_flight > 0 {
        text.push_str(&format!("; {in_flight} read(s) never completed"));
    }
    if unmatched > 0 {
        text.push_str(&format!(
            "; {unmatched} unmatched complete/wait_end event(s)"
        ));
    }
    if unknown > 0 {
        text.push_str(&format!("; {unknown} event(s) of an unknown kind ignored"));
    }
    (reqs, stalls, text)
}

/// Ops (records grouped per op call) and weight accesses per (token, tensor).
fn ops_and_accesses(d: &tensor_trace::TraceData) -> (Vec<OpSpan>, Vec<TensorAccess>) {
    let execs = tensor_trace::ops(d);
    let ops = execs
        .iter()
        .map(|o| {
            let r = o.first;
            OpSpan {
                gen: r.gen as u32,
                token: r.token,
                phase: if r.phase == 0 {
                    Phase::Prefill
                } else {
                    Phase::Decode
                },
                layer: o.layer(),
                op: tensor_trace::op_name(r.op).to_string(),
                thread: r.thread,
                start_ns: r.t_ns,
                end_ns: r.t_ns + r.dur_ns,
                weight_bytes: o.weight_bytes(),
            }
        })
        .collect();
    let mut acc: BTreeMap<(u16, u32, u32), (u32, u64)> = BTreeMap::new();
    for r in d.records.iter().filter(|r| r.tensor != NO_TENSOR) {
        let e = acc.entry((r.gen, r.token, r.tensor)).or_default();
        e.0 += 1;
        e.1 += r.bytes;
    }
    let accesses = acc
        .into_iter()
        .map(|((gen, token, tensor), (count, bytes))| {
            let name = d
                .header
                .tensors
                .get(tensor as usize)
                .map(|t| t.name.clone())
                .unwrap_or_else(|| format!("tensor#{tensor}"));
            TensorAccess {
                gen: gen as u32,
                token,
                tensor: name,
                count,
                bytes,
            }
        })
        .collect();
    (ops, accesses)
}

fn stage_name(id: &str) -> String {
    id.trim()
        .parse::<u8>()
        .ok()
        .and_then(Stage::from_id)
        .map(|s| s.name().to_string())
        .unwrap_or_else(|| format!("stage#{}", id.trim()))
}

/// `major:minor` of a kernel dev_t as bpftrace prints it (`major << 20 | minor`).
fn dev_name(dev: &str) -> String {
    match dev.parse::<u64>() {
        Ok(d) => format!("{}:{}", d >> 20, d & 0xfffff),
        Err(_) => dev.to_string(),
    }
}

/// Put one bpftrace output into the run: rows on CLOCK_MONOTONIC, END maps as histograms and
/// keyed values. Returns the input's state.
fn bpf_into(o: &BpfOutput, file: &str, run: &mut RunData) -> InputState {
    // The engine's alignment (clock_sync rows); without rows, the manifest's offset.
    let fallback = run
        .manifest
        .as_ref()
        .map(|m| m.clock.boottime_minus_monotonic_ns as i128);
    let synced = o.boot_offset_ns().is_some();
    let to_mono = |b: u64| -> Option<u64> {
        if synced {
            o.to_monotonic(b)
        } else {
            fallback.and_then(|off| u64::try_from(b as i128 - off).ok())
        }
    };
    let mut placed = 0usize;
    let mut unplaced = 0usize;
    let mut other = 0usize;
    let u = |r: &BpfRow, c: &str| r.get_u64(c);
    for r in &o.rows {
        let stage = r.get("stage").map(stage_name).unwrap_or_default();
        let ok = match r.kind.as_str() {
            "rq" => match (
                u(r, "issue_ns").and_then(to_mono),
                u(r, "complete_ns").and_then(to_mono),
            ) {
                (Some(a), Some(b)) => {
                    run.block_io.push(BlockIo {
                        issue_ns: a,
                        complete_ns: b.max(a),
                        dev: dev_name(r.get("dev").unwrap_or("")),
                        sector: u(r, "sector").unwrap_or(0),
                        bytes: u(r, "bytes").unwrap_or(0),
                        rwbs: r.get("rwbs").unwrap_or("").to_string(),
                        stage,
                    });
                    true
                }
                _ => false,
            },
            "major" | "offcpu" | "rd" => {
                match (u(r, "start_ns").and_then(to_mono), u(r, "dur_ns")) {
                    (Some(a), Some(d)) => {
                        let tid = u(r, "tid").unwrap_or(0) as u32;
                        let label = match r.kind.as_str() {
                            "major" => "major fault".to_string(),
                            "offcpu" => format!("off-CPU {}", r.get("state").unwrap_or("?")),
                            _ => format!(
                                "{} fd {} {} B",
                                r.get("syscall").unwrap_or("read"),
                                r.get("fd").unwrap_or("?"),
                                r.get("bytes").unwrap_or("?")
                            ),
                        };
                        if r.kind == "major" {
                            run.stalls.push(Stall {
                                kind: StallKind::MajorFault,
                                start_ns: a,
                                end_ns: a + d,
                                what: tid as u64,
                                layer: None,
                                op: None,
                                stage: stage.clone(),
                            });
                        }
                        run.kernel.push(KernelSpan {
                            kind: r.kind.clone(),
                            tid,
                            start_ns: a,
                            end_ns: a + d,
                            label,
                            stage,
                        });
                        true
                    }
                    _ => false,
                }
            }
            "uring" => match (
                u(r, "submit_ns").and_then(to_mono),
                u(r, "complete_ns").and_then(to_mono),
            ) {
                (Some(a), Some(b)) => {
                    run.kernel.push(KernelSpan {
                        kind: "uring".into(),
                        tid: 0,
                        start_ns: a,
                        end_ns: b.max(a),
                        label: format!(
                            "io_uring op {} res {}",
                            r.get("opcode").unwrap_or("?"),
                            r.get("res").unwrap_or("?")
                        ),
                        stage,
                    });
                    true
                }
                _ => false,
            },
            _ => {
                other += 1;
                continue;
            }
        };
        if ok {
            placed += 1;
        } else {
            unplaced += 1;
        }
    }
    let (hists, maps) = maps_from_bpf(o, file);
    let mut s = format!(
        "script {}: {} row(s) placed on the engine clock, {} histogram(s), {} map(s)",
        if o.script.is_empty() { "?" } else { &o.script },
        placed,
        hists.len(),
        maps.len()
    );
    if !synced && placed > 0 {
        s.push_str("; no clock_sync rows: aligned with the manifest's boottime offset");
        run.notes.push(format!(
            "{file}: no clock_sync rows; bpftrace times aligned with the manifest's boottime_minus_monotonic_ns"
        ));
    }
    if unplaced > 0 {
        s.push_str(&format!(
            "; {unplaced} row(s) left out (no clock_sync row and no manifest to align them)"
        ));
        run.notes.push(format!(
            "{file}: {unplaced} row(s) left out: nothing relates their CLOCK_BOOTTIME times to the engine's clock"
        ));
    }
    if other > 0 {
        s.push_str(&format!("; {other} row(s) of other kinds not drawn"));
    }
    if o.lost_events > 0 {
        s.push_str(&format!("; bpftrace lost {} event(s)", o.lost_events));
    }
    run.histograms.extend(hists);
    run.maps.extend(maps);
    InputState::Loaded(s)
}

/// The END maps of a bpftrace output as histograms (`hist`/`lhist` bucket arrays) and keyed
/// values (counts, sums, `stats`), with stage ids in keys replaced by stage names (and
/// `offcpu`'s state codes by R/S/D). Stack-keyed maps (`@samples`) are left to the flamegraph.
pub fn maps_from_bpf(o: &BpfOutput, file: &str) -> (Vec<Histogram>, Vec<KeyedValues>) {
    use serde_json::Value;
    let mut hists = Vec::new();
    let mut maps = Vec::new();
    let key_name = |map: &str, k: &str| -> String {
        let mut parts: Vec<String> = k.split(',').map(|p| p.trim().to_string()).collect();
        if let Some(first) = parts.first_mut() {
            *first = stage_name(first);
        }
        if map.starts_with("@offcpu") {
            if let Some(st) = parts.get_mut(1) {
                *st = match st.as_str() {
                    "0" => "R".into(),
                    "1" => "S".into(),
                    "2" => "D".into(),
                    "3" => "other".into(),
                    x => x.to_string(),
                };
            }
        }
        parts.join(", ")
    };
    for (name, v) in &o.maps {
        match v {
            Value::Array(_) => {
                if let Some(b) = buckets(v) {
                    hists.push(Histogram {
                        name: name.clone(),
                        file: file.into(),
                        buckets: b,
                    });
                }
            }
            Value::Number(n) => maps.push(KeyedValues {
                name: name.clone(),
                file: file.into(),
                entries: vec![(String::new(), n.as_f64().unwrap_or(0.0))],
            }),
            Value::Object(obj) => {
                if obj.keys().any(|k| k.contains('\n')) {
                    continue; // stacks
                }
                if obj.values().all(|x| x.is_array()) {
                    for (k, arr) in obj {
                        if let Some(b) = buckets(arr) {
                            hists.push(Histogram {
                                name: format!("{name}[{}]", key_name(name, k)),
                                file: file.into(),
                                buckets: b,
                            });
                        }
                    }
                    continue;
                }
                // A stats() value is {count, average, total}; keyed maps hold numbers or stats.
                let is_stats = obj.contains_key("count") && obj.contains_key("average");
                let mut entries = Vec::new();
                if is_stats {
                    flatten("", v, &mut entries);
                } else {
                    for (k, x) in obj {
                        flatten(&key_name(name, k), x, &mut entries);
                    }
                }
                if !entries.is_empty() {
                    maps.push(KeyedValues {
                        name: name.clone(),
                        file: file.into(),
                        entries,
                    });
                }
            }
            _ => {}
        }
    }
    (hists, maps)
}

fn buckets(v: &serde_json::Value) -> Option<Vec<Bucket>> {
    let arr = v.as_array()?;
    arr.iter()
        .map(|b| {
            Some(Bucket {
                lo: b.get("min").and_then(|x| x.as_i64()),
                hi: b.get("max").and_then(|x| x.as_i64()),
                count: b.get("count")?.as_u64()?,
            })
        })
        .collect()
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, f64)>) {
    match v {
        serde_json::Value::Number(n) => out.push((prefix.to_string(), n.as_f64().unwrap_or(0.0))),
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, x, out);
            }
        }
        _ => {}
    }
}

/// Count well-formed (`stack COUNT`) and malformed non-empty lines of folded stacks.
pub(crate) fn check_folded(text: &str) -> (usize, usize) {
    let mut good = 0;
    let mut bad = 0;
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        match l.trim_end().rsplit_once(' ') {
            Some((stack, n)) if !stack.is_empty() && n.parse::<u64>().is_ok() => good += 1,
            _ => bad += 1,
        }
    }
    (good, bad)
}

/// Name the layer and op each stall happened in: the op running at its start on the stalled
/// thread (faults), or on any compute thread for stream waits — else the op that started right
/// after it (a wait before the op's clock starts), within 1 ms.
fn attribute_stalls(run: &mut RunData) {
    if run.ops.is_empty() || run.stalls.is_empty() {
        return;
    }
    let mut ops: Vec<&OpSpan> = run.ops.iter().collect();
    ops.sort_by_key(|o| o.start_ns);
    for s in &mut run.stalls {
        let thread = (s.kind == StallKind::MajorFault).then_some(s.what as u32);
        let on = |o: &&&OpSpan| thread.is_none_or(|t| o.thread == t);
        let i = ops.partition_point(|o| o.start_ns <= s.start_ns);
        let containing = ops[..i]
            .iter()
            .rev()
            .take(64)
            .find(|o| on(o) && o.end_ns > s.start_ns);
        let next = ops[i..]
            .iter()
            .take(64)
            .find(|o| on(o) && o.start_ns <= s.end_ns + 1_000_000);
        if let Some(o) = containing.or(next) {
            s.layer = o.layer;
            s.op = Some(o.op.clone());
        }
    }
}

/// Counters the run's records support: cumulative storage reads, streamed bytes and RSS
/// (tokens), reads in flight (io), block requests in flight and cumulative major faults
/// (bpftrace).
fn add_counters(run: &mut RunData) {
    let mut toks: Vec<&TokenSpan> = run.tokens.iter().collect();
    toks.sort_by_key(|t| t.end_ns);
    if toks.iter().any(|t| t.storage_read_bytes.is_some()) {
        let mut acc = 0u64;
        let pts = toks
            .iter()
            .map(|t| {
                acc += t.storage_read_bytes.unwrap_or(0);
                (t.end_ns, acc as f64)
            })
            .collect();
        run.counters.push(CounterSeries {
            name: "storage read bytes (cumulative)".into(),
            unit: Unit::Bytes,
            points: pts,
        });
    }
    if toks.iter().any(|t| t.streamed_bytes > 0) {
        let mut acc = 0u64;
        let pts = toks
            .iter()
            .map(|t| {
                acc += t.streamed_bytes;
                (t.end_ns, acc as f64)
            })
            .collect();
        run.counters.push(CounterSeries {
            name: "streamed bytes (cumulative)".into(),
            unit: Unit::Bytes,
            points: pts,
        });
    }
    if toks.iter().any(|t| t.rss_bytes.is_some()) {
        run.counters.push(CounterSeries {
            name: "RSS bytes".into(),
            unit: Unit::Bytes,
            points: toks
                .iter()
                .filter_map(|t| Some((t.end_ns, t.rss_bytes? as f64)))
                .collect(),
        });
    }
    let in_flight = |spans: Vec<(u64, u64)>| -> Vec<(u64, f64)> {
        let mut ev: Vec<(u64, i64)> = spans
            .iter()
            .flat_map(|&(a, b)| [(a, 1i64), (b, -1i64)])
            .collect();
        ev.sort_by_key(|e| (e.0, e.1));
        let mut n = 0i64;
        let mut pts: Vec<(u64, f64)> = Vec::new();
        for (t, d) in ev {
            n += d;
            match pts.last_mut() {
                Some(p) if p.0 == t => p.1 = n as f64,
                _ => pts.push((t, n as f64)),
            }
        }
        pts
    };
    if !run.io.is_empty() {
        run.counters.push(CounterSeries {
            name: "stream reads in flight".into(),
            unit: Unit::Count,
            points: in_flight(
                run.io
                    .iter()
                    .map(|r| (r.submit_ns, r.complete_ns))
                    .collect(),
            ),
        });
    }
    if !run.block_io.is_empty() {
        run.counters.push(CounterSeries {
            name: "block requests in flight".into(),
            unit: Unit::Count,
            points: in_flight(
                run.block_io
                    .iter()
                    .map(|b| (b.issue_ns, b.complete_ns))
                    .collect(),
            ),
        });
    }
    let mut faults: Vec<u64> = run
        .kernel
        .iter()
        .filter(|k| k.kind == "major")
        .map(|k| k.start_ns)
        .collect();
    if !faults.is_empty() {
        faults.sort_unstable();
        run.counters.push(CounterSeries {
            name: "major faults (cumulative)".into(),
            unit: Unit::Count,
            points: faults
                .iter()
                .enumerate()
                .map(|(i, &t)| (t, (i + 1) as f64))
                .collect(),
        });
    }
    // Resident weights: one value per generation (the source's own figure), when there are any.
    if let (Some(m), Some(first), Some(last)) = (&run.manifest, toks.first(), toks.last()) {
        if let Some(g) = m.generations.first().filter(|g| g.resident_bytes > 0) {
            run.counters.push(CounterSeries {
                name: "resident weight bytes".into(),
                unit: Unit::Bytes,
                points: vec![
                    (first.start_ns, g.resident_bytes as f64),
                    (last.end_ns, g.resident_bytes as f64),
                ],
            });
        }
    }
}

#[cfg(test)]
mod tests;
