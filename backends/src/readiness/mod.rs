//! Completions emulated over readiness: the logic epoll and kqueue share.
//!
//! The adapter keeps, per fd, a queue of operations waiting to read (accept, recv, read) and a
//! queue waiting to write (send, write), and what it knows of the fd's readiness. Registration is
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

use crate::pool::BufPool;
use crate::sys;
use crate::{Backend, Buf, Completion, Op, Options, RecvBuf, SendBuf, Stats, Token, Waker};

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
pub mod timers;

/// What a readiness shim reports.
#[derive(Clone, Copy, Debug)]
pub enum Event {
    /// `fd` became readable and/or writable (errors and hang-ups count as both: the next
    /// syscall reports them).
    Fd {
        fd: RawFd,
        read: bool,
        write: bool,
        /// The peer hung up or the fd has an error: reads must go on until they say so.
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
    fn new(events: usize) -> io::Result<Self>;
    /// Watch `fd` for both directions, edge-triggered, until `deregister`. Fails (EPERM on
    /// epoll) for fds that are always ready, such as regular files.
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

const NIL: u32 = u32::MAX;
/// Operations run on one fd per loop turn before others get their go.
const FD_BUDGET: usize = 32;

#[derive(Clone, Copy, Debug)]
struct List {
    head: u32,
    tail: u32,
}

impl List {
    const EMPTY: List = List {
        head: NIL,
        tail: NIL,
    };
    fn is_empty(&self) -> bool {
        self.head == NIL
    }
}

#[derive(Debug)]
struct FdState {
    registered: bool,
    /// Not pollable (a regular file): always ready.
    always_ready: bool,
    readable: bool,
    writable: bool,
    /// A hang-up was reported: a short read no longer means drained (the EOF is still to come).
    hup: bool,
    in_ready: bool,
    starved: bool,
    reads: List,
    writes: List,
}

impl FdState {
    const NEW: FdState = FdState {
        registered: false,
        always_ready: false,
        readable: true,
        writable: true,
        hup: false,
        in_ready: false,
        starved: false,
        reads: List::EMPTY,
        writes: List::EMPTY,
    };
}

#[derive(Debug)]
enum State {
    Free,
    Accept,
    Recv,
    Send {
        buf: SendBuf,
        done: usize,
    },
    Read {
        buf: Vec<u8>,
        offset: Option<u64>,
    },
    Write {
        buf: Vec<u8>,
        done: usize,
        offset: Option<u64>,
    },
    SendFile {
        file: RawFd,
        offset: u64,
        len: usize,
        done: usize,
    },
    Timer {
        deadline: Instant,
    },
    Child {
        pid: u32,
    },
}

#[derive(Debug)]
struct Slot {
    token: Token,
    fd: RawFd,
    next: u32,
    /// Bumped on every reuse, so a stale timer or child key never hits a newer op.
    generation: u32,
    state: State,
}

/// What trying an operation once gave.
enum Step {
    /// A completion; `keep` when the (multishot) op stays queued.
    Done(Completion, bool),
    /// The fd is not ready in this direction.
    WouldBlock,
    /// The op completed and the fd is known drained (a short read on a stream socket).
    DoneDrained(Completion),
    /// No receive buffer is free.
    Starved,
}

/// The completion-emulating backend over a readiness [`Poller`].
pub struct Readiness<P: Poller> {
    poller: P,
    pool: BufPool,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    fds: Vec<FdState>,
    queued: Vec<(Token, Op)>,
    ready: Vec<RawFd>,
    starved: Vec<RawFd>,
    events: Vec<Event>,
    expired: Vec<(Instant, u32)>,
    stats: Stats,
}

impl<P: Poller> Readiness<P> {
    pub fn new(opts: &Options) -> io::Result<Self> {
        Ok(Readiness {
            poller: P::new(opts.entries as usize)?,
            pool: BufPool::new(opts.buf_count, opts.buf_size),
            slots: Vec::new(),
            free_slots: Vec::new(),
            fds: Vec::new(),
            queued: Vec::new(),
            ready: Vec::new(),
            starved: Vec::new(),
            events: Vec::new(),
            expired: Vec::new(),
            stats: Stats::default(),
        })
    }

    fn fd_state(&mut self, fd: RawFd) -> &mut FdState {
        let i = fd as usize;
        if i >= self.fds.len() {
            self.fds.resize_with(i + 1, || FdState::NEW);
        }
        &mut self.fds[i]
    }

    fn alloc(&mut self, token: Token, fd: RawFd, state: State) -> u32 {
        match self.free_slots.pop() {
            Some(i) => {
                let s = &mut self.slots[i as usize];
                s.token = token;
                s.fd = fd;
                s.next = NIL;
                s.generation = s.generation.wrapping_add(1);
                s.state = state;
                i
            }
            None => {
                self.slots.push(Slot {
                    token,
                    fd,
                    next: NIL,
                    generation: 0,
                    state,
                });
                (self.slots.len() - 1) as u32
            }
        }
    }

    /// Free slot `idx`, returning what it owned.
    fn free(&mut self, idx: u32) -> (Token, State) {
        let s = &mut self.slots[idx as usize];
        let state = std::mem::replace(&mut s.state, State::Free);
        let token = s.token;
        self.free_slots.push(idx);
        (token, state)
    }

    fn key(&self, idx: u32) -> u64 {
        (u64::from(self.slots[idx as usize].generation) << 32) | u64::from(idx)
    }

    fn slot_for_key(&self, key: u64) -> Option<u32> {
        let idx = key as u32;
        let s = self.slots.get(idx as usize)?;
        (u64::from(s.generation) == key >> 32 && !matches!(s.state, State::Free)).then_some(idx)
    }

    fn push_back(&mut self, fd: RawFd, write: bool, idx: u32) {
        let list = {
            let st = &mut self.fds[fd as usize];
            if write {
                &mut st.writes
            } else {
                &mut st.reads
            }
        };
        let old_tail = list.tail;
        if list.is_empty() {
            list.head = idx;
        }
        list.tail = idx;
        if old_tail != NIL {
            self.slots[old_tail as usize].next = idx;
        }
    }

    fn pop_front(&mut self, fd: RawFd, write: bool) -> u32 {
        let st = &mut self.fds[fd as usize];
        let list = if write { &mut st.writes } else { &mut st.reads };
        let idx = list.head;
        let next = self.slots[idx as usize].next;
        list.head = next;
        if next == NIL {
            list.tail = NIL;
        }
        idx
    }

    /// Unlink `idx` from whichever queue of `fd` holds it.
    fn unlink(&mut self, fd: RawFd, idx: u32) {
        for write in [false, true] {
            let st = &self.fds[fd as usize];
            let list = if write { st.writes } else { st.reads };
            let (mut prev, mut cur) = (NIL, list.head);
            while cur != NIL && cur != idx {
                prev = cur;
                cur = self.slots[cur as usize].next;
            }
            if cur == NIL {
                continue;
            }
            let next = self.slots[idx as usize].next;
            let st = &mut self.fds[fd as usize];
            let list = if write { &mut st.writes } else { &mut st.reads };
            if prev == NIL {
                list.head = next;
            } else {
                self.slots[prev as usize].next = next;
            }
            if list.tail == idx {
                list.tail = prev;
            }
            return;
        }
    }

    fn mark_ready(&mut self, fd: RawFd) {
        let st = &mut self.fds[fd as usize];
        if !st.in_ready {
            st.in_ready = true;
            self.ready.push(fd);
        }
    }

    /// Complete a freed op with `ECANCELED`, handing back its buffers.
    fn cancel_completion(token: Token, state: State) -> Completion {
        let buf = match state {
            State::Send { buf, .. } => Buf::Send(buf),
            State::Read { buf, .. } | State::Write { buf, .. } => Buf::Vec(buf),
            _ => Buf::None,
        };
        Completion::new(token, Err(sys::canceled()), buf, false)
    }

    fn start(&mut self, token: Token, op: Op, out: &mut Vec<Completion>) {
        self.stats.submitted[op.kind() as usize] += 1;
        let (fd, write, state) = match op {
            Op::Accept { fd } => (fd, false, State::Accept),
            Op::Recv { fd } => (fd, false, State::Recv),
            Op::Read { fd, buf, offset } => (fd, false, State::Read { buf, offset }),
            Op::Send { fd, buf } => (fd, true, State::Send { buf, done: 0 }),
            Op::Write { fd, buf, offset } => (
                fd,
                true,
                State::Write {
                    buf,
                    done: 0,
                    offset,
                },
            ),
            Op::SendFile {
                fd,
                file,
                offset,
                len,
            } => (
                fd,
                true,
                State::SendFile {
                    file,
                    offset,
                    len,
                    done: 0,
                },
            ),
            Op::Close { fd } => {
                let c = self.close(token, fd, out);
                return out.push(c);
            }
            Op::Cancel { target } => return self.cancel(token, target, out),
            Op::Timeout { deadline } => {
                let idx = self.alloc(token, -1, State::Timer { deadline });
                if let Err(e) = self.poller.add_timer(self.key(idx), deadline) {
                    self.free(idx);
                    out.push(Completion::new(token, Err(e), Buf::None, false));
                }
                return;
            }
            Op::ChildExit { pid } => {
                let idx = self.alloc(token, -1, State::Child { pid });
                if let Err(e) = self.poller.watch_child(self.key(idx), pid) {
                    self.free(idx);
                    out.push(Completion::new(token, Err(e), Buf::None, false));
                }
                return;
            }
        };
        if fd < 0 {
            let mut c = Self::cancel_completion(token, state);
            c.result = Err(io::Error::from_raw_os_error(libc::EBADF));
            return out.push(c);
        }
        let st = self.fd_state(fd);
        if st.reads.is_empty() && st.writes.is_empty() {
            // Nothing of ours is pending on this fd, so the caller may have closed it and the
            // number may now name another file (see the contract): register afresh and believe
            // it ready. An existing registration answers EEXIST, which is fine.
            *st = FdState {
                in_ready: st.in_ready,
                starved: st.starved,
                ..FdState::NEW
            };
        }
        if !st.registered && !st.always_ready {
            match self.poller.register(fd) {
                Ok(()) => self.fds[fd as usize].registered = true,
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    self.fds[fd as usize].registered = true
                }
                // epoll refuses regular files, which are always ready.
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                    self.fds[fd as usize].always_ready = true
                }
                Err(e) => {
                    let mut c = Self::cancel_completion(token, state);
                    c.result = Err(e);
                    return out.push(c);
                }
            }
        }
        let idx = self.alloc(token, fd, state);
        self.push_back(fd, write, idx);
        self.mark_ready(fd);
    }

    fn close(&mut self, token: Token, fd: RawFd, out: &mut Vec<Completion>) -> Completion {
        if fd < 0 {
            return Completion::new(
                token,
                Err(io::Error::from_raw_os_error(libc::EBADF)),
                Buf::None,
                false,
            );
        }
        let st = self.fd_state(fd);
        let registered = st.registered;
        for write in [false, true] {
            while !{
                let st = &self.fds[fd as usize];
                if write {
                    st.writes.is_empty()
                } else {
                    st.reads.is_empty()
                }
            } {
                let idx = self.pop_front(fd, write);
                let (t, state) = self.free(idx);
                out.push(Self::cancel_completion(t, state));
            }
        }
        if registered {
            self.poller.deregister(fd);
        }
        let st = &mut self.fds[fd as usize];
        let (in_ready, starved) = (st.in_ready, st.starved);
        *st = FdState::NEW;
        // Keep the ready/starved list membership flags truthful: the lists may still name fd.
        st.in_ready = in_ready;
        st.starved = starved;
        Completion::new(token, sys::close(fd).map(|()| 0), Buf::None, false)
    }

    fn cancel(&mut self, token: Token, target: Token, out: &mut Vec<Completion>) {
        // Cancellation is rare: a scan keeps a token index (and its memory and hashing on every
        // operation) out of the hot path.
        let found = self
            .slots
            .iter()
            .position(|s| s.token == target && !matches!(s.state, State::Free));
        let Some(idx) = found.map(|i| i as u32) else {
            let e = io::Error::from_raw_os_error(libc::ENOENT);
            return out.push(Completion::new(token, Err(e), Buf::None, false));
        };
        let key = self.key(idx);
        let fd = self.slots[idx as usize].fd;
        match self.slots[idx as usize].state {
            State::Timer { .. } => self.poller.remove_timer(key),
            State::Child { .. } => self.poller.unwatch_child(key),
            _ => self.unlink(fd, idx),
        }
        let (t, state) = self.free(idx);
        out.push(Self::cancel_completion(t, state));
        out.push(Completion::new(token, Ok(0), Buf::None, false));
    }

    /// Try operation `idx` on `fd` once.
    fn step(&mut self, fd: RawFd, idx: u32) -> Step {
        let token = self.slots[idx as usize].token;
        let send_flags = P::SEND_FLAGS;
        match &mut self.slots[idx as usize].state {
            State::Accept => match self.poller.accept(fd) {
                Ok(new) => Step::Done(
                    Completion::new(token, Ok(new as usize), Buf::None, true),
                    true,
                ),
                Err(e) if sys::would_block(&e) => Step::WouldBlock,
                // The peer gave up before we accepted: not the listener's error.
                Err(e) if sys::interrupted(&e) || e.raw_os_error() == Some(libc::ECONNABORTED) => {
                    self.step(fd, idx)
                }
                Err(e) => Step::Done(Completion::new(token, Err(e), Buf::None, false), false),
            },
            State::Recv => {
                let Some(id) = self.pool.take_free() else {
                    return Step::Starved;
                };
                let size = self.pool.size();
                match sys::recv_spare(fd, self.pool.spare(id)) {
                    Ok(0) => {
                        self.pool.put_free(id);
                        Step::Done(Completion::new(token, Ok(0), Buf::None, false), false)
                    }
                    Ok(n) => {
                        // SAFETY: recv initialised `n` bytes of buffer `id`.
                        let buf = unsafe { self.pool.lend(id, n) };
                        let c = Completion::new(token, Ok(n), Buf::Recv(buf), true);
                        // epoll(7): a short read on a stream socket means it is drained for now.
                        if n < size {
                            Step::DoneDrained(c)
                        } else {
                            Step::Done(c, true)
                        }
                    }
                    Err(e) => {
                        self.pool.put_free(id);
                        if sys::would_block(&e) {
                            Step::WouldBlock
                        } else if sys::interrupted(&e) {
                            self.step(fd, idx)
                        } else {
                            Step::Done(Completion::new(token, Err(e), Buf::None, false), false)
                        }
                    }
                }
            }
            State::Read { buf, offset } => match sys::read_spare(fd, buf, *offset) {
                Ok(n) => Step::Done(Completion::new(token, Ok(n), Buf::None, false), false),
                Err(e) if sys::would_block(&e) => Step::WouldBlock,
                Err(e) if sys::interrupted(&e) => self.step(fd, idx),
                Err(e) => Step::Done(Completion::new(token, Err(e), Buf::None, false), false),
            },
            State::Send { buf, done } => loop {
                let (a, b) = buf.remaining(*done);
                if a.is_empty() && b.is_empty() {
                    let c = Completion::new(token, Ok(*done), Buf::None, false);
                    return Step::Done(c, false);
                }
                match sys::send2(fd, a, b, send_flags) {
                    Ok(n) => *done += n,
                    Err(e) if sys::would_block(&e) => return Step::WouldBlock,
                    Err(e) if sys::interrupted(&e) => {}
                    Err(e) => {
                        return Step::Done(Completion::new(token, Err(e), Buf::None, false), false)
                    }
                }
            },
            State::Write { buf, done, offset } => loop {
                if *done == buf.len() {
                    let c = Completion::new(token, Ok(*done), Buf::None, false);
                    return Step::Done(c, false);
                }
                let at = offset.map(|o| o + *done as u64);
                match sys::write_at(fd, &buf[*done..], at) {
                    Ok(n) => *done += n,
                    Err(e) if sys::would_block(&e) => return Step::WouldBlock,
                    Err(e) if sys::interrupted(&e) => {}
                    Err(e) => {
                        return Step::Done(Completion::new(token, Err(e), Buf::None, false), false)
                    }
                }
            },
            State::SendFile {
                file,
                offset,
                len,
                done,
            } => loop {
                if *done == *len {
                    let c = Completion::new(token, Ok(*done), Buf::None, false);
                    return Step::Done(c, false);
                }
                match P::sendfile(fd, *file, *offset + *done as u64, *len - *done) {
                    // The file is shorter than promised: report, do not spin.
                    Ok(0) => {
                        let e = io::Error::from(io::ErrorKind::UnexpectedEof);
                        return Step::Done(Completion::new(token, Err(e), Buf::None, false), false);
                    }
                    Ok(n) => *done += n,
                    Err(e) if sys::would_block(&e) => return Step::WouldBlock,
                    Err(e) if sys::interrupted(&e) => {}
                    Err(e) => {
                        return Step::Done(Completion::new(token, Err(e), Buf::None, false), false)
                    }
                }
            },
            State::Free | State::Timer { .. } | State::Child { .. } => {
                unreachable!("not an fd operation")
            }
        }
    }

    /// Run the queued operations of `fd` that its readiness allows. Returns true if the fd
    /// still has runnable work (its budget ran out).
    fn run_fd(&mut self, fd: RawFd, out: &mut Vec<Completion>) -> bool {
        let mut more = false;
        for write in [false, true] {
            let mut budget = FD_BUDGET;
            loop {
                let st = &self.fds[fd as usize];
                let (ready, list) = if write {
                    (st.writable || st.always_ready, st.writes)
                } else {
                    (st.readable || st.always_ready, st.reads)
                };
                if !ready || list.is_empty() {
                    break;
                }
                if budget == 0 {
                    more = true;
                    break;
                }
                budget -= 1;
                let idx = list.head;
                match self.step(fd, idx) {
                    Step::Done(c, keep) => self.finish(fd, write, idx, c, keep, out),
                    Step::DoneDrained(c) => {
                        self.finish(fd, write, idx, c, true, out);
                        let st = &mut self.fds[fd as usize];
                        st.readable = st.hup;
                    }
                    Step::WouldBlock => {
                        let st = &mut self.fds[fd as usize];
                        if write {
                            st.writable = false
                        } else {
                            st.readable = false
                        }
                    }
                    Step::Starved => {
                        let st = &mut self.fds[fd as usize];
                        if !st.starved {
                            st.starved = true;
                            self.starved.push(fd);
                        }
                        break;
                    }
                }
            }
        }
        more
    }

    fn finish(
        &mut self,
        fd: RawFd,
        write: bool,
        idx: u32,
        mut c: Completion,
        keep: bool,
        out: &mut Vec<Completion>,
    ) {
        if !keep {
            let head = self.pop_front(fd, write);
            debug_assert_eq!(head, idx);
            let (_, state) = self.free(idx);
            c.buf = match state {
                State::Send { buf, .. } => Buf::Send(buf),
                State::Read { buf, .. } | State::Write { buf, .. } => Buf::Vec(buf),
                _ => std::mem::take(&mut c.buf),
            };
        }
        out.push(c);
    }

    fn run_ready(&mut self, out: &mut Vec<Completion>) {
        let fds = std::mem::take(&mut self.ready);
        for &fd in &fds {
            self.fds[fd as usize].in_ready = false;
        }
        for fd in fds {
            if self.run_fd(fd, out) {
                self.mark_ready(fd);
            }
        }
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
                    st.readable |= read;
                    st.writable |= write;
                    st.hup |= hup;
                    self.mark_ready(fd);
                }
                Event::Timer(key) => {
                    if let Some(idx) = self.slot_for_key(key) {
                        if let State::Timer { deadline } = self.slots[idx as usize].state {
                            self.expired.push((deadline, idx));
                        }
                    }
                }
                Event::Child(key) => {
                    let Some(idx) = self.slot_for_key(key) else {
                        continue;
                    };
                    let State::Child { pid } = self.slots[idx as usize].state else {
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
                    out.push(Completion::new(crate::WAKE_TOKEN, Ok(0), Buf::None, false));
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
        self.run_ready(out);
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
            self.run_ready(out);
            let timed_out = deadline.is_some_and(|d| Instant::now() >= d);
            if out.len() > before || timed_out {
                break;
            }
        }
        self.stats.count_wait(out.len() - before);
        Ok(())
    }

    fn release(&mut self, buf: RecvBuf) {
        let id = self.pool.restore(buf);
        self.pool.put_free(id);
        // Receives that found the pool dry may run again.
        for fd in std::mem::take(&mut self.starved) {
            self.fds[fd as usize].starved = false;
            self.mark_ready(fd);
        }
    }

    fn waker(&self) -> Waker {
        self.poller.waker()
    }

    fn sendfile_native(&self) -> bool {
        true
    }

    fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.bufs_in_use = self.pool.lent();
        s.bufs_total = self.pool.count();
        s
    }
}

#[cfg(test)]
pub(crate) fn slot_size() -> usize {
    std::mem::size_of::<Slot>()
}
