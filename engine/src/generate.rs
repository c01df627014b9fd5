//! The generation loop: prefill the prompt in batches (one weight pass per batch), then sample and
//! decode one token at a time until EOS/EOT, `-n`, or the context is full. Records when each
//! token became available so callers can derive TTFT, TPOT percentiles and tokens/s; the
//! [`TokenSink`] hooks are where profiling (stages, `token` probe, logs) attaches.

use crate::model::{forward, KvCache, LogitsMode, ModelError, Observer, RunState};
use crate::probes::monotonic_ns;
use crate::sampler::Sampler;
use crate::session::Session;
use crate::weights::Phase;

#[derive(Clone, Debug)]
pub struct GenOptions {
    /// Tokens to generate (the first comes from the prompt's logits).
    pub n_predict: usize,
    /// Never stop on end-of-generation tokens: like llama.cpp's `--ignore-eos`, their logits are
    /// set to -inf so they are never sampled.
    pub ignore_eos: bool,
    /// Prompt tokens per prefill pass.
    pub n_batch: usize,
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StopReason {
    /// An end-of-generation token was sampled.
    Eog,
    /// `n_predict` tokens were generated.
    Length,
    /// The KV cache is full (`-c`).
    Context,
    /// The token callback asked to stop.
    Stopped,
}

/// Per-token events a caller can watch (for streaming output, probes, logs).
pub trait TokenSink {
    /// A pass is about to run (`index` counts passes from 0; prefill batches first).
    fn pass_begin(&mut self, _index: usize, _phase: Phase, _n_tokens: usize) {}
    fn pass_end(&mut self, _index: usize, _phase: Phase, _n_tokens: usize) {}
    /// Sampling of generated token `index` is about to start / just finished.
    fn sample_begin(&mut self, _index: usize) {}
    /// Sampling of token `index` finished with `id` (also for an end-of-generation token, which
    /// is not passed to [`TokenSink::token`]).
    fn sample_end(&mut self, _index: usize, _id: u32) {}
    /// Generated token `index` is `id`. Return false to stop.
    fn token(&mut self, _index: usize, _id: u32) -> bool {
        true
    }
}

/// A sink that ignores everything.
pub struct NoSink;
impl TokenSink for NoSink {}

#[derive(Clone, Debug, Default)]
pub struct GenStats {
    pub prompt_tokens: usize,
    pub prefill_passes: usize,
    /// Monotonic ns.
    pub prefill_start_ns: u64,
    pub prefill_end_ns: u64,
    /// When each generated token was sampled (monotonic ns); [0] is the first token.
    pub token_ns: Vec<u64>,
    pub generated: Vec<u32>,
    pub decode_passes: usize,
    pub decode_ns: u64,
    pub stop: Option<StopReason>,
}

impl GenStats {
    pub fn ttft_ns(&self) -> u64 {
        self.token_ns
            .first()
            .map(|t| t - self.prefill_start_ns)
            .unwrap_or(0)
    }
    pub fn prefill_ns(&self) -> u64 {
        self.prefill_end_ns.saturating_sub(self.prefill_start_ns)
    }
    pub fn prefill_tps(&self) -> f64 {
        per_second(self.prompt_tokens as u64, self.prefill_ns())
    }
    pub fn decode_tps(&self) -> f64 {
        per_second(self.decode_passes as u64, self.decode_ns)
    }
    /// Time between consecutive tokens (ns), i.e. TPOT samples.
    pub fn inter_token_ns(&self) -> Vec<u64> {
        self.token_ns.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

pub fn per_second(n: u64, ns: u64) -> f64 {
    if ns == 0 {
        0.0
    } else {
        n as f64 * 1e9 / ns as f64
    }
}

/// `q`-quantile (0..=1) of `v` by nearest rank; 0 for an empty slice.
pub fn percentile(v: &[u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

/// Run prompt + generation. `is_eog` decides end-of-generation ids (the tokenizer's).
#[allow(clippy::too_many_arguments)]
pub fn generate(
    sess: &Session,
    st: &mut RunState,
    kv: &mut KvCache,
    sampler: &mut Sampler,
    prompt: &[u32],
    opts: &GenOptions,
    is_eog: &dyn Fn(u32) -> bool,
    sink: &mut dyn TokenSink,
    obs: &mut dyn Observer,
) -> Result<GenStats, ModelError> {
    if prompt.is_empty() {
        return Err(ModelError::Input(
            "the prompt is empty after tokenization".into(),
        ));
    }
    if prompt.len() >= kv.n_ctx {
        return Err(ModelError::Input(format!(
            "the prompt has {} tokens but the context holds {} (raise -c)",
            prompt.len(),
            kv.n_ctx
        )));
    }
    let mut stats = GenStats {
        prompt_tokens: prompt.len(),
        ..Default::default()
    };
    for &t in prompt {
        sampler.accept(t);
    }
    let batch = opts.n_batch.clamp(1, st.max_batch);
    let (m, src, kern) = (&sess.model, sess.source.as_ref(), &sess.kernels);

    stats.prefill_start_ns = monotonic_ns();
    let mut pos = 0;
    let mut pass = 0;
    let mut logits_row: Vec<f32> = Vec::new();
    let banned: Vec<u32> = if opts.ignore_eos {
        (0..m.config.n_vocab as u32)
            .filter(|&t| is_eog(t))
            .collect()
    } else {
        Vec::new()
    };
    for chunk in prompt.chunks(batch) {
        let last = pos + chunk.len() == prompt.len();
        sink.pass_begin(pass, Phase::Prefill, chunk.len());
        let mode = if last {
            LogitsMode::Last
        } else {
            LogitsMode::None
        };
        let out = forward(m, src, kern, st, kv, chunk, pos, mode, obs)?;
        if last {
            logits_row = out.to_vec();
        }
        sink.pass_end(pass, Phase::Prefill, chunk.len());
        pos += chunk.len();
        pass += 1;
    }
    stats.prefill_passes = pass;
    stats.prefill_end_ns = monotonic_ns();

    loop {
        let index = stats.generated.len();
        sink.sample_begin(index);
        for &b in &banned {
            logits_row[b as usize] = f32::NEG_INFINITY;
        }
        let tok = sampler.sample(&logits_row);
        sampler.accept(tok);
        stats.token_ns.push(monotonic_ns());
        sink.sample_end(index, tok);
        if is_eog(tok) && !opts.ignore_eos {
            stats.stop = Some(StopReason::Eog);
            break;
        }
        stats.generated.push(tok);
        if !sink.token(index, tok) {
            stats.stop = Some(StopReason::Stopped);
            break;
        }
        if stats.generated.len() >= opts.n_predict {
            stats.stop = Some(StopReason::Length);
            break;
        }
        if pos >= kv.n_ctx {
            stats.stop = Some(StopReason::Context);
            break;
        }
        let t0 = monotonic_ns();
        sink.pass_begin(pass, Phase::Decode, 1);
        let out = forward(m, src, kern, st, kv, &[tok], pos, LogitsMode::Last, obs)?;
        logits_row.copy_from_slice(out);
        sink.pass_end(pass, Phase::Decode, 1);
        stats.decode_ns += monotonic_ns() - t0;
        stats.decode_passes += 1;
        pos += 1;
        pass += 1;
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), 50);
        assert_eq!(percentile(&v, 0.95), 95);
        assert_eq!(percentile(&[7], 0.95), 7);
        assert_eq!(percentile(&[], 0.5), 0);
    }
}
