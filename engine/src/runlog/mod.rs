//! Run directories (`--trace-dir DIR` → `DIR/<UTC time>-<short id>/`): creating one, the
//! manifest written atomically at start and end, the file list with sha256, and the readers host
//! tools use for every file a run directory holds (`manifest.json`, `*.jsonl`, `bpf-*`).

pub mod bpf;
pub mod manifest;
pub mod records;
mod run;
pub mod signals;
mod time;

pub use manifest::{FileEntry, Manifest, Metrics, RunStatus};
pub use run::{metrics, RunCounters, RunLog};
pub use time::{utc_compact, utc_rfc3339};

use sha2::{Digest, Sha256};
use std::fmt;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// File names inside a run directory.
pub const MANIFEST: &str = "manifest.json";
pub const STAGES: &str = "stages.jsonl";
pub const TOKENS: &str = "tokens.jsonl";
pub const IO: &str = "io.jsonl";
pub const TENSOR_TRACE: &str = "tensor-trace.bin";
pub const OUTPUT: &str = "output.txt";
pub const STACKS: &str = "stacks.folded";

#[derive(Debug)]
pub enum RunlogError {
    Io {
        what: String,
        source: std::io::Error,
    },
    /// A file is not what its format says (message names file, line and problem).
    Format(String),
    /// A file written by a newer flashslim: its schema or format version is above what this
    /// reader reads (message names file and versions). Host tools tell users to update.
    Newer(String),
}

impl fmt::Display for RunlogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunlogError::Io { what, source } => write!(f, "{what}: {source}"),
            RunlogError::Format(m) | RunlogError::Newer(m) => f.write_str(m),
        }
    }
}
impl std::error::Error for RunlogError {}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunlogError {
    let what = what.into();
    move |source| RunlogError::Io { what, source }
}

/// A created run directory.
#[derive(Clone, Debug)]
pub struct RunDir {
    pub path: PathBuf,
    pub id: String,
}

/// Six hex digits that differ between runs started in the same second (pid, time, address
/// entropy through sha256; not a security token).
fn short_id() -> String {
    let mut h = Sha256::new();
    h.update(crate::probes::monotonic_ns().to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    h.update(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            .to_le_bytes(),
    );
    let local = 0u8;
    h.update((&local as *const u8 as usize).to_le_bytes());
    h.finalize()[..3]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl RunDir {
    /// Make `base/<UTC time>-<short id>/` (and `base` itself if needed).
    pub fn create(base: &Path) -> Result<RunDir, RunlogError> {
        fs::create_dir_all(base).map_err(io_err(format!("cannot create {}", base.display())))?;
        for _ in 0..16 {
            let id = format!(
                "{}-{}",
                utc_compact(std::time::SystemTime::now()),
                short_id()
            );
            let path = base.join(&id);
            match fs::create_dir(&path) {
                Ok(()) => return Ok(RunDir { path, id }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(RunlogError::Io {
                        what: format!("cannot create {}", path.display()),
                        source: e,
                    })
                }
            }
        }
        Err(RunlogError::Format(format!(
            "cannot find a free run directory name in {}",
            base.display()
        )))
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Write the manifest atomically: temp file, fsync, rename over `manifest.json`, fsync dir.
    pub fn write_manifest(&self, m: &Manifest) -> Result<(), RunlogError> {
        let tmp = self.path.join(".manifest.json.tmp");
        let json = serde_json::to_string_pretty(m)
            .map_err(|e| RunlogError::Format(format!("cannot serialize the manifest: {e}")))?;
        let what = format!("cannot write {}", tmp.display());
        let mut f = File::create(&tmp).map_err(io_err(what.clone()))?;
        f.write_all(json.as_bytes())
            .and_then(|_| f.write_all(b"\n"))
            .and_then(|_| f.sync_all())
            .map_err(io_err(what))?;
        drop(f);
        let dst = self.path.join(MANIFEST);
        fs::rename(&tmp, &dst).map_err(io_err(format!("cannot rename to {}", dst.display())))?;
        if let Ok(d) = File::open(&self.path) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Every file in the directory except the manifest (and its temp file), sorted, with size and
    /// sha256. Subdirectories are listed file by file with `/`-separated relative paths.
    pub fn list_files(&self) -> Result<Vec<FileEntry>, RunlogError> {
        let mut out = Vec::new();
        list_into(&self.path, "", &mut out)?;
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }
}

fn list_into(dir: &Path, prefix: &str, out: &mut Vec<FileEntry>) -> Result<(), RunlogError> {
    let rd = fs::read_dir(dir).map_err(io_err(format!("cannot list {}", dir.display())))?;
    for e in rd {
        let e = e.map_err(io_err(format!("cannot list {}", dir.display())))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = format!("{prefix}{name}");
        if prefix.is_empty() && (name == MANIFEST || name == ".manifest.json.tmp") {
            continue;
        }
        let ft = e
            .file_type()
            .map_err(io_err(format!("cannot stat {}", e.path().display())))?;
        if ft.is_dir() {
            list_into(&e.path(), &format!("{rel}/"), out)?;
        } else if ft.is_file() {
            let (bytes, sha256) = hash_file(&e.path())?;
            out.push(FileEntry {
                path: rel,
                bytes,
                sha256,
            });
        }
    }
    Ok(())
}

/// Size and hex sha256 of a file.
pub fn hash_file(path: &Path) -> Result<(u64, String), RunlogError> {
    let what = format!("cannot read {}", path.display());
    let mut f = File::open(path).map_err(io_err(what.clone()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(io_err(what.clone()))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, h.finalize().iter().map(|b| format!("{b:02x}")).collect()))
}

/// Check a run directory against its manifest: every listed file exists with its size and
/// sha256, and no other file is present. Returns the manifest.
pub fn verify_dir(dir: &Path) -> Result<Manifest, RunlogError> {
    let m = Manifest::read(&dir.join(MANIFEST))?;
    let rd = RunDir {
        path: dir.to_path_buf(),
        id: m.run_id.clone(),
    };
    let actual = rd.list_files()?;
    for f in &m.files {
        match actual.iter().find(|a| a.path == f.path) {
            None => {
                return Err(RunlogError::Format(format!(
                    "{}: listed in the manifest but missing",
                    f.path
                )))
            }
            Some(a) if a.bytes != f.bytes || a.sha256 != f.sha256 => {
                return Err(RunlogError::Format(format!(
                    "{}: size or sha256 differs from the manifest",
                    f.path
                )))
            }
            _ => {}
        }
    }
    if let Some(extra) = actual
        .iter()
        .find(|a| !m.files.iter().any(|f| f.path == a.path))
    {
        return Err(RunlogError::Format(format!(
            "{}: present but not listed in the manifest",
            extra.path
        )));
    }
    Ok(m)
}
