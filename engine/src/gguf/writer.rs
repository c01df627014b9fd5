// GGUF v3 writer: metadata plus tensors, laid out with `general.alignment`. Used to build test
// files (valid and deliberately broken) and the synthetic scale-point model.

use super::{GgmlType, Value, DEFAULT_ALIGNMENT};
use std::io::{self, Write};

/// Tensor data given to the writer: either bytes or a generator called once per tensor.
pub struct PendingTensor {
    pub name: String,
    pub ty: GgmlType,
    pub dims: Vec<u64>,
    pub data: Vec<u8>,
}

/// Builds a GGUF v3 image.
#[derive(Default)]
pub struct GgufWriter {
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<PendingTensor>,
}

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn kv(&mut self, key: &str, value: Value) -> &mut Self {
        self.metadata.push((key.to_string(), value));
        self
    }

    /// Add a tensor; `data.len()` must match the type and dims.
    pub fn tensor(&mut self, name: &str, ty: GgmlType, dims: &[u64], data: Vec<u8>) -> &mut Self {
        let n: u64 = dims.iter().product();
        assert_eq!(
            data.len() as u64,
            n / ty.block_size() * ty.type_size(),
            "tensor {name}: data size does not match {ty} {dims:?}"
        );
        self.tensors.push(PendingTensor {
            name: name.to_string(),
            ty,
            dims: dims.to_vec(),
            data,
        });
        self
    }

    fn alignment(&self) -> u64 {
        self.metadata
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .and_then(|(_, v)| v.as_u64())
            .unwrap_or(DEFAULT_ALIGNMENT)
    }

    /// Serialize the whole file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out).expect("writing to a Vec cannot fail");
        out
    }

    pub fn write<W: Write>(&self, w: &mut W) -> io::Result<()> {
        self.write_impl(w, false, &mut |_, _| Ok(()))
    }

    /// Declare a tensor whose bytes are produced while writing (see [`Self::write_with`]), so
    /// a large file never has to sit in memory.
    pub fn tensor_deferred(&mut self, name: &str, ty: GgmlType, dims: &[u64]) -> &mut Self {
        self.tensors.push(PendingTensor {
            name: name.to_string(),
            ty,
            dims: dims.to_vec(),
            data: Vec::new(),
        });
        self
    }

    /// Write the file; each tensor declared with [`Self::tensor_deferred`] is filled by
    /// `fill(index, w)`, which must write exactly its size in bytes.
    pub fn write_with<W: Write>(
        &self,
        w: &mut W,
        fill: &mut dyn FnMut(usize, &mut W) -> io::Result<()>,
    ) -> io::Result<()> {
        self.write_impl(w, true, fill)
    }

    fn write_impl<W: Write>(
        &self,
        w: &mut W,
        deferred: bool,
        fill: &mut dyn FnMut(usize, &mut W) -> io::Result<()>,
    ) -> io::Result<()> {
        let size = |t: &PendingTensor| -> u64 {
            if deferred && t.data.is_empty() {
                t.dims.iter().product::<u64>() / t.ty.block_size() * t.ty.type_size()
            } else {
                t.data.len() as u64
            }
        };
        let align = self.alignment();
        let mut head = Vec::new();
        head.extend_from_slice(b"GGUF");
        head.extend_from_slice(&3u32.to_le_bytes());
        head.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        head.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut head, k);
            head.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
            put_value(&mut head, v);
        }
        let mut rel = 0u64;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            put_str(&mut head, &t.name);
            head.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                head.extend_from_slice(&d.to_le_bytes());
            }
            head.extend_from_slice(&t.ty.id().to_le_bytes());
            head.extend_from_slice(&rel.to_le_bytes());
            offsets.push(rel);
            rel = (rel + size(t)).div_ceil(align) * align;
        }
        let data_start = (head.len() as u64).div_ceil(align) * align;
        head.resize(data_start as usize, 0);
        w.write_all(&head)?;
        let mut written = 0u64;
        for (i, (t, off)) in self.tensors.iter().zip(offsets).enumerate() {
            if written < off {
                w.write_all(&vec![0u8; (off - written) as usize])?;
                written = off;
            }
            if deferred && t.data.is_empty() {
                fill(i, w)?;
            } else {
                w.write_all(&t.data)?;
            }
            written += size(t);
        }
        Ok(())
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::String(s) => put_str(out, s),
        Value::Array(t, items) => {
            out.extend_from_slice(&(*t as u32).to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for i in items {
                put_value(out, i);
            }
        }
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}
