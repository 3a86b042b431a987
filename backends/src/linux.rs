//! Linux calls both Linux backends make (io_uring and epoll): the eventfd behind their
//! wakers, `pidfd_open(2)` for child exits, and `sendfile(2)`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::sys::{cvt, cvt_size};
use crate::Wake;

/// A non-blocking, close-on-exec eventfd: a [`Wake`] that the loop sees as readable.
pub(crate) struct EventFd(OwnedFd);

impl EventFd {
    pub(crate) fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd returns a new fd we immediately own.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: `fd` is fresh and owned by nothing else.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Reset the counter (the wake-ups so far are merged into one).
    pub(crate) fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64.
        unsafe { libc::read(self.fd(), (&mut v as *mut u64).cast(), 8) };
    }
}

impl Wake for EventFd {
    fn wake(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
        let r = unsafe { libc::write(self.fd(), (&one as *const u64).cast(), 8) };
        // EAGAIN: the counter is saturated, a wake-up is pending anyway.
        if r < 0 && io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// A pidfd for `pid`: readable once the process has exited (also if it already has).
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    let fd = cvt(r as libc::c_int)?;
    // SAFETY: a fresh fd from pidfd_open, owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A pipe, both ends close-on-exec, with `flags` besides (`O_NONBLOCK`): (read, write).
pub(crate) fn pipe(flags: libc::c_int) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array it is given.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | flags) })?;
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The most bytes one `sendfile(2)` round of an [`crate::Op::SendFile`] moves before the
/// loop serves other connections (epoll: the next turn of the fd; io_uring: a POLLOUT poll
/// in between). 48 KiB, one segment under loopback's MSS: measured against no cap and 16 KiB
/// to 512 KiB rounds in benches/load/README.md, point 7 (the server's and the client's CPU
/// per 1 MiB response fell by two thirds).
pub(crate) const SENDFILE_ROUND: usize = 48 << 10;

/// `sendfile(2)` of up to `len` bytes of `file` at `offset` to `sock`.
pub(crate) fn sendfile(sock: RawFd, file: RawFd, offset: u64, len: usize) -> io::Result<usize> {
    let mut off = offset as libc::off_t;
    // SAFETY: plain fds and a pointer to a live off_t.
    cvt_size(unsafe { libc::sendfile(sock, file, &mut off, len) })
}
