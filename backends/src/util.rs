//! Small safe wrappers the server needs around raw fds and processes, so that `unsafe` stays in
//! this crate: socket addresses of an accepted fd, non-blocking pipes, signals to children, and
//! a signal-watching thread.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

use crate::sys::cvt;

fn sockaddr_to_std(ss: &libc::sockaddr_storage) -> io::Result<SocketAddr> {
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let a = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Ok(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let a = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Ok(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => Err(io::Error::from_raw_os_error(libc::EAFNOSUPPORT)),
    }
}

fn sock_name(
    fd: RawFd,
    f: unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int,
) -> io::Result<SocketAddr> {
    // SAFETY: all-zero sockaddr_storage is valid; `f` writes at most `len` bytes into it.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: pointers to live storage and its length.
    cvt(unsafe { f(fd, &mut ss as *mut _ as *mut libc::sockaddr, &mut len) })?;
    sockaddr_to_std(&ss)
}

/// The peer address of a connected socket (`getpeername(2)`).
pub fn peer_addr(fd: RawFd) -> io::Result<SocketAddr> {
    sock_name(fd, libc::getpeername)
}

/// The local address of a socket (`getsockname(2)`): which listen address a connection came in on.
pub fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    sock_name(fd, libc::getsockname)
}

/// Make `fd` non-blocking (for pipes handed to the backend).
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl with integer arguments on an fd the caller owns.
    unsafe {
        let fl = cvt(libc::fcntl(fd, libc::F_GETFL))?;
        cvt(libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK))?;
    }
    Ok(())
}

/// Make `cmd`'s child start with no signal blocked. The server blocks HUP, INT and TERM in its
/// threads (a watcher thread takes them with `sigwait`), and a child inherits that mask through
/// `fork`/`posix_spawn` as std runs them: a script would then never see the TERM the server sends
/// it. (This makes std fork and exec instead of `posix_spawn`.)
pub fn unblock_signals_in_child(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec, where only async-signal-safe
    // functions may be called: sigemptyset and pthread_sigmask (sigprocmask) are; it touches no
    // memory shared with the parent but its own stack.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            match libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) {
                0 => Ok(()),
                e => Err(io::Error::from_raw_os_error(e)),
            }
        });
    }
}

/// Send `signal` to process `pid` (ESRCH — already gone — is not an error). A pid that is not
/// a single real process (0 and values that are negative as a `pid_t` name groups; 1 is init)
/// is refused with EINVAL.
pub fn kill(pid: u32, signal: libc::c_int) -> io::Result<()> {
    send_signal(pid, signal, false)
}

/// Send `signal` to every process of process group `pgid` (ESRCH is not an error); the same
/// values as in [`kill`] are refused.
pub fn kill_group(pgid: u32, signal: libc::c_int) -> io::Result<()> {
    send_signal(pgid, signal, true)
}

fn send_signal(id: u32, signal: libc::c_int, group: bool) -> io::Result<()> {
    if id <= 1 || id > libc::pid_t::MAX as u32 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let target = if group {
        -(id as libc::pid_t)
    } else {
        id as libc::pid_t
    };
    // SAFETY: kill(2) takes plain integers; `target` names one process or one group, never
    // every process (-1) or the caller's own group (0).
    match cvt(unsafe { libc::kill(target, signal) }) {
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        r => r.map(drop),
    }
}

/// Block `signals` in the calling thread (and so in threads it spawns later), and start a
/// thread that waits for them with `sigwait(3)` and calls `on` for each. Call it first thing in
/// `main`, before other threads exist, so that no thread is left to take the signal the default
/// way.
pub fn watch_signals(
    signals: &[libc::c_int],
    on: impl Fn(libc::c_int) + Send + 'static,
) -> io::Result<()> {
    // SAFETY: sigset manipulation on a local, zero-initialised set.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        set
    };
    // SAFETY: `set` is a valid sigset; the old mask is not wanted.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let mut sig: libc::c_int = 0;
            // SAFETY: `set` is valid and `sig` a live out-pointer.
            if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
                on(sig);
            }
        })?;
    Ok(())
}

/// Raise the soft open-file limit to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a pointer to a live rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
    {
        lim.rlim_cur as u64
    }
}

/// The soft open-file limit (`RLIMIT_NOFILE`), unchanged; 0 when it cannot be read.
pub fn nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit with a pointer to a live rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
    {
        lim.rlim_cur as u64
    }
}

/// The resident set size of this process in bytes (Linux: /proc/self/statm; elsewhere 0).
pub fn rss_bytes() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = s
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf takes an integer name.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize
}

/// A listening TCP socket: `SO_REUSEADDR`, `IPV6_V6ONLY` for IPv6 (so `[::]:80` and
/// `0.0.0.0:80` can both be bound), optional `SO_REUSEPORT`, non-blocking, close-on-exec.
pub fn listen(
    addr: SocketAddr,
    backlog: i32,
    reuse_port: bool,
) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsRawFd;
    let fd = bound(addr, reuse_port)?;
    // SAFETY: listen(2) on our socket.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) })?;
    set_nonblocking(fd.as_raw_fd())?;
    Ok(fd)
}

/// Whether another socket (another process's) already serves `addr`: a socket without
/// `SO_REUSEPORT` is bound to it and dropped, never listening. Sockets that share an address
/// through `SO_REUSEPORT` (a server's workers) would otherwise also share it with a second
/// server started on the same address, which would silently take part of its connections;
/// with this check first, the second one is told `EADDRINUSE` as it would be by nginx. (A
/// server that binds in the instant between the check and the bind still gets in: the check
/// narrows that to a race, it does not lock.)
pub fn check_address_free(addr: SocketAddr) -> io::Result<()> {
    bound(addr, false).map(drop)
}

/// A TCP socket bound to `addr` (see [`listen`] for its options), not listening.
fn bound(addr: SocketAddr, reuse_port: bool) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let family = if addr.is_ipv6() {
        libc::AF_INET6
    } else {
        libc::AF_INET
    };
    // SAFETY: socket(2) returns a new fd that we immediately own.
    let fd = unsafe {
        std::os::fd::OwnedFd::from_raw_fd(cvt(libc::socket(family, libc::SOCK_STREAM, 0))?)
    };
    use std::os::fd::AsRawFd;
    let raw = fd.as_raw_fd();
    crate::sys::set_cloexec(raw)?;
    let on: libc::c_int = 1;
    let setopt = |level, name| {
        // SAFETY: setsockopt with a pointer to a live c_int of the stated size.
        cvt(unsafe {
            libc::setsockopt(
                raw,
                level,
                name,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        })
    };
    setopt(libc::SOL_SOCKET, libc::SO_REUSEADDR)?;
    if reuse_port {
        setopt(libc::SOL_SOCKET, libc::SO_REUSEPORT)?;
    }
    if addr.is_ipv6() {
        setopt(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY)?;
    }
    // SAFETY: all-zero sockaddr_storage is valid; filled below for the address family.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as _;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as _;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    // SAFETY: `ss` holds a valid address of `len` bytes.
    cvt(unsafe {
        libc::bind(
            raw,
            &ss as *const _ as *const libc::sockaddr,
            len as libc::socklen_t,
        )
    })?;
    Ok(fd)
}

/// Turn off Nagle's algorithm on a connected TCP socket: responses go out as soon as they are
/// written (a head and a separately written body must not wait for the peer's delayed ACK).
pub fn set_nodelay(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt with a pointer to a live c_int of the stated size.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Half-close a socket for writing (`shutdown(SHUT_WR)`): the peer reads an orderly end of
/// stream after the last response, while anything it still sends can be read and dropped.
pub fn shutdown_write(fd: RawFd) -> io::Result<()> {
    // SAFETY: shutdown(2) on an fd the caller owns.
    cvt(unsafe { libc::shutdown(fd, libc::SHUT_WR) }).map(drop)
}

#[cfg(test)]
mod child_mask {
    /// A child made with [`super::unblock_signals_in_child`] starts with no signal blocked,
    /// even when its parent thread blocks TERM (as the server's threads do).
    #[test]
    fn child_starts_unblocked() {
        let out = std::thread::spawn(|| {
            // SAFETY: plain sigset operations on a local set, for this thread only.
            unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGTERM);
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            }
            let run = |unblock: bool| {
                // grep leaves its mask as it found it (a shell would reset its own).
                let mut cmd = std::process::Command::new("grep");
                cmd.args(["SigBlk", "/proc/self/status"]);
                if unblock {
                    super::unblock_signals_in_child(&mut cmd);
                }
                String::from_utf8(cmd.output().unwrap().stdout).unwrap()
            };
            (run(false), run(true))
        })
        .join()
        .unwrap();
        // Without it the mask is inherited (why it exists); with it, nothing is blocked.
        if cfg!(target_os = "linux") {
            assert!(!out.0.contains("0000000000000000"), "{out:?}");
            assert!(out.1.contains("SigBlk:\t0000000000000000"), "{out:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Files beneath a directory fd (issue 16): containment by the kernel, not by string checks.
// ---------------------------------------------------------------------------------------------

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

fn cstr(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// What `fstat(2)` says about a file, in the units the server needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStat {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    /// `S_IFMT` bits of the mode.
    pub kind: u32,
    pub uid: u32,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

// The `stat` field types differ between platforms (mode_t is u16 on macOS, dev_t i32): the
// casts are identities on Linux only.
#[allow(clippy::unnecessary_cast)]
impl FileStat {
    pub fn is_file(&self) -> bool {
        self.kind == libc::S_IFREG as u32
    }
    pub fn is_dir(&self) -> bool {
        self.kind == libc::S_IFDIR as u32
    }
    pub fn is_symlink(&self) -> bool {
        self.kind == libc::S_IFLNK as u32
    }
    fn from(st: &libc::stat) -> FileStat {
        FileStat {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            size: st.st_size as u64,
            kind: st.st_mode as u32 & libc::S_IFMT as u32,
            uid: st.st_uid as u32,
            mtime: (st.st_mtime as i64, st.st_mtime_nsec as i64),
            ctime: (st.st_ctime as i64, st.st_ctime_nsec as i64),
        }
    }
}

/// `fstat(2)`.
pub fn fstat(fd: RawFd) -> io::Result<FileStat> {
    // SAFETY: all-zero `stat` is valid; fstat writes into it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a live out-pointer.
    cvt(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(FileStat::from(&st))
}

/// `fstatat(2)` of one name in `dir`; `follow` false stats a symlink itself.
pub fn fstatat(dir: RawFd, name: &OsStr, follow: bool) -> io::Result<FileStat> {
    let c = cstr(name)?;
    let flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
    // SAFETY: all-zero `stat` is valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated name and a live out-pointer.
    cvt(unsafe { libc::fstatat(dir, c.as_ptr(), &mut st, flags) })?;
    Ok(FileStat::from(&st))
}

/// `openat(2)` of one name (or relative path) in `dir`, close-on-exec.
pub fn openat(dir: RawFd, path: &OsStr, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    let c = cstr(path)?;
    // SAFETY: a NUL-terminated path; the returned fd is new and owned here.
    let fd = cvt(unsafe {
        libc::openat(
            dir,
            c.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })?;
    // SAFETY: `fd` was just returned by openat and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// [`open_beneath`] that never waits for the disk: on Linux ≥ 5.12 `openat2` with
/// `RESOLVE_CACHED` fails with `EAGAIN` when a step of the lookup is not in the kernel's
/// caches (the caller then has it done off its thread, [`crate::Op::OpenAt`], and tries
/// again). `WEBSERV_COLD_LOOKUPS=1` in the environment makes every such attempt say `EAGAIN`
/// (a testing aid: it sends every lookup the slow way). Where `RESOLVE_CACHED` is unknown
/// (Linux < 5.12, the BSDs; [`no_cached_calls`] pretends so) the caches cannot be asked
/// alone: every attempt says `EAGAIN`, and every lookup is done off the caller's thread.
pub fn open_beneath_cached(
    dir: RawFd,
    path: &OsStr,
    flags: libc::c_int,
    no_symlinks: bool,
) -> io::Result<OwnedFd> {
    use std::sync::atomic::{AtomicU8, Ordering};
    // 0: unknown, 1: RESOLVE_CACHED works, 2: it does not (EINVAL/ENOSYS), 3: forced cold.
    static MODE: AtomicU8 = AtomicU8::new(0);
    let mut mode = MODE.load(Ordering::Relaxed);
    if mode == 0 {
        mode = if std::env::var_os("WEBSERV_COLD_LOOKUPS").is_some_and(|v| v == "1") {
            3
        } else {
            1
        };
        MODE.store(mode, Ordering::Relaxed);
    }
    if mode == 1 && no_cached_calls() {
        mode = 2;
        MODE.store(mode, Ordering::Relaxed);
    }
    let cold = || Err(io::Error::from_raw_os_error(libc::EAGAIN));
    match mode {
        // Forced cold, or the kernel cannot answer from its caches alone: every lookup is
        // one that may block, so it goes off the caller's thread.
        2 | 3 => cold(),
        _ => match openat2_cached(dir, path, flags, no_symlinks) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {
                // The kernel does not know RESOLVE_CACHED (or openat2).
                MODE.store(2, Ordering::Relaxed);
                cold()
            }
            r => r,
        },
    }
}

#[cfg(target_os = "linux")]
fn openat2_cached(
    dir: RawFd,
    path: &OsStr,
    flags: libc::c_int,
    no_symlinks: bool,
) -> io::Result<OwnedFd> {
    const RESOLVE_CACHED: u64 = 0x20;
    openat2_raw(
        dir,
        path,
        flags,
        0,
        beneath_resolve(no_symlinks) | RESOLVE_CACHED,
    )
}

/// `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`, and `RESOLVE_NO_SYMLINKS` with `no_symlinks`.
#[cfg(target_os = "linux")]
fn beneath_resolve(no_symlinks: bool) -> u64 {
    const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
    const RESOLVE_NO_SYMLINKS: u64 = 0x04;
    const RESOLVE_BENEATH: u64 = 0x08;
    RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | if no_symlinks { RESOLVE_NO_SYMLINKS } else { 0 }
}

/// One `openat2(2)` with `resolve` (`RESOLVE_*`); `O_CLOEXEC` is added, and `mode` is passed
/// only with `O_CREAT`/`O_TMPFILE` (openat2 refuses it otherwise).
#[cfg(target_os = "linux")]
fn openat2_raw(
    dir: RawFd,
    path: &OsStr,
    flags: libc::c_int,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let c = cstr(path)?;
    let creating = flags & (libc::O_CREAT | libc::O_TMPFILE) != 0;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: if creating { u64::from(mode) } else { 0 },
        resolve,
    };
    // SAFETY: openat2(2) with a NUL-terminated path and a live `open_how` of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `r` is a new fd returned by openat2 and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// Whether every page of the `len` bytes of file `fd` from `offset` is in the page cache, so
/// that reading them (or `sendfile(2)` from them) does not wait for the disk: `cachestat(2)`
/// (Linux ≥ 6.5). `None` where the kernel cannot say (older kernels, other systems, a
/// file system without a page cache).
pub fn cached_fully(fd: RawFd, offset: u64, len: u64) -> Option<bool> {
    if len == 0 {
        return Some(true);
    }
    if no_cached_calls() {
        return None;
    }
    // SAFETY: sysconf reads a constant of the process (no system call with glibc).
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        p if p > 0 => p as u64,
        _ => 4096,
    };
    let first = offset / page;
    let end = offset.checked_add(len)?.div_ceil(page);
    let cached = cachestat_pages(fd, first * page, (end - first) * page)?;
    Some(cached >= end - first)
}

#[cfg(target_os = "linux")]
fn cachestat_pages(fd: RawFd, off: u64, len: u64) -> Option<u64> {
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Stat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    // The same number on every Linux architecture (the generic syscall table).
    const SYS_CACHESTAT: libc::c_long = 451;
    let range = Range { off, len };
    let mut st = Stat::default();
    // SAFETY: both pointers are live, correctly laid out (`repr(C)` as the kernel's
    // `struct cachestat_range` and `struct cachestat`), and only read/written during the call.
    let r = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            fd as libc::c_uint,
            &range as *const Range,
            &mut st as *mut Stat,
            0 as libc::c_uint,
        )
    };
    (r == 0).then_some(st.nr_cache)
}

#[cfg(not(target_os = "linux"))]
fn cachestat_pages(_fd: RawFd, _off: u64, _len: u64) -> Option<u64> {
    None
}

#[cfg(not(target_os = "linux"))]
fn openat2_cached(
    _dir: RawFd,
    _path: &OsStr,
    _flags: libc::c_int,
    _no_symlinks: bool,
) -> io::Result<OwnedFd> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

/// `WEBSERV_NO_CACHED_CALLS=1` in the environment: behave as on a kernel without
/// `RESOLVE_CACHED` (< 5.12) and without `cachestat` (< 6.5) — a testing aid for the paths
/// every older kernel and the BSDs take.
pub fn no_cached_calls() -> bool {
    static NO: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *NO.get_or_init(|| std::env::var_os("WEBSERV_NO_CACHED_CALLS").is_some_and(|v| v == "1"))
}

/// Read `buf.len()` bytes of file `fd` at `offset` only if they are all in the page cache:
/// `preadv2(RWF_NOWAIT)` (Linux ≥ 4.14), which never waits for the disk. `Ok(false)` when
/// some are not (the caller reads them off its thread instead), and always where the call
/// does not exist (other systems).
pub fn read_cached_at(fd: RawFd, buf: &mut [u8], offset: u64) -> io::Result<bool> {
    let mut done = 0;
    while done < buf.len() {
        match pread_nowait(fd, &mut buf[done..], offset + done as u64) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => done += n,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EOPNOTSUPP)) => {
                return Ok(false)
            }
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(target_os = "linux")]
fn pread_nowait(fd: RawFd, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let off =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: one iovec over a live, writable buffer of its length, read only during the call.
    let r = unsafe { libc::preadv2(fd, &iov, 1, off, libc::RWF_NOWAIT) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as usize)
}

#[cfg(not(target_os = "linux"))]
fn pread_nowait(_fd: RawFd, _buf: &mut [u8], _offset: u64) -> io::Result<usize> {
    Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
}

/// The open flags for a lookup only (nothing read or written through the fd): `O_PATH` where
/// it exists; elsewhere a non-blocking read-only open (a FIFO then opens at once too).
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
pub const O_LOOKUP: libc::c_int = libc::O_PATH;
#[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
pub const O_LOOKUP: libc::c_int = libc::O_RDONLY | libc::O_NONBLOCK;

/// A duplicate of `fd` (close-on-exec), owned: for an op that must own its directory fd.
pub fn dup_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: `fd` is open for the duration of this call (the caller holds it).
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()
}

/// Take ownership of `fd`, an fd a completion handed over (the result of an
/// [`crate::Op::OpenAt`]), so that dropping it closes it.
pub fn adopt_fd(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: the caller passes an fd the backend handed to it and nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What [`crate::Op::OpenAt`] does, blocking: [`open_beneath`] when `beneath`, else
/// [`openat`].
pub fn open_at(
    dir: RawFd,
    path: &std::ffi::CStr,
    flags: libc::c_int,
    mode: u32,
    beneath: bool,
    no_symlinks: bool,
) -> io::Result<OwnedFd> {
    let path = OsStr::from_bytes(path.to_bytes());
    if beneath {
        open_beneath(dir, path, flags, mode, no_symlinks)
    } else {
        openat(dir, path, flags, mode)
    }
}

/// Open a directory by absolute (or cwd-relative) path: the anchor of a root or store.
pub fn open_dir(path: &std::path::Path) -> io::Result<OwnedFd> {
    openat(
        libc::AT_FDCWD,
        path.as_os_str(),
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    )
}

/// Open `path` (relative, no `..` needed) beneath `dir`: resolution never leaves `dir`, and
/// with `no_symlinks` no symbolic link is followed on the way or at the end.
///
/// Linux ≥ 5.6: one `openat2(2)` with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS` (plus
/// `RESOLVE_NO_SYMLINKS`). Elsewhere, or when the kernel lacks openat2, components are walked
/// one `openat` at a time: `..` is refused, and with `no_symlinks` every step has
/// `O_NOFOLLOW`; without it the walk follows symlinks as `openat` does (not contained: see the
/// README).
pub fn open_beneath(
    dir: RawFd,
    path: &OsStr,
    flags: libc::c_int,
    mode: u32,
    no_symlinks: bool,
) -> io::Result<OwnedFd> {
    match openat2_beneath(dir, path, flags, mode, no_symlinks) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            walk_beneath(dir, path, flags, mode, no_symlinks)
        }
        r => r,
    }
}

#[cfg(target_os = "linux")]
fn openat2_beneath(
    dir: RawFd,
    path: &OsStr,
    flags: libc::c_int,
    mode: u32,
    no_symlinks: bool,
) -> io::Result<OwnedFd> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static MISSING: AtomicBool = AtomicBool::new(false);
    if MISSING.load(Ordering::Relaxed) {
        return Err(io::Error::from_raw_os_error(libc::ENOSYS));
    }
    let r = openat2_raw(dir, path, flags, mode, beneath_resolve(no_symlinks));
    if r.as_ref()
        .is_err_and(|e| e.raw_os_error() == Some(libc::ENOSYS))
    {
        MISSING.store(true, Ordering::Relaxed);
    }
    r
}

/// FreeBSD ≥ 13: `O_RESOLVE_BENEATH` gives the same containment to a plain `openat`. With
/// `no_symlinks` the component walk (O_NOFOLLOW at every step, `..` refused) is used instead.
/// Only compile-checked here (no FreeBSD machine); FreeBSD before 13 does not know the flag.
#[cfg(target_os = "freebsd")]
fn openat2_beneath(
    dir: RawFd,
    path: &OsStr,
    flags: libc::c_int,
    mode: u32,
    no_symlinks: bool,
) -> io::Result<OwnedFd> {
    if no_symlinks {
        return Err(io::Error::from_raw_os_error(libc::ENOSYS));
    }
    openat(dir, path, flags | libc::O_RESOLVE_BENEATH, mode)
}

#[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
fn openat2_beneath(
    _dir: RawFd,
    _path: &OsStr,
    _flags: libc::c_int,
    _mode: u32,
    _no_symlinks: bool,
) -> io::Result<OwnedFd> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

/// The portable walk behind [`open_beneath`].
fn walk_beneath(
    dir: RawFd,
    path: &OsStr,
    flags: libc::c_int,
    mode: u32,
    no_symlinks: bool,
) -> io::Result<OwnedFd> {
    let nofollow = if no_symlinks { libc::O_NOFOLLOW } else { 0 };
    let parts: Vec<&[u8]> = path
        .as_bytes()
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty() && *p != b".")
        .collect();
    if parts.iter().any(|p| *p == b"..") {
        return Err(io::Error::from_raw_os_error(libc::EXDEV));
    }
    let Some((last, dirs)) = parts.split_last() else {
        return openat(dir, OsStr::new("."), flags, mode);
    };
    let mut cur: Option<OwnedFd> = None;
    for d in dirs {
        let at = cur.as_ref().map_or(dir, |f| f.as_raw_fd());
        let next = openat(
            at,
            OsStr::from_bytes(d),
            libc::O_RDONLY | libc::O_DIRECTORY | nofollow,
            0,
        )?;
        cur = Some(next);
    }
    let at = cur.as_ref().map_or(dir, |f| f.as_raw_fd());
    openat(at, OsStr::from_bytes(last), flags | nofollow, mode)
}

/// `unlinkat(2)` of one name in `dir` (a symlink is removed, never followed).
pub fn unlinkat(dir: RawFd, name: &OsStr) -> io::Result<()> {
    unlinkat_c(dir, &cstr(name)?, false)
}

/// `unlinkat(2)` of a NUL-terminated name; `rmdir` removes an empty directory.
pub fn unlinkat_c(dir: RawFd, name: &std::ffi::CStr, rmdir: bool) -> io::Result<()> {
    let flags = if rmdir { libc::AT_REMOVEDIR } else { 0 };
    // SAFETY: a NUL-terminated name.
    cvt(unsafe { libc::unlinkat(dir, name.as_ptr(), flags) }).map(drop)
}

/// `renameat(2)` within one directory; `noreplace` fails with EEXIST rather than replace
/// (Linux `renameat2(RENAME_NOREPLACE)`; elsewhere `linkat` + `unlinkat`, which is also atomic
/// for the new name).
pub fn renameat(dir: RawFd, from: &OsStr, to: &OsStr, noreplace: bool) -> io::Result<()> {
    renameat_c(dir, &cstr(from)?, &cstr(to)?, noreplace)
}

/// [`renameat`] of NUL-terminated names.
pub fn renameat_c(
    dir: RawFd,
    f: &std::ffi::CStr,
    t: &std::ffi::CStr,
    noreplace: bool,
) -> io::Result<()> {
    if noreplace {
        return rename_noreplace(dir, f, t);
    }
    // SAFETY: NUL-terminated names.
    cvt(unsafe { libc::renameat(dir, f.as_ptr(), dir, t.as_ptr()) }).map(drop)
}

#[cfg(target_os = "linux")]
fn rename_noreplace(dir: RawFd, f: &std::ffi::CStr, t: &std::ffi::CStr) -> io::Result<()> {
    // SAFETY: NUL-terminated names; RENAME_NOREPLACE is a plain flag.
    let r =
        cvt(unsafe { libc::renameat2(dir, f.as_ptr(), dir, t.as_ptr(), libc::RENAME_NOREPLACE) });
    match r {
        // File systems without RENAME_NOREPLACE: link + unlink.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => link_unlink(dir, f, t),
        r => r.map(drop),
    }
}

#[cfg(not(target_os = "linux"))]
fn rename_noreplace(dir: RawFd, f: &std::ffi::CStr, t: &std::ffi::CStr) -> io::Result<()> {
    link_unlink(dir, f, t)
}

/// A no-replace rename as `linkat` + `unlinkat` (file systems without `RENAME_NOREPLACE`).
pub fn link_unlink(dir: RawFd, f: &std::ffi::CStr, t: &std::ffi::CStr) -> io::Result<()> {
    // SAFETY: NUL-terminated names.
    cvt(unsafe { libc::linkat(dir, f.as_ptr(), dir, t.as_ptr(), 0) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::unlinkat(dir, f.as_ptr(), 0) }).map(drop)
}

/// The names in directory `fd` (without `.` and `..`), at most `max` of them; the bool says
/// whether more were left unread. `fd` is duplicated: the caller keeps its own.
pub fn read_dir_fd(fd: RawFd, max: usize) -> io::Result<(Vec<OsString>, bool)> {
    read_dir_names(fd, max, false)
}

/// [`read_dir_fd`], leaving out (and not counting against `max`) the names that start with
/// `.` when `skip_hidden`.
fn read_dir_names(fd: RawFd, max: usize, skip_hidden: bool) -> io::Result<(Vec<OsString>, bool)> {
    // SAFETY: dup of a live fd; the new fd is handed to fdopendir, which owns it from then on.
    let dup = cvt(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) })?;
    // SAFETY: `dup` is a directory fd we own.
    let d = unsafe { libc::fdopendir(dup) };
    if d.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so `dup` is still ours to close.
        unsafe { libc::close(dup) };
        return Err(e);
    }
    // SAFETY: the stream starts at the beginning whatever the fd's offset was.
    unsafe { libc::rewinddir(d) };
    let mut names = Vec::new();
    let mut more = false;
    loop {
        // SAFETY: `d` is a live DIR*; the entry is read before the next readdir call.
        let e = unsafe { libc::readdir(d) };
        if e.is_null() {
            break;
        }
        // SAFETY: d_name is NUL-terminated within the entry.
        let name = unsafe { std::ffi::CStr::from_ptr((*e).d_name.as_ptr()) }.to_bytes();
        if name == b"." || name == b".." || (skip_hidden && name.starts_with(b".")) {
            continue;
        }
        if names.len() >= max {
            more = true;
            break;
        }
        names.push(OsString::from_vec(name.to_vec()));
    }
    // SAFETY: `d` is live and closed once (this also closes `dup`).
    unsafe { libc::closedir(d) };
    Ok((names, more))
}

/// The entries of directory `fd` with their facts, as [`crate::Op::ListDir`] reads them: at
/// most `max` names ([`read_dir_fd`]), each `fstatat`'d in the directory (following a
/// symlink only when `follow`); a name whose `fstatat` fails is left out. The bool says
/// whether names were left unread. With `skip_hidden`, names starting with `.` are neither
/// read nor counted. Blocking: run it off the event loop's thread.
///
/// The names are read through a new open file description of the directory (`openat` of
/// `.`), not `fd`'s own: duplicates of one fd share their offset, and two listings of them on
/// two threads would read each other's entries.
pub fn list_dir(
    fd: RawFd,
    max: usize,
    follow: bool,
    skip_hidden: bool,
) -> io::Result<(Vec<crate::DirEntry>, bool)> {
    let own = openat(fd, OsStr::new("."), libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    let (names, truncated) = read_dir_names(own.as_raw_fd(), max, skip_hidden)?;
    drop(own);
    let mut entries = Vec::with_capacity(names.len());
    for name in names {
        let Ok(m) = fstatat(fd, &name, follow) else {
            continue;
        };
        entries.push(crate::DirEntry {
            is_dir: m.is_dir(),
            size: m.size,
            mtime: m.mtime.0,
            name,
        });
    }
    Ok((entries, truncated))
}

#[cfg(test)]
mod beneath_tests {
    use super::*;
    use std::path::PathBuf;

    fn tree() -> PathBuf {
        let d = std::env::temp_dir().join(format!("backends-beneath-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("root/sub")).unwrap();
        std::fs::write(d.join("root/sub/f"), b"in").unwrap();
        std::fs::write(d.join("secret"), b"out").unwrap();
        std::os::unix::fs::symlink("sub/f", d.join("root/inlink")).unwrap();
        std::os::unix::fs::symlink("../secret", d.join("root/outlink")).unwrap();
        std::os::unix::fs::symlink("/etc", d.join("root/abs")).unwrap();
        d
    }

    fn read(fd: OwnedFd) -> String {
        std::io::read_to_string(std::fs::File::from(fd)).unwrap()
    }

    #[test]
    fn open_beneath_contains_and_honours_the_symlink_policy() {
        let d = tree();
        let root = open_dir(&d.join("root")).unwrap();
        let r = root.as_raw_fd();
        let os = |s: &str| OsStr::new(s).to_os_string();
        // Both the kernel path and the portable walk.
        type Opener = fn(RawFd, &OsStr, libc::c_int, u32, bool) -> io::Result<OwnedFd>;
        for (which, open) in [
            ("open_beneath", open_beneath as Opener),
            ("walk", walk_beneath as Opener),
        ] {
            let o = |p: &str, nofollow: bool| open(r, &os(p), libc::O_RDONLY, 0, nofollow);
            assert_eq!(read(o("sub/f", true).unwrap()), "in", "{which}");
            assert!(o("../secret", false).is_err(), "{which}: .. escaped");
            assert!(o("sub/../../secret", false).is_err(), "{which}: .. escaped");
            assert!(o("inlink", true).is_err(), "{which}: followed a symlink");
            assert!(o("outlink", true).is_err(), "{which}: followed a symlink");
            assert!(
                o("abs/passwd", true).is_err(),
                "{which}: followed a symlink"
            );
            if which == "open_beneath" {
                // Followed within the root, refused out of it (RESOLVE_BENEATH).
                assert_eq!(read(o("inlink", false).unwrap()), "in");
                let e = o("outlink", false).unwrap_err();
                assert_eq!(e.raw_os_error(), Some(libc::EXDEV), "{e}");
                assert!(o("abs/passwd", false).is_err());
            }
        }
        let st = fstatat(r, OsStr::new("outlink"), false).unwrap();
        assert!(st.is_symlink());
        // No-clobber rename and unlink by name.
        let f = openat(
            r,
            OsStr::new("a"),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            0o600,
        );
        drop(f.unwrap());
        std::fs::write(d.join("root/b"), b"b").unwrap();
        let e = renameat(r, OsStr::new("a"), OsStr::new("b"), true).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        renameat(r, OsStr::new("a"), OsStr::new("c"), true).unwrap();
        unlinkat(r, OsStr::new("c")).unwrap();
        let (names, more) = read_dir_fd(r, 100).unwrap();
        assert!(!more);
        let mut names: Vec<String> = names
            .into_iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["abs", "b", "inlink", "outlink", "sub"]);
        let (two, more) = read_dir_fd(r, 2).unwrap();
        assert_eq!((two.len(), more), (2, true));
        let _ = std::fs::remove_dir_all(&d);
    }
}
