//! The figures of one generation run, as printed on stderr and written by `--summary FILE.json`
//! (and embedded in a run directory's manifest). Field names are a contract: docs/formats.md.

use crate::generate::{percentile, GenStats, StopReason};
use crate::session::Session;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub model: String,
    pub weights_mode: String,
    pub threads: usize,
    pub isa: String,
    pub load_ms: f64,
    pub ttft_ms: f64,
    pub prefill_tokens: usize,
    pub prefill_tokens_per_second: f64,
    /// Decode passes (tokens generated after the first).
    pub decode_tokens: usize,
    pub decode_tokens_per_second: f64,
    pub generated_tokens: usize,
    pub tpot_p50_ms: f64,
    pub tpot_p95_ms: f64,
    pub stop_reason: Option<StopReason>,
    pub peak_rss_bytes: u64,
    /// `read_bytes` of /proc/self/io at the end of the run (null if unavailable).
    pub storage_read_bytes: Option<u64>,
    /// Weight bytes held for the whole run.
    pub resident_bytes: u64,
    /// Streaming figures (null unless --weights stream).
    pub budget_bytes: Option<u64>,
    pub streamed_bytes_per_token: Option<f64>,
    pub stall_ms_per_token: Option<f64>,
    pub overlap_pct: Option<f64>,
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

impl RunSummary {
    pub fn new(sess: &Session, g: &GenStats) -> RunSummary {
        let tpot = g.inter_token_ns();
        let src = sess.source.stats();
        let mut r = RunSummary {
            model: sess.path.display().to_string(),
            weights_mode: sess.source.kind().name().to_string(),
            threads: sess.kernels.threads(),
            isa: sess.kernels.isa().to_string(),
            load_ms: ms(sess.load_ns),
            ttft_ms: ms(g.ttft_ns()),
            prefill_tokens: g.prompt_tokens,
            prefill_tokens_per_second: g.prefill_tps(),
            decode_tokens: g.decode_passes,
            decode_tokens_per_second: g.decode_tps(),
            generated_tokens: g.generated.len(),
            tpot_p50_ms: ms(percentile(&tpot, 0.50)),
            tpot_p95_ms: ms(percentile(&tpot, 0.95)),
            stop_reason: g.stop,
            peak_rss_bytes: crate::procstat::peak_rss_bytes(),
            storage_read_bytes: crate::procstat::storage_read_bytes(),
            resident_bytes: src.resident_bytes,
            budget_bytes: None,
            streamed_bytes_per_token: None,
            stall_ms_per_token: None,
            overlap_pct: None,
        };
        if let Some(s) = &src.stream {
            // Per token = per decode pass (one token each); a run without decode passes reports
            // its prefill passes per prompt token.
            let (ph, tokens) = if s.decode.passes > 0 {
                (&s.decode, s.decode.tokens)
            } else {
                (&s.prefill, s.prefill.tokens)
            };
            let per = |x: u64| (tokens > 0).then(|| x as f64 / tokens as f64);
            r.budget_bytes = Some(s.budget_bytes);
            r.streamed_bytes_per_token = per(ph.streamed_bytes);
            r.stall_ms_per_token = per(ph.stall_ns).map(|ns| ns / 1e6);
            r.overlap_pct = (ph.io_busy_ns > 0).then(|| {
                100.0 * ph.io_busy_ns.saturating_sub(ph.stall_ns) as f64 / ph.io_busy_ns as f64
            });
        }
        r
    }

    /// The stderr lines.
    pub fn human(&self) -> String {
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        let mut s = format!(
            "load {:.1} ms | ttft {:.1} ms | prefill {} tok @ {:.1} tok/s | decode {} tok @ {:.1} tok/s (tpot p50 {:.2} ms, p95 {:.2} ms) | peak RSS {:.1} MiB",
            self.load_ms,
            self.ttft_ms,
            self.prefill_tokens,
            self.prefill_tokens_per_second,
            self.decode_tokens,
            self.decode_tokens_per_second,
            self.tpot_p50_ms,
            self.tpot_p95_ms,
            mib(self.peak_rss_bytes)
        );
        if let Some(b) = self.storage_read_bytes {
            s += &format!(" | storage read {:.1} MiB", mib(b));
        }
        s += &format!(
            " | weights {} ({}, {} threads)",
            self.weights_mode, self.isa, self.threads
        );
        if let (Some(b), Some(per)) = (self.budget_bytes, self.streamed_bytes_per_token) {
            s += &format!(
                "\nstream: budget {:.1} MiB, resident {:.1} MiB, {:.1} MiB/token streamed, stall {:.2} ms/token, overlap {:.0}%",
                mib(b),
                mib(self.resident_bytes),
                per / (1 << 20) as f64,
                self.stall_ms_per_token.unwrap_or(0.0),
                self.overlap_pct.unwrap_or(0.0)
            );
        }
        s
    }
}
