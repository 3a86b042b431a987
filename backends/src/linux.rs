//! Linux calls both Linux backends make (io_uring and epoll): the eventfd behind their
//! wakers, `pidfd_open(2)` for child exits, `sendfile(2)`, and the pooled pipes a
//! [`crate::Op::SendFile`] splices file → pipe → socket through ([`SplicePipe`], [`PipePool`]).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use crate::sys::{cvt, cvt_size, Progress};
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

/// `sendfile(2)` of up to `len` bytes of `file` at `offset` to `sock`.
pub(crate) fn sendfile(sock: RawFd, file: RawFd, offset: u64, len: usize) -> io::Result<usize> {
    let mut off = offset as libc::off_t;
    // SAFETY: plain fds and a pointer to a live off_t.
    cvt_size(unsafe { libc::sendfile(sock, file, &mut off, len) })
}

/// A splice pipe's size (`F_SETPIPE_SZ`): one file → pipe → socket round moves at most this
/// much. Measured against 64 KiB, 128 KiB and 1 MiB pipes on io_uring (benches/load/README.md,
/// point 6): 256 KiB cost least per response.
pub(crate) const SPLICE_PIPE_SIZE: usize = 256 << 10;
/// Empty pipes a backend keeps for its next sendfiles (each 64 pages of the user's pipe
/// quota, 2 fds).
const SPARE_PIPES: usize = 16;

/// Splice pipes alive in this process (every backend's, in use or kept spare).
static PIPES: AtomicUsize = AtomicUsize::new(0);

/// How many splice pipes the process may have: a sixteenth of `RLIMIT_NOFILE` (read at the
/// first pipe, after the server raised it), so pipes never hold more than an eighth of the
/// descriptors. Without this, stalled downloads took pipes until the table was full and new
/// connections could not be accepted.
fn pipe_cap() -> usize {
    static CAP: OnceLock<usize> = OnceLock::new();
    *CAP.get_or_init(|| usize::try_from(crate::util::nofile_limit() / 16).unwrap_or(usize::MAX))
}

/// A non-blocking, close-on-exec pipe of [`SPLICE_PIPE_SIZE`], counted against [`pipe_cap`].
#[derive(Debug)]
pub(crate) struct SplicePipe {
    r: OwnedFd,
    w: OwnedFd,
}

impl Drop for SplicePipe {
    fn drop(&mut self) {
        PIPES.fetch_sub(1, Ordering::Relaxed);
    }
}

impl SplicePipe {
    fn new() -> io::Result<SplicePipe> {
        if PIPES.fetch_add(1, Ordering::Relaxed) >= pipe_cap() {
            PIPES.fetch_sub(1, Ordering::Relaxed);
            return Err(io::Error::from_raw_os_error(libc::EMFILE));
        }
        let (r, w) = match pipe(libc::O_NONBLOCK) {
            Ok(ends) => ends,
            Err(e) => {
                PIPES.fetch_sub(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        // Counted from here on: a pipe that cannot be sized is dropped, and uncounted, whole.
        let pipe = SplicePipe { r, w };
        // SAFETY: fcntl on a pipe we own; no pointers.
        let size = cvt(unsafe {
            libc::fcntl(
                pipe.w.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                SPLICE_PIPE_SIZE as i32,
            )
        })?;
        if (size as usize) < SPLICE_PIPE_SIZE {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        Ok(pipe)
    }

    /// The read end (pipe → socket).
    pub(crate) fn r(&self) -> RawFd {
        self.r.as_raw_fd()
    }

    /// The write end (file → pipe).
    pub(crate) fn w(&self) -> RawFd {
        self.w.as_raw_fd()
    }

    /// Push a sendfile of `len` bytes of `file` from `offset` to the non-blocking socket
    /// `sock` forward through this pipe with `splice(2)`, until it is done, fails, or the
    /// socket is full: `done` counts what reached the socket, `held` what is in the pipe and
    /// not yet out of it (drained first, at the next call). Each round fills the pipe with up
    /// to a pipeful of the file and drains it into the socket (`SPLICE_F_MORE` but for the
    /// range's last bytes, so TCP may fill its segments across rounds).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_file(
        &self,
        sock: RawFd,
        file: RawFd,
        offset: u64,
        len: usize,
        until: usize,
        done: &mut usize,
        held: &mut usize,
    ) -> Progress {
        loop {
            if *held > 0 {
                let more = if *done + *held < len {
                    libc::SPLICE_F_MORE
                } else {
                    0
                };
                let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK | more;
                match splice(self.r(), None, sock, *held, flags) {
                    // A socket splice returns 0 only for a 0-byte request.
                    Ok(0) => return Progress::Failed(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        let n = n.min(*held);
                        *held -= n;
                        *done += n;
                    }
                    Err(e) if crate::sys::would_block(&e) => return Progress::WouldBlock,
                    Err(e) if crate::sys::interrupted(&e) => {}
                    Err(e) => return Progress::Failed(e),
                }
                continue;
            }
            if *done >= until {
                return Progress::Done(*done);
            }
            // The pipe is empty, so the fill cannot find it full (it is non-blocking anyway).
            let want = (until - *done).min(SPLICE_PIPE_SIZE);
            let at = offset + *done as u64;
            match splice(file, Some(at), self.w(), want, libc::SPLICE_F_MOVE) {
                // The file is shorter than promised: report, do not spin.
                Ok(0) => return Progress::Failed(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => *held += n.min(want),
                Err(e) if crate::sys::interrupted(&e) => {}
                // EAGAIN here would say nothing about the socket: waiting for it to be
                // writable could wait forever. Fail rather than spin or hang.
                Err(e) if crate::sys::would_block(&e) => {
                    return Progress::Failed(io::Error::other("splice into an empty pipe: EAGAIN"))
                }
                Err(e) => return Progress::Failed(e),
            }
        }
    }
}

/// `splice(2)` of up to `len` bytes from `from` (at `offset` when it is a file) to `to`.
fn splice(
    from: RawFd,
    offset: Option<u64>,
    to: RawFd,
    len: usize,
    flags: libc::c_uint,
) -> io::Result<usize> {
    let mut off = offset.unwrap_or(0) as libc::loff_t;
    let off_ptr = if offset.is_some() {
        &mut off as *mut libc::loff_t
    } else {
        std::ptr::null_mut()
    };
    // SAFETY: plain fds, and a pointer to a live loff_t or null.
    cvt_size(unsafe { libc::splice(from, off_ptr, to, std::ptr::null_mut(), len, flags) })
}

/// A backend's spare splice pipes: an op takes one for as long as it runs and gives it back.
#[derive(Default)]
pub(crate) struct PipePool {
    spare: Vec<SplicePipe>,
    /// Test only ([`crate::Options::no_pipes`]): no pipe is ever had.
    none: bool,
}

impl PipePool {
    pub(crate) fn new(none: bool) -> PipePool {
        PipePool {
            spare: Vec::new(),
            none,
        }
    }

    /// An empty pipe of [`SPLICE_PIPE_SIZE`], spare or new; `None` when none can be had (the
    /// process's cap reached, no fds left, the user's pipe quota `fs.pipe-user-pages-soft`
    /// spent): the op then runs as `sendfile(2)`.
    pub(crate) fn take(&mut self) -> Option<SplicePipe> {
        if self.none {
            return None;
        }
        self.spare.pop().or_else(|| SplicePipe::new().ok())
    }

    /// Give back a pipe that still holds `held` bytes: kept only when empty (bytes left in
    /// it belong to no one) and while fewer than [`SPARE_PIPES`] are kept; else closed.
    pub(crate) fn give(&mut self, pipe: SplicePipe, held: usize) {
        if held == 0 && self.spare.len() < SPARE_PIPES {
            self.spare.push(pipe);
        }
    }
}
