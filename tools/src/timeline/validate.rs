//! Checks a Chrome JSON trace the way the issue states the contract: every event has `ph`, `ts`,
//! `pid`, `tid`; complete events on one thread nest; timestamps are monotonic per source
//! (process) in file order; async `b`/`e` pairs match by `cat` + `id`; metadata names every
//! process and every thread that has thread-scoped events; counter values are numbers.

use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};

/// What a valid trace held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Events per `ph`.
    pub by_phase: BTreeMap<String, usize>,
    /// Distinct pids.
    pub processes: usize,
    /// Distinct (pid, tid) with slices or instants.
    pub threads: usize,
}

/// Most violations reported (the rest are counted).
const MAX_REPORTED: usize = 20;

/// Validate `text`; `Err` holds one line per violation.
pub fn validate(text: &str) -> Result<Summary, Vec<String>> {
    let v: Value = serde_json::from_str(text).map_err(|e| vec![format!("not JSON: {e}")])?;
    let events = match &v {
        Value::Array(a) => a,
        Value::Object(o) => match o.get("traceEvents") {
            Some(Value::Array(a)) => a,
            _ => return Err(vec!["no `traceEvents` array".into()]),
        },
        _ => return Err(vec!["top level is neither an array nor an object".into()]),
    };
    let mut errs: Vec<String> = Vec::new();
    let mut more = 0usize;
    let mut err = |e: String, errs: &mut Vec<String>| {
        if errs.len() < MAX_REPORTED {
            errs.push(e);
        } else {
            more += 1;
        }
    };
    let mut s = Summary::default();
    let mut last_ts: HashMap<String, (f64, usize)> = HashMap::new();
    // (pid, tid) -> [(start ns, end ns, name, event index)]
    type Spans = Vec<(i128, i128, String, usize)>;
    let mut slices: HashMap<(String, String), Spans> = HashMap::new();
    let mut open: HashMap<(String, String, String), Vec<(f64, usize)>> = HashMap::new();
    let mut named_procs: HashSet<String> = HashSet::new();
    let mut named_threads: HashSet<(String, String)> = HashSet::new();
    let mut used_procs: HashSet<String> = HashSet::new();
    let mut used_threads: HashSet<(String, String)> = HashSet::new();

    for (i, e) in events.iter().enumerate() {
        let Some(o) = e.as_object() else {
            err(format!("event #{i}: not an object"), &mut errs);
            continue;
        };
        let ph = match o.get("ph").and_then(Value::as_str) {
            Some(p) => p.to_string(),
            None => {
                err(format!("event #{i}: no `ph`"), &mut errs);
                continue;
            }
        };
        let ts = o.get("ts").and_then(Value::as_f64);
        let pid = o.get("pid").filter(|p| p.is_number() || p.is_string());
        let tid = o.get("tid").filter(|p| p.is_number() || p.is_string());
        let name = o
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let (Some(ts), Some(pid), Some(tid)) = (ts, pid, tid) else {
            err(
                format!("event #{i} ({ph} {name:?}): missing numeric `ts`, `pid` or `tid`"),
                &mut errs,
            );
            continue;
        };
        let pid = pid.to_string();
        let tid = tid.to_string();
        *s.by_phase.entry(ph.clone()).or_default() += 1;
        used_procs.insert(pid.clone());
        if ph == "M" {
            let arg = o
                .get("args")
                .and_then(|a| a.get("name"))
                .and_then(Value::as_str);
            match (name.as_str(), arg) {
                ("process_name", Some(_)) => {
                    named_procs.insert(pid.clone());
                }
                ("thread_name", Some(_)) => {
                    named_threads.insert((pid.clone(), tid.clone()));
                }
                ("process_name" | "thread_name", None) => {
                    err(format!("event #{i}: {name} without args.name"), &mut errs)
                }
                _ => {}
            }
            continue;
        }
        match last_ts.get(&pid) {
            Some(&(prev, at)) if ts < prev => err(
                format!(
                    "event #{i} ({ph} {name:?}): ts {ts} goes back in time for pid {pid} \
                     (event #{at} had {prev})"
                ),
                &mut errs,
            ),
            _ => {}
        }
        last_ts.insert(pid.clone(), (ts, i));
        let ns = |us: f64| (us * 1000.0).round() as i128;
        match ph.as_str() {
            "X" => {
                let Some(dur) = o.get("dur").and_then(Value::as_f64).filter(|d| *d >= 0.0) else {
                    err(
                        format!("event #{i} (X {name:?}): no non-negative `dur`"),
                        &mut errs,
                    );
                    continue;
                };
                used_threads.insert((pid.clone(), tid.clone()));
                slices.entry((pid.clone(), tid.clone())).or_default().push((
                    ns(ts),
                    ns(ts) + ns(dur),
                    name,
                    i,
                ));
            }
            "B" | "E" | "i" | "I" => {
                used_threads.insert((pid.clone(), tid.clone()));
            }
            "b" | "e" => {
                let cat = o
                    .get("cat")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let Some(id) = o.get("id").or_else(|| o.get("id2")).map(Value::to_string) else {
                    err(
                        format!("event #{i} ({ph} {name:?}): async event without `id`"),
                        &mut errs,
                    );
                    continue;
                };
                let stack = open
                    .entry((pid.clone(), cat.clone(), id.clone()))
                    .or_default();
                if ph == "b" {
                    stack.push((ts, i));
                } else {
                    match stack.pop() {
                        None => err(
                            format!(
                                "event #{i} (e {name:?}): no open `b` with cat {cat:?} id {id}"
                            ),
                            &mut errs,
                        ),
                        Some((b, _)) if ts < b => err(
                            format!("event #{i} (e {name:?}): ends at {ts} before its begin {b}"),
                            &mut errs,
                        ),
                        _ => {}
                    }
                }
            }
            "C" => {
                let ok = o
                    .get("args")
                    .and_then(Value::as_object)
                    .is_some_and(|a| !a.is_empty() && a.values().all(|x| x.is_number()));
                if !ok {
                    err(
                        format!("event #{i} (C {name:?}): args must be numbers"),
                        &mut errs,
                    );
                }
            }
            _ => {}
        }
    }

    for ((pid, tid), mut v) in slices {
        v.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut stack: Vec<(i128, String, usize)> = Vec::new();
        for (start, end, name, i) in v {
            while stack.last().is_some_and(|t| t.0 <= start) {
                stack.pop();
            }
            if let Some((pend, pname, pi)) = stack.last() {
                if end > *pend {
                    err(
                        format!(
                            "event #{i} (X {name:?}) on pid {pid} tid {tid} overlaps event #{pi} \
                             ({pname:?}) without nesting"
                        ),
                        &mut errs,
                    );
                    continue;
                }
            }
            stack.push((end, name, i));
        }
    }
    for ((pid, cat, id), stack) in &open {
        for (_, i) in stack {
            err(
                format!("event #{i} (b): pid {pid} cat {cat:?} id {id} never ends"),
                &mut errs,
            );
        }
    }
    for p in &used_procs {
        if !named_procs.contains(p) {
            err(format!("pid {p} has no process_name metadata"), &mut errs);
        }
    }
    for t in &used_threads {
        if !named_threads.contains(t) {
            err(
                format!("pid {} tid {} has no thread_name metadata", t.0, t.1),
                &mut errs,
            );
        }
    }
    s.processes = used_procs.len();
    s.threads = used_threads.len();
    if errs.is_empty() {
        Ok(s)
    } else {
        if more > 0 {
            errs.push(format!("... and {more} more"));
        }
        Err(errs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrap(events: &str) -> String {
        format!(
            r#"{{"traceEvents":[
{{"ph":"M","name":"process_name","pid":1,"tid":1,"ts":0,"args":{{"name":"p"}}}},
{{"ph":"M","name":"thread_name","pid":1,"tid":1,"ts":0,"args":{{"name":"t"}}}},
{events}]}}"#
        )
    }

    #[test]
    fn accepts_nesting_and_matched_async() {
        let t = wrap(
            r#"{"ph":"X","name":"a","pid":1,"tid":1,"ts":0,"dur":10},
{"ph":"X","name":"b","pid":1,"tid":1,"ts":0,"dur":5},
{"ph":"b","name":"r","cat":"io","id":"0x1","pid":1,"tid":1,"ts":1},
{"ph":"b","name":"r","cat":"io","id":"0x2","pid":1,"tid":1,"ts":2},
{"ph":"e","name":"r","cat":"io","id":"0x1","pid":1,"tid":1,"ts":7},
{"ph":"X","name":"c","pid":1,"tid":1,"ts":8,"dur":2},
{"ph":"e","name":"r","cat":"io","id":"0x2","pid":1,"tid":1,"ts":9},
{"ph":"C","name":"rss","pid":1,"tid":1,"ts":9,"args":{"rss":5}}"#,
        );
        let s = validate(&t).unwrap();
        assert_eq!(s.by_phase["X"], 3);
        assert_eq!(s.processes, 1);
    }

    #[test]
    fn rejects_each_broken_rule() {
        let cases = [
            (
                r#"{"ph":"X","name":"a","pid":1,"ts":0,"dur":10}"#,
                "missing",
            ),
            (
                r#"{"ph":"X","name":"a","pid":1,"tid":1,"ts":0,"dur":10},
{"ph":"X","name":"b","pid":1,"tid":1,"ts":5,"dur":10}"#,
                "overlaps",
            ),
            (
                r#"{"ph":"X","name":"a","pid":1,"tid":1,"ts":5,"dur":1},
{"ph":"X","name":"b","pid":1,"tid":1,"ts":4,"dur":1}"#,
                "back in time",
            ),
            (
                r#"{"ph":"b","name":"r","cat":"io","id":1,"pid":1,"tid":1,"ts":1}"#,
                "never ends",
            ),
            (
                r#"{"ph":"e","name":"r","cat":"io","id":1,"pid":1,"tid":1,"ts":1}"#,
                "no open",
            ),
            (
                r#"{"ph":"b","name":"r","cat":"io","id":1,"pid":1,"tid":1,"ts":1},
{"ph":"e","name":"r","cat":"other","id":1,"pid":1,"tid":1,"ts":2}"#,
                "no open",
            ),
            (
                r#"{"ph":"X","name":"a","pid":1,"tid":9,"ts":0,"dur":1}"#,
                "thread_name",
            ),
            (
                r#"{"ph":"i","name":"a","pid":2,"tid":1,"ts":0}"#,
                "process_name",
            ),
            (
                r#"{"ph":"C","name":"c","pid":1,"tid":1,"ts":0,"args":{"v":"x"}}"#,
                "numbers",
            ),
        ];
        for (ev, want) in cases {
            let e = validate(&wrap(ev)).unwrap_err();
            assert!(
                e.iter().any(|l| l.contains(want)),
                "{ev}: wanted {want:?}, got {e:?}"
            );
        }
        assert!(validate("nope").is_err());
        assert!(validate("{}").is_err());
    }
}
