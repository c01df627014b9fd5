// Activation quantization, the way ggml prepares the right-hand side of each weight type's dot
// product (Q8_0, Q8_1 with its block sum, Q8_K with per-16 sums, or f32 rounded to f16/bf16),
// stored as planes (codes, f32 scales, sums) in the preallocated scratch.

use super::blocks::{FloatTy, QK, QK_K};
use super::{f32_to_f16, Isa};
use crate::gguf::GgmlType;

/// Which activation format a weight type's kernels consume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActKind {
    /// f32 values rounded to the weight's float type.
    Float(FloatTy),
    /// 32-element blocks: codes, `d` as an f16-rounded f32, Q8_1's `s = f16(d · Σq)`, Σq.
    Q8,
    /// 256-element blocks: codes, f32 `d`, i16 sums per 16.
    Q8K,
}

impl ActKind {
    pub fn of(ty: GgmlType) -> ActKind {
        use GgmlType::*;
        match ty {
            F32 => ActKind::Float(FloatTy::F32),
            F16 => ActKind::Float(FloatTy::F16),
            BF16 => ActKind::Float(FloatTy::Bf16),
            Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 => ActKind::Q8,
            Q4_K | Q5_K | Q6_K => ActKind::Q8K,
            other => panic!("no kernels for weight type {other}"),
        }
    }
}

/// One token's quantized activations (`cols` elements). Unused planes are empty.
#[derive(Clone, Copy)]
pub struct ActRow<'a> {
    /// Codes, element order.
    pub qs: &'a [i8],
    /// Scale per block (32 or 256 elements).
    pub d: &'a [f32],
    /// Q8_1's `s` per 32-block: `f16(d_unrounded · Σq)`.
    pub s: &'a [f32],
    /// Σq per 32-block.
    pub sum32: &'a [i32],
    /// Q8_K: Σq per 16 elements.
    pub bsums: &'a [i16],
    /// Float activations (already rounded to the weight type).
    pub f: &'a [f32],
}

/// Activations of `n` tokens, each `cols` wide, in planes with a fixed per-token stride.
#[derive(Clone, Copy)]
pub struct Acts<'a> {
    pub kind: ActKind,
    pub n: usize,
    pub cols: usize,
    pub qs: &'a [i8],
    pub d: &'a [f32],
    pub s: &'a [f32],
    pub sum32: &'a [i32],
    pub bsums: &'a [i16],
    pub f: &'a [f32],
}

impl<'a> Acts<'a> {
    /// Blocks per token for the scale planes.
    fn nb(&self) -> usize {
        match self.kind {
            ActKind::Q8 => self.cols / QK,
            ActKind::Q8K => self.cols / QK_K,
            ActKind::Float(_) => 0,
        }
    }
    pub fn row(&self, t: usize) -> ActRow<'a> {
        let (c, nb) = (self.cols, self.nb());
        match self.kind {
            ActKind::Float(_) => ActRow {
                f: &self.f[t * c..(t + 1) * c],
                ..ActRow::EMPTY
            },
            ActKind::Q8 => ActRow {
                qs: &self.qs[t * c..(t + 1) * c],
                d: &self.d[t * nb..(t + 1) * nb],
                s: &self.s[t * nb..(t + 1) * nb],
                sum32: &self.sum32[t * nb..(t + 1) * nb],
                ..ActRow::EMPTY
            },
            ActKind::Q8K => ActRow {
                qs: &self.qs[t * c..(t + 1) * c],
                d: &self.d[t * nb..(t + 1) * nb],
                bsums: &self.bsums[t * c / 16..(t + 1) * c / 16],
                ..ActRow::EMPTY
            },
        }
    }
}

impl ActRow<'static> {
    pub const EMPTY: ActRow<'static> = ActRow {
        qs: &[],
        d: &[],
        s: &[],
        sum32: &[],
        bsums: &[],
        f: &[],
    };
}

/// Owned planes sized for `max_tokens × max_cols`, any kind.
pub struct ActBuf {
    qs: Vec<i8>,
    d: Vec<f32>,
    s: Vec<f32>,
    sum32: Vec<i32>,
    bsums: Vec<i16>,
    f: Vec<f32>,
}

impl ActBuf {
    pub fn new(max_tokens: usize, max_cols: usize, float: bool) -> ActBuf {
        let n = max_tokens.max(1) * max_cols.max(1);
        ActBuf {
            qs: vec![0; n],
            d: vec![0.0; n / QK + 1],
            s: vec![0.0; n / QK + 1],
            sum32: vec![0; n / QK + 1],
            bsums: vec![0; n / 16 + 1],
            f: if float { vec![0.0; n] } else { Vec::new() },
        }
    }

    pub fn capacity(&self) -> usize {
        self.qs.len()
    }

    /// Quantize `x` (`n` rows of `cols`) for `kind`, returning the planes. Token rows are
    /// independent: `par(chunks, f)` must call `f(c, _)` once for every `c < chunks` (on any
    /// threads); each chunk quantizes a contiguous range of tokens into its own plane ranges.
    pub fn quantize<'s>(
        &'s mut self,
        kind: ActKind,
        isa: Isa,
        x: &'s [f32],
        n: usize,
        cols: usize,
        par: Par<'_>,
    ) -> Acts<'s> {
        let total = n * cols;
        assert!(
            total <= self.qs.len() && x.len() >= total,
            "activations {n}×{cols} exceed the scratch ({} elements) or the input ({})",
            self.qs.len(),
            x.len()
        );
        let x = &x[..total];
        let mut a = Acts {
            kind,
            n,
            cols,
            qs: &[],
            d: &[],
            s: &[],
            sum32: &[],
            bsums: &[],
            f: &[],
        };
        let nb = match kind {
            ActKind::Float(FloatTy::F32) => {
                a.f = x;
                return a;
            }
            ActKind::Float(_) => {
                assert!(self.f.len() >= total, "float scratch too small");
                0
            }
            ActKind::Q8 => {
                assert!(
                    cols.is_multiple_of(QK),
                    "{cols} columns is not a whole number of 32-blocks"
                );
                cols / QK
            }
            ActKind::Q8K => {
                assert!(
                    cols.is_multiple_of(QK_K),
                    "{cols} columns is not a whole number of 256-blocks"
                );
                cols / QK_K
            }
        };
        let planes = Planes {
            qs: self.qs.as_mut_ptr(),
            d: self.d.as_mut_ptr(),
            s: self.s.as_mut_ptr(),
            sum32: self.sum32.as_mut_ptr(),
            bsums: self.bsums.as_mut_ptr(),
            f: self.f.as_mut_ptr(),
        };
        let chunks = par.chunks.clamp(1, n.max(1));
        let body = |c: usize, _worker: usize| {
            let (t0, t1) = (c * n / chunks, (c + 1) * n / chunks);
            let xs = &x[t0 * cols..t1 * cols];
            let (e0, e1) = (t0 * cols, t1 * cols);
            // SAFETY: chunks cover disjoint token ranges, so each writes disjoint ranges of every
            // plane, all inside the lengths asserted above (`d`/`s`/`sum32` hold `total/32 + 1`,
            // `bsums` `total/16 + 1`, `f` `total` when used); `self` stays mutably borrowed.
            unsafe {
                match kind {
                    ActKind::Float(ty) => {
                        let f = planes.slice(planes.f, e0, e1);
                        for (o, &v) in f.iter_mut().zip(xs) {
                            *o = ty.round(v);
                        }
                    }
                    ActKind::Q8 => quantize_q8_isa(
                        isa,
                        xs,
                        planes.slice(planes.qs, e0, e1),
                        planes.slice(planes.d, t0 * nb, t1 * nb),
                        planes.slice(planes.s, t0 * nb, t1 * nb),
                        planes.slice(planes.sum32, t0 * nb, t1 * nb),
                    ),
                    ActKind::Q8K => quantize_q8k_isa(
                        isa,
                        xs,
                        planes.slice(planes.qs, e0, e1),
                        planes.slice(planes.d, t0 * nb, t1 * nb),
                        planes.slice(planes.bsums, e0 / 16, e1 / 16),
                    ),
                }
            }
        };
        if chunks == 1 {
            body(0, 0);
        } else {
            (par.run)(chunks, &body);
        }
        match kind {
            ActKind::Float(_) => a.f = &self.f[..total],
            ActKind::Q8 => {
                let nb = total / QK;
                a.qs = &self.qs[..total];
                a.d = &self.d[..nb];
                a.s = &self.s[..nb];
                a.sum32 = &self.sum32[..nb];
            }
            ActKind::Q8K => {
                let nb = total / QK_K;
                a.qs = &self.qs[..total];
                a.d = &self.d[..nb];
                a.bsums = &self.bsums[..total / 16];
            }
        }
        a
    }
}

/// A parallel-for: `run(chunks, f)` calls `f(c, worker)` for every `c < chunks`.
pub type RunFn<'a> = dyn Fn(usize, &(dyn Fn(usize, usize) + Sync)) + Sync + 'a;

/// How [`ActBuf::quantize`] may spread token rows over threads.
#[derive(Clone, Copy)]
pub struct Par<'r> {
    pub chunks: usize,
    pub run: &'r RunFn<'r>,
}

impl Par<'static> {
    /// Everything on the calling thread.
    pub const SERIAL: Par<'static> = Par {
        chunks: 1,
        run: &|n, f| (0..n).for_each(|c| f(c, 0)),
    };
}

/// Raw plane pointers shared by the quantization chunks.
#[derive(Clone, Copy)]
struct Planes {
    qs: *mut i8,
    d: *mut f32,
    s: *mut f32,
    sum32: *mut i32,
    bsums: *mut i16,
    f: *mut f32,
}
// SAFETY: chunks write disjoint ranges (see `ActBuf::quantize`) while the buffer is borrowed.
unsafe impl Sync for Planes {}

impl Planes {
    /// # Safety
    /// `p[a..b]` is inside its allocation and no other live reference overlaps it.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice<'x, T>(&self, p: *mut T, a: usize, b: usize) -> &'x mut [T] {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(p.add(a), b - a) }
    }
}

/// [`quantize_q8`] on the fastest path for `isa` (identical results).
fn quantize_q8_isa(
    isa: Isa,
    x: &[f32],
    qs: &mut [i8],
    d: &mut [f32],
    s: &mut [f32],
    sum32: &mut [i32],
) {
    #[cfg(target_arch = "x86_64")]
    if matches!(isa, Isa::Avx2 | Isa::Avx512) {
        // SAFETY: these paths are only selected on CPUs with AVX2/FMA/F16C.
        return unsafe { super::avx2::quantize_q8(x, qs, d, s, sum32) };
    }
    let _ = isa;
    quantize_q8(x, qs, d, s, sum32)
}

/// [`quantize_q8k`] on the fastest path for `isa` (identical results).
fn quantize_q8k_isa(isa: Isa, x: &[f32], qs: &mut [i8], d: &mut [f32], bsums: &mut [i16]) {
    #[cfg(target_arch = "x86_64")]
    if matches!(isa, Isa::Avx2 | Isa::Avx512) {
        // SAFETY: these paths are only selected on CPUs with AVX2/FMA/F16C.
        return unsafe { super::avx2::quantize_q8k(x, qs, d, bsums) };
    }
    let _ = isa;
    quantize_q8k(x, qs, d, bsums)
}

/// Round half to even (the rounding of ggml's SIMD quantizers and of its `nearest_int`), for
/// |v| ≤ 2²²: adding 1.5·2²³ leaves no fraction bits, so the FPU's default rounding does it.
#[inline]
fn rne(v: f32) -> i32 {
    const SHIFT: f32 = 12582912.0;
    ((v + SHIFT) - SHIFT) as i32
}

/// Q8_0 / Q8_1, as ggml's x86 quantizer: `d = amax/127` (stored f16-rounded), codes
/// `round(x · 127/amax)`, `s = f16(d · Σq)`.
pub fn quantize_q8(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32], sum32: &mut [i32]) {
    for (i, (xb, qb)) in x.chunks_exact(QK).zip(qs.chunks_exact_mut(QK)).enumerate() {
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let dd = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in qb.iter_mut().zip(xb) {
            let r = rne(v * id);
            *q = r as i8;
            sum += r;
        }
        d[i] = f16r(dd);
        s[i] = f16r(dd * sum as f32);
        sum32[i] = sum;
    }
}

/// Q8_K, as ggml: scale from the signed value of largest magnitude, `iscale = −127/max`,
/// codes `min(127, round(iscale · x))`, `d = 1/iscale`, sums per 16.
pub fn quantize_q8k(x: &[f32], qs: &mut [i8], d: &mut [f32], bsums: &mut [i16]) {
    for (i, (xb, qb)) in x
        .chunks_exact(QK_K)
        .zip(qs.chunks_exact_mut(QK_K))
        .enumerate()
    {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in xb {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        let bs = &mut bsums[16 * i..16 * (i + 1)];
        if amax == 0.0 {
            d[i] = 0.0;
            qb.fill(0);
            bs.fill(0);
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in qb.iter_mut().zip(xb) {
            *q = rne(iscale * v).min(127) as i8;
        }
        for (j, b) in bs.iter_mut().enumerate() {
            *b = qb[16 * j..16 * (j + 1)].iter().map(|&q| q as i16).sum();
        }
        d[i] = 1.0 / iscale;
    }
}

fn f16r(v: f32) -> f32 {
    super::f16_to_f32(f32_to_f16(v))
}
