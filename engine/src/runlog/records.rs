// The JSON-lines files of a run directory: `stages.jsonl`, `tokens.jsonl`, `io.jsonl`. Each opens
// with a header line `{"format":"flashslim.<name>","version":N}`; one record per line follows.
// Writer (buffered, flushed by the caller at pass ends) and a reader that tolerates a last line
// cut short by a kill but rejects a malformed line anywhere else.

use super::{io_err, RunlogError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, BufWriter, Read, Write};
use std::path::Path;

pub const STAGES_FORMAT: &str = "flashslim.stages";
pub const TOKENS_FORMAT: &str = "flashslim.tokens";
pub const IO_FORMAT: &str = "flashslim.io";
/// Version of each JSON-lines format (the three evolve together).
pub const JSONL_VERSION: u32 = 1;
/// Longest line a reader accepts.
pub const MAX_LINE: usize = 1 << 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonlHeader {
    pub format: String,
    pub version: u32,
}

/// `getrusage` counter deltas over a stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageDelta {
    pub user_ns: u64,
    pub sys_ns: u64,
    pub minor_faults: u64,
    pub major_faults: u64,
    pub voluntary_cs: u64,
    pub involuntary_cs: u64,
    /// 512-byte blocks (`ru_inblock` / `ru_oublock`).
    pub block_in: u64,
    pub block_out: u64,
}

impl From<crate::procstat::Usage> for UsageDelta {
    fn from(u: crate::procstat::Usage) -> Self {
        UsageDelta {
            user_ns: u.user_ns,
            sys_ns: u.sys_ns,
            minor_faults: u.minor_faults,
            major_faults: u.major_faults,
            voluntary_cs: u.voluntary_cs,
            involuntary_cs: u.involuntary_cs,
            block_in: u.block_in,
            block_out: u.block_out,
        }
    }
}

/// One line of `stages.jsonl`: a stage occurrence, closed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    /// Stage name (`load_model`, `prefill`, ...) and its probe id.
    pub stage: String,
    pub id: u8,
    /// Generation (prompt) index, for per-generation stages.
    pub gen: Option<u32>,
    /// Pass index within the generation (prefill/decode) or token index (sample, detokenize).
    pub index: Option<u64>,
    /// Nesting depth (0 = outermost).
    pub depth: u32,
    pub start_ns: u64,
    pub end_ns: u64,
    /// Linux thread id that ran the stage.
    pub tid: u32,
    /// Deltas for the whole process (compute runs on pool threads).
    pub process: UsageDelta,
    /// Deltas for the stage's own thread.
    pub thread: UsageDelta,
    /// Set when the stage was still open when the run ended (error or interrupt).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unfinished: bool,
}

/// One line of `tokens.jsonl`: a generated token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub gen: u32,
    /// 0-based index within the generation (the `token` probe's first argument).
    pub index: u64,
    /// Token id.
    pub id: u32,
    /// `prefill` for token 0 (from the prompt's logits), `decode` after.
    pub phase: String,
    /// When sampling finished (CLOCK_MONOTONIC ns).
    pub t_ns: u64,
    /// Time of the pass(es) that produced the logits: all prefill passes for token 0.
    pub pass_ns: u64,
    pub sample_ns: u64,
    /// Since the previous token (0 for token 0: see TTFT).
    pub gap_ns: u64,
    /// `/proc/self/io` read_bytes added while producing this token (null if unavailable).
    pub storage_read_bytes: Option<u64>,
    /// Streaming source: bytes streamed and compute stall for this token.
    pub streamed_bytes: u64,
    pub stall_ns: u64,
    /// Resident set size (`/proc/self/statm`) when the token was sampled; absent in files
    /// written before it was added, and when `/proc` is unreadable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
}

/// One line of `io.jsonl`: a streamed-chunk event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IoRecord {
    pub t_ns: u64,
    /// `submit`, `complete`, `wait_begin` or `wait_end`.
    pub kind: String,
    pub chunk: u32,
    pub offset: u64,
    pub bytes: u64,
    pub slot: u32,
    pub gen: u32,
    /// Token the engine was working toward when the event was drained.
    pub token: u64,
}

/// Buffered JSON-lines writer.
pub struct JsonlWriter {
    out: BufWriter<File>,
    what: String,
}

impl JsonlWriter {
    pub fn create(path: &Path, format: &str) -> Result<JsonlWriter, RunlogError> {
        let what = format!("cannot write {}", path.display());
        let f = File::create(path).map_err(io_err(what.clone()))?;
        let mut w = JsonlWriter {
            out: BufWriter::with_capacity(64 << 10, f),
            what,
        };
        w.write(&JsonlHeader {
            format: format.into(),
            version: JSONL_VERSION,
        })?;
        w.flush()?;
        Ok(w)
    }

    pub fn write<T: Serialize>(&mut self, rec: &T) -> Result<(), RunlogError> {
        serde_json::to_writer(&mut self.out, rec)
            .map_err(|e| RunlogError::Format(format!("{}: {e}", self.what)))?;
        self.out.write_all(b"\n").map_err(io_err(self.what.clone()))
    }

    pub fn flush(&mut self) -> Result<(), RunlogError> {
        self.out.flush().map_err(io_err(self.what.clone()))
    }
}

/// A JSON-lines file read back.
#[derive(Clone, Debug)]
pub struct JsonlFile<T> {
    pub version: u32,
    pub records: Vec<T>,
    /// The last line had no newline and did not parse (the writer was killed mid-line); it is
    /// not in `records`.
    pub truncated: bool,
}

/// Read a JSON-lines file of `format` from `input`. `name` is used in error messages.
pub fn read_jsonl<T: DeserializeOwned, R: BufRead>(
    mut input: R,
    format: &str,
    name: &str,
) -> Result<JsonlFile<T>, RunlogError> {
    let mut lines: Vec<(usize, String, bool)> = Vec::new();
    let mut n = 0usize;
    loop {
        let mut buf = Vec::new();
        let k = input
            .by_ref()
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(io_err(format!("cannot read {name}")))?;
        if k == 0 {
            break;
        }
        n += 1;
        let complete = buf.last() == Some(&b'\n');
        if !complete && buf.len() > MAX_LINE {
            return Err(RunlogError::Format(format!(
                "{name}:{n}: line longer than {MAX_LINE} bytes"
            )));
        }
        let text = String::from_utf8(buf)
            .map_err(|_| RunlogError::Format(format!("{name}:{n}: not UTF-8")))?;
        lines.push((n, text, complete));
    }
    let Some((_, first, _)) = lines.first() else {
        return Err(RunlogError::Format(format!(
            "{name}: empty file (no header line)"
        )));
    };
    let header: JsonlHeader = serde_json::from_str(first.trim_end()).map_err(|_| {
        RunlogError::Format(format!(
            "{name}:1: first line is not a {{\"format\",\"version\"}} header"
        ))
    })?;
    if header.format != format {
        return Err(RunlogError::Format(format!(
            "{name}: format is `{}`, expected `{format}`",
            header.format
        )));
    }
    if header.version > JSONL_VERSION {
        return Err(RunlogError::Newer(format!(
            "{name}: version {} is newer than this reader (it reads 1..={JSONL_VERSION})",
            header.version
        )));
    }
    if header.version == 0 {
        return Err(RunlogError::Format(format!(
            "{name}: version {} is not supported (this reader reads 1..={JSONL_VERSION})",
            header.version
        )));
    }
    let mut records = Vec::with_capacity(lines.len());
    let mut truncated = false;
    let last = lines.len();
    for (i, (no, text, complete)) in lines.into_iter().enumerate().skip(1) {
        let t = text.trim_end();
        if t.is_empty() {
            continue;
        }
        match serde_json::from_str::<T>(t) {
            Ok(r) => records.push(r),
            Err(_) if i + 1 == last && !complete => truncated = true,
            Err(e) => return Err(RunlogError::Format(format!("{name}:{no}: {e}"))),
        }
    }
    Ok(JsonlFile {
        version: header.version,
        records,
        truncated,
    })
}

/// Read `path` as JSON lines of `format`.
pub fn read_jsonl_file<T: DeserializeOwned>(
    path: &Path,
    format: &str,
) -> Result<JsonlFile<T>, RunlogError> {
    let f = File::open(path).map_err(io_err(format!("cannot read {}", path.display())))?;
    read_jsonl(
        std::io::BufReader::new(f),
        format,
        &path.display().to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_version_is_a_typed_error() {
        let text = "{\"format\":\"flashslim.io\",\"version\":9}\n";
        let e = read_jsonl::<IoRecord, _>(text.as_bytes(), IO_FORMAT, "io").unwrap_err();
        assert!(matches!(e, RunlogError::Newer(_)), "{e}");
        assert!(e.to_string().contains("version 9 is newer"), "{e}");
        let text = "{\"format\":\"flashslim.io\",\"version\":0}\n";
        let e = read_jsonl::<IoRecord, _>(text.as_bytes(), IO_FORMAT, "io").unwrap_err();
        assert!(matches!(e, RunlogError::Format(_)), "{e}");
    }
}
