//! Synthetic data for tests and for the examples in `docs/tools.md`: a deterministic
//! [`RunData`] shaped like a real decode (stages, tokens, layered ops, overlapping reads,
//! stalls, counters, tensor accesses, bpftrace summaries, folded stacks), and a writer of
//! device-side run directories with a correct manifest.
//!
//! Nothing here parses anything: it builds the records the readers will produce. Phase 2
//! replaces the device-run writer in the pull test with a run made by the real engine.

use crate::manifest_compat::{FileEntry, Manifest, RunStatus, MANIFEST_FILE};
use crate::run::{
    BlockIo, Bucket, Clock, ClockSync, CounterSeries, Histogram, IoRequest, KeyedValues, OpSpan,
    Phase, RunData, StageSpan, Stall, TensorAccess, TokenSpan, Unit,
};
use crate::util::sha256_bytes;
use std::path::Path;

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

/// Weight access mode of a synthetic run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Streamed weights: explicit reads that overlap compute, some stalls.
    Stream,
    /// mmap'd weights: no explicit reads, more page faults, slower first token.
    Mmap,
}

const OPS: [&str; 8] = [
    "attn_norm",
    "qkv",
    "rope",
    "attention",
    "attn_out",
    "ffn_norm",
    "ffn_gate_up",
    "ffn_down",
];

/// A synthetic run with `layers` layers and `tokens` generated tokens.
pub fn synthetic_run(mode: Mode, layers: u32, tokens: u32, seed: u64) -> RunData {
    let mut rng = Rng(seed | 1);
    let base: u64 = 5_000_000_000_000; // a plausible CLOCK_MONOTONIC (~83 min of uptime)
    let boot_offset: u64 = 3_000_000_000; // BOOTTIME - MONOTONIC (3 s suspended)
    let mut r = RunData {
        label: match mode {
            Mode::Stream => "synthetic-stream".into(),
            Mode::Mmap => "synthetic-mmap".into(),
        },
        ..RunData::default()
    };
    let mut t = base;
    let load_end = t + 40_000_000 + if mode == Mode::Mmap { 0 } else { 25_000_000 };
    r.stages.push(StageSpan {
        name: "load_model".into(),
        thread: 1,
        start_ns: t,
        end_ns: load_end,
    });
    t = load_end + 1_000;
    let gen_start = t;
    let mut req_id = 0u64;
    let mut counters_res = Vec::new();
    let mut counters_buf = Vec::new();
    let mut counters_rss = Vec::new();
    for k in 0..tokens {
        let phase = if k == 0 {
            Phase::Prefill
        } else {
            Phase::Decode
        };
        let tok_start = t;
        // Embedding op (no layer).
        let e = t + rng.range(20_000, 40_000);
        r.ops.push(OpSpan {
            token: k,
            layer: None,
            op: "embed".into(),
            thread: 1,
            start_ns: t,
            end_ns: e,
        });
        t = e;
        for l in 0..layers {
            for (oi, op) in OPS.iter().enumerate() {
                let scale = if phase == Phase::Prefill { 6 } else { 1 };
                let heavy = matches!(*op, "qkv" | "ffn_gate_up" | "ffn_down" | "attn_out");
                let d = if heavy {
                    rng.range(150_000, 400_000)
                } else {
                    rng.range(10_000, 40_000)
                } * scale;
                // The streamed weights of the next heavy op are read while this one runs.
                if mode == Mode::Stream && heavy {
                    let lead = rng.range(300_000, 1_200_000);
                    let submit = t.saturating_sub(lead).max(tok_start);
                    let complete = submit + rng.range(500_000, 1_400_000);
                    req_id += 1;
                    let bytes = 256 * 1024 + 4096 * rng.range(0, 64);
                    r.io.push(IoRequest {
                        id: req_id,
                        offset: (l as u64 * 8 + oi as u64) * (1 << 20),
                        bytes,
                        slot: Some((req_id % 4) as u32),
                        submit_ns: submit,
                        complete_ns: complete,
                    });
                    if complete > t {
                        r.stalls.push(Stall {
                            start_ns: t,
                            end_ns: complete,
                            request: Some(req_id),
                            layer: Some(l),
                        });
                        t = complete;
                    }
                }
                r.ops.push(OpSpan {
                    token: k,
                    layer: Some(l),
                    op: op.to_string(),
                    thread: 1,
                    start_ns: t,
                    end_ns: t + d,
                });
                t += d;
            }
        }
        let e = t + rng.range(100_000, 200_000);
        r.ops.push(OpSpan {
            token: k,
            layer: None,
            op: "output".into(),
            thread: 1,
            start_ns: t,
            end_ns: e,
        });
        t = e + rng.range(5_000, 20_000); // sampling
        r.tokens.push(TokenSpan {
            index: k,
            phase,
            start_ns: tok_start,
            end_ns: t,
        });
        let resident = match mode {
            Mode::Stream => 24.0e6 + rng.range(0, 4_000_000) as f64,
            Mode::Mmap => 40.0e6 + 2.0e6 * k as f64,
        };
        counters_res.push((t, resident));
        counters_buf.push((t, rng.range(1, 5) as f64));
        counters_rss.push((t, 60.0e6 + resident));
        // Tensor accesses: layer weights every token; embedding rarely read whole.
        for l in 0..layers {
            for c in [
                "attn_q",
                "attn_k",
                "attn_v",
                "attn_output",
                "ffn_gate",
                "ffn_up",
                "ffn_down",
            ] {
                r.accesses.push(TensorAccess {
                    token: k,
                    tensor: format!("blk.{l}.{c}.weight"),
                    count: if phase == Phase::Prefill { 4 } else { 1 },
                    bytes: 300_000,
                });
            }
        }
        if k % 4 == 0 {
            r.accesses.push(TensorAccess {
                token: k,
                tensor: "token_embd.weight".into(),
                count: 1,
                bytes: 576 * 2,
            });
        }
        r.accesses.push(TensorAccess {
            token: k,
            tensor: "output.weight".into(),
            count: 1 + (k % 3),
            bytes: 28_000_000,
        });
        t += 2_000;
    }
    r.stages.push(StageSpan {
        name: "prefill".into(),
        thread: 1,
        start_ns: r.tokens[0].start_ns,
        end_ns: r.tokens[0].end_ns,
    });
    if tokens > 1 {
        r.stages.push(StageSpan {
            name: "decode".into(),
            thread: 1,
            start_ns: r.tokens[1].start_ns,
            end_ns: r.tokens[tokens as usize - 1].end_ns,
        });
    }
    r.stages.push(StageSpan {
        name: "run".into(),
        thread: 1,
        start_ns: base,
        end_ns: t,
    });
    let _ = gen_start;
    r.counters = vec![
        CounterSeries {
            name: "resident_bytes".into(),
            unit: Unit::Bytes,
            points: counters_res,
        },
        CounterSeries {
            name: "rss_bytes".into(),
            unit: Unit::Bytes,
            points: counters_rss,
        },
    ];
    if mode == Mode::Stream {
        r.counters.push(CounterSeries {
            name: "buffer_occupancy".into(),
            unit: Unit::Count,
            points: counters_buf,
        });
    }
    // Kernel view on CLOCK_BOOTTIME, one block request per streamed read (or per fault batch).
    r.clock = ClockSync {
        boottime_pairs: vec![(base + boot_offset, base), (t + boot_offset, t)],
    };
    for q in &r.io {
        let issue = q.submit_ns + 8_000;
        r.block_io.push(BlockIo {
            clock: Clock::Boottime,
            issue_ns: issue + boot_offset,
            complete_ns: q.complete_ns.saturating_sub(5_000).max(issue + 1) + boot_offset,
            dev: "179:0".into(),
            sector: q.offset / 512,
            bytes: q.bytes,
        });
    }
    let lat = |rng: &mut Rng, n: u64| {
        (0..10)
            .map(|i| Bucket {
                lo: Some(if i == 0 { 0 } else { 1 << (i + 3) }),
                hi: Some((1 << (i + 4)) - 1),
                count: rng.range(0, n) * (10 - i as u64),
            })
            .collect::<Vec<_>>()
    };
    r.histograms.push(Histogram {
        name: "@usecs".into(),
        file: "bpf-biolatency.ndjson".into(),
        buckets: lat(&mut rng, if mode == Mode::Stream { 40 } else { 90 }),
    });
    let faults = if mode == Mode::Mmap { 9_000.0 } else { 300.0 };
    r.maps.push(KeyedValues {
        name: "@faults".into(),
        file: "bpf-faults.ndjson".into(),
        entries: vec![
            ("load_model".into(), faults * 0.2),
            ("prefill".into(), faults * 0.5),
            ("decode".into(), faults),
        ],
    });
    r.folded = Some(
        "flashslim;generate;forward;matmul_q4_1 830\n\
         flashslim;generate;forward;attention 210\n\
         flashslim;generate;forward;rms_norm 40\n\
         flashslim;generate;sample 25\n\
         flashslim;load;gguf_open 60\n"
            .into(),
    );
    r.storage_bound_bytes_per_s = Some(900.0e6);
    r.manifest = Some(Manifest {
        schema_version: 1,
        run_id: r.label.clone(),
        status: RunStatus::Complete,
        files: Vec::new(),
        extra: serde_json::Map::from_iter([
            ("synthetic".to_string(), serde_json::Value::Bool(true)),
            (
                "weights".to_string(),
                serde_json::Value::String(
                    if mode == Mode::Stream {
                        "stream"
                    } else {
                        "mmap"
                    }
                    .into(),
                ),
            ),
            ("layers".to_string(), serde_json::Value::from(layers)),
        ]),
    });
    r
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

/// Write a device-side run directory `root/run_id/` holding `files` and a correct
/// `manifest.json` (written last, through a rename). Returns the manifest.
pub fn write_device_run(
    root: &Path,
    run_id: &str,
    status: RunStatus,
    files: &[(&str, Vec<u8>)],
) -> std::io::Result<Manifest> {
    let dir = root.join(run_id);
    std::fs::create_dir_all(&dir)?;
    let mut entries = Vec::new();
    for (path, data) in files {
        let p = dir.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, data)?;
        entries.push(FileEntry {
            path: path.to_string(),
            bytes: data.len() as u64,
            sha256: sha256_bytes(data),
        });
    }
    let m = Manifest {
        schema_version: 1,
        run_id: run_id.to_string(),
        status,
        files: entries,
        extra: serde_json::Map::from_iter([(
            "model".to_string(),
            serde_json::Value::String("SmolLM2-135M-Instruct.Q4_1.gguf".into()),
        )]),
    };
    let tmp = dir.join(".manifest.json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(&m).expect("manifest serializes"),
    )?;
    std::fs::rename(&tmp, dir.join(MANIFEST_FILE))?;
    Ok(m)
}
