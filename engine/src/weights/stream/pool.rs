// The streaming buffer pool: one O_DIRECT-aligned arena cut into `count` equal slots. A chunk
// leases `n` consecutive slots in ring (FIFO) order; the lease gives them back when dropped. Also
// the small owned aligned buffer used for synchronous reads.

use crate::weights::WeightError;
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

/// Alignment of file offsets, lengths and memory for O_DIRECT reads.
pub const ALIGN: u64 = 4096;

pub fn floor_align(x: u64) -> u64 {
    x / ALIGN * ALIGN
}
pub fn ceil_align(x: u64) -> u64 {
    x.div_ceil(ALIGN) * ALIGN
}

/// An owned, `ALIGN`-aligned, zero-initialised byte buffer.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the buffer is uniquely owned; shared access only reads it.
unsafe impl Send for AlignedBuf {}
// SAFETY: as above (mutation needs &mut self or the pool's lease discipline).
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    pub fn new(len: usize) -> Result<Self, WeightError> {
        let layout = Layout::from_size_align(len.max(1), ALIGN as usize)
            .map_err(|e| WeightError::Budget(format!("cannot allocate {len} bytes: {e}")))?;
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(p).ok_or_else(|| {
            WeightError::Budget(format!("out of memory allocating {len} aligned bytes"))
        })?;
        Ok(AlignedBuf { ptr, len })
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr is a live allocation of len initialised (zeroed) bytes.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above; &mut self makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.len.max(1), ALIGN as usize)
            .expect("same layout as in new");
        // SAFETY: allocated in `new` with this layout and not freed since.
        unsafe { dealloc(self.ptr.as_ptr(), layout) }
    }
}

/// Which slots are leased, in lease order.
struct Ring {
    /// Slot after the newest lease (where the next one starts if it fits).
    head: u32,
    /// (lease id, first slot, slots, returned) oldest first.
    live: VecDeque<(u64, u32, u32, bool)>,
    next_id: u64,
}

/// `count` slots of `slot_bytes` each in one aligned arena.
pub struct Pool {
    arena: AlignedBuf,
    slot_bytes: usize,
    count: u32,
    ring: Mutex<Ring>,
}

impl Pool {
    pub fn new(count: u32, slot_bytes: usize) -> Result<Arc<Pool>, WeightError> {
        if count == 0 || slot_bytes == 0 || slot_bytes as u64 % ALIGN != 0 {
            return Err(WeightError::Budget(format!(
                "buffer pool of {count} x {slot_bytes} bytes is not usable (slots must be non-empty multiples of {ALIGN})"
            )));
        }
        let total = (count as usize).checked_mul(slot_bytes).ok_or_else(|| {
            WeightError::Budget(format!(
                "buffer pool of {count} x {slot_bytes} bytes overflows"
            ))
        })?;
        Ok(Arc::new(Pool {
            arena: AlignedBuf::new(total)?,
            slot_bytes,
            count,
            ring: Mutex::new(Ring {
                head: 0,
                live: VecDeque::new(),
                next_id: 0,
            }),
        }))
    }

    pub fn slot_bytes(&self) -> usize {
        self.slot_bytes
    }
    pub fn count(&self) -> u32 {
        self.count
    }
    pub fn bytes(&self) -> u64 {
        self.arena.len() as u64
    }
    /// Slots needed for `len` bytes.
    pub fn slots_for(&self, len: u64) -> u32 {
        len.div_ceil(self.slot_bytes as u64).max(1) as u32
    }
    /// Base address and length of the arena (for io_uring buffer registration).
    pub fn arena(&self) -> (*mut u8, usize) {
        (self.arena.as_ptr(), self.arena.len())
    }

    /// Lease `n` consecutive slots after the newest lease, or None if they are not free now.
    pub fn try_acquire(self: &Arc<Self>, n: u32) -> Option<PoolBuf> {
        if n == 0 || n > self.count {
            return None;
        }
        let mut r = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let start = match r.live.front() {
            None => 0,
            Some(&(_, tail, _, _)) => {
                let head = r.head;
                if head > tail {
                    if self.count - head >= n {
                        head
                    } else if tail >= n {
                        0
                    } else {
                        return None;
                    }
                } else if head < tail && tail - head >= n {
                    head
                } else {
                    return None;
                }
            }
        };
        let id = r.next_id;
        r.next_id += 1;
        r.live.push_back((id, start, n, false));
        r.head = start + n;
        if r.head == self.count && r.live.front().is_some_and(|f| f.1 > 0) {
            r.head = 0;
        }
        Some(PoolBuf {
            pool: self.clone(),
            id,
            first_slot: start,
            n_slots: n,
        })
    }

    fn give_back(&self, id: u64) {
        let mut r = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = r.live.iter_mut().find(|e| e.0 == id) {
            e.3 = true;
        }
        while r.live.front().is_some_and(|e| e.3) {
            r.live.pop_front();
        }
        if r.live.is_empty() {
            r.head = 0;
        }
    }

    /// Slots currently leased.
    pub fn leased_slots(&self) -> u32 {
        let r = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        r.live.iter().filter(|e| !e.3).map(|e| e.2).sum()
    }
}

/// A lease on consecutive slots of the pool; returns them on drop.
pub struct PoolBuf {
    pool: Arc<Pool>,
    id: u64,
    first_slot: u32,
    n_slots: u32,
}

impl PoolBuf {
    pub fn first_slot(&self) -> u32 {
        self.first_slot
    }
    pub fn len(&self) -> usize {
        self.n_slots as usize * self.pool.slot_bytes
    }
    pub fn is_empty(&self) -> bool {
        self.n_slots == 0
    }
    /// Start of the leased bytes. Writes through it are allowed only while the lease is held
    /// and no `&[u8]` view of the same bytes is alive.
    pub fn as_ptr(&self) -> *mut u8 {
        // SAFETY: first_slot + n_slots <= count, so the offset stays inside the arena.
        unsafe {
            self.pool
                .arena
                .as_ptr()
                .add(self.first_slot as usize * self.pool.slot_bytes)
        }
    }
}

impl Drop for PoolBuf {
    fn drop(&mut self) {
        self.pool.give_back(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_leases_in_fifo_order_and_wraps() {
        let p = Pool::new(8, 4096).unwrap();
        let a = p.try_acquire(3).unwrap();
        let b = p.try_acquire(3).unwrap();
        assert_eq!((a.first_slot(), b.first_slot()), (0, 3));
        assert!(p.try_acquire(3).is_none(), "only 2 slots left at the end");
        let c = p.try_acquire(2).unwrap();
        assert_eq!(c.first_slot(), 6);
        assert!(p.try_acquire(1).is_none(), "full");
        drop(b); // out of order: a still holds the front
        assert!(p.try_acquire(1).is_none());
        drop(a);
        let d = p.try_acquire(6).unwrap();
        assert_eq!(d.first_slot(), 0);
        assert_eq!(p.leased_slots(), 8);
        drop(c);
        drop(d);
        assert_eq!(p.leased_slots(), 0);
        assert_eq!(p.try_acquire(8).unwrap().first_slot(), 0);
        assert!(p.try_acquire(9).is_none());
    }

    #[test]
    fn buffers_are_aligned() {
        let p = Pool::new(3, 8192).unwrap();
        let a = p.try_acquire(1).unwrap();
        let b = p.try_acquire(2).unwrap();
        assert_eq!(a.as_ptr() as usize % ALIGN as usize, 0);
        assert_eq!(b.as_ptr() as usize - a.as_ptr() as usize, 8192);
        assert_eq!(b.len(), 16384);
        assert!(Pool::new(2, 1000).is_err());
    }
}
