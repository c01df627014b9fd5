// slim-pull-logs against a real OpenSSH server on 127.0.0.1: throwaway host and user keys in a
// temp dir, `/usr/sbin/sshd -D` started (and killed) by the test, a private ssh_config with
// StrictHostKeyChecking and its own known_hosts, passed with --ssh-opt "-F ...". The server
// offers no sftp subsystem, so scp only works with -O. Covered for both copy modes: full pull,
// an interrupted transfer resumed, a corrupted local file re-fetched, a device file changed
// after its manifest entry refused; plus a pull killed mid-copy, --list and --delete-after-verify.
// The main test pulls two runs made by the real engine (tests/common); the others use testkit runs.
// Needs root and openssh-server; run by scripts/test.d/80-tools.sh (`--include-ignored`).

mod common;

use flashslim_tools::manifest_compat::RunStatus;
use flashslim_tools::pull::verify_local_run;
use flashslim_tools::testkit::{bytes, write_device_run};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Only the sshd this test started, by its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sshd {
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn remote(&self) -> PathBuf {
        self.path("device runs")
    }
}

fn sh(cmd: &mut Command) {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{:?}: {}",
        cmd,
        String::from_utf8_lossy(&o.stderr)
    );
}

fn start_sshd() -> Sshd {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for k in ["host_key", "user_key"] {
        sh(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", k, "-f"])
            .arg(d.join(k)));
    }
    std::fs::copy(d.join("user_key.pub"), d.join("authorized_keys")).unwrap();
    let host_pub = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
    std::fs::write(
        d.join("known_hosts"),
        format!("slim-test-device {host_pub}"),
    )
    .unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
    std::fs::write(
        d.join("sshd_config"),
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {pid}\n\
             AuthorizedKeysFile {ak}\nPubkeyAuthentication yes\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nStrictModes no\n\
             UsePAM no\nAllowUsers {user}\nLogLevel ERROR\n",
            hk = d.join("host_key").display(),
            pid = d.join("sshd.pid").display(),
            ak = d.join("authorized_keys").display(),
            user = user.trim(),
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("ssh_config"),
        format!(
            "Host *\n  IdentityFile {uk}\n  IdentitiesOnly yes\n  HostKeyAlias slim-test-device\n\
             StrictHostKeyChecking yes\n  UserKnownHostsFile {kh}\n  GlobalKnownHostsFile /dev/null\n\
             BatchMode yes\n  LogLevel ERROR\n",
            uk = d.join("user_key").display(),
            kh = d.join("known_hosts").display(),
        ),
    )
    .unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap(); // sshd's privilege-separation directory
    let child = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(d.join("sshd_config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("/usr/sbin/sshd (apt package openssh-server)");
    // sshd writes its pid file once it listens (probing the port would make it log an error).
    let t0 = Instant::now();
    while !d.join("sshd.pid").exists() {
        assert!(t0.elapsed() < Duration::from_secs(10), "sshd did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::create_dir_all(d.join("device runs")).unwrap();
    Sshd { child, port, dir }
}

/// Run slim-pull-logs against the test sshd.
fn pull(s: &Sshd, dest: &Path, transport: &str, extra: &[&str]) -> Output {
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
    Command::new(env!("CARGO_BIN_EXE_slim-pull-logs"))
        .arg("--target")
        .arg(format!("{}@127.0.0.1:{}", user.trim(), s.port))
        .arg(format!("--ssh-opt=-F {}", s.path("ssh_config").display()))
        .arg("--remote-dir")
        .arg(s.remote())
        .arg("--dest")
        .arg(dest)
        .arg("--transport")
        .arg(transport)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("manifest-adjacent.txt", b"hello\n".to_vec()),
        ("stages.jsonl", bytes(1, 20_000)),
        ("traces/tensor trace.bin", bytes(2, 3_000_000)),
        ("bpf-biolatency.ndjson", b"{\"type\": \"hist\", \"data\": {\"@usecs\": [{\"min\": 1, \"max\": 1, \"count\": 3}]}}\n".to_vec()),
        ("stacks.folded", b"a;b 3\na;c 1\n".to_vec()),
        ("empty.tsv", Vec::new()),
    ]
}

fn full_pull_resume_corrupt_refuse(transport: &str) {
    // Two runs made by the real engine (mmap, and stream with tensor trace, io records and,
    // as root, bpftrace outputs), placed on the "device" under their own names.
    let s = start_sshd();
    let real = common::real_runs();
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    let (r1, r2) = (name(&real.stream), name(&real.mmap));
    common::copy_dir(&real.stream, &s.remote().join(&r1));
    common::copy_dir(&real.mmap, &s.remote().join(&r2));
    let dest = s.path("host");

    // 1. Full pull.
    let o = pull(&s, &dest, transport, &["--report"]);
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let via = if transport == "rsync" {
        "(rsync)"
    } else {
        "(scp -O)"
    };
    assert!(err.contains(via), "{}", text(&o));
    for r in [&r1, &r2] {
        assert!(verify_local_run(&dest.join(r)).is_ok(), "{r}");
        assert_eq!(
            std::fs::read(dest.join(r).join("manifest.json")).unwrap(),
            std::fs::read(s.remote().join(r).join("manifest.json")).unwrap()
        );
    }
    assert!(
        dest.join(&r1).join("report.html").is_file(),
        "--report wrote the report"
    );
    let o = pull(&s, &dest, transport, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("{r1}: already complete")),
        "{}",
        text(&o)
    );

    // 2. An interrupted transfer, resumed: the run is unfinished (no local manifest) and the big
    //    file is half there as .partial.
    let big = dest.join(&r1).join("io.jsonl");
    let partial = dest.join(&r1).join("io.jsonl.partial");
    let good = std::fs::read(&big).unwrap();
    std::fs::remove_file(dest.join(&r1).join("manifest.json")).unwrap();
    std::fs::rename(&big, &partial).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&partial)
        .unwrap()
        .set_len(good.len() as u64 / 2)
        .unwrap();
    let ino = std::fs::metadata(&partial).unwrap().ino();
    let o = pull(&s, &dest, transport, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!partial.exists());
    assert_eq!(std::fs::read(&big).unwrap(), good);
    assert!(dest.join(&r1).join("manifest.json").is_file());
    if transport == "rsync" {
        // rsync --append-verify extended the partial file in place (same inode), it did not
        // fetch a new copy.
        assert_eq!(
            std::fs::metadata(&big).unwrap().ino(),
            ino,
            "rsync resumed in place"
        );
    }
    // A partial whose kept prefix is wrong is caught (rsync's whole-file check / our sha256).
    std::fs::remove_file(dest.join(&r1).join("manifest.json")).unwrap();
    let mut bad = good[..good.len() / 3].to_vec();
    bad[100] ^= 0x55;
    std::fs::remove_file(&big).unwrap();
    std::fs::write(&partial, &bad).unwrap();
    let o = pull(&s, &dest, transport, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read(&big).unwrap(), good);
    assert!(verify_local_run(&dest.join(&r1)).is_ok());

    // 3. A corrupted local file (same size, one byte flipped) is detected and fetched again.
    let f = dest.join(&r2).join("stages.jsonl");
    let mut b = std::fs::read(&f).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 1;
    std::fs::write(&f, &b).unwrap();
    let o = pull(&s, &dest, transport, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "{r2}/stages.jsonl: local copy does not match the manifest"
        )),
        "{}",
        text(&o)
    );
    assert!(verify_local_run(&dest.join(&r2)).is_ok());

    // 4. A device file changed after its manifest entry: refused, named, nothing kept.
    let dest2 = s.path("host2");
    std::fs::write(
        s.remote().join(&r1).join("stages.jsonl"),
        b"rewritten after the manifest",
    )
    .unwrap();
    let o = pull(
        &s,
        &dest2,
        transport,
        &["--run", &r1, "--delete-after-verify"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("error: ") && l.contains("refused \"stages.jsonl\""))
        .unwrap_or_else(|| panic!("{}", text(&o)));
    assert!(
        line.contains("no longer matches its manifest entry"),
        "{line}"
    );
    assert!(line.contains("device has 28 bytes"), "{line}");
    assert!(!dest2.join(&r1).join("stages.jsonl").exists());
    assert!(!dest2.join(&r1).join("stages.jsonl.partial").exists());
    assert!(!dest2.join(&r1).join("manifest.json").exists());
    assert!(
        s.remote().join(&r1).join("manifest.json").exists(),
        "nothing deleted on the device"
    );
    // The earlier verified copy in the first destination is untouched by a failing pull.
    let o = pull(&s, &dest, transport, &["--run", &r1]);
    assert!(
        o.status.success(),
        "a verified local run is complete as far as the host is concerned: {}",
        text(&o)
    );
    // (its local manifest equals the device's, and every local file verifies)
}

#[test]
#[ignore = "needs root and openssh-server; run by scripts/test.d/80-tools.sh"]
fn scp_transport() {
    full_pull_resume_corrupt_refuse("scp");
}

#[test]
#[ignore = "needs root and openssh-server; run by scripts/test.d/80-tools.sh"]
fn rsync_transport() {
    full_pull_resume_corrupt_refuse("rsync");
}

#[test]
#[ignore = "needs root and openssh-server; run by scripts/test.d/80-tools.sh"]
fn list_latest_and_delete_after_verify() {
    let s = start_sshd();
    // b-new's manifest is the newest by more than a second (`-nt` may compare whole seconds).
    std::fs::create_dir_all(s.remote().join("c-future")).unwrap();
    std::fs::write(
        s.remote().join("c-future/manifest.json"),
        br#"{"schema": "flashslim.run", "schema_version": 99}"#,
    )
    .unwrap();
    write_device_run(&s.remote(), "a-old", RunStatus::Complete, &run_files()[..2]).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    write_device_run(&s.remote(), "b-new", RunStatus::Running, &run_files()[..2]).unwrap();
    let dest = s.path("host");
    let o = pull(&s, &dest, "auto", &["--list"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.lines()
            .any(|l| l.starts_with("a-old") && l.contains("complete")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("b-new") && l.contains("running")),
        "{out}"
    );
    assert!(out.contains("schema version 99 is newer"), "{out}");
    // --latest is the running run: pulled with a warning, never deleted.
    let o = pull(&s, &dest, "auto", &["--latest", "--delete-after-verify"]);
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("(rsync)"),
        "auto picks rsync when both ends have it: {err}"
    );
    assert!(err.contains("\"b-new\" is still running"), "{err}");
    assert!(s.remote().join("b-new/manifest.json").exists());
    assert!(!dest.join("a-old").exists());
    // A finished run is deleted on the device after verification; the newer-schema run fails
    // with a clear message and stays.
    let o = pull(&s, &dest, "scp", &["--all", "--delete-after-verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("run \"c-future\": manifest schema version 99 is newer"),
        "{err}"
    );
    assert!(verify_local_run(&dest.join("a-old")).is_ok());
    assert!(!s.remote().join("a-old").exists(), "deleted after verify");
    assert!(s.remote().join("c-future").exists());
    // Unknown run, unknown remote dir: one-line errors.
    let o = pull(&s, &dest, "scp", &["--run", "zzz"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.lines()
            .any(|l| l.starts_with("error: run \"zzz\" not found (device has: ")),
        "{}",
        text(&o)
    );
    let o = Command::new(env!("CARGO_BIN_EXE_slim-pull-logs"))
        .args([
            "--target",
            "nobody@127.0.0.1:1",
            "--remote-dir",
            "/x",
            "--ssh-opt",
            "ConnectTimeout=3",
        ])
        .arg(format!("--ssh-opt=-F {}", s.path("ssh_config").display()))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.starts_with(
            "error: listing /x over ssh nobody@127.0.0.1:1 (scp -O) failed: `ssh` exited"
        ),
        "{err}"
    );
}

#[test]
#[ignore = "needs root and openssh-server; run by scripts/test.d/80-tools.sh"]
fn killed_mid_copy_keeps_only_verified_files() {
    let s = start_sshd();
    let big = bytes(9, 64 << 20);
    write_device_run(
        &s.remote(),
        "big",
        RunStatus::Complete,
        &[("tensor-trace.bin", big)],
    )
    .unwrap();
    let dest = s.path("host");
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_slim-pull-logs"))
        .arg("--target")
        .arg(format!("{}@127.0.0.1:{}", user.trim(), s.port))
        .arg(format!("--ssh-opt=-F {}", s.path("ssh_config").display()))
        .arg("--remote-dir")
        .arg(s.remote())
        .arg("--dest")
        .arg(&dest)
        .args(["--transport", "scp"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let partial = dest.join("big/tensor-trace.bin.partial");
    let t0 = Instant::now();
    while std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "transfer never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Interrupt hard: SIGKILL slim-pull-logs and every process under it (scp, ssh) — by pid,
    // only processes this test started. (SIGINT would be ignored when the suite runs as a
    // background job, and scp's own SIGINT handling is not ours to test.)
    let mut pids = vec![child.id()];
    let mut i = 0;
    while i < pids.len() {
        let p = pids[i];
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for t in tasks.flatten() {
                let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
                pids.extend(
                    kids.split_whitespace()
                        .filter_map(|k| k.parse::<u32>().ok()),
                );
            }
        }
        i += 1;
    }
    for p in &pids {
        let _ = Command::new("kill")
            .args(["-KILL", &p.to_string()])
            .status();
    }
    let _ = child.wait();
    let fin = dest.join("big/tensor-trace.bin");
    let interrupted = !fin.exists();
    eprintln!("interrupted mid-copy: {interrupted}");
    if interrupted {
        assert!(!dest.join("big/manifest.json").exists());
    } else {
        assert!(
            verify_local_run(&dest.join("big")).is_ok(),
            "a final name means verified"
        );
    }
    let o = pull(&s, &dest, "rsync", &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(verify_local_run(&dest.join("big")).is_ok());
    assert!(!partial.exists());
}
