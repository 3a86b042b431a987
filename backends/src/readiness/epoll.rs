//! The epoll shim (Linux): edge-triggered registration, a timer heap, pidfds for children and an
//! eventfd for wake-ups. See `epoll(7)`.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Event, Poller};
use crate::linux::{self, EventFd};
use crate::sys::cvt;
use crate::timers::TimerHeap;
use crate::Waker;

/// What an `epoll_event.u64` names. Fds and pidfds are non-negative `c_int`s, so the tag bit
/// is never part of a number, and a child's key (which may use all 64 bits) never goes into
/// the kernel: the pidfd's number does, and `children` maps it back.
const WAKE_KEY: u64 = u64::MAX;
const PIDFD_TAG: u64 = 1 << 63;

pub struct Epoll {
    epfd: OwnedFd,
    wake: Arc<EventFd>,
    timers: TimerHeap,
    /// A watched child's pidfd number → its key and the pidfd.
    children: HashMap<RawFd, (u64, OwnedFd)>,
    buf: Vec<libc::epoll_event>,
}

impl Epoll {
    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, key: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: key };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        cvt(unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, fd, &mut ev) }).map(drop)
    }
}

impl Poller for Epoll {
    const NAME: &'static str = "epoll";
    const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
    const SENDFILE: bool = true;
    /// The side-by-side runs of benches/load/README.md (point 7) had the sum of the server's
    /// and the client's CPU per 1 MiB response fall from ~600 µs (no cap: one `sendfile`
    /// per response) to ~230 with 48 KiB (32 KiB: ~290, 64 KiB: ~460).
    const SENDFILE_ROUND: usize = linux::SENDFILE_ROUND;

    fn new(events: usize) -> io::Result<Self> {
        // SAFETY: epoll_create1 returns a new fd that we immediately own.
        let epfd = unsafe { OwnedFd::from_raw_fd(cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))?) };
        let ep = Epoll {
            epfd,
            wake: Arc::new(EventFd::new()?),
            timers: TimerHeap::default(),
            children: HashMap::new(),
            buf: Vec::with_capacity(events.max(64)),
        };
        let edge_in = (libc::EPOLLIN | libc::EPOLLET) as u32;
        ep.ctl(libc::EPOLL_CTL_ADD, ep.wake.fd(), edge_in, WAKE_KEY)?;
        Ok(ep)
    }

    fn register(&mut self, fd: RawFd) -> io::Result<()> {
        let events = libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET;
        self.ctl(libc::EPOLL_CTL_ADD, fd, events as u32, fd as u64)
    }

    fn deregister(&mut self, fd: RawFd) {
        // Failure means the fd was already gone from the set; nothing to undo.
        let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0);
    }

    fn accept(&mut self, fd: RawFd) -> io::Result<RawFd> {
        let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
        // SAFETY: null address pointers are allowed by accept4(2).
        cvt(unsafe { libc::accept4(fd, std::ptr::null_mut(), std::ptr::null_mut(), flags) })
    }

    fn sendfile(sock: RawFd, file: RawFd, offset: u64, len: usize) -> io::Result<usize> {
        linux::sendfile(sock, file, offset, len)
    }

    fn add_timer(&mut self, key: u64, deadline: Instant) -> io::Result<()> {
        self.timers.add(key, deadline);
        Ok(())
    }

    fn remove_timer(&mut self, key: u64) {
        self.timers.remove(key);
    }

    fn watch_child(&mut self, key: u64, pid: u32) -> io::Result<()> {
        let pidfd = linux::pidfd_open(pid)?;
        let n = pidfd.as_raw_fd();
        // A pidfd becomes readable when the process exits (also if it already has).
        self.ctl(
            libc::EPOLL_CTL_ADD,
            n,
            libc::EPOLLIN as u32,
            PIDFD_TAG | n as u64,
        )?;
        self.children.insert(n, (key, pidfd));
        Ok(())
    }

    fn unwatch_child(&mut self, key: u64) {
        // Closing the pidfd removes it from the epoll set. Rare (a cancel): a scan will do.
        self.children.retain(|_, (k, _)| *k != key);
    }

    fn waker(&self) -> Waker {
        Waker::new(self.wake.clone())
    }

    fn poll(&mut self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        let now = Instant::now();
        let timeout = self.timers.bound(timeout, now);
        let ms = match timeout {
            None => -1,
            // Round up so a timer is never polled for a hair early, then spun on.
            Some(t) => t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int,
        };
        self.buf.clear();
        // SAFETY: the buffer has `capacity()` writable epoll_event slots.
        let n = cvt(unsafe {
            libc::epoll_wait(
                self.epfd.as_raw_fd(),
                self.buf.as_mut_ptr(),
                self.buf.capacity() as libc::c_int,
                ms,
            )
        })?;
        // SAFETY: epoll_wait initialised `n` entries.
        unsafe { self.buf.set_len(n as usize) };
        for ev in &self.buf {
            let (bits, key) = (ev.events, ev.u64);
            if key == WAKE_KEY {
                self.wake.drain();
                events.push(Event::Wake);
            } else if key & PIDFD_TAG != 0 {
                if let Some((key, _)) = self.children.remove(&((key & !PIDFD_TAG) as RawFd)) {
                    events.push(Event::Child(key));
                }
            } else {
                let err = (libc::EPOLLERR | libc::EPOLLHUP) as u32;
                let read = bits & (libc::EPOLLIN | libc::EPOLLRDHUP) as u32 != 0 || bits & err != 0;
                let write = bits & libc::EPOLLOUT as u32 != 0 || bits & err != 0;
                let hup = bits & (err | libc::EPOLLRDHUP as u32) != 0;
                events.push(Event::Fd {
                    fd: key as RawFd,
                    read,
                    write,
                    hup,
                });
            }
        }
        // A poll that could not sleep took microseconds: the clock is read again only after
        // one that could.
        let now = if ms == 0 { now } else { Instant::now() };
        self.timers
            .expire(now, |key| events.push(Event::Timer(key)));
        Ok(())
    }
}
