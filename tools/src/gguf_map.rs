//! `slim gguf`: a model's memory map — every tensor's file offset, size, type, shape, layer and
//! component — from the engine's GGUF reader ([`flashslim::gguf::Gguf`]), as a table, CSV or
//! JSON.

use flashslim::gguf::{Gguf, GgufError};
use serde::Serialize;
use std::io::{self, Write};
use std::path::Path;

/// One tensor of the map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MapRow {
    /// Directory index (the tensor id probes and traces use).
    pub index: usize,
    /// Tensor name.
    pub name: String,
    /// ggml type name.
    #[serde(rename = "type")]
    pub ty: String,
    /// ggml dims, `dims[0]` contiguous.
    pub shape: Vec<u64>,
    /// Absolute file offset.
    pub offset: u64,
    /// Bytes in the file.
    pub bytes: u64,
    /// Offset + bytes.
    pub end: u64,
    /// `blk.N` layer, if any.
    pub layer: Option<u32>,
    /// Component (`attn_q`, `ffn_down`, `token_embd`, ...).
    pub component: String,
}

/// The whole map plus the file facts it came from.
#[derive(Clone, Debug, Serialize)]
pub struct MemoryMap {
    /// File size.
    pub file_size: u64,
    /// GGUF version.
    pub gguf_version: u32,
    /// Data section alignment.
    pub alignment: u64,
    /// Where the data section starts.
    pub data_offset: u64,
    /// Sum of tensor sizes.
    pub tensor_bytes: u64,
    /// Identity (size + header sha256) the engine's plans and traces carry.
    pub identity: String,
    /// Tensors in file-offset order.
    pub tensors: Vec<MapRow>,
}

impl MemoryMap {
    /// Read the map of the model at `path`.
    pub fn open(path: &Path) -> Result<MemoryMap, GgufError> {
        Ok(Self::of(&Gguf::open(path)?))
    }

    /// The map of a parsed GGUF header.
    pub fn of(g: &Gguf) -> MemoryMap {
        let mut tensors: Vec<MapRow> = g
            .tensors
            .iter()
            .map(|t| MapRow {
                index: t.index,
                name: t.name.clone(),
                ty: t.ty.to_string(),
                shape: t.dims.clone(),
                offset: t.offset,
                bytes: t.size,
                end: t.end(),
                layer: t.layer(),
                component: t.component(),
            })
            .collect();
        tensors.sort_by_key(|t| (t.offset, t.index));
        MemoryMap {
            file_size: g.file_size,
            gguf_version: g.version,
            alignment: g.alignment,
            data_offset: g.data_offset,
            tensor_bytes: g.tensor_bytes(),
            identity: g.identity.short(),
            tensors,
        }
    }

    /// Aligned text table with a header and a totals line.
    pub fn write_table<W: Write>(&self, mut w: W) -> io::Result<()> {
        writeln!(
            w,
            "# {} tensors, {} bytes of tensor data in a {}-byte file (GGUF v{}, data at {}, alignment {}), identity {}",
            self.tensors.len(),
            self.tensor_bytes,
            self.file_size,
            self.gguf_version,
            self.data_offset,
            self.alignment,
            self.identity
        )?;
        writeln!(
            w,
            "{:>4}  {:>12}  {:>12}  {:>10}  {:<6}  {:<14}  {:>5}  {:<14}  name",
            "id", "offset", "end", "bytes", "type", "shape", "layer", "component"
        )?;
        for t in &self.tensors {
            writeln!(
                w,
                "{:>4}  {:>12}  {:>12}  {:>10}  {:<6}  {:<14}  {:>5}  {:<14}  {}",
                t.index,
                t.offset,
                t.end,
                t.bytes,
                t.ty,
                shape(&t.shape),
                t.layer.map(|l| l.to_string()).unwrap_or_else(|| "-".into()),
                t.component,
                t.name
            )?;
        }
        Ok(())
    }

    /// CSV with a header row.
    pub fn write_csv<W: Write>(&self, mut w: W) -> io::Result<()> {
        writeln!(w, "index,name,type,shape,offset,bytes,end,layer,component")?;
        for t in &self.tensors {
            writeln!(
                w,
                "{},{},{},{},{},{},{},{},{}",
                t.index,
                csv_field(&t.name),
                t.ty,
                shape(&t.shape),
                t.offset,
                t.bytes,
                t.end,
                t.layer.map(|l| l.to_string()).unwrap_or_default(),
                csv_field(&t.component)
            )?;
        }
        Ok(())
    }

    /// Pretty JSON object (`{file_size, ..., tensors: [...]}`).
    pub fn write_json<W: Write>(&self, mut w: W) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut w, self).map_err(io::Error::other)?;
        writeln!(w)
    }
}

fn shape(d: &[u64]) -> String {
    d.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flashslim::gguf::{GgmlType, GgufWriter, Value};

    #[test]
    fn map_of_a_small_model() {
        let mut w = GgufWriter::new();
        w.kv("general.architecture", Value::String("llama".into()));
        w.tensor("token_embd.weight", GgmlType::F32, &[4, 2], vec![0u8; 32]);
        w.tensor("blk.0.attn_q.weight", GgmlType::F32, &[4, 4], vec![0u8; 64]);
        w.tensor("blk.0.attn_q.bias", GgmlType::F32, &[4], vec![0u8; 16]);
        let g = Gguf::parse_bytes(&w.to_bytes()).unwrap();
        let m = MemoryMap::of(&g);
        assert_eq!(m.tensors.len(), 3);
        assert_eq!(m.tensors[1].layer, Some(0));
        assert_eq!(m.tensors[2].component, "attn_q_bias");
        assert!(m.tensors.windows(2).all(|w| w[0].end <= w[1].offset));
        let mut csv = Vec::new();
        m.write_csv(&mut csv).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        assert_eq!(csv.lines().count(), 4);
        assert!(csv
            .lines()
            .nth(2)
            .unwrap()
            .starts_with("1,blk.0.attn_q.weight,F32,4x4,"));
        let mut js = Vec::new();
        m.write_json(&mut js).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&js).unwrap();
        assert_eq!(v["tensors"][0]["type"], "F32");
        assert_eq!(v["tensors"][0]["layer"], serde_json::Value::Null);
    }
}
