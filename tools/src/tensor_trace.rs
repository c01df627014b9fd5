//! `slim trace`: a tensor-access trace (`tensor-trace.bin`) read by the engine's reader
//! (`flashslim::trace::TraceReader`) as far as it goes, its records grouped into op executions,
//! and three views of it: statistics, CSV (one row per record) and per-token JSON.

use flashslim::model::OpKind;
use flashslim::trace::{
    Access, MemSource, TraceEnd, TraceHeader, TraceReader, TraceRecord, NO_LAYER, NO_OFFSET,
    NO_SLOT, NO_TENSOR,
};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A trace read as far as it goes.
#[derive(Clone, Debug)]
pub struct TraceData {
    /// The header (format version, run id, model identity, tensor table).
    pub header: TraceHeader,
    /// Every valid record, in file order.
    pub records: Vec<TraceRecord>,
    /// How reading ended.
    pub end: TraceEnd,
    /// The header says the writer finished, yet the file ended early or held a bad record
    /// (a cut copy of a finished trace): the records before it are kept, `end` says where.
    pub cut_after_complete: bool,
}

/// Why a trace could not be read at all (its header is unusable).
#[derive(Debug)]
#[non_exhaustive]
pub enum TraceError {
    /// The file cannot be opened.
    Io {
        /// Path.
        path: PathBuf,
        /// OS error.
        source: io::Error,
    },
    /// The engine's reader refused the header (not a trace, newer format, corrupt header).
    Refused {
        /// Path.
        path: PathBuf,
        /// The reader's message.
        message: String,
    },
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            TraceError::Refused { path, message } => write!(f, "{}: {message}", path.display()),
        }
    }
}

impl std::error::Error for TraceError {}

/// Read a tensor trace with the engine's reader. A trace cut short (killed run, interrupted
/// copy) is not an error: the valid records are returned and [`TraceData::end`] says where
/// reading stopped.
pub fn open(path: &Path) -> Result<TraceData, TraceError> {
    let f = std::fs::File::open(path).map_err(|source| TraceError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let refused = |e: flashslim::trace::TraceError| TraceError::Refused {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut r = TraceReader::new(io::BufReader::with_capacity(1 << 20, f)).map_err(refused)?;
    let mut records = Vec::new();
    loop {
        match r.next_record() {
            Ok(Some(rec)) => records.push(rec),
            Ok(None) => {
                let end = r.end().cloned().unwrap_or(TraceEnd::Complete);
                return Ok(TraceData {
                    header: r.header().clone(),
                    records,
                    end,
                    cut_after_complete: false,
                });
            }
            // Only a finished trace whose record count does not match ends here (or an I/O
            // error mid-file): keep what verified and say where it stopped.
            Err(e) => {
                return Ok(TraceData {
                    header: r.header().clone(),
                    records,
                    end: TraceEnd::Truncated {
                        reason: e.to_string(),
                    },
                    cut_after_complete: true,
                })
            }
        }
    }
}

impl TraceData {
    /// Name of tensor `id` (`KV`/`activation` for the non-weight sources).
    pub fn tensor_name(&self, r: &TraceRecord) -> String {
        if r.tensor == NO_TENSOR {
            return match r.source {
                MemSource::Kv => "kv_cache".into(),
                MemSource::Activation => "activations".into(),
                s => s.name().into(),
            };
        }
        self.header
            .tensors
            .get(r.tensor as usize)
            .map(|t| t.name.clone())
            .unwrap_or_else(|| format!("tensor#{}", r.tensor))
    }

    /// Was the trace read to its proper end?
    pub fn is_complete(&self) -> bool {
        self.end == TraceEnd::Complete
    }

    /// One line on how reading ended.
    pub fn end_text(&self) -> String {
        match &self.end {
            TraceEnd::Complete => format!(
                "complete ({} records, as the header counts)",
                self.records.len()
            ),
            TraceEnd::Truncated { reason } if self.cut_after_complete => format!(
                "cut short: the header counts {} records but only {} are readable ({reason})",
                self.header.record_count,
                self.records.len()
            ),
            TraceEnd::Truncated { reason } => format!(
                "truncated: the writer did not finish (killed run?); read {} records, stopped at: {reason}",
                self.records.len()
            ),
        }
    }
}

/// The name of op kind `id`.
pub fn op_name(id: u8) -> &'static str {
    OpKind::from_id(id).map(|k| k.name()).unwrap_or("op?")
}

/// One op execution: the records of one op call (same thread, start, op, layer, token).
#[derive(Clone, Debug)]
pub struct OpExec<'a> {
    /// The first record (its fields describe the op).
    pub first: &'a TraceRecord,
    /// Every record of the op (one per tensor or buffer it touched).
    pub records: Vec<&'a TraceRecord>,
}

impl OpExec<'_> {
    /// Layer, `None` outside the blocks.
    pub fn layer(&self) -> Option<u32> {
        (self.first.layer != NO_LAYER).then_some(self.first.layer as u32)
    }
    /// Bytes of weights (records with a tensor id) the op read.
    pub fn weight_bytes(&self) -> u64 {
        self.records
            .iter()
            .filter(|r| r.tensor != NO_TENSOR)
            .map(|r| r.bytes)
            .sum()
    }
}

/// What identifies one op execution among the records: thread, start, op, layer, gen, token, pos.
type OpKey = (u32, u64, u8, u16, u16, u32, u32);

/// Group records into op executions, in time order.
pub fn ops(d: &TraceData) -> Vec<OpExec<'_>> {
    let mut index: HashMap<OpKey, usize> = HashMap::new();
    let mut out: Vec<OpExec> = Vec::new();
    for r in &d.records {
        let key = (r.thread, r.t_ns, r.op, r.layer, r.gen, r.token, r.pos);
        match index.get(&key) {
            Some(&i) => out[i].records.push(r),
            None => {
                index.insert(key, out.len());
                out.push(OpExec {
                    first: r,
                    records: vec![r],
                });
            }
        }
    }
    out.sort_by_key(|o| (o.first.t_ns, o.first.thread));
    out
}

/// Counts and times per token, layer, op and memory source.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TraceStats {
    /// Records.
    pub records: usize,
    /// Op executions.
    pub ops: usize,
    /// Distinct (generation, token).
    pub tokens: usize,
    /// Distinct generations.
    pub generations: usize,
    /// Per (gen, token): ops, records, weight bytes, op time (ns), first op start, last op end.
    pub per_token: BTreeMap<(u16, u32), TokenRow>,
    /// Per layer (`None`: outside the blocks): ops and op time (ns).
    pub per_layer: BTreeMap<Option<u32>, (usize, u64)>,
    /// Per op kind name: executions, op time (ns), weight bytes.
    pub per_op: BTreeMap<String, (usize, u64, u64)>,
    /// Per memory source name: records and bytes.
    pub per_source: BTreeMap<String, (usize, u64)>,
}

/// One row of [`TraceStats::per_token`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TokenRow {
    /// 0 prefill, 1 decode.
    pub phase: u8,
    /// Op executions.
    pub ops: usize,
    /// Records.
    pub records: usize,
    /// Weight bytes read.
    pub weight_bytes: u64,
    /// Sum of op durations (ns).
    pub op_ns: u64,
    /// First op start (ns).
    pub start_ns: u64,
    /// Last op end (ns).
    pub end_ns: u64,
}

impl TraceStats {
    /// Count `d`.
    pub fn of(d: &TraceData) -> TraceStats {
        let ops = ops(d);
        let mut s = TraceStats {
            records: d.records.len(),
            ops: ops.len(),
            ..TraceStats::default()
        };
        for o in &ops {
            let r = o.first;
            let t = s.per_token.entry((r.gen, r.token)).or_insert(TokenRow {
                phase: r.phase,
                start_ns: r.t_ns,
                end_ns: r.t_ns + r.dur_ns,
                ..TokenRow::default()
            });
            t.ops += 1;
            t.records += o.records.len();
            t.weight_bytes += o.weight_bytes();
            t.op_ns += r.dur_ns;
            t.start_ns = t.start_ns.min(r.t_ns);
            t.end_ns = t.end_ns.max(r.t_ns + r.dur_ns);
            let l = s.per_layer.entry(o.layer()).or_default();
            l.0 += 1;
            l.1 += r.dur_ns;
            let k = s.per_op.entry(op_name(r.op).to_string()).or_default();
            k.0 += 1;
            k.1 += r.dur_ns;
            k.2 += o.weight_bytes();
        }
        for r in &d.records {
            let m = s.per_source.entry(r.source.name().to_string()).or_default();
            m.0 += 1;
            m.1 += r.bytes;
        }
        s.tokens = s.per_token.len();
        let mut gens: Vec<u16> = s.per_token.keys().map(|k| k.0).collect();
        gens.dedup();
        s.generations = gens.len();
        s
    }

    /// Human-readable text (header facts from `d`).
    pub fn write_text<W: Write>(&self, d: &TraceData, mut w: W) -> io::Result<()> {
        let h = &d.header;
        writeln!(
            w,
            "format {}.{}, run {}, model {}, {} tensors in the table",
            h.version_major,
            h.version_minor,
            if h.run_id.is_empty() { "-" } else { &h.run_id },
            h.model.short(),
            h.tensors.len()
        )?;
        writeln!(w, "end: {}", d.end_text())?;
        if h.dropped > 0 {
            writeln!(
                w,
                "dropped: {} record(s) the writer could not keep up with (not in the file)",
                h.dropped
            )?;
        }
        writeln!(
            w,
            "records: {} in {} op executions, {} token(s) in {} generation(s)",
            self.records, self.ops, self.tokens, self.generations
        )?;
        let ms = |ns: u64| ns as f64 / 1e6;
        writeln!(w, "\nper token:")?;
        writeln!(
            w,
            "  {:>3} {:>5}  {:<7} {:>5} {:>7} {:>12} {:>10} {:>10}",
            "gen", "token", "phase", "ops", "records", "weight bytes", "op ms", "span ms"
        )?;
        for ((g, t), r) in &self.per_token {
            writeln!(
                w,
                "  {g:>3} {t:>5}  {:<7} {:>5} {:>7} {:>12} {:>10.3} {:>10.3}",
                if r.phase == 0 { "prefill" } else { "decode" },
                r.ops,
                r.records,
                r.weight_bytes,
                ms(r.op_ns),
                ms(r.end_ns - r.start_ns)
            )?;
        }
        let total_ns: u64 = self.per_op.values().map(|v| v.1).sum::<u64>().max(1);
        writeln!(w, "\nper layer:")?;
        writeln!(
            w,
            "  {:>5} {:>6} {:>10} {:>6}",
            "layer", "ops", "op ms", "share"
        )?;
        for (k, (n, ns)) in &self.per_layer {
            let l = k.map(|l| l.to_string()).unwrap_or_else(|| "-".into());
            writeln!(
                w,
                "  {l:>5} {n:>6} {:>10.3} {:>5.1}%",
                ms(*ns),
                100.0 * *ns as f64 / total_ns as f64
            )?;
        }
        writeln!(w, "\nper op:")?;
        writeln!(
            w,
            "  {:<12} {:>6} {:>10} {:>10} {:>6} {:>12}",
            "op", "count", "op ms", "mean µs", "share", "weight bytes"
        )?;
        let mut by_time: Vec<_> = self.per_op.iter().collect();
        by_time.sort_by(|a, b| b.1 .1.cmp(&a.1 .1).then(a.0.cmp(b.0)));
        for (k, (n, ns, bytes)) in by_time {
            writeln!(
                w,
                "  {k:<12} {n:>6} {:>10.3} {:>10.1} {:>5.1}% {bytes:>12}",
                ms(*ns),
                *ns as f64 / 1e3 / (*n).max(1) as f64,
                100.0 * *ns as f64 / total_ns as f64
            )?;
        }
        writeln!(w, "\nper memory source:")?;
        for (k, (n, bytes)) in &self.per_source {
            writeln!(w, "  {k:<12} {n:>7} records {bytes:>14} bytes")?;
        }
        Ok(())
    }
}

/// One CSV row per record.
pub fn write_csv<W: Write>(d: &TraceData, mut w: W) -> io::Result<()> {
    writeln!(
        w,
        "t_ns,dur_ns,gen,token,pos,phase,layer,op,thread,tensor_id,tensor,source,access,file_offset,bytes,slot"
    )?;
    for r in &d.records {
        writeln!(
            w,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            r.t_ns,
            r.dur_ns,
            r.gen,
            r.token,
            r.pos,
            if r.phase == 0 { "prefill" } else { "decode" },
            if r.layer == NO_LAYER {
                String::new()
            } else {
                r.layer.to_string()
            },
            op_name(r.op),
            r.thread,
            if r.tensor == NO_TENSOR {
                String::new()
            } else {
                r.tensor.to_string()
            },
            csv(&d.tensor_name(r)),
            r.source.name(),
            match r.access {
                Access::Read => "read",
                Access::Write => "write",
            },
            if r.file_offset == NO_OFFSET {
                String::new()
            } else {
                r.file_offset.to_string()
            },
            r.bytes,
            if r.slot == NO_SLOT {
                String::new()
            } else {
                r.slot.to_string()
            },
        )?;
    }
    Ok(())
}

fn csv(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Write one JSON file per token, shaped like the upstream llama.cpp tracer's per-token files
/// (`token_id`, `metadata`, `entries[]` = op executions with `sources[]` = the tensors and
/// buffers they touched): `DIR/token-NNNNN.json` for generation 0, `DIR/gen-G-token-NNNNN.json`
/// after. Returns the files written.
pub fn write_json_per_token(d: &TraceData, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut by_token: BTreeMap<(u16, u32), Vec<OpExec>> = BTreeMap::new();
    for o in ops(d) {
        by_token
            .entry((o.first.gen, o.first.token))
            .or_default()
            .push(o);
    }
    let mut written = Vec::new();
    for ((gen, tok), list) in by_token {
        let t0 = list.iter().map(|o| o.first.t_ns).min().unwrap_or(0);
        let t1 = list
            .iter()
            .map(|o| o.first.t_ns + o.first.dur_ns)
            .max()
            .unwrap_or(0);
        let entries: Vec<serde_json::Value> = list
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let r = o.first;
                let sources: Vec<serde_json::Value> = o
                    .records
                    .iter()
                    .map(|s| {
                        let mut v = serde_json::json!({
                            "name": d.tensor_name(s),
                            "tensor_id": (s.tensor != NO_TENSOR).then_some(s.tensor),
                            "size_bytes": s.bytes,
                            "layer_id": (s.layer != NO_LAYER).then_some(s.layer),
                            "memory_source": s.source.name(),
                            "access": match s.access { Access::Read => "read", Access::Write => "write" },
                        });
                        if s.file_offset != NO_OFFSET {
                            v["disk_offset"] = s.file_offset.into();
                        }
                        if s.slot != NO_SLOT {
                            v["stream_slot"] = s.slot.into();
                        }
                        v
                    })
                    .collect();
                serde_json::json!({
                    "entry_id": i,
                    "timestamp_ns": r.t_ns,
                    "duration_ns": r.dur_ns,
                    "timestamp_relative_ms": (r.t_ns - t0) as f64 / 1e6,
                    "layer_id": o.layer(),
                    "thread_id": r.thread,
                    "phase": if r.phase == 0 { "PROMPT" } else { "GENERATE" },
                    "position": r.pos,
                    "operation_type": op_name(r.op),
                    "num_sources": sources.len(),
                    "sources": sources,
                })
            })
            .collect();
        let doc = serde_json::json!({
            "token_id": tok,
            "generation": gen,
            "metadata": {
                "total_entries": list.len(),
                "duration_ms": (t1 - t0) as f64 / 1e6,
                "timestamp_start_ns": t0,
                "format_version": format!("flashslim-trace-{}.{}", d.header.version_major, d.header.version_minor),
                "run_id": d.header.run_id,
                "trace_complete": d.is_complete(),
            },
            "entries": entries,
        });
        let name = if gen == 0 {
            format!("token-{tok:05}.json")
        } else {
            format!("gen-{gen}-token-{tok:05}.json")
        };
        let path = dir.join(name);
        let mut f = io::BufWriter::new(std::fs::File::create(&path)?);
        serde_json::to_writer_pretty(&mut f, &doc).map_err(io::Error::other)?;
        f.flush()?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::write_trace;

    #[test]
    fn ops_group_records_and_stats_count_them() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("t.bin");
        // 2 tokens × (embed + 2 layers × qkv(3 weights) + output), complete.
        write_trace(&p, 2, 2, true, None);
        let d = open(&p).unwrap();
        assert!(d.is_complete(), "{}", d.end_text());
        let o = ops(&d);
        assert_eq!(o.len(), 2 * (1 + 2 + 1));
        assert!(o
            .iter()
            .any(|x| x.records.len() == 3 && op_name(x.first.op) == "qkv"));
        let s = TraceStats::of(&d);
        assert_eq!((s.records, s.ops, s.tokens), (d.records.len(), 8, 2));
        assert_eq!(s.per_op["qkv"].0, 4);
        assert_eq!(s.per_layer[&None].0, 4);
        let mut out = Vec::new();
        s.write_text(&d, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("end: complete"), "{text}");
        let mut out = Vec::new();
        write_csv(&d, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap().lines().count(),
            1 + d.records.len()
        );
        let files = write_json_per_token(&d, &t.path().join("j")).unwrap();
        assert_eq!(files.len(), 2);
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&files[1]).unwrap()).unwrap();
        assert_eq!(v["token_id"], 1);
        assert_eq!(v["metadata"]["total_entries"], 4);
        assert_eq!(v["entries"][1]["operation_type"], "qkv");
        assert_eq!(v["entries"][1]["num_sources"], 3);
        assert_eq!(v["entries"][1]["sources"][0]["name"], "blk.0.attn_q.weight");
    }

    #[test]
    fn a_cut_trace_reads_as_far_as_it_goes() {
        let t = tempfile::tempdir().unwrap();
        // A killed writer: header not finished, last record half written.
        let p = t.path().join("killed.bin");
        write_trace(&p, 3, 2, false, Some(40));
        let d = open(&p).unwrap();
        assert!(!d.is_complete());
        assert!(!d.cut_after_complete);
        assert!(
            d.end_text().contains("cut short (24 bytes)"),
            "{}",
            d.end_text()
        );
        // A finished trace whose copy lost its tail: kept records, reported as cut.
        let p = t.path().join("cut.bin");
        write_trace(&p, 3, 2, true, Some(64 * 5 + 10));
        let d = open(&p).unwrap();
        assert!(d.cut_after_complete);
        assert!(
            d.end_text().starts_with("cut short: the header counts"),
            "{}",
            d.end_text()
        );
        assert!(!d.records.is_empty());
        // Not a trace at all: refused with the reader's message.
        let p = t.path().join("x.bin");
        std::fs::write(&p, b"not a trace at all").unwrap();
        assert!(open(&p).unwrap_err().to_string().contains("bad magic"));
        assert!(matches!(
            open(&t.path().join("none")),
            Err(TraceError::Io { .. })
        ));
    }
}
