//! Compute kernels on quantized weights, straight from the bytes of a weight source (RAM, mmap or
//! a streaming buffer, any alignment). One dispatch point ([`Isa`] × type, in [`rows_kernel`])
//! picks scalar / AVX2 / AVX-512 / NEON / NEON+dotprod at runtime.
//!
//! API CONTRACT (the model code depends on exactly this; keep it stable):
//! - [`QMatrix`]: a GGUF weight matrix view (`rows` × `cols`, row-major, `ty` blocks along a row).
//! - [`Kernels::matmul`]: `out[t*rows + r] = Σ_c W[r][c] · x[t*cols + c]` for `t < n_tokens`.
//! - [`Kernels::matmul_multi`]: several matrices on the same input in one parallel region.
//! - [`MatmulScratch`]: preallocated activation-quantization space; the forward pass allocates
//!   nothing, so the scratch is sized once for the largest `n_tokens × cols`.
//! - [`dequantize_row`], f16 helpers ([`f16_to_f32`], [`f32_to_f16`], [`dot_f16`], [`axpy_f16`]).
//!
//! Numerics follow ggml: activations are quantized for each weight type's dot-product partner
//! (Q4_0/Q5_0/Q8_0 → Q8_0; Q4_1/Q5_1 → Q8_1; K-quants → Q8_K; F16/BF16 → rounded to f16/bf16),
//! integer sums are exact, and only the order of f32 accumulation differs between paths.
//!
//! Layout: `blocks` (block structs + scalar reference), `act` (activation quantization), `team`
//! (parallel regions), one file per instruction set with same-named kernels, `tests`.
//!
//! `FLASHSLIM_ISA=scalar|avx2|avx512|neon|neon-dotprod` forces a path (it must be supported by the
//! CPU); [`Kernels::isa`] reports the one in use.

pub mod act;
pub mod blocks;
mod scalar;
mod team;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "aarch64")]
mod neon;

#[cfg(test)]
mod tests;

use crate::gguf::GgmlType;
use act::{ActBuf, ActKind, ActRow, Acts, Par};
use blocks::*;

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

/// Space for quantized activations, allocated once: Q8_0/Q8_1 planes plus an f32 plane (the
/// largest format, for F16/BF16 weights), and Q8_K planes.
pub struct MatmulScratch {
    q8: ActBuf,
    q8k: ActBuf,
}

impl MatmulScratch {
    /// Room for `max_tokens` rows of up to `max_cols` activations.
    pub fn new(max_tokens: usize, max_cols: usize) -> Self {
        Self {
            q8: ActBuf::new(max_tokens, max_cols, true),
            q8k: ActBuf::new(max_tokens, max_cols, false),
        }
    }

    fn quantize<'s>(
        &'s mut self,
        kind: ActKind,
        isa: Isa,
        x: &'s [f32],
        n: usize,
        cols: usize,
        par: Par<'_>,
    ) -> Acts<'s> {
        let buf = match kind {
            ActKind::Q8K => &mut self.q8k,
            _ => &mut self.q8,
        };
        buf.quantize(kind, isa, x, n, cols, par)
    }
}

/// A kernel path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Portable reference.
    Scalar,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// x86-64 AVX-512 F/BW/VL + VNNI (on top of AVX2).
    Avx512,
    /// aarch64 Advanced SIMD.
    Neon,
    /// aarch64 Advanced SIMD with the dot-product extension (`sdot`).
    NeonDot,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
            Isa::NeonDot => "neon-dotprod",
        }
    }

    pub fn from_name(s: &str) -> Option<Isa> {
        [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon, Isa::NeonDot]
            .into_iter()
            .find(|i| i.name() == s)
    }

    /// Whether this CPU can run the path.
    pub fn supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                Isa::Avx2.supported()
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => true,
            #[cfg(target_arch = "aarch64")]
            Isa::NeonDot => std::arch::is_aarch64_feature_detected!("dotprod"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Every path this CPU supports, best last.
    pub fn available() -> Vec<Isa> {
        [Isa::Scalar, Isa::Neon, Isa::NeonDot, Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|i| i.supported())
            .collect()
    }

    /// The best supported path, or `FLASHSLIM_ISA` when set.
    pub fn detect() -> Isa {
        if let Ok(name) = std::env::var("FLASHSLIM_ISA") {
            let isa = Isa::from_name(name.trim()).unwrap_or_else(|| {
                panic!(
                    "FLASHSLIM_ISA={name}: unknown path (scalar, avx2, avx512, neon, neon-dotprod)"
                )
            });
            assert!(
                isa.supported(),
                "FLASHSLIM_ISA={name}: this CPU does not support that path (available: {})",
                Isa::available()
                    .iter()
                    .map(|i| i.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return isa;
        }
        *Isa::available().last().expect("scalar is always available")
    }
}

/// `out[t*stride + i] = row(i) · act(t)` for `i < nrows`, `t < a.n`; `w` holds exactly `nrows`
/// rows of `ty`.
pub(crate) type RowsFn =
    unsafe fn(ty: GgmlType, w: &[u8], nrows: usize, a: &Acts, out: *mut f32, stride: usize);

/// A kernel for one row of blocks against `T` token rows.
#[allow(dead_code)] // used by the SIMD paths of the target architecture only
pub(crate) type RowDotFn<B, const T: usize> = unsafe fn(&[B], &[ActRow; T]) -> [f32; T];

/// The one-row-at-a-time rows driver shared by the AVX2 and NEON paths: rows outer, tokens in
/// tiles of `TILE` sharing each unpacked block, the rest one at a time. `before_row(r)` runs
/// before row `r` (the AVX2 path prefetches there). Inlined into each path's `target_feature`
/// wrapper, so the dot kernels inline under that path's features.
///
/// # Safety
/// The dot kernels' CPU requirements hold; `out[t*stride + r]` is writable for `t < a.n`,
/// `r < nrows`; `w` holds `nrows` rows of `B` blocks.
#[allow(dead_code, clippy::too_many_arguments)]
#[inline(always)]
pub(crate) unsafe fn rows_tiled<B: Block, const TILE: usize>(
    w: &[u8],
    nrows: usize,
    a: &Acts,
    out: *mut f32,
    stride: usize,
    dot1: RowDotFn<B, 1>,
    dott: RowDotFn<B, TILE>,
    before_row: impl Fn(usize),
) {
    let rb = w.len() / nrows.max(1);
    // Token views once per call, not per row.
    let mut xs = [ActRow::EMPTY; 64];
    for t0 in (0..a.n).step_by(xs.len()) {
        let nt = (a.n - t0).min(xs.len());
        for (i, x) in xs[..nt].iter_mut().enumerate() {
            *x = a.row(t0 + i);
        }
        for r in 0..nrows {
            let row = B::slice(&w[r * rb..(r + 1) * rb]);
            before_row(r);
            let mut t = 0;
            while t + TILE <= nt {
                let tile: &[ActRow; TILE] = xs[t..t + TILE].try_into().expect("tile");
                // SAFETY: the kernels' requirements are the caller's; bounds per its contract.
                let v = unsafe { dott(row, tile) };
                for (i, v) in v.into_iter().enumerate() {
                    // SAFETY: `t0 + t + i < a.n`, `r < nrows`.
                    unsafe { *out.add((t0 + t + i) * stride + r) = v };
                }
                t += TILE;
            }
            while t < nt {
                // SAFETY: as above.
                unsafe { *out.add((t0 + t) * stride + r) = dot1(row, &[xs[t]])[0] };
                t += 1;
            }
        }
    }
}

/// THE dispatch point: the rows kernel of a path (each matches on the weight type; a type a
/// path has no kernel for goes to that path's fallback, in the end the scalar one).
pub(crate) fn rows_kernel(isa: Isa) -> RowsFn {
    match isa {
        Isa::Scalar => scalar::rows,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::rows,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => avx512::rows,
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => neon::rows,
        #[cfg(target_arch = "aarch64")]
        Isa::NeonDot => neon::rows_dot,
        #[allow(unreachable_patterns)]
        other => panic!(
            "kernel path {} is not compiled for this architecture",
            other.name()
        ),
    }
}

/// Thread pool plus the selected instruction set.
pub struct Kernels {
    pool: rayon::ThreadPool,
    team: team::Team,
    isa: Isa,
    rows: RowsFn,
}

/// Bytes ahead of the weights being read that the x86 kernels prefetch. Decode streams every
/// weight once per token and this machine's hardware prefetcher does not run far enough ahead:
/// measured on Q4_1 tg64 at 1 thread, 0 B → ~95 tok/s, 1 KiB → ~135, 4 KiB → ~155,
/// 8 KiB → ~185, 64 KiB → ~155 (latency × bandwidth ≈ 8 KiB). See docs/benchmarks.md.
#[allow(dead_code)] // the aarch64 kernels do not prefetch yet
const PREFETCH: usize = 8192;

/// Rows per work piece are a multiple of this (the widest register tile).
const ROW_ALIGN: usize = 16;
/// Most pieces one parallel region is cut into.
const MAX_CHUNKS: usize = 64;

impl Kernels {
    /// `threads` workers (the caller is one of them), best path or `FLASHSLIM_ISA`.
    pub fn new(threads: usize) -> Self {
        Self::with_isa(threads, Isa::detect())
    }

    /// A given path; panics when the CPU cannot run it.
    pub fn with_isa(threads: usize, isa: Isa) -> Self {
        assert!(
            isa.supported(),
            "kernel path {} is not supported by this CPU",
            isa.name()
        );
        let threads = threads.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("flashslim-w{i}"))
            .build()
            .expect("building the rayon pool");
        Self {
            pool,
            team: team::Team::new(threads),
            isa,
            rows: rows_kernel(isa),
        }
    }

    pub fn threads(&self) -> usize {
        self.team.threads()
    }

    /// Name of the selected kernel path (`scalar`, `avx2`, `avx512`, `neon`, `neon-dotprod`).
    pub fn isa(&self) -> &'static str {
        self.isa.name()
    }

    pub fn isa_kind(&self) -> Isa {
        self.isa
    }

    /// Run `f` inside this kernel set's thread pool.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }

    /// Run `body` on this thread with the other workers spinning, ready for parallel regions
    /// ([`Kernels::parallel`], matmuls). A forward pass wraps itself in one session; outside a
    /// session every region runs on the calling thread alone.
    pub fn session<R>(&self, body: impl FnOnce() -> R) -> R {
        self.team.session(&self.pool, body)
    }

    /// How many pieces per-token work on `n` tokens is cut into: 1 (the calling thread alone)
    /// for a few tokens, since one decode token is too little work to pay for a parallel
    /// region; else up to 4 per worker.
    pub fn token_chunks(&self, n: usize) -> usize {
        if n < 4 || self.threads() == 1 {
            1
        } else {
            n.min(4 * self.threads())
        }
    }

    /// `f(chunk, worker)` for every chunk in `0..n_chunks`, spread over the session's workers
    /// (`worker < threads()`).
    pub fn parallel(&self, n_chunks: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        self.team.run(n_chunks, f)
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
        let Some(first) = jobs.first() else { return };
        let cols = first.w.cols;
        for job in jobs.iter() {
            let w = job.w;
            assert!(
                w.cols == cols,
                "matmul_multi: matrices disagree on the input width ({} vs {cols})",
                w.cols
            );
            assert!(
                w.data.len() >= w.rows * w.row_bytes(),
                "matmul: {} matrix {}×{} needs {} bytes, got {}",
                w.ty,
                w.rows,
                w.cols,
                w.rows * w.row_bytes(),
                w.data.len()
            );
            assert!(
                x.len() >= n_tokens * cols && job.out.len() >= n_tokens * w.rows,
                "matmul: {n_tokens} tokens × {cols} cols needs {} inputs and {} outputs, got {} and {}",
                n_tokens * cols,
                n_tokens * w.rows,
                x.len(),
                job.out.len()
            );
        }
        // Jobs are grouped by the activation format they consume; usually there is one group.
        let mut done = [false; 8];
        assert!(
            jobs.len() <= done.len(),
            "matmul_multi: at most {} matrices",
            done.len()
        );
        for i in 0..jobs.len() {
            if done[i] {
                continue;
            }
            let kind = ActKind::of(jobs[i].w.ty);
            let mut group = [usize::MAX; 8];
            let mut ng = 0;
            for (j, job) in jobs.iter().enumerate() {
                if !done[j] && ActKind::of(job.w.ty) == kind {
                    done[j] = true;
                    group[ng] = j;
                    ng += 1;
                }
            }
            // Prefill batches quantize their token rows in parallel.
            let run = |c: usize, f: &(dyn Fn(usize, usize) + Sync)| self.team.run(c, f);
            let par = Par {
                chunks: self.token_chunks(n_tokens),
                run: &run,
            };
            let acts = scratch.quantize(kind, self.isa, x, n_tokens, cols, par);
            self.run_group(jobs, &group[..ng], &acts);
        }
    }

    fn run_group(&self, jobs: &mut [MatJob], group: &[usize], acts: &Acts) {
        // Cut every matrix into row pieces of about equal weight bytes.
        let total: usize = group.iter().map(|&j| jobs[j].w.data.len()).sum();
        let threads = self.threads();
        let target = if threads == 1 {
            1
        } else {
            (threads * 4).min(MAX_CHUNKS)
        };
        let piece_bytes = total.div_ceil(target).max(1);
        let mut chunks = [(0u8, 0u32, 0u32); MAX_CHUNKS + 8];
        let mut n = 0;
        for &j in group {
            let w = jobs[j].w;
            let rb = w.row_bytes();
            let pieces = (w.rows * rb).div_ceil(piece_bytes).clamp(1, MAX_CHUNKS);
            let step = w
                .rows
                .div_ceil(pieces)
                .next_multiple_of(ROW_ALIGN)
                .min(w.rows.max(1));
            let mut r = 0;
            while r < w.rows {
                let e = (r + step).min(w.rows);
                if n == chunks.len() {
                    // Out of slots: extend the last piece of this matrix to the end.
                    chunks[n - 1].2 = w.rows as u32;
                    break;
                }
                chunks[n] = (j as u8, r as u32, e as u32);
                n += 1;
                r = e;
            }
        }
        let outs: [SendPtr; 8] = std::array::from_fn(|j| {
            SendPtr(
                jobs.get_mut(j)
                    .map_or(std::ptr::null_mut(), |m| m.out.as_mut_ptr()),
            )
        });
        let mats: [Option<QMatrix>; 8] = std::array::from_fn(|j| jobs.get(j).map(|m| m.w));
        let rows_fn = self.rows;
        let chunks = &chunks[..n];
        self.team.run(n, &|c, _worker| {
            let (j, r0, r1) = chunks[c];
            let w = mats[j as usize].expect("chunk of a job");
            let (r0, r1) = (r0 as usize, r1 as usize);
            let rb = w.row_bytes();
            // SAFETY: pieces cover disjoint row ranges of each output, which holds
            // `n × w.rows` floats (checked in `matmul_multi`); the kernel writes
            // `out[t*rows + r]` for `r` in its range only.
            unsafe {
                rows_fn(
                    w.ty,
                    &w.data[r0 * rb..r1 * rb],
                    r1 - r0,
                    acts,
                    outs[j as usize].0.add(r0),
                    w.rows,
                )
            }
        });
    }
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: the pointer is only used for disjoint writes while the owning `&mut` borrow is held
// by `matmul_multi`.
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}

/// Dequantize one row (`out.len()` elements) of type `ty`.
pub fn dequantize_row(ty: GgmlType, row: &[u8], out: &mut [f32]) {
    let n = out.len();
    let need = ty.row_bytes(n as u64).unwrap_or_else(|| {
        panic!("dequantize_row: {n} elements is not a whole number of {ty} blocks")
    }) as usize;
    assert!(
        row.len() >= need,
        "dequantize_row: {n} {ty} elements need {need} bytes, got {}",
        row.len()
    );
    let row = &row[..need];
    match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => {
            let ft = float_ty(ty);
            for (i, o) in out.iter_mut().enumerate() {
                *o = ft.load(row, i);
            }
        }
        GgmlType::Q4_0 => dequantize_q4_0(BlockQ4_0::slice(row), out),
        GgmlType::Q4_1 => dequantize_q4_1(BlockQ4_1::slice(row), out),
        GgmlType::Q5_0 => dequantize_q5_0(BlockQ5_0::slice(row), out),
        GgmlType::Q5_1 => dequantize_q5_1(BlockQ5_1::slice(row), out),
        GgmlType::Q8_0 => dequantize_q8_0(BlockQ8_0::slice(row), out),
        GgmlType::Q4_K => dequantize_q4_k(BlockQ4K::slice(row), out),
        GgmlType::Q5_K => dequantize_q5_k(BlockQ5K::slice(row), out),
        GgmlType::Q6_K => dequantize_q6_k(BlockQ6K::slice(row), out),
        other => panic!("dequantize_row: no kernels for {other}"),
    }
}

pub(crate) fn float_ty(ty: GgmlType) -> FloatTy {
    match ty {
        GgmlType::F32 => FloatTy::F32,
        GgmlType::F16 => FloatTy::F16,
        GgmlType::BF16 => FloatTy::Bf16,
        other => panic!("{other} is not a float type"),
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

/// `dst[i] = f32_to_f16(src[i])` over the common length.
pub fn f32_to_f16_slice(dst: &mut [u16], src: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if fast_f16() {
        // SAFETY: F16C/AVX2 presence checked by `fast_f16`.
        return unsafe { avx2::f32_to_f16_slice(dst, src) };
    }
    scalar::f32_to_f16_slice(dst, src)
}

/// `dst[i] = f16_to_f32(src[i]) · mul` over the common length.
pub fn f16_to_f32_slice(dst: &mut [f32], src: &[u16], mul: f32) {
    #[cfg(target_arch = "x86_64")]
    if fast_f16() {
        // SAFETY: F16C/AVX2 presence checked by `fast_f16`.
        return unsafe { avx2::f16_to_f32_slice(dst, src, mul) };
    }
    scalar::f16_to_f32_slice(dst, src, mul)
}

/// Σ f16(k[i]) · q[i].
pub fn dot_f16(k: &[u16], q: &[f32]) -> f32 {
    assert_eq!(k.len(), q.len(), "dot_f16: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if fast_f16() {
        // SAFETY: F16C/AVX2/FMA presence checked by `fast_f16`.
        return unsafe { avx2::dot_f16(k, q) };
    }
    scalar::dot_f16(k, q)
}

/// out[i] += a · f16(v[i]).
pub fn axpy_f16(a: f32, v: &[u16], out: &mut [f32]) {
    assert_eq!(v.len(), out.len(), "axpy_f16: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if fast_f16() {
        // SAFETY: F16C/AVX2/FMA presence checked by `fast_f16`.
        return unsafe { avx2::axpy_f16(a, v, out) };
    }
    scalar::axpy_f16(a, v, out)
}

/// gate = silu(gate) · up with ggml's arithmetic (its AVX-512 `expf`, so results match
/// llama.cpp on x86 bit for bit; identical on every path of ours).
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len(), "swiglu: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if fast_f16() {
        // SAFETY: AVX2/FMA/F16C presence checked by `fast_f16`.
        return unsafe { avx2::swiglu(gate, up) };
    }
    scalar::swiglu(gate, up)
}

/// Online-softmax attention of one query head over `n_pos` cached f16 positions (keys at
/// `k[p*stride..]`, values at `v[p*stride..]`) with llama.cpp's flash-attention arithmetic (see
/// `scalar::attend_f16`); `acc` (f16, zeroed by the caller) receives the unnormalized output.
/// Returns the softmax denominator.
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
    assert!(
        acc.len() == hd
            && (n_pos == 0 || k.len().min(v.len()) >= (n_pos - 1) * stride + hd),
        "attend_f16: {n_pos} positions × stride {stride} + head {hd} exceed the cache ({} keys, {} values) or acc ({})",
        k.len(),
        v.len(),
        acc.len()
    );
    #[cfg(target_arch = "x86_64")]
    if fast_f16() && hd.is_multiple_of(64) {
        // SAFETY: AVX2/FMA/F16C presence checked by `fast_f16`; lengths asserted above.
        return unsafe { avx2::attend_f16(k, v, stride, n_pos, q16, scale, acc) };
    }
    scalar::attend_f16(k, v, stride, n_pos, q16, scale, acc)
}

/// Whether the x86 SIMD element-wise helpers may run (the CPU has AVX2/FMA/F16C and
/// `FLASHSLIM_ISA` is not `scalar`). On aarch64 these helpers are scalar for now.
#[cfg(target_arch = "x86_64")]
fn fast_f16() -> bool {
    use std::sync::OnceLock;
    static FAST: OnceLock<bool> = OnceLock::new();
    *FAST.get_or_init(|| {
        let isa = Isa::detect();
        isa != Isa::Scalar
    })
}
