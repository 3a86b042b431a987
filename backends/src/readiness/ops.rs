//! Operations in slots, and running them as far as their fd's readiness allows.

use std::io;
use std::os::fd::RawFd;
use std::time::Instant;

use super::fds::{FdState, Queue, NIL};
use super::{Poller, Readiness};
use crate::pool::Received;
use crate::sys::{self, Progress};
use crate::{Buf, Completion, SendBuf, Token};

/// Operations run on one fd per loop turn before others get their go.
const FD_BUDGET: usize = 32;

/// A send in flight, boxed so that an idle slot (an armed recv) stays small; finished boxes are
/// kept for the next sends (`Readiness::spare_sends`), so a send allocates nothing.
#[derive(Debug, Default)]
pub(super) struct SendState {
    pub(super) buf: SendBuf,
    pub(super) done: usize,
}

/// A read or write of a file or pipe in flight (boxed for the same reason).
#[derive(Debug)]
pub(super) struct FileIo {
    pub(super) buf: Vec<u8>,
    pub(super) done: usize,
    pub(super) offset: Option<u64>,
}

/// A sendfile in flight (boxed; boxes are reused as sends' are).
#[derive(Debug, Default)]
pub(super) struct SendFileState {
    pub(super) file: RawFd,
    pub(super) offset: u64,
    pub(super) len: usize,
    pub(super) done: usize,
}

/// Spare boxes kept per kind (the pools of a busy worker; an idle one keeps at most this many).
pub(super) const SPARE_BOXES: usize = 64;

#[derive(Debug)]
pub(super) enum State {
    Free,
    Accept,
    Recv,
    Send(Box<SendState>),
    Read(Box<FileIo>),
    Write(Box<FileIo>),
    /// Queued on the socket; `file` is in use by it as much (see `Readiness::file_users`).
    SendFile(Box<SendFileState>),
    Timer {
        deadline: Instant,
    },
    Child {
        pid: u32,
    },
    /// Waits in the fd's hang-up queue until a hang-up or error is known (`FdState::hup`).
    Hangup,
}

impl State {
    /// The file a sendfile reads.
    pub(super) fn sendfile_file(&self) -> Option<RawFd> {
        match self {
            State::SendFile(s) => Some(s.file),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub(super) struct Slot {
    pub(super) token: Token,
    pub(super) fd: RawFd,
    pub(super) next: u32,
    pub(super) state: State,
}

impl Slot {
    pub(super) fn live(&self) -> bool {
        !matches!(self.state, State::Free)
    }
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
    /// A SendFile moved its round ([`Poller::SENDFILE_ROUND`]) and is not done: the fd is
    /// still writable, and goes again after the other ready fds.
    Yield,
}

fn last(token: Token, result: io::Result<usize>) -> Step {
    Step::Done(Completion::new(token, result, Buf::None, false), false)
}

impl<P: Poller> Readiness<P> {
    pub(super) fn alloc(&mut self, token: Token, fd: RawFd, state: State) -> u32 {
        if let Some(file) = state.sendfile_file() {
            *self.file_users.entry(file).or_insert(0) += 1;
        }
        self.slots.alloc(Slot {
            token,
            fd,
            next: NIL,
            state,
        })
    }

    /// Free slot `idx`, returning what it owned.
    pub(super) fn free(&mut self, idx: u32) -> (Token, State) {
        let s = &mut self.slots[idx];
        let state = std::mem::replace(&mut s.state, State::Free);
        let token = s.token;
        self.slots.release(idx);
        if let Some(file) = state.sendfile_file() {
            if let std::collections::hash_map::Entry::Occupied(mut e) = self.file_users.entry(file)
            {
                *e.get_mut() -= 1;
                if *e.get() == 0 {
                    e.remove();
                }
            }
        }
        (token, state)
    }

    /// The last completion of an op that is over (`result`), with every buffer it owned; its
    /// box is kept for the next op of its kind.
    pub(super) fn ended(
        &mut self,
        token: Token,
        result: io::Result<usize>,
        state: State,
    ) -> Completion {
        let buf = match state {
            State::Send(mut s) => {
                let buf = std::mem::take(&mut s.buf);
                if self.spare_sends.len() < SPARE_BOXES {
                    self.spare_sends.push(s);
                }
                Buf::Send(buf)
            }
            State::Read(f) | State::Write(f) => Buf::Vec(f.buf),
            State::SendFile(s) => {
                if self.spare_sendfiles.len() < SPARE_BOXES {
                    self.spare_sendfiles.push(s);
                }
                Buf::None
            }
            _ => Buf::None,
        };
        Completion::new(token, result, buf, false)
    }

    /// A send's state, in a spare box when there is one.
    pub(super) fn send_state(&mut self, buf: SendBuf) -> State {
        let mut s = self.spare_sends.pop().unwrap_or_default();
        s.buf = buf;
        s.done = 0;
        State::Send(s)
    }

    /// A sendfile's state, in a spare box when there is one.
    pub(super) fn sendfile_state(&mut self, file: RawFd, offset: u64, len: usize) -> State {
        let mut s = self.spare_sendfiles.pop().unwrap_or_default();
        *s = SendFileState {
            file,
            offset,
            len,
            done: 0,
        };
        State::SendFile(s)
    }

    /// Try operation `idx` on `fd` once.
    fn step(&mut self, fd: RawFd, idx: u32) -> Step {
        let token = self.slots[idx].token;
        let send_flags = P::SEND_FLAGS;
        match &mut self.slots[idx].state {
            State::Accept => loop {
                match self.poller.accept(fd) {
                    Ok(new) => {
                        let c = Completion::new(token, Ok(new as usize), Buf::None, true);
                        return Step::Done(c, true);
                    }
                    Err(e) if sys::would_block(&e) => return Step::WouldBlock,
                    // The peer gave up before we accepted: not the listener's error.
                    Err(e)
                        if sys::interrupted(&e) || e.raw_os_error() == Some(libc::ECONNABORTED) => {
                    }
                    Err(e) => return last(token, Err(e)),
                }
            },
            State::Recv => {
                let size = self.pool.size();
                match self.pool.recv(fd) {
                    Received::Starved => Step::Starved,
                    Received::Eof => last(token, Ok(0)),
                    Received::WouldBlock => Step::WouldBlock,
                    Received::Failed(e) => last(token, Err(e)),
                    Received::Data(buf) => {
                        let n = buf.len();
                        let c = Completion::new(token, Ok(n), Buf::Recv(buf), true);
                        // epoll(7): a short read on a stream socket means it is drained for now.
                        if n < size {
                            Step::DoneDrained(c)
                        } else {
                            Step::Done(c, true)
                        }
                    }
                }
            }
            State::Read(f) => loop {
                match sys::read_spare(fd, &mut f.buf, f.offset) {
                    Err(e) if sys::would_block(&e) => return Step::WouldBlock,
                    Err(e) if sys::interrupted(&e) => {}
                    r => return last(token, r),
                }
            },
            State::Send(s) => loop {
                let (a, b) = s.buf.remaining(s.done);
                if a.is_empty() && b.is_empty() {
                    return last(token, Ok(s.done));
                }
                match sys::send2(fd, a, b, send_flags) {
                    Ok(n) => s.done += n,
                    Err(e) if sys::would_block(&e) => return Step::WouldBlock,
                    Err(e) if sys::interrupted(&e) => {}
                    Err(e) => return last(token, Err(e)),
                }
            },
            State::Write(f) => loop {
                if f.done == f.buf.len() {
                    return last(token, Ok(f.done));
                }
                let at = f.offset.map(|o| o + f.done as u64);
                match sys::write_at(fd, &f.buf[f.done..], at) {
                    Ok(n) => f.done += n,
                    Err(e) if sys::would_block(&e) => return Step::WouldBlock,
                    Err(e) if sys::interrupted(&e) => {}
                    Err(e) => return last(token, Err(e)),
                }
            },
            State::SendFile(s) => {
                // At most a round per turn of the fd (fairness, and cheaper on the wire: see
                // `Poller::SENDFILE_ROUND`); then the other ready fds go first.
                let (len, round) = (s.len, P::SENDFILE_ROUND);
                match sys::sendfile_loop(fd, s.file, s.offset, len, round, &mut s.done, P::sendfile)
                {
                    Progress::Yielded => Step::Yield,
                    Progress::Done(sent) => last(token, Ok(sent)),
                    Progress::WouldBlock => Step::WouldBlock,
                    Progress::Failed(e) => last(token, Err(e)),
                }
            }
            State::Free | State::Timer { .. } | State::Child { .. } | State::Hangup => {
                unreachable!("not an fd operation that does I/O")
            }
        }
    }

    /// Run the queued operations of `fd` that its readiness allows. Returns true if the fd
    /// still has runnable work (its budget ran out).
    fn run_fd(&mut self, fd: RawFd, out: &mut Vec<Completion>) -> bool {
        // Hang-up watches do no I/O: once a hang-up is known they all complete.
        while self.fds[fd as usize].has(FdState::HUP) && !self.fds[fd as usize].hangups.is_empty() {
            let idx = self.pop_front(fd, Queue::Hangup);
            let (token, state) = self.free(idx);
            out.push(self.ended(token, Ok(0), state));
        }
        let mut more = false;
        for q in [Queue::Read, Queue::Write] {
            let write = q == Queue::Write;
            let mut budget = FD_BUDGET;
            loop {
                let st = &self.fds[fd as usize];
                let (ready, list) = if write {
                    (
                        st.has(FdState::WRITABLE) || st.has(FdState::ALWAYS_READY),
                        st.writes,
                    )
                } else {
                    (
                        st.has(FdState::READABLE) || st.has(FdState::ALWAYS_READY),
                        st.reads,
                    )
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
                    Step::Done(c, keep) => self.finish(fd, q, idx, c, keep, out),
                    Step::DoneDrained(c) => {
                        self.finish(fd, q, idx, c, true, out);
                        let st = &mut self.fds[fd as usize];
                        st.set(FdState::READABLE, st.has(FdState::HUP));
                    }
                    Step::WouldBlock => {
                        let st = &mut self.fds[fd as usize];
                        if write {
                            st.set(FdState::WRITABLE, false)
                        } else {
                            st.set(FdState::READABLE, false)
                        }
                    }
                    Step::Yield => {
                        more = true;
                        break;
                    }
                    Step::Starved => {
                        let st = &mut self.fds[fd as usize];
                        if !st.has(FdState::STARVED) {
                            st.set(FdState::STARVED, true);
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
        q: Queue,
        idx: u32,
        c: Completion,
        keep: bool,
        out: &mut Vec<Completion>,
    ) {
        if keep {
            return out.push(c);
        }
        let head = self.pop_front(fd, q);
        debug_assert_eq!(head, idx);
        let (token, state) = self.free(idx);
        let mut c = match c.buf {
            Buf::None => self.ended(token, c.result, state),
            _ => c,
        };
        c.more = false;
        out.push(c);
    }

    /// Run the ready fds' operations until `out` holds `limit` completions; the fds not
    /// reached stay ready for the next wait.
    pub(super) fn run_ready(&mut self, out: &mut Vec<Completion>, limit: usize) {
        // Swapped with a spare list, both keeping their capacity: no allocation per turn.
        let spare = std::mem::take(&mut self.ready_spare);
        let mut fds = std::mem::replace(&mut self.ready, spare);
        for &fd in &fds {
            self.fds[fd as usize].set(FdState::IN_READY, false);
        }
        let mut reached = 0;
        for &fd in &fds {
            if out.len() >= limit {
                break;
            }
            reached += 1;
            if self.run_fd(fd, out) {
                self.mark_ready(fd);
            }
        }
        // The fds not reached go first next time, before those run again here (which
        // `self.ready` holds so far): else two fds filling the bound turn after turn keep
        // the others waiting for as long as they are busy.
        let again = self.ready.len();
        for &fd in &fds[reached..] {
            self.mark_ready(fd);
        }
        self.ready.rotate_left(again);
        fds.clear();
        self.ready_spare = fds;
    }
}
