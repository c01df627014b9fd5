// Small per-token ops of the forward pass: RMSNorm, RoPE tables and rotation, SwiGLU. They follow
// ggml's CPU arithmetic (f64 sum in RMSNorm, iterated theta in RoPE) so results track llama.cpp.

use super::RopeStyle;

/// out = x / sqrt(mean(x²) + eps) * w
pub fn rmsnorm(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let sum: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum();
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

/// Rotate the first `2 * cos.len()` dims of one head in place.
pub fn rope_apply(head: &mut [f32], cos: &[f32], sin: &[f32], style: RopeStyle) {
    let half = cos.len();
    match style {
        RopeStyle::Normal => {
            for i in 0..half {
                let (x0, x1) = (head[2 * i], head[2 * i + 1]);
                head[2 * i] = x0 * cos[i] - x1 * sin[i];
                head[2 * i + 1] = x0 * sin[i] + x1 * cos[i];
            }
        }
        RopeStyle::Neox => {
            for i in 0..half {
                let (x0, x1) = (head[i], head[i + half]);
                head[i] = x0 * cos[i] - x1 * sin[i];
                head[i + half] = x0 * sin[i] + x1 * cos[i];
            }
        }
    }
}

/// gate = silu(gate) * up
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
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
