//! Tensor-access trace (`--trace tensors`, `tensor-trace.bin`): the binary layout (header, tensor
//! name table, fixed 64-byte little-endian records), the non-blocking writer and the reader.
//! docs/formats.md "Tensor-access trace" is the normative description of the bytes.

mod reader;
mod writer;

pub use reader::{TraceEnd, TraceFile, TraceReader};
pub use writer::{TraceStats, TraceThread, TraceWriter};

use crate::gguf::{Gguf, ModelIdentity};
use std::fmt;

/// File magic, first 8 bytes.
pub const MAGIC: [u8; 8] = *b"FSLTRACE";
/// Format version written; readers accept any minor of this major.
pub const VERSION_MAJOR: u16 = 1;
pub const VERSION_MINOR: u16 = 0;
/// Bytes per record.
pub const RECORD_SIZE: usize = 64;
/// Bytes of the fixed part of the header (before the tensor table).
pub const FIXED_HEADER: usize = 112;
/// Header flag: the writer finished cleanly and `record_count` is exact.
pub const FLAG_COMPLETE: u32 = 1;
/// Tag in bytes 58..60 of every record ("TR").
pub const RECORD_TAG: u16 = u16::from_le_bytes(*b"TR");
/// "None" values of the optional record fields.
pub const NO_TENSOR: u32 = u32::MAX;
pub const NO_LAYER: u16 = u16::MAX;
pub const NO_SLOT: u16 = u16::MAX;
pub const NO_OFFSET: u64 = u64::MAX;
/// Reader limits (a header claiming more is corrupt).
pub const MAX_TENSORS: u32 = 1 << 20;
pub const MAX_NAME: usize = 4096;
pub const MAX_HEADER: u64 = 256 << 20;

/// Where the accessed bytes lived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum MemSource {
    /// A weight held in memory for the whole run.
    Resident = 0,
    /// A weight inside a streaming pool buffer (`slot` says which).
    StreamSlot = 1,
    /// A weight read through a memory-mapped file.
    Mmap = 2,
    /// The KV cache.
    Kv = 3,
    /// Activation buffers (RunState).
    Activation = 4,
}

impl MemSource {
    pub fn from_id(id: u8) -> Option<MemSource> {
        [
            MemSource::Resident,
            MemSource::StreamSlot,
            MemSource::Mmap,
            MemSource::Kv,
            MemSource::Activation,
        ]
        .get(id as usize)
        .copied()
    }
    pub fn name(self) -> &'static str {
        match self {
            MemSource::Resident => "resident",
            MemSource::StreamSlot => "stream_slot",
            MemSource::Mmap => "mmap",
            MemSource::Kv => "kv",
            MemSource::Activation => "activation",
        }
    }
}

/// Read or write of the accessed bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Access {
    Read = 0,
    Write = 1,
}

/// One access to a weight, the KV cache or an activation buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TraceRecord {
    /// CLOCK_MONOTONIC ns when the op that made the access began.
    pub t_ns: u64,
    /// How long that op ran, ns.
    pub dur_ns: u64,
    /// Absolute file offset of the bytes ([`NO_OFFSET`] when not file-backed).
    pub file_offset: u64,
    pub bytes: u64,
    /// Index of the generated token the pass works toward (0 for every prefill pass).
    pub token: u32,
    /// First sequence position the pass processes.
    pub pos: u32,
    /// Tensor id (GGUF directory index, [`NO_TENSOR`] for KV and activations).
    pub tensor: u32,
    /// Linux thread id of the thread that ran the op.
    pub thread: u32,
    /// Layer ([`NO_LAYER`] outside the blocks).
    pub layer: u16,
    /// Generation (prompt) index within the run.
    pub gen: u16,
    /// Stream buffer slot ([`NO_SLOT`] unless `source` is `StreamSlot`).
    pub slot: u16,
    /// Op kind id ([`crate::model::OpKind`]).
    pub op: u8,
    /// 0 prefill, 1 decode.
    pub phase: u8,
    pub source: MemSource,
    pub access: Access,
}

/// FNV-1a over the first 60 bytes of a record: detects torn and never-written records.
pub fn record_check(b: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &x in &b[..60] {
        h ^= x as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

impl TraceRecord {
    pub fn encode(&self) -> [u8; RECORD_SIZE] {
        let mut b = [0u8; RECORD_SIZE];
        b[0..8].copy_from_slice(&self.t_ns.to_le_bytes());
        b[8..16].copy_from_slice(&self.dur_ns.to_le_bytes());
        b[16..24].copy_from_slice(&self.file_offset.to_le_bytes());
        b[24..32].copy_from_slice(&self.bytes.to_le_bytes());
        b[32..36].copy_from_slice(&self.token.to_le_bytes());
        b[36..40].copy_from_slice(&self.pos.to_le_bytes());
        b[40..44].copy_from_slice(&self.tensor.to_le_bytes());
        b[44..48].copy_from_slice(&self.thread.to_le_bytes());
        b[48..50].copy_from_slice(&self.layer.to_le_bytes());
        b[50..52].copy_from_slice(&self.gen.to_le_bytes());
        b[52..54].copy_from_slice(&self.slot.to_le_bytes());
        b[54] = self.op;
        b[55] = self.phase;
        b[56] = self.source as u8;
        b[57] = self.access as u8;
        b[58..60].copy_from_slice(&RECORD_TAG.to_le_bytes());
        let c = record_check(&b);
        b[60..64].copy_from_slice(&c.to_le_bytes());
        b
    }

    /// Decode one record. `Ok(None)`: the slot was never written (all zero, the preallocated tail).
    pub fn decode(b: &[u8; RECORD_SIZE]) -> Result<Option<TraceRecord>, String> {
        if b.iter().all(|&x| x == 0) {
            return Ok(None);
        }
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        let u16_at = |o: usize| u16::from_le_bytes(b[o..o + 2].try_into().unwrap());
        if u16_at(58) != RECORD_TAG {
            return Err("record tag is not \"TR\" (torn or foreign bytes)".into());
        }
        if u32_at(60) != record_check(b) {
            return Err("record checksum mismatch (torn write)".into());
        }
        let op = b[54];
        if crate::model::OpKind::from_id(op).is_none() {
            return Err(format!("unknown op kind {op}"));
        }
        if b[55] > 1 {
            return Err(format!("unknown phase {}", b[55]));
        }
        let source = MemSource::from_id(b[56]).ok_or(format!("unknown memory source {}", b[56]))?;
        let access = match b[57] {
            0 => Access::Read,
            1 => Access::Write,
            x => return Err(format!("unknown access kind {x}")),
        };
        Ok(Some(TraceRecord {
            t_ns: u64_at(0),
            dur_ns: u64_at(8),
            file_offset: u64_at(16),
            bytes: u64_at(24),
            token: u32_at(32),
            pos: u32_at(36),
            tensor: u32_at(40),
            thread: u32_at(44),
            layer: u16_at(48),
            gen: u16_at(50),
            slot: u16_at(52),
            op,
            phase: b[55],
            source,
            access,
        }))
    }
}

/// One entry of the header's tensor table (index = tensor id).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TraceTensor {
    pub name: String,
    pub offset: u64,
    pub size: u64,
    /// ggml type id.
    pub ty: u32,
}

/// The decoded header.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TraceHeader {
    pub version_major: u16,
    pub version_minor: u16,
    pub record_size: u32,
    /// Bytes before the first record (a multiple of the record size).
    pub header_size: u32,
    pub flags: u32,
    /// Exact when `flags & FLAG_COMPLETE`, else 0.
    pub record_count: u64,
    /// Records dropped because the disk fell behind (never blocks compute instead).
    pub dropped: u64,
    /// CLOCK_MONOTONIC ns when the trace was created.
    pub start_ns: u64,
    pub model: ModelIdentity,
    pub run_id: String,
    pub tensors: Vec<TraceTensor>,
}

impl TraceHeader {
    pub fn new(gguf: &Gguf, run_id: &str, start_ns: u64) -> TraceHeader {
        TraceHeader {
            version_major: VERSION_MAJOR,
            version_minor: VERSION_MINOR,
            record_size: RECORD_SIZE as u32,
            header_size: 0,
            flags: 0,
            record_count: 0,
            dropped: 0,
            start_ns,
            model: gguf.identity.clone(),
            run_id: run_id.chars().take(16).collect(),
            tensors: gguf
                .tensors
                .iter()
                .map(|t| TraceTensor {
                    name: t.name.chars().take(MAX_NAME).collect(),
                    offset: t.offset,
                    size: t.size,
                    ty: t.ty as u32,
                })
                .collect(),
        }
    }

    pub fn is_complete(&self) -> bool {
        self.flags & FLAG_COMPLETE != 0
    }

    /// Serialize (fills in `header_size`), padded with zeros to a multiple of [`RECORD_SIZE`].
    pub fn encode(&mut self) -> Vec<u8> {
        let mut b = Vec::with_capacity(FIXED_HEADER + self.tensors.len() * 48);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&self.version_major.to_le_bytes());
        b.extend_from_slice(&self.version_minor.to_le_bytes());
        b.extend_from_slice(&(RECORD_SIZE as u32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes()); // header_size, patched below
        b.extend_from_slice(&self.flags.to_le_bytes());
        b.extend_from_slice(&self.record_count.to_le_bytes());
        b.extend_from_slice(&self.dropped.to_le_bytes());
        b.extend_from_slice(&self.start_ns.to_le_bytes());
        b.extend_from_slice(&self.model.file_size.to_le_bytes());
        let mut sha = [0u8; 32];
        for (i, byte) in sha.iter_mut().enumerate() {
            *byte = self
                .model
                .header_sha256
                .get(2 * i..2 * i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .unwrap_or(0);
        }
        b.extend_from_slice(&sha);
        b.extend_from_slice(&(self.tensors.len() as u32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes()); // reserved
        let mut id = [0u8; 16];
        for (d, s) in id.iter_mut().zip(self.run_id.bytes()) {
            *d = s;
        }
        b.extend_from_slice(&id);
        debug_assert_eq!(b.len(), FIXED_HEADER);
        for t in &self.tensors {
            b.extend_from_slice(&t.offset.to_le_bytes());
            b.extend_from_slice(&t.size.to_le_bytes());
            b.extend_from_slice(&t.ty.to_le_bytes());
            b.extend_from_slice(&(t.name.len() as u16).to_le_bytes());
            b.extend_from_slice(t.name.as_bytes());
        }
        let padded = b.len().div_ceil(RECORD_SIZE) * RECORD_SIZE;
        b.resize(padded, 0);
        self.header_size = padded as u32;
        b[16..20].copy_from_slice(&self.header_size.to_le_bytes());
        b
    }
}

/// Bytes 20..40 of the header: flags, record_count, dropped (rewritten when the writer finishes).
pub(crate) fn header_tail(flags: u32, count: u64, dropped: u64) -> [u8; 20] {
    let mut b = [0u8; 20];
    b[0..4].copy_from_slice(&flags.to_le_bytes());
    b[4..12].copy_from_slice(&count.to_le_bytes());
    b[12..20].copy_from_slice(&dropped.to_le_bytes());
    b
}

#[derive(Debug)]
pub enum TraceError {
    Io(std::io::Error),
    /// Not a tensor trace, or one this reader cannot read.
    Format(String),
    /// A header field or a record is inconsistent.
    Corrupt(String),
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceError::Io(e) => write!(f, "tensor trace: {e}"),
            TraceError::Format(m) => write!(f, "tensor trace: {m}"),
            TraceError::Corrupt(m) => write!(f, "tensor trace is corrupt: {m}"),
        }
    }
}
impl std::error::Error for TraceError {}
impl From<std::io::Error> for TraceError {
    fn from(e: std::io::Error) -> Self {
        TraceError::Io(e)
    }
}
