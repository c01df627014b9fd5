// Fill a `RunData` from a run directory. Connected now: `manifest.json` (via manifest_compat),
// bpftrace's own `-f json` output (`bpf-*.ndjson` hist/map/stats records, a bpftrace format)
// and `stacks.folded` (the standard folded-stack format). Every engine-defined log is marked
// `NotConnected` until phase 2 plugs the engine's readers in at the TODOs below.

use super::{Bucket, Family, Histogram, Input, InputState, KeyedValues, RunData};
use crate::manifest_compat::{self, ManifestError, MANIFEST_FILE};
use std::fmt;
use std::path::{Path, PathBuf};

/// Folded stacks for the flamegraph.
pub const STACKS_FILE: &str = "stacks.folded";
/// bpftrace outputs are `bpf-<script>.ndjson` / `bpf-<script>.tsv`.
pub const BPF_NDJSON_PREFIX: &str = "bpf-";

/// Why a run directory could not be loaded at all. (A missing or unreadable input file is not
/// an error: it is recorded in [`RunData::inputs`] and the report marks it.)
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadError {
    /// The path does not exist or is not a directory.
    NotADirectory(PathBuf),
    /// The directory cannot be listed.
    Io {
        /// Path.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The manifest's schema is newer than this build: nothing in the run can be trusted.
    NewerSchema {
        /// Run directory.
        dir: PathBuf,
        /// The error (carries the version).
        source: ManifestError,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::NotADirectory(p) => {
                write!(f, "{}: no run directory there", p.display())
            }
            LoadError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            LoadError::NewerSchema { dir, source } => write!(f, "{}: {source}", dir.display()),
        }
    }
}

impl std::error::Error for LoadError {}

/// The engine-defined inputs and the file each lives in. Each is `NotConnected` when present.
///
/// TODO(phase 2): replace each `NotConnected` with the engine reader, filling `RunData`:
/// - `stages.jsonl`  → `flashslim::runlog` stages reader  → `RunData::stages` (+ `clock` from
///   its `clock_sync` records, `counters` for RSS if it carries them)
/// - `tokens.jsonl`  → tokens reader                      → `RunData::tokens`
/// - `io.jsonl`      → I/O reader (`weights::IoEvent` stream: submit/complete pairs by chunk →
///   `RunData::io`, wait_begin/wait_end → `RunData::stalls`, buffer occupancy counter)
/// - `tensor-trace.bin` → tensor-trace reader             → `RunData::ops`, `RunData::accesses`
///   (the same reader backs `slim trace`, see `tensor_trace::TraceSource`)
/// - `bpf-*.tsv` and the printf records of `bpf-*.ndjson` → the profiler's bpftrace script
///   layouts → `RunData::block_io`, `RunData::clock.boottime_pairs`, fault maps
/// - the measured storage bound (manifest field or `flashslim` bench output) →
///   `RunData::storage_bound_bytes_per_s`
const ENGINE_INPUTS: &[(Family, &str)] = &[
    (Family::Stages, "stages.jsonl"),
    (Family::Tokens, "tokens.jsonl"),
    (Family::Io, "io.jsonl"),
    (Family::TensorTrace, "tensor-trace.bin"),
];

/// Load what a run directory holds.
pub fn load(dir: &Path) -> Result<RunData, LoadError> {
    if !dir.is_dir() {
        return Err(LoadError::NotADirectory(dir.to_path_buf()));
    }
    let mut run = RunData {
        label: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string()),
        dir: Some(dir.to_path_buf()),
        ..RunData::default()
    };

    // Manifest first: it names the run and lists the files that should be here.
    let mpath = dir.join(MANIFEST_FILE);
    let state = if mpath.exists() {
        match manifest_compat::read_dir_manifest(dir) {
            Ok(m) => {
                run.label = m.run_id.clone();
                let missing: Vec<&str> = m
                    .files
                    .iter()
                    .filter(|f| !dir.join(&f.path).is_file())
                    .map(|f| f.path.as_str())
                    .collect();
                let s = if missing.is_empty() {
                    format!("{} files listed, status {}", m.files.len(), m.status.name())
                } else {
                    format!(
                        "{} files listed, status {}; missing here: {}",
                        m.files.len(),
                        m.status.name(),
                        missing.join(", ")
                    )
                };
                run.manifest = Some(m);
                InputState::Loaded(s)
            }
            Err(e @ ManifestError::NewerSchema { .. }) => {
                return Err(LoadError::NewerSchema {
                    dir: dir.to_path_buf(),
                    source: e,
                })
            }
            Err(e) => InputState::Unreadable(e.to_string()),
        }
    } else {
        InputState::Missing
    };
    run.inputs.push(Input {
        family: Family::Manifest,
        file: MANIFEST_FILE.into(),
        state,
    });

    for &(family, file) in ENGINE_INPUTS {
        let state = if dir.join(file).is_file() {
            InputState::NotConnected
        } else {
            InputState::Missing
        };
        run.inputs.push(Input {
            family,
            file: file.into(),
            state,
        });
    }

    // bpftrace outputs.
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|source| LoadError::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(BPF_NDJSON_PREFIX))
        .collect();
    names.sort();
    let mut any_json = false;
    let mut any_tsv = false;
    for n in &names {
        let path = dir.join(n);
        if n.ends_with(".ndjson") {
            any_json = true;
            let state = match std::fs::read(&path) {
                Err(e) => InputState::Unreadable(e.to_string()),
                Ok(bytes) => {
                    let text = String::from_utf8_lossy(&bytes);
                    let b = bpf_from_ndjson(&text, n);
                    let mut s = format!(
                        "{} histogram(s), {} map(s)",
                        b.histograms.len(),
                        b.maps.len()
                    );
                    if b.printf_lines > 0 {
                        // TODO(phase 2): the profiler's printf layouts (block I/O, clock_sync).
                        s.push_str(&format!(
                            "; {} printf record(s) not connected yet",
                            b.printf_lines
                        ));
                    }
                    if b.bad_lines > 0 {
                        s.push_str(&format!("; {} unreadable line(s) skipped", b.bad_lines));
                    }
                    run.histograms.extend(b.histograms);
                    run.maps.extend(b.maps);
                    InputState::Loaded(s)
                }
            };
            run.inputs.push(Input {
                family: Family::BpfJson,
                file: n.clone(),
                state,
            });
        } else if n.ends_with(".tsv") {
            any_tsv = true;
            run.inputs.push(Input {
                family: Family::BpfTsv,
                file: n.clone(),
                state: InputState::NotConnected,
            });
        }
    }
    if !any_json {
        run.inputs.push(Input {
            family: Family::BpfJson,
            file: "bpf-*.ndjson".into(),
            state: InputState::Missing,
        });
    }
    if !any_tsv {
        run.inputs.push(Input {
            family: Family::BpfTsv,
            file: "bpf-*.tsv".into(),
            state: InputState::Missing,
        });
    }

    // Folded stacks.
    let spath = dir.join(STACKS_FILE);
    let state = if spath.is_file() {
        match std::fs::read_to_string(&spath) {
            Err(e) => InputState::Unreadable(e.to_string()),
            Ok(text) => {
                let (good, bad) = check_folded(&text);
                if good == 0 {
                    InputState::Unreadable(format!(
                        "no `frame;frame COUNT` lines ({bad} other line(s))"
                    ))
                } else {
                    run.folded = Some(text);
                    let mut s = format!("{good} stack(s)");
                    if bad > 0 {
                        s.push_str(&format!("; {bad} malformed line(s) ignored"));
                    }
                    InputState::Loaded(s)
                }
            }
        }
    } else {
        InputState::Missing
    };
    run.inputs.push(Input {
        family: Family::Stacks,
        file: STACKS_FILE.into(),
        state,
    });
    Ok(run)
}

/// Count well-formed (`stack COUNT`) and malformed non-empty lines of folded stacks.
pub(crate) fn check_folded(text: &str) -> (usize, usize) {
    let mut good = 0;
    let mut bad = 0;
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        match l.trim_end().rsplit_once(' ') {
            Some((stack, n)) if !stack.is_empty() && n.parse::<u64>().is_ok() => good += 1,
            _ => bad += 1,
        }
    }
    (good, bad)
}

/// What one bpftrace `-f json` file held.
#[derive(Debug, Default)]
pub struct BpfJson {
    /// `hist`/`lhist` maps.
    pub histograms: Vec<Histogram>,
    /// Scalar, keyed and `stats` maps.
    pub maps: Vec<KeyedValues>,
    /// `printf` records (their text layout is the script's; not parsed here).
    pub printf_lines: usize,
    /// Lines that were not JSON (a run stopped mid-line) or had an unknown shape.
    pub bad_lines: usize,
}

/// Parse bpftrace's NDJSON output (`{"type": "hist"|"map"|"stats"|"printf"|..., "data": ...}`).
pub fn bpf_from_ndjson(text: &str, file: &str) -> BpfJson {
    use serde_json::Value;
    let mut out = BpfJson::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) => {
                out.bad_lines += 1;
                continue;
            }
        };
        let ty = v.get("type").and_then(Value::as_str).unwrap_or("");
        let data = v.get("data");
        match (ty, data) {
            ("hist", Some(Value::Object(maps))) => {
                for (name, body) in maps {
                    match body {
                        Value::Array(_) => match buckets(body) {
                            Some(b) => out.histograms.push(Histogram {
                                name: name.clone(),
                                file: file.into(),
                                buckets: b,
                            }),
                            None => out.bad_lines += 1,
                        },
                        Value::Object(keyed) => {
                            for (k, arr) in keyed {
                                match buckets(arr) {
                                    Some(b) => out.histograms.push(Histogram {
                                        name: format!("{name}[{k}]"),
                                        file: file.into(),
                                        buckets: b,
                                    }),
                                    None => out.bad_lines += 1,
                                }
                            }
                        }
                        _ => out.bad_lines += 1,
                    }
                }
            }
            ("map" | "stats", Some(Value::Object(maps))) => {
                for (name, body) in maps {
                    let mut entries = Vec::new();
                    let ok = flatten_values("", body, &mut entries);
                    if ok {
                        out.maps.push(KeyedValues {
                            name: name.clone(),
                            file: file.into(),
                            entries,
                        });
                    } else {
                        out.bad_lines += 1;
                    }
                }
            }
            ("printf", _) => out.printf_lines += 1,
            // attached_probes, lost_events, time, join, value, ...: nothing to draw.
            (t, _) if !t.is_empty() => {}
            _ => out.bad_lines += 1,
        }
    }
    out
}

fn buckets(v: &serde_json::Value) -> Option<Vec<Bucket>> {
    let arr = v.as_array()?;
    arr.iter()
        .map(|b| {
            Some(Bucket {
                lo: b.get("min").and_then(|x| x.as_i64()),
                hi: b.get("max").and_then(|x| x.as_i64()),
                count: b.get("count")?.as_u64()?,
            })
        })
        .collect()
}

fn flatten_values(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, f64)>) -> bool {
    match v {
        serde_json::Value::Number(n) => {
            out.push((prefix.to_string(), n.as_f64().unwrap_or(0.0)));
            true
        }
        serde_json::Value::Object(m) => m.iter().all(|(k, x)| {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            flatten_values(&key, x, out)
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpftrace_json_shapes() {
        let text = r#"{"type": "attached_probes", "data": {"probes": 3}}
{"type": "hist", "data": {"@usecs": [{"max": -1, "count": 2}, {"min": 0, "max": 0, "count": 1}, {"min": 4, "max": 7, "count": 9}]}}
{"type": "hist", "data": {"@lat": {"decode": [{"min": 1, "max": 1, "count": 5}]}}}
{"type": "map", "data": {"@faults": {"prefill": 12, "decode": 40}}}
{"type": "map", "data": {"@total": 7}}
{"type": "stats", "data": {"@s": {"count": 2, "average": 5, "total": 10}}}
{"type": "printf", "data": "123\t456\n"}
{"type": "hist", "data": {"@us"#;
        let b = bpf_from_ndjson(text, "bpf-x.ndjson");
        assert_eq!(b.histograms.len(), 2);
        assert_eq!(
            b.histograms[0].buckets[0],
            Bucket {
                lo: None,
                hi: Some(-1),
                count: 2
            }
        );
        assert_eq!(b.histograms[1].name, "@lat[decode]");
        assert_eq!(b.maps.len(), 3);
        assert_eq!(b.maps[0].entries.len(), 2);
        assert_eq!(b.maps[1].entries, vec![(String::new(), 7.0)]);
        assert_eq!(b.printf_lines, 1);
        assert_eq!(b.bad_lines, 1, "the truncated last line");
    }

    #[test]
    fn partial_run_dir_marks_missing_and_not_connected() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("tokens.jsonl"), b"{}\n").unwrap();
        std::fs::write(t.path().join(STACKS_FILE), b"main;f 3\nmain;g 1\ngarbage\n").unwrap();
        let r = load(t.path()).unwrap();
        assert_eq!(
            r.input(Family::Manifest).unwrap().state,
            InputState::Missing
        );
        assert_eq!(
            r.input(Family::Tokens).unwrap().state,
            InputState::NotConnected
        );
        assert_eq!(r.input(Family::Stages).unwrap().state, InputState::Missing);
        assert!(matches!(
            &r.input(Family::Stacks).unwrap().state,
            InputState::Loaded(s) if s.contains("2 stack") && s.contains("1 malformed")
        ));
        assert!(r.folded.is_some());
    }

    #[test]
    fn newer_manifest_and_missing_dir_are_errors() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join(MANIFEST_FILE), br#"{"schema_version": 3}"#).unwrap();
        let e = load(t.path()).unwrap_err();
        assert!(e.to_string().contains("newer"), "{e}");
        let e = load(&t.path().join("nope")).unwrap_err();
        assert!(e.to_string().contains("no run directory"), "{e}");
        std::fs::write(t.path().join(MANIFEST_FILE), b"{broken").unwrap();
        let r = load(t.path()).unwrap();
        assert!(matches!(
            r.input(Family::Manifest).unwrap().state,
            InputState::Unreadable(_)
        ));
    }
}
