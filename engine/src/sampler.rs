//! Token sampling with llama.cpp's chain and defaults: repeat penalty → top-k → top-p → min-p →
//! temperature → draw. `temp <= 0` is greedy (argmax after penalties). The RNG is a seeded
//! xorshift64* whose state lives in the sampler; the candidate buffer is allocated once.

/// Sampling parameters (`flashslim run` flags).
#[derive(Clone, Debug, serde::Serialize)]
pub struct SamplerConfig {
    pub temp: f32,
    /// 0 disables.
    pub top_k: usize,
    /// 1.0 disables.
    pub top_p: f32,
    /// 0.0 disables.
    pub min_p: f32,
    /// 1.0 disables.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temp: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
        }
    }
}

pub struct Sampler {
    pub config: SamplerConfig,
    rng: u64,
    cand: Vec<(u32, f32)>,
    recent: Vec<u32>,
}

impl Sampler {
    pub fn new(config: SamplerConfig, n_vocab: usize) -> Self {
        // Mix the seed so nearby seeds give unrelated streams; the state must never be 0.
        let mut rng = config.seed ^ 0x9E37_79B9_7F4A_7C15;
        rng = splitmix(&mut rng);
        if rng == 0 {
            rng = 1;
        }
        Sampler {
            rng,
            cand: Vec::with_capacity(n_vocab),
            recent: Vec::with_capacity(config.repeat_last_n + 1),
            config,
        }
    }

    /// Record a token as context for the repeat penalty (prompt tokens and sampled ones).
    pub fn accept(&mut self, tok: u32) {
        if self.config.repeat_last_n == 0 {
            return;
        }
        if self.recent.len() == self.config.repeat_last_n {
            self.recent.remove(0);
        }
        self.recent.push(tok);
    }

    fn next_f32(&mut self) -> f32 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (r >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Pick the next token from `logits` (one row of `n_vocab`).
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let c = self.config.clone();
        self.cand.clear();
        self.cand
            .extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l)));
        if c.repeat_penalty != 1.0 {
            let mut seen = self.recent.clone();
            seen.sort_unstable();
            seen.dedup();
            for t in seen {
                if let Some(e) = self.cand.get_mut(t as usize) {
                    e.1 = if e.1 > 0.0 {
                        e.1 / c.repeat_penalty
                    } else {
                        e.1 * c.repeat_penalty
                    };
                }
            }
        }
        if c.temp <= 0.0 {
            return argmax(&self.cand);
        }
        // top-k: keep the k best, sorted descending.
        let by_logit_desc =
            |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if c.top_k > 0 && c.top_k < self.cand.len() {
            self.cand.select_nth_unstable_by(c.top_k - 1, by_logit_desc);
            self.cand.truncate(c.top_k);
        }
        self.cand.sort_unstable_by(by_logit_desc);
        // top-p on the untempered distribution.
        if c.top_p < 1.0 {
            let max = self.cand[0].1;
            let total: f64 = self.cand.iter().map(|e| ((e.1 - max) as f64).exp()).sum();
            let mut cum = 0.0;
            let mut keep = self.cand.len();
            for (i, e) in self.cand.iter().enumerate() {
                cum += ((e.1 - max) as f64).exp() / total;
                if cum >= c.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            self.cand.truncate(keep.max(1));
        }
        // min-p: p_i >= min_p * p_max  <=>  logit_i >= logit_max + ln(min_p).
        if c.min_p > 0.0 {
            let floor = self.cand[0].1 + c.min_p.ln();
            let keep = self.cand.iter().take_while(|e| e.1 >= floor).count().max(1);
            self.cand.truncate(keep);
        }
        // temperature, softmax, draw.
        let max = self.cand[0].1 / c.temp;
        let mut total = 0.0f64;
        for e in self.cand.iter_mut() {
            e.1 = ((e.1 / c.temp - max) as f64).exp() as f32;
            total += e.1 as f64;
        }
        let r = self.next_f32() as f64 * total;
        let mut acc = 0.0f64;
        for e in &self.cand {
            acc += e.1 as f64;
            if acc > r {
                return e.0;
            }
        }
        self.cand.last().map(|e| e.0).unwrap_or(0)
    }
}

fn splitmix(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Index of the largest logit (lowest index on ties, like llama.cpp's greedy sampler).
pub fn argmax_logits(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

fn argmax(c: &[(u32, f32)]) -> u32 {
    let mut best = 0usize;
    for (i, e) in c.iter().enumerate() {
        if e.1 > c[best].1 {
            best = i;
        }
    }
    c[best].0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_is_argmax_and_penalty_applies() {
        let mut s = Sampler::new(
            SamplerConfig {
                temp: 0.0,
                repeat_penalty: 2.0,
                ..Default::default()
            },
            4,
        );
        assert_eq!(s.sample(&[0.1, 3.0, 2.0, -1.0]), 1);
        s.accept(1);
        // 3.0 / 2 = 1.5 < 2.0
        assert_eq!(s.sample(&[0.1, 3.0, 2.0, -1.0]), 2);
    }

    #[test]
    fn same_seed_same_stream_and_top_k_1_is_greedy() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let cfg = SamplerConfig {
            seed: 42,
            ..Default::default()
        };
        let a: Vec<u32> = {
            let mut s = Sampler::new(cfg.clone(), 100);
            (0..20).map(|_| s.sample(&logits)).collect()
        };
        let b: Vec<u32> = {
            let mut s = Sampler::new(cfg.clone(), 100);
            (0..20).map(|_| s.sample(&logits)).collect()
        };
        assert_eq!(a, b);
        let mut s = Sampler::new(
            SamplerConfig {
                top_k: 1,
                seed: 7,
                ..Default::default()
            },
            100,
        );
        assert_eq!(s.sample(&logits), argmax_logits(&logits));
    }

    #[test]
    fn min_p_and_top_p_restrict_support() {
        // One dominant token: with min_p 0.5 nothing else survives, whatever the seed.
        let mut logits = vec![0.0f32; 50];
        logits[7] = 10.0;
        for seed in 0..50 {
            let mut s = Sampler::new(
                SamplerConfig {
                    seed,
                    min_p: 0.5,
                    top_p: 1.0,
                    top_k: 0,
                    temp: 1.0,
                    ..Default::default()
                },
                50,
            );
            assert_eq!(s.sample(&logits), 7);
            let mut s = Sampler::new(
                SamplerConfig {
                    seed,
                    min_p: 0.0,
                    top_p: 0.5,
                    top_k: 0,
                    temp: 1.0,
                    ..Default::default()
                },
                50,
            );
            assert_eq!(s.sample(&logits), 7);
        }
    }

    #[test]
    fn high_temperature_spreads_samples() {
        let logits = vec![1.0f32, 1.0, 1.0, 1.0];
        let mut s = Sampler::new(
            SamplerConfig {
                seed: 3,
                min_p: 0.0,
                top_p: 1.0,
                ..Default::default()
            },
            4,
        );
        let mut counts = [0; 4];
        for _ in 0..4000 {
            counts[s.sample(&logits) as usize] += 1;
        }
        for c in counts {
            assert!((800..1200).contains(&c), "{counts:?}");
        }
    }
}
