// The token sink every logged generation runs through: stage begin/end for prefill, decode,
// sample and detokenize passes, the `token` probe (exactly once per generated token), token
// records with per-token I/O deltas, io.jsonl draining, and the stop-on-signal check.

use super::{PassCtx, Profiler};
use crate::generate::TokenSink;
use crate::probes::{self, Stage};
use crate::runlog::records::TokenRecord;
use crate::runlog::signals;
use crate::weights::{IoEvent, Phase, WeightSource};

/// Wraps the caller's sink (stdout, output.txt...) with profiling.
pub struct ProfiledSink<'a> {
    inner: &'a mut dyn TokenSink,
    prof: &'a mut Profiler,
    ctx: &'a PassCtx,
    source: &'a dyn WeightSource,
    gen: u32,
    /// Next sequence position.
    pos: u32,
    /// Index of the token the next decode pass produces.
    next_token: u64,
    pass_start: u64,
    /// Pass time toward the next token (all prefill passes for token 0).
    pass_ns: u64,
    sample_start: u64,
    last_token_ns: u64,
    read_bytes: Option<u64>,
    streamed: u64,
    stall: u64,
    events: Vec<IoEvent>,
    /// Set when a signal stopped the generation.
    pub interrupted: Option<i32>,
}

impl<'a> ProfiledSink<'a> {
    pub fn new(
        inner: &'a mut dyn TokenSink,
        prof: &'a mut Profiler,
        ctx: &'a PassCtx,
        source: &'a dyn WeightSource,
        gen: u32,
    ) -> ProfiledSink<'a> {
        ctx.gen.set(gen as u16);
        prof.gen = Some(gen);
        let recording = prof.is_recording();
        let st = source.stats();
        ProfiledSink {
            inner,
            prof,
            ctx,
            source,
            gen,
            pos: 0,
            next_token: 0,
            pass_start: 0,
            pass_ns: 0,
            sample_start: 0,
            last_token_ns: 0,
            read_bytes: if recording {
                crate::procstat::storage_read_bytes()
            } else {
                None
            },
            streamed: st.streamed_bytes,
            stall: st.stall_ns,
            events: Vec::new(),
            interrupted: None,
        }
    }

    fn drain_io(&mut self) {
        self.events.clear();
        self.source.drain_io_events(&mut self.events);
        if !self.events.is_empty() {
            let ev = std::mem::take(&mut self.events);
            self.prof.io_events(&ev, self.next_token);
            self.events = ev;
        }
    }
}

impl TokenSink for ProfiledSink<'_> {
    fn pass_begin(&mut self, index: usize, phase: Phase, n_tokens: usize) {
        let stage = match phase {
            Phase::Prefill => Stage::Prefill,
            Phase::Decode => Stage::Decode,
        };
        self.ctx.phase.set(phase.id());
        self.ctx.token.set(match phase {
            Phase::Prefill => 0,
            Phase::Decode => self.next_token as u32,
        });
        self.ctx.pos.set(self.pos);
        self.ctx.n_tokens.set(n_tokens as u32);
        self.prof.begin(stage, Some(index as u64));
        self.pass_start = probes::monotonic_ns();
        self.inner.pass_begin(index, phase, n_tokens);
    }

    fn pass_end(&mut self, index: usize, phase: Phase, n_tokens: usize) {
        let now = probes::monotonic_ns();
        self.inner.pass_end(index, phase, n_tokens);
        self.pos += n_tokens as u32;
        self.pass_ns += now.saturating_sub(self.pass_start);
        self.prof.end(match phase {
            Phase::Prefill => Stage::Prefill,
            Phase::Decode => Stage::Decode,
        });
        if let Some(t) = self.ctx.trace.borrow_mut().as_mut() {
            t.flush();
        }
        self.drain_io();
        self.prof.flush();
    }

    fn sample_begin(&mut self, index: usize) {
        self.prof.begin(Stage::Sample, Some(index as u64));
        self.sample_start = probes::monotonic_ns();
        self.inner.sample_begin(index);
    }

    fn sample_end(&mut self, index: usize, id: u32) {
        self.prof.end(Stage::Sample);
        self.inner.sample_end(index, id);
    }

    fn token(&mut self, index: usize, id: u32) -> bool {
        let now = probes::monotonic_ns();
        let phase = if index == 0 { 0 } else { 1 };
        probes::token(index as u64, phase);
        if self.prof.is_recording() {
            let rb = crate::procstat::storage_read_bytes();
            let st = self.source.stats();
            let rec = TokenRecord {
                gen: self.gen,
                index: index as u64,
                id,
                phase: if index == 0 { "prefill" } else { "decode" }.into(),
                t_ns: now,
                pass_ns: self.pass_ns,
                sample_ns: now.saturating_sub(self.sample_start),
                gap_ns: if index == 0 {
                    0
                } else {
                    now.saturating_sub(self.last_token_ns)
                },
                storage_read_bytes: match (rb, self.read_bytes) {
                    (Some(a), Some(b)) => Some(a.saturating_sub(b)),
                    _ => None,
                },
                streamed_bytes: st.streamed_bytes.saturating_sub(self.streamed),
                stall_ns: st.stall_ns.saturating_sub(self.stall),
                rss_bytes: crate::procstat::rss_bytes(),
            };
            self.prof.token(&rec);
            self.read_bytes = rb;
            self.streamed = st.streamed_bytes;
            self.stall = st.stall_ns;
        }
        self.last_token_ns = now;
        self.pass_ns = 0;
        self.next_token = index as u64 + 1;
        self.prof.begin(Stage::Detokenize, Some(index as u64));
        let go_on = self.inner.token(index, id);
        self.prof.end(Stage::Detokenize);
        if let Some(sig) = signals::received() {
            self.interrupted = Some(sig);
            return false;
        }
        go_on
    }
}
