//! The Chrome trace-event JSON writer (opens in ui.perfetto.dev and chrome://tracing). Knows the
//! JSON format only; the event model lives in `timeline`. Events of each process are written in
//! time order, so every source's timestamps are monotonic in the file.

use super::{Arg, Args, Timeline};
use std::io::{self, Write};

/// `ts`/`dur` are microseconds; write integer nanoseconds as an exact `µs.nnn` decimal.
fn us(ns: u64) -> String {
    format!("{}.{:03}", ns / 1000, ns % 1000)
}

fn js(s: &str) -> String {
    serde_json::to_string(s).expect("strings always serialize")
}

fn args_json(args: &Args) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in args.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&js(k));
        s.push(':');
        s.push_str(&arg_json(v));
    }
    s.push('}');
    s
}

fn arg_json(v: &Arg) -> String {
    const EXACT: u64 = 1 << 53;
    match v {
        Arg::U(u) if *u <= EXACT => u.to_string(),
        Arg::U(u) => js(&u.to_string()),
        Arg::I(i) if i.unsigned_abs() <= EXACT => i.to_string(),
        Arg::I(i) => js(&i.to_string()),
        Arg::F(f) if f.is_finite() => serde_json::Number::from_f64(*f)
            .map(|n| n.to_string())
            .unwrap_or_else(|| "null".into()),
        Arg::F(_) => "null".into(),
        Arg::S(s) => js(s),
    }
}

/// One output line with its sort key `(ts, order)`.
struct Line {
    ts: u64,
    order: (u8, u64),
    text: String,
}

/// Write `tl` as a Chrome JSON object trace. Call [`Timeline::settle`] first (the writer
/// assumes slices on a thread already nest).
pub fn write<W: Write>(tl: &Timeline, mut w: W) -> io::Result<()> {
    write!(w, "{{\"displayTimeUnit\":\"ns\",\"otherData\":{{")?;
    for (i, (k, v)) in tl.metadata.iter().enumerate() {
        if i > 0 {
            write!(w, ",")?;
        }
        write!(w, "{}:{}", js(k), js(v))?;
    }
    writeln!(w, "}},\"traceEvents\":[")?;
    let mut first = true;
    let mut emit = |w: &mut W, text: &str| -> io::Result<()> {
        if !first {
            w.write_all(b",\n")?;
        }
        first = false;
        w.write_all(text.as_bytes())
    };
    for p in &tl.processes {
        let pid = p.pid;
        let main_tid = pid * 1000;
        emit(
            &mut w,
            &format!(
                r#"{{"ph":"M","name":"process_name","pid":{pid},"tid":{main_tid},"ts":0,"args":{{"name":{}}}}}"#,
                js(&p.name)
            ),
        )?;
        emit(
            &mut w,
            &format!(
                r#"{{"ph":"M","name":"process_sort_index","pid":{pid},"tid":{main_tid},"ts":0,"args":{{"sort_index":{pid}}}}}"#
            ),
        )?;
        for (i, t) in p.threads.iter().enumerate() {
            emit(
                &mut w,
                &format!(
                    r#"{{"ph":"M","name":"thread_name","pid":{pid},"tid":{},"ts":0,"args":{{"name":{}}}}}"#,
                    t.tid,
                    js(&t.name)
                ),
            )?;
            emit(
                &mut w,
                &format!(
                    r#"{{"ph":"M","name":"thread_sort_index","pid":{pid},"tid":{},"ts":0,"args":{{"sort_index":{i}}}}}"#,
                    t.tid
                ),
            )?;
        }

        let mut lines: Vec<Line> = Vec::new();
        for t in &p.threads {
            for s in &t.slices {
                lines.push(Line {
                    ts: s.start_ns,
                    // Longer first, so a parent precedes the children starting with it.
                    order: (1, u64::MAX - s.dur_ns),
                    text: format!(
                        r#"{{"ph":"X","name":{},"cat":{},"pid":{pid},"tid":{},"ts":{},"dur":{},"args":{}}}"#,
                        js(&s.name),
                        js(&s.cat),
                        t.tid,
                        us(s.start_ns),
                        us(s.dur_ns),
                        args_json(&s.args)
                    ),
                });
            }
            for i in &t.instants {
                lines.push(Line {
                    ts: i.t_ns,
                    order: (2, 0),
                    text: format!(
                        r#"{{"ph":"i","s":"t","name":{},"cat":{},"pid":{pid},"tid":{},"ts":{},"args":{}}}"#,
                        js(&i.name),
                        js(&i.cat),
                        t.tid,
                        us(i.t_ns),
                        args_json(&i.args)
                    ),
                });
            }
        }
        for s in &p.spans {
            let id = js(&format!("0x{:x}", s.id));
            lines.push(Line {
                ts: s.start_ns,
                order: (1, s.id),
                text: format!(
                    r#"{{"ph":"b","name":{},"cat":{},"id":{id},"pid":{pid},"tid":{main_tid},"ts":{},"args":{}}}"#,
                    js(&s.name),
                    js(&s.cat),
                    us(s.start_ns),
                    args_json(&s.args)
                ),
            });
            lines.push(Line {
                ts: s.end_ns,
                order: (0, s.id),
                text: format!(
                    r#"{{"ph":"e","name":{},"cat":{},"id":{id},"pid":{pid},"tid":{main_tid},"ts":{}}}"#,
                    js(&s.name),
                    js(&s.cat),
                    us(s.end_ns)
                ),
            });
        }
        for c in &p.counters {
            // JSON has no NaN/inf: such samples are dropped (a gap in the counter track).
            for &(t, v) in c.samples.iter().filter(|s| s.1.is_finite()) {
                lines.push(Line {
                    ts: t,
                    order: (3, 0),
                    text: format!(
                        r#"{{"ph":"C","name":{},"pid":{pid},"tid":{main_tid},"ts":{},"args":{{{}:{}}}}}"#,
                        js(&c.name),
                        us(t),
                        js(&c.name),
                        arg_json(&Arg::F(v))
                    ),
                });
            }
        }
        // Stable: equal keys keep insertion order (thread order, then slice order).
        lines.sort_by(|a, b| a.ts.cmp(&b.ts).then(a.order.cmp(&b.order)));
        for l in lines {
            emit(&mut w, &l.text)?;
        }
    }
    writeln!(w, "\n]}}")?;
    Ok(())
}

/// [`write`] into a `String`.
pub fn to_string(tl: &Timeline) -> String {
    let mut v = Vec::new();
    write(tl, &mut v).expect("writing to a Vec cannot fail");
    String::from_utf8(v).expect("the writer emits UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microseconds_are_exact() {
        assert_eq!(us(0), "0.000");
        assert_eq!(us(1_234_567), "1234.567");
        assert_eq!(us(9_007_199_254_740_993), "9007199254740.993");
    }

    #[test]
    fn writes_valid_json_with_all_kinds() {
        let mut tl = Timeline::new();
        tl.metadata.insert("run_id".into(), "r\"1".into());
        let p = tl.process("engine \"x\"");
        let t = tl.thread(p, "main");
        tl.slice(
            t,
            "decode",
            "stage",
            1000,
            5000,
            vec![("token".into(), Arg::U(3))],
        );
        tl.instant(t, "clock_sync", "sync", 1500, vec![]);
        tl.span(
            p,
            "read",
            "io",
            7,
            1200,
            1800,
            vec![("bytes".into(), Arg::U(u64::MAX))],
        );
        tl.counter(p, "rss_bytes", 1000, 1.5e6);
        tl.counter(p, "rss_bytes", 2000, f64::NAN);
        tl.settle();
        let s = to_string(&tl);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        let ev = v["traceEvents"].as_array().unwrap();
        assert!(ev
            .iter()
            .any(|e| e["ph"] == "X" && e["dur"].as_f64() == Some(4.0)));
        assert!(ev
            .iter()
            .any(|e| e["ph"] == "b" && e["args"]["bytes"] == "18446744073709551615"));
        assert_eq!(v["otherData"]["run_id"], "r\"1");
        assert!(crate::timeline::validate::validate(&s).is_ok());
    }
}
