//! The receive-buffer pool: fixed-size buffers the backend lends to completed receives.
//!
//! A buffer is owned by exactly one party at a time: the pool (free, or — on io_uring — posted
//! in the provided-buffer ring, where only the kernel writes it), or the caller (inside a
//! [`RecvBuf`], between a recv completion and [`crate::Backend::release`]). Buffers are
//! allocated once, lazily by the allocator (untouched pages cost no RSS).

use std::io;
use std::ops::Deref;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::sys;

/// Pool identities: each pool gets its own, and each buffer carries its pool's.
static NEXT_POOL: AtomicU32 = AtomicU32::new(1);

/// Received bytes, lent by the backend's pool. Give it back with `Backend::release`.
#[derive(Debug)]
pub struct RecvBuf {
    // INVARIANT: `data.len()` is the number of bytes received; its capacity is the pool's size.
    data: Vec<u8>,
    id: u16,
    /// The pool it came from: a buffer is only ever taken back by that pool.
    pool: u32,
}

impl RecvBuf {
    /// Which pool slot this buffer came from.
    pub fn id(&self) -> u16 {
        self.id
    }
    pub fn as_slice(&self) -> &[u8] {
        &self.data
    }
}

impl Deref for RecvBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.data
    }
}

/// A fixed set of equally sized buffers, each either in the pool or lent out.
#[derive(Debug)]
pub(crate) struct BufPool {
    // INVARIANT: `slots[id]` is `Some` exactly when buffer `id` is not lent to the caller.
    slots: Vec<Option<Vec<u8>>>,
    free: Vec<u16>,
    size: usize,
    lent: usize,
    ident: u32,
}

/// What a receive into a pool buffer gave (the readiness path and io_uring's poll-then-recv).
pub(crate) enum Received {
    Data(RecvBuf),
    Eof,
    WouldBlock,
    Failed(io::Error),
    /// No free buffer: the data waits in the socket.
    Starved,
}

impl BufPool {
    pub(crate) fn new(count: u16, size: usize) -> Self {
        let slots = (0..count).map(|_| Some(Vec::with_capacity(size))).collect();
        // Pop from the end: hand out low ids first.
        let free = (0..count).rev().collect();
        BufPool {
            slots,
            free,
            size,
            lent: 0,
            ident: NEXT_POOL.fetch_add(1, Ordering::Relaxed),
        }
    }
    pub(crate) fn size(&self) -> usize {
        self.size
    }
    pub(crate) fn count(&self) -> usize {
        self.slots.len()
    }
    /// Whether a buffer is free (not lent, not posted to a kernel ring).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))] // only io_uring asks
    pub(crate) fn has_free(&self) -> bool {
        !self.free.is_empty()
    }
    /// `stats` with this pool's counts filled in.
    pub(crate) fn counted(&self, stats: &crate::Stats) -> crate::Stats {
        let mut s = stats.clone();
        s.bufs_in_use = self.lent;
        s.bufs_total = self.count();
        s
    }
    // Only the io_uring backend posts buffers to a kernel ring.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    /// Pointer to buffer `id`'s storage, for posting it to a kernel buffer ring.
    pub(crate) fn ptr(&mut self, id: u16) -> *mut u8 {
        self.slots[id as usize]
            .as_mut()
            .expect("buffer posted while lent")
            .as_mut_ptr()
    }
    /// Take a free buffer (readiness path: the backend picks it).
    pub(crate) fn take_free(&mut self) -> Option<u16> {
        self.free.pop()
    }
    pub(crate) fn put_free(&mut self, id: u16) {
        self.free.push(id);
    }
    /// Storage of buffer `id` while the backend fills it.
    pub(crate) fn spare(&mut self, id: u16) -> &mut Vec<u8> {
        self.slots[id as usize]
            .as_mut()
            .expect("buffer not in pool")
    }
    /// Lend buffer `id`, in which the kernel wrote `len` bytes, to the caller.
    ///
    /// # Safety
    /// The first `len` bytes of the buffer must have been initialised (written by the kernel).
    pub(crate) unsafe fn lend(&mut self, id: u16, len: usize) -> RecvBuf {
        let mut data = self.slots[id as usize].take().expect("buffer lent twice");
        assert!(len <= data.capacity());
        // SAFETY: the caller guarantees the kernel initialised `len` bytes; `len <= capacity`.
        unsafe { data.set_len(len) };
        self.lent += 1;
        RecvBuf {
            data,
            id,
            pool: self.ident,
        }
    }
    /// Take a lent buffer back into the free list. A buffer of another pool is refused
    /// (`false`; it is simply freed): it is never offered to the kernel as one of ours,
    /// whatever its size.
    pub(crate) fn restore(&mut self, buf: RecvBuf) -> bool {
        let RecvBuf { mut data, id, pool } = buf;
        let Some(slot) = self.slots.get_mut(id as usize) else {
            return false;
        };
        if pool != self.ident || slot.is_some() || data.capacity() < self.size {
            return false;
        }
        data.clear();
        *slot = Some(data);
        self.lent -= 1;
        self.free.push(id);
        true
    }
    /// `recv(2)` from `fd` into a free buffer, lent to the caller if data arrived.
    pub(crate) fn recv(&mut self, fd: RawFd) -> Received {
        let Some(id) = self.take_free() else {
            return Received::Starved;
        };
        let got = loop {
            match sys::recv_spare(fd, self.spare(id)) {
                Err(e) if sys::interrupted(&e) => {}
                r => break r,
            }
        };
        let r = match got {
            // SAFETY: recv initialised `n` bytes of buffer `id`.
            Ok(n) if n > 0 => return Received::Data(unsafe { self.lend(id, n) }),
            Ok(_) => Received::Eof,
            Err(e) if sys::would_block(&e) => Received::WouldBlock,
            Err(e) => Received::Failed(e),
        };
        self.put_free(id);
        r
    }
}
