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

/// Send `signal` to process `pid` (ESRCH — already gone — is not an error).
pub fn kill(pid: u32, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: kill(2) takes plain integers.
    match cvt(unsafe { libc::kill(pid as libc::pid_t, signal) }) {
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

/// Start `cmd` with stdin, stdout and stderr piped, the parent's ends non-blocking and
/// close-on-exec (std makes them so); the child is not waited for (the caller reaps it with
/// `Op::ChildExit`). The default of [`crate::Backend::spawn`].
pub fn spawn_piped(cmd: &mut std::process::Command) -> io::Result<crate::Spawned> {
    use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
    use std::process::Stdio;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let missing = || io::Error::other("child pipe missing");
    let stdin: OwnedFd = child.stdin.take().ok_or_else(missing)?.into();
    let stdout: OwnedFd = child.stdout.take().ok_or_else(missing)?.into();
    let stderr: OwnedFd = child.stderr.take().ok_or_else(missing)?.into();
    let nonblocking = set_nonblocking(stdin.as_raw_fd())
        .and_then(|()| set_nonblocking(stdout.as_raw_fd()))
        .and_then(|()| set_nonblocking(stderr.as_raw_fd()));
    if let Err(e) = nonblocking {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    // Dropping a `Child` neither waits nor kills (std documents this): the process stays a
    // zombie after it exits until the caller's child-exit op reaps it.
    let pid = child.id();
    drop(child);
    Ok(crate::Spawned {
        pid,
        stdin: stdin.into_raw_fd(),
        stdout: stdout.into_raw_fd(),
        stderr: stderr.into_raw_fd(),
    })
}
