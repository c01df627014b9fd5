// The parallel-region machinery: a session borrows `threads − 1` helpers from the rayon pool that
// spin on a shared job slot, so each matmul or attention step costs two atomic hand-offs instead of
// a rayon fork/join (a decode token runs ~150 regions). The calling thread is worker 0.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering::*};
use std::time::{Duration, Instant};

thread_local! {
    /// The team whose session this thread owns (only the owner may publish jobs).
    static OWNED: Cell<*const Team> = const { Cell::new(std::ptr::null()) };
}

/// A job: `n_chunks` pieces handed out one at a time; `f(chunk, worker)`.
struct Job<'f> {
    seq: u64,
    n_chunks: usize,
    next: AtomicUsize,
    done: AtomicUsize,
    f: &'f (dyn Fn(usize, usize) + Sync),
}

/// Shared state between the session owner and its helpers.
pub struct Team {
    /// The job being run, or null.
    job: AtomicPtr<Job<'static>>,
    /// Sequence number of the last published job (what helpers poll).
    published: AtomicU64,
    /// Helpers currently holding a reference to `job`.
    users: AtomicUsize,
    quit: AtomicBool,
    /// A session is open (regions use the helpers; otherwise the owner runs alone).
    active: AtomicBool,
    threads: usize,
}

/// How long an idle helper spins before it starts yielding its core.
const SPIN: Duration = Duration::from_micros(300);

impl Team {
    pub fn new(threads: usize) -> Team {
        Team {
            job: AtomicPtr::new(std::ptr::null_mut()),
            published: AtomicU64::new(0),
            users: AtomicUsize::new(0),
            quit: AtomicBool::new(false),
            active: AtomicBool::new(false),
            threads: threads.max(1),
        }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Run `body` with the helpers spinning in `pool`. A nested call, or a call from another
    /// thread while a session is open, just runs `body` (its regions then run on its thread).
    pub fn session<R>(&self, pool: &rayon::ThreadPool, body: impl FnOnce() -> R) -> R {
        if self.threads == 1 || self.owned_here() {
            return body();
        }
        if self
            .active
            .compare_exchange(false, true, SeqCst, SeqCst)
            .is_err()
        {
            return body();
        }
        struct Close<'t>(&'t Team);
        impl Drop for Close<'_> {
            fn drop(&mut self) {
                OWNED.with(|o| o.set(std::ptr::null()));
                self.0.quit.store(true, SeqCst);
                self.0.active.store(false, SeqCst);
            }
        }
        self.quit.store(false, SeqCst);
        OWNED.with(|o| o.set(self as *const Team));
        pool.in_place_scope(|s| {
            let close = Close(self);
            for w in 1..self.threads {
                s.spawn(move |_| self.helper(w));
            }
            let r = body();
            drop(close);
            r
        })
    }

    /// Run `f(chunk, worker)` for every chunk in `0..n_chunks`, in parallel when a session is
    /// open. Returns when all chunks are done.
    pub fn run(&self, n_chunks: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        if n_chunks == 0 {
            return;
        }
        if n_chunks == 1 || !self.owned_here() {
            for c in 0..n_chunks {
                f(c, 0);
            }
            return;
        }
        let seq = self.published.load(Relaxed) + 1;
        let job = Job {
            seq,
            n_chunks,
            next: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            f,
        };
        // SAFETY: the pointer is only dereferenced by helpers registered in `users`, and this
        // function clears it and waits for `users == 0` before `job` goes out of scope; the
        // lifetime is erased only for storage in the slot.
        let ptr = &job as *const Job<'_> as *mut Job<'static>;
        self.job.store(ptr, SeqCst);
        self.published.store(seq, SeqCst);
        work(&job, 0);
        let mut spins = 0u32;
        while job.done.load(Acquire) < n_chunks {
            backoff(&mut spins);
        }
        self.job.store(std::ptr::null_mut(), SeqCst);
        while self.users.load(SeqCst) != 0 {
            std::hint::spin_loop();
        }
    }

    fn owned_here(&self) -> bool {
        OWNED.with(|o| std::ptr::eq(o.get(), self))
    }

    fn helper(&self, worker: usize) {
        let mut seen = self.published.load(SeqCst);
        let mut idle_since = Instant::now();
        let mut polls = 0u32;
        loop {
            let p = self.published.load(Acquire);
            if p != seen {
                self.users.fetch_add(1, SeqCst);
                let j = self.job.load(SeqCst);
                if !j.is_null() {
                    // SAFETY: registered in `users` before loading a non-null pointer, so the
                    // owner of the job is still waiting in `run` (see there).
                    let job = unsafe { &*j };
                    if job.seq > seen {
                        seen = job.seq;
                        work(job, worker);
                    }
                } else {
                    seen = p;
                }
                self.users.fetch_sub(1, SeqCst);
                idle_since = Instant::now();
                polls = 0;
                continue;
            }
            if self.quit.load(Acquire) {
                return;
            }
            polls += 1;
            if polls < 256 || idle_since.elapsed() < SPIN {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

fn work(job: &Job<'_>, worker: usize) {
    loop {
        let c = job.next.fetch_add(1, Relaxed);
        if c >= job.n_chunks {
            return;
        }
        (job.f)(c, worker);
        job.done.fetch_add(1, Release);
    }
}

#[inline]
fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins < 1 << 16 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}
