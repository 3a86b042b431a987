//! The provided-buffer ring and how the pool's buffers are posted into it.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types;

use super::Uring;

pub(super) const BGID: u16 = 0;
/// Buffers posted in the provided-buffer ring at start; the ring grows (doubling) when it runs
/// dry, so a quiet server touches only this many receive buffers.
pub(super) const RING_START: u32 = 16;

/// The provided-buffer ring: `entries` slots of `io_uring_buf {addr, len, bid, resv}`, whose
/// first slot's `resv` field doubles as the tail the kernel reads (io_uring_register_buf_ring(3)).
pub(super) struct BufRing {
    pub(super) base: *mut types::BufRingEntry,
    layout: std::alloc::Layout,
    mask: u16,
    tail: u16,
}

impl BufRing {
    pub(super) fn new(entries: u16) -> io::Result<BufRing> {
        let size = entries as usize * std::mem::size_of::<types::BufRingEntry>();
        let layout = std::alloc::Layout::from_size_align(size, 4096)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: the layout has a non-zero size (entries ≥ 1).
        let base = unsafe { std::alloc::alloc_zeroed(layout) } as *mut types::BufRingEntry;
        if base.is_null() {
            return Err(io::Error::from_raw_os_error(libc::ENOMEM));
        }
        Ok(BufRing {
            base,
            layout,
            mask: entries - 1,
            tail: 0,
        })
    }

    /// Stage buffer `bid` at the local tail; the kernel sees it after [`BufRing::publish`].
    fn push(&mut self, bid: u16, addr: *mut u8, len: usize) {
        let i = (self.tail & self.mask) as usize;
        // SAFETY: `i` is below the ring's entry count; the kernel does not read slots past the
        // published tail, so writing this one races with nothing.
        let entry = unsafe { &mut *self.base.add(i) };
        entry.set_addr(addr as u64);
        entry.set_len(len as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail is the u16 at byte offset 14 of the ring (the first entry's `resv`),
        // shared with the kernel; it is written atomically with release ordering so the entries
        // staged before are visible first.
        let tail = unsafe { &*((self.base as *mut u8).add(14) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; the ring is unregistered (or the io_uring
        // closed, with nothing left in flight: `Uring::drop` leaks the ring otherwise) before
        // the backend drops this field.
        unsafe { std::alloc::dealloc(self.base as *mut u8, self.layout) }
    }
}

impl Uring {
    /// Post free pool buffers into the ring until it holds `ring_target` (most recently
    /// released first). Returns whether the ring (or, without one, the pool) has any buffer.
    pub(super) fn top_up(&mut self) -> bool {
        let Some(br) = self.bufring.as_mut() else {
            return self.pool.has_free();
        };
        let mut pushed = false;
        while self.posted < self.ring_target {
            let Some(id) = self.pool.take_free() else {
                break;
            };
            br.push(id, self.pool.ptr(id), self.pool.size());
            self.posted += 1;
            pushed = true;
        }
        if pushed {
            br.publish();
        }
        self.posted > 0
    }

    /// The ring ran dry (ENOBUFS): keep more buffers posted from now on.
    pub(super) fn grow_ring(&mut self) {
        self.ring_target = (self.ring_target * 2).min(self.pool.count() as u32);
    }

    /// Restart the receives that found no buffer (unless a close or cancel now covers them).
    pub(super) fn rearm_starved(&mut self) {
        for idx in std::mem::take(&mut self.starved) {
            let mut out = std::mem::take(&mut self.early);
            if let Err(e) = self.restart(idx, &mut out) {
                // Only a failing io_uring_enter gets here; the next wait reports it.
                if self.slots[idx].live() {
                    if let Ok(c) = self.finish(idx, Err(e)) {
                        out.push(c);
                    }
                }
            }
            self.early = out;
        }
    }
}
