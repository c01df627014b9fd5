// Hyperparameters of a llama-family model, read from GGUF metadata (`<arch>.*` keys), with the
// defaults llama.cpp applies when a key is absent.

use super::ModelError;
use crate::gguf::{Gguf, Value};

/// Supported `general.architecture` values.
pub const SUPPORTED_ARCHS: [&str; 2] = ["llama", "qwen2"];

/// How RoPE pairs dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RopeStyle {
    /// Adjacent pairs (x[2i], x[2i+1]): ggml "normal" mode, used by `llama`.
    Normal,
    /// Split halves (x[i], x[i+d/2]): ggml NeoX mode, used by `qwen2`.
    Neox,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Config {
    pub arch: String,
    pub n_embd: usize,        // model width, e.g. 576
    pub n_layer: usize,       // transformer blocks
    pub n_ff: usize,          // FFN hidden width
    pub n_head: usize,        // query heads
    pub n_head_kv: usize,     // key/value heads (GQA when < n_head)
    pub head_dim: usize,      // per-head width of q and k
    pub head_dim_v: usize,    // per-head width of v
    pub rope_dim: usize,      // leading dims of a head that get rotated
    pub rope_base: f32,       // theta base
    pub rope_freq_scale: f32, // 1 / linear scaling factor
    pub rope_style: RopeStyle,
    pub rms_eps: f32,
    pub n_ctx_train: usize,
    pub n_vocab: usize,
    /// Bias on q, k, v (qwen2).
    pub qkv_bias: bool,
}

fn key_u64(g: &Gguf, key: &str) -> Result<Option<u64>, ModelError> {
    match g.get(key) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            ModelError::Metadata(format!("`{key}` must be an unsigned integer, found {v}"))
        }),
    }
}

fn key_f32(g: &Gguf, key: &str) -> Result<Option<f32>, ModelError> {
    match g.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .map(|x| Some(x as f32))
            .ok_or_else(|| ModelError::Metadata(format!("`{key}` must be a number, found {v}"))),
    }
}

fn required(g: &Gguf, key: &str) -> Result<usize, ModelError> {
    key_u64(g, key)?
        .map(|v| v as usize)
        .ok_or_else(|| ModelError::Metadata(format!("missing metadata `{key}`")))
}

impl Config {
    pub fn from_gguf(g: &Gguf) -> Result<Config, ModelError> {
        let arch = g
            .architecture()
            .ok_or_else(|| ModelError::Metadata("missing metadata `general.architecture`".into()))?
            .to_string();
        if !SUPPORTED_ARCHS.contains(&arch.as_str()) {
            return Err(ModelError::UnsupportedArch(arch));
        }
        let k = |s: &str| format!("{arch}.{s}");
        let n_embd = required(g, &k("embedding_length"))?;
        let n_layer = required(g, &k("block_count"))?;
        let n_ff = required(g, &k("feed_forward_length"))?;
        let n_head = required(g, &k("attention.head_count"))?;
        let n_head_kv = key_u64(g, &k("attention.head_count_kv"))?
            .map(|v| v as usize)
            .unwrap_or(n_head);
        if n_head == 0 || n_head_kv == 0 || n_head % n_head_kv != 0 {
            return Err(ModelError::Metadata(format!(
                "head_count {n_head} must be a positive multiple of head_count_kv {n_head_kv}"
            )));
        }
        if n_embd == 0 || n_layer == 0 || n_ff == 0 || n_embd % n_head != 0 {
            return Err(ModelError::Metadata(format!(
                "embedding_length {n_embd}, block_count {n_layer}, feed_forward_length {n_ff}: \
                 all must be positive and embedding_length a multiple of head_count {n_head}"
            )));
        }
        let head_dim = key_u64(g, &k("attention.key_length"))?
            .map(|v| v as usize)
            .unwrap_or(n_embd / n_head);
        let head_dim_v = key_u64(g, &k("attention.value_length"))?
            .map(|v| v as usize)
            .unwrap_or(head_dim);
        let rope_dim = key_u64(g, &k("rope.dimension_count"))?
            .map(|v| v as usize)
            .unwrap_or(head_dim);
        if rope_dim > head_dim || rope_dim % 2 != 0 || head_dim == 0 || head_dim_v != head_dim {
            return Err(ModelError::Metadata(format!(
                "rope dimension {rope_dim} / key length {head_dim} / value length {head_dim_v} unsupported"
            )));
        }
        let rope_base = key_f32(g, &k("rope.freq_base"))?.unwrap_or(10000.0);
        // Linear scaling: `rope.scaling.type = linear` + `rope.scaling.factor`, or the older
        // `rope.scale_linear`.
        let scaling_type = g
            .get(&k("rope.scaling.type"))
            .and_then(Value::as_str)
            .unwrap_or("none");
        let factor = match scaling_type {
            "none" => key_f32(g, &k("rope.scale_linear"))?.unwrap_or(1.0),
            "linear" => key_f32(g, &k("rope.scaling.factor"))?.unwrap_or(1.0),
            other => {
                return Err(ModelError::Metadata(format!(
                    "rope scaling type `{other}` is not supported (none, linear)"
                )))
            }
        };
        if !(factor > 0.0) {
            return Err(ModelError::Metadata(format!(
                "rope scaling factor {factor} must be positive"
            )));
        }
        let rms_eps = key_f32(g, &k("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5);
        let n_ctx_train = key_u64(g, &k("context_length"))?
            .map(|v| v as usize)
            .unwrap_or(2048);
        let n_vocab = match g.get("tokenizer.ggml.tokens").and_then(Value::as_array) {
            Some((_, items)) => items.len(),
            None => required(g, &k("vocab_size"))?,
        };
        Ok(Config {
            rope_style: if arch == "qwen2" {
                RopeStyle::Neox
            } else {
                RopeStyle::Normal
            },
            qkv_bias: arch == "qwen2",
            arch,
            n_embd,
            n_layer,
            n_ff,
            n_head,
            n_head_kv,
            head_dim,
            head_dim_v,
            rope_dim,
            rope_base,
            rope_freq_scale: 1.0 / factor,
            rms_eps,
            n_ctx_train,
            n_vocab,
        })
    }

    /// Width of the K (and V) rows stored per position and layer.
    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
    /// Width of the concatenated query heads.
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }
}
