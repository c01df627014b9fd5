// The streaming source against `--weights ram` on the real default model: bit-identical logits
// and greedy tokens at several budgets, prefetch depths and both I/O backends; prefill streams
// each weight once per batch; the fallbacks (pread, buffered reads) work; injected faults (EIO,
// short reads, slow reads) are retried once and then fail with the file offset, never hang;
// plans for another model, budget or changed file are refused; order mismatches are errors.

use flashslim::gguf::Gguf;
use flashslim::kernels::Kernels;
use flashslim::model::{forward, KvCache, LogitsMode, Model, NoObserver, RunState};
use flashslim::plan::{json, optimize, Layout};
use flashslim::weights::stream::{fault, BackendChoice, PlanSource, StreamOptions};
use flashslim::weights::{Phase, RamSource, StreamSource, WeightError, WeightSource};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const MIB: u64 = 1 << 20;
const PROMPT: [u32; 6] = [1, 504, 3458, 314, 260, 2427];
const N_DECODE: usize = 3;

fn model_path() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "default model missing: run scripts/fetch-model.sh"
    );
    p
}

fn kernels() -> &'static Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    K.get_or_init(|| Kernels::new(2))
}

/// Prefill PROMPT in one batch, then greedy-decode N_DECODE tokens; every logits row.
fn run(model: &Model, src: &dyn WeightSource) -> Result<(Vec<Vec<f32>>, Vec<u32>), WeightError> {
    let mut st = RunState::new(model, PROMPT.len(), false);
    let mut kv = KvCache::new(model, 64);
    let k = kernels();
    let to_w = |e: flashslim::model::ModelError| match e {
        flashslim::model::ModelError::Weights(w) => w,
        other => panic!("unexpected model error: {other}"),
    };
    let mut rows = vec![forward(
        model,
        src,
        k,
        &mut st,
        &mut kv,
        &PROMPT,
        0,
        LogitsMode::Last,
        &mut NoObserver,
    )
    .map_err(to_w)?
    .to_vec()];
    let mut toks = Vec::new();
    for i in 0..N_DECODE {
        let last = rows.last().unwrap();
        let best = (0..last.len()).fold(0, |b, j| if last[j] > last[b] { j } else { b }) as u32;
        toks.push(best);
        let pos = PROMPT.len() + i;
        rows.push(
            forward(
                model,
                src,
                k,
                &mut st,
                &mut kv,
                &[best],
                pos,
                LogitsMode::Last,
                &mut NoObserver,
            )
            .map_err(to_w)?
            .to_vec(),
        );
    }
    Ok((rows, toks))
}

fn reference() -> &'static (Vec<Vec<f32>>, Vec<u32>) {
    static R: OnceLock<(Vec<Vec<f32>>, Vec<u32>)> = OnceLock::new();
    R.get_or_init(|| {
        let path = model_path();
        let g = Arc::new(Gguf::open(&path).unwrap());
        let src = RamSource::open(&path, g.clone()).unwrap();
        let model = Model::load(g, &src).unwrap();
        run(&model, &src).unwrap()
    })
}

fn open_stream(path: &Path, opts: StreamOptions) -> Result<(Model, StreamSource), WeightError> {
    let g = Arc::new(Gguf::open(path).unwrap());
    let mut src = StreamSource::open(path, g.clone(), opts)?;
    let model = Model::load(g, &src).map_err(|e| match e {
        flashslim::model::ModelError::Weights(w) => w,
        other => panic!("{other}"),
    })?;
    src.attach_model(&model)?;
    Ok((model, src))
}

fn opts(budget_mib: u64) -> StreamOptions {
    StreamOptions {
        budget: Some(budget_mib * MIB),
        ..Default::default()
    }
}

fn assert_identical(src: &StreamSource, model: &Model, what: &str) {
    let (rows, toks) = run(model, src).unwrap_or_else(|e| panic!("{what}: {e}"));
    let (ref_rows, ref_toks) = reference();
    assert_eq!(&toks, ref_toks, "{what}: greedy tokens differ");
    for (i, (a, b)) in rows.iter().zip(ref_rows).enumerate() {
        let same = a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(
            same,
            "{what}: logits of pass {i} are not bit-identical to --weights ram"
        );
    }
}

#[test]
fn identical_to_ram_at_every_budget_depth_and_backend() {
    let path = model_path();
    for (budget, depth, backend) in [
        (29, None, BackendChoice::Auto),
        (34, Some(0), BackendChoice::Auto),
        (40, Some(1), BackendChoice::Pread),
        (48, None, BackendChoice::Auto),
        (48, Some(6), BackendChoice::Uring),
        (64, Some(3), BackendChoice::Pread),
        (100, None, BackendChoice::Auto),
    ] {
        let o = StreamOptions {
            depth,
            backend,
            ..opts(budget)
        };
        let (model, src) = open_stream(&path, o).unwrap();
        let what = format!(
            "budget {budget} MiB, depth {depth:?}, {backend:?}: {}",
            src.summary()
        );
        assert_identical(&src, &model, &what);
        let s = src.stream_stats();
        assert!(s.budget_bytes == budget * MIB);
        assert!(
            s.small_bytes + src.stats().resident_bytes - s.small_bytes + s.buffer_bytes
                <= budget * MIB,
            "{what}: resident + buffers exceed the budget"
        );
        if budget < 100 {
            assert!(s.decode.streamed_bytes > 0, "{what}: nothing streamed");
        }
    }
}

#[test]
fn prefill_streams_each_weight_once_per_batch() {
    let (model, src) = open_stream(&model_path(), opts(48)).unwrap();
    run(&model, &src).unwrap();
    let s = src.stream_stats();
    assert_eq!(s.prefill.passes, 1);
    assert_eq!(s.prefill.tokens, PROMPT.len() as u64);
    assert_eq!(
        s.prefill.streamed_bytes,
        s.streamed_bytes_per_pass,
        "a {}-token prefill batch must stream each streamed weight exactly once",
        PROMPT.len()
    );
    assert_eq!(s.decode.passes, N_DECODE as u64);
    assert_eq!(
        s.decode.streamed_bytes,
        N_DECODE as u64 * s.streamed_bytes_per_pass
    );
    // Everything the chunks needed was read, plus at most the prefetched next pass.
    let consumed = s.prefill.streamed_bytes + s.decode.streamed_bytes;
    assert!(s.read_bytes >= consumed, "{} < {consumed}", s.read_bytes);
}

#[test]
fn io_events_and_stats_add_up() {
    let path = model_path();
    let g = Arc::new(Gguf::open(&path).unwrap());
    let mut src = StreamSource::open(&path, g.clone(), opts(40)).unwrap();
    src.record_io(true);
    let model = Model::load(g, &src).unwrap();
    src.attach_model(&model).unwrap();
    run(&model, &src).unwrap();
    let mut ev = Vec::new();
    src.drain_io_events(&mut ev);
    use flashslim::weights::IoEventKind as K;
    let sum = |k: K, f: &dyn Fn(u32) -> bool| -> u64 {
        ev.iter()
            .filter(|e| e.kind == k && f(e.chunk))
            .map(|e| e.bytes)
            .sum()
    };
    let chunk = |c: u32| c < 0x8000_0000;
    let s = src.stream_stats();
    assert!(sum(K::Complete, &chunk) <= sum(K::Submit, &chunk));
    assert!(sum(K::Complete, &chunk) >= s.prefill.streamed_bytes + s.decode.streamed_bytes);
    assert_eq!(
        sum(K::Complete, &|_| true),
        s.read_bytes,
        "every byte read has its event"
    );
    assert!(
        ev.iter().any(|e| e.chunk == 0xFFFF_FFFF),
        "read_at (small tensors, embedding rows)"
    );
    assert!(
        ev.iter()
            .any(|e| e.chunk & 0x8000_0000 != 0 && e.chunk != u32::MAX),
        "resident load"
    );
    assert_eq!(
        ev.iter().filter(|e| e.kind == K::WaitBegin).count(),
        ev.iter().filter(|e| e.kind == K::WaitEnd).count()
    );
    assert!(
        ev.windows(2).all(|w| w[0].t_ns <= w[1].t_ns),
        "events are in time order"
    );
    let st = src.stats();
    assert_eq!(st.passes, 1 + N_DECODE as u64);
    assert!(st.streamed_bytes > 0);
}

#[test]
fn budget_below_minimum_states_the_minimum() {
    let err = open_stream(&model_path(), opts(20))
        .err()
        .expect("20 MiB cannot work");
    let msg = err.to_string();
    assert!(matches!(err, WeightError::Budget(_)), "{msg}");
    assert!(msg.contains("minimum working set 28.8 MiB"), "{msg}");
}

#[test]
fn order_mismatch_is_an_error_not_wrong_bytes() {
    let (model, src) = open_stream(&model_path(), opts(48)).unwrap();
    src.begin_pass(Phase::Decode, 1).unwrap();
    let order = model.access_order();
    let w = src.get(order[0]).unwrap();
    drop(w);
    let e = src
        .get(order[2])
        .err()
        .expect("skipping an access must fail");
    assert!(matches!(e, WeightError::OrderMismatch(_)), "{e}");
    assert!(src.end_pass().is_err());
    // The next pass starts clean and computes the right thing.
    assert_identical(&src, &model, "after an aborted pass");
}

fn with_faults(spec: &str, timeout_ms: u64) -> StreamOptions {
    StreamOptions {
        faults: fault::parse_list(spec).unwrap(),
        wait_timeout: Duration::from_millis(timeout_ms),
        ..opts(40)
    }
}

/// A file offset in the last block of the first read request of the first streamed chunk of the
/// 40 MiB plan (so a retry of the request's tail still covers it).
fn first_chunk_offset() -> u64 {
    let (_, src) = open_stream(&model_path(), opts(40)).unwrap();
    let p = src.plan().unwrap();
    let c = &p.chunks[0];
    c.aligned_offset + c.aligned_size.min(p.request_bytes) - 4096
}

#[test]
fn eio_and_short_reads_are_retried_once() {
    let off = first_chunk_offset();
    for spec in [format!("eio@{off}"), format!("short@{off}")] {
        let (model, src) = open_stream(&model_path(), with_faults(&spec, 10_000)).unwrap();
        assert_identical(&src, &model, &format!("fault {spec} once"));
    }
}

#[test]
fn eio_and_short_reads_twice_fail_with_the_offset() {
    let off = first_chunk_offset();
    for (spec, needle) in [
        (
            format!("eio@{off}*2"),
            "failed after one retry: Input/output error",
        ),
        (format!("short@{off}*2"), "short read at offset"),
    ] {
        let (model, src) = open_stream(&model_path(), with_faults(&spec, 10_000)).unwrap();
        let e = run(&model, &src)
            .err()
            .unwrap_or_else(|| panic!("{spec} must fail"));
        let m = e.to_string();
        assert!(matches!(e, WeightError::Storage(_)), "{spec}: {m}");
        assert!(m.contains(needle) && m.contains("offset"), "{spec}: {m}");
        // No hang afterwards: the next pass (faults used up) recovers.
        assert_identical(&src, &model, &format!("after {spec}"));
    }
}

#[test]
fn slow_reads_time_out_instead_of_hanging() {
    let off = first_chunk_offset();
    let (model, src) = open_stream(
        &model_path(),
        with_faults(&format!("delay=1500@{off}"), 200),
    )
    .unwrap();
    let t = std::time::Instant::now();
    let e = run(&model, &src).err().expect("must time out");
    assert!(
        e.to_string()
            .contains("timed out after 200 ms waiting for chunk"),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    // A slow read within the timeout is just a stall.
    let (model, src) = open_stream(
        &model_path(),
        with_faults(&format!("delay=150@{off}"), 5000),
    )
    .unwrap();
    assert_identical(&src, &model, "slow read within the timeout");
    assert!(src.stream_stats().prefill.stall_ns >= 100_000_000);
}

#[test]
fn plan_roundtrips_and_is_refused_for_another_model_budget_or_file() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("model.gguf");
    std::fs::copy(model_path(), &copy).unwrap();
    let (model, src) = open_stream(&copy, opts(48)).unwrap();
    let layout = Layout::new(&model);
    let g = model.gguf.clone();
    let mut plan = src.plan().unwrap().clone();
    drop(src);
    let file = flashslim::weights::stream::file::ModelFile::open(&copy, false).unwrap();
    plan.model.data_fingerprint = flashslim::plan::data_fingerprint(&file, g.data_offset).unwrap();
    let fig = plan.check(&layout, Some(48 * MIB)).unwrap();
    let text = json::to_json(&plan, &g, &fig);
    let back = json::parse(text.as_bytes(), &g).unwrap();
    assert_eq!(back, plan, "JSON round trip");
    let pfile = dir.path().join("plan.json");
    std::fs::write(&pfile, &text).unwrap();
    let with_plan = |_: &Path, budget: Option<u64>| StreamOptions {
        budget,
        plan: PlanSource::File(pfile.clone()),
        ..Default::default()
    };
    // Same model, same budget (or none given): accepted and identical.
    let (m2, s2) = open_stream(&copy, with_plan(&copy, Some(48 * MIB))).unwrap();
    assert_identical(&s2, &m2, "from a plan file");
    drop(s2);
    assert!(open_stream(&copy, with_plan(&copy, None)).is_ok());
    // Another budget.
    let e = open_stream(&copy, with_plan(&copy, Some(40 * MIB)))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("made for a budget of 48.0 MiB but --budget is 40.0 MiB"),
        "{e}"
    );
    // Another model.
    let q40 = model_path().with_file_name("SmolLM2-135M-Instruct.Q4_0.gguf");
    if q40.exists() {
        let e = open_stream(&q40, with_plan(&q40, None))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("made for another model file"), "{e}");
    }
    // The file's weights changed since planning (last block is always sampled).
    let mut bytes = std::fs::read(&copy).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 0x55;
    std::fs::write(&copy, &bytes).unwrap();
    let e = open_stream(&copy, with_plan(&copy, None))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("changed since the plan was made"), "{e}");
}

#[test]
fn file_changed_while_streaming_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("model.gguf");
    std::fs::copy(model_path(), &copy).unwrap();
    let (_model, src) = open_stream(&copy, opts(48)).unwrap();
    src.begin_pass(Phase::Prefill, 1).unwrap();
    src.end_pass().err(); // abandon
    let f = std::fs::OpenOptions::new()
        .append(true)
        .open(&copy)
        .unwrap();
    f.set_len(std::fs::metadata(&copy).unwrap().len() - 4096)
        .unwrap();
    let e = src
        .begin_pass(Phase::Decode, 1)
        .err()
        .expect("truncated file");
    assert!(matches!(e, WeightError::FileChanged(_)), "{e}");
}

#[test]
fn buffered_fallback_where_o_direct_is_refused() {
    // ramfs refuses O_DIRECT (tmpfs accepts it on recent kernels). Needs root to mount.
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path();
    let ok = std::process::Command::new("mount")
        .args(["-t", "ramfs", "flashslim-test", mnt.to_str().unwrap()])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIP buffered_fallback: cannot mount ramfs here (not root?)");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _u = Unmount(mnt);
    let copy = mnt.join("model.gguf");
    std::fs::copy(model_path(), &copy).unwrap();
    let (model, src) = open_stream(&copy, opts(40)).unwrap();
    assert!(!src.stream_stats().direct_io, "{}", src.summary());
    assert!(
        src.summary()
            .contains("buffered + POSIX_FADV_DONTNEED (O_DIRECT"),
        "{}",
        src.summary()
    );
    assert_identical(&src, &model, "buffered reads on ramfs");
}

#[test]
fn planner_chooses_head_resident_when_it_fits_and_streams_it_otherwise() {
    let path = model_path();
    let g = Arc::new(Gguf::open(&path).unwrap());
    let src = RamSource::open(&path, g.clone()).unwrap();
    let model = Model::load(g.clone(), &src).unwrap();
    let layout = Layout::new(&model);
    let (min, why) = optimize::min_working_set(&layout);
    assert!(min > 28 * MIB && min < 30 * MIB, "{min} {why}");
    let pm = flashslim::plan::PlanModel {
        identity: g.identity.clone(),
        data_fingerprint: String::new(),
    };
    let mk = |b: u64| {
        optimize::make_plan(
            &layout,
            pm.clone(),
            b,
            &Default::default(),
            &[],
            flashslim::plan::Method::Heuristic,
        )
        .unwrap()
    };
    let p48 = mk(48 * MIB);
    assert!(
        p48.resident.contains(&model.output),
        "48 MiB keeps the tied head resident"
    );
    let p30 = mk(30 * MIB);
    assert!(
        !p30.resident.contains(&model.output),
        "30 MiB cannot keep the head and stream"
    );
    assert!(
        p30.chunks.iter().any(|c| c.tensors.contains(&model.output)),
        "the tied head streams like any matrix"
    );
    let p200 = mk(200 * MIB);
    assert!(p200.chunks.is_empty(), "everything fits: nothing streams");
    for (b, p) in [(48, &p48), (30, &p30), (200, &p200)] {
        let f = p.check(&layout, Some(b * MIB)).unwrap();
        assert!(f.small_bytes + f.resident_bytes + f.buffers_bytes <= b * MIB);
    }
    // More budget never streams more.
    let mut last = u64::MAX;
    for b in [30, 36, 44, 52, 64, 80, 96] {
        let p = mk(b * MIB);
        let f = p.check(&layout, Some(b * MIB)).unwrap();
        assert!(
            f.streamed_bytes_per_pass <= last,
            "{b} MiB streams more than a smaller budget"
        );
        last = f.streamed_bytes_per_pass;
    }
}
