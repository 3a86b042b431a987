//! Completion-model I/O for webserv.
//!
//! The HTTP, config and CGI layers never see which kernel interface runs underneath: they
//! *submit* operations ([`Op`]) tagged with a caller [`Token`] and *reap* [`Completion`]s. io_uring
//! ([`uring`], Linux) is completion-native; epoll (Linux) and kqueue (macOS, FreeBSD) are
//! readiness interfaces, and [`readiness`] emulates completions over them once, for both, with a
//! thin syscall shim each.
//!
//! # The contract (every backend, every invariant)
//!
//! 1. **Queue, then wait.** [`Backend::submit`] only queues; nothing reaches the kernel until
//!    [`Backend::wait`], which submits the whole batch in one go and returns when at least one
//!    completion is ready, the timeout passed, or another thread called [`Waker::wake`]. An error
//!    of an operation is never returned by `submit`: it arrives as that operation's completion.
//! 2. **Tokens.** A token names one operation from its submission to its last completion. The
//!    caller must not reuse a token while the operation holding it is in flight. [`WAKE_TOKEN`]
//!    is reserved for wake-ups.
//! 3. **Ownership passes with the op.** Every buffer the kernel may touch is moved into the [`Op`]
//!    and moved back out in the [`Completion`] (`buf`), whatever the outcome — success, error or
//!    cancellation. No buffer is touched by two owners, and none is freed while the kernel may
//!    still write it. Dropping the backend with operations in flight cancels them first (and
//!    leaks, rather than frees, whatever the kernel has not let go of).
//! 4. **Receive buffers belong to the backend** until data lands in one: an armed [`Op::Recv`]
//!    holds no buffer, so an idle connection holds no receive memory. A completed receive hands a
//!    [`RecvBuf`] to the caller, who gives it back with [`Backend::release`]. When the pool runs
//!    dry, receives wait (no data is lost: it stays in the socket) and resume on `release`. A
//!    buffer knows its pool: one released into another backend is refused (and freed).
//! 5. **Multishot.** [`Op::Accept`] and [`Op::Recv`] stay armed after each completion: a completion
//!    with `more == true` means the op is still live and its token still in use; `more == false`
//!    is its last completion (end of stream — a recv of 0 bytes —, an error, or a cancellation).
//!    Where the kernel lacks multishot the backend re-arms internally; callers see the same thing.
//! 6. **Sends and writes complete whole.** At most one [`Op::Send`] (or [`Op::Write`]) is in flight
//!    per fd. Short writes are finished inside the backend: a successful completion reports the
//!    whole length; an error reports the error, and the number of bytes that did go out is lost.
//! 7. **Close.** [`Op::Close`] cancels everything in flight on that fd; those operations complete
//!    (with `ECANCELED`, or with what they finished first) *before* the close completes, and the fd
//!    number is only released to the kernel after the last of them. An fd number is therefore never
//!    reused while an operation on it is pending. The caller may close an fd itself only when no
//!    operation on it is in flight (the readiness backends then re-register the number afresh the
//!    next time it is used). An [`Op::SendFile`] uses its `file` as much as its socket: a Close
//!    of either covers it. An fd that is negative or not open completes the op with `EBADF`.
//!    The completion means the fd *number* is closed; the kernel object behind it may live a
//!    little longer (io_uring with `DEFER_TASKRUN` drops a request's last reference in task
//!    work that runs inside a later `wait`), so the peer's EOF is only certain once the caller
//!    keeps waiting, as an event loop does.
//! 8. **Cancel** completes the target (normally with `ECANCELED`, or with the result it reached
//!    first) and itself: `Ok(0)` if the target was found, `Err(ENOENT)` if it had already
//!    completed. The two completions may arrive in either order. What the backend restarts on
//!    its own (the rest of a short send, a re-armed receive or single-shot accept, a retry after
//!    EAGAIN) belongs to the same token: a Close or Cancel issued before the restart covers it.
//! 9. **Timers and children are ops.** [`Op::Timeout`] completes with `Ok(0)` when its deadline
//!    passes (timers complete in deadline order). [`Op::ChildExit`] completes once when the child
//!    exits, after the backend reaped it: `Ok(raw wait status)` (decode with
//!    [`std::os::unix::process::ExitStatusExt::from_raw`]). Nothing blocks the loop: no blocking
//!    `waitpid`, no sleeping.
//! 10. **Hang-up watch.** [`Op::Hangup`] completes once, with `Ok(0)`, when the peer of a
//!     connected socket has closed its side or the connection failed (`POLLRDHUP`, `POLLHUP` or
//!     `POLLERR`; kqueue: `EV_EOF` or `EV_ERROR` on the read filter) — also when that happened
//!     before the op was submitted. It does not consume data and holds no buffer: data waiting
//!     in the socket neither completes it nor is lost. It is an op on its fd like any other:
//!     [`Op::Cancel`] ends it with `ECANCELED`, and an [`Op::Close`] of the fd ends it (before
//!     the close completes). It lets a caller that stopped receiving (back-pressure) still
//!     learn that the client left.
//! 11. **Single thread.** A backend is used by one thread; [`Backend::waker`] gives a handle that
//!     other threads (a signal thread, say) use to interrupt `wait`.
//! 12. **The other system calls go through the backend too.** The clock the caller compares
//!     deadlines with ([`Backend::now`]), the few direct calls on a connected socket
//!     ([`Backend::set_nodelay`], [`Backend::local_addr`], [`Backend::peer_addr`],
//!     [`Backend::shutdown_write`]), starting a child with piped stdio ([`Backend::spawn`]) and
//!     signalling it ([`Backend::kill`]). Every real backend keeps the defaults (the real
//!     syscalls, [`util`]); the simulation backend (`sim`, a test-only feature) replaces them,
//!     because its sockets, pipes, children and clock exist only in memory. They are methods
//!     here rather than a second trait object because the backend is already what the loop
//!     lends to every connection and task, and because only the backend can make a simulated
//!     fd or pid mean something. A spawned child's pipe ends are the caller's: it closes them
//!     with [`Op::Close`] (never `close(2)`), and reaps the child with [`Op::ChildExit`].
//! 13. **A lookup that may block runs off the caller's thread.** [`Op::OpenAt`] (a path
//!     resolved under a directory fd, contained or not), [`Op::RenameAt`] and
//!     [`Op::UnlinkAt`] can wait for disk reads and writes of directories and inodes.
//!     io_uring issues `IORING_OP_OPENAT2`, `IORING_OP_RENAMEAT` and `IORING_OP_UNLINKAT`
//!     (the kernel tries each without blocking and hands it to its io-wq workers when it
//!     would); the readiness
//!     backends run it on a small pool of threads ([`offload`]) and complete it through their
//!     own wake-up. The op owns its `dir` and gives it back with its names in the
//!     completion of a call that ran ([`Buf::Path`]); an open's result is the new fd (close-on-exec), which
//!     is the caller's — also when it arrives after the caller stopped caring. A Cancel ends an open not yet started with
//!     `ECANCELED`; one already running completes with its result.
//! 14. **Reading a directory runs off the caller's thread too.** [`Op::ListDir`] reads the
//!     names in a directory (`getdents64`) and `fstatat`s each (one inode read per entry when
//!     not cached): no kernel has an opcode for it, so every backend runs it on its pool of
//!     threads ([`offload`]; io_uring's results come back through its eventfd wake-up). It
//!     owns its `dir` and gives it back, with the entries, in [`Buf::Path`]; the result is
//!     the number of entries. Cancel behaves as for an open (invariant 13).
//!
//! The platform is chosen once, in [`platform`]; no function body contains `cfg`.

#![deny(unsafe_op_in_unsafe_fn)]

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub mod activation;
pub mod offload;
pub mod pool;
pub mod readiness;
#[cfg(feature = "sim")]
pub mod sim;
mod slab;
pub mod spawn;
mod sys;
#[doc(hidden)]
pub mod timers;
pub mod util;

#[cfg(target_os = "linux")]
mod linux;

#[cfg(target_os = "linux")]
pub mod uring;

#[cfg_attr(target_os = "linux", path = "platform/linux.rs")]
#[cfg_attr(
    any(
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "dragonfly"
    ),
    path = "platform/bsd.rs"
)]
pub mod platform;

pub use pool::RecvBuf;

/// The caller's name for an operation; comes back in each of its completions.
pub type Token = u64;

/// Token of the completion produced by [`Waker::wake`].
pub const WAKE_TOKEN: Token = u64::MAX;

/// Bytes shared between many sends without copying: a range of `data`, which is counted
/// references to a byte slice — [`Shared`] across threads (the configuration's error pages),
/// [`Local`] within one (a worker's file cache: no locked add and subtract per response).
#[derive(Clone, Debug)]
pub struct Slice<P> {
    pub data: P,
    pub start: usize,
    pub end: usize,
}

/// Bytes any thread may hold (`Arc`).
pub type Shared = Slice<Arc<[u8]>>;
/// Bytes of one thread (`Rc`): a backend and the buffers it sends belong to one thread.
pub type Local = Slice<std::rc::Rc<[u8]>>;

impl<P: std::ops::Deref<Target = [u8]>> Slice<P> {
    pub fn new(data: P) -> Self {
        let end = data.len();
        Slice {
            data,
            start: 0,
            end,
        }
    }
    pub fn as_slice(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }
}

/// The body half of a [`SendBuf`].
#[derive(Debug, Default)]
pub enum Body {
    #[default]
    Empty,
    Owned(Vec<u8>),
    Shared(Shared),
    Local(Local),
}

impl Body {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Body::Empty => &[],
            Body::Owned(v) => v,
            Body::Shared(s) => s.as_slice(),
            Body::Local(s) => s.as_slice(),
        }
    }
}

/// An owned, vectored send: a response head and its body go out in one operation.
#[derive(Debug, Default)]
pub struct SendBuf {
    pub head: Vec<u8>,
    pub body: Body,
}

impl SendBuf {
    pub fn len(&self) -> usize {
        self.head.len() + self.body.as_slice().len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The two parts that still have to go out after `done` bytes were sent.
    pub fn remaining(&self, done: usize) -> (&[u8], &[u8]) {
        let body = self.body.as_slice();
        if done < self.head.len() {
            (&self.head[done..], body)
        } else {
            (&[], &body[done - self.head.len()..])
        }
    }
}

/// An operation. It owns every buffer the kernel may touch until its completion gives it back.
#[derive(Debug)]
pub enum Op {
    /// Accept connections on a listening socket (multishot). Each completion's result is a new
    /// fd, non-blocking and close-on-exec.
    Accept { fd: RawFd },
    /// Receive on a connected socket (multishot), into buffers the backend picks from its pool.
    Recv { fd: RawFd },
    /// Send `buf` whole (see invariant 6). The completion returns it in [`Buf::Send`].
    Send { fd: RawFd, buf: SendBuf },
    /// Read once into the spare capacity of `buf` (`buf.len()` is kept; the result is the number
    /// of bytes appended; 0 is end of file). `offset: None` reads at the current position
    /// (pipes); `Some(n)` reads a file at `n`. Returned in [`Buf::Vec`] with its length grown.
    Read {
        fd: RawFd,
        buf: Vec<u8>,
        offset: Option<u64>,
    },
    /// Write `buf` whole (see invariant 6), at `offset` or the current position.
    Write {
        fd: RawFd,
        buf: Vec<u8>,
        offset: Option<u64>,
    },
    /// Cancel everything in flight on `fd`, then close it (invariant 7).
    Close { fd: RawFd },
    /// Cancel the operation named `target` (invariant 8).
    Cancel { target: Token },
    /// Complete at `deadline`.
    Timeout { deadline: Instant },
    /// Complete once when child `pid` exits, after reaping it.
    ChildExit { pid: u32 },
    /// Complete once when the peer of socket `fd` hung up or the connection failed
    /// (invariant 10).
    Hangup { fd: RawFd },
    /// Open a path relative to a directory fd off the caller's thread (invariant 13); the
    /// result is the new fd. See [`Open`].
    OpenAt(Open),
    /// Rename a name in a directory to another name in the same directory, off the caller's
    /// thread (invariant 13). See [`Rename`].
    RenameAt(Rename),
    /// Remove a name from a directory off the caller's thread (invariant 13). See [`Unlink`].
    UnlinkAt(Unlink),
    /// Read a directory's entries and their facts off the caller's thread (invariant 14).
    /// See [`ListDir`].
    ListDir(ListDir),
    /// Send `len` bytes of regular file `file` from `offset` to socket `fd` without copying
    /// them through user space (`sendfile(2)`), whole (invariant 6). io_uring has no sendfile
    /// opcode: that backend splices file → pipe → socket, or calls `sendfile(2)` on the
    /// non-blocking socket and polls out EAGAIN ([`FileSend`]). Where
    /// [`Backend::sendfile_native`] is false it completes with `EOPNOTSUPP`.
    SendFile {
        fd: RawFd,
        file: RawFd,
        offset: u64,
        len: usize,
    },
}

impl Op {
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Accept { .. } => OpKind::Accept,
            Op::Recv { .. } => OpKind::Recv,
            Op::Send { .. } => OpKind::Send,
            Op::Read { .. } => OpKind::Read,
            Op::Write { .. } => OpKind::Write,
            Op::Close { .. } => OpKind::Close,
            Op::Cancel { .. } => OpKind::Cancel,
            Op::Timeout { .. } => OpKind::Timeout,
            Op::ChildExit { .. } => OpKind::ChildExit,
            Op::SendFile { .. } => OpKind::SendFile,
            Op::Hangup { .. } => OpKind::Hangup,
            Op::OpenAt(_) => OpKind::OpenAt,
            Op::RenameAt(_) => OpKind::RenameAt,
            Op::UnlinkAt(_) => OpKind::UnlinkAt,
            Op::ListDir(_) => OpKind::ListDir,
        }
    }
}

/// What an [`Op::OpenAt`] opens: `path` relative to directory `dir`, with `flags` (`O_*`;
/// `O_CLOEXEC` is added) and `mode` for a created file. With `beneath`, resolution never leaves
/// `dir` and, with `no_symlinks` too, follows no symbolic link ([`util::open_beneath`]);
/// otherwise it is a plain `openat(2)`. `dir` passes with the op (a `dup` of the caller's, say)
/// and is closed after it, so its number cannot name another directory while the lookup runs.
#[derive(Debug)]
pub struct Open {
    pub dir: std::os::fd::OwnedFd,
    pub path: std::ffi::CString,
    pub flags: libc::c_int,
    pub mode: u32,
    pub beneath: bool,
    pub no_symlinks: bool,
}

impl Open {
    /// The open itself, blocking (on a pool thread, or in the simulation): the new fd.
    pub fn run(&self) -> io::Result<usize> {
        use std::os::fd::{AsRawFd, IntoRawFd};
        util::open_at(
            self.dir.as_raw_fd(),
            &self.path,
            self.flags,
            self.mode,
            self.beneath,
            self.no_symlinks,
        )
        .map(|fd| fd.into_raw_fd() as usize)
    }
}

/// What an [`Op::RenameAt`] does: `renameat(2)` of `from` to `to`, both in `dir`. With
/// `noreplace` an existing `to` is never replaced (`EEXIST`): `renameat2(RENAME_NOREPLACE)`,
/// or where a file system or platform lacks it a `linkat` + `unlinkat` pair, which is as atomic
/// for the new name. The result is 0.
#[derive(Debug)]
pub struct Rename {
    pub dir: std::os::fd::OwnedFd,
    pub from: std::ffi::CString,
    pub to: std::ffi::CString,
    pub noreplace: bool,
}

/// What an [`Op::UnlinkAt`] removes: `path` in `dir` (`unlinkat(2)`; with `rmdir`, an empty
/// directory, `AT_REMOVEDIR`). A symbolic link is removed itself, never followed. The result
/// is 0.
#[derive(Debug)]
pub struct Unlink {
    pub dir: std::os::fd::OwnedFd,
    pub path: std::ffi::CString,
    pub rmdir: bool,
}

/// What an [`Op::ListDir`] reads: at most `max` names in directory `dir` (without `.` and
/// `..`), in the order the file system lists them, each `fstatat`'d in `dir` (following a
/// symbolic link only with `follow`; nothing is opened, so a FIFO costs nothing). A name whose
/// `fstatat` fails is left out. With `skip_hidden`, names starting with `.` are neither read
/// nor counted against `max`. The call fills `entries`, and `truncated` when more names were
/// left unread; the op's result is `entries.len()`.
#[derive(Debug)]
pub struct ListDir {
    pub dir: std::os::fd::OwnedFd,
    pub max: usize,
    pub follow: bool,
    pub skip_hidden: bool,
    pub entries: Vec<DirEntry>,
    pub truncated: bool,
}

impl ListDir {
    /// A listing of `dir` to be read (the op owns `dir`: a duplicate of the caller's, say).
    pub fn new(dir: std::os::fd::OwnedFd, max: usize, follow: bool) -> ListDir {
        ListDir {
            dir,
            max,
            follow,
            skip_hidden: false,
            entries: Vec::new(),
            truncated: false,
        }
    }

    /// The same listing without the names that start with `.` (a listing that does not show
    /// them must not spend its `max` on them).
    pub fn skip_hidden(mut self) -> ListDir {
        self.skip_hidden = true;
        self
    }

    /// Read it, blocking (on a pool thread, or in the simulation).
    pub fn run(&mut self) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let (entries, truncated) = util::list_dir(
            self.dir.as_raw_fd(),
            self.max,
            self.follow,
            self.skip_hidden,
        )?;
        self.entries = entries;
        self.truncated = truncated;
        Ok(self.entries.len())
    }
}

/// One entry of an [`Op::ListDir`]: its name and what `fstatat` said of it.
#[derive(Clone, Debug)]
pub struct DirEntry {
    pub name: std::ffi::OsString,
    pub is_dir: bool,
    pub size: u64,
    /// Seconds since the epoch.
    pub mtime: i64,
}

/// A call that may block (invariants 13, 14), as a pool thread or the simulation runs it.
#[derive(Debug)]
pub enum PathCall {
    Open(Open),
    Rename(Rename),
    Unlink(Unlink),
    ListDir(ListDir),
}

impl PathCall {
    /// What its completion gives back: the call itself ([`Buf::Path`]).
    pub fn into_buf(self) -> Buf {
        Buf::Path(Box::new(self))
    }

    /// Run it, blocking: an open's new fd, a listing's entry count, 0 for the others.
    pub fn run(&mut self) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        match self {
            PathCall::Open(o) => o.run(),
            PathCall::Rename(r) => {
                util::renameat_c(r.dir.as_raw_fd(), &r.from, &r.to, r.noreplace).map(|()| 0)
            }
            PathCall::Unlink(u) => {
                util::unlinkat_c(u.dir.as_raw_fd(), &u.path, u.rmdir).map(|()| 0)
            }
            PathCall::ListDir(l) => l.run(),
        }
    }

    /// Whether a successful result is a new fd (which someone must close).
    pub fn opens(&self) -> bool {
        matches!(self, PathCall::Open(_))
    }

    /// The op kind, for statistics and logs.
    pub fn kind(&self) -> OpKind {
        match self {
            PathCall::Open(_) => OpKind::OpenAt,
            PathCall::Rename(_) => OpKind::RenameAt,
            PathCall::Unlink(_) => OpKind::UnlinkAt,
            PathCall::ListDir(_) => OpKind::ListDir,
        }
    }
}

impl Op {
    /// The call of an [`Op::OpenAt`], [`Op::RenameAt`], [`Op::UnlinkAt`] or [`Op::ListDir`];
    /// any other op comes back as `Err`.
    pub fn into_path_call(self) -> Result<PathCall, Op> {
        match self {
            Op::OpenAt(o) => Ok(PathCall::Open(o)),
            Op::RenameAt(r) => Ok(PathCall::Rename(r)),
            Op::UnlinkAt(u) => Ok(PathCall::Unlink(u)),
            Op::ListDir(l) => Ok(PathCall::ListDir(l)),
            op => Err(op),
        }
    }
}

/// The kinds of [`Op`], for statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum OpKind {
    Accept,
    Recv,
    Send,
    Read,
    Write,
    Close,
    Cancel,
    Timeout,
    ChildExit,
    SendFile,
    Hangup,
    OpenAt,
    RenameAt,
    UnlinkAt,
    ListDir,
}

impl OpKind {
    pub const ALL: [OpKind; 15] = [
        OpKind::Accept,
        OpKind::Recv,
        OpKind::Send,
        OpKind::Read,
        OpKind::Write,
        OpKind::Close,
        OpKind::Cancel,
        OpKind::Timeout,
        OpKind::ChildExit,
        OpKind::SendFile,
        OpKind::Hangup,
        OpKind::OpenAt,
        OpKind::RenameAt,
        OpKind::UnlinkAt,
        OpKind::ListDir,
    ];
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Accept => "accept",
            OpKind::Recv => "recv",
            OpKind::Send => "send",
            OpKind::Read => "read",
            OpKind::Write => "write",
            OpKind::Close => "close",
            OpKind::Cancel => "cancel",
            OpKind::Timeout => "timeout",
            OpKind::ChildExit => "child_exit",
            OpKind::SendFile => "sendfile",
            OpKind::Hangup => "hangup",
            OpKind::OpenAt => "openat",
            OpKind::RenameAt => "renameat",
            OpKind::UnlinkAt => "unlinkat",
            OpKind::ListDir => "listdir",
        }
    }
}

/// What an operation gave back.
#[derive(Debug, Default)]
pub enum Buf {
    #[default]
    None,
    /// Data received by [`Op::Recv`]; give it back with [`Backend::release`].
    Recv(RecvBuf),
    /// The buffer of an [`Op::Send`].
    Send(SendBuf),
    /// The buffer of an [`Op::Read`] or [`Op::Write`].
    Vec(Vec<u8>),
    /// What an [`Op::OpenAt`], [`Op::RenameAt`], [`Op::UnlinkAt`] or [`Op::ListDir`] carried
    /// (its directory fd and names; a listing's entries), given back so that a caller can undo what it did for a requester that
    /// is gone (remove a file created or renamed for nobody).
    Path(Box<PathCall>),
}

/// One completion of one operation.
#[derive(Debug)]
pub struct Completion {
    pub token: Token,
    pub result: io::Result<usize>,
    pub buf: Buf,
    /// More completions of this operation will follow (invariant 5).
    pub more: bool,
}

impl Completion {
    pub fn new(token: Token, result: io::Result<usize>, buf: Buf, more: bool) -> Self {
        Completion {
            token,
            result,
            buf,
            more,
        }
    }
}

/// Counters a backend keeps, for `status` pages and benchmarks.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Operations submitted, by [`OpKind`] (index with `kind as usize`).
    pub submitted: [u64; OpKind::ALL.len()],
    /// Kernel entries made to wait: `io_uring_enter`, `epoll_wait` or `kevent` calls.
    pub enters: u64,
    /// Calls of [`Backend::wait`] that returned completions, and how many in all.
    pub waits: u64,
    pub completions: u64,
    pub max_per_wait: u64,
    /// Receive buffers handed out and not yet released, and the pool's size.
    pub bufs_in_use: usize,
    pub bufs_total: usize,
}

impl Stats {
    pub fn completions_per_wait(&self) -> f64 {
        if self.waits == 0 {
            0.0
        } else {
            self.completions as f64 / self.waits as f64
        }
    }
    fn count_wait(&mut self, n: usize) {
        if n > 0 {
            self.waits += 1;
            self.completions += n as u64;
            self.max_per_wait = self.max_per_wait.max(n as u64);
        }
    }
}

/// Wakes a backend's [`Backend::wait`] from another thread; it then yields a completion with
/// [`WAKE_TOKEN`]. Wake-ups that arrive before the loop reaps one are merged.
#[derive(Clone)]
pub struct Waker(Arc<dyn Wake>);

/// What a [`Waker`] does underneath (an eventfd write, an `EVFILT_USER` trigger).
pub trait Wake: Send + Sync {
    fn wake(&self) -> io::Result<()>;
}

impl Waker {
    pub fn new(w: Arc<dyn Wake>) -> Self {
        Waker(w)
    }
    /// What it wakes with (for a backend's own, internal wake-ups).
    pub(crate) fn inner(&self) -> Arc<dyn Wake> {
        self.0.clone()
    }
    pub fn wake(&self) -> io::Result<()> {
        self.0.wake()
    }
}

/// The completion-model interface every backend implements.
pub trait Backend {
    /// "uring", "epoll" or "kqueue".
    fn name(&self) -> &'static str;
    /// Queue `op`; it reaches the kernel at the next [`Backend::wait`].
    fn submit(&mut self, token: Token, op: Op);
    /// Submit what is queued and append completions to `out`: at least one unless `timeout`
    /// (`None` = no limit) passes first.
    fn wait(&mut self, out: &mut Vec<Completion>, timeout: Option<Duration>) -> io::Result<()>;
    /// Give a receive buffer back to the pool.
    fn release(&mut self, buf: RecvBuf);
    /// A handle other threads use to interrupt [`Backend::wait`].
    fn waker(&self) -> Waker;
    fn stats(&self) -> Stats;
    /// Whether [`Op::SendFile`] is done by the kernel here (`sendfile(2)`; not on NetBSD and
    /// OpenBSD, which lack it).
    fn sendfile_native(&self) -> bool {
        false
    }
    /// The clock deadlines are measured on (invariant 12).
    fn now(&self) -> Instant {
        Instant::now()
    }
    /// `TCP_NODELAY` on an accepted socket.
    fn set_nodelay(&mut self, fd: RawFd) -> io::Result<()> {
        util::set_nodelay(fd)
    }
    /// The local address of an accepted socket.
    fn local_addr(&self, fd: RawFd) -> io::Result<SocketAddr> {
        util::local_addr(fd)
    }
    /// The peer address of an accepted socket.
    fn peer_addr(&self, fd: RawFd) -> io::Result<SocketAddr> {
        util::peer_addr(fd)
    }
    /// Half-close a socket for writing. No send may be in flight on it, nor follow.
    fn shutdown_write(&mut self, fd: RawFd) -> io::Result<()> {
        util::shutdown_write(fd)
    }
    /// Start `spec` with piped, non-blocking stdin, stdout and stderr, in its own process group
    /// and with no signal blocked ([`spawn`]; invariant 12).
    fn spawn(&mut self, spec: &spawn::Spec<'_>) -> io::Result<Spawned> {
        use std::os::fd::IntoRawFd;
        let c = spawn::spawn(spec)?;
        Ok(Spawned {
            pid: c.pid,
            stdin: c.stdin.into_raw_fd(),
            stdout: c.stdout.into_raw_fd(),
            stderr: c.stderr.into_raw_fd(),
        })
    }
    /// Send `signal` to child `pid` (already gone is not an error).
    fn kill(&mut self, pid: u32, signal: i32) -> io::Result<()> {
        util::kill(pid, signal)
    }
    /// Send `signal` to the process group `pgid` a child leads (already gone is not an error).
    fn kill_group(&mut self, pgid: u32, signal: i32) -> io::Result<()> {
        util::kill_group(pgid, signal)
    }
}

/// A child started by [`Backend::spawn`]: its pid and the caller's ends of its three pipes
/// (non-blocking, close-on-exec), which the caller closes with [`Op::Close`].
#[derive(Debug)]
pub struct Spawned {
    pub pid: u32,
    pub stdin: RawFd,
    pub stdout: RawFd,
    pub stderr: RawFd,
}

/// Whether a wait's deadline (if any) has passed.
fn passed(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// Which backend to open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The best this platform has: io_uring, else epoll, on Linux; kqueue elsewhere.
    Auto,
    Uring,
    Epoll,
    Kqueue,
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Kind, String> {
        match s {
            "auto" => Ok(Kind::Auto),
            "uring" | "io_uring" => Ok(Kind::Uring),
            "epoll" => Ok(Kind::Epoll),
            "kqueue" => Ok(Kind::Kqueue),
            _ => Err(format!(
                "unknown backend {s:?} (expected auto, uring, epoll or kqueue)"
            )),
        }
    }
}

/// Sizes and switches common to every backend.
#[derive(Clone, Debug)]
pub struct Options {
    /// Submission queue entries (io_uring) / events per poll (readiness).
    pub entries: u32,
    /// Receive buffers in the pool (a power of two) and the size of each.
    pub buf_count: u16,
    pub buf_size: usize,
    /// io_uring only: use single-shot operations even where multishot is available (to test
    /// and measure the older-kernel path).
    pub force_single_shot: bool,
    /// Test only: io_uring behaves as on a kernel without `IORING_FEAT_EXT_ARG` (before 5.11),
    /// so the fallback wait path is tested on newer kernels.
    #[doc(hidden)]
    pub assume_no_ext_arg: bool,
    /// Test only: the generation a new operation slot starts at, to test keys and tokens at
    /// the largest generations and across their wrap.
    #[doc(hidden)]
    pub first_generation: u32,
    /// Test only: io_uring's Drop does not wait for the kernel to let go of its ops and takes
    /// the path of an op that could not be cancelled in time (it leaks what they may touch).
    #[doc(hidden)]
    pub drop_without_waiting: bool,
    /// How many fds the caller expects to have open at once (its connection cap): the
    /// per-fd and per-operation tables reserve that much address space up front. Pages are
    /// touched only as the tables fill, so this costs no memory, and a table that never grows
    /// by copying leaves no freed copies behind in the heap (~25 B per connection at 10,000).
    pub expected_fds: usize,
    /// io_uring only: how [`Op::SendFile`] is carried out ([`FileSend`]); `None` reads
    /// `WEBSERV_URING_FILE_SEND` when the backend is opened.
    pub uring_file_send: Option<FileSend>,
    /// Test only: io_uring's splice never gets a pipe (as when fds or the pipe quota run
    /// out), so every SendFile takes its `sendfile(2)` fallback.
    #[doc(hidden)]
    pub uring_no_pipes: bool,
}

/// How io_uring carries out [`Op::SendFile`] (issue 12, item 1: measured side by side in
/// `benches/load/README.md`, "Large files on io_uring", points 6 and 7). Both keep the op's
/// contract.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FileSend {
    /// `IORING_OP_SPLICE` file → pipe linked to pipe → socket, in rounds of a 256 KiB pipe
    /// taken from a small pool; an op that cannot get a pipe runs as `Sendfile`.
    Splice,
    /// `sendfile(2)` on the non-blocking socket, inline, in rounds of 48 KiB with a POLLOUT
    /// poll after each (other connections' completions in between) and on EAGAIN.
    #[default]
    Sendfile,
}

impl FileSend {
    /// The variant `WEBSERV_URING_FILE_SEND` names (`splice`, `sendfile`), or the default when
    /// it is unset or empty.
    pub fn from_env() -> io::Result<FileSend> {
        match std::env::var("WEBSERV_URING_FILE_SEND").as_deref() {
            Err(_) | Ok("") => Ok(FileSend::default()),
            Ok("splice") => Ok(FileSend::Splice),
            Ok("sendfile") => Ok(FileSend::Sendfile),
            Ok(other) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("WEBSERV_URING_FILE_SEND={other}: expected splice or sendfile"),
            )),
        }
    }
}

/// [`Options::expected_fds`] reserves for at most this many fds.
pub const MAX_RESERVED_FDS: usize = 1 << 20;

impl Default for Options {
    fn default() -> Self {
        Options {
            entries: 1024,
            buf_count: 1024,
            buf_size: 16 * 1024,
            force_single_shot: false,
            assume_no_ext_arg: false,
            first_generation: 0,
            drop_without_waiting: false,
            expected_fds: 0,
            uring_file_send: None,
            uring_no_pipes: false,
        }
    }
}

/// An opened backend and, when `auto` had to fall back, the one-line reason why.
pub struct Opened {
    pub backend: Box<dyn Backend>,
    pub fallback: Option<String>,
}

/// Open the backend `kind`. An explicit choice that this machine cannot provide is an error
/// that says why; `Auto` falls back (io_uring → epoll) and reports the reason in `fallback`.
pub fn open(kind: Kind, opts: &Options) -> io::Result<Opened> {
    let opts = &Options {
        expected_fds: opts.expected_fds.min(MAX_RESERVED_FDS),
        ..opts.clone()
    };
    platform::open(kind, opts)
}

/// The backends this machine can open, by name, in preference order (tests run on each).
pub fn available() -> Vec<Kind> {
    platform::available()
}
