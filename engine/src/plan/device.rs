// Device measurement for the planner and the benchmark's physical bound: O_DIRECT read bandwidth
// of the model file itself (not a freshly made dummy file) versus request size and queue depth,
// through io_uring, or pread threads where io_uring is refused.

use super::SweepPoint;
use crate::probes::monotonic_ns;
use crate::weights::stream::file::ModelFile;
use crate::weights::stream::pool::{AlignedBuf, ALIGN};
use crate::weights::WeightError;
use io_uring::{opcode, types, IoUring};

/// Request sizes and queue depths `flashslim plan` sweeps.
pub const SWEEP_REQUESTS: [u64; 5] = [128 << 10, 256 << 10, 512 << 10, 1 << 20, 2 << 20];
pub const SWEEP_DEPTHS: [u32; 4] = [1, 2, 4, 8];

fn storage(what: String, e: std::io::Error) -> WeightError {
    WeightError::Storage(format!("{what}: {e}"))
}

/// Read `total` bytes of the file's data region (from `data_offset`, starting `start` bytes in
/// and wrapping) in `request`-byte reads with `qd` in flight; bytes per second.
pub fn measure(
    file: &ModelFile,
    data_offset: u64,
    request: u64,
    qd: u32,
    total: u64,
    start: u64,
) -> Result<(f64, &'static str), WeightError> {
    let lo = data_offset / ALIGN * ALIGN;
    let hi = file.len / ALIGN * ALIGN;
    if hi <= lo + request {
        return Err(WeightError::Corrupt(format!(
            "{} is too small to measure {request}-byte reads",
            file.path.display()
        )));
    }
    let span = (hi - lo - request) / ALIGN * ALIGN;
    let n = total.div_ceil(request);
    let offset = |i: u64| lo + (start + i * request) % span / ALIGN * ALIGN;
    match measure_uring(file, request, qd, n, &offset) {
        Ok(bw) => Ok((bw, "io_uring")),
        Err(_) => Ok((
            measure_pread(file, request, qd, n, &offset)?,
            "pread threads",
        )),
    }
}

fn measure_uring(
    file: &ModelFile,
    request: u64,
    qd: u32,
    n: u64,
    offset: &dyn Fn(u64) -> u64,
) -> Result<f64, WeightError> {
    let mut ring = IoUring::new(qd.max(1).next_power_of_two())
        .map_err(|e| storage("io_uring setup".into(), e))?;
    let mut bufs: Vec<AlignedBuf> = (0..qd)
        .map(|_| AlignedBuf::new(request as usize))
        .collect::<Result<_, _>>()?;
    let fd = types::Fd(file.raw_fd());
    let (mut issued, mut done, mut bytes) = (0u64, 0u64, 0u64);
    let t0 = monotonic_ns();
    let mut free: Vec<usize> = (0..qd as usize).collect();
    while done < n {
        while issued < n {
            let Some(b) = free.pop() else { break };
            let e = opcode::Read::new(fd, bufs[b].as_mut_slice().as_mut_ptr(), request as u32)
                .offset(offset(issued))
                .build()
                .user_data(b as u64);
            // SAFETY: buffer `b` is not in any other in-flight read (taken from `free`) and
            // outlives the ring's use of it: we wait for every completion before returning.
            unsafe { ring.submission().push(&e) }
                .map_err(|_| WeightError::Storage("io_uring queue full".into()))?;
            issued += 1;
        }
        if let Err(e) = ring.submit_and_wait(1) {
            if e.raw_os_error() != Some(libc::EINTR) {
                // Drain what is in flight before the buffers go away.
                while done + (free.len() as u64) < issued {
                    let _ = ring.submit_and_wait(1);
                    done += ring.completion().count() as u64;
                }
                return Err(storage("io_uring read".into(), e));
            }
        }
        let cqes: Vec<(u64, i32)> = ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        for (ud, res) in cqes {
            if res < 0 {
                let e = std::io::Error::from_raw_os_error(-res);
                // Drain the rest before returning.
                done += 1;
                while done < issued {
                    let _ = ring.submit_and_wait(1);
                    done += ring.completion().count() as u64;
                }
                return Err(storage(format!("reading {}", file.path.display()), e));
            }
            bytes += res as u64;
            free.push(ud as usize);
            done += 1;
        }
    }
    let dt = (monotonic_ns() - t0) as f64 / 1e9;
    drop(ring);
    drop(bufs);
    Ok(bytes as f64 / dt)
}

fn measure_pread(
    file: &ModelFile,
    request: u64,
    qd: u32,
    n: u64,
    offset: &(dyn Fn(u64) -> u64 + Sync),
) -> Result<f64, WeightError> {
    let next = std::sync::atomic::AtomicU64::new(0);
    let t0 = monotonic_ns();
    let bytes: Result<u64, WeightError> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..qd.max(1))
            .map(|_| {
                s.spawn(|| -> Result<u64, WeightError> {
                    let mut b = AlignedBuf::new(request as usize)?;
                    let mut got = 0;
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= n {
                            return Ok(got);
                        }
                        got += file.read_aligned(offset(i), b.as_mut_slice())?;
                    }
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("measurement thread"))
            .sum()
    });
    let dt = (monotonic_ns() - t0) as f64 / 1e9;
    Ok(bytes? as f64 / dt)
}

/// Measure every (request size, queue depth) pair, `per_point` bytes each, starting each point
/// at a different place in the file.
pub fn sweep(
    file: &ModelFile,
    data_offset: u64,
    requests: &[u64],
    depths: &[u32],
    per_point: u64,
) -> Result<(Vec<SweepPoint>, &'static str), WeightError> {
    let mut out = Vec::new();
    let mut backend = "io_uring";
    let mut start = 0u64;
    for &r in requests {
        for &q in depths {
            let (bw, b) = measure(file, data_offset, r, q, per_point, start)?;
            backend = b;
            start += per_point + 7 * (1 << 20);
            out.push(SweepPoint {
                request_bytes: r,
                queue_depth: q,
                bytes_per_s: bw,
            });
        }
    }
    Ok((out, backend))
}

/// The cheapest point (fewest bytes in flight) within 5% of the best bandwidth.
pub fn choose(sweep: &[SweepPoint]) -> Option<&SweepPoint> {
    let best = sweep.iter().map(|s| s.bytes_per_s).fold(0.0, f64::max);
    sweep
        .iter()
        .filter(|s| s.bytes_per_s >= 0.95 * best)
        .min_by_key(|s| (s.request_bytes * s.queue_depth as u64, s.request_bytes))
}
