//! What the adapter knows per fd: its readiness, registration, and the queues of operations
//! waiting to read, to write, and for the peer's hang-up (intrusive lists through the slots).

use std::os::fd::RawFd;

use super::{Poller, Readiness};

pub(super) const NIL: u32 = u32::MAX;

/// Which of an fd's queues an operation waits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Queue {
    /// Accept, recv, read: run while the fd is readable.
    Read,
    /// Send, write, sendfile: run while the fd is writable.
    Write,
    /// Hang-up watches: complete once a hang-up or error is known (they never do I/O).
    Hangup,
}

impl Queue {
    pub(super) const ALL: [Queue; 3] = [Queue::Read, Queue::Write, Queue::Hangup];
}

#[derive(Clone, Copy, Debug)]
pub(super) struct List {
    pub(super) head: u32,
    pub(super) tail: u32,
}

impl List {
    const EMPTY: List = List {
        head: NIL,
        tail: NIL,
    };
    pub(super) fn is_empty(&self) -> bool {
        self.head == NIL
    }
}

#[derive(Debug)]
pub(super) struct FdState {
    /// The yes/no facts below, one bit each (kept small: one record per open fd).
    bits: u8,
    pub(super) reads: List,
    pub(super) writes: List,
    pub(super) hangups: List,
}

impl FdState {
    /// Registered with the poller.
    pub(super) const REGISTERED: u8 = 1;
    /// Not pollable (a regular file): always ready.
    pub(super) const ALWAYS_READY: u8 = 2;
    pub(super) const READABLE: u8 = 4;
    pub(super) const WRITABLE: u8 = 8;
    /// A hang-up or error was reported: a short read no longer means drained (the EOF is still
    /// to come), and hang-up watches complete. Cleared only when the number is registered
    /// afresh (a new file; the registration then reports its current state again).
    pub(super) const HUP: u8 = 16;
    /// In the ready list.
    pub(super) const IN_READY: u8 = 32;
    /// In the starved list (a receive found no buffer).
    pub(super) const STARVED: u8 = 64;

    const NEW: FdState = FdState {
        bits: FdState::READABLE | FdState::WRITABLE,
        reads: List::EMPTY,
        writes: List::EMPTY,
        hangups: List::EMPTY,
    };

    pub(super) fn has(&self, bit: u8) -> bool {
        self.bits & bit != 0
    }

    pub(super) fn set(&mut self, bit: u8, on: bool) {
        if on {
            self.bits |= bit;
        } else {
            self.bits &= !bit;
        }
    }

    pub(super) fn or(&mut self, bit: u8, on: bool) {
        if on {
            self.bits |= bit;
        }
    }

    pub(super) fn idle(&self) -> bool {
        self.reads.is_empty() && self.writes.is_empty() && self.hangups.is_empty()
    }

    /// Forget what was known of the file this number named (a new one may have it now): it
    /// is believed ready. List memberships stay truthful (and the count of sendfiles using
    /// the number, kept beside: `Readiness::file_users`).
    pub(super) fn renew(&mut self) {
        let keep = self.bits & (FdState::IN_READY | FdState::STARVED);
        self.bits = FdState::NEW.bits | keep;
    }
}

impl<P: Poller> Readiness<P> {
    pub(super) fn fd_state(&mut self, fd: RawFd) -> &mut FdState {
        let i = fd as usize;
        if i >= self.fds.len() {
            self.fds.resize_with(i + 1, || FdState::NEW);
        }
        &mut self.fds[i]
    }

    fn list(&mut self, fd: RawFd, q: Queue) -> &mut List {
        let st = &mut self.fds[fd as usize];
        match q {
            Queue::Read => &mut st.reads,
            Queue::Write => &mut st.writes,
            Queue::Hangup => &mut st.hangups,
        }
    }

    pub(super) fn push_back(&mut self, fd: RawFd, q: Queue, idx: u32) {
        let list = self.list(fd, q);
        let old_tail = list.tail;
        if list.is_empty() {
            list.head = idx;
        }
        list.tail = idx;
        if old_tail != NIL {
            self.slots[old_tail].next = idx;
        }
    }

    pub(super) fn pop_front(&mut self, fd: RawFd, q: Queue) -> u32 {
        let idx = self.list(fd, q).head;
        let next = self.slots[idx].next;
        let list = self.list(fd, q);
        list.head = next;
        if next == NIL {
            list.tail = NIL;
        }
        idx
    }

    /// Unlink `idx` from whichever queue of `fd` holds it.
    pub(super) fn unlink(&mut self, fd: RawFd, idx: u32) {
        for q in Queue::ALL {
            let (mut prev, mut cur) = (NIL, self.list(fd, q).head);
            while cur != NIL && cur != idx {
                prev = cur;
                cur = self.slots[cur].next;
            }
            if cur == NIL {
                continue;
            }
            let next = self.slots[idx].next;
            if prev == NIL {
                self.list(fd, q).head = next;
            } else {
                self.slots[prev].next = next;
            }
            let list = self.list(fd, q);
            if list.tail == idx {
                list.tail = prev;
            }
            return;
        }
    }

    pub(super) fn mark_ready(&mut self, fd: RawFd) {
        let st = &mut self.fds[fd as usize];
        if !st.has(FdState::IN_READY) {
            st.set(FdState::IN_READY, true);
            self.ready.push(fd);
        }
    }
}
