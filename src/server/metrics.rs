//! The Prometheus exposition of the `status` page (`?format=prometheus`, text format 0.0.4;
//! issue 15), summed over workers.
//!
//! Two sources:
//! - **Counters** ([`mine`]): bumped where the event happens (requests, bytes, keep-alive
//!   reuse, CGI, uploads, completions per wait). Each thread has its own set, written only by
//!   that thread — a plain load and store, no locked instruction (shared atomics made four
//!   locked adds per request and two per wait). The page sums every thread's set, so the
//!   figures are the process's totals, exact up to the adds still in flight on other threads.
//! - **Per-worker state** ([`Registry`]): connection states and the backend's own counters
//!   live in each loop; each loop publishes a copy on its one-second tick, and the page adds
//!   the serving worker's live values to the others' last copies (at most a second old).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

use crate::http::request::Method;

const METHODS: [Method; 9] = [
    Method::Get,
    Method::Head,
    Method::Post,
    Method::Put,
    Method::Delete,
    Method::Options,
    Method::Trace,
    Method::Connect,
    Method::Patch,
];

/// Upper bounds of the completions-per-wait histogram (`+Inf` follows).
pub const PER_WAIT_BUCKETS: [u64; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

#[allow(clippy::declare_interior_mutable_const)]
const Z: Counter = Counter(AtomicU64::new(0));
#[allow(clippy::declare_interior_mutable_const)]
const ZM: [Counter; 9] = [Z; 9];

/// One count of one thread's [`Counters`]: only that thread adds to it, so an add is a load
/// and a store (no locked read-modify-write); any thread may read it.
pub struct Counter(AtomicU64);

impl Counter {
    /// Add `n`. Only the owning thread calls this: [`mine`] hands out no other thread's set.
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// One thread's counters (see the module docs).
pub struct Counters {
    /// [status class 1xx..5xx][method]
    requests: [[Counter; 9]; 5],
    pub received_bytes: Counter,
    pub sent_bytes: Counter,
    pub keepalive_reused: Counter,
    pub cgi_spawned: Counter,
    pub cgi_failed: Counter,
    pub cgi_timed_out: Counter,
    pub upload_bytes: Counter,
    pub proxy_rejected: Counter,
    pub accepted: Counter,
    per_wait: [Counter; PER_WAIT_BUCKETS.len() + 1],
    per_wait_sum: Counter,
}

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: Counters = Counters {
    requests: [ZM; 5],
    received_bytes: Z,
    sent_bytes: Z,
    keepalive_reused: Z,
    cgi_spawned: Z,
    cgi_failed: Z,
    cgi_timed_out: Z,
    upload_bytes: Z,
    proxy_rejected: Z,
    accepted: Z,
    per_wait: [Z; PER_WAIT_BUCKETS.len() + 1],
    per_wait_sum: Z,
};

/// Every thread's set that has counted anything, for the page to sum. A set lives as long as
/// the process (one per worker thread; threads are not restarted), so a thread's counts
/// outlive it.
static SETS: Mutex<Vec<&'static Counters>> = Mutex::new(Vec::new());

thread_local! {
    static MINE: &'static Counters = {
        let set: &'static Counters = Box::leak(Box::new(ZERO));
        SETS.lock().unwrap_or_else(|e| e.into_inner()).push(set);
        set
    };
}

/// This thread's counters.
pub fn mine() -> &'static Counters {
    MINE.with(|set| *set)
}

/// The sum of one count over every thread's set.
fn total(f: impl Fn(&Counters) -> &Counter) -> u64 {
    let sets = SETS.lock().unwrap_or_else(|e| e.into_inner());
    sets.iter().map(|c| f(c).get()).sum()
}

impl Counters {
    /// One answered request.
    pub fn request(&self, status: u16, method: Method) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        let m = METHODS.iter().position(|&x| x == method).unwrap_or(0);
        self.requests[class][m].add(1);
    }

    /// One wait that returned `n` completions (waits with none are not observed).
    pub fn wait(&self, n: usize) {
        if n == 0 {
            return;
        }
        let n = n as u64;
        let b = PER_WAIT_BUCKETS
            .iter()
            .position(|&le| n <= le)
            .unwrap_or(PER_WAIT_BUCKETS.len());
        self.per_wait[b].add(1);
        self.per_wait_sum.add(n);
    }
}

/// What one worker publishes (and what the page sums).
#[derive(Clone, Debug, Default)]
pub struct WorkerState {
    pub active: u64,
    pub reading: u64,
    pub writing: u64,
    pub idle: u64,
    pub accepted: u64,
    pub stats: Option<backends::Stats>,
    pub backend: &'static str,
}

/// The per-worker copies.
pub struct Registry {
    started: Instant,
    workers: Mutex<Vec<WorkerState>>,
    /// The workers the server starts: the count reported from the first request on, before
    /// every loop has registered (the sockets are bound, and served by the first loop up,
    /// before the others exist).
    expected: std::sync::atomic::AtomicUsize,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry {
            started: Instant::now(),
            workers: Mutex::new(Vec::new()),
            expected: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

impl Registry {
    /// The number of workers the server is starting.
    pub fn expect_workers(&self, n: usize) {
        self.expected.store(n, Relaxed);
    }

    /// A new worker's slot.
    pub fn register(&self) -> usize {
        let mut w = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        w.push(WorkerState::default());
        w.len() - 1
    }

    pub fn publish(&self, slot: usize, s: WorkerState) {
        let mut w = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(x) = w.get_mut(slot) {
            *x = s;
        }
    }

    /// The exposition, with worker `slot`'s state taken live from `own`.
    pub fn render(&self, slot: usize, own: WorkerState) -> String {
        let mut all = self
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match all.get_mut(slot) {
            Some(x) => *x = own,
            None => all.push(own),
        }
        let workers = all.len().max(self.expected.load(Relaxed));
        render(&all, workers, self.started.elapsed().as_secs_f64())
    }
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn one(out: &mut String, name: &str, kind: &str, help: &str, v: impl std::fmt::Display) {
    head(out, name, kind, help);
    let _ = writeln!(out, "{name} {v}");
}

fn render(w: &[WorkerState], workers: usize, uptime: f64) -> String {
    let sum = |f: &dyn Fn(&WorkerState) -> u64| w.iter().map(f).sum::<u64>();
    let stat = |f: &dyn Fn(&backends::Stats) -> u64| {
        w.iter()
            .filter_map(|x| x.stats.as_ref())
            .map(f)
            .sum::<u64>()
    };
    let mut o = String::with_capacity(8192);
    let backend = w
        .iter()
        .map(|x| x.backend)
        .find(|b| !b.is_empty())
        .unwrap_or("");
    head(
        &mut o,
        "webserv_build_info",
        "gauge",
        "Version and I/O backend of this server.",
    );
    let _ = writeln!(
        o,
        "webserv_build_info{{version=\"{}\",backend=\"{backend}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    one(
        &mut o,
        "webserv_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
        format!("{uptime:.3}"),
    );
    one(
        &mut o,
        "webserv_workers",
        "gauge",
        "Event loops (workers) running.",
        workers,
    );
    head(
        &mut o,
        "webserv_requests_total",
        "counter",
        "Requests answered, by status class and method.",
    );
    for ci in 0..5 {
        for (mi, method) in METHODS.iter().enumerate() {
            let n = total(|c| &c.requests[ci][mi]);
            if n > 0 || (ci == 1 && mi == 0) {
                let _ = writeln!(
                    o,
                    "webserv_requests_total{{code=\"{}xx\",method=\"{}\"}} {n}",
                    ci + 1,
                    method.as_str()
                );
            }
        }
    }
    one(
        &mut o,
        "webserv_received_bytes_total",
        "counter",
        "Bytes received from clients.",
        total(|c| &c.received_bytes),
    );
    one(
        &mut o,
        "webserv_sent_bytes_total",
        "counter",
        "Bytes sent to clients.",
        total(|c| &c.sent_bytes),
    );
    one(
        &mut o,
        "webserv_connections_accepted_total",
        "counter",
        "Connections accepted.",
        total(|c| &c.accepted),
    );
    one(
        &mut o,
        "webserv_connections_active",
        "gauge",
        "Open client connections.",
        sum(&|x| x.active),
    );
    head(
        &mut o,
        "webserv_connections",
        "gauge",
        "Open client connections by state.",
    );
    for (state, v) in [
        ("reading", sum(&|x| x.reading)),
        ("writing", sum(&|x| x.writing)),
        ("idle", sum(&|x| x.idle)),
    ] {
        let _ = writeln!(o, "webserv_connections{{state=\"{state}\"}} {v}");
    }
    one(
        &mut o,
        "webserv_keepalive_reused_requests_total",
        "counter",
        "Requests served on a connection after its first (keep-alive reuse).",
        total(|c| &c.keepalive_reused),
    );
    head(
        &mut o,
        "webserv_backend_ops_submitted_total",
        "counter",
        "Operations submitted to the I/O backend, by kind.",
    );
    for k in backends::OpKind::ALL {
        let v = stat(&|s| s.submitted[k as usize]);
        let _ = writeln!(
            o,
            "webserv_backend_ops_submitted_total{{kind=\"{}\"}} {v}",
            k.name()
        );
    }
    one(
        &mut o,
        "webserv_kernel_entries_total",
        "counter",
        "Kernel entries made to wait (io_uring_enter, epoll_wait, kevent).",
        stat(&|s| s.enters),
    );
    head(
        &mut o,
        "webserv_completions_per_wait",
        "histogram",
        "Completions reaped per wait that returned any.",
    );
    let mut cum = 0;
    for (i, le) in PER_WAIT_BUCKETS.iter().enumerate() {
        cum += total(|c| &c.per_wait[i]);
        let _ = writeln!(
            o,
            "webserv_completions_per_wait_bucket{{le=\"{le}\"}} {cum}"
        );
    }
    cum += total(|c| &c.per_wait[PER_WAIT_BUCKETS.len()]);
    let _ = writeln!(
        o,
        "webserv_completions_per_wait_bucket{{le=\"+Inf\"}} {cum}"
    );
    let _ = writeln!(
        o,
        "webserv_completions_per_wait_sum {}",
        total(|c| &c.per_wait_sum)
    );
    let _ = writeln!(o, "webserv_completions_per_wait_count {cum}");
    one(
        &mut o,
        "webserv_recv_buffers_in_use",
        "gauge",
        "Receive buffers lent to the kernel or a connection.",
        stat(&|s| s.bufs_in_use as u64),
    );
    one(
        &mut o,
        "webserv_recv_buffers",
        "gauge",
        "Receive buffers in the pools.",
        stat(&|s| s.bufs_total as u64),
    );
    one(
        &mut o,
        "webserv_cgi_spawned_total",
        "counter",
        "CGI children started.",
        total(|c| &c.cgi_spawned),
    );
    one(
        &mut o,
        "webserv_cgi_failed_total",
        "counter",
        "CGI children that could not be started.",
        total(|c| &c.cgi_failed),
    );
    one(
        &mut o,
        "webserv_cgi_timed_out_total",
        "counter",
        "CGI requests stopped by cgi_timeout.",
        total(|c| &c.cgi_timed_out),
    );
    one(
        &mut o,
        "webserv_upload_bytes_total",
        "counter",
        "Request-body bytes handed to uploads.",
        total(|c| &c.upload_bytes),
    );
    one(
        &mut o,
        "webserv_proxy_protocol_rejected_total",
        "counter",
        "Connections closed for a missing or bad PROXY header.",
        total(|c| &c.proxy_rejected),
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A strict reading of text format 0.0.4: every sample's family was declared by `# TYPE`
    /// before it, names and labels are well formed, values are numbers, counters end in
    /// `_total`, histogram buckets are cumulative and end with `+Inf` equal to `_count`.
    pub fn check(text: &str) -> Result<(), String> {
        let mut types: std::collections::HashMap<String, String> = Default::default();
        let name_ok = |n: &str| {
            !n.is_empty()
                && n.chars().enumerate().all(|(i, ch)| {
                    ch.is_ascii_alphabetic()
                        || ch == '_'
                        || ch == ':'
                        || (i > 0 && ch.is_ascii_digit())
                })
        };
        let mut last_bucket: Option<(f64, f64)> = None;
        for (i, line) in text.lines().enumerate() {
            let err = |m: &str| Err(format!("line {}: {m}: {line:?}", i + 1));
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (n, t) = rest.split_once(' ').ok_or("bad TYPE")?;
                if !name_ok(n)
                    || !["counter", "gauge", "histogram", "summary", "untyped"].contains(&t)
                {
                    return err("bad TYPE");
                }
                if types.insert(n.to_string(), t.to_string()).is_some() {
                    return err("family declared twice");
                }
                if t == "counter" && !n.ends_with("_total") {
                    return err("counter without _total");
                }
                continue;
            }
            if line.starts_with("# HELP ") || line.is_empty() {
                continue;
            }
            if line.starts_with('#') {
                return err("unknown comment");
            }
            let (series, value) = line.rsplit_once(' ').ok_or("no value")?;
            let v: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v
                    .parse()
                    .map_err(|_| format!("line {}: bad value {v}", i + 1))?,
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.strip_suffix('}').ok_or("unclosed labels")?),
                None => (series, ""),
            };
            if !name_ok(name) {
                return err("bad name");
            }
            let mut le = None;
            for pair in labels.split(',').filter(|p| !p.is_empty()) {
                let (k, val) = pair.split_once('=').ok_or("bad label")?;
                let val = val.strip_prefix('"').and_then(|s| s.strip_suffix('"'));
                if !name_ok(k) || val.is_none_or(|s| s.contains('"') || s.contains('\\')) {
                    return err("bad label");
                }
                if k == "le" {
                    le = val.map(str::to_string);
                }
            }
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
                })
                .unwrap_or(name);
            if !types.contains_key(family) {
                return err("sample before its TYPE");
            }
            if name.ends_with("_bucket") {
                let le: f64 = match le.as_deref() {
                    Some("+Inf") => f64::INFINITY,
                    Some(s) => s.parse().map_err(|_| "bad le")?,
                    None => return err("bucket without le"),
                };
                if let Some((ple, pv)) = last_bucket {
                    if le <= ple || v < pv {
                        return err("buckets not cumulative");
                    }
                }
                last_bucket = Some((le, v));
            } else if name.ends_with("_count") && family != name {
                match last_bucket {
                    Some((le, c)) if le.is_infinite() && c == v => {}
                    _ => return err("_count differs from the +Inf bucket"),
                }
                last_bucket = None;
            }
        }
        Ok(())
    }

    #[test]
    fn exposition_is_well_formed() {
        mine().request(200, Method::Get);
        mine().request(404, Method::Post);
        mine().wait(3);
        mine().wait(1000);
        let w = WorkerState {
            active: 2,
            stats: Some(backends::Stats::default()),
            backend: "epoll",
            ..Default::default()
        };
        let text = render(&[w.clone(), w], 2, 1.5);
        check(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(text.contains("webserv_connections_active 4\n"), "{text}");
        assert!(text.contains("webserv_requests_total{code=\"4xx\",method=\"POST\"} "));
        assert!(check("x_total 1\n").is_err());
        assert!(check("# TYPE x counter\n").is_err());
        assert!(check("# TYPE h histogram\nh_bucket{le=\"2\"} 3\nh_bucket{le=\"1\"} 3\n").is_err());
    }
}
