//! The forward pass: one function, allocation-free, for a batch of tokens at consecutive
//! positions (a prefill batch, or one decode token). Matrices come from the weight source at the
//! point of use in [`super::Model::access_order`]; all activations live in a preallocated
//! [`RunState`]; keys and values go to an f16 [`KvCache`].
//!
//! Per block: RMSNorm → Q,K,V (+bias) → RoPE → cache K,V → causal attention (online softmax) →
//! output projection → residual → RMSNorm → gate,up → SwiGLU → down → residual.

use super::ops::{add_in_place, rmsnorm, rope_apply, rope_table, swiglu};
use super::{Model, ModelError};
use crate::kernels::{
    attend_f16, dequantize_row, f16_to_f32_slice, f32_to_f16_slice, Kernels, MatJob, MatmulScratch,
    QMatrix,
};
use crate::weights::{Phase, TensorId, Weight, WeightSource};

/// Which rows of logits a pass computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogitsMode {
    /// Only the last token's (generation).
    Last,
    /// Every token's (perplexity).
    All,
    /// None (a prefill batch that is not the last).
    None,
}

/// Kinds of op, as reported to an [`Observer`] (ids are stable: probes and traces use them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OpKind {
    Embed = 0,
    AttnNorm = 1,
    Qkv = 2,
    Rope = 3,
    Attention = 4,
    AttnOut = 5,
    FfnNorm = 6,
    FfnGateUp = 7,
    FfnDown = 8,
    OutputNorm = 9,
    Output = 10,
}

impl OpKind {
    pub const ALL: [OpKind; 11] = [
        OpKind::Embed,
        OpKind::AttnNorm,
        OpKind::Qkv,
        OpKind::Rope,
        OpKind::Attention,
        OpKind::AttnOut,
        OpKind::FfnNorm,
        OpKind::FfnGateUp,
        OpKind::FfnDown,
        OpKind::OutputNorm,
        OpKind::Output,
    ];
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Embed => "embed",
            OpKind::AttnNorm => "attn_norm",
            OpKind::Qkv => "qkv",
            OpKind::Rope => "rope",
            OpKind::Attention => "attention",
            OpKind::AttnOut => "attn_out",
            OpKind::FfnNorm => "ffn_norm",
            OpKind::FfnGateUp => "ffn_gate_up",
            OpKind::FfnDown => "ffn_down",
            OpKind::OutputNorm => "output_norm",
            OpKind::Output => "output",
        }
    }
    pub fn from_id(id: u8) -> Option<OpKind> {
        Self::ALL.get(id as usize).copied()
    }
}

/// Hooks the forward pass calls at layer and op boundaries (probes, stage timing, tensor
/// traces). `layer` is `u32::MAX` for ops outside the blocks. Default methods do nothing.
pub trait Observer {
    fn layer_begin(&mut self, _layer: u32) {}
    fn layer_end(&mut self, _layer: u32) {}
    fn op_begin(&mut self, _layer: u32, _op: OpKind) {}
    /// The op finished; `weights` are the tensors it read, with where their bytes were.
    fn op_end(&mut self, _layer: u32, _op: OpKind, _weights: &[(TensorId, &Weight<'_>)]) {}
}

/// An observer that does nothing.
pub struct NoObserver;
impl Observer for NoObserver {}

/// Outside any block.
pub const NO_LAYER: u32 = u32::MAX;

/// Keys and values for every layer and position, f16, `[layer][pos][kv_dim]`.
pub struct KvCache {
    pub n_ctx: usize,
    kv_dim: usize,
    k: Vec<u16>,
    v: Vec<u16>,
}

impl KvCache {
    /// Zeroed allocation: pages are only committed as positions are written.
    pub fn new(model: &Model, n_ctx: usize) -> Self {
        let kv_dim = model.config.kv_dim();
        let n = model.config.n_layer * n_ctx * kv_dim;
        KvCache {
            n_ctx,
            kv_dim,
            k: vec![0; n],
            v: vec![0; n],
        }
    }
    fn at(&self, layer: usize, pos: usize) -> usize {
        (layer * self.n_ctx + pos) * self.kv_dim
    }
    /// Bytes of K+V currently holding positions `0..n_pos`.
    pub fn bytes_used(&self, n_layer: usize, n_pos: usize) -> u64 {
        (2 * n_layer * n_pos * self.kv_dim * 2) as u64
    }
}

/// Every activation buffer, sized once for `max_batch` tokens.
pub struct RunState {
    pub max_batch: usize,
    x: Vec<f32>,       // (max_batch, n_embd) residual stream
    xb: Vec<f32>,      // (max_batch, n_embd) normed input of a matmul
    q: Vec<f32>,       // (max_batch, q_dim)
    k: Vec<f32>,       // (max_batch, kv_dim)
    v: Vec<f32>,       // (max_batch, kv_dim)
    att: Vec<f32>,     // (max_batch, q_dim) attention output
    proj: Vec<f32>,    // (max_batch, n_embd) output of wo / w_down
    gate: Vec<f32>,    // (max_batch, n_ff)
    up: Vec<f32>,      // (max_batch, n_ff)
    cos: Vec<f32>,     // (max_batch, rope_dim/2)
    sin: Vec<f32>,     // (max_batch, rope_dim/2)
    embd_row: Vec<u8>, // one row of token_embd, raw
    /// (rows, n_vocab): rows = max_batch when all logits may be requested, else 1.
    pub logits: Vec<f32>,
    logit_rows: usize,
    scratch: MatmulScratch,
}

impl RunState {
    /// `all_logits`: allow [`LogitsMode::All`] (perplexity) — costs `max_batch × n_vocab` floats.
    pub fn new(model: &Model, max_batch: usize, all_logits: bool) -> Self {
        let c = &model.config;
        let b = max_batch.max(1);
        let logit_rows = if all_logits { b } else { 1 };
        let max_cols = c.n_embd.max(c.n_ff).max(c.q_dim());
        RunState {
            max_batch: b,
            x: vec![0.0; b * c.n_embd],
            xb: vec![0.0; b * c.n_embd],
            q: vec![0.0; b * c.q_dim()],
            k: vec![0.0; b * c.kv_dim()],
            v: vec![0.0; b * c.kv_dim()],
            att: vec![0.0; b * c.q_dim()],
            proj: vec![0.0; b * c.n_embd],
            gate: vec![0.0; b * c.n_ff],
            up: vec![0.0; b * c.n_ff],
            cos: vec![0.0; b * c.rope_dim / 2],
            sin: vec![0.0; b * c.rope_dim / 2],
            embd_row: vec![0; model.tensor(model.token_embd).row_bytes() as usize],
            logits: vec![0.0; logit_rows * c.n_vocab],
            logit_rows,
            scratch: MatmulScratch::new(b, max_cols),
        }
    }
}

fn qmatrix<'a>(model: &Model, id: TensorId, w: &'a Weight<'_>) -> QMatrix<'a> {
    let t = model.tensor(id);
    QMatrix {
        ty: t.ty,
        rows: t.rows() as usize,
        cols: t.cols() as usize,
        data: w.bytes,
    }
}

/// Run `tokens` (at positions `pos..pos+n`) through the model. Returns the requested logits:
/// `n_vocab` floats per row (one row for `Last`, `n` rows for `All`, none for `None`).
///
/// The pass runs on the calling thread inside one [`Kernels::session`], so the other workers
/// stay ready between its ~150 parallel regions instead of being woken for each.
#[allow(clippy::too_many_arguments)]
pub fn forward<'s>(
    model: &Model,
    src: &dyn WeightSource,
    kern: &Kernels,
    st: &'s mut RunState,
    kv: &mut KvCache,
    tokens: &[u32],
    pos: usize,
    logits: LogitsMode,
    obs: &mut dyn Observer,
) -> Result<&'s [f32], ModelError> {
    kern.session(|| forward_pass(model, src, kern, st, kv, tokens, pos, logits, obs))
}

#[allow(clippy::too_many_arguments)]
fn forward_pass<'s>(
    model: &Model,
    src: &dyn WeightSource,
    kern: &Kernels,
    st: &'s mut RunState,
    kv: &mut KvCache,
    tokens: &[u32],
    pos: usize,
    logits: LogitsMode,
    obs: &mut dyn Observer,
) -> Result<&'s [f32], ModelError> {
    let c = &model.config;
    let n = tokens.len();
    if n == 0 || n > st.max_batch {
        return Err(ModelError::Input(format!(
            "batch of {n} tokens (1..={} allowed)",
            st.max_batch
        )));
    }
    if pos + n > kv.n_ctx {
        return Err(ModelError::Input(format!(
            "positions {pos}..{} exceed the context size {} (-c)",
            pos + n,
            kv.n_ctx
        )));
    }
    if logits == LogitsMode::All && st.logit_rows < n {
        return Err(ModelError::Input(
            "all-token logits were not enabled for this RunState".into(),
        ));
    }
    let (d, qd, kvd, ff) = (c.n_embd, c.q_dim(), c.kv_dim(), c.n_ff);
    let (hd, n_head, group) = (c.head_dim, c.n_head, c.n_head / c.n_head_kv);
    let half = c.rope_dim / 2;
    let phase = if n == 1 && pos > 0 {
        Phase::Decode
    } else {
        Phase::Prefill
    };
    src.begin_pass(phase, n)?;

    // Embedding: read only the rows these tokens need.
    obs.op_begin(NO_LAYER, OpKind::Embed);
    let embd = model.tensor(model.token_embd);
    for (t, &tok) in tokens.iter().enumerate() {
        if tok as usize >= c.n_vocab {
            return Err(ModelError::Input(format!(
                "token id {tok} is outside the vocabulary ({})",
                c.n_vocab
            )));
        }
        src.read_at(
            model.token_embd,
            tok as u64 * embd.row_bytes(),
            &mut st.embd_row,
        )?;
        dequantize_row(embd.ty, &st.embd_row, &mut st.x[t * d..(t + 1) * d]);
    }
    obs.op_end(NO_LAYER, OpKind::Embed, &[]);

    // RoPE angles per token, shared by all heads and layers.
    for t in 0..n {
        rope_table(
            pos + t,
            c.rope_dim,
            c.rope_base,
            c.rope_freq_scale,
            model.rope_freqs.as_deref(),
            &mut st.cos[t * half..(t + 1) * half],
            &mut st.sin[t * half..(t + 1) * half],
        );
    }

    let scale = 1.0 / (hd as f32).sqrt();
    for (l, lw) in model.layers.iter().enumerate() {
        let lu = l as u32;
        obs.layer_begin(lu);

        obs.op_begin(lu, OpKind::AttnNorm);
        norm_rows(kern, n, d, &mut st.xb, &st.x, &lw.attn_norm, c.rms_eps);
        obs.op_end(lu, OpKind::AttnNorm, &[]);

        // q, k, v = xb · Wq, Wk, Wv (+ bias)
        obs.op_begin(lu, OpKind::Qkv);
        {
            let (wq, wk, wv) = (src.get(lw.wq)?, src.get(lw.wk)?, src.get(lw.wv)?);
            kern.matmul_multi(
                &mut [
                    MatJob {
                        w: qmatrix(model, lw.wq, &wq),
                        out: &mut st.q[..n * qd],
                    },
                    MatJob {
                        w: qmatrix(model, lw.wk, &wk),
                        out: &mut st.k[..n * kvd],
                    },
                    MatJob {
                        w: qmatrix(model, lw.wv, &wv),
                        out: &mut st.v[..n * kvd],
                    },
                ],
                &st.xb[..n * d],
                n,
                &mut st.scratch,
            );
            obs.op_end(lu, OpKind::Qkv, &[(lw.wq, &wq), (lw.wk, &wk), (lw.wv, &wv)]);
        }
        for (buf, bias, w) in [
            (&mut st.q, &lw.bq, qd),
            (&mut st.k, &lw.bk, kvd),
            (&mut st.v, &lw.bv, kvd),
        ] {
            if let Some(b) = bias {
                for t in 0..n {
                    add_in_place(&mut buf[t * w..(t + 1) * w], b);
                }
            }
        }

        // RoPE on q and k, then store k, v (f16) at their positions.
        obs.op_begin(lu, OpKind::Rope);
        {
            let (q, k, v) = (Rows::new(&mut st.q), Rows::new(&mut st.k), &st.v);
            let (cos, sin) = (&st.cos, &st.sin);
            let at = kv.at(l, pos);
            let kc = Rows::new(&mut kv.k[at..at + n * kvd]);
            let vc = Rows::new(&mut kv.v[at..at + n * kvd]);
            per_token(kern, n, &|t| {
                let (cs, sn) = (
                    &cos[t * half..(t + 1) * half],
                    &sin[t * half..(t + 1) * half],
                );
                // SAFETY: token `t` alone touches row `t` of each buffer.
                let (qt, kt, kct, vct) =
                    unsafe { (q.row(t, qd), k.row(t, kvd), kc.row(t, kvd), vc.row(t, kvd)) };
                for h in qt.chunks_exact_mut(hd) {
                    rope_apply(h, cs, sn, c.rope_style);
                }
                for h in kt.chunks_exact_mut(hd) {
                    rope_apply(h, cs, sn, c.rope_style);
                }
                f32_to_f16_slice(kct, kt);
                f32_to_f16_slice(vct, &v[t * kvd..(t + 1) * kvd]);
            });
        }
        obs.op_end(lu, OpKind::Rope, &[]);

        // Causal attention, one task per (token, head): online softmax over positions 0..=p.
        obs.op_begin(lu, OpKind::Attention);
        {
            let kvr: &KvCache = kv;
            let q = &st.q;
            let att = Rows::new(&mut st.att[..n * qd]);
            let tasks = n * n_head;
            let chunks = tasks.min(4 * kern.threads() * 4).max(1);
            kern.parallel(chunks, &|c, _| {
                for i in c * tasks / chunks..(c + 1) * tasks / chunks {
                    let (t, h) = (i / n_head, i % n_head);
                    let qh = &q[t * qd + h * hd..t * qd + (h + 1) * hd];
                    // SAFETY: task `i` alone writes row `i` of width `hd` (`n * qd` in all).
                    let out = unsafe { att.row(i, hd) };
                    attend(kvr, l, pos + t, h / group, qh, scale, out);
                }
            });
        }
        obs.op_end(lu, OpKind::Attention, &[]);

        // x += att · Wo
        obs.op_begin(lu, OpKind::AttnOut);
        {
            let wo = src.get(lw.wo)?;
            kern.matmul(
                qmatrix(model, lw.wo, &wo),
                &st.att[..n * qd],
                n,
                &mut st.proj[..n * d],
                &mut st.scratch,
            );
            obs.op_end(lu, OpKind::AttnOut, &[(lw.wo, &wo)]);
        }
        add_rows(kern, n, d, &mut st.x, &st.proj);

        obs.op_begin(lu, OpKind::FfnNorm);
        norm_rows(kern, n, d, &mut st.xb, &st.x, &lw.ffn_norm, c.rms_eps);
        obs.op_end(lu, OpKind::FfnNorm, &[]);

        // gate, up = xb · Wg, Wu; gate = silu(gate) * up
        obs.op_begin(lu, OpKind::FfnGateUp);
        {
            let (wg, wu) = (src.get(lw.w_gate)?, src.get(lw.w_up)?);
            kern.matmul_multi(
                &mut [
                    MatJob {
                        w: qmatrix(model, lw.w_gate, &wg),
                        out: &mut st.gate[..n * ff],
                    },
                    MatJob {
                        w: qmatrix(model, lw.w_up, &wu),
                        out: &mut st.up[..n * ff],
                    },
                ],
                &st.xb[..n * d],
                n,
                &mut st.scratch,
            );
            obs.op_end(lu, OpKind::FfnGateUp, &[(lw.w_gate, &wg), (lw.w_up, &wu)]);
        }
        {
            // Row by row, as ggml's GLU op (the SIMD body and libm tail are per row).
            let (gate, up) = (Rows::new(&mut st.gate), &st.up);
            per_token(kern, n, &|t| {
                // SAFETY: token `t` alone touches row `t`.
                swiglu(unsafe { gate.row(t, ff) }, &up[t * ff..(t + 1) * ff])
            });
        }

        // x += gate · Wdown
        obs.op_begin(lu, OpKind::FfnDown);
        {
            let wd = src.get(lw.w_down)?;
            kern.matmul(
                qmatrix(model, lw.w_down, &wd),
                &st.gate[..n * ff],
                n,
                &mut st.proj[..n * d],
                &mut st.scratch,
            );
            obs.op_end(lu, OpKind::FfnDown, &[(lw.w_down, &wd)]);
        }
        add_rows(kern, n, d, &mut st.x, &st.proj);
        obs.layer_end(lu);
    }

    // Final norm on the rows we need logits for, then the output projection.
    let (first, rows) = match logits {
        LogitsMode::Last => (n - 1, 1),
        LogitsMode::All => (0, n),
        LogitsMode::None => (n, 0),
    };
    obs.op_begin(NO_LAYER, OpKind::OutputNorm);
    for t in first..first + rows {
        let r = t - first;
        rmsnorm(
            &mut st.xb[r * d..(r + 1) * d],
            &st.x[t * d..(t + 1) * d],
            &model.output_norm,
            c.rms_eps,
        );
    }
    obs.op_end(NO_LAYER, OpKind::OutputNorm, &[]);
    // The output matrix is fetched even when no logits are wanted, so every pass reads the same
    // sequence of weights (a streaming source relies on that order).
    obs.op_begin(NO_LAYER, OpKind::Output);
    {
        let wout = src.get(model.output)?;
        if rows > 0 {
            let nv = c.n_vocab;
            kern.matmul(
                qmatrix(model, model.output, &wout),
                &st.xb[..rows * d],
                rows,
                &mut st.logits[..rows * nv],
                &mut st.scratch,
            );
        }
        obs.op_end(NO_LAYER, OpKind::Output, &[(model.output, &wout)]);
    }
    src.end_pass()?;
    Ok(&st.logits[..rows * c.n_vocab])
}

/// Widest head the attention keeps on the stack.
const MAX_HEAD_DIM: usize = 512;

/// Online-softmax attention of one query head over cached positions `0..=last`, with
/// llama.cpp's flash-attention arithmetic: the query rounded to f16, f16·f16 scores in ggml's
/// summation order, and the weighted sum of values kept in an f16 accumulator.
fn attend(
    kv: &KvCache,
    l: usize,
    last: usize,
    kvh: usize,
    qh: &[f32],
    scale: f32,
    out: &mut [f32],
) {
    let hd = qh.len();
    assert!(hd <= MAX_HEAD_DIM, "head dim {hd} exceeds {MAX_HEAD_DIM}");
    let mut h16 = [0u16; MAX_HEAD_DIM];
    f32_to_f16_slice(&mut h16[..hd], qh);
    let mut q16 = [0.0f32; MAX_HEAD_DIM];
    f16_to_f32_slice(&mut q16[..hd], &h16[..hd], 1.0);
    let q16 = &q16[..hd];
    let mut acc = [0u16; MAX_HEAD_DIM];
    let acc = &mut acc[..hd];
    let base = kv.at(l, 0) + kvh * hd;
    let s = attend_f16(
        &kv.k[base..],
        &kv.v[base..],
        kv.kv_dim,
        last + 1,
        q16,
        scale,
        acc,
    );
    let inv = if s == 0.0 { 0.0 } else { 1.0 / s };
    f16_to_f32_slice(out, acc, inv);
}

/// `f(t)` for every token `t < n`, in [`Kernels::token_chunks`] pieces over the workers.
fn per_token(kern: &Kernels, n: usize, f: &(dyn Fn(usize) + Sync)) {
    let chunks = kern.token_chunks(n);
    if chunks == 1 {
        (0..n).for_each(f);
        return;
    }
    kern.parallel(chunks, &|c, _| {
        (c * n / chunks..(c + 1) * n / chunks).for_each(f)
    });
}

/// `out[t] = rmsnorm(x[t]) · w` for the `n` token rows of width `d`.
fn norm_rows(kern: &Kernels, n: usize, d: usize, out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let out = Rows::new(&mut out[..n * d]);
    // SAFETY: token `t` alone touches row `t`.
    per_token(kern, n, &|t| {
        rmsnorm(unsafe { out.row(t, d) }, &x[t * d..(t + 1) * d], w, eps)
    });
}

/// `x[t] += y[t]` for the `n` token rows of width `d`.
fn add_rows(kern: &Kernels, n: usize, d: usize, x: &mut [f32], y: &[f32]) {
    let x = Rows::new(&mut x[..n * d]);
    // SAFETY: token `t` alone touches row `t`.
    per_token(kern, n, &|t| {
        add_in_place(unsafe { x.row(t, d) }, &y[t * d..(t + 1) * d])
    });
}

/// A buffer that parallel tasks write in disjoint rows.
struct Rows<T>(*mut T, usize);
impl<T> Clone for Rows<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Rows<T> {}
impl<T> Rows<T> {
    fn new(buf: &mut [T]) -> Self {
        Rows(buf.as_mut_ptr(), buf.len())
    }
    /// Row `t` of width `w` (bounds-checked).
    ///
    /// # Safety
    /// The buffer `new` was given is not otherwise used meanwhile, and no two live references
    /// to the same row exist.
    #[allow(clippy::mut_from_ref)]
    unsafe fn row<'a>(&self, t: usize, w: usize) -> &'a mut [T] {
        assert!(
            (t + 1) * w <= self.1,
            "row {t} of width {w} outside {} elements",
            self.1
        );
        // SAFETY: in bounds (asserted); exclusivity is the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(t * w), w) }
    }
}
// SAFETY: tasks write disjoint rows while the `&mut` borrow `new` took is still held.
unsafe impl<T: Send> Send for Rows<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Rows<T> {}
