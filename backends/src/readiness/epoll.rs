//! The epoll shim (Linux): edge-triggered registration, a timer heap, pidfds for children and an
//! eventfd for wake-ups. See `epoll(7)`.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::timers::TimerHeap;
use super::{Event, Poller};
use crate::sys::cvt;
use crate::{Wake, Waker};

/// epoll_event.u64 tags: fds use their number; these never collide with an fd.
const WAKE_KEY: u64 = u64::MAX;
const CHILD_TAG: u64 = 1 << 63;

pub struct Epoll {
    epfd: OwnedFd,
    wake: Arc<EventFd>,
    timers: TimerHeap,
    /// Child key → its pidfd.
    children: HashMap<u64, OwnedFd>,
    buf: Vec<libc::epoll_event>,
}

struct EventFd(OwnedFd);

impl Wake for EventFd {
    fn wake(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
        let r = unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
        // EAGAIN: the counter is saturated, a wake-up is pending anyway.
        if r < 0 && io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
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

    fn new(events: usize) -> io::Result<Self> {
        // SAFETY: plain syscalls; each returned fd is immediately owned.
        let (epfd, efd) = unsafe {
            let epfd = OwnedFd::from_raw_fd(cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))?);
            let efd = OwnedFd::from_raw_fd(cvt(libc::eventfd(
                0,
                libc::EFD_CLOEXEC | libc::EFD_NONBLOCK,
            ))?);
            (epfd, efd)
        };
        let ep = Epoll {
            epfd,
            wake: Arc::new(EventFd(efd)),
            timers: TimerHeap::default(),
            children: HashMap::new(),
            buf: Vec::with_capacity(events.max(64)),
        };
        ep.ctl(
            libc::EPOLL_CTL_ADD,
            ep.wake.0.as_raw_fd(),
            (libc::EPOLLIN | libc::EPOLLET) as u32,
            WAKE_KEY,
        )?;
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
        let mut off = offset as libc::off_t;
        // SAFETY: plain fds and a pointer to a live off_t.
        crate::sys::cvt_size(unsafe { libc::sendfile(sock, file, &mut off, len) })
    }

    fn add_timer(&mut self, key: u64, deadline: Instant) -> io::Result<()> {
        self.timers.add(key, deadline);
        Ok(())
    }

    fn remove_timer(&mut self, key: u64) {
        self.timers.remove(key);
    }

    fn watch_child(&mut self, key: u64, pid: u32) -> io::Result<()> {
        // SAFETY: pidfd_open(2) takes a pid and flags; the result is a new fd we own.
        let pidfd = unsafe {
            let r = libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0);
            OwnedFd::from_raw_fd(cvt(r as libc::c_int)?)
        };
        // A pidfd becomes readable when the process exits (also if it already has).
        self.ctl(
            libc::EPOLL_CTL_ADD,
            pidfd.as_raw_fd(),
            libc::EPOLLIN as u32,
            CHILD_TAG | key,
        )?;
        self.children.insert(key, pidfd);
        Ok(())
    }

    fn unwatch_child(&mut self, key: u64) {
        // Closing the pidfd removes it from the epoll set.
        self.children.remove(&key);
    }

    fn waker(&self) -> Waker {
        Waker::new(self.wake.clone())
    }

    fn poll(&mut self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        let timeout = self.timers.bound(timeout, Instant::now());
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
                let mut v: u64 = 0;
                // SAFETY: reads 8 bytes into a live u64 (resets the eventfd counter).
                unsafe { libc::read(self.wake.0.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
                events.push(Event::Wake);
            } else if key & CHILD_TAG != 0 {
                let key = key & !CHILD_TAG;
                if self.children.remove(&key).is_some() {
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
        self.timers
            .expire(Instant::now(), |key| events.push(Event::Timer(key)));
        Ok(())
    }
}
