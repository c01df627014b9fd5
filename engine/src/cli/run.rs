// `flashslim run`: tokenize (optionally through the chat template), prefill, sample and stream the
// generated text to stdout; timings to stderr and optionally a JSON summary.

use super::ModelOpts;
use anyhow::{bail, Context, Result};
use clap::Args;
use flashslim::generate::{generate, GenOptions, TokenSink};
use flashslim::model::{KvCache, NoObserver, RunState};
use flashslim::sampler::{Sampler, SamplerConfig};
use flashslim::summary::RunSummary;
use flashslim::tokenizer::{ChatMessage, StreamDecoder, Tokenizer};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelOpts,
    /// Prompt text
    #[arg(short = 'p', long = "prompt", value_name = "PROMPT")]
    pub prompt: Option<String>,
    /// Read the prompt from a file
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        conflicts_with = "prompt"
    )]
    pub file: Option<PathBuf>,
    /// Tokens to generate
    #[arg(
        short = 'n',
        long = "n-predict",
        value_name = "N",
        default_value_t = 128
    )]
    pub n_predict: usize,
    /// Context size (KV cache positions)
    #[arg(
        short = 'c',
        long = "ctx-size",
        value_name = "N",
        default_value_t = 2048
    )]
    pub ctx: usize,
    /// Prompt tokens per prefill batch
    #[arg(
        short = 'b',
        long = "batch-size",
        value_name = "N",
        default_value_t = 512
    )]
    pub batch: usize,
    /// Temperature (0 = greedy)
    #[arg(long = "temp", value_name = "T", default_value_t = 0.8)]
    pub temp: f32,
    /// Top-k sampling (0 = disabled)
    #[arg(long = "top-k", value_name = "N", default_value_t = 40)]
    pub top_k: usize,
    /// Top-p sampling (1.0 = disabled)
    #[arg(long = "top-p", value_name = "P", default_value_t = 0.95)]
    pub top_p: f32,
    /// Min-p sampling (0.0 = disabled)
    #[arg(long = "min-p", value_name = "P", default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalize repeated tokens (1.0 = disabled)
    #[arg(long = "repeat-penalty", value_name = "X", default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Last N tokens the repeat penalty looks at
    #[arg(long = "repeat-last-n", value_name = "N", default_value_t = 64)]
    pub repeat_last_n: usize,
    /// RNG seed (default: random)
    #[arg(long = "seed", value_name = "N")]
    pub seed: Option<u64>,
    /// Wrap the prompt in the model's chat template (a user turn)
    #[arg(long = "chat")]
    pub chat: bool,
    /// Keep generating past end-of-generation tokens
    #[arg(long = "ignore-eos")]
    pub ignore_eos: bool,
    /// Write the run's figures as JSON
    #[arg(long = "summary", value_name = "FILE.json")]
    pub summary: Option<PathBuf>,
}

impl RunArgs {
    pub fn sampler_config(&self) -> Result<SamplerConfig> {
        if !(self.temp.is_finite() && self.top_p.is_finite() && self.min_p.is_finite()) {
            bail!("sampling parameters must be finite numbers");
        }
        if !(0.0..=1.0).contains(&self.top_p) || !(0.0..=1.0).contains(&self.min_p) {
            bail!(
                "--top-p and --min-p must be within 0..1 (got {} and {})",
                self.top_p,
                self.min_p
            );
        }
        if self.repeat_penalty <= 0.0 {
            bail!(
                "--repeat-penalty must be positive (got {})",
                self.repeat_penalty
            );
        }
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
        Ok(SamplerConfig {
            temp: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            seed,
        })
    }

    /// The prompt text, read from -p or -f.
    pub fn prompt_text(&self) -> Result<String> {
        match (&self.prompt, &self.file) {
            (Some(p), _) => Ok(p.clone()),
            (None, Some(f)) => std::fs::read_to_string(f)
                .with_context(|| format!("cannot read prompt file {}", f.display())),
            (None, None) => bail!("a prompt is required: -p TEXT or -f FILE"),
        }
    }
}

/// Tokenize a prompt as `run` does: chat template if asked, model's BOS policy, specials parsed.
pub fn prompt_tokens(tok: &Tokenizer, text: &str, chat: bool) -> Result<Vec<u32>> {
    let text = if chat {
        if tok.chat_template().is_none() {
            bail!("--chat: this model has no tokenizer.chat_template");
        }
        tok.render_chat(
            &[ChatMessage {
                role: "user".into(),
                content: text.to_string(),
            }],
            true,
        )?
    } else {
        text.to_string()
    };
    Ok(tok.encode(&text, true, true)?)
}

/// Streams decoded text to stdout as tokens arrive.
struct StdoutSink<'a> {
    tok: &'a Tokenizer,
    dec: StreamDecoder,
    out: std::io::StdoutLock<'static>,
    err: Option<std::io::Error>,
}

impl TokenSink for StdoutSink<'_> {
    fn token(&mut self, _index: usize, id: u32) -> bool {
        if self.tok.is_special(id) {
            return true;
        }
        let text = self.dec.push(self.tok, id);
        if let Err(e) = self
            .out
            .write_all(text.as_bytes())
            .and_then(|_| self.out.flush())
        {
            self.err = Some(e);
            return false;
        }
        true
    }
}

pub fn main(a: RunArgs) -> Result<ExitCode> {
    let sampler_cfg = a.sampler_config()?;
    let text = a.prompt_text()?;
    if a.ctx == 0 || a.batch == 0 {
        bail!("-c and -b must be positive");
    }
    let sess = a.model.open()?;
    let tok = Tokenizer::from_gguf(&sess.gguf).context("cannot build the tokenizer")?;
    let prompt = prompt_tokens(&tok, &text, a.chat)?;
    if prompt.len() >= a.ctx {
        bail!(
            "the prompt has {} tokens but the context holds {} (raise -c)",
            prompt.len(),
            a.ctx
        );
    }
    let mut st = RunState::new(&sess.model, a.batch.min(prompt.len()).max(1), false);
    let mut kv = KvCache::new(&sess.model, a.ctx);
    let mut sampler = Sampler::new(sampler_cfg, sess.model.config.n_vocab);
    let mut sink = StdoutSink {
        tok: &tok,
        dec: StreamDecoder::new(),
        out: std::io::stdout().lock(),
        err: None,
    };
    let opts = GenOptions {
        n_predict: a.n_predict,
        ignore_eos: a.ignore_eos,
        n_batch: a.batch,
    };
    let stats = generate(
        &sess,
        &mut st,
        &mut kv,
        &mut sampler,
        &prompt,
        &opts,
        &|t| tok.is_eog(t),
        &mut sink,
        &mut NoObserver,
    )?;
    if let Some(e) = sink.err.take() {
        return Err(e).context("writing generated text");
    }
    let rest = sink.dec.flush();
    sink.out
        .write_all(rest.as_bytes())
        .and_then(|_| sink.out.write_all(b"\n"))
        .and_then(|_| sink.out.flush())?;
    let summary = RunSummary::new(&sess, &stats);
    eprintln!("{}", summary.human());
    if let Some(path) = &a.summary {
        let json = serde_json::to_string_pretty(&summary)?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
