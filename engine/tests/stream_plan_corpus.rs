// The plan reader is an untrusted-file parser. This runs the fuzz target's entry point
// (`flashslim::plan::fuzz::check`) on stable over the committed corpus in tests/data/plans
// (valid plans and one malformed plan per field, each expected to fail naming that field) and
// over random mutations of the valid plans: never a panic, every error names what is wrong.
// `FLASHSLIM_WRITE_PLAN_CORPUS=1` regenerates the corpus.

use flashslim::plan::fuzz;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/plans")
}

/// (file name, edit of the valid 3 MiB plan, text the error must contain).
type Edit = fn(&mut Value);
fn malformed() -> Vec<(&'static str, Edit, &'static str)> {
    vec![
        (
            "bad-format.json",
            |v| v["format"] = "llama-plan".into(),
            "not a flashslim plan",
        ),
        (
            "bad-version.json",
            |v| v["version"] = 99.into(),
            "plan version 99 is not supported",
        ),
        (
            "bad-version-type.json",
            |v| v["version"] = "1".into(),
            "`version`: expected a non-negative integer",
        ),
        (
            "bad-model-size.json",
            |v| v["model"]["file_size"] = 1.into(),
            "made for another model file",
        ),
        (
            "bad-model-missing.json",
            |v| {
                v.as_object_mut().unwrap().remove("model");
            },
            "`model`: missing",
        ),
        (
            "bad-method.json",
            |v| v["method"] = "guess".into(),
            "`method`: unknown method",
        ),
        (
            "bad-budget.json",
            |v| v["budget_bytes"] = (-5).into(),
            "`budget_bytes`: expected a non-negative integer, found -5",
        ),
        (
            "bad-budget-small.json",
            |v| v["budget_bytes"] = 4096.into(),
            "exceed the budget",
        ),
        (
            "bad-resident-name.json",
            |v| v["resident"] = serde_json::json!(["blk.9.attn_q.weight"]),
            "`resident[0]`: no tensor named `blk.9.attn_q.weight`",
        ),
        (
            "bad-resident-norm.json",
            |v| v["resident"] = serde_json::json!(["blk.0.attn_norm.weight"]),
            "`resident[0]`: tensor #",
        ),
        (
            "bad-chunks-type.json",
            |v| v["chunks"] = 3.into(),
            "`chunks`: expected an array, found a number",
        ),
        (
            "bad-chunk-align.json",
            |v| v["chunks"][0]["aligned_offset"] = 100.into(),
            "`chunks[0].aligned_offset`: 100 is not a multiple of 4096",
        ),
        (
            "bad-chunk-size.json",
            |v| v["chunks"][0]["aligned_size"] = 0.into(),
            "`chunks[0].aligned_size`: 0 is not a positive multiple",
        ),
        (
            "bad-chunk-past-end.json",
            |v| v["chunks"][0]["aligned_offset"] = 1_073_741_824u64.into(),
            "runs past the end",
        ),
        (
            "bad-chunk-order.json",
            |v| {
                let c = v["chunks"].as_array_mut().unwrap();
                c.swap(0, 1);
            },
            "`chunks[0].tensors[0]`: expected",
        ),
        (
            "bad-chunk-missing.json",
            |v| {
                v["chunks"].as_array_mut().unwrap().pop();
            },
            "`chunks`: cover",
        ),
        (
            "bad-chunk-tensor-type.json",
            |v| v["chunks"][0]["tensors"][0] = serde_json::json!({}),
            "`chunks[0].tensors[0]`: expected a tensor name, found an object",
        ),
        (
            "bad-buffers-zero.json",
            |v| v["buffers"]["count"] = 0.into(),
            "`buffers.count`: 0 is outside",
        ),
        (
            "bad-buffers-huge.json",
            |v| v["buffers"]["count"] = 4_294_967_296u64.into(),
            "`buffers.count`: 4294967296 is too large",
        ),
        (
            "bad-buffers-bytes.json",
            |v| v["buffers"]["bytes"] = 1000.into(),
            "`buffers.bytes`: 1000 is not a positive multiple of 4096",
        ),
        (
            "bad-depth.json",
            |v| v["prefetch_depth"] = 100000.into(),
            "`prefetch_depth`: 100000 exceeds",
        ),
        (
            "bad-request.json",
            |v| v["io"]["request_bytes"] = 12.into(),
            "`io.request_bytes`: 12 is not a multiple",
        ),
        (
            "bad-queue-depth.json",
            |v| v["io"]["queue_depth"] = 0.into(),
            "`io.queue_depth`: 0 is outside",
        ),
        (
            "bad-predicted-phase.json",
            |v| v["predicted"]["warmup"] = v["predicted"]["decode"].clone(),
            "`predicted.warmup`: unknown phase",
        ),
        (
            "bad-predicted-nan.json",
            |v| v["predicted"]["decode"]["io_ms"] = (-1.5).into(),
            "`predicted.decode.io_ms`: expected a non-negative number",
        ),
        (
            "bad-cmt-phase.json",
            |v| v["cmt"] = serde_json::json!([{"phase": 3}]),
            "`cmt[0].phase`: expected a string",
        ),
    ]
}

fn write_corpus() {
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for b in [2u64 << 20, 3 << 20, 8 << 20] {
        let text = fuzz::valid_plan(b).unwrap();
        std::fs::write(dir.join(format!("valid-{}mib.json", b >> 20)), text).unwrap();
    }
    let valid: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("valid-3mib.json")).unwrap())
            .unwrap();
    for (name, edit, _) in malformed() {
        let mut v = valid.clone();
        edit(&mut v);
        std::fs::write(dir.join(name), serde_json::to_string_pretty(&v).unwrap()).unwrap();
    }
    std::fs::write(
        dir.join("bad-syntax.json"),
        b"{\"format\": \"flashslim-plan\", ",
    )
    .unwrap();
    std::fs::write(dir.join("bad-empty.json"), b"").unwrap();
    std::fs::write(dir.join("bad-array.json"), b"[1,2,3]").unwrap();
}

#[test]
fn corpus_plans_are_accepted_or_refused_naming_the_field() {
    if std::env::var_os("FLASHSLIM_WRITE_PLAN_CORPUS").is_some() {
        write_corpus();
    }
    let dir = corpus_dir();
    for b in [2, 3, 8] {
        let name = format!("valid-{b}mib.json");
        let bytes = std::fs::read(dir.join(&name)).expect("corpus present");
        fuzz::check(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for (name, _, needle) in malformed() {
        let bytes = std::fs::read(dir.join(name)).expect("corpus present");
        let e = fuzz::check(&bytes)
            .err()
            .unwrap_or_else(|| panic!("{name} was accepted"));
        assert!(
            e.to_string().contains(needle),
            "{name}: `{e}` lacks `{needle}`"
        );
    }
    for (name, needle) in [
        ("bad-syntax.json", "not valid JSON"),
        ("bad-empty.json", "not valid JSON"),
        ("bad-array.json", "expected an object"),
    ] {
        let e = fuzz::check(&std::fs::read(dir.join(name)).unwrap())
            .err()
            .unwrap();
        assert!(e.to_string().contains(needle), "{name}: {e}");
    }
}

/// xorshift64.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Replace a random node of `v` with a hostile value.
fn mutate_json(v: &mut Value, rng: &mut Rng, depth: u32) {
    let descend = depth < 6 && rng.below(3) > 0;
    match v {
        Value::Object(m) if descend && !m.is_empty() => {
            let k = m.keys().nth(rng.below(m.len())).unwrap().clone();
            return mutate_json(m.get_mut(&k).unwrap(), rng, depth + 1);
        }
        Value::Array(a) if descend && !a.is_empty() => {
            let i = rng.below(a.len());
            return mutate_json(&mut a[i], rng, depth + 1);
        }
        _ => {}
    }
    *v = match rng.below(9) {
        0 => Value::Null,
        1 => (-1i64).into(),
        2 => u64::MAX.into(),
        3 => 1e308.into(),
        4 => "blk.0.attn_q.weight".into(),
        5 => serde_json::json!([]),
        6 => serde_json::json!({}),
        7 => (rng.next() % 100_000_000).into(),
        _ => 0.into(),
    };
}

#[test]
fn random_mutations_never_panic() {
    let dir = corpus_dir();
    let seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(seeds.len() >= 20, "corpus in {}", dir.display());
    let valid: Value =
        serde_json::from_slice(&std::fs::read(dir.join("valid-3mib.json")).unwrap()).unwrap();
    let mut rng = Rng(0x5eed_f1a5);
    let mut refused = 0;
    for i in 0..3000 {
        let bytes = if i % 2 == 0 {
            let mut v = valid.clone();
            for _ in 0..1 + rng.below(3) {
                mutate_json(&mut v, &mut rng, 0);
            }
            serde_json::to_vec(&v).unwrap()
        } else {
            let mut b = seeds[rng.below(seeds.len())].clone();
            for _ in 0..1 + rng.below(8) {
                if b.is_empty() {
                    break;
                }
                let at = rng.below(b.len());
                match rng.below(3) {
                    0 => b[at] = rng.next() as u8,
                    1 => b.truncate(at),
                    _ => b.insert(at, b"{}[]\",:-0e9"[rng.below(11)]),
                }
            }
            b
        };
        let r = std::panic::catch_unwind(|| fuzz::check(&bytes));
        match r {
            Err(_) => panic!(
                "the plan reader panicked on mutation {i}: {}",
                String::from_utf8_lossy(&bytes)
            ),
            Ok(Err(e)) => {
                refused += 1;
                assert!(!e.to_string().is_empty());
            }
            Ok(Ok(_)) => {}
        }
    }
    assert!(
        refused > 1000,
        "mutations should mostly be refused ({refused})"
    );
}
