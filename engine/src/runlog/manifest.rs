// `manifest.json`: what ran (engine build, host, model, full config, budget/plan), when (both
// clocks), how it went (status lifecycle, metrics) and which files the run directory holds.
// Serialize for the engine, Deserialize (with schema/version checks) for host tools.

use super::{io_err, RunlogError};
use crate::gguf::ModelIdentity;
use crate::summary::RunSummary;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

pub const SCHEMA: &str = "flashslim.run";
/// Manifest schema version (major); readers refuse a larger one.
pub const SCHEMA_VERSION: u32 = 1;
/// Largest manifest a reader accepts.
pub const MAX_MANIFEST_BYTES: usize = 64 << 20;

/// `running` → `complete` | `failed` | `interrupted`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Complete,
    Failed,
    Interrupted,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EngineInfo {
    pub version: String,
    pub git_commit: String,
    /// Rust target triple the binary was built for.
    pub target: String,
    /// Cargo features compiled in (`probes`...).
    pub features: Vec<String>,
    /// `release` or `debug`.
    pub profile: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Uname {
    pub sysname: String,
    pub nodename: String,
    pub release: String,
    pub version: String,
    pub machine: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    pub uname: Uname,
    pub cpu: String,
    /// Cores available to the process.
    pub cpus: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub path: String,
    pub bytes: u64,
    pub identity: ModelIdentity,
    /// `<arch> <size label> <type>`.
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanInfo {
    pub path: Option<String>,
    pub identity: Option<String>,
    /// The storage read bandwidth the plan measured on this device (its
    /// `device.bandwidth_bytes_per_s`); null when not measured (heuristic plan, no plan).
    /// Host reports draw achieved throughput against it.
    #[serde(default)]
    pub device_bandwidth_bytes_per_s: Option<f64>,
}

/// Both clocks at start and end. `boottime_minus_monotonic_ns` converts bpftrace's `nsecs`
/// (CLOCK_BOOTTIME) to the engine's CLOCK_MONOTONIC when no `clock_sync` line is at hand.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClockInfo {
    pub start_utc: String,
    pub start_monotonic_ns: u64,
    pub end_utc: Option<String>,
    pub end_monotonic_ns: Option<u64>,
    pub boottime_minus_monotonic_ns: u64,
}

/// The run's headline figures (over every generation of the run).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub generations: usize,
    pub prompt_tokens: u64,
    pub generated_tokens: u64,
    /// Median over generations of prefill start → first token.
    pub ttft_ms: f64,
    /// Inter-token times pooled over generations.
    pub tpot_p50_ms: f64,
    pub tpot_p95_ms: f64,
    pub prefill_tokens_per_second: f64,
    pub decode_tokens_per_second: f64,
    pub peak_rss_bytes: u64,
    /// `/proc/self/io` read_bytes for the whole process at the end (null if unavailable).
    pub storage_read_bytes: Option<u64>,
    /// read_bytes during generation only, per generated token.
    pub storage_bytes_per_token: Option<f64>,
    /// Streaming only: bytes streamed per generated token, compute stalled on I/O, and the share
    /// of I/O busy time hidden behind compute.
    pub streamed_bytes_per_token: Option<f64>,
    pub stall_ms_total: Option<f64>,
    pub stall_ms_per_token: Option<f64>,
    pub overlap_pct: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the run directory.
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: String,
    pub schema_version: u32,
    pub run_id: String,
    pub status: RunStatus,
    /// Why the run failed or was interrupted.
    pub error: Option<String>,
    /// `run` or `profile`.
    pub command: String,
    pub engine: EngineInfo,
    pub host: HostInfo,
    pub model: Option<ModelInfo>,
    /// The full configuration (every option of the run, defaults included).
    pub config: serde_json::Value,
    pub budget_bytes: Option<u64>,
    pub plan: Option<PlanInfo>,
    pub clock: ClockInfo,
    pub metrics: Option<Metrics>,
    /// One summary per generation (prompt), as `flashslim run --summary` writes it.
    pub generations: Vec<RunSummary>,
    /// bpftrace scripts that ran: name → output file.
    pub scripts: BTreeMap<String, String>,
    /// Format versions of the files written: `stages`, `tokens`, `io`, `tensor_trace`, `bpf`.
    pub formats: BTreeMap<String, u32>,
    /// Every file of the run directory but `manifest.json`; complete once status leaves
    /// `running`.
    pub files: Vec<FileEntry>,
}

fn uname() -> Uname {
    // SAFETY: utsname is plain bytes; zeroed is valid and uname only writes into it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    let ok = unsafe { libc::uname(&mut u) } == 0;
    let s = |f: &[libc::c_char]| -> String {
        if !ok {
            return String::new();
        }
        let b: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&b).into_owned()
    };
    Uname {
        sysname: s(&u.sysname),
        nodename: s(&u.nodename),
        release: s(&u.release),
        version: s(&u.version),
        machine: s(&u.machine),
    }
}

impl EngineInfo {
    pub fn current() -> EngineInfo {
        let (version, commit, target) = crate::procstat::build_info();
        let mut features = Vec::new();
        if cfg!(feature = "probes") {
            features.push("probes".to_string());
        }
        EngineInfo {
            version: version.into(),
            git_commit: commit.into(),
            target: target.into(),
            features,
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
            .into(),
        }
    }
}

impl HostInfo {
    pub fn current() -> HostInfo {
        HostInfo {
            uname: uname(),
            cpu: crate::procstat::cpu_model(),
            cpus: crate::session::available_threads(),
        }
    }
}

impl Manifest {
    /// A `running` manifest for a run starting now.
    pub fn start(run_id: &str, command: &str, config: serde_json::Value) -> Manifest {
        let mono = crate::probes::monotonic_ns();
        let boot = crate::probes::boottime_ns();
        Manifest {
            schema: SCHEMA.into(),
            schema_version: SCHEMA_VERSION,
            run_id: run_id.into(),
            status: RunStatus::Running,
            error: None,
            command: command.into(),
            engine: EngineInfo::current(),
            host: HostInfo::current(),
            model: None,
            config,
            budget_bytes: None,
            plan: None,
            clock: ClockInfo {
                start_utc: super::utc_rfc3339(std::time::SystemTime::now()),
                start_monotonic_ns: mono,
                end_utc: None,
                end_monotonic_ns: None,
                boottime_minus_monotonic_ns: boot.saturating_sub(mono),
            },
            metrics: None,
            generations: Vec::new(),
            scripts: BTreeMap::new(),
            formats: BTreeMap::new(),
            files: Vec::new(),
        }
    }

    /// Stamp the end time.
    pub fn mark_end(&mut self) {
        self.clock.end_utc = Some(super::utc_rfc3339(std::time::SystemTime::now()));
        self.clock.end_monotonic_ns = Some(crate::probes::monotonic_ns());
    }

    /// Parse and check a manifest (schema name, version, status consistency).
    pub fn from_json(text: &str) -> Result<Manifest, RunlogError> {
        if text.len() > MAX_MANIFEST_BYTES {
            return Err(RunlogError::Format(format!(
                "manifest is {} bytes (at most {MAX_MANIFEST_BYTES})",
                text.len()
            )));
        }
        // Check the schema before the full parse so a newer version gets the right message.
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| RunlogError::Format(format!("manifest is not valid JSON: {e}")))?;
        match v.get("schema").and_then(|s| s.as_str()) {
            Some(SCHEMA) => {}
            Some(other) => {
                return Err(RunlogError::Format(format!(
                    "manifest schema is `{other}`, expected `{SCHEMA}`"
                )))
            }
            None => {
                return Err(RunlogError::Format(
                    "manifest has no `schema` field (not a flashslim run manifest)".into(),
                ))
            }
        }
        match v.get("schema_version").and_then(|s| s.as_u64()) {
            Some(n) if n >= 1 && n <= SCHEMA_VERSION as u64 => {}
            Some(n) if n > SCHEMA_VERSION as u64 => {
                return Err(RunlogError::Newer(format!(
                    "manifest schema version {n} is newer than this reader (it reads 1..={SCHEMA_VERSION})"
                )))
            }
            Some(n) => {
                return Err(RunlogError::Format(format!(
                    "manifest schema version {n} is not supported (this reader reads 1..={SCHEMA_VERSION})"
                )))
            }
            None => {
                return Err(RunlogError::Format(
                    "manifest has no numeric `schema_version`".into(),
                ))
            }
        }
        let m: Manifest =
            serde_json::from_value(v).map_err(|e| RunlogError::Format(format!("manifest: {e}")))?;
        for f in &m.files {
            if f.path.is_empty()
                || f.path.starts_with('/')
                || f.path
                    .split('/')
                    .any(|c| c == ".." || c == "." || c.is_empty())
            {
                return Err(RunlogError::Format(format!(
                    "manifest lists an unsafe file path `{}`",
                    f.path
                )));
            }
            if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(RunlogError::Format(format!(
                    "manifest: file `{}` has a malformed sha256",
                    f.path
                )));
            }
        }
        if m.status == RunStatus::Complete && m.metrics.is_none() {
            return Err(RunlogError::Format(
                "manifest says `complete` but has no metrics".into(),
            ));
        }
        Ok(m)
    }

    pub fn read(path: &Path) -> Result<Manifest, RunlogError> {
        let meta =
            std::fs::metadata(path).map_err(io_err(format!("cannot read {}", path.display())))?;
        if meta.len() > MAX_MANIFEST_BYTES as u64 {
            return Err(RunlogError::Format(format!(
                "{}: {} bytes (at most {MAX_MANIFEST_BYTES})",
                path.display(),
                meta.len()
            )));
        }
        let text = std::fs::read_to_string(path)
            .map_err(io_err(format!("cannot read {}", path.display())))?;
        Manifest::from_json(&text).map_err(|e| match e {
            RunlogError::Newer(m) => RunlogError::Newer(format!("{}: {m}", path.display())),
            e => RunlogError::Format(format!("{}: {e}", path.display())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_of(m: &Manifest) -> serde_json::Value {
        serde_json::to_value(m).unwrap()
    }

    #[test]
    fn newer_schema_is_a_typed_error() {
        let mut v = json_of(&Manifest::start("r", "run", serde_json::json!({})));
        v["schema_version"] = 2.into();
        let e = Manifest::from_json(&v.to_string()).unwrap_err();
        assert!(matches!(e, RunlogError::Newer(_)), "{e}");
        assert!(e.to_string().contains("schema version 2 is newer"), "{e}");
        v["schema_version"] = 0.into();
        assert!(matches!(
            Manifest::from_json(&v.to_string()).unwrap_err(),
            RunlogError::Format(_)
        ));
    }

    #[test]
    fn device_bandwidth_is_optional_and_round_trips() {
        let mut m = Manifest::start("r", "run", serde_json::json!({}));
        m.plan = Some(PlanInfo {
            path: None,
            identity: None,
            device_bandwidth_bytes_per_s: Some(412.5e6),
        });
        let back = Manifest::from_json(&json_of(&m).to_string()).unwrap();
        assert_eq!(
            back.plan.unwrap().device_bandwidth_bytes_per_s,
            Some(412.5e6)
        );
        // A manifest written before the field existed still reads (null).
        let mut v = json_of(&m);
        v["plan"]
            .as_object_mut()
            .unwrap()
            .remove("device_bandwidth_bytes_per_s");
        let back = Manifest::from_json(&v.to_string()).unwrap();
        assert_eq!(back.plan.unwrap().device_bandwidth_bytes_per_s, None);
    }
}
