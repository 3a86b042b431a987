//! Close, Cancel, and Drop: ending operations the kernel may still hold.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::{opcode, types};

use super::state::{State, NONE};
use super::Uring;
use crate::{sys, Buf, Completion, Token};

impl Uring {
    pub(super) fn close(&mut self, token: Token, fd: RawFd) -> io::Result<()> {
        let idx = self.alloc(token, fd, State::Close);
        if self.fd_info(fd).pending == 0 {
            return self.arm(idx);
        }
        self.fd_info(fd).closing = idx;
        // Starved receives are not in the kernel: finish them here.
        let starved: Vec<u32> = self
            .starved
            .iter()
            .copied()
            .filter(|&s| self.slots[s].fd == fd)
            .collect();
        self.starved.retain(|&s| self.slots[s].fd != fd);
        let mut early = Vec::new();
        for s in starved {
            early.push(self.finish(s, Err(sys::canceled()))?);
        }
        self.early.append(&mut early);
        if self.fds[fd as usize].closing == NONE {
            return Ok(()); // the close was armed by the last `free`
        }
        // Sendfiles reading this fd as their file wait on their socket: cancel them by name.
        let mut targets: Vec<u64> = self
            .slots
            .iter()
            .filter(|(_, s)| {
                s.in_kernel && matches!(&s.state, State::SendFile { op } if op.file == fd)
            })
            .map(|(i, _)| self.slots.key(i))
            .collect();
        if self.features.cancel_fd {
            self.push_cancel(0, State::InternalCancel, || {
                opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd)).all()).build()
            })?;
        } else {
            targets.extend(
                self.slots
                    .iter()
                    .filter(|(_, s)| s.fd == fd && s.in_kernel && s.state.on_fd())
                    .map(|(i, _)| self.slots.key(i)),
            );
        }
        for t in targets {
            self.push_cancel(0, State::InternalCancel, || {
                opcode::AsyncCancel::new(t).build()
            })?;
        }
        Ok(())
    }

    pub(super) fn cancel(
        &mut self,
        token: Token,
        target: Token,
        out: &mut Vec<Completion>,
    ) -> io::Result<()> {
        // Cancellation is rare: a scan keeps a token index out of the hot path.
        let found = self.slots.iter().find(|(_, s)| {
            s.token == target
                && !s.cancelled
                && (s.state.on_fd()
                    || matches!(
                        s.state,
                        State::Timer
                            | State::Child { .. }
                            | State::OpenAt { .. }
                            | State::Names { .. }
                    ))
        });
        let Some((t, _)) = found else {
            // A listing on the pool: dropped if not started, else it completes itself.
            self.offload.cancel_op(target, token, out);
            return Ok(());
        };
        let key = self.slots.key(t);
        if let State::Timer = self.slots[t].state {
            self.timers.remove(key);
        }
        if !self.slots[t].in_kernel {
            // A timer or a starved receive: nothing in the kernel to cancel.
            self.starved.retain(|&s| s != t);
            out.push(self.finish(t, Err(sys::canceled()))?);
            out.push(Completion::new(token, Ok(0), Buf::None, false));
            return Ok(());
        }
        // Whatever the kernel answers, the op is not restarted after this (see `restart`).
        self.slots[t].cancelled = true;
        let state = State::Cancel {
            target: key,
            hit: false,
        };
        self.push_cancel(token, state, || opcode::AsyncCancel::new(key).build())
    }
}

impl Drop for Uring {
    fn drop(&mut self) {
        // Cancel everything and wait (bounded) for the kernel to let go of our memory before
        // the buffers and boxes it may write are freed; whatever it still holds then, and the
        // buffer ring it may read, is leaked rather than freed. No step returns early.
        self.dropping = true;
        let all = || opcode::AsyncCancel2::new(types::CancelBuilder::any().all()).build();
        let _ = self.push(all().user_data(u64::MAX));
        // Timeouts are not reached by ASYNC_CANCEL: remove them explicitly.
        let timers: Vec<u64> = self
            .slots
            .iter()
            .filter(|(_, s)| s.in_kernel && matches!(s.state, State::WaitTimer { .. }))
            .map(|(i, _)| self.slots.key(i))
            .collect();
        for ud in timers {
            let _ = self.push(opcode::TimeoutRemove::new(ud).build().user_data(u64::MAX));
        }
        let mut sink = Vec::new();
        for _ in 0..self.drop_rounds {
            if !self.slots.iter().any(|(_, s)| s.in_kernel) {
                break;
            }
            let ts = types::Timespec::from(Duration::from_millis(10));
            let args = types::SubmitArgs::new().timespec(&ts);
            if self.ring.submitter().submit_with_args(1, &args).is_err() {
                let _ = self.ring.submit();
                std::thread::sleep(Duration::from_millis(1));
            }
            let _ = self.reap(&mut sink);
        }
        drop(sink);
        if self.slots.iter().any(|(_, s)| s.in_kernel) {
            // The kernel still holds some op: leak rather than free memory it may write.
            std::mem::forget(std::mem::replace(
                &mut self.slots,
                crate::slab::Slab::with_room(0, 0),
            ));
            let pool = crate::pool::BufPool::new(0, 0);
            std::mem::forget(std::mem::replace(&mut self.pool, pool));
            std::mem::forget(self.bufring.take());
        }
    }
}
