// Typed GGUF errors. Messages are one line, lowercase, and name the field or tensor plus the
// offending numbers, so a CLI can print them as-is.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug)]
#[non_exhaustive]
pub enum GgufError {
    /// The OS refused a read (open, stat, read).
    Io {
        path: Option<PathBuf>,
        source: std::io::Error,
    },
    /// The first four bytes are not `GGUF`.
    NotGguf { magic: [u8; 4] },
    /// A byte-swapped version field: a big-endian GGUF, which we do not read.
    BigEndian,
    /// A version other than 2 or 3.
    UnsupportedVersion(u32),
    /// The file ends before `what` at `offset`.
    Truncated { offset: u64, what: String },
    /// A count or length exceeds one of the named limits in `gguf`.
    Limit { what: String, value: u64, max: u64 },
    /// A value is structurally wrong (unknown type, overlap, misaligned offset...).
    Invalid { what: String, detail: String },
}

impl GgufError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> GgufError {
        GgufError::Io {
            path: Some(path.to_path_buf()),
            source,
        }
    }
}

impl fmt::Display for GgufError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GgufError::Io {
                path: Some(p),
                source,
            } => write!(f, "{}: {source}", p.display()),
            GgufError::Io { path: None, source } => write!(f, "read error: {source}"),
            GgufError::NotGguf { magic } => {
                write!(
                    f,
                    "not a GGUF file (starts with \"{}\", expected \"GGUF\")",
                    magic.escape_ascii()
                )
            }
            GgufError::BigEndian => write!(f, "big-endian GGUF files are not supported"),
            GgufError::UnsupportedVersion(v) => {
                write!(f, "unsupported GGUF version {v} (supported: 2, 3)")
            }
            GgufError::Truncated { offset, what } => {
                write!(
                    f,
                    "truncated GGUF: file ends at byte {offset} while reading {what}"
                )
            }
            GgufError::Limit { what, value, max } => {
                write!(f, "gguf: {what} {value} exceeds the limit {max}")
            }
            GgufError::Invalid { what, detail } => write!(f, "gguf: {what}: {detail}"),
        }
    }
}

impl std::error::Error for GgufError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GgufError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
