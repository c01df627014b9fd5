//! The llama-family model (`llama`, `qwen2`): hyperparameters, which GGUF tensor is which, and the
//! forward pass in [`forward`]. Big matrices are referenced by [`TensorId`] and fetched from the
//! weight source at the point of use; norms, biases and RoPE factors are small and decoded to f32
//! once at load.

mod config;
pub mod forward;
pub mod ops;

pub use config::{Config, RopeStyle, SUPPORTED_ARCHS};
pub use forward::{forward, KvCache, LogitsMode, NoObserver, Observer, OpKind, RunState};

use crate::gguf::{GgmlType, Gguf, GgufError, TensorInfo};
use crate::kernels::dequantize_row;
use crate::weights::{TensorId, WeightError, WeightSource};
use std::fmt;
use std::sync::Arc;

#[derive(Debug)]
#[non_exhaustive]
pub enum ModelError {
    Gguf(GgufError),
    Weights(WeightError),
    UnsupportedArch(String),
    Metadata(String),
    MissingTensor(String),
    Shape {
        tensor: String,
        expected: Vec<u64>,
        found: Vec<u64>,
    },
    UnsupportedType {
        tensor: String,
        ty: GgmlType,
    },
    /// Bad runtime input (prompt longer than the context, token id out of range...).
    Input(String),
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::Gguf(e) => write!(f, "{e}"),
            ModelError::Weights(e) => write!(f, "{e}"),
            ModelError::UnsupportedArch(a) => write!(
                f,
                "unsupported architecture `{a}` (supported: {})",
                SUPPORTED_ARCHS.join(", ")
            ),
            ModelError::Metadata(m) | ModelError::MissingTensor(m) | ModelError::Input(m) => {
                f.write_str(m)
            }
            ModelError::Shape {
                tensor,
                expected,
                found,
            } => {
                write!(
                    f,
                    "tensor `{tensor}` has shape {found:?}, expected {expected:?}"
                )
            }
            ModelError::UnsupportedType { tensor, ty } => {
                write!(
                f,
                "tensor `{tensor}` has type {ty}, which flashslim does not support (supported: {})",
                GgmlType::SUPPORTED.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
            )
            }
        }
    }
}

impl std::error::Error for ModelError {}

impl From<GgufError> for ModelError {
    fn from(e: GgufError) -> Self {
        ModelError::Gguf(e)
    }
}
impl From<WeightError> for ModelError {
    fn from(e: WeightError) -> Self {
        ModelError::Weights(e)
    }
}

/// One transformer block. Matrix shapes are (rows × cols) = (out × in).
#[derive(Debug)]
pub struct LayerWeights {
    pub attn_norm: Vec<f32>,  // (n_embd)
    pub wq: TensorId,         // (q_dim × n_embd)
    pub wk: TensorId,         // (kv_dim × n_embd)
    pub wv: TensorId,         // (kv_dim × n_embd)
    pub bq: Option<Vec<f32>>, // (q_dim), qwen2
    pub bk: Option<Vec<f32>>, // (kv_dim), qwen2
    pub bv: Option<Vec<f32>>, // (kv_dim), qwen2
    pub wo: TensorId,         // (n_embd × q_dim)
    pub ffn_norm: Vec<f32>,   // (n_embd)
    pub w_gate: TensorId,     // (n_ff × n_embd)
    pub w_up: TensorId,       // (n_ff × n_embd)
    pub w_down: TensorId,     // (n_embd × n_ff)
}

#[derive(Debug)]
pub struct Model {
    pub config: Config,
    pub gguf: Arc<Gguf>,
    pub token_embd: TensorId,  // (n_vocab × n_embd), read by row
    pub output_norm: Vec<f32>, // (n_embd)
    pub output: TensorId,      // (n_vocab × n_embd); == token_embd when tied
    pub tied_output: bool,
    pub rope_freqs: Option<Vec<f32>>, // (rope_dim / 2) llama3-style per-frequency divisors
    pub layers: Vec<LayerWeights>,
}

impl Model {
    /// Bind tensors by name, check shapes and types, and load the small tensors through `src`.
    pub fn load(gguf: Arc<Gguf>, src: &dyn WeightSource) -> Result<Model, ModelError> {
        let config = Config::from_gguf(&gguf)?;
        let c = &config;
        let (e, q, kv, ff, v) = (
            c.n_embd as u64,
            c.q_dim() as u64,
            c.kv_dim() as u64,
            c.n_ff as u64,
            c.n_vocab as u64,
        );
        let g = &gguf;
        let matrix = |name: &str, cols: u64, rows: u64| -> Result<TensorId, ModelError> {
            let t = find(g, name)?;
            check(t, &[cols, rows])?;
            Ok(t.index)
        };
        let vector = |name: &str, n: u64| -> Result<Vec<f32>, ModelError> {
            let t = find(g, name)?;
            check(t, &[n])?;
            small_f32(src, t)
        };
        let token_embd = matrix("token_embd.weight", e, v)?;
        let (output, tied_output) = match g.tensor("output.weight") {
            Some(_) => (matrix("output.weight", e, v)?, false),
            None => (token_embd, true),
        };
        let output_norm = vector("output_norm.weight", e)?;
        let rope_freqs = match g.tensor("rope_freqs.weight") {
            Some(_) => Some(vector("rope_freqs.weight", c.rope_dim as u64 / 2)?),
            None => None,
        };
        let mut layers = Vec::with_capacity(c.n_layer);
        for l in 0..c.n_layer {
            let n = |s: &str| format!("blk.{l}.{s}");
            let bias = |s: &str, len: u64| -> Result<Option<Vec<f32>>, ModelError> {
                if c.qkv_bias {
                    Ok(Some(vector(&n(s), len)?))
                } else {
                    Ok(None)
                }
            };
            layers.push(LayerWeights {
                attn_norm: vector(&n("attn_norm.weight"), e)?,
                wq: matrix(&n("attn_q.weight"), e, q)?,
                wk: matrix(&n("attn_k.weight"), e, kv)?,
                wv: matrix(&n("attn_v.weight"), e, kv)?,
                bq: bias("attn_q.bias", q)?,
                bk: bias("attn_k.bias", kv)?,
                bv: bias("attn_v.bias", kv)?,
                wo: matrix(&n("attn_output.weight"), q, e)?,
                ffn_norm: vector(&n("ffn_norm.weight"), e)?,
                w_gate: matrix(&n("ffn_gate.weight"), e, ff)?,
                w_up: matrix(&n("ffn_up.weight"), e, ff)?,
                w_down: matrix(&n("ffn_down.weight"), ff, e)?,
            });
        }
        Ok(Model {
            config,
            gguf,
            token_embd,
            output_norm,
            output,
            tied_output,
            rope_freqs,
            layers,
        })
    }

    /// The matrices one forward pass fetches, in the order it fetches them. Weight sources plan
    /// their reads from this.
    pub fn access_order(&self) -> Vec<TensorId> {
        let mut v = Vec::with_capacity(self.layers.len() * 7 + 1);
        for l in &self.layers {
            v.extend_from_slice(&[l.wq, l.wk, l.wv, l.wo, l.w_gate, l.w_up, l.w_down]);
        }
        v.push(self.output);
        v
    }

    /// Tensors decoded to f32 at load (norms, biases, RoPE factors): always resident.
    pub fn small_tensor_ids(&self) -> Vec<TensorId> {
        let big: std::collections::HashSet<TensorId> = self
            .access_order()
            .into_iter()
            .chain([self.token_embd])
            .collect();
        (0..self.gguf.tensors.len())
            .filter(|i| !big.contains(i))
            .collect()
    }

    pub fn tensor(&self, id: TensorId) -> &TensorInfo {
        &self.gguf.tensors[id]
    }
}

fn find<'a>(g: &'a Gguf, name: &str) -> Result<&'a TensorInfo, ModelError> {
    g.tensor(name)
        .ok_or_else(|| ModelError::MissingTensor(format!("missing tensor `{name}`")))
}

fn check(t: &TensorInfo, dims: &[u64]) -> Result<(), ModelError> {
    // Trailing 1-dims are equivalent (a [n, 1] vector is a [n] vector).
    let trim = |d: &[u64]| {
        let mut d = d.to_vec();
        while d.len() > 1 && *d.last().unwrap() == 1 {
            d.pop();
        }
        d
    };
    if trim(&t.dims) != trim(dims) {
        return Err(ModelError::Shape {
            tensor: t.name.clone(),
            expected: dims.to_vec(),
            found: t.dims.clone(),
        });
    }
    if !t.ty.is_supported() {
        return Err(ModelError::UnsupportedType {
            tensor: t.name.clone(),
            ty: t.ty,
        });
    }
    Ok(())
}

/// Read a small tensor through the source and decode it to f32.
fn small_f32(src: &dyn WeightSource, t: &TensorInfo) -> Result<Vec<f32>, ModelError> {
    let mut bytes = vec![0u8; t.size as usize];
    src.read_at(t.index, 0, &mut bytes)?;
    let mut out = vec![0f32; t.n_elements() as usize];
    dequantize_row(t.ty, &bytes, &mut out);
    Ok(out)
}
