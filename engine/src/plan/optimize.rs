// The planner: choose the resident set, chunking, buffer count and size and the prefetch depth
// under a budget, by predicting each candidate with a pipeline model of the device (FIFO reads at
// the measured bandwidth) and compute (per access, from a profile or a rough estimate).

use super::layout::{Chunk, Layout};
use super::{mib, Method, PhasePrediction, Plan, PlanError, PlanModel};
use crate::weights::stream::pool::{ceil_align, ALIGN};
use crate::weights::{Phase, TensorId};
use std::collections::{HashMap, HashSet};

/// What the planner assumes about the storage.
#[derive(Clone, Debug)]
pub struct DeviceModel {
    pub request_bytes: u64,
    pub queue_depth: u32,
    pub bytes_per_s: f64,
}

impl Default for DeviceModel {
    /// The quick heuristic's guess: 512 KiB requests, 4 in flight, 400 MB/s (a cautious figure
    /// for eMMC/UFS and virtual disks; only the ranking of candidates depends on it).
    fn default() -> Self {
        DeviceModel {
            request_bytes: 512 << 10,
            queue_depth: 4,
            bytes_per_s: 400e6,
        }
    }
}

/// Compute time of one pass, per access position (ns), plus the time between passes.
#[derive(Clone, Debug)]
pub struct PhaseCompute {
    pub phase: Phase,
    pub tokens: u32,
    /// Indexed like `Layout::order`: time from the weight's get to the next weight's get.
    pub per_access_ns: Vec<f64>,
    /// After the last access until the next pass starts (sampling, host work), ns.
    pub pass_gap_ns: f64,
}

impl PhaseCompute {
    /// Rough guess without a profile: 0.1 ns per weight byte per token (a 2-core SIMD kernel
    /// class speed), 1 ms between passes.
    pub fn estimate(layout: &Layout, phase: Phase, tokens: u32) -> PhaseCompute {
        PhaseCompute {
            phase,
            tokens,
            per_access_ns: layout
                .order
                .iter()
                .map(|&id| layout.tensor(id).size as f64 * 0.1 * tokens as f64)
                .collect(),
            pass_gap_ns: 1e6,
        }
    }
}

/// The smallest budget any plan fits in, and what forces it.
pub fn min_working_set(layout: &Layout) -> (u64, String) {
    let mut best = (u64::MAX, String::new());
    for head_resident in [true, false] {
        let res: HashSet<TensorId> = if head_resident {
            [layout.output].into()
        } else {
            HashSet::new()
        };
        let chunks = layout.chunks(&res, 0);
        let largest = chunks.iter().map(|c| c.aligned_size).max().unwrap_or(ALIGN);
        let resident = layout.aligned_extent_bytes(res.iter().copied());
        let total = layout.small_bytes + resident + largest;
        if total < best.0 {
            let why = if head_resident {
                format!(
                    "`{}` resident ({}) + one buffer for the largest chunk ({}) + small tensors ({})",
                    layout.tensor(layout.output).name,
                    mib(resident),
                    mib(largest),
                    mib(layout.small_bytes)
                )
            } else {
                format!(
                    "one buffer for the largest chunk ({}) + small tensors ({})",
                    mib(largest),
                    mib(layout.small_bytes)
                )
            };
            best = (total, why);
        }
    }
    best
}

/// What the pipeline model predicts for one pass.
#[derive(Clone, Copy, Debug, Default)]
pub struct SimResult {
    pub pass_ns: f64,
    pub io_ns: f64,
    pub compute_ns: f64,
    pub stall_ns: f64,
}

/// Simulate `passes` passes (wrapping prefetch across them) and report the last one; with
/// `passes == 1` it is a cold start (nothing prefetched before the pass).
pub fn simulate(
    layout: &Layout,
    chunks: &[Chunk],
    ring_slots: u32,
    slot_bytes: u64,
    depth: u32,
    dev: &DeviceModel,
    comp: &PhaseCompute,
    passes: usize,
) -> SimResult {
    let c_of: HashMap<TensorId, usize> = chunks
        .iter()
        .enumerate()
        .flat_map(|(ci, c)| c.tensors.iter().map(move |&t| (t, ci)))
        .collect();
    let n_c = chunks.len();
    let slots: Vec<u32> = chunks
        .iter()
        .map(|c| c.aligned_size.div_ceil(slot_bytes).max(1) as u32)
        .collect();
    let dur: Vec<f64> = chunks
        .iter()
        .map(|c| c.aligned_size as f64 / dev.bytes_per_s * 1e9)
        .collect();
    let total = passes * n_c;
    let mut ready = vec![f64::INFINITY; total];
    let (mut next, mut dev_free, mut free) = (0usize, 0f64, ring_slots as i64);
    let mut t = 0f64;
    let mut out = SimResult::default();
    let issue = |t: f64,
                 cur: usize,
                 next: &mut usize,
                 free: &mut i64,
                 dev_free: &mut f64,
                 ready: &mut Vec<f64>| {
        while *next < total && *next <= cur + depth as usize {
            let s = slots[*next % n_c] as i64;
            if *free < s {
                break;
            }
            *free -= s;
            let start = t.max(*dev_free);
            *dev_free = start + dur[*next % n_c];
            ready[*next] = *dev_free;
            *next += 1;
        }
    };
    for pass in 0..passes {
        let t0 = t;
        let mut stall = 0f64;
        let mut comp_ns = 0f64;
        let mut prev: Option<usize> = None;
        for (p, id) in layout.order.iter().enumerate() {
            if let Some(&c) = c_of.get(id) {
                let seq = pass * n_c + c;
                if prev != Some(c) {
                    if let Some(pc) = prev {
                        free += slots[pc] as i64;
                    }
                    issue(t, seq, &mut next, &mut free, &mut dev_free, &mut ready);
                    if ready[seq] > t {
                        stall += ready[seq] - t;
                        t = ready[seq];
                    }
                    prev = Some(c);
                }
            }
            t += comp.per_access_ns[p];
            comp_ns += comp.per_access_ns[p];
        }
        if let Some(pc) = prev {
            free += slots[pc] as i64;
        }
        issue(
            t,
            (pass + 1) * n_c,
            &mut next,
            &mut free,
            &mut dev_free,
            &mut ready,
        );
        t += comp.pass_gap_ns;
        comp_ns += comp.pass_gap_ns;
        out = SimResult {
            pass_ns: t - t0,
            io_ns: dur.iter().sum(),
            compute_ns: comp_ns,
            stall_ns: stall,
        };
    }
    out
}

fn prediction(r: &SimResult, comp: &PhaseCompute) -> PhasePrediction {
    let overlap = (r.io_ns - r.stall_ns).max(0.0);
    PhasePrediction {
        phase: comp.phase,
        tokens: comp.tokens,
        io_ms: r.io_ns / 1e6,
        compute_ms: r.compute_ns / 1e6,
        overlap_ms: overlap / 1e6,
        stall_ms: r.stall_ns / 1e6,
        pass_ms: r.pass_ns / 1e6,
        overlap_pct: if r.io_ns > 0.0 {
            100.0 * overlap / r.io_ns
        } else {
            100.0
        },
    }
}

/// The device as the pipeline sees it with `count` buffers: full bandwidth needs room for
/// `queue_depth` requests in flight besides the chunk being computed; with less room the
/// bandwidth scales down with the share of the queue that can be kept full.
fn effective_device(dev: &DeviceModel, chunks: &[Chunk], count: u32, slot: u64) -> DeviceModel {
    let largest = chunks.iter().map(|c| c.aligned_size).max().unwrap_or(0);
    let room = (count as u64 * slot).saturating_sub(largest) as f64;
    let want = (dev.queue_depth as u64 * dev.request_bytes) as f64;
    let share = (room / want).clamp(0.25, 1.0);
    DeviceModel {
        bytes_per_s: dev.bytes_per_s * share,
        ..dev.clone()
    }
}

/// Fill `avail` bytes with resident matrices: whole layers spread evenly over the depth of the
/// model, then the largest single tensors that still fit.
fn fill_resident(layout: &Layout, base: &HashSet<TensorId>, avail: u64) -> HashSet<TensorId> {
    let mut res = base.clone();
    let aligned = |id: TensorId| {
        let t = layout.tensor(id);
        ceil_align(t.end()) - t.offset / ALIGN * ALIGN
    };
    let layers: Vec<Vec<TensorId>> = (0..layout.n_layers)
        .map(|l| layout.layer_tensors(l))
        .collect();
    let layer_bytes: Vec<u64> = layers
        .iter()
        .map(|ts| layout.aligned_extent_bytes(ts.iter().copied()))
        .collect();
    let mut left = avail;
    let mut m = 0;
    let mut sorted = layer_bytes.clone();
    sorted.sort_unstable();
    for b in &sorted {
        if *b > left {
            break;
        }
        left -= b;
        m += 1;
    }
    let n = layout.n_layers;
    let mut chosen = HashSet::new();
    let mut left = avail;
    for i in 0..m {
        let want = ((2 * i + 1) * n / (2 * m)).min(n - 1);
        // The evenly spaced layer, or the next one that is free and fits.
        let Some(l) = (0..n)
            .map(|k| (want + k) % n)
            .find(|l| !chosen.contains(l) && layer_bytes[*l] <= left)
        else {
            break;
        };
        chosen.insert(l);
        left -= layer_bytes[l];
        res.extend(layers[l].iter().copied());
    }
    // Then whole fetch groups (q,k,v / o / gate,up / down) of the other layers, largest first:
    // keeping part of a group resident would leave its streamed rest with a hole to read over.
    let mut groups: Vec<Vec<TensorId>> = layout
        .groups
        .iter()
        .map(|g| layout.order[g.clone()].to_vec())
        .filter(|g| {
            g.iter().all(|id| !res.contains(id))
                && layout.layer[layout.order.iter().position(|x| *x == g[0]).unwrap_or(0)]
                    .is_some_and(|l| !chosen.contains(&l))
        })
        .collect();
    let bytes = |g: &Vec<TensorId>| g.iter().map(|&id| aligned(id)).sum::<u64>();
    groups.sort_by_key(|g| std::cmp::Reverse(bytes(g)));
    for g in groups {
        if bytes(&g) <= left {
            left -= bytes(&g);
            res.extend(g);
        }
    }
    res
}

/// A plan before it is stamped with the model identity.
struct Candidate {
    resident: HashSet<TensorId>,
    chunks: Vec<Chunk>,
    count: u32,
    slot: u64,
    depth: u32,
    decode: SimResult,
    streamed: u64,
}

/// Choose the plan for `budget`. `compute` has one entry per phase (decode is what is
/// optimised; prefill is predicted); without a profile the rough estimate is used.
pub fn make_plan(
    layout: &Layout,
    model: PlanModel,
    budget: u64,
    dev: &DeviceModel,
    compute: &[PhaseCompute],
    method: Method,
) -> Result<Plan, PlanError> {
    let (min, why) = min_working_set(layout);
    if budget < min {
        return Err(PlanError::Budget(format!(
            "budget {} is below the minimum working set {} ({} bytes) for {}: {why}",
            mib(budget),
            mib(min),
            min,
            layout
                .gguf
                .get("general.name")
                .and_then(|v| v.as_str())
                .unwrap_or("this model")
        )));
    }
    let est_decode;
    let decode = match compute.iter().find(|c| c.phase == Phase::Decode) {
        Some(c) => c,
        None => {
            est_decode = PhaseCompute::estimate(layout, Phase::Decode, 1);
            &est_decode
        }
    };
    let head_bytes = layout.aligned_extent_bytes([layout.output]);
    let mut best: Option<Candidate> = None;
    for head_resident in [true, false] {
        let base: HashSet<TensorId> = if head_resident {
            [layout.output].into()
        } else {
            HashSet::new()
        };
        let fixed = layout.small_bytes + if head_resident { head_bytes } else { 0 };
        if fixed >= budget {
            continue;
        }
        for max_chunk in [0u64, 1 << 20, 5 << 19, 6 << 20, 16 << 20] {
            let chunks0 = layout.chunks(&base, max_chunk);
            let mut slot = chunks0
                .iter()
                .filter(|c| !c.tensors.contains(&layout.output))
                .map(|c| c.aligned_size)
                .max()
                .unwrap_or(head_bytes)
                .max(ALIGN);
            if let Some(h) = chunks0.iter().find(|c| c.tensors.contains(&layout.output)) {
                // Size the slots so the streamed head fills whole slots with little slack.
                let m = (h.aligned_size / slot).max(1);
                slot = ceil_align(h.aligned_size.div_ceil(m)).max(slot);
            }
            let kmin = chunks0
                .iter()
                .map(|c| c.aligned_size.div_ceil(slot) as u32)
                .max()
                .unwrap_or(1);
            for k in kmin..kmin + 16 {
                let ring = k as u64 * slot;
                if fixed + ring > budget {
                    break;
                }
                let mut resident = fill_resident(layout, &base, budget - fixed - ring);
                // Re-chunk around the resident tensors; drop residents until the real figures fit.
                let (chunks, slot, count) = loop {
                    let chunks = layout.chunks(&resident, max_chunk);
                    let s = chunks
                        .iter()
                        .filter(|c| !c.tensors.contains(&layout.output))
                        .map(|c| c.aligned_size)
                        .max()
                        .unwrap_or(slot)
                        .max(slot);
                    let need = chunks
                        .iter()
                        .map(|c| c.aligned_size.div_ceil(s) as u32)
                        .max()
                        .unwrap_or(1);
                    let count = k.max(need);
                    let res_bytes = layout.aligned_extent_bytes(resident.iter().copied());
                    if layout.small_bytes + res_bytes + count as u64 * s <= budget {
                        break (chunks, s, count);
                    }
                    let victim = resident
                        .iter()
                        .copied()
                        .filter(|&t| !base.contains(&t))
                        .min_by_key(|&t| (layout.tensor(t).size, t));
                    match victim {
                        Some(v) => {
                            resident.remove(&v);
                        }
                        None => break (chunks, s, 0),
                    }
                };
                if count == 0 {
                    continue;
                }
                let per_chunk = chunks
                    .iter()
                    .map(|c| c.aligned_size.div_ceil(slot) as u32)
                    .max()
                    .unwrap_or(1);
                let depth = (count / per_chunk).saturating_sub(1).clamp(1, 16);
                let dev_eff = effective_device(dev, &chunks, count, slot);
                let r = simulate(layout, &chunks, count, slot, depth, &dev_eff, decode, 4);
                let streamed: u64 = chunks.iter().map(|c| c.aligned_size).sum();
                let better = match &best {
                    None => true,
                    Some(b) => {
                        r.pass_ns < b.decode.pass_ns * 0.995
                            || (r.pass_ns <= b.decode.pass_ns * 1.005 && streamed < b.streamed)
                    }
                };
                if better {
                    best = Some(Candidate {
                        resident,
                        chunks,
                        count,
                        slot,
                        depth,
                        decode: r,
                        streamed,
                    });
                }
            }
        }
    }
    let b = best.ok_or_else(|| {
        PlanError::Budget(format!(
            "budget {} is below the minimum working set {} ({} bytes): {why}",
            mib(budget),
            mib(min),
            min
        ))
    })?;
    let mut predicted = vec![prediction(&b.decode, decode)];
    predicted.sort_by_key(|p| p.phase.id());
    let dev_eff = effective_device(dev, &b.chunks, b.count, b.slot);
    for c in compute.iter().filter(|c| c.phase == Phase::Prefill) {
        let r = simulate(layout, &b.chunks, b.count, b.slot, b.depth, &dev_eff, c, 1);
        predicted.insert(0, prediction(&r, c));
    }
    predicted.sort_by_key(|p| p.phase.id());
    let mut resident: Vec<TensorId> = b.resident.into_iter().collect();
    let pos: HashMap<TensorId, usize> = layout
        .order
        .iter()
        .enumerate()
        .map(|(p, &id)| (id, p))
        .collect();
    resident.sort_by_key(|id| pos[id]);
    Ok(Plan {
        method,
        model,
        budget_bytes: budget,
        resident,
        chunks: b.chunks,
        buffer_count: b.count,
        buffer_bytes: b.slot,
        prefetch_depth: b.depth,
        request_bytes: dev.request_bytes,
        queue_depth: dev.queue_depth,
        device: None,
        predicted,
        cmt: Vec::new(),
    })
}
