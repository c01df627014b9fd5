// Figures derived from a run's records: TTFT and TPOT percentiles, per-token stall / I/O busy
// time / overlap, per-layer and per-op time, achieved read throughput, tensor heat. Pure
// functions of `RunData`, shared by the report and tests.

use super::{Phase, RunData};
use std::collections::BTreeMap;

/// Nearest-rank percentile (`p` in 0..=100) of unsorted values; `None` when empty.
pub fn percentile(values: &[u64], p: f64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

/// Total length of the union of `[start, end)` intervals, each clipped to `[lo, hi)`.
pub fn union_ns(intervals: impl IntoIterator<Item = (u64, u64)>, lo: u64, hi: u64) -> u64 {
    let mut v: Vec<(u64, u64)> = intervals
        .into_iter()
        .map(|(s, e)| (s.max(lo), e.min(hi)))
        .filter(|(s, e)| e > s)
        .collect();
    v.sort_unstable();
    let mut total = 0;
    let mut cur: Option<(u64, u64)> = None;
    for (s, e) in v {
        match cur {
            Some((cs, ce)) if s <= ce => cur = Some((cs, ce.max(e))),
            Some((cs, ce)) => {
                total += ce - cs;
                cur = Some((s, e));
            }
            None => cur = Some((s, e)),
        }
    }
    if let Some((cs, ce)) = cur {
        total += ce - cs;
    }
    total
}

/// One token's figures.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenStats {
    /// Token index.
    pub index: u32,
    /// Pass kind.
    pub phase: Phase,
    /// Pass start relative to the first token's start (ns).
    pub rel_start_ns: u64,
    /// Pass duration (ns).
    pub dur_ns: u64,
    /// Time between this token and the previous one (decode tokens), ns.
    pub inter_token_ns: Option<u64>,
    /// Compute stalled on I/O inside the pass (ns).
    pub stall_ns: u64,
    /// Time with at least one read in flight inside the pass (ns).
    pub io_busy_ns: u64,
    /// Bytes of reads completed inside the pass.
    pub io_bytes: u64,
    /// Share of the I/O time hidden behind compute: `(io_busy - stall) / io_busy`, percent.
    pub overlap_pct: Option<f64>,
}

/// Figures of a whole run.
#[derive(Clone, Debug, Default)]
pub struct RunStats {
    /// First token sampled minus prefill start (ns).
    pub ttft_ns: Option<u64>,
    /// Median inter-token time of decode tokens (ns).
    pub tpot_p50_ns: Option<u64>,
    /// 95th percentile inter-token time (ns).
    pub tpot_p95_ns: Option<u64>,
    /// Per token.
    pub tokens: Vec<TokenStats>,
    /// Op time per layer (ns), layer order.
    pub layer_ns: Vec<(u32, u64)>,
    /// Op time per op name (ns), descending.
    pub op_ns: Vec<(String, u64)>,
    /// Sum of read sizes.
    pub io_bytes: u64,
    /// Union of read intervals (ns).
    pub io_busy_ns: u64,
    /// `io_bytes / io_busy` in bytes/s.
    pub achieved_bytes_per_s: Option<f64>,
    /// Total stall time (ns).
    pub stall_ns: u64,
    /// Stall time per layer (ns), descending.
    pub stall_by_layer: Vec<(u32, u64)>,
    /// Total accesses per tensor, descending (hot first).
    pub tensor_heat: Vec<(String, u64)>,
    /// Peak of each counter.
    pub counter_peaks: Vec<(String, f64)>,
}

impl RunStats {
    /// Compute every figure from `run`.
    pub fn of(run: &RunData) -> RunStats {
        let mut s = RunStats::default();
        let mut tokens = run.tokens.clone();
        tokens.sort_by_key(|t| t.index);
        let t0 = tokens.first().map(|t| t.start_ns).unwrap_or(0);
        if let Some(first) = tokens.first() {
            s.ttft_ns = Some(first.end_ns.saturating_sub(first.start_ns));
        }
        let mut gaps = Vec::new();
        for (i, t) in tokens.iter().enumerate() {
            let inter = if i > 0 && t.phase == Phase::Decode {
                let g = t.end_ns.saturating_sub(tokens[i - 1].end_ns);
                gaps.push(g);
                Some(g)
            } else {
                None
            };
            let stall = union_ns(
                run.stalls.iter().map(|x| (x.start_ns, x.end_ns)),
                t.start_ns,
                t.end_ns,
            );
            let busy = union_ns(
                run.io.iter().map(|r| (r.submit_ns, r.complete_ns)),
                t.start_ns,
                t.end_ns,
            );
            let bytes = run
                .io
                .iter()
                .filter(|r| r.complete_ns >= t.start_ns && r.complete_ns < t.end_ns)
                .map(|r| r.bytes)
                .sum();
            s.tokens.push(TokenStats {
                index: t.index,
                phase: t.phase,
                rel_start_ns: t.start_ns.saturating_sub(t0),
                dur_ns: t.end_ns.saturating_sub(t.start_ns),
                inter_token_ns: inter,
                stall_ns: stall,
                io_busy_ns: busy,
                io_bytes: bytes,
                overlap_pct: (busy > 0)
                    .then(|| 100.0 * busy.saturating_sub(stall) as f64 / busy as f64),
            });
        }
        s.tpot_p50_ns = percentile(&gaps, 50.0);
        s.tpot_p95_ns = percentile(&gaps, 95.0);

        let mut by_layer: BTreeMap<u32, u64> = BTreeMap::new();
        let mut by_op: BTreeMap<String, u64> = BTreeMap::new();
        for o in &run.ops {
            let d = o.end_ns.saturating_sub(o.start_ns);
            if let Some(l) = o.layer {
                *by_layer.entry(l).or_default() += d;
            }
            *by_op.entry(o.op.clone()).or_default() += d;
        }
        s.layer_ns = by_layer.into_iter().collect();
        s.op_ns = by_op.into_iter().collect();
        s.op_ns.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));

        s.io_bytes = run.io.iter().map(|r| r.bytes).sum();
        s.io_busy_ns = union_ns(
            run.io.iter().map(|r| (r.submit_ns, r.complete_ns)),
            0,
            u64::MAX,
        );
        s.achieved_bytes_per_s =
            (s.io_busy_ns > 0).then(|| s.io_bytes as f64 * 1e9 / s.io_busy_ns as f64);
        s.stall_ns = union_ns(
            run.stalls.iter().map(|x| (x.start_ns, x.end_ns)),
            0,
            u64::MAX,
        );
        let mut sl: BTreeMap<u32, u64> = BTreeMap::new();
        for x in &run.stalls {
            if let Some(l) = x.layer {
                *sl.entry(l).or_default() += x.end_ns.saturating_sub(x.start_ns);
            }
        }
        s.stall_by_layer = sl.into_iter().collect();
        s.stall_by_layer
            .sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));

        let mut heat: BTreeMap<&str, u64> = BTreeMap::new();
        for a in &run.accesses {
            *heat.entry(a.tensor.as_str()).or_default() += a.count as u64;
        }
        s.tensor_heat = heat.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        s.tensor_heat
            .sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        s.counter_peaks = run
            .counters
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    c.points.iter().map(|p| p.1).fold(f64::NAN, f64::max),
                )
            })
            .collect();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{IoRequest, Stall, TokenSpan};

    #[test]
    fn percentiles_nearest_rank() {
        let v = [5, 1, 4, 2, 3];
        assert_eq!(percentile(&v, 50.0), Some(3));
        assert_eq!(percentile(&v, 95.0), Some(5));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn union_merges_overlaps_and_clips() {
        assert_eq!(union_ns([(0, 10), (5, 15), (20, 30)], 0, 100), 25);
        assert_eq!(union_ns([(0, 10), (5, 15), (20, 30)], 8, 25), 12);
        assert_eq!(union_ns([], 0, 10), 0);
    }

    #[test]
    fn token_figures() {
        let run = RunData {
            tokens: vec![
                TokenSpan {
                    index: 0,
                    phase: Phase::Prefill,
                    start_ns: 100,
                    end_ns: 1100,
                },
                TokenSpan {
                    index: 1,
                    phase: Phase::Decode,
                    start_ns: 1100,
                    end_ns: 1600,
                },
                TokenSpan {
                    index: 2,
                    phase: Phase::Decode,
                    start_ns: 1600,
                    end_ns: 2300,
                },
            ],
            io: vec![IoRequest {
                id: 1,
                offset: 0,
                bytes: 4096,
                slot: None,
                submit_ns: 1200,
                complete_ns: 1400,
            }],
            stalls: vec![Stall {
                start_ns: 1350,
                end_ns: 1400,
                request: Some(1),
                layer: Some(2),
            }],
            ..RunData::default()
        };
        let s = RunStats::of(&run);
        assert_eq!(s.ttft_ns, Some(1000));
        assert_eq!(s.tokens[1].inter_token_ns, Some(500));
        assert_eq!(s.tpot_p50_ns, Some(500));
        assert_eq!(s.tpot_p95_ns, Some(700));
        assert_eq!(s.tokens[1].io_busy_ns, 200);
        assert_eq!(s.tokens[1].stall_ns, 50);
        assert_eq!(s.tokens[1].overlap_pct, Some(75.0));
        assert_eq!(s.tokens[1].io_bytes, 4096);
        assert_eq!(s.achieved_bytes_per_s, Some(4096.0 * 1e9 / 200.0));
        assert_eq!(s.stall_by_layer, vec![(2, 50)]);
    }
}
