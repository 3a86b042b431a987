//! macOS and the BSDs: the kernel's kqueue(2)/kevent(2) as `libc` declares them, and the
//! platform's `sendfile(2)` and SIGPIPE suppression.

use std::io;
use std::os::fd::RawFd;

use crate::sys::{self, cvt};

pub use libc::{
    kevent, kqueue, EVFILT_PROC, EVFILT_READ, EVFILT_TIMER, EVFILT_USER, EVFILT_WRITE, EV_ADD,
    EV_CLEAR, EV_DELETE, EV_EOF, EV_ERROR, EV_ONESHOT, NOTE_EXIT, NOTE_TRIGGER, NOTE_USECONDS,
};

/// The kernel drops an fd's knotes when it is closed: a reused number starts clean.
pub const STALE_KNOTES: bool = false;

/// Accepted sockets get `SO_NOSIGPIPE` instead (macOS has no `MSG_NOSIGNAL`).
pub const SEND_FLAGS: libc::c_int = 0;

/// `SO_NOSIGPIPE` on an accepted socket: a send to a reset peer returns EPIPE, no signal.
pub fn no_sigpipe(fd: RawFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt with a pointer to a live c_int of the stated size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_NOSIGPIPE,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    cvt(r).map(drop)
}

/// macOS `sendfile(2)`: the length is in-out; on EAGAIN it holds what was sent.
#[cfg(any(target_os = "macos", target_os = "ios"))]
pub fn sendfile(sock: RawFd, file: RawFd, offset: u64, len: usize) -> io::Result<usize> {
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
pub fn sendfile(sock: RawFd, file: RawFd, offset: u64, len: usize) -> io::Result<usize> {
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

/// Whether this BSD has `sendfile(2)`.
pub const SENDFILE: bool = !cfg!(any(target_os = "netbsd", target_os = "openbsd"));

/// NetBSD and OpenBSD have no `sendfile(2)`.
#[cfg(any(target_os = "netbsd", target_os = "openbsd"))]
pub fn sendfile(_sock: RawFd, _file: RawFd, _offset: u64, _len: usize) -> io::Result<usize> {
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
