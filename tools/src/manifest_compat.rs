//! The run directory's `manifest.json`, read in exactly one place: the engine's own reader
//! (`flashslim::runlog::Manifest`, schema `flashslim.run`) plus the checks a host needs before it
//! writes anything named by a manifest that came over the network (no `.partial` names, no
//! duplicates, no control characters, no file that is also a directory).

pub use flashslim::runlog::manifest::SCHEMA_VERSION;
pub use flashslim::runlog::{FileEntry, Manifest, RunStatus, MANIFEST};

use flashslim::runlog::RunlogError;
use std::fmt;
use std::path::{Path, PathBuf};

/// File name of the manifest at the root of a run directory.
pub const MANIFEST_FILE: &str = MANIFEST;

/// Newest `schema_version` this build understands (the engine reader's). Larger is refused.
pub const KNOWN_SCHEMA_VERSION: u64 = SCHEMA_VERSION as u64;

/// Suffix of files still being transferred (never a valid name inside a run).
pub const PARTIAL_SUFFIX: &str = ".partial";

/// The manifest spelling of a status.
pub fn status_name(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Running => "running",
        RunStatus::Complete => "complete",
        RunStatus::Failed => "failed",
        RunStatus::Interrupted => "interrupted",
    }
}

/// Total bytes of the files a manifest lists.
pub fn total_bytes(m: &Manifest) -> u64 {
    m.files.iter().map(|f| f.bytes).sum()
}

/// Why a manifest was refused. Messages are one line.
#[derive(Debug)]
#[non_exhaustive]
pub enum ManifestError {
    /// The file could not be read.
    Io {
        /// The manifest path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not a flashslim run manifest, or one the engine's reader rejects (its message).
    Syntax(String),
    /// Written by a newer profiler: its schema version is above [`KNOWN_SCHEMA_VERSION`].
    NewerSchema(String),
    /// Readable, but names something a host must not write (unsafe path, `.partial`, duplicate).
    Invalid(String),
}

impl Clone for ManifestError {
    fn clone(&self) -> Self {
        match self {
            ManifestError::Io { path, source } => ManifestError::Io {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            ManifestError::Syntax(s) => ManifestError::Syntax(s.clone()),
            ManifestError::NewerSchema(s) => ManifestError::NewerSchema(s.clone()),
            ManifestError::Invalid(s) => ManifestError::Invalid(s.clone()),
        }
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            ManifestError::Syntax(d) => write!(f, "malformed manifest: {d}"),
            ManifestError::NewerSchema(d) => write!(f, "{d}; update flashslim-tools"),
            ManifestError::Invalid(d) => write!(f, "invalid manifest: {d}"),
        }
    }
}

impl std::error::Error for ManifestError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ManifestError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Parse and validate manifest bytes with the engine's reader, then the host's checks.
pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ManifestError::Syntax("manifest is not UTF-8".into()))?;
    let mut m = Manifest::from_json(text).map_err(|e| match e {
        RunlogError::Newer(m) => ManifestError::NewerSchema(m),
        e => ManifestError::Syntax(e.to_string()),
    })?;
    validate(&mut m)?;
    Ok(m)
}

/// Read and parse `DIR/manifest.json`.
pub fn read_dir_manifest(dir: &Path) -> Result<Manifest, ManifestError> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = std::fs::read(&path).map_err(|source| ManifestError::Io {
        path: path.clone(),
        source,
    })?;
    parse(&bytes)
}

/// Is `p` a safe relative path inside a run directory (no root, no `..`, no empty parts, no
/// control characters)?
pub fn is_safe_relative(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && !p.chars().any(|c| c.is_control())
        && !p.contains('\\')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

fn validate(m: &mut Manifest) -> Result<(), ManifestError> {
    if m.run_id.is_empty() {
        return Err(ManifestError::Invalid("empty `run_id`".into()));
    }
    let mut seen = std::collections::HashSet::new();
    for f in &mut m.files {
        if !is_safe_relative(&f.path) {
            return Err(ManifestError::Invalid(format!(
                "file path {:?} is not a plain relative path",
                f.path
            )));
        }
        if f.path == MANIFEST_FILE {
            return Err(ManifestError::Invalid(
                "the manifest lists itself (it must not)".into(),
            ));
        }
        if f.path.ends_with(PARTIAL_SUFFIX) {
            return Err(ManifestError::Invalid(format!(
                "file {:?}: names ending in {PARTIAL_SUFFIX} are reserved for transfers",
                f.path
            )));
        }
        f.sha256.make_ascii_lowercase();
        if !seen.insert(f.path.clone()) {
            return Err(ManifestError::Invalid(format!(
                "file {:?} is listed twice",
                f.path
            )));
        }
    }
    // A file and a directory of the same name cannot both exist.
    for f in &m.files {
        let prefix = format!("{}/", f.path);
        if let Some(g) = m.files.iter().find(|g| g.path.starts_with(&prefix)) {
            return Err(ManifestError::Invalid(format!(
                "{:?} is both a file and the directory of {:?}",
                f.path, g.path
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    /// A manifest as the engine writes it, with `files` replaced.
    fn manifest(version: u64, files: serde_json::Value) -> String {
        let m = crate::testkit::engine_manifest("r1", RunStatus::Complete, Vec::new());
        let mut v = serde_json::to_value(&m).unwrap();
        v["schema_version"] = version.into();
        v["files"] = files;
        v.to_string()
    }

    fn file(path: &str, sha: &str) -> serde_json::Value {
        serde_json::json!({"path": path, "bytes": 3, "sha256": sha})
    }

    #[test]
    fn parses_an_engine_manifest() {
        let m = parse(
            manifest(1, serde_json::json!([file("a/b.jsonl", &H.to_uppercase())])).as_bytes(),
        )
        .unwrap();
        assert_eq!(m.files[0].sha256, H);
        assert_eq!(m.status, RunStatus::Complete);
        assert_eq!(total_bytes(&m), 3);
    }

    #[test]
    fn newer_schema_is_refused_before_field_checks() {
        let e = parse(br#"{"schema": "flashslim.run", "schema_version": 2, "something": "else"}"#)
            .unwrap_err();
        assert!(matches!(e, ManifestError::NewerSchema(_)), "{e}");
        assert!(e.to_string().contains("schema version 2 is newer"), "{e}");
        assert!(e.to_string().ends_with("update flashslim-tools"), "{e}");
    }

    #[test]
    fn unsafe_paths_are_refused() {
        for p in [
            "../x",
            "/etc/passwd",
            "a//b",
            "a/./b",
            "",
            "x.partial",
            "manifest.json",
            "a\u{7}b",
        ] {
            let s = manifest(1, serde_json::json!([file(p, H)]));
            assert!(parse(s.as_bytes()).is_err(), "accepted {p:?}");
        }
    }

    #[test]
    fn bad_hash_duplicate_and_foreign_manifests_are_refused() {
        assert!(parse(manifest(1, serde_json::json!([file("a", "xyz")])).as_bytes()).is_err());
        let dup = manifest(1, serde_json::json!([file("a", H), file("a", H)]));
        assert!(parse(dup.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("twice"));
        let dir = manifest(1, serde_json::json!([file("a", H), file("a/b", H)]));
        assert!(parse(dir.as_bytes()).is_err());
        // Not a flashslim run manifest: the engine reader's message.
        let e = parse(br#"{"schema_version": 1}"#).unwrap_err();
        assert!(e.to_string().contains("no `schema` field"), "{e}");
        assert!(parse(b"not json").is_err());
        assert!(parse(b"\xff\xfe").is_err());
    }
}
