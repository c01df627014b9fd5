//! The one seam between the model and its weights. The forward pass asks a [`WeightSource`] for
//! a tensor's bytes at the point of use, in a fixed per-pass order, and drops the returned
//! [`Weight`] guard when the op is done. `ram` and `mmap` hand out slices of a whole-file image;
//! `stream` (in [`stream`]) reads planned chunks into a bounded buffer pool ahead of use.

mod error;
mod mmap;
mod ram;
pub mod stream;

pub use error::WeightError;
pub use mmap::MmapSource;
pub use ram::RamSource;
pub use stream::{StreamOptions, StreamSource, StreamStats};

use crate::gguf::Gguf;
use std::sync::Arc;

/// Index of a tensor in the GGUF directory (also the id used by probes and traces).
pub type TensorId = usize;

/// What a forward pass is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// A batch of prompt tokens.
    Prefill,
    /// One generated token.
    Decode,
}

impl Phase {
    pub fn id(self) -> u8 {
        match self {
            Phase::Prefill => 0,
            Phase::Decode => 1,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Phase::Prefill => "prefill",
            Phase::Decode => "decode",
        }
    }
}

/// Where a weight's bytes live while it is used (recorded in tensor traces).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemOrigin {
    /// Held in memory for the whole run (ram source, or the stream source's resident set).
    Resident,
    /// Inside streaming pool buffer `slot`.
    StreamSlot(u32),
    /// A view of a memory-mapped file.
    Mmap,
}

/// Which source implementation (`--weights`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Ram,
    Mmap,
    Stream,
}

impl SourceKind {
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Ram => "ram",
            SourceKind::Mmap => "mmap",
            SourceKind::Stream => "stream",
        }
    }
}

impl std::str::FromStr for SourceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ram" => Ok(SourceKind::Ram),
            "mmap" => Ok(SourceKind::Mmap),
            "stream" => Ok(SourceKind::Stream),
            _ => Err(format!(
                "unknown weights mode `{s}` (expected ram, mmap or stream)"
            )),
        }
    }
}

/// Called when a [`Weight`] guard drops, so a streaming source can recycle the buffer.
pub trait Release: Sync {
    fn release(&self, ticket: u64);
}

/// A tensor's bytes, borrowed from the source until dropped.
pub struct Weight<'a> {
    pub bytes: &'a [u8],
    pub origin: MemOrigin,
    release: Option<(&'a dyn Release, u64)>,
}

impl<'a> Weight<'a> {
    /// A borrow that needs no release (ram, mmap, resident).
    pub fn borrowed(bytes: &'a [u8], origin: MemOrigin) -> Self {
        Weight {
            bytes,
            origin,
            release: None,
        }
    }
    /// A borrow that calls `owner.release(ticket)` on drop.
    pub fn with_release(
        bytes: &'a [u8],
        origin: MemOrigin,
        owner: &'a dyn Release,
        ticket: u64,
    ) -> Self {
        Weight {
            bytes,
            origin,
            release: Some((owner, ticket)),
        }
    }
}

impl Drop for Weight<'_> {
    fn drop(&mut self) {
        if let Some((owner, ticket)) = self.release.take() {
            owner.release(ticket);
        }
    }
}

/// Counters every source reports (added to `--summary`).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SourceStats {
    /// Weight bytes held for the whole run.
    pub resident_bytes: u64,
    /// Bytes read from storage for streamed weights (0 for ram/mmap).
    pub streamed_bytes: u64,
    /// Time compute waited for weights, in ns.
    pub stall_ns: u64,
    /// Passes started.
    pub passes: u64,
    /// Streaming details (`--weights stream` only).
    pub stream: Option<StreamStats>,
}

/// What happened to a streamed chunk (recorded for `io.jsonl` and mirrored by USDT probes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IoEventKind {
    /// A read of the chunk was handed to the kernel (io_uring SQE, pread job...).
    Submit,
    /// The read finished and the bytes are in the buffer.
    Complete,
    /// Compute needs the chunk and it is not complete yet: a stall begins.
    WaitBegin,
    /// The stall ended.
    WaitEnd,
}

/// One per-chunk I/O event, timestamped on the engine's CLOCK_MONOTONIC.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct IoEvent {
    pub t_ns: u64,
    pub kind: IoEventKind,
    pub chunk: u32,
    /// Aligned file offset and length of the read.
    pub offset: u64,
    pub bytes: u64,
    /// Pool buffer slot.
    pub slot: u32,
}

/// Hands weights to the forward pass.
///
/// Contract: within a pass, `get` is called in the model's fixed access order (the order of
/// [`crate::model::Model::access_order`]); a source may rely on it to prefetch, and must return an
/// error (not wrong bytes) if the order diverges from what it planned.
pub trait WeightSource: Send + Sync {
    fn kind(&self) -> SourceKind;

    /// Called once after the model is bound (a streaming source plans its reads here).
    fn attach_model(&mut self, _model: &crate::model::Model) -> Result<(), WeightError> {
        Ok(())
    }

    /// A forward pass over `n_tokens` tokens in `phase` begins.
    fn begin_pass(&self, _phase: Phase, _n_tokens: usize) -> Result<(), WeightError> {
        Ok(())
    }

    /// The pass ended (all guards dropped).
    fn end_pass(&self) -> Result<(), WeightError> {
        Ok(())
    }

    /// The bytes of tensor `id`.
    fn get(&self, id: TensorId) -> Result<Weight<'_>, WeightError>;

    /// Copy `out.len()` bytes of tensor `id` starting `offset` bytes into it (embedding rows are
    /// read this way, so a streaming source never streams the whole embedding).
    fn read_at(&self, id: TensorId, offset: u64, out: &mut [u8]) -> Result<(), WeightError>;

    fn stats(&self) -> SourceStats;

    /// Start (or stop) keeping [`IoEvent`]s for [`WeightSource::drain_io_events`]. Sources
    /// without I/O ignore it.
    fn record_io(&self, _on: bool) {}

    /// Move the recorded I/O events into `out` (oldest first).
    fn drain_io_events(&self, _out: &mut Vec<IoEvent>) {}

    /// One line on how the source placed the weights (the streaming plan), if it has one.
    fn describe(&self) -> Option<String> {
        None
    }
}

/// Shared model header used by every source.
pub type SharedGguf = Arc<Gguf>;

/// Bounds check shared by the image-backed sources.
pub(crate) fn slice_of<'a>(
    image: &'a [u8],
    g: &Gguf,
    id: TensorId,
) -> Result<&'a [u8], WeightError> {
    let t = g.tensors.get(id).ok_or(WeightError::UnknownTensor(id))?;
    image
        .get(t.offset as usize..(t.offset + t.size) as usize)
        .ok_or_else(|| {
            WeightError::Corrupt(format!("tensor `{}` lies outside the file image", t.name))
        })
}

pub(crate) fn read_from_image(
    image: &[u8],
    g: &Gguf,
    id: TensorId,
    offset: u64,
    out: &mut [u8],
) -> Result<(), WeightError> {
    let t = slice_of(image, g, id)?;
    let end = offset as usize + out.len();
    let src = t.get(offset as usize..end).ok_or_else(|| {
        WeightError::Corrupt(format!(
            "read of {} bytes at {offset} is outside tensor #{id} ({} bytes)",
            out.len(),
            t.len()
        ))
    })?;
    out.copy_from_slice(src);
    Ok(())
}
