//! The kqueue shim (macOS, FreeBSD and the other BSDs): `EV_CLEAR` (edge-triggered) read and
//! write filters, `EVFILT_TIMER` for timers, `EVFILT_PROC`/`NOTE_EXIT` for children and
//! `EVFILT_USER` for wake-ups. See `kqueue(2)`.
//!
//! The same code runs on Linux against libkqueue (feature `libkqueue`) so that CI executes it;
//! only the declarations and the few platform calls in [`os`] differ.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Event, Poller};
use crate::sys::{self, cvt};
use crate::{Wake, Waker};

#[cfg_attr(target_os = "linux", path = "kqueue/libkqueue.rs")]
#[cfg_attr(not(target_os = "linux"), path = "kqueue/native.rs")]
mod os;

const WAKE_IDENT: usize = 0;

pub struct Kqueue {
    kq: Arc<OwnedFd>,
    /// Child key → pid, to delete the filter when unwatched.
    children: HashMap<u64, u32>,
    /// Children that had exited before they could be watched (ESRCH): reported next poll.
    exited: Vec<u64>,
    buf: Vec<os::kevent>,
}

fn kev(ident: usize, filter: i16, flags: u16, fflags: u32, data: i64, udata: u64) -> os::kevent {
    // SAFETY: kevent is plain data; all-zero is a valid value (and zeroes FreeBSD's `ext`).
    let mut ev: os::kevent = unsafe { std::mem::zeroed() };
    ev.ident = ident as _;
    ev.filter = filter;
    ev.flags = flags as _;
    ev.fflags = fflags as _;
    ev.data = data as _;
    ev.udata = udata as usize as _;
    ev
}

fn apply(kq: RawFd, changes: &[os::kevent]) -> io::Result<()> {
    // SAFETY: `changes` is a live slice of kevents; no events are requested back.
    let r = unsafe {
        os::kevent(
            kq,
            changes.as_ptr(),
            changes.len() as _,
            std::ptr::null_mut(),
            0,
            std::ptr::null(),
        )
    };
    cvt(r).map(drop)
}

struct UserTrigger(Arc<OwnedFd>);

impl Wake for UserTrigger {
    fn wake(&self) -> io::Result<()> {
        let ev = kev(WAKE_IDENT, os::EVFILT_USER, 0, os::NOTE_TRIGGER, 0, 0);
        apply(self.0.as_raw_fd(), &[ev])
    }
}

impl Poller for Kqueue {
    const NAME: &'static str = "kqueue";
    const SEND_FLAGS: libc::c_int = os::SEND_FLAGS;
    const SENDFILE: bool = os::SENDFILE;

    fn new(events: usize) -> io::Result<Self> {
        // SAFETY: kqueue(2) returns a new fd we immediately own.
        let kq = unsafe { OwnedFd::from_raw_fd(cvt(os::kqueue())?) };
        // SAFETY: fcntl with integer arguments on our own fd.
        cvt(unsafe { libc::fcntl(kq.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) })?;
        let user = kev(
            WAKE_IDENT,
            os::EVFILT_USER,
            os::EV_ADD | os::EV_CLEAR,
            0,
            0,
            0,
        );
        apply(kq.as_raw_fd(), &[user])?;
        Ok(Kqueue {
            kq: Arc::new(kq),
            children: HashMap::new(),
            exited: Vec::new(),
            buf: Vec::with_capacity(events.max(64)),
        })
    }

    fn register(&mut self, fd: RawFd) -> io::Result<()> {
        // Regular files are always ready; treat them as epoll does (EPERM).
        // SAFETY: fstat fills a zeroed stat struct for an fd the caller owns.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `st` is a live, writable stat struct.
        cvt(unsafe { libc::fstat(fd, &mut st) })?;
        if st.st_mode & libc::S_IFMT == libc::S_IFREG {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        if os::STALE_KNOTES {
            // The number may have been closed and reused since its last registration: forget
            // what libkqueue still holds for it, or EV_ADD would only modify the dead knote.
            self.deregister(fd);
        }
        let flags = os::EV_ADD | os::EV_CLEAR;
        // Write before read: the order means nothing to a kernel kqueue, but libkqueue builds
        // one epoll registration per fd and only the filter added last keeps its extra bits —
        // read's EPOLLRDHUP, without which a FIN queued behind data never sets EV_EOF and the
        // adapter, trusting a short read to mean "drained", waits forever for that EOF.
        let changes = [
            kev(fd as usize, os::EVFILT_WRITE, flags, 0, 0, 0),
            kev(fd as usize, os::EVFILT_READ, flags, 0, 0, 0),
        ];
        apply(self.kq.as_raw_fd(), &changes)
    }

    fn deregister(&mut self, fd: RawFd) {
        for filter in [os::EVFILT_READ, os::EVFILT_WRITE] {
            let ev = kev(fd as usize, filter, os::EV_DELETE, 0, 0, 0);
            // ENOENT: that filter was never added or is already gone.
            let _ = apply(self.kq.as_raw_fd(), &[ev]);
        }
    }

    fn accept(&mut self, fd: RawFd) -> io::Result<RawFd> {
        let new = accept_portable(fd)?;
        if let Err(e) = os::no_sigpipe(new) {
            let _ = sys::close(new);
            return Err(e);
        }
        Ok(new)
    }

    fn sendfile(sock: RawFd, file: RawFd, offset: u64, len: usize) -> io::Result<usize> {
        os::sendfile(sock, file, offset, len)
    }

    fn add_timer(&mut self, key: u64, deadline: Instant) -> io::Result<()> {
        // At least 1 µs: a deadline already past must still fire, and libkqueue arms a timerfd
        // with the value, where zero means "disarmed" (it would never fire); the BSDs fire a
        // one-shot zero timer at once, so 1 µs means the same there.
        let us = deadline
            .saturating_duration_since(Instant::now())
            .as_micros()
            .clamp(1, i64::MAX as u128) as i64;
        let ev = kev(
            key as usize,
            os::EVFILT_TIMER,
            os::EV_ADD | os::EV_ONESHOT,
            os::NOTE_USECONDS,
            us,
            key,
        );
        apply(self.kq.as_raw_fd(), &[ev])
    }

    fn remove_timer(&mut self, key: u64) {
        let ev = kev(key as usize, os::EVFILT_TIMER, os::EV_DELETE, 0, 0, 0);
        let _ = apply(self.kq.as_raw_fd(), &[ev]);
    }

    fn watch_child(&mut self, key: u64, pid: u32) -> io::Result<()> {
        let ev = kev(
            pid as usize,
            os::EVFILT_PROC,
            os::EV_ADD | os::EV_ONESHOT,
            os::NOTE_EXIT,
            0,
            key,
        );
        match apply(self.kq.as_raw_fd(), &[ev]) {
            Ok(()) => {
                self.children.insert(key, pid);
                Ok(())
            }
            // Already exited (a zombie cannot be watched): report it at the next poll.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                self.exited.push(key);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn unwatch_child(&mut self, key: u64) {
        self.exited.retain(|&k| k != key);
        if let Some(pid) = self.children.remove(&key) {
            let ev = kev(pid as usize, os::EVFILT_PROC, os::EV_DELETE, 0, 0, 0);
            let _ = apply(self.kq.as_raw_fd(), &[ev]);
        }
    }

    fn waker(&self) -> Waker {
        Waker::new(Arc::new(UserTrigger(self.kq.clone())))
    }

    fn poll(&mut self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        let timeout = if self.exited.is_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        let ts = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs().min(i64::MAX as u64) as _,
            tv_nsec: t.subsec_nanos() as _,
        });
        let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const _);
        self.buf.clear();
        // SAFETY: the output buffer has `capacity()` writable kevent slots; `ts_ptr` is null or
        // points at a live timespec.
        let n = cvt(unsafe {
            os::kevent(
                self.kq.as_raw_fd(),
                std::ptr::null(),
                0,
                self.buf.as_mut_ptr(),
                self.buf.capacity() as _,
                ts_ptr,
            )
        })?;
        // SAFETY: kevent initialised `n` entries.
        unsafe { self.buf.set_len(n as usize) };
        for key in self.exited.drain(..) {
            events.push(Event::Child(key));
        }
        for ev in &self.buf {
            let filter = ev.filter;
            let key = ev.udata as usize as u64;
            if filter == os::EVFILT_USER {
                events.push(Event::Wake);
            } else if filter == os::EVFILT_TIMER {
                events.push(Event::Timer(key));
            } else if filter == os::EVFILT_PROC {
                if self.children.remove(&key).is_some() {
                    events.push(Event::Child(key));
                }
            } else {
                let fd = ev.ident as RawFd;
                let read = filter == os::EVFILT_READ;
                let ended = ev.flags & (os::EV_EOF | os::EV_ERROR) != 0;
                // Only the read filter speaks of the peer: EV_EOF on the write filter also
                // follows our own shutdown(SHUT_WR), which is no hang-up (invariant 10). A peer's
                // FIN or reset always sets EV_EOF on the read filter too.
                let hup = ev.flags & os::EV_ERROR != 0 || (read && ended);
                events.push(Event::Fd {
                    fd,
                    read: read || ended,
                    write: !read || ended,
                    hup,
                });
            }
        }
        Ok(())
    }
}

/// `accept4(2)`: the new fd is non-blocking and close-on-exec from its first instant, so a
/// child spawned by another thread in between never inherits it.
#[cfg(any(
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "linux"
))]
fn accept_portable(fd: RawFd) -> io::Result<RawFd> {
    let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: null address pointers are allowed: we do not want the peer address here.
    cvt(unsafe { libc::accept4(fd, std::ptr::null_mut(), std::ptr::null_mut(), flags) })
}

/// macOS has no `accept4`: `accept(2)`, then non-blocking and close-on-exec. Between the two a
/// child spawned by another thread could inherit the fd; spawners there must not rely on
/// CLOEXEC alone (`POSIX_SPAWN_CLOEXEC_DEFAULT` with explicit file actions closes everything
/// not named). If `fcntl` fails the new fd is closed, not leaked.
#[cfg(any(target_os = "macos", target_os = "ios"))]
fn accept_portable(fd: RawFd) -> io::Result<RawFd> {
    // SAFETY: null address pointers are allowed: we do not want the peer address here.
    let new = cvt(unsafe { libc::accept(fd, std::ptr::null_mut(), std::ptr::null_mut()) })?;
    if let Err(e) = set_nonblock_cloexec(new) {
        let _ = sys::close(new);
        return Err(e);
    }
    Ok(new)
}

#[cfg(any(target_os = "macos", target_os = "ios"))]
fn set_nonblock_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own, with integer arguments.
    unsafe {
        let fl = cvt(libc::fcntl(fd, libc::F_GETFL))?;
        cvt(libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK))?;
        cvt(libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC))?;
    }
    Ok(())
}
