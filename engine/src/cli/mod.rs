// Subcommand table, shared option groups, and the error/exit policy of the `flashslim` binary.

mod bench;
mod inspect;
mod perplexity;
mod plan;
mod profile;
mod run;
mod synth;
mod tokenize;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use flashslim::procstat::parse_size;
use flashslim::session::{Session, SessionOptions};
use flashslim::weights::SourceKind;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Model used when `-m` is not given (relative to the working directory).
pub const DEFAULT_MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
/// Where the image installs the default model (used when DEFAULT_MODEL is absent).
pub const DEVICE_MODEL: &str = "/usr/share/flashslim/models/SmolLM2-135M-Instruct.Q4_1.gguf";

#[derive(Parser)]
#[command(
    name = "flashslim",
    version,
    about = "LLM inference with weights streamed from flash under a memory budget"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a prompt (stdout: generated text only; stderr: timings).
    Run(run::RunArgs),
    /// Print the token ids of a text as a JSON array.
    Tokenize(tokenize::TokenizeArgs),
    /// Perplexity of a text file, llama-perplexity's method.
    Perplexity(perplexity::PerplexityArgs),
    /// Prompt-processing and generation speed, llama-bench style.
    Bench(bench::BenchArgs),
    /// Metadata summary and tensor map of a GGUF file.
    Inspect(inspect::InspectArgs),
    /// Profile a run: bpftrace scripts + run directory (config: /etc/flashslim/profile.conf).
    Profile(profile::ProfileArgs),
    /// Measure the device, profile compute and write a streaming plan for --weights stream.
    Plan(plan::PlanArgs),
    /// Write a SYNTHETIC TinyLlama-1.1B-shaped Q4_0 GGUF with random weights (benchmarks).
    Synth(synth::SynthArgs),
}

/// `-m MODEL`.
#[derive(Args, Clone, Debug)]
pub struct ModelPath {
    /// Model file (GGUF). Default: models/SmolLM2-135M-Instruct.Q4_1.gguf
    #[arg(short = 'm', long = "model", value_name = "MODEL")]
    pub model: Option<PathBuf>,
}

impl ModelPath {
    /// The model path: -m, else the default (with a fetch hint when it is missing).
    pub fn resolve(&self) -> Result<PathBuf> {
        if let Some(m) = &self.model {
            return Ok(m.clone());
        }
        for p in [DEFAULT_MODEL, DEVICE_MODEL] {
            if Path::new(p).exists() {
                return Ok(PathBuf::from(p));
            }
        }
        anyhow::bail!(
            "default model {DEFAULT_MODEL} not found; fetch it with `scripts/fetch-model.sh` or pass -m MODEL"
        )
    }
}

/// Where weights live while running.
#[derive(Args, Clone, Debug)]
pub struct WeightOpts {
    /// Where weights live while running: ram, mmap or stream
    #[arg(long = "weights", value_name = "MODE", default_value = "mmap")]
    pub weights: SourceKind,
    /// Memory budget for --weights stream: resident weights + streaming buffers (e.g. 40MiB)
    #[arg(long = "budget", value_name = "SIZE", value_parser = parse_size)]
    pub budget: Option<u64>,
    /// Plan file for --weights stream (from `flashslim plan`); without it a quick plan is made
    #[arg(long = "plan", value_name = "FILE")]
    pub plan: Option<PathBuf>,
}

impl WeightOpts {
    pub fn session_options(&self, threads: usize) -> SessionOptions {
        SessionOptions {
            weights: self.weights,
            threads,
            budget: self.budget,
            plan: self.plan.clone(),
            record_io: false,
        }
    }
}

/// Options every model-running subcommand shares.
#[derive(Args, Clone, Debug)]
pub struct ModelOpts {
    #[command(flatten)]
    pub path: ModelPath,
    /// Threads for the kernels (0 = all cores)
    #[arg(short = 't', long = "threads", value_name = "N", default_value_t = 0)]
    pub threads: usize,
    #[command(flatten)]
    pub weights: WeightOpts,
}

impl ModelOpts {
    pub fn model_path(&self) -> Result<PathBuf> {
        self.path.resolve()
    }

    pub fn open(&self) -> Result<Session> {
        self.open_staged(false, &mut |_, _| {})
    }

    /// Open, reporting the planning stage to `stage` (see `Session::open_staged`).
    pub fn open_staged(
        &self,
        record_io: bool,
        stage: &mut dyn FnMut(flashslim::probes::Stage, bool),
    ) -> Result<Session> {
        let path = self.model_path()?;
        let opts = SessionOptions {
            record_io,
            ..self.weights.session_options(self.threads)
        };
        Session::open_staged(&path, opts, stage)
            .with_context(|| format!("cannot load {}", path.display()))
    }
}

/// True when `err` (or its cause chain) is a broken pipe on stdout.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

pub fn main() -> ExitCode {
    // A panic is a bug; still, report it as one line, not a backtrace dump.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("error: internal error: {msg}{at} (please report this)");
    }));
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Run(a) => run::main(a),
        Command::Tokenize(a) => tokenize::main(a),
        Command::Perplexity(a) => perplexity::main(a),
        Command::Bench(a) => bench::main(a),
        Command::Inspect(a) => inspect::main(a),
        Command::Profile(a) => profile::main(a),
        Command::Plan(a) => plan::main(a),
        Command::Synth(a) => synth::main(a),
    };
    match r {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
