//! The plan reader as an untrusted-input target: one entry point ([`check`]) shared by the
//! cargo-fuzz target (`engine/fuzz/fuzz_targets/plan.rs`) and the stable corpus test
//! (`engine/tests/stream_plan_corpus.rs`), run against a tiny deterministic in-memory model.

use super::optimize::{make_plan, DeviceModel};
use super::{json, Layout, Method, PlanError, PlanFigures, PlanModel};
use crate::gguf::{GgmlType, Gguf, GgufWriter, Value};
use crate::model::Model;
use crate::weights::{
    read_from_image, slice_of, MemOrigin, SourceKind, SourceStats, TensorId, Weight, WeightError,
    WeightSource,
};
use std::sync::{Arc, OnceLock};

/// A whole GGUF image held in memory.
struct MemSource {
    image: Vec<u8>,
    gguf: Arc<Gguf>,
}

impl WeightSource for MemSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Ram
    }
    fn get(&self, id: TensorId) -> Result<Weight<'_>, WeightError> {
        Ok(Weight::borrowed(
            slice_of(&self.image, &self.gguf, id)?,
            MemOrigin::Resident,
        ))
    }
    fn read_at(&self, id: TensorId, offset: u64, out: &mut [u8]) -> Result<(), WeightError> {
        read_from_image(&self.image, &self.gguf, id, offset, out)
    }
    fn stats(&self) -> SourceStats {
        SourceStats::default()
    }
}

/// A 2-layer llama (width 256, FFN 512, vocab 64), F32, deterministic bytes.
pub fn tiny_model_bytes() -> Vec<u8> {
    let (e, ff, v) = (256u64, 512u64, 64u64);
    let mut w = GgufWriter::new();
    w.kv("general.architecture", Value::String("llama".into()))
        .kv("general.name", Value::String("plan-fuzz tiny llama".into()))
        .kv("llama.embedding_length", Value::U32(e as u32))
        .kv("llama.block_count", Value::U32(2))
        .kv("llama.feed_forward_length", Value::U32(ff as u32))
        .kv("llama.attention.head_count", Value::U32(4))
        .kv("llama.vocab_size", Value::U32(v as u32));
    let t = GgmlType::F32;
    let data = |n: u64, seed: u64| -> Vec<u8> {
        (0..n)
            .flat_map(|i| (((i * 2654435761 + seed) % 1000) as f32 / 1000.0 - 0.5).to_le_bytes())
            .collect()
    };
    w.tensor("token_embd.weight", t, &[e, v], data(e * v, 1));
    for l in 0..2u64 {
        let n = |s: &str| format!("blk.{l}.{s}.weight");
        w.tensor(&n("attn_norm"), t, &[e], data(e, 2));
        w.tensor(&n("ffn_down"), t, &[ff, e], data(e * ff, 3));
        w.tensor(&n("ffn_gate"), t, &[e, ff], data(e * ff, 4));
        w.tensor(&n("ffn_up"), t, &[e, ff], data(e * ff, 5));
        w.tensor(&n("ffn_norm"), t, &[e], data(e, 6));
        for (k, name) in ["attn_k", "attn_output", "attn_q", "attn_v"]
            .iter()
            .enumerate()
        {
            w.tensor(&n(name), t, &[e, e], data(e * e, 7 + k as u64));
        }
    }
    w.tensor("output_norm.weight", t, &[e], data(e, 11));
    w.to_bytes()
}

/// The tiny model's pass structure.
pub fn layout() -> &'static Layout {
    static L: OnceLock<Layout> = OnceLock::new();
    L.get_or_init(|| {
        let image = tiny_model_bytes();
        let gguf = Arc::new(Gguf::parse_bytes(&image).expect("the tiny model parses"));
        let src = MemSource {
            image,
            gguf: gguf.clone(),
        };
        let model = Model::load(gguf, &src).expect("the tiny model loads");
        Layout::new(&model)
    })
}

/// A valid plan for the tiny model at `budget` bytes (corpus seeds).
pub fn valid_plan(budget: u64) -> Result<String, PlanError> {
    let l = layout();
    let pm = PlanModel {
        identity: l.gguf.identity.clone(),
        data_fingerprint: "0".repeat(64),
    };
    let dev = DeviceModel {
        request_bytes: 64 << 10,
        ..Default::default()
    };
    let p = make_plan(l, pm, budget, &dev, &[], Method::Heuristic)?;
    let fig = p.check(l, Some(budget))?;
    Ok(json::to_json(&p, &l.gguf, &fig))
}

/// Parse and check `bytes` as a plan for the tiny model. Must never panic.
pub fn check(bytes: &[u8]) -> Result<PlanFigures, PlanError> {
    let l = layout();
    let p = json::parse(bytes, &l.gguf)?;
    p.check(l, None)
}
