// Figures derived from a run's records: TTFT and TPOT percentiles (the engine's nearest-rank
// percentile), per-token stall / I/O busy time / overlap, per-layer and per-op time, achieved
// read throughput (stream reads and block requests), fault and stall attribution, tensor heat.
// Pure functions of `RunData`, shared by the report and tests.

use super::{Phase, RunData, StallKind};
use std::collections::BTreeMap;

/// Nearest-rank percentile (`p` in 0..=100) of unsorted values (the engine's definition, as in
/// the manifest's TPOT); `None` when empty.
pub fn percentile(values: &[u64], p: f64) -> Option<u64> {
    (!values.is_empty()).then(|| flashslim::generate::percentile(values, p / 100.0))
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
    /// Generation index.
    pub gen: u32,
    /// Token index.
    pub index: u32,
    /// Pass kind.
    pub phase: Phase,
    /// Start relative to the run's first token start (ns).
    pub rel_start_ns: u64,
    /// Time from the previous token (or the prefill start) to this one (ns).
    pub dur_ns: u64,
    /// The engine's pass time for it (ns).
    pub pass_ns: u64,
    /// Compute stalled on stream reads inside the span (ns).
    pub stall_ns: u64,
    /// Time in major page faults inside the span (ns; bpftrace `faults`).
    pub fault_ns: u64,
    /// Time with at least one stream read in flight inside the span (ns).
    pub io_busy_ns: u64,
    /// Bytes of stream reads completed inside the span.
    pub io_bytes: u64,
    /// Share of stream read time hidden behind compute: `(io_busy - stall) / io_busy`, percent.
    pub overlap_pct: Option<f64>,
    /// Time with at least one block request in flight inside the span (ns; bpftrace `blockio`).
    pub block_busy_ns: u64,
    /// Bytes of block requests completed inside the span.
    pub block_bytes: u64,
    /// `/proc/self/io` read_bytes for the token (the engine's count).
    pub storage_read_bytes: Option<u64>,
}

impl TokenStats {
    /// `3`, or `g1/3` after the first generation.
    pub fn label(&self) -> String {
        if self.gen == 0 {
            self.index.to_string()
        } else {
            format!("g{}/{}", self.gen, self.index)
        }
    }
}

/// Figures of a whole run.
#[derive(Clone, Debug, Default)]
pub struct RunStats {
    /// Median over generations of first token sampled − prefill start (ns).
    pub ttft_ns: Option<u64>,
    /// Median inter-token time of decode tokens (ns).
    pub tpot_p50_ns: Option<u64>,
    /// 95th percentile inter-token time (ns).
    pub tpot_p95_ns: Option<u64>,
    /// Per token, by (generation, index).
    pub tokens: Vec<TokenStats>,
    /// Op time per layer (ns), layer order.
    pub layer_ns: Vec<(u32, u64)>,
    /// Op time per op name (ns), descending.
    pub op_ns: Vec<(String, u64)>,
    /// Op time per (layer, op name) (ns).
    pub layer_op_ns: BTreeMap<(u32, String), u64>,
    /// Sum of stream read sizes.
    pub io_bytes: u64,
    /// Union of stream read intervals (ns).
    pub io_busy_ns: u64,
    /// `io_bytes / io_busy` in bytes/s.
    pub achieved_bytes_per_s: Option<f64>,
    /// Sum of block request sizes.
    pub block_bytes: u64,
    /// Union of block request intervals (ns).
    pub block_busy_ns: u64,
    /// `block_bytes / block_busy` in bytes/s.
    pub block_bytes_per_s: Option<f64>,
    /// Total stream stall time (ns).
    pub stall_ns: u64,
    /// Total major-fault time (ns).
    pub fault_ns: u64,
    /// Stall time per layer (ns) per kind, descending.
    pub stall_by_layer: Vec<(StallKind, u32, u64)>,
    /// Stall time per op name (ns) per kind, descending.
    pub stall_by_op: Vec<(StallKind, String, u64)>,
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
        tokens.sort_by_key(|t| (t.gen, t.index));
        let t0 = tokens.iter().map(|t| t.start_ns).min().unwrap_or(0);
        let ttfts: Vec<u64> = tokens
            .iter()
            .filter(|t| t.index == 0)
            .map(|t| t.end_ns.saturating_sub(t.start_ns))
            .collect();
        s.ttft_ns = percentile(&ttfts, 50.0);
        let mut gaps = Vec::new();
        let stream_stalls: Vec<(u64, u64)> = run
            .stalls
            .iter()
            .filter(|x| x.kind == StallKind::StreamWait)
            .map(|x| (x.start_ns, x.end_ns))
            .collect();
        let faults: Vec<(u64, u64)> = run
            .stalls
            .iter()
            .filter(|x| x.kind == StallKind::MajorFault)
            .map(|x| (x.start_ns, x.end_ns))
            .collect();
        let reads: Vec<(u64, u64)> = run
            .io
            .iter()
            .map(|r| (r.submit_ns, r.complete_ns))
            .collect();
        let blocks: Vec<(u64, u64)> = run
            .block_io
            .iter()
            .map(|b| (b.issue_ns, b.complete_ns))
            .collect();
        for t in &tokens {
            let dur = t.end_ns.saturating_sub(t.start_ns);
            let inter = (t.phase == Phase::Decode).then_some(dur);
            if let Some(g) = inter {
                gaps.push(g);
            }
            let (a, b) = (t.start_ns, t.end_ns);
            let stall = union_ns(stream_stalls.iter().copied(), a, b);
            let busy = union_ns(reads.iter().copied(), a, b);
            let bytes = run
                .io
                .iter()
                .filter(|r| r.complete_ns > a && r.complete_ns <= b)
                .map(|r| r.bytes)
                .sum();
            let block_bytes = run
                .block_io
                .iter()
                .filter(|r| r.complete_ns > a && r.complete_ns <= b)
                .map(|r| r.bytes)
                .sum();
            s.tokens.push(TokenStats {
                gen: t.gen,
                index: t.index,
                phase: t.phase,
                rel_start_ns: a.saturating_sub(t0),
                dur_ns: dur,
                pass_ns: t.pass_ns,
                stall_ns: stall,
                fault_ns: union_ns(faults.iter().copied(), a, b),
                io_busy_ns: busy,
                io_bytes: bytes,
                overlap_pct: (busy > 0)
                    .then(|| 100.0 * busy.saturating_sub(stall) as f64 / busy as f64),
                block_busy_ns: union_ns(blocks.iter().copied(), a, b),
                block_bytes,
                storage_read_bytes: t.storage_read_bytes,
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
                *s.layer_op_ns.entry((l, o.op.clone())).or_default() += d;
            }
            *by_op.entry(o.op.clone()).or_default() += d;
        }
        s.layer_ns = by_layer.into_iter().collect();
        s.op_ns = by_op.into_iter().collect();
        s.op_ns.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));

        s.io_bytes = run.io.iter().map(|r| r.bytes).sum();
        s.io_busy_ns = union_ns(reads.iter().copied(), 0, u64::MAX);
        s.achieved_bytes_per_s =
            (s.io_busy_ns > 0).then(|| s.io_bytes as f64 * 1e9 / s.io_busy_ns as f64);
        s.block_bytes = run.block_io.iter().map(|r| r.bytes).sum();
        s.block_busy_ns = union_ns(blocks.iter().copied(), 0, u64::MAX);
        s.block_bytes_per_s =
            (s.block_busy_ns > 0).then(|| s.block_bytes as f64 * 1e9 / s.block_busy_ns as f64);
        s.stall_ns = union_ns(stream_stalls.iter().copied(), 0, u64::MAX);
        s.fault_ns = union_ns(faults.iter().copied(), 0, u64::MAX);

        let mut sl: BTreeMap<(u8, u32), u64> = BTreeMap::new();
        let mut so: BTreeMap<(u8, String), u64> = BTreeMap::new();
        let kind_id = |k: StallKind| (k == StallKind::MajorFault) as u8;
        let kind_of = |i: u8| {
            if i == 1 {
                StallKind::MajorFault
            } else {
                StallKind::StreamWait
            }
        };
        for x in &run.stalls {
            let d = x.end_ns.saturating_sub(x.start_ns);
            if let Some(l) = x.layer {
                *sl.entry((kind_id(x.kind), l)).or_default() += d;
            }
            let op = match (&x.op, x.stage.is_empty()) {
                (Some(o), _) => o.clone(),
                (None, false) => format!("(in {}, no traced op)", x.stage),
                (None, true) => "(no traced op)".into(),
            };
            *so.entry((kind_id(x.kind), op)).or_default() += d;
        }
        s.stall_by_layer = sl
            .into_iter()
            .map(|((k, l), d)| (kind_of(k), l, d))
            .collect();
        s.stall_by_layer
            .sort_by(|a, b| b.2.cmp(&a.2).then(a.1.cmp(&b.1)));
        s.stall_by_op = so
            .into_iter()
            .map(|((k, o), d)| (kind_of(k), o, d))
            .collect();
        s.stall_by_op
            .sort_by(|a, b| b.2.cmp(&a.2).then(a.1.cmp(&b.1)));

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

    fn tok(index: u32, phase: Phase, start_ns: u64, end_ns: u64) -> TokenSpan {
        TokenSpan {
            gen: 0,
            index,
            phase,
            start_ns,
            end_ns,
            pass_ns: end_ns - start_ns,
            storage_read_bytes: None,
            streamed_bytes: 0,
            stall_ns: 0,
            rss_bytes: None,
        }
    }

    #[test]
    fn token_figures() {
        let run = RunData {
            tokens: vec![
                tok(0, Phase::Prefill, 100, 1100),
                tok(1, Phase::Decode, 1100, 1600),
                tok(2, Phase::Decode, 1600, 2300),
            ],
            io: vec![IoRequest {
                id: 1,
                chunk: 3,
                offset: 0,
                bytes: 4096,
                slot: None,
                submit_ns: 1200,
                complete_ns: 1400,
            }],
            stalls: vec![
                Stall {
                    kind: StallKind::StreamWait,
                    start_ns: 1350,
                    end_ns: 1400,
                    what: 3,
                    layer: Some(2),
                    op: Some("qkv".into()),
                    stage: String::new(),
                },
                Stall {
                    kind: StallKind::MajorFault,
                    start_ns: 200,
                    end_ns: 300,
                    what: 7,
                    layer: Some(0),
                    op: Some("ffn_down".into()),
                    stage: "prefill".into(),
                },
            ],
            ..RunData::default()
        };
        let s = RunStats::of(&run);
        assert_eq!(s.ttft_ns, Some(1000));
        assert_eq!(s.tokens[1].dur_ns, 500);
        assert_eq!(s.tpot_p50_ns, Some(500));
        assert_eq!(s.tpot_p95_ns, Some(700));
        assert_eq!(s.tokens[1].io_busy_ns, 200);
        assert_eq!(s.tokens[1].stall_ns, 50);
        assert_eq!(s.tokens[1].overlap_pct, Some(75.0));
        assert_eq!(s.tokens[1].io_bytes, 4096);
        assert_eq!(s.tokens[0].fault_ns, 100);
        assert_eq!(s.tokens[0].stall_ns, 0);
        assert_eq!(s.achieved_bytes_per_s, Some(4096.0 * 1e9 / 200.0));
        assert_eq!(
            s.stall_by_layer,
            vec![
                (StallKind::MajorFault, 0, 100),
                (StallKind::StreamWait, 2, 50)
            ]
        );
        assert_eq!(s.stall_by_op[1], (StallKind::StreamWait, "qkv".into(), 50));
        assert_eq!((s.stall_ns, s.fault_ns), (50, 100));
    }
}
