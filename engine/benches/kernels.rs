// Kernel micro-benchmarks (`cargo bench -p flashslim-engine --bench kernels`): one thread, every
// weight type and kernel path this CPU has, matrix-vector (decode) and matrix-matrix (a 32-token
// prefill tile) on an FFN-sized matrix, plus the 49152×576 Q8_0 output head. Each case runs in
// two groups: `*_gbs` reports weight bytes per second, `*_gflops` floating-point operations
// (2·rows·cols·tokens) per second. Random weights with realistic scales; activation quantization
// is included in the timing, as in the engine. Filter with a criterion pattern, e.g.
// `cargo bench -p flashslim-engine --bench kernels -- 'matvec_gbs/Q4_1'`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use flashslim::gguf::GgmlType;
use flashslim::kernels::{f32_to_f16, Isa, Kernels, MatmulScratch, QMatrix};
use std::time::Duration;

/// Matrix shape per type: 1536×576 (FFN gate/up) for 32-element formats, 576×1536 (FFN down)
/// where rows must be whole 256-element super-blocks.
fn shape(ty: GgmlType) -> (usize, usize) {
    if ty.block_size() == 256 {
        (576, 1536)
    } else {
        (1536, 576)
    }
}

/// Deterministic random bytes with f16 scale fields set to sane values (NaN/huge scales would
/// change nothing in the timing, but keep the data realistic).
fn matrix(ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let rb = ty.row_bytes(cols as u64).unwrap() as usize;
    let mut w: Vec<u8> = (0..rows * rb).map(|_| next() as u8).collect();
    let scale = f32_to_f16(0.01).to_le_bytes();
    let bs = ty.type_size() as usize;
    let scale_at: &[usize] = match ty {
        GgmlType::F32 => {
            for c in w.chunks_exact_mut(4) {
                c.copy_from_slice(&((next() % 2000) as f32 / 1000.0 - 1.0).to_le_bytes());
            }
            &[]
        }
        GgmlType::F16 | GgmlType::BF16 => {
            for c in w.chunks_exact_mut(2) {
                c[1] &= 0x3f; // small finite values in both formats
            }
            &[]
        }
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::Q6_K => &[208],
        _ => &[0],
    };
    for b in w.chunks_exact_mut(bs) {
        for &at in scale_at {
            b[at..at + 2].copy_from_slice(&scale);
        }
    }
    w
}

fn paths() -> Vec<Isa> {
    Isa::available()
}

fn bench_case(c: &mut Criterion, op: &str, ty: GgmlType, rows: usize, cols: usize, n: usize) {
    let w = matrix(ty, rows, cols);
    let x: Vec<f32> = (0..n * cols)
        .map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    let mut out = vec![0.0f32; n * rows];
    let m = QMatrix {
        ty,
        rows,
        cols,
        data: &w,
    };
    for unit in ["gbs", "gflops"] {
        let mut g = c.benchmark_group(format!("{op}_{unit}"));
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(800));
        g.throughput(if unit == "gbs" {
            Throughput::Bytes(w.len() as u64)
        } else {
            Throughput::Elements((2 * rows * cols * n) as u64)
        });
        for isa in paths() {
            let k = Kernels::with_isa(1, isa);
            let mut scratch = MatmulScratch::new(n, cols);
            g.bench_function(BenchmarkId::new(ty.name(), isa.name()), |b| {
                b.iter(|| k.matmul(m, &x, n, &mut out, &mut scratch))
            });
        }
        g.finish();
    }
}

fn kernels(c: &mut Criterion) {
    for ty in GgmlType::SUPPORTED {
        let (rows, cols) = shape(ty);
        bench_case(c, "matvec", ty, rows, cols, 1);
        bench_case(c, "matmul32", ty, rows, cols, 32);
    }
    // The tied output head of SmolLM2 (30 MB of Q8_0 per decoded token).
    bench_case(c, "head_matvec", GgmlType::Q8_0, 49152, 576, 1);
}

criterion_group!(benches, kernels);
criterion_main!(benches);
