// Developer check: greedy-decode from token ids given on the command line (no tokenizer needed).
// Usage: greedy_ids MODEL N_GEN TOKEN_IDS...   (threads: GREEDY_THREADS, default 2; kernel path:
// FLASHSLIM_ISA; GREEDY_BAN=0,2,4 never picks those ids, like llama.cpp's --ignore-eos does with
// end-of-generation tokens). Prints top-3 logits per step and the elapsed time on stderr, the ids
// on stdout.
use flashslim::gguf::Gguf;
use flashslim::kernels::Kernels;
use flashslim::model::{forward, KvCache, LogitsMode, Model, NoObserver, RunState};
use flashslim::weights::RamSource;
use std::sync::Arc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = std::path::Path::new(&args[1]);
    let n_gen: usize = args[2].parse().unwrap();
    let ids: Vec<u32> = args[3..].iter().map(|s| s.parse().unwrap()).collect();
    let g = Arc::new(Gguf::open(path).unwrap());
    let src = RamSource::open(path, g.clone()).unwrap();
    let model = Model::load(g, &src).unwrap();
    let threads = std::env::var("GREEDY_THREADS").map_or(2, |t| t.parse().expect("GREEDY_THREADS"));
    let kern = Kernels::new(threads);
    eprintln!("kernels: {} × {} threads", kern.isa(), kern.threads());
    let mut st = RunState::new(&model, 64, false);
    let mut kv = KvCache::new(&model, 256);
    let t0 = std::time::Instant::now();
    let mut logits = forward(
        &model,
        &src,
        &kern,
        &mut st,
        &mut kv,
        &ids,
        0,
        LogitsMode::Last,
        &mut NoObserver,
    )
    .unwrap()
    .to_vec();
    let ban: Vec<usize> = std::env::var("GREEDY_BAN").map_or(vec![], |b| {
        b.split(',')
            .map(|t| t.trim().parse().expect("GREEDY_BAN: token ids"))
            .collect()
    });
    let mut out = vec![];
    for pos in ids.len()..ids.len() + n_gen {
        for &b in &ban {
            logits[b] = f32::NEG_INFINITY;
        }
        let (best, _) =
            logits
                .iter()
                .enumerate()
                .fold((0, f32::MIN), |a, (i, &v)| if v > a.1 { (i, v) } else { a });
        let mut sorted: Vec<(usize, f32)> = logits.iter().copied().enumerate().collect();
        sorted.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap());
        eprintln!("top: {:?}", &sorted[..3]);
        out.push(best as u32);
        logits = forward(
            &model,
            &src,
            &kern,
            &mut st,
            &mut kv,
            &[best as u32],
            pos,
            LogitsMode::Last,
            &mut NoObserver,
        )
        .unwrap()
        .to_vec();
    }
    eprintln!("{:?}", t0.elapsed());
    println!("{:?}", out);
}
