// Kernel tests: activation quantization against ggml's rules, the scalar path against an f64
// dequantize reference, every SIMD path this CPU has against the scalar path (per-type
// tolerances), threading against one thread, and the f16 helpers.

use super::act::{quantize_q8, quantize_q8k, ActBuf, ActKind, Par};
use super::blocks::*;
use super::*;
use crate::gguf::GgmlType;

/// xorshift64*, deterministic test data.
pub(crate) struct Rng(u64);
impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub(crate) fn u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [lo, hi).
    pub(crate) fn f32(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.u64() >> 40) as f32 / (1u64 << 24) as f32)
    }
}

fn put_f16(bytes: &mut [u8], at: usize, v: f32) {
    bytes[at..at + 2].copy_from_slice(&f32_to_f16(v).to_le_bytes());
}

/// A random `rows × cols` matrix of `ty`: random codes, scales of a realistic magnitude.
pub(crate) fn random_matrix(ty: GgmlType, rows: usize, cols: usize, rng: &mut Rng) -> Vec<u8> {
    let rb = ty.row_bytes(cols as u64).unwrap() as usize;
    let mut w: Vec<u8> = (0..rows * rb).map(|_| rng.u64() as u8).collect();
    let bs = ty.type_size() as usize;
    match ty {
        GgmlType::F32 => {
            for c in w.chunks_exact_mut(4) {
                c.copy_from_slice(&rng.f32(-1.0, 1.0).to_le_bytes());
            }
        }
        GgmlType::F16 => {
            for c in w.chunks_exact_mut(2) {
                c.copy_from_slice(&f32_to_f16(rng.f32(-1.0, 1.0)).to_le_bytes());
            }
        }
        GgmlType::BF16 => {
            for c in w.chunks_exact_mut(2) {
                c.copy_from_slice(&f32_to_bf16(rng.f32(-1.0, 1.0)).to_le_bytes());
            }
        }
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => {
            for b in w.chunks_exact_mut(bs) {
                put_f16(b, 0, rng.f32(-0.05, 0.05));
            }
        }
        GgmlType::Q4_1 | GgmlType::Q5_1 => {
            for b in w.chunks_exact_mut(bs) {
                put_f16(b, 0, rng.f32(0.0, 0.05));
                put_f16(b, 2, rng.f32(-0.4, 0.1));
            }
        }
        GgmlType::Q4_K | GgmlType::Q5_K => {
            for b in w.chunks_exact_mut(bs) {
                put_f16(b, 0, rng.f32(0.0, 0.004));
                put_f16(b, 2, rng.f32(0.0, 0.01));
            }
        }
        GgmlType::Q6_K => {
            for b in w.chunks_exact_mut(bs) {
                put_f16(b, 208, rng.f32(-0.002, 0.002));
            }
        }
        other => panic!("no generator for {other}"),
    }
    w
}

const TYPES: [GgmlType; 11] = GgmlType::SUPPORTED;

fn test_cols(ty: GgmlType) -> &'static [usize] {
    if ty.block_size() == 256 {
        &[256, 1536]
    } else {
        &[32, 96, 576, 1536]
    }
}

/// Σ_c W[r][c] x[t][c] in f64 from dequantized weights and unquantized inputs, and Σ|w x|.
fn reference(
    ty: GgmlType,
    w: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    n: usize,
) -> (Vec<f64>, Vec<f64>) {
    let rb = ty.row_bytes(cols as u64).unwrap() as usize;
    let mut row = vec![0.0f32; cols];
    let mut out = vec![0.0; n * rows];
    let mut mag = vec![0.0; n * rows];
    for r in 0..rows {
        dequantize_row(ty, &w[r * rb..(r + 1) * rb], &mut row);
        for t in 0..n {
            let xt = &x[t * cols..(t + 1) * cols];
            out[t * rows + r] = row.iter().zip(xt).map(|(&a, &b)| a as f64 * b as f64).sum();
            mag[t * rows + r] = row
                .iter()
                .zip(xt)
                .map(|(&a, &b)| (a as f64 * b as f64).abs())
                .sum();
        }
    }
    (out, mag)
}

/// Allowed |scalar − f64 reference| / Σ|w·x|: activation rounding (Q8: ≤ 0.6 steps of amax/127
/// per element; f16: 2⁻¹¹; bf16: 2⁻⁸) plus f32 accumulation.
fn tol_vs_f32(ty: GgmlType) -> f64 {
    match ty {
        GgmlType::F32 => 1e-5,
        GgmlType::F16 => 1e-3,
        GgmlType::BF16 => 8e-3,
        _ => 2e-2,
    }
}

/// Allowed |SIMD − scalar| / Σ|w·x|. Quantized types: zero — every path computes the same exact
/// integer lane sums and accumulates them in the same f32 order (ggml's x86 order, see `blocks`),
/// so results are bit-identical. Float weights: only the f32 summation order differs.
fn tol_vs_scalar(ty: GgmlType) -> f64 {
    match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1e-5,
        _ => 0.0,
    }
}

fn run(
    k: &Kernels,
    ty: GgmlType,
    w: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    n: usize,
) -> Vec<f32> {
    let mut out = vec![f32::NAN; n * rows];
    let mut scratch = MatmulScratch::new(n, cols);
    let m = QMatrix {
        ty,
        rows,
        cols,
        data: w,
    };
    k.session(|| k.matmul(m, x, n, &mut out, &mut scratch));
    out
}

fn inputs(n: usize, cols: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n * cols).map(|_| rng.f32(-2.0, 2.0)).collect()
}

#[test]
fn scalar_matches_f32_dequantize_reference() {
    let k = Kernels::with_isa(1, Isa::Scalar);
    let mut rng = Rng::new(1);
    for ty in TYPES {
        for &cols in test_cols(ty) {
            let (rows, n) = (19, 3);
            let w = random_matrix(ty, rows, cols, &mut rng);
            let x = inputs(n, cols, &mut rng);
            let got = run(&k, ty, &w, rows, cols, &x, n);
            let (want, mag) = reference(ty, &w, rows, cols, &x, n);
            for i in 0..got.len() {
                let err = (got[i] as f64 - want[i]).abs();
                assert!(
                    err <= tol_vs_f32(ty) * mag[i] + 1e-6,
                    "{ty} cols {cols} output {i}: scalar {} vs f64 {} (err {err:.3e}, Σ|wx| {:.3e}, tol {:.1e})",
                    got[i],
                    want[i],
                    mag[i],
                    tol_vs_f32(ty)
                );
            }
        }
    }
}

#[test]
fn every_simd_path_matches_scalar() {
    let scalar = Kernels::with_isa(1, Isa::Scalar);
    let paths: Vec<Isa> = Isa::available()
        .into_iter()
        .filter(|&i| i != Isa::Scalar)
        .collect();
    // One write(2) for the whole line: suite 60 greps it, and with `--nocapture` the harness's
    // "test ... ok" lines from other threads used to land in the middle of a multi-part eprintln.
    let line = format!(
        "SIMD paths under test: {:?}\n",
        paths.iter().map(|i| i.name()).collect::<Vec<_>>()
    );
    std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes()).unwrap();
    let mut rng = Rng::new(2);
    for isa in paths {
        let k = Kernels::with_isa(1, isa);
        for ty in TYPES {
            for &cols in test_cols(ty) {
                // Token counts cover the decode path, partial tiles and several full tiles.
                for n in [1, 2, 5, 8, 19] {
                    let rows = 37;
                    let w = random_matrix(ty, rows, cols, &mut rng);
                    let x = inputs(n, cols, &mut rng);
                    let want = run(&scalar, ty, &w, rows, cols, &x, n);
                    let got = run(&k, ty, &w, rows, cols, &x, n);
                    let (_, mag) = reference(ty, &w, rows, cols, &x, n);
                    for i in 0..got.len() {
                        let err = (got[i] as f64 - want[i] as f64).abs();
                        assert!(
                            err <= tol_vs_scalar(ty) * mag[i] + if tol_vs_scalar(ty) == 0.0 { 0.0 } else { 1e-6 },
                            "{} {ty} cols {cols} tokens {n} output {i} (token {}, row {}): {} vs scalar {} \
                             (err {err:.3e}, Σ|wx| {:.3e}, tol {:.1e})",
                            isa.name(),
                            i / rows,
                            i % rows,
                            got[i],
                            want[i],
                            mag[i],
                            tol_vs_scalar(ty)
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn threads_and_multi_jobs_match_one_thread() {
    let mut rng = Rng::new(3);
    let isa = Isa::detect();
    let one = Kernels::with_isa(1, isa);
    let three = Kernels::with_isa(3, isa);
    let (cols, n) = (576, 6);
    let x = inputs(n, cols, &mut rng);
    let shapes = [
        (GgmlType::Q5_0, 200),
        (GgmlType::Q8_0, 64),
        (GgmlType::Q4_1, 131),
    ];
    let ws: Vec<Vec<u8>> = shapes
        .iter()
        .map(|&(ty, r)| random_matrix(ty, r, cols, &mut rng))
        .collect();
    let mut outs: Vec<Vec<f32>> = shapes.iter().map(|&(_, r)| vec![f32::NAN; n * r]).collect();
    let mut scratch = MatmulScratch::new(n, cols);
    three.session(|| {
        let mut jobs: Vec<MatJob> = outs
            .iter_mut()
            .zip(&ws)
            .zip(&shapes)
            .map(|((o, w), &(ty, rows))| MatJob {
                w: QMatrix {
                    ty,
                    rows,
                    cols,
                    data: w,
                },
                out: o,
            })
            .collect();
        // Several regions in one session, as in a forward pass.
        for _ in 0..3 {
            three.matmul_multi(&mut jobs, &x, n, &mut scratch);
        }
    });
    for ((o, w), &(ty, rows)) in outs.iter().zip(&ws).zip(&shapes) {
        let want = run(&one, ty, w, rows, cols, &x, n);
        assert_eq!(o, &want, "{ty}: 3 threads differ from 1");
    }
}

#[test]
fn parallel_covers_every_chunk_once() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let k = Kernels::with_isa(2, Isa::Scalar);
    let hits: Vec<AtomicU32> = (0..1000).map(|_| AtomicU32::new(0)).collect();
    k.session(|| {
        for round in 0..50 {
            k.parallel(17 + round, &|c, w| {
                assert!(w < 2, "worker {w} out of range");
                hits[c].fetch_add(1, Ordering::Relaxed);
            });
        }
    });
    for (c, h) in hits.iter().enumerate() {
        let want = (0..50).filter(|r| c < 17 + r).count() as u32;
        assert_eq!(h.load(Ordering::Relaxed), want, "chunk {c}");
    }
}

#[test]
fn q8_quantization_follows_ggml() {
    // amax 2.54 → d = 0.02 (stored f16-rounded), codes round(x · 127/2.54) half to even.
    let mut x = [0.0f32; 32];
    x[0] = 2.54;
    x[1] = -2.54;
    x[2] = 0.03; // 1.5 → 2 (ties to even)
    x[3] = 0.05; // 2.5 → 2
    x[4] = -0.07; // −3.5 → −4
    let (mut qs, mut d, mut s, mut sum) = ([0i8; 32], [0.0f32], [0.0f32], [0i32]);
    quantize_q8(&x, &mut qs, &mut d, &mut s, &mut sum);
    assert_eq!(&qs[..5], &[127, -127, 2, 2, -4]);
    assert_eq!(d[0], f16_to_f32(f32_to_f16(2.54 / 127.0)));
    assert_eq!(sum[0], 2 + 2 - 4);
    assert_eq!(s[0], f16_to_f32(f32_to_f16(2.54 / 127.0 * 0.0)));
    // All zeros: zero scale, zero codes.
    quantize_q8(&[0.0; 32], &mut qs, &mut d, &mut s, &mut sum);
    assert_eq!((qs, d[0], s[0]), ([0; 32], 0.0, 0.0));
}

#[test]
fn q8k_quantization_follows_ggml() {
    // The scale comes from the signed extreme: a positive max gives a negative d, codes of the
    // max are −127.
    let mut x = [0.1f32; 256];
    x[7] = 3.0;
    x[9] = -2.0;
    let (mut qs, mut d, mut bs) = ([0i8; 256], [0.0f32], [0i16; 16]);
    quantize_q8k(&x, &mut qs, &mut d, &mut bs);
    assert_eq!(qs[7], -127);
    assert_eq!(qs[9], (-127.0f32 / 3.0 * -2.0).round_ties_even() as i8);
    assert_eq!(d[0], 1.0 / (-127.0 / 3.0));
    assert_eq!(bs[0], qs[..16].iter().map(|&q| q as i16).sum::<i16>());
    for i in 0..256 {
        assert!(
            (qs[i] as f32 * d[0] - x[i]).abs() <= 3.0 / 127.0 * 0.51,
            "element {i}"
        );
    }
}

/// Activation rows that exercise the quantizers' edge cases: random magnitudes, an all-zero
/// block, exact ±extreme ties (the Q8_K sign rule), halves that round to even.
fn awkward_activations(n: usize, cols: usize, rng: &mut Rng) -> Vec<f32> {
    let mut x = inputs(n, cols, rng);
    x[..QK_K.min(cols)].fill(0.0);
    if n * cols >= 2 * QK_K {
        let b = &mut x[QK_K..2 * QK_K];
        b[40] = -3.0;
        b[7] = 3.0; // first of the tie: positive extreme wins
        b[8] = 1.5 * 3.0 / 127.0;
    }
    if n * cols >= 3 * QK_K {
        let b = &mut x[2 * QK_K..3 * QK_K];
        b[3] = -2.5;
        b[200] = 2.5; // first of the tie: negative extreme wins
    }
    x
}

/// Every plane of quantized activations, owned (for comparing two quantizations).
#[allow(clippy::type_complexity)]
fn planes(a: &Acts) -> (Vec<i8>, Vec<f32>, Vec<f32>, Vec<i32>, Vec<i16>, Vec<f32>) {
    (
        a.qs.to_vec(),
        a.d.to_vec(),
        a.s.to_vec(),
        a.sum32.to_vec(),
        a.bsums.to_vec(),
        a.f.to_vec(),
    )
}

#[test]
fn simd_and_parallel_quantization_match_scalar() {
    let mut rng = Rng::new(11);
    let (n, cols) = (7, 1536);
    let x = awkward_activations(n, cols, &mut rng);
    let serial = |kind| {
        let mut b = ActBuf::new(n, cols, true);
        planes(&b.quantize(kind, Isa::Scalar, &x, n, cols, Par::SERIAL))
    };
    let three = Kernels::with_isa(3, Isa::detect());
    for isa in Isa::available() {
        for kind in [ActKind::Q8, ActKind::Q8K, ActKind::Float(FloatTy::F16)] {
            let want = serial(kind);
            for chunks in [1, 3, 7] {
                let mut b = ActBuf::new(n, cols, true);
                let got = three.session(|| {
                    let run = |c: usize, f: &(dyn Fn(usize, usize) + Sync)| three.parallel(c, f);
                    planes(&b.quantize(kind, isa, &x, n, cols, Par { chunks, run: &run }))
                });
                assert!(
                    got == want,
                    "{} {kind:?} in {chunks} chunks differs from the scalar quantizer",
                    isa.name()
                );
            }
        }
    }
}

#[test]
fn float_activations_are_rounded_like_ggml() {
    let mut buf = ActBuf::new(1, 8, true);
    let x = [
        1.0f32 + 1.0 / 4096.0,
        2.71,
        -2.7182817,
        1e-8,
        65504.0,
        0.1,
        0.2,
        0.3,
    ];
    let a = buf.quantize(
        ActKind::Float(FloatTy::F16),
        Isa::Scalar,
        &x,
        1,
        8,
        Par::SERIAL,
    );
    for (r, &v) in a.f.iter().zip(&x) {
        assert_eq!(*r, f16_to_f32(f32_to_f16(v)));
    }
    assert_eq!(a.f[0], 1.0, "1 + 2^-12 rounds to even (1.0) in f16");
    let a = buf.quantize(
        ActKind::Float(FloatTy::Bf16),
        Isa::Scalar,
        &x,
        1,
        8,
        Par::SERIAL,
    );
    assert_eq!(a.f[1], f32::from_bits(0x402d_0000), "2.71 in bf16");
}

#[test]
fn dequantize_known_blocks() {
    // Q4_0: d = 0.5, nibbles 0..15 → (q − 8) · 0.5.
    let mut b = vec![0u8; 18];
    put_f16(&mut b, 0, 0.5);
    for j in 0..16 {
        b[2 + j] = (j as u8) | (((15 - j) as u8) << 4);
    }
    let mut out = [0.0f32; 32];
    dequantize_row(GgmlType::Q4_0, &b, &mut out);
    for j in 0..16 {
        assert_eq!(out[j], (j as f32 - 8.0) * 0.5);
        assert_eq!(out[j + 16], (7.0 - j as f32) * 0.5);
    }
    // Q5_1: bit j of qh adds 16 to element j.
    let mut b = vec![0u8; 24];
    put_f16(&mut b, 0, 1.0);
    put_f16(&mut b, 2, -1.0);
    b[4..8].copy_from_slice(&(1u32 << 3 | 1u32 << 20).to_le_bytes());
    dequantize_row(GgmlType::Q5_1, &b, &mut out);
    assert_eq!(out[3], 15.0);
    assert_eq!(out[20], 15.0);
    assert_eq!(out[0], -1.0);
    // Q4_1: d · q + m.
    let mut b = vec![0u8; 20];
    put_f16(&mut b, 0, 0.25);
    put_f16(&mut b, 2, -2.0);
    b[4 + 5] = 0x3c; // element 5 → 12, element 21 → 3
    dequantize_row(GgmlType::Q4_1, &b, &mut out);
    assert_eq!((out[5], out[21], out[0]), (1.0, -1.25, -2.0));
    // Q5_0: (q − 16) · d, fifth bit from qh.
    let mut b = vec![0u8; 22];
    put_f16(&mut b, 0, 2.0);
    b[2..6].copy_from_slice(&(1u32 << 17).to_le_bytes());
    b[6 + 1] = 0x70; // element 17: nibble 7 + 16
    dequantize_row(GgmlType::Q5_0, &b, &mut out);
    assert_eq!((out[17], out[1], out[0]), (14.0, -32.0, -32.0));
    // Q8_0: d · q.
    let mut b = vec![0u8; 34];
    put_f16(&mut b, 0, 0.5);
    b[2 + 31] = (-7i8) as u8;
    dequantize_row(GgmlType::Q8_0, &b, &mut out);
    assert_eq!((out[31], out[0]), (-3.5, 0.0));
    // Q4_K / Q5_K: sub-block 5 uses scale (s[9]&15 | (s[1]>>6)<<4), min (s[9]>>4 | (s[5]>>6)<<4);
    // its elements 160.. are the high nibbles of qs[32*2..].
    for ty in [GgmlType::Q4_K, GgmlType::Q5_K] {
        let size = ty.type_size() as usize;
        let mut b = vec![0u8; size];
        put_f16(&mut b, 0, 0.5);
        put_f16(&mut b, 2, 0.25);
        b[4 + 9] = 0x3 << 4 | 0x2; // scale low bits 2, min low bits 3
        b[4 + 1] = 0b01 << 6; // scale high bits 1 → scale 18
        b[4 + 5] = 0b10 << 6; // min high bits 2 → min 35
        let qs = if ty == GgmlType::Q4_K { 16 } else { 48 };
        b[qs + 64 + 3] = 0x90; // element 160 + 3: nibble 9
        if ty == GgmlType::Q5_K {
            b[16 + 3] = 1 << 5; // fifth bit of sub-block 5, element 3
        }
        let mut out = [0.0f32; 256];
        dequantize_row(ty, &b, &mut out);
        let q = if ty == GgmlType::Q4_K { 9.0 } else { 25.0 };
        assert_eq!(out[163], 0.5 * 18.0 * q - 0.25 * 35.0, "{ty}");
        assert_eq!(out[162], -0.25 * 35.0, "{ty}");
    }
    // Q6_K: element 0 = d · sc_0 · (ql&15 | (qh&3)<<4 − 32).
    let mut b = vec![0u8; 210];
    b[0] = 0x0a; // ql low nibble 10
    b[128] = 0b10; // qh bits → 2 << 4 = 32
    b[192] = 3; // scale 3
    put_f16(&mut b, 208, 0.25);
    let mut out = [0.0f32; 256];
    dequantize_row(GgmlType::Q6_K, &b, &mut out);
    assert_eq!(out[0], 0.25 * 3.0 * (10.0 + 32.0 - 32.0));
}

#[test]
fn f16_helpers_match_scalar() {
    let mut rng = Rng::new(4);
    for n in [1, 7, 16, 64, 67] {
        let k: Vec<u16> = (0..n).map(|_| f32_to_f16(rng.f32(-3.0, 3.0))).collect();
        let q: Vec<f32> = (0..n).map(|_| rng.f32(-3.0, 3.0)).collect();
        let mag: f32 = k
            .iter()
            .zip(&q)
            .map(|(&a, &b)| (f16_to_f32(a) * b).abs())
            .sum();
        let (fast, slow) = (dot_f16(&k, &q), scalar::dot_f16(&k, &q));
        assert!(
            (fast - slow).abs() <= 1e-5 * mag + 1e-6,
            "dot_f16 n={n}: {fast} vs {slow}"
        );
        let mut o1 = q.clone();
        let mut o2 = q.clone();
        axpy_f16(0.37, &k, &mut o1);
        scalar::axpy_f16(0.37, &k, &mut o2);
        for i in 0..n {
            assert!(
                (o1[i] - o2[i]).abs() <= 1e-6 * (1.0 + o2[i].abs()),
                "axpy_f16 n={n} i={i}"
            );
        }
    }
}

#[test]
fn attention_head_matches_scalar_bit_for_bit() {
    let mut rng = Rng::new(5);
    for (hd, stride, n_pos) in [(64, 192, 1), (64, 192, 37), (128, 256, 20), (64, 64, 129)] {
        let len = (n_pos - 1) * stride + hd;
        let k: Vec<u16> = (0..len).map(|_| f32_to_f16(rng.f32(-2.0, 2.0))).collect();
        let v: Vec<u16> = (0..len).map(|_| f32_to_f16(rng.f32(-2.0, 2.0))).collect();
        let q: Vec<f32> = (0..hd)
            .map(|_| f16_to_f32(f32_to_f16(rng.f32(-2.0, 2.0))))
            .collect();
        let (mut a1, mut a2) = (vec![0u16; hd], vec![0u16; hd]);
        let s1 = attend_f16(&k, &v, stride, n_pos, &q, 0.125, &mut a1);
        let s2 = scalar::attend_f16(&k, &v, stride, n_pos, &q, 0.125, &mut a2);
        assert_eq!(
            s1.to_bits(),
            s2.to_bits(),
            "softmax sum, head {hd}, {n_pos} positions"
        );
        assert_eq!(a1, a2, "accumulator, head {hd}, {n_pos} positions");
        assert!(a1.iter().any(|&h| h != 0), "the accumulator was written");
    }
}

#[test]
fn f16_slice_conversions_match_scalar() {
    let mut rng = Rng::new(6);
    // Random values, ties, subnormals, overflow, a length with a tail.
    let mut x: Vec<f32> = (0..1003)
        .map(|_| rng.f32(-70000.0, 70000.0) / 2f32.powi((rng.u64() % 40) as i32))
        .collect();
    x[..6].copy_from_slice(&[
        1.0 + 1.0 / 2048.0,
        1.0 + 3.0 / 2048.0,
        6e-8,
        -3e-5,
        65520.0,
        -0.0,
    ]);
    let mut h = vec![0u16; x.len()];
    f32_to_f16_slice(&mut h, &x);
    for (i, (&hv, &xv)) in h.iter().zip(&x).enumerate() {
        assert_eq!(hv, f32_to_f16(xv), "element {i}: {xv}");
    }
    let halves: Vec<u16> = (0..=u16::MAX)
        .filter(|&b| !f16_to_f32(b).is_nan())
        .collect();
    let mut f = vec![0.0f32; halves.len()];
    f16_to_f32_slice(&mut f, &halves, 0.75);
    for (&hv, &fv) in halves.iter().zip(&f) {
        assert_eq!(
            fv.to_bits(),
            (f16_to_f32(hv) * 0.75).to_bits(),
            "half {hv:#06x}"
        );
    }
}

#[test]
fn f16_conversion_roundtrips() {
    for h in 0..=u16::MAX {
        let f = f16_to_f32(h);
        if f.is_nan() {
            continue;
        }
        assert_eq!(f32_to_f16(f), h, "half {h:#06x} → {f}");
    }
}

#[test]
fn sessions_from_two_threads_do_not_mix() {
    // One `Kernels` shared by two threads: whichever opens its session second runs its regions
    // alone, and both get the right answers.
    let mut rng = Rng::new(5);
    let (ty, rows, cols, n) = (GgmlType::Q4_1, 96, 576, 2);
    let w = random_matrix(ty, rows, cols, &mut rng);
    let x = inputs(n, cols, &mut rng);
    let want = run(
        &Kernels::with_isa(1, Isa::Scalar),
        ty,
        &w,
        rows,
        cols,
        &x,
        n,
    );
    let k = Kernels::with_isa(2, Isa::detect());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..20 {
                    assert_eq!(run(&k, ty, &w, rows, cols, &x, n), want);
                }
            });
        }
    });
}
