// Tensor-trace writer: each recording thread fills its own buffer (a memcpy per record, no lock,
// no syscall) and hands full buffers over a channel to one flusher thread, which writes them in
// order into a file it preallocates ahead of the data. Compute never waits on the disk.

use super::{header_tail, TraceError, TraceHeader, TraceRecord, FLAG_COMPLETE, RECORD_SIZE};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Records per thread buffer (64 KiB).
const BUF_RECORDS: usize = 1024;
/// Preallocation step ahead of the data.
const PREALLOC_STEP: u64 = 16 << 20;
/// Most bytes queued for the flusher before new records are dropped (and counted) instead.
const MAX_QUEUED: u64 = 64 << 20;

struct Shared {
    /// Empty buffers handed back by the flusher, reused by recording threads.
    free: Mutex<Vec<Vec<u8>>>,
    queued_bytes: AtomicU64,
    dropped: AtomicU64,
}

/// Counters of a finished trace.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct TraceStats {
    pub records: u64,
    pub dropped: u64,
    pub bytes: u64,
}

/// The trace file; hands out [`TraceThread`] buffers and finishes the file.
pub struct TraceWriter {
    tx: Option<Sender<Vec<u8>>>,
    shared: Arc<Shared>,
    flusher: Option<JoinHandle<Result<u64, std::io::Error>>>,
    file: Arc<File>,
    header_size: u64,
}

/// One thread's record buffer. Dropping it flushes what it holds.
pub struct TraceThread {
    buf: Vec<u8>,
    tx: Sender<Vec<u8>>,
    shared: Arc<Shared>,
}

fn preallocate(f: &File, len: u64) -> std::io::Result<()> {
    // SAFETY: fd is a valid open file for the lifetime of `f`; fallocate only reads its arguments.
    let r = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, len as libc::off_t) };
    if r == 0 {
        return Ok(());
    }
    // Filesystems without fallocate: extend with a sparse tail instead (still zero-filled).
    if f.metadata()?.len() < len {
        f.set_len(len)?;
    }
    Ok(())
}

fn flusher(
    file: Arc<File>,
    rx: Receiver<Vec<u8>>,
    shared: Arc<Shared>,
    start: u64,
) -> Result<u64, std::io::Error> {
    let mut pos = start;
    let mut allocated = file.metadata()?.len();
    let mut first_err: Option<std::io::Error> = None;
    for mut buf in rx {
        let len = buf.len() as u64;
        if first_err.is_none() {
            if pos + len > allocated {
                allocated = (pos + len).div_ceil(PREALLOC_STEP) * PREALLOC_STEP + PREALLOC_STEP;
                if let Err(e) = preallocate(&file, allocated) {
                    first_err = Some(e);
                }
            }
            if first_err.is_none() {
                match file.write_all_at(&buf, pos) {
                    Ok(()) => pos += len,
                    Err(e) => first_err = Some(e),
                }
            }
        }
        if first_err.is_some() {
            shared
                .dropped
                .fetch_add(len / RECORD_SIZE as u64, Ordering::Relaxed);
        }
        shared.queued_bytes.fetch_sub(len, Ordering::Relaxed);
        buf.clear();
        if let Ok(mut free) = shared.free.lock() {
            if free.len() < 16 {
                free.push(buf);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(pos),
    }
}

impl TraceWriter {
    /// Create `path` (truncating it), write the header and start the flusher thread.
    pub fn create(path: &Path, mut header: TraceHeader) -> Result<TraceWriter, TraceError> {
        header.flags = 0;
        header.record_count = 0;
        header.dropped = 0;
        let bytes = header.encode();
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(path)?;
        preallocate(&file, bytes.len() as u64 + PREALLOC_STEP)?;
        file.write_all_at(&bytes, 0)?;
        let file = Arc::new(file);
        let shared = Arc::new(Shared {
            free: Mutex::new(Vec::new()),
            queued_bytes: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        let (tx, rx) = channel();
        let header_size = bytes.len() as u64;
        let (f2, s2) = (file.clone(), shared.clone());
        let flusher = std::thread::Builder::new()
            .name("flashslim-trace".into())
            .spawn(move || flusher(f2, rx, s2, header_size))?;
        Ok(TraceWriter {
            tx: Some(tx),
            shared,
            flusher: Some(flusher),
            file,
            header_size,
        })
    }

    /// A buffer for the calling thread.
    pub fn thread(&self) -> TraceThread {
        TraceThread {
            buf: Vec::with_capacity(BUF_RECORDS * RECORD_SIZE),
            tx: self.tx.clone().expect("writer not finished"),
            shared: self.shared.clone(),
        }
    }

    /// Wait for every buffer (all [`TraceThread`]s must be dropped), cut the preallocated tail,
    /// mark the header complete and sync.
    pub fn finish(mut self) -> Result<TraceStats, TraceError> {
        drop(self.tx.take());
        let end = self
            .flusher
            .take()
            .expect("finish runs once")
            .join()
            .map_err(|_| TraceError::Format("the trace flusher thread panicked".into()))??;
        let records = (end - self.header_size) / RECORD_SIZE as u64;
        let dropped = self.shared.dropped.load(Ordering::Relaxed);
        self.file.set_len(end)?;
        self.file
            .write_all_at(&header_tail(FLAG_COMPLETE, records, dropped), 20)?;
        self.file.sync_all()?;
        Ok(TraceStats {
            records,
            dropped,
            bytes: end,
        })
    }
}

impl TraceThread {
    /// Append one record (a copy into this thread's buffer; full buffers go to the flusher).
    #[inline]
    pub fn push(&mut self, r: &TraceRecord) {
        self.buf.extend_from_slice(&r.encode());
        if self.buf.len() >= BUF_RECORDS * RECORD_SIZE {
            self.flush();
        }
    }

    /// Hand what is buffered to the flusher now (called at the end of each pass, so a killed run
    /// loses at most the pass in progress).
    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let len = self.buf.len() as u64;
        if self.shared.queued_bytes.load(Ordering::Relaxed) + len > MAX_QUEUED {
            self.shared
                .dropped
                .fetch_add(len / RECORD_SIZE as u64, Ordering::Relaxed);
            self.buf.clear();
            return;
        }
        let next = self
            .shared
            .free
            .lock()
            .ok()
            .and_then(|mut f| f.pop())
            .unwrap_or_else(|| Vec::with_capacity(BUF_RECORDS * RECORD_SIZE));
        let full = std::mem::replace(&mut self.buf, next);
        self.shared.queued_bytes.fetch_add(len, Ordering::Relaxed);
        if self.tx.send(full).is_err() {
            // The flusher is gone (finish ran early): count instead of losing silently.
            self.shared.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            self.shared
                .dropped
                .fetch_add(len / RECORD_SIZE as u64, Ordering::Relaxed);
        }
    }
}

impl Drop for TraceThread {
    fn drop(&mut self) {
        self.flush();
    }
}

impl Drop for TraceWriter {
    fn drop(&mut self) {
        // Not finished (error path): stop the flusher so its thread does not outlive us; the
        // header stays "incomplete", which readers report.
        drop(self.tx.take());
        if let Some(h) = self.flusher.take() {
            let _ = h.join();
        }
    }
}
