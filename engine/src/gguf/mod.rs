//! GGUF reader (v2 and v3): header, metadata of every value type (nested arrays included), and the
//! tensor directory with absolute file offsets. Everything is validated against the file: lengths
//! against the bytes left, sizes against overflow, tensors against the file end and each other.
//! A bad file is an error that names the field or tensor; parsing never panics.

mod error;
mod types;
mod value;
mod writer;

pub use error::GgufError;
pub use types::GgmlType;
pub use value::{Value, ValueType};
pub use writer::GgufWriter;

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

/// `GGUF` as a little-endian u32.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Oldest and newest container versions we read. v1 used 32-bit lengths and is long gone.
pub const MIN_VERSION: u32 = 2;
pub const MAX_VERSION: u32 = 3;
/// Default `general.alignment`.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Largest alignment we accept (a larger one only wastes the file; 1 MiB covers every known
/// writer, including 64 KiB page-aligned ones).
pub const MAX_ALIGNMENT: u64 = 1 << 20;
/// ggml tensors have at most four dimensions.
pub const MAX_DIMS: u32 = 4;
/// ggml's GGML_MAX_NAME: names must be shorter than this.
pub const MAX_TENSOR_NAME: usize = 64;
/// Longest metadata string (chat templates are tens of KiB; 64 MiB is far beyond any real file).
pub const MAX_STRING_LEN: u64 = 64 << 20;
/// Longest metadata key.
pub const MAX_KEY_LEN: u64 = 1 << 16;
/// Most elements in one metadata array (vocabularies are ~10^5..10^6).
pub const MAX_ARRAY_LEN: u64 = 1 << 28;
/// Deepest array nesting.
pub const MAX_ARRAY_DEPTH: u32 = 8;
/// Most tensors and metadata pairs in one file.
pub const MAX_TENSORS: u64 = 1 << 20;
pub const MAX_KV: u64 = 1 << 20;

/// Identity of a model file: its size plus the sha256 of its header and tensor directory (every
/// byte before the data section). Plans and traces carry it; a mismatch means another file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelIdentity {
    pub file_size: u64,
    pub header_sha256: String,
}

impl ModelIdentity {
    /// Short printable form: `<size>:<first 16 hex digits>`.
    pub fn short(&self) -> String {
        format!(
            "{}:{}",
            self.file_size,
            &self.header_sha256[..16.min(self.header_sha256.len())]
        )
    }
}

/// One entry of the tensor directory.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// Position in the directory (the tensor id used by probes and traces).
    pub index: usize,
    pub name: String,
    pub ty: GgmlType,
    /// ggml order: `dims[0]` is the contiguous (row) dimension.
    pub dims: Vec<u64>,
    /// Absolute file offset of the first byte.
    pub offset: u64,
    /// Bytes in the file.
    pub size: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
    /// Elements per row (`dims[0]`).
    pub fn cols(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }
    /// Rows (product of the outer dimensions).
    pub fn rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }
    /// Bytes per row.
    pub fn row_bytes(&self) -> u64 {
        self.size / self.rows().max(1)
    }
    /// Layer index for `blk.N.*` tensors.
    pub fn layer(&self) -> Option<u32> {
        let rest = self.name.strip_prefix("blk.")?;
        rest.split('.').next()?.parse().ok()
    }
    /// The component: `attn_q`, `ffn_down`, `token_embd`, `output_norm`, ... (`.bias` tensors get
    /// a `_bias` suffix so they stay distinct from the weight).
    pub fn component(&self) -> String {
        let base = match self.name.strip_prefix("blk.") {
            Some(rest) => rest.split_once('.').map(|(_, c)| c).unwrap_or(rest),
            None => self.name.as_str(),
        };
        if let Some(c) = base.strip_suffix(".weight") {
            c.to_string()
        } else if let Some(c) = base.strip_suffix(".bias") {
            format!("{c}_bias")
        } else {
            base.to_string()
        }
    }
    pub fn end(&self) -> u64 {
        self.offset + self.size
    }
}

/// A parsed GGUF header.
#[derive(Clone, Debug)]
pub struct Gguf {
    pub version: u32,
    pub alignment: u64,
    /// Metadata in file order.
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    /// Absolute offset of the data section.
    pub data_offset: u64,
    pub file_size: u64,
    pub identity: ModelIdentity,
    meta_index: HashMap<String, usize>,
    tensor_index: HashMap<String, usize>,
}

impl Gguf {
    /// Parse the header of the GGUF file at `path`. Reads only the header and directory.
    pub fn open(path: &Path) -> Result<Gguf, GgufError> {
        let file = File::open(path).map_err(|e| GgufError::io(path, e))?;
        let len = file.metadata().map_err(|e| GgufError::io(path, e))?.len();
        Self::parse(BufReader::with_capacity(1 << 20, file), len)
    }

    /// Parse a GGUF image held in memory (used by tests and the fuzz target).
    pub fn parse_bytes(bytes: &[u8]) -> Result<Gguf, GgufError> {
        Self::parse(bytes, bytes.len() as u64)
    }

    /// Parse from any reader positioned at the start of a file of `file_size` bytes.
    pub fn parse<R: Read>(reader: R, file_size: u64) -> Result<Gguf, GgufError> {
        let mut c = Cursor {
            r: reader,
            pos: 0,
            len: file_size,
            hash: Sha256::new(),
        };
        let magic: [u8; 4] = c.array("magic")?;
        if magic != GGUF_MAGIC {
            return Err(GgufError::NotGguf { magic });
        }
        let version = c.u32("version")?;
        if version.swap_bytes() >= MIN_VERSION && version.swap_bytes() <= MAX_VERSION {
            return Err(GgufError::BigEndian);
        }
        if !(MIN_VERSION..=MAX_VERSION).contains(&version) {
            return Err(GgufError::UnsupportedVersion(version));
        }
        let n_tensors = c.u64("tensor_count")?;
        let n_kv = c.u64("metadata_kv_count")?;
        // Minimum encodings: a tensor info is name len (8) + n_dims (4) + one dim (8) + type (4) +
        // offset (8); a pair is key len (8) + type (4) + one byte.
        c.check_count("tensor_count", n_tensors, MAX_TENSORS, 32)?;
        c.check_count("metadata_kv_count", n_kv, MAX_KV, 13)?;

        let mut metadata = Vec::with_capacity(n_kv as usize);
        let mut meta_index = HashMap::with_capacity(n_kv as usize);
        for i in 0..n_kv {
            let key = c.string(&format!("metadata key #{i}"), MAX_KEY_LEN)?;
            let what = format!("metadata `{key}`");
            let ty_id = c.u32(&format!("{what} type"))?;
            let ty = ValueType::from_id(ty_id).ok_or_else(|| GgufError::Invalid {
                what: what.clone(),
                detail: format!("unknown value type {ty_id}"),
            })?;
            let value = c.value(&what, ty, 0)?;
            if meta_index.insert(key.clone(), metadata.len()).is_some() {
                return Err(GgufError::Invalid {
                    what,
                    detail: "duplicate key".into(),
                });
            }
            metadata.push((key, value));
        }

        let alignment = match meta_index.get("general.alignment").map(|&i| &metadata[i].1) {
            None => DEFAULT_ALIGNMENT,
            Some(Value::U32(a)) => *a as u64,
            Some(v) => {
                return Err(GgufError::Invalid {
                    what: "metadata `general.alignment`".into(),
                    detail: format!("expected u32, found {}", v.value_type().name()),
                })
            }
        };
        if alignment == 0 || !alignment.is_power_of_two() || alignment > MAX_ALIGNMENT {
            return Err(GgufError::Invalid {
                what: "metadata `general.alignment`".into(),
                detail: format!("{alignment} is not a power of two in 1..={MAX_ALIGNMENT}"),
            });
        }

        let mut raw = Vec::with_capacity(n_tensors as usize);
        let mut tensor_index = HashMap::with_capacity(n_tensors as usize);
        for i in 0..n_tensors {
            let name = c.string(&format!("tensor #{i} name"), MAX_KEY_LEN)?;
            let what = format!("tensor `{name}`");
            if name.len() >= MAX_TENSOR_NAME {
                return Err(GgufError::Limit {
                    what: format!("{what} name length"),
                    value: name.len() as u64,
                    max: MAX_TENSOR_NAME as u64 - 1,
                });
            }
            let n_dims = c.u32(&format!("{what} n_dims"))?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(GgufError::Invalid {
                    what,
                    detail: format!("n_dims {n_dims} outside 1..={MAX_DIMS}"),
                });
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for d in 0..n_dims {
                let v = c.u64(&format!("{what} dim {d}"))?;
                if v > i64::MAX as u64 {
                    return Err(GgufError::Invalid {
                        what,
                        detail: format!("dim {d} = {v} exceeds i64::MAX"),
                    });
                }
                dims.push(v);
            }
            let ty_id = c.u32(&format!("{what} type"))?;
            let ty = GgmlType::from_id(ty_id).ok_or_else(|| GgufError::Invalid {
                what: what.clone(),
                detail: format!("unknown ggml type id {ty_id}"),
            })?;
            let rel = c.u64(&format!("{what} offset"))?;
            let n_elems = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| GgufError::Invalid {
                    what: what.clone(),
                    detail: format!("element count of dims {dims:?} overflows"),
                })?;
            if dims[0] % ty.block_size() != 0 {
                return Err(GgufError::Invalid {
                    what,
                    detail: format!(
                        "row length {} is not a multiple of the {} block size {}",
                        dims[0],
                        ty,
                        ty.block_size()
                    ),
                });
            }
            let size = (n_elems / ty.block_size())
                .checked_mul(ty.type_size())
                .ok_or_else(|| GgufError::Invalid {
                    what: what.clone(),
                    detail: format!("byte size of {n_elems} {ty} elements overflows"),
                })?;
            if rel % alignment != 0 {
                return Err(GgufError::Invalid {
                    what,
                    detail: format!("offset {rel} is not a multiple of the alignment {alignment}"),
                });
            }
            if tensor_index.insert(name.clone(), raw.len()).is_some() {
                return Err(GgufError::Invalid {
                    what,
                    detail: "duplicate tensor name".into(),
                });
            }
            raw.push(TensorInfo {
                index: i as usize,
                name,
                ty,
                dims,
                offset: rel,
                size,
            });
        }

        let header_end = c.pos;
        let data_offset = header_end.div_ceil(alignment) * alignment;
        if !raw.is_empty() && data_offset > file_size {
            return Err(GgufError::Truncated {
                offset: file_size,
                what: format!("data section (starts at {data_offset})"),
            });
        }
        for t in raw.iter_mut() {
            let abs = data_offset
                .checked_add(t.offset)
                .and_then(|o| o.checked_add(t.size).map(|e| (o, e)));
            match abs {
                Some((start, end)) if end <= file_size => t.offset = start,
                _ => {
                    return Err(GgufError::Invalid {
                        what: format!("tensor `{}`", t.name),
                        detail: format!(
                        "data [{} + {}, +{} bytes) runs past the end of the {file_size}-byte file",
                        data_offset, t.offset, t.size
                    ),
                    })
                }
            }
        }
        let mut by_offset: Vec<&TensorInfo> = raw.iter().filter(|t| t.size > 0).collect();
        by_offset.sort_by_key(|t| t.offset);
        for w in by_offset.windows(2) {
            if w[0].end() > w[1].offset {
                return Err(GgufError::Invalid {
                    what: format!("tensor `{}`", w[1].name),
                    detail: format!(
                        "data at {} overlaps tensor `{}` ({}..{})",
                        w[1].offset,
                        w[0].name,
                        w[0].offset,
                        w[0].end()
                    ),
                });
            }
        }
        let identity = ModelIdentity {
            file_size,
            header_sha256: hex(&c.hash.finalize()),
        };
        Ok(Gguf {
            version,
            alignment,
            metadata,
            tensors: raw,
            data_offset,
            file_size,
            identity,
            meta_index,
            tensor_index,
        })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// `general.architecture`, if present.
    pub fn architecture(&self) -> Option<&str> {
        self.get("general.architecture").and_then(Value::as_str)
    }

    /// Total bytes of tensor data.
    pub fn tensor_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.size).sum()
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A reader that knows how many bytes are left and hashes what it reads.
struct Cursor<R: Read> {
    r: R,
    pos: u64,
    len: u64,
    hash: Sha256,
}

impl<R: Read> Cursor<R> {
    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<(), GgufError> {
        if (buf.len() as u64) > self.remaining() {
            return Err(GgufError::Truncated {
                offset: self.pos,
                what: what.to_string(),
            });
        }
        self.r.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                GgufError::Truncated {
                    offset: self.pos,
                    what: what.to_string(),
                }
            } else {
                GgufError::Io {
                    path: None,
                    source: e,
                }
            }
        })?;
        self.hash.update(&*buf);
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        let mut b = [0u8; N];
        self.fill(&mut b, what)?;
        Ok(b)
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Reject a count that exceeds `max` or could not fit in the rest of the file at
    /// `min_size` bytes per element.
    fn check_count(&self, what: &str, n: u64, max: u64, min_size: u64) -> Result<(), GgufError> {
        if n > max {
            return Err(GgufError::Limit {
                what: what.to_string(),
                value: n,
                max,
            });
        }
        if n.saturating_mul(min_size) > self.remaining() {
            return Err(GgufError::Invalid {
                what: what.to_string(),
                detail: format!(
                    "{n} entries need at least {} bytes but only {} remain (truncated or corrupt file)",
                    n.saturating_mul(min_size),
                    self.remaining()
                ),
            });
        }
        Ok(())
    }

    fn string(&mut self, what: &str, max: u64) -> Result<String, GgufError> {
        let len = self.u64(&format!("{what} length"))?;
        if len > max {
            return Err(GgufError::Limit {
                what: format!("{what} length"),
                value: len,
                max,
            });
        }
        if len > self.remaining() {
            return Err(GgufError::Truncated {
                offset: self.pos,
                what: format!("{what} ({len} bytes, {} remain)", self.remaining()),
            });
        }
        let mut buf = vec![0u8; len as usize];
        self.fill(&mut buf, what)?;
        String::from_utf8(buf).map_err(|e| GgufError::Invalid {
            what: what.to_string(),
            detail: format!("invalid UTF-8 at byte {}", e.utf8_error().valid_up_to()),
        })
    }

    fn value(&mut self, what: &str, ty: ValueType, depth: u32) -> Result<Value, GgufError> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(what)?[0]),
            ValueType::I8 => Value::I8(self.array::<1>(what)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(what)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(what)?)),
            ValueType::U32 => Value::U32(self.u32(what)?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(what)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(what)?)),
            ValueType::U64 => Value::U64(self.u64(what)?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(what)?)),
            ValueType::Bool => match self.array::<1>(what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => {
                    return Err(GgufError::Invalid {
                        what: what.to_string(),
                        detail: format!("bool byte {b} is neither 0 nor 1"),
                    })
                }
            },
            ValueType::String => Value::String(self.string(what, MAX_STRING_LEN)?),
            ValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(GgufError::Limit {
                        what: format!("{what} array nesting"),
                        value: depth as u64 + 1,
                        max: MAX_ARRAY_DEPTH as u64,
                    });
                }
                let et_id = self.u32(&format!("{what} element type"))?;
                let et = ValueType::from_id(et_id).ok_or_else(|| GgufError::Invalid {
                    what: what.to_string(),
                    detail: format!("unknown array element type {et_id}"),
                })?;
                let n = self.u64(&format!("{what} array length"))?;
                self.check_count(
                    &format!("{what} array length"),
                    n,
                    MAX_ARRAY_LEN,
                    et.min_encoded_size(),
                )?;
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(what, et, depth + 1)?);
                }
                Value::Array(et, items)
            }
        })
    }
}

#[cfg(test)]
pub(crate) mod tests;
