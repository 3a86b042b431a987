//! The io_uring backend (Linux): native completions.
//!
//! At start it probes the kernel (`register_probe`, the setup flags it accepts, whether a
//! provided-buffer ring registers) and picks, per feature, the best path it has:
//!
//! | feature | kernel | used for | without it |
//! |---|---|---|---|
//! | `SINGLE_ISSUER`, `DEFER_TASKRUN` | 6.1 | fewer wake-ups, task work run only in our enter | plain ring |
//! | multishot accept | 5.19 | one SQE accepts forever | accept re-armed per connection |
//! | provided-buffer ring + multishot recv | 6.0 | recv without a buffer held while idle | poll, then `recv(2)` into a pool buffer |
//! | `ASYNC_CANCEL_FD` | 5.19 | close cancels all ops on an fd in one SQE | one cancel per op |
//! | `EXT_ARG` | 5.11 | wait with a timeout in the enter call | an internal timeout SQE |
//!
//! Receive buffers are posted to the ring on demand (16 at first, doubling whenever the ring
//! runs dry), most recently released first, so a quiet server touches few buffers. io_uring has
//! no sendfile opcode: [`crate::Op::SendFile`] calls `sendfile(2)` on the non-blocking socket and
//! waits out EAGAIN with a poll.
//!
//! `user_data` is a slot index plus a generation, so a late completion of a freed slot is
//! recognised and dropped. The memory the kernel reads or writes (send iovecs, timespecs, read
//! buffers) lives in boxes or heap buffers owned by the slot until its last completion; a slot
//! is freed only after the kernel has posted a CQE without `F_MORE` for it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use crate::pool::BufPool;
use crate::sys;
use crate::{Backend, Buf, Completion, Op, Options, RecvBuf, SendBuf, Stats, Token, Wake, Waker};

const BGID: u16 = 0;
/// Buffers posted in the provided-buffer ring at start; the ring grows (doubling) when it runs
/// dry, so a quiet server touches only this many receive buffers.
const RING_START: u32 = 16;
/// Generation bits in user_data above the slot index.
const SLOT_BITS: u32 = 32;

/// What the probe found.
#[derive(Clone, Debug, Default)]
pub struct Features {
    pub single_issuer: bool,
    pub defer_taskrun: bool,
    pub multishot_accept: bool,
    pub buf_ring: bool,
    pub cancel_fd: bool,
    pub ext_arg: bool,
    pub nodrop: bool,
}

/// The provided-buffer ring: `entries` slots of `io_uring_buf {addr, len, bid, resv}`, whose
/// first slot's `resv` field doubles as the tail the kernel reads (io_uring_register_buf_ring(3)).
struct BufRing {
    base: *mut types::BufRingEntry,
    layout: std::alloc::Layout,
    mask: u16,
    tail: u16,
}

impl BufRing {
    fn new(entries: u16) -> io::Result<BufRing> {
        let size = entries as usize * std::mem::size_of::<types::BufRingEntry>();
        let layout = std::alloc::Layout::from_size_align(size, 4096)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: the layout has a non-zero size (entries ≥ 1).
        let base = unsafe { std::alloc::alloc_zeroed(layout) } as *mut types::BufRingEntry;
        if base.is_null() {
            return Err(io::Error::from_raw_os_error(libc::ENOMEM));
        }
        Ok(BufRing {
            base,
            layout,
            mask: entries - 1,
            tail: 0,
        })
    }

    /// Stage buffer `bid` at the local tail; the kernel sees it after [`BufRing::publish`].
    fn push(&mut self, bid: u16, addr: *mut u8, len: usize) {
        let i = (self.tail & self.mask) as usize;
        // SAFETY: `i` is below the ring's entry count; the kernel does not read slots past the
        // published tail, so writing this one races with nothing.
        let entry = unsafe { &mut *self.base.add(i) };
        entry.set_addr(addr as u64);
        entry.set_len(len as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail is the u16 at byte offset 14 of the ring (the first entry's `resv`),
        // shared with the kernel; it is written atomically with release ordering so the entries
        // staged before are visible first.
        let tail = unsafe { &*((self.base as *mut u8).add(14) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; the ring is unregistered (or the io_uring
        // closed) before the backend drops this field.
        unsafe { std::alloc::dealloc(self.base as *mut u8, self.layout) }
    }
}

/// A send in flight: its buffer, progress, and the message header and iovecs the kernel reads,
/// boxed so their address is stable (and an idle slot stays small).
struct SendOp {
    buf: SendBuf,
    done: usize,
    msg: libc::msghdr,
    iov: [libc::iovec; 2],
}

/// A write in flight (pipes, files), boxed for the same reasons.
struct WriteOp {
    buf: Vec<u8>,
    done: usize,
    offset: Option<u64>,
}

enum State {
    Free,
    Accept,
    Recv,
    /// Single-shot fallback: a poll is armed; data is read with `recv(2)` when it fires.
    RecvPoll,
    Send {
        op: Box<SendOp>,
    },
    Read {
        buf: Vec<u8>,
        offset: Option<u64>,
    },
    Write {
        op: Box<WriteOp>,
    },
    /// io_uring has no sendfile: the syscall is tried on the non-blocking socket, and a poll
    /// waits out EAGAIN (the readiness pattern, inside the completion backend).
    SendFile {
        file: RawFd,
        offset: u64,
        len: usize,
        done: usize,
    },
    Timer {
        ts: Box<types::Timespec>,
    },
    Child {
        pid: u32,
        pidfd: OwnedFd,
    },
    /// A caller's close: waits until no op on its fd is in flight, then closes.
    Close {
        submitted: bool,
    },
    /// A caller's cancel.
    Cancel,
    /// A cancel issued by a close; its result is not reported.
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
    fn on_fd(&self) -> bool {
        matches!(
            self,
            State::Accept
                | State::Recv
                | State::RecvPoll
                | State::Send { .. }
                | State::Read { .. }
                | State::Write { .. }
                | State::SendFile { .. }
        )
    }
}

struct Slot {
    token: Token,
    fd: RawFd,
    generation: u32,
    /// The kernel holds an SQE for this slot (a CQE without F_MORE has not arrived yet).
    in_kernel: bool,
    /// A poll is armed because the op itself said EAGAIN; when it fires, the op is retried.
    polling: bool,
    state: State,
}

#[derive(Clone, Copy, Default)]
struct FdInfo {
    /// Ops on this fd not yet finished (slots allocated).
    pending: u32,
    /// Slot of a close waiting for `pending` to reach zero (or u32::MAX).
    closing: u32,
}

/// The io_uring backend.
pub struct Uring {
    // Field order matters for Drop: the ring must go before the memory it may still touch.
    ring: IoUring,
    bufring: Option<BufRing>,
    /// Buffers posted in the ring and not yet consumed by a completion.
    posted: u32,
    /// How many buffers the ring is kept topped up to. Starts small and doubles when the ring
    /// runs dry, so only buffers that are really needed are ever touched (RSS), and the most
    /// recently released ones are reused first.
    ring_target: u32,
    pool: BufPool,
    features: Features,
    multishot_recv: bool,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    fds: Vec<FdInfo>,
    queued: Vec<(Token, Op)>,
    /// Recv slots that found no buffer (ENOBUFS): re-armed when one is released.
    starved: Vec<u32>,
    wake: Arc<EventFd>,
    stats: Stats,
    wait_timer_armed: bool,
    /// Completions produced outside `wait` (by `release`, or starved ops a close finished).
    early: Vec<Completion>,
    /// Set by Drop: internal ops are no longer re-armed.
    dropping: bool,
}

struct EventFd(OwnedFd);

impl Wake for EventFd {
    fn wake(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
        let r = unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
        if r < 0 && io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    // SAFETY: uname fills a zeroed utsname.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid out-pointer.
    if unsafe { libc::uname(&mut u) } != 0 {
        return false;
    }
    // SAFETY: uname NUL-terminates `release`.
    let rel = unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }.to_string_lossy();
    let mut parts = rel.split(|c: char| !c.is_ascii_digit());
    let maj: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let min: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (maj, min) >= (major, minor)
}

fn errno(res: i32) -> io::Error {
    io::Error::from_raw_os_error(-res)
}

impl Uring {
    /// Open a ring, probing what the kernel offers. Fails (ENOSYS, EPERM, …) where io_uring is
    /// unavailable; the caller decides whether to fall back.
    pub fn new(opts: &Options) -> io::Result<Uring> {
        let entries = opts.entries.max(8).next_power_of_two();
        let mut features = Features::default();
        let ring = match IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_cqsize(entries * 4)
            .build(entries)
        {
            Ok(r) => {
                features.single_issuer = true;
                features.defer_taskrun = true;
                r
            }
            // EINVAL: a kernel before 6.1 that does not know these flags.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => IoUring::builder()
                .setup_cqsize(entries * 4)
                .build(entries)?,
            Err(e) => return Err(e),
        };
        features.ext_arg = ring.params().is_feature_ext_arg();
        features.nodrop = ring.params().is_feature_nodrop();
        let mut probe = io_uring::Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        for (code, name) in [
            (opcode::Accept::CODE, "ACCEPT"),
            (opcode::Recv::CODE, "RECV"),
            (opcode::SendMsg::CODE, "SENDMSG"),
            (opcode::Read::CODE, "READ"),
            (opcode::Write::CODE, "WRITE"),
            (opcode::Close::CODE, "CLOSE"),
            (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
            (opcode::Timeout::CODE, "TIMEOUT"),
            (opcode::PollAdd::CODE, "POLL_ADD"),
        ] {
            if !probe.is_supported(code) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("io_uring lacks IORING_OP_{name} (kernel too old)"),
                ));
            }
        }
        // Flag-level features are not visible to the opcode probe: the kernel version decides.
        features.multishot_accept = !opts.force_single_shot && kernel_at_least(5, 19);
        features.cancel_fd = kernel_at_least(5, 19);
        let pool = BufPool::new(opts.buf_count, opts.buf_size);
        let mut bufring = None;
        if !opts.force_single_shot && kernel_at_least(6, 0) && opts.buf_count.is_power_of_two() {
            let br = BufRing::new(opts.buf_count)?;
            // SAFETY: the ring memory stays allocated until `Uring` drops, after the io_uring
            // (field order), so the kernel never sees it freed while registered.
            let r = unsafe {
                ring.submitter().register_buf_ring_with_flags(
                    br.base as u64,
                    opts.buf_count,
                    BGID,
                    0,
                )
            };
            if r.is_ok() {
                bufring = Some(br);
                features.buf_ring = true;
            }
        }
        // SAFETY: eventfd returns a new fd we immediately own.
        let efd = unsafe {
            OwnedFd::from_raw_fd(sys::cvt(libc::eventfd(
                0,
                libc::EFD_CLOEXEC | libc::EFD_NONBLOCK,
            ))?)
        };
        let mut u = Uring {
            ring,
            bufring,
            posted: 0,
            ring_target: u32::from(opts.buf_count).min(RING_START),
            pool,
            multishot_recv: features.buf_ring,
            features,
            slots: Vec::new(),
            free_slots: Vec::new(),
            fds: Vec::new(),
            queued: Vec::new(),
            starved: Vec::new(),
            wake: Arc::new(EventFd(efd)),
            stats: Stats::default(),
            wait_timer_armed: false,
            early: Vec::new(),
            dropping: false,
        };
        u.top_up();
        let wfd = u.wake.0.as_raw_fd();
        let idx = u.alloc(crate::WAKE_TOKEN, wfd, State::Wake { val: Box::new(0) });
        u.arm(idx)?;
        Ok(u)
    }

    /// Post free pool buffers into the ring until it holds `ring_target` (most recently
    /// released first). Returns whether the ring has any buffer.
    fn top_up(&mut self) -> bool {
        let Some(br) = self.bufring.as_mut() else {
            return self.pool_has_free();
        };
        let mut pushed = false;
        while self.posted < self.ring_target {
            let Some(id) = self.pool.take_free() else {
                break;
            };
            br.push(id, self.pool.ptr(id), self.pool.size());
            self.posted += 1;
            pushed = true;
        }
        if pushed {
            br.publish();
        }
        self.posted > 0
    }

    fn pool_has_free(&self) -> bool {
        self.pool.lent() < self.pool.count()
    }

    fn rearm_starved(&mut self) {
        for idx in std::mem::take(&mut self.starved) {
            if let Err(e) = self.arm(idx) {
                // Only a failing io_uring_enter gets here; the next wait reports it.
                let (t, st) = self.free(idx).unwrap_or((0, State::Free));
                self.early.push(Self::finished(t, Err(e), st));
            }
        }
    }

    pub fn features(&self) -> &Features {
        &self.features
    }

    fn ud(&self, idx: u32) -> u64 {
        (u64::from(self.slots[idx as usize].generation) << SLOT_BITS) | u64::from(idx)
    }

    fn fd_info(&mut self, fd: RawFd) -> &mut FdInfo {
        let i = fd as usize;
        if i >= self.fds.len() {
            self.fds.resize(
                i + 1,
                FdInfo {
                    pending: 0,
                    closing: u32::MAX,
                },
            );
        }
        &mut self.fds[i]
    }

    fn alloc(&mut self, token: Token, fd: RawFd, state: State) -> u32 {
        let counts = state.on_fd();
        if counts {
            self.fd_info(fd).pending += 1;
        }
        match self.free_slots.pop() {
            Some(i) => {
                let s = &mut self.slots[i as usize];
                s.token = token;
                s.fd = fd;
                s.generation = s.generation.wrapping_add(1);
                s.in_kernel = false;
                s.polling = false;
                s.state = state;
                i
            }
            None => {
                self.slots.push(Slot {
                    token,
                    fd,
                    generation: 0,
                    in_kernel: false,
                    polling: false,
                    state,
                });
                (self.slots.len() - 1) as u32
            }
        }
    }

    /// Free a slot whose last completion arrived, returning its token and state. If it was the
    /// last op on an fd that is being closed, the close goes ahead.
    fn free(&mut self, idx: u32) -> io::Result<(Token, State)> {
        let s = &mut self.slots[idx as usize];
        let state = std::mem::replace(&mut s.state, State::Free);
        let (token, fd) = (s.token, s.fd);
        s.in_kernel = false;
        self.free_slots.push(idx);
        let counts = state.on_fd();
        if counts {
            let info = self.fd_info(fd);
            info.pending -= 1;
            if info.pending == 0 && info.closing != u32::MAX {
                let c = info.closing;
                info.closing = u32::MAX;
                self.arm(c)?;
            }
        }
        Ok((token, state))
    }

    fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
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
    fn arm(&mut self, idx: u32) -> io::Result<()> {
        let ud = self.ud(idx);
        let multishot_accept = self.features.multishot_accept;
        let slot = &mut self.slots[idx as usize];
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
                State::Send { op } => {
                    let SendOp {
                        buf,
                        done,
                        msg,
                        iov,
                    } = &mut **op;
                    let (a, b) = buf.remaining(*done);
                    *iov = [
                        libc::iovec {
                            iov_base: a.as_ptr() as *mut _,
                            iov_len: a.len(),
                        },
                        libc::iovec {
                            iov_base: b.as_ptr() as *mut _,
                            iov_len: b.len(),
                        },
                    ];
                    // SAFETY: an all-zero msghdr is valid (no name, no control data).
                    *msg = unsafe { std::mem::zeroed() };
                    let skip = usize::from(a.is_empty());
                    msg.msg_iov = iov[skip..].as_mut_ptr();
                    msg.msg_iovlen = 2 - skip;
                    opcode::SendMsg::new(fd, msg)
                        .flags(libc::MSG_NOSIGNAL as u32)
                        .build()
                }
                State::Read { buf, offset } => {
                    let spare = buf.spare_capacity_mut();
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
                State::Timer { ts } | State::WaitTimer { ts } => {
                    opcode::Timeout::new(&**ts as *const _).build()
                }
                State::Child { pidfd, .. } => {
                    opcode::PollAdd::new(types::Fd(pidfd.as_raw_fd()), libc::POLLIN as u32).build()
                }
                State::Close { submitted } => {
                    *submitted = true;
                    opcode::Close::new(fd).build()
                }
                State::Wake { val } => {
                    opcode::Read::new(fd, (&mut **val as *mut u64).cast(), 8).build()
                }
                State::Free | State::Cancel | State::InternalCancel | State::SendFile { .. } => {
                    unreachable!("armed separately")
                }
            }
        };
        slot.in_kernel = true;
        self.push(entry.user_data(ud))
    }

    fn start(&mut self, token: Token, op: Op, out: &mut Vec<Completion>) -> io::Result<()> {
        self.stats.submitted[op.kind() as usize] += 1;
        let (fd, state) = match op {
            Op::Accept { fd } => (fd, State::Accept),
            Op::Recv { fd } if self.multishot_recv => (fd, State::Recv),
            Op::Recv { fd } => (fd, State::RecvPoll),
            Op::Send { fd, buf } => {
                if buf.is_empty() {
                    out.push(Completion::new(token, Ok(0), Buf::Send(buf), false));
                    return Ok(());
                }
                let op = Box::new(SendOp {
                    buf,
                    done: 0,
                    // SAFETY: all-zero is a valid msghdr; filled in by `arm`.
                    msg: unsafe { std::mem::zeroed() },
                    iov: [libc::iovec {
                        iov_base: std::ptr::null_mut(),
                        iov_len: 0,
                    }; 2],
                });
                (fd, State::Send { op })
            }
            Op::Read { fd, buf, offset } => (fd, State::Read { buf, offset }),
            Op::Write { fd, buf, offset } => {
                if buf.is_empty() {
                    out.push(Completion::new(token, Ok(0), Buf::Vec(buf), false));
                    return Ok(());
                }
                (
                    fd,
                    State::Write {
                        op: Box::new(WriteOp {
                            buf,
                            done: 0,
                            offset,
                        }),
                    },
                )
            }
            Op::Timeout { deadline } => {
                let d = deadline.saturating_duration_since(Instant::now());
                (
                    -1,
                    State::Timer {
                        ts: Box::new(types::Timespec::from(d)),
                    },
                )
            }
            Op::ChildExit { pid } => {
                // SAFETY: pidfd_open(2) takes a pid and flags; the result is a new fd we own.
                let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
                match sys::cvt(r as libc::c_int) {
                    Ok(pfd) => (
                        -1,
                        State::Child {
                            pid,
                            // SAFETY: a fresh fd from pidfd_open, owned by nothing else.
                            pidfd: unsafe { OwnedFd::from_raw_fd(pfd) },
                        },
                    ),
                    Err(e) => {
                        out.push(Completion::new(token, Err(e), Buf::None, false));
                        return Ok(());
                    }
                }
            }
            Op::SendFile {
                fd,
                file,
                offset,
                len,
            } => {
                let state = State::SendFile {
                    file,
                    offset,
                    len,
                    done: 0,
                };
                let idx = self.alloc(token, fd, state);
                return self.try_sendfile(idx, out);
            }
            Op::Close { fd } => return self.close(token, fd),
            Op::Cancel { target } => return self.cancel(token, target, out),
        };
        let idx = self.alloc(token, fd, state);
        self.arm(idx)
    }

    fn close(&mut self, token: Token, fd: RawFd) -> io::Result<()> {
        let idx = self.alloc(token, fd, State::Close { submitted: false });
        if fd < 0 || self.fd_info(fd).pending == 0 {
            return self.arm(idx);
        }
        self.fd_info(fd).closing = idx;
        // Starved receives are not in the kernel: finish them here.
        let starved: Vec<u32> = self
            .starved
            .iter()
            .copied()
            .filter(|&s| self.slots[s as usize].fd == fd)
            .collect();
        self.starved.retain(|&s| self.slots[s as usize].fd != fd);
        let mut early = Vec::new();
        for s in starved {
            let (t, st) = self.free(s)?;
            early.push(Self::finished(t, Err(sys::canceled()), st));
        }
        self.early.append(&mut early);
        if self.fds[fd as usize].closing == u32::MAX {
            return Ok(()); // the close was armed by the last `free`
        }
        if self.features.cancel_fd {
            let c = self.alloc(0, -1, State::InternalCancel);
            let ud = self.ud(c);
            self.slots[c as usize].in_kernel = true;
            let e = opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd)).all())
                .build()
                .user_data(ud);
            self.push(e)
        } else {
            let targets: Vec<u64> = (0..self.slots.len() as u32)
                .filter(|&i| {
                    let s = &self.slots[i as usize];
                    s.fd == fd && s.in_kernel && !matches!(s.state, State::Close { .. })
                })
                .map(|i| self.ud(i))
                .collect();
            for t in targets {
                let c = self.alloc(0, -1, State::InternalCancel);
                let ud = self.ud(c);
                self.slots[c as usize].in_kernel = true;
                self.push(opcode::AsyncCancel::new(t).build().user_data(ud))?;
            }
            Ok(())
        }
    }

    fn cancel(&mut self, token: Token, target: Token, out: &mut Vec<Completion>) -> io::Result<()> {
        // Cancellation is rare: a scan keeps a token index out of the hot path.
        let found = self.slots.iter().position(|s| {
            s.token == target
                && (s.state.on_fd() || matches!(s.state, State::Timer { .. } | State::Child { .. }))
        });
        let Some(t) = found.map(|i| i as u32) else {
            let e = io::Error::from_raw_os_error(libc::ENOENT);
            out.push(Completion::new(token, Err(e), Buf::None, false));
            return Ok(());
        };
        if !self.slots[t as usize].in_kernel {
            // A starved receive: nothing in the kernel to cancel.
            self.starved.retain(|&s| s != t);
            let (tok, st) = self.free(t)?;
            out.push(Self::finished(tok, Err(sys::canceled()), st));
            out.push(Completion::new(token, Ok(0), Buf::None, false));
            return Ok(());
        }
        let target_ud = self.ud(t);
        let c = self.alloc(token, -1, State::Cancel);
        let ud = self.ud(c);
        self.slots[c as usize].in_kernel = true;
        self.push(opcode::AsyncCancel::new(target_ud).build().user_data(ud))
    }

    /// The completion for an op that is over, with every buffer it owned.
    fn finished(token: Token, result: io::Result<usize>, state: State) -> Completion {
        let buf = match state {
            State::Send { op } => Buf::Send(op.buf),
            State::Read { buf, .. } => Buf::Vec(buf),
            State::Write { op } => Buf::Vec(op.buf),
            _ => Buf::None,
        };
        Completion::new(token, result, buf, false)
    }

    /// Handle one CQE.
    fn complete(
        &mut self,
        ud: u64,
        res: i32,
        flags: u32,
        out: &mut Vec<Completion>,
    ) -> io::Result<()> {
        let idx = ud as u32;
        let Some(slot) = self.slots.get_mut(idx as usize) else {
            return Ok(());
        };
        if u64::from(slot.generation) != ud >> SLOT_BITS || matches!(slot.state, State::Free) {
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
                let (t, st) = self.free(idx)?;
                out.push(Self::finished(t, Err(errno(res)), st));
                return Ok(());
            }
            if matches!(self.slots[idx as usize].state, State::SendFile { .. }) {
                return self.try_sendfile(idx, out);
            }
            return self.arm(idx);
        }
        // EAGAIN from an op on a non-blocking fd: wait for readiness, then retry.
        let eagain = res == -libc::EAGAIN;
        match &mut slot.state {
            State::Free | State::SendFile { .. } => {}
            State::Accept => {
                if res >= 0 {
                    out.push(Completion::new(token, Ok(res as usize), Buf::None, true));
                    if !more {
                        self.arm(idx)?;
                    }
                } else if eagain || res == -libc::ECONNABORTED || res == -libc::EINTR {
                    if !more {
                        self.arm(idx)?;
                    }
                } else if !more {
                    let (t, st) = self.free(idx)?;
                    out.push(Self::finished(t, Err(errno(res)), st));
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
                        self.arm(idx)?;
                    }
                } else if res == -libc::ENOBUFS {
                    // The ring ran dry: the data waits in the socket. Keep more buffers posted
                    // from now on; re-arm at once if the pool had some, else on release.
                    self.ring_target = (self.ring_target * 2).min(self.pool.count() as u32);
                    if !more {
                        self.starved.push(idx);
                    }
                    if self.top_up() {
                        self.rearm_starved();
                    }
                } else if !more {
                    let result = if res == 0 { Ok(0) } else { Err(errno(res)) };
                    let (t, st) = self.free(idx)?;
                    out.push(Self::finished(t, result, st));
                }
            }
            State::RecvPoll => {
                if res < 0 {
                    let (t, st) = self.free(idx)?;
                    out.push(Self::finished(t, Err(errno(res)), st));
                    return Ok(());
                }
                let Some(id) = self.pool.take_free() else {
                    self.starved.push(idx);
                    return Ok(());
                };
                match sys::recv_spare(fd, self.pool.spare(id)) {
                    Ok(0) => {
                        self.pool.put_free(id);
                        let (t, st) = self.free(idx)?;
                        out.push(Self::finished(t, Ok(0), st));
                    }
                    Ok(n) => {
                        // SAFETY: recv initialised `n` bytes of buffer `id`.
                        let buf = unsafe { self.pool.lend(id, n) };
                        out.push(Completion::new(token, Ok(n), Buf::Recv(buf), true));
                        self.arm(idx)?;
                    }
                    Err(e) => {
                        self.pool.put_free(id);
                        if sys::would_block(&e) || sys::interrupted(&e) {
                            self.arm(idx)?;
                        } else {
                            let (t, st) = self.free(idx)?;
                            out.push(Self::finished(t, Err(e), st));
                        }
                    }
                }
            }
            State::Send { .. } | State::Write { .. } => {
                return self.progress(idx, res, eagain, out);
            }
            State::Read { buf, .. } => {
                if res >= 0 {
                    // SAFETY: the kernel wrote `res` bytes into the spare capacity.
                    unsafe { buf.set_len(buf.len() + res as usize) };
                    let (t, st) = self.free(idx)?;
                    out.push(Self::finished(t, Ok(res as usize), st));
                } else if eagain {
                    self.slots[idx as usize].polling = true;
                    return self.arm(idx);
                } else {
                    let (t, st) = self.free(idx)?;
                    out.push(Self::finished(t, Err(errno(res)), st));
                }
            }
            State::Timer { .. } => {
                // -ETIME is the timer expiring; anything else (ECANCELED) is reported.
                let result = if res == -libc::ETIME || res >= 0 {
                    Ok(0)
                } else {
                    Err(errno(res))
                };
                let (t, st) = self.free(idx)?;
                out.push(Self::finished(t, result, st));
            }
            State::WaitTimer { .. } => {
                self.wait_timer_armed = false;
                self.free(idx)?;
            }
            State::Child { pid, .. } => {
                let pid = *pid;
                if res < 0 {
                    let (t, st) = self.free(idx)?;
                    out.push(Self::finished(t, Err(errno(res)), st));
                    return Ok(());
                }
                match sys::reap(pid) {
                    Ok(None) => self.arm(idx)?,
                    r => {
                        let result = r.map(|s| s.unwrap_or(0) as u32 as usize);
                        let (t, st) = self.free(idx)?;
                        out.push(Self::finished(t, result, st));
                    }
                }
            }
            State::Close { .. } => {
                let result = if res >= 0 { Ok(0) } else { Err(errno(res)) };
                let (t, _) = self.free(idx)?;
                out.push(Completion::new(t, result, Buf::None, false));
            }
            State::Cancel => {
                // EALREADY: the target is running and will complete shortly.
                let result = if res >= 0 || res == -libc::EALREADY {
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
                if res >= 0 {
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
            let (done, len) = match &mut self.slots[idx as usize].state {
                State::Send { op } => (&mut op.done, op.buf.len()),
                State::Write { op } => (&mut op.done, op.buf.len()),
                _ => unreachable!("progress of a send or write only"),
            };
            *done += res as usize;
            let total = *done;
            if total < len {
                return self.arm(idx);
            }
            let (t, st) = self.free(idx)?;
            out.push(Self::finished(t, Ok(total), st));
        } else if eagain {
            self.slots[idx as usize].polling = true;
            return self.arm(idx);
        } else {
            let e = if res == 0 {
                io::ErrorKind::WriteZero.into()
            } else {
                errno(res)
            };
            let (t, st) = self.free(idx)?;
            out.push(Self::finished(t, Err(e), st));
        }
        Ok(())
    }

    /// Push a sendfile forward until it is done, fails, or the socket is full (then poll).
    fn try_sendfile(&mut self, idx: u32, out: &mut Vec<Completion>) -> io::Result<()> {
        loop {
            let sock = self.slots[idx as usize].fd;
            let State::SendFile {
                file,
                offset,
                len,
                done,
            } = &mut self.slots[idx as usize].state
            else {
                unreachable!("sendfile slot");
            };
            if *done == *len {
                let total = *done;
                let (t, st) = self.free(idx)?;
                out.push(Self::finished(t, Ok(total), st));
                return Ok(());
            }
            let mut off = (*offset + *done as u64) as libc::off_t;
            // SAFETY: plain fds and a pointer to a live off_t.
            let r = sys::cvt_size(unsafe { libc::sendfile(sock, *file, &mut off, *len - *done) });
            match r {
                Ok(0) => {
                    let e = io::Error::from(io::ErrorKind::UnexpectedEof);
                    let (t, st) = self.free(idx)?;
                    out.push(Self::finished(t, Err(e), st));
                    return Ok(());
                }
                Ok(n) => *done += n,
                Err(e) if sys::interrupted(&e) => {}
                Err(e) if sys::would_block(&e) => {
                    self.slots[idx as usize].polling = true;
                    return self.arm(idx);
                }
                Err(e) => {
                    let (t, st) = self.free(idx)?;
                    out.push(Self::finished(t, Err(e), st));
                    return Ok(());
                }
            }
        }
    }

    fn reap(&mut self, out: &mut Vec<Completion>) -> io::Result<()> {
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

impl Backend for Uring {
    fn name(&self) -> &'static str {
        "uring"
    }

    fn submit(&mut self, token: Token, op: Op) {
        self.queued.push((token, op));
    }

    fn wait(&mut self, out: &mut Vec<Completion>, timeout: Option<Duration>) -> io::Result<()> {
        let before = out.len();
        out.append(&mut self.early);
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut queued = std::mem::take(&mut self.queued);
        let mut result = Ok(());
        for (token, op) in queued.drain(..) {
            if let Err(e) = self.start(token, op, out) {
                result = Err(e);
            }
        }
        self.queued = queued;
        result?;
        out.append(&mut self.early);
        self.reap(out)?;
        loop {
            let want = usize::from(out.len() == before);
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            self.stats.enters += 1;
            let r = match left {
                Some(t) if want > 0 && self.features.ext_arg => {
                    let ts = types::Timespec::from(t);
                    let args = types::SubmitArgs::new().timespec(&ts);
                    self.ring.submitter().submit_with_args(want, &args)
                }
                Some(t) if want > 0 && !self.wait_timer_armed => {
                    let idx = self.alloc(
                        0,
                        -1,
                        State::WaitTimer {
                            ts: Box::new(types::Timespec::from(t)),
                        },
                    );
                    self.wait_timer_armed = true;
                    self.arm(idx)?;
                    self.ring.submit_and_wait(want)
                }
                _ => self.ring.submit_and_wait(want),
            };
            match r {
                Ok(_) => {}
                // ETIME: the wait timed out; EINTR: a signal; EBUSY: the CQ overflowed and the
                // kernel holds completions back until we reap (FEAT_NODROP).
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                    ) => {}
                Err(e) => return Err(e),
            }
            self.reap(out)?;
            out.append(&mut self.early);
            let timed_out = deadline.is_some_and(|d| Instant::now() >= d);
            if out.len() > before || timed_out {
                break;
            }
        }
        self.stats.count_wait(out.len() - before);
        Ok(())
    }

    fn release(&mut self, buf: RecvBuf) {
        let id = self.pool.restore(buf);
        self.pool.put_free(id);
        self.top_up();
        if !self.starved.is_empty() {
            self.rearm_starved();
        }
    }

    fn waker(&self) -> Waker {
        Waker::new(self.wake.clone())
    }

    fn sendfile_native(&self) -> bool {
        true
    }

    fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.bufs_in_use = self.pool.lent();
        s.bufs_total = self.pool.count();
        s
    }
}

impl Drop for Uring {
    fn drop(&mut self) {
        // Cancel everything and wait (bounded) for the kernel to let go of our memory before
        // the buffers and boxes it may write are freed.
        self.dropping = true;
        let e = opcode::AsyncCancel2::new(types::CancelBuilder::any().all())
            .build()
            .user_data(u64::MAX);
        if self.push(e).is_err() {
            return;
        }
        // Timeouts are not reached by ASYNC_CANCEL: remove them explicitly.
        let timers: Vec<u64> = (0..self.slots.len() as u32)
            .filter(|&i| {
                let s = &self.slots[i as usize];
                s.in_kernel && matches!(s.state, State::Timer { .. } | State::WaitTimer { .. })
            })
            .map(|i| self.ud(i))
            .collect();
        for ud in timers {
            let e = opcode::TimeoutRemove::new(ud).build().user_data(u64::MAX);
            if self.push(e).is_err() {
                return;
            }
        }
        let mut sink = Vec::new();
        for _ in 0..100 {
            if !self.slots.iter().any(|s| s.in_kernel) {
                break;
            }
            let ts = types::Timespec::from(Duration::from_millis(10));
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            let _ = self.reap(&mut sink);
        }
        if self.slots.iter().any(|s| s.in_kernel) {
            // The kernel still holds some op: leak rather than free memory it may write.
            std::mem::forget(std::mem::take(&mut self.slots));
            std::mem::forget(std::mem::replace(&mut self.pool, BufPool::new(0, 0)));
        }
    }
}

#[cfg(test)]
mod size_probe {
    /// An idle connection holds one armed recv: its slot must stay small (payloads are boxed).
    #[test]
    fn slots_stay_small() {
        let uring = std::mem::size_of::<super::Slot>();
        let readiness = crate::readiness::slot_size();
        eprintln!("uring slot {uring} B, readiness slot {readiness} B");
        assert!(uring <= 64, "uring slot grew to {uring} bytes");
        assert!(readiness <= 96, "readiness slot grew to {readiness} bytes");
    }
}
