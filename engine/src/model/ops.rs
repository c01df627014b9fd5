// Small per-token ops of the forward pass: RMSNorm, RoPE tables and rotation, SwiGLU. They follow
// ggml's x86 CPU arithmetic to the bit (f32 squares summed in f64 in RMSNorm, iterated theta and
// the fused multiply-adds of its vectorized rotation in RoPE, its `expf` in SwiGLU) so greedy
// decoding tracks llama.cpp through near-ties.

use super::RopeStyle;

/// out = x / sqrt(mean(x²) + eps) * w
pub fn rmsnorm(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let sum: f64 = x.iter().map(|&v| (v * v) as f64).sum();
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for ((o, &xi), &wi) in out.iter_mut().zip(x).zip(w) {
        *o = (xi * scale) * wi;
    }
}

/// cos/sin for every rotated pair at position `pos` (`cos.len() == rope_dim / 2`).
pub fn rope_table(
    pos: usize,
    rope_dim: usize,
    base: f32,
    freq_scale: f32,
    freq_factors: Option<&[f32]>,
    cos: &mut [f32],
    sin: &mut [f32],
) {
    let theta_scale = base.powf(-2.0 / rope_dim as f32);
    let mut theta = pos as f32;
    for i in 0..rope_dim / 2 {
        let ff = freq_factors.map_or(1.0, |f| f[i]);
        let t = freq_scale * (theta / ff);
        cos[i] = t.cos();
        sin[i] = t.sin();
        theta *= theta_scale;
    }
}

/// Rotate the first `2 * cos.len()` dims of one head in place. As ggml's compiled (vectorized)
/// rotation: `fma(x0, cos, −x1·sin)` and `fma(x0, sin, x1·cos)`, the second products rounded
/// first.
pub fn rope_apply(head: &mut [f32], cos: &[f32], sin: &[f32], style: RopeStyle) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: FMA presence checked just above.
        return unsafe { rope_apply_fma(head, cos, sin, style) };
    }
    rope_apply_body(head, cos, sin, style)
}

/// The same body compiled with FMA, so `mul_add` is one instruction instead of a libm call
/// (identical results: both are the fused operation).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn rope_apply_fma(head: &mut [f32], cos: &[f32], sin: &[f32], style: RopeStyle) {
    rope_apply_body(head, cos, sin, style)
}

#[inline(always)]
fn rope_apply_body(head: &mut [f32], cos: &[f32], sin: &[f32], style: RopeStyle) {
    let half = cos.len();
    let rot = |x0: f32, x1: f32, c: f32, s: f32| (x0.mul_add(c, -(x1 * s)), x0.mul_add(s, x1 * c));
    match style {
        RopeStyle::Normal => {
            for i in 0..half {
                (head[2 * i], head[2 * i + 1]) = rot(head[2 * i], head[2 * i + 1], cos[i], sin[i]);
            }
        }
        RopeStyle::Neox => {
            for i in 0..half {
                (head[i], head[i + half]) = rot(head[i], head[i + half], cos[i], sin[i]);
            }
        }
    }
}

/// gate = silu(gate) * up (ggml's arithmetic, see [`crate::kernels::swiglu`]).
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    crate::kernels::swiglu(gate, up)
}

pub fn add_in_place(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rmsnorm_unit_weights_gives_unit_rms() {
        let x = [3.0f32, -4.0, 0.0, 5.0];
        let mut y = [0.0; 4];
        rmsnorm(&mut y, &x, &[1.0; 4], 0.0);
        let rms = (y.iter().map(|v| v * v).sum::<f32>() / 4.0).sqrt();
        assert!((rms - 1.0).abs() < 1e-6);
    }

    #[test]
    fn rope_at_position_zero_is_identity_and_preserves_norm() {
        let (mut c, mut s) = ([0.0; 4], [0.0; 4]);
        rope_table(0, 8, 10000.0, 1.0, None, &mut c, &mut s);
        let mut h = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let orig = h;
        rope_apply(&mut h, &c, &s, RopeStyle::Normal);
        assert_eq!(h, orig);
        rope_table(17, 8, 10000.0, 1.0, None, &mut c, &mut s);
        for style in [RopeStyle::Normal, RopeStyle::Neox] {
            let mut h2 = orig;
            rope_apply(&mut h2, &c, &s, style);
            let n0: f32 = orig.iter().map(|v| v * v).sum();
            let n1: f32 = h2.iter().map(|v| v * v).sum();
            assert!((n0 - n1).abs() < 1e-3, "{style:?}");
            assert_ne!(h2, orig);
        }
    }
}
