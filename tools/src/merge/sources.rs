// The event sources of a run: engine (stages, tokens, counters), layers/ops (tensor trace),
// streaming I/O (async reads + stalls) and kernel block I/O (bpftrace, converted from
// CLOCK_BOOTTIME through the clock_sync pairs). Each maps records to timeline events only.

use super::{Emitted, EventSource, MergeError};
use crate::run::{ClockSync, Phase, RunData, Unit};
use crate::timeline::{Arg, Timeline};
use std::collections::BTreeMap;

/// Stages per engine thread, one slice per generated token, and the counters.
pub struct EngineSource<'a> {
    /// The run.
    pub run: &'a RunData,
}

impl EventSource for EngineSource<'_> {
    fn name(&self) -> &str {
        "engine"
    }

    fn emit(&self, tl: &mut Timeline, _clock: &ClockSync) -> Result<Emitted, MergeError> {
        let r = self.run;
        let mut n = 0;
        let p = tl.process(self.name());
        for s in &r.stages {
            if s.end_ns < s.start_ns {
                return Err(MergeError::Invalid(format!(
                    "stage {:?} ends before it starts ({} < {})",
                    s.name, s.end_ns, s.start_ns
                )));
            }
            let t = tl.thread(p, &format!("stages (thread {})", s.thread));
            tl.slice(t, &s.name, "stage", s.start_ns, s.end_ns, vec![]);
            n += 1;
        }
        if !r.tokens.is_empty() {
            let t = tl.thread(p, "tokens");
            for k in &r.tokens {
                let phase = match k.phase {
                    Phase::Prefill => "prefill",
                    Phase::Decode => "decode",
                };
                tl.slice(
                    t,
                    &format!("token {}", k.index),
                    phase,
                    k.start_ns,
                    k.end_ns,
                    vec![
                        ("index".into(), Arg::U(k.index as u64)),
                        ("phase".into(), Arg::S(phase.into())),
                    ],
                );
                n += 1;
            }
        }
        for c in &r.counters {
            let name = match c.unit {
                Unit::Bytes if !c.name.ends_with("bytes") => format!("{} (bytes)", c.name),
                _ => c.name.clone(),
            };
            for &(t, v) in &c.points {
                tl.counter(p, &name, t, v);
                n += 1;
            }
        }
        Ok(Emitted {
            events: n,
            notes: vec![],
        })
    }
}

/// Ops from the tensor trace, grouped under one slice per (token, layer) on each compute
/// thread, so layer and op time read as nested slices.
pub struct OpsSource<'a> {
    /// The run.
    pub run: &'a RunData,
}

impl EventSource for OpsSource<'_> {
    fn name(&self) -> &str {
        "layers/ops"
    }

    fn emit(&self, tl: &mut Timeline, _clock: &ClockSync) -> Result<Emitted, MergeError> {
        let r = self.run;
        if r.ops.is_empty() {
            return Ok(Emitted::default());
        }
        let p = tl.process(self.name());
        let mut n = 0;
        let mut layers: BTreeMap<(u32, u32, u32), (u64, u64)> = BTreeMap::new();
        for o in &r.ops {
            let t = tl.thread(p, &format!("compute {}", o.thread));
            let mut args = vec![("token".into(), Arg::U(o.token as u64))];
            if let Some(l) = o.layer {
                args.push(("layer".into(), Arg::U(l as u64)));
                let e = layers
                    .entry((o.thread, o.token, l))
                    .or_insert((o.start_ns, o.end_ns));
                e.0 = e.0.min(o.start_ns);
                e.1 = e.1.max(o.end_ns);
            }
            tl.slice(t, &o.op, "op", o.start_ns, o.end_ns, args);
            n += 1;
        }
        for ((thread, token, layer), (s, e)) in layers {
            let t = tl.thread(p, &format!("compute {thread}"));
            tl.slice(
                t,
                &format!("layer {layer}"),
                "layer",
                s,
                e,
                vec![
                    ("token".into(), Arg::U(token as u64)),
                    ("layer".into(), Arg::U(layer as u64)),
                ],
            );
            n += 1;
        }
        Ok(Emitted {
            events: n,
            notes: vec![],
        })
    }
}

/// Streaming reads as async spans keyed by request id (they overlap), stalls as slices.
pub struct IoSource<'a> {
    /// The run.
    pub run: &'a RunData,
}

impl EventSource for IoSource<'_> {
    fn name(&self) -> &str {
        "weights I/O"
    }

    fn emit(&self, tl: &mut Timeline, _clock: &ClockSync) -> Result<Emitted, MergeError> {
        let r = self.run;
        if r.io.is_empty() && r.stalls.is_empty() {
            return Ok(Emitted::default());
        }
        let p = tl.process(self.name());
        let mut n = 0;
        for q in &r.io {
            let mut args = vec![
                ("offset".into(), Arg::U(q.offset)),
                ("bytes".into(), Arg::U(q.bytes)),
            ];
            if let Some(s) = q.slot {
                args.push(("slot".into(), Arg::U(s as u64)));
            }
            tl.span(p, "read", "io", q.id, q.submit_ns, q.complete_ns, args);
            n += 1;
        }
        if !r.stalls.is_empty() {
            let t = tl.thread(p, "stalls");
            for s in &r.stalls {
                let mut args = vec![];
                if let Some(q) = s.request {
                    args.push(("request".into(), Arg::U(q)));
                }
                if let Some(l) = s.layer {
                    args.push(("layer".into(), Arg::U(l as u64)));
                }
                tl.slice(t, "stall", "stall", s.start_ns, s.end_ns, args);
                n += 1;
            }
        }
        Ok(Emitted {
            events: n,
            notes: vec![],
        })
    }
}

/// Block-layer requests from bpftrace (async spans keyed by sequence number), converted to
/// CLOCK_MONOTONIC; without clock_sync pairs for their clock they are left out with a note.
pub struct KernelSource<'a> {
    /// The run.
    pub run: &'a RunData,
}

impl EventSource for KernelSource<'_> {
    fn name(&self) -> &str {
        "kernel (bpftrace)"
    }

    fn emit(&self, tl: &mut Timeline, clock: &ClockSync) -> Result<Emitted, MergeError> {
        let r = self.run;
        if r.block_io.is_empty() {
            return Ok(Emitted::default());
        }
        let p = tl.process(self.name());
        let mut out = Emitted::default();
        let mut skipped = 0;
        for (i, b) in r.block_io.iter().enumerate() {
            match (
                clock.to_monotonic(b.clock, b.issue_ns),
                clock.to_monotonic(b.clock, b.complete_ns),
            ) {
                (Some(s), Some(e)) => {
                    tl.span(
                        p,
                        "block rq",
                        "block",
                        i as u64,
                        s,
                        e,
                        vec![
                            ("dev".into(), Arg::S(b.dev.clone())),
                            ("sector".into(), Arg::U(b.sector)),
                            ("bytes".into(), Arg::U(b.bytes)),
                            ("raw_issue_ns".into(), Arg::U(b.issue_ns)),
                        ],
                    );
                    out.events += 1;
                }
                _ => skipped += 1,
            }
        }
        if skipped > 0 {
            out.notes.push(format!(
                "{skipped} block I/O record(s) left out: no clock_sync pair relates their clock \
                 to CLOCK_MONOTONIC"
            ));
        }
        Ok(out)
    }
}
