// `flashslim perplexity`: llama-perplexity's method. The text is tokenized (model's BOS policy,
// special tokens not parsed), cut into chunks of -c tokens; each chunk is evaluated from scratch
// (its first token replaced by BOS when the model adds BOS) and scored on its second half.
// Per-chunk running PPL goes to stderr; the last stdout line is `PPL = <value>`.

use super::ModelOpts;
use anyhow::{bail, Context, Result};
use clap::Args;
use flashslim::model::{forward, KvCache, LogitsMode, NoObserver, RunState};
use flashslim::tokenizer::Tokenizer;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct PerplexityArgs {
    #[command(flatten)]
    pub model: ModelOpts,
    /// Text file to score
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Tokens per chunk
    #[arg(
        short = 'c',
        long = "ctx-size",
        value_name = "N",
        default_value_t = 512
    )]
    pub ctx: usize,
    /// Tokens per forward pass (default: the whole chunk)
    #[arg(short = 'b', long = "batch-size", value_name = "N")]
    pub batch: Option<usize>,
    /// Score at most N chunks (default: all)
    #[arg(long = "chunks", value_name = "N")]
    pub chunks: Option<usize>,
}

/// -log p(target) from one row of logits, in f64.
fn nll(logits: &[f32], target: u32) -> f64 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    -(logits[target as usize] as f64 - max - sum.ln())
}

pub fn main(a: PerplexityArgs) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("cannot read {}", a.file.display()))?;
    if a.ctx < 4 {
        bail!("-c must be at least 4 (got {})", a.ctx);
    }
    let sess = a.model.open()?;
    let tok = Tokenizer::from_gguf(&sess.gguf).context("cannot build the tokenizer")?;
    let tokens = tok.encode(&text, true, false)?;
    let n_ctx = a.ctx;
    if tokens.len() < 2 * n_ctx {
        bail!(
            "{} has {} tokens; perplexity with -c {n_ctx} needs at least {}",
            a.file.display(),
            tokens.len(),
            2 * n_ctx
        );
    }
    let n_chunk = (tokens.len() / n_ctx).min(a.chunks.unwrap_or(usize::MAX));
    let batch = a.batch.unwrap_or(n_ctx).clamp(1, n_ctx);
    let n_vocab = sess.model.config.n_vocab;
    let mut st = RunState::new(&sess.model, batch, true);
    let mut kv = KvCache::new(&sess.model, n_ctx);
    let mut logits = vec![0f32; n_ctx * n_vocab];
    let first = n_ctx / 2;
    let (mut sum, mut sum2, mut count) = (0f64, 0f64, 0usize);
    let t0 = std::time::Instant::now();
    eprintln!(
        "perplexity: {} tokens, {n_chunk} chunks of {n_ctx}, batch {batch}",
        tokens.len()
    );
    let mut err = std::io::stderr().lock();
    for c in 0..n_chunk {
        let start = c * n_ctx;
        let mut chunk: Vec<u32> = tokens[start..start + n_ctx].to_vec();
        if tok.add_bos() {
            if let Some(b) = tok.bos() {
                chunk[0] = b;
            }
        }
        for (j, part) in chunk.chunks(batch).enumerate() {
            let out = forward(
                &sess.model,
                sess.source.as_ref(),
                &sess.kernels,
                &mut st,
                &mut kv,
                part,
                j * batch,
                LogitsMode::All,
                &mut NoObserver,
            )?;
            logits[j * batch * n_vocab..(j * batch + part.len()) * n_vocab].copy_from_slice(out);
        }
        for i in first..n_ctx - 1 {
            let v = nll(
                &logits[i * n_vocab..(i + 1) * n_vocab],
                tokens[start + i + 1],
            );
            sum += v;
            sum2 += v * v;
        }
        count += n_ctx - 1 - first;
        write!(err, "[{}]{:.4},", c + 1, (sum / count as f64).exp())?;
        err.flush()?;
    }
    let mean = sum / count as f64;
    let ppl = mean.exp();
    let var = sum2 / count as f64 - mean * mean;
    let sd = if var > 0.0 && count > 1 {
        (var / (count - 1) as f64).sqrt() * ppl
    } else {
        0.0
    };
    writeln!(
        err,
        "\nperplexity: {n_chunk} chunks in {:.1} s; estimate {ppl:.4} +/- {sd:.5}",
        t0.elapsed().as_secs_f64()
    )?;
    writeln!(out, "PPL = {ppl:.6}")?;
    Ok(ExitCode::SUCCESS)
}
