// `flashslim synth`: write a SYNTHETIC llama-arch GGUF with TinyLlama-1.1B shapes (22 layers,
// width 2048, FFN 5632, 32 heads / 4 KV heads, vocab 32000), Q4_0 random weights with sane
// scales and a byte-level SentencePiece vocabulary, streamed to disk (never whole in memory).
// The scale point of the streaming benchmark; `general.name` says it is synthetic.

use anyhow::{bail, Context, Result};
use clap::Args;
use flashslim::gguf::{GgmlType, GgufWriter, Value, ValueType};
use flashslim::kernels::f32_to_f16;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Output GGUF file
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// Random seed
    #[arg(long = "seed", value_name = "N", default_value_t = 1)]
    pub seed: u64,
    /// Layers (22 = TinyLlama-1.1B; fewer for quick tests)
    #[arg(long = "layers", value_name = "N", default_value_t = 22)]
    pub layers: u64,
}

const N_EMBD: u64 = 2048;
const N_FF: u64 = 5632;
const N_HEAD: u64 = 32;
const N_HEAD_KV: u64 = 4;
const N_VOCAB: u64 = 32000;
const N_CTX: u64 = 2048;

/// xorshift64*.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Q4_0 rows of uniformly random 4-bit values with block scale `d`: weights in [-8d, 7d],
/// standard deviation about 4.6·d.
fn write_q4_0(w: &mut dyn Write, n: u64, std: f32, rng: &mut Rng) -> std::io::Result<()> {
    let d = f32_to_f16(std / 4.6).to_le_bytes();
    let mut buf = Vec::with_capacity(18 * 4096);
    for _ in 0..n / 32 {
        buf.extend_from_slice(&d);
        let (a, b) = (rng.next(), rng.next());
        buf.extend_from_slice(&a.to_le_bytes());
        buf.extend_from_slice(&b.to_le_bytes());
        if buf.len() >= 18 * 4096 {
            w.write_all(&buf)?;
            buf.clear();
        }
    }
    w.write_all(&buf)
}

pub fn main(a: SynthArgs) -> Result<ExitCode> {
    if a.layers == 0 || a.layers > 64 {
        bail!("--layers must be within 1..=64");
    }
    let kv = N_EMBD / N_HEAD * N_HEAD_KV;
    let mut g = GgufWriter::new();
    // Byte-level SentencePiece vocabulary: specials, the 256 byte tokens, then filler pieces.
    let mut tokens = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
    let mut types = vec![2i32, 3, 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
    }
    let mut i = 0;
    while (tokens.len() as u64) < N_VOCAB {
        tokens.push(format!("\u{2581}synth{i}"));
        types.push(1);
        i += 1;
    }
    let scores: Vec<Value> = (0..tokens.len())
        .map(|i| Value::F32(if i < 259 { 0.0 } else { -(i as f32) }))
        .collect();
    g.kv("general.architecture", Value::String("llama".into()))
        .kv(
            "general.name",
            Value::String(format!(
                "SYNTHETIC TinyLlama-1.1B-shaped Q4_0, random weights (seed {}, {} layers)",
                a.seed, a.layers
            )),
        )
        .kv("general.size_label", Value::String("1.1B-synthetic".into()))
        .kv("general.file_type", Value::U32(2))
        .kv("general.quantization_version", Value::U32(2))
        .kv("llama.context_length", Value::U32(N_CTX as u32))
        .kv("llama.embedding_length", Value::U32(N_EMBD as u32))
        .kv("llama.block_count", Value::U32(a.layers as u32))
        .kv("llama.feed_forward_length", Value::U32(N_FF as u32))
        .kv(
            "llama.rope.dimension_count",
            Value::U32((N_EMBD / N_HEAD) as u32),
        )
        .kv("llama.attention.head_count", Value::U32(N_HEAD as u32))
        .kv(
            "llama.attention.head_count_kv",
            Value::U32(N_HEAD_KV as u32),
        )
        .kv("llama.rope.freq_base", Value::F32(10000.0))
        .kv("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5))
        .kv("llama.vocab_size", Value::U32(N_VOCAB as u32))
        .kv("tokenizer.ggml.model", Value::String("llama".into()))
        .kv(
            "tokenizer.ggml.tokens",
            Value::Array(
                ValueType::String,
                tokens.into_iter().map(Value::String).collect(),
            ),
        )
        .kv(
            "tokenizer.ggml.scores",
            Value::Array(ValueType::F32, scores),
        )
        .kv(
            "tokenizer.ggml.token_type",
            Value::Array(ValueType::I32, types.into_iter().map(Value::I32).collect()),
        )
        .kv("tokenizer.ggml.bos_token_id", Value::U32(1))
        .kv("tokenizer.ggml.eos_token_id", Value::U32(2))
        .kv("tokenizer.ggml.unknown_token_id", Value::U32(0))
        .kv("tokenizer.ggml.add_bos_token", Value::Bool(true))
        .kv("tokenizer.ggml.add_eos_token", Value::Bool(false));
    // (name, type, dims, std): norms are F32 ones (std 0 = write 1.0).
    let q = GgmlType::Q4_0;
    let mut specs: Vec<(String, GgmlType, Vec<u64>, f32)> =
        vec![("token_embd.weight".into(), q, vec![N_EMBD, N_VOCAB], 1.0)];
    let fan = |n: u64| 0.5 / (n as f32).sqrt();
    for l in 0..a.layers {
        let n = |s: &str| format!("blk.{l}.{s}.weight");
        specs.push((n("attn_norm"), GgmlType::F32, vec![N_EMBD], 0.0));
        specs.push((n("attn_q"), q, vec![N_EMBD, N_EMBD], fan(N_EMBD)));
        specs.push((n("attn_k"), q, vec![N_EMBD, kv], fan(N_EMBD)));
        specs.push((n("attn_v"), q, vec![N_EMBD, kv], fan(N_EMBD)));
        specs.push((n("attn_output"), q, vec![N_EMBD, N_EMBD], fan(N_EMBD)));
        specs.push((n("ffn_norm"), GgmlType::F32, vec![N_EMBD], 0.0));
        specs.push((n("ffn_gate"), q, vec![N_EMBD, N_FF], fan(N_EMBD)));
        specs.push((n("ffn_up"), q, vec![N_EMBD, N_FF], fan(N_EMBD)));
        specs.push((n("ffn_down"), q, vec![N_FF, N_EMBD], fan(N_FF)));
    }
    specs.push((
        "output_norm.weight".into(),
        GgmlType::F32,
        vec![N_EMBD],
        0.0,
    ));
    specs.push((
        "output.weight".into(),
        q,
        vec![N_EMBD, N_VOCAB],
        fan(N_EMBD),
    ));
    for (name, ty, dims, _) in &specs {
        g.tensor_deferred(name, *ty, dims);
    }
    let tmp = a.output.with_extension("gguf.partial");
    let f =
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut w = BufWriter::with_capacity(8 << 20, f);
    let mut rng = Rng(a.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    g.write_with(&mut w, &mut |i, w| {
        let (_, ty, dims, std) = &specs[i];
        let n: u64 = dims.iter().product();
        if *ty == GgmlType::F32 {
            let ones: Vec<u8> = (0..n).flat_map(|_| 1.0f32.to_le_bytes()).collect();
            w.write_all(&ones)
        } else {
            write_q4_0(w, n, *std, &mut rng)
        }
    })
    .and_then(|_| w.flush())
    .with_context(|| format!("writing {}", tmp.display()))?;
    drop(w);
    std::fs::rename(&tmp, &a.output)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), a.output.display()))?;
    let size = std::fs::metadata(&a.output)?.len();
    eprintln!(
        "synth: wrote {} ({:.1} MiB, SYNTHETIC random weights, {} layers)",
        a.output.display(),
        size as f64 / (1 << 20) as f64,
        a.layers
    );
    Ok(ExitCode::SUCCESS)
}
