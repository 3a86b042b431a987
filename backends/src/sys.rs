//! Thin, safe wrappers over the POSIX calls both the readiness adapter and the io_uring
//! fallbacks use. Each wrapper turns `-1` into `io::Error::last_os_error()`.

use std::io;
use std::os::fd::RawFd;

pub(crate) fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

pub(crate) fn cvt_size(r: libc::ssize_t) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// `recv(2)` into the spare capacity of `buf`, growing its length by what arrived.
pub(crate) fn recv_spare(fd: RawFd, buf: &mut Vec<u8>) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    // SAFETY: the pointer and length describe `buf`'s spare capacity, valid for writes.
    let n = cvt_size(unsafe { libc::recv(fd, spare.as_mut_ptr().cast(), spare.len(), 0) })?;
    // SAFETY: the kernel initialised `n` bytes past the old length.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// `read(2)` / `pread(2)` into the spare capacity of `buf`.
pub(crate) fn read_spare(fd: RawFd, buf: &mut Vec<u8>, offset: Option<u64>) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    let (ptr, len) = (spare.as_mut_ptr().cast(), spare.len());
    let n = match offset {
        // SAFETY: `ptr`/`len` describe writable spare capacity.
        Some(off) => cvt_size(unsafe { libc::pread(fd, ptr, len, off as libc::off_t) })?,
        // SAFETY: as above.
        None => cvt_size(unsafe { libc::read(fd, ptr, len) })?,
    };
    // SAFETY: the kernel initialised `n` bytes past the old length.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// `write(2)` / `pwrite(2)` of `data`.
pub(crate) fn write_at(fd: RawFd, data: &[u8], offset: Option<u64>) -> io::Result<usize> {
    let (ptr, len) = (data.as_ptr().cast(), data.len());
    match offset {
        // SAFETY: `ptr`/`len` describe a readable slice.
        Some(off) => cvt_size(unsafe { libc::pwrite(fd, ptr, len, off as libc::off_t) }),
        // SAFETY: as above.
        None => cvt_size(unsafe { libc::write(fd, ptr, len) }),
    }
}

/// The iovecs of two slices (the kernel only reads through them).
pub(crate) fn iovecs(a: &[u8], b: &[u8]) -> [libc::iovec; 2] {
    [
        libc::iovec {
            iov_base: a.as_ptr() as *mut _,
            iov_len: a.len(),
        },
        libc::iovec {
            iov_base: b.as_ptr() as *mut _,
            iov_len: b.len(),
        },
    ]
}

/// `sendmsg(2)` of two slices (response head and body) with `flags`.
pub(crate) fn send2(fd: RawFd, a: &[u8], b: &[u8], flags: libc::c_int) -> io::Result<usize> {
    let mut iov = iovecs(a, b);
    let (start, count) = if a.is_empty() { (1, 1) } else { (0, 2) };
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov[start..].as_mut_ptr();
    msg.msg_iovlen = count as _;
    // SAFETY: `msg` points at iovecs describing live, readable slices.
    cvt_size(unsafe { libc::sendmsg(fd, &msg, flags) })
}

pub(crate) fn close(fd: RawFd) -> io::Result<()> {
    // SAFETY: the caller owns `fd` and nothing uses it after this call.
    cvt(unsafe { libc::close(fd) }).map(drop)
}

/// Reap `pid` if it has exited: `Ok(Some(status))`, `Ok(None)` while it still runs.
pub(crate) fn reap(pid: u32) -> io::Result<Option<i32>> {
    let mut status = 0;
    // SAFETY: WNOHANG never blocks; `status` is a valid out-pointer.
    let r = cvt(unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) })?;
    Ok(if r == 0 { None } else { Some(status) })
}

pub(crate) fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

pub(crate) fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

pub(crate) fn canceled() -> io::Error {
    io::Error::from_raw_os_error(libc::ECANCELED)
}

pub(crate) fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl with integer arguments on an fd the caller owns.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) }).map(drop)
}

pub(crate) fn ebadf() -> io::Error {
    io::Error::from_raw_os_error(libc::EBADF)
}

/// Validate an fd before it indexes a per-fd table of `known` entries: negative numbers are
/// EBADF, and a number past the table is asked about (`fcntl(F_GETFD)`, only when the table
/// would grow) so that a wild number never makes a table of that size.
pub(crate) fn check_fd(fd: RawFd, known: usize) -> io::Result<()> {
    if fd < 0 {
        return Err(ebadf());
    }
    if (fd as usize) < known {
        return Ok(());
    }
    // SAFETY: fcntl(F_GETFD) only reads the descriptor table.
    cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) }).map(drop)
}

/// Where a sendfile stands after [`sendfile_loop`].
pub(crate) enum Progress {
    /// All `len` bytes went out.
    Done(usize),
    /// A round went out and more is left: the socket may still be writable; call again after
    /// the other connections had their turn.
    Yielded,
    /// The socket is full: wait for it to be writable, then call again.
    WouldBlock,
    Failed(io::Error),
}

/// Push a sendfile of `len` bytes of `file` from `offset` to `sock` forward, `done` counting
/// what has gone out, until it is done, fails, the socket is full, or `round` more bytes went
/// out (0: no round). `call` is the platform's `sendfile(2)`, returning a partial count rather
/// than EAGAIN when some bytes went.
pub(crate) fn sendfile_loop(
    sock: RawFd,
    file: RawFd,
    offset: u64,
    len: usize,
    round: usize,
    done: &mut usize,
    call: impl Fn(RawFd, RawFd, u64, usize) -> io::Result<usize>,
) -> Progress {
    let until = match round {
        0 => len,
        round => len.min(*done + round),
    };
    loop {
        if *done == len {
            return Progress::Done(len);
        }
        if *done == until {
            return Progress::Yielded;
        }
        match call(sock, file, offset + *done as u64, until - *done) {
            // The file is shorter than promised: report, do not spin.
            Ok(0) => return Progress::Failed(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => *done += n,
            Err(e) if would_block(&e) => return Progress::WouldBlock,
            Err(e) if interrupted(&e) => {}
            Err(e) => return Progress::Failed(e),
        }
    }
}
