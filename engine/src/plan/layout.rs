// What one weight pass looks like to the planner: the model's fixed access order, which accesses
// the forward pass holds at the same time (fetch groups), the tensors' file ranges, and how the
// streamed tensors are cut into chunks (contiguous file ranges merged into large aligned reads).

use crate::gguf::{Gguf, TensorInfo};
use crate::model::Model;
use crate::weights::stream::pool::{ceil_align, floor_align};
use crate::weights::TensorId;
use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;

/// A chunk: streamed tensors used consecutively in a pass, read as one aligned file range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub aligned_offset: u64,
    pub aligned_size: u64,
    /// In access order.
    pub tensors: Vec<TensorId>,
}

impl Chunk {
    pub fn end(&self) -> u64 {
        self.aligned_offset + self.aligned_size
    }
}

/// The pass structure of a bound model.
#[derive(Clone, Debug)]
pub struct Layout {
    pub gguf: Arc<Gguf>,
    /// Matrices in the order a pass fetches them ([`Model::access_order`]).
    pub order: Vec<TensorId>,
    /// Position ranges of `order` whose weights the forward pass holds together.
    pub groups: Vec<Range<usize>>,
    /// Layer of each position (None for the output head).
    pub layer: Vec<Option<usize>>,
    pub n_layers: usize,
    pub token_embd: TensorId,
    pub output: TensorId,
    pub tied: bool,
    /// Norms, biases, RoPE factors: decoded at load, always resident.
    pub small: Vec<TensorId>,
    pub small_bytes: u64,
}

impl Layout {
    pub fn new(model: &Model) -> Layout {
        let order = model.access_order();
        let mut layer = Vec::with_capacity(order.len());
        let mut groups = Vec::new();
        // The forward pass holds q,k,v together, then o, then gate,up together, then down, then
        // the output head (engine/src/model/forward.rs). Anything else: one access per group.
        let mut expected = Vec::new();
        for (l, lw) in model.layers.iter().enumerate() {
            for g in [
                &[lw.wq, lw.wk, lw.wv][..],
                &[lw.wo],
                &[lw.w_gate, lw.w_up],
                &[lw.w_down],
            ] {
                let at = expected.len();
                expected.extend_from_slice(g);
                groups.push(at..at + g.len());
                layer.extend(std::iter::repeat_n(Some(l), g.len()));
            }
        }
        expected.push(model.output);
        groups.push(expected.len() - 1..expected.len());
        layer.push(None);
        if expected != order {
            groups = (0..order.len()).map(|i| i..i + 1).collect();
            layer = order
                .iter()
                .map(|&id| model.tensor(id).layer().map(|l| l as usize))
                .collect();
        }
        let small = model.small_tensor_ids();
        let small_bytes = small.iter().map(|&i| model.tensor(i).size).sum();
        Layout {
            gguf: model.gguf.clone(),
            order,
            groups,
            layer,
            n_layers: model.layers.len(),
            token_embd: model.token_embd,
            output: model.output,
            tied: model.tied_output,
            small,
            small_bytes,
        }
    }

    pub fn tensor(&self, id: TensorId) -> &TensorInfo {
        &self.gguf.tensors[id]
    }

    /// Bytes of the aligned extents covering `ids` (overlapping pages counted once).
    pub fn aligned_extent_bytes(&self, ids: impl IntoIterator<Item = TensorId>) -> u64 {
        self.extents(ids).iter().map(|r| r.end - r.start).sum()
    }

    /// Merged aligned file ranges covering `ids`.
    pub fn extents(&self, ids: impl IntoIterator<Item = TensorId>) -> Vec<Range<u64>> {
        let mut r: Vec<Range<u64>> = ids
            .into_iter()
            .map(|id| {
                let t = self.tensor(id);
                floor_align(t.offset)..ceil_align(t.end())
            })
            .collect();
        r.sort_by_key(|x| x.start);
        let mut out: Vec<Range<u64>> = Vec::with_capacity(r.len());
        for x in r {
            match out.last_mut() {
                Some(last) if x.start <= last.end => last.end = last.end.max(x.end),
                _ => out.push(x),
            }
        }
        out
    }

    /// Every matrix of layer `l`.
    pub fn layer_tensors(&self, l: usize) -> Vec<TensorId> {
        self.order
            .iter()
            .zip(&self.layer)
            .filter(|(_, &ly)| ly == Some(l))
            .map(|(&id, _)| id)
            .collect()
    }

    /// Cut the streamed (non-resident) accesses into chunks. A chunk is a run of whole fetch
    /// groups, consecutive in access order, whose aligned file extent is at most `max_chunk`
    /// bytes (a single larger group makes a chunk alone) and wastes little: bytes in the extent
    /// that no tensor of the chunk needs stay under 1/16 of the chunk or 64 KiB.
    pub fn chunks(&self, resident: &HashSet<TensorId>, max_chunk: u64) -> Vec<Chunk> {
        let units: Vec<Vec<TensorId>> = self
            .groups
            .iter()
            .map(|g| {
                self.order[g.clone()]
                    .iter()
                    .copied()
                    .filter(|id| !resident.contains(id))
                    .collect::<Vec<_>>()
            })
            .filter(|u| !u.is_empty())
            .collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < units.len() {
            let mut best = (i, self.span(&units[i..=i]));
            let mut lo = u64::MAX;
            let mut hi = 0;
            for j in i..units.len().min(i + 256) {
                for &id in &units[j] {
                    let t = self.tensor(id);
                    lo = lo.min(t.offset);
                    hi = hi.max(t.end());
                }
                let size = ceil_align(hi) - floor_align(lo);
                if j > i && size > max_chunk {
                    break;
                }
                let useful: u64 = units[i..=j]
                    .iter()
                    .flatten()
                    .map(|&id| self.tensor(id).size)
                    .sum();
                let waste = size - useful.min(size);
                if j > i && waste <= (64 << 10).max(useful / 16) + 2 * 4096 {
                    best = (j, (floor_align(lo), size));
                }
            }
            let (j, (off, size)) = best;
            out.push(Chunk {
                aligned_offset: off,
                aligned_size: size,
                tensors: units[i..=j].iter().flatten().copied().collect(),
            });
            i = j + 1;
        }
        out
    }

    fn span(&self, units: &[Vec<TensorId>]) -> (u64, u64) {
        let lo = units
            .iter()
            .flatten()
            .map(|&id| self.tensor(id).offset)
            .min()
            .unwrap_or(0);
        let hi = units
            .iter()
            .flatten()
            .map(|&id| self.tensor(id).end())
            .max()
            .unwrap_or(0);
        (floor_align(lo), ceil_align(hi) - floor_align(lo))
    }
}
