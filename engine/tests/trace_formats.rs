// Tensor trace, manifest and JSON-lines/bpf readers without a model: write/read roundtrips,
// truncation at every byte boundary, and malformed inputs (committed corpus + random mutations)
// through the same entry points as the fuzz targets — errors are one line, never a panic.

use flashslim::gguf::ModelIdentity;
use flashslim::runlog::bpf::BpfOutput;
use flashslim::runlog::records::{read_jsonl, StageRecord, STAGES_FORMAT};
use flashslim::runlog::Manifest;
use flashslim::trace::{
    Access, MemSource, TraceEnd, TraceFile, TraceHeader, TraceRecord, TraceTensor, TraceWriter,
    RECORD_SIZE,
};
use std::path::{Path, PathBuf};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("flashslim-trace-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn header() -> TraceHeader {
    TraceHeader {
        version_major: 1,
        version_minor: 0,
        record_size: 64,
        header_size: 0,
        flags: 0,
        record_count: 0,
        dropped: 0,
        start_ns: 42,
        model: ModelIdentity {
            file_size: 1234,
            header_sha256: "ab".repeat(32),
        },
        run_id: "20261123T101502Z-3f9a1c".into(),
        tensors: (0..5)
            .map(|i| TraceTensor {
                name: format!("blk.{i}.ffn_down.weight"),
                offset: 4096 * i,
                size: 1000 + i,
                ty: 3,
            })
            .collect(),
    }
}

fn rec(thread: u32, i: u32) -> TraceRecord {
    TraceRecord {
        t_ns: 1_000_000 + i as u64,
        dur_ns: 7 + i as u64,
        file_offset: 4096 * (i as u64 % 5),
        bytes: 1000 + i as u64,
        token: i / 10,
        pos: 5 + i / 10,
        tensor: i % 5,
        thread,
        layer: (i % 30) as u16,
        gen: 0,
        slot: 0xFFFF,
        op: (i % 11) as u8,
        phase: (i >= 10) as u8,
        source: [
            MemSource::Resident,
            MemSource::Mmap,
            MemSource::Kv,
            MemSource::Activation,
        ][i as usize % 4],
        access: if i % 7 == 0 {
            Access::Write
        } else {
            Access::Read
        },
    }
}

/// Write `per_thread` records from each of `threads` threads; return the file and the records.
fn write_trace(dir: &Path, threads: u32, per_thread: u32) -> (PathBuf, Vec<TraceRecord>) {
    let path = dir.join("tensor-trace.bin");
    let w = TraceWriter::create(&path, header()).unwrap();
    let mut all = Vec::new();
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let mut tb = w.thread();
                s.spawn(move || {
                    let mut mine = Vec::new();
                    for i in 0..per_thread {
                        let r = rec(t, i);
                        tb.push(&r);
                        mine.push(r);
                        if i % 100 == 99 {
                            tb.flush();
                        }
                    }
                    mine
                })
            })
            .collect();
        for h in hs {
            all.extend(h.join().unwrap());
        }
    });
    let st = w.finish().unwrap();
    assert_eq!(st.records, (threads * per_thread) as u64);
    assert_eq!(st.dropped, 0);
    (path, all)
}

#[test]
fn trace_roundtrip_multithreaded() {
    let dir = tmpdir("roundtrip");
    let (path, mut written) = write_trace(&dir, 3, 2500);
    let f = flashslim::trace::TraceReader::open(&path)
        .unwrap()
        .read_all()
        .unwrap();
    assert_eq!(f.end, TraceEnd::Complete);
    assert!(f.header.is_complete());
    assert_eq!(f.header.record_count, 7500);
    assert_eq!(f.header.run_id, "20261123T101502Z");
    assert_eq!(f.header.model.header_sha256, "ab".repeat(32));
    assert_eq!(f.header.tensors, header().tensors);
    assert_eq!(f.tensor_name(4), Some("blk.4.ffn_down.weight"));
    let mut read = f.records.clone();
    let key = |r: &TraceRecord| (r.thread, r.t_ns);
    written.sort_by_key(key);
    read.sort_by_key(key);
    assert_eq!(read, written);
    // Each thread's records keep their order in the file.
    for t in 0..3 {
        let mine: Vec<u64> = f
            .records
            .iter()
            .filter(|r| r.thread == t)
            .map(|r| r.t_ns)
            .collect();
        assert!(mine.windows(2).all(|w| w[0] < w[1]));
    }
    let len = std::fs::metadata(&path).unwrap().len();
    assert_eq!(len, f.header.header_size as u64 + 7500 * RECORD_SIZE as u64);
}

#[test]
fn a_cut_trace_reads_up_to_its_last_complete_record() {
    let dir = tmpdir("cut");
    let (path, _) = write_trace(&dir, 1, 40);
    let full = std::fs::read(&path).unwrap();
    let hs = TraceFile::from_bytes(&full).unwrap().header.header_size as usize;
    // An unfinished writer leaves flags=0 / count=0: emulate a killed run at every cut point,
    // with and without a zeroed (preallocated) tail.
    let mut unfinished = full.clone();
    unfinished[20..40].fill(0);
    let all = TraceFile::from_bytes(&full).unwrap().records;
    for cut in hs..full.len() {
        for tail in [0usize, 4096] {
            let mut b = unfinished[..cut].to_vec();
            b.resize(cut + tail, 0);
            let f = TraceFile::from_bytes(&b).unwrap();
            let whole = (cut - hs) / RECORD_SIZE;
            // With a zero tail, a record missing only bytes that were zero anyway is intact.
            let rec_end = hs + (whole + 1) * RECORD_SIZE;
            let restorable = tail > 0 && full[cut..rec_end.min(full.len())].iter().all(|&x| x == 0);
            let expect = if restorable { whole + 1 } else { whole };
            assert_eq!(f.records.len(), expect, "cut {cut} tail {tail}");
            assert_eq!(f.records[..], all[..expect]);
            assert!(matches!(f.end, TraceEnd::Truncated { .. }));
        }
    }
    // A torn record (garbage in the last slot) ends the valid records there.
    let mut torn = unfinished.clone();
    let last = torn.len() - RECORD_SIZE;
    torn[last + 3] ^= 0xFF;
    let f = TraceFile::from_bytes(&torn).unwrap();
    assert_eq!(f.records.len(), 39);
    // A complete header whose count does not match the records is an error, not a silent cut.
    let e = TraceFile::from_bytes(&full[..full.len() - RECORD_SIZE]).unwrap_err();
    assert!(e.to_string().contains("counts 40 records"), "{e}");
}

fn corpus(dir: &str) -> Vec<(String, Vec<u8>)> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/profiling")
        .join(dir);
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(&d)
        .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    assert!(v.len() >= 5, "corpus {dir} has {} files", v.len());
    v
}

/// Deterministic xorshift mutations of `seed_input`.
fn mutations(seed_input: &[u8], n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    (0..n)
        .map(|_| {
            let mut b = seed_input.to_vec();
            match next() % 4 {
                0 if !b.is_empty() => {
                    let k = 1 + next() as usize % 8;
                    for _ in 0..k {
                        let i = next() as usize % b.len();
                        b[i] = next() as u8;
                    }
                }
                1 if !b.is_empty() => b.truncate(next() as usize % b.len()),
                2 => {
                    let i = if b.is_empty() {
                        0
                    } else {
                        next() as usize % b.len()
                    };
                    let junk: Vec<u8> = (0..1 + next() % 64).map(|_| next() as u8).collect();
                    b.splice(i..i, junk);
                }
                _ if b.len() > 8 => {
                    // Overwrite an aligned 4- or 8-byte field with an extreme value.
                    let w = if next() % 2 == 0 { 4 } else { 8 };
                    let i = (next() as usize % (b.len() - w)) & !3;
                    let v = [0u64, u64::MAX, 1 << 31, 0x7fff_ffff][next() as usize % 4];
                    b[i..i + w].copy_from_slice(&v.to_le_bytes()[..w]);
                }
                _ => {}
            }
            b
        })
        .collect()
}

fn one_line_or_ok<T, E: std::fmt::Display>(what: &str, r: std::thread::Result<Result<T, E>>) {
    match r {
        Err(_) => panic!("{what}: the reader panicked"),
        Ok(Err(e)) => {
            let m = e.to_string();
            assert!(
                !m.is_empty() && !m.contains('\n'),
                "{what}: message not one line: {m:?}"
            );
        }
        Ok(Ok(_)) => {}
    }
}

#[test]
fn malformed_traces_are_errors_not_panics() {
    let dir = tmpdir("malformed");
    let (path, _) = write_trace(&dir, 1, 30);
    let good = std::fs::read(&path).unwrap();
    let mut inputs = corpus("trace");
    for (i, m) in mutations(&good, 3000, 0x5eed).into_iter().enumerate() {
        inputs.push((format!("mutation {i}"), m));
    }
    let mut errors = 0;
    for (name, bytes) in &inputs {
        let r = std::panic::catch_unwind(|| TraceFile::from_bytes(bytes));
        if matches!(r, Ok(Err(_))) {
            errors += 1;
        }
        one_line_or_ok(name, r);
    }
    // The corpus files are all invalid; many mutations are too.
    for (name, bytes) in corpus("trace") {
        assert!(
            TraceFile::from_bytes(&bytes).is_err(),
            "{name} was accepted"
        );
    }
    assert!(errors > 100, "only {errors} inputs were rejected");
}

#[test]
fn malformed_manifests_are_errors_not_panics() {
    let good = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/profiling/manifest-good.json"),
    )
    .unwrap();
    let m = Manifest::from_json(std::str::from_utf8(&good).unwrap()).unwrap();
    assert_eq!(m.status, flashslim::runlog::RunStatus::Complete);
    let mut inputs = corpus("manifest");
    for (i, m) in mutations(&good, 3000, 0xfeed).into_iter().enumerate() {
        inputs.push((format!("mutation {i}"), m));
    }
    for (name, bytes) in &inputs {
        let text = String::from_utf8_lossy(bytes);
        let r = std::panic::catch_unwind(|| Manifest::from_json(&text));
        one_line_or_ok(name, r);
    }
    for (name, bytes) in corpus("manifest") {
        let text = String::from_utf8_lossy(&bytes);
        let e = Manifest::from_json(&text).expect_err(&name);
        assert!(!e.to_string().contains('\n'), "{name}: {e}");
    }
}

#[test]
fn jsonl_reader_tolerates_only_a_cut_last_line() {
    let rec = r#"{"stage":"decode","id":5,"gen":0,"index":3,"depth":1,"start_ns":1,"end_ns":2,"tid":7,"process":{"user_ns":0,"sys_ns":0,"minor_faults":0,"major_faults":0,"voluntary_cs":0,"involuntary_cs":0,"block_in":0,"block_out":0},"thread":{"user_ns":0,"sys_ns":0,"minor_faults":0,"major_faults":0,"voluntary_cs":0,"involuntary_cs":0,"block_in":0,"block_out":0}}"#;
    let head = "{\"format\":\"flashslim.stages\",\"version\":1}\n";
    let ok = format!("{head}{rec}\n{rec}\n");
    let f = read_jsonl::<StageRecord, _>(ok.as_bytes(), STAGES_FORMAT, "s").unwrap();
    assert_eq!((f.records.len(), f.truncated), (2, false));
    let cut = format!("{head}{rec}\n{}", &rec[..40]);
    let f = read_jsonl::<StageRecord, _>(cut.as_bytes(), STAGES_FORMAT, "s").unwrap();
    assert_eq!((f.records.len(), f.truncated), (1, true));
    let bad_middle = format!("{head}{}\n{rec}\n", &rec[..40]);
    let e = read_jsonl::<StageRecord, _>(bad_middle.as_bytes(), STAGES_FORMAT, "s").unwrap_err();
    assert!(e.to_string().starts_with("s:2:"), "{e}");
    let newer = format!("{{\"format\":\"flashslim.stages\",\"version\":9}}\n{rec}\n");
    let e = read_jsonl::<StageRecord, _>(newer.as_bytes(), STAGES_FORMAT, "s").unwrap_err();
    assert!(e.to_string().contains("version 9"), "{e}");
    let wrong = format!("{{\"format\":\"flashslim.tokens\",\"version\":1}}\n");
    assert!(read_jsonl::<StageRecord, _>(wrong.as_bytes(), STAGES_FORMAT, "s").is_err());
}

#[test]
fn bpf_output_reader_aligns_clocks_and_checks_rows() {
    let text = concat!(
        "{\"type\": \"attached_probes\", \"data\": {\"probes\": 8}}\n",
        "{\"type\": \"printf\", \"data\": \"format\\tflashslim.bpf\\t1\\tblockio\\n\"}\n",
        "{\"type\": \"printf\", \"data\": \"clock_sync\\t5000\\t3000\\n\"}\n",
        "{\"type\": \"printf\", \"data\": \"rq\\t6000\\t7000\\t8388608\\t2048\\t4096\\tR\\t4\\n\"}\n",
        "{\"type\": \"map\", \"data\": {\"@read_bytes\": {\"4\": 4096, \"1\": 10}}}\n",
        "{\"type\": \"printf\", \"data\": \"rq\\t60"
    );
    let o = BpfOutput::parse_ndjson(text, "t").unwrap();
    assert_eq!(o.script, "blockio");
    assert_eq!(o.attached_probes, Some(8));
    let rq: Vec<_> = o.rows_of("rq").collect();
    assert_eq!(rq.len(), 1);
    assert_eq!(rq[0].get_u64("bytes"), Some(4096));
    assert_eq!(o.to_monotonic(rq[0].boot_ns().unwrap()), Some(4000));
    let by = o.map_by_stage("@read_bytes");
    assert_eq!(by.get("prefill"), Some(&4096));
    assert_eq!(by.get("load_model"), Some(&10));
    // Wrong field count, missing format row, newer version: errors naming the problem.
    let bad = "{\"type\": \"printf\", \"data\": \"format\\tflashslim.bpf\\t1\\tx\\n\"}\n{\"type\": \"printf\", \"data\": \"rq\\t1\\t2\\n\"}\n";
    assert!(BpfOutput::parse_ndjson(bad, "t")
        .unwrap_err()
        .to_string()
        .contains("expected 7"));
    assert!(BpfOutput::parse_ndjson("{\"type\": \"printf\", \"data\": \"rq\\n\"}\n", "t").is_err());
    let newer = "{\"type\": \"printf\", \"data\": \"format\\tflashslim.bpf\\t7\\tx\\n\"}\n";
    assert!(BpfOutput::parse_ndjson(newer, "t")
        .unwrap_err()
        .to_string()
        .contains("version 7"));
}
