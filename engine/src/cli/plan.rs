// `flashslim plan`: measure the device on the model file itself (cold O_DIRECT reads, request
// size x queue depth), profile compute over a prefill batch and decode passes while streaming
// under the budget, record every weight access (the Chunk Metadata Table), choose the plan and
// write it as JSON.

use super::ModelPath;
use anyhow::{bail, Context, Result};
use clap::Args;
use flashslim::gguf::Gguf;
use flashslim::kernels::Kernels;
use flashslim::model::{forward, KvCache, LogitsMode, Model, NoObserver, RunState};
use flashslim::plan::optimize::{make_plan, DeviceModel, PhaseCompute};
use flashslim::plan::{
    data_fingerprint, device, json, CmtEntry, DeviceProfile, Layout, Method, PlanModel,
};
use flashslim::procstat::parse_size;
use flashslim::session::available_threads;
use flashslim::weights::stream::file::ModelFile;
use flashslim::weights::stream::pool::{ceil_align, floor_align};
use flashslim::weights::stream::AccessProfile;
use flashslim::weights::{Phase, StreamOptions, StreamSource, WeightSource};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub model: ModelPath,
    /// Memory budget: resident weights + streaming buffers + small tensors (e.g. 48MiB)
    #[arg(long = "budget", value_name = "SIZE", value_parser = parse_size)]
    pub budget: Option<u64>,
    /// Write the plan here (default: stdout)
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Threads for the profiling passes (0 = all cores)
    #[arg(short = 't', long = "threads", value_name = "N", default_value_t = 0)]
    pub threads: usize,
    /// Prompt tokens in the profiled prefill batch
    #[arg(long = "prompt-tokens", value_name = "N", default_value_t = 32)]
    pub prompt_tokens: usize,
    /// Profiled decode passes
    #[arg(long = "decode-tokens", value_name = "N", default_value_t = 8)]
    pub decode_tokens: usize,
    /// MiB read per point of the device sweep
    #[arg(long = "sweep-mib", value_name = "N", default_value_t = 24)]
    pub sweep_mib: u64,
    /// Only measure the device and print it as JSON (with --request and --queue-depth: only
    /// that point)
    #[arg(long = "device-only")]
    pub device_only: bool,
    /// Request size to measure (with --device-only)
    #[arg(long = "request", value_name = "SIZE", value_parser = parse_size, requires = "device_only")]
    pub request: Option<u64>,
    /// Queue depth to measure (with --device-only)
    #[arg(long = "queue-depth", value_name = "N", requires = "device_only")]
    pub queue_depth: Option<u32>,
}

fn xorshift_tokens(n: usize, vocab: usize, mut x: u64) -> Vec<u32> {
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % vocab as u64) as u32
        })
        .collect()
}

pub fn main(a: PlanArgs) -> Result<ExitCode> {
    let path = a.model.resolve()?;
    if !path.exists() {
        bail!("model file {} not found", path.display());
    }
    let gguf = Arc::new(Gguf::open(&path)?);
    let file = ModelFile::open(&path, false)?;
    let direct = file.direct;
    if a.device_only {
        let (req, qd) = match (a.request, a.queue_depth) {
            (Some(r), Some(q)) => (vec![r], vec![q]),
            (None, None) => (
                device::SWEEP_REQUESTS.to_vec(),
                device::SWEEP_DEPTHS.to_vec(),
            ),
            _ => bail!("--request and --queue-depth go together"),
        };
        if req.iter().any(|r| *r == 0 || r % 4096 != 0) || qd.contains(&0) {
            bail!("--request must be a positive multiple of 4 KiB and --queue-depth positive");
        }
        let (sweep, backend) =
            device::sweep(&file, gguf.data_offset, &req, &qd, a.sweep_mib << 20)?;
        let points: Vec<serde_json::Value> = sweep
            .iter()
            .map(|s| {
                serde_json::json!({
                    "request_bytes": s.request_bytes,
                    "queue_depth": s.queue_depth,
                    "bytes_per_s": s.bytes_per_s,
                })
            })
            .collect();
        let v = serde_json::json!({ "file": path.display().to_string(), "direct": direct, "backend": backend, "sweep": points });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let Some(budget) = a.budget else {
        bail!("--budget SIZE is required (e.g. --budget 48MiB)");
    };
    if a.prompt_tokens == 0 {
        bail!("--prompt-tokens must be positive");
    }

    // 1. The device, measured on this file, cold (O_DIRECT does not use the page cache).
    eprintln!(
        "plan: measuring {} reads of {} ({} MiB per point)...",
        if direct { "O_DIRECT" } else { "buffered" },
        path.display(),
        a.sweep_mib
    );
    let (sweep, backend) = device::sweep(
        &file,
        gguf.data_offset,
        &device::SWEEP_REQUESTS,
        &device::SWEEP_DEPTHS,
        a.sweep_mib << 20,
    )?;
    let pick = device::choose(&sweep)
        .context("empty device sweep")?
        .clone();
    eprintln!(
        "plan: device {:.0} MB/s at {} KiB x {} in flight (best {:.0} MB/s)",
        pick.bytes_per_s / 1e6,
        pick.request_bytes >> 10,
        pick.queue_depth,
        sweep.iter().map(|s| s.bytes_per_s).fold(0.0, f64::max) / 1e6
    );
    let dev = DeviceModel {
        request_bytes: pick.request_bytes,
        queue_depth: pick.queue_depth,
        bytes_per_s: pick.bytes_per_s,
    };

    // 2. Compute, profiled while streaming under the budget with the quick plan.
    let threads = if a.threads == 0 {
        available_threads()
    } else {
        a.threads
    };
    let opts = StreamOptions {
        budget: Some(budget),
        profile: true,
        ..StreamOptions::from_env(Some(budget), None)?
    };
    let mut src = StreamSource::open(&path, gguf.clone(), opts)?;
    let model = Model::load(gguf.clone(), &src)?;
    src.attach_model(&model)?;
    eprintln!("plan: profiling with the quick plan: {}", src.summary());
    let kern = Kernels::new(threads);
    let n_vocab = model.config.n_vocab;
    let ctx = a.prompt_tokens + a.decode_tokens + 1;
    let mut st = RunState::new(&model, a.prompt_tokens, false);
    let mut kv = KvCache::new(&model, ctx);
    let prompt = xorshift_tokens(a.prompt_tokens, n_vocab, 7);
    forward(
        &model,
        &src,
        &kern,
        &mut st,
        &mut kv,
        &prompt,
        0,
        LogitsMode::Last,
        &mut NoObserver,
    )?;
    for (i, &t) in xorshift_tokens(a.decode_tokens, n_vocab, 11)
        .iter()
        .enumerate()
    {
        forward(
            &model,
            &src,
            &kern,
            &mut st,
            &mut kv,
            &[t],
            a.prompt_tokens + i,
            LogitsMode::Last,
            &mut NoObserver,
        )?;
    }
    let (pre, dec) = src.access_profile().context("profile was not recorded")?;
    drop(src);

    // 3. Choose.
    let layout = Layout::new(&model);
    let compute: Vec<PhaseCompute> = [
        (Phase::Prefill, &pre, a.prompt_tokens),
        (Phase::Decode, &dec, 1),
    ]
    .iter()
    .filter(|(_, p, _)| p.passes > 0)
    .map(|(ph, p, tokens)| phase_compute(*ph, p, &dec, *tokens, layout.order.len()))
    .collect();
    let pm = PlanModel {
        identity: gguf.identity.clone(),
        data_fingerprint: data_fingerprint(&file, gguf.data_offset)?,
    };
    let mut plan = make_plan(&layout, pm, budget, &dev, &compute, Method::Profiled)?;
    plan.device = Some(DeviceProfile {
        bandwidth_bytes_per_s: pick.bytes_per_s,
        direct,
        backend: backend.to_string(),
        sweep,
    });
    for (ph, p) in [(Phase::Prefill, &pre), (Phase::Decode, &dec)] {
        if p.passes == 0 {
            continue;
        }
        let n = p.passes as f64;
        for (i, &id) in layout.order.iter().enumerate() {
            let t = layout.tensor(id);
            plan.cmt.push(CmtEntry {
                phase: ph,
                index: i as u32,
                tensor: id,
                layer: layout.layer[i].map(|l| l as u32),
                offset: t.offset,
                size: t.size,
                aligned_offset: floor_align(t.offset),
                aligned_size: ceil_align(t.end()) - floor_align(t.offset),
                compute_ms: p.hold_ns.get(i).copied().unwrap_or(0) as f64 / n / 1e6,
                gap_ms: p.gap_ns.get(i).copied().unwrap_or(0) as f64 / n / 1e6,
            });
        }
    }
    let fig = plan.check(&layout, Some(budget))?;
    let text = json::to_json(&plan, &gguf, &fig);
    match &a.output {
        Some(o) => {
            std::fs::write(o, &text).with_context(|| format!("cannot write {}", o.display()))?
        }
        None => print!("{text}"),
    }
    eprintln!("plan: {}", plan.describe(&layout, &fig));
    if let Some(o) = &a.output {
        eprintln!("plan: written to {}", o.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Mean per-access compute of a profiled phase; the gap between passes comes from decode.
fn phase_compute(
    phase: Phase,
    p: &AccessProfile,
    dec: &AccessProfile,
    tokens: usize,
    n: usize,
) -> PhaseCompute {
    let passes = p.passes.max(1) as f64;
    PhaseCompute {
        phase,
        tokens: tokens as u32,
        per_access_ns: (0..n)
            .map(|i| p.to_next_ns.get(i).copied().unwrap_or(0) as f64 / passes)
            .collect(),
        pass_gap_ns: if dec.pass_gaps > 0 {
            dec.pass_gap_ns as f64 / dec.pass_gaps as f64
        } else {
            0.0
        },
    }
}
