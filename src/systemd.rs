//! systemd integration without libsystemd (issue 15):
//!
//! - **Socket activation** (sd_listen_fds(3)): when `LISTEN_PID` is this process, the
//!   `LISTEN_FDS` sockets from fd 3 on are adopted (`LISTEN_FDNAMES` names them in messages).
//!   Each is matched to a `listen` address by its bound address; an inherited socket no
//!   `listen` line names is an error; a `listen` address with no inherited socket is bound as
//!   usual. The variables are removed so a CGI never sees them.
//! - **Readiness** (sd_notify(3), `Type=notify`): `READY=1` once every worker's loop is up,
//!   `RELOADING=1` / `READY=1` around a SIGHUP reload, `STOPPING=1` on SIGTERM/SIGINT — one
//!   datagram each to the `NOTIFY_SOCKET` unix socket (a path, or `@name` in the abstract
//!   namespace).

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;

/// One inherited listening socket.
#[derive(Debug, Clone)]
pub struct Inherited {
    pub addr: SocketAddr,
    /// From `LISTEN_FDNAMES` (systemd's default is the socket unit's name).
    pub name: String,
    pub fd: Arc<OwnedFd>,
}

/// Adopt the sockets systemd passed, if it passed any to this process. Call before any other
/// thread exists (it edits the environment).
pub fn listen_fds() -> Result<Vec<Inherited>, String> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    for v in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(v);
    }
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(Vec::new());
    };
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        // Meant for another process (a wrapper that did not exec us).
        return Ok(Vec::new());
    }
    let n: usize = fds
        .trim()
        .parse()
        .map_err(|_| format!("LISTEN_FDS={fds:?} is not a number"))?;
    if n > 1024 {
        return Err(format!("LISTEN_FDS={n}: too many"));
    }
    let names: Vec<&str> = names.split(':').collect();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let name = names
            .get(i)
            .filter(|s| !s.is_empty())
            .map_or_else(|| format!("fd {}", i + 3), |s| s.to_string());
        let (fd, addr) = backends::activation::adopt_listener(i)
            .map_err(|e| format!("inherited socket {name} (fd {}): {e}", i + 3))?;
        out.push(Inherited {
            addr,
            name,
            fd: Arc::new(fd),
        });
    }
    Ok(out)
}

/// Whether an inherited socket bound to `have` serves `listen` address `want`: the same
/// address, or a dual-stack `[::]:P` (systemd's `ListenStream=P` default) for `0.0.0.0:P`.
pub fn serves(have: SocketAddr, want: SocketAddr) -> bool {
    have == want
        || (have.ip().is_unspecified()
            && have.is_ipv6()
            && want.is_ipv4()
            && want.ip().is_unspecified()
            && have.port() == want.port())
}

/// The readiness channel (`NOTIFY_SOCKET`), or nothing when not run by a service manager.
#[derive(Debug, Default)]
pub struct Notifier {
    target: Option<(UnixDatagram, String)>,
}

impl Notifier {
    /// Reads (and removes) `NOTIFY_SOCKET`. Call before any other thread exists.
    pub fn from_env() -> Notifier {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier::default();
        };
        std::env::remove_var("NOTIFY_SOCKET");
        let path = path.to_string_lossy().into_owned();
        match UnixDatagram::unbound() {
            Ok(s) => Notifier {
                target: Some((s, path)),
            },
            Err(e) => {
                crate::warn!("NOTIFY_SOCKET: cannot create a socket: {e}");
                Notifier::default()
            }
        }
    }

    /// Send one notification (`READY=1`, ...). Failures are logged, never fatal: the service
    /// manager decides what a missing notification means.
    pub fn notify(&self, state: &str) {
        let Some((sock, path)) = &self.target else {
            return;
        };
        if let Err(e) = send(sock, path, state.as_bytes()) {
            crate::warn!("NOTIFY_SOCKET {path}: {e}");
        }
    }

    pub fn active(&self) -> bool {
        self.target.is_some()
    }
}

#[cfg(target_os = "linux")]
fn send(sock: &UnixDatagram, path: &str, msg: &[u8]) -> std::io::Result<usize> {
    use std::os::linux::net::SocketAddrExt;
    match path.strip_prefix('@') {
        Some(name) => {
            let a = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            sock.send_to_addr(msg, &a)
        }
        None => sock.send_to(msg, path),
    }
}

#[cfg(not(target_os = "linux"))]
fn send(sock: &UnixDatagram, path: &str, msg: &[u8]) -> std::io::Result<usize> {
    sock.send_to(msg, path)
}

/// `RELOADING=1` with the clock reading systemd asks for (`Type=notify-reload` needs it).
pub fn reloading_message() -> String {
    format!(
        "RELOADING=1\nMONOTONIC_USEC={}",
        backends::activation::monotonic_usec()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dual_stack_serves_ipv4_wildcard() {
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(serves(sa("127.0.0.1:80"), sa("127.0.0.1:80")));
        assert!(serves(sa("[::]:80"), sa("0.0.0.0:80")));
        assert!(!serves(sa("[::]:80"), sa("0.0.0.0:81")));
        assert!(!serves(sa("0.0.0.0:80"), sa("127.0.0.1:80")));
        assert!(!serves(sa("[::1]:80"), sa("0.0.0.0:80")));
    }

    #[test]
    fn notify_reaches_a_datagram_socket() {
        let dir = std::env::temp_dir().join(format!("webserv-notify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("n.sock");
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            target: Some((
                UnixDatagram::unbound().unwrap(),
                path.to_string_lossy().into_owned(),
            )),
        };
        n.notify("READY=1");
        let mut buf = [0u8; 64];
        let got = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..got], b"READY=1");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `NOTIFY_SOCKET=@name`: the abstract namespace (what systemd itself may hand out).
    #[cfg(target_os = "linux")]
    #[test]
    fn notify_reaches_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("webserv-notify-test-{}", std::process::id());
        let a = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&a).unwrap();
        let n = Notifier {
            target: Some((UnixDatagram::unbound().unwrap(), format!("@{name}"))),
        };
        n.notify("STOPPING=1");
        let mut buf = [0u8; 64];
        let got = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..got], b"STOPPING=1");
    }
}
