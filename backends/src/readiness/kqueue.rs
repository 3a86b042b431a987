//! The kqueue shim (macOS, FreeBSD and the other BSDs): `EV_CLEAR` (edge-triggered) read and
//! write filters, `EVFILT_TIMER` for timers, `EVFILT_PROC`/`NOTE_EXIT` for children and
//! `EVFILT_USER` for wake-ups. See `kqueue(2)`.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Event, Poller};
use crate::sys::{self, cvt};
use crate::{Wake, Waker};

const WAKE_IDENT: usize = 0;

pub struct Kqueue {
    kq: Arc<OwnedFd>,
    /// Child key → pid, to delete the filter when unwatched.
    children: HashMap<u64, u32>,
    /// Children that had exited before they could be watched (ESRCH): reported next poll.
    exited: Vec<u64>,
    buf: Vec<libc::kevent>,
}

fn kev(ident: usize, filter: i16, flags: u16, fflags: u32, data: i64, udata: u64) -> libc::kevent {
    // SAFETY: kevent is plain data; all-zero is a valid value (and zeroes FreeBSD's `ext`).
    let mut ev: libc::kevent = unsafe { std::mem::zeroed() };
    ev.ident = ident as _;
    ev.filter = filter;
    ev.flags = flags as _;
    ev.fflags = fflags as _;
    ev.data = data as _;
    ev.udata = udata as usize as _;
    ev
}

fn apply(kq: RawFd, changes: &[libc::kevent]) -> io::Result<()> {
    // SAFETY: `changes` is a live slice of kevents; no events are requested back.
    let r = unsafe {
        libc::kevent(
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
        let ev = kev(WAKE_IDENT, libc::EVFILT_USER, 0, libc::NOTE_TRIGGER, 0, 0);
        apply(self.0.as_raw_fd(), &[ev])
    }
}

impl Poller for Kqueue {
    const NAME: &'static str = "kqueue";
    // Accepted sockets get SO_NOSIGPIPE instead (macOS has no MSG_NOSIGNAL).
    const SEND_FLAGS: libc::c_int = 0;

    fn new(events: usize) -> io::Result<Self> {
        // SAFETY: kqueue(2) returns a new fd we immediately own.
        let kq = unsafe { OwnedFd::from_raw_fd(cvt(libc::kqueue())?) };
        // SAFETY: fcntl with integer arguments on our own fd.
        cvt(unsafe { libc::fcntl(kq.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) })?;
        let user = kev(
            WAKE_IDENT,
            libc::EVFILT_USER,
            libc::EV_ADD | libc::EV_CLEAR,
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
        let flags = libc::EV_ADD | libc::EV_CLEAR;
        let changes = [
            kev(fd as usize, libc::EVFILT_READ, flags, 0, 0, 0),
            kev(fd as usize, libc::EVFILT_WRITE, flags, 0, 0, 0),
        ];
        apply(self.kq.as_raw_fd(), &changes)
    }

    fn deregister(&mut self, fd: RawFd) {
        for filter in [libc::EVFILT_READ, libc::EVFILT_WRITE] {
            let ev = kev(fd as usize, filter, libc::EV_DELETE, 0, 0, 0);
            // ENOENT: that filter was never added or is already gone.
            let _ = apply(self.kq.as_raw_fd(), &[ev]);
        }
    }

    fn accept(&mut self, fd: RawFd) -> io::Result<RawFd> {
        let new = accept_portable(fd)?;
        let one: libc::c_int = 1;
        // SAFETY: setsockopt with a pointer to a live c_int of the stated size.
        let r = unsafe {
            libc::setsockopt(
                new,
                libc::SOL_SOCKET,
                libc::SO_NOSIGPIPE,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if let Err(e) = cvt(r) {
            let _ = sys::close(new);
            return Err(e);
        }
        Ok(new)
    }

    fn sendfile(sock: RawFd, file: RawFd, offset: u64, len: usize) -> io::Result<usize> {
        bsd_sendfile(sock, file, offset, len)
    }

    fn add_timer(&mut self, key: u64, deadline: Instant) -> io::Result<()> {
        let us = deadline
            .saturating_duration_since(Instant::now())
            .as_micros()
            .min(i64::MAX as u128) as i64;
        let ev = kev(
            key as usize,
            libc::EVFILT_TIMER,
            libc::EV_ADD | libc::EV_ONESHOT,
            libc::NOTE_USECONDS,
            us,
            key,
        );
        apply(self.kq.as_raw_fd(), &[ev])
    }

    fn remove_timer(&mut self, key: u64) {
        let ev = kev(key as usize, libc::EVFILT_TIMER, libc::EV_DELETE, 0, 0, 0);
        let _ = apply(self.kq.as_raw_fd(), &[ev]);
    }

    fn watch_child(&mut self, key: u64, pid: u32) -> io::Result<()> {
        let ev = kev(
            pid as usize,
            libc::EVFILT_PROC,
            libc::EV_ADD | libc::EV_ONESHOT,
            libc::NOTE_EXIT,
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
            let ev = kev(pid as usize, libc::EVFILT_PROC, libc::EV_DELETE, 0, 0, 0);
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
            libc::kevent(
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
            if filter == libc::EVFILT_USER {
                events.push(Event::Wake);
            } else if filter == libc::EVFILT_TIMER {
                events.push(Event::Timer(key));
            } else if filter == libc::EVFILT_PROC {
                if self.children.remove(&key).is_some() {
                    events.push(Event::Child(key));
                }
            } else {
                let fd = ev.ident as RawFd;
                let read = filter == libc::EVFILT_READ;
                let hup = ev.flags & (libc::EV_EOF | libc::EV_ERROR) != 0;
                events.push(Event::Fd {
                    fd,
                    read: read || hup,
                    write: !read || hup,
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

/// macOS `sendfile(2)`: the length is in-out; on EAGAIN it holds what was sent.
#[cfg(any(target_os = "macos", target_os = "ios"))]
fn bsd_sendfile(sock: RawFd, file: RawFd, offset: u64, len: usize) -> io::Result<usize> {
    let mut n = len as libc::off_t;
    // SAFETY: plain fds, a pointer to a live off_t, no header/trailer vectors.
    let r = unsafe {
        libc::sendfile(
            file,
            sock,
            offset as libc::off_t,
            &mut n,
            std::ptr::null_mut(),
            0,
        )
    };
    partial(r, n as usize)
}

/// FreeBSD and DragonFly `sendfile(2)`: bytes sent come back through `sbytes`, also on EAGAIN.
#[cfg(any(target_os = "freebsd", target_os = "dragonfly"))]
fn bsd_sendfile(sock: RawFd, file: RawFd, offset: u64, len: usize) -> io::Result<usize> {
    let mut sent: libc::off_t = 0;
    // SAFETY: plain fds, a pointer to a live off_t, no header/trailer vectors.
    let r = unsafe {
        libc::sendfile(
            file,
            sock,
            offset as libc::off_t,
            len,
            std::ptr::null_mut(),
            &mut sent,
            0,
        )
    };
    partial(r, sent as usize)
}

/// NetBSD and OpenBSD have no `sendfile(2)`.
#[cfg(any(target_os = "netbsd", target_os = "openbsd"))]
fn bsd_sendfile(_sock: RawFd, _file: RawFd, _offset: u64, _len: usize) -> io::Result<usize> {
    Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
}

/// A BSD sendfile result: bytes that went out count even when the call says EAGAIN.
#[cfg(not(any(target_os = "netbsd", target_os = "openbsd")))]
fn partial(r: libc::c_int, sent: usize) -> io::Result<usize> {
    if r == 0 {
        return Ok(sent);
    }
    let e = io::Error::last_os_error();
    if (sys::would_block(&e) || sys::interrupted(&e)) && sent > 0 {
        Ok(sent)
    } else {
        Err(e)
    }
}
