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
    // SAFETY: listen(2) on our socket.
    cvt(unsafe { libc::listen(raw, backlog) })?;
    set_nonblocking(raw)?;
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
