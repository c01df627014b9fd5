// The lifecycle of one logged run: create the directory and a `running` manifest, fill in the
// model once it is open, and close with `complete` / `failed` / `interrupted`, the metrics and
// the file list (hashing every file), writing the manifest last.

use super::manifest::{Metrics, ModelInfo, PlanInfo, RunStatus};
use super::{Manifest, RunDir, RunlogError};
use crate::generate::{percentile, GenStats};
use crate::session::Session;
use crate::summary::RunSummary;
use std::path::Path;

pub struct RunLog {
    pub dir: RunDir,
    pub manifest: Manifest,
}

impl RunLog {
    /// `base/<UTC>-<id>/` with a `running` manifest; fires `clock_sync`.
    pub fn start(
        base: &Path,
        command: &str,
        config: serde_json::Value,
    ) -> Result<RunLog, RunlogError> {
        let dir = RunDir::create(base)?;
        let manifest = Manifest::start(&dir.id, command, config);
        dir.write_manifest(&manifest)?;
        crate::probes::sync_clock();
        Ok(RunLog { dir, manifest })
    }

    /// Record the opened model (and budget/plan) and rewrite the manifest.
    pub fn set_model(&mut self, sess: &Session) -> Result<(), RunlogError> {
        self.manifest.model = Some(ModelInfo {
            path: sess.path.display().to_string(),
            bytes: sess.gguf.file_size,
            identity: sess.gguf.identity.clone(),
            description: sess.describe(),
        });
        self.manifest.budget_bytes = sess.options.budget;
        if sess.options.plan.is_some() || sess.options.budget.is_some() {
            // A plan file carries the device bandwidth it measured; host reports draw achieved
            // throughput against it. A budget-only (heuristic) plan measured nothing.
            let device_bandwidth_bytes_per_s = sess.options.plan.as_ref().and_then(|p| {
                let bytes = std::fs::read(p).ok()?;
                let plan = crate::plan::json::parse(&bytes, &sess.gguf).ok()?;
                plan.device.map(|d| d.bandwidth_bytes_per_s)
            });
            self.manifest.plan = Some(PlanInfo {
                path: sess.options.plan.as_ref().map(|p| p.display().to_string()),
                identity: None,
                device_bandwidth_bytes_per_s,
            });
        }
        self.dir.write_manifest(&self.manifest)
    }

    pub fn set_format(&mut self, name: &str, version: u32) {
        self.manifest.formats.insert(name.into(), version);
    }

    /// Close the run: status, end time, file list, manifest (atomically, last).
    pub fn finish(&mut self, status: RunStatus, error: Option<String>) -> Result<(), RunlogError> {
        crate::probes::sync_clock();
        self.manifest.status = status;
        self.manifest.error = error;
        self.manifest.mark_end();
        self.manifest.files = self.dir.list_files()?;
        self.dir.write_manifest(&self.manifest)
    }
}

/// Inputs to [`metrics`] besides the per-generation stats.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunCounters {
    /// `/proc/self/io` read_bytes added during generation (null if unavailable).
    pub generation_read_bytes: Option<u64>,
    /// Streaming: bytes streamed and stall during generation; overlap from io events.
    pub streamed_bytes: Option<u64>,
    pub stall_ns: Option<u64>,
    pub overlap_pct: Option<f64>,
}

/// The manifest's headline metrics over every generation.
pub fn metrics(stats: &[GenStats], summaries: &[RunSummary], c: RunCounters) -> Metrics {
    let gen_tokens: u64 = stats.iter().map(|g| g.generated.len() as u64).sum();
    let per_tok = |b: u64| {
        if gen_tokens == 0 {
            None
        } else {
            Some(b as f64 / gen_tokens as f64)
        }
    };
    let ttfts: Vec<u64> = stats.iter().map(|g| g.ttft_ns()).collect();
    let tpot: Vec<u64> = stats.iter().flat_map(|g| g.inter_token_ns()).collect();
    let prefill_ns: u64 = stats.iter().map(|g| g.prefill_ns()).sum();
    let prompt: u64 = stats.iter().map(|g| g.prompt_tokens as u64).sum();
    let decode_ns: u64 = stats.iter().map(|g| g.decode_ns).sum();
    let decode_passes: u64 = stats.iter().map(|g| g.decode_passes as u64).sum();
    let ms = |ns: u64| ns as f64 / 1e6;
    Metrics {
        generations: stats.len(),
        prompt_tokens: prompt,
        generated_tokens: gen_tokens,
        ttft_ms: ms(percentile(&ttfts, 0.5)),
        tpot_p50_ms: ms(percentile(&tpot, 0.5)),
        tpot_p95_ms: ms(percentile(&tpot, 0.95)),
        prefill_tokens_per_second: crate::generate::per_second(prompt, prefill_ns),
        decode_tokens_per_second: crate::generate::per_second(decode_passes, decode_ns),
        peak_rss_bytes: crate::procstat::peak_rss_bytes(),
        storage_read_bytes: summaries
            .last()
            .and_then(|s| s.storage_read_bytes)
            .or_else(crate::procstat::storage_read_bytes),
        storage_bytes_per_token: c.generation_read_bytes.and_then(per_tok),
        streamed_bytes_per_token: c.streamed_bytes.and_then(per_tok),
        stall_ms_total: c.stall_ns.map(ms),
        stall_ms_per_token: c.stall_ns.and_then(|s| per_tok(s).map(|v| v / 1e6)),
        overlap_pct: c.overlap_pct,
    }
}
