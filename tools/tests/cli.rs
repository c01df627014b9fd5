// The `slim` binary end to end: merge, report and trace on runs made by the real engine (the
// merged trace and the report's figures checked against the run's own files), `slim gguf` on the
// real model (against `flashslim inspect --csv`), bad input for every subcommand (one line, exit 1).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn slim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slim"))
        .args(args)
        .output()
        .unwrap()
}

/// Exit 1 with exactly one stderr line starting `error: ` and containing `needle`.
fn one_line_error(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(
        err.starts_with("error: ") && err.contains(needle),
        "{err:?} lacks {needle:?}"
    );
    assert!(!err.contains("panicked"));
}

fn model() -> PathBuf {
    common::model()
}

#[test]
#[ignore = "needs the default model (scripts/fetch-model.sh); run by scripts/test.d/80-tools.sh"]
fn gguf_map_of_the_real_model() {
    let m = model();
    let m = m.to_str().unwrap();
    let csv = slim(&["gguf", m, "--csv"]);
    assert!(csv.status.success());
    let csv = String::from_utf8(csv.stdout).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    // SmolLM2-135M: 30 layers × 9 tensors + token_embd + output_norm.
    assert_eq!(rows.len(), 272);
    let size = std::fs::metadata(m).unwrap().len();
    let mut prev_end = 0u64;
    for r in &rows {
        let (off, bytes, end): (u64, u64, u64) = (
            r[4].parse().unwrap(),
            r[5].parse().unwrap(),
            r[6].parse().unwrap(),
        );
        assert_eq!(off + bytes, end);
        assert!(off >= prev_end, "sorted by offset, no overlap");
        assert!(end <= size);
        prev_end = end;
    }
    assert_eq!(rows.iter().filter(|r| r[7] == "29").count(), 9);
    // The same tensors, offsets, sizes, layers and components as the engine's inspect.
    let engine = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/flashslim");
    if engine.exists() {
        let o = Command::new(&engine)
            .args(["inspect", "--csv", "-m", m])
            .output()
            .unwrap();
        assert!(o.status.success());
        let mut theirs: Vec<String> = String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect(); // name,type,shape,offset,size,layer,component
                format!("{},{},{},{},{},{}", f[0], f[1], f[3], f[4], f[5], f[6])
            })
            .collect();
        let mut ours: Vec<String> = rows
            .iter()
            .map(|r| format!("{},{},{},{},{},{}", r[1], r[2], r[4], r[5], r[7], r[8]))
            .collect();
        theirs.sort();
        ours.sort();
        assert_eq!(ours, theirs);
    } else {
        eprintln!("note: target/release/flashslim not built; skipped the cross-check");
    }
    let js = slim(&["gguf", m, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&js.stdout).unwrap();
    assert_eq!(v["tensors"].as_array().unwrap().len(), 272);
    assert_eq!(v["file_size"], size);
    let table = slim(&["gguf", m]);
    let t = String::from_utf8(table.stdout).unwrap();
    assert!(t.starts_with("# 272 tensors"), "{t}");
    assert!(t.contains("blk.0.attn_q.weight"));
}

#[test]
fn gguf_bad_input() {
    let t = tempfile::tempdir().unwrap();
    one_line_error(&slim(&["gguf", "/nonexistent/m.gguf"]), "No such file");
    let p = t.path().join("not.gguf");
    std::fs::write(&p, b"this is not a model").unwrap();
    one_line_error(&slim(&["gguf", p.to_str().unwrap()]), "not a GGUF file");
    let p = t.path().join("trunc.gguf");
    std::fs::write(&p, b"GGUF\x03\x00\x00\x00\x05\x00\x00\x00").unwrap();
    one_line_error(&slim(&["gguf", p.to_str().unwrap()]), "truncated");
    let o = slim(&["gguf", "x", "--csv", "--json"]);
    assert_eq!(o.status.code(), Some(2), "usage error");
}

#[test]
fn merge_report_trace_bad_input() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    one_line_error(
        &slim(&["merge", "/nonexistent/run"]),
        "no run directory there",
    );
    one_line_error(
        &slim(&["report", "/nonexistent/run"]),
        "no run directory there",
    );
    // A partial run directory: no timed input → merge explains what it has and lacks.
    std::fs::write(d.join("stages.jsonl"), b"{}\n").unwrap();
    let out = d.join("trace.json");
    one_line_error(
        &slim(&["merge", d.to_str().unwrap(), "-o", out.to_str().unwrap()]),
        "stages.jsonl (unreadable",
    );
    assert!(!out.exists(), "nothing written on failure");
    // ...but the report shows what is there and marks the rest.
    let html = d.join("r.html");
    let o = slim(&["report", d.to_str().unwrap(), "-o", html.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let h = std::fs::read_to_string(&html).unwrap();
    assert!(h.contains("data-missing=\"the timeline\""));
    // A manifest from a newer profiler: refused with a clear message.
    std::fs::write(
        d.join("manifest.json"),
        br#"{"schema": "flashslim.run", "schema_version": 2, "x": 1}"#,
    )
    .unwrap();
    one_line_error(
        &slim(&["report", d.to_str().unwrap()]),
        "schema version 2 is newer",
    );
    one_line_error(
        &slim(&["merge", d.to_str().unwrap()]),
        "schema version 2 is newer",
    );
    // Tensor trace: missing file, not a trace.
    one_line_error(&slim(&["trace", "/nonexistent/t.bin"]), "No such file");
    let tb = d.join("tensor-trace.bin");
    std::fs::write(&tb, [0u8; 100]).unwrap();
    one_line_error(
        &slim(&["trace", tb.to_str().unwrap(), "--stats"]),
        "not a flashslim tensor trace",
    );
}

// ---- Runs made by the real engine (tests/common): merge, report, trace on them. ----

fn input_state<'a>(html: &'a str, file: &str) -> &'a str {
    let key = format!("<tr><td><code>{file}</code></td><td><span class=\"badge b-");
    let i = html
        .find(&key)
        .unwrap_or_else(|| panic!("no inputs row for {file}"));
    let rest = &html[i + key.len()..];
    &rest[..rest.find('"').unwrap()]
}

fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Integer nanoseconds of a `ts`/`dur` written as µs with 3 decimals.
fn ns(v: &serde_json::Value) -> i64 {
    (v.as_f64().unwrap() * 1000.0).round() as i64
}

#[test]
#[ignore = "needs the default model and target/release/flashslim; run by scripts/test.d/80-tools.sh"]
fn merge_of_a_real_run_is_well_formed() {
    let real = common::real_runs();
    let out = real.parent.join("merged.json");
    let o = slim(&[
        "merge",
        real.stream.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let events = v["traceEvents"].as_array().unwrap();
    assert!(events.len() > 1000, "{} events", events.len());
    // Every event has ph, ts, pid, tid.
    for e in events {
        for k in ["ph", "ts", "pid", "tid"] {
            assert!(e.get(k).is_some(), "event without {k}: {e}");
        }
        assert!(e["ts"].is_number(), "{e}");
    }
    // Timestamps are monotonic per source (process), in file order.
    let mut last: std::collections::HashMap<i64, i64> = Default::default();
    for e in events.iter().filter(|e| e["ph"] != "M") {
        let pid = e["pid"].as_i64().unwrap();
        let t = ns(&e["ts"]);
        let l = last.entry(pid).or_insert(i64::MIN);
        assert!(t >= *l, "ts goes back on pid {pid}: {e}");
        *l = t;
    }
    // Complete events nest per thread.
    let mut by_thread: std::collections::BTreeMap<(i64, i64), Vec<(i64, i64)>> = Default::default();
    for e in events.iter().filter(|e| e["ph"] == "X") {
        let k = (e["pid"].as_i64().unwrap(), e["tid"].as_i64().unwrap());
        by_thread
            .entry(k)
            .or_default()
            .push((ns(&e["ts"]), ns(&e["dur"])));
    }
    for (k, mut spans) in by_thread {
        spans.sort_by_key(|&(t, d)| (t, -d));
        let mut stack: Vec<i64> = Vec::new();
        for (t, d) in spans {
            while stack.last().is_some_and(|&end| end <= t) {
                stack.pop();
            }
            if let Some(&end) = stack.last() {
                assert!(
                    t + d <= end,
                    "thread {k:?}: [{t}, {}) crosses a parent ending at {end}",
                    t + d
                );
            }
            stack.push(t + d);
        }
    }
    // The sources the run holds, each a named process; one async read per completed chunk read.
    let names: Vec<&str> = events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "process_name")
        .map(|e| e["args"]["name"].as_str().unwrap())
        .collect();
    for p in ["engine", "layers/ops", "weights I/O"] {
        assert!(names.contains(&p), "{names:?}");
    }
    if real.bpf {
        assert!(names.contains(&"kernel (bpftrace)"), "{names:?}");
    }
    let completes = jsonl(&real.stream.join("io.jsonl"))
        .iter()
        .filter(|r| r["kind"] == "complete")
        .count();
    let begins = events
        .iter()
        .filter(|e| e["ph"] == "b" && e["cat"] == "io")
        .count();
    assert_eq!(begins, completes);
}

#[test]
#[ignore = "needs the default model and target/release/flashslim; run by scripts/test.d/80-tools.sh"]
fn report_of_a_real_run_states_the_runs_own_figures() {
    let real = common::real_runs();
    let out = real.parent.join("stream.html");
    let o = slim(&[
        "report",
        real.stream.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(&out).unwrap();
    for f in [
        "manifest.json",
        "stages.jsonl",
        "tokens.jsonl",
        "io.jsonl",
        "tensor-trace.bin",
    ] {
        assert_eq!(input_state(&html, f), "loaded", "{f}");
    }
    if real.bpf {
        assert_eq!(input_state(&html, "bpf-blockio.ndjson"), "loaded");
    }
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(real.stream.join("manifest.json")).unwrap()).unwrap();
    let metrics = &m["metrics"];
    let has = |s: String| assert!(html.contains(&s), "report lacks {s:?}");
    // TTFT and TPOT as the engine measured them.
    for k in ["ttft_ms", "tpot_p50_ms", "tpot_p95_ms"] {
        has(format!("{:.2} ms", metrics[k].as_f64().unwrap()));
    }
    // The device bound the plan measured, as the manifest carries it.
    let bound = m["plan"]["device_bandwidth_bytes_per_s"].as_f64().unwrap();
    has(format!(
        "<td>device read bound (manifest)</td><td class=\"num\">{:.1} MB/s</td>",
        bound / 1e6
    ));
    // Tokens, streamed bytes and stalls recomputed from the run's own records.
    let tokens = jsonl(&real.stream.join("tokens.jsonl"));
    has(format!(
        "<td>tokens generated (tokens.jsonl)</td><td class=\"num\">{}</td>",
        tokens.len()
    ));
    let io = jsonl(&real.stream.join("io.jsonl"));
    let bytes: u64 = io
        .iter()
        .filter(|r| r["kind"] == "complete")
        .map(|r| r["bytes"].as_u64().unwrap())
        .sum();
    has(format!(
        "<td>stream reads: bytes</td><td class=\"num\">{:.1} MiB</td>",
        bytes as f64 / 1048576.0
    ));
    let stalls = io.iter().filter(|r| r["kind"] == "wait_end").count();
    let stall_ns: u64 = tokens.iter().map(|t| t["stall_ns"].as_u64().unwrap()).sum();
    has(format!("<td>count</td><td class=\"num\">{stalls}</td>"));
    assert!(
        (stall_ns as f64 / 1e6 - metrics["stall_ms_total"].as_f64().unwrap()).abs() < 0.01,
        "tokens.jsonl stall_ns and the manifest agree"
    );
    assert!(!html.contains("data-missing=\"the timeline\""));
    assert_eq!(
        flashslim_tools::report::external_references(&html),
        Vec::<String>::new()
    );
}

#[test]
#[ignore = "needs the default model and target/release/flashslim; run by scripts/test.d/80-tools.sh"]
fn a_damaged_real_run_is_reported_with_its_missing_pieces() {
    let real = common::real_runs();
    let d = real.parent.join("damaged");
    let _ = std::fs::remove_dir_all(&d);
    common::copy_dir(&real.stream, &d);
    // A pull that stopped: io.jsonl never arrived, tokens.jsonl and the trace were cut short.
    std::fs::remove_file(d.join("io.jsonl")).unwrap();
    let cut = |f: &str, keep: f64| {
        let b = std::fs::read(d.join(f)).unwrap();
        std::fs::write(d.join(f), &b[..(b.len() as f64 * keep) as usize]).unwrap();
    };
    cut("tokens.jsonl", 0.6);
    cut("tensor-trace.bin", 0.5);
    let out = d.join("r.html");
    let o = slim(&["report", d.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(&out).unwrap();
    assert_eq!(input_state(&html, "io.jsonl"), "missing");
    assert_eq!(input_state(&html, "tokens.jsonl"), "partial");
    assert_eq!(input_state(&html, "tensor-trace.bin"), "partial");
    assert_eq!(input_state(&html, "manifest.json"), "partial");
    // The trace reader reports the cut tail rather than failing.
    let o = slim(&[
        "trace",
        d.join("tensor-trace.bin").to_str().unwrap(),
        "--stats",
    ]);
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("warning: ") && err.contains("cut short"),
        "{err}"
    );
    // merge still works on what is there.
    let o = slim(&[
        "merge",
        d.to_str().unwrap(),
        "-o",
        d.join("t.json").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
#[ignore = "needs the default model and target/release/flashslim; run by scripts/test.d/80-tools.sh"]
fn trace_views_of_a_real_trace() {
    let real = common::real_runs();
    let t = real.stream.join("tensor-trace.bin");
    let o = slim(&["trace", t.to_str().unwrap(), "--stats"]);
    assert!(o.status.success());
    let s = String::from_utf8_lossy(&o.stdout);
    let gen = jsonl(&real.stream.join("tokens.jsonl")).len();
    assert!(
        s.contains(&format!("{gen} token(s) in 1 generation(s)")),
        "{s}"
    );
    let dir = real.parent.join("per-token");
    let o = slim(&[
        "trace",
        t.to_str().unwrap(),
        "--json-per-token",
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let n = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(n, gen);
    let o = slim(&["trace", t.to_str().unwrap(), "--csv"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).lines().count() > 100);
}
