// The `slim` binary end to end: `slim gguf` on the real model (cross-checked against the
// engine's own `flashslim inspect --csv` columns), and bad input for every subcommand — one
// line on stderr, exit status 1, never a panic.

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
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf")
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
    // A partial run directory: no timed input yet → merge explains what it has and lacks.
    std::fs::write(d.join("stages.jsonl"), b"{}\n").unwrap();
    let out = d.join("trace.json");
    one_line_error(
        &slim(&["merge", d.to_str().unwrap(), "-o", out.to_str().unwrap()]),
        "stages.jsonl (present, reader not connected yet (phase 2))",
    );
    assert!(!out.exists(), "nothing written on failure");
    // ...but the report shows what is there and marks the rest.
    let html = d.join("r.html");
    let o = slim(&["report", d.to_str().unwrap(), "-o", html.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let h = std::fs::read_to_string(&html).unwrap();
    assert!(h.contains("data-missing=\"the timeline\""));
    // A manifest from a newer profiler: refused with a clear message.
    std::fs::write(d.join("manifest.json"), br#"{"schema_version": 2, "x": 1}"#).unwrap();
    one_line_error(
        &slim(&["report", d.to_str().unwrap()]),
        "schema_version 2 is newer",
    );
    one_line_error(
        &slim(&["merge", d.to_str().unwrap()]),
        "schema_version 2 is newer",
    );
    // Tensor trace: missing file, and the honest "no reader yet".
    one_line_error(&slim(&["trace", "/nonexistent/t.bin"]), "No such file");
    let tb = d.join("tensor-trace.bin");
    std::fs::write(&tb, [0u8; 100]).unwrap();
    one_line_error(
        &slim(&["trace", tb.to_str().unwrap(), "--stats"]),
        "no tensor-trace reader",
    );
}
