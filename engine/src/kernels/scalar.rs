// The portable reference path: every weight type's rows kernel as a loop of the scalar
// `vec_dot_*_ref` dots from `blocks`, plus scalar f16 attention helpers. SIMD paths are tested
// against this file.

use super::act::Acts;
use super::blocks::*;
use super::{f16_to_f32, f32_to_f16, float_ty};
use crate::gguf::GgmlType;

/// Scalar rows kernel (see [`super::RowsFn`]). Rows outer, tokens inner, so a row stays in cache
/// while every token uses it.
///
/// # Safety
/// `out[t*stride + i]` must be writable for `t < a.n`, `i < nrows`.
pub unsafe fn rows(ty: GgmlType, w: &[u8], nrows: usize, a: &Acts, out: *mut f32, stride: usize) {
    let rb = w.len() / nrows.max(1);
    for r in 0..nrows {
        let row = &w[r * rb..(r + 1) * rb];
        for t in 0..a.n {
            let v = dot_row(ty, row, a, t);
            // SAFETY: in bounds per the contract above.
            unsafe { *out.add(t * stride + r) = v };
        }
    }
}

/// One row of `ty` against token `t` of `a`.
pub fn dot_row(ty: GgmlType, row: &[u8], a: &Acts, t: usize) -> f32 {
    let x = a.row(t);
    match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => vec_dot_float_ref(float_ty(ty), row, x.f),
        GgmlType::Q4_0 => vec_dot_q4_0_ref(BlockQ4_0::slice(row), &x),
        GgmlType::Q4_1 => vec_dot_q4_1_ref(BlockQ4_1::slice(row), &x),
        GgmlType::Q5_0 => vec_dot_q5_0_ref(BlockQ5_0::slice(row), &x),
        GgmlType::Q5_1 => vec_dot_q5_1_ref(BlockQ5_1::slice(row), &x),
        GgmlType::Q8_0 => vec_dot_q8_0_ref(BlockQ8_0::slice(row), &x),
        GgmlType::Q4_K => vec_dot_q4_k_ref(BlockQ4K::slice(row), &x),
        GgmlType::Q5_K => vec_dot_q5_k_ref(BlockQ5K::slice(row), &x),
        GgmlType::Q6_K => vec_dot_q6_k_ref(BlockQ6K::slice(row), &x),
        other => panic!("no kernel for weight type {other}"),
    }
}

pub fn dot_f16(k: &[u16], q: &[f32]) -> f32 {
    k.iter().zip(q).map(|(a, b)| f16_to_f32(*a) * b).sum()
}

pub fn axpy_f16(a: f32, v: &[u16], out: &mut [f32]) {
    for (o, h) in out.iter_mut().zip(v) {
        *o += a * f16_to_f32(*h);
    }
}

// ---------------------------------------------------------------------------------------------
// Element-wise math with ggml's x86 arithmetic, so the forward pass tracks llama.cpp bit for bit.

const EXP_SHIFT: f32 = 12582912.0; // 1.5 · 2^23: adding it rounds to an integer
const LOG2E: f32 = f32::from_bits(0x3fb8_aa3b);
const LN2_HI: f32 = f32::from_bits(0x3f31_7200);
const LN2_LO: f32 = f32::from_bits(0x35bf_be8e);
const EXP_C: [f32; 5] = [
    f32::from_bits(0x3f7f_fff6), // b
    f32::from_bits(0x3eff_fedb), // b²
    f32::from_bits(0x3e2a_af33), // b³
    f32::from_bits(0x3d2b_9f17), // b⁴
    f32::from_bits(0x3c07_2010), // b⁵
];

/// `x · 2^n` for an integral `n` with a single rounding (what AVX-512 `scalef` does).
#[inline]
pub fn scalef(x: f32, n: f32) -> f32 {
    let n = n as i32;
    let p2 = |e: i32| f32::from_bits(((e + 127) as u32) << 23);
    if (-126..=127).contains(&n) {
        x * p2(n)
    } else if n > 127 {
        (x * p2(n - 64)) * p2(64)
    } else {
        (x * p2(n + 64)) * p2(-64)
    }
}

/// e^x the way ggml's AVX-512 `ggml_v_expf` computes it: `n = round(x·log2 e)`, a reduced
/// argument `b = x − n·ln2` (two-part ln2), a degree-5 polynomial, then `scalef` by `n`; |n| > 192
/// saturates to 0 or +∞.
#[inline]
pub fn expf_ggml(x: f32) -> f32 {
    let z = x.mul_add(LOG2E, EXP_SHIFT);
    let n = z - EXP_SHIFT;
    let b = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    let u = b * b;
    let hi = EXP_C[4]
        .mul_add(b, EXP_C[3])
        .mul_add(u, EXP_C[2].mul_add(b, EXP_C[1]));
    let j = hi.mul_add(u, EXP_C[0].mul_add(b, 1.0));
    scalef(j, n)
}

/// gate = silu(gate) · up, silu(x) = x / (1 + e^−x); ggml vectorizes by 16 and uses libm's expf
/// for the tail, and so do we.
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    let n = gate.len().min(up.len());
    let body = n - n % 16;
    for (g, &u) in gate[..body].iter_mut().zip(up) {
        *g = *g / (1.0 + expf_ggml(-*g)) * u;
    }
    swiglu_tail(&mut gate[body..n], &up[body..n]);
}

/// The part of a row past its last multiple of 16: libm's expf.
pub fn swiglu_tail(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// Σ k[i]·q[i] for f16 keys and f16-valued queries, in ggml's order: 64 lanes (4 accumulators
/// × 16) over steps of 64 with fma, reduced pairwise, then the tail in f64.
pub fn dot_f16_f16(k: &[u16], q: &[f32]) -> f32 {
    let n = k.len().min(q.len());
    let body = n - n % 64;
    let mut acc = [0.0f32; 64];
    for i in (0..body).step_by(64) {
        for (l, a) in acc.iter_mut().enumerate() {
            *a = f16_to_f32(k[i + l]).mul_add(q[i + l], *a);
        }
    }
    let mut sum = reduce64(&acc) as f64;
    for i in body..n {
        sum += (f16_to_f32(k[i]) * q[i]) as f64;
    }
    sum as f32
}

/// ggml's AVX-512 reduction of four 16-lane accumulators: `x0+x2`, `x1+x3`, their sum, then the
/// 16 lanes by halves (8, 4), then `(t0+t2) + (t1+t3)`.
pub fn reduce64(acc: &[f32; 64]) -> f32 {
    let mut x = [0.0f32; 16];
    for l in 0..16 {
        x[l] = (acc[l] + acc[32 + l]) + (acc[16 + l] + acc[48 + l]);
    }
    let mut t8 = [0.0f32; 8];
    for i in 0..8 {
        t8[i] = x[i + 8] + x[i];
    }
    let mut t4 = [0.0f32; 4];
    for i in 0..4 {
        t4[i] = t8[i + 4] + t8[i];
    }
    (t4[0] + t4[2]) + (t4[1] + t4[3])
}

/// y = f16(fma(x, a, y)), element-wise on f16 storage.
pub fn mad_f16(y: &mut [u16], x: &[u16], a: f32) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = f32_to_f16(f16_to_f32(x).mul_add(a, f16_to_f32(*y)));
    }
}

/// y = f16(y · a).
pub fn scale_f16(y: &mut [u16], a: f32) {
    for y in y.iter_mut() {
        *y = f32_to_f16(f16_to_f32(*y) * a);
    }
}

/// `dst[i] = f32_to_f16(src[i])` over the common length.
pub fn f32_to_f16_slice(dst: &mut [u16], src: &[f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = f32_to_f16(s);
    }
}

/// `dst[i] = f16_to_f32(src[i]) · mul` over the common length.
pub fn f16_to_f32_slice(dst: &mut [f32], src: &[u16], mul: f32) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = f16_to_f32(s) * mul;
    }
}

/// Online-softmax attention of one f16 query head (`q16`, f16-exact values) over `n_pos` cached
/// positions, position `p`'s key at `k[p*stride..]` and value at `v[p*stride..]`, with ggml's
/// flash-attention arithmetic: score = dot·scale; a new maximum rescales the f16 accumulator
/// `acc` by `exp(m_old − m)`, otherwise the value is weighted by `exp(score − m)`; each value is
/// added with `mad_f16`. Returns the softmax denominator.
pub fn attend_f16(
    k: &[u16],
    v: &[u16],
    stride: usize,
    n_pos: usize,
    q16: &[f32],
    scale: f32,
    acc: &mut [u16],
) -> f32 {
    let hd = q16.len();
    let (mut m, mut s) = (f32::NEG_INFINITY, 0.0f32);
    for p in 0..n_pos {
        let at = p * stride;
        let score = dot_f16_f16(&k[at..at + hd], q16) * scale;
        let (mut ms, mut vs) = (1.0f32, 1.0f32);
        if score > m {
            ms = (m - score).exp();
            m = score;
            scale_f16(acc, ms);
        } else {
            vs = (score - m).exp();
        }
        mad_f16(acc, &v[at..at + hd], vs);
        s = s.mul_add(ms, vs);
    }
    s
}
