//! What the backend keeps per operation (slots) and per fd, and the rule for when an fd's
//! operations are over.

use std::io;
use std::os::fd::{OwnedFd, RawFd};

use io_uring::types;

use super::Uring;
use crate::{Buf, Completion, SendBuf, Token};

/// A send in flight: its buffer, progress, and the message header and iovecs the kernel reads,
/// boxed so their address is stable (and an idle slot stays small).
pub(super) struct SendOp {
    pub(super) buf: SendBuf,
    pub(super) done: usize,
    pub(super) msg: libc::msghdr,
    pub(super) iov: [libc::iovec; 2],
}

/// How many boxes of finished sends are kept for the next ones.
pub(super) const SPARE_SENDS: usize = 64;

/// An open in flight: the path and `open_how` the kernel reads, boxed so their addresses are
/// stable until the completion.
pub(super) struct OpenOp {
    pub(super) open: crate::Open,
    pub(super) how: types::OpenHow,
}

/// A write in flight (pipes, files), boxed for the same reasons.
pub(super) struct WriteOp {
    pub(super) buf: Vec<u8>,
    pub(super) done: usize,
    pub(super) offset: Option<u64>,
}

/// A read in flight (boxed: an idle slot, an armed recv, stays small).
pub(super) struct ReadOp {
    pub(super) buf: Vec<u8>,
    pub(super) offset: Option<u64>,
}

/// A sendfile in flight (boxed as reads are; finished boxes are reused). The fields after
/// `done` serve the splice ([`super::file_send`]).
#[derive(Default)]
pub(super) struct SendFileOp {
    pub(super) file: RawFd,
    pub(super) offset: u64,
    pub(super) len: usize,
    /// Bytes that reached the socket.
    pub(super) done: usize,
    /// Splice: the op's pipe, taken from the pool while the op runs.
    pub(super) pipe: Option<super::file_send::Pipe>,
    /// No pipe could be had: this op runs as `sendfile(2)`.
    pub(super) inline: bool,
    /// Bytes spliced into the pipe and not yet out of it.
    pub(super) held: usize,
    /// CQEs still to come for the SQEs in flight (a linked fill + drain is two).
    pub(super) cqes: u8,
    /// The next CQE is the fill's (file → pipe), else the drain's (pipe → socket).
    pub(super) filling: bool,
    /// The drain found the socket full: poll for POLLOUT before the next round.
    pub(super) full: bool,
    /// The error the op ends with once its last CQE is in.
    pub(super) err: Option<io::Error>,
}

pub(super) enum State {
    Free,
    Accept,
    Recv,
    /// Single-shot fallback: a poll is armed; data is read with `recv(2)` when it fires.
    RecvPoll,
    Send {
        op: Box<SendOp>,
    },
    Read {
        op: Box<ReadOp>,
    },
    Write {
        op: Box<WriteOp>,
    },
    /// io_uring has no sendfile: linked splices through a pipe, or the syscall tried on the
    /// non-blocking socket and a poll that waits out EAGAIN ([`super::file_send`]). `file` is
    /// in use by the op as much as the socket is.
    SendFile {
        op: Box<SendFileOp>,
    },
    /// A single-shot poll for the peer's hang-up (`POLLRDHUP | POLLHUP | POLLERR`); never
    /// restarted: it fires only on the event it waits for, or is cancelled.
    Hangup,
    /// `IORING_OP_OPENAT2` (invariant 13): the kernel runs it on its io-wq workers when the
    /// lookup would block.
    OpenAt {
        op: Box<OpenOp>,
    },
    /// `IORING_OP_RENAMEAT` or `IORING_OP_UNLINKAT` (invariant 13), boxed so the names'
    /// addresses stay put until the completion.
    Names {
        call: Box<crate::PathCall>,
    },
    /// In the timer heap, not in the kernel: timers complete in deadline order.
    Timer,
    Child {
        pid: u32,
        pidfd: OwnedFd,
    },
    /// A caller's close: waits until no op on its fd is in flight, then closes.
    Close,
    /// A caller's cancel of the slot `target` names; `hit` once it stopped a restart of it.
    Cancel {
        target: u64,
        hit: bool,
    },
    /// A cancel issued by a close (or by Drop); its result is not reported.
    InternalCancel,
    /// The eventfd read that turns wake-ups into completions.
    Wake {
        val: Box<u64>,
    },
    /// A wait timeout on kernels without EXT_ARG.
    WaitTimer {
        ts: Box<types::Timespec>,
    },
}

impl State {
    /// Operations on a caller's fd: they count as pending on it (close waits for them) and
    /// can be cancelled by token.
    pub(super) fn on_fd(&self) -> bool {
        matches!(
            self,
            State::Accept
                | State::Recv
                | State::RecvPoll
                | State::Send { .. }
                | State::Read { .. }
                | State::Write { .. }
                | State::SendFile { .. }
                | State::Hangup
        )
    }

    /// The second fd an op uses (the file of a sendfile).
    fn second_fd(&self) -> Option<RawFd> {
        match self {
            State::SendFile { op } => Some(op.file),
            _ => None,
        }
    }
}

pub(super) struct Slot {
    pub(super) token: Token,
    pub(super) fd: RawFd,
    /// The kernel holds an SQE for this slot (a CQE without F_MORE has not arrived yet).
    pub(super) in_kernel: bool,
    /// A poll is armed because the op itself said EAGAIN; when it fires, the op is retried.
    pub(super) polling: bool,
    /// A caller's cancel names this op: it is not restarted.
    pub(super) cancelled: bool,
    pub(super) state: State,
}

impl Slot {
    pub(super) fn live(&self) -> bool {
        !matches!(self.state, State::Free)
    }
}

#[derive(Clone, Copy)]
pub(super) struct FdInfo {
    /// Ops using this fd not yet finished (slots allocated).
    pub(super) pending: u32,
    /// Slot of a close waiting for `pending` to reach zero (or NONE).
    pub(super) closing: u32,
}

pub(super) const NONE: u32 = u32::MAX;

impl Uring {
    pub(super) fn fd_info(&mut self, fd: RawFd) -> &mut FdInfo {
        let i = fd as usize;
        if i >= self.fds.len() {
            let none = FdInfo {
                pending: 0,
                closing: NONE,
            };
            self.fds.resize(i + 1, none);
        }
        &mut self.fds[i]
    }

    /// Whether a close of `fd` has been issued and waits for its ops.
    pub(super) fn closing(&self, fd: RawFd) -> bool {
        self.fds.get(fd as usize).is_some_and(|f| f.closing != NONE)
    }

    pub(super) fn alloc(&mut self, token: Token, fd: RawFd, state: State) -> u32 {
        if state.on_fd() {
            self.fd_info(fd).pending += 1;
        }
        if let Some(file) = state.second_fd() {
            self.fd_info(file).pending += 1;
        }
        self.slots.alloc(Slot {
            token,
            fd,
            in_kernel: false,
            polling: false,
            cancelled: false,
            state,
        })
    }

    /// Free a slot whose last completion arrived, returning its token and state. If it was the
    /// last op on an fd that is being closed, the close goes ahead.
    pub(super) fn free(&mut self, idx: u32) -> io::Result<(Token, State)> {
        let s = &mut self.slots[idx];
        let state = std::mem::replace(&mut s.state, State::Free);
        let (token, fd) = (s.token, s.fd);
        s.in_kernel = false;
        self.slots.release(idx);
        if state.on_fd() {
            self.op_over(fd)?;
        }
        if let Some(file) = state.second_fd() {
            self.op_over(file)?;
        }
        Ok((token, state))
    }

    fn op_over(&mut self, fd: RawFd) -> io::Result<()> {
        let info = self.fd_info(fd);
        info.pending -= 1;
        if info.pending == 0 && info.closing != NONE {
            let c = info.closing;
            info.closing = NONE;
            self.arm(c)?;
        }
        Ok(())
    }

    /// Free `idx` and build its last completion, with every buffer it owned.
    pub(super) fn finish(&mut self, idx: u32, result: io::Result<usize>) -> io::Result<Completion> {
        let (token, state) = self.free(idx)?;
        let buf = match state {
            State::Send { mut op } => {
                let buf = std::mem::take(&mut op.buf);
                if self.spare_sends.len() < SPARE_SENDS {
                    self.spare_sends.push(op);
                }
                Buf::Send(buf)
            }
            State::Read { op } => Buf::Vec(op.buf),
            State::SendFile { mut op } => {
                self.file_send_release(&mut op);
                if self.spare_sendfiles.len() < SPARE_SENDS {
                    self.spare_sendfiles.push(op);
                }
                Buf::None
            }
            State::Write { op } => Buf::Vec(op.buf),
            State::Names { call } => call.into_buf(),
            State::OpenAt { op } => crate::PathCall::Open(op.open).into_buf(),
            _ => Buf::None,
        };
        Ok(Completion::new(token, result, buf, false))
    }
}
