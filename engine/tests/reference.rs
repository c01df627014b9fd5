// The engine against llama.cpp on the real default model and its quantized variants, using the
// fixtures from scripts/make-engine-fixtures.sh: greedy text must agree for the first 16 tokens,
// and perplexity at -c 128 must be within 1% of llama-perplexity's.
//
// Q4_1 cases always run. Other types need models/SmolLM2-135M-Instruct.<TYPE>.gguf, which
// `scripts/build-llama-ref.sh --variants` makes with llama-quantize; those tests are #[ignore]d
// for a plain `cargo test` and run by scripts/test.d/30-reference.sh with `--ignored`.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_flashslim");
/// Tokens compared per greedy case.
const GREEDY_TOKENS: usize = 16;
/// Allowed relative perplexity difference.
const PPL_TOLERANCE: f64 = 0.01;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn model(ty: &str) -> PathBuf {
    let p = root().join(format!("models/SmolLM2-135M-Instruct.{ty}.gguf"));
    assert!(
        p.exists(),
        "{} missing: run scripts/fetch-model.sh (Q4_1) or scripts/build-llama-ref.sh --variants",
        p.display()
    );
    p
}

fn fixture(name: &str) -> Value {
    let p = root().join("engine/tests/fixtures").join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn run(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("spawn flashslim");
    assert!(
        out.status.success(),
        "flashslim {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn greedy(ty: &str) {
    let m = model(ty);
    let cases = fixture("greedy.json");
    let mut checked = 0;
    for c in cases["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["model"] == ty)
    {
        let prompt = c["prompt"].as_str().unwrap();
        let expected = c["text"].as_str().unwrap();
        let n = GREEDY_TOKENS.to_string();
        let ours = run(&[
            "run",
            "-m",
            m.to_str().unwrap(),
            "-p",
            prompt,
            "-n",
            &n,
            "--temp",
            "0",
            "--ignore-eos",
            "-t",
            "2",
        ]);
        let ours = ours.strip_suffix('\n').unwrap_or(&ours);
        assert!(
            !ours.is_empty() && expected.starts_with(ours),
            "{ty} greedy mismatch for {prompt:?}\n  llama.cpp: {expected:?}\n  flashslim: {ours:?}"
        );
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} greedy cases for {ty}");
}

fn perplexity(ty: &str) {
    let m = model(ty);
    let cases = fixture("perplexity.json");
    let c = cases["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["model"] == ty)
        .expect("fixture for type");
    let text = root().join(cases["text"].as_str().unwrap());
    let (ctx, chunks) = (
        c["ctx"].as_u64().unwrap().to_string(),
        c["chunks"].as_u64().unwrap().to_string(),
    );
    let out = run(&[
        "perplexity",
        "-m",
        m.to_str().unwrap(),
        "-f",
        text.to_str().unwrap(),
        "-c",
        &ctx,
        "--chunks",
        &chunks,
        "-t",
        "2",
    ]);
    let last = out.lines().last().unwrap_or("");
    let ours: f64 = last
        .strip_prefix("PPL = ")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("last line {last:?}"));
    let theirs = c["ppl"].as_f64().unwrap();
    let rel = (ours - theirs).abs() / theirs;
    eprintln!(
        "{ty}: PPL flashslim {ours:.4} llama.cpp {theirs:.4} ({:+.3}%)",
        100.0 * (ours - theirs) / theirs
    );
    assert!(
        rel <= PPL_TOLERANCE,
        "{ty}: PPL {ours:.4} vs llama.cpp {theirs:.4} differs by {:.2}%",
        rel * 100.0
    );
}

#[test]
fn greedy_q4_1() {
    greedy("Q4_1");
}

#[test]
fn perplexity_q4_1() {
    perplexity("Q4_1");
}

macro_rules! variant_tests {
    ($($g:ident, $p:ident, $ty:literal;)*) => {$(
        #[test]
        #[ignore = "needs quantized variants (scripts/test.d/30-reference.sh runs it)"]
        fn $g() { greedy($ty); }
        #[test]
        #[ignore = "needs quantized variants (scripts/test.d/30-reference.sh runs it)"]
        fn $p() { perplexity($ty); }
    )*};
}

variant_tests! {
    greedy_q4_0, perplexity_q4_0, "Q4_0";
    greedy_q8_0, perplexity_q8_0, "Q8_0";
    greedy_q4_k_m, perplexity_q4_k_m, "Q4_K_M";
    greedy_q5_k_m, perplexity_q5_k_m, "Q5_K_M";
    greedy_f16, perplexity_f16, "F16";
}
