// Reader for the bpftrace outputs of a run directory: `bpf-<script>.ndjson` (bpftrace `-f json`)
// or `bpf-<script>.tsv` (text output). Rows are tab-separated printf lines whose first column
// names the row kind; `clock_sync` rows pair bpftrace's BOOTTIME `nsecs` with the engine's
// CLOCK_MONOTONIC so every row can be put on the engine's time base. END maps come as JSON.

use super::{io_err, RunlogError};
use std::collections::BTreeMap;
use std::path::Path;

/// Row format written by engine/tracing/*.bt (the `format` row carries it).
pub const BPF_FORMAT: &str = "flashslim.bpf";
pub const BPF_VERSION: u32 = 1;
/// Largest output a reader accepts.
pub const MAX_BPF_BYTES: u64 = 2 << 30;

/// Column names of each row kind after the kind itself (docs/formats.md lists the same).
pub const ROW_SCHEMAS: &[(&str, &[&str])] = &[
    ("format", &["format", "version", "script"]),
    ("clock_sync", &["boot_ns", "monotonic_ns"]),
    (
        "rq",
        &[
            "issue_ns",
            "complete_ns",
            "dev",
            "sector",
            "bytes",
            "rwbs",
            "stage",
        ],
    ),
    (
        "uring",
        &[
            "submit_ns",
            "complete_ns",
            "user_data",
            "opcode",
            "res",
            "stage",
        ],
    ),
    ("major", &["start_ns", "dur_ns", "tid", "addr", "stage"]),
    ("offcpu", &["start_ns", "dur_ns", "tid", "state", "stage"]),
    (
        "rd",
        &[
            "start_ns", "dur_ns", "tid", "syscall", "fd", "bytes", "stage",
        ],
    ),
];

/// Columns of `kind`, if it is a known row kind.
pub fn columns(kind: &str) -> Option<&'static [&'static str]> {
    ROW_SCHEMAS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, c)| *c)
}

/// One printf row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BpfRow {
    pub kind: String,
    pub fields: Vec<String>,
}

impl BpfRow {
    /// Field by column name (per [`ROW_SCHEMAS`]).
    pub fn get(&self, col: &str) -> Option<&str> {
        let i = columns(&self.kind)?.iter().position(|c| *c == col)?;
        self.fields.get(i).map(String::as_str)
    }
    pub fn get_u64(&self, col: &str) -> Option<u64> {
        self.get(col)?.parse().ok()
    }
    /// The row's first time column (BOOTTIME ns), if it has one.
    pub fn boot_ns(&self) -> Option<u64> {
        let cols = columns(&self.kind)?;
        if cols.first()?.ends_with("_ns") {
            self.fields.first()?.parse().ok()
        } else {
            None
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockSync {
    pub boot_ns: u64,
    pub monotonic_ns: u64,
}

/// A parsed bpftrace output file.
#[derive(Clone, Debug, Default)]
pub struct BpfOutput {
    pub script: String,
    pub version: u32,
    /// Every printf row but `format` and `clock_sync`.
    pub rows: Vec<BpfRow>,
    pub clock_syncs: Vec<ClockSync>,
    /// END maps by name (`@bytes_by_stage` → its JSON value), hist/stats included.
    pub maps: BTreeMap<String, serde_json::Value>,
    pub lost_events: u64,
    pub attached_probes: Option<u64>,
    /// bpftrace warnings and errors found in the output.
    pub messages: Vec<String>,
}

fn parse_row(line: &str, out: &mut BpfOutput, at: &str) -> Result<(), RunlogError> {
    let line = line.trim_end_matches('\r');
    if line.is_empty() {
        return Ok(());
    }
    let mut it = line.split('\t');
    let kind = it.next().unwrap_or_default().to_string();
    let fields: Vec<String> = it.map(str::to_string).collect();
    match kind.as_str() {
        "format" => {
            if fields.first().map(String::as_str) != Some(BPF_FORMAT) {
                return Err(RunlogError::Format(format!(
                    "{at}: format row names `{}`, expected `{BPF_FORMAT}`",
                    fields.first().map(String::as_str).unwrap_or("")
                )));
            }
            let v: u32 = fields.get(1).and_then(|v| v.parse().ok()).ok_or_else(|| {
                RunlogError::Format(format!("{at}: format row without a version"))
            })?;
            if v > BPF_VERSION {
                return Err(RunlogError::Newer(format!(
                    "{at}: bpf output version {v} is newer than this reader (it reads 1..={BPF_VERSION})"
                )));
            }
            if v == 0 {
                return Err(RunlogError::Format(format!(
                    "{at}: bpf output version {v} is not supported (this reader reads 1..={BPF_VERSION})"
                )));
            }
            out.version = v;
            if let Some(s) = fields.get(2) {
                out.script = s.clone();
            }
        }
        "clock_sync" => {
            let (Some(b), Some(m)) = (
                fields.first().and_then(|v| v.parse().ok()),
                fields.get(1).and_then(|v| v.parse().ok()),
            ) else {
                return Err(RunlogError::Format(format!(
                    "{at}: clock_sync row needs two integers"
                )));
            };
            out.clock_syncs.push(ClockSync {
                boot_ns: b,
                monotonic_ns: m,
            });
        }
        _ => {
            if let Some(cols) = columns(&kind) {
                if fields.len() != cols.len() {
                    return Err(RunlogError::Format(format!(
                        "{at}: `{kind}` row has {} fields, expected {}",
                        fields.len(),
                        cols.len()
                    )));
                }
            }
            out.rows.push(BpfRow { kind, fields });
        }
    }
    Ok(())
}

impl BpfOutput {
    /// Parse bpftrace `-f json` output (one JSON object per line). A last line cut short (the
    /// tracer was killed) is ignored; any other bad line is an error.
    pub fn parse_ndjson(text: &str, name: &str) -> Result<BpfOutput, RunlogError> {
        let mut out = BpfOutput::default();
        let lines: Vec<&str> = text.split('\n').collect();
        let mut pending = String::new();
        for (i, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let at = format!("{name}:{}", i + 1);
            let v: serde_json::Value = match serde_json::from_str(line) {
                Ok(v) => v,
                Err(_) if i + 1 == lines.len() => break, // cut short by a kill
                Err(e) => return Err(RunlogError::Format(format!("{at}: {e}"))),
            };
            let ty = v
                .get("type")
                .and_then(|t| t.as_str())
                .ok_or_else(|| RunlogError::Format(format!("{at}: object without a `type`")))?;
            let data = v.get("data");
            match ty {
                "printf" => {
                    let s = data.and_then(|d| d.as_str()).ok_or_else(|| {
                        RunlogError::Format(format!("{at}: printf without string data"))
                    })?;
                    // One printf may carry several rows, or part of one.
                    pending.push_str(s);
                    while let Some(nl) = pending.find('\n') {
                        let row: String = pending.drain(..=nl).collect();
                        parse_row(&row[..row.len() - 1], &mut out, &at)?;
                    }
                }
                "attached_probes" => {
                    out.attached_probes =
                        data.and_then(|d| d.get("probes")).and_then(|p| p.as_u64());
                }
                "lost_events" => {
                    out.lost_events += data
                        .and_then(|d| d.as_u64())
                        .or_else(|| v.get("count").and_then(|c| c.as_u64()))
                        .unwrap_or(0);
                }
                "map" | "hist" | "stats" | "value" => {
                    if let Some(obj) = data.and_then(|d| d.as_object()) {
                        for (k, val) in obj {
                            out.maps.insert(k.clone(), val.clone());
                        }
                    }
                }
                _ => out.messages.push(format!(
                    "{ty}: {}",
                    data.map(|d| d.to_string()).unwrap_or_default()
                )),
            }
        }
        if !pending.trim().is_empty() {
            parse_row(pending.trim_end(), &mut out, name)?;
        }
        out.check(name)?;
        Ok(out)
    }

    /// Parse text output (`bpftrace -o FILE` without `-f json`): rows only; map dumps and other
    /// lines that are not rows are kept as messages.
    pub fn parse_tsv(text: &str, name: &str) -> Result<BpfOutput, RunlogError> {
        let mut out = BpfOutput::default();
        for (i, line) in text.lines().enumerate() {
            let at = format!("{name}:{}", i + 1);
            let kind = line.split('\t').next().unwrap_or("");
            if line.contains('\t') && (columns(kind).is_some() || kind == "format") {
                parse_row(line, &mut out, &at)?;
            } else if !line.trim().is_empty() {
                out.messages.push(line.to_string());
            }
        }
        out.check(name)?;
        Ok(out)
    }

    fn check(&self, name: &str) -> Result<(), RunlogError> {
        if self.version == 0 {
            return Err(RunlogError::Format(format!(
                "{name}: no `format\\t{BPF_FORMAT}` row (not output of a flashslim script)"
            )));
        }
        Ok(())
    }

    /// Read `bpf-<script>.ndjson` or `.tsv`.
    pub fn read(path: &Path) -> Result<BpfOutput, RunlogError> {
        let meta =
            std::fs::metadata(path).map_err(io_err(format!("cannot read {}", path.display())))?;
        if meta.len() > MAX_BPF_BYTES {
            return Err(RunlogError::Format(format!(
                "{}: {} bytes (at most {MAX_BPF_BYTES})",
                path.display(),
                meta.len()
            )));
        }
        let bytes =
            std::fs::read(path).map_err(io_err(format!("cannot read {}", path.display())))?;
        let text = String::from_utf8_lossy(&bytes);
        let name = path.display().to_string();
        if path.extension().is_some_and(|e| e == "tsv") {
            BpfOutput::parse_tsv(&text, &name)
        } else {
            BpfOutput::parse_ndjson(&text, &name)
        }
    }

    /// BOOTTIME − MONOTONIC from the `clock_sync` rows: the smallest difference over all rows.
    /// Each row pairs the engine's CLOCK_MONOTONIC read *before* the probe fired with
    /// bpftrace's `nsecs` read *in* it, so every difference is the true offset plus the probe's
    /// latency (≥ 0; the first uprobe hit is the slowest, several µs); the smallest is the best
    /// estimate.
    pub fn boot_offset_ns(&self) -> Option<i128> {
        self.clock_syncs
            .iter()
            .map(|c| c.boot_ns as i128 - c.monotonic_ns as i128)
            .min()
    }

    /// A bpftrace `nsecs` value on the engine's CLOCK_MONOTONIC.
    pub fn to_monotonic(&self, boot_ns: u64) -> Option<u64> {
        let m = boot_ns as i128 - self.boot_offset_ns()?;
        u64::try_from(m).ok()
    }

    /// Rows of one kind.
    pub fn rows_of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a BpfRow> + 'a {
        self.rows.iter().filter(move |r| r.kind == kind)
    }

    /// A map keyed by stage id (first key column) summed per stage name: `{"decode": 123, ...}`.
    /// Non-numeric values are skipped.
    pub fn map_by_stage(&self, map: &str) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        if let Some(obj) = self.maps.get(map).and_then(|m| m.as_object()) {
            for (k, v) in obj {
                let id = k
                    .split(',')
                    .next()
                    .and_then(|s| s.trim().parse::<u8>().ok());
                let name = id
                    .and_then(crate::probes::Stage::from_id)
                    .map(|s| s.name().to_string())
                    .unwrap_or_else(|| format!("stage#{}", k.split(',').next().unwrap_or(k)));
                if let Some(n) = v.as_u64() {
                    *out.entry(name).or_insert(0) += n;
                }
            }
        }
        out
    }
}

/// Strip a symbol's `+0x..` offset and Rust's `::h<16 hex>` hash suffix.
fn clean_frame(f: &str) -> String {
    let f = f.trim();
    let f = match f.rfind('+') {
        Some(i)
            if f[i + 1..]
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == 'x') =>
        {
            &f[..i]
        }
        _ => f,
    };
    let f = match f.rfind("::h") {
        Some(i) if f.len() - i == 19 && f[i + 3..].chars().all(|c| c.is_ascii_hexdigit()) => {
            &f[..i]
        }
        _ => f,
    };
    f.replace(';', ":")
}

/// Folded stacks (`stage:<name>;<thread>;<root frame>;...;<leaf> <count>`, one per line, sorted)
/// from a `@map[stage, comm, ustack] = count()` map, for flamegraph tools.
pub fn fold_stacks(out: &BpfOutput, map: &str) -> String {
    let mut lines: BTreeMap<String, u64> = BTreeMap::new();
    if let Some(obj) = out.maps.get(map).and_then(|m| m.as_object()) {
        for (k, v) in obj {
            let Some(n) = v.as_u64() else { continue };
            let mut parts = k.splitn(3, ',');
            let (Some(stage), Some(comm), Some(stack)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let stage = stage
                .trim()
                .parse::<u8>()
                .ok()
                .and_then(crate::probes::Stage::from_id)
                .map(|s| s.name().to_string())
                .unwrap_or_else(|| stage.trim().to_string());
            let mut frames: Vec<String> = stack
                .lines()
                .map(clean_frame)
                .filter(|f| !f.is_empty())
                .collect();
            frames.reverse(); // bpftrace prints leaf first
            let mut key = format!("stage:{stage};{}", comm.trim().replace(';', ":"));
            for f in frames {
                key.push(';');
                key.push_str(&f);
            }
            *lines.entry(key).or_insert(0) += n;
        }
    }
    let mut s = String::new();
    for (k, n) in lines {
        s.push_str(&format!("{k} {n}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ndjson(rows: &[&str]) -> String {
        rows.iter()
            .map(|r| {
                format!(
                    "{{\"type\": \"printf\", \"data\": {}}}\n",
                    serde_json::to_string(&format!("{r}\n")).unwrap()
                )
            })
            .collect()
    }

    #[test]
    fn clock_offset_is_the_smallest_over_the_sync_rows() {
        // The first uprobe hit is slow (offset 20 + 8600 ns latency), later ones are not.
        let text = ndjson(&[
            "format\tflashslim.bpf\t1\tblockio",
            "clock_sync\t1008620\t1000000",
            "clock_sync\t2001280\t2000000",
            "clock_sync\t3000020\t3000000",
            "rq\t5000020\t5000520\t8388608\t2048\t4096\tR\t4",
        ]);
        let o = BpfOutput::parse_ndjson(&text, "t").unwrap();
        assert_eq!(o.boot_offset_ns(), Some(20));
        let rq = o.rows_of("rq").next().unwrap();
        assert_eq!(o.to_monotonic(rq.boot_ns().unwrap()), Some(5_000_000));
        assert_eq!(BpfOutput::default().boot_offset_ns(), None);
    }

    #[test]
    fn a_newer_row_format_is_reported_as_newer() {
        let e =
            BpfOutput::parse_ndjson(&ndjson(&["format\tflashslim.bpf\t2\tx"]), "t").unwrap_err();
        assert!(matches!(e, RunlogError::Newer(_)), "{e}");
        assert!(e.to_string().contains("version 2 is newer"), "{e}");
        let e =
            BpfOutput::parse_ndjson(&ndjson(&["format\tflashslim.bpf\t0\tx"]), "t").unwrap_err();
        assert!(matches!(e, RunlogError::Format(_)), "{e}");
    }
}
