// `flashslim inspect`: the model's metadata summary and its tensor map (name, type, shape, file
// offset, size, layer, component) — the "memory map" streaming plans are made from.

use super::ModelOpts;
use anyhow::{Context, Result};
use clap::Args;
use flashslim::gguf::{Gguf, Value};
use flashslim::model::Config;
use std::io::Write;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[command(flatten)]
    pub model: ModelOpts,
    /// Print only the tensor map, as CSV
    #[arg(long = "csv")]
    pub csv: bool,
}

pub fn shape(dims: &[u64]) -> String {
    dims.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

pub fn main(a: InspectArgs) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let path = a.model.model_path()?;
    let g = Gguf::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
    if a.csv {
        writeln!(out, "name,type,shape,offset,size,layer,component")?;
        for t in &g.tensors {
            let layer = t.layer().map(|l| l.to_string()).unwrap_or_default();
            writeln!(
                out,
                "{},{},{},{},{},{},{}",
                t.name,
                t.ty,
                shape(&t.dims),
                t.offset,
                t.size,
                layer,
                t.component()
            )?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    writeln!(out, "file:        {}", path.display())?;
    writeln!(
        out,
        "size:        {} bytes ({:.2} MiB), tensor data {:.2} MiB",
        g.file_size,
        mib(g.file_size),
        mib(g.tensor_bytes())
    )?;
    writeln!(
        out,
        "gguf:        v{}, alignment {}, data at {}",
        g.version, g.alignment, g.data_offset
    )?;
    writeln!(
        out,
        "identity:    {} (sha256 of the header and tensor directory)",
        g.identity.header_sha256
    )?;
    writeln!(out, "arch:        {}", g.architecture().unwrap_or("?"))?;
    match Config::from_gguf(&g) {
        Ok(c) => writeln!(
                out,
            "config:      {} layers, width {}, ffn {}, heads {}/{} (kv), head dim {}, rope {:?} base {} scale {}, vocab {}, train ctx {}",
            c.n_layer, c.n_embd, c.n_ff, c.n_head, c.n_head_kv, c.head_dim, c.rope_style, c.rope_base, 1.0 / c.rope_freq_scale, c.n_vocab, c.n_ctx_train
        )?,
        Err(e) => writeln!(out, "config:      not runnable by flashslim: {e}")?,
    }
    let mut types: std::collections::BTreeMap<String, (usize, u64)> = Default::default();
    for t in &g.tensors {
        let e = types.entry(t.ty.to_string()).or_default();
        e.0 += 1;
        e.1 += t.size;
    }
    let tys: Vec<String> = types
        .iter()
        .map(|(k, (n, b))| format!("{k} x{n} ({:.1} MiB)", mib(*b)))
        .collect();
    writeln!(out, "types:       {}", tys.join(", "))?;
    writeln!(out, "\nmetadata ({} keys):", g.metadata.len())?;
    for (k, v) in &g.metadata {
        let shown = match v {
            Value::String(s) if s.len() > 60 => format!(
                "{:?}… ({} chars)",
                s.chars().take(60).collect::<String>(),
                s.chars().count()
            ),
            _ => v.to_string(),
        };
        writeln!(out, "  {k:<44} {shown}")?;
    }
    writeln!(out, "\ntensors ({}):", g.tensors.len())?;
    writeln!(
        out,
        "  {:<4} {:<32} {:<6} {:<14} {:>12} {:>10} {:>5} component",
        "id", "name", "type", "shape", "offset", "bytes", "layer"
    )?;
    for t in &g.tensors {
        let layer = t
            .layer()
            .map(|l| l.to_string())
            .unwrap_or_else(|| "-".into());
        writeln!(
            out,
            "  {:<4} {:<32} {:<6} {:<14} {:>12} {:>10} {:>5} {}",
            t.index,
            t.name,
            t.ty.to_string(),
            shape(&t.dims),
            t.offset,
            t.size,
            layer,
            t.component()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
