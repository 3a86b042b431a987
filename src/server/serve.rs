//! Starting the loops: binding, the worker threads.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use super::control::Control;
use super::event_loop::Loop;
use crate::config::Config;

/// listen(2) backlog: deep enough that a burst of connects (thousands of clients reconnecting
/// at once) is queued rather than answered with SYN drops and 1 s retransmits. The kernel caps
/// it at net.core.somaxconn (4096 by default on current kernels).
const LISTEN_BACKLOG: i32 = 4096;

/// Run-time switches from the command line.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub backend: Option<backends::Kind>,
    /// Read files and send them instead of sendfile(2) (the NetBSD/OpenBSD path, testable
    /// anywhere).
    pub no_sendfile: bool,
    /// Listening sockets passed by systemd (socket activation).
    pub inherited: Vec<crate::systemd::Inherited>,
    /// Where `READY=1` goes once every loop is up.
    pub notify: Arc<crate::systemd::Notifier>,
}

/// Bind every listen address of `cfg` (errors name the address); an address an inherited
/// socket serves (socket activation) gets a duplicate of it instead.
pub fn bind(
    cfg: &Config,
    reuse_port: bool,
    inherited: &[crate::systemd::Inherited],
) -> io::Result<Vec<(SocketAddr, std::os::fd::OwnedFd)>> {
    let mut v = Vec::new();
    for addr in cfg.listen_addrs() {
        if let Some(i) = inherited
            .iter()
            .find(|i| crate::systemd::serves(i.addr, addr))
        {
            v.push((addr, i.fd.try_clone()?));
            continue;
        }
        let fd = backends::util::listen(addr, LISTEN_BACKLOG, reuse_port)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        v.push((addr, fd));
    }
    Ok(v)
}

/// How many event loops `workers` asks for.
pub fn worker_count(w: crate::config::Workers) -> usize {
    match w {
        crate::config::Workers::Auto => std::thread::available_parallelism().map_or(1, |n| n.get()),
        crate::config::Workers::Count(n) => n.max(1),
    }
}

/// Serve the configuration in `control` until it says stop. With `workers N > 1`, each of N
/// threads runs its own loop with its own backend and its own `SO_REUSEPORT` listeners, and the
/// kernel spreads connections over them.
pub fn serve(control: Arc<Control>, opts: &RunOptions) -> io::Result<()> {
    let cfg = control.config();
    let kind = opts.backend.unwrap_or(match cfg.backend {
        crate::config::BackendChoice::Auto => backends::Kind::Auto,
        crate::config::BackendChoice::Uring => backends::Kind::Uring,
        crate::config::BackendChoice::Epoll => backends::Kind::Epoll,
        crate::config::BackendChoice::Kqueue => backends::Kind::Kqueue,
    });
    let n = worker_count(cfg.workers);
    control.metrics.expect_workers(n);
    let no_sendfile = opts.no_sendfile;
    backends::util::raise_nofile_limit();
    // Every inherited socket must be one a `listen` line names (systemd's unit and the
    // configuration disagree otherwise: say so rather than leave a socket nobody accepts on).
    let addrs = cfg.listen_addrs();
    for i in &opts.inherited {
        if !addrs.iter().any(|&a| crate::systemd::serves(i.addr, a)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "inherited socket {} on {} matches no listen address of the configuration",
                    i.name, i.addr
                ),
            ));
        }
        crate::notice!("using inherited socket {} on {}", i.name, i.addr);
    }
    // Bind everything before any loop starts, so an unbindable address is reported at once.
    // Several workers share each address through SO_REUSEPORT, which would let a second
    // server on the same address share it too: check that nobody holds it first.
    if n > 1 {
        for addr in addrs.iter().copied() {
            if !opts
                .inherited
                .iter()
                .any(|i| crate::systemd::serves(i.addr, addr))
            {
                backends::util::check_address_free(addr).map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
                })?;
            }
        }
    }
    let mut sets = Vec::new();
    for _ in 0..n {
        sets.push(bind(&cfg, n > 1, &opts.inherited)?);
    }
    let up = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut handles = Vec::new();
    for (i, listeners) in sets.into_iter().enumerate() {
        let control = control.clone();
        let cfg = cfg.clone();
        let (up, notify) = (up.clone(), opts.notify.clone());
        let run = move || -> io::Result<()> {
            // The backend is opened on the thread that uses it (io_uring SINGLE_ISSUER).
            let bopts = backends::Options {
                // Connections, plus listeners, files and pipes beside them.
                expected_fds: cfg.worker_connections.saturating_add(64),
                ..backends::Options::default()
            };
            let opened = backends::open(kind, &bopts)
                .map_err(|e| io::Error::new(e.kind(), format!("backend {kind:?}: {e}")))?;
            // Every worker gets the same answer: say it once.
            if let Some(why) = opened.fallback.as_ref().filter(|_| i == 0) {
                crate::notice!("{why}");
            }
            control.add_waker(opened.backend.waker());
            let mut lp = Loop::new(cfg, opened.backend, listeners, control)?;
            if no_sendfile {
                lp.disable_sendfile();
            }
            crate::notice!(
                "webserv {} worker {i} started, backend {}",
                env!("CARGO_PKG_VERSION"),
                lp.backend_name()
            );
            // The listeners are bound and this loop exists: connections queue from now on.
            if up.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == n {
                notify.notify("READY=1\nSTATUS=serving");
            }
            lp.run()
        };
        if n == 1 {
            return run();
        }
        handles.push(
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(run)?,
        );
    }
    let mut result = Ok(());
    for h in handles {
        let r = h
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("worker panicked")));
        if let Err(e) = r {
            // One worker failing stops the others: the server is not half up.
            control.stop();
            result = Err(e);
        }
    }
    result
}
