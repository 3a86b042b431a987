//! Faults and hostile clients: slowloris, slow readers, the connection limit, running out of
//! descriptors, clients that reset mid-request or mid-response, misbehaving CGIs, a full disk
//! and configuration reloads. Each test asserts what a client (or the operator reading the log
//! or the upload directory) sees, on every backend. No assertion is on speed: deadlines below
//! are the server's own timeouts plus the one-second tick plus slack, and a test that overruns
//! its bound fails rather than hanging.

mod common;

use common::*;
use std::fs;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The enforcing tick runs once a second: a timeout fires up to this much after it is due.
const TICK: Duration = Duration::from_secs(1);

/// A deterministic, non-repeating-looking body of `len` bytes (so a short or shifted read
/// cannot pass for the real thing).
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

fn get_ok(port: u16, path: &str, want: &str, why: &str) {
    let r = get(port, path);
    assert_eq!(r.status, 200, "{why}: GET {path}:\n{}", r.dump());
    assert_eq!(r.text(), want, "{why}: GET {path} body");
}

fn assert_alive(s: &mut Server, why: &str) {
    assert!(
        s.alive(),
        "webserv died {why}: {:?} (a signal here is e.g. SIGPIPE)",
        s.exit_status()
    );
}

// ---------------------------------------------------------------------------------------------
// Slowloris
// ---------------------------------------------------------------------------------------------

const SLOWLORIS_CONF: &str = "{BASE}
workers 1;
client_header_timeout 3s;
keepalive_timeout 30s;
server {
    listen 127.0.0.1:{PORT};
    root www;
    location / { }
}
";

const DRIPPERS: usize = 2000;

/// 2,000 connections each send a partial head and then one more byte every second. The
/// header timeout is a deadline for the whole head: every one of them is closed 3 s (plus the
/// tick) after it connected, however it drips, and while they are all open a fresh client is
/// served.
#[test]
fn slowloris_is_closed_by_the_header_deadline() {
    let limit = raise_fd_limit();
    assert!(
        limit >= DRIPPERS as u64 + 200,
        "RLIMIT_NOFILE hard limit {limit} is too low for {DRIPPERS} client connections"
    );
    for_each_backend("slowloris_is_closed_by_the_header_deadline", |b| {
        let s = Server::start(b, SLOWLORIS_CONF, |d| write_file(d, "www/a.txt", "file a"));
        let header_timeout = Duration::from_secs(3);

        struct Dripper {
            stream: TcpStream,
            opened: Instant,
            closed: Option<Instant>,
            got: Vec<u8>,
        }
        let mut drippers: Vec<Dripper> = Vec::with_capacity(DRIPPERS);
        for i in 0..DRIPPERS {
            let mut stream = TcpStream::connect(("127.0.0.1", s.port))
                .unwrap_or_else(|e| panic!("dripper {i}: connect: {e}"));
            let opened = Instant::now();
            stream
                .write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nX-Drip: ")
                .unwrap_or_else(|e| panic!("dripper {i}: write: {e}"));
            stream.set_nonblocking(true).unwrap();
            drippers.push(Dripper {
                stream,
                opened,
                closed: None,
                got: Vec::new(),
            });
        }
        let all_connected = Instant::now();
        eprintln!(
            "{b}: {DRIPPERS} drippers connected in {:?}",
            all_connected - drippers[0].opened
        );

        // A fresh client asks every 0.5 s while the drippers drip; `open` is how many drippers
        // the poller last saw open.
        let open = AtomicUsize::new(DRIPPERS);
        let done = AtomicBool::new(false);
        let port = s.port;
        let (fresh_ok, fresh_while_all_open) = std::thread::scope(|scope| {
            let fresh = scope.spawn(|| {
                let (mut ok, mut while_all_open) = (0, 0);
                while !done.load(Ordering::SeqCst) {
                    let before = open.load(Ordering::SeqCst);
                    let r = get(port, "/a.txt");
                    assert_eq!(
                        r.status,
                        200,
                        "fresh client during slowloris:\n{}",
                        r.dump()
                    );
                    assert_eq!(r.text(), "file a", "fresh client during slowloris");
                    ok += 1;
                    if before == DRIPPERS && open.load(Ordering::SeqCst) == DRIPPERS {
                        while_all_open += 1;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                (ok, while_all_open)
            });

            // Poll every 100 ms, drip one byte per second, stop when all are closed or the
            // bound passes.
            let bound = all_connected + header_timeout + TICK + Duration::from_secs(6);
            let mut next_drip = Instant::now() + Duration::from_secs(1);
            let mut still_open = DRIPPERS;
            while still_open > 0 && Instant::now() < bound {
                let drip = Instant::now() >= next_drip;
                if drip {
                    next_drip += Duration::from_secs(1);
                }
                for d in drippers.iter_mut().filter(|d| d.closed.is_none()) {
                    if drip {
                        match d.stream.write(b"a") {
                            Ok(_) => {}
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                            Err(_) => {
                                d.closed = Some(Instant::now());
                                continue;
                            }
                        }
                    }
                    if poll_peer(&mut d.stream, &mut d.got) == PeerState::Closed {
                        d.closed = Some(Instant::now());
                    }
                }
                still_open = drippers.iter().filter(|d| d.closed.is_none()).count();
                open.store(still_open, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(100));
            }
            done.store(true, Ordering::SeqCst);
            fresh.join().expect("fresh client thread")
        });

        let still_open = drippers.iter().filter(|d| d.closed.is_none()).count();
        assert_eq!(
            still_open,
            0,
            "{b}: {still_open} of {DRIPPERS} dripping connections still open {:?} after the \
             last connected (client_header_timeout 3s must bound the whole head)",
            Instant::now() - all_connected
        );
        let lifetimes: Vec<Duration> = drippers
            .iter()
            .map(|d| d.closed.unwrap() - d.opened)
            .collect();
        let max = *lifetimes.iter().max().unwrap();
        let min = *lifetimes.iter().min().unwrap();
        eprintln!("{b}: dripper lifetimes min {min:?} max {max:?}");
        assert!(
            min >= header_timeout - Duration::from_millis(500),
            "{b}: a dripper was closed after {min:?}, before client_header_timeout 3s"
        );
        assert!(
            max <= header_timeout + TICK + Duration::from_secs(3),
            "{b}: a dripper lived {max:?}; client_header_timeout 3s (+1 s tick) should end it"
        );
        for (i, d) in drippers.iter().enumerate() {
            if !d.got.is_empty() {
                assert!(
                    d.got.starts_with(b"HTTP/1.1 408"),
                    "{b}: dripper {i} got something other than 408: {:?}",
                    String::from_utf8_lossy(&d.got[..d.got.len().min(200)])
                );
            }
        }
        assert!(fresh_ok > 0, "{b}: no fresh request was made");
        assert!(
            fresh_while_all_open > 0,
            "{b}: no fresh request completed while all {DRIPPERS} drippers were open \
             ({fresh_ok} completed in all)"
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Slow reader
// ---------------------------------------------------------------------------------------------

const SLOW_READER_CONF: &str = "{BASE}
workers 1;
send_timeout 2s;
keepalive_timeout 30s;
server {
    listen 127.0.0.1:{PORT};
    root www;
    location / { }
}
";

const BIG: usize = 32 << 20;

/// A client that asks for 32 MiB and never reads is closed after `send_timeout` (it then
/// drains what the kernel buffered and sees EOF, well short of 32 MiB); the server does not
/// buffer the file for it and keeps serving others.
#[test]
fn slow_reader_is_closed_by_send_timeout() {
    for_each_backend("slow_reader_is_closed_by_send_timeout", |b| {
        let mut s = Server::start(b, SLOW_READER_CONF, |d| {
            write_file(d, "www/a.txt", "file a");
            write_file(d, "www/big.bin", pattern(BIG));
        });
        let pid = s.pid().unwrap();
        get_ok(s.port, "/a.txt", "file a", "warm-up");
        let baseline = vm_rss_kib(pid).expect("server VmRSS");

        let mut slow = connect_with_timeout(s.port, Duration::from_secs(5));
        slow.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        // Never read for send_timeout + tick + slack; meanwhile others are served and the
        // server's memory is watched.
        let stall = Duration::from_secs(2) + TICK + Duration::from_secs(2);
        let start = Instant::now();
        let mut peak = baseline;
        let mut served = 0;
        while start.elapsed() < stall {
            peak = peak.max(vm_rss_kib(pid).expect("server VmRSS"));
            get_ok(s.port, "/a.txt", "file a", "while a slow reader stalls");
            served += 1;
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(served > 0);
        eprintln!("{b}: VmRSS baseline {baseline} KiB, peak {peak} KiB during the stall");
        assert!(
            peak < baseline + 16 * 1024,
            "{b}: VmRSS grew from {baseline} KiB to {peak} KiB while one client stalled on a \
             32 MiB file (it should not be buffered)"
        );

        // Drain: what the kernel buffered, then EOF/reset — not the whole file.
        let mut total = 0usize;
        let mut buf = vec![0u8; 256 * 1024];
        let ended = loop {
            match slow.read(&mut buf) {
                Ok(0) => break "EOF",
                Ok(n) => total += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                    ) =>
                {
                    break "reset"
                }
                Err(e) => panic!(
                    "{b}: slow reader still open after {:?} stalled ({total} B drained): {e}",
                    stall
                ),
            }
        };
        eprintln!("{b}: slow reader drained {total} B then {ended}");
        assert!(
            total < BIG,
            "{b}: the slow reader received all {total} B: send_timeout 2s did not close it"
        );
        get_ok(s.port, "/a.txt", "file a", "after the slow reader");
        assert_alive(&mut s, "after a slow reader");
    });
}

// ---------------------------------------------------------------------------------------------
// Connection limit
// ---------------------------------------------------------------------------------------------

const LIMIT_CONF: &str = "{BASE}
workers 1;
worker_connections 50;
keepalive_timeout 60s;
server {
    listen 127.0.0.1:{PORT};
    root www;
    location / { }
}
";

/// At `worker_connections 50` with 50 idle keep-alive connections, a 51st client is served and
/// an idle one is closed to make room.
#[test]
fn connection_limit_reclaims_idle_keepalive() {
    for_each_backend("connection_limit_reclaims_idle_keepalive", |b| {
        let s = Server::start(b, LIMIT_CONF, |d| write_file(d, "www/a.txt", "file a"));
        // Let the harness's readiness probe connection be closed and forgotten.
        std::thread::sleep(Duration::from_millis(300));
        let mut idle: Vec<Conn> = (0..50)
            .map(|i| {
                let mut c = Conn::open(s.port);
                c.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n");
                let r = c.read_response();
                assert_eq!(r.status, 200, "{b}: idle connection {i}:\n{}", r.dump());
                c
            })
            .collect();

        let mut fresh = Conn::open(s.port);
        fresh.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n");
        let r = fresh.read_response();
        assert_eq!(r.status, 200, "{b}: 51st connection:\n{}", r.dump());
        assert_eq!(r.text(), "file a");

        let closed: Vec<usize> = (0..idle.len())
            .filter(|&i| idle[i].is_closed_within(Duration::from_millis(200)))
            .collect();
        eprintln!("{b}: idle connections closed to make room: {closed:?}");
        assert!(
            !closed.is_empty(),
            "{b}: at worker_connections 50 a 51st client was served but no idle keep-alive \
             connection was closed"
        );
        assert!(closed.len() < 50, "{b}: every idle connection was closed");
        // The survivors still work.
        let survivor = (0..50).find(|i| !closed.contains(i)).unwrap();
        idle[survivor].send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(idle[survivor].read_response().status, 200);
    });
}

// ---------------------------------------------------------------------------------------------
// Out of descriptors
// ---------------------------------------------------------------------------------------------

const EMFILE_CONF: &str = "{BASE}
workers 1;
client_header_timeout 60s;
keepalive_timeout 60s;
server {
    listen 127.0.0.1:{PORT};
    root www;
    location / { }
}
";

/// Started with `ulimit -n 64`, the server runs out of descriptors: it keeps serving the
/// connections it has, logs the failure once per retry (not once per failed accept), and
/// accepts again once descriptors are free.
#[test]
fn emfile_keeps_serving_and_recovers() {
    for_each_backend("emfile_keeps_serving_and_recovers", |b| {
        let mut s =
            Server::start_with_nofile(b, EMFILE_CONF, |d| write_file(d, "www/a.txt", "file a"), 64);
        let pid = s.pid().unwrap();
        let mut keep = Conn::open(s.port);
        keep.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(keep.read_response().status, 200, "{b}: before the flood");

        // Connections that send half a head: busy, not idle, so nothing may reclaim them.
        let mut extra = Vec::new();
        let flood_start = Instant::now();
        for _ in 0..120 {
            let mut c = Conn::open(s.port);
            c.send(b"GET /a.txt HTTP/1.1\r\n");
            extra.push(c);
        }
        let paused = |s: &Server| s.log().contains("pausing accepts");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !paused(&s) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            paused(&s),
            "{b}: 120 connections against `ulimit -n 64` but no accept failure logged \
             (server has {:?} fds); log:\n{}",
            fd_count(pid),
            s.log()
        );

        // Out of descriptors for a few seconds: the existing keep-alive client is served.
        for i in 0..6 {
            keep.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n");
            match keep.try_read_response() {
                Ok(r) => {
                    assert_eq!(r.status, 200, "{b}: keep-alive request {i} during EMFILE");
                    assert_eq!(r.text(), "file a");
                }
                Err(e) => panic!(
                    "{b}: the existing keep-alive connection was not served while out of \
                     descriptors (request {i}): {e}"
                ),
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        assert_alive(&mut s, "while out of descriptors");
        let elapsed = flood_start.elapsed().as_secs() + 1;
        let log = s.log();
        let lines = log
            .lines()
            .filter(|l| l.contains("pausing accepts"))
            .count();
        eprintln!("{b}: {lines} accept-failure log lines in ~{elapsed} s");
        assert_eq!(
            lines, 1,
            "{b}: {lines} accept-failure lines in ~{elapsed} s: an episode is logged once, not \
             per failed accept or per retry"
        );
        let log_len = log.len();
        assert!(
            log_len < 64 * 1024,
            "{b}: the log grew to {log_len} B while out of descriptors"
        );

        // Free the descriptors: a new client is served again (accepts resume within the tick).
        drop(extra);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut c = connect_with_timeout(s.port, Duration::from_secs(2));
            c.write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let last = match Reader::new(c).read_response(false) {
                Ok(r) if r.status == 200 && r.text() == "file a" => break,
                Ok(r) => r.dump(),
                Err(e) => e.to_string(),
            };
            assert!(
                Instant::now() < deadline,
                "{b}: no new connection served within 10 s of freeing descriptors: {last}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        keep.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(keep.read_response().status, 200, "{b}: after recovery");
        assert!(
            s.log().contains("accepting connections again"),
            "{b}: the recovery is not logged:\n{}",
            s.log()
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Client resets
// ---------------------------------------------------------------------------------------------

const RESET_CONF: &str = "{BASE}
workers 1;
server {
    listen 127.0.0.1:{PORT};
    root www;
    location / { }
    location /up/ { allow_methods PUT; upload_store up; client_max_body_size 10m; }
    location /cgi-bin/ {
        allow_methods GET POST;
        cgi .sh /bin/sh;
        cgi_timeout 10s;
        client_max_body_size 0;
    }
}
";

/// Clients that abort with RST halfway through a request body or a response body, and a CGI
/// that exits without reading its stdin: the server's writes fail with EPIPE/ECONNRESET, and
/// it goes on serving (SIGPIPE never kills it).
#[test]
fn client_resets_do_not_hurt_the_server() {
    for_each_backend("client_resets_do_not_hurt_the_server", |b| {
        let mut s = Server::start(b, RESET_CONF, |d| {
            write_file(d, "www/a.txt", "file a");
            write_file(d, "www/big.bin", pattern(BIG));
            write_file(
                d,
                "www/cgi-bin/nostdin.sh",
                "printf 'Content-Type: text/plain\\r\\n\\r\\nearly\\n'\n",
            );
            fs::create_dir_all(d.join("up")).unwrap();
        });

        // Mid-request: half of a 1 MiB PUT body, then RST.
        let half = pattern(512 * 1024);
        for i in 0..10 {
            let mut c = connect_with_timeout(s.port, Duration::from_secs(5));
            c.write_all(
                format!(
                    "PUT /up/f{i}.bin HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                    1 << 20
                )
                .as_bytes(),
            )
            .unwrap();
            c.write_all(&half).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            reset_connection(c);
        }
        assert_alive(&mut s, "after clients reset mid-request");
        get_ok(s.port, "/a.txt", "file a", "after resets mid-request");
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let left: Vec<_> = fs::read_dir(s.dir.join("up"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{b}: aborted uploads left {left:?} in the upload store"
            );
            std::thread::sleep(Duration::from_millis(50));
        }

        // Mid-response: read 64 KiB of a 32 MiB file, then RST.
        for _ in 0..10 {
            let mut c = connect_with_timeout(s.port, Duration::from_secs(5));
            c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut got = 0;
            let mut buf = [0u8; 16 * 1024];
            while got < 64 * 1024 {
                let n = match c.read(&mut buf) {
                    // A signal may interrupt the read (libkqueue's watcher in this process).
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => r.expect("read the start of big.bin"),
                };
                assert!(n > 0, "{b}: EOF at {got} B of big.bin");
                got += n;
            }
            reset_connection(c);
        }
        std::thread::sleep(Duration::from_millis(200));
        assert_alive(&mut s, "after clients reset mid-response");
        get_ok(s.port, "/a.txt", "file a", "after resets mid-response");
        // A whole big response still arrives intact after all that.
        let mut c = connect_with_timeout(s.port, Duration::from_secs(10));
        c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let r = Reader::new(c).read_response(false).expect("big.bin");
        assert_eq!(r.status, 200);
        assert!(
            r.body == pattern(BIG),
            "{b}: big.bin corrupted after resets"
        );

        // A CGI that exits without reading 4 MiB of request body: writes to its stdin fail
        // with EPIPE.
        let body = pattern(4 << 20);
        for _ in 0..3 {
            let mut c = connect_with_timeout(s.port, Duration::from_secs(10));
            let mut w = c.try_clone().unwrap();
            let body = body.clone();
            let writer = std::thread::spawn(move || {
                let _ = w.write_all(
                    format!(
                        "POST /cgi-bin/nostdin.sh HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                         Content-Length: {}\r\n\r\n",
                        body.len()
                    )
                    .as_bytes(),
                );
                let _ = w.write_all(&body);
            });
            let mut out = Vec::new();
            let _ = c.read_to_end(&mut out);
            let _ = writer.join();
            assert_alive(&mut s, "after a CGI closed its stdin under a request body");
        }
        get_ok(s.port, "/a.txt", "file a", "after CGIs refused their stdin");
    });
}

// ---------------------------------------------------------------------------------------------
// Misbehaving CGIs
// ---------------------------------------------------------------------------------------------

const CGI_CONF: &str = "{BASE}
workers 1;
server {
    listen 127.0.0.1:{PORT};
    root www;
    location / { }
    location /cgi-bin/ {
        allow_methods GET;
        cgi .sh /bin/sh;
        cgi_timeout 30s;
    }
}
";

/// A CGI that sends its headers and a little body, closes stdout and lingers: the response
/// ends at the EOF (not at cgi_timeout), and the child is reaped when it exits. A CGI that
/// writes megabytes to stderr does not stall the server.
#[test]
fn misbehaving_cgis() {
    for_each_backend("misbehaving_cgis", |b| {
        let mut s = Server::start(b, CGI_CONF, |d| {
            write_file(d, "www/a.txt", "file a");
            write_file(
                d,
                "www/cgi-bin/early.sh",
                format!(
                    "printf 'Content-Type: text/plain\\r\\n\\r\\npartial\\n'\n\
                     exec 1>&-\n\
                     echo $$ > '{}'\n\
                     exec sleep 2\n",
                    d.join("early.pid").display()
                ),
            );
            write_file(
                d,
                "www/cgi-bin/noisy.sh",
                "head -c 8000000 /dev/zero | tr '\\0' 'e' >&2\n\
                 printf 'Content-Type: text/plain\\r\\n\\r\\nquiet now\\n'\n",
            );
        });

        let start = Instant::now();
        let mut c = connect_with_timeout(s.port, Duration::from_secs(10));
        c.write_all(b"GET /cgi-bin/early.sh HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let r = Reader::new(c)
            .read_response(false)
            .unwrap_or_else(|e| panic!("{b}: CGI that closed stdout early: {e}"));
        let took = start.elapsed();
        assert_eq!(r.status, 200, "{b}:\n{}", r.dump());
        assert_eq!(
            r.text(),
            "partial\n",
            "{b}: body of a CGI that closed stdout"
        );
        assert!(
            took < Duration::from_secs(10),
            "{b}: response to a CGI that closed stdout took {took:?} (cgi_timeout is 30 s)"
        );
        let pid: u32 = wait_for_file(&s.dir.join("early.pid"), Duration::from_secs(5))
            .expect("early.sh wrote its pid")
            .parse()
            .unwrap();
        if let Err(state) = wait_process_gone(pid, Duration::from_secs(8)) {
            panic!("{b}: the CGI child {pid} was not reaped (state {state})");
        }

        // stderr flood, with a static request alongside.
        let port = s.port;
        let noisy = std::thread::spawn(move || {
            let mut c = connect_with_timeout(port, Duration::from_secs(20));
            c.write_all(b"GET /cgi-bin/noisy.sh HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            Reader::new(c).read_response(false)
        });
        for _ in 0..5 {
            get_ok(s.port, "/a.txt", "file a", "while a CGI floods stderr");
            std::thread::sleep(Duration::from_millis(100));
        }
        let r = noisy
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("{b}: CGI flooding stderr: {e}"));
        assert_eq!(r.status, 200, "{b}:\n{}", r.dump());
        assert_eq!(r.text(), "quiet now\n");
        assert_alive(&mut s, "after a stderr flood");
        get_ok(s.port, "/a.txt", "file a", "after a stderr flood");
    });
}

// ---------------------------------------------------------------------------------------------
// Full disk
// ---------------------------------------------------------------------------------------------

const DISK_CONF: &str = "{BASE}
workers 1;
server {
    listen 127.0.0.1:{PORT};
    root www;
    location / { }
    location /up/ { allow_methods PUT; upload_store up; client_max_body_size 10m; }
}
";

/// An upload store on a 1 MiB tmpfs: a 4 MB PUT gets 507 (or 500), nothing of it is left
/// (no partial file, no `.upload-*.tmp`), and the space is free again for a small upload.
#[test]
fn full_disk_upload_is_507_and_leaves_nothing() {
    for_each_backend("full_disk_upload_is_507_and_leaves_nothing", |b| {
        let s = Server::start(b, DISK_CONF, |d| write_file(d, "www/a.txt", "file a"));
        let store = s.dir.join("up");
        let _mount = match TmpfsMount::mount(&store, "1m") {
            Ok(m) => m,
            Err(why) => {
                let ci = std::env::var("CI").is_ok_and(|v| v == "true");
                panic!(
                    "full-disk test cannot run: {why}. It needs root (or CAP_SYS_ADMIN) to \
                     mount a tmpfs{}",
                    if ci {
                        " and CI=true requires it"
                    } else {
                        "; run it as root"
                    }
                );
            }
        };
        let body = pattern(4_000_000);
        let c = connect_with_timeout(s.port, Duration::from_secs(10));
        let mut w = c.try_clone().unwrap();
        let to_send = body.clone();
        let writer = std::thread::spawn(move || {
            let _ = w.write_all(
                format!(
                    "PUT /up/big.bin HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                    to_send.len()
                )
                .as_bytes(),
            );
            let _ = w.write_all(&to_send);
        });
        let mut reader = Reader::new(c.try_clone().unwrap());
        let r = reader
            .read_response(false)
            .unwrap_or_else(|e| panic!("{b}: no answer to a PUT that fills the disk: {e}"));
        let _ = c.shutdown(std::net::Shutdown::Both);
        let _ = writer.join();
        eprintln!("{b}: PUT of 4 MB onto a 1 MiB store: {}", r.status);
        assert!(
            r.status == 507 || r.status == 500,
            "{b}: PUT of 4 MB onto a 1 MiB store answered {}:\n{}",
            r.status,
            r.dump()
        );
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let left: Vec<_> = fs::read_dir(&store)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{b}: a failed upload left {left:?} in the store"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The space came back: a small upload fits.
        let small = request(
            s.port,
            b"PUT /up/small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
        );
        assert_eq!(
            small.status,
            201,
            "{b}: small PUT after the failure:\n{}",
            small.dump()
        );
        assert_eq!(fs::read(store.join("small.txt")).unwrap(), b"hello");
        get_ok(s.port, "/a.txt", "file a", "after a full disk");
    });
}

// ---------------------------------------------------------------------------------------------
// SIGHUP
// ---------------------------------------------------------------------------------------------

fn hup_conf(body: &str) -> String {
    format!(
        "{{BASE}}
workers 1;
keepalive_timeout 60s;
server {{
    listen 127.0.0.1:{{PORT}};
    location / {{ return 200 \"{body}\"; }}
}}
"
    )
}

fn ask(c: &mut Conn) -> Response {
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    c.read_response()
}

/// SIGHUP with a changed config: an open keep-alive connection keeps working and requests see
/// the new one. SIGHUP with a broken config: the old one keeps serving and the log names the
/// error as FILE:LINE:COL.
#[test]
fn sighup_reloads_and_survives_a_broken_config() {
    for_each_backend("sighup_reloads_and_survives_a_broken_config", |b| {
        let s = Server::start(b, &hup_conf("v1"), |_| {});
        let conf_path = s.dir.join("webserv.conf");
        let expand = |t: &str| {
            t.replace("{BASE}", BASE)
                .replace("{PORT}", &s.port.to_string())
        };
        let mut keep = Conn::open(s.port);
        assert_eq!(ask(&mut keep).text(), "v1", "{b}: before reload");

        fs::write(&conf_path, expand(&hup_conf("v2"))).unwrap();
        s.signal(libc::SIGHUP);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let r = get(s.port, "/");
            assert_eq!(r.status, 200, "{b}: during reload:\n{}", r.dump());
            if r.text() == "v2" {
                break;
            }
            assert_eq!(r.text(), "v1");
            assert!(
                Instant::now() < deadline,
                "{b}: new requests still see v1 5 s after SIGHUP; log:\n{}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let r = ask(&mut keep);
        assert_eq!(r.status, 200, "{b}: kept connection after reload");
        assert_eq!(r.text(), "v2", "{b}: a new request on a kept connection");

        // Broken: an unknown directive on line 3, column 1 of the new file.
        let broken = expand(&hup_conf("v3")).replacen(
            "workers 1;\n",
            "workers 1;\nno_such_directive on;\n",
            1,
        );
        let line = 1 + broken
            .lines()
            .position(|l| l.starts_with("no_such_directive"))
            .unwrap();
        fs::write(&conf_path, &broken).unwrap();
        s.signal(libc::SIGHUP);
        let want = format!("{}:{line}:1", conf_path.display());
        let deadline = Instant::now() + Duration::from_secs(5);
        while !s.log().contains(&want) {
            assert!(
                Instant::now() < deadline,
                "{b}: no `{want}` error in the log 5 s after SIGHUP with a broken config; \
                 log:\n{}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        get_ok(s.port, "/", "v2", "after a broken reload");
        let r = ask(&mut keep);
        assert_eq!(r.text(), "v2", "{b}: kept connection after a broken reload");
    });
}

// ---------------------------------------------------------------------------------------------
// keepalive_requests (found by ci/soak.sh: siege saw "Connection reset by peer")
// ---------------------------------------------------------------------------------------------

const KEEPALIVE_REQUESTS_CONF: &str = "{BASE}
workers 1;
keepalive_requests 3;
server {
    listen 127.0.0.1:{PORT};
    root www;
    location / { }
}
";

/// When the server closes a connection because it reached `keepalive_requests`, the last
/// response says `Connection: close` (RFC 9112 §9.6), so the client does not send another
/// request into a closed socket and get a reset instead of an answer.
#[test]
fn last_keepalive_request_says_connection_close() {
    for_each_backend("last_keepalive_request_says_connection_close", |b| {
        let s = Server::start(b, KEEPALIVE_REQUESTS_CONF, |d| {
            write_file(d, "www/a.txt", "file a")
        });
        let mut c = Conn::open(s.port);
        for i in 1..=3 {
            c.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n");
            let r = c.read_response();
            assert_eq!(r.status, 200, "{b}: request {i}");
            let close = r
                .header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"));
            if i < 3 {
                assert!(!close, "{b}: request {i} of 3 closed early:\n{}", r.dump());
            } else {
                assert!(
                    close,
                    "{b}: response {i} of keepalive_requests 3 has no `Connection: close`, \
                     yet the server closes the connection after it:\n{}",
                    r.dump()
                );
            }
        }
        assert!(c.is_closed(), "{b}: still open after keepalive_requests 3");
    });
}
