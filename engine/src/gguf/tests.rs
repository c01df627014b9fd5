// Parser tests: a valid synthetic file round-trips, and a corpus of malformed files (truncated,
// bad magic, huge counts, overlapping tensors, ...) each fails with an error naming the problem.

use super::*;

/// A small valid file: every scalar type, a nested array, two tensors.
pub(crate) fn sample() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.kv("general.architecture", Value::String("llama".into()))
        .kv("t.u8", Value::U8(7))
        .kv("t.i8", Value::I8(-7))
        .kv("t.u16", Value::U16(700))
        .kv("t.i16", Value::I16(-700))
        .kv("t.u32", Value::U32(70000))
        .kv("t.i32", Value::I32(-70000))
        .kv("t.f32", Value::F32(0.5))
        .kv("t.bool", Value::Bool(true))
        .kv("t.u64", Value::U64(1 << 40))
        .kv("t.i64", Value::I64(-(1 << 40)))
        .kv("t.f64", Value::F64(0.25))
        .kv(
            "t.nested",
            Value::Array(
                ValueType::Array,
                vec![
                    Value::Array(ValueType::U32, vec![Value::U32(1), Value::U32(2)]),
                    Value::Array(ValueType::String, vec![Value::String("x".into())]),
                ],
            ),
        );
    w.tensor("a.weight", GgmlType::F32, &[4, 2], vec![0u8; 32]);
    w.tensor(
        "blk.3.attn_q.weight",
        GgmlType::Q8_0,
        &[32, 3],
        vec![1u8; 3 * 34],
    );
    w
}

fn err_of(bytes: &[u8]) -> String {
    match Gguf::parse_bytes(bytes) {
        Ok(_) => panic!("malformed file parsed without error"),
        Err(e) => e.to_string(),
    }
}

/// Byte offset of the first tensor-info record (just after the last metadata value).
fn first_tensor_info_offset(w: &GgufWriter) -> usize {
    24 + w
        .metadata
        .iter()
        .map(|(k, v)| 8 + k.len() + 4 + encoded_len(v))
        .sum::<usize>()
}

fn encoded_len(v: &Value) -> usize {
    match v {
        Value::U8(_) | Value::I8(_) | Value::Bool(_) => 1,
        Value::U16(_) | Value::I16(_) => 2,
        Value::U32(_) | Value::I32(_) | Value::F32(_) => 4,
        Value::U64(_) | Value::I64(_) | Value::F64(_) => 8,
        Value::String(s) => 8 + s.len(),
        Value::Array(_, items) => 12 + items.iter().map(encoded_len).sum::<usize>(),
    }
}

#[test]
fn sample_roundtrips() {
    let bytes = sample().to_bytes();
    let g = Gguf::parse_bytes(&bytes).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(g.architecture(), Some("llama"));
    assert_eq!(g.get("t.i64").and_then(Value::as_i64), Some(-(1 << 40)));
    assert_eq!(g.get("t.u8").and_then(Value::as_u64), Some(7));
    assert_eq!(g.get("t.f64").and_then(Value::as_f64), Some(0.25));
    let (et, items) = g.get("t.nested").unwrap().as_array().unwrap();
    assert_eq!(et, ValueType::Array);
    assert_eq!(items[1].as_array().unwrap().1[0].as_str(), Some("x"));
    let q = g.tensor("blk.3.attn_q.weight").unwrap();
    assert_eq!(q.size, 102);
    assert_eq!(q.layer(), Some(3));
    assert_eq!(q.component(), "attn_q");
    assert_eq!(q.offset % 32, 0);
    assert_eq!(q.offset, g.data_offset + 32);
    assert_eq!(g.identity.file_size, bytes.len() as u64);
}

#[test]
fn identity_changes_with_the_header_only() {
    let a = Gguf::parse_bytes(&sample().to_bytes()).unwrap().identity;
    let mut w = sample();
    w.tensors[0].data[0] = 9; // data change: same header
    assert_eq!(Gguf::parse_bytes(&w.to_bytes()).unwrap().identity, a);
    w.kv("extra", Value::U8(1));
    assert_ne!(Gguf::parse_bytes(&w.to_bytes()).unwrap().identity, a);
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let bytes = sample().to_bytes();
    for cut in 0..bytes.len() {
        let r = Gguf::parse_bytes(&bytes[..cut]);
        assert!(
            r.is_err(),
            "a file cut at {cut} of {} bytes parsed",
            bytes.len()
        );
    }
}

#[test]
fn bad_magic() {
    let mut bytes = sample().to_bytes();
    bytes[0..4].copy_from_slice(b"GGML");
    assert!(err_of(&bytes).contains("not a GGUF file"));
}

#[test]
fn big_endian_and_old_versions() {
    let mut bytes = sample().to_bytes();
    bytes[4..8].copy_from_slice(&3u32.to_be_bytes());
    assert!(err_of(&bytes).contains("big-endian"));
    bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
    assert!(err_of(&bytes).contains("version 1"));
    bytes[4..8].copy_from_slice(&99u32.to_le_bytes());
    assert!(err_of(&bytes).contains("version 99"));
}

#[test]
fn huge_counts_are_refused_before_allocating() {
    let mut bytes = sample().to_bytes();
    bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(err_of(&bytes).contains("tensor_count"));
    let mut bytes = sample().to_bytes();
    bytes[8..16].copy_from_slice(&100_000u64.to_le_bytes());
    assert!(err_of(&bytes).contains("remain"));
    let mut bytes = sample().to_bytes();
    bytes[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(err_of(&bytes).contains("metadata_kv_count"));
}

#[test]
fn huge_string_length() {
    let mut bytes = sample().to_bytes();
    // First key's length prefix sits at byte 24.
    bytes[24..32].copy_from_slice(&(1u64 << 62).to_le_bytes());
    let e = err_of(&bytes);
    assert!(
        e.contains("metadata key #0 length") && e.contains("exceeds"),
        "{e}"
    );
}

#[test]
fn huge_array_length() {
    let mut w = GgufWriter::new();
    w.kv("arr", Value::Array(ValueType::U64, vec![Value::U64(1)]));
    let mut bytes = w.to_bytes();
    // 24 header + 8 + 3 key + 4 type + 4 elem type = 43: the array length.
    bytes[43..51].copy_from_slice(&(1u64 << 27).to_le_bytes());
    let e = err_of(&bytes);
    assert!(e.contains("`arr` array length"), "{e}");
}

#[test]
fn deep_nesting_is_limited() {
    let mut v = Value::U8(1);
    for _ in 0..(MAX_ARRAY_DEPTH + 1) {
        v = Value::Array(v.value_type(), vec![v]);
    }
    let mut w = GgufWriter::new();
    w.kv("deep", v);
    assert!(err_of(&w.to_bytes()).contains("nesting"));
}

#[test]
fn unknown_value_and_tensor_types() {
    let mut w = GgufWriter::new();
    w.kv("k", Value::U8(1));
    let mut bytes = w.to_bytes();
    bytes[24 + 8 + 1..24 + 8 + 1 + 4].copy_from_slice(&77u32.to_le_bytes());
    assert!(err_of(&bytes).contains("unknown value type 77"));

    let w = sample();
    let mut bytes = w.to_bytes();
    let ti = first_tensor_info_offset(&w);
    // name "a.weight" (8+8) + n_dims 4 + 2 dims 16 = 36: the type id.
    bytes[ti + 36..ti + 40].copy_from_slice(&4u32.to_le_bytes());
    let e = err_of(&bytes);
    assert!(
        e.contains("tensor `a.weight`") && e.contains("unknown ggml type id 4"),
        "{e}"
    );
}

#[test]
fn bad_bool_and_bad_utf8() {
    let mut w = GgufWriter::new();
    w.kv("b", Value::Bool(true));
    let mut bytes = w.to_bytes();
    bytes[24 + 8 + 1 + 4] = 2;
    assert!(err_of(&bytes).contains("bool byte 2"));

    let mut w = GgufWriter::new();
    w.kv("s", Value::String("ok".into()));
    let mut bytes = w.to_bytes();
    bytes[24 + 8 + 1 + 4 + 8] = 0xff;
    assert!(err_of(&bytes).contains("invalid UTF-8"));
}

#[test]
fn duplicate_keys_and_tensors() {
    let mut w = GgufWriter::new();
    w.kv("k", Value::U8(1)).kv("k", Value::U8(2));
    assert!(err_of(&w.to_bytes()).contains("duplicate key"));
    let mut w = GgufWriter::new();
    w.tensor("t", GgmlType::F32, &[1], vec![0; 4])
        .tensor("t", GgmlType::F32, &[1], vec![0; 4]);
    assert!(err_of(&w.to_bytes()).contains("duplicate tensor name"));
}

#[test]
fn overlapping_tensors() {
    let w = sample();
    let mut bytes = w.to_bytes();
    let ti = first_tensor_info_offset(&w);
    // Second tensor info: after the first (8+8 name, 4, 16 dims, 4 type, 8 offset = 48 bytes);
    // its offset field is at +8+19 name +4 +16 +4.
    let second = ti + 48;
    let off_at = second + 8 + "blk.3.attn_q.weight".len() + 4 + 16 + 4;
    bytes[off_at..off_at + 8].copy_from_slice(&0u64.to_le_bytes());
    let e = err_of(&bytes);
    assert!(e.contains("overlaps tensor `a.weight`"), "{e}");
}

#[test]
fn tensor_past_end_of_file() {
    let w = sample();
    let mut bytes = w.to_bytes();
    let ti = first_tensor_info_offset(&w);
    let off_at = ti + 48 + 8 + "blk.3.attn_q.weight".len() + 4 + 16 + 4;
    bytes[off_at..off_at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let e = err_of(&bytes);
    assert!(
        e.contains("blk.3.attn_q.weight") && e.contains("past the end"),
        "{e}"
    );
    // Cutting the data section short is caught the same way.
    let bytes = w.to_bytes();
    let e = err_of(&bytes[..bytes.len() - 1]);
    assert!(e.contains("past the end"), "{e}");
}

#[test]
fn misaligned_offset_and_bad_alignment() {
    let w = sample();
    let mut bytes = w.to_bytes();
    let ti = first_tensor_info_offset(&w);
    let off_at = ti + 48 + 8 + "blk.3.attn_q.weight".len() + 4 + 16 + 4;
    bytes[off_at..off_at + 8].copy_from_slice(&33u64.to_le_bytes());
    assert!(err_of(&bytes).contains("not a multiple of the alignment"));

    let mut w = sample();
    w.kv("general.alignment", Value::U32(48));
    assert!(err_of(&w.to_bytes()).contains("power of two"));
    let mut w = sample();
    w.kv("general.alignment", Value::U64(64));
    assert!(err_of(&w.to_bytes()).contains("expected u32"));
}

#[test]
fn dims_overflow_and_partial_blocks() {
    let w = sample();
    let ti = first_tensor_info_offset(&w);
    let mut bytes = w.to_bytes();
    // a.weight dims at ti + 16 + 4.
    bytes[ti + 20..ti + 28].copy_from_slice(&(1u64 << 40).to_le_bytes());
    bytes[ti + 28..ti + 36].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(err_of(&bytes).contains("overflows"));
    let mut bytes = w.to_bytes();
    bytes[ti + 16..ti + 20].copy_from_slice(&9u32.to_le_bytes());
    assert!(err_of(&bytes).contains("n_dims 9"));

    let mut w = GgufWriter::new();
    w.tensors.push(writer::PendingTensor {
        name: "q".into(),
        ty: GgmlType::Q4_0,
        dims: vec![48],
        data: vec![0; 18],
    });
    assert!(err_of(&w.to_bytes()).contains("not a multiple of the Q4_0 block size 32"));
}

#[test]
fn long_tensor_name() {
    let mut w = GgufWriter::new();
    w.tensor(&"x".repeat(64), GgmlType::F32, &[1], vec![0; 4]);
    assert!(err_of(&w.to_bytes()).contains("name length 64 exceeds the limit 63"));
}

/// Deterministic byte-flip sweep: random corruption must never panic.
#[test]
fn random_corruption_never_panics() {
    let base = sample().to_bytes();
    let mut state = 0x9e3779b97f4a7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let mut b = base.clone();
        for _ in 0..(1 + next() % 4) {
            let i = (next() % b.len() as u64) as usize;
            b[i] = next() as u8;
        }
        let cut = b.len() - (next() % 8) as usize;
        let _ = Gguf::parse_bytes(&b[..cut]);
    }
}
