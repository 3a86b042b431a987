//! End-to-end harness: start the real `webserv` binary on ephemeral ports in a temp prefix, talk
//! to it over raw TCP, and parse what comes back exactly as a client would see it.
//!
//! Every e2e test runs its body once per backend this machine has ([`for_each_backend`]), so a
//! behaviour that differs between io_uring and epoll shows up as a failure naming the backend.
#![allow(dead_code)]

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a client waits for the server before declaring it stuck.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A small MIME table and logging set-up shared by test configs (`{BASE}` in a config expands to
/// it), so tests do not depend on the shipped `conf/mime.types`.
pub const BASE: &str = "error_log stderr info;
access_log off;
types {
    text/html html;
    text/css css;
    image/png png;
    text/plain txt;
}
default_type application/octet-stream;
";

/// The backends this machine can run, by the name `--backend` takes.
pub fn backends() -> Vec<&'static str> {
    backends::available()
        .into_iter()
        .filter_map(|k| match k {
            backends::Kind::Uring => Some("uring"),
            backends::Kind::Epoll => Some("epoll"),
            backends::Kind::Kqueue => Some("kqueue"),
            backends::Kind::Auto => None,
        })
        .collect()
}

/// Runs `f` once per available backend and says which ones ran. No backend at all is a failure,
/// not a vacuous pass.
///
/// `WEBSERV_E2E_BACKEND=epoll` narrows a run to one backend when debugging; the summary line
/// still says exactly which backends ran.
pub fn for_each_backend(test: &str, f: impl Fn(&str)) {
    let mut all = backends();
    if let Ok(only) = std::env::var("WEBSERV_E2E_BACKEND") {
        assert!(
            all.contains(&only.as_str()),
            "WEBSERV_E2E_BACKEND={only} is not available here ({all:?})"
        );
        all.retain(|b| *b == only);
    }
    assert!(
        !all.is_empty(),
        "{test}: no backend available on this machine"
    );
    for b in &all {
        eprintln!("{test}: backend {b} ...");
        f(b);
    }
    println!("{test}: ran on {}", all.join(", "));
}

/// Like [`for_each_backend`], but not on the backends in `except`, for a known defect that is
/// said loudly (and counted nowhere as a pass): the summary names what ran and what did not.
pub fn for_each_backend_except(test: &str, except: &[&str], why: &str, f: impl Fn(&str)) {
    let mut ran = Vec::new();
    for_each_backend_quiet(test, |b| {
        if except.contains(&b) {
            eprintln!("{test}: NOT RUN on {b}: known defect: {why}");
        } else {
            f(b);
            ran.push(b.to_string());
        }
    });
    if ran.is_empty() {
        println!("{test}: not run on any backend here (known defect above)");
    } else {
        println!("{test}: ran on {}", ran.join(", "));
    }
}

fn for_each_backend_quiet(test: &str, mut f: impl FnMut(&'static str)) {
    let mut all = backends();
    if let Ok(only) = std::env::var("WEBSERV_E2E_BACKEND") {
        all.retain(|b| *b == only);
    }
    assert!(
        !all.is_empty(),
        "{test}: no backend available on this machine"
    );
    for b in all {
        f(b);
    }
}

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A fresh, empty temp directory unique to this process and call.
pub fn temp_dir() -> PathBuf {
    let n = NEXT_DIR.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("webserv-e2e-{}-{}", std::process::id(), n));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Whether something listens on 127.0.0.1:`port`. A connect to a port nobody listens on can
/// succeed by meeting itself (TCP simultaneous open, when the kernel picks that very port as
/// the source: test ports come from the ephemeral range); such a connection does not count.
///
/// Something, not necessarily the server a test started: see [`server_listening`].
pub fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok_and(|c| c.local_addr().ok() != c.peer_addr().ok())
}

/// Whether process `pid` itself listens on `port` and a connect to 127.0.0.1:`port` succeeds.
///
/// A connect alone can be answered by a socket of another process. The listener that
/// [`free_port`] binds and drops (Rust's `bind` also listens) lives on in any child that
/// another thread of this process spawned while it existed: the child gets a copy of every fd,
/// and close-on-exec closes it only at its `execve`, which a busy machine can delay by
/// milliseconds. A port wait that connects to that leftover ends before the server has bound
/// the port; the leftover then goes with the child's exec, and the test's first request meets
/// no listener at all (ECONNREFUSED) while the server's log shows it listening soon after.
/// (Twice in CI; see README "kqueue on Linux".) So the wait also asks the kernel whose
/// listening socket that is: an inode of a LISTEN entry on `port` in /proc/net/tcp{,6} must be
/// one of `pid`'s fds. Where `pid`'s fds cannot be read (another user's process, without
/// root), only the connect is checked.
pub fn server_listening(pid: u32, port: u16) -> bool {
    holds_listener(pid, port) != Some(false) && listening(port)
}

/// Whether process `pid` holds a listening TCP socket on `port`: `None` when its fds cannot be
/// read.
pub fn holds_listener(pid: u32, port: u16) -> Option<bool> {
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let mut inodes = Vec::new();
    let hex = format!(":{port:04X}");
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = fs::read_to_string(table).unwrap_or_default();
        for l in text.lines().skip(1) {
            // "sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid
            // timeout inode ...": LISTEN is state 0A.
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() > 9 && f[1].ends_with(&hex) && f[3] == "0A" {
                inodes.push(format!("socket:[{}]", f[9]));
            }
        }
    }
    Some(fds.flatten().any(|e| {
        fs::read_link(e.path()).is_ok_and(|t| inodes.iter().any(|i| t.as_os_str() == i.as_str()))
    }))
}

/// Who holds a listening socket on `port`, as "pid N (comm), ..." from /proc (for
/// [`wait_for_server`]'s note).
fn listener_holders(port: u16) -> String {
    let hex = format!(":{port:04X}");
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = fs::read_to_string(table).unwrap_or_default();
        for l in text.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() > 9 && f[1].ends_with(&hex) && f[3] == "0A" {
                inodes.push(format!("socket:[{}]", f[9]));
            }
        }
    }
    let mut who = Vec::new();
    for p in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let held = fs::read_dir(p.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                fs::read_link(e.path())
                    .is_ok_and(|t| inodes.iter().any(|i| t.as_os_str() == i.as_str()))
            });
        if held {
            let comm = fs::read_to_string(p.path().join("comm")).unwrap_or_default();
            who.push(format!("pid {pid} ({})", comm.trim()));
        }
    }
    if inodes.is_empty() {
        "gone by the time it was looked up".to_string()
    } else if who.is_empty() {
        format!("{} held by no process found", inodes.join(", "))
    } else {
        format!("held by {}", who.join(", "))
    }
}

/// Waits (10 s at most, else panics) until `child` itself listens on 127.0.0.1:`port`
/// ([`server_listening`]). `Err` (with the log at `log`) when it exits first; it is reaped then.
pub fn wait_for_server(
    child: &mut Child,
    port: u16,
    backend: &str,
    log: &Path,
) -> Result<(), String> {
    let log = || fs::read_to_string(log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut noted = false;
    loop {
        // The connect first: once the server holds a listener it keeps it, so a listener of
        // its own found after the connect means the port is the server's.
        let answered = listening(port);
        let holds = holds_listener(child.id(), port);
        if holds != Some(false) && answered {
            return Ok(());
        }
        if answered && !noted {
            // Said once, on stdout (CI's runs pass --show-output): the race this wait closes
            // happened, and who held the socket that answered.
            noted = true;
            println!(
                "port wait: 127.0.0.1:{port} answered before webserv ({backend}, pid {}) listened \
                 on it; the listening socket was {}",
                child.id(),
                listener_holders(port)
            );
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "webserv ({backend}) exited with {status} before listening on {port}; log:\n{}",
                log()
            ));
        }
        if Instant::now() > deadline {
            panic!(
                "webserv ({backend}) did not accept on 127.0.0.1:{port} within 10 s; log:\n{}",
                log()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A port nothing listens on right now (bind :0, read it, drop the listener).
///
/// Never the same port twice in one test process: the server binds with `SO_REUSEPORT` (one
/// listener per worker), so two servers of parallel tests given the same free port would both
/// bind it and share its connections — one test's request reset by the other's server as it
/// stops. (The kernel may hand a port bound and dropped here to the next `bind(:0)`.)
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..10_000 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
    panic!("no port left that this test process has not used");
}

/// Writes `path` (relative to `dir`), creating parent directories.
pub fn write_file(dir: &Path, path: &str, contents: impl AsRef<[u8]>) {
    let p = dir.join(path);
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).expect("create parent dir");
    }
    fs::write(&p, contents).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

thread_local! {
    /// The user (and group) the next server of this thread runs as ([`Server::start_as`]).
    static RUN_AS: std::cell::Cell<Option<u32>> = const { std::cell::Cell::new(None) };
}

/// The path of the webserv binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_webserv")
}

/// A running server. Dropping it sends SIGTERM (SIGKILL after 5 s) and removes its prefix.
pub struct Server {
    pub port: u16,
    pub port2: u16,
    /// The prefix (`-p`): configs, roots and the log live here.
    pub dir: PathBuf,
    pub backend: String,
    child: Option<Child>,
    log_path: PathBuf,
}

impl Server {
    /// Starts webserv with `conf` (placeholders `{PORT}`, `{PORT2}`, `{DIR}`, `{BASE}`) after
    /// `setup` has populated the prefix directory. Returns once every port it uses accepts.
    pub fn start(backend: &str, conf: &str, setup: impl FnOnce(&Path)) -> Server {
        Server::start_opts(backend, conf, setup, &[], false)
    }

    /// Like [`Server::start`], with extra command-line arguments (e.g. `--debug`) and, when
    /// `own_group` is set, the server in a process group of its own (`setpgid(0, 0)`): a server
    /// that signals its whole group (`kill(0, ...)`) then hits itself and its children, never
    /// the test runner, and [`Server::group_sibling`] can watch for such a signal.
    pub fn start_opts(
        backend: &str,
        conf: &str,
        setup: impl FnOnce(&Path),
        args: &[&str],
        own_group: bool,
    ) -> Server {
        Server::start_env(backend, conf, setup, args, own_group, &[])
    }

    /// Like [`Server::start_opts`], with extra environment variables for the server.
    pub fn start_env(
        backend: &str,
        conf: &str,
        setup: impl FnOnce(&Path),
        args: &[&str],
        own_group: bool,
        env: &[(&str, &str)],
    ) -> Server {
        use std::os::unix::process::CommandExt;
        let dir = temp_dir();
        setup(&dir);
        // Ports are picked free but not held: another process may take one before the server
        // binds it. Then the server says "Address already in use" and is started again on
        // fresh ports (a few times at most).
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port();
            let mut port2 = free_port();
            while port2 == port {
                port2 = free_port();
            }
            let conf_text = conf
                .replace("{BASE}", BASE)
                .replace("{PORT2}", &port2.to_string())
                .replace("{PORT}", &port.to_string())
                .replace("{DIR}", &dir.to_string_lossy());
            let conf_path = dir.join("webserv.conf");
            fs::write(&conf_path, &conf_text).expect("write config");
            let log_path = dir.join("server.log");
            let log = fs::File::create(&log_path).expect("create log file");
            let mut cmd = Command::new(binary());
            cmd.arg("-c")
                .arg(&conf_path)
                .arg("-p")
                .arg(&dir)
                .arg("--backend")
                .arg(backend)
                .args(args)
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup log fd"))
                .stderr(log);
            if own_group {
                cmd.process_group(0);
            }
            if let Some(id) = RUN_AS.with(|c| c.get()) {
                cmd.uid(id).gid(id);
            }
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", binary()));
            let mut server = Server {
                port,
                port2,
                dir: dir.clone(),
                backend: backend.to_string(),
                child: Some(child),
                log_path,
            };
            let mut ports = vec![port];
            if conf.contains("{PORT2}") {
                ports.push(port2);
            }
            let mut lost_port = false;
            for p in ports {
                if let Err(log) = server.wait_for_port(p) {
                    if attempt < 5 && log.contains("Address already in use") {
                        lost_port = true;
                        break;
                    }
                    panic!("{log}");
                }
            }
            if !lost_port {
                return server;
            }
            // The next attempt reuses the prefix and what `setup` put there: this dropped
            // server must not remove it (it did, and the retry failed writing its config).
            server.dir = PathBuf::new();
        }
    }

    fn wait_for_port(&mut self, port: u16) -> Result<(), String> {
        let child = self.child.as_mut().expect("a started server");
        match wait_for_server(child, port, &self.backend, &self.log_path) {
            Ok(()) => {
                served_by(port, Some((child.id(), self.log_path.clone())));
                Ok(())
            }
            Err(e) => {
                // Reaped: its pid may be another process's now.
                self.child = None;
                Err(e)
            }
        }
    }

    /// Like [`Server::start`], with the server running as user and group `id` (when the tests
    /// run as root: a file's permission bits then bind the server, as they do for a server
    /// started by an ordinary user). The prefix directory is readable by everyone.
    pub fn start_as(id: u32, backend: &str, conf: &str, setup: impl FnOnce(&Path)) -> Server {
        RUN_AS.with(|c| c.set(Some(id)));
        let s = Server::start(backend, conf, setup);
        RUN_AS.with(|c| c.set(None));
        s
    }

    /// Everything the server wrote to stdout/stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGTERM, wait up to 5 s, then SIGKILL. Returns how the process ended (`None` when it had
    /// already been reaped).
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        // Already reaped (by `alive` or `exit_status`): its pid may name another process now.
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let _ = backends::util::kill(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    return child.wait().ok();
                }
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        served_by(self.port, None);
        served_by(self.port2, None);
        let status = self.terminate();
        if std::thread::panicking() {
            eprintln!(
                "---- webserv log ({}, exit {:?}) ----\n{}\n---- end of log ----",
                self.backend,
                status,
                self.log()
            );
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The servers whose ports answered the port wait, by port: pid and log, for
/// [`connect_or_explain`].
static SERVED: std::sync::Mutex<Vec<(u16, u32, PathBuf)>> = std::sync::Mutex::new(Vec::new());

/// Records (or, with `None`, forgets) which server process listens on `port`.
fn served_by(port: u16, server: Option<(u32, PathBuf)>) {
    let mut v = SERVED.lock().unwrap_or_else(|e| e.into_inner());
    v.retain(|&(p, _, _)| p != port);
    if let Some((pid, log)) = server {
        v.push((port, pid, log));
    }
}

/// `TcpStream::connect` to 127.0.0.1:`port`; a failure panics with what was true at that
/// instant: the kernel's TCP sockets on that port (/proc/net/tcp: a LISTEN entry or not, and
/// any TIME-WAIT or FIN-WAIT entry a SYN could have met), the server's state and open fds,
/// its log so far, and whether a second connect 100 ms later gets through. (Twice in CI, on
/// kqueue only, a first request was refused right after the port wait had connected.)
pub fn connect_or_explain(port: u16) -> TcpStream {
    match TcpStream::connect(("127.0.0.1", port)) {
        Ok(s) => s,
        Err(e) => {
            let report = explain_refusal(port);
            let again = match TcpStream::connect(("127.0.0.1", port)) {
                Ok(_) => "a second connect right after the report: connected".to_string(),
                Err(e2) => format!("a second connect right after the report: {e2}"),
            };
            panic!("connect 127.0.0.1:{port}: {e}\n{report}{again}");
        }
    }
}

/// What [`connect_or_explain`] reports (see there).
fn explain_refusal(port: u16) -> String {
    use std::fmt::Write as _;
    let mut out = String::from("---- at the failed connect ----\n");
    // /proc/net/tcp: "sl local rem st ... uid timeout inode"; ports in hex.
    const STATES: [&str; 12] = [
        "?",
        "ESTABLISHED",
        "SYN-SENT",
        "SYN-RECV",
        "FIN-WAIT-1",
        "FIN-WAIT-2",
        "TIME-WAIT",
        "CLOSE",
        "CLOSE-WAIT",
        "LAST-ACK",
        "LISTEN",
        "CLOSING",
    ];
    let hex = format!(":{port:04X}");
    let (mut lines, mut listeners) = (0, 0);
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = fs::read_to_string(table).unwrap_or_default();
        for l in text.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 10 || !(f[1].ends_with(&hex) || f[2].ends_with(&hex)) {
                continue;
            }
            let st = usize::from_str_radix(f[3], 16).unwrap_or(0);
            listeners += usize::from(st == 10);
            let port_of = |a: &str| {
                a.rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            };
            // LISTEN entries always; of the others (TIME-WAIT of a busy test, say) the first 30.
            if st == 10 || lines < 30 {
                let _ = writeln!(
                    out,
                    "{table}: {} local :{} remote :{} inode {}",
                    STATES.get(st).unwrap_or(&"?"),
                    port_of(f[1]).unwrap_or(0),
                    port_of(f[2]).unwrap_or(0),
                    f[9]
                );
            }
            lines += 1;
        }
    }
    if lines > 30 {
        let _ = writeln!(out, "({lines} sockets on port {port} in all)");
    }
    if listeners == 0 {
        let _ = writeln!(out, "/proc/net/tcp{{,6}}: no LISTEN socket on port {port}");
    }
    let served = SERVED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|s| s.0 == port)
        .cloned();
    match served {
        None => {
            let _ = writeln!(
                out,
                "no server of this process answered a port wait on {port}"
            );
        }
        Some((_, pid, log)) => {
            let state = proc_state(pid).map_or("gone".to_string(), |c| c.to_string());
            let _ = writeln!(out, "server pid {pid}: state {state}; its fds:");
            if let Ok(rd) = fs::read_dir(format!("/proc/{pid}/fd")) {
                let mut fds: Vec<(u32, String)> = rd
                    .flatten()
                    .filter_map(|e| {
                        let n = e.file_name().to_str()?.parse().ok()?;
                        let t = fs::read_link(e.path()).ok()?;
                        Some((n, t.to_string_lossy().into_owned()))
                    })
                    .collect();
                fds.sort();
                for (n, t) in fds {
                    let _ = writeln!(out, "  {n} -> {t}");
                }
            }
            let _ = writeln!(
                out,
                "its log at that instant:\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            );
        }
    }
    out.push_str("---- end ----\n");
    out
}

// ---------------------------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------------------------

/// One parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// e.g. "HTTP/1.1"
    pub version: String,
    pub status: u16,
    pub reason: String,
    /// In arrival order, names as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header named `name` (case-insensitive).
    pub fn headers_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The header, or a panic that shows the whole response.
    pub fn must_header(&self, name: &str) -> &str {
        self.header(name)
            .unwrap_or_else(|| panic!("response has no {name} header:\n{}", self.dump()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Status line and headers, and the start of the body, for assertion messages.
    pub fn dump(&self) -> String {
        let mut s = format!("{} {} {}\n", self.version, self.status, self.reason);
        for (n, v) in &self.headers {
            s.push_str(&format!("{n}: {v}\n"));
        }
        let body = self.text();
        let cut: String = body.chars().take(400).collect();
        s.push_str(&format!("\n{cut}"));
        s
    }
}

/// Incremental response reader over any byte source (a socket or a captured buffer).
pub struct Reader<R: Read> {
    inner: R,
    buf: Vec<u8>,
    eof: bool,
}

impl<R: Read> Reader<R> {
    pub fn new(inner: R) -> Self {
        Reader {
            inner,
            buf: Vec::new(),
            eof: false,
        }
    }

    /// Reads more bytes into the buffer; Ok(false) at EOF.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = loop {
            match self.inner.read(&mut chunk) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(true)
    }

    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..i].to_vec();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            if !self.fill()? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "EOF in the middle of a line: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
        }
    }

    /// True when no buffered bytes remain and the source is at EOF (or reset).
    pub fn at_eof(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        match self.fill() {
            Ok(more) => !more,
            Err(e) => matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ),
        }
    }

    /// Parses exactly one response. `head` = the request was HEAD (no body follows).
    pub fn read_response(&mut self, head: bool) -> io::Result<Response> {
        let mut resp = self.read_head()?;
        let status = resp.status;
        if head || (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(resp);
        }
        let mut body = Vec::new();
        self.read_body(&resp, |d| body.extend_from_slice(d))?;
        resp.body = body;
        Ok(resp)
    }

    /// The status line and header fields of one response (its body still unread).
    fn read_head(&mut self) -> io::Result<Response> {
        let status_line = self.read_line()?;
        let status_line = String::from_utf8_lossy(&status_line).into_owned();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("").to_string();
        let status: u16 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            )
        })?;
        if !version.starts_with("HTTP/1.") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            ));
        }
        let reason = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let line = self.read_line()?;
            if line.is_empty() {
                break;
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            let (n, v) = line.split_once(':').ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, format!("bad header {line:?}"))
            })?;
            headers.push((n.to_string(), v.trim().to_string()));
        }
        Ok(Response {
            version,
            status,
            reason,
            headers,
            body: Vec::new(),
        })
    }

    /// Hands the body of `resp` (framed by chunked coding, Content-Length or the end of the
    /// stream) to `on_body` piece by piece, de-chunked; returns its length.
    fn read_body(&mut self, resp: &Response, mut on_body: impl FnMut(&[u8])) -> io::Result<u64> {
        let mut total = 0u64;
        // Hands over exactly `n` bytes from the buffer (refilling it as needed).
        let mut pass = |this: &mut Self, mut n: u64, total: &mut u64| -> io::Result<()> {
            while n > 0 {
                if this.buf.is_empty() && !this.fill()? {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("EOF with {n} body bytes still expected"),
                    ));
                }
                let k = (n as usize).min(this.buf.len());
                on_body(&this.buf[..k]);
                this.buf.drain(..k);
                n -= k as u64;
                *total += k as u64;
            }
            Ok(())
        };
        let chunked = resp
            .header("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
        if chunked {
            loop {
                let line = String::from_utf8_lossy(&self.read_line()?).into_owned();
                let size = line.split(';').next().unwrap_or("").trim();
                let size = u64::from_str_radix(size, 16).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("bad chunk size {line:?}"),
                    )
                })?;
                if size == 0 {
                    while !self.read_line()?.is_empty() {}
                    break;
                }
                pass(self, size, &mut total)?;
                if !self.read_line()?.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "chunk data not followed by CRLF",
                    ));
                }
            }
        } else if let Some(cl) = resp.header("content-length") {
            let n: u64 = cl.trim().parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad Content-Length {cl:?}"),
                )
            })?;
            pass(self, n, &mut total)?;
        } else {
            loop {
                if !self.buf.is_empty() {
                    on_body(&self.buf);
                    total += self.buf.len() as u64;
                    self.buf.clear();
                }
                if !self.fill()? {
                    break;
                }
            }
        }
        Ok(total)
    }
}

/// Parses every response in a captured byte stream (none of them to a HEAD request). Bytes that
/// do not form a complete response are a panic that shows the stream.
pub fn parse_responses(bytes: &[u8]) -> Vec<Response> {
    let mut r = Reader::new(bytes);
    let mut out = Vec::new();
    while !r.at_eof() {
        match r.read_response(false) {
            Ok(resp) => out.push(resp),
            Err(e) => panic!(
                "cannot parse response #{} ({e}) in:\n{}",
                out.len() + 1,
                String::from_utf8_lossy(bytes)
            ),
        }
    }
    out
}

fn connect(port: u16) -> TcpStream {
    let s = connect_or_explain(port);
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Writes `req`, then reads until the server closes (or 5 s pass) and returns every byte.
pub fn send_raw(port: u16, req: &[u8]) -> Vec<u8> {
    let mut s = connect(port);
    s.write_all(req).expect("write request");
    let mut out = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match s.read(&mut chunk) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::ConnectionReset
                ) =>
            {
                break
            }
            Err(e) => panic!("read: {e}"),
        }
    }
    out
}

/// Sends one request on a fresh connection and parses one response.
pub fn request(port: u16, req: &[u8]) -> Response {
    let head = req.starts_with(b"HEAD ");
    let mut c = Conn::open(port);
    c.send(req);
    c.read_response_head(head)
}

/// `GET path` with `Host: host` and `Connection: close`.
pub fn get_host(port: u16, host: &str, path: &str) -> Response {
    request(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// `GET path` with `Host: localhost`.
pub fn get(port: u16, path: &str) -> Response {
    get_host(port, "localhost", path)
}

/// A client connection for keep-alive and pipelining sequences.
pub struct Conn {
    reader: Reader<TcpStream>,
    stream: TcpStream,
}

impl Conn {
    pub fn open(port: u16) -> Conn {
        let stream = connect(port);
        let reader = Reader::new(stream.try_clone().expect("clone stream"));
        Conn { reader, stream }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to server");
    }

    /// Like `send`, but reports failure (the server may have closed already).
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// One response to a non-HEAD request; panics with the reason if none arrives.
    pub fn read_response(&mut self) -> Response {
        self.read_response_head(false)
    }

    pub fn read_response_head(&mut self, head: bool) -> Response {
        self.reader
            .read_response(head)
            .unwrap_or_else(|e| match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                    panic!("no complete response within {IO_TIMEOUT:?} (server silent)")
                }
                _ => panic!("no complete response: {e}"),
            })
    }

    pub fn try_read_response(&mut self) -> io::Result<Response> {
        self.reader.read_response(false)
    }

    /// True when the server has closed: the next read returns EOF (or a reset) within 2 s and
    /// no bytes are pending. Any byte from the server means "not closed".
    pub fn is_closed(&mut self) -> bool {
        self.stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let closed = self.reader.at_eof();
        self.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        closed
    }

    /// Half-closes the write side (the server sees EOF after what was sent).
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers for CGI and upload tests (appended)
// ---------------------------------------------------------------------------------------------

impl<R: Read> Reader<R> {
    /// Parses one response head and hands its body to `on_body` piece by piece (de-chunked),
    /// so a body far larger than memory can be checked. The returned `Response` has an empty
    /// body; the total body length is the second value.
    pub fn read_response_streaming(
        &mut self,
        on_body: impl FnMut(&[u8]),
    ) -> io::Result<(Response, u64)> {
        let resp = self.read_head()?;
        let total = self.read_body(&resp, on_body)?;
        Ok((resp, total))
    }
}

/// FNV-1a (64 bit), fed incrementally: the same bytes give the same value however they are
/// split, so a streamed body can be compared with what was sent without keeping either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fnv64(pub u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv64 {
    pub fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// VmRSS of a process in KiB (from `/proc/PID/status`), `None` once it is gone.
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The state letter of a process (`R`, `S`, `Z`, ...) from `/proc/PID/status`, `None` when no
/// such process exists (exited and reaped).
pub fn proc_state(pid: u32) -> Option<char> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("State:"))
        .and_then(|v| v.trim().chars().next())
}

/// Waits up to `within` for process `pid` to be gone entirely (not even a zombie). Returns the
/// last state seen when it is still there.
pub fn wait_process_gone(pid: u32, within: Duration) -> Result<(), char> {
    let deadline = Instant::now() + within;
    loop {
        match proc_state(pid) {
            None => return Ok(()),
            Some(s) if Instant::now() >= deadline => return Err(s),
            Some(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Waits up to `within` for a file to exist with non-empty, newline-terminated contents (a pid
/// file a script writes) and returns them trimmed.
pub fn wait_for_file(path: &Path, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(s) = fs::read_to_string(path) {
            if s.ends_with('\n') {
                return Some(s.trim().to_string());
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sets the permission bits of a file (e.g. 0o755 for a script run without interpreter).
pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// A raw TCP connection with generous timeouts, for tests that stream large bodies or wait on
/// slow CGIs.
pub fn connect_with_timeout(port: u16, timeout: Duration) -> TcpStream {
    let s = connect_or_explain(port);
    s.set_read_timeout(Some(timeout)).unwrap();
    s.set_write_timeout(Some(timeout)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Writes `req` on a fresh connection, then reads until the server closes or `wait` passes
/// without a byte. Returns every byte received and whether the server closed (EOF or reset).
///
/// A failed write is tolerated (the server may answer and close before reading all of a large
/// request); what was received is still returned.
pub fn exchange(port: u16, req: &[u8], wait: Duration) -> (Vec<u8>, bool) {
    let mut s = connect(port);
    let _ = s.write_all(req);
    read_until_close(&mut s, wait)
}

/// Reads until the server closes or `idle` passes without a byte. Returns every byte received
/// and whether the server closed (EOF or reset).
pub fn read_until_close(s: &mut TcpStream, idle: Duration) -> (Vec<u8>, bool) {
    s.set_read_timeout(Some(idle)).unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let closed = loop {
        match s.read(&mut chunk) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Ok(0) => break true,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break false
            }
            Err(_) => break true,
        }
    };
    (out, closed)
}

/// Parses the responses in a captured stream; unlike [`parse_responses`] a malformed tail is
/// returned as an error (with the responses before it) instead of a panic.
pub fn try_parse_responses(bytes: &[u8]) -> (Vec<Response>, Option<String>) {
    let mut r = Reader::new(bytes);
    let mut out = Vec::new();
    while !r.at_eof() {
        match r.read_response(false) {
            Ok(resp) => out.push(resp),
            Err(e) => return (out, Some(e.to_string())),
        }
    }
    (out, None)
}

/// Every file path (relative to `dir`, sorted) under `dir`, following no symlinks.
pub fn tree(dir: &Path) -> Vec<PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap_or(&p).to_path_buf());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------------
// Helpers for fault tests (appended)
// ---------------------------------------------------------------------------------------------

impl Server {
    /// Like [`Server::start`], but the server runs under `sh -c 'ulimit -n NOFILE; exec ...'`,
    /// so it starts with at most `nofile` descriptors (dash's `ulimit -n` sets the soft and the
    /// hard limit, so the server cannot raise it back). `exec` keeps the pid: `pid()` is the
    /// server's own.
    pub fn start_with_nofile(
        backend: &str,
        conf: &str,
        setup: impl FnOnce(&Path),
        nofile: u32,
    ) -> Server {
        let dir = temp_dir();
        setup(&dir);
        let port = free_port();
        let conf_text = conf
            .replace("{BASE}", BASE)
            .replace("{PORT}", &port.to_string())
            .replace("{DIR}", &dir.to_string_lossy());
        assert!(
            !conf.contains("{PORT2}"),
            "start_with_nofile: one port only"
        );
        let conf_path = dir.join("webserv.conf");
        fs::write(&conf_path, &conf_text).expect("write config");
        let log_path = dir.join("server.log");
        let log = fs::File::create(&log_path).expect("create log file");
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
            .arg(binary())
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(&dir)
            .arg("--backend")
            .arg(backend)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log fd"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn /bin/sh for {}: {e}", binary()));
        let mut server = Server {
            port,
            port2: 0,
            dir,
            backend: backend.to_string(),
            child: Some(child),
            log_path,
        };
        if let Err(log) = server.wait_for_port(port) {
            panic!("{log}");
        }
        server
    }

    /// Sends `sig` to the server process.
    pub fn signal(&self, sig: libc::c_int) {
        let pid = self.pid().expect("server running");
        backends::util::kill(pid, sig).unwrap_or_else(|e| panic!("kill -{sig} {pid}: {e}"));
    }

    /// Sends SIGHUP and waits (at most 5 s) until the log says one more time that the
    /// configuration was reloaded (one worker: the new configuration then serves).
    #[allow(dead_code)]
    pub fn reload(&self) {
        let done = || self.log().matches("configuration reloaded").count();
        let before = done();
        self.signal(libc::SIGHUP);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while done() == before {
            assert!(
                std::time::Instant::now() < deadline,
                "no reload logged:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// True while the server process exists and is not a zombie (it has not died).
    pub fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(c) => matches!(c.try_wait(), Ok(None)),
        }
    }

    /// How the server ended, if it has (without waiting).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit and returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    backends::util::raise_nofile_limit()
}

/// How many descriptors process `pid` has open (`/proc/PID/fd`), `None` once it is gone.
pub fn fd_count(pid: u32) -> Option<usize> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}

/// Aborts a connection with a TCP RST: `SO_LINGER {on, 0}` and close (RFC 9293 §3.10.7.1:
/// ABORT). The peer's next send or receive fails with ECONNRESET / EPIPE.
pub fn reset_connection(stream: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket this function owns, with a pointer to a live `linger`
    // and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", io::Error::last_os_error());
    drop(stream);
}

/// What a non-blocking look at a connection finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Nothing to read and no EOF.
    Open,
    /// EOF or reset: the server closed it.
    Closed,
}

/// Reads whatever is available without blocking (appending it to `got`) and says whether the
/// server has closed the connection. The stream must be in non-blocking mode.
pub fn poll_peer(stream: &mut TcpStream, got: &mut Vec<u8>) -> PeerState {
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return PeerState::Closed,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return PeerState::Open,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return PeerState::Closed,
        }
    }
}

/// A tmpfs mounted over a directory for the life of the value; unmounted on drop (lazily when
/// busy), so a failing test does not leave it behind.
pub struct TmpfsMount {
    pub dir: PathBuf,
}

impl TmpfsMount {
    /// `mount -t tmpfs -o size=SIZE tmpfs DIR`. Err carries mount's own explanation.
    pub fn mount(dir: &Path, size: &str) -> Result<TmpfsMount, String> {
        fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs -o size={size} tmpfs {} failed ({}): {}",
                dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(TmpfsMount {
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

impl Conn {
    /// Like [`Conn::is_closed`] with a chosen wait, for checking many connections in turn.
    pub fn is_closed_within(&mut self, wait: Duration) -> bool {
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let closed = self.reader.at_eof();
        self.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        closed
    }
}

impl Server {
    /// A `sleep 120` in the server's own process group (the server must have been started with
    /// `own_group`). It is alive as long as nobody signalled the group: a server that sends
    /// `kill(0, SIGTERM)` (or to `-pgid`) kills it too. The caller kills and reaps it.
    pub fn group_sibling(&self) -> Child {
        use std::os::unix::process::CommandExt;
        let pgid = self.pid().expect("server running") as i32;
        Command::new("sleep")
            .arg("120")
            .process_group(pgid)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sleep in the server's process group")
    }
}

/// `NAME=value` lines into a map (a name seen twice is a failure).
pub fn parse_env(text: &str) -> std::collections::BTreeMap<String, String> {
    let mut map = std::collections::BTreeMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            let old = map.insert(k.to_string(), v.to_string());
            assert!(
                old.is_none(),
                "{k} set twice in the CGI environment:\n{text}"
            );
        }
    }
    map
}

/// Backend ops submitted, by kind, from the JSON of a `status` location at `/status` (the
/// counters of the worker that answered: a test that compares them runs one worker).
pub fn ops_submitted(port: u16) -> std::collections::BTreeMap<String, u64> {
    let r = get(port, "/status?format=json");
    assert_eq!(r.status, 200, "{}", r.dump());
    let text = r.text();
    let start = text.find("\"ops_submitted\":{").expect("ops_submitted") + 17;
    let end = start + text[start..].find('}').unwrap();
    text[start..end]
        .split(',')
        .map(|kv| {
            let (k, v) = kv.split_once(':').unwrap();
            (k.trim_matches('"').to_string(), v.parse().unwrap())
        })
        .collect()
}
