//! [`crate::Op::SendFile`] on io_uring, three ways ([`crate::FileSend`]; issue 12, item 1):
//!
//! - `Sendfile`: `sendfile(2)` on the non-blocking socket, inline, and a poll on EAGAIN.
//! - `Splice`: rounds of `IORING_OP_SPLICE` file → pipe linked (`IOSQE_IO_LINK`) to
//!   `IORING_OP_SPLICE` pipe → socket, through a pipe of [`PIPE_SIZE`] taken from a pool.
//! - `ReadSend`: rounds of `IORING_OP_READ` into a reused [`READ_BUF`] buffer linked to
//!   `IORING_OP_SEND` of what was read.
//!
//! A round of the last two is a *fill* (file → pipe or buffer) linked to a *drain* (→ socket),
//! so two CQEs, posted in chain order. A short fill severs the link (the drain completes with
//! ECANCELED); what the fill did move is *held* and the next round drains it alone, as it
//! does the rest of a short drain. A drain that finds the socket full (EAGAIN) polls for
//! POLLOUT first. The slot stays `in_kernel` until the round's last CQE, and only then is the
//! op finished or continued, so a Close or Cancel issued meanwhile ends it with ECANCELED
//! (or it completes with what it finished first), as the `Sendfile` variant does.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use io_uring::{opcode, squeue, types};

use super::complete::errno;
use super::state::{SendFileOp, State};
use super::Uring;
use crate::sys::{cvt, Progress};
use crate::{Completion, FileSend};

/// The pipe size asked for (`F_SETPIPE_SZ`): a 1 MiB response in one round. The kernel may
/// give less (a user over `pipe-user-pages-soft`): the pipe's real size is used.
const PIPE_SIZE: usize = 1 << 20;
/// The read + send buffer of one op.
const READ_BUF: usize = 256 << 10;
/// Pipes and buffers kept for the next ops.
const SPARE: usize = 16;

/// A non-blocking, close-on-exec pipe and its capacity.
pub(super) struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    cap: usize,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two fds into the array it is given.
        cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) })?;
        // SAFETY: both fds are fresh and owned by nothing else.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on a pipe we own; no pointers.
        static SIZE: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
        let size = *SIZE.get_or_init(|| {
            std::env::var("WEBSERV_URING_PIPE_SIZE")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(PIPE_SIZE as i32)
        });
        let set = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, size) };
        let cap = if set > 0 {
            set
        } else {
            // SAFETY: as above.
            cvt(unsafe { libc::fcntl(w.as_raw_fd(), libc::F_GETPIPE_SZ) })?
        };
        Ok(Pipe {
            r,
            w,
            cap: cap as usize,
        })
    }
}

impl Uring {
    /// Start, or continue after a poll, the sendfile in slot `idx`.
    pub(super) fn file_send_step(&mut self, idx: u32, out: &mut Vec<Completion>) -> io::Result<()> {
        match self.file_send {
            FileSend::Sendfile => self.try_sendfile(idx, out),
            FileSend::Splice | FileSend::ReadSend => self.file_send_round(idx, out),
        }
    }

    /// Give the op's pipe and buffer back to the pools (a pipe that still holds bytes is
    /// closed instead: they belong to no one).
    pub(super) fn file_send_release(&mut self, op: &mut SendFileOp) {
        if let Some(p) = op.pipe.take() {
            if op.held == 0 && self.spare_pipes.len() < SPARE {
                self.spare_pipes.push(p);
            }
        }
        if op.buf.capacity() > 0 {
            let buf = std::mem::take(&mut op.buf);
            if self.spare_bufs.len() < SPARE {
                self.spare_bufs.push(buf);
            }
        }
    }

    /// Queue the next round of slot `idx` (none of its SQEs in flight), or finish it.
    fn file_send_round(&mut self, idx: u32, out: &mut Vec<Completion>) -> io::Result<()> {
        if self.stopped(idx) {
            return self.restart(idx, out); // finishes it with ECANCELED
        }
        let splice = self.file_send == FileSend::Splice;
        let (spare_pipe, spare_buf) = {
            let State::SendFile { op } = &self.slots[idx].state else {
                unreachable!("sendfile slot");
            };
            if op.done == op.len {
                let n = op.len;
                let c = self.finish(idx, Ok(n))?;
                out.push(c);
                return Ok(());
            }
            let pipe = (splice && op.pipe.is_none()).then(|| self.spare_pipes.pop());
            let buf = (!splice && op.buf.capacity() == 0).then(|| self.spare_bufs.pop());
            (pipe, buf)
        };
        let pipe = match spare_pipe {
            Some(Some(p)) => Some(p),
            Some(None) => match Pipe::new() {
                Ok(p) => Some(p),
                Err(e) => {
                    let c = self.finish(idx, Err(e))?;
                    out.push(c);
                    return Ok(());
                }
            },
            None => None,
        };
        let buf = spare_buf.map(|b| b.unwrap_or_else(|| Vec::with_capacity(READ_BUF)));
        let ud = self.slots.key(idx);
        let slot = &mut self.slots[idx];
        let sock = types::Fd(slot.fd);
        let State::SendFile { op } = &mut slot.state else {
            unreachable!("sendfile slot");
        };
        if pipe.is_some() {
            op.pipe = pipe;
        }
        if let Some(b) = buf {
            op.buf = b;
        }
        let more = |n: usize| op.done + n < op.len;
        let (fill, drain) = if op.held > 0 {
            // What an earlier round read and did not send: drain it alone.
            let n = op.held;
            let drain = if let Some(p) = &op.pipe {
                let flags = libc::SPLICE_F_MOVE | if more(n) { libc::SPLICE_F_MORE } else { 0 };
                opcode::Splice::new(types::Fd(p.r.as_raw_fd()), -1, sock, -1, n as u32)
                    .flags(flags)
                    .build()
            } else {
                // SAFETY: `from + held` lies within the bytes the read put in `buf`.
                let at = unsafe { op.buf.as_ptr().add(op.from) };
                opcode::Send::new(sock, at, n as u32)
                    .flags(libc::MSG_NOSIGNAL | if more(n) { libc::MSG_MORE } else { 0 })
                    .build()
            };
            (None, drain)
        } else {
            let at = op.offset + op.done as u64;
            let (fill, drain) = if let Some(p) = &op.pipe {
                let n = (op.len - op.done).min(p.cap);
                let fill = opcode::Splice::new(
                    types::Fd(op.file),
                    at as i64,
                    types::Fd(p.w.as_raw_fd()),
                    -1,
                    n as u32,
                )
                .build();
                let flags = libc::SPLICE_F_MOVE | if more(n) { libc::SPLICE_F_MORE } else { 0 };
                let drain = opcode::Splice::new(types::Fd(p.r.as_raw_fd()), -1, sock, -1, n as u32)
                    .flags(flags)
                    .build();
                (fill, drain)
            } else {
                let n = (op.len - op.done).min(op.buf.capacity());
                op.from = 0;
                let spare = op.buf.spare_capacity_mut();
                let fill =
                    opcode::Read::new(types::Fd(op.file), spare.as_mut_ptr().cast(), n as u32)
                        .offset(at)
                        .build();
                // The send reads what the read wrote: the link orders them, and a short read
                // severs it (the send is cancelled, the next round sends what was read).
                let drain = opcode::Send::new(sock, op.buf.as_ptr(), n as u32)
                    .flags(libc::MSG_NOSIGNAL | if more(n) { libc::MSG_MORE } else { 0 })
                    .build();
                (fill, drain)
            };
            (Some(fill.flags(squeue::Flags::IO_LINK)), drain)
        };
        op.filling = fill.is_some();
        op.cqes = 1 + u8::from(fill.is_some());
        slot.in_kernel = true;
        if let Some(fill) = fill {
            // A chain must not be split across two submissions (the kernel would run the
            // drain unlinked): make room for both entries first.
            let room = {
                let sq = self.ring.submission();
                sq.capacity() - sq.len()
            };
            if room < 2 {
                self.ring.submit()?;
            }
            self.push(fill.user_data(ud))?;
        }
        self.push(drain.user_data(ud))
    }

    /// One CQE of a splice or read + send round.
    pub(super) fn file_send_cqe(
        &mut self,
        idx: u32,
        res: i32,
        out: &mut Vec<Completion>,
    ) -> io::Result<()> {
        let slot = &mut self.slots[idx];
        let State::SendFile { op } = &mut slot.state else {
            unreachable!("sendfile slot");
        };
        op.cqes = op.cqes.saturating_sub(1);
        if op.filling {
            op.filling = false;
            match res {
                n if n > 0 => {
                    op.held += n as usize;
                }
                // The file is shorter than promised: report, do not spin.
                0 => op.err = Some(io::ErrorKind::UnexpectedEof.into()),
                e => op.err = Some(errno(e)),
            }
        } else {
            match res {
                n if n > 0 => {
                    let n = (n as usize).min(op.held);
                    op.held -= n;
                    op.done += n;
                    op.from += n;
                }
                e if e == -libc::EAGAIN => op.full = true,
                // A link severed by a short or failed fill; a cancel is seen by the next round.
                e if e == -libc::ECANCELED => {}
                0 if op.err.is_none() => op.err = Some(io::ErrorKind::WriteZero.into()),
                e if op.err.is_none() => op.err = Some(errno(e)),
                _ => {}
            }
        }
        if op.cqes > 0 {
            slot.in_kernel = true; // the drain's CQE is still to come
            return Ok(());
        }
        if let Some(e) = op.err.take() {
            let c = self.finish(idx, Err(e))?;
            out.push(c);
            return Ok(());
        }
        if std::mem::take(&mut op.full) {
            return self.poll_then_retry(idx, out);
        }
        self.file_send_round(idx, out)
    }

    /// Push a sendfile forward until it is done, fails, or the socket is full (then poll).
    pub(super) fn try_sendfile(&mut self, idx: u32, out: &mut Vec<Completion>) -> io::Result<()> {
        let sock = self.slots[idx].fd;
        let State::SendFile { op } = &mut self.slots[idx].state else {
            unreachable!("sendfile slot");
        };
        let p = crate::sys::sendfile_loop(
            sock,
            op.file,
            op.offset,
            op.len,
            &mut op.done,
            crate::linux::sendfile,
        );
        match p {
            Progress::Done(n) => {
                let c = self.finish(idx, Ok(n))?;
                out.push(c);
                Ok(())
            }
            Progress::WouldBlock => self.poll_then_retry(idx, out),
            Progress::Failed(e) => {
                let c = self.finish(idx, Err(e))?;
                out.push(c);
                Ok(())
            }
        }
    }
}
