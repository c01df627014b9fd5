// The event sources of a run: engine (stages per thread, tokens, counters), layers/ops (tensor
// trace: layer slices with their ops nested), weights I/O (stream reads as async spans keyed by
// request id, stalls) and kernel (bpftrace: block requests and io_uring as async spans, faults,
// off-CPU and read syscalls per thread). Each maps records to timeline events only.

use super::{Emitted, EventSource, MergeError};
use crate::run::{RunData, StallKind, Unit};
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

    fn emit(&self, tl: &mut Timeline) -> Result<Emitted, MergeError> {
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
            let t = tl.thread(p, &format!("stages (tid {})", s.thread));
            let mut args = vec![("major_faults".into(), Arg::U(s.major_faults))];
            if let Some(g) = s.gen {
                args.push(("gen".into(), Arg::U(g as u64)));
            }
            if let Some(i) = s.index {
                args.push(("index".into(), Arg::U(i)));
            }
            if s.unfinished {
                args.push(("unfinished".into(), Arg::S("true".into())));
            }
            let name = match s.index {
                Some(i) if matches!(s.name.as_str(), "prefill" | "decode") => {
                    format!("{} {i}", s.name)
                }
                _ => s.name.clone(),
            };
            tl.slice(t, &name, "stage", s.start_ns, s.end_ns, args);
            n += 1;
        }
        for k in &r.tokens {
            let thread = if k.gen == 0 {
                "tokens".to_string()
            } else {
                format!("tokens (gen {})", k.gen)
            };
            let t = tl.thread(p, &thread);
            let phase = k.phase.name();
            let mut args = vec![
                ("index".into(), Arg::U(k.index as u64)),
                ("phase".into(), Arg::S(phase.into())),
                ("pass_ns".into(), Arg::U(k.pass_ns)),
            ];
            if let Some(b) = k.storage_read_bytes {
                args.push(("storage_read_bytes".into(), Arg::U(b)));
            }
            if k.streamed_bytes > 0 || k.stall_ns > 0 {
                args.push(("streamed_bytes".into(), Arg::U(k.streamed_bytes)));
                args.push(("stall_ns".into(), Arg::U(k.stall_ns)));
            }
            tl.slice(
                t,
                &format!("token {}", k.index),
                phase,
                k.start_ns,
                k.end_ns,
                args,
            );
            n += 1;
        }
        for c in &r.counters {
            let name = match c.unit {
                Unit::Bytes if !c.name.contains("bytes") => format!("{} (bytes)", c.name),
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

    fn emit(&self, tl: &mut Timeline) -> Result<Emitted, MergeError> {
        let r = self.run;
        if r.ops.is_empty() {
            return Ok(Emitted::default());
        }
        let p = tl.process(self.name());
        let mut n = 0;
        let mut layers: BTreeMap<(u32, u32, u32, u32), (u64, u64)> = BTreeMap::new();
        for o in &r.ops {
            let t = tl.thread(p, &format!("compute (tid {})", o.thread));
            let mut args = vec![
                ("token".into(), Arg::U(o.token as u64)),
                ("phase".into(), Arg::S(o.phase.name().into())),
                ("weight_bytes".into(), Arg::U(o.weight_bytes)),
            ];
            if let Some(l) = o.layer {
                args.push(("layer".into(), Arg::U(l as u64)));
                let e = layers
                    .entry((o.thread, o.gen, o.token, l))
                    .or_insert((o.start_ns, o.end_ns));
                e.0 = e.0.min(o.start_ns);
                e.1 = e.1.max(o.end_ns);
            }
            tl.slice(t, &o.op, "op", o.start_ns, o.end_ns, args);
            n += 1;
        }
        for ((thread, _gen, token, layer), (s, e)) in layers {
            let t = tl.thread(p, &format!("compute (tid {thread})"));
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

/// Stream reads as async spans keyed by request id (they overlap), stalls as slices.
pub struct IoSource<'a> {
    /// The run.
    pub run: &'a RunData,
}

impl EventSource for IoSource<'_> {
    fn name(&self) -> &str {
        "weights I/O"
    }

    fn emit(&self, tl: &mut Timeline) -> Result<Emitted, MergeError> {
        let r = self.run;
        let waits: Vec<_> = r
            .stalls
            .iter()
            .filter(|s| s.kind == StallKind::StreamWait)
            .collect();
        if r.io.is_empty() && waits.is_empty() {
            return Ok(Emitted::default());
        }
        let p = tl.process(self.name());
        let mut n = 0;
        for q in &r.io {
            let mut args = vec![
                ("chunk".into(), Arg::U(q.chunk as u64)),
                ("offset".into(), Arg::U(q.offset)),
                ("bytes".into(), Arg::U(q.bytes)),
            ];
            if let Some(s) = q.slot {
                args.push(("slot".into(), Arg::U(s as u64)));
            }
            let name = if q.chunk == u32::MAX {
                "direct read".to_string()
            } else if q.chunk & 0x8000_0000 != 0 {
                format!("resident extent {}", q.chunk & 0x7fff_ffff)
            } else {
                format!("chunk {}", q.chunk)
            };
            tl.span(p, &name, "io", q.id, q.submit_ns, q.complete_ns, args);
            n += 1;
        }
        if !waits.is_empty() {
            let t = tl.thread(p, "stalls");
            for s in waits {
                let mut args = vec![("chunk".into(), Arg::U(s.what))];
                if let Some(l) = s.layer {
                    args.push(("layer".into(), Arg::U(l as u64)));
                }
                if let Some(o) = &s.op {
                    args.push(("op".into(), Arg::S(o.clone())));
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

/// bpftrace: block requests and io_uring requests as async spans, major faults, off-CPU
/// intervals and read syscalls as slices on one thread per (kind, tid).
pub struct KernelSource<'a> {
    /// The run.
    pub run: &'a RunData,
}

impl EventSource for KernelSource<'_> {
    fn name(&self) -> &str {
        "kernel (bpftrace)"
    }

    fn emit(&self, tl: &mut Timeline) -> Result<Emitted, MergeError> {
        let r = self.run;
        if r.block_io.is_empty() && r.kernel.is_empty() {
            return Ok(Emitted::default());
        }
        let p = tl.process(self.name());
        let mut n = 0;
        for (i, b) in r.block_io.iter().enumerate() {
            tl.span(
                p,
                &format!("block {} {}", b.rwbs, b.dev),
                "block",
                i as u64 + 1,
                b.issue_ns,
                b.complete_ns,
                vec![
                    ("dev".into(), Arg::S(b.dev.clone())),
                    ("sector".into(), Arg::U(b.sector)),
                    ("bytes".into(), Arg::U(b.bytes)),
                    ("stage".into(), Arg::S(b.stage.clone())),
                ],
            );
            n += 1;
        }
        let mut uring = 0u64;
        for k in &r.kernel {
            let args = vec![("stage".into(), Arg::S(k.stage.clone()))];
            if k.kind == "uring" {
                uring += 1;
                tl.span(p, &k.label, "uring", uring, k.start_ns, k.end_ns, args);
            } else {
                let what = match k.kind.as_str() {
                    "major" => "major faults",
                    "offcpu" => "off-CPU",
                    "rd" => "read syscalls",
                    other => other,
                };
                let t = tl.thread(p, &format!("{what} (tid {})", k.tid));
                tl.slice(t, &k.label, &k.kind, k.start_ns, k.end_ns, args);
            }
            n += 1;
        }
        Ok(Emitted {
            events: n,
            notes: vec![],
        })
    }
}
