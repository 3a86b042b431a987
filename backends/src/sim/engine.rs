//! The scheduler: operations are absorbed in submission order (checked against the contract),
//! the world moves (children, sends in flight), and a random choice of the ready operations
//! completes, in a random order that the contract allows.

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use super::{Life, Obj, State};
use crate::{Buf, Completion, SendBuf, Token};

fn err(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// What an output operation carries.
#[derive(Debug)]
pub(crate) enum OutBuf {
    Send(SendBuf),
    Vec(Vec<u8>),
    /// The bytes of a SendFile's range, read from the real file when it was submitted.
    File(Vec<u8>),
}

impl OutBuf {
    fn len(&self) -> usize {
        match self {
            OutBuf::Send(b) => b.len(),
            OutBuf::Vec(v) | OutBuf::File(v) => v.len(),
        }
    }
    fn copy_from(&self, done: usize, n: usize, to: &mut std::collections::VecDeque<u8>) {
        match self {
            OutBuf::Send(b) => {
                let (h, body) = b.remaining(done);
                let a = n.min(h.len());
                to.extend(&h[..a]);
                to.extend(&body[..n - a]);
            }
            OutBuf::Vec(v) | OutBuf::File(v) => to.extend(&v[done..done + n]),
        }
    }
    pub(super) fn give_back(self) -> Buf {
        match self {
            OutBuf::Send(b) => Buf::Send(b),
            OutBuf::Vec(v) => Buf::Vec(v),
            OutBuf::File(_) => Buf::None,
        }
    }
}

#[derive(Debug)]
pub(crate) enum P {
    Accept {
        fd: RawFd,
    },
    Recv {
        fd: RawFd,
        /// Data given after the cancel (at most one piece, as a kernel's CQEs in flight).
        late: bool,
    },
    /// Send, SendFile (`file` set) or Write.
    Out {
        fd: RawFd,
        file: Option<RawFd>,
        buf: OutBuf,
        offset: Option<u64>,
        done: usize,
        /// A failure decided at submission (the file range could not be read).
        fail: Option<i32>,
    },
    Read {
        fd: RawFd,
        buf: Vec<u8>,
        offset: Option<u64>,
    },
    Close {
        fd: RawFd,
    },
    /// A watch for the peer's hang-up (FIN or reset).
    Hangup {
        fd: RawFd,
    },
    /// A Cancel: `Ok(0)` (target found) or ENOENT.
    Cancel {
        found: bool,
    },
    Timeout {
        deadline: Instant,
    },
    ChildExit {
        pid: u32,
    },
    /// A real `openat`, `renameat` or `unlinkat` (the simulated world has no files of its
    /// own), done at completion.
    OpenAt {
        job: Box<crate::offload::Job>,
    },
}

#[derive(Debug)]
pub(crate) struct Pending {
    pub token: Token,
    pub p: P,
    pub cancelled: bool,
    pub seq: u64,
}

impl Pending {
    fn fds(&self) -> [Option<RawFd>; 2] {
        match &self.p {
            P::Accept { fd }
            | P::Recv { fd, .. }
            | P::Read { fd, .. }
            | P::Close { fd }
            | P::Hangup { fd } => [Some(*fd), None],
            P::Out { fd, file, .. } => [Some(*fd), *file],
            _ => [None, None],
        }
    }
    pub(super) fn uses(&self, fd: RawFd) -> bool {
        self.fds().contains(&Some(fd))
    }
    pub fn is_send_on(&self, fd: RawFd) -> bool {
        matches!(&self.p, P::Out { fd: f, .. } if *f == fd)
    }
    /// The loop's own long-lived ops (its tick, its accepts and their cancels) are not leaks.
    pub fn is_loop_own(&self) -> bool {
        matches!(
            self.p,
            P::Timeout { .. } | P::Accept { .. } | P::Cancel { .. }
        )
    }
    pub fn is_timer(&self) -> bool {
        matches!(self.p, P::Timeout { .. })
    }
    pub fn describe(&self) -> String {
        let what = match &self.p {
            P::Accept { .. } => "accept",
            P::Recv { .. } => "recv",
            P::Out { file: Some(_), .. } => "sendfile",
            P::Out { .. } => "send/write",
            P::Read { .. } => "read",
            P::Close { .. } => "close",
            P::Cancel { .. } => "cancel",
            P::Hangup { .. } => "hangup",
            P::Timeout { .. } => "timeout",
            P::ChildExit { .. } => "child exit",
            P::OpenAt { job } => job.call.kind().name(),
        };
        let fds: Vec<String> = self
            .fds()
            .iter()
            .flatten()
            .map(|f| format!("{f:#x}"))
            .collect();
        format!("token {:#x} {what} on fd {}", self.token, fds.join("/"))
    }
}

impl State {
    /// Move the world one step: children act, sends and pipe writes make progress.
    fn step_world(&mut self) {
        let now = self.now;
        for c in self.children.iter_mut() {
            c.step(now, &mut self.pipes, &mut self.rng);
        }
        for i in 0..self.pending.len() {
            let Pending { p, cancelled, .. } = &mut self.pending[i];
            if *cancelled {
                continue;
            }
            let P::Out { fd, buf, done, .. } = p else {
                continue;
            };
            let left = buf.len() - *done;
            if left == 0 {
                continue;
            }
            match self.fds.get(fd) {
                Some(Obj::Sock(c)) => {
                    let cl = &mut self.clients[*c];
                    if cl.rst {
                        continue;
                    }
                    let room = cl.window.saturating_sub(cl.from_server.len());
                    let n = left.min(room).min(self.rng.range(1, 64 * 1024));
                    buf.copy_from(*done, n, &mut cl.from_server);
                    *done += n;
                }
                Some(Obj::PipeW(pi)) => {
                    let pipe = &mut self.pipes[*pi];
                    if !pipe.reader {
                        continue;
                    }
                    let n = left.min(pipe.room()).min(self.rng.range(1, 64 * 1024));
                    buf.copy_from(*done, n, &mut pipe.buf);
                    *done += n;
                }
                _ => {}
            }
        }
    }

    /// Whether pending op `i` can complete now.
    fn ready(&self, i: usize) -> bool {
        let p = &self.pending[i];
        if p.cancelled {
            return true;
        }
        match &p.p {
            P::Accept { .. } => !self.backlog.is_empty(),
            P::Recv { fd, .. } => match self.fds.get(fd) {
                Some(Obj::Sock(c)) => {
                    let cl = &self.clients[*c];
                    cl.rst
                        || (!cl.to_server.is_empty() && self.pool.has_free())
                        || (cl.fin && cl.to_server.is_empty())
                }
                _ => true,
            },
            P::Out {
                fd,
                buf,
                done,
                fail,
                ..
            } => {
                fail.is_some()
                    || match self.fds.get(fd) {
                        Some(Obj::Sock(c)) => self.clients[*c].rst || *done == buf.len(),
                        Some(Obj::PipeW(pi)) => !self.pipes[*pi].reader || *done == buf.len(),
                        _ => true,
                    }
            }
            P::Read { fd, .. } => match self.fds.get(fd) {
                Some(Obj::PipeR(pi)) => {
                    let pipe = &self.pipes[*pi];
                    !pipe.buf.is_empty() || !pipe.writer
                }
                _ => true,
            },
            P::Close { fd } => !self
                .pending
                .iter()
                .enumerate()
                .any(|(j, q)| j != i && q.uses(*fd) && q.seq < p.seq),
            P::Cancel { .. } => true,
            P::Hangup { fd } => match self.fds.get(fd) {
                Some(Obj::Sock(c)) => self.clients[*c].rst || self.clients[*c].fin,
                _ => true,
            },
            P::Timeout { deadline } => {
                // Timers complete in deadline order: only the earliest due one is ready.
                *deadline <= self.now
                    && !self.pending.iter().any(|q| {
                        matches!(q.p, P::Timeout { deadline: d } if d < *deadline && !q.cancelled)
                    })
            }
            P::ChildExit { pid } => self
                .children
                .iter()
                .any(|c| c.pid == *pid && matches!(c.life, Life::Exited(_))),
            P::OpenAt { .. } => true,
        }
    }

    /// Complete pending op `i` (it is ready).
    fn complete(&mut self, i: usize) -> Completion {
        let cancelled = self.pending[i].cancelled;
        let token = self.pending[i].token;
        // A cancelled op that had reached a result may report it instead of ECANCELED.
        let honour = cancelled && self.rng.chance(500);
        let faults = self.opts.faults;
        let fault = faults > 0 && self.rng.chance(faults);
        let keep = |s: &mut State, c: Completion| -> Completion {
            if s.trace {
                eprintln!(
                    "sim t={:?}: {:#x} {:?} more={}",
                    s.now, c.token, c.result, c.more
                );
            }
            c
        };
        match &mut self.pending[i].p {
            P::OpenAt { job } => {
                let r = if cancelled && !honour {
                    Err(err(libc::ECANCELED))
                } else {
                    job.call.run()
                };
                // The fd is the caller's (invariant 13), closed by it however it likes: it
                // is tracked for leaks only once an op uses it.
                let buf = match self.pending.remove(i).p {
                    P::OpenAt { job } => job.call.into_buf(),
                    _ => Buf::None,
                };
                keep(self, Completion::new(token, r, buf, false))
            }
            P::Hangup { fd } => {
                let sock = matches!(self.fds.get(fd), Some(Obj::Sock(_)));
                self.pending.remove(i);
                let r = if cancelled {
                    Err(err(libc::ECANCELED))
                } else if !sock {
                    Err(crate::sys::ebadf())
                } else {
                    Ok(0)
                };
                keep(self, Completion::new(token, r, Buf::None, false))
            }
            P::Accept { .. } => {
                if cancelled {
                    self.pending.remove(i);
                    return keep(
                        self,
                        Completion::new(token, Err(err(libc::ECANCELED)), Buf::None, false),
                    );
                }
                if fault {
                    self.pending.remove(i);
                    let e =
                        *self
                            .rng
                            .pick(&[libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM]);
                    return keep(self, Completion::new(token, Err(err(e)), Buf::None, false));
                }
                let c = self.backlog.pop_front().unwrap_or(0);
                let fd = self.new_fd(Obj::Sock(c));
                self.clients[c].fd = Some(fd);
                keep(
                    self,
                    Completion::new(token, Ok(fd as usize), Buf::None, true),
                )
            }
            P::Recv { fd, late } => {
                let fd = *fd;
                let c = match self.fds.get(&fd) {
                    Some(Obj::Sock(c)) => *c,
                    _ => {
                        self.pending.remove(i);
                        return keep(
                            self,
                            Completion::new(token, Err(crate::sys::ebadf()), Buf::None, false),
                        );
                    }
                };
                let has_data = !self.clients[c].to_server.is_empty() && self.pool.has_free();
                if cancelled && !(honour && !*late && has_data) {
                    self.pending.remove(i);
                    return keep(
                        self,
                        Completion::new(token, Err(err(libc::ECANCELED)), Buf::None, false),
                    );
                }
                if cancelled {
                    *late = true;
                }
                if fault && !cancelled {
                    self.clients[c].rst = true;
                    self.clients[c].faulted = true;
                }
                let cl = &mut self.clients[c];
                if cl.rst {
                    self.pending.remove(i);
                    return keep(
                        self,
                        Completion::new(token, Err(err(libc::ECONNRESET)), Buf::None, false),
                    );
                }
                if has_data {
                    let avail = cl.to_server.len();
                    let n = self.rng.range(1, avail.min(self.pool.size()));
                    let cl = &mut self.clients[c];
                    let id = self.pool.take_free().expect("a free buffer");
                    let spare = self.pool.spare(id);
                    spare.extend(cl.to_server.drain(..n));
                    // SAFETY: the `n` bytes of buffer `id` were just written by `extend`.
                    let b = unsafe { self.pool.lend(id, n) };
                    return keep(self, Completion::new(token, Ok(n), Buf::Recv(b), true));
                }
                self.pending.remove(i);
                keep(self, Completion::new(token, Ok(0), Buf::None, false))
            }
            P::Out { .. } => {
                let p = self.pending.remove(i);
                let P::Out {
                    fd,
                    buf,
                    offset,
                    done,
                    fail,
                    ..
                } = p.p
                else {
                    unreachable!()
                };
                let len = buf.len();
                let result = if cancelled && !(honour && done == len) {
                    Err(err(libc::ECANCELED))
                } else if let Some(e) = fail {
                    Err(err(e))
                } else {
                    match self.fds.get(&fd) {
                        Some(Obj::Sock(c)) => {
                            let c = *c;
                            if self.clients[c].rst {
                                Err(err(*self.rng.pick(&[libc::EPIPE, libc::ECONNRESET])))
                            } else if fault {
                                self.clients[c].rst = true;
                                self.clients[c].faulted = true;
                                Err(err(*self.rng.pick(&[libc::ENOBUFS, libc::ECONNRESET])))
                            } else {
                                Ok(len)
                            }
                        }
                        Some(Obj::PipeW(pi)) => {
                            if done < len && !self.pipes[*pi].reader {
                                Err(err(libc::EPIPE))
                            } else {
                                Ok(len)
                            }
                        }
                        _ => real_write(fd, &buf, offset),
                    }
                };
                keep(self, Completion::new(token, result, buf.give_back(), false))
            }
            P::Read { .. } => {
                let p = self.pending.remove(i);
                let P::Read {
                    fd,
                    mut buf,
                    offset,
                } = p.p
                else {
                    unreachable!()
                };
                let result = match self.fds.get(&fd) {
                    _ if cancelled && !honour => Err(err(libc::ECANCELED)),
                    Some(Obj::PipeR(pi)) => {
                        let pipe = &mut self.pipes[*pi];
                        let room = buf.capacity() - buf.len();
                        if pipe.buf.is_empty() || room == 0 {
                            if cancelled && pipe.writer {
                                Err(err(libc::ECANCELED))
                            } else {
                                Ok(0)
                            }
                        } else {
                            let n = self.rng.range(1, room.min(pipe.buf.len()));
                            buf.extend(pipe.buf.drain(..n));
                            Ok(n)
                        }
                    }
                    Some(_) => Err(err(libc::EINVAL)),
                    None => crate::sys::read_spare(fd, &mut buf, offset),
                };
                keep(self, Completion::new(token, result, Buf::Vec(buf), false))
            }
            P::Close { fd } => {
                let fd = *fd;
                self.pending.remove(i);
                let result = match self.fds.remove(&fd) {
                    Some(Obj::Sock(c)) => {
                        let cl = &mut self.clients[c];
                        cl.closed = true;
                        cl.server_fin = true;
                        Ok(0)
                    }
                    Some(Obj::PipeR(pi)) => {
                        self.pipes[pi].reader = false;
                        self.pipes[pi].buf.clear();
                        Ok(0)
                    }
                    Some(Obj::PipeW(pi)) => {
                        self.pipes[pi].writer = false;
                        Ok(0)
                    }
                    None => crate::sys::close(fd).map(|()| 0),
                };
                keep(self, Completion::new(token, result, Buf::None, false))
            }
            P::Cancel { found } => {
                let r = if *found {
                    Ok(0)
                } else {
                    Err(err(libc::ENOENT))
                };
                self.pending.remove(i);
                keep(self, Completion::new(token, r, Buf::None, false))
            }
            P::Timeout { .. } => {
                self.pending.remove(i);
                let r = if cancelled {
                    Err(err(libc::ECANCELED))
                } else {
                    Ok(0)
                };
                keep(self, Completion::new(token, r, Buf::None, false))
            }
            P::ChildExit { pid } => {
                let pid = *pid;
                self.pending.remove(i);
                let Some(c) = self.children.iter_mut().find(|c| c.pid == pid) else {
                    return keep(
                        self,
                        Completion::new(token, Err(err(libc::ECHILD)), Buf::None, false),
                    );
                };
                match c.life {
                    Life::Exited(st) if !cancelled || honour => {
                        c.life = Life::Reaped;
                        keep(
                            self,
                            Completion::new(token, Ok(st as usize), Buf::None, false),
                        )
                    }
                    _ => keep(
                        self,
                        Completion::new(token, Err(err(libc::ECANCELED)), Buf::None, false),
                    ),
                }
            }
        }
    }

    /// When something happens by itself next (a timer, a child), after now.
    fn next_event(&self) -> Option<Instant> {
        let timers = self.pending.iter().filter_map(|p| match p.p {
            P::Timeout { deadline } if !p.cancelled => Some(deadline),
            _ => None,
        });
        let kids = self.children.iter().filter_map(|c| c.next_event());
        timers.chain(kids).filter(|t| *t > self.now).min()
    }

    pub(crate) fn wait(
        &mut self,
        out: &mut Vec<Completion>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        for (token, op) in std::mem::take(&mut self.queued) {
            self.absorb(token, op, out);
        }
        let limit = timeout.map(|t| self.now + t);
        let before = out.len();
        for _ in 0..100_000 {
            self.step_world();
            let ready: Vec<usize> = (0..self.pending.len()).filter(|&i| self.ready(i)).collect();
            if !ready.is_empty() {
                let n = self.rng.range(1, self.opts.max_batch.min(ready.len()));
                for _ in 0..n {
                    let ready: Vec<usize> =
                        (0..self.pending.len()).filter(|&i| self.ready(i)).collect();
                    if ready.is_empty() {
                        break;
                    }
                    let i = *self.rng.pick(&ready);
                    self.choices += 1;
                    let c = self.complete(i);
                    out.push(c);
                }
                return Ok(());
            }
            if out.len() > before {
                return Ok(());
            }
            // Nothing ready: let the children act, else jump to the next event.
            if self
                .children
                .iter()
                .any(|c| c.life == Life::Running && c.wake_at <= self.now)
                && self.rng.chance(900)
            {
                continue;
            }
            match (self.next_event(), limit) {
                (Some(t), Some(l)) if t > l => {
                    self.now = self.now.max(l);
                    return Ok(());
                }
                (Some(t), _) => self.now = t,
                (None, Some(l)) => {
                    self.now = self.now.max(l);
                    return Ok(());
                }
                (None, None) => {
                    return Err(io::Error::other(
                        "simulation: nothing can complete and nothing is scheduled \
                         (the loop would block forever)",
                    ))
                }
            }
        }
        Err(io::Error::other("simulation: no progress in 100000 steps"))
    }
}

fn real_write(fd: RawFd, buf: &OutBuf, offset: Option<u64>) -> io::Result<usize> {
    let data: &[u8] = match buf {
        OutBuf::Vec(v) | OutBuf::File(v) => v,
        OutBuf::Send(_) => return Err(err(libc::ENOTSOCK)),
    };
    let mut done = 0;
    while done < data.len() {
        let n = crate::sys::write_at(fd, &data[done..], offset.map(|o| o + done as u64))?;
        if n == 0 {
            return Err(err(libc::EIO));
        }
        done += n;
    }
    Ok(done)
}
