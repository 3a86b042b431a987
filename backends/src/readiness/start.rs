//! Starting operations, closing fds and cancelling by token.

use std::io;
use std::os::fd::RawFd;

use super::fds::{FdState, Queue};
use super::ops::{FileIo, State};
use super::{Poller, Readiness};
use crate::offload::Job;
use crate::{sys, Buf, Completion, Op, Token};

impl<P: Poller> Readiness<P> {
    pub(super) fn start(&mut self, token: Token, op: Op, out: &mut Vec<Completion>) {
        self.stats.submitted[op.kind() as usize] += 1;
        let (fd, q, state) = match op {
            Op::Accept { fd } => (fd, Queue::Read, State::Accept),
            Op::Recv { fd } => (fd, Queue::Read, State::Recv),
            Op::Read { fd, buf, offset } => {
                let io = FileIo {
                    buf,
                    done: 0,
                    offset,
                };
                (fd, Queue::Read, State::Read(Box::new(io)))
            }
            Op::Send { fd, buf } => (fd, Queue::Write, self.send_state(buf)),
            Op::Hangup { fd } => (fd, Queue::Hangup, State::Hangup),
            Op::Write { fd, buf, offset } => {
                let io = FileIo {
                    buf,
                    done: 0,
                    offset,
                };
                (fd, Queue::Write, State::Write(Box::new(io)))
            }
            Op::SendFile {
                fd,
                file,
                offset,
                len,
            } => {
                if let Err(e) = sys::check_fd(file, self.fds.len()) {
                    return out.push(Completion::new(token, Err(e), Buf::None, false));
                }
                (fd, Queue::Write, self.sendfile_state(file, offset, len))
            }
            Op::Close { fd } => {
                if let Some(c) = self.close(token, fd, out) {
                    out.push(c);
                }
                return;
            }
            Op::Cancel { target } => return self.cancel(token, target, out),
            op @ (Op::OpenAt(_) | Op::RenameAt(_) | Op::UnlinkAt(_) | Op::ListDir(_)) => {
                let Ok(call) = op.into_path_call() else {
                    unreachable!("a path op")
                };
                let call = crate::offload::Call::Path(call);
                let job = Job { token, call };
                if let Err(e) = self.offload.submit(job) {
                    out.push(Completion::new(token, Err(e), Buf::None, false));
                }
                return;
            }
            Op::Timeout { deadline } => {
                let idx = self.alloc(token, -1, State::Timer { deadline });
                if let Err(e) = self.poller.add_timer(self.slots.key(idx), deadline) {
                    self.free(idx);
                    out.push(Completion::new(token, Err(e), Buf::None, false));
                }
                return;
            }
            Op::ChildExit { pid } => {
                let idx = self.alloc(token, -1, State::Child { pid });
                if let Err(e) = self.poller.watch_child(self.slots.key(idx), pid) {
                    self.free(idx);
                    out.push(Completion::new(token, Err(e), Buf::None, false));
                }
                return;
            }
        };
        if let Err(e) = self.watch(fd) {
            return out.push(self.ended(token, Err(e), state));
        }
        if matches!(state, State::Read(_) | State::Write(_))
            && self.fds[fd as usize].has(FdState::ALWAYS_READY)
        {
            return self.offload_file(token, fd, state, out);
        }
        let idx = self.alloc(token, fd, state);
        self.push_back(fd, q, idx);
        // Run it at the next turn: a hang-up may be known already (invariant 10).
        self.mark_ready(fd);
    }

    /// Make sure `fd` is registered before an op is queued on it.
    fn watch(&mut self, fd: RawFd) -> io::Result<()> {
        sys::check_fd(fd, self.fds.len())?;
        let st = self.fd_state(fd);
        // With nothing of ours pending on the fd, the caller may have closed it and the number
        // may now name another file (see the contract): register afresh. If the registration
        // is still there (EEXIST) the file is the same one, and what is known of its readiness
        // (a hang-up already reported, say) stays true: no new edge would tell it again.
        if !st.idle() {
            return Ok(()); // registered when its first pending op was queued
        }
        match self.poller.register(fd) {
            Ok(()) => {
                let st = &mut self.fds[fd as usize];
                st.renew();
                st.set(FdState::REGISTERED, true);
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                self.fds[fd as usize].set(FdState::REGISTERED, true);
            }
            // epoll refuses regular files, which are always ready.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                let st = &mut self.fds[fd as usize];
                st.renew();
                st.set(FdState::ALWAYS_READY, true);
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// A read or write of a regular file goes to the offload pool (invariant 13): readiness
    /// says nothing about a file, and the call may wait for the disk.
    fn offload_file(&mut self, token: Token, fd: RawFd, state: State, out: &mut Vec<Completion>) {
        let call = match state {
            State::Read(f) => crate::offload::Call::Read {
                fd,
                buf: f.buf,
                offset: f.offset,
            },
            State::Write(f) => crate::offload::Call::Write {
                fd,
                buf: f.buf,
                offset: f.offset,
            },
            _ => unreachable!("only reads and writes"),
        };
        match self.offload.submit(Job { token, call }) {
            Ok(()) => self.file_jobs.push((token, fd)),
            Err(e) => out.push(Completion::new(token, Err(e), Buf::None, false)),
        }
    }

    /// A job of the pool completed: if it was a file's read or write and the last one on its
    /// fd, a close waiting for it goes ahead.
    pub(super) fn file_job_done(&mut self, token: Token, out: &mut Vec<Completion>) {
        let Some(i) = self.file_jobs.iter().position(|&(t, _)| t == token) else {
            return;
        };
        let (_, fd) = self.file_jobs.swap_remove(i);
        if self.file_jobs.iter().any(|&(_, f)| f == fd) {
            return;
        }
        if let Some(j) = self.closes_waiting.iter().position(|&(f, _)| f == fd) {
            let (_, close) = self.closes_waiting.swap_remove(j);
            if let Some(c) = self.close(close, fd, out) {
                out.push(c);
            }
        }
    }

    /// Close `fd` after ending what is queued on it; `None` when a read or write of it is
    /// running on the pool: the close completes once that is done (invariant 7).
    pub(super) fn close(
        &mut self,
        token: Token,
        fd: RawFd,
        out: &mut Vec<Completion>,
    ) -> Option<Completion> {
        if let Err(e) = sys::check_fd(fd, self.fds.len()) {
            return Some(Completion::new(token, Err(e), Buf::None, false));
        }
        // File jobs not started yet are dropped; running ones are waited for.
        let mut i = 0;
        while i < self.file_jobs.len() {
            let (t, f) = self.file_jobs[i];
            if f == fd && self.offload.cancel(t) == Some(true) {
                self.file_jobs.swap_remove(i);
                out.push(Completion::new(t, Err(sys::canceled()), Buf::None, false));
            } else {
                i += 1;
            }
        }
        if self.file_jobs.iter().any(|&(_, f)| f == fd) {
            self.closes_waiting.push((fd, token));
            return None;
        }
        let registered = self.fd_state(fd).has(FdState::REGISTERED);
        for q in Queue::ALL {
            loop {
                let st = &self.fds[fd as usize];
                let list = match q {
                    Queue::Read => st.reads,
                    Queue::Write => st.writes,
                    Queue::Hangup => st.hangups,
                };
                if list.is_empty() {
                    break;
                }
                let idx = self.pop_front(fd, q);
                let (t, state) = self.free(idx);
                out.push(self.ended(t, Err(sys::canceled()), state));
            }
        }
        if self.file_users.contains_key(&fd) {
            // Sendfiles reading this fd wait on their sockets: they end first (invariant 7).
            let users: Vec<u32> = self
                .slots
                .iter()
                .filter(|(_, s)| s.state.sendfile_file() == Some(fd))
                .map(|(i, _)| i)
                .collect();
            for idx in users {
                let sock = self.slots[idx].fd;
                self.unlink(sock, idx);
                let (t, state) = self.free(idx);
                out.push(self.ended(t, Err(sys::canceled()), state));
            }
        }
        if registered {
            self.poller.deregister(fd);
        }
        let st = &mut self.fds[fd as usize];
        st.renew();
        Some(Completion::new(
            token,
            sys::close(fd).map(|()| 0),
            Buf::None,
            false,
        ))
    }

    pub(super) fn cancel(&mut self, token: Token, target: Token, out: &mut Vec<Completion>) {
        // Cancellation is rare: a scan keeps a token index (and its memory and hashing on every
        // operation) out of the hot path.
        let found = self
            .slots
            .iter()
            .find(|(_, s)| s.token == target && s.live());
        let Some((idx, _)) = found else {
            // An open on the offload pool: dropped if not started, else it completes itself.
            if self.offload.cancel_op(target, token, out) {
                self.file_jobs.retain(|&(t, _)| t != target);
            }
            return;
        };
        let key = self.slots.key(idx);
        let fd = self.slots[idx].fd;
        match self.slots[idx].state {
            State::Timer { .. } => self.poller.remove_timer(key),
            State::Child { .. } => self.poller.unwatch_child(key),
            _ => self.unlink(fd, idx),
        }
        let (t, state) = self.free(idx);
        out.push(self.ended(t, Err(sys::canceled()), state));
        out.push(Completion::new(token, Ok(0), Buf::None, false));
    }
}
