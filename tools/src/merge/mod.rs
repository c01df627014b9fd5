//! `slim merge`: turn a run's records into one [`Timeline`] — one process per source, on
//! CLOCK_MONOTONIC shifted to the run's first event — ready for a writer
//! ([`crate::timeline::chrome`]).
//!
//! Each source implements [`EventSource`]. The sources take the format-independent records of
//! [`crate::run::RunData`], which `run::load` fills through the engine's readers with every time
//! already on CLOCK_MONOTONIC (bpftrace's BOOTTIME rows aligned by the `clock_sync` rows).

mod sources;

pub use sources::{EngineSource, IoSource, KernelSource, OpsSource};

use crate::run::{Family, InputState, RunData};
use crate::timeline::Timeline;
use std::fmt;

/// A source of timeline events (one process in the merged trace).
pub trait EventSource {
    /// Process name in the trace.
    fn name(&self) -> &str;
    /// Add this source's events to `tl`. Returns the number of events added; a note explains
    /// anything skipped.
    fn emit(&self, tl: &mut Timeline) -> Result<Emitted, MergeError>;
}

/// What a source added.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Emitted {
    /// Events added.
    pub events: usize,
    /// Why some records were left out.
    pub notes: Vec<String>,
}

/// Why a merge failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum MergeError {
    /// No source produced an event; the text lists the inputs and their states.
    Empty(String),
    /// A record is inconsistent (named).
    Invalid(String),
}

impl fmt::Display for MergeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MergeError::Empty(s) => write!(f, "nothing to merge: {s}"),
            MergeError::Invalid(s) => write!(f, "cannot merge: {s}"),
        }
    }
}

impl std::error::Error for MergeError {}

/// What a merge did.
#[derive(Debug, Default, Clone)]
pub struct MergeReport {
    /// `(source, events)`.
    pub sources: Vec<(String, usize)>,
    /// Slices moved to overflow threads because they broke nesting.
    pub moved_overlaps: usize,
    /// Notes from the sources.
    pub notes: Vec<String>,
    /// The CLOCK_MONOTONIC ns that became ts 0.
    pub origin_ns: u64,
}

/// The sources of a run, in process order.
pub fn sources(run: &RunData) -> Vec<Box<dyn EventSource + '_>> {
    vec![
        Box::new(EngineSource { run }),
        Box::new(OpsSource { run }),
        Box::new(IoSource { run }),
        Box::new(KernelSource { run }),
    ]
}

/// Merge `run` into a settled, origin-shifted timeline.
pub fn merge(run: &RunData) -> Result<(Timeline, MergeReport), MergeError> {
    merge_sources(run, &sources(run))
}

/// Merge explicit sources (tests and future callers with extra sources).
pub fn merge_sources(
    run: &RunData,
    srcs: &[Box<dyn EventSource + '_>],
) -> Result<(Timeline, MergeReport), MergeError> {
    let mut tl = Timeline::new();
    let mut rep = MergeReport {
        notes: run.notes.clone(),
        ..MergeReport::default()
    };
    for s in srcs {
        let before = tl.processes.len();
        let e = s.emit(&mut tl)?;
        // A source that added nothing leaves no empty process behind.
        if e.events == 0 {
            tl.processes.truncate(before);
        }
        rep.sources.push((s.name().to_string(), e.events));
        rep.notes.extend(e.notes);
    }
    if tl.event_count() == 0 {
        return Err(MergeError::Empty(describe_inputs(run)));
    }
    rep.moved_overlaps = tl.settle();
    rep.origin_ns = tl.min_ns().unwrap_or(0);
    tl.shift(rep.origin_ns);
    tl.metadata.insert("run_id".into(), run.label.clone());
    tl.metadata.insert("clock".into(), "CLOCK_MONOTONIC".into());
    tl.metadata
        .insert("origin_monotonic_ns".into(), rep.origin_ns.to_string());
    tl.metadata.insert(
        "generator".into(),
        format!("slim merge {}", env!("CARGO_PKG_VERSION")),
    );
    Ok((tl, rep))
}

/// `stages.jsonl (missing), tokens.jsonl (unreadable: ...)` for error messages.
pub fn describe_inputs(run: &RunData) -> String {
    let timed = [
        Family::Stages,
        Family::Tokens,
        Family::Io,
        Family::TensorTrace,
        Family::Bpf,
    ];
    let parts: Vec<String> = run
        .inputs
        .iter()
        .filter(|i| timed.contains(&i.family))
        .map(|i| {
            let st = match &i.state {
                InputState::Loaded(s) => format!("loaded: {s}"),
                InputState::Partial(s) => format!("partial: {s}"),
                InputState::Missing => "missing".into(),
                InputState::Unreadable(e) => format!("unreadable: {e}"),
            };
            format!("{} ({st})", i.file)
        })
        .collect();
    if parts.is_empty() {
        "the run has no timed records".into()
    } else {
        format!("no timed records in the run; {}", parts.join(", "))
    }
}

#[cfg(test)]
mod tests;
