//! Pull run directories from a device and verify every byte against the run's manifest.
//!
//! The rules, in the order [`pull`] applies them:
//! - A file under its final name in `DEST/<run>/` has been verified (size + sha256 from the
//!   device manifest). A local file that no longer verifies is moved to `NAME.partial` and
//!   fetched again; a verified file is never replaced.
//! - Transfers land in `NAME.partial` and are renamed only after they verify. rsync resumes a
//!   partial file (`--append-verify`); scp and adb fetch it whole again.
//! - A mismatch is fetched once more from scratch; a second mismatch refuses the file with an
//!   error naming it (and, when the device has `sha256sum`, what the device file is now).
//! - `DEST/<run>/manifest.json` is written (atomically, byte-identical to the device's) only
//!   when every file of the run verified, so its presence means "complete on the host".
//! - The device is touched only by `--delete-after-verify`, and only for runs that verified
//!   completely and are not `running`.

mod listing;
mod progress;
mod transport;

pub use listing::{
    delete_script, listing_script, parse_listing, parse_probe, probe_script, Listing, RemoteRun,
};
pub use progress::{BarUi, RecordingUi, Ui};
pub use transport::{ssh_args_from_opts, Adb, LocalDir, Ssh, SshCopy, SshTarget, Transport};

use crate::manifest_compat::{
    FileEntry, Manifest, ManifestError, RunStatus, MANIFEST_FILE, PARTIAL_SUFFIX,
};
use crate::util::{human_bytes, sha256_bytes, sha256_file};
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Which runs to pull.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// Every run on the device (the default).
    All,
    /// The run with the newest manifest.
    Latest,
    /// These run directory names (or manifest run ids).
    Runs(Vec<String>),
}

/// Options of one pull.
#[derive(Clone, Debug)]
pub struct PullOptions {
    /// Directory holding the runs on the device.
    pub remote_dir: String,
    /// Local directory the runs land in (`DEST/<run>/`).
    pub dest: PathBuf,
    /// Which runs.
    pub selection: Selection,
    /// Delete verified, finished runs on the device.
    pub delete_after_verify: bool,
}

/// Why a pull (or one run of it) failed. Messages are one line and name the run and file.
#[derive(Debug)]
#[non_exhaustive]
pub enum PullError {
    /// `--target` could not be parsed.
    BadTarget(String),
    /// A local program (ssh, scp, rsync, adb) could not be started.
    Spawn {
        /// Program name.
        program: String,
        /// OS error.
        source: std::io::Error,
    },
    /// A command on or towards the device failed.
    Remote {
        /// What we were doing.
        what: String,
        /// Exit status and the last line of stderr.
        detail: String,
    },
    /// The listing output could not be understood.
    Listing(String),
    /// The remote directory does not exist.
    NoRemoteDir(String),
    /// `--run ID` names no run on the device.
    RunNotFound {
        /// The requested id.
        id: String,
        /// What the device has.
        available: Vec<String>,
    },
    /// A run's manifest was refused.
    Manifest {
        /// Run directory name.
        run: String,
        /// Why.
        source: ManifestError,
    },
    /// A run directory name that is not a safe single path component.
    UnsafeName(String),
    /// A local file operation failed.
    Local {
        /// The path.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// A file could not be transferred.
    Transfer {
        /// Run directory name.
        run: String,
        /// File path in the run.
        file: String,
        /// Exit status and the last line of stderr.
        detail: String,
    },
    /// A file did not match its manifest entry twice; it was not kept.
    Refused {
        /// Run directory name.
        run: String,
        /// File path in the run.
        file: String,
        /// What was expected and what arrived / what the device has now.
        detail: String,
    },
}

impl fmt::Display for PullError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PullError::BadTarget(d) => write!(f, "bad --target {d}"),
            PullError::Spawn { program, source } => write!(f, "cannot run `{program}`: {source}"),
            PullError::Remote { what, detail } => write!(f, "{what} failed: {detail}"),
            PullError::Listing(d) => write!(f, "cannot read the device listing: {d}"),
            PullError::NoRemoteDir(d) => write!(f, "remote directory {d:?} does not exist"),
            PullError::RunNotFound { id, available } => {
                if available.is_empty() {
                    write!(f, "run {id:?} not found: the device has no runs")
                } else {
                    write!(
                        f,
                        "run {id:?} not found (device has: {})",
                        available.join(", ")
                    )
                }
            }
            PullError::Manifest { run, source } => write!(f, "run {run:?}: {source}"),
            PullError::UnsafeName(n) => {
                write!(f, "refusing run directory name {n:?} (not a plain name)")
            }
            PullError::Local { path, source } => write!(f, "{}: {source}", path.display()),
            PullError::Transfer { run, file, detail } => {
                write!(f, "run {run:?}: copying {file:?} failed: {detail}")
            }
            PullError::Refused { run, file, detail } => {
                write!(f, "run {run:?}: refused {file:?}: {detail}")
            }
        }
    }
}

impl std::error::Error for PullError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PullError::Spawn { source, .. } | PullError::Local { source, .. } => Some(source),
            PullError::Manifest { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn local_err(path: &Path) -> impl FnOnce(std::io::Error) -> PullError + '_ {
    move |source| PullError::Local {
        path: path.to_path_buf(),
        source,
    }
}

/// What happened to one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// Every file already verified on the host; nothing copied.
    AlreadyComplete,
    /// Files were copied and everything verified.
    Pulled {
        /// Files copied.
        files: usize,
        /// Bytes copied (the files' sizes).
        bytes: u64,
    },
    /// Some file failed (see [`PullReport::errors`]); the run has no local manifest.
    Failed,
}

/// One run's outcome.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// Directory name on the device and on the host.
    pub dir: String,
    /// Local run directory.
    pub local: PathBuf,
    /// Status the manifest gave.
    pub status: Option<RunStatus>,
    /// What happened.
    pub state: RunState,
    /// Deleted on the device after verification.
    pub deleted_on_device: bool,
}

/// The result of [`pull`]: per-run outcomes and the errors of the runs that failed.
#[derive(Debug, Default)]
pub struct PullReport {
    /// One entry per selected run.
    pub runs: Vec<RunOutcome>,
    /// Per-run errors (the pull goes on with the other runs).
    pub errors: Vec<PullError>,
    /// Human-readable notes (rsync fallback, warnings) already shown through the [`Ui`].
    pub warnings: Vec<String>,
}

impl PullReport {
    /// Runs that became complete on the host in this pull.
    pub fn newly_complete(&self) -> impl Iterator<Item = &RunOutcome> {
        self.runs
            .iter()
            .filter(|r| matches!(r.state, RunState::Pulled { .. }))
    }
}

/// Run a short command and return its stdout; failure carries the last stderr line.
pub fn run_capture(mut cmd: Command, what: &str) -> Result<Vec<u8>, PullError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| PullError::Spawn {
            program: program.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(PullError::Remote {
            what: what.to_string(),
            detail: failure_detail(&program, out.status, &out.stderr),
        });
    }
    Ok(out.stdout)
}

fn failure_detail(program: &str, status: std::process::ExitStatus, stderr: &[u8]) -> String {
    let err = String::from_utf8_lossy(stderr);
    let last = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    if last.is_empty() {
        format!("`{program}` exited with {status}")
    } else {
        format!("`{program}` exited with {status}: {last}")
    }
}

/// List the runs on the device.
pub fn list(t: &dyn Transport, remote_dir: &str) -> Result<Listing, PullError> {
    let out = run_capture(
        t.script_command(&listing_script(remote_dir)),
        &format!("listing {remote_dir} over {}", t.describe()),
    )?;
    parse_listing(&out, remote_dir)
}

/// Is `name` usable as one local path component?
fn safe_run_name(name: &str) -> bool {
    crate::manifest_compat::is_safe_relative(name) && !name.contains('/')
}

/// A file that needs copying.
struct Job {
    entry: FileEntry,
    final_path: PathBuf,
    partial: PathBuf,
}

/// A run that needs work.
struct Plan<'a> {
    run: &'a RemoteRun,
    manifest: &'a Manifest,
    local: PathBuf,
    jobs: Vec<Job>,
}

/// Pull the selected runs with `t`, reporting through `ui`.
///
/// Returns `Err` only when nothing could be attempted (listing failed, a `--run` is unknown);
/// per-run problems are in [`PullReport::errors`].
pub fn pull(
    t: &dyn Transport,
    listing: &Listing,
    opts: &PullOptions,
    ui: &dyn Ui,
) -> Result<PullReport, PullError> {
    let mut report = PullReport::default();
    let selected = select(listing, &opts.selection)?;
    std::fs::create_dir_all(&opts.dest).map_err(local_err(&opts.dest))?;

    // Plan: hash what the host has and decide what to copy, before any transfer, so the
    // progress bar knows the total.
    let mut plans = Vec::new();
    for run in selected {
        let m = match &run.manifest {
            Ok(m) => m,
            Err(e) => {
                report.errors.push(PullError::Manifest {
                    run: run.dir.clone(),
                    source: clone_manifest_error(e),
                });
                report
                    .runs
                    .push(outcome(run, &opts.dest, None, RunState::Failed));
                continue;
            }
        };
        if !safe_run_name(&run.dir) {
            report.errors.push(PullError::UnsafeName(run.dir.clone()));
            report
                .runs
                .push(outcome(run, &opts.dest, Some(m.status), RunState::Failed));
            continue;
        }
        if m.run_id != run.dir {
            warn(
                ui,
                &mut report,
                format!(
                    "run {:?}: manifest run_id is {:?}; keeping the device directory name",
                    run.dir, m.run_id
                ),
            );
        }
        if m.status == RunStatus::Running {
            warn(
                ui,
                &mut report,
                format!(
                    "run {:?} is still running: pulling the snapshot its manifest describes \
                     (files written since will not verify)",
                    run.dir
                ),
            );
        }
        let local = opts.dest.join(&run.dir);
        match plan_run(run, m, &local, t.resumes(), ui, &mut report) {
            Ok(p) => plans.push(p),
            Err(e) => {
                report.errors.push(e);
                report
                    .runs
                    .push(outcome(run, &opts.dest, Some(m.status), RunState::Failed));
            }
        }
    }

    let total_bytes: u64 = plans
        .iter()
        .flat_map(|p| &p.jobs)
        .map(|j| j.entry.bytes)
        .sum();
    let total_files: usize = plans.iter().map(|p| p.jobs.len()).sum();
    ui.start(total_bytes, total_files);

    for plan in plans {
        let run_dir = plan.run.dir.clone();
        let mut failed = false;
        let mut copied = (0usize, 0u64);
        for job in &plan.jobs {
            match fetch_verified(t, opts, &plan, job, listing.has_sha256sum, ui) {
                Ok(()) => {
                    copied.0 += 1;
                    copied.1 += job.entry.bytes;
                }
                Err(e) => {
                    failed = true;
                    ui.note(&format!("error: {e}"));
                    report.errors.push(e);
                }
            }
        }
        let state = if failed {
            RunState::Failed
        } else {
            // Every file verified: the local manifest marks the run complete on the host.
            if let Err(e) = write_atomic(&plan.local.join(MANIFEST_FILE), &plan.run.manifest_bytes)
            {
                report.errors.push(e);
                report.runs.push(outcome(
                    plan.run,
                    &opts.dest,
                    Some(plan.manifest.status),
                    RunState::Failed,
                ));
                continue;
            }
            if plan.jobs.is_empty() {
                RunState::AlreadyComplete
            } else {
                RunState::Pulled {
                    files: copied.0,
                    bytes: copied.1,
                }
            }
        };
        let mut out = outcome(plan.run, &opts.dest, Some(plan.manifest.status), state);
        if !failed {
            ui.note(&match &out.state {
                RunState::AlreadyComplete => format!("{run_dir}: already complete on the host"),
                RunState::Pulled { files, bytes } => format!(
                    "{run_dir}: pulled {files} file(s), {} — verified",
                    human_bytes(*bytes)
                ),
                RunState::Failed => unreachable!(),
            });
        }
        if opts.delete_after_verify && !failed {
            if plan.manifest.status == RunStatus::Running {
                warn(
                    ui,
                    &mut report,
                    format!("{run_dir}: still running, not deleted on the device"),
                );
            } else {
                match delete_on_device(t, &opts.remote_dir, plan.run, plan.manifest) {
                    Ok(left) => {
                        out.deleted_on_device = true;
                        ui.note(&format!("{run_dir}: deleted on the device"));
                        if left {
                            warn(
                                ui,
                                &mut report,
                                format!(
                                    "{run_dir}: the device directory keeps files the manifest \
                                     does not list; left them"
                                ),
                            );
                        }
                    }
                    Err(e) => report.errors.push(e),
                }
            }
        }
        report.runs.push(out);
    }
    ui.finish();
    Ok(report)
}

fn warn(ui: &dyn Ui, report: &mut PullReport, msg: String) {
    ui.note(&format!("warning: {msg}"));
    report.warnings.push(msg);
}

fn outcome(run: &RemoteRun, dest: &Path, status: Option<RunStatus>, state: RunState) -> RunOutcome {
    RunOutcome {
        dir: run.dir.clone(),
        local: dest.join(&run.dir),
        status,
        state,
        deleted_on_device: false,
    }
}

fn clone_manifest_error(e: &ManifestError) -> ManifestError {
    e.clone()
}

fn select<'a>(l: &'a Listing, s: &Selection) -> Result<Vec<&'a RemoteRun>, PullError> {
    match s {
        Selection::All => Ok(l.runs.iter().collect()),
        Selection::Latest => Ok(l
            .newest
            .as_ref()
            .and_then(|n| l.runs.iter().find(|r| &r.dir == n))
            .into_iter()
            .collect()),
        Selection::Runs(ids) => ids
            .iter()
            .map(|id| {
                l.runs
                    .iter()
                    .find(|r| &r.dir == id)
                    .or_else(|| {
                        l.runs
                            .iter()
                            .find(|r| r.manifest.as_ref().is_ok_and(|m| &m.run_id == id))
                    })
                    .ok_or_else(|| PullError::RunNotFound {
                        id: id.clone(),
                        available: l.runs.iter().map(|r| r.dir.clone()).collect(),
                    })
            })
            .collect(),
    }
}

/// Decide which files of a run need copying; repair `.partial` state on the host.
fn plan_run<'a>(
    run: &'a RemoteRun,
    m: &'a Manifest,
    local: &Path,
    resumes: bool,
    ui: &dyn Ui,
    report: &mut PullReport,
) -> Result<Plan<'a>, PullError> {
    let mut jobs = Vec::new();
    for e in &m.files {
        let final_path = local.join(&e.path);
        let partial = PathBuf::from(format!("{}{PARTIAL_SUFFIX}", final_path.display()));
        if final_path.is_file() {
            let (n, sha) = sha256_file(&final_path).map_err(local_err(&final_path))?;
            if n == e.bytes && sha == e.sha256 {
                continue; // verified: never touched again
            }
            warn(
                ui,
                report,
                format!(
                    "{}/{}: local copy does not match the manifest ({n} bytes, sha256 {}…); \
                     fetching it again",
                    run.dir,
                    e.path,
                    &sha[..12]
                ),
            );
            // Unverified bytes do not keep the final name.
            std::fs::rename(&final_path, &partial).map_err(local_err(&final_path))?;
        } else if final_path.exists() {
            return Err(PullError::Local {
                path: final_path,
                source: std::io::Error::other("exists and is not a regular file"),
            });
        }
        if partial.is_file() {
            let len = std::fs::metadata(&partial)
                .map_err(local_err(&partial))?
                .len();
            let keep = if len == e.bytes {
                // Complete but never renamed (interrupted between verify and rename), or a
                // corrupt copy of the right size.
                let (_, sha) = sha256_file(&partial).map_err(local_err(&partial))?;
                if sha == e.sha256 {
                    std::fs::rename(&partial, &final_path).map_err(local_err(&partial))?;
                    continue;
                }
                false
            } else {
                len < e.bytes && resumes
            };
            if !keep {
                std::fs::remove_file(&partial).map_err(local_err(&partial))?;
            }
        }
        jobs.push(Job {
            entry: e.clone(),
            final_path,
            partial,
        });
    }
    Ok(Plan {
        run,
        manifest: m,
        local: local.to_path_buf(),
        jobs,
    })
}

/// Fetch one file into its `.partial`, verify, retry once from scratch, rename on success.
fn fetch_verified(
    t: &dyn Transport,
    opts: &PullOptions,
    plan: &Plan<'_>,
    job: &Job,
    has_sha256sum: bool,
    ui: &dyn Ui,
) -> Result<(), PullError> {
    let remote = format!("{}/{}/{}", opts.remote_dir, plan.run.dir, job.entry.path);
    if let Some(parent) = job.partial.parent() {
        std::fs::create_dir_all(parent).map_err(local_err(parent))?;
    }
    ui.file_started(&format!("{}/{}", plan.run.dir, job.entry.path));
    let mut last = String::new();
    for attempt in 0..2 {
        if attempt == 1 && job.partial.exists() {
            std::fs::remove_file(&job.partial).map_err(local_err(&job.partial))?;
        }
        run_fetch(t, &remote, &job.partial, ui).map_err(|detail| PullError::Transfer {
            run: plan.run.dir.clone(),
            file: job.entry.path.clone(),
            detail,
        })?;
        let (n, sha) = sha256_file(&job.partial).map_err(local_err(&job.partial))?;
        if n == job.entry.bytes && sha == job.entry.sha256 {
            std::fs::rename(&job.partial, &job.final_path).map_err(local_err(&job.partial))?;
            ui.file_done(job.entry.bytes);
            return Ok(());
        }
        last = format!("got {n} bytes, sha256 {}…", &sha[..16]);
        if attempt == 0 {
            ui.note(&format!(
                "warning: {}/{}: copy does not match the manifest ({last}); fetching it again",
                plan.run.dir, job.entry.path
            ));
        }
    }
    // Two mismatches: the bad copy is not kept.
    let _ = std::fs::remove_file(&job.partial);
    let expected = format!(
        "manifest says {} bytes, sha256 {}…",
        job.entry.bytes,
        &job.entry.sha256[..16]
    );
    let probe = run_capture(
        t.script_command(&probe_script(&remote, has_sha256sum)),
        "probing the device file",
    )
    .ok()
    .map(|o| parse_probe(&o));
    let detail = match probe {
        Some(None) => format!("the device file is gone ({expected}); not kept"),
        Some(Some((size, sha))) if size != job.entry.bytes || (!sha.is_empty() && sha != job.entry.sha256) => {
            let now = if sha.is_empty() {
                format!("{size} bytes")
            } else {
                format!("{size} bytes, sha256 {}…", &sha[..16.min(sha.len())])
            };
            format!(
                "the device file no longer matches its manifest entry ({expected}; device has {now}); not kept"
            )
        }
        Some(Some((_, sha))) if !sha.is_empty() => format!(
            "two copies arrived corrupt although the device file matches its manifest ({last}); not kept"
        ),
        _ => format!("copied twice, both differ from the manifest ({expected}; {last}); not kept"),
    };
    Err(PullError::Refused {
        run: plan.run.dir.clone(),
        file: job.entry.path.clone(),
        detail,
    })
}

/// Run a fetch command, polling the partial file's size for the progress bar. Errors are the
/// failure detail.
fn run_fetch(t: &dyn Transport, remote: &str, partial: &Path, ui: &dyn Ui) -> Result<(), String> {
    let mut cmd = t.fetch_command(remote, partial);
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    let mut stderr = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {
                ui.file_progress(std::fs::metadata(partial).map(|m| m.len()).unwrap_or(0));
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(format!("waiting for `{program}`: {e}")),
        }
    };
    let err = reader.join().unwrap_or_default();
    ui.file_progress(std::fs::metadata(partial).map(|m| m.len()).unwrap_or(0));
    if status.success() {
        Ok(())
    } else {
        Err(failure_detail(&program, status, &err))
    }
}

/// Delete a verified run on the device. Returns whether unlisted files were left behind.
fn delete_on_device(
    t: &dyn Transport,
    remote_dir: &str,
    run: &RemoteRun,
    m: &Manifest,
) -> Result<bool, PullError> {
    let out = run_capture(
        t.script_command(&delete_script(remote_dir, &run.dir, m)),
        &format!("deleting run {:?} on the device", run.dir),
    )?;
    Ok(String::from_utf8_lossy(&out).contains("SLIM-LEFT"))
}

/// Write `bytes` to `path` through a temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PullError> {
    let tmp = PathBuf::from(format!("{}.tmp{PARTIAL_SUFFIX}", path.display()));
    let mut f = std::fs::File::create(&tmp).map_err(local_err(&tmp))?;
    f.write_all(bytes).map_err(local_err(&tmp))?;
    f.sync_all().map_err(local_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(local_err(path))
}

/// Check a local run directory against its own manifest: `Ok(files)` when every listed file
/// has the listed size and sha256.
pub fn verify_local_run(dir: &Path) -> Result<usize, String> {
    let m = crate::manifest_compat::read_dir_manifest(dir).map_err(|e| e.to_string())?;
    for f in &m.files {
        let p = dir.join(&f.path);
        let (n, sha) = sha256_file(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        if n != f.bytes || sha != f.sha256 {
            return Err(format!("{}: does not match the manifest", p.display()));
        }
    }
    Ok(m.files.len())
}

/// sha256 of a manifest's bytes (exposed for tests that compare device and host manifests).
pub fn manifest_digest(bytes: &[u8]) -> String {
    sha256_bytes(bytes)
}

#[cfg(test)]
mod tests;
