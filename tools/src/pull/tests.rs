// Pull logic against a local "device" directory (same scripts, local `sh` and `cp`): full
// pull, skip when complete, corrupt local copy, interrupted partials, device file changed,
// newer schema, selection and delete-after-verify. The real-sshd test covers the transports.

use super::*;
use crate::manifest_compat::RunStatus;
use crate::testkit::{bytes, write_device_run};

struct Dev {
    _t: tempfile::TempDir,
    remote: PathBuf,
    dest: PathBuf,
}

fn dev() -> Dev {
    let t = tempfile::tempdir().unwrap();
    let remote = t.path().join("device runs");
    let dest = t.path().join("host");
    std::fs::create_dir_all(&remote).unwrap();
    Dev {
        remote,
        dest,
        _t: t,
    }
}

fn files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("stages.jsonl", bytes(1, 1000)),
        ("sub dir/tensor-trace.bin", bytes(2, 300_000)),
        ("empty.tsv", Vec::new()),
    ]
}

fn run_pull(d: &Dev, sel: Selection, delete: bool) -> (PullReport, RecordingUi) {
    let t = LocalDir {
        label: d.remote.clone(),
    };
    let ui = RecordingUi::default();
    let l = list(&t, d.remote.to_str().unwrap()).unwrap();
    let opts = PullOptions {
        remote_dir: d.remote.to_str().unwrap().into(),
        dest: d.dest.clone(),
        selection: sel,
        delete_after_verify: delete,
    };
    let r = pull(&t, &l, &opts, &ui).unwrap();
    (r, ui)
}

#[test]
fn full_pull_then_nothing_to_do() {
    let d = dev();
    write_device_run(&d.remote, "run-1", RunStatus::Complete, &files()).unwrap();
    let (r, ui) = run_pull(&d, Selection::All, false);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(
        r.runs[0].state,
        RunState::Pulled {
            files: 3,
            bytes: 301_000
        }
    );
    assert_eq!(ui.totals.get(), (301_000, 3));
    assert_eq!(verify_local_run(&d.dest.join("run-1")), Ok(3));
    assert_eq!(
        std::fs::read(d.dest.join("run-1/manifest.json")).unwrap(),
        std::fs::read(d.remote.join("run-1/manifest.json")).unwrap()
    );
    let (r, ui) = run_pull(&d, Selection::All, false);
    assert_eq!(r.runs[0].state, RunState::AlreadyComplete);
    assert_eq!(ui.totals.get(), (0, 0));
}

#[test]
fn corrupt_local_copy_is_detected_and_replaced() {
    let d = dev();
    write_device_run(&d.remote, "r", RunStatus::Complete, &files()).unwrap();
    run_pull(&d, Selection::All, false);
    let f = d.dest.join("r/stages.jsonl");
    let mut b = std::fs::read(&f).unwrap();
    b[10] ^= 0xff;
    std::fs::write(&f, &b).unwrap();
    let (r, ui) = run_pull(&d, Selection::All, false);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(
        r.runs[0].state,
        RunState::Pulled {
            files: 1,
            bytes: 1000
        }
    );
    assert!(ui
        .notes
        .borrow()
        .iter()
        .any(|n| n.contains("local copy does not match")));
    assert_eq!(verify_local_run(&d.dest.join("r")), Ok(3));
}

#[test]
fn partial_files_are_finished_or_discarded() {
    let d = dev();
    let fs = files();
    write_device_run(&d.remote, "r", RunStatus::Complete, &fs).unwrap();
    let local = d.dest.join("r");
    std::fs::create_dir_all(local.join("sub dir")).unwrap();
    // A complete, correct .partial (interrupted before the rename) is just renamed.
    std::fs::write(local.join("stages.jsonl.partial"), &fs[0].1).unwrap();
    // A half-copied one is fetched again (the local transport cannot resume).
    std::fs::write(
        local.join("sub dir/tensor-trace.bin.partial"),
        &fs[1].1[..1000],
    )
    .unwrap();
    let (r, _) = run_pull(&d, Selection::All, false);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(
        r.runs[0].state,
        RunState::Pulled {
            files: 2,
            bytes: 300_000
        }
    );
    assert!(!local.join("stages.jsonl.partial").exists());
    assert!(!local.join("sub dir/tensor-trace.bin.partial").exists());
    assert_eq!(verify_local_run(&local), Ok(3));
}

#[test]
fn device_file_changed_after_its_manifest_entry_is_refused() {
    let d = dev();
    write_device_run(&d.remote, "r", RunStatus::Complete, &files()).unwrap();
    write_device_run(&d.remote, "ok", RunStatus::Complete, &files()).unwrap();
    std::fs::write(d.remote.join("r/stages.jsonl"), b"changed").unwrap();
    let (r, _) = run_pull(&d, Selection::All, false);
    assert_eq!(r.errors.len(), 1);
    let msg = r.errors[0].to_string();
    assert!(
        msg.contains("\"stages.jsonl\"") && msg.contains("no longer matches"),
        "{msg}"
    );
    assert!(msg.contains("device has 7 bytes"), "{msg}");
    let rr = r.runs.iter().find(|x| x.dir == "r").unwrap();
    assert_eq!(rr.state, RunState::Failed);
    assert!(!d.dest.join("r/stages.jsonl").exists(), "bad copy not kept");
    assert!(
        !d.dest.join("r/stages.jsonl.partial").exists(),
        "bad copy not kept"
    );
    assert!(
        !d.dest.join("r/manifest.json").exists(),
        "run not marked complete"
    );
    // The other run is unaffected.
    assert_eq!(verify_local_run(&d.dest.join("ok")), Ok(3));
}

#[test]
fn newer_schema_and_unknown_run() {
    let d = dev();
    write_device_run(&d.remote, "good", RunStatus::Complete, &files()).unwrap();
    std::fs::create_dir_all(d.remote.join("future")).unwrap();
    std::fs::write(
        d.remote.join("future/manifest.json"),
        br#"{"schema": "flashslim.run", "schema_version": 7}"#,
    )
    .unwrap();
    let (r, _) = run_pull(&d, Selection::All, false);
    assert_eq!(r.errors.len(), 1);
    assert!(r.errors[0]
        .to_string()
        .contains("schema version 7 is newer"));
    let t = LocalDir {
        label: d.remote.clone(),
    };
    let l = list(&t, d.remote.to_str().unwrap()).unwrap();
    let opts = PullOptions {
        remote_dir: d.remote.to_str().unwrap().into(),
        dest: d.dest.clone(),
        selection: Selection::Runs(vec!["nope".into()]),
        delete_after_verify: false,
    };
    let e = pull(&t, &l, &opts, &RecordingUi::default()).unwrap_err();
    assert!(
        e.to_string()
            .contains("run \"nope\" not found (device has: future, good)"),
        "{e}"
    );
}

#[test]
fn latest_and_delete_after_verify() {
    let d = dev();
    write_device_run(&d.remote, "old", RunStatus::Complete, &files()).unwrap();
    // Make "new" strictly newer for `-nt` (1 s mtime resolution on some filesystems).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    write_device_run(&d.remote, "new", RunStatus::Complete, &files()).unwrap();
    std::fs::write(d.remote.join("new/unlisted.txt"), b"x").unwrap();
    let (r, ui) = run_pull(&d, Selection::Latest, true);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.runs.len(), 1);
    assert_eq!(r.runs[0].dir, "new");
    assert!(r.runs[0].deleted_on_device);
    assert!(!d.remote.join("new/manifest.json").exists());
    assert!(!d.remote.join("new/stages.jsonl").exists());
    assert!(
        d.remote.join("new/unlisted.txt").exists(),
        "unlisted files are left"
    );
    assert!(ui
        .notes
        .borrow()
        .iter()
        .any(|n| n.contains("does not list")));
    assert!(d.remote.join("old/manifest.json").exists());
}

#[test]
fn running_runs_warn_and_are_never_deleted() {
    let d = dev();
    write_device_run(&d.remote, "live", RunStatus::Running, &files()).unwrap();
    let (r, ui) = run_pull(&d, Selection::All, true);
    assert!(r.errors.is_empty());
    assert!(ui
        .notes
        .borrow()
        .iter()
        .any(|n| n.contains("still running")));
    assert!(!r.runs[0].deleted_on_device);
    assert!(d.remote.join("live/manifest.json").exists());
}

#[test]
fn failed_pull_never_deletes_on_device() {
    let d = dev();
    write_device_run(&d.remote, "r", RunStatus::Complete, &files()).unwrap();
    std::fs::write(d.remote.join("r/empty.tsv"), b"grown").unwrap();
    let (r, _) = run_pull(&d, Selection::All, true);
    assert_eq!(r.errors.len(), 1);
    assert!(!r.runs[0].deleted_on_device);
    assert!(d.remote.join("r/manifest.json").exists());
}
