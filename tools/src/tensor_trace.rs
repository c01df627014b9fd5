//! `slim trace`: statistics, CSV and per-token JSON over tensor-access records.
//!
//! The binary layout of `tensor-trace.bin` belongs to the profiler (issue #4) and its reader to
//! the engine crate. This module works on decoded [`TraceRecord`]s plus the reader's report of a
//! truncated tail; [`open`] is where the engine's reader plugs in (TODO(phase 2)). Until then it
//! refuses with [`TraceError::NotConnected`] rather than guess at a layout.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Where a source tensor's bytes came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Memory {
    /// Read from the model file (mmap or stream).
    Disk,
    /// A runtime buffer (activations, KV cache).
    Buffer,
}

/// One source tensor of an op.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TraceSource {
    /// Tensor name.
    pub name: String,
    /// Address in the process (for matching buffers).
    pub ptr: u64,
    /// Bytes.
    pub size_bytes: u64,
    /// Layer, if any.
    pub layer: Option<u32>,
    /// Disk or buffer.
    pub memory: Memory,
    /// File offset (Disk) or buffer id (Buffer).
    pub offset_or_buffer: u64,
}

/// One op execution.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TraceRecord {
    /// CLOCK_MONOTONIC ns.
    pub t_ns: u64,
    /// Token index.
    pub token: u32,
    /// Layer, if any.
    pub layer: Option<u32>,
    /// Compute thread.
    pub thread: u32,
    /// Op name.
    pub op: String,
    /// 0 prefill, 1 decode.
    pub phase: u8,
    /// Destination tensor name.
    pub dst: String,
    /// Source tensors.
    pub sources: Vec<TraceSource>,
}

/// A record cut short at the end of the file (the engine was killed mid-write).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Tail {
    /// Offset of the incomplete record.
    pub offset: u64,
    /// Bytes of it present.
    pub bytes: u64,
}

/// What a reader returns.
#[derive(Clone, Debug, Default)]
pub struct TraceData {
    /// Whole records, in file order.
    pub records: Vec<TraceRecord>,
    /// The truncated tail, if any (reported, not fatal).
    pub tail: Option<Tail>,
}

/// Why a trace could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum TraceError {
    /// The file cannot be read.
    Io {
        /// Path.
        path: PathBuf,
        /// OS error.
        source: io::Error,
    },
    /// This build has no reader for the format yet.
    NotConnected(PathBuf),
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            TraceError::NotConnected(p) => write!(
                f,
                "{}: no tensor-trace reader in this build yet (the format belongs to the \
                 profiler, issue #4; phase 2 of issue #5 connects the engine's reader)",
                p.display()
            ),
        }
    }
}

impl std::error::Error for TraceError {}

/// Read a tensor trace file.
///
/// TODO(phase 2): call the engine's tensor-trace reader here and map its records into
/// [`TraceRecord`] (and its truncated-tail report into [`Tail`]).
pub fn open(path: &Path) -> Result<TraceData, TraceError> {
    std::fs::metadata(path).map_err(|source| TraceError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Err(TraceError::NotConnected(path.to_path_buf()))
}

/// Counts per token, layer and op.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TraceStats {
    /// Records.
    pub records: usize,
    /// Distinct tokens.
    pub tokens: usize,
    /// Records per token.
    pub per_token: BTreeMap<u32, usize>,
    /// Records per layer (`None`: no layer).
    pub per_layer: BTreeMap<Option<u32>, usize>,
    /// Records per op.
    pub per_op: BTreeMap<String, usize>,
    /// The truncated tail.
    pub tail: Option<Tail>,
}

impl TraceStats {
    /// Count `d`.
    pub fn of(d: &TraceData) -> TraceStats {
        let mut s = TraceStats {
            records: d.records.len(),
            tail: d.tail,
            ..TraceStats::default()
        };
        for r in &d.records {
            *s.per_token.entry(r.token).or_default() += 1;
            *s.per_layer.entry(r.layer).or_default() += 1;
            *s.per_op.entry(r.op.clone()).or_default() += 1;
        }
        s.tokens = s.per_token.len();
        s
    }

    /// Human-readable text.
    pub fn write_text<W: Write>(&self, mut w: W) -> io::Result<()> {
        writeln!(w, "records: {}", self.records)?;
        writeln!(w, "tokens:  {}", self.tokens)?;
        if let Some(t) = self.tail {
            writeln!(
                w,
                "truncated tail: {} byte(s) of an incomplete record at offset {} (ignored)",
                t.bytes, t.offset
            )?;
        }
        writeln!(w, "\nper token:")?;
        for (k, n) in &self.per_token {
            writeln!(w, "  {k:>6}  {n}")?;
        }
        writeln!(w, "\nper layer:")?;
        for (k, n) in &self.per_layer {
            let l = k.map(|l| l.to_string()).unwrap_or_else(|| "-".into());
            writeln!(w, "  {l:>6}  {n}")?;
        }
        writeln!(w, "\nper op:")?;
        for (k, n) in &self.per_op {
            writeln!(w, "  {k:<16}  {n}")?;
        }
        Ok(())
    }
}

/// One CSV row per (record, source); records without sources get one row with empty source
/// columns.
pub fn write_csv<W: Write>(d: &TraceData, mut w: W) -> io::Result<()> {
    writeln!(
        w,
        "t_ns,token,layer,thread,phase,op,dst,src_name,src_bytes,src_layer,src_memory,src_offset_or_buffer"
    )?;
    let opt = |l: Option<u32>| l.map(|l| l.to_string()).unwrap_or_default();
    for r in &d.records {
        let head = format!(
            "{},{},{},{},{},{},{}",
            r.t_ns,
            r.token,
            opt(r.layer),
            r.thread,
            r.phase,
            csv(&r.op),
            csv(&r.dst)
        );
        if r.sources.is_empty() {
            writeln!(w, "{head},,,,,")?;
        }
        for s in &r.sources {
            writeln!(
                w,
                "{head},{},{},{},{},{}",
                csv(&s.name),
                s.size_bytes,
                opt(s.layer),
                match s.memory {
                    Memory::Disk => "disk",
                    Memory::Buffer => "buffer",
                },
                s.offset_or_buffer
            )?;
        }
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

/// Write `DIR/token-NNNNN.json` per token, shaped like the upstream llama.cpp tracer's per-token
/// files (`token_id`, `metadata`, `entries` with `sources`). Returns the files written.
pub fn write_json_per_token(d: &TraceData, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut by_token: BTreeMap<u32, Vec<&TraceRecord>> = BTreeMap::new();
    for r in &d.records {
        by_token.entry(r.token).or_default().push(r);
    }
    let mut written = Vec::new();
    for (tok, recs) in by_token {
        let t0 = recs.iter().map(|r| r.t_ns).min().unwrap_or(0);
        let t1 = recs.iter().map(|r| r.t_ns).max().unwrap_or(0);
        let entries: Vec<serde_json::Value> = recs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let sources: Vec<serde_json::Value> = r
                    .sources
                    .iter()
                    .map(|s| {
                        let mut o = serde_json::json!({
                            "name": s.name,
                            "tensor_ptr": format!("0x{:x}", s.ptr),
                            "size_bytes": s.size_bytes,
                            "layer_id": s.layer,
                            "memory_source": match s.memory { Memory::Disk => "DISK", Memory::Buffer => "BUFFER" },
                        });
                        let key = match s.memory {
                            Memory::Disk => "disk_offset",
                            Memory::Buffer => "buffer_id",
                        };
                        o[key] = serde_json::json!(s.offset_or_buffer);
                        o
                    })
                    .collect();
                serde_json::json!({
                    "entry_id": i,
                    "timestamp_ns": r.t_ns,
                    "timestamp_relative_ms": (r.t_ns - t0) as f64 / 1e6,
                    "layer_id": r.layer,
                    "thread_id": r.thread,
                    "phase": if r.phase == 0 { "PROMPT" } else { "GENERATE" },
                    "operation_type": r.op,
                    "dst_name": r.dst,
                    "num_sources": r.sources.len(),
                    "sources": sources,
                })
            })
            .collect();
        let doc = serde_json::json!({
            "token_id": tok,
            "metadata": {
                "total_entries": recs.len(),
                "duration_ms": (t1 - t0) as f64 / 1e6,
                "timestamp_start_ns": t0,
                "format_version": "flashslim-tools-1",
            },
            "entries": entries,
        });
        let path = dir.join(format!("token-{tok:05}.json"));
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

    fn rec(t: u64, token: u32, layer: Option<u32>, op: &str) -> TraceRecord {
        TraceRecord {
            t_ns: t,
            token,
            layer,
            thread: 0,
            op: op.into(),
            phase: (token > 0) as u8,
            dst: format!("{op}-out"),
            sources: vec![TraceSource {
                name: "blk.0.ffn_down.weight".into(),
                ptr: 0xdead,
                size_bytes: 4096,
                layer,
                memory: Memory::Disk,
                offset_or_buffer: 1 << 20,
            }],
        }
    }

    fn data() -> TraceData {
        TraceData {
            records: vec![
                rec(100, 0, None, "GET_ROWS"),
                rec(200, 0, Some(0), "MUL_MAT"),
                rec(1_000_300, 1, Some(0), "MUL_MAT"),
                rec(1_000_400, 1, Some(1), "ADD"),
            ],
            tail: Some(Tail {
                offset: 4096,
                bytes: 100,
            }),
        }
    }

    #[test]
    fn stats_count_tokens_layers_ops_and_report_the_tail() {
        let s = TraceStats::of(&data());
        assert_eq!((s.records, s.tokens), (4, 2));
        assert_eq!(s.per_op["MUL_MAT"], 2);
        assert_eq!(s.per_layer[&None], 1);
        let mut out = Vec::new();
        s.write_text(&mut out).unwrap();
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("truncated tail: 100 byte(s)"));
    }

    #[test]
    fn csv_and_per_token_json() {
        let mut out = Vec::new();
        write_csv(&data(), &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 5);
        let t = tempfile::tempdir().unwrap();
        let files = write_json_per_token(&data(), t.path()).unwrap();
        assert_eq!(files.len(), 2);
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&files[1]).unwrap()).unwrap();
        assert_eq!(v["token_id"], 1);
        assert_eq!(v["metadata"]["total_entries"], 2);
        assert_eq!(v["entries"][1]["timestamp_relative_ms"], 0.0001);
        assert_eq!(v["entries"][0]["sources"][0]["disk_offset"], 1 << 20);
    }

    #[test]
    fn open_is_honest_about_the_missing_reader() {
        let t = tempfile::NamedTempFile::new().unwrap();
        let e = open(t.path()).unwrap_err();
        assert!(e.to_string().contains("no tensor-trace reader"), "{e}");
        assert!(matches!(
            open(Path::new("/nope/x.bin")),
            Err(TraceError::Io { .. })
        ));
    }
}
