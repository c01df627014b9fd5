// x86-64 AVX-512 (F/BW/VL + VNNI) kernels. 32-element formats: two blocks per 512-bit register
// and `vpdpbusd` for the integer part. K-quant prefill tiles: 64 codes per register and
// `vpdpwssd` folding the sub-block scales in. The f32 lane accumulation is kept exactly as in
// `blocks` (so results equal the scalar path bit for bit). Other cases use the AVX2 kernels.

use super::act::{ActRow, Acts};
use super::avx2::{q4_k_total, q6_k_step, KScales};
use super::blocks::*;
use super::PREFETCH;
use crate::gguf::GgmlType;
use std::arch::x86_64::*;

/// Tokens per prefill tile.
const TILE: usize = 8;
/// Tokens per K-quant prefill tile (batches smaller than this, decode among them, take the AVX2
/// K-quant kernels).
const KTILE: usize = 8;

/// AVX-512 rows kernel (see [`super::RowsFn`]).
///
/// # Safety
/// The CPU must have AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C; `out[t*stride + i]` writable for
/// `t < a.n`, `i < nrows`.
pub unsafe fn rows(ty: GgmlType, w: &[u8], nrows: usize, a: &Acts, out: *mut f32, stride: usize) {
    // SAFETY: forwarded contract.
    unsafe {
        match ty {
            GgmlType::Q4_0 => rows_t::<BlockQ4_0>(
                w,
                nrows,
                a,
                out,
                stride,
                dot_q4_0::<1, 1>,
                dot_q4_0::<2, 1>,
                dot_q4_0::<2, TILE>,
            ),
            GgmlType::Q4_1 => rows_t::<BlockQ4_1>(
                w,
                nrows,
                a,
                out,
                stride,
                dot_q4_1::<1, 1>,
                dot_q4_1::<2, 1>,
                dot_q4_1::<2, TILE>,
            ),
            GgmlType::Q5_0 => rows_t::<BlockQ5_0>(
                w,
                nrows,
                a,
                out,
                stride,
                dot_q5_0::<1, 1>,
                dot_q5_0::<2, 1>,
                dot_q5_0::<2, TILE>,
            ),
            GgmlType::Q5_1 => rows_t::<BlockQ5_1>(
                w,
                nrows,
                a,
                out,
                stride,
                dot_q5_1::<1, 1>,
                dot_q5_1::<2, 1>,
                dot_q5_1::<2, TILE>,
            ),
            GgmlType::Q8_0 => rows_t::<BlockQ8_0>(
                w,
                nrows,
                a,
                out,
                stride,
                dot_q8_0::<1, 1>,
                dot_q8_0::<2, 1>,
                dot_q8_0::<2, TILE>,
            ),
            GgmlType::Q4_K if a.n >= KTILE => {
                rows_k::<BlockQ4K>(w, nrows, a, out, stride, dot_q4_k::<1>, dot_q4_k::<KTILE>)
            }
            GgmlType::Q5_K if a.n >= KTILE => {
                rows_k::<BlockQ5K>(w, nrows, a, out, stride, dot_q5_k::<1>, dot_q5_k::<KTILE>)
            }
            GgmlType::Q6_K if a.n >= KTILE => {
                rows_k::<BlockQ6K>(w, nrows, a, out, stride, dot_q6_k::<1>, dot_q6_k::<KTILE>)
            }
            other => super::avx2::rows(other, w, nrows, a, out, stride),
        }
    }
}

/// K-quant prefill: one row at a time against tiles of [`KTILE`] tokens (see `rows_tiled`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn rows_k<B: Block>(
    w: &[u8],
    nrows: usize,
    a: &Acts,
    out: *mut f32,
    stride: usize,
    dot1: super::RowDotFn<B, 1>,
    dott: super::RowDotFn<B, KTILE>,
) {
    // SAFETY: features enabled on this function; the rest is the caller's contract. Weights
    // are reused by every token tile, so they come from cache: no software prefetch.
    unsafe { super::rows_tiled::<B, KTILE>(w, nrows, a, out, stride, dot1, dott, |_| {}) }
}

/// `R` rows against `T` tokens.
type DotFn<B, const R: usize, const T: usize> = unsafe fn([&[B]; R], &[ActRow; T]) -> [[f32; T]; R];

/// Rows in pairs (two independent accumulation chains, shared activation loads); tokens in
/// tiles of [`TILE`] sharing each unpacked block pair, the rest one at a time.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn rows_t<B: Block>(
    w: &[u8],
    nrows: usize,
    a: &Acts,
    out: *mut f32,
    stride: usize,
    dot11: DotFn<B, 1, 1>,
    dot21: DotFn<B, 2, 1>,
    dot2t: DotFn<B, 2, TILE>,
) {
    let rb = w.len() / nrows.max(1);
    let row = |r: usize| B::slice(&w[r * rb..(r + 1) * rb]);
    let mut xs = [ActRow::EMPTY; 64];
    for t0 in (0..a.n).step_by(xs.len()) {
        let nt = (a.n - t0).min(xs.len());
        for (i, x) in xs[..nt].iter_mut().enumerate() {
            *x = a.row(t0 + i);
        }
        // SAFETY (all writes below): `t0 + t < a.n` and `r < nrows`, per the caller's contract.
        let put = |t: usize, r: usize, v: f32| unsafe { *out.add((t0 + t) * stride + r) = v };
        let mut r = 0;
        while r + 2 <= nrows {
            let rows = [row(r), row(r + 1)];
            let mut t = 0;
            while t + TILE <= nt {
                let tile: &[ActRow; TILE] = xs[t..t + TILE].try_into().expect("tile");
                // SAFETY: features enabled on this function.
                let v = unsafe { dot2t(rows, tile) };
                for (i, (&a, &b)) in v[0].iter().zip(&v[1]).enumerate() {
                    put(t + i, r, a);
                    put(t + i, r + 1, b);
                }
                t += TILE;
            }
            while t < nt {
                // SAFETY: as above.
                let v = unsafe { dot21(rows, &[xs[t]]) };
                put(t, r, v[0][0]);
                put(t, r + 1, v[1][0]);
                t += 1;
            }
            r += 2;
        }
        if r < nrows {
            for (t, x) in xs[..nt].iter().enumerate() {
                // SAFETY: as above.
                put(t, r, unsafe { dot11([row(r)], &[*x]) }[0][0]);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers (inlined into the `target_feature` kernels below).

#[inline(always)]
unsafe fn f16s(b: [u8; 2]) -> f32 {
    // SAFETY: F16C available in every caller.
    unsafe {
        _mm_cvtss_f32(_mm_cvtph_ps(
            _mm_cvtsi32_si128(u16::from_le_bytes(b) as i32),
        ))
    }
}

/// Two blocks' nibbles (16 bytes each) → 64 bytes in element order: low nibbles of `p`, high
/// nibbles of `p`, low of `q`, high of `q`.
#[inline(always)]
unsafe fn nibbles2(p: *const u8, q: *const u8) -> __m512i {
    // SAFETY: `p`, `q` point at 16 readable bytes.
    unsafe {
        let y = _mm256_inserti128_si256::<1>(
            _mm256_castsi128_si256(_mm_loadu_si128(p.cast())),
            _mm_loadu_si128(q.cast()),
        );
        let v = _mm512_permutexvar_epi64(
            _mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3),
            _mm512_castsi256_si512(y),
        );
        let sh = _mm512_setr_epi64(
            0,
            0,
            0x0004_0004_0004_0004,
            0x0004_0004_0004_0004,
            0,
            0,
            0x0004_0004_0004_0004,
            0x0004_0004_0004_0004,
        );
        _mm512_and_si512(_mm512_srlv_epi16(v, sh), _mm512_set1_epi8(15))
    }
}

/// One block's nibbles → 32 bytes in element order.
#[inline(always)]
unsafe fn nibbles1(p: *const u8) -> __m256i {
    // SAFETY: `p` points at 16 readable bytes.
    unsafe {
        let x = _mm_loadu_si128(p.cast());
        let both = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(x), _mm_srli_epi16(x, 4));
        _mm256_and_si256(both, _mm256_set1_epi8(15))
    }
}

/// `fma(d[0..8], lanes 0..8, acc)` then `fma(d[8..16], lanes 8..16, acc)`: two blocks in block
/// order, each block's scale product spread over its half of `d`.
#[inline(always)]
unsafe fn fma_pair(acc: __m256, d: __m512, lanes: __m512i) -> __m256 {
    // SAFETY: register ops.
    unsafe {
        let f = _mm512_cvtepi32_ps(lanes);
        let hi = |v: __m512| _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
        let acc = _mm256_fmadd_ps(_mm512_castps512_ps256(d), _mm512_castps512_ps256(f), acc);
        _mm256_fmadd_ps(hi(d), hi(f), acc)
    }
}

/// ggml's 8-lane reduction.
#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    // SAFETY: register ops.
    unsafe {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }
}

/// Shared loop over `R` rows and `T` tokens. `w2(b0, b1)` / `w1(b)` give unsigned codes
/// `q + off` for two blocks / one block; `off` (0, 8, 16 or 128) is taken back out with a second
/// `vpdpbusd` against the activations; `dm(b)` gives the f16 scale and, for the
/// Q8_1-partnered formats, the min.
#[inline(always)]
unsafe fn dot_family<B, const R: usize, const T: usize, const OFF: i8, const MIN: bool>(
    rows: [&[B]; R],
    xs: &[ActRow; T],
    dm: impl Fn(&B) -> ([u8; 2], [u8; 2]),
    w2: impl Fn(&B, &B) -> __m512i,
    w1: impl Fn(&B) -> __m256i,
) -> [[f32; T]; R] {
    // SAFETY: AVX-512/VNNI/FMA/F16C in every caller; activation rows hold 32 codes per block;
    // all rows have the same number of blocks.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); T]; R];
        let mut mins = [[0.0f32; T]; R];
        let off = _mm512_set1_epi8(OFF);
        // Spread two scales over the halves of a register: [v[a] × 8, v[b] × 8].
        let spread_w = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
        let spread_x = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
        let nb = rows[0].len();
        let mut i = 0;
        while i + 2 <= nb {
            let mut w = [_mm512_setzero_si512(); R];
            let mut dw = [_mm512_setzero_ps(); R];
            let mut mw = [[0.0f32; 2]; R];
            for r in 0..R {
                let (b0, b1) = (&rows[r][i], &rows[r][i + 1]);
                // Weights stream from memory once; ask for them a little ahead (past the row
                // end is the next row).
                _mm_prefetch::<_MM_HINT_T0>((b0 as *const B).cast::<i8>().wrapping_add(PREFETCH));
                w[r] = w2(b0, b1);
                // Both blocks' f16 scale (and min) in one conversion: lanes d0, m0, d1, m1.
                let ((d0, m0), (d1, m1)) = (dm(b0), dm(b1));
                let bits = |d: [u8; 2], m: [u8; 2]| i32::from_le_bytes([d[0], d[1], m[0], m[1]]);
                let v = _mm_cvtph_ps(_mm_setr_epi32(bits(d0, m0), bits(d1, m1), 0, 0));
                dw[r] = _mm512_permutexvar_ps(spread_w, _mm512_castps128_ps512(v));
                if MIN {
                    let mut m = [0.0f32; 4];
                    _mm_storeu_ps(m.as_mut_ptr(), v);
                    mw[r] = [m[1], m[3]];
                }
            }
            for t in 0..T {
                let x = _mm512_loadu_si512(xs[t].qs.as_ptr().add(i * QK).cast());
                let corr = if OFF != 0 {
                    _mm512_dpbusd_epi32(_mm512_setzero_si512(), off, x)
                } else {
                    _mm512_setzero_si512()
                };
                let xd = xs[t].d.as_ptr().add(i);
                // [dx0 × 8, dx1 × 8]: with `dw`, both blocks' scale products in one multiply
                // (the same f32 products `dw · dx` as the scalar's).
                let dx2 = _mm_castpd_ps(_mm_load_sd(xd.cast()));
                let dx = _mm512_permutexvar_ps(spread_x, _mm512_castps128_ps512(dx2));
                for r in 0..R {
                    let mut lanes = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[r], x);
                    if OFF != 0 {
                        lanes = _mm512_sub_epi32(lanes, corr);
                    }
                    acc[r][t] = fma_pair(acc[r][t], _mm512_mul_ps(dw[r], dx), lanes);
                    if MIN {
                        let s = xs[t].s.as_ptr().add(i);
                        mins[r][t] = mw[r][0].mul_add(*s, mins[r][t]);
                        mins[r][t] = mw[r][1].mul_add(*s.add(1), mins[r][t]);
                    }
                }
            }
            i += 2;
        }
        if i < nb {
            let off = _mm256_set1_epi8(OFF);
            for r in 0..R {
                let b = &rows[r][i];
                let w = w1(b);
                let (d, m) = dm(b);
                let dw = f16s(d);
                for t in 0..T {
                    let x = _mm256_loadu_si256(xs[t].qs.as_ptr().add(i * QK).cast());
                    let mut lanes = _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, x);
                    if OFF != 0 {
                        lanes = _mm256_sub_epi32(
                            lanes,
                            _mm256_dpbusd_epi32(_mm256_setzero_si256(), off, x),
                        );
                    }
                    let s = _mm256_set1_ps(dw * *xs[t].d.get_unchecked(i));
                    acc[r][t] = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(lanes), acc[r][t]);
                    if MIN {
                        mins[r][t] = f16s(m).mul_add(*xs[t].s.get_unchecked(i), mins[r][t]);
                    }
                }
            }
        }
        std::array::from_fn(|r| {
            std::array::from_fn(|t| {
                if MIN {
                    hsum(acc[r][t]) + mins[r][t]
                } else {
                    hsum(acc[r][t])
                }
            })
        })
    }
}

/// Fifth bits of two Q5 blocks as a byte mask over the 64 elements.
#[inline(always)]
fn qh_mask(h0: [u8; 4], h1: [u8; 4]) -> u64 {
    u32::from_le_bytes(h0) as u64 | (u32::from_le_bytes(h1) as u64) << 32
}

const NO_M: [u8; 2] = [0, 0];

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn dot_q4_0<const R: usize, const T: usize>(
    bs: [&[BlockQ4_0]; R],
    xs: &[ActRow; T],
) -> [[f32; T]; R] {
    // SAFETY: features enabled here; `qs` is 16 bytes.
    unsafe {
        dot_family::<_, R, T, 8, false>(
            bs,
            xs,
            |b| (b.d, NO_M),
            |b0, b1| nibbles2(b0.qs.as_ptr(), b1.qs.as_ptr()),
            |b| nibbles1(b.qs.as_ptr()),
        )
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn dot_q4_1<const R: usize, const T: usize>(
    bs: [&[BlockQ4_1]; R],
    xs: &[ActRow; T],
) -> [[f32; T]; R] {
    // SAFETY: features enabled here; `qs` is 16 bytes.
    unsafe {
        dot_family::<_, R, T, 0, true>(
            bs,
            xs,
            |b| (b.d, b.m),
            |b0, b1| nibbles2(b0.qs.as_ptr(), b1.qs.as_ptr()),
            |b| nibbles1(b.qs.as_ptr()),
        )
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn dot_q5_0<const R: usize, const T: usize>(
    bs: [&[BlockQ5_0]; R],
    xs: &[ActRow; T],
) -> [[f32; T]; R] {
    // SAFETY: features enabled here.
    unsafe {
        let sixteen = _mm512_set1_epi8(16);
        dot_family::<_, R, T, 16, false>(
            bs,
            xs,
            |b| (b.d, NO_M),
            |b0, b1| {
                let q = nibbles2(b0.qs.as_ptr(), b1.qs.as_ptr());
                _mm512_mask_add_epi8(q, qh_mask(b0.qh, b1.qh), q, sixteen)
            },
            |b| {
                let q = nibbles1(b.qs.as_ptr());
                _mm256_mask_add_epi8(q, u32::from_le_bytes(b.qh), q, _mm256_set1_epi8(16))
            },
        )
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn dot_q5_1<const R: usize, const T: usize>(
    bs: [&[BlockQ5_1]; R],
    xs: &[ActRow; T],
) -> [[f32; T]; R] {
    // SAFETY: features enabled here.
    unsafe {
        let sixteen = _mm512_set1_epi8(16);
        dot_family::<_, R, T, 0, true>(
            bs,
            xs,
            |b| (b.d, b.m),
            |b0, b1| {
                let q = nibbles2(b0.qs.as_ptr(), b1.qs.as_ptr());
                _mm512_mask_add_epi8(q, qh_mask(b0.qh, b1.qh), q, sixteen)
            },
            |b| {
                let q = nibbles1(b.qs.as_ptr());
                _mm256_mask_add_epi8(q, u32::from_le_bytes(b.qh), q, _mm256_set1_epi8(16))
            },
        )
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn dot_q8_0<const R: usize, const T: usize>(
    bs: [&[BlockQ8_0]; R],
    xs: &[ActRow; T],
) -> [[f32; T]; R] {
    // SAFETY: features enabled here; `qs` is 32 bytes. Codes + 128 (a sign flip) are unsigned.
    unsafe {
        let flip = _mm512_set1_epi8(-128);
        dot_family::<_, R, T, -128, false>(
            bs,
            xs,
            |b| (b.d, NO_M),
            |b0, b1| {
                let lo = _mm256_loadu_si256(b0.qs.as_ptr().cast());
                let hi = _mm256_loadu_si256(b1.qs.as_ptr().cast());
                let v = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
                _mm512_xor_si512(v, flip)
            },
            |b| {
                _mm256_xor_si256(
                    _mm256_loadu_si256(b.qs.as_ptr().cast()),
                    _mm256_set1_epi8(-128),
                )
            },
        )
    }
}

// ---------------------------------------------------------------------------------------------
// K-quants (against Q8_K): 64 codes per register; `maddubs` pairs then `vpdpwssd` with the
// sub-block scale of each i16 pair; the two 256-bit halves are added before the f32 step, so
// lane k holds Σ_sub-blocks sc·(elements 4k..4k+3), as the AVX2 kernels and `blocks`.

/// Lanes 0..8 + lanes 8..16.
#[inline(always)]
unsafe fn fold(v: __m512i) -> __m256i {
    // SAFETY: register ops.
    unsafe { _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64::<1>(v)) }
}

/// i16 lanes 0..16 = `lo`, 16..32 = `hi` (sub-block scales, or per-half `srlv_epi16` counts).
#[inline(always)]
unsafe fn scale_pair(lo: u8, hi: u8) -> __m512i {
    // SAFETY: register ops.
    unsafe {
        _mm512_inserti64x4::<1>(
            _mm512_castsi256_si512(_mm256_set1_epi16(lo as i16)),
            _mm256_set1_epi16(hi as i16),
        )
    }
}

/// The 64 nibble codes of Q4_K/Q5_K chunk `c` (32 bytes at `qs`): low nibbles (sub-block 2c)
/// then high nibbles (2c + 1).
#[inline(always)]
unsafe fn k_nibbles(qs: *const u8) -> __m512i {
    // SAFETY: `qs` points at 32 readable bytes.
    unsafe {
        let y = _mm256_loadu_si256(qs.cast());
        let z = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(y), _mm256_srli_epi16(y, 4));
        _mm512_and_si512(z, _mm512_set1_epi8(15))
    }
}

/// `Σ_c dpwssd(maddubs(w(c), x_t(c)), scale(c))` over the 4 chunks of super-block `i`.
#[inline(always)]
unsafe fn k_sumi<const T: usize>(
    xs: &[ActRow; T],
    i: usize,
    w: impl Fn(usize) -> __m512i,
    sc: &[u8; 8],
) -> [__m512i; T] {
    // SAFETY: AVX-512 BW/VNNI in every caller; activations hold 256 codes per super-block.
    unsafe {
        let mut sumi = [_mm512_setzero_si512(); T];
        for c in 0..4 {
            let w = w(c);
            let s = scale_pair(sc[2 * c], sc[2 * c + 1]);
            for t in 0..T {
                let x = _mm512_loadu_si512(xs[t].qs.as_ptr().add(i * QK_K + 64 * c).cast());
                sumi[t] = _mm512_dpwssd_epi32(sumi[t], _mm512_maddubs_epi16(w, x), s);
            }
        }
        sumi
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn dot_q4_k<const T: usize>(bs: &[BlockQ4K], xs: &[ActRow; T]) -> [f32; T] {
    // SAFETY: features enabled here; activations hold 16 sums per super-block.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); T];
        let mut accm = [_mm_setzero_ps(); T];
        for (i, b) in bs.iter().enumerate() {
            let k = KScales::new(&b.scales, b.d, b.dmin);
            let sumi = k_sumi(xs, i, |c| k_nibbles(b.qs.as_ptr().add(32 * c)), &k.sc);
            for t in 0..T {
                k.q4_step(&mut acc[t], &mut accm[t], fold(sumi[t]), &xs[t], i);
            }
        }
        std::array::from_fn(|t| q4_k_total(acc[t], accm[t]))
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn dot_q5_k<const T: usize>(bs: &[BlockQ5K], xs: &[ActRow; T]) -> [f32; T] {
    // SAFETY: features enabled here; `qh` is 32 bytes.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); T];
        let mut mins = [0.0f32; T];
        let one = _mm512_set1_epi8(1);
        for (i, b) in bs.iter().enumerate() {
            let k = KScales::new(&b.scales, b.d, b.dmin);
            let qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(b.qh.as_ptr().cast()));
            let w = |c: usize| {
                // Bit 2c (lower half) / 2c + 1 (upper half) of each qh byte, moved to bit 4;
                // only bit 0 of each byte survives the mask, so 16-bit shifts do not leak.
                let n = scale_pair(2 * c as u8, 2 * c as u8 + 1);
                let h = _mm512_and_si512(_mm512_srlv_epi16(qh, n), one);
                _mm512_or_si512(
                    k_nibbles(b.qs.as_ptr().add(32 * c)),
                    _mm512_slli_epi16(h, 4),
                )
            };
            let sumi = k_sumi(xs, i, w, &k.sc);
            for t in 0..T {
                k.q5_step(&mut acc[t], &mut mins[t], fold(sumi[t]), &xs[t], i);
            }
        }
        std::array::from_fn(|t| hsum(acc[t]) + mins[t])
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn dot_q6_k<const T: usize>(bs: &[BlockQ6K], xs: &[ActRow; T]) -> [f32; T] {
    // SAFETY: features enabled here; block fields have the sizes read below.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); T];
        let m4 = _mm512_set1_epi8(15);
        let m3 = _mm512_set1_epi8(3);
        // Byte j of a 32-byte run picks scale j / 8 of four (the shuffle works per 128 bits;
        // the four scale bytes are in both halves).
        let spread = _mm256_setr_epi8(
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3,
            3, 3, 3,
        );
        let scales4 = |p: *const i8| {
            let v = _mm256_set1_epi32(i32::from_le_bytes(*p.cast::<[u8; 4]>()));
            _mm512_cvtepi8_epi16(_mm256_shuffle_epi8(v, spread))
        };
        for (i, b) in bs.iter().enumerate() {
            let mut sumi = [_mm512_setzero_si512(); T];
            for n in 0..2 {
                // Codes 0..64 (the −32 is applied through the block sums below): the 64
                // elements 128n..128n+64 (q01) and 128n+64..128n+128 (q23).
                let ql = _mm512_loadu_si512(b.ql.as_ptr().add(64 * n).cast());
                let qh =
                    _mm512_broadcast_i64x4(_mm256_loadu_si256(b.qh.as_ptr().add(32 * n).cast()));
                let h = |lo: u8, hi: u8| {
                    let n = scale_pair(lo, hi);
                    _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, n), m3), 4)
                };
                let q01 = _mm512_or_si512(_mm512_and_si512(ql, m4), h(0, 2));
                let q23 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4), h(4, 6));
                let s01 = scales4(b.scales.as_ptr().add(8 * n));
                let s23 = scales4(b.scales.as_ptr().add(8 * n + 4));
                for t in 0..T {
                    let x = xs[t].qs.as_ptr().add(i * QK_K + 128 * n);
                    let x01 = _mm512_loadu_si512(x.cast());
                    let x23 = _mm512_loadu_si512(x.add(64).cast());
                    sumi[t] = _mm512_dpwssd_epi32(sumi[t], _mm512_maddubs_epi16(q01, x01), s01);
                    sumi[t] = _mm512_dpwssd_epi32(sumi[t], _mm512_maddubs_epi16(q23, x23), s23);
                }
            }
            let sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(b.scales.as_ptr().cast()));
            let dw = f16s(b.d);
            for t in 0..T {
                q6_k_step(&mut acc[t], fold(sumi[t]), sc16, dw, &xs[t], i);
            }
        }
        acc.map(|v| hsum(v))
    }
}
