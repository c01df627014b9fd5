// The forward-pass observer of logged runs: fires `layer_*`/`op_*` probes (tensor id = the op's
// main weight) and, with `--trace tensors`, writes one trace record per weight, KV-cache or
// activation access, stamped with the pass context (token, phase, position) from the sink.

use super::PassCtx;
use crate::model::forward::NO_LAYER;
use crate::model::{Model, Observer, OpKind};
use crate::probes::{self, monotonic_ns, thread_id};
use crate::trace::{
    Access, MemSource, TraceRecord, NO_LAYER as TRACE_NO_LAYER, NO_OFFSET, NO_SLOT, NO_TENSOR,
};
use crate::weights::{MemOrigin, SourceKind, TensorId, Weight};

pub struct ProbeObserver<'a> {
    model: &'a Model,
    ctx: &'a PassCtx,
    /// Where `read_at` (embedding rows) gets its bytes.
    embd_source: MemSource,
    op_start: u64,
    tid: u32,
}

impl<'a> ProbeObserver<'a> {
    pub fn new(model: &'a Model, source: SourceKind, ctx: &'a PassCtx) -> ProbeObserver<'a> {
        ProbeObserver {
            model,
            ctx,
            embd_source: match source {
                SourceKind::Ram => MemSource::Resident,
                SourceKind::Mmap => MemSource::Mmap,
                SourceKind::Stream => MemSource::StreamSlot,
            },
            op_start: 0,
            tid: thread_id(),
        }
    }

    /// The op's main weight (what `op_begin`/`op_end` carry as the tensor id), -1 for none.
    fn main_tensor(&self, layer: u32, op: OpKind) -> i64 {
        let m = self.model;
        let lw = m.layers.get(layer as usize);
        let id = match op {
            OpKind::Embed => Some(m.token_embd),
            OpKind::Output => Some(m.output),
            OpKind::Qkv => lw.map(|l| l.wq),
            OpKind::AttnOut => lw.map(|l| l.wo),
            OpKind::FfnGateUp => lw.map(|l| l.w_gate),
            OpKind::FfnDown => lw.map(|l| l.w_down),
            _ => None,
        };
        id.map(|i| i as i64).unwrap_or(-1)
    }

    fn record(&self, layer: u32, op: OpKind, now: u64) -> TraceRecord {
        TraceRecord {
            t_ns: self.op_start,
            dur_ns: now.saturating_sub(self.op_start),
            file_offset: NO_OFFSET,
            bytes: 0,
            token: self.ctx.token.get(),
            pos: self.ctx.pos.get(),
            tensor: NO_TENSOR,
            thread: self.tid,
            layer: if layer == NO_LAYER {
                TRACE_NO_LAYER
            } else {
                layer.min(u16::MAX as u32 - 1) as u16
            },
            gen: self.ctx.gen.get(),
            slot: NO_SLOT,
            op: op as u8,
            phase: self.ctx.phase.get(),
            source: MemSource::Activation,
            access: Access::Read,
        }
    }
}

fn layer_arg(layer: u32) -> i64 {
    if layer == NO_LAYER {
        -1
    } else {
        layer as i64
    }
}

impl Observer for ProbeObserver<'_> {
    fn layer_begin(&mut self, layer: u32) {
        probes::layer_begin(layer as u64);
    }

    fn layer_end(&mut self, layer: u32) {
        probes::layer_end(layer as u64);
    }

    fn op_begin(&mut self, layer: u32, op: OpKind) {
        probes::op_begin(layer_arg(layer), op as u64, self.main_tensor(layer, op));
        if self.ctx.tracing() {
            self.op_start = monotonic_ns();
        }
    }

    fn op_end(&mut self, layer: u32, op: OpKind, weights: &[(TensorId, &Weight<'_>)]) {
        probes::op_end(layer_arg(layer), op as u64, self.main_tensor(layer, op));
        let mut guard = self.ctx.trace.borrow_mut();
        let Some(trace) = guard.as_mut() else { return };
        let now = monotonic_ns();
        let base = self.record(layer, op, now);
        let c = &self.model.config;
        let n = self.ctx.n_tokens.get() as u64;
        let kv_bytes_per_pos = 2 * c.kv_dim() as u64 * 2; // K and V, f16
        let tensors = &self.model.gguf.tensors;
        if !weights.is_empty() {
            for (id, w) in weights {
                let (source, slot) = match w.origin {
                    MemOrigin::Resident => (MemSource::Resident, NO_SLOT),
                    MemOrigin::Mmap => (MemSource::Mmap, NO_SLOT),
                    MemOrigin::StreamSlot(s) => (MemSource::StreamSlot, s.min(0xFFFE) as u16),
                };
                trace.push(&TraceRecord {
                    tensor: *id as u32,
                    file_offset: tensors.get(*id).map(|t| t.offset).unwrap_or(NO_OFFSET),
                    bytes: w.bytes.len() as u64,
                    source,
                    slot,
                    ..base
                });
            }
            return;
        }
        let rec = match op {
            // Embedding rows come through read_at: n rows of token_embd, scattered.
            OpKind::Embed => {
                let t = tensors.get(self.model.token_embd);
                TraceRecord {
                    tensor: self.model.token_embd as u32,
                    bytes: n * t.map(|t| t.row_bytes()).unwrap_or(0),
                    source: self.embd_source,
                    ..base
                }
            }
            OpKind::Rope => TraceRecord {
                bytes: n * kv_bytes_per_pos,
                source: MemSource::Kv,
                access: Access::Write,
                ..base
            },
            OpKind::Attention => TraceRecord {
                bytes: (self.ctx.pos.get() as u64 + n) * kv_bytes_per_pos,
                source: MemSource::Kv,
                ..base
            },
            _ => TraceRecord {
                bytes: n * c.n_embd as u64 * 4,
                source: MemSource::Activation,
                ..base
            },
        };
        trace.push(&rec);
    }
}
