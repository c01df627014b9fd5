// How sub-reads reach the kernel: io_uring (reads pushed by whoever holds the core lock, a reaper
// thread blocked on the completion queue) or, when io_uring is unavailable or refused, a pool of
// pread threads. Both report completions the moment they happen, through `Shared::complete`.

use super::Shared;
use crate::weights::WeightError;
use io_uring::{opcode, types, IoUring, Probe};
use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// One read handed to a backend: `len` bytes at file `offset` into `dst`.
#[derive(Clone, Copy, Debug)]
pub struct SubRead {
    pub id: u32,
    pub offset: u64,
    pub len: u32,
    pub dst: *mut u8,
}

// SAFETY: `dst` points into the pool arena, which outlives every backend thread (the source joins
// them before freeing the arena), and the leased bytes are written only by this read.
unsafe impl Send for SubRead {}

/// Which backend to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    /// io_uring, falling back to pread threads when it is unavailable.
    Auto,
    /// io_uring or an error.
    Uring,
    /// pread threads.
    Pread,
}

pub trait Backend: Send {
    fn name(&self) -> &'static str;
    /// Hand `reads` to the kernel. Called with the core lock held.
    fn submit(&mut self, reads: &[SubRead]) -> Result<(), WeightError>;
    /// Start the completion thread(s).
    fn start(&mut self, shared: Arc<Shared>);
    /// Stop and join the threads. Every submitted read must have completed.
    fn shutdown(&mut self);
}

/// Ring entries: more than the most sub-reads ever in flight (queue depth <= 256) plus the stop
/// NOP.
const RING_ENTRIES: u32 = 512;
/// user_data of the NOP that stops the reaper.
const STOP: u64 = u64::MAX;
/// IORING_ENTER_GETEVENTS.
const ENTER_GETEVENTS: u32 = 1;

pub struct Uring {
    ring: Arc<IoUring>,
    fd: i32,
    /// The pool arena is registered as fixed buffer 0.
    fixed: Option<(*mut u8, usize)>,
    reaper: Option<JoinHandle<()>>,
}

// SAFETY: the raw arena pointer is only used to compute addresses for READ_FIXED; the ring itself
// is Send + Sync.
unsafe impl Send for Uring {}

impl Uring {
    /// Set up a ring and check it can read. Errors are what the kernel said (ENOSYS without
    /// io_uring, EPERM under seccomp or `kernel.io_uring_disabled`, EINVAL on old kernels).
    pub fn new(fd: i32, arena: (*mut u8, usize)) -> io::Result<Uring> {
        let ring = IoUring::new(RING_ENTRIES)?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        if !probe.is_supported(opcode::Read::CODE) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring has no READ opcode (kernel older than 5.6)",
            ));
        }
        let iov = libc::iovec {
            iov_base: arena.0.cast(),
            iov_len: arena.1,
        };
        // SAFETY: the arena stays allocated, unmoved, until after this ring is dropped (the
        // source drops the backend before the pool).
        let fixed = (probe.is_supported(opcode::ReadFixed::CODE)
            && unsafe { ring.submitter().register_buffers(&[iov]) }.is_ok())
        .then_some(arena);
        Ok(Uring {
            ring: Arc::new(ring),
            fd,
            fixed,
            reaper: None,
        })
    }
}

impl Backend for Uring {
    fn name(&self) -> &'static str {
        if self.fixed.is_some() {
            "io_uring (fixed buffers)"
        } else {
            "io_uring"
        }
    }

    fn submit(&mut self, reads: &[SubRead]) -> Result<(), WeightError> {
        {
            // SAFETY: callers hold the core lock, so this is the only SubmissionQueue alive.
            let mut sq = unsafe { self.ring.submission_shared() };
            for r in reads {
                let e = match self.fixed {
                    Some(_) => opcode::ReadFixed::new(types::Fd(self.fd), r.dst, r.len, 0)
                        .offset(r.offset)
                        .build(),
                    None => opcode::Read::new(types::Fd(self.fd), r.dst, r.len)
                        .offset(r.offset)
                        .build(),
                }
                .user_data(r.id as u64);
                // SAFETY: `dst..dst+len` lies in a pool lease that its chunk holds until this
                // read's completion is processed, and inside the registered arena for READ_FIXED;
                // the fd stays open until the backend is shut down.
                unsafe { sq.push(&e) }.map_err(|_| {
                    WeightError::Storage("io_uring submission queue is full".into())
                })?;
            }
        }
        loop {
            match self.ring.submit() {
                Ok(_) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => std::thread::yield_now(),
                Err(e) => return Err(WeightError::Storage(format!("io_uring submit failed: {e}"))),
            }
        }
    }

    fn start(&mut self, shared: Arc<Shared>) {
        let ring = self.ring.clone();
        self.reaper = Some(
            std::thread::Builder::new()
                .name("flashslim-io".into())
                .spawn(move || reap(ring, shared))
                .expect("spawning the io_uring reaper thread"),
        );
    }

    fn shutdown(&mut self) {
        if let Some(h) = self.reaper.take() {
            let nop = opcode::Nop::new().build().user_data(STOP);
            // SAFETY: the core lock is not needed: every read has completed, so nothing else
            // pushes entries now.
            let pushed = unsafe { self.ring.submission_shared().push(&nop) }.is_ok();
            if pushed && self.ring.submit().is_ok() {
                let _ = h.join();
            }
        }
    }
}

/// The reaper: wait for completions, hand each batch to the core with its arrival time.
fn reap(ring: Arc<IoUring>, shared: Arc<Shared>) {
    let mut done: Vec<(u64, i32)> = Vec::with_capacity(64);
    loop {
        {
            // SAFETY: this thread is the only one that reads the completion queue.
            let cq = unsafe { ring.completion_shared() };
            done.extend(cq.map(|c| (c.user_data(), c.result())));
        }
        if done.is_empty() {
            // SAFETY: submits nothing and waits for one completion; no argument pointer.
            let r = unsafe {
                ring.submitter()
                    .enter::<libc::sigset_t>(0, 1, ENTER_GETEVENTS, None)
            };
            if let Err(e) = r {
                if e.raw_os_error() != Some(libc::EINTR) {
                    shared.fail(format!("io_uring wait failed: {e}"));
                    return;
                }
            }
            continue;
        }
        let stop = done.iter().any(|&(u, _)| u == STOP);
        done.retain(|&(u, _)| u != STOP);
        shared.complete(&done);
        done.clear();
        if stop {
            return;
        }
    }
}

struct Jobs {
    queue: VecDeque<SubRead>,
    stop: bool,
}

/// `threads` workers doing blocking preads.
pub struct Pread {
    fd: i32,
    threads: usize,
    jobs: Arc<(Mutex<Jobs>, Condvar)>,
    workers: Vec<JoinHandle<()>>,
}

impl Pread {
    pub fn new(fd: i32, threads: usize) -> Pread {
        Pread {
            fd,
            threads: threads.max(1),
            jobs: Arc::new((
                Mutex::new(Jobs {
                    queue: VecDeque::new(),
                    stop: false,
                }),
                Condvar::new(),
            )),
            workers: Vec::new(),
        }
    }
}

impl Backend for Pread {
    fn name(&self) -> &'static str {
        "pread threads"
    }

    fn submit(&mut self, reads: &[SubRead]) -> Result<(), WeightError> {
        let (m, cv) = &*self.jobs;
        m.lock()
            .unwrap_or_else(|e| e.into_inner())
            .queue
            .extend(reads.iter().copied());
        cv.notify_all();
        Ok(())
    }

    fn start(&mut self, shared: Arc<Shared>) {
        for i in 0..self.threads {
            let (jobs, shared, fd) = (self.jobs.clone(), shared.clone(), self.fd);
            self.workers.push(
                std::thread::Builder::new()
                    .name(format!("flashslim-pread{i}"))
                    .spawn(move || pread_worker(fd, &jobs, &shared))
                    .expect("spawning a pread worker"),
            );
        }
    }

    fn shutdown(&mut self) {
        let (m, cv) = &*self.jobs;
        m.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        cv.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn pread_worker(fd: i32, jobs: &(Mutex<Jobs>, Condvar), shared: &Shared) {
    let (m, cv) = jobs;
    loop {
        let job = {
            let mut j = m.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(r) = j.queue.pop_front() {
                    break r;
                }
                if j.stop {
                    return;
                }
                j = cv.wait(j).unwrap_or_else(|e| e.into_inner());
            }
        };
        let res = loop {
            // SAFETY: `dst..dst+len` is a leased pool range reserved for this read (see SubRead).
            let n = unsafe {
                libc::pread(
                    fd,
                    job.dst.cast(),
                    job.len as usize,
                    job.offset as libc::off_t,
                )
            };
            if n >= 0 {
                break n as i32;
            }
            let e = io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO);
            if e != libc::EINTR {
                break -e;
            }
        };
        shared.complete(&[(job.id as u64, res)]);
    }
}
