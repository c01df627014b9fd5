// Run directories made by the real engine for the integration tests: `flashslim plan` (a measured
// device bound) then `flashslim profile` (bpftrace scripts, when root and bpftrace are there) or
// `flashslim run`, with the tensor trace, on the default model. Made once per test binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The default model of the repository.
pub fn model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// `flashslim` next to this test binary's profile directory (`target/release/flashslim`).
pub fn flashslim() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().unwrap().parent().unwrap().join("flashslim");
    assert!(
        p.is_file(),
        "{} is missing: build it first (cargo build --release -p flashslim-engine --bin flashslim)",
        p.display()
    );
    p
}

fn run_ok(cmd: &mut Command) -> String {
    let o = cmd.stdin(Stdio::null()).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{cmd:?} failed:\n{err}");
    err
}

fn bpftrace_usable() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    root && Command::new("bpftrace")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Two real runs of the same prompt: `mmap` and `stream` (the latter with a measured plan).
pub struct RealRuns {
    /// Parent directory of both runs.
    pub parent: PathBuf,
    pub mmap: PathBuf,
    pub stream: PathBuf,
    /// Whether the stream run was profiled with bpftrace scripts.
    pub bpf: bool,
}

/// The run directory the engine reported on stderr (`run directory: DIR (status)`).
fn run_dir_of(stderr: &str) -> PathBuf {
    let line = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("run directory: "))
        .unwrap_or_else(|| panic!("no run directory line in:\n{stderr}"));
    PathBuf::from(line.rsplit_once(" (").map(|(d, _)| d).unwrap_or(line))
}

/// Make (once per test binary) the two runs under `CARGO_TARGET_TMPDIR/real-runs-<binary>/`.
pub fn real_runs() -> &'static RealRuns {
    static RUNS: OnceLock<RealRuns> = OnceLock::new();
    RUNS.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        // `cli-<hash>` → `cli`: one directory per test, replaced by each run.
        let stem = exe.file_stem().unwrap().to_string_lossy().into_owned();
        let name = stem
            .rsplit_once('-')
            .map_or(stem.as_str(), |(n, _)| n)
            .to_string();
        let parent = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("real-runs-{name}"));
        let _ = std::fs::remove_dir_all(&parent);
        let runs = parent.join("runs");
        std::fs::create_dir_all(&runs).unwrap();
        let bin = flashslim();
        let model = model();
        let plan = parent.join("plan.json");
        run_ok(
            Command::new(&bin)
                .args(["plan", "--budget", "48MiB", "--sweep-mib", "8"])
                .args([
                    "--prompt-tokens",
                    "8",
                    "--decode-tokens",
                    "4",
                    "-t",
                    "2",
                    "-m",
                ])
                .arg(&model)
                .arg("-o")
                .arg(&plan),
        );
        let common = |c: &mut Command| {
            c.arg("-m")
                .arg(&model)
                .args(["-p", "The capital of France is", "-n", "8", "-t", "2"])
                .args(["--trace", "tensors", "--trace-dir"])
                .arg(&runs);
        };
        let mut c = Command::new(&bin);
        c.args(["run", "--weights", "mmap", "--temp", "0", "--seed", "1"]);
        common(&mut c);
        let mmap = run_dir_of(&run_ok(&mut c));
        let bpf = bpftrace_usable();
        let mut c = Command::new(&bin);
        if bpf {
            c.args([
                "profile",
                "--scripts",
                "blockio,faults,iouring,offcpu",
                "--weights",
                "stream",
            ]);
            common(&mut c);
            c.arg("--")
                .arg("--plan")
                .arg(&plan)
                .args(["--temp", "0", "--seed", "1"]);
        } else {
            c.args([
                "run",
                "--weights",
                "stream",
                "--temp",
                "0",
                "--seed",
                "1",
                "--plan",
            ]);
            c.arg(&plan);
            common(&mut c);
        }
        let stream = run_dir_of(&run_ok(&mut c));
        RealRuns {
            parent,
            mmap,
            stream,
            bpf,
        }
    })
}

/// Copy a run directory (files and subdirectories) to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}
