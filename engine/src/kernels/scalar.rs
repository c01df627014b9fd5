// The portable reference path: every weight type's rows kernel as a loop of the scalar
// `vec_dot_*_ref` dots from `blocks`, plus scalar f16 attention helpers. SIMD paths are tested
// against this file.

use super::act::Acts;
use super::blocks::*;
use super::{f16_to_f32, float_ty};
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
