// GGUF weight block layouts (one `#[repr(C)]` struct per format, byte fields only so any slice of
// bytes can be viewed as blocks whatever its alignment) and the scalar reference for each:
// `dequantize_*` to f32 and `vec_dot_*_ref` against the format's quantized-activation partner.

use super::act::ActRow;
use super::f16_to_f32;

/// Elements per block of the 32-wide formats.
pub const QK: usize = 32;
/// Elements per K-quant super-block.
pub const QK_K: usize = 256;

#[inline]
fn f16(b: [u8; 2]) -> f32 {
    f16_to_f32(u16::from_le_bytes(b))
}

/// `d · (q − 8)`, q a nibble; element `j` is the low nibble of `qs[j]`, `j + 16` the high one.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ4_0 {
    pub d: [u8; 2],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);

/// `d · q + m`, q a nibble (same nibble order as Q4_0).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ4_1 {
    pub d: [u8; 2],
    pub m: [u8; 2],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);

/// `d · (q − 16)`, q = nibble | bit `j` of `qh` (little-endian u32) << 4.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ5_0 {
    pub d: [u8; 2],
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);

/// `d · q + m`, q five bits as in Q5_0.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ5_1 {
    pub d: [u8; 2],
    pub m: [u8; 2],
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24);

/// `d · q`, q a signed byte.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ8_0 {
    pub d: [u8; 2],
    pub qs: [i8; QK],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);

/// 8 sub-blocks of 32: `d · sc_j · q − dmin · m_j`, 6-bit `sc_j`/`m_j` packed in `scales`;
/// `qs[32c..32c+32]` holds sub-block `2c` in its low nibbles and `2c + 1` in its high ones.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ4K {
    pub d: [u8; 2],
    pub dmin: [u8; 2],
    pub scales: [u8; 12],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);

/// Q4_K plus a fifth bit: bit `2c` (`2c + 1`) of `qh[l]` tops element `l` of sub-block `2c`
/// (`2c + 1`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ5K {
    pub d: [u8; 2],
    pub dmin: [u8; 2],
    pub scales: [u8; 12],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5K>() == 176);

/// 16 sub-blocks of 16: `d · sc_j · (q − 32)`, q six bits (4 in `ql`, 2 in `qh`), `sc_j` i8.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: [u8; 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);

/// A format's block: its geometry and a way to view raw bytes as blocks.
pub trait Block: Copy {
    const ELEMS: usize;
    /// View `bytes` (a whole number of blocks) as blocks.
    fn slice(bytes: &[u8]) -> &[Self] {
        let size = std::mem::size_of::<Self>();
        assert!(
            bytes.len().is_multiple_of(size),
            "{} bytes is not a whole number of {size}-byte blocks",
            bytes.len()
        );
        // SAFETY: every block type is repr(C) of byte arrays (align 1, no padding, any bit pattern
        // valid), and the length is a whole number of blocks.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<Self>(), bytes.len() / size) }
    }
}
impl Block for BlockQ4_0 {
    const ELEMS: usize = QK;
}
impl Block for BlockQ4_1 {
    const ELEMS: usize = QK;
}
impl Block for BlockQ5_0 {
    const ELEMS: usize = QK;
}
impl Block for BlockQ5_1 {
    const ELEMS: usize = QK;
}
impl Block for BlockQ8_0 {
    const ELEMS: usize = QK;
}
impl Block for BlockQ4K {
    const ELEMS: usize = QK_K;
}
impl Block for BlockQ5K {
    const ELEMS: usize = QK_K;
}
impl Block for BlockQ6K {
    const ELEMS: usize = QK_K;
}

// ---------------------------------------------------------------------------------------------
// Unpacking to integer codes (shared by dequantize and the scalar dots).

impl BlockQ4_0 {
    /// Signed codes `q − 8`.
    pub fn codes(&self) -> [i8; QK] {
        let mut q = [0i8; QK];
        for j in 0..QK / 2 {
            q[j] = (self.qs[j] & 15) as i8 - 8;
            q[j + 16] = (self.qs[j] >> 4) as i8 - 8;
        }
        q
    }
}

impl BlockQ4_1 {
    pub fn codes(&self) -> [i8; QK] {
        let mut q = [0i8; QK];
        for j in 0..QK / 2 {
            q[j] = (self.qs[j] & 15) as i8;
            q[j + 16] = (self.qs[j] >> 4) as i8;
        }
        q
    }
}

fn q5_codes(qs: &[u8; 16], qh: [u8; 4], offset: i8) -> [i8; QK] {
    let h = u32::from_le_bytes(qh);
    let mut q = [0i8; QK];
    for j in 0..QK / 2 {
        let lo = (qs[j] & 15) | (((h >> j) & 1) << 4) as u8;
        let hi = (qs[j] >> 4) | (((h >> (j + 16)) & 1) << 4) as u8;
        q[j] = lo as i8 - offset;
        q[j + 16] = hi as i8 - offset;
    }
    q
}

impl BlockQ5_0 {
    /// Signed codes `q − 16`.
    pub fn codes(&self) -> [i8; QK] {
        q5_codes(&self.qs, self.qh, 16)
    }
}

impl BlockQ5_1 {
    pub fn codes(&self) -> [i8; QK] {
        q5_codes(&self.qs, self.qh, 0)
    }
}

/// The 6-bit scale and min of sub-block `j` (0..8) of a Q4_K/Q5_K `scales` field.
pub fn k_scale_min(j: usize, s: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

impl BlockQ4K {
    /// Unsigned codes 0..16 in element order.
    pub fn codes(&self) -> [i8; QK_K] {
        let mut q = [0i8; QK_K];
        for c in 0..4 {
            for l in 0..32 {
                q[64 * c + l] = (self.qs[32 * c + l] & 15) as i8;
                q[64 * c + 32 + l] = (self.qs[32 * c + l] >> 4) as i8;
            }
        }
        q
    }
}

impl BlockQ5K {
    /// Unsigned codes 0..32 in element order.
    pub fn codes(&self) -> [i8; QK_K] {
        let mut q = [0i8; QK_K];
        for c in 0..4 {
            for l in 0..32 {
                let h = self.qh[l];
                q[64 * c + l] = ((self.qs[32 * c + l] & 15) | (((h >> (2 * c)) & 1) << 4)) as i8;
                q[64 * c + 32 + l] =
                    ((self.qs[32 * c + l] >> 4) | (((h >> (2 * c + 1)) & 1) << 4)) as i8;
            }
        }
        q
    }
}

impl BlockQ6K {
    /// Signed codes `q − 32` in element order.
    pub fn codes(&self) -> [i8; QK_K] {
        let mut q = [0i8; QK_K];
        for n in 0..2 {
            let (ql, qh) = (&self.ql[64 * n..], &self.qh[32 * n..]);
            let y = &mut q[128 * n..];
            for l in 0..32 {
                y[l] = ((ql[l] & 15) | ((qh[l] & 3) << 4)) as i8 - 32;
                y[l + 32] = ((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                y[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                y[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
            }
        }
        q
    }
}

// ---------------------------------------------------------------------------------------------
// Dequantize (f32 reference; also used for embedding rows).

pub fn dequantize_q4_0(bs: &[BlockQ4_0], out: &mut [f32]) {
    for (o, b) in out.chunks_exact_mut(QK).zip(bs) {
        let d = f16(b.d);
        for (o, q) in o.iter_mut().zip(b.codes()) {
            *o = d * q as f32;
        }
    }
}

pub fn dequantize_q4_1(bs: &[BlockQ4_1], out: &mut [f32]) {
    for (o, b) in out.chunks_exact_mut(QK).zip(bs) {
        let (d, m) = (f16(b.d), f16(b.m));
        for (o, q) in o.iter_mut().zip(b.codes()) {
            *o = d * q as f32 + m;
        }
    }
}

pub fn dequantize_q5_0(bs: &[BlockQ5_0], out: &mut [f32]) {
    for (o, b) in out.chunks_exact_mut(QK).zip(bs) {
        let d = f16(b.d);
        for (o, q) in o.iter_mut().zip(b.codes()) {
            *o = d * q as f32;
        }
    }
}

pub fn dequantize_q5_1(bs: &[BlockQ5_1], out: &mut [f32]) {
    for (o, b) in out.chunks_exact_mut(QK).zip(bs) {
        let (d, m) = (f16(b.d), f16(b.m));
        for (o, q) in o.iter_mut().zip(b.codes()) {
            *o = d * q as f32 + m;
        }
    }
}

pub fn dequantize_q8_0(bs: &[BlockQ8_0], out: &mut [f32]) {
    for (o, b) in out.chunks_exact_mut(QK).zip(bs) {
        let d = f16(b.d);
        for (o, &q) in o.iter_mut().zip(&b.qs) {
            *o = d * q as f32;
        }
    }
}

pub fn dequantize_q4_k(bs: &[BlockQ4K], out: &mut [f32]) {
    for (o, b) in out.chunks_exact_mut(QK_K).zip(bs) {
        let (d, dmin) = (f16(b.d), f16(b.dmin));
        let q = b.codes();
        for j in 0..8 {
            let (sc, m) = k_scale_min(j, &b.scales);
            let (d1, m1) = (d * sc as f32, dmin * m as f32);
            for l in 32 * j..32 * (j + 1) {
                o[l] = d1 * q[l] as f32 - m1;
            }
        }
    }
}

pub fn dequantize_q5_k(bs: &[BlockQ5K], out: &mut [f32]) {
    for (o, b) in out.chunks_exact_mut(QK_K).zip(bs) {
        let (d, dmin) = (f16(b.d), f16(b.dmin));
        let q = b.codes();
        for j in 0..8 {
            let (sc, m) = k_scale_min(j, &b.scales);
            let (d1, m1) = (d * sc as f32, dmin * m as f32);
            for l in 32 * j..32 * (j + 1) {
                o[l] = d1 * q[l] as f32 - m1;
            }
        }
    }
}

pub fn dequantize_q6_k(bs: &[BlockQ6K], out: &mut [f32]) {
    for (o, b) in out.chunks_exact_mut(QK_K).zip(bs) {
        let d = f16(b.d);
        let q = b.codes();
        for j in 0..16 {
            let s = d * b.scales[j] as f32;
            for l in 16 * j..16 * (j + 1) {
                o[l] = s * q[l] as f32;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scalar dot products against quantized activations.
//
// The arithmetic is ggml's x86 one, made explicit so that every path of ours gives the same bits:
// integer sums per block are exact; eight f32 lanes, lane k taking the 4-element groups at
// 4k..4k+4 (and 16+4k.. for the second half), each accumulate `fma(d_w·d_x, lane_sum, acc)`
// block after block; the lanes are reduced as `((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7))`; min
// terms accumulate with fma in block order.

/// Eight-lane reduction in ggml's x86 order.
#[inline]
pub fn hsum8(a: [f32; 8]) -> f32 {
    ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

/// Lane sums of one 32-element group: lane k = Σ_{i<4} w[4k+i] · x[4k+i].
#[inline]
pub fn lanes32(w: &[i8], x: &[i8]) -> [i32; 8] {
    let mut l = [0i32; 8];
    for (k, lane) in l.iter_mut().enumerate() {
        for i in 4 * k..4 * k + 4 {
            *lane += w[i] as i32 * x[i] as i32;
        }
    }
    l
}

/// `acc[k] = fma(d, v[k], acc[k])` for the 8 lanes.
#[inline]
fn fma_lanes(acc: &mut [f32; 8], d: f32, v: [i32; 8]) {
    for (a, &v) in acc.iter_mut().zip(&v) {
        *a = d.mul_add(v as f32, *a);
    }
}

/// Q4_0, Q5_0, Q8_0 against Q8_0.
fn dot_q8_0_like<B: Block>(
    bs: &[B],
    x: &ActRow,
    d: impl Fn(&B) -> [u8; 2],
    codes: impl Fn(&B) -> [i8; QK],
) -> f32 {
    let mut acc = [0.0f32; 8];
    for (i, b) in bs.iter().enumerate() {
        let l = lanes32(&codes(b), &x.qs[i * QK..(i + 1) * QK]);
        fma_lanes(&mut acc, f16(d(b)) * x.d[i], l);
    }
    hsum8(acc)
}

/// Q4_1, Q5_1 against Q8_1: plus `Σ m_w · s_x`.
fn dot_q8_1_like<B: Block>(
    bs: &[B],
    x: &ActRow,
    dm: impl Fn(&B) -> ([u8; 2], [u8; 2]),
    codes: impl Fn(&B) -> [i8; QK],
) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut mins = 0.0f32;
    for (i, b) in bs.iter().enumerate() {
        let (d, m) = dm(b);
        mins = f16(m).mul_add(x.s[i], mins);
        let l = lanes32(&codes(b), &x.qs[i * QK..(i + 1) * QK]);
        fma_lanes(&mut acc, f16(d) * x.d[i], l);
    }
    hsum8(acc) + mins
}

pub fn vec_dot_q4_0_ref(bs: &[BlockQ4_0], x: &ActRow) -> f32 {
    dot_q8_0_like(bs, x, |b| b.d, |b| b.codes())
}

pub fn vec_dot_q5_0_ref(bs: &[BlockQ5_0], x: &ActRow) -> f32 {
    dot_q8_0_like(bs, x, |b| b.d, |b| b.codes())
}

pub fn vec_dot_q8_0_ref(bs: &[BlockQ8_0], x: &ActRow) -> f32 {
    dot_q8_0_like(bs, x, |b| b.d, |b| b.qs)
}

pub fn vec_dot_q4_1_ref(bs: &[BlockQ4_1], x: &ActRow) -> f32 {
    dot_q8_1_like(bs, x, |b| (b.d, b.m), |b| b.codes())
}

pub fn vec_dot_q5_1_ref(bs: &[BlockQ5_1], x: &ActRow) -> f32 {
    dot_q8_1_like(bs, x, |b| (b.d, b.m), |b| b.codes())
}

/// Q4_K/Q5_K super-block `i`: lane sums `Σ_j sc_j · lanes32(sub-block j)` and the four min
/// lanes `m_{2i}·bs_{2i} + m_{2i+1}·bs_{2i+1}` (bs per 32 elements).
fn k_minned_lanes(scales: &[u8; 12], q: &[i8; QK_K], i: usize, x: &ActRow) -> ([i32; 8], [i32; 4]) {
    let qx = &x.qs[i * QK_K..(i + 1) * QK_K];
    let bsums = &x.bsums[i * 16..(i + 1) * 16];
    let mut lanes = [0i32; 8];
    let mut mins = [0i32; 4];
    for j in 0..8 {
        let (sc, m) = k_scale_min(j, scales);
        let l = lanes32(&q[32 * j..32 * (j + 1)], &qx[32 * j..32 * (j + 1)]);
        for k in 0..8 {
            lanes[k] += sc as i32 * l[k];
        }
        mins[j / 2] += m as i32 * (bsums[2 * j] as i32 + bsums[2 * j + 1] as i32);
    }
    (lanes, mins)
}

/// Q4_K against Q8_K; the min term in four lanes, reduced `(m0+m2)+(m1+m3)`.
pub fn vec_dot_q4_k_ref(bs: &[BlockQ4K], x: &ActRow) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut accm = [0.0f32; 4];
    for (i, b) in bs.iter().enumerate() {
        let (lanes, mins) = k_minned_lanes(&b.scales, &b.codes(), i, x);
        fma_lanes(&mut acc, x.d[i] * f16(b.d), lanes);
        let dmin = -x.d[i] * f16(b.dmin);
        for (a, &m) in accm.iter_mut().zip(&mins) {
            *a = dmin.mul_add(m as f32, *a);
        }
    }
    hsum8(acc) + ((accm[0] + accm[2]) + (accm[1] + accm[3]))
}

/// Q5_K against Q8_K; the min term as one scalar per super-block.
pub fn vec_dot_q5_k_ref(bs: &[BlockQ5K], x: &ActRow) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut mins = 0.0f32;
    for (i, b) in bs.iter().enumerate() {
        let (lanes, m) = k_minned_lanes(&b.scales, &b.codes(), i, x);
        fma_lanes(&mut acc, x.d[i] * f16(b.d), lanes);
        let dmin = -x.d[i] * f16(b.dmin);
        mins = dmin.mul_add(m.iter().sum::<i32>() as f32, mins);
    }
    hsum8(acc) + mins
}

/// Q6_K against Q8_K: unsigned codes, lane k of each 32-group scaled by the scale of its
/// 16-element half, then `−32 · (sc_{2k}·bs_{2k} + sc_{2k+1}·bs_{2k+1})` taken from lane k.
pub fn vec_dot_q6_k_ref(bs: &[BlockQ6K], x: &ActRow) -> f32 {
    let mut acc = [0.0f32; 8];
    for (i, b) in bs.iter().enumerate() {
        let q = b.codes();
        let qx = &x.qs[i * QK_K..(i + 1) * QK_K];
        let bsums = &x.bsums[i * 16..(i + 1) * 16];
        let mut lanes = [0i32; 8];
        for g in 0..8 {
            let mut u = [0i8; 32];
            for (o, &c) in u.iter_mut().zip(&q[32 * g..32 * (g + 1)]) {
                *o = c + 32;
            }
            let l = lanes32(&u, &qx[32 * g..32 * (g + 1)]);
            for k in 0..8 {
                lanes[k] += b.scales[2 * g + k / 4] as i32 * l[k];
            }
        }
        for k in 0..8 {
            let c = b.scales[2 * k] as i32 * bsums[2 * k] as i32
                + b.scales[2 * k + 1] as i32 * bsums[2 * k + 1] as i32;
            lanes[k] -= 32 * c;
        }
        fma_lanes(&mut acc, x.d[i] * f16(b.d), lanes);
    }
    hsum8(acc)
}

/// F32, F16 and BF16 weights against f32 activations that were rounded to the weight's type.
pub fn vec_dot_float_ref(ty: FloatTy, w: &[u8], x: &[f32]) -> f32 {
    let mut sum = 0.0f32;
    for (i, &xv) in x.iter().enumerate() {
        sum += ty.load(w, i) * xv;
    }
    sum
}

/// The unquantized weight types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloatTy {
    F32,
    F16,
    Bf16,
}

impl FloatTy {
    pub fn bytes(self) -> usize {
        match self {
            FloatTy::F32 => 4,
            FloatTy::F16 | FloatTy::Bf16 => 2,
        }
    }
    /// Element `i` of a row.
    #[inline]
    pub fn load(self, w: &[u8], i: usize) -> f32 {
        match self {
            FloatTy::F32 => {
                f32::from_le_bytes([w[4 * i], w[4 * i + 1], w[4 * i + 2], w[4 * i + 3]])
            }
            FloatTy::F16 => f16([w[2 * i], w[2 * i + 1]]),
            FloatTy::Bf16 => bf16_to_f32(u16::from_le_bytes([w[2 * i], w[2 * i + 1]])),
        }
    }
    /// `v` rounded to this type (what ggml does to the activations of such a matmul).
    #[inline]
    pub fn round(self, v: f32) -> f32 {
        match self {
            FloatTy::F32 => v,
            FloatTy::F16 => f16_to_f32(super::f32_to_f16(v)),
            FloatTy::Bf16 => bf16_to_f32(f32_to_bf16(v)),
        }
    }
}

pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// Round to nearest even; NaN stays a (quiet) NaN.
pub fn f32_to_bf16(v: f32) -> u16 {
    let x = v.to_bits();
    if x & 0x7fff_ffff > 0x7f80_0000 {
        return ((x >> 16) | 64) as u16;
    }
    ((x + (0x7fff + ((x >> 16) & 1))) >> 16) as u16
}
