//! What systemd's socket activation and readiness protocol need from the OS (sd_listen_fds(3),
//! sd_notify(3)), without libsystemd: adopting the listening sockets a service manager passed
//! as fds 3.., and the monotonic clock a `RELOADING=1` message carries.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use crate::sys::cvt;

/// The first inherited fd (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: RawFd = 3;

/// Take ownership of inherited fd `LISTEN_FDS_START + i`, which must be a listening stream
/// socket: made close-on-exec (a CGI must not inherit it) and non-blocking. Returns it with
/// its bound address.
///
/// Only for the fds the `LISTEN_FDS` protocol names, at start, once each: nothing else in
/// the process owns them (the caller checked `LISTEN_PID` is this process).
pub fn adopt_listener(i: usize) -> io::Result<(OwnedFd, SocketAddr)> {
    let fd = LISTEN_FDS_START
        .checked_add(RawFd::try_from(i).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut accepting: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt on an fd number with a pointer to a live c_int and its length; an fd
    // that is not an open socket fails with EBADF/ENOTSOCK and nothing is written.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut accepting as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    if accepting == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fd {fd} is not a listening socket"),
        ));
    }
    let addr = crate::util::local_addr(fd)?;
    crate::sys::set_cloexec(fd)?;
    crate::util::set_nonblocking(fd)?;
    // SAFETY: `fd` is an open socket (getsockopt succeeded) that the service manager passed to
    // this process; per the doc contract nothing else owns it, so it is closed exactly once.
    Ok((unsafe { OwnedFd::from_raw_fd(fd) }, addr))
}

/// CLOCK_MONOTONIC in microseconds (`MONOTONIC_USEC=` of sd_notify(3)).
pub fn monotonic_usec() -> u64 {
    // SAFETY: all-zero timespec is valid; clock_gettime writes one through the pointer.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid clock id and a pointer to a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}
