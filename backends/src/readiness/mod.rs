//! Completions emulated over readiness: the logic epoll and kqueue share.
//!
//! The adapter keeps, per fd, a queue of operations waiting to read (accept, recv, read), a
//! queue waiting to write (send, write), a queue of hang-up watches, and what it knows of the
//! fd's readiness (a hang-up, once reported, is remembered until the number names a new file). Registration is
//! edge-triggered and made once per fd (both directions), so no `epoll_ctl`/`kevent` call is
//! needed to arm or disarm an operation. An operation is tried as soon as its fd is believed
//! ready (a new fd is believed ready in both directions); `EWOULDBLOCK` clears the belief and the
//! operation waits for the next edge — monoio's and compio's poll drivers work the same way.
//!
//! Each poller supplies a thin [`Poller`] shim: registration, timers (kqueue: `EVFILT_TIMER`;
//! epoll: a heap driving the wait timeout), child exit (kqueue: `EVFILT_PROC`; epoll: pidfd), and
//! a waker. Everything else — queues, retries, the buffer pool, cancellation, close ordering — is
//! here, once.

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::offload::Offload;
use crate::pool::BufPool;
use crate::slab::Slab;
use crate::sys;
use crate::{Backend, Buf, Completion, Op, Options, RecvBuf, Stats, Token, Waker};

#[cfg(target_os = "linux")]
pub mod epoll;
#[cfg(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly",
    all(target_os = "linux", feature = "libkqueue")
))]
pub mod kqueue;
/// The deadline heap (shared with io_uring, which orders its timers the same way).
pub use crate::timers;

mod fds;
mod ops;
mod start;

use fds::FdState;
use ops::{Slot, State};

/// Completions one wait gathers at most from ready fds (more only when the queued operations
/// it starts first complete at once); the fds not reached stay ready, and the next wait polls
/// without blocking. With a thousand busy connections one `epoll_wait` reports hundreds, and
/// running them all in one turn made 1,000 pipelining connections cost 2.0–2.4 µs per
/// response against 1.7–1.8 with this bound (io_uring's waits bring ~50 completions; it costs
/// 1.3–1.5 there). Bounds of 16 and 256 measured the same as 64. Presumably an unbounded
/// turn's working set (receive buffers, requests, coalesced responses) outgrows the CPU
/// caches before the next wait sends the responses: the profile's extra time is in copies
/// (this VM has no cache counters to show it).
const WAIT_BATCH: usize = 64;

/// What a readiness shim reports.
#[derive(Clone, Copy, Debug)]
pub enum Event {
    /// `fd` became readable and/or writable (errors and hang-ups count as both: the next
    /// syscall reports them).
    Fd {
        fd: RawFd,
        read: bool,
        write: bool,
        /// The peer hung up (closed its side) or the fd has an error: reads must go on until
        /// they say so, and hang-up watches complete. Not our own half-close.
        hup: bool,
    },
    /// The timer added with this key expired.
    Timer(u64),
    /// The child watched with this key exited (it is not reaped yet).
    Child(u64),
    /// A [`Waker`] was woken.
    Wake,
}

/// The syscall shim under the adapter: small on purpose.
pub trait Poller: Sized {
    const NAME: &'static str;
    /// Flags for `sendmsg`: `MSG_NOSIGNAL` where it exists (else the shim sets `SO_NOSIGPIPE`
    /// on accepted sockets).
    const SEND_FLAGS: libc::c_int;
    /// Whether the platform has `sendfile(2)` (NetBSD and OpenBSD do not: files are then read
    /// and sent by the caller, see [`crate::Backend::sendfile_native`]).
    const SENDFILE: bool;
    /// The most bytes a SendFile moves in one turn of its fd: past it the op yields, its fd
    /// still writable, and the other ready fds go first (0: no cap, the op runs until it is
    /// done or the socket is full).
    const SENDFILE_ROUND: usize = 0;
    fn new(events: usize) -> io::Result<Self>;
    /// Watch `fd` for both directions, edge-triggered, until `deregister`. Fails (EPERM on
    /// epoll) for fds that are always ready, such as regular files. Called again for an fd
    /// when it was idle: `EEXIST` says the registration (so the file) is the same, and the
    /// adapter keeps what it knew of its readiness; `Ok` says it is new, and the adapter
    /// believes it ready (a shim whose re-add succeeds silently, like kqueue's `EV_ADD`, must
    /// report the current readiness again, which `EV_ADD` does).
    fn register(&mut self, fd: RawFd) -> io::Result<()>;
    fn deregister(&mut self, fd: RawFd);
    /// Accept one connection, non-blocking and close-on-exec.
    fn accept(&mut self, fd: RawFd) -> io::Result<RawFd>;
    /// `sendfile(2)` up to `len` bytes of `file` at `offset` to socket `sock`; the number
    /// sent (a partial count rather than EAGAIN when some bytes went).
    fn sendfile(sock: RawFd, file: RawFd, offset: u64, len: usize) -> io::Result<usize>;
    fn add_timer(&mut self, key: u64, deadline: Instant) -> io::Result<()>;
    fn remove_timer(&mut self, key: u64);
    /// Report [`Event::Child`] with `key` once `pid` has exited (also if it already has).
    fn watch_child(&mut self, key: u64, pid: u32) -> io::Result<()>;
    fn unwatch_child(&mut self, key: u64);
    fn waker(&self) -> Waker;
    /// Wait for events (`None`: no limit), appending them to `events`; one kernel entry.
    fn poll(&mut self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()>;
}

/// The completion-emulating backend over a readiness [`Poller`].
pub struct Readiness<P: Poller> {
    poller: P,
    pool: BufPool,
    slots: Slab<Slot>,
    fds: Vec<FdState>,
    /// Per fd: the queued sendfiles reading it as their file (a close of it cancels them).
    /// Kept beside `fds`, which every open socket pays for, since few fds are ever in it.
    file_users: std::collections::HashMap<RawFd, u32>,
    queued: Vec<(Token, Op)>,
    ready: Vec<RawFd>,
    /// The list `run_ready` works through while new ready fds go to `ready` (kept, emptied).
    ready_spare: Vec<RawFd>,
    /// Boxes of finished sends and sendfiles, for the next ones (no allocation per send):
    /// boxes, not values, as each moves whole into a slot.
    #[allow(clippy::vec_box)]
    spare_sends: Vec<Box<ops::SendState>>,
    #[allow(clippy::vec_box)]
    spare_sendfiles: Vec<Box<ops::SendFileState>>,
    starved: Vec<RawFd>,
    events: Vec<Event>,
    expired: Vec<(Instant, u32)>,
    stats: Stats,
    /// Opens that may block, run on a few threads (invariant 13); their results arrive with
    /// a wake-up of the poller.
    offload: Offload,
    /// Set by the caller's [`Waker`] (not the offload's): only its wake-ups are completed
    /// with [`crate::WAKE_TOKEN`].
    user_woken: Arc<AtomicBool>,
    offload_done: Vec<(Token, io::Result<usize>, Buf)>,
    /// Reads and writes of regular files running on the offload pool (a file is always
    /// "ready", and its I/O waits for the disk), with their fd: a close of it waits for them.
    file_jobs: Vec<(Token, RawFd)>,
    /// Closes waiting for the file jobs on their fd: (fd, the close's token).
    closes_waiting: Vec<(RawFd, Token)>,
}

use crate::offload::UserWake;

impl<P: Poller> Readiness<P> {
    pub fn new(opts: &Options) -> io::Result<Self> {
        let poller = P::new(opts.entries as usize)?;
        let offload = Offload::new(poller.waker().inner());
        Ok(Readiness {
            poller,
            offload,
            user_woken: Arc::new(AtomicBool::new(false)),
            offload_done: Vec::new(),
            file_jobs: Vec::new(),
            closes_waiting: Vec::new(),
            pool: BufPool::new(opts.buf_count, opts.buf_size),
            slots: Slab::with_room(opts.first_generation, 2 * opts.expected_fds),
            fds: Vec::with_capacity(opts.expected_fds),
            file_users: std::collections::HashMap::new(),
            queued: Vec::new(),
            ready: Vec::new(),
            ready_spare: Vec::new(),
            spare_sends: Vec::new(),
            spare_sendfiles: Vec::new(),
            starved: Vec::new(),
            events: Vec::new(),
            expired: Vec::new(),
            stats: Stats::default(),
        })
    }

    /// The live slot `key` names.
    fn slot_for_key(&self, key: u64) -> Option<u32> {
        self.slots.find(key).filter(|&i| self.slots[i].live())
    }

    fn handle_events(&mut self, out: &mut Vec<Completion>) {
        let mut events = std::mem::take(&mut self.events);
        for ev in events.drain(..) {
            match ev {
                Event::Fd {
                    fd,
                    read,
                    write,
                    hup,
                } => {
                    let st = self.fd_state(fd);
                    st.or(FdState::READABLE, read);
                    st.or(FdState::WRITABLE, write);
                    st.or(FdState::HUP, hup);
                    self.mark_ready(fd);
                }
                Event::Timer(key) => {
                    if let Some(idx) = self.slot_for_key(key) {
                        if let State::Timer { deadline } = self.slots[idx].state {
                            self.expired.push((deadline, idx));
                        }
                    }
                }
                Event::Child(key) => {
                    let Some(idx) = self.slot_for_key(key) else {
                        continue;
                    };
                    let State::Child { pid } = self.slots[idx].state else {
                        continue;
                    };
                    let result = match sys::reap(pid) {
                        Ok(Some(status)) => Ok(status as u32 as usize),
                        Ok(None) => {
                            // Not exited after all: watch again.
                            if let Err(e) = self.poller.watch_child(key, pid) {
                                Err(e)
                            } else {
                                continue;
                            }
                        }
                        Err(e) => Err(e),
                    };
                    let (token, _) = self.free(idx);
                    out.push(Completion::new(token, result, Buf::None, false));
                }
                Event::Wake => {
                    let mut done = std::mem::take(&mut self.offload_done);
                    self.offload.take_done(&mut done);
                    for (token, result, buf) in done.drain(..) {
                        out.push(Completion::new(token, result, buf, false));
                        self.file_job_done(token, out);
                    }
                    self.offload_done = done;
                    if self.user_woken.swap(false, Ordering::Acquire) {
                        out.push(Completion::new(crate::WAKE_TOKEN, Ok(0), Buf::None, false));
                    }
                }
            }
        }
        self.events = events;
        // Timers complete in deadline order, whatever order the kernel listed them in.
        if !self.expired.is_empty() {
            let mut expired = std::mem::take(&mut self.expired);
            expired.sort_by_key(|&(d, _)| d);
            for (_, idx) in expired.drain(..) {
                let (token, _) = self.free(idx);
                out.push(Completion::new(token, Ok(0), Buf::None, false));
            }
            self.expired = expired;
        }
    }
}

impl<P: Poller> Backend for Readiness<P> {
    fn name(&self) -> &'static str {
        P::NAME
    }

    fn submit(&mut self, token: Token, op: Op) {
        self.queued.push((token, op));
    }

    fn wait(&mut self, out: &mut Vec<Completion>, timeout: Option<Duration>) -> io::Result<()> {
        let before = out.len();
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut queued = std::mem::take(&mut self.queued);
        for (token, op) in queued.drain(..) {
            self.start(token, op, out);
        }
        self.queued = queued;
        let limit = before + WAIT_BATCH;
        self.run_ready(out, limit);
        loop {
            let poll_timeout = if out.len() > before || !self.ready.is_empty() {
                Some(Duration::ZERO)
            } else {
                deadline.map(|d| d.saturating_duration_since(Instant::now()))
            };
            self.stats.enters += 1;
            match self.poller.poll(&mut self.events, poll_timeout) {
                Ok(()) => {}
                Err(e) if sys::interrupted(&e) => {}
                Err(e) => return Err(e),
            }
            self.handle_events(out);
            self.run_ready(out, limit);
            if out.len() > before || crate::passed(deadline) {
                break;
            }
        }
        self.stats.count_wait(out.len() - before);
        Ok(())
    }

    fn release(&mut self, buf: RecvBuf) {
        if !self.pool.restore(buf) {
            return; // another pool's buffer: refused (and freed), never taken for one of ours
        }
        // Receives that found the pool dry may run again.
        for fd in std::mem::take(&mut self.starved) {
            self.fds[fd as usize].set(FdState::STARVED, false);
            self.mark_ready(fd);
        }
    }

    fn waker(&self) -> Waker {
        Waker::new(Arc::new(UserWake {
            flag: self.user_woken.clone(),
            inner: self.poller.waker().inner(),
        }))
    }

    fn sendfile_native(&self) -> bool {
        P::SENDFILE
    }

    fn stats(&self) -> Stats {
        self.pool.counted(&self.stats)
    }
}

#[cfg(test)]
pub(crate) fn slot_size() -> usize {
    std::mem::size_of::<(u32, Slot)>()
}

#[cfg(test)]
pub(crate) fn fd_state_size() -> usize {
    std::mem::size_of::<FdState>()
}
