// Plan files: writing a `Plan` as versioned JSON and reading one back from untrusted bytes. The
// reader walks a `serde_json::Value` with the path of every field at hand, so a bad file is an
// error that names the field (`plan: `chunks[3].aligned_size`: ...`), never a panic.

use super::{
    field, CmtEntry, DeviceProfile, Method, PhasePrediction, Plan, PlanError, PlanFigures,
    PlanModel, SweepPoint, PLAN_FORMAT, PLAN_VERSION,
};
use crate::gguf::{Gguf, ModelIdentity};
use crate::plan::layout::Chunk;
use crate::weights::{Phase, TensorId};
use serde_json::{json, Map, Value};

/// Serialize a plan (figures are written for readers; they are recomputed when read back).
pub fn to_json(plan: &Plan, gguf: &Gguf, fig: &PlanFigures) -> String {
    let name = |id: TensorId| gguf.tensors[id].name.clone();
    let phase_obj = |p: &PhasePrediction| {
        json!({
            "tokens": p.tokens,
            "io_ms": p.io_ms,
            "compute_ms": p.compute_ms,
            "overlap_ms": p.overlap_ms,
            "stall_ms": p.stall_ms,
            "pass_ms": p.pass_ms,
            "overlap_pct": p.overlap_pct,
            "io_ms_per_token": p.io_ms / p.tokens.max(1) as f64,
            "compute_ms_per_token": p.compute_ms / p.tokens.max(1) as f64,
            "stall_ms_per_token": p.stall_ms / p.tokens.max(1) as f64,
            "ms_per_token": p.pass_ms / p.tokens.max(1) as f64,
        })
    };
    let mut predicted = Map::new();
    for p in &plan.predicted {
        predicted.insert(p.phase.name().to_string(), phase_obj(p));
    }
    let (v, commit, _) = crate::procstat::build_info();
    let v = json!({
        "format": PLAN_FORMAT,
        "version": PLAN_VERSION,
        "method": plan.method.name(),
        "created_by": format!("flashslim {v} {commit}"),
        "model": {
            "name": gguf.get("general.name").and_then(|v| v.as_str()).unwrap_or(""),
            "file_size": plan.model.identity.file_size,
            "header_sha256": plan.model.identity.header_sha256,
            "data_fingerprint": plan.model.data_fingerprint,
        },
        "budget_bytes": plan.budget_bytes,
        "memory": {
            "small_bytes": fig.small_bytes,
            "resident_bytes": fig.resident_bytes,
            "buffer_bytes": fig.buffers_bytes,
            "total_bytes": fig.small_bytes + fig.resident_bytes + fig.buffers_bytes,
            "streamed_bytes_per_pass": fig.streamed_bytes_per_pass,
        },
        "resident": plan.resident.iter().map(|&i| name(i)).collect::<Vec<_>>(),
        "chunks": plan.chunks.iter().map(|c| json!({
            "aligned_offset": c.aligned_offset,
            "aligned_size": c.aligned_size,
            "tensors": c.tensors.iter().map(|&i| name(i)).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "buffers": { "count": plan.buffer_count, "bytes": plan.buffer_bytes },
        "prefetch_depth": plan.prefetch_depth,
        "io": { "request_bytes": plan.request_bytes, "queue_depth": plan.queue_depth },
        "device": plan.device.as_ref().map(|d| json!({
            "bandwidth_bytes_per_s": d.bandwidth_bytes_per_s,
            "direct": d.direct,
            "backend": d.backend,
            "sweep": d.sweep.iter().map(|s| json!({
                "request_bytes": s.request_bytes,
                "queue_depth": s.queue_depth,
                "bytes_per_s": s.bytes_per_s,
            })).collect::<Vec<_>>(),
        })),
        "predicted": predicted,
        "cmt": plan.cmt.iter().map(|e| json!({
            "phase": e.phase.name(),
            "index": e.index,
            "tensor": name(e.tensor),
            "layer": e.layer,
            "offset": e.offset,
            "size": e.size,
            "aligned_offset": e.aligned_offset,
            "aligned_size": e.aligned_size,
            "compute_ms": e.compute_ms,
            "gap_ms": e.gap_ms,
        })).collect::<Vec<_>>(),
    });
    serde_json::to_string_pretty(&v).expect("a Value always serializes") + "\n"
}

/// A JSON object and where it sits in the file.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn as_obj<'a>(v: &'a Value, path: &str) -> Result<Obj<'a>, PlanError> {
    match v {
        Value::Object(map) => Ok(Obj {
            map,
            path: path.to_string(),
        }),
        other => Err(field(
            if path.is_empty() { "(top level)" } else { path },
            format!("expected an object, found {}", kind(other)),
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn as_u64(v: &Value, path: &str) -> Result<u64, PlanError> {
    v.as_u64().ok_or_else(|| {
        field(
            path,
            format!("expected a non-negative integer, found {}", describe(v)),
        )
    })
}

fn describe(v: &Value) -> String {
    match v {
        Value::Number(n) => format!("{n}"),
        other => kind(other).to_string(),
    }
}

impl<'a> Obj<'a> {
    fn get(&self, key: &str) -> Result<&'a Value, PlanError> {
        self.map
            .get(key)
            .ok_or_else(|| field(join(&self.path, key), "missing"))
    }
    fn opt(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }
    fn u64(&self, key: &str) -> Result<u64, PlanError> {
        as_u64(self.get(key)?, &join(&self.path, key))
    }
    fn u32(&self, key: &str) -> Result<u32, PlanError> {
        let v = self.u64(key)?;
        u32::try_from(v).map_err(|_| field(join(&self.path, key), format!("{v} is too large")))
    }
    fn f64(&self, key: &str) -> Result<f64, PlanError> {
        let v = self.get(key)?;
        v.as_f64()
            .filter(|x| x.is_finite() && *x >= 0.0)
            .ok_or_else(|| {
                field(
                    join(&self.path, key),
                    format!("expected a non-negative number, found {}", describe(v)),
                )
            })
    }
    fn str(&self, key: &str) -> Result<&'a str, PlanError> {
        let v = self.get(key)?;
        v.as_str().ok_or_else(|| {
            field(
                join(&self.path, key),
                format!("expected a string, found {}", kind(v)),
            )
        })
    }
    fn bool(&self, key: &str) -> Result<bool, PlanError> {
        let v = self.get(key)?;
        v.as_bool().ok_or_else(|| {
            field(
                join(&self.path, key),
                format!("expected true or false, found {}", kind(v)),
            )
        })
    }
    fn arr(&self, key: &str) -> Result<(&'a Vec<Value>, String), PlanError> {
        let v = self.get(key)?;
        let p = join(&self.path, key);
        match v {
            Value::Array(a) => Ok((a, p)),
            other => Err(field(
                p,
                format!("expected an array, found {}", kind(other)),
            )),
        }
    }
    fn obj(&self, key: &str) -> Result<Obj<'a>, PlanError> {
        as_obj(self.get(key)?, &join(&self.path, key))
    }
}

fn tensor_id(g: &Gguf, v: &Value, path: &str) -> Result<TensorId, PlanError> {
    let name = v
        .as_str()
        .ok_or_else(|| field(path, format!("expected a tensor name, found {}", kind(v))))?;
    g.tensor(name)
        .map(|t| t.index)
        .ok_or_else(|| field(path, format!("no tensor named `{name}` in the model")))
}

fn phase_of(s: &str, path: &str) -> Result<Phase, PlanError> {
    match s {
        "prefill" => Ok(Phase::Prefill),
        "decode" => Ok(Phase::Decode),
        other => Err(field(
            path,
            format!("unknown phase `{other}` (prefill or decode)"),
        )),
    }
}

/// Read a plan file for the model `g`. Checks format, version and model identity first (so a
/// plan for another model says so), then every field. The result still needs
/// [`Plan::check`] against the pass structure and budget.
pub fn parse(bytes: &[u8], g: &Gguf) -> Result<Plan, PlanError> {
    let root: Value =
        serde_json::from_slice(bytes).map_err(|e| PlanError::Syntax(e.to_string()))?;
    let top = as_obj(&root, "")?;
    match top.map.get("format").and_then(Value::as_str) {
        Some(PLAN_FORMAT) => {}
        _ => {
            return Err(PlanError::Version(format!(
                "not a flashslim plan (`format` is not \"{PLAN_FORMAT}\")"
            )))
        }
    }
    let version = top.u64("version")?;
    if version == 0 || version > PLAN_VERSION as u64 {
        return Err(PlanError::Version(format!(
            "plan version {version} is not supported (this flashslim reads version {PLAN_VERSION}); make a new plan with `flashslim plan`"
        )));
    }
    let m = top.obj("model")?;
    let identity = ModelIdentity {
        file_size: m.u64("file_size")?,
        header_sha256: m.str("header_sha256")?.to_string(),
    };
    if identity != g.identity {
        return Err(PlanError::OtherModel(format!(
            "the plan was made for another model file (plan: {}, file: {}); make a new plan with `flashslim plan`",
            identity.short(),
            g.identity.short()
        )));
    }
    let model = PlanModel {
        identity,
        data_fingerprint: m.str("data_fingerprint")?.to_string(),
    };
    let method = match top.str("method")? {
        "heuristic" => Method::Heuristic,
        "profiled" => Method::Profiled,
        other => {
            return Err(field(
                "method",
                format!("unknown method `{other}` (heuristic or profiled)"),
            ))
        }
    };
    let budget_bytes = top.u64("budget_bytes")?;
    let (res, rp) = top.arr("resident")?;
    let resident = res
        .iter()
        .enumerate()
        .map(|(i, v)| tensor_id(g, v, &format!("{rp}[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let (chs, cp) = top.arr("chunks")?;
    let mut chunks = Vec::with_capacity(chs.len().min(1 << 16));
    for (i, v) in chs.iter().enumerate() {
        let c = as_obj(v, &format!("{cp}[{i}]"))?;
        let (ts, tp) = c.arr("tensors")?;
        chunks.push(Chunk {
            aligned_offset: c.u64("aligned_offset")?,
            aligned_size: c.u64("aligned_size")?,
            tensors: ts
                .iter()
                .enumerate()
                .map(|(j, v)| tensor_id(g, v, &format!("{tp}[{j}]")))
                .collect::<Result<Vec<_>, _>>()?,
        });
    }
    let b = top.obj("buffers")?;
    let io = top.obj("io")?;
    let device = match top.opt("device") {
        None => None,
        Some(d) => {
            let d = as_obj(d, "device")?;
            let (sw, sp) = d.arr("sweep")?;
            let sweep = sw
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let s = as_obj(v, &format!("{sp}[{i}]"))?;
                    Ok(SweepPoint {
                        request_bytes: s.u64("request_bytes")?,
                        queue_depth: s.u32("queue_depth")?,
                        bytes_per_s: s.f64("bytes_per_s")?,
                    })
                })
                .collect::<Result<Vec<_>, PlanError>>()?;
            Some(DeviceProfile {
                bandwidth_bytes_per_s: d.f64("bandwidth_bytes_per_s")?,
                direct: d.bool("direct")?,
                backend: d.str("backend")?.to_string(),
                sweep,
            })
        }
    };
    let mut predicted = Vec::new();
    if let Some(p) = top.opt("predicted") {
        let p = as_obj(p, "predicted")?;
        for (name, v) in p.map {
            let path = format!("predicted.{name}");
            let phase = phase_of(name, &path)?;
            let o = as_obj(v, &path)?;
            predicted.push(PhasePrediction {
                phase,
                tokens: o.u32("tokens")?,
                io_ms: o.f64("io_ms")?,
                compute_ms: o.f64("compute_ms")?,
                overlap_ms: o.f64("overlap_ms")?,
                stall_ms: o.f64("stall_ms")?,
                pass_ms: o.f64("pass_ms")?,
                overlap_pct: o.f64("overlap_pct")?,
            });
        }
    }
    predicted.sort_by_key(|p| p.phase.id());
    let mut cmt = Vec::new();
    if top.opt("cmt").is_some() {
        let (es, ep) = top.arr("cmt")?;
        for (i, v) in es.iter().enumerate() {
            let path = format!("{ep}[{i}]");
            let e = as_obj(v, &path)?;
            cmt.push(CmtEntry {
                phase: phase_of(e.str("phase")?, &join(&path, "phase"))?,
                index: e.u32("index")?,
                tensor: tensor_id(g, e.get("tensor")?, &join(&path, "tensor"))?,
                layer: match e.opt("layer") {
                    None => None,
                    Some(l) => Some(
                        u32::try_from(as_u64(l, &join(&path, "layer"))?)
                            .map_err(|_| field(join(&path, "layer"), "too large"))?,
                    ),
                },
                offset: e.u64("offset")?,
                size: e.u64("size")?,
                aligned_offset: e.u64("aligned_offset")?,
                aligned_size: e.u64("aligned_size")?,
                compute_ms: e.f64("compute_ms")?,
                gap_ms: e.f64("gap_ms")?,
            });
        }
    }
    Ok(Plan {
        method,
        model,
        budget_bytes,
        resident,
        chunks,
        buffer_count: b.u32("count")?,
        buffer_bytes: b.u64("bytes")?,
        prefetch_depth: top.u32("prefetch_depth")?,
        request_bytes: io.u64("request_bytes")?,
        queue_depth: io.u32("queue_depth")?,
        device,
        predicted,
        cmt,
    })
}
