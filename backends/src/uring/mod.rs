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
//! no sendfile opcode: [`crate::Op::SendFile`] calls `sendfile(2)` on the non-blocking socket
//! in 48 KiB rounds with a poll after each and on EAGAIN, or (`WEBSERV_URING_FILE_SEND=splice`)
//! splices file → pipe → socket in linked pairs ([`file_send`]). Timers are not kernel timeouts: they live in one heap ordered
//! by absolute deadline, which bounds the wait, so they complete in deadline order even when
//! several are already due.
//!
//! `user_data` is a slot key ([`crate::slab`]), so a late completion of a freed slot is
//! recognised and dropped. The memory the kernel reads or writes (send iovecs, timespecs, read
//! buffers) lives in boxes or heap buffers owned by the slot until its last completion; a slot
//! is freed only after the kernel has posted a CQE without `F_MORE` for it.
//!
//! The module by concern: [`probe`] (kernel features), `buf_ring` (provided buffers), `state`
//! (slots, fds), `submit` (SQEs), `complete` (CQEs and the restart rule), `file_send`
//! (SendFile), `close` (close, cancel, drop).

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{types, IoUring};

use crate::linux::EventFd;
use crate::pool::BufPool;
use crate::slab::Slab;
use crate::timers::TimerHeap;
use crate::{Backend, Completion, Options, RecvBuf, Stats, Token, Waker};

mod buf_ring;
mod close;
mod complete;
mod file_send;
mod probe;
mod state;
mod submit;

pub use probe::Features;

use buf_ring::{BufRing, BGID, RING_START};
use state::{FdInfo, Slot, State};

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
    slots: Slab<Slot>,
    fds: Vec<FdInfo>,
    queued: Vec<(Token, Op)>,
    /// Boxes of finished sends, reused by the next ones (at most `state::SPARE_SENDS`). Boxes,
    /// not values: each moves whole into a slot, where the kernel reads its msghdr in place.
    #[allow(clippy::vec_box)]
    spare_sends: Vec<Box<state::SendOp>>,
    /// Boxes of finished sendfiles, for the next ones.
    #[allow(clippy::vec_box)]
    spare_sendfiles: Vec<Box<state::SendFileOp>>,
    /// How [`crate::Op::SendFile`] is carried out, and the pipes the splices reuse
    /// ([`file_send`]).
    file_send: crate::FileSend,
    spare_pipes: Vec<file_send::Pipe>,
    /// Test only ([`crate::Options::uring_no_pipes`]): no pipe is ever had.
    no_pipes: bool,
    /// Keys of the timers found due (kept between turns for its capacity).
    due: Vec<u64>,
    /// Recv slots that found no buffer (ENOBUFS): re-armed when one is released.
    starved: Vec<u32>,
    timers: TimerHeap,
    wake: Arc<EventFd>,
    stats: Stats,
    /// Without EXT_ARG: the internal timeout SQE the current wait relies on, and when it fires.
    wait_timer: Option<(u32, Instant)>,
    /// Completions produced outside `wait` (by `release`, or starved ops a close finished).
    early: Vec<Completion>,
    /// [`crate::Op::ListDir`] (no opcode reads a directory) runs here; results come back
    /// after an eventfd wake-up.
    offload: crate::offload::Offload,
    /// Set by the caller's [`Waker`] (not the pool's): only its wake-ups are completed with
    /// [`crate::WAKE_TOKEN`].
    user_woken: Arc<std::sync::atomic::AtomicBool>,
    /// Set by Drop: nothing is restarted any more.
    dropping: bool,
    /// How many 10 ms rounds Drop waits for the kernel to let go (0: `drop_without_waiting`).
    drop_rounds: u32,
}

use crate::Op;

impl Uring {
    /// Open a ring, probing what the kernel offers. Fails (ENOSYS, EPERM, …) where io_uring is
    /// unavailable; the caller decides whether to fall back.
    pub fn new(opts: &Options) -> io::Result<Uring> {
        let file_send = match opts.uring_file_send {
            Some(f) => f,
            None => crate::FileSend::from_env()?,
        };
        let (ring, mut features) = probe::open_ring(opts)?;
        let file_send = if features.splice {
            file_send
        } else {
            crate::FileSend::Sendfile
        };
        let pool = BufPool::new(opts.buf_count, opts.buf_size);
        let mut bufring = None;
        if !opts.force_single_shot
            && probe::kernel_at_least(6, 0)
            && opts.buf_count.is_power_of_two()
        {
            let br = BufRing::new(opts.buf_count)?;
            // SAFETY: the ring memory stays allocated until `Uring` drops, after the io_uring
            // (field order), or is leaked, so the kernel never sees it freed while registered.
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
        let wake = Arc::new(EventFd::new()?);
        let mut u = Uring {
            ring,
            bufring,
            posted: 0,
            ring_target: u32::from(opts.buf_count).min(RING_START),
            pool,
            multishot_recv: features.buf_ring,
            features,
            slots: Slab::with_room(opts.first_generation, 2 * opts.expected_fds),
            fds: Vec::with_capacity(opts.expected_fds),
            queued: Vec::new(),
            spare_sends: Vec::new(),
            spare_sendfiles: Vec::new(),
            file_send,
            spare_pipes: Vec::new(),
            no_pipes: opts.uring_no_pipes,
            due: Vec::new(),
            starved: Vec::new(),
            timers: TimerHeap::default(),
            wake: wake.clone(),
            offload: crate::offload::Offload::new(wake),
            user_woken: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            stats: Stats::default(),
            wait_timer: None,
            early: Vec::new(),
            dropping: false,
            drop_rounds: if opts.drop_without_waiting { 0 } else { 100 },
        };
        u.top_up();
        let wfd = u.wake.fd();
        let idx = u.alloc(crate::WAKE_TOKEN, wfd, State::Wake { val: Box::new(0) });
        u.arm(idx)?;
        Ok(u)
    }

    pub fn features(&self) -> &Features {
        &self.features
    }

    /// Complete the timers that are due, earliest deadline first.
    fn expire_timers(&mut self, now: Instant, out: &mut Vec<Completion>) -> io::Result<()> {
        // The list keeps its capacity from turn to turn: no allocation when timers are due.
        let mut due = std::mem::take(&mut self.due);
        self.timers.expire(now, |key| due.push(key));
        let mut result = Ok(());
        for key in due.drain(..) {
            if let Some(idx) = self.slots.find(key) {
                if result.is_ok() && matches!(self.slots[idx].state, State::Timer) {
                    match self.finish(idx, Ok(0)) {
                        Ok(c) => out.push(c),
                        Err(e) => result = Err(e),
                    }
                }
            }
        }
        self.due = due;
        result
    }

    /// One kernel entry: submit, and wait for `want` CQEs for at most `left`.
    fn enter(&mut self, want: usize, left: Option<Duration>) -> io::Result<()> {
        self.stats.enters += 1;
        let r = match left {
            Some(t) if want > 0 && self.features.ext_arg => {
                let ts = types::Timespec::from(t);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(want, &args)
            }
            Some(t) if want > 0 => {
                // No EXT_ARG: an internal timeout SQE bounds the wait. One armed for a later
                // time (by an earlier wait that returned early) does not do: arm another.
                let at = Instant::now() + t;
                if self.wait_timer.is_none_or(|(_, armed)| armed > at) {
                    let ts = Box::new(types::Timespec::from(t));
                    let idx = self.alloc(0, -1, State::WaitTimer { ts });
                    self.wait_timer = Some((idx, at));
                    self.arm(idx)?;
                }
                self.ring.submit_and_wait(want)
            }
            _ => self.ring.submit_and_wait(want),
        };
        match r {
            Ok(_) => Ok(()),
            // ETIME: the wait timed out; EINTR: a signal; EBUSY: the CQ overflowed and the
            // kernel holds completions back until we reap (FEAT_NODROP).
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
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
        // One clock read per round, and a second only after an enter that may have slept.
        let mut now = Instant::now();
        loop {
            self.expire_timers(now, out)?;
            let want = usize::from(out.len() == before);
            let left = deadline.map(|d| d.saturating_duration_since(now));
            let left = self.timers.bound(left, now);
            self.enter(want, left)?;
            self.reap(out)?;
            out.append(&mut self.early);
            if want > 0 {
                now = Instant::now();
                self.expire_timers(now, out)?;
            }
            if out.len() > before || deadline.is_some_and(|d| now >= d) {
                break;
            }
        }
        self.stats.count_wait(out.len() - before);
        Ok(())
    }

    fn release(&mut self, buf: RecvBuf) {
        if !self.pool.restore(buf) {
            return; // another pool's buffer: refused (and freed), never taken for one of ours
        }
        self.top_up();
        if !self.starved.is_empty() {
            self.rearm_starved();
        }
    }

    fn waker(&self) -> Waker {
        Waker::new(Arc::new(crate::offload::UserWake {
            flag: self.user_woken.clone(),
            inner: self.wake.clone(),
        }))
    }

    fn sendfile_native(&self) -> bool {
        true
    }

    fn stats(&self) -> Stats {
        self.pool.counted(&self.stats)
    }
}

#[cfg(test)]
mod size_probe {
    /// An idle connection holds one armed recv: its slot must stay small (payloads are boxed).
    #[test]
    fn slots_stay_small() {
        let uring = std::mem::size_of::<(u32, super::Slot)>();
        let readiness = crate::readiness::slot_size();
        let per_fd = crate::readiness::fd_state_size();
        eprintln!(
            "uring slot {uring} B (with its generation), readiness slot {readiness} B, \
             readiness per-fd record {per_fd} B"
        );
        assert!(
            per_fd <= 28,
            "the readiness per-fd record grew to {per_fd} bytes"
        );
        // 64 and 96 before sends, reads, writes and sendfiles were boxed (issue 12, item 6).
        assert!(uring <= 40, "uring slot grew to {uring} bytes");
        assert!(readiness <= 40, "readiness slot grew to {readiness} bytes");
    }
}
