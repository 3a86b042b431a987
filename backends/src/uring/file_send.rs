//! [`crate::Op::SendFile`] on io_uring, two ways ([`crate::FileSend`]; issue 12, item 1, with
//! the measurements in `benches/load/README.md`):
//!
//! - `Sendfile` (the default since point 7 of the measurements): `sendfile(2)` on the
//!   non-blocking socket, inline, at most [`crate::linux::SENDFILE_ROUND`] per round, and a
//!   poll (POLLOUT) after each round and on EAGAIN.
//! - `Splice`: rounds of `IORING_OP_SPLICE` file → pipe linked
//!   (`IOSQE_IO_LINK`) to `IORING_OP_SPLICE` pipe → socket, through a [`PIPE_SIZE`] pipe taken
//!   from a small pool. An op that cannot get a pipe of that size (no fds left, the user's
//!   pipe quota `fs.pipe-user-pages-soft` spent) runs as `Sendfile`.
//!
//! A splice round is a *fill* (file → pipe) linked to a *drain* (pipe → socket), so two CQEs,
//! posted in chain order. A short fill severs the link (the drain completes with ECANCELED);
//! what the fill did move is *held* in the pipe and the next round drains it alone, as it does
//! the rest of a short drain. A drain that finds the socket full (EAGAIN) polls for POLLOUT
//! first. The slot stays `in_kernel` until the round's last CQE, and only then is the op
//! finished or continued, so a Close or Cancel issued meanwhile ends it with ECANCELED (or it
//! completes with what it finished first), as the `Sendfile` way does. A pipe goes back to the
//! pool only empty; one still holding bytes (the op failed or was cancelled) is closed.
//!
//! Pipes cost descriptors (two each) that a stalled download holds for as long as it stalls:
//! the process keeps at most [`pipe_cap`] of them alive, so that connections and files keep
//! the descriptors they had when SendFile was `sendfile(2)` alone; past it, ops run as
//! `Sendfile`.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use io_uring::{opcode, squeue, types};

use super::complete::errno;
use super::state::{SendFileOp, State};
use super::Uring;
use crate::sys::{cvt, Progress};
use crate::{Completion, FileSend};

/// The pipe size (`F_SETPIPE_SZ`): a round moves at most this much. Measured against 64 KiB,
/// 128 KiB and 1 MiB pipes (README): 256 KiB cost least per response.
const PIPE_SIZE: usize = 256 << 10;
/// Pipes kept for the next ops (each 64 pages of the user's pipe quota, 2 fds).
const SPARE: usize = 16;

/// Pipes alive in this process (every backend's, in use or kept spare).
static PIPES: AtomicUsize = AtomicUsize::new(0);

/// How many pipes the process may have: a sixteenth of `RLIMIT_NOFILE` (read at the first
/// pipe, after the server raised it), so pipes never hold more than an eighth of the
/// descriptors. Without this, stalled downloads took pipes until the table was full and new
/// connections could not be accepted.
fn pipe_cap() -> usize {
    static CAP: OnceLock<usize> = OnceLock::new();
    *CAP.get_or_init(|| usize::try_from(crate::util::nofile_limit() / 16).unwrap_or(usize::MAX))
}

/// One of the process's [`pipe_cap`] pipes, counted in [`PIPES`] while it lives.
struct Counted;

impl Counted {
    fn take() -> io::Result<Counted> {
        let counted = Counted;
        if PIPES.fetch_add(1, Ordering::Relaxed) >= pipe_cap() {
            return Err(io::Error::from_raw_os_error(libc::EMFILE)); // uncounted by the drop
        }
        Ok(counted)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        PIPES.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A non-blocking, close-on-exec pipe of [`PIPE_SIZE`].
pub(super) struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    _counted: Counted,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let counted = Counted::take()?;
        let (r, w) = crate::linux::pipe(libc::O_NONBLOCK)?;
        let pipe = Pipe {
            r,
            w,
            _counted: counted,
        };
        // SAFETY: fcntl on a pipe we own; no pointers.
        let size =
            cvt(unsafe { libc::fcntl(pipe.w.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE as i32) })?;
        if (size as usize) < PIPE_SIZE {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        Ok(pipe)
    }
}

impl Uring {
    /// Start, or continue after a poll, the sendfile in slot `idx`.
    pub(super) fn file_send_step(&mut self, idx: u32, out: &mut Vec<Completion>) -> io::Result<()> {
        let inline = match &self.slots[idx].state {
            State::SendFile { op } => op.inline,
            _ => unreachable!("sendfile slot"),
        };
        match self.file_send {
            FileSend::Splice if !inline => self.splice_round(idx, out),
            _ => self.try_sendfile(idx, out),
        }
    }

    /// Give the op's pipe back to the pool (one that still holds bytes is closed instead:
    /// they belong to no one).
    pub(super) fn file_send_release(&mut self, op: &mut SendFileOp) {
        if let Some(p) = op.pipe.take() {
            if op.held == 0 && self.spare_pipes.len() < SPARE {
                self.spare_pipes.push(p);
            }
        }
    }

    /// Queue the next splice round of slot `idx` (none of its SQEs in flight), or finish it.
    fn splice_round(&mut self, idx: u32, out: &mut Vec<Completion>) -> io::Result<()> {
        if self.stopped(idx) {
            return self.restart(idx, out); // finishes it with ECANCELED
        }
        let (done, len, has_pipe) = match &self.slots[idx].state {
            State::SendFile { op } => (op.done, op.len, op.pipe.is_some()),
            _ => unreachable!("sendfile slot"),
        };
        if done == len {
            let c = self.finish(idx, Ok(len))?;
            out.push(c);
            return Ok(());
        }
        let pipe = if has_pipe {
            None
        } else {
            let no_pipes = self.no_pipes;
            let new = || {
                if no_pipes {
                    Err(io::ErrorKind::OutOfMemory.into())
                } else {
                    Pipe::new()
                }
            };
            match self.spare_pipes.pop().map_or_else(new, Ok) {
                Ok(p) => Some(p),
                Err(_) => {
                    // No pipe (EMFILE, the pipe quota): this op is a sendfile(2).
                    if let State::SendFile { op } = &mut self.slots[idx].state {
                        op.inline = true;
                    }
                    return self.try_sendfile(idx, out);
                }
            }
        };
        let ud = self.slots.key(idx);
        let slot = &mut self.slots[idx];
        let sock = types::Fd(slot.fd);
        let State::SendFile { op } = &mut slot.state else {
            unreachable!("sendfile slot");
        };
        if pipe.is_some() {
            op.pipe = pipe;
        }
        let Some(p) = &op.pipe else {
            unreachable!("a pipe was just set")
        };
        let (r, w) = (types::Fd(p.r.as_raw_fd()), types::Fd(p.w.as_raw_fd()));
        // What an earlier round spliced in and did not send is drained alone; else a fill of
        // up to a pipeful, and its drain.
        let fill_len = if op.held > 0 {
            0
        } else {
            (op.len - op.done).min(PIPE_SIZE)
        };
        let n = op.held + fill_len;
        let more = if op.done + n < op.len {
            libc::SPLICE_F_MORE
        } else {
            0
        };
        let drain = opcode::Splice::new(r, -1, sock, -1, n as u32)
            .flags(libc::SPLICE_F_MOVE | more)
            .build();
        let fill = (fill_len > 0).then(|| {
            let at = op.offset + op.done as u64;
            opcode::Splice::new(types::Fd(op.file), at as i64, w, -1, fill_len as u32)
                .build()
                .flags(squeue::Flags::IO_LINK)
        });
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

    /// One CQE of a splice round.
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
        self.splice_round(idx, out)
    }

    /// Push a sendfile forward until it is done, fails, or the socket is full (then poll).
    pub(super) fn try_sendfile(&mut self, idx: u32, out: &mut Vec<Completion>) -> io::Result<()> {
        let sock = self.slots[idx].fd;
        let State::SendFile { op } = &mut self.slots[idx].state else {
            unreachable!("sendfile slot");
        };
        // A round at a time, a poll in between: other connections' CQEs go first.
        let p = crate::sys::sendfile_loop(
            sock,
            op.file,
            op.offset,
            op.len,
            crate::linux::SENDFILE_ROUND,
            &mut op.done,
            crate::linux::sendfile,
        );
        match p {
            Progress::Done(n) => {
                let c = self.finish(idx, Ok(n))?;
                out.push(c);
                Ok(())
            }
            Progress::Yielded | Progress::WouldBlock => self.poll_then_retry(idx, out),
            Progress::Failed(e) => {
                let c = self.finish(idx, Err(e))?;
                out.push(c);
                Ok(())
            }
        }
    }
}
