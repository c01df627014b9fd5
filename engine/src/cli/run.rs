// `flashslim run`: tokenize (optionally through the chat template), prefill, sample and stream the
// generated text to stdout; timings to stderr and optionally a JSON summary. With --trace-dir the
// run is logged into a run directory (manifest, stages, tokens, io, tensor trace, output);
// `flashslim profile` runs its generations through [`execute`] as well.

use super::ModelOpts;
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use flashslim::generate::{generate, GenOptions, GenStats, TokenSink};
use flashslim::model::{KvCache, RunState};
use flashslim::probes::Stage;
use flashslim::profile::{PassCtx, ProbeObserver, ProfiledSink, Profiler};
use flashslim::runlog::records::JSONL_VERSION;
use flashslim::runlog::{self, signals, RunCounters, RunLog, RunStatus};
use flashslim::sampler::{Sampler, SamplerConfig};
use flashslim::summary::RunSummary;
use flashslim::tokenizer::{ChatMessage, StreamDecoder, Tokenizer};
use flashslim::trace::{TraceHeader, TraceWriter};
use flashslim::weights::SourceKind;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// What `--trace` can switch on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TraceKind {
    /// Tensor-access trace (tensor-trace.bin in the run directory)
    Tensors,
}

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
    /// Prompt as token ids (comma list), bypassing the tokenizer
    #[arg(
        long = "prompt-ids",
        value_name = "ID,...",
        value_delimiter = ',',
        conflicts_with_all = ["prompt", "file", "chat"]
    )]
    pub prompt_ids: Option<Vec<u32>>,
    /// Log the run into DIR/<UTC time>-<id>/ (manifest, stages, tokens, io, output)
    #[arg(long = "trace-dir", value_name = "DIR")]
    pub trace_dir: Option<PathBuf>,
    /// Extra traces to record in the run directory (needs --trace-dir)
    #[arg(long = "trace", value_name = "KIND", value_enum, value_delimiter = ',')]
    pub trace: Vec<TraceKind>,
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

    /// The prompt, from -p, -f or --prompt-ids.
    pub fn prompt_input(&self) -> Result<Prompt> {
        match (&self.prompt, &self.file, &self.prompt_ids) {
            (_, _, Some(ids)) => Ok(Prompt::Ids(ids.clone())),
            (Some(p), _, _) => Ok(Prompt::Text(p.clone())),
            (None, Some(f), _) => std::fs::read_to_string(f)
                .map(Prompt::Text)
                .with_context(|| format!("cannot read prompt file {}", f.display())),
            (None, None, None) => bail!("a prompt is required: -p TEXT, -f FILE or --prompt-ids"),
        }
    }

    /// Every option of the run as JSON (the manifest's `config`); `seed` is the resolved one.
    pub fn config_json(&self, seed: u64, prompts: &[Prompt]) -> serde_json::Value {
        let m = &self.model;
        serde_json::json!({
            "model": m.path.model.as_ref().map(|p| p.display().to_string()),
            "threads": m.threads,
            "weights": m.weights.weights.name(),
            "budget_bytes": m.weights.budget,
            "plan": m.weights.plan.as_ref().map(|p| p.display().to_string()),
            "prompts": prompts.iter().map(|p| match p {
                Prompt::Text(t) => serde_json::json!({"text": t}),
                Prompt::Ids(ids) => serde_json::json!({"ids": ids}),
            }).collect::<Vec<_>>(),
            "n_predict": self.n_predict,
            "ctx_size": self.ctx,
            "batch_size": self.batch,
            "temp": self.temp,
            "top_k": self.top_k,
            "top_p": self.top_p,
            "min_p": self.min_p,
            "repeat_penalty": self.repeat_penalty,
            "repeat_last_n": self.repeat_last_n,
            "seed": seed,
            "chat": self.chat,
            "ignore_eos": self.ignore_eos,
            "trace": self.trace.iter().map(|t| format!("{t:?}").to_lowercase()).collect::<Vec<_>>(),
            "trace_dir": self.trace_dir.as_ref().map(|p| p.display().to_string()),
        })
    }
}

/// One generation's prompt.
#[derive(Clone, Debug)]
pub enum Prompt {
    Text(String),
    Ids(Vec<u32>),
}

impl RunArgs {}

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

/// Streams decoded text to stdout (and output.txt in a run directory) as tokens arrive.
struct TextSink<'a> {
    tok: &'a Tokenizer,
    dec: StreamDecoder,
    out: &'a mut dyn Write,
    file: Option<&'a mut File>,
    err: Option<std::io::Error>,
}

impl TextSink<'_> {
    fn emit(&mut self, text: &str) -> std::io::Result<()> {
        self.out
            .write_all(text.as_bytes())
            .and_then(|_| self.out.flush())?;
        if let Some(f) = self.file.as_mut() {
            f.write_all(text.as_bytes())?;
        }
        Ok(())
    }
}

impl TokenSink for TextSink<'_> {
    fn token(&mut self, _index: usize, id: u32) -> bool {
        if self.tok.is_special(id) {
            return true;
        }
        let text = self.dec.push(self.tok, id);
        if let Err(e) = self.emit(&text) {
            self.err = Some(e);
            return false;
        }
        true
    }
}

pub fn main(a: RunArgs) -> Result<ExitCode> {
    let prompt = a.prompt_input()?;
    let log = match &a.trace_dir {
        Some(dir) => {
            let seed = a.sampler_config()?.seed;
            let cfg =
                serde_json::json!({ "run": a.config_json(seed, std::slice::from_ref(&prompt)) });
            Some(
                RunLog::start(dir, "run", cfg).with_context(|| {
                    format!("cannot create a run directory in {}", dir.display())
                })?,
            )
        }
        None => {
            if !a.trace.is_empty() {
                bail!(
                    "--trace needs --trace-dir DIR (the trace is written into the run directory)"
                );
            }
            None
        }
    };
    let mut log = log;
    let end = execute(&a, vec![prompt], log.as_mut());
    close(log.as_mut(), end)
}

/// How [`execute`] ended.
pub struct RunEnd {
    pub status: RunStatus,
    /// Why it failed (None when complete or interrupted).
    pub error: Option<anyhow::Error>,
    /// The signal that interrupted it.
    pub signal: Option<i32>,
}

impl RunEnd {
    /// The manifest's `error` text.
    pub fn message(&self) -> Option<String> {
        match (&self.error, self.signal) {
            (Some(e), _) => Some(format!("{e:#}")),
            (None, Some(s)) => Some(format!("stopped by {}", signals::name(s))),
            _ => None,
        }
    }
}

/// Close the run directory (if any) with `end`'s status and turn `end` into the exit status:
/// 0 complete, 128+signal interrupted, the error otherwise.
pub fn close(log: Option<&mut RunLog>, end: RunEnd) -> Result<ExitCode> {
    if let Some(l) = log {
        l.finish(end.status, end.message())
            .with_context(|| format!("cannot finish the run directory {}", l.dir.path.display()))?;
        eprintln!(
            "run directory: {} ({})",
            l.dir.path.display(),
            serde_json::to_string(&end.status)?.trim_matches('"')
        );
    }
    if let Some(e) = end.error {
        return Err(e);
    }
    Ok(match end.signal {
        Some(sig) => ExitCode::from(128u8.wrapping_add(sig as u8)),
        None => ExitCode::SUCCESS,
    })
}

/// Run every prompt as one generation through one session. With `log`, everything is recorded
/// into its directory (the caller closes it with [`close`]).
pub fn execute(a: &RunArgs, prompts: Vec<Prompt>, mut log: Option<&mut RunLog>) -> RunEnd {
    if log.is_some() {
        if let Err(e) = signals::install() {
            return RunEnd {
                status: RunStatus::Failed,
                error: Some(anyhow!("cannot install signal handlers: {e}")),
                signal: None,
            };
        }
    }
    let prof = match &log {
        Some(l) => Profiler::recording(&l.dir, a.model.weights.weights == SourceKind::Stream),
        None => Ok(Profiler::probes_only()),
    };
    let mut prof = match prof {
        Ok(p) => p,
        Err(e) => {
            return RunEnd {
                status: RunStatus::Failed,
                error: Some(anyhow!(e)),
                signal: None,
            }
        }
    };
    flashslim::probes::sync_clock();
    let result = generate_all(a, &prompts, &mut prof, log.as_deref_mut());
    let prof_result = prof.finish();
    flashslim::probes::sync_clock();
    match (result, prof_result) {
        (Err(e), _) => RunEnd {
            status: RunStatus::Failed,
            error: Some(e),
            signal: None,
        },
        (Ok(_), Err(e)) => RunEnd {
            status: RunStatus::Failed,
            error: Some(anyhow!(e).context("writing the run logs")),
            signal: None,
        },
        (Ok(o), Ok(())) => RunEnd {
            status: if o.interrupted.is_some() {
                RunStatus::Interrupted
            } else {
                RunStatus::Complete
            },
            error: None,
            signal: o.interrupted,
        },
    }
}

struct Outcome {
    interrupted: Option<i32>,
}

fn generate_all(
    a: &RunArgs,
    prompts: &[Prompt],
    prof: &mut Profiler,
    mut log: Option<&mut RunLog>,
) -> Result<Outcome> {
    let sampler_cfg = a.sampler_config()?;
    if a.ctx == 0 || a.batch == 0 {
        bail!("-c and -b must be positive");
    }
    if !a.trace.is_empty() && log.is_none() {
        bail!("--trace needs --trace-dir DIR");
    }
    prof.begin(Stage::Run, None);
    prof.begin(Stage::LoadModel, None);
    let sess = a.model.open_staged(log.is_some(), &mut |stage, begin| {
        if begin {
            prof.begin(stage, None)
        } else {
            prof.end(stage)
        }
    })?;
    prof.end(Stage::LoadModel);
    if let Some(l) = log.as_deref_mut() {
        l.set_model(&sess)?;
        l.set_format("stages", JSONL_VERSION);
        l.set_format("tokens", JSONL_VERSION);
        if sess.source.kind() == SourceKind::Stream {
            l.set_format("io", JSONL_VERSION);
        }
    }
    if let Some(sig) = signals::received() {
        return Ok(Outcome {
            interrupted: Some(sig),
        });
    }
    prof.begin(Stage::LoadTokenizer, None);
    let tok = Tokenizer::from_gguf(&sess.gguf).context("cannot build the tokenizer")?;
    let mut token_lists = Vec::with_capacity(prompts.len());
    for p in prompts {
        let ids = match p {
            Prompt::Text(t) => prompt_tokens(&tok, t, a.chat)?,
            Prompt::Ids(ids) => ids.clone(),
        };
        if ids.len() >= a.ctx {
            bail!(
                "the prompt has {} tokens but the context holds {} (raise -c)",
                ids.len(),
                a.ctx
            );
        }
        token_lists.push(ids);
    }
    prof.end(Stage::LoadTokenizer);

    let tracing = a.trace.contains(&TraceKind::Tensors);
    let trace_writer = match (&log, tracing) {
        (Some(l), true) => {
            let header = TraceHeader::new(&sess.gguf, &l.dir.id, flashslim::probes::monotonic_ns());
            let path = l.dir.file(runlog::TENSOR_TRACE);
            Some(
                TraceWriter::create(&path, header)
                    .with_context(|| format!("cannot create {}", path.display()))?,
            )
        }
        _ => None,
    };
    if let Some(l) = log.as_deref_mut() {
        if tracing {
            l.set_format("tensor_trace", flashslim::trace::VERSION_MAJOR as u32);
        }
    }
    let ctx = PassCtx::new(trace_writer.as_ref().map(|w| w.thread()));
    let mut output = match &log {
        Some(l) => {
            Some(File::create(l.dir.file(runlog::OUTPUT)).context("cannot create output.txt")?)
        }
        None => None,
    };
    let max_prompt = token_lists.iter().map(Vec::len).max().unwrap_or(1);
    let mut st = RunState::new(&sess.model, a.batch.min(max_prompt).max(1), false);
    let read0 = flashslim::procstat::storage_read_bytes();
    let src0 = sess.source.stats();
    let mut all_stats: Vec<GenStats> = Vec::new();
    let mut summaries: Vec<RunSummary> = Vec::new();
    let mut interrupted = None;
    let mut stdout = std::io::stdout().lock();
    for (gi, prompt) in token_lists.iter().enumerate() {
        let mut kv = KvCache::new(&sess.model, a.ctx);
        let mut sampler = Sampler::new(sampler_cfg.clone(), sess.model.config.n_vocab);
        let mut text = TextSink {
            tok: &tok,
            dec: StreamDecoder::new(),
            out: &mut stdout,
            file: output.as_mut(),
            err: None,
        };
        let opts = GenOptions {
            n_predict: a.n_predict,
            ignore_eos: a.ignore_eos,
            n_batch: a.batch,
        };
        let mut obs = ProbeObserver::new(&sess.model, sess.source.kind(), &ctx);
        let (stats, sig) = {
            let mut sink =
                ProfiledSink::new(&mut text, prof, &ctx, sess.source.as_ref(), gi as u32);
            let stats = generate(
                &sess,
                &mut st,
                &mut kv,
                &mut sampler,
                prompt,
                &opts,
                &|t| tok.is_eog(t),
                &mut sink,
                &mut obs,
            )?;
            (stats, sink.interrupted)
        };
        if let Some(e) = text.err.take() {
            return Err(e).context("writing generated text");
        }
        let rest = text.dec.flush();
        text.emit(&rest).and_then(|_| text.emit("\n"))?;
        let summary = RunSummary::new(&sess, &stats);
        eprintln!("{}", summary.human());
        summaries.push(summary);
        all_stats.push(stats);
        if sig.is_some() {
            interrupted = sig;
            break;
        }
    }
    prof.end(Stage::Run);
    drop(ctx.take_trace());
    if let Some(w) = trace_writer {
        let s = w.finish().context("finishing the tensor trace")?;
        if s.dropped > 0 {
            log::warn!(
                "tensor trace: {} records dropped (disk too slow)",
                s.dropped
            );
        }
    }
    if let Some(f) = output.as_mut() {
        f.sync_all().context("writing output.txt")?;
    }
    if let Some(path) = &a.summary {
        let s = summaries
            .last()
            .ok_or_else(|| anyhow!("no generation ran"))?;
        let json = serde_json::to_string_pretty(s)?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(l) = log {
        let src1 = sess.source.stats();
        let streaming = sess.source.kind() == SourceKind::Stream;
        let counters = RunCounters {
            generation_read_bytes: match (read0, flashslim::procstat::storage_read_bytes()) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a)),
                _ => None,
            },
            streamed_bytes: streaming
                .then(|| src1.streamed_bytes.saturating_sub(src0.streamed_bytes)),
            stall_ns: streaming.then(|| src1.stall_ns.saturating_sub(src0.stall_ns)),
            overlap_pct: prof.io_totals.overlap_pct(),
        };
        l.manifest.metrics = Some(runlog::metrics(&all_stats, &summaries, counters));
        l.manifest.generations = summaries;
    }
    Ok(Outcome { interrupted })
}
