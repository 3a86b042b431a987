//! Turning operations into SQEs: validation, slot set-up, and the SQE that (re)starts a slot.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use io_uring::{opcode, squeue, types};

use super::buf_ring::BGID;
use super::state::{OpenOp, SendOp, State, WriteOp, FLAT_MAX};
use super::Uring;
use crate::{sys, Buf, Completion, Op, Token};

impl Uring {
    pub(super) fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every pointer in `entry` refers to memory owned by a live slot (boxed or
            // heap-allocated), which outlives the operation (freed only after its last CQE).
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return Ok(());
            }
            // The SQ is full: hand it to the kernel and try again.
            self.ring.submit()?;
        }
    }

    /// Build and queue the SQE that (re)starts slot `idx`.
    pub(super) fn arm(&mut self, idx: u32) -> io::Result<()> {
        let ud = self.slots.key(idx);
        let multishot_accept = self.features.multishot_accept;
        let slot = &mut self.slots[idx];
        let fd = types::Fd(slot.fd);
        let entry = if slot.polling {
            let dir = match slot.state {
                State::Send { .. } | State::Write { .. } | State::SendFile { .. } => libc::POLLOUT,
                _ => libc::POLLIN,
            };
            opcode::PollAdd::new(fd, dir as u32).build()
        } else {
            match &mut slot.state {
                State::Accept => {
                    let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
                    if multishot_accept {
                        opcode::AcceptMulti::new(fd).flags(flags).build()
                    } else {
                        opcode::Accept::new(fd, std::ptr::null_mut(), std::ptr::null_mut())
                            .flags(flags)
                            .build()
                    }
                }
                State::Recv => opcode::RecvMulti::new(fd, BGID).build(),
                State::RecvPoll => opcode::PollAdd::new(fd, libc::POLLIN as u32).build(),
                State::Hangup => {
                    // POLLHUP and POLLERR are always reported; POLLRDHUP is the peer's FIN.
                    let mask = libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR;
                    opcode::PollAdd::new(fd, mask as u32).build()
                }
                State::Send { op } => {
                    let SendOp {
                        buf,
                        done,
                        msg,
                        iov,
                        flat,
                    } = &mut **op;
                    let (a, b) = buf.remaining(*done);
                    // One piece (or two small ones, copied into `flat`): a plain send.
                    let one = match (a.is_empty(), b.is_empty()) {
                        (true, _) => Some(b),
                        (false, true) => Some(a),
                        (false, false) if a.len() + b.len() <= FLAT_MAX => {
                            flat.clear();
                            flat.extend_from_slice(a);
                            flat.extend_from_slice(b);
                            Some(&flat[..])
                        }
                        (false, false) => None,
                    };
                    if let Some(p) = one {
                        opcode::Send::new(fd, p.as_ptr(), p.len() as u32)
                            .flags(libc::MSG_NOSIGNAL)
                            .build()
                    } else {
                        *iov = sys::iovecs(a, b);
                        // SAFETY: an all-zero msghdr is valid (no name, no control data).
                        *msg = unsafe { std::mem::zeroed() };
                        msg.msg_iov = iov.as_mut_ptr();
                        msg.msg_iovlen = 2;
                        opcode::SendMsg::new(fd, msg)
                            .flags(libc::MSG_NOSIGNAL as u32)
                            .build()
                    }
                }
                State::Read { op } => {
                    let offset = op.offset;
                    let spare = op.buf.spare_capacity_mut();
                    opcode::Read::new(fd, spare.as_mut_ptr().cast(), spare.len() as u32)
                        .offset(offset.unwrap_or(u64::MAX))
                        .build()
                }
                State::Write { op } => {
                    let rest = &op.buf[op.done..];
                    let off = op.offset.map_or(u64::MAX, |o| o + op.done as u64);
                    opcode::Write::new(fd, rest.as_ptr(), rest.len() as u32)
                        .offset(off)
                        .build()
                }
                State::WaitTimer { ts } => opcode::Timeout::new(&**ts as *const _).build(),
                State::Child { pidfd, .. } => {
                    opcode::PollAdd::new(types::Fd(pidfd.as_raw_fd()), libc::POLLIN as u32).build()
                }
                State::Close => opcode::Close::new(fd).build(),
                State::OpenAt { op } => {
                    let dir = types::Fd(op.open.dir.as_raw_fd());
                    opcode::OpenAt2::new(dir, op.open.path.as_ptr(), &op.how).build()
                }
                State::Names { call } => match &**call {
                    crate::PathCall::Rename(r) => {
                        let dir = types::Fd(r.dir.as_raw_fd());
                        let flags = if r.noreplace {
                            libc::RENAME_NOREPLACE
                        } else {
                            0
                        };
                        opcode::RenameAt::new(dir, r.from.as_ptr(), dir, r.to.as_ptr())
                            .flags(flags)
                            .build()
                    }
                    crate::PathCall::Unlink(u) => {
                        let flags = if u.rmdir { libc::AT_REMOVEDIR } else { 0 };
                        opcode::UnlinkAt::new(types::Fd(u.dir.as_raw_fd()), u.path.as_ptr())
                            .flags(flags)
                            .build()
                    }
                    crate::PathCall::Open(_) | crate::PathCall::ListDir(_) => {
                        unreachable!("an open is State::OpenAt, a listing is on the pool")
                    }
                },
                State::Wake { val } => {
                    opcode::Read::new(fd, (&mut **val as *mut u64).cast(), 8).build()
                }
                State::Free
                | State::Timer
                | State::Cancel { .. }
                | State::InternalCancel
                | State::SendFile { .. } => {
                    unreachable!("armed separately")
                }
            }
        };
        slot.in_kernel = true;
        self.push(entry.user_data(ud))
    }

    /// Queue a cancel SQE (of the slot named `target`, or of everything on an fd) under a new
    /// slot `state`.
    pub(super) fn push_cancel(
        &mut self,
        token: Token,
        state: State,
        entry: impl FnOnce() -> squeue::Entry,
    ) -> io::Result<()> {
        let c = self.alloc(token, -1, state);
        let ud = self.slots.key(c);
        self.slots[c].in_kernel = true;
        self.push(entry().user_data(ud))
    }

    /// The fds `op` uses, each valid (EBADF otherwise, before any table is indexed with it).
    fn check_fds(&self, op: &Op) -> io::Result<()> {
        let known = self.fds.len();
        match *op {
            Op::Accept { fd }
            | Op::Recv { fd }
            | Op::Send { fd, .. }
            | Op::Read { fd, .. }
            | Op::Write { fd, .. }
            | Op::Close { fd }
            | Op::Hangup { fd } => sys::check_fd(fd, known),
            Op::SendFile { fd, file, .. } => {
                sys::check_fd(fd, known).and_then(|()| sys::check_fd(file, known))
            }
            // The kernel answers EBADF for a bad directory fd.
            Op::Cancel { .. }
            | Op::Timeout { .. }
            | Op::ChildExit { .. }
            | Op::OpenAt(_)
            | Op::RenameAt(_)
            | Op::UnlinkAt(_)
            | Op::ListDir(_) => Ok(()),
        }
    }

    pub(super) fn start(
        &mut self,
        token: Token,
        op: Op,
        out: &mut Vec<Completion>,
    ) -> io::Result<()> {
        self.stats.submitted[op.kind() as usize] += 1;
        if let Err(e) = self.check_fds(&op) {
            let buf = match op {
                Op::Send { buf, .. } => Buf::Send(buf),
                Op::Read { buf, .. } | Op::Write { buf, .. } => Buf::Vec(buf),
                _ => Buf::None,
            };
            out.push(Completion::new(token, Err(e), buf, false));
            return Ok(());
        }
        let (fd, state): (RawFd, State) = match op {
            Op::Accept { fd } => (fd, State::Accept),
            Op::Recv { fd } if self.multishot_recv => (fd, State::Recv),
            Op::Recv { fd } => (fd, State::RecvPoll),
            Op::Hangup { fd } => (fd, State::Hangup),
            Op::Send { fd, buf } => {
                if buf.is_empty() {
                    out.push(Completion::new(token, Ok(0), Buf::Send(buf), false));
                    return Ok(());
                }
                // A box of a finished send is reused (no allocation per send).
                let op = match self.spare_sends.pop() {
                    Some(mut op) => {
                        op.buf = buf;
                        op.done = 0;
                        op
                    }
                    None => Box::new(SendOp {
                        buf,
                        done: 0,
                        // SAFETY: all-zero is a valid msghdr; filled in by `arm`.
                        msg: unsafe { std::mem::zeroed() },
                        iov: [libc::iovec {
                            iov_base: std::ptr::null_mut(),
                            iov_len: 0,
                        }; 2],
                        flat: Vec::new(),
                    }),
                };
                (fd, State::Send { op })
            }
            Op::Read { fd, buf, offset } => {
                let op = Box::new(super::state::ReadOp { buf, offset });
                (fd, State::Read { op })
            }
            Op::Write { fd, buf, offset } => {
                if buf.is_empty() {
                    out.push(Completion::new(token, Ok(0), Buf::Vec(buf), false));
                    return Ok(());
                }
                let op = Box::new(WriteOp {
                    buf,
                    done: 0,
                    offset,
                });
                (fd, State::Write { op })
            }
            Op::Timeout { deadline } => {
                let idx = self.alloc(token, -1, State::Timer);
                self.timers.add(self.slots.key(idx), deadline);
                return Ok(());
            }
            Op::ChildExit { pid } => match crate::linux::pidfd_open(pid) {
                Ok(pidfd) => (-1, State::Child { pid, pidfd }),
                Err(e) => {
                    out.push(Completion::new(token, Err(e), Buf::None, false));
                    return Ok(());
                }
            },
            Op::SendFile {
                fd,
                file,
                offset,
                len,
            } => {
                let mut op = self.spare_sendfiles.pop().unwrap_or_default();
                *op = super::state::SendFileOp {
                    file,
                    offset,
                    len,
                    ..Default::default()
                };
                let idx = self.alloc(token, fd, State::SendFile { op });
                return self.file_send_step(idx, out);
            }
            Op::Close { fd } => return self.close(token, fd),
            Op::Cancel { target } => return self.cancel(token, target, out),
            Op::OpenAt(open) => {
                const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
                const RESOLVE_NO_SYMLINKS: u64 = 0x04;
                const RESOLVE_BENEATH: u64 = 0x08;
                let resolve = match (open.beneath, open.no_symlinks) {
                    (false, _) => 0,
                    (true, false) => RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
                    (true, true) => RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS,
                };
                let creating = open.flags & (libc::O_CREAT | libc::O_TMPFILE) != 0;
                let how = types::OpenHow::new()
                    .flags((open.flags | libc::O_CLOEXEC) as u64)
                    // openat2 refuses a mode without O_CREAT/O_TMPFILE.
                    .mode(if creating { u64::from(open.mode) } else { 0 })
                    .resolve(resolve);
                let op = Box::new(OpenOp { open, how });
                (-1, State::OpenAt { op })
            }
            Op::ListDir(l) => {
                // No opcode reads a directory: the pool runs it, and its result comes back
                // after the eventfd wake-up (`complete`, `State::Wake`).
                let call = crate::offload::Call::Path(crate::PathCall::ListDir(l));
                if let Err(e) = self.offload.submit(crate::offload::Job { token, call }) {
                    out.push(Completion::new(token, Err(e), Buf::None, false));
                }
                return Ok(());
            }
            op @ (Op::RenameAt(_) | Op::UnlinkAt(_)) => {
                let Ok(call) = op.into_path_call() else {
                    unreachable!("a path op")
                };
                (
                    -1,
                    State::Names {
                        call: Box::new(call),
                    },
                )
            }
        };
        let idx = self.alloc(token, fd, state);
        self.arm(idx)
    }
}
