// `--weights stream` through the real binary: bad input is one error line and a non-zero exit
// (missing or too small budget, a plan for another budget, storage that fails after the retry),
// and io_uring refused by a seccomp filter (ENOSYS, EPERM) falls back to the pread threads.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_flashslim");

fn model() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "default model missing: run scripts/fetch-model.sh"
    );
    p
}

/// `flashslim bench` decoding one token with the given extra arguments.
fn bench(extra: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args([
        "bench",
        "-m",
        model().to_str().unwrap(),
        "-t",
        "2",
        "-p",
        "0",
        "-n",
        "1",
        "-r",
        "1",
    ])
    .args(extra);
    c
}

fn stderr_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Failure whose last stderr line is the error, containing `needle`; `lines` lines in all.
fn fails(mut c: Command, needle: &str, lines: usize) {
    let o = c.output().expect("spawn flashslim");
    let err = stderr_lines(&o);
    assert!(!o.status.success(), "succeeded: {err:?}");
    assert!(
        err.iter()
            .all(|l| !l.contains("panicked") && !l.contains("internal error")),
        "{err:?}"
    );
    assert_eq!(err.len(), lines, "{err:?}");
    let last = err.last().unwrap();
    assert!(
        last.starts_with("error: ") && last.contains(needle),
        "expected `{needle}` in {err:?}"
    );
}

#[test]
fn budget_errors_are_one_line() {
    fails(bench(&["--weights", "stream"]), "needs --budget SIZE", 1);
    fails(
        bench(&["--weights", "stream", "--budget", "12MiB"]),
        "below the minimum working set 28.8 MiB",
        1,
    );
    fails(
        bench(&["--weights", "ram", "--budget", "40MiB"]),
        "apply to --weights stream only",
        1,
    );
}

#[test]
fn plan_for_another_budget_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("p.json");
    let o = Command::new(BIN)
        .args([
            "plan",
            "-m",
            model().to_str().unwrap(),
            "--budget",
            "40MiB",
            "-t",
            "2",
        ])
        .args([
            "--prompt-tokens",
            "2",
            "--decode-tokens",
            "1",
            "--sweep-mib",
            "4",
            "-o",
        ])
        .arg(&plan)
        .output()
        .unwrap();
    assert!(o.status.success(), "{:?}", stderr_lines(&o));
    let p = plan.to_str().unwrap();
    fails(
        bench(&["--weights", "stream", "--budget", "48MiB", "--plan", p]),
        "made for a budget of 40.0 MiB but --budget is 48.0 MiB",
        1,
    );
    // The same plan with its own budget runs, and says which plan it uses.
    let o = bench(&["--weights", "stream", "--plan", p])
        .output()
        .unwrap();
    assert!(o.status.success(), "{:?}", stderr_lines(&o));
    assert!(
        !stderr_lines(&o)[0].contains("quick heuristic"),
        "{:?}",
        stderr_lines(&o)
    );
    std::fs::write(&plan, "{\"format\": \"flashslim-plan\", \"version\": 1}").unwrap();
    fails(
        bench(&["--weights", "stream", "--plan", p]),
        "`model`: missing",
        1,
    );
}

#[test]
fn storage_failure_after_retry_names_the_offset() {
    let mut c = bench(&["--weights", "stream", "--budget", "40MiB"]);
    c.env("FLASHSLIM_STREAM_FAULTS", "eio*1000");
    fails(c, "failed after one retry: Input/output error", 2);
    let mut c = bench(&["--weights", "stream", "--budget", "40MiB"]);
    c.env("FLASHSLIM_STREAM_FAULTS", "delay=5000*1000")
        .env("FLASHSLIM_STREAM_TIMEOUT_MS", "300");
    fails(c, "timed out after 300 ms waiting for chunk", 2);
}

/// Run `cmd` with io_uring_setup(2) failing with `errno` (a seccomp filter, as a container
/// runtime would install).
fn without_io_uring(cmd: &mut Command, errno: i32) {
    // SAFETY: the closure runs in the forked child before exec and only makes two prctl calls,
    // which are async-signal-safe; the filter program lives on the child's stack during them.
    unsafe {
        cmd.pre_exec(move || {
            const NR_IO_URING_SETUP: u32 = 425; // x86_64 and aarch64 alike
            let prog = [
                libc::sock_filter {
                    code: 0x20,
                    jt: 0,
                    jf: 0,
                    k: 0,
                }, // ld [nr]
                libc::sock_filter {
                    code: 0x15,
                    jt: 0,
                    jf: 1,
                    k: NR_IO_URING_SETUP,
                },
                libc::sock_filter {
                    code: 0x06,
                    jt: 0,
                    jf: 0,
                    k: 0x0005_0000 | errno as u32,
                },
                libc::sock_filter {
                    code: 0x06,
                    jt: 0,
                    jf: 0,
                    k: 0x7fff_0000,
                },
            ];
            let fprog = libc::sock_fprog {
                len: prog.len() as u16,
                filter: prog.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, 2, &fprog as *const _ as usize, 0, 0) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn io_uring_refused_falls_back_to_pread() {
    for (errno, text) in [
        (libc::ENOSYS, "Function not implemented"),
        (libc::EPERM, "Operation not permitted"),
    ] {
        let mut c = bench(&["--weights", "stream", "--budget", "40MiB"]);
        without_io_uring(&mut c, errno);
        let o = c.output().unwrap();
        let err = stderr_lines(&o);
        assert!(o.status.success(), "{err:?}");
        assert!(
            err[0].contains("reads: pread threads") && err[0].contains(text),
            "{err:?}"
        );
    }
    // Without the filter the same run uses io_uring (so the test above really changed something).
    let o = bench(&["--weights", "stream", "--budget", "40MiB"])
        .output()
        .unwrap();
    assert!(
        stderr_lines(&o)[0].contains("reads: io_uring"),
        "{:?}",
        stderr_lines(&o)
    );
}
