//! Runs built for tests through the engine's own writers: manifests (`Manifest`, `RunDir`),
//! JSON-lines records (`JsonlWriter` with `StageRecord`/`TokenRecord`/`IoRecord`) and
//! tensor traces (`TraceHeader::encode`/`TraceRecord::encode`), plus bpftrace output in its
//! documented row layout: small deterministic runs for unit tests (the integration tests use
//! runs made by the real engine, `tools/tests/common`).

use crate::manifest_compat::{FileEntry, Manifest, RunStatus, MANIFEST_FILE};
use crate::run::RunData;
use flashslim::gguf::ModelIdentity;
use flashslim::runlog::manifest::PlanInfo;
use flashslim::runlog::records::{
    IoRecord, JsonlWriter, StageRecord, TokenRecord, UsageDelta, IO_FORMAT, STAGES_FORMAT,
    TOKENS_FORMAT,
};
use flashslim::runlog::{Metrics, RunDir};
use flashslim::trace::{
    Access, MemSource, TraceHeader, TraceRecord, TraceTensor, FLAG_COMPLETE, NO_LAYER, NO_OFFSET,
    NO_SLOT, NO_TENSOR, VERSION_MAJOR, VERSION_MINOR,
};
use std::io::Write;
use std::path::{Path, PathBuf};

/// xorshift64*: deterministic jitter.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `[lo, hi)`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
}

/// Deterministic pseudo-random bytes.
pub fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        v.extend_from_slice(&rng.next().to_le_bytes());
    }
    v.truncate(n);
    v
}

/// A manifest as the engine writes it (`Manifest::start`), with `status`, `files` and, unless
/// running, the end time and metrics filled in.
pub fn engine_manifest(run_id: &str, status: RunStatus, files: Vec<FileEntry>) -> Manifest {
    let mut m = Manifest::start(
        run_id,
        "run",
        serde_json::json!({"run": {"weights": "mmap", "n_predict": 4}}),
    );
    m.status = status;
    if status != RunStatus::Running {
        m.mark_end();
        m.metrics = Some(Metrics::default());
    }
    m.files = files;
    m
}

/// Write a device-side run directory `root/dir_name/` holding `files` and an engine manifest
/// (written last, atomically, by the engine's `RunDir::write_manifest`). Returns the manifest.
pub fn write_device_run(
    root: &Path,
    dir_name: &str,
    status: RunStatus,
    files: &[(&str, Vec<u8>)],
) -> std::io::Result<Manifest> {
    let dir = root.join(dir_name);
    std::fs::create_dir_all(&dir)?;
    for (path, data) in files {
        let p = dir.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, data)?;
    }
    let rd = RunDir {
        path: dir.clone(),
        id: dir_name.to_string(),
    };
    let listed = rd.list_files().map_err(std::io::Error::other)?;
    let m = engine_manifest(dir_name, status, listed);
    rd.write_manifest(&m).map_err(std::io::Error::other)?;
    Ok(m)
}

/// Re-list the files of an existing run directory in its manifest (after a test added or
/// changed files), keeping every other field; written by the engine's writer.
pub fn relist_manifest(dir: &Path) -> std::io::Result<Manifest> {
    let mut m = crate::manifest_compat::read_dir_manifest(dir).map_err(std::io::Error::other)?;
    let rd = RunDir {
        path: dir.to_path_buf(),
        id: m.run_id.clone(),
    };
    m.files = rd.list_files().map_err(std::io::Error::other)?;
    rd.write_manifest(&m).map_err(std::io::Error::other)?;
    Ok(m)
}

/// Weight access mode of a synthetic run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Streamed weights: explicit chunk reads that overlap compute, some stalls (`io.jsonl`).
    Stream,
    /// mmap'd weights: no explicit reads, major faults (bpftrace) on the first pass.
    Mmap,
}

/// Per-layer tensors of the synthetic model (SmolLM2's nine).
const LAYER_TENSORS: [&str; 9] = [
    "attn_norm",
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_norm",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
];

/// The ops of one layer: op kind id and the layer tensors it reads (indices into
/// [`LAYER_TENSORS`]), `None` for KV/activation-only ops.
const LAYER_OPS: [(u8, &[usize]); 8] = [
    (1, &[0]),       // attn_norm
    (2, &[1, 2, 3]), // qkv
    (3, &[]),        // rope (KV write)
    (4, &[]),        // attention (KV read)
    (5, &[4]),       // attn_out
    (6, &[5]),       // ffn_norm
    (7, &[6, 7]),    // ffn_gate_up
    (8, &[8]),       // ffn_down
];

/// The tensor table of a synthetic model with `layers` layers: `token_embd`, the layers,
/// `output_norm`, at consecutive offsets.
pub fn synthetic_tensors(layers: u32) -> Vec<TraceTensor> {
    let mut v = Vec::new();
    let mut off = 1u64 << 20;
    let mut push = |name: String, size: u64| {
        v.push(TraceTensor {
            name,
            offset: off,
            size,
            ty: 3,
        });
        off += size;
    };
    push("token_embd.weight".into(), 8 << 20);
    for l in 0..layers {
        for (i, t) in LAYER_TENSORS.iter().enumerate() {
            let size = if i == 0 || i == 5 {
                2304
            } else {
                300_000 + 4096 * i as u64
            };
            push(format!("blk.{l}.{t}.weight"), size);
        }
    }
    push("output_norm.weight".into(), 2304);
    v
}

fn trace_header(tensors: Vec<TraceTensor>, run_id: &str, start_ns: u64) -> TraceHeader {
    TraceHeader {
        version_major: VERSION_MAJOR,
        version_minor: VERSION_MINOR,
        record_size: 64,
        header_size: 0,
        flags: 0,
        record_count: 0,
        dropped: 0,
        start_ns,
        model: ModelIdentity {
            file_size: 100 << 20,
            header_sha256: "ab".repeat(32),
        },
        run_id: run_id.chars().take(16).collect(),
        tensors,
    }
}

/// Encode a trace file: header (complete or not) and records, optionally cutting the last
/// `cut` bytes (a killed writer or an interrupted copy).
fn encode_trace(
    mut h: TraceHeader,
    recs: &[TraceRecord],
    complete: bool,
    cut: Option<usize>,
) -> Vec<u8> {
    if complete {
        h.flags = FLAG_COMPLETE;
        h.record_count = recs.len() as u64;
    }
    let mut b = h.encode();
    for r in recs {
        b.extend_from_slice(&r.encode());
    }
    if let Some(c) = cut {
        b.truncate(b.len().saturating_sub(c));
    }
    b
}

/// A small trace at `path` (through the engine's encoders): `tokens` tokens over `layers`
/// layers, each token `embed`, per layer `qkv` (3 weights), then `output`. `complete` sets the
/// header's finished flag; `cut` drops that many bytes from the end.
pub fn write_trace(path: &Path, tokens: u32, layers: u32, complete: bool, cut: Option<usize>) {
    let tensors = synthetic_tensors(layers);
    let mut recs = Vec::new();
    let mut t = 1_000_000u64;
    for k in 0..tokens {
        let rec = |op: u8, layer: u16, tensor: u32, dur: u64, t: u64| TraceRecord {
            t_ns: t,
            dur_ns: dur,
            file_offset: tensors
                .get(tensor as usize)
                .map(|x| x.offset)
                .unwrap_or(NO_OFFSET),
            bytes: tensors.get(tensor as usize).map(|x| x.size).unwrap_or(4096),
            token: k,
            pos: k,
            tensor,
            thread: 7,
            layer,
            gen: 0,
            slot: NO_SLOT,
            op,
            phase: (k > 0) as u8,
            source: MemSource::Mmap,
            access: Access::Read,
        };
        recs.push(rec(0, NO_LAYER, 0, 1000, t));
        t += 1000;
        for l in 0..layers {
            for j in 1..4 {
                recs.push(rec(2, l as u16, 1 + l * 9 + j, 5000, t));
            }
            t += 5000;
        }
        recs.push(rec(10, NO_LAYER, 0, 3000, t));
        t += 3000;
    }
    let b = encode_trace(
        trace_header(tensors, "test", 1_000_000),
        &recs,
        complete,
        cut,
    );
    std::fs::write(path, b).expect("write trace");
}

/// The shape of a synthetic run directory.
#[derive(Clone, Copy, Debug)]
pub struct Synth {
    /// Weights mode.
    pub mode: Mode,
    /// Layers.
    pub layers: u32,
    /// Generated tokens (token 0 from the prefill).
    pub tokens: u32,
    /// RNG seed.
    pub seed: u64,
}

/// BOOTTIME − MONOTONIC of synthetic runs (3 s suspended).
pub const SYNTH_BOOT_OFFSET: u64 = 3_000_000_000;
/// CLOCK_MONOTONIC at a synthetic run's start.
pub const SYNTH_BASE: u64 = 5_000_000_000_000;
/// The device bound a synthetic stream run's manifest carries.
pub const SYNTH_DEVICE_BPS: f64 = 900.0e6;
/// The generation thread of synthetic runs.
pub const SYNTH_TID: u32 = 4242;
/// RSS of a synthetic run at token 0.
pub const RSS_BASE: u64 = 60 << 20;
/// RSS growth per token of a synthetic run (the KV cache filling).
pub const RSS_STEP: u64 = 36 << 10;

fn usage(major: u64) -> UsageDelta {
    UsageDelta {
        major_faults: major,
        ..UsageDelta::default()
    }
}

/// Write a synthetic run directory `parent/<name>/` through the engine's writers: manifest,
/// `stages.jsonl`, `tokens.jsonl`, `tensor-trace.bin`, `io.jsonl` (stream) or bpftrace
/// `faults` rows (mmap), `bpf-blockio.ndjson`, `stacks.folded`. Returns the directory.
pub fn write_synthetic_run(parent: &Path, name: &str, s: Synth) -> PathBuf {
    let mut rng = Rng(s.seed | 1);
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let rd = RunDir {
        path: dir.clone(),
        id: name.to_string(),
    };
    let tensors = synthetic_tensors(s.layers);
    let tid = SYNTH_TID;
    let mut stages: Vec<StageRecord> = Vec::new();
    let stage = |name: &str, id: u8, index: Option<u64>, depth: u32, a: u64, b: u64, major: u64| {
        StageRecord {
            stage: name.into(),
            id,
            gen: (id >= 4).then_some(0),
            index,
            depth,
            start_ns: a,
            end_ns: b,
            tid,
            process: usage(major),
            thread: usage(major),
            unfinished: false,
        }
    };
    let mut tokens: Vec<TokenRecord> = Vec::new();
    let mut io: Vec<IoRecord> = Vec::new();
    let mut recs: Vec<TraceRecord> = Vec::new();
    let mut faults: Vec<(u64, u64, u64)> = Vec::new(); // (start, dur, addr)
    let mut rq: Vec<(u64, u64, u64, u64, u8)> = Vec::new(); // (issue, complete, sector, bytes, stage)

    let mut t = SYNTH_BASE;
    let run_start = t;
    t += 10_000;
    let load_end = t + 40_000_000;
    stages.push(stage("load_model", 1, None, 1, t, load_end, 0));
    t = load_end + 1_000;
    let mut chunk_no = 0u32;
    let mut prev_token_t = 0u64;
    let mut prefill_start = 0u64;
    for k in 0..s.tokens {
        let prefill = k == 0;
        let pass_start = t;
        if prefill {
            prefill_start = t;
        }
        let scale = if prefill { 5 } else { 1 };
        let mut streamed = 0u64;
        let mut stall_total = 0u64;
        let mut pass_faults = 0u64;
        let rec = |op: u8,
                   layer: u16,
                   tensor: u32,
                   src: MemSource,
                   slot: u16,
                   a: u64,
                   d: u64,
                   bytes: u64| TraceRecord {
            t_ns: a,
            dur_ns: d,
            file_offset: if tensor == NO_TENSOR {
                NO_OFFSET
            } else {
                tensors[tensor as usize].offset
            },
            bytes,
            token: k,
            pos: if prefill { 0 } else { 4 + k },
            tensor,
            thread: tid,
            layer,
            gen: 0,
            slot,
            op,
            phase: (!prefill) as u8,
            source: src,
            access: if op == 3 { Access::Write } else { Access::Read },
        };
        // embed: a few rows of token_embd.
        let d = rng.range(20_000, 40_000);
        recs.push(rec(
            0,
            NO_LAYER,
            0,
            MemSource::Resident,
            NO_SLOT,
            t,
            d,
            576 * 2 * scale,
        ));
        t += d;
        for l in 0..s.layers {
            for &(op, ts) in LAYER_OPS.iter() {
                let heavy = !ts.is_empty() && !matches!(op, 1 | 6);
                let mut d = if heavy {
                    rng.range(150_000, 400_000)
                } else {
                    rng.range(10_000, 40_000)
                } * scale;
                let ids: Vec<u32> = ts.iter().map(|i| 1 + l * 9 + *i as u32).collect();
                let bytes: u64 = ids.iter().map(|&i| tensors[i as usize].size).sum();
                let (src, slot) = match (s.mode, heavy) {
                    (Mode::Stream, true) => (MemSource::StreamSlot, (chunk_no % 4) as u16),
                    (Mode::Stream, false) => (MemSource::Resident, NO_SLOT),
                    (Mode::Mmap, _) => (MemSource::Mmap, NO_SLOT),
                };
                if s.mode == Mode::Stream && heavy {
                    // The chunk was submitted while earlier ops ran; it may complete late.
                    let lead = rng.range(300_000, 1_200_000);
                    let submit = t.saturating_sub(lead).max(pass_start);
                    let complete = submit + rng.range(500_000, 1_400_000);
                    let off = tensors[ids[0] as usize].offset / 4096 * 4096;
                    let len = bytes.div_ceil(4096) * 4096;
                    let ev = |t_ns: u64, kind: &str| IoRecord {
                        t_ns,
                        kind: kind.into(),
                        chunk: chunk_no,
                        offset: off,
                        bytes: len,
                        slot: chunk_no % 4,
                        gen: 0,
                        token: k as u64,
                    };
                    io.push(ev(submit, "submit"));
                    io.push(ev(complete, "complete"));
                    streamed += len;
                    rq.push((
                        submit + 8_000,
                        complete - 5_000,
                        off / 512,
                        len,
                        if prefill { 4 } else { 5 },
                    ));
                    if complete > t {
                        io.push(ev(t, "wait_begin"));
                        io.push(ev(complete, "wait_end"));
                        stall_total += complete - t;
                        t = complete;
                    }
                    chunk_no += 1;
                }
                if s.mode == Mode::Mmap && prefill && heavy {
                    // First touch of an mmap'd weight: a major fault inside the op.
                    let fd = rng.range(200_000, 900_000);
                    faults.push((
                        t + 1_000,
                        fd,
                        0x7f00_0000_0000 + tensors[ids[0] as usize].offset,
                    ));
                    rq.push((
                        t + 20_000,
                        t + 20_000 + fd / 2,
                        tensors[ids[0] as usize].offset / 512,
                        131_072,
                        4,
                    ));
                    d += fd;
                    pass_faults += 1;
                }
                if ids.is_empty() {
                    let kv = if op == 3 {
                        2 * 192 * 2 * scale
                    } else {
                        (4 + k as u64) * 2 * 192 * 2
                    };
                    recs.push(rec(
                        op,
                        l as u16,
                        NO_TENSOR,
                        MemSource::Kv,
                        NO_SLOT,
                        t,
                        d,
                        kv,
                    ));
                } else {
                    if matches!(op, 1 | 6) {
                        recs.push(rec(
                            op,
                            l as u16,
                            NO_TENSOR,
                            MemSource::Activation,
                            NO_SLOT,
                            t,
                            d,
                            576 * 4 * scale,
                        ));
                    }
                    for &i in &ids {
                        recs.push(rec(
                            op,
                            l as u16,
                            i,
                            src,
                            slot,
                            t,
                            d,
                            tensors[i as usize].size,
                        ));
                    }
                }
                t += d;
            }
        }
        let d = rng.range(20_000, 40_000);
        let norm = tensors.len() as u32 - 1;
        recs.push(rec(
            9,
            NO_LAYER,
            norm,
            MemSource::Resident,
            NO_SLOT,
            t,
            d,
            2304,
        ));
        t += d;
        let d = rng.range(400_000, 700_000);
        recs.push(rec(
            10,
            NO_LAYER,
            0,
            MemSource::Resident,
            NO_SLOT,
            t,
            d,
            tensors[0].size,
        ));
        t += d;
        let pass_end = t;
        let (name, id) = if prefill {
            ("prefill", 4)
        } else {
            ("decode", 5)
        };
        stages.push(stage(
            name,
            id,
            Some(k as u64),
            1,
            pass_start,
            pass_end,
            pass_faults,
        ));
        let sample = rng.range(40_000, 90_000);
        stages.push(stage(
            "sample",
            6,
            Some(k as u64),
            1,
            pass_end + 500,
            pass_end + 500 + sample,
            0,
        ));
        t = pass_end + 1_000 + sample;
        tokens.push(TokenRecord {
            gen: 0,
            index: k as u64,
            id: 100 + k,
            phase: if prefill { "prefill" } else { "decode" }.into(),
            t_ns: t,
            pass_ns: pass_end - pass_start,
            sample_ns: sample,
            gap_ns: if prefill { 0 } else { t - prev_token_t },
            storage_read_bytes: Some(streamed + pass_faults * 131_072),
            streamed_bytes: streamed,
            stall_ns: stall_total,
            rss_bytes: Some(RSS_BASE + k as u64 * RSS_STEP),
        });
        prev_token_t = t;
        t += 2_000;
    }
    let run_end = t + 5_000;
    stages.push(stage(
        "run",
        0,
        None,
        0,
        run_start,
        run_end,
        faults.len() as u64,
    ));

    let mut w = JsonlWriter::create(&rd.file("stages.jsonl"), STAGES_FORMAT).unwrap();
    for r in &stages {
        w.write(r).unwrap();
    }
    w.flush().unwrap();
    let mut w = JsonlWriter::create(&rd.file("tokens.jsonl"), TOKENS_FORMAT).unwrap();
    for r in &tokens {
        w.write(r).unwrap();
    }
    w.flush().unwrap();
    if s.mode == Mode::Stream {
        io.sort_by_key(|e| e.t_ns);
        let mut w = JsonlWriter::create(&rd.file("io.jsonl"), IO_FORMAT).unwrap();
        for r in &io {
            w.write(r).unwrap();
        }
        w.flush().unwrap();
    }
    let trace = encode_trace(
        trace_header(tensors.clone(), name, run_start),
        &recs,
        true,
        None,
    );
    std::fs::write(rd.file("tensor-trace.bin"), trace).unwrap();

    // bpftrace, in the documented row layout: clock_sync pairs (the first one late by 9 µs, as
    // the first uprobe hit is), block requests, and for mmap the major faults.
    let boot = |m: u64| m + SYNTH_BOOT_OFFSET;
    let printf = |row: String| {
        format!(
            "{{\"type\": \"printf\", \"data\": {}}}\n",
            serde_json::to_string(&format!("{row}\n")).unwrap()
        )
    };
    let syncs = [
        printf(format!(
            "clock_sync\t{}\t{}",
            boot(run_start) + 9_000,
            run_start
        )),
        printf(format!(
            "clock_sync\t{}\t{}",
            boot(prefill_start) + 40,
            prefill_start
        )),
    ];
    let mut b = String::from("{\"type\": \"attached_probes\", \"data\": {\"probes\": 8}}\n");
    b.push_str(&printf("format\tflashslim.bpf\t1\tblockio".into()));
    b.extend(syncs.iter().cloned());
    let mut by_stage: std::collections::BTreeMap<u8, u64> = Default::default();
    let mut lat = [0u64; 12];
    for &(i, c, sector, bytes, st) in &rq {
        b.push_str(&printf(format!(
            "rq\t{}\t{}\t266338304\t{sector}\t{bytes}\tR\t{st}",
            boot(i),
            boot(c)
        )));
        *by_stage.entry(st).or_default() += bytes;
        let us = (c - i) / 1000;
        lat[(64 - us.max(1).leading_zeros() as usize - 1).min(11)] += 1;
    }
    let hist: Vec<String> = lat
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, n)| {
            format!(
                "{{\"min\": {}, \"max\": {}, \"count\": {n}}}",
                1u64 << i,
                (2u64 << i) - 1
            )
        })
        .collect();
    let stage_map: Vec<String> = by_stage
        .iter()
        .map(|(k, v)| format!("\"{k}\": {v}"))
        .collect();
    b.push_str(&format!(
        "{{\"type\": \"map\", \"data\": {{\"@read_bytes\": {{{}}}}}}}\n",
        stage_map.join(", ")
    ));
    b.push_str(&format!(
        "{{\"type\": \"hist\", \"data\": {{\"@rq_lat_us\": [{}]}}}}\n",
        hist.join(", ")
    ));
    std::fs::write(rd.file("bpf-blockio.ndjson"), b).unwrap();
    if s.mode == Mode::Mmap {
        let mut b = String::from("{\"type\": \"attached_probes\", \"data\": {\"probes\": 8}}\n");
        b.push_str(&printf("format\tflashslim.bpf\t1\tfaults".into()));
        b.extend(syncs.iter().cloned());
        for &(st, d, addr) in &faults {
            b.push_str(&printf(format!(
                "major\t{}\t{d}\t{tid}\t{addr}\t4",
                boot(st)
            )));
        }
        b.push_str(&format!(
            "{{\"type\": \"map\", \"data\": {{\"@major\": {{\"4\": {}}}}}}}\n{{\"type\": \"map\", \"data\": {{\"@minor\": {{\"1\": 2300, \"4\": 1400, \"5\": {}}}}}}}\n",
            faults.len(),
            60 * s.tokens
        ));
        std::fs::write(rd.file("bpf-faults.ndjson"), b).unwrap();
    }
    std::fs::write(
        rd.file("stacks.folded"),
        "stage:decode;flashslim;flashslim::kernels::Kernels::matmul_multi 83\n\
         stage:decode;flashslim;flashslim::kernels::dequantize_row 21\n\
         stage:prefill;flashslim;flashslim::kernels::Kernels::matmul_multi 40\n\
         stage:load_model;flashslim;__memmove_avx512_unaligned_erms 2\n",
    )
    .unwrap();
    std::fs::write(rd.file("output.txt"), "synthetic\n").unwrap();

    let mode = if s.mode == Mode::Stream {
        "stream"
    } else {
        "mmap"
    };
    let mut m = Manifest::start(
        name,
        "profile",
        serde_json::json!({"run": {"weights": mode, "n_predict": s.tokens, "synthetic": true}}),
    );
    m.clock.start_monotonic_ns = run_start;
    m.clock.boottime_minus_monotonic_ns = SYNTH_BOOT_OFFSET;
    m.clock.end_monotonic_ns = Some(run_end);
    m.status = RunStatus::Complete;
    m.metrics = Some(Metrics {
        generations: 1,
        prompt_tokens: 5,
        generated_tokens: s.tokens as u64,
        ..Metrics::default()
    });
    if s.mode == Mode::Stream {
        m.budget_bytes = Some(24 << 20);
        m.plan = Some(PlanInfo {
            path: None,
            identity: None,
            device_bandwidth_bytes_per_s: Some(SYNTH_DEVICE_BPS),
        });
    }
    m.scripts
        .insert("blockio".into(), "bpf-blockio.ndjson".into());
    if s.mode == Mode::Mmap {
        m.scripts
            .insert("faults".into(), "bpf-faults.ndjson".into());
    }
    m.files = rd.list_files().unwrap();
    rd.write_manifest(&m).unwrap();
    dir
}

/// A synthetic run, written through the engine's writers into a temporary directory and loaded
/// back with [`crate::run::load`] (the records a real run directory would give).
pub fn synthetic_run(mode: Mode, layers: u32, tokens: u32, seed: u64) -> RunData {
    let t = tempfile_dir();
    let name = match mode {
        Mode::Stream => "synthetic-stream",
        Mode::Mmap => "synthetic-mmap",
    };
    let dir = write_synthetic_run(
        &t,
        name,
        Synth {
            mode,
            layers,
            tokens,
            seed,
        },
    );
    let r = crate::run::load(&dir).expect("synthetic run loads");
    let _ = std::fs::remove_dir_all(&t);
    r
}

fn tempfile_dir() -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "slim-testkit-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Append `text` to `path` (tests that damage files).
pub fn append(path: &Path, text: &[u8]) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text).unwrap();
}

/// The manifest file of a run directory.
pub fn manifest_path(dir: &Path) -> PathBuf {
    dir.join(MANIFEST_FILE)
}
