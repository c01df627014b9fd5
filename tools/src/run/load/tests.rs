// The loader on run directories written through the engine's writers (testkit): every input
// loaded, damaged inputs marked partial or unreadable, missing ones missing, a newer manifest
// refused, the device bound taken from the manifest.

use super::*;
use crate::testkit::{write_synthetic_run, Mode, Synth, RSS_BASE, RSS_STEP, SYNTH_DEVICE_BPS};

fn synth(mode: Mode) -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let d = write_synthetic_run(
        t.path(),
        "r",
        Synth {
            mode,
            layers: 3,
            tokens: 6,
            seed: 5,
        },
    );
    (t, d)
}

fn state<'a>(run: &'a RunData, file: &str) -> &'a InputState {
    &run.inputs
        .iter()
        .find(|i| i.file == file)
        .unwrap_or_else(|| panic!("no input {file}: {:?}", run.inputs))
        .state
}

#[test]
fn a_whole_stream_run_loads_every_input() {
    let (_t, d) = synth(Mode::Stream);
    let run = load(&d).unwrap();
    for f in [MANIFEST_FILE, STAGES, TOKENS, IO, TENSOR_TRACE, STACKS_FILE] {
        assert!(
            matches!(state(&run, f), InputState::Loaded(_)),
            "{f}: {:?}",
            state(&run, f)
        );
    }
    assert_eq!(run.tokens.len(), 6);
    assert!(!run.io.is_empty() && !run.ops.is_empty() && !run.stages.is_empty());
    assert_eq!(run.storage_bound_bytes_per_s, Some(SYNTH_DEVICE_BPS));
    assert_eq!(run.weights_mode.as_deref(), Some("stream"));
    // Reads are paired submit → complete, never backwards.
    assert!(run.io.iter().all(|r| r.complete_ns >= r.submit_ns));
}

#[test]
fn rss_per_token_becomes_a_counter_and_older_logs_have_none() {
    let (_t, d) = synth(Mode::Stream);
    let run = load(&d).unwrap();
    let rss = run
        .counters
        .iter()
        .find(|c| c.name == "RSS bytes")
        .expect("an RSS counter");
    let want: Vec<(u64, f64)> = run
        .tokens
        .iter()
        .enumerate()
        .map(|(k, t)| (t.end_ns, (RSS_BASE + k as u64 * RSS_STEP) as f64))
        .collect();
    assert_eq!(rss.points, want);
    // A tokens.jsonl from before the field existed: same run, no RSS, no counter.
    let path = d.join(TOKENS);
    let old: String = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if let Some(o) = v.as_object_mut() {
                o.remove("rss_bytes");
            }
            format!("{v}\n")
        })
        .collect();
    assert!(!old.contains("rss_bytes"));
    std::fs::write(&path, old).unwrap();
    let run = load(&d).unwrap();
    assert!(matches!(state(&run, TOKENS), InputState::Loaded(_)));
    assert!(run.tokens.iter().all(|t| t.rss_bytes.is_none()));
    assert!(run.counters.iter().all(|c| c.name != "RSS bytes"));
}

#[test]
fn damaged_and_missing_inputs_are_marked() {
    let (_t, d) = synth(Mode::Stream);
    std::fs::remove_file(d.join(IO)).unwrap();
    let tok = std::fs::read(d.join(TOKENS)).unwrap();
    std::fs::write(d.join(TOKENS), &tok[..tok.len() - 7]).unwrap();
    std::fs::write(d.join(STAGES), b"not json\n").unwrap();
    let run = load(&d).unwrap();
    assert!(matches!(state(&run, IO), InputState::Missing));
    assert!(matches!(state(&run, TOKENS), InputState::Partial(s) if s.contains("cut short")));
    assert!(matches!(state(&run, STAGES), InputState::Unreadable(_)));
    // The manifest still loads, but says which files no longer match it.
    match state(&run, MANIFEST_FILE) {
        InputState::Partial(s) => {
            assert!(s.contains("missing here: io.jsonl"), "{s}");
            assert!(s.contains("differ from the manifest"), "{s}");
        }
        s => panic!("{s:?}"),
    }
    assert_eq!(run.tokens.len(), 5, "the cut last token is left out");
}

#[test]
fn a_newer_manifest_refuses_the_run_and_no_directory_is_an_error() {
    let (_t, d) = synth(Mode::Mmap);
    let p = d.join(MANIFEST_FILE);
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    v["schema_version"] = 99.into();
    std::fs::write(&p, v.to_string()).unwrap();
    let e = load(&d).unwrap_err();
    assert!(matches!(e, LoadError::NewerSchema { .. }), "{e}");
    assert!(e.to_string().contains("newer"), "{e}");
    let e = load(&d.join("nope")).unwrap_err();
    assert!(matches!(e, LoadError::NotADirectory(_)), "{e}");
}

#[test]
fn an_empty_directory_loads_with_everything_missing() {
    let t = tempfile::tempdir().unwrap();
    let run = load(t.path()).unwrap();
    assert!(run.manifest.is_none());
    for f in [MANIFEST_FILE, STAGES, TOKENS, IO, TENSOR_TRACE] {
        assert!(matches!(state(&run, f), InputState::Missing), "{f}");
    }
}
