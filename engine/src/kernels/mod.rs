//! Compute kernels on quantized weights, straight from the bytes of a weight source (RAM, mmap or
//! a streaming buffer). One dispatch point picks scalar / AVX2 / NEON at runtime.
//!
//! API CONTRACT (the model code depends on exactly this; keep it stable):
//! - [`QMatrix`]: a GGUF weight matrix view (`rows` × `cols`, row-major, `ty` blocks along a row).
//! - [`Kernels::matmul`]: `out[t*rows + r] = Σ_c W[r][c] · x[t*cols + c]` for `t < n_tokens`.
//! - [`Kernels::matmul_multi`]: several matrices on the same input in one parallel region.
//! - [`MatmulScratch`]: preallocated activation-quantization space; the forward pass allocates
//!   nothing, so the scratch is sized once for the largest `n_tokens × cols`.
//! - [`dequantize_row`], f16 helpers ([`f16_to_f32`], [`f32_to_f16`], [`dot_f16`], [`axpy_f16`]).
//!
//! This file currently holds a minimal scalar implementation (dequantize + f32 dot) for a few
//! types; it is the contract placeholder, to be replaced by per-type blocks and SIMD kernels.

use crate::gguf::GgmlType;

/// A weight matrix as laid out in GGUF.
#[derive(Clone, Copy, Debug)]
pub struct QMatrix<'a> {
    pub ty: GgmlType,
    /// Output features (GGUF `dims[1]`).
    pub rows: usize,
    /// Input features (GGUF `dims[0]`), a multiple of the type's block size.
    pub cols: usize,
    /// `rows * row_bytes(cols)` bytes; any alignment.
    pub data: &'a [u8],
}

impl<'a> QMatrix<'a> {
    pub fn row_bytes(&self) -> usize {
        self.ty
            .row_bytes(self.cols as u64)
            .expect("cols is a whole number of blocks") as usize
    }
    pub fn row(&self, r: usize) -> &'a [u8] {
        let rb = self.row_bytes();
        &self.data[r * rb..(r + 1) * rb]
    }
}

/// One matrix of a [`Kernels::matmul_multi`] call and where its output goes (`[n_tokens][rows]`).
pub struct MatJob<'a, 'o> {
    pub w: QMatrix<'a>,
    pub out: &'o mut [f32],
}

/// Space for quantized activations, allocated once.
pub struct MatmulScratch {
    buf: Vec<f32>,
}

impl MatmulScratch {
    /// Room for `max_tokens` rows of up to `max_cols` activations.
    pub fn new(max_tokens: usize, max_cols: usize) -> Self {
        Self {
            buf: vec![0.0; max_cols.max(1) * 2 + max_tokens * 0],
        }
    }
}

/// Thread pool plus the selected instruction set.
pub struct Kernels {
    pool: rayon::ThreadPool,
    threads: usize,
}

impl Kernels {
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("flashslim-w{i}"))
            .build()
            .expect("building the rayon pool");
        Self { pool, threads }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Name of the selected kernel path (`scalar`, `avx2`, `neon`, `neon+dotprod`...).
    pub fn isa(&self) -> &'static str {
        "scalar"
    }

    /// Run `f` inside this kernel set's thread pool.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }

    pub fn matmul(
        &self,
        w: QMatrix,
        x: &[f32],
        n_tokens: usize,
        out: &mut [f32],
        scratch: &mut MatmulScratch,
    ) {
        self.matmul_multi(&mut [MatJob { w, out }], x, n_tokens, scratch)
    }

    pub fn matmul_multi(
        &self,
        jobs: &mut [MatJob],
        x: &[f32],
        n_tokens: usize,
        scratch: &mut MatmulScratch,
    ) {
        for job in jobs.iter_mut() {
            let w = job.w;
            assert!(x.len() >= n_tokens * w.cols && job.out.len() >= n_tokens * w.rows);
            let row_f = &mut scratch.buf[..w.cols];
            for r in 0..w.rows {
                dequantize_row(w.ty, w.row(r), row_f);
                for t in 0..n_tokens {
                    let xt = &x[t * w.cols..(t + 1) * w.cols];
                    job.out[t * w.rows + r] = row_f.iter().zip(xt).map(|(a, b)| a * b).sum();
                }
            }
        }
    }
}

/// Dequantize one row (`out.len()` elements) of type `ty`.
pub fn dequantize_row(ty: GgmlType, row: &[u8], out: &mut [f32]) {
    match ty {
        GgmlType::F32 => {
            for (o, c) in out.iter_mut().zip(row.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        GgmlType::F16 => {
            for (o, c) in out.iter_mut().zip(row.chunks_exact(2)) {
                *o = f16_to_f32(u16::from_le_bytes([c[0], c[1]]));
            }
        }
        GgmlType::Q8_0 => {
            for (ob, b) in out.chunks_exact_mut(32).zip(row.chunks_exact(34)) {
                let d = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
                for (o, q) in ob.iter_mut().zip(&b[2..]) {
                    *o = d * (*q as i8) as f32;
                }
            }
        }
        GgmlType::Q4_1 => {
            for (ob, b) in out.chunks_exact_mut(32).zip(row.chunks_exact(20)) {
                let d = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
                let m = f16_to_f32(u16::from_le_bytes([b[2], b[3]]));
                for j in 0..16 {
                    ob[j] = d * (b[4 + j] & 0x0f) as f32 + m;
                    ob[j + 16] = d * (b[4 + j] >> 4) as f32 + m;
                }
            }
        }
        other => panic!("dequantize_row: {other} not implemented in the placeholder"),
    }
}

/// IEEE half to single.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = if exp == 0 {
        if man == 0 {
            sign
        } else {
            // subnormal: normalise
            let mut e = 127 - 15 + 1;
            let mut m = man;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((m & 0x3ff) << 13)
        }
    } else if exp == 0x1f {
        sign | 0x7f80_0000 | (man << 13)
    } else {
        sign | ((exp + 127 - 15) << 23) | (man << 13)
    };
    f32::from_bits(bits)
}

/// Single to IEEE half, round to nearest even.
pub fn f32_to_f16(f: f32) -> u16 {
    let x = f.to_bits();
    let sign = ((x >> 16) & 0x8000) as u16;
    let exp = ((x >> 23) & 0xff) as i32;
    let man = x & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let mut r = m >> shift;
        let rem = m & ((1 << shift) - 1);
        if rem > half || (rem == half && (r & 1) == 1) {
            r += 1;
        }
        return sign | r as u16;
    }
    let mut r = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1fff;
    if rem > 0x1000 || (rem == 0x1000 && (r & 1) == 1) {
        r += 1;
    }
    sign | r as u16
}

/// Σ f16(k[i]) · q[i].
pub fn dot_f16(k: &[u16], q: &[f32]) -> f32 {
    k.iter().zip(q).map(|(a, b)| f16_to_f32(*a) * b).sum()
}

/// out[i] += a · f16(v[i]).
pub fn axpy_f16(a: f32, v: &[u16], out: &mut [f32]) {
    for (o, h) in out.iter_mut().zip(v) {
        *o += a * f16_to_f32(*h);
    }
}
