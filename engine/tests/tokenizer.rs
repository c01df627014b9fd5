//! The tokenizer against llama.cpp: every corpus string on every vocabulary must tokenize and
//! detokenize exactly as the fixtures (made by scripts/make-tokenizer-fixtures.sh from
//! llama-tokenize and llama_detokenize) say, plus streaming, special-token, BOS, EOG, chat and
//! speed checks.
//!
//! The vocabularies are the default model (scripts/fetch-model.sh) and llama.cpp's vocab-only
//! GGUFs in .cache/vocab (scripts/fetch-vocabs.sh, which the test runs itself when they are
//! missing, so `cargo test --workspace` works on a fresh clone). A file still missing fails the
//! test with the command that fetches it; nothing is skipped.

use flashslim::gguf::{Gguf, GgufWriter, Value, ValueType};
use flashslim::tokenizer::{ChatMessage, StreamDecoder, Tokenizer};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Fixture name -> GGUF path under the workspace root (as in make-tokenizer-fixtures.sh).
const VOCABS: &[(&str, &str)] = &[
    ("smollm2", "models/SmolLM2-135M-Instruct.Q4_1.gguf"),
    ("gpt-2", ".cache/vocab/ggml-vocab-gpt-2.gguf"),
    ("llama-bpe", ".cache/vocab/ggml-vocab-llama-bpe.gguf"),
    ("qwen2", ".cache/vocab/ggml-vocab-qwen2.gguf"),
    ("llama-spm", ".cache/vocab/ggml-vocab-llama-spm.gguf"),
    ("phi-3", ".cache/vocab/ggml-vocab-phi-3.gguf"),
    ("qwen35", ".cache/vocab/ggml-vocab-qwen35.gguf"),
    ("starcoder", ".cache/vocab/ggml-vocab-starcoder.gguf"),
    ("mpt", ".cache/vocab/ggml-vocab-mpt.gguf"),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer")
}

/// The tokenizer of a vocabulary, loaded once per test binary.
fn tokenizer(name: &str) -> Arc<Tokenizer> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Tokenizer>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(t) = cache.lock().unwrap().get(name) {
        return t.clone();
    }
    let rel = VOCABS.iter().find(|v| v.0 == name).expect("known vocab").1;
    let path = root().join(rel);
    if !path.exists() && rel.starts_with(".cache/vocab/") {
        fetch_vocabs();
    }
    if !path.exists() {
        let fix = if rel.starts_with("models/") {
            "scripts/fetch-model.sh"
        } else {
            "scripts/fetch-vocabs.sh"
        };
        panic!("missing {}: run {fix} first", path.display());
    }
    let g = Gguf::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let t = Arc::new(Tokenizer::from_gguf(&g).unwrap_or_else(|e| panic!("{name}: {e}")));
    cache.lock().unwrap().insert(name.to_string(), t.clone());
    t
}

/// Run scripts/fetch-vocabs.sh once per test binary.
fn fetch_vocabs() {
    static FETCHED: OnceLock<()> = OnceLock::new();
    FETCHED.get_or_init(|| {
        let script = root().join("scripts/fetch-vocabs.sh");
        match std::process::Command::new("bash").arg(&script).status() {
            Ok(s) if s.success() => {}
            other => eprintln!("{} failed: {other:?}", script.display()),
        }
    });
}

fn load_json(file: &str) -> Json {
    let path = fixture_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

struct Case {
    name: String,
    text: String,
    fx: Json,
}

/// The corpus joined with one vocabulary's fixture.
fn cases(vocab: &str) -> (Json, Vec<Case>) {
    let corpus = load_json("corpus.json");
    let fx = load_json(&format!("{vocab}.json"));
    let texts: HashMap<&str, &str> = corpus["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["text"].as_str().unwrap()))
        .collect();
    let list = fx["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap().to_string();
            let text = texts
                .get(name.as_str())
                .unwrap_or_else(|| {
                    panic!("{vocab}.json case {name} is not in corpus.json: regenerate")
                })
                .to_string();
            Case {
                name,
                text,
                fx: c.clone(),
            }
        })
        .collect::<Vec<_>>();
    assert_eq!(
        list.len(),
        texts.len(),
        "{vocab}.json does not cover corpus.json: run scripts/make-tokenizer-fixtures.sh"
    );
    (fx, list)
}

fn ids(v: &Json) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// A fixture's bytes stored as `key` (UTF-8 text) or `key_hex`.
fn fixture_bytes(c: &Json, key: &str) -> Vec<u8> {
    if let Some(s) = c[key].as_str() {
        return s.as_bytes().to_vec();
    }
    let h = c[format!("{key}_hex")]
        .as_str()
        .unwrap_or_else(|| panic!("no {key}"));
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
        .collect()
}

/// Shows the first mismatches in full and fails with the total.
fn report(vocab: &str, what: &str, bad: Vec<String>, total: usize) {
    if !bad.is_empty() {
        panic!(
            "{vocab}: {} of {total} {what} differ from llama.cpp:\n{}",
            bad.len(),
            bad.iter().take(8).cloned().collect::<Vec<_>>().join("\n")
        );
    }
}

fn check_encode(vocab: &str) {
    let t = tokenizer(vocab);
    let (_, cases) = cases(vocab);
    let mut bad = Vec::new();
    for c in &cases {
        for (key, add, parse) in [("special", true, true), ("plain", false, false)] {
            let want = ids(&c.fx[key]);
            let got = t.encode(&c.text, add, parse).unwrap();
            if got != want {
                bad.push(format!(
                    "  {} ({key}): {:?}\n    want {want:?}\n    got  {got:?}",
                    c.name, c.text
                ));
            }
        }
    }
    report(vocab, "encodings", bad, 2 * cases.len());
}

fn check_decode(vocab: &str) {
    let t = tokenizer(vocab);
    let (_, cases) = cases(vocab);
    let mut bad = Vec::new();
    let mut round_trips = 0;
    for c in &cases {
        let special = ids(&c.fx["special"]);
        let plain = ids(&c.fx["plain"]);
        for (key, got) in [
            ("detok", t.detokenize_bytes(&special, false, true)),
            ("detok_rm", t.detokenize_bytes(&special, true, false)),
            ("detok_plain", t.detokenize_bytes(&plain, false, false)),
        ] {
            let want = fixture_bytes(&c.fx, key);
            if got != want {
                bad.push(format!(
                    "  {} ({key}): want {:?}\n    got  {:?}",
                    c.name,
                    String::from_utf8_lossy(&want),
                    String::from_utf8_lossy(&got)
                ));
            }
        }
        // Where llama.cpp gets the text back, so do we, from our own tokens.
        if fixture_bytes(&c.fx, "detok_plain") == c.text.as_bytes() {
            round_trips += 1;
            let back = t.decode(&t.encode(&c.text, false, false).unwrap());
            if back != c.text {
                bad.push(format!(
                    "  {} (round trip): {:?} came back as {back:?}",
                    c.name, c.text
                ));
            }
        }
    }
    report(vocab, "detokenizations", bad, 4 * cases.len());
    assert!(
        round_trips > cases.len() / 2,
        "{vocab}: only {round_trips} round trips"
    );
}

fn check_facts(vocab: &str) {
    let t = tokenizer(vocab);
    let (fx, _) = cases(vocab);
    let opt = |v: &Json| v.as_u64().map(|x| x as u32);
    assert_eq!(
        t.n_vocab() as u64,
        fx["n_vocab"].as_u64().unwrap(),
        "{vocab}: n_vocab"
    );
    assert_eq!(t.bos(), opt(&fx["bos"]), "{vocab}: BOS");
    assert_eq!(t.eos(), opt(&fx["eos"]), "{vocab}: EOS");
    assert_eq!(
        t.add_bos(),
        fx["add_bos"].as_bool().unwrap(),
        "{vocab}: add_bos"
    );
    assert_eq!(
        t.add_eos(),
        fx["add_eos"].as_bool().unwrap(),
        "{vocab}: add_eos"
    );
    // llama.cpp picks the EOT among several candidates in hash-map order; any candidate it
    // could pick is end-of-generation for both of us, which is what matters.
    if let Some(eot) = opt(&fx["eot"]) {
        assert!(
            t.is_eog(eot),
            "{vocab}: llama.cpp's EOT {eot} is not EOG here"
        );
    }
    let want: BTreeSet<u32> = ids(&fx["eog"]).into_iter().collect();
    let got: BTreeSet<u32> = t.eog_ids().collect();
    assert_eq!(got, want, "{vocab}: end-of-generation ids");
    for id in 0..t.n_vocab() as u32 {
        assert_eq!(t.is_eog(id), want.contains(&id), "{vocab}: is_eog({id})");
    }
    let want: BTreeSet<u32> = ids(&fx["special"]).into_iter().collect();
    let got: BTreeSet<u32> = (0..t.n_vocab() as u32)
        .filter(|&i| t.is_special(i))
        .collect();
    assert_eq!(got, want, "{vocab}: control/unknown ids");
    // Every token's piece, in digests of `chunk` tokens.
    let chunk = fx["piece_chunk"].as_u64().unwrap() as usize;
    let digests = fx["piece_sha256"].as_array().unwrap();
    for (k, want) in digests.iter().enumerate() {
        let lo = k * chunk;
        let hi = (lo + chunk).min(t.n_vocab());
        let mut h = Sha256::new();
        for id in lo..hi {
            let p = t.piece(id as u32, true);
            h.update((p.len() as u32).to_le_bytes());
            h.update(p);
        }
        let got = format!("{:x}", h.finalize());
        if got != want.as_str().unwrap() {
            let odd: Vec<String> = (lo..hi)
                .filter(|&i| {
                    t.token_text(i as u32)
                        != Some(&String::from_utf8_lossy(t.piece(i as u32, true)))
                })
                .take(5)
                .map(|i| {
                    format!(
                        "{i} {:?} -> {:?}",
                        t.token_text(i as u32),
                        String::from_utf8_lossy(t.piece(i as u32, true))
                    )
                })
                .collect();
            panic!("{vocab}: pieces of tokens {lo}..{hi} differ from llama.cpp; some non-verbatim pieces: {odd:?}");
        }
    }
}

macro_rules! per_vocab {
    ($($m:ident => $name:literal),* $(,)?) => {$(
        mod $m {
            #[test]
            fn encode_matches_llama_tokenize() {
                super::check_encode($name);
            }
            #[test]
            fn detokenize_matches_llama_cpp() {
                super::check_decode($name);
            }
            #[test]
            fn vocab_facts_match_llama_cpp() {
                super::check_facts($name);
            }
        }
    )*};
}

per_vocab! {
    smollm2 => "smollm2",
    gpt2 => "gpt-2",
    llama_bpe => "llama-bpe",
    qwen2 => "qwen2",
    llama_spm => "llama-spm",
    phi3 => "phi-3",
    qwen35 => "qwen35",
    starcoder => "starcoder",
    mpt => "mpt",
}

/// Feeding tokens one by one gives llama.cpp's text, and a character split across tokens is
/// held back rather than printed as U+FFFD.
#[test]
fn stream_decoder_holds_split_characters() {
    let mut splits = 0;
    for vocab in ["smollm2", "llama-spm", "qwen2"] {
        let t = tokenizer(vocab);
        // The cases llama.cpp round-trips exactly.
        let round_trips = cases(vocab)
            .1
            .into_iter()
            .filter(|c| fixture_bytes(&c.fx, "detok_plain") == c.text.as_bytes());
        for c in round_trips {
            let toks = t.encode(&c.text, false, false).unwrap();
            let mut d = StreamDecoder::new();
            let mut out = String::new();
            let mut all = Vec::new();
            for &id in &toks {
                let piece = t.piece(id, false);
                if std::str::from_utf8(piece).is_err() {
                    splits += 1;
                }
                all.extend_from_slice(piece);
                out.push_str(&d.push(&t, id));
            }
            out.push_str(&d.flush());
            // The stream is the pieces joined, and that is the text (with SPM's space prefix,
            // which a stream shows as llama-completion does).
            assert_eq!(out.as_bytes(), &all[..], "{vocab} {}", c.name);
            let text = match vocab {
                "llama-spm" => out.strip_prefix(' ').unwrap_or(&out),
                _ => &out,
            };
            assert_eq!(text, c.text, "{vocab} {}", c.name);
        }
    }
    assert!(
        splits > 10,
        "the corpus split only {splits} characters across tokens"
    );
}

#[test]
fn stream_decoder_replaces_bytes_that_never_complete() {
    let t = tokenizer("llama-spm");
    let byte = |b: u8| t.token_id(&format!("<0x{b:02X}>")).unwrap();
    let mut d = StreamDecoder::new();
    // "é" = C3 A9, split over two byte tokens.
    assert_eq!(d.push(&t, byte(0xC3)), "");
    assert_eq!(d.push(&t, byte(0xA9)), "é");
    // A lead byte followed by ASCII can never complete.
    assert_eq!(d.push(&t, byte(0xE2)), "");
    assert_eq!(d.push(&t, byte(b'x')), "\u{FFFD}x");
    assert_eq!(d.push(&t, byte(0xF0)), "");
    assert_eq!(d.flush(), "\u{FFFD}");
}

#[test]
fn control_tokens_print_only_when_asked() {
    let t = tokenizer("smollm2");
    let im_end = t.token_id("<|im_end|>").unwrap();
    assert!(t.is_special(im_end));
    assert_eq!(StreamDecoder::new().push(&t, im_end), "");
    assert_eq!(
        StreamDecoder::new().with_special(true).push(&t, im_end),
        "<|im_end|>"
    );
}

#[test]
fn special_tokens_parse_only_when_asked() {
    let t = tokenizer("smollm2");
    let start = t.token_id("<|im_start|>").unwrap();
    let on = t.encode("<|im_start|>user", false, true).unwrap();
    let off = t.encode("<|im_start|>user", false, false).unwrap();
    assert_eq!(on[0], start);
    assert!(!off.contains(&start) && off.len() > on.len(), "{off:?}");
    // Qwen2's user-defined tokens are cut out even without parse_special; its control tokens
    // are not.
    let q = tokenizer("qwen2");
    let user_defined = q.token_id("[PAD151650]").unwrap();
    let control = q.token_id("<|im_start|>").unwrap();
    assert!(!q.is_special(user_defined) && q.is_special(control));
    let plain = q.encode("a[PAD151650]b<|im_start|>", false, false).unwrap();
    assert!(
        plain.contains(&user_defined) && !plain.contains(&control),
        "{plain:?}"
    );
}

#[test]
fn bos_follows_the_vocabulary() {
    for (vocab, adds) in [
        ("llama-spm", true),
        ("llama-bpe", true),
        ("smollm2", false),
        ("gpt-2", false),
    ] {
        let t = tokenizer(vocab);
        assert_eq!(t.add_bos(), adds, "{vocab}");
        let with = t.encode("Hello", true, true).unwrap();
        let without = t.encode("Hello", false, true).unwrap();
        if adds {
            assert_eq!(with[0], t.bos().unwrap(), "{vocab}");
            assert_eq!(&with[1..], &without[..], "{vocab}");
        } else {
            assert_eq!(with, without, "{vocab}");
        }
        // An empty prompt is just the BOS.
        assert_eq!(
            t.encode("", true, true).unwrap().len(),
            adds as usize,
            "{vocab}"
        );
    }
}

#[test]
fn end_of_generation_tokens() {
    let t = tokenizer("smollm2");
    for text in ["<|im_end|>", "<|endoftext|>"] {
        let id = t.token_id(text).unwrap();
        assert!(t.is_eog(id), "{text}");
    }
    assert!(!t.is_eog(t.token_id("<|im_start|>").unwrap()));
    assert!(!t.is_eog(t.encode("Hello", false, false).unwrap()[0]));
    let l = tokenizer("llama-bpe");
    assert!(l.is_eog(l.token_id("<|eot_id|>").unwrap()));
    assert!(l.is_eog(l.token_id("<|end_of_text|>").unwrap()));
    assert!(!l.is_eog(l.token_id("<|begin_of_text|>").unwrap()));
    let s = tokenizer("llama-spm");
    assert!(s.is_eog(s.eos().unwrap()) && !s.is_eog(s.bos().unwrap()));
}

fn msg(role: &str, content: &str) -> ChatMessage {
    ChatMessage {
        role: role.into(),
        content: content.into(),
    }
}

/// SmolLM2's template: ChatML, with a default system prompt when the first message is not
/// one. Expected strings follow the template's text (see `chat_template` in the model).
#[test]
fn smollm2_chat_template() {
    let t = tokenizer("smollm2");
    let tmpl = t.chat_template().unwrap();
    assert!(tmpl.contains("You are a helpful AI assistant named SmolLM, trained by Hugging Face"));
    let default_system =
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n";
    let one = [msg("user", "Hi!")];
    assert_eq!(
        t.render_chat(&one, true).unwrap(),
        format!("{default_system}<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n")
    );
    assert_eq!(
        t.render_chat(&one, false).unwrap(),
        format!("{default_system}<|im_start|>user\nHi!<|im_end|>\n")
    );
    let convo = [
        msg("system", "Be brief."),
        msg("user", "2+2?"),
        msg("assistant", "4"),
        msg("user", "And 3+3?"),
    ];
    assert_eq!(
        t.render_chat(&convo, true).unwrap(),
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n\
         <|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\nAnd 3+3?<|im_end|>\n\
         <|im_start|>assistant\n"
    );
    // The rendered prompt tokenizes into the ChatML control tokens.
    let toks = t
        .encode(&t.render_chat(&one, true).unwrap(), true, true)
        .unwrap();
    let start = t.token_id("<|im_start|>").unwrap();
    assert_eq!(toks.iter().filter(|&&i| i == start).count(), 3);
}

/// Rendered chats against llama.cpp's own Jinja engine (fixtures/tokenizer/chat.json).
#[test]
fn chat_templates_match_llama_cpp() {
    let fx = load_json("chat.json");
    let mut n = 0;
    for c in fx["cases"].as_array().unwrap() {
        let spec = &fx["templates"][c["template"].as_str().unwrap()];
        let t = tokenizer(spec["vocab"].as_str().unwrap());
        // No source: the vocabulary's own template.
        let tmpl = match spec["source"].as_str() {
            Some(s) => s.to_string(),
            None => t.chat_template().expect("vocabulary template").to_string(),
        };
        let msgs: Vec<ChatMessage> = c["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| msg(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
            .collect();
        let add = c["add_generation_prompt"].as_bool().unwrap();
        let now = c["unix_time"].as_i64();
        let got = t.render_template(&tmpl, &msgs, add, now);
        match c["expected"].as_str() {
            Some(want) => assert_eq!(got.unwrap(), want, "{}", c["name"]),
            None => {
                let e = got.expect_err(c["name"].as_str().unwrap());
                assert!(!e.0.contains('\n'), "{e}");
            }
        }
        n += 1;
    }
    assert!(n >= 50, "only {n} chat cases");
}

/// The chat template's errors name the problem in one line.
#[test]
fn chat_template_errors() {
    let t = tokenizer("smollm2");
    let e = t
        .render_template(
            "{{ raise_exception('Conversation roles must alternate') }}",
            &[],
            true,
            None,
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("Conversation roles must alternate"),
        "{e}"
    );
    let e = t.render_template("{% if %}", &[], true, None).unwrap_err();
    assert!(
        e.to_string().starts_with("chat template does not parse"),
        "{e}"
    );
    let spm = tokenizer("llama-spm");
    assert!(spm.render_chat(&[], true).is_err()); // no template in this vocabulary
}

/// CPU time of the calling thread (wall time would count other processes sharing the cores).
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Perplexity tokenizes whole files: the GPL (35 KB) must take well under 100 ms of CPU.
#[test]
fn encodes_a_license_quickly() {
    let text = std::fs::read_to_string("/usr/share/common-licenses/GPL-3").unwrap_or_else(|_| {
        // Not every system ships it; the corpus repeated is a similar mix.
        let (_, cases) = cases("smollm2");
        let all: String = cases.iter().map(|c| c.text.as_str()).collect();
        all.repeat(35_000 / all.len() + 1)
    });
    for vocab in ["smollm2", "llama-bpe", "qwen2", "llama-spm"] {
        let t = tokenizer(vocab);
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let (c0, w0) = (thread_cpu_time(), Instant::now());
            let toks = t.encode(&text, true, false).unwrap();
            let cpu = thread_cpu_time() - c0;
            eprintln!(
                "{vocab}: {} bytes, {} tokens: {cpu:?} CPU, {:?} wall",
                text.len(),
                toks.len(),
                w0.elapsed()
            );
            best = best.min(cpu);
            assert!(toks.len() > text.len() / 8);
        }
        if !cfg!(debug_assertions) {
            assert!(best < Duration::from_millis(100), "{vocab}: {best:?}");
        }
    }
}

// ---- malformed vocabularies: errors, never panics -------------------------------------------

fn strings(items: &[&str]) -> Value {
    Value::Array(
        ValueType::String,
        items.iter().map(|s| Value::String(s.to_string())).collect(),
    )
}

fn tiny_bpe(edit: impl FnOnce(&mut Vec<(&'static str, Value)>)) -> Result<Tokenizer, String> {
    let mut kvs: Vec<(&'static str, Value)> = vec![
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("gpt-2".into())),
        (
            "tokenizer.ggml.tokens",
            strings(&["a", "b", "ab", "<|endoftext|>"]),
        ),
        ("tokenizer.ggml.merges", strings(&["a b"])),
        (
            "tokenizer.ggml.token_type",
            Value::Array(ValueType::I32, [1, 1, 1, 3].map(Value::I32).to_vec()),
        ),
        ("tokenizer.ggml.eos_token_id", Value::U32(3)),
    ];
    edit(&mut kvs);
    let mut w = GgufWriter::new();
    for (k, v) in kvs {
        w.kv(k, v);
    }
    let g = Gguf::parse_bytes(&w.to_bytes()).unwrap();
    Tokenizer::from_gguf(&g).map_err(|e| e.to_string())
}

#[test]
fn tiny_vocab_works() {
    let t = tiny_bpe(|_| {}).unwrap();
    assert_eq!(t.encode("ab<|endoftext|>", false, true).unwrap(), [2, 3]);
    assert!(t.is_eog(3));
}

#[test]
fn malformed_vocabs_are_errors() {
    let set = |k: &'static str, v: Value| {
        move |kvs: &mut Vec<(&'static str, Value)>| {
            kvs.retain(|(key, _)| *key != k);
            kvs.push((k, v));
        }
    };
    let drop = |k: &'static str| {
        move |kvs: &mut Vec<(&'static str, Value)>| kvs.retain(|(key, _)| *key != k)
    };
    let cases: Vec<(&str, Result<Tokenizer, String>)> = vec![
        ("tokens", tiny_bpe(drop("tokenizer.ggml.tokens"))),
        (
            "tokenizer.ggml.model",
            tiny_bpe(drop("tokenizer.ggml.model")),
        ),
        ("merges", tiny_bpe(drop("tokenizer.ggml.merges"))),
        (
            "no space",
            tiny_bpe(set("tokenizer.ggml.merges", strings(&["ab"]))),
        ),
        (
            "pre-tokenizer",
            tiny_bpe(set("tokenizer.ggml.pre", Value::String("klingon".into()))),
        ),
        ("pre-tokenizer", tiny_bpe(drop("tokenizer.ggml.pre"))),
        (
            "bert",
            tiny_bpe(set("tokenizer.ggml.model", Value::String("bert".into()))),
        ),
        (
            "repeats",
            tiny_bpe(set("tokenizer.ggml.tokens", strings(&["a", "b", "a", "c"]))),
        ),
        (
            "token_type",
            tiny_bpe(set(
                "tokenizer.ggml.token_type",
                Value::Array(ValueType::I32, vec![Value::I32(1)]),
            )),
        ),
        (
            "should be",
            tiny_bpe(set("tokenizer.ggml.tokens", Value::U32(7))),
        ),
        (
            "not a string",
            tiny_bpe(set(
                "tokenizer.ggml.tokens",
                Value::Array(ValueType::U32, vec![Value::U32(1)]),
            )),
        ),
        (
            "should be",
            tiny_bpe(set("tokenizer.ggml.add_bos_token", Value::U32(1))),
        ),
    ];
    for (want, got) in cases {
        match got {
            Ok(_) => panic!("expected an error mentioning {want:?}"),
            Err(e) => {
                assert!(e.contains(want), "{e:?} does not mention {want:?}");
                assert!(!e.contains('\n'), "{e:?}");
            }
        }
    }
    // Ids out of range are ignored (llama.cpp keeps its default), never indexed.
    let t = tiny_bpe(set("tokenizer.ggml.eos_token_id", Value::U32(99))).unwrap();
    assert_eq!(t.eos(), None);
    assert!(!t.is_eog(99) && t.piece(99, true).is_empty());
    // BOS requested but missing: an error from encode, not a panic.
    let t = tiny_bpe(set("tokenizer.ggml.add_bos_token", Value::Bool(true))).unwrap();
    assert!(t
        .encode("a", true, false)
        .unwrap_err()
        .to_string()
        .contains("BOS"));
}

/// A BPE vocabulary with `add_space_prefix` adds no space when encoding, but detokenization
/// takes one off the first token (llama.cpp reads the key for every model type).
#[test]
fn r_bpe_space_prefix_only_detokenizes() {
    let vocab = |prefix: bool| {
        tiny_bpe(|kvs| {
            kvs.retain(|(k, _)| {
                !k.starts_with("tokenizer.ggml.t") && *k != "tokenizer.ggml.merges"
            });
            kvs.push(("tokenizer.ggml.tokens", strings(&["a", "Ġ", "Ġa", "b"])));
            kvs.push(("tokenizer.ggml.merges", strings(&["Ġ a"])));
            kvs.push(("tokenizer.ggml.add_space_prefix", Value::Bool(prefix)));
        })
        .unwrap()
    };
    for prefix in [false, true] {
        let t = vocab(prefix);
        assert_eq!(
            t.encode(" a", false, false).unwrap(),
            [2],
            "prefix {prefix}"
        );
        assert_eq!(t.encode("a", false, false).unwrap(), [0], "prefix {prefix}");
        let want = if prefix { "a" } else { " a" };
        assert_eq!(t.decode(&[2]), want);
        assert_eq!(t.piece(2, false), b" a"); // a stream still prints the space
    }
}

/// An SPM vocabulary without byte tokens: a character it cannot spell is an error.
#[test]
fn spm_without_byte_fallback_is_an_error() {
    let mut w = GgufWriter::new();
    w.kv("tokenizer.ggml.model", Value::String("llama".into()));
    w.kv(
        "tokenizer.ggml.tokens",
        strings(&["<unk>", "<s>", "</s>", "▁", "a", "▁a"]),
    );
    w.kv(
        "tokenizer.ggml.scores",
        Value::Array(
            ValueType::F32,
            [0.0, 0.0, 0.0, -1.0, -2.0, -0.5].map(Value::F32).to_vec(),
        ),
    );
    w.kv(
        "tokenizer.ggml.token_type",
        Value::Array(ValueType::I32, [2, 3, 3, 1, 1, 1].map(Value::I32).to_vec()),
    );
    let g = Gguf::parse_bytes(&w.to_bytes()).unwrap();
    let t = Tokenizer::from_gguf(&g).unwrap();
    assert_eq!(t.encode("a a", true, false).unwrap(), [1, 5, 5]);
    let e = t.encode("ab", false, false).unwrap_err().to_string();
    assert!(e.contains("<0x62>"), "{e}");
}

/// On demand, not in CI: `scripts/make-tokenizer-fixtures.sh --fuzz N` has llama.cpp tokenize N
/// random strings per vocabulary into .cache/tokfuzz/ and runs this test on them.
#[test]
#[ignore]
fn differential_fuzz_against_llama_cpp() {
    let dir = root().join(".cache/tokfuzz");
    let mut seen = 0;
    for &(vocab, _) in VOCABS {
        let Ok(lines) = std::fs::read_to_string(dir.join(format!("{vocab}.txt"))) else {
            continue;
        };
        let t = tokenizer(vocab);
        let mut bad = Vec::new();
        let mut total = 0;
        for line in lines.lines() {
            // "ADD PARSE HEX\tIDS"
            let (input, want) = line.split_once('\t').expect("tab");
            let mut f = input.split(' ');
            let (add, parse) = (f.next() == Some("1"), f.next() == Some("1"));
            let hex = f.next().unwrap_or("");
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            let text = String::from_utf8(bytes).unwrap();
            let want: Vec<u32> = want
                .split_whitespace()
                .map(|x| x.parse().unwrap())
                .collect();
            let got = t.encode(&text, add, parse).unwrap();
            if got != want {
                bad.push(format!(
                    "  {text:?} add={add} parse={parse}\n    want {want:?}\n    got  {got:?}"
                ));
            }
            total += 1;
        }
        report(vocab, "fuzzed encodings", bad, total);
        eprintln!("{vocab}: {total} fuzzed strings match llama.cpp");
        seen += total;
    }
    assert!(
        seen > 0,
        "nothing in {}: run scripts/make-tokenizer-fixtures.sh --fuzz N",
        dir.display()
    );
}
