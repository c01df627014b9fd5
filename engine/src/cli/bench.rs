// `flashslim bench`: llama-bench's tests and table. pp<N> evaluates N random prompt tokens in one
// batch; tg<N> decodes N tokens one at a time from an empty context. Each test runs -r times after
// one untimed warmup; t/s is reported as mean ± sd over the repetitions. Tokenization and sampling
// are not involved (as in llama-bench). Comma lists sweep every combination.

use super::{ModelPath, WeightOpts};
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use flashslim::kernels::Kernels;
use flashslim::model::{forward, KvCache, LogitsMode, NoObserver, RunState};
use flashslim::procstat::{build_info, cpu_model, peak_rss_bytes};
use flashslim::session::{available_threads, Session};
use serde::Serialize;
use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Output {
    Md,
    Json,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelPath,
    #[command(flatten)]
    pub weights: WeightOpts,
    /// Thread counts (comma list; 0 = all cores)
    #[arg(
        short = 't',
        long = "threads",
        value_name = "N,...",
        value_delimiter = ',',
        default_value = "0"
    )]
    pub threads: Vec<usize>,
    /// Prompt sizes (comma list; 0 skips)
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_name = "N,...",
        value_delimiter = ',',
        default_value = "512"
    )]
    pub n_prompt: Vec<usize>,
    /// Generation lengths (comma list; 0 skips)
    #[arg(
        short = 'n',
        long = "n-gen",
        value_name = "N,...",
        value_delimiter = ',',
        default_value = "128"
    )]
    pub n_gen: Vec<usize>,
    /// Repetitions per test
    #[arg(
        short = 'r',
        long = "repetitions",
        value_name = "N",
        default_value_t = 5
    )]
    pub reps: usize,
    /// Output format
    #[arg(short = 'o', long = "output", value_enum, default_value = "md")]
    pub output: Output,
}

#[derive(Serialize)]
struct Row {
    build_commit: String,
    cpu_info: String,
    model_filename: String,
    model_type: String,
    model_size: u64,
    model_n_params: u64,
    weights: String,
    isa: String,
    n_threads: usize,
    test: String,
    n_prompt: usize,
    n_gen: usize,
    avg_ns: f64,
    stddev_ns: f64,
    avg_ts: f64,
    stddev_ts: f64,
    samples_ns: Vec<u64>,
    samples_ts: Vec<f64>,
    peak_rss_bytes: u64,
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, var.sqrt())
}

/// Deterministic pseudo-random token ids (llama-bench uses rand(); only the count matters).
fn tokens(n: usize, n_vocab: usize, seed: u64) -> Vec<u32> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n_vocab as u64) as u32
        })
        .collect()
}

fn time_pp(
    sess: &Session,
    st: &mut RunState,
    kv: &mut KvCache,
    n: usize,
    seed: u64,
) -> Result<u64> {
    let toks = tokens(n, sess.model.config.n_vocab, seed);
    let t = Instant::now();
    for (j, part) in toks.chunks(st.max_batch).enumerate() {
        let last = (j + 1) * st.max_batch >= n;
        let mode = if last {
            LogitsMode::Last
        } else {
            LogitsMode::None
        };
        forward(
            &sess.model,
            sess.source.as_ref(),
            &sess.kernels,
            st,
            kv,
            part,
            j * st.max_batch,
            mode,
            &mut NoObserver,
        )?;
    }
    Ok(t.elapsed().as_nanos() as u64)
}

fn time_tg(
    sess: &Session,
    st: &mut RunState,
    kv: &mut KvCache,
    n: usize,
    seed: u64,
) -> Result<u64> {
    let toks = tokens(n, sess.model.config.n_vocab, seed);
    let t = Instant::now();
    for (pos, &tok) in toks.iter().enumerate() {
        forward(
            &sess.model,
            sess.source.as_ref(),
            &sess.kernels,
            st,
            kv,
            &[tok],
            pos,
            LogitsMode::Last,
            &mut NoObserver,
        )?;
    }
    Ok(t.elapsed().as_nanos() as u64)
}

pub fn main(a: BenchArgs) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    if a.reps == 0 {
        bail!("-r must be at least 1");
    }
    let threads = a.threads.clone();
    let path = a.model.resolve()?;
    let mut sess = Session::open(&path, a.weights.session_options(threads[0]))?;
    let max_p = a.n_prompt.iter().copied().max().unwrap_or(0);
    let max_g = a.n_gen.iter().copied().max().unwrap_or(0);
    let batch = max_p.clamp(1, 512);
    let mut st = RunState::new(&sess.model, batch, false);
    let mut kv = KvCache::new(&sess.model, max_p.max(max_g).max(1));
    let (_, commit, _) = build_info();
    let mut rows = Vec::new();
    for &t in &threads {
        let t = if t == 0 { available_threads() } else { t };
        if t != sess.kernels.threads() {
            sess.kernels = Kernels::new(t);
        }
        let tests = a
            .n_prompt
            .iter()
            .filter(|&&n| n > 0)
            .map(|&n| (format!("pp{n}"), n, 0))
            .chain(
                a.n_gen
                    .iter()
                    .filter(|&&n| n > 0)
                    .map(|&n| (format!("tg{n}"), 0, n)),
            );
        for (name, np, ng) in tests {
            let run = |sess: &Session, st: &mut RunState, kv: &mut KvCache, seed| {
                if np > 0 {
                    time_pp(sess, st, kv, np, seed)
                } else {
                    time_tg(sess, st, kv, ng, seed)
                }
            };
            run(&sess, &mut st, &mut kv, 1)?; // warmup, untimed
            let mut samples_ns = Vec::with_capacity(a.reps);
            for r in 0..a.reps {
                samples_ns.push(run(&sess, &mut st, &mut kv, 2 + r as u64)?);
            }
            let n = (np + ng) as f64;
            let samples_ts: Vec<f64> = samples_ns.iter().map(|&ns| n * 1e9 / ns as f64).collect();
            let (avg_ns, stddev_ns) =
                mean_sd(&samples_ns.iter().map(|&x| x as f64).collect::<Vec<_>>());
            let (avg_ts, stddev_ts) = mean_sd(&samples_ts);
            rows.push(Row {
                build_commit: commit.to_string(),
                cpu_info: cpu_model(),
                model_filename: path.display().to_string(),
                model_type: sess.describe(),
                model_size: sess.gguf.tensor_bytes(),
                model_n_params: sess.n_params(),
                weights: sess.source.kind().name().to_string(),
                isa: sess.kernels.isa().to_string(),
                n_threads: t,
                test: name,
                n_prompt: np,
                n_gen: ng,
                avg_ns,
                stddev_ns,
                avg_ts,
                stddev_ts,
                samples_ns,
                samples_ts,
                peak_rss_bytes: peak_rss_bytes(),
            });
        }
    }
    match a.output {
        Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?,
        Output::Md => {
            writeln!(
                out,
                "| model | size | params | backend | weights | threads | test | t/s |"
            )?;
            writeln!(out, "| ------------------------------ | ---------: | ---------: | ---------- | ------ | ------: | --------------: | -------------------: |")?;
            for r in &rows {
                writeln!(
                    out,
                    "| {} | {:.2} MiB | {:.2} M | CPU ({}) | {} | {} | {} | {:.2} ± {:.2} |",
                    r.model_type,
                    r.model_size as f64 / (1 << 20) as f64,
                    r.model_n_params as f64 / 1e6,
                    r.isa,
                    r.weights,
                    r.n_threads,
                    r.test,
                    r.avg_ts,
                    r.stddev_ts
                )?;
            }
            writeln!(
                out,
                "\nbuild: {commit}, cpu: {}, peak RSS {:.1} MiB",
                cpu_model(),
                peak_rss_bytes() as f64 / (1 << 20) as f64
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
