// aarch64 Advanced SIMD kernels, with and without the dot-product extension (`sdot`): the same
// lane arithmetic as `blocks` (eight i32 lanes of 4-element groups, f32 lanes accumulated with
// fused multiply-adds in block order), so results equal the scalar and x86 paths bit for bit.
// Float weights use the scalar kernel.

use super::act::{ActRow, Acts};
use super::blocks::*;
use crate::gguf::GgmlType;
use std::arch::aarch64::*;
use std::arch::asm;

/// Tokens per prefill tile.
const TILE: usize = 4;

/// NEON rows kernel without `sdot` (see [`super::RowsFn`]).
///
/// # Safety
/// `out[t*stride + i]` writable for `t < a.n`, `i < nrows` (NEON is baseline on aarch64).
pub unsafe fn rows(ty: GgmlType, w: &[u8], nrows: usize, a: &Acts, out: *mut f32, stride: usize) {
    // SAFETY: forwarded contract.
    unsafe { rows_any::<false>(ty, w, nrows, a, out, stride) }
}

/// NEON rows kernel with `sdot`.
///
/// # Safety
/// As [`rows`], and the CPU must have the dot-product extension.
pub unsafe fn rows_dot(
    ty: GgmlType,
    w: &[u8],
    nrows: usize,
    a: &Acts,
    out: *mut f32,
    stride: usize,
) {
    // SAFETY: forwarded contract.
    unsafe { rows_any::<true>(ty, w, nrows, a, out, stride) }
}

unsafe fn rows_any<const DOT: bool>(
    ty: GgmlType,
    w: &[u8],
    nrows: usize,
    a: &Acts,
    out: *mut f32,
    stride: usize,
) {
    // SAFETY: forwarded contract; `DOT` only when the caller checked the feature.
    unsafe {
        match ty {
            GgmlType::Q4_0 => rows_t::<BlockQ4_0>(
                w,
                nrows,
                a,
                out,
                stride,
                dot_q4_0::<1, DOT>,
                dot_q4_0::<TILE, DOT>,
            ),
            GgmlType::Q4_1 => rows_t::<BlockQ4_1>(
                w,
                nrows,
                a,
                out,
                stride,
                dot_q4_1::<1, DOT>,
                dot_q4_1::<TILE, DOT>,
            ),
            GgmlType::Q5_0 => rows_t::<BlockQ5_0>(
                w,
                nrows,
                a,
                out,
                stride,
                dot_q5_0::<1, DOT>,
                dot_q5_0::<TILE, DOT>,
            ),
            GgmlType::Q5_1 => rows_t::<BlockQ5_1>(
                w,
                nrows,
                a,
                out,
                stride,
                dot_q5_1::<1, DOT>,
                dot_q5_1::<TILE, DOT>,
            ),
            GgmlType::Q8_0 => rows_t::<BlockQ8_0>(
                w,
                nrows,
                a,
                out,
                stride,
                dot_q8_0::<1, DOT>,
                dot_q8_0::<TILE, DOT>,
            ),
            GgmlType::Q4_K => rows_t::<BlockQ4K>(
                w,
                nrows,
                a,
                out,
                stride,
                dot_q4_k::<1, DOT>,
                dot_q4_k::<TILE, DOT>,
            ),
            GgmlType::Q5_K => rows_t::<BlockQ5K>(
                w,
                nrows,
                a,
                out,
                stride,
                dot_q5_k::<1, DOT>,
                dot_q5_k::<TILE, DOT>,
            ),
            GgmlType::Q6_K => rows_t::<BlockQ6K>(
                w,
                nrows,
                a,
                out,
                stride,
                dot_q6_k::<1, DOT>,
                dot_q6_k::<TILE, DOT>,
            ),
            other => super::scalar::rows(other, w, nrows, a, out, stride),
        }
    }
}

type DotFn<B, const T: usize> = super::RowDotFn<B, T>;

/// Rows outer; tokens in tiles of [`TILE`] sharing each unpacked block.
unsafe fn rows_t<B: Block>(
    w: &[u8],
    nrows: usize,
    a: &Acts,
    out: *mut f32,
    stride: usize,
    dot1: DotFn<B, 1>,
    dott: DotFn<B, TILE>,
) {
    // SAFETY: the caller's contract.
    unsafe { super::rows_tiled::<B, TILE>(w, nrows, a, out, stride, dot1, dott, |_| {}) }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// `sdot`: acc[k] += Σ_{i<4} a[4k+i]·b[4k+i]. Written as assembly with the extension enabled
/// for this one instruction, so it inlines into kernels that are only reached after the runtime
/// check (the non-dot kernels never execute it).
#[inline(always)]
unsafe fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut r = acc;
    // SAFETY: a register-only instruction; callers run only on CPUs with `dotprod`.
    unsafe {
        asm!(".arch_extension dotprod",
             "sdot {r:v}.4s, {a:v}.16b, {b:v}.16b", r = inout(vreg) r, a = in(vreg) a, b = in(vreg) b,
             options(pure, nomem, nostack, preserves_flags));
    }
    r
}

/// Lane sums of 16 bytes: lane k = Σ_{i<4} w[4k+i]·x[4k+i] (|products| < 2¹⁵).
#[inline(always)]
unsafe fn lanes16<const DOT: bool>(w: int8x16_t, x: int8x16_t) -> int32x4_t {
    // SAFETY: NEON is baseline; `DOT` only in kernels whose caller checked `dotprod`.
    unsafe {
        if DOT {
            sdot(vdupq_n_s32(0), w, x)
        } else {
            let lo = vpaddlq_s16(vmull_s8(vget_low_s8(w), vget_low_s8(x)));
            let hi = vpaddlq_s16(vmull_high_s8(w, x));
            vpaddq_s32(lo, hi)
        }
    }
}

/// The eight lanes of one 32-element group.
#[inline(always)]
unsafe fn lanes32<const DOT: bool>(w: [int8x16_t; 2], x: *const i8) -> [int32x4_t; 2] {
    // SAFETY: `x` points at 32 readable codes.
    unsafe {
        [
            lanes16::<DOT>(w[0], vld1q_s8(x)),
            lanes16::<DOT>(w[1], vld1q_s8(x.add(16))),
        ]
    }
}

/// `acc[k] = fma(d, lanes[k], acc[k])`.
#[inline(always)]
unsafe fn fma8(acc: &mut [float32x4_t; 2], d: f32, l: [int32x4_t; 2]) {
    // SAFETY: register ops.
    unsafe {
        let dv = vdupq_n_f32(d);
        acc[0] = vfmaq_f32(acc[0], vcvtq_f32_s32(l[0]), dv);
        acc[1] = vfmaq_f32(acc[1], vcvtq_f32_s32(l[1]), dv);
    }
}

/// ggml's x86 8-lane reduction, `((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7))`.
#[inline(always)]
unsafe fn hsum8(acc: [float32x4_t; 2]) -> f32 {
    // SAFETY: register ops.
    unsafe {
        let s = vaddq_f32(acc[0], acc[1]);
        let t = vadd_f32(vget_low_f32(s), vget_high_f32(s));
        vget_lane_f32::<0>(t) + vget_lane_f32::<1>(t)
    }
}

#[inline(always)]
fn f16v(b: [u8; 2]) -> f32 {
    super::f16_to_f32(u16::from_le_bytes(b))
}

/// Nibbles → (elements 0..16, 16..32) as unsigned bytes.
#[inline(always)]
unsafe fn nibbles(qs: &[u8; 16]) -> [int8x16_t; 2] {
    // SAFETY: 16 readable bytes.
    unsafe {
        let v = vld1q_u8(qs.as_ptr());
        [
            vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(15))),
            vreinterpretq_s8_u8(vshrq_n_u8::<4>(v)),
        ]
    }
}

/// Eight bits → eight bytes, 16 where the bit is set.
const BIT16: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut b = 0;
        while b < 8 {
            if i & (1 << b) != 0 {
                t[i] |= 16u64 << (8 * b);
            }
            b += 1;
        }
        i += 1;
    }
    t
};

/// The fifth bits of a Q5 block as (elements 0..16, 16..32), 16 where set.
#[inline(always)]
unsafe fn fifth_bits(qh: [u8; 4]) -> [int8x16_t; 2] {
    let t = |b: u8| BIT16[b as usize];
    // SAFETY: register construction.
    unsafe {
        [
            vreinterpretq_s8_u64(vcombine_u64(vcreate_u64(t(qh[0])), vcreate_u64(t(qh[1])))),
            vreinterpretq_s8_u64(vcombine_u64(vcreate_u64(t(qh[2])), vcreate_u64(t(qh[3])))),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// 32-element formats.

#[inline(always)]
unsafe fn dot_family<B, const T: usize, const DOT: bool, const MIN: bool>(
    bs: &[B],
    xs: &[ActRow; T],
    dm: impl Fn(&B) -> ([u8; 2], [u8; 2]),
    codes: impl Fn(&B) -> [int8x16_t; 2],
) -> [f32; T] {
    // SAFETY: activation rows hold 32 codes per block.
    unsafe {
        let mut acc = [[vdupq_n_f32(0.0); 2]; T];
        let mut mins = [0.0f32; T];
        for (i, b) in bs.iter().enumerate() {
            let w = codes(b);
            let (d, m) = dm(b);
            let (dw, mw) = (f16v(d), f16v(m));
            for t in 0..T {
                let l = lanes32::<DOT>(w, xs[t].qs.as_ptr().add(i * QK));
                fma8(&mut acc[t], dw * *xs[t].d.get_unchecked(i), l);
                if MIN {
                    mins[t] = mw.mul_add(*xs[t].s.get_unchecked(i), mins[t]);
                }
            }
        }
        std::array::from_fn(|t| {
            if MIN {
                hsum8(acc[t]) + mins[t]
            } else {
                hsum8(acc[t])
            }
        })
    }
}

const NO_M: [u8; 2] = [0, 0];

unsafe fn dot_q4_0<const T: usize, const DOT: bool>(
    bs: &[BlockQ4_0],
    xs: &[ActRow; T],
) -> [f32; T] {
    // SAFETY: see `dot_family`.
    unsafe {
        dot_family::<_, T, DOT, false>(
            bs,
            xs,
            |b| (b.d, NO_M),
            |b| {
                let [lo, hi] = nibbles(&b.qs);
                let eight = vdupq_n_s8(8);
                [vsubq_s8(lo, eight), vsubq_s8(hi, eight)]
            },
        )
    }
}

unsafe fn dot_q4_1<const T: usize, const DOT: bool>(
    bs: &[BlockQ4_1],
    xs: &[ActRow; T],
) -> [f32; T] {
    // SAFETY: see `dot_family`.
    unsafe { dot_family::<_, T, DOT, true>(bs, xs, |b| (b.d, b.m), |b| nibbles(&b.qs)) }
}

unsafe fn dot_q5_0<const T: usize, const DOT: bool>(
    bs: &[BlockQ5_0],
    xs: &[ActRow; T],
) -> [f32; T] {
    // SAFETY: see `dot_family`.
    unsafe {
        dot_family::<_, T, DOT, false>(
            bs,
            xs,
            |b| (b.d, NO_M),
            |b| {
                let [lo, hi] = nibbles(&b.qs);
                let [h0, h1] = fifth_bits(b.qh);
                let sixteen = vdupq_n_s8(16);
                [
                    vsubq_s8(vorrq_s8(lo, h0), sixteen),
                    vsubq_s8(vorrq_s8(hi, h1), sixteen),
                ]
            },
        )
    }
}

unsafe fn dot_q5_1<const T: usize, const DOT: bool>(
    bs: &[BlockQ5_1],
    xs: &[ActRow; T],
) -> [f32; T] {
    // SAFETY: see `dot_family`.
    unsafe {
        dot_family::<_, T, DOT, true>(
            bs,
            xs,
            |b| (b.d, b.m),
            |b| {
                let [lo, hi] = nibbles(&b.qs);
                let [h0, h1] = fifth_bits(b.qh);
                [vorrq_s8(lo, h0), vorrq_s8(hi, h1)]
            },
        )
    }
}

unsafe fn dot_q8_0<const T: usize, const DOT: bool>(
    bs: &[BlockQ8_0],
    xs: &[ActRow; T],
) -> [f32; T] {
    // SAFETY: see `dot_family`; `qs` is 32 bytes.
    unsafe {
        dot_family::<_, T, DOT, false>(
            bs,
            xs,
            |b| (b.d, NO_M),
            |b| [vld1q_s8(b.qs.as_ptr()), vld1q_s8(b.qs.as_ptr().add(16))],
        )
    }
}

// ---------------------------------------------------------------------------------------------
// K-quants (against Q8_K). Codes come from the blocks' scalar unpacking; the lane arithmetic is
// SIMD.

/// Σ_j scale(j) · lanes(sub-block j of `sub` elements) for one super-block.
#[inline(always)]
unsafe fn k_lanes<const DOT: bool>(
    q: &[i8; QK_K],
    x: *const i8,
    scale: impl Fn(usize) -> i32,
) -> [int32x4_t; 2] {
    // SAFETY: `x` points at 256 codes.
    unsafe {
        let mut s = [vdupq_n_s32(0); 2];
        for g in 0..8 {
            let w = [
                vld1q_s8(q.as_ptr().add(32 * g)),
                vld1q_s8(q.as_ptr().add(32 * g + 16)),
            ];
            let l = lanes32::<DOT>(w, x.add(32 * g));
            // Q4_K/Q5_K: one scale per group; Q6_K: one per 16-element half.
            s[0] = vmlaq_n_s32(s[0], l[0], scale(2 * g));
            s[1] = vmlaq_n_s32(s[1], l[1], scale(2 * g + 1));
        }
        s
    }
}

/// Min lanes `m_{2i}·bs_{2i} + m_{2i+1}·bs_{2i+1}` (bs per 32 elements).
#[inline(always)]
fn k_min_lanes(scales: &[u8; 12], bsums: &[i16]) -> [i32; 4] {
    let mut m = [0i32; 4];
    for j in 0..8 {
        let (_, mn) = k_scale_min(j, scales);
        m[j / 2] += mn as i32 * (bsums[2 * j] as i32 + bsums[2 * j + 1] as i32);
    }
    m
}

unsafe fn dot_q4_k<const T: usize, const DOT: bool>(bs: &[BlockQ4K], xs: &[ActRow; T]) -> [f32; T] {
    // SAFETY: activation rows hold 256 codes and 16 sums per super-block.
    unsafe {
        let mut acc = [[vdupq_n_f32(0.0); 2]; T];
        let mut accm = [vdupq_n_f32(0.0); T];
        for (i, b) in bs.iter().enumerate() {
            let q = b.codes();
            let sc: [i32; 8] = std::array::from_fn(|j| k_scale_min(j, &b.scales).0 as i32);
            let (dw, mw) = (f16v(b.d), f16v(b.dmin));
            for t in 0..T {
                let l = k_lanes::<DOT>(&q, xs[t].qs.as_ptr().add(i * QK_K), |h| sc[h / 2]);
                let dx = *xs[t].d.get_unchecked(i);
                fma8(&mut acc[t], dx * dw, l);
                let m = k_min_lanes(&b.scales, &xs[t].bsums[16 * i..16 * (i + 1)]);
                let mv = vcvtq_f32_s32(vld1q_s32(m.as_ptr()));
                accm[t] = vfmaq_f32(accm[t], mv, vdupq_n_f32(-dx * mw));
            }
        }
        std::array::from_fn(|t| {
            let m = accm[t];
            let s = vadd_f32(vget_low_f32(m), vget_high_f32(m));
            hsum8(acc[t]) + (vget_lane_f32::<0>(s) + vget_lane_f32::<1>(s))
        })
    }
}

unsafe fn dot_q5_k<const T: usize, const DOT: bool>(bs: &[BlockQ5K], xs: &[ActRow; T]) -> [f32; T] {
    // SAFETY: as in `dot_q4_k`.
    unsafe {
        let mut acc = [[vdupq_n_f32(0.0); 2]; T];
        let mut mins = [0.0f32; T];
        for (i, b) in bs.iter().enumerate() {
            let q = b.codes();
            let sc: [i32; 8] = std::array::from_fn(|j| k_scale_min(j, &b.scales).0 as i32);
            let (dw, mw) = (f16v(b.d), f16v(b.dmin));
            for t in 0..T {
                let l = k_lanes::<DOT>(&q, xs[t].qs.as_ptr().add(i * QK_K), |h| sc[h / 2]);
                let dx = *xs[t].d.get_unchecked(i);
                fma8(&mut acc[t], dx * dw, l);
                let m = k_min_lanes(&b.scales, &xs[t].bsums[16 * i..16 * (i + 1)]);
                mins[t] = (-dx * mw).mul_add(m.iter().sum::<i32>() as f32, mins[t]);
            }
        }
        std::array::from_fn(|t| hsum8(acc[t]) + mins[t])
    }
}

unsafe fn dot_q6_k<const T: usize, const DOT: bool>(bs: &[BlockQ6K], xs: &[ActRow; T]) -> [f32; T] {
    // SAFETY: as in `dot_q4_k`.
    unsafe {
        let mut acc = [[vdupq_n_f32(0.0); 2]; T];
        for (i, b) in bs.iter().enumerate() {
            // Unsigned codes 0..64; the −32 comes back per lane through the block sums.
            let mut q = b.codes();
            for c in q.iter_mut() {
                *c += 32;
            }
            let dw = f16v(b.d);
            for t in 0..T {
                let mut l =
                    k_lanes::<DOT>(&q, xs[t].qs.as_ptr().add(i * QK_K), |h| b.scales[h] as i32);
                let bsums = &xs[t].bsums[16 * i..16 * (i + 1)];
                let corr: [i32; 8] = std::array::from_fn(|k| {
                    32 * (b.scales[2 * k] as i32 * bsums[2 * k] as i32
                        + b.scales[2 * k + 1] as i32 * bsums[2 * k + 1] as i32)
                });
                l[0] = vsubq_s32(l[0], vld1q_s32(corr.as_ptr()));
                l[1] = vsubq_s32(l[1], vld1q_s32(corr.as_ptr().add(4)));
                fma8(&mut acc[t], *xs[t].d.get_unchecked(i) * dw, l);
            }
        }
        std::array::from_fn(|t| hsum8(acc[t]))
    }
}
