//! Submission: each operation is taken in, in submission order, and checked against the
//! contract (token reuse, a second send or receive on one fd, use after Close, a send after
//! `shutdown_write`); a Close or Cancel marks what it covers as cancelled.

use std::os::fd::RawFd;

use super::engine::{OutBuf, Pending, P};
use super::{Life, Obj, State};
use crate::{Buf, Completion, Op, Token, WAKE_TOKEN};

impl State {
    pub(super) fn is_real(fd: RawFd) -> bool {
        fd < super::FD_BASE
    }

    /// An op names `fd`: check it is usable (not closed, not closing).
    fn check_fd(&mut self, fd: RawFd, what: &str) -> bool {
        if Self::is_real(fd) {
            if fd < 0 {
                return false;
            }
            if !self.listeners.contains(&fd) {
                if let Some(id) = super::file_id(fd) {
                    self.real_open.insert(fd, id);
                }
            }
            return true;
        }
        if self.closed.contains(&fd) {
            self.violation(format!("{what} on fd {fd:#x} after its Close"));
            return false;
        }
        if !self.fds.contains_key(&fd) {
            self.violation(format!("{what} on fd {fd:#x}, never opened"));
            return false;
        }
        true
    }

    fn push(&mut self, token: Token, p: P, out: &mut Vec<Completion>) {
        let _ = out;
        self.seq += 1;
        let seq = self.seq;
        self.pending.push(Pending {
            token,
            p,
            cancelled: false,
            seq,
        });
    }

    pub(super) fn absorb(&mut self, token: Token, op: Op, out: &mut Vec<Completion>) {
        if token == WAKE_TOKEN || self.pending.iter().any(|p| p.token == token) {
            self.violation(format!(
                "token {token:#x} reused while in flight (a new {})",
                op.kind().name()
            ));
        }
        let what = op.kind().name();
        let bad = |s: &mut State, out: &mut Vec<Completion>, buf: Buf| {
            out.push(Completion::new(token, Err(crate::sys::ebadf()), buf, false));
            let _ = s;
        };
        match op {
            Op::Accept { fd } => {
                self.listeners.insert(fd);
                self.push(token, P::Accept { fd }, out);
            }
            Op::Recv { fd } => {
                if !self.check_fd(fd, what) {
                    return bad(self, out, Buf::None);
                }
                if self
                    .pending
                    .iter()
                    .any(|p| matches!(p.p, P::Recv { fd: f, .. } if f == fd))
                {
                    self.violation(format!("a second Recv armed on fd {fd:#x}"));
                }
                self.push(token, P::Recv { fd, late: false }, out);
            }
            Op::Send { fd, buf } => self.out_op(token, fd, None, OutBuf::Send(buf), None, out),
            Op::Write { fd, buf, offset } => {
                self.out_op(token, fd, None, OutBuf::Vec(buf), offset, out)
            }
            Op::SendFile {
                fd,
                file,
                offset,
                len,
            } => {
                let mut data = Vec::with_capacity(len);
                let mut fail = None;
                if !self.check_fd(file, what) {
                    fail = Some(libc::EBADF);
                }
                while fail.is_none() && data.len() < len {
                    let at = offset + data.len() as u64;
                    match crate::sys::read_spare(file, &mut data, Some(at)) {
                        Ok(0) => fail = Some(libc::EIO),
                        Ok(_) => {}
                        Err(e) => fail = Some(e.raw_os_error().unwrap_or(libc::EIO)),
                    }
                }
                self.out_op(token, fd, Some(file), OutBuf::File(data), None, out);
                if let Some(P::Out { fail: f, .. }) = self.pending.last_mut().map(|p| &mut p.p) {
                    *f = f.or(fail);
                }
            }
            Op::Read { fd, buf, offset } => {
                if !self.check_fd(fd, what) {
                    return bad(self, out, Buf::Vec(buf));
                }
                self.push(token, P::Read { fd, buf, offset }, out);
            }
            Op::Close { fd } => {
                if !Self::is_real(fd) && !self.check_fd(fd, what) {
                    return bad(self, out, Buf::None);
                }
                if Self::is_real(fd) {
                    self.real_open.remove(&fd);
                } else {
                    self.closed.insert(fd);
                }
                for p in self.pending.iter_mut() {
                    if p.uses(fd) {
                        p.cancelled = true;
                    }
                }
                self.push(token, P::Close { fd }, out);
            }
            Op::Cancel { target } => {
                let mut found = false;
                for p in self.pending.iter_mut() {
                    if p.token == target && !matches!(p.p, P::Close { .. } | P::Cancel { .. }) {
                        p.cancelled = true;
                        found = true;
                    }
                }
                self.push(token, P::Cancel { found }, out);
            }
            Op::Timeout { deadline } => self.push(token, P::Timeout { deadline }, out),
            op @ (Op::OpenAt(_) | Op::RenameAt(_) | Op::UnlinkAt(_) | Op::ListDir(_)) => {
                let Ok(call) = op.into_path_call() else {
                    unreachable!("a path op")
                };
                let call = crate::offload::Call::Path(call);
                let job = Box::new(crate::offload::Job { token, call });
                self.push(token, P::OpenAt { job }, out)
            }
            Op::Hangup { fd } => {
                if !self.check_fd(fd, what) {
                    return bad(self, out, Buf::None);
                }
                self.push(token, P::Hangup { fd }, out);
            }
            Op::ChildExit { pid } => {
                if !self
                    .children
                    .iter()
                    .any(|c| c.pid == pid && c.life != Life::Reaped)
                {
                    self.violation(format!("ChildExit for pid {pid}, not a live child"));
                }
                self.push(token, P::ChildExit { pid }, out);
            }
        }
    }

    fn out_op(
        &mut self,
        token: Token,
        fd: RawFd,
        file: Option<RawFd>,
        buf: OutBuf,
        offset: Option<u64>,
        out: &mut Vec<Completion>,
    ) {
        if !self.check_fd(fd, "send/write") {
            out.push(Completion::new(
                token,
                Err(crate::sys::ebadf()),
                buf.give_back(),
                false,
            ));
            return;
        }
        if self.pending.iter().any(|p| p.is_send_on(fd)) {
            self.violation(format!("two sends/writes in flight on fd {fd:#x}"));
        }
        if let Some(Obj::Sock(c)) = self.fds.get(&fd) {
            if self.clients[*c].server_fin {
                self.violation(format!("send on fd {fd:#x} after shutdown_write"));
            }
        }
        self.push(
            token,
            P::Out {
                fd,
                file,
                buf,
                offset,
                done: 0,
                fail: None,
            },
            out,
        );
    }
}
