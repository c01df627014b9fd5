// Merge checks on synthetic runs: the written trace passes the validator (ph/ts/pid/tid on every
// event, nesting, per-source monotonic time, matched async pairs, names), has one process per
// source, and puts kernel events on the engine's clock.

use super::*;
use crate::run::{StageSpan, TokenSpan};
use crate::testkit::{synthetic_run, Mode};
use crate::timeline::{chrome, validate::validate};

#[test]
fn synthetic_stream_run_merges_into_a_valid_trace() {
    let run = synthetic_run(Mode::Stream, 4, 10, 3);
    let (tl, rep) = merge(&run).unwrap();
    let names: Vec<&str> = tl.processes.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["engine", "layers/ops", "weights I/O", "kernel (bpftrace)"]
    );
    assert_eq!(rep.notes, Vec::<String>::new());
    let json = chrome::to_string(&tl);
    let s = validate(&json).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(s.processes, 4);
    assert_eq!(s.by_phase["b"], s.by_phase["e"]);
    assert_eq!(s.by_phase["b"], run.io.len() + run.block_io.len());
    // Every op and every layer grouping became a complete event.
    assert!(s.by_phase["X"] >= run.ops.len() + run.stages.len() + run.tokens.len());
    // The origin is the run's first event; nothing is negative.
    assert_eq!(rep.origin_ns, run.origin_ns().unwrap());
}

#[test]
fn kernel_events_land_on_the_engine_clock() {
    // The loader converted bpftrace's BOOTTIME rows through the run's clock_sync rows.
    let run = synthetic_run(Mode::Stream, 2, 3, 5);
    let (tl, rep) = merge(&run).unwrap();
    let k = tl
        .processes
        .iter()
        .find(|p| p.name.starts_with("kernel"))
        .unwrap();
    let first = &k.spans[0];
    let io0 = run.io.iter().min_by_key(|q| q.submit_ns).unwrap();
    // Synthetic block requests are issued 8 µs after the streaming submit. The offset is the
    // smallest over the clock_sync rows (the engine's estimate); the testkit's best row is
    // 40 ns late, so the converted time is 40 ns early.
    assert_eq!(first.start_ns + rep.origin_ns, io0.submit_ns + 8_000 - 40);
}

#[test]
fn overlapping_stages_go_to_an_overflow_thread_and_stay_valid() {
    let run = RunData {
        label: "x".into(),
        stages: vec![
            StageSpan {
                name: "a".into(),
                thread: 1,
                gen: None,
                index: None,
                start_ns: 100,
                end_ns: 300,
                major_faults: 0,
                unfinished: false,
            },
            StageSpan {
                name: "b".into(),
                thread: 1,
                gen: None,
                index: None,
                start_ns: 200,
                end_ns: 400,
                major_faults: 0,
                unfinished: false,
            },
        ],
        tokens: vec![TokenSpan {
            gen: 0,
            index: 0,
            phase: crate::run::Phase::Prefill,
            start_ns: 100,
            end_ns: 150,
            pass_ns: 50,
            storage_read_bytes: None,
            streamed_bytes: 0,
            stall_ns: 0,
            rss_bytes: None,
        }],
        ..RunData::default()
    };
    let (tl, rep) = merge(&run).unwrap();
    assert_eq!(rep.moved_overlaps, 1);
    validate(&chrome::to_string(&tl)).unwrap();
}

#[test]
fn the_validator_sees_a_broken_writer() {
    // Prove the merge check can fail: write overlapping slices without settle().
    let mut tl = Timeline::new();
    let p = tl.process("engine");
    let t = tl.thread(p, "main");
    tl.slice(t, "a", "x", 0, 10_000, vec![]);
    tl.slice(t, "b", "x", 5_000, 15_000, vec![]);
    let errs = validate(&chrome::to_string(&tl)).unwrap_err();
    assert!(errs[0].contains("overlaps"), "{errs:?}");
}

#[test]
fn nothing_timed_is_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("stages.jsonl"), b"{}\n").unwrap();
    let run = crate::run::load(t.path()).unwrap();
    let e = merge(&run).unwrap_err().to_string();
    assert!(e.contains("stages.jsonl (unreadable"), "{e}");
    assert!(e.contains("tokens.jsonl (missing)"), "{e}");
}
