// `flashslim profile`: the on-device profiling runner. Reads a KEY=VALUE config (the systemd
// service's /etc/flashslim/profile.conf) and/or flags, creates a run directory, starts the chosen
// bpftrace scripts on this very process, runs the generations through `run`'s code path, stops
// the scripts, files their output (bpf-<script>.ndjson, stacks.folded) and closes the manifest.

use super::run::{self, Prompt, RunArgs};
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser};
use flashslim::probes::sync_clock;
use flashslim::procstat::parse_size;
use flashslim::runlog::bpf::{fold_stacks, BpfOutput, BPF_VERSION};
use flashslim::runlog::{signals, RunLog, RunStatus, STACKS};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Where the image installs the scripts.
const DEVICE_SCRIPTS: &str = "/usr/share/flashslim/tracing";
const DEFAULT_RUNS_DIR: &str = "/var/log/flashslim/runs";
const DEFAULT_PROMPT: &str = "Explain in a few sentences why flash storage is slower than RAM.";
/// How long a script may take to attach its probes.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a script may take to print its maps and exit after SIGINT.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

const KEYS: &[&str] = &[
    "MODEL",
    "PROMPT",
    "PROMPT_FILE",
    "TOKENS",
    "THREADS",
    "WEIGHTS",
    "BUDGET",
    "SCRIPTS",
    "TRACE_TENSORS",
    "RUNS_DIR",
    "EXTRA_ARGS",
];

#[derive(Args, Debug)]
pub struct ProfileArgs {
    /// KEY=VALUE settings (systemd EnvironmentFile syntax); flags override them
    #[arg(long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Model file (MODEL)
    #[arg(short = 'm', long = "model", value_name = "MODEL")]
    pub model: Option<PathBuf>,
    /// Prompt text (PROMPT)
    #[arg(short = 'p', long = "prompt", value_name = "PROMPT")]
    pub prompt: Option<String>,
    /// One prompt per line, each one generation (PROMPT_FILE)
    #[arg(long = "prompt-file", value_name = "FILE")]
    pub prompt_file: Option<PathBuf>,
    /// Prompt as token ids, bypassing the tokenizer
    #[arg(long = "prompt-ids", value_name = "ID,...", value_delimiter = ',')]
    pub prompt_ids: Option<Vec<u32>>,
    /// Tokens to generate per prompt (TOKENS, default 64)
    #[arg(short = 'n', long = "n-predict", value_name = "N")]
    pub tokens: Option<usize>,
    /// Kernel threads, 0 = all cores (THREADS)
    #[arg(short = 't', long = "threads", value_name = "N")]
    pub threads: Option<usize>,
    /// ram, mmap or stream (WEIGHTS, default stream)
    #[arg(long = "weights", value_name = "MODE")]
    pub weights: Option<String>,
    /// Memory budget with --weights stream, e.g. 64MiB (BUDGET)
    #[arg(long = "budget", value_name = "SIZE")]
    pub budget: Option<String>,
    /// bpftrace scripts: comma list of names, `all`, or empty (SCRIPTS)
    #[arg(long = "scripts", value_name = "LIST")]
    pub scripts: Option<String>,
    /// Directory holding the .bt scripts (default: search, see docs/profiling.md)
    #[arg(long = "scripts-dir", value_name = "DIR")]
    pub scripts_dir: Option<PathBuf>,
    /// Record the tensor-access trace: `--trace tensors` (TRACE_TENSORS=1)
    #[arg(long = "trace", value_name = "KIND")]
    pub trace: Option<String>,
    /// Parent of the run directories (RUNS_DIR, default /var/log/flashslim/runs)
    #[arg(long = "trace-dir", value_name = "DIR")]
    pub trace_dir: Option<PathBuf>,
    /// bpftrace executable (default: bpftrace on PATH)
    #[arg(long = "bpftrace", value_name = "PATH")]
    pub bpftrace: Option<PathBuf>,
    /// More `flashslim run` options (EXTRA_ARGS), e.g. -- --temp 0 --seed 1
    #[arg(last = true, value_name = "RUN_ARGS")]
    pub extra: Vec<String>,
}

/// Effective settings after defaults, config file and flags.
#[derive(Debug, Default, serde::Serialize)]
struct Settings {
    model: Option<PathBuf>,
    prompt: Option<String>,
    prompt_file: Option<PathBuf>,
    #[serde(skip)]
    prompt_ids: Option<Vec<u32>>,
    tokens: usize,
    threads: usize,
    weights: String,
    budget: Option<String>,
    scripts: Vec<String>,
    trace_tensors: bool,
    runs_dir: PathBuf,
    extra_args: Vec<String>,
    config_file: Option<PathBuf>,
    scripts_dir: Option<PathBuf>,
}

/// Parse a KEY=VALUE file: `#` comments, blank lines, optional single or double quotes.
fn parse_config(text: &str, name: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| anyhow!("{name}:{}: expected KEY=VALUE, got `{line}`", i + 1))?;
        let k = k.trim();
        if !KEYS.contains(&k) {
            bail!(
                "{name}:{}: unknown key `{k}` (known: {})",
                i + 1,
                KEYS.join(", ")
            );
        }
        let mut v = v.trim();
        for q in ['"', '\''] {
            if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
                v = &v[1..v.len() - 1];
            }
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

fn parse_bool(key: &str, v: &str) -> Result<bool> {
    match v.trim() {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" | "" => Ok(false),
        _ => bail!("{key}: expected 0 or 1, got `{v}`"),
    }
}

fn parse_num(key: &str, v: &str) -> Result<usize> {
    v.trim()
        .parse()
        .map_err(|_| anyhow!("{key}: expected a non-negative integer, got `{v}`"))
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

impl Settings {
    fn resolve(a: &ProfileArgs) -> Result<Settings> {
        let mut s = Settings {
            tokens: 64,
            threads: 0,
            weights: "stream".into(),
            runs_dir: PathBuf::from(DEFAULT_RUNS_DIR),
            config_file: a.config.clone(),
            scripts_dir: a.scripts_dir.clone(),
            ..Default::default()
        };
        if let Some(path) = &a.config {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config {}", path.display()))?;
            let name = path.display().to_string();
            for (k, v) in parse_config(&text, &name)? {
                let bad = |e: anyhow::Error| anyhow!("{name}: {e}");
                match k.as_str() {
                    "MODEL" if !v.is_empty() => s.model = Some(v.into()),
                    "PROMPT" if !v.is_empty() => s.prompt = Some(v),
                    "PROMPT_FILE" if !v.is_empty() => s.prompt_file = Some(v.into()),
                    "TOKENS" => s.tokens = parse_num("TOKENS", &v).map_err(bad)?,
                    "THREADS" => s.threads = parse_num("THREADS", &v).map_err(bad)?,
                    "WEIGHTS" => s.weights = v,
                    "BUDGET" if !v.is_empty() => s.budget = Some(v),
                    "SCRIPTS" => s.scripts = split_list(&v),
                    "TRACE_TENSORS" => {
                        s.trace_tensors = parse_bool("TRACE_TENSORS", &v).map_err(bad)?
                    }
                    "RUNS_DIR" if !v.is_empty() => s.runs_dir = v.into(),
                    "EXTRA_ARGS" => {
                        s.extra_args = v.split_whitespace().map(str::to_string).collect()
                    }
                    _ => {}
                }
            }
        }
        if let Some(m) = &a.model {
            s.model = Some(m.clone());
        }
        if a.prompt.is_some() || a.prompt_file.is_some() || a.prompt_ids.is_some() {
            s.prompt = a.prompt.clone();
            s.prompt_file = a.prompt_file.clone();
            s.prompt_ids = a.prompt_ids.clone();
        }
        if let Some(n) = a.tokens {
            s.tokens = n;
        }
        if let Some(t) = a.threads {
            s.threads = t;
        }
        if let Some(w) = &a.weights {
            s.weights = w.clone();
        }
        if let Some(b) = &a.budget {
            s.budget = Some(b.clone());
        }
        if let Some(list) = &a.scripts {
            s.scripts = split_list(list);
        }
        match a.trace.as_deref() {
            None => {}
            Some("tensors") => s.trace_tensors = true,
            Some("none") | Some("") => s.trace_tensors = false,
            Some(x) => bail!("--trace: unknown trace `{x}` (expected `tensors`)"),
        }
        if let Some(d) = &a.trace_dir {
            s.runs_dir = d.clone();
        }
        if !a.extra.is_empty() {
            s.extra_args = a.extra.clone();
        }
        s.weights
            .parse::<flashslim::weights::SourceKind>()
            .map_err(|e| anyhow!("WEIGHTS: {e}"))?;
        if let Some(b) = &s.budget {
            parse_size(b).map_err(|e| anyhow!("BUDGET: {e}"))?;
        }
        if s.tokens == 0 {
            bail!("TOKENS must be at least 1");
        }
        Ok(s)
    }

    fn prompts(&self) -> Result<Vec<Prompt>> {
        if let Some(ids) = &self.prompt_ids {
            return Ok(vec![Prompt::Ids(ids.clone())]);
        }
        if let Some(p) = &self.prompt {
            return Ok(vec![Prompt::Text(p.clone())]);
        }
        if let Some(f) = &self.prompt_file {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read PROMPT_FILE {}", f.display()))?;
            let v: Vec<Prompt> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|l| Prompt::Text(l.to_string()))
                .collect();
            if v.is_empty() {
                bail!("PROMPT_FILE {} holds no prompt", f.display());
            }
            return Ok(v);
        }
        Ok(vec![Prompt::Text(DEFAULT_PROMPT.into())])
    }

    /// `flashslim run` arguments for these settings (prompts are passed separately).
    fn run_args(&self) -> Result<RunArgs> {
        #[derive(Parser)]
        #[command(name = "EXTRA_ARGS", no_binary_name = true)]
        struct Wrap {
            #[command(flatten)]
            run: RunArgs,
        }
        let mut argv: Vec<String> = Vec::new();
        if let Some(m) = &self.model {
            argv.extend(["-m".into(), m.display().to_string()]);
        }
        argv.extend(["-n".into(), self.tokens.to_string()]);
        argv.extend(["-t".into(), self.threads.to_string()]);
        argv.extend(["--weights".into(), self.weights.clone()]);
        if let Some(b) = &self.budget {
            argv.extend(["--budget".into(), b.clone()]);
        }
        argv.extend(["--trace-dir".into(), self.runs_dir.display().to_string()]);
        if self.trace_tensors {
            argv.extend(["--trace".into(), "tensors".into()]);
        }
        argv.extend(self.extra_args.iter().cloned());
        let w = Wrap::try_parse_from(&argv).map_err(|e| {
            let first = e.to_string();
            let first = first
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ");
            anyhow!("EXTRA_ARGS / settings: {first}")
        })?;
        Ok(w.run)
    }
}

/// Script directories in search order.
fn script_dirs(explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(d) = explicit {
        return vec![d.to_path_buf()];
    }
    let mut v = Vec::new();
    if let Some(d) = std::env::var_os("FLASHSLIM_TRACING_DIR") {
        v.push(PathBuf::from(d));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(bin) = exe.parent() {
            // <prefix>/bin/flashslim → <prefix>/share/flashslim/tracing
            v.push(bin.join("../share/flashslim/tracing"));
            // <checkout>/target/<profile>/flashslim → <checkout>/engine/tracing
            v.push(bin.join("../../engine/tracing"));
        }
    }
    v.push(PathBuf::from(DEVICE_SCRIPTS));
    v.push(PathBuf::from("engine/tracing"));
    v
}

/// Names and files of the available scripts in `dir` for this architecture: `<name>-arm64.bt`
/// replaces `<name>.bt` on aarch64 and is skipped elsewhere.
fn available_scripts(dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut base = BTreeMap::new();
    let mut arm = BTreeMap::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let p = e?.path();
        let Some(stem) = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".bt"))
        else {
            continue;
        };
        match stem.strip_suffix("-arm64") {
            Some(name) => arm.insert(name.to_string(), p.clone()),
            None => base.insert(stem.to_string(), p.clone()),
        };
    }
    if cfg!(target_arch = "aarch64") {
        for (k, v) in arm {
            base.insert(k, v);
        }
    }
    Ok(base)
}

fn resolve_scripts(s: &Settings) -> Result<Vec<(String, PathBuf)>> {
    if s.scripts.is_empty() {
        return Ok(Vec::new());
    }
    let dirs = script_dirs(s.scripts_dir.as_deref());
    let dir = dirs
        .iter()
        .find(|d| d.join("blockio.bt").is_file())
        .or_else(|| dirs.iter().find(|d| d.is_dir()))
        .ok_or_else(|| {
            anyhow!(
                "no bpftrace script directory found (tried {}); pass --scripts-dir",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    let avail = available_scripts(dir)?;
    if s.scripts.iter().any(|n| n == "all") {
        return Ok(avail.into_iter().collect());
    }
    let mut out = Vec::new();
    for name in &s.scripts {
        let name = name.trim_end_matches(".bt");
        let p = avail.get(name).ok_or_else(|| {
            anyhow!(
                "SCRIPTS: no script `{name}` in {} (available: {})",
                dir.display(),
                avail.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })?;
        if !out.iter().any(|(n, _): &(String, PathBuf)| n == name) {
            out.push((name.to_string(), p.clone()));
        }
    }
    Ok(out)
}

fn find_bpftrace(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for d in
        std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
    {
        let p = d.join("bpftrace");
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("bpftrace not found on PATH (install it, or pass --bpftrace PATH, or run without --scripts)")
}

/// A running bpftrace.
struct Tracer {
    name: String,
    child: Child,
    out: PathBuf,
    log: PathBuf,
}

fn first_error_line(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .rev()
        .find(|l| l.contains("ERROR"))
        .or(lines.last())
        .map(|l| l.to_string())
        .unwrap_or_else(|| "no message".into())
}

fn start_tracer(bpftrace: &Path, name: &str, script: &Path, dir: &Path) -> Result<Tracer> {
    let out = dir.join(format!("bpf-{name}.ndjson"));
    let log = dir.join(format!("bpf-{name}.log"));
    let exe = std::env::current_exe().context("cannot find this executable's path")?;
    let logf = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let child = Command::new(bpftrace)
        .arg("-f")
        .arg("json")
        .arg("-o")
        .arg(&out)
        .arg(script)
        .arg(std::process::id().to_string())
        .arg(&exe)
        .stdin(Stdio::null())
        .stdout(logf.try_clone()?)
        .stderr(logf)
        .spawn()
        .with_context(|| format!("cannot start {}", bpftrace.display()))?;
    Ok(Tracer {
        name: name.to_string(),
        child,
        out,
        log,
    })
}

/// Wait until every tracer ran its BEGIN block (which prints the `format` row): bpftrace prints
/// `attached_probes` before it attaches, BEGIN runs after every probe is attached.
fn wait_attached(tracers: &mut [Tracer]) -> Result<()> {
    let t0 = Instant::now();
    let mut pending: Vec<usize> = (0..tracers.len()).collect();
    while !pending.is_empty() {
        if let Some(sig) = signals::received() {
            bail!(
                "interrupted by {} while starting bpftrace",
                signals::name(sig)
            );
        }
        let mut still = Vec::new();
        for &i in &pending {
            let t = &mut tracers[i];
            let text = std::fs::read_to_string(&t.out).unwrap_or_default();
            if text.contains("flashslim.bpf") {
                continue;
            }
            if let Ok(Some(st)) = t.child.try_wait() {
                bail!(
                    "bpftrace {} exited ({st}) before attaching: {}",
                    t.name,
                    first_error_line(&t.log)
                );
            }
            still.push(i);
        }
        pending = still;
        if !pending.is_empty() {
            if t0.elapsed() > ATTACH_TIMEOUT {
                bail!(
                    "bpftrace {} did not attach within {}s",
                    tracers[pending[0]].name,
                    ATTACH_TIMEOUT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// SIGINT every tracer (they print their maps and exit); repeat SIGINT after 15 s (bpftrace
/// 0.17 has been seen to miss one), SIGTERM after 40 s, SIGKILL after [`STOP_TIMEOUT`].
/// Returns the tracers that did not end cleanly.
fn stop_tracers(tracers: &mut [Tracer]) -> Vec<String> {
    let signal = |t: &Tracer, sig: i32| {
        // SAFETY: kill with the pid of our own (not yet reaped) child and a valid signal.
        unsafe { libc::kill(t.child.id() as libc::pid_t, sig) };
    };
    for t in tracers.iter() {
        signal(t, libc::SIGINT);
    }
    let t0 = Instant::now();
    let mut bad = Vec::new();
    for t in tracers.iter_mut() {
        let mut last_kick = Instant::now();
        let mut escalated = "";
        loop {
            match t.child.try_wait() {
                Ok(Some(st)) => {
                    if !st.success() {
                        bad.push(format!("{} ({st})", t.name));
                    } else if !escalated.is_empty() {
                        log::warn!("bpftrace {} needed {escalated} to stop", t.name);
                    }
                    break;
                }
                Ok(None) if t0.elapsed() < STOP_TIMEOUT => {
                    // A second SIGINT kills a bpftrace that is still printing its maps
                    // (bpftrace 0.17; cpuprofile takes 8-9 s to print under TCG), so it is
                    // repeated only after 15 s, for a bpftrace that missed the first one.
                    if last_kick.elapsed() > Duration::from_secs(15) {
                        let term = t0.elapsed() > Duration::from_secs(40);
                        signal(t, if term { libc::SIGTERM } else { libc::SIGINT });
                        escalated = if term { "SIGTERM" } else { "a repeated SIGINT" };
                        last_kick = Instant::now();
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => {
                    let _ = t.child.kill();
                    let _ = t.child.wait();
                    bad.push(format!(
                        "{} (killed after {}s)",
                        t.name,
                        STOP_TIMEOUT.as_secs()
                    ));
                    break;
                }
            }
        }
    }
    bad
}

/// Raise RLIMIT_MEMLOCK for the bpftrace children (older kernels charge BPF maps to it).
fn raise_memlock() {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: valid resource id and pointer; failure only leaves the old limit.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) };
}

pub fn main(a: ProfileArgs) -> Result<ExitCode> {
    let s = Settings::resolve(&a)?;
    let prompts = s.prompts()?;
    let args = s.run_args()?;
    let scripts = resolve_scripts(&s)?;
    let bpftrace = if scripts.is_empty() {
        None
    } else {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!("bpftrace scripts need root (run as root, or without --scripts)");
        }
        Some(find_bpftrace(a.bpftrace.as_deref())?)
    };
    let seed = args.sampler_config()?.seed;
    let mut cfg_profile = serde_json::to_value(&s)?;
    cfg_profile["scripts"] = serde_json::json!(scripts
        .iter()
        .map(|(n, p)| serde_json::json!({"name": n, "path": p.display().to_string()}))
        .collect::<Vec<_>>());
    let cfg = serde_json::json!({
        "profile": cfg_profile,
        "run": args.config_json(seed, &prompts),
    });
    let mut log = RunLog::start(&s.runs_dir, "profile", cfg)
        .with_context(|| format!("cannot create a run directory in {}", s.runs_dir.display()))?;
    signals::install().context("cannot install signal handlers")?;

    let mut tracers: Vec<Tracer> = Vec::new();
    let mut start_err = None;
    if let Some(bt) = &bpftrace {
        raise_memlock();
        for (name, path) in &scripts {
            match start_tracer(bt, name, path, &log.dir.path) {
                Ok(t) => tracers.push(t),
                Err(e) => {
                    start_err = Some(e);
                    break;
                }
            }
        }
        if start_err.is_none() {
            if let Err(e) = wait_attached(&mut tracers) {
                start_err = Some(e);
            }
        }
        for (name, _) in &scripts {
            log.manifest
                .scripts
                .insert(name.clone(), format!("bpf-{name}.ndjson"));
        }
        log.set_format("bpf", BPF_VERSION);
    }
    let end = match start_err {
        Some(e) => run::RunEnd {
            status: if signals::received().is_some() {
                RunStatus::Interrupted
            } else {
                RunStatus::Failed
            },
            signal: signals::received(),
            error: if signals::received().is_some() {
                None
            } else {
                Some(e)
            },
        },
        None => {
            sync_clock();
            let end = run::execute(&args, prompts, Some(&mut log));
            sync_clock();
            end
        }
    };
    let bad = stop_tracers(&mut tracers);
    let mut end = end;
    // Post-process: folded stacks from the CPU-sample map.
    for t in &tracers {
        if t.name == "cpuprofile" {
            match BpfOutput::read(&t.out) {
                Ok(o) => {
                    let folded = fold_stacks(&o, "@samples");
                    if let Err(e) = std::fs::write(log.dir.file(STACKS), folded) {
                        log::warn!("cannot write {STACKS}: {e}");
                    }
                }
                Err(e) => log::warn!("cannot fold stacks: {e}"),
            }
        }
    }
    if !bad.is_empty() && end.status == RunStatus::Complete {
        end.status = RunStatus::Failed;
        end.error = Some(anyhow!("bpftrace did not end cleanly: {}", bad.join(", ")));
    }
    run::close(Some(&mut log), end)
}
