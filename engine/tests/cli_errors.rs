// Bad input to the real `flashslim` binary: every case must exit non-zero with exactly one line on
// stderr that names the problem, and never a panic.

use flashslim::gguf::{GgmlType, GgufWriter, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_flashslim");

fn default_model() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "default model missing: run scripts/fetch-model.sh"
    );
    p
}

/// Run flashslim; assert failure with one stderr line containing `needle`.
fn fails_with(args: &[&str], needle: &str) {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("spawn flashslim");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded; stderr: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("internal error"),
        "{args:?} panicked: {err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: expected one stderr line, got: {err}"
    );
    assert!(lines[0].starts_with("error: "), "{args:?}: {err}");
    assert!(
        lines[0].contains(needle),
        "{args:?}: expected `{needle}` in: {err}"
    );
}

fn tmp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flashslim-cli-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A tiny but complete llama-arch model (random-free: all zeros) with one matrix of type `ty`.
fn tiny_llama(arch: &str, ty: GgmlType) -> Vec<u8> {
    let (e, ff, v) = (256u64, 256u64, 8u64);
    let mut w = GgufWriter::new();
    w.kv("general.architecture", Value::String(arch.into()))
        .kv(&format!("{arch}.embedding_length"), Value::U32(e as u32))
        .kv(&format!("{arch}.block_count"), Value::U32(1))
        .kv(
            &format!("{arch}.feed_forward_length"),
            Value::U32(ff as u32),
        )
        .kv(&format!("{arch}.attention.head_count"), Value::U32(4))
        .kv(&format!("{arch}.vocab_size"), Value::U32(v as u32));
    let zeros = |t: GgmlType, n: u64| vec![0u8; (n / t.block_size() * t.type_size()) as usize];
    let f32s = GgmlType::F32;
    w.tensor("token_embd.weight", f32s, &[e, v], zeros(f32s, e * v));
    w.tensor("output_norm.weight", f32s, &[e], zeros(f32s, e));
    w.tensor("blk.0.attn_norm.weight", f32s, &[e], zeros(f32s, e));
    w.tensor("blk.0.ffn_norm.weight", f32s, &[e], zeros(f32s, e));
    for n in ["attn_q", "attn_k", "attn_v", "attn_output"] {
        w.tensor(&format!("blk.0.{n}.weight"), ty, &[e, e], zeros(ty, e * e));
    }
    w.tensor("blk.0.ffn_gate.weight", f32s, &[e, ff], zeros(f32s, e * ff));
    w.tensor("blk.0.ffn_up.weight", f32s, &[e, ff], zeros(f32s, e * ff));
    w.tensor("blk.0.ffn_down.weight", f32s, &[ff, e], zeros(f32s, e * ff));
    w.to_bytes()
}

#[test]
fn missing_model_file() {
    fails_with(
        &["run", "-m", "/nonexistent/model.gguf", "-p", "hi"],
        "not found",
    );
    fails_with(
        &["inspect", "-m", "/nonexistent/model.gguf"],
        "No such file",
    );
}

#[test]
fn not_a_gguf() {
    let p = tmp("text.gguf", b"this is not a model at all");
    fails_with(
        &["run", "-m", p.to_str().unwrap(), "-p", "hi"],
        "not a GGUF file",
    );
    fails_with(&["bench", "-m", p.to_str().unwrap()], "not a GGUF file");
}

#[test]
fn truncated_real_model() {
    let full = std::fs::read(default_model()).unwrap();
    // Cut inside the tokenizer metadata, then inside the tensor data.
    let p = tmp("cut-header.gguf", &full[..200_000]);
    fails_with(&["inspect", "-m", p.to_str().unwrap()], "truncated");
    let p = tmp("cut-data.gguf", &full[..full.len() - 1000]);
    fails_with(
        &["run", "-m", p.to_str().unwrap(), "-p", "hi"],
        "past the end",
    );
}

#[test]
fn unsupported_architecture() {
    let p = tmp("gpt2.gguf", &tiny_llama("gpt2", GgmlType::F32));
    fails_with(
        &["run", "-m", p.to_str().unwrap(), "-p", "hi"],
        "unsupported architecture `gpt2`",
    );
}

#[test]
fn unsupported_tensor_type_names_the_tensor() {
    let p = tmp("q2k.gguf", &tiny_llama("llama", GgmlType::Q2_K));
    fails_with(
        &[
            "bench",
            "-m",
            p.to_str().unwrap(),
            "-p",
            "8",
            "-n",
            "0",
            "-r",
            "1",
        ],
        "tensor `blk.0.attn_q.weight` has type Q2_K",
    );
}

#[test]
fn prompt_longer_than_context() {
    let m = default_model();
    let long = "hello world ".repeat(100);
    fails_with(
        &[
            "run",
            "-m",
            m.to_str().unwrap(),
            "-p",
            &long,
            "-c",
            "64",
            "-n",
            "4",
        ],
        "context holds 64",
    );
}

#[test]
fn bad_flag_values() {
    let m = default_model();
    let m = m.to_str().unwrap();
    fails_with(&["run", "-m", m, "-p", "x", "--top-p", "1.5"], "--top-p");
    fails_with(
        &[
            "run",
            "-m",
            m,
            "-p",
            "x",
            "--weights",
            "ram",
            "--budget",
            "40MiB",
        ],
        "--budget",
    );
    fails_with(&["bench", "-m", m, "-r", "0"], "-r must be at least 1");
}
