//! The internal event model of a merged trace, independent of any output format: processes
//! with named threads, complete slices, async spans keyed by id, counters and instants, all on
//! one nanosecond time base. Writers ([`chrome`]; a Perfetto protobuf writer later) take a
//! finished [`Timeline`]; [`validate`] checks a written Chrome trace.
//!
//! Slices on one thread must nest. [`Timeline::settle`] enforces it without losing anything:
//! a slice that would partially overlap its thread goes to an overflow thread named
//! `"<thread> (overlap N)"`, the way Perfetto's own importer handles it.

pub mod chrome;
pub mod validate;

use std::collections::BTreeMap;

/// A value in an event's `args`.
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    /// Unsigned integer (exact in JSON up to 2^53; larger ones are written as strings).
    U(u64),
    /// Signed integer.
    I(i64),
    /// Float.
    F(f64),
    /// Text.
    S(String),
}

/// Event arguments, in insertion order.
pub type Args = Vec<(String, Arg)>;

/// A duration on a thread.
#[derive(Clone, Debug, PartialEq)]
pub struct Slice {
    /// Name.
    pub name: String,
    /// Category (`stage`, `op`, ...).
    pub cat: String,
    /// Start (ns).
    pub start_ns: u64,
    /// Duration (ns).
    pub dur_ns: u64,
    /// Arguments.
    pub args: Args,
}

impl Slice {
    /// End (ns).
    pub fn end_ns(&self) -> u64 {
        self.start_ns + self.dur_ns
    }
}

/// An instant on a thread.
#[derive(Clone, Debug, PartialEq)]
pub struct Instant {
    /// Name.
    pub name: String,
    /// Category.
    pub cat: String,
    /// Time (ns).
    pub t_ns: u64,
    /// Arguments.
    pub args: Args,
}

/// A span that may overlap others of its process (I/O requests): matched by `cat` + `id`.
#[derive(Clone, Debug, PartialEq)]
pub struct AsyncSpan {
    /// Name.
    pub name: String,
    /// Category; with `id` the key of the pair.
    pub cat: String,
    /// Request id.
    pub id: u64,
    /// Begin (ns).
    pub start_ns: u64,
    /// End (ns).
    pub end_ns: u64,
    /// Arguments (on the begin event).
    pub args: Args,
}

/// One counter track of a process.
#[derive(Clone, Debug, PartialEq)]
pub struct Counter {
    /// Track name.
    pub name: String,
    /// `(ns, value)` samples.
    pub samples: Vec<(u64, f64)>,
}

/// A thread: named, with slices and instants.
#[derive(Clone, Debug, PartialEq)]
pub struct Thread {
    /// Thread id within the trace.
    pub tid: u32,
    /// Display name.
    pub name: String,
    /// Slices (any order until [`Timeline::settle`]).
    pub slices: Vec<Slice>,
    /// Instants.
    pub instants: Vec<Instant>,
}

/// A process: one per source.
#[derive(Clone, Debug, PartialEq)]
pub struct Process {
    /// Process id within the trace.
    pub pid: u32,
    /// Display name (the source).
    pub name: String,
    /// Threads.
    pub threads: Vec<Thread>,
    /// Async spans.
    pub spans: Vec<AsyncSpan>,
    /// Counters.
    pub counters: Vec<Counter>,
}

/// Handle to a process of a [`Timeline`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pid(usize);

/// Handle to a thread of a [`Timeline`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tid(usize, usize);

/// A merged trace under construction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timeline {
    /// Processes in creation order (pids 1, 2, ...).
    pub processes: Vec<Process>,
    /// Key/values describing the trace (run id, clock, origin), written as metadata.
    pub metadata: BTreeMap<String, String>,
}

impl Timeline {
    /// An empty timeline.
    pub fn new() -> Timeline {
        Timeline::default()
    }

    /// Add a process named `name`.
    pub fn process(&mut self, name: &str) -> Pid {
        let pid = self.processes.len() as u32 + 1;
        self.processes.push(Process {
            pid,
            name: name.to_string(),
            threads: Vec::new(),
            spans: Vec::new(),
            counters: Vec::new(),
        });
        Pid(self.processes.len() - 1)
    }

    /// The thread named `name` of `p`, created on first use. Tids are unique in the trace:
    /// `pid * 1000 + n`.
    pub fn thread(&mut self, p: Pid, name: &str) -> Tid {
        let proc = &mut self.processes[p.0];
        if let Some(i) = proc.threads.iter().position(|t| t.name == name) {
            return Tid(p.0, i);
        }
        let tid = proc.pid * 1000 + proc.threads.len() as u32 + 1;
        proc.threads.push(Thread {
            tid,
            name: name.to_string(),
            slices: Vec::new(),
            instants: Vec::new(),
        });
        Tid(p.0, proc.threads.len() - 1)
    }

    /// Add a slice `[start, end)` to thread `t` (`end < start` is clamped to an empty slice).
    pub fn slice(&mut self, t: Tid, name: &str, cat: &str, start_ns: u64, end_ns: u64, args: Args) {
        self.processes[t.0].threads[t.1].slices.push(Slice {
            name: name.to_string(),
            cat: cat.to_string(),
            start_ns,
            dur_ns: end_ns.saturating_sub(start_ns),
            args,
        });
    }

    /// Add an instant to thread `t`.
    pub fn instant(&mut self, t: Tid, name: &str, cat: &str, t_ns: u64, args: Args) {
        self.processes[t.0].threads[t.1].instants.push(Instant {
            name: name.to_string(),
            cat: cat.to_string(),
            t_ns,
            args,
        });
    }

    /// Add an async span to process `p`.
    #[allow(clippy::too_many_arguments)]
    pub fn span(
        &mut self,
        p: Pid,
        name: &str,
        cat: &str,
        id: u64,
        start_ns: u64,
        end_ns: u64,
        args: Args,
    ) {
        self.processes[p.0].spans.push(AsyncSpan {
            name: name.to_string(),
            cat: cat.to_string(),
            id,
            start_ns,
            end_ns: end_ns.max(start_ns),
            args,
        });
    }

    /// Add a sample to counter `name` of process `p`.
    pub fn counter(&mut self, p: Pid, name: &str, t_ns: u64, value: f64) {
        let proc = &mut self.processes[p.0];
        let c = match proc.counters.iter().position(|c| c.name == name) {
            Some(i) => &mut proc.counters[i],
            None => {
                proc.counters.push(Counter {
                    name: name.to_string(),
                    samples: Vec::new(),
                });
                proc.counters.last_mut().expect("just pushed")
            }
        };
        c.samples.push((t_ns, value));
    }

    /// Number of events (slices, instants, span pairs, counter samples).
    pub fn event_count(&self) -> usize {
        self.processes
            .iter()
            .map(|p| {
                p.threads
                    .iter()
                    .map(|t| t.slices.len() + t.instants.len())
                    .sum::<usize>()
                    + p.spans.len()
                    + p.counters.iter().map(|c| c.samples.len()).sum::<usize>()
            })
            .sum()
    }

    /// Earliest timestamp of any event.
    pub fn min_ns(&self) -> Option<u64> {
        self.processes
            .iter()
            .flat_map(|p| {
                p.threads
                    .iter()
                    .flat_map(|t| {
                        t.slices
                            .iter()
                            .map(|s| s.start_ns)
                            .chain(t.instants.iter().map(|i| i.t_ns))
                    })
                    .chain(p.spans.iter().map(|s| s.start_ns))
                    .chain(
                        p.counters
                            .iter()
                            .flat_map(|c| c.samples.iter().map(|s| s.0)),
                    )
            })
            .min()
    }

    /// Sort everything by time and move slices that would break nesting onto overflow threads.
    /// Returns how many slices were moved.
    pub fn settle(&mut self) -> usize {
        let mut moved = 0;
        for p in &mut self.processes {
            let mut extra: Vec<Thread> = Vec::new();
            let mut next_tid = p
                .threads
                .iter()
                .map(|t| t.tid)
                .max()
                .unwrap_or(p.pid * 1000)
                + 1;
            for t in &mut p.threads {
                // Parents before children: by start, then longest first.
                t.slices
                    .sort_by(|a, b| a.start_ns.cmp(&b.start_ns).then(b.dur_ns.cmp(&a.dur_ns)));
                let all = std::mem::take(&mut t.slices);
                // lanes[0] is the thread itself; each lane keeps a stack of open ends.
                let mut lanes: Vec<(Vec<Slice>, Vec<u64>)> = vec![(Vec::new(), Vec::new())];
                for s in all {
                    let lane = lanes.iter_mut().position(|(_, stack)| {
                        while stack.last().is_some_and(|&end| end <= s.start_ns) {
                            stack.pop();
                        }
                        stack.last().is_none_or(|&end| s.end_ns() <= end)
                    });
                    let i = match lane {
                        Some(i) => i,
                        None => {
                            lanes.push((Vec::new(), Vec::new()));
                            lanes.len() - 1
                        }
                    };
                    if i > 0 {
                        moved += 1;
                    }
                    lanes[i].1.push(s.end_ns());
                    lanes[i].0.push(s);
                }
                let mut it = lanes.into_iter();
                t.slices = it.next().map(|l| l.0).unwrap_or_default();
                for (n, (slices, _)) in it.enumerate() {
                    extra.push(Thread {
                        tid: next_tid,
                        name: format!("{} (overlap {})", t.name, n + 1),
                        slices,
                        instants: Vec::new(),
                    });
                    next_tid += 1;
                }
                t.instants.sort_by_key(|i| i.t_ns);
            }
            p.threads.extend(extra);
            p.spans
                .sort_by(|a, b| a.start_ns.cmp(&b.start_ns).then(a.id.cmp(&b.id)));
            for c in &mut p.counters {
                c.samples.sort_by_key(|s| s.0);
            }
        }
        moved
    }

    /// Subtract `origin` from every timestamp (saturating at 0).
    pub fn shift(&mut self, origin: u64) {
        for p in &mut self.processes {
            for t in &mut p.threads {
                for s in &mut t.slices {
                    s.start_ns = s.start_ns.saturating_sub(origin);
                }
                for i in &mut t.instants {
                    i.t_ns = i.t_ns.saturating_sub(origin);
                }
            }
            for s in &mut p.spans {
                s.start_ns = s.start_ns.saturating_sub(origin);
                s.end_ns = s.end_ns.saturating_sub(origin);
            }
            for c in &mut p.counters {
                for s in &mut c.samples {
                    s.0 = s.0.saturating_sub(origin);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settle_keeps_nesting_and_moves_partial_overlaps() {
        let mut tl = Timeline::new();
        let p = tl.process("engine");
        let t = tl.thread(p, "main");
        tl.slice(t, "child", "x", 10, 20, vec![]);
        tl.slice(t, "parent", "x", 0, 100, vec![]);
        tl.slice(t, "sibling", "x", 20, 30, vec![]);
        tl.slice(t, "straddler", "x", 90, 150, vec![]);
        tl.slice(t, "after", "x", 150, 160, vec![]);
        let moved = tl.settle();
        assert_eq!(moved, 1);
        let th = &tl.processes[0].threads;
        let names: Vec<&str> = th[0].slices.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["parent", "child", "sibling", "after"]);
        assert_eq!(th[1].name, "main (overlap 1)");
        assert_eq!(th[1].slices[0].name, "straddler");
        assert_ne!(th[0].tid, th[1].tid);
    }

    #[test]
    fn threads_are_reused_by_name() {
        let mut tl = Timeline::new();
        let p = tl.process("a");
        assert_eq!(tl.thread(p, "x"), tl.thread(p, "x"));
        assert_ne!(tl.thread(p, "x"), tl.thread(p, "y"));
        let q = tl.process("b");
        tl.counter(q, "rss", 5, 1.0);
        tl.counter(q, "rss", 3, 2.0);
        tl.settle();
        assert_eq!(
            tl.processes[1].counters[0].samples,
            vec![(3, 2.0), (5, 1.0)]
        );
        assert_eq!(tl.min_ns(), Some(3));
    }
}
