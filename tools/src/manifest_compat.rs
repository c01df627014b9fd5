//! The run directory's `manifest.json`, parsed in exactly one place. It holds the part of the
//! profiler's manifest contract (issue #4) that the host tools rely on: schema version, run id,
//! status, and every file of the run with its size and sha256.
//!
//! PHASE 2: replace `Manifest`/`parse` with the engine's `flashslim::runlog::Manifest` reader in
//! this one file (keep the `Manifest`/`FileEntry`/`RunStatus` names as re-exports or thin
//! adapters); `pull` and `report` only go through this module.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// File name of the manifest at the root of a run directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Newest `schema_version` this build understands. A manifest with a larger one is refused.
pub const KNOWN_SCHEMA_VERSION: u64 = 1;

/// Suffix of files still being transferred (never a valid name inside a run).
pub const PARTIAL_SUFFIX: &str = ".partial";

/// What the profiler says about the run as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// The engine is still writing the run; its files may grow.
    Running,
    /// The run ended normally.
    Complete,
    /// The run ended with an error.
    Failed,
    /// The run was stopped (signal) before its end.
    Interrupted,
}

impl RunStatus {
    /// The manifest spelling.
    pub fn name(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Complete => "complete",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

/// One file of the run, relative to the run directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative path with `/` separators; never absolute, never `..`.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// sha256 of the contents, lowercase hex (upper case is accepted and lowered).
    pub sha256: String,
}

/// A parsed and validated `manifest.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Major schema version (integer).
    pub schema_version: u64,
    /// Run id; normally the run directory's name.
    pub run_id: String,
    /// Run status.
    pub status: RunStatus,
    /// Every file of the run except `manifest.json` itself.
    pub files: Vec<FileEntry>,
    /// Any other top-level fields (shown by the report's summary as they are).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Manifest {
    /// Total bytes of the listed files.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }

    /// The entry for `path`, if listed.
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.path == path)
    }
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
    /// Not JSON, or a required field is missing or of the wrong type.
    Syntax(String),
    /// `schema_version` is newer than [`KNOWN_SCHEMA_VERSION`].
    NewerSchema {
        /// The manifest's version.
        found: u64,
    },
    /// Structurally valid JSON with an unacceptable value (unsafe path, bad hash, duplicate).
    Invalid(String),
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            ManifestError::Syntax(d) => write!(f, "malformed manifest: {d}"),
            ManifestError::NewerSchema { found } => write!(
                f,
                "manifest schema_version {found} is newer than this tool understands \
                 ({KNOWN_SCHEMA_VERSION}); update flashslim-tools"
            ),
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

/// Parse and validate manifest bytes.
///
/// The schema version is checked before anything else, so a newer manifest whose other fields
/// changed still gets the "newer schema" message rather than a confusing field error.
pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ManifestError::Syntax(e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| ManifestError::Syntax("top level is not a JSON object".into()))?;
    let version = match obj.get("schema_version") {
        None => return Err(ManifestError::Syntax("missing `schema_version`".into())),
        Some(s) => s.as_u64().ok_or_else(|| {
            ManifestError::Syntax(format!(
                "`schema_version` is {s}, not a non-negative integer"
            ))
        })?,
    };
    if version > KNOWN_SCHEMA_VERSION {
        return Err(ManifestError::NewerSchema { found: version });
    }
    let mut m: Manifest =
        serde_json::from_value(v).map_err(|e| ManifestError::Syntax(e.to_string()))?;
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
        if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ManifestError::Invalid(format!(
                "file {:?}: sha256 {:?} is not 64 hex digits",
                f.path, f.sha256
            )));
        }
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

    fn manifest(version: &str, files: &str) -> String {
        format!(
            r#"{{"schema_version": {version}, "run_id": "r1", "status": "complete",
                "files": [{files}], "model": "m.gguf"}}"#
        )
    }

    #[test]
    fn parses_and_keeps_extra_fields() {
        let m = parse(
            manifest(
                "1",
                &format!(
                    r#"{{"path":"a/b.jsonl","bytes":3,"sha256":"{}"}}"#,
                    H.to_uppercase()
                ),
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(m.files[0].sha256, H);
        assert_eq!(m.extra["model"], "m.gguf");
        assert_eq!(m.status, RunStatus::Complete);
        assert_eq!(m.total_bytes(), 3);
    }

    #[test]
    fn newer_schema_is_refused_before_field_checks() {
        let e = parse(br#"{"schema_version": 2, "something": "else"}"#).unwrap_err();
        assert!(matches!(e, ManifestError::NewerSchema { found: 2 }), "{e}");
        assert!(e.to_string().contains("newer"));
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
        ] {
            let s = manifest(
                "1",
                &format!(r#"{{"path":{p:?},"bytes":3,"sha256":"{H}"}}"#),
            );
            assert!(parse(s.as_bytes()).is_err(), "accepted {p:?}");
        }
    }

    #[test]
    fn bad_hash_duplicate_and_missing_fields_are_refused() {
        let bad = manifest("1", r#"{"path":"a","bytes":3,"sha256":"xyz"}"#);
        assert!(parse(bad.as_bytes()).is_err());
        let dup = manifest(
            "1",
            &format!(
                r#"{{"path":"a","bytes":3,"sha256":"{H}"}},{{"path":"a","bytes":3,"sha256":"{H}"}}"#
            ),
        );
        assert!(parse(dup.as_bytes()).is_err());
        assert!(parse(br#"{"schema_version": 1}"#).is_err());
        assert!(parse(b"not json").is_err());
        let st = r#"{"schema_version":1,"run_id":"r","status":"weird","files":[]}"#;
        assert!(parse(st.as_bytes()).is_err());
    }
}
