// x86-64 AVX2 + FMA + F16C kernels: one dot kernel per weight type, generic over how many tokens
// share each unpacked weight block (1 for decode, 4 for prefill tiles), the rows driver, the
// activation quantizers, attention and the f16 helpers. Same names and results as `scalar.rs`
// (bit for bit for the quantized types; f32/f16 weights up to f32 summation order).

use super::act::{ActRow, Acts};
use super::blocks::*;
use super::float_ty;
use super::PREFETCH;
use crate::gguf::GgmlType;
use std::arch::x86_64::*;

/// Tokens per prefill tile.
const TILE: usize = 4;

/// AVX2 rows kernel (see [`super::RowsFn`]).
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `out[t*stride + i]` writable for `t < a.n`, `i < nrows`.
pub unsafe fn rows(ty: GgmlType, w: &[u8], nrows: usize, a: &Acts, out: *mut f32, stride: usize) {
    // SAFETY: forwarded contract.
    unsafe {
        match ty {
            GgmlType::Q4_0 => {
                rows_t::<BlockQ4_0>(w, nrows, a, out, stride, dot_q4_0::<1>, dot_q4_0::<TILE>)
            }
            GgmlType::Q4_1 => {
                rows_t::<BlockQ4_1>(w, nrows, a, out, stride, dot_q4_1::<1>, dot_q4_1::<TILE>)
            }
            GgmlType::Q5_0 => {
                rows_t::<BlockQ5_0>(w, nrows, a, out, stride, dot_q5_0::<1>, dot_q5_0::<TILE>)
            }
            GgmlType::Q5_1 => {
                rows_t::<BlockQ5_1>(w, nrows, a, out, stride, dot_q5_1::<1>, dot_q5_1::<TILE>)
            }
            GgmlType::Q8_0 => {
                rows_t::<BlockQ8_0>(w, nrows, a, out, stride, dot_q8_0::<1>, dot_q8_0::<TILE>)
            }
            GgmlType::Q4_K => {
                rows_t::<BlockQ4K>(w, nrows, a, out, stride, dot_q4_k::<1>, dot_q4_k::<TILE>)
            }
            GgmlType::Q5_K => {
                rows_t::<BlockQ5K>(w, nrows, a, out, stride, dot_q5_k::<1>, dot_q5_k::<TILE>)
            }
            GgmlType::Q6_K => {
                rows_t::<BlockQ6K>(w, nrows, a, out, stride, dot_q6_k::<1>, dot_q6_k::<TILE>)
            }
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => {
                rows_float(float_ty(ty), w, nrows, a, out, stride)
            }
            other => super::scalar::rows(other, w, nrows, a, out, stride),
        }
    }
}

type DotFn<B, const T: usize> = super::RowDotFn<B, T>;

/// Rows outer; tokens in tiles of [`TILE`] sharing each unpacked block, then one at a time.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_t<B: Block>(
    w: &[u8],
    nrows: usize,
    a: &Acts,
    out: *mut f32,
    stride: usize,
    dot1: DotFn<B, 1>,
    dott: DotFn<B, TILE>,
) {
    let rb = w.len() / nrows.max(1);
    // Ask for the weights PREFETCH bytes past each row, one request per cache line (the hardware
    // prefetcher alone leaves decode latency-bound; see PREFETCH).
    let prefetch = |r: usize| {
        let base = w.as_ptr().wrapping_add(r * rb + PREFETCH);
        for line in (0..rb).step_by(64) {
            _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(line).cast());
        }
    };
    // SAFETY: features enabled on this function; the rest is the caller's contract.
    unsafe { super::rows_tiled::<B, TILE>(w, nrows, a, out, stride, dot1, dott, prefetch) }
}

// ---------------------------------------------------------------------------------------------
// Helpers. Plain `#[inline(always)]` functions: they are only called from `avx2,fma,f16c`
// functions, into which they inline.

#[inline(always)]
unsafe fn f16s(b: [u8; 2]) -> f32 {
    // SAFETY: F16C available in every caller.
    unsafe {
        _mm_cvtss_f32(_mm_cvtph_ps(
            _mm_cvtsi32_si128(u16::from_le_bytes(b) as i32),
        ))
    }
}

/// 16 bytes of nibbles → 32 bytes: low nibbles (elements 0..16) then high nibbles (16..32).
#[inline(always)]
unsafe fn nibbles(p: *const u8) -> __m256i {
    // SAFETY: `p` points at 16 readable bytes (a block's `qs`).
    unsafe {
        let x = _mm_loadu_si128(p.cast());
        let both = _mm256_set_m128i(_mm_srli_epi16(x, 4), x);
        _mm256_and_si256(both, _mm256_set1_epi8(15))
    }
}

/// 32 bits → 32 bytes, 0xFF where the bit is set.
#[inline(always)]
unsafe fn bits_to_bytes(bits: u32) -> __m256i {
    // SAFETY: plain register ops.
    unsafe {
        let v = _mm256_set1_epi32(bits as i32);
        // Byte j picks byte j/8 of `bits`.
        let sh = _mm256_setr_epi8(
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3,
            3, 3, 3,
        );
        let bytes = _mm256_shuffle_epi8(v, sh);
        // Keep bit j%8 of each byte.
        let sel = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
        _mm256_cmpeq_epi8(_mm256_and_si256(bytes, sel), sel)
    }
}

/// Unsigned × signed bytes, summed in groups of 4 into 8 i32 lanes (no overflow for |u| < 128).
#[inline(always)]
unsafe fn dot_us(u: __m256i, s: __m256i) -> __m256i {
    // SAFETY: register ops.
    unsafe { _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)) }
}

#[inline(always)]
unsafe fn load32(p: *const i8) -> __m256i {
    // SAFETY: caller passes 32 readable bytes.
    unsafe { _mm256_loadu_si256(p.cast()) }
}

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    // SAFETY: register ops.
    unsafe {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }
}

// ---------------------------------------------------------------------------------------------
// 32-element formats.

/// Shared loop of the Q8_0-partnered formats: `signed(block)` gives the 32 signed codes.
#[inline(always)]
unsafe fn dot_q8_0_family<B, const T: usize>(
    bs: &[B],
    xs: &[ActRow; T],
    d: impl Fn(&B) -> [u8; 2],
    signed: impl Fn(&B) -> __m256i,
) -> [f32; T] {
    // SAFETY: AVX2/FMA/F16C in every caller; activation rows hold 32 codes per block.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); T];
        for (i, b) in bs.iter().enumerate() {
            let w = signed(b);
            let aw = _mm256_sign_epi8(w, w);
            let dw = f16s(d(b));
            for t in 0..T {
                let x = load32(xs[t].qs.as_ptr().add(i * QK));
                let p = dot_us(aw, _mm256_sign_epi8(x, w));
                let s = _mm256_set1_ps(dw * *xs[t].d.get_unchecked(i));
                acc[t] = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(p), acc[t]);
            }
        }
        acc.map(|v| hsum(v))
    }
}

/// Shared loop of the Q8_1-partnered formats: `unsigned(block)` gives codes 0..32.
#[inline(always)]
unsafe fn dot_q8_1_family<B, const T: usize>(
    bs: &[B],
    xs: &[ActRow; T],
    dm: impl Fn(&B) -> ([u8; 2], [u8; 2]),
    unsigned: impl Fn(&B) -> __m256i,
) -> [f32; T] {
    // SAFETY: as in `dot_q8_0_family`.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); T];
        let mut mins = [0.0f32; T];
        for (i, b) in bs.iter().enumerate() {
            let w = unsigned(b);
            let (d, m) = dm(b);
            let (dw, mw) = (f16s(d), f16s(m));
            for t in 0..T {
                let x = load32(xs[t].qs.as_ptr().add(i * QK));
                let p = dot_us(w, x);
                let s = _mm256_set1_ps(dw * *xs[t].d.get_unchecked(i));
                acc[t] = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(p), acc[t]);
                mins[t] = mw.mul_add(*xs[t].s.get_unchecked(i), mins[t]);
            }
        }
        let mut r = [0.0; T];
        for t in 0..T {
            r[t] = hsum(acc[t]) + mins[t];
        }
        r
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q4_0<const T: usize>(bs: &[BlockQ4_0], xs: &[ActRow; T]) -> [f32; T] {
    // SAFETY: features enabled here; `qs` is 16 bytes.
    unsafe {
        dot_q8_0_family(
            bs,
            xs,
            |b| b.d,
            |b| _mm256_sub_epi8(nibbles(b.qs.as_ptr()), _mm256_set1_epi8(8)),
        )
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q5_0<const T: usize>(bs: &[BlockQ5_0], xs: &[ActRow; T]) -> [f32; T] {
    // SAFETY: as above. A clear fifth bit turns the nibble into nibble − 16 (0xF0 | nibble).
    unsafe {
        dot_q8_0_family(
            bs,
            xs,
            |b| b.d,
            |b| {
                let h = bits_to_bytes(u32::from_le_bytes(b.qh));
                _mm256_or_si256(
                    nibbles(b.qs.as_ptr()),
                    _mm256_andnot_si256(h, _mm256_set1_epi8(0xF0u8 as i8)),
                )
            },
        )
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q8_0<const T: usize>(bs: &[BlockQ8_0], xs: &[ActRow; T]) -> [f32; T] {
    // SAFETY: as above; `qs` is 32 bytes.
    unsafe { dot_q8_0_family(bs, xs, |b| b.d, |b| load32(b.qs.as_ptr())) }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q4_1<const T: usize>(bs: &[BlockQ4_1], xs: &[ActRow; T]) -> [f32; T] {
    // SAFETY: as above.
    unsafe { dot_q8_1_family(bs, xs, |b| (b.d, b.m), |b| nibbles(b.qs.as_ptr())) }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q5_1<const T: usize>(bs: &[BlockQ5_1], xs: &[ActRow; T]) -> [f32; T] {
    // SAFETY: as above.
    unsafe {
        dot_q8_1_family(
            bs,
            xs,
            |b| (b.d, b.m),
            |b| {
                let h = bits_to_bytes(u32::from_le_bytes(b.qh));
                _mm256_or_si256(
                    nibbles(b.qs.as_ptr()),
                    _mm256_and_si256(h, _mm256_set1_epi8(16)),
                )
            },
        )
    }
}

// ---------------------------------------------------------------------------------------------
// K-quants (against Q8_K).

/// A Q4_K/Q5_K super-block's scales, unpacked once and shared by every token, plus the f32
/// steps after the integer lane sums (ggml's arithmetic, shared by the AVX2 and AVX-512
/// kernels so the two keep the same float order).
pub(super) struct KScales {
    /// Sub-block scales.
    pub sc: [u8; 8],
    /// Sub-block mins.
    pub mn: [u8; 8],
    pub d: f32,
    pub dmin: f32,
}

impl KScales {
    /// # Safety
    /// The CPU has F16C.
    #[inline(always)]
    pub(super) unsafe fn new(scales: &[u8; 12], d: [u8; 2], dmin: [u8; 2]) -> KScales {
        let mut k = KScales {
            sc: [0; 8],
            mn: [0; 8],
            // SAFETY: F16C per the contract.
            d: unsafe { f16s(d) },
            // SAFETY: as above.
            dmin: unsafe { f16s(dmin) },
        };
        for j in 0..8 {
            (k.sc[j], k.mn[j]) = k_scale_min(j, scales);
        }
        k
    }

    /// Q4_K, super-block `i` of token `x`: `acc += (dx·d)·lanes`, `accm += (−dx·dmin)·(min
    /// lanes)` (4 lanes; see [`q4_k_total`]).
    ///
    /// # Safety
    /// The CPU has AVX2/FMA; `x` holds super-block `i`.
    #[inline(always)]
    pub(super) unsafe fn q4_step(
        &self,
        acc: &mut __m256,
        accm: &mut __m128,
        lanes: __m256i,
        x: &ActRow,
        i: usize,
    ) {
        // SAFETY: per the contract.
        unsafe {
            let dx = *x.d.get_unchecked(i);
            *acc = _mm256_fmadd_ps(_mm256_set1_ps(dx * self.d), _mm256_cvtepi32_ps(lanes), *acc);
            let prod = k_min_lanes(self.mn, x.bsums.as_ptr().add(16 * i));
            *accm = _mm_fmadd_ps(_mm_set1_ps(-dx * self.dmin), _mm_cvtepi32_ps(prod), *accm);
        }
    }

    /// Q5_K, super-block `i` of token `x`: `acc += (dx·d)·lanes`, and the min term as one
    /// scalar, `mins += (−dx·dmin)·Σ min lanes`.
    ///
    /// # Safety
    /// The CPU has AVX2/FMA; `x` holds super-block `i`.
    #[inline(always)]
    pub(super) unsafe fn q5_step(
        &self,
        acc: &mut __m256,
        mins: &mut f32,
        lanes: __m256i,
        x: &ActRow,
        i: usize,
    ) {
        // SAFETY: per the contract.
        unsafe {
            let dx = *x.d.get_unchecked(i);
            *acc = _mm256_fmadd_ps(_mm256_set1_ps(dx * self.d), _mm256_cvtepi32_ps(lanes), *acc);
            let prod = k_min_lanes(self.mn, x.bsums.as_ptr().add(16 * i));
            let m = _mm_add_epi32(prod, _mm_shuffle_epi32(prod, 0b01_00_11_10));
            let m = _mm_add_epi32(m, _mm_shuffle_epi32(m, 0b10_11_00_01));
            *mins = (-dx * self.dmin).mul_add(_mm_cvtsi128_si32(m) as f32, *mins);
        }
    }
}

/// Q4_K's result from its accumulators: `hsum(acc) + ((m0 + m2) + (m1 + m3))`.
///
/// # Safety
/// The CPU has AVX2.
#[inline(always)]
pub(super) unsafe fn q4_k_total(acc: __m256, accm: __m128) -> f32 {
    // SAFETY: register ops.
    unsafe {
        let m = _mm_add_ps(accm, _mm_movehl_ps(accm, accm));
        let m = _mm_add_ss(m, _mm_movehdup_ps(m));
        hsum(acc) + _mm_cvtss_f32(m)
    }
}

/// Q6_K, super-block `i` of token `x` with unsigned-code lane sums `sumi`: lane k loses
/// `32 · (sc_{2k}·bs_{2k} + sc_{2k+1}·bs_{2k+1})` (`sc16`: the 16 scales as i16), then
/// `acc += (dx·d)·lanes`.
///
/// # Safety
/// The CPU has AVX2/FMA; `x` holds super-block `i`.
#[inline(always)]
pub(super) unsafe fn q6_k_step(
    acc: &mut __m256,
    sumi: __m256i,
    sc16: __m256i,
    d: f32,
    x: &ActRow,
    i: usize,
) {
    // SAFETY: per the contract.
    unsafe {
        let bsums = _mm256_loadu_si256(x.bsums.as_ptr().add(16 * i).cast());
        let corr = _mm256_slli_epi32(_mm256_madd_epi16(bsums, sc16), 5);
        let lanes = _mm256_sub_epi32(sumi, corr);
        let dx = *x.d.get_unchecked(i);
        *acc = _mm256_fmadd_ps(_mm256_set1_ps(dx * d), _mm256_cvtepi32_ps(lanes), *acc);
    }
}

/// The four min lanes `m_{2i}·bs_{2i} + m_{2i+1}·bs_{2i+1}` (bs per 32 elements).
#[inline(always)]
unsafe fn k_min_lanes(mins: [u8; 8], bsums: *const i16) -> __m128i {
    // SAFETY: `bsums` points at 16 i16.
    unsafe {
        let lo = _mm_loadu_si128(bsums.cast());
        let hi = _mm_loadu_si128(bsums.add(8).cast());
        let bs32 = _mm_hadd_epi16(lo, hi);
        let m16 = _mm_cvtepu8_epi16(_mm_loadu_si64(mins.as_ptr()));
        _mm_madd_epi16(m16, bs32)
    }
}

/// Q4_K/Q5_K lane sums of super-block `i` for each token: `Σ_j sc_j · lanes(sub-block j)`;
/// `hi(c)` gives the fifth bits (0 or 16 per byte) of the two sub-blocks of chunk `c`.
#[inline(always)]
unsafe fn k_lanes<const T: usize>(
    qs: &[u8; 128],
    sc: &[u8; 8],
    i: usize,
    xs: &[ActRow; T],
    hi: impl Fn(usize) -> (__m256i, __m256i),
) -> [__m256i; T] {
    // SAFETY: AVX2 in every caller; activations hold 256 codes per super-block.
    unsafe {
        let mut sumi = [_mm256_setzero_si256(); T];
        let m4 = _mm256_set1_epi8(15);
        for c in 0..4 {
            let bits = _mm256_loadu_si256(qs.as_ptr().add(32 * c).cast());
            let (h0, h1) = hi(c);
            let lo = _mm256_or_si256(_mm256_and_si256(bits, m4), h0);
            let hq = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits, 4), m4), h1);
            let s0 = _mm256_set1_epi16(sc[2 * c] as i16);
            let s1 = _mm256_set1_epi16(sc[2 * c + 1] as i16);
            for t in 0..T {
                let x = xs[t].qs.as_ptr().add(i * QK_K + 64 * c);
                let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load32(x)), s0);
                let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hq, load32(x.add(32))), s1);
                sumi[t] = _mm256_add_epi32(sumi[t], _mm256_add_epi32(p0, p1));
            }
        }
        sumi
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q4_k<const T: usize>(bs: &[BlockQ4K], xs: &[ActRow; T]) -> [f32; T] {
    // SAFETY: features enabled here; activations hold 16 sums per super-block.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); T];
        let mut accm = [_mm_setzero_ps(); T];
        let z = _mm256_setzero_si256();
        for (i, b) in bs.iter().enumerate() {
            let k = KScales::new(&b.scales, b.d, b.dmin);
            let sumi = k_lanes(&b.qs, &k.sc, i, xs, |_| (z, z));
            for t in 0..T {
                k.q4_step(&mut acc[t], &mut accm[t], sumi[t], &xs[t], i);
            }
        }
        std::array::from_fn(|t| q4_k_total(acc[t], accm[t]))
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q5_k<const T: usize>(bs: &[BlockQ5K], xs: &[ActRow; T]) -> [f32; T] {
    // SAFETY: features enabled here; `qh` is 32 bytes.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); T];
        let mut mins = [0.0f32; T];
        let one = _mm256_set1_epi8(1);
        for (i, b) in bs.iter().enumerate() {
            let k = KScales::new(&b.scales, b.d, b.dmin);
            let qh = _mm256_loadu_si256(b.qh.as_ptr().cast());
            let hi = |c: usize| {
                // Bit 2c (2c+1) of each byte, moved to bit 4. 16-bit shifts cannot leak between
                // bytes here because only bit 0 of each byte is kept before the left shift.
                let b0 =
                    _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * c as i32)), one);
                let b1 = _mm256_and_si256(
                    _mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * c as i32 + 1)),
                    one,
                );
                (_mm256_slli_epi16(b0, 4), _mm256_slli_epi16(b1, 4))
            };
            let sumi = k_lanes(&b.qs, &k.sc, i, xs, hi);
            for t in 0..T {
                k.q5_step(&mut acc[t], &mut mins[t], sumi[t], &xs[t], i);
            }
        }
        std::array::from_fn(|t| hsum(acc[t]) + mins[t])
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q6_k<const T: usize>(bs: &[BlockQ6K], xs: &[ActRow; T]) -> [f32; T] {
    // SAFETY: features enabled here; block fields have the sizes read below.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); T];
        let m4 = _mm256_set1_epi8(15);
        let m3 = _mm256_set1_epi8(3);
        for (i, b) in bs.iter().enumerate() {
            let mut sumi = [_mm256_setzero_si256(); T];
            for n in 0..2 {
                let ql0 = _mm256_loadu_si256(b.ql.as_ptr().add(64 * n).cast());
                let ql1 = _mm256_loadu_si256(b.ql.as_ptr().add(64 * n + 32).cast());
                let qh = _mm256_loadu_si256(b.qh.as_ptr().add(32 * n).cast());
                let h = |k: i32| {
                    let v = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(k)), m3);
                    _mm256_slli_epi16(v, 4)
                };
                // Codes 0..64 (the −32 is applied through the block sums below).
                let q = [
                    _mm256_or_si256(_mm256_and_si256(ql0, m4), h(0)),
                    _mm256_or_si256(_mm256_and_si256(ql1, m4), h(2)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), h(4)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4), h(6)),
                ];
                for (k, q) in q.iter().enumerate() {
                    let j = 8 * n + 2 * k; // sub-block of the first 16 elements
                    let sc = _mm256_set_m128i(
                        _mm_set1_epi16(b.scales[j + 1] as i16),
                        _mm_set1_epi16(b.scales[j] as i16),
                    );
                    for t in 0..T {
                        let x = xs[t].qs.as_ptr().add(i * QK_K + 128 * n + 32 * k);
                        let p = _mm256_madd_epi16(_mm256_maddubs_epi16(*q, load32(x)), sc);
                        sumi[t] = _mm256_add_epi32(sumi[t], p);
                    }
                }
            }
            let sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(b.scales.as_ptr().cast()));
            let dw = f16s(b.d);
            for t in 0..T {
                q6_k_step(&mut acc[t], sumi[t], sc16, dw, &xs[t], i);
            }
        }
        acc.map(|v| hsum(v))
    }
}

// ---------------------------------------------------------------------------------------------
// Float weights (activations already rounded to the weight type, stored as f32).

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load8(ty: FloatTy, w: *const u8, i: usize) -> __m256 {
    // SAFETY: the row holds element `i + 7`.
    unsafe {
        match ty {
            FloatTy::F32 => _mm256_loadu_ps(w.cast::<f32>().add(i)),
            FloatTy::F16 => _mm256_cvtph_ps(_mm_loadu_si128(w.add(2 * i).cast())),
            FloatTy::Bf16 => {
                let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(w.add(2 * i).cast()));
                _mm256_castsi256_ps(_mm256_slli_epi32(h, 16))
            }
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_float(ty: FloatTy, w: &[u8], x: &[f32]) -> f32 {
    let n = x.len();
    // SAFETY: `w` holds `n` elements of `ty`; loads stay below `n`.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (k, a) in acc.iter_mut().enumerate() {
                let wv = load8(ty, w.as_ptr(), i + 8 * k);
                *a = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x.as_ptr().add(i + 8 * k)), *a);
            }
            i += 32;
        }
        while i + 8 <= n {
            let wv = load8(ty, w.as_ptr(), i);
            acc[0] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x.as_ptr().add(i)), acc[0]);
            i += 8;
        }
        let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut s = hsum(v);
        while i < n {
            s += ty.load(w, i) * x[i];
            i += 1;
        }
        s
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_float(ty: FloatTy, w: &[u8], nrows: usize, a: &Acts, out: *mut f32, stride: usize) {
    let rb = a.cols * ty.bytes();
    for r in 0..nrows {
        let row = &w[r * rb..(r + 1) * rb];
        for t in 0..a.n {
            // SAFETY: features enabled here; output bounds per the caller's contract.
            unsafe { *out.add(t * stride + r) = dot_float(ty, row, a.row(t).f) };
        }
    }
}

// ---------------------------------------------------------------------------------------------
// f16 helpers for attention.

/// Σ f16(k[i]) · q[i].
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_f16(k: &[u16], q: &[f32]) -> f32 {
    let n = k.len().min(q.len());
    // SAFETY: loads stay below `n`.
    unsafe {
        let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i + 16 <= n {
            let k0 = _mm256_cvtph_ps(_mm_loadu_si128(k.as_ptr().add(i).cast()));
            let k1 = _mm256_cvtph_ps(_mm_loadu_si128(k.as_ptr().add(i + 8).cast()));
            a0 = _mm256_fmadd_ps(k0, _mm256_loadu_ps(q.as_ptr().add(i)), a0);
            a1 = _mm256_fmadd_ps(k1, _mm256_loadu_ps(q.as_ptr().add(i + 8)), a1);
            i += 16;
        }
        let mut s = hsum(_mm256_add_ps(a0, a1));
        while i < n {
            s += super::f16_to_f32(k[i]) * q[i];
            i += 1;
        }
        s
    }
}

/// out[i] += a · f16(v[i]).
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn axpy_f16(a: f32, v: &[u16], out: &mut [f32]) {
    let n = v.len().min(out.len());
    // SAFETY: loads and stores stay below `n`.
    unsafe {
        let av = _mm256_set1_ps(a);
        let mut i = 0;
        while i + 8 <= n {
            let x = _mm256_cvtph_ps(_mm_loadu_si128(v.as_ptr().add(i).cast()));
            let o = out.as_mut_ptr().add(i);
            _mm256_storeu_ps(o, _mm256_fmadd_ps(av, x, _mm256_loadu_ps(o)));
            i += 8;
        }
        while i < n {
            out[i] += a * super::f16_to_f32(v[i]);
            i += 1;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Element-wise math, bit-identical to the scalar versions in `scalar.rs` (same operations, same
// order, fused where those are fused).

/// 8 lanes of `scalar::expf_ggml`.
#[inline(always)]
unsafe fn expf_ggml8(x: __m256) -> __m256 {
    // SAFETY: AVX2/FMA in every caller.
    unsafe {
        let shift = _mm256_set1_ps(12582912.0);
        let z = _mm256_fmadd_ps(x, _mm256_set1_ps(f32::from_bits(0x3fb8_aa3b)), shift);
        let n = _mm256_sub_ps(z, shift);
        let b = _mm256_fnmadd_ps(
            n,
            _mm256_set1_ps(f32::from_bits(0x35bf_be8e)),
            _mm256_fnmadd_ps(n, _mm256_set1_ps(f32::from_bits(0x3f31_7200)), x),
        );
        let big = _mm256_cmp_ps::<_CMP_GT_OQ>(
            _mm256_andnot_ps(_mm256_set1_ps(-0.0), n),
            _mm256_set1_ps(126.0),
        );
        if _mm256_movemask_ps(big) != 0 {
            // Rare: 2^n is not a normal float; take the scalar route lane by lane.
            let mut v = [0.0f32; 8];
            _mm256_storeu_ps(v.as_mut_ptr(), x);
            return _mm256_loadu_ps(v.map(super::scalar::expf_ggml).as_ptr());
        }
        let u = _mm256_mul_ps(b, b);
        let c = |bits: u32| _mm256_set1_ps(f32::from_bits(bits));
        let hi = _mm256_fmadd_ps(
            _mm256_fmadd_ps(c(0x3c07_2010), b, c(0x3d2b_9f17)),
            u,
            _mm256_fmadd_ps(c(0x3e2a_af33), b, c(0x3eff_fedb)),
        );
        let j = _mm256_fmadd_ps(
            hi,
            u,
            _mm256_fmadd_ps(c(0x3f7f_fff6), b, _mm256_set1_ps(1.0)),
        );
        let e = _mm256_slli_epi32(
            _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)),
            23,
        );
        _mm256_mul_ps(j, _mm256_castsi256_ps(e))
    }
}

/// gate = silu(gate) · up (see `scalar::swiglu`).
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn swiglu(gate: &mut [f32], up: &[f32]) {
    let n = gate.len().min(up.len());
    let body = n - n % 16;
    // SAFETY: loads and stores stay below `body ≤ n`.
    unsafe {
        let one = _mm256_set1_ps(1.0);
        let mut i = 0;
        while i < body {
            let g = gate.as_mut_ptr().add(i);
            let x = _mm256_loadu_ps(g);
            let e = expf_ggml8(_mm256_sub_ps(_mm256_setzero_ps(), x));
            let s = _mm256_div_ps(x, _mm256_add_ps(one, e));
            _mm256_storeu_ps(g, _mm256_mul_ps(s, _mm256_loadu_ps(up.as_ptr().add(i))));
            i += 8;
        }
    }
    super::scalar::swiglu_tail(&mut gate[body..n], &up[body..n]);
}

/// `scalar::dot_f16_f16` over `n` elements, `n` a multiple of 64: 8 accumulators of 8 lanes over
/// steps of 64 (lanes l and l+8 of ggml's 16-lane accumulator m in `a[2m]`, `a[2m+1]`), reduced
/// pairwise. There is no tail, so the scalar's f64 step leaves the sum unchanged.
#[inline(always)]
unsafe fn dot_f16_f16_64(k: *const u16, q: *const f32, n: usize) -> f32 {
    // SAFETY: AVX2/FMA/F16C in every caller; `k`, `q` hold `n` values.
    unsafe {
        let mut a = [_mm256_setzero_ps(); 8];
        for i in (0..n).step_by(64) {
            for (j, a) in a.iter_mut().enumerate() {
                let kv = _mm256_cvtph_ps(_mm_loadu_si128(k.add(i + 8 * j).cast()));
                *a = _mm256_fmadd_ps(kv, _mm256_loadu_ps(q.add(i + 8 * j)), *a);
            }
        }
        let lo = _mm256_add_ps(_mm256_add_ps(a[0], a[4]), _mm256_add_ps(a[2], a[6]));
        let hi = _mm256_add_ps(_mm256_add_ps(a[1], a[5]), _mm256_add_ps(a[3], a[7]));
        let t8 = _mm256_add_ps(hi, lo);
        let t4 = _mm_add_ps(_mm256_extractf128_ps(t8, 1), _mm256_castps256_ps128(t8));
        let s = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }
}

/// `scalar::mad_f16` (y = f16(fma(x, a, y))) over `n` elements, `n` a multiple of 8.
#[inline(always)]
unsafe fn mad_f16_8(y: *mut u16, x: *const u16, n: usize, a: f32) {
    // SAFETY: AVX2/FMA/F16C in every caller; `y`, `x` hold `n` values.
    unsafe {
        let av = _mm256_set1_ps(a);
        for i in (0..n).step_by(8) {
            let xv = _mm256_cvtph_ps(_mm_loadu_si128(x.add(i).cast()));
            let yv = _mm256_cvtph_ps(_mm_loadu_si128(y.add(i).cast()));
            let r = _mm256_fmadd_ps(xv, av, yv);
            _mm_storeu_si128(
                y.add(i).cast(),
                _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(r),
            );
        }
    }
}

/// `scalar::scale_f16` (y = f16(y · a)) over `n` elements, `n` a multiple of 8.
#[inline(always)]
unsafe fn scale_f16_8(y: *mut u16, n: usize, a: f32) {
    // SAFETY: AVX2/F16C in every caller; `y` holds `n` values.
    unsafe {
        let av = _mm256_set1_ps(a);
        for i in (0..n).step_by(8) {
            let yv = _mm256_cvtph_ps(_mm_loadu_si128(y.add(i).cast()));
            let r = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_mul_ps(yv, av));
            _mm_storeu_si128(y.add(i).cast(), r);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Activation quantization, bit-identical to `act::quantize_q8` / `act::quantize_q8k` (same
// products, round-half-even conversion, same tie rule for the Q8_K extreme).

/// Max of 8 lanes.
#[inline(always)]
unsafe fn hmax(v: __m256) -> f32 {
    // SAFETY: register ops.
    unsafe {
        let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)))
    }
}

/// Sum of 8 i32 lanes.
#[inline(always)]
unsafe fn hsum_i32(v: __m256i) -> i32 {
    // SAFETY: register ops.
    unsafe {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01)))
    }
}

/// 32 i32 codes (each in −128..=127) → 32 bytes in element order.
#[inline(always)]
unsafe fn pack32(q: [__m256i; 4], out: *mut i8) {
    // SAFETY: `out` has 32 writable bytes.
    unsafe {
        let a = _mm256_packs_epi32(q[0], q[1]);
        let b = _mm256_packs_epi32(q[2], q[3]);
        let p = _mm256_packs_epi16(a, b);
        let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(out.cast(), p);
    }
}

/// See `act::quantize_q8`.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; plane lengths as in `act::quantize_q8`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_q8(
    x: &[f32],
    qs: &mut [i8],
    d: &mut [f32],
    s: &mut [f32],
    sum32: &mut [i32],
) {
    let nb = (x.len() / QK)
        .min(qs.len() / QK)
        .min(d.len())
        .min(s.len())
        .min(sum32.len());
    // SAFETY: block `i < nb` reads x[32i..32i+32] and writes qs[32i..32i+32].
    unsafe {
        let sign = _mm256_set1_ps(-0.0);
        for i in 0..nb {
            let p = x.as_ptr().add(i * QK);
            let v: [__m256; 4] = std::array::from_fn(|k| _mm256_loadu_ps(p.add(8 * k)));
            let m = v.iter().fold(_mm256_setzero_ps(), |m, &v| {
                _mm256_max_ps(m, _mm256_andnot_ps(sign, v))
            });
            let amax = hmax(m);
            let dd = amax / 127.0;
            let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
            // `cvtps` rounds half to even (the default MXCSR mode), as `act::rne`.
            let q = v.map(|v| _mm256_cvtps_epi32(_mm256_mul_ps(v, id)));
            let sum = hsum_i32(_mm256_add_epi32(
                _mm256_add_epi32(q[0], q[1]),
                _mm256_add_epi32(q[2], q[3]),
            ));
            pack32(q, qs.as_mut_ptr().add(i * QK));
            *d.get_unchecked_mut(i) = f16r(dd);
            *s.get_unchecked_mut(i) = f16r(dd * sum as f32);
            *sum32.get_unchecked_mut(i) = sum;
        }
    }
}

/// See `act::quantize_q8k`.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; plane lengths as in `act::quantize_q8k`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_q8k(x: &[f32], qs: &mut [i8], d: &mut [f32], bsums: &mut [i16]) {
    let nb = (x.len() / QK_K)
        .min(qs.len() / QK_K)
        .min(d.len())
        .min(bsums.len() / 16);
    // SAFETY: block `i < nb` reads x[256i..256i+256], writes qs[256i..], bsums[16i..16i+16].
    unsafe {
        let sign = _mm256_set1_ps(-0.0);
        for i in 0..nb {
            let p = x.as_ptr().add(i * QK_K);
            let mut m = _mm256_setzero_ps();
            for k in 0..32 {
                m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(p.add(8 * k))));
            }
            let amax = hmax(m);
            let qb = qs.as_mut_ptr().add(i * QK_K);
            let bs = bsums.as_mut_ptr().add(16 * i);
            if amax == 0.0 {
                *d.get_unchecked_mut(i) = 0.0;
                std::ptr::write_bytes(qb, 0, QK_K);
                std::ptr::write_bytes(bs, 0, 16);
                continue;
            }
            // The signed value of the first element with |x| = amax (the scalar's tie rule).
            let am = _mm256_set1_ps(amax);
            let mut max = 0.0;
            for k in 0..32 {
                let a = _mm256_andnot_ps(sign, _mm256_loadu_ps(p.add(8 * k)));
                let hit = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(a, am));
                if hit != 0 {
                    max = *p.add(8 * k + hit.trailing_zeros() as usize);
                    break;
                }
            }
            let iscale = -127.0 / max;
            let is = _mm256_set1_ps(iscale);
            let top = _mm256_set1_epi32(127);
            for g in 0..8 {
                let q: [__m256i; 4] = std::array::from_fn(|k| {
                    let v = _mm256_loadu_ps(p.add(32 * g + 8 * k));
                    _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(is, v)), top)
                });
                *bs.add(2 * g) = hsum_i32(_mm256_add_epi32(q[0], q[1])) as i16;
                *bs.add(2 * g + 1) = hsum_i32(_mm256_add_epi32(q[2], q[3])) as i16;
                pack32(q, qb.add(32 * g));
            }
            *d.get_unchecked_mut(i) = 1.0 / iscale;
        }
    }
}

#[inline(always)]
unsafe fn f16r(v: f32) -> f32 {
    // SAFETY: F16C in every caller.
    unsafe {
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(
            _mm_set_ss(v),
        )))
    }
}

// ---------------------------------------------------------------------------------------------
// Attention.

/// `scalar::attend_f16` on the helpers above, inlined (identical results); `q16.len()` is a
/// multiple of 64.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `k`, `v` hold `(n_pos − 1)·stride + q16.len()` values;
/// `acc.len() == q16.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn attend_f16(
    k: &[u16],
    v: &[u16],
    stride: usize,
    n_pos: usize,
    q16: &[f32],
    scale: f32,
    acc: &mut [u16],
) -> f32 {
    let hd = q16.len();
    debug_assert!(hd.is_multiple_of(64) && acc.len() == hd);
    debug_assert!(n_pos == 0 || (k.len().min(v.len()) >= (n_pos - 1) * stride + hd));
    // SAFETY: every access is below `(n_pos − 1)·stride + hd` in `k`/`v` and below `hd` in
    // `q16`/`acc`, per the contract.
    unsafe {
        let (mut m, mut s) = (f32::NEG_INFINITY, 0.0f32);
        let ap = acc.as_mut_ptr();
        // Positions in blocks: first every score of the block (independent dot products, so
        // they overlap), then the sequential online-softmax update, which alone carries the
        // dependency chain. The operations and their order per position are the scalar's.
        const BLOCK: usize = 64;
        let mut scores = [0.0f32; BLOCK];
        for p0 in (0..n_pos).step_by(BLOCK) {
            let nb = (n_pos - p0).min(BLOCK);
            for (j, score) in scores[..nb].iter_mut().enumerate() {
                let kp = k.as_ptr().add((p0 + j) * stride);
                *score = dot_f16_f16_64(kp, q16.as_ptr(), hd) * scale;
            }
            for (j, &score) in scores[..nb].iter().enumerate() {
                let (mut ms, mut vs) = (1.0f32, 1.0f32);
                if score > m {
                    ms = (m - score).exp();
                    m = score;
                    scale_f16_8(ap, hd, ms);
                } else {
                    vs = (score - m).exp();
                }
                mad_f16_8(ap, v.as_ptr().add((p0 + j) * stride), hd, vs);
                s = s.mul_add(ms, vs);
            }
        }
        s
    }
}

// ---------------------------------------------------------------------------------------------
// f16 conversions of slices (F16C rounds to nearest even, as `f32_to_f16`).

/// `dst[i] = f32_to_f16(src[i])`.
///
/// # Safety
/// The CPU must have AVX2 and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn f32_to_f16_slice(dst: &mut [u16], src: &[f32]) {
    let n = dst.len().min(src.len());
    let body = n - n % 8;
    // SAFETY: loads and stores stay below `body ≤ n`.
    unsafe {
        for i in (0..body).step_by(8) {
            let h =
                _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(src.as_ptr().add(i)));
            _mm_storeu_si128(dst.as_mut_ptr().add(i).cast(), h);
        }
    }
    super::scalar::f32_to_f16_slice(&mut dst[body..n], &src[body..n]);
}

/// `dst[i] = f16_to_f32(src[i]) · mul`.
///
/// # Safety
/// The CPU must have AVX2 and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn f16_to_f32_slice(dst: &mut [f32], src: &[u16], mul: f32) {
    let n = dst.len().min(src.len());
    let body = n - n % 8;
    // SAFETY: loads and stores stay below `body ≤ n`.
    unsafe {
        let m = _mm256_set1_ps(mul);
        for i in (0..body).step_by(8) {
            let f = _mm256_cvtph_ps(_mm_loadu_si128(src.as_ptr().add(i).cast()));
            _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_mul_ps(f, m));
        }
    }
    super::scalar::f16_to_f32_slice(&mut dst[body..n], &src[body..n], mul);
}
