//! Streaming plans: which weights stay resident under a memory budget, how the rest is cut into
//! chunks, how many buffers of what size, how deep to prefetch, and what that should cost per
//! token. Made on the fly by a quick heuristic ([`optimize`]) or by `flashslim plan` after
//! measuring the device and profiling compute (the Chunk Metadata Table, [`CmtEntry`]); stored as
//! versioned JSON ([`json`], schema in docs/formats.md) and checked against the model, the file's
//! content and the budget before use.

pub mod device;
#[doc(hidden)]
pub mod fuzz;
pub mod json;
pub mod layout;
pub mod optimize;

pub use layout::{Chunk, Layout};

use crate::gguf::ModelIdentity;
use crate::weights::stream::file::ModelFile;
use crate::weights::stream::pool::{ceil_align, ALIGN};
use crate::weights::{Phase, TensorId};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fmt;

/// `format` of a plan file and the version this build writes and reads.
pub const PLAN_FORMAT: &str = "flashslim-plan";
pub const PLAN_VERSION: u32 = 1;
/// Sanity limits on numbers read from a plan file.
pub const MAX_BUFFERS: u32 = 1 << 16;
pub const MAX_DEPTH: u32 = 1024;
pub const MAX_QUEUE_DEPTH: u32 = 256;
pub const MAX_REQUEST: u64 = 64 << 20;

#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PlanError {
    /// A field is missing, has the wrong type or an impossible value.
    Field { field: String, detail: String },
    /// Not JSON at all.
    Syntax(String),
    /// A plan format or version this build does not read.
    Version(String),
    /// The plan was made for another model file (or the file changed since).
    OtherModel(String),
    /// The plan was made for another budget.
    OtherBudget { plan: u64, asked: u64 },
    /// The budget cannot hold the minimum working set.
    Budget(String),
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::Field { field, detail } => write!(f, "plan: `{field}`: {detail}"),
            PlanError::Syntax(m) => write!(f, "plan: not valid JSON: {m}"),
            PlanError::Version(m) | PlanError::OtherModel(m) | PlanError::Budget(m) => {
                f.write_str(m)
            }
            PlanError::OtherBudget { plan, asked } => write!(
                f,
                "the plan was made for a budget of {} but --budget is {}; make a new plan with `flashslim plan --budget {}`",
                mib(*plan),
                mib(*asked),
                mib(*asked)
            ),
        }
    }
}
impl std::error::Error for PlanError {}

pub(crate) fn field(field: impl Into<String>, detail: impl Into<String>) -> PlanError {
    PlanError::Field {
        field: field.into(),
        detail: detail.into(),
    }
}

/// `12.3 MiB`.
pub fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

/// How the plan was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Quick rules, no measurement (what `run --weights stream` does without `--plan`).
    Heuristic,
    /// Device measured on the model file and compute profiled (`flashslim plan`).
    Profiled,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Heuristic => "heuristic",
            Method::Profiled => "profiled",
        }
    }
}

/// The model file a plan belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanModel {
    pub identity: ModelIdentity,
    /// sha256 of sampled data blocks ([`data_fingerprint`]).
    pub data_fingerprint: String,
}

/// O_DIRECT read bandwidth of the model file at one request size and queue depth.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepPoint {
    pub request_bytes: u64,
    pub queue_depth: u32,
    pub bytes_per_s: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DeviceProfile {
    /// Bandwidth at the plan's request size and queue depth.
    pub bandwidth_bytes_per_s: f64,
    /// Whether the measurement used O_DIRECT (false: buffered fallback).
    pub direct: bool,
    pub backend: String,
    pub sweep: Vec<SweepPoint>,
}

/// Predicted cost of one pass of a phase, from the pipeline model.
#[derive(Clone, Debug, PartialEq)]
pub struct PhasePrediction {
    pub phase: Phase,
    /// Tokens per pass the compute figures were profiled at.
    pub tokens: u32,
    pub io_ms: f64,
    pub compute_ms: f64,
    pub overlap_ms: f64,
    pub stall_ms: f64,
    pub pass_ms: f64,
    pub overlap_pct: f64,
}

/// One weight access of the profiling pass (a row of the Chunk Metadata Table).
#[derive(Clone, Debug, PartialEq)]
pub struct CmtEntry {
    pub phase: Phase,
    /// Position in the pass's access order.
    pub index: u32,
    pub tensor: TensorId,
    pub layer: Option<u32>,
    pub offset: u64,
    pub size: u64,
    pub aligned_offset: u64,
    pub aligned_size: u64,
    /// Mean time the op using this weight held it (get → guard drop), ms.
    pub compute_ms: f64,
    /// Mean time from this weight's release to the next weight request (non-matrix ops), ms.
    pub gap_ms: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub method: Method,
    pub model: PlanModel,
    pub budget_bytes: u64,
    /// Matrices kept in memory for the whole run (when the head is tied, also the embedding).
    pub resident: Vec<TensorId>,
    pub chunks: Vec<Chunk>,
    pub buffer_count: u32,
    pub buffer_bytes: u64,
    pub prefetch_depth: u32,
    /// Size of one read request and how many are kept in flight.
    pub request_bytes: u64,
    pub queue_depth: u32,
    pub device: Option<DeviceProfile>,
    pub predicted: Vec<PhasePrediction>,
    pub cmt: Vec<CmtEntry>,
}

/// Figures derived from a checked plan.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanFigures {
    pub small_bytes: u64,
    pub resident_bytes: u64,
    pub buffers_bytes: u64,
    pub streamed_bytes_per_pass: u64,
    pub largest_chunk: u64,
}

impl Plan {
    /// Check the plan against the model's pass structure and (when given) the budget asked for.
    /// Every number is recomputed; nothing in the file is trusted.
    pub fn check(&self, layout: &Layout, budget: Option<u64>) -> Result<PlanFigures, PlanError> {
        let g = &layout.gguf;
        if self.model.identity != g.identity {
            return Err(PlanError::OtherModel(format!(
                "the plan was made for another model file (plan: {}, file: {}); make a new plan with `flashslim plan`",
                self.model.identity.short(),
                g.identity.short()
            )));
        }
        if let Some(b) = budget {
            if b != self.budget_bytes {
                return Err(PlanError::OtherBudget {
                    plan: self.budget_bytes,
                    asked: b,
                });
            }
        }
        let in_order: HashSet<TensorId> = layout.order.iter().copied().collect();
        let mut resident = HashSet::new();
        for (i, &id) in self.resident.iter().enumerate() {
            if !in_order.contains(&id) {
                return Err(field(
                    format!("resident[{i}]"),
                    format!("tensor #{id} is not a matrix of the pass"),
                ));
            }
            if !resident.insert(id) {
                return Err(field(format!("resident[{i}]"), "listed twice"));
            }
        }
        if self.buffer_bytes == 0 || self.buffer_bytes % ALIGN != 0 {
            return Err(field(
                "buffers.bytes",
                format!(
                    "{} is not a positive multiple of {ALIGN}",
                    self.buffer_bytes
                ),
            ));
        }
        if self.buffer_count == 0 || self.buffer_count > MAX_BUFFERS {
            return Err(field(
                "buffers.count",
                format!("{} is outside 1..={MAX_BUFFERS}", self.buffer_count),
            ));
        }
        if self.prefetch_depth > MAX_DEPTH {
            return Err(field(
                "prefetch_depth",
                format!("{} exceeds {MAX_DEPTH}", self.prefetch_depth),
            ));
        }
        if self.request_bytes < ALIGN
            || self.request_bytes > MAX_REQUEST
            || self.request_bytes % ALIGN != 0
        {
            return Err(field(
                "io.request_bytes",
                format!(
                    "{} is not a multiple of {ALIGN} in {ALIGN}..={MAX_REQUEST}",
                    self.request_bytes
                ),
            ));
        }
        if self.queue_depth == 0 || self.queue_depth > MAX_QUEUE_DEPTH {
            return Err(field(
                "io.queue_depth",
                format!("{} is outside 1..={MAX_QUEUE_DEPTH}", self.queue_depth),
            ));
        }
        // Chunks: together, exactly the streamed accesses in order; each inside its range.
        let streamed: Vec<TensorId> = layout
            .order
            .iter()
            .copied()
            .filter(|id| !resident.contains(id))
            .collect();
        let group_of: std::collections::HashMap<usize, usize> = layout
            .groups
            .iter()
            .enumerate()
            .flat_map(|(gi, r)| r.clone().map(move |p| (p, gi)))
            .collect();
        let pos_of: std::collections::HashMap<TensorId, usize> = layout
            .order
            .iter()
            .enumerate()
            .map(|(p, &id)| (id, p))
            .collect();
        let file_end = ceil_align(g.file_size);
        let mut k = 0;
        let mut largest = 0;
        let mut streamed_bytes = 0u64;
        let mut last_group = None;
        for (ci, c) in self.chunks.iter().enumerate() {
            let f = |name: &str| format!("chunks[{ci}].{name}");
            if c.aligned_offset % ALIGN != 0 {
                return Err(field(
                    f("aligned_offset"),
                    format!("{} is not a multiple of {ALIGN}", c.aligned_offset),
                ));
            }
            if c.aligned_size == 0 || c.aligned_size % ALIGN != 0 {
                return Err(field(
                    f("aligned_size"),
                    format!("{} is not a positive multiple of {ALIGN}", c.aligned_size),
                ));
            }
            if c.aligned_offset
                .checked_add(c.aligned_size)
                .is_none_or(|e| e > file_end)
            {
                return Err(field(
                    f("aligned_size"),
                    format!(
                        "range {}+{} runs past the end of the {}-byte file",
                        c.aligned_offset, c.aligned_size, g.file_size
                    ),
                ));
            }
            if c.tensors.is_empty() {
                return Err(field(f("tensors"), "empty"));
            }
            for (ti, &id) in c.tensors.iter().enumerate() {
                let want = streamed.get(k).copied();
                if want != Some(id) {
                    let name = |i: Option<TensorId>| {
                        i.and_then(|i| g.tensors.get(i))
                            .map_or("(end of pass)".to_string(), |t| format!("`{}`", t.name))
                    };
                    return Err(field(
                        format!("chunks[{ci}].tensors[{ti}]"),
                        format!(
                            "expected {} (streamed accesses in pass order), found {}",
                            name(want),
                            name(Some(id))
                        ),
                    ));
                }
                k += 1;
                let t = &g.tensors[id];
                if t.offset < c.aligned_offset || t.end() > c.end() {
                    return Err(field(
                        format!("chunks[{ci}].tensors[{ti}]"),
                        format!(
                            "`{}` ({}..{}) is not inside the chunk's range {}..{}",
                            t.name,
                            t.offset,
                            t.end(),
                            c.aligned_offset,
                            c.end()
                        ),
                    ));
                }
                let gi = group_of[&pos_of[&id]];
                if ti == 0 && last_group == Some(gi) {
                    return Err(field(
                        format!("chunks[{ci}].tensors[0]"),
                        format!(
                            "`{}` is used together with the previous chunk's last tensor; they must share a chunk",
                            t.name
                        ),
                    ));
                }
                last_group = Some(gi);
            }
            largest = largest.max(c.aligned_size);
            streamed_bytes += c.aligned_size;
            let slots = c.aligned_size.div_ceil(self.buffer_bytes);
            if slots > self.buffer_count as u64 {
                return Err(field(
                    f("aligned_size"),
                    format!(
                        "{} bytes need {slots} buffers of {} but the plan has {}",
                        c.aligned_size, self.buffer_bytes, self.buffer_count
                    ),
                ));
            }
        }
        if k != streamed.len() {
            return Err(field(
                "chunks",
                format!(
                    "cover {k} of the {} streamed tensors; next missing: `{}`",
                    streamed.len(),
                    g.tensors[streamed[k]].name
                ),
            ));
        }
        let resident_bytes = layout.aligned_extent_bytes(resident.iter().copied());
        let buffers_bytes = self.buffer_count as u64 * self.buffer_bytes;
        let total = layout.small_bytes + resident_bytes + buffers_bytes;
        if total > self.budget_bytes {
            return Err(field(
                "buffers",
                format!(
                    "small tensors {} + resident {} + buffers {} = {} exceed the budget {}",
                    mib(layout.small_bytes),
                    mib(resident_bytes),
                    mib(buffers_bytes),
                    mib(total),
                    mib(self.budget_bytes)
                ),
            ));
        }
        Ok(PlanFigures {
            small_bytes: layout.small_bytes,
            resident_bytes,
            buffers_bytes,
            streamed_bytes_per_pass: streamed_bytes,
            largest_chunk: largest,
        })
    }

    /// Refuse the plan if the file's sampled content differs from when it was planned.
    pub fn check_file(&self, file: &ModelFile, layout: &Layout) -> Result<(), PlanError> {
        let now = data_fingerprint(file, layout.gguf.data_offset)
            .map_err(|e| PlanError::OtherModel(e.to_string()))?;
        if now != self.model.data_fingerprint {
            return Err(PlanError::OtherModel(format!(
                "{} changed since the plan was made (tensor data differs); make a new plan with `flashslim plan`",
                file.path.display()
            )));
        }
        Ok(())
    }

    /// One line on what the plan keeps, streams and predicts.
    pub fn describe(&self, layout: &Layout, fig: &PlanFigures) -> String {
        let g = &layout.gguf;
        let mut head = String::new();
        let mut layers = Vec::new();
        let mut single = 0usize;
        let resident: HashSet<TensorId> = self.resident.iter().copied().collect();
        for l in 0..layout.n_layers {
            let ts = layout.layer_tensors(l);
            if ts.iter().all(|t| resident.contains(t)) {
                layers.push(l.to_string());
            } else {
                single += ts.iter().filter(|t| resident.contains(t)).count();
            }
        }
        if resident.contains(&layout.output) {
            head = format!(
                "`{}` ({}{}), ",
                g.tensors[layout.output].name,
                mib(g.tensors[layout.output].size),
                if layout.tied {
                    ", tied: embedding rows come from it"
                } else {
                    ""
                }
            );
        }
        let mut s = format!(
            "resident {}: {head}{} full layers [{}]{}, small tensors {}; streaming {}/pass in {} chunks (largest {}) through {} x {} buffers, prefetch depth {}, {} x {} requests",
            mib(fig.resident_bytes + fig.small_bytes),
            layers.len(),
            layers.join(","),
            if single > 0 {
                format!(" + {single} single tensors")
            } else {
                String::new()
            },
            mib(fig.small_bytes),
            mib(fig.streamed_bytes_per_pass),
            self.chunks.len(),
            mib(fig.largest_chunk),
            self.buffer_count,
            mib(self.buffer_bytes),
            self.prefetch_depth,
            self.queue_depth,
            mib(self.request_bytes),
        );
        if let Some(p) = self.predicted.iter().find(|p| p.phase == Phase::Decode) {
            s += &format!(
                "; predicted decode {:.1} ms/token (I/O {:.1}, compute {:.1}, stall {:.1} ms)",
                p.pass_ms, p.io_ms, p.compute_ms, p.stall_ms
            );
        }
        s
    }
}

/// Number of sampled blocks in a data fingerprint.
const FINGERPRINT_SAMPLES: u64 = 16;

/// sha256 over 16 aligned 4 KiB blocks spread evenly over the tensor data, plus the last block:
/// cheap enough for every start, and any rewrite of the weights (requantization, another
/// fine-tune with the same header) changes it.
pub fn data_fingerprint(
    file: &ModelFile,
    data_offset: u64,
) -> Result<String, crate::weights::WeightError> {
    let mut h = Sha256::new();
    let mut buf = crate::weights::stream::pool::AlignedBuf::new(ALIGN as usize)?;
    let start = data_offset / ALIGN * ALIGN;
    let span = file.len.saturating_sub(start);
    let mut offsets: Vec<u64> = (0..FINGERPRINT_SAMPLES)
        .map(|i| (start + span * i / FINGERPRINT_SAMPLES) / ALIGN * ALIGN)
        .collect();
    offsets.push(file.len.saturating_sub(1) / ALIGN * ALIGN);
    for off in offsets {
        let n = file.read_aligned(off, buf.as_mut_slice())?;
        h.update(off.to_le_bytes());
        h.update(&buf.as_slice()[..n as usize]);
    }
    Ok(crate::gguf::hex(&h.finalize()))
}
