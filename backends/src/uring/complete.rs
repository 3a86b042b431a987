//! CQEs back into completions, and the one rule for every restart the backend makes on its
//! own (a send's continuation, a re-armed receive or single-shot accept, a retry after a poll):
//! the restarted op belongs to the same token, so a Close of its fd or a Cancel of its token
//! issued before covers it, and it ends with ECANCELED instead of restarting.

use std::io;

use io_uring::cqueue;

use super::state::State;
use super::Uring;
use crate::pool::Received;
use crate::sys;
use crate::{Buf, Completion};

pub(super) fn errno(res: i32) -> io::Error {
    io::Error::from_raw_os_error(-res)
}

impl Uring {
    /// A close of one of its fds or a cancel of its token was issued (or the backend is being
    /// dropped): the op ends.
    pub(super) fn stopped(&self, idx: u32) -> bool {
        let s = &self.slots[idx];
        let file_closing = match &s.state {
            State::SendFile { op } => self.closing(op.file),
            _ => false,
        };
        self.dropping || s.cancelled || (s.state.on_fd() && self.closing(s.fd)) || file_closing
    }

    /// Restart slot `idx` unless a close or cancel covers it (module docs).
    pub(super) fn restart(&mut self, idx: u32, out: &mut Vec<Completion>) -> io::Result<()> {
        if !self.stopped(idx) {
            return self.arm(idx);
        }
        if self.slots[idx].cancelled {
            // The cancel that found nothing in the kernel found this: it answers Ok.
            let key = self.slots.key(idx);
            for i in self.cancels_of(key) {
                if let State::Cancel { hit, .. } = &mut self.slots[i].state {
                    *hit = true;
                }
            }
        }
        let c = self.finish(idx, Err(sys::canceled()))?;
        out.push(c);
        Ok(())
    }

    fn cancels_of(&self, key: u64) -> Vec<u32> {
        self.slots
            .iter()
            .filter(|(_, s)| matches!(s.state, State::Cancel { target, .. } if target == key))
            .map(|(i, _)| i)
            .collect()
    }

    /// Wait for the op's fd to be ready (it said EAGAIN), then retry it.
    pub(super) fn poll_then_retry(
        &mut self,
        idx: u32,
        out: &mut Vec<Completion>,
    ) -> io::Result<()> {
        self.slots[idx].polling = true;
        self.restart(idx, out)
    }

    /// Handle one CQE.
    pub(super) fn complete(
        &mut self,
        ud: u64,
        res: i32,
        flags: u32,
        out: &mut Vec<Completion>,
    ) -> io::Result<()> {
        let Some(idx) = self.slots.find(ud) else {
            return Ok(()); // internal cancels of Drop, and the like
        };
        let slot = &mut self.slots[idx];
        if !slot.live() {
            return Ok(()); // a late CQE of a slot already freed
        }
        let more = cqueue::more(flags);
        if !more {
            slot.in_kernel = false;
        }
        let token = slot.token;
        let fd = slot.fd;
        if slot.polling {
            slot.polling = false;
            if res < 0 {
                let c = self.finish(idx, Err(errno(res)))?;
                out.push(c);
                return Ok(());
            }
            if matches!(self.slots[idx].state, State::SendFile { .. }) {
                if self.stopped(idx) {
                    return self.restart(idx, out);
                }
                return self.file_send_step(idx, out);
            }
            return self.restart(idx, out);
        }
        // EAGAIN from an op on a non-blocking fd: wait for readiness, then retry.
        let eagain = res == -libc::EAGAIN;
        match &mut slot.state {
            State::SendFile { .. } => return self.file_send_cqe(idx, res, out),
            State::Free | State::Timer => {}
            State::Accept => {
                if res >= 0 {
                    out.push(Completion::new(token, Ok(res as usize), Buf::None, true));
                } else if !(eagain || res == -libc::ECONNABORTED || res == -libc::EINTR) {
                    if !more {
                        let c = self.finish(idx, Err(errno(res)))?;
                        out.push(c);
                    }
                    return Ok(());
                }
                if !more {
                    self.restart(idx, out)?;
                }
            }
            State::Recv => {
                if res > 0 {
                    let bid = cqueue::buffer_select(flags).expect("recv without a buffer");
                    self.posted = self.posted.saturating_sub(1);
                    // SAFETY: the kernel wrote `res` bytes into buffer `bid`.
                    let buf = unsafe { self.pool.lend(bid, res as usize) };
                    out.push(Completion::new(
                        token,
                        Ok(res as usize),
                        Buf::Recv(buf),
                        true,
                    ));
                    if !more {
                        self.restart(idx, out)?;
                    }
                } else if res == -libc::ENOBUFS {
                    // The ring ran dry: the data waits in the socket. Re-arm at once if the
                    // pool had buffers, else on release.
                    self.grow_ring();
                    if !more {
                        self.starved.push(idx);
                    }
                    if self.top_up() {
                        self.rearm_starved();
                    }
                } else if !more {
                    let result = if res == 0 { Ok(0) } else { Err(errno(res)) };
                    let c = self.finish(idx, result)?;
                    out.push(c);
                }
            }
            State::RecvPoll => {
                if res < 0 {
                    let c = self.finish(idx, Err(errno(res)))?;
                    out.push(c);
                    return Ok(());
                }
                match self.pool.recv(fd) {
                    Received::Data(buf) => {
                        let n = buf.len();
                        out.push(Completion::new(token, Ok(n), Buf::Recv(buf), true));
                        self.restart(idx, out)?;
                    }
                    Received::Starved => self.starved.push(idx),
                    Received::WouldBlock => self.restart(idx, out)?,
                    Received::Eof => {
                        let c = self.finish(idx, Ok(0))?;
                        out.push(c);
                    }
                    Received::Failed(e) => {
                        let c = self.finish(idx, Err(e))?;
                        out.push(c);
                    }
                }
            }
            State::Hangup => {
                // The poll's result is the event mask; ECANCELED when a cancel or close hit it.
                let result = if res >= 0 { Ok(0) } else { Err(errno(res)) };
                let c = self.finish(idx, result)?;
                out.push(c);
            }
            State::Send { .. } | State::Write { .. } => {
                return self.progress(idx, res, eagain, out);
            }
            State::Read { op } => {
                if res >= 0 {
                    // SAFETY: the kernel wrote `res` bytes into the spare capacity.
                    unsafe { op.buf.set_len(op.buf.len() + res as usize) };
                    let c = self.finish(idx, Ok(res as usize))?;
                    out.push(c);
                } else if eagain {
                    return self.poll_then_retry(idx, out);
                } else {
                    let c = self.finish(idx, Err(errno(res)))?;
                    out.push(c);
                }
            }
            State::WaitTimer { .. } => {
                if self.wait_timer.is_some_and(|(i, _)| i == idx) {
                    self.wait_timer = None;
                }
                self.free(idx)?;
            }
            State::Child { pid, .. } => {
                let pid = *pid;
                if res < 0 {
                    let c = self.finish(idx, Err(errno(res)))?;
                    out.push(c);
                    return Ok(());
                }
                match sys::reap(pid) {
                    Ok(None) => self.restart(idx, out)?,
                    r => {
                        let c = self.finish(idx, r.map(|s| s.unwrap_or(0) as u32 as usize))?;
                        out.push(c);
                    }
                }
            }
            State::Names { call } => {
                let result = match (res, &**call) {
                    (r, _) if r >= 0 => Ok(0),
                    // A file system without RENAME_NOREPLACE (rare; the local ones have it):
                    // the link + unlink pair, here.
                    (r, crate::PathCall::Rename(x)) if -r == libc::EINVAL && x.noreplace => {
                        use std::os::fd::AsRawFd;
                        crate::util::link_unlink(x.dir.as_raw_fd(), &x.from, &x.to).map(|()| 0)
                    }
                    (r, _) => Err(errno(r)),
                };
                let c = self.finish(idx, result)?;
                out.push(c);
            }
            State::OpenAt { .. } => {
                let result = if res >= 0 {
                    Ok(res as usize)
                } else {
                    Err(errno(res))
                };
                let c = self.finish(idx, result)?;
                out.push(c);
            }
            State::Close => {
                let result = if res >= 0 { Ok(0) } else { Err(errno(res)) };
                let (t, _) = self.free(idx)?;
                out.push(Completion::new(t, result, Buf::None, false));
            }
            State::Cancel { target, hit } => {
                // EALREADY: the target is running and will complete shortly. ENOENT while the
                // target is still ours: the kernel was between two runs of it, and its restart
                // sees the cancel (or already did: `hit`).
                let (target, hit) = (*target, *hit);
                let between_runs = res == -libc::ENOENT
                    && self
                        .slots
                        .find(target)
                        .is_some_and(|t| self.slots[t].live());
                let result = if res >= 0 || res == -libc::EALREADY || hit || between_runs {
                    Ok(0)
                } else {
                    Err(errno(res))
                };
                let (t, _) = self.free(idx)?;
                out.push(Completion::new(t, result, Buf::None, false));
            }
            State::InternalCancel => {
                self.free(idx)?;
            }
            State::Wake { .. } => {
                if self.dropping {
                    self.free(idx)?;
                    return Ok(());
                }
                // A pool thread's wake-up brings its finished jobs; only the caller's own
                // wake-ups are reported as such.
                let mut done = Vec::new();
                self.offload.take_done(&mut done);
                for (token, result, buf) in done {
                    out.push(Completion::new(token, result, buf, false));
                }
                let user = self
                    .user_woken
                    .swap(false, std::sync::atomic::Ordering::Acquire);
                if res >= 0 && user {
                    out.push(Completion::new(crate::WAKE_TOKEN, Ok(0), Buf::None, false));
                }
                self.arm(idx)?;
            }
        }
        Ok(())
    }

    /// A send or write made progress (`res` bytes, or an error): finish it whole (invariant 6),
    /// wait for readiness on EAGAIN, or report.
    fn progress(
        &mut self,
        idx: u32,
        res: i32,
        eagain: bool,
        out: &mut Vec<Completion>,
    ) -> io::Result<()> {
        if res > 0 {
            let (done, len) = match &mut self.slots[idx].state {
                State::Send { op } => (&mut op.done, op.buf.len()),
                State::Write { op } => (&mut op.done, op.buf.len()),
                _ => unreachable!("progress of a send or write only"),
            };
            *done += res as usize;
            let total = *done;
            if total < len {
                return self.restart(idx, out);
            }
            let c = self.finish(idx, Ok(total))?;
            out.push(c);
        } else if eagain {
            return self.poll_then_retry(idx, out);
        } else {
            let e = if res == 0 {
                io::ErrorKind::WriteZero.into()
            } else {
                errno(res)
            };
            let c = self.finish(idx, Err(e))?;
            out.push(c);
        }
        Ok(())
    }

    pub(super) fn reap(&mut self, out: &mut Vec<Completion>) -> io::Result<()> {
        loop {
            let mut batch: [(u64, i32, u32); 64] = [(0, 0, 0); 64];
            let mut n = 0;
            for cqe in self.ring.completion().take(64) {
                batch[n] = (cqe.user_data(), cqe.result(), cqe.flags());
                n += 1;
            }
            if n == 0 {
                return Ok(());
            }
            for &(ud, res, flags) in &batch[..n] {
                self.complete(ud, res, flags, out)?;
            }
        }
    }
}
