//! Hostile review of session 23's cuts to user-space work (issue 12): io_uring's small sends
//! copied into one `IORING_OP_SEND` (a small window, a full socket, totals around the
//! 2 KiB copy bound), the clock read less often (the `Date` text, timeouts), deadlines made from the
//! turn's stamp, the one-pass field lookup (`headers_named`: duplicates, odd case, names of the
//! same length), the one-pass authority and target checks, and the moved `--debug` trace. Each
//! test attacks a real server, on every backend.

mod common;

use common::*;
use std::fs;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const CONF: &str = "{BASE}
workers 1;
server {
    listen 127.0.0.1:{PORT};
    server_name a.test;
    root {DIR}/www;
    location /list/ { autoindex on; }
}
server {
    listen 127.0.0.1:{PORT};
    server_name b.test;
    root {DIR}/wwwb;
}
";

/// Body sizes whose responses straddle the 2 KiB copy bound (head ~ 200-300 bytes).
const SIZES: std::ops::RangeInclusive<usize> = 1650..=1950;

/// Bytes that differ from file to file and along a file: a shifted or foreign byte shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed)
        .collect()
}

fn setup(dir: &Path) {
    fs::create_dir_all(dir.join("www/list")).unwrap();
    fs::create_dir_all(dir.join("wwwb")).unwrap();
    write_file(dir, "www/page.html", "<p>a</p>");
    write_file(dir, "wwwb/page.html", "<p>b</p>");
    write_file(dir, "wwwb/index.html", "<p>b index</p>");
    write_file(dir, "www/list/one.txt", "1");
    write_file(dir, "www/ten.txt", "0123456789");
    for n in SIZES {
        fs::write(dir.join(format!("www/s{n}.bin")), pattern(n, n as u8)).unwrap();
    }
}

fn start(backend: &str) -> Server {
    Server::start(backend, CONF, setup)
}

/// Bytes of a response's head as the server sends it (`Name: value` lines).
fn head_len(r: &Response) -> usize {
    let line = format!("{} {} {}\r\n", r.version, r.status, r.reason).len();
    line + r
        .headers
        .iter()
        .map(|(n, v)| n.len() + 2 + v.len() + 2)
        .sum::<usize>()
        + 2
}

/// Seconds since the epoch of an IMF-fixdate (`Wed, 02 Dec 2026 05:07:09 GMT`).
fn http_date_secs(s: &str) -> u64 {
    let p: Vec<&str> = s.split([' ', ':']).collect();
    assert_eq!(p.len(), 8, "not an IMF-fixdate: {s:?}");
    assert_eq!(p[7], "GMT", "{s:?}");
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = months.iter().position(|&x| x == p[2]).expect("month") as i64 + 1;
    let (y, d): (i64, i64) = (p[3].parse().unwrap(), p[1].parse().unwrap());
    // Days from civil (proleptic Gregorian).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let (h, mi, se): (i64, i64, i64) = (
        p[4].parse().unwrap(),
        p[5].parse().unwrap(),
        p[6].parse().unwrap(),
    );
    (days * 86_400 + h * 3600 + mi * 60 + se) as u64
}

fn wall_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The `Date` header follows the wall clock: within the second the request was answered in,
/// a new value once a second has turned (on the same keep-alive connection and a new one), and
/// one second at most across a pipelined batch.
#[test]
fn date_follows_the_wall_clock_across_seconds() {
    for_each_backend("date_follows_the_wall_clock_across_seconds", |b| {
        let s = start(b);
        let mut c = Conn::open(s.port);
        let req = b"GET /page.html HTTP/1.1\r\nHost: a.test\r\n\r\n";
        let mut dates = Vec::new();
        for round in 0..2 {
            let before = wall_secs();
            c.send(req);
            let r = c.read_response();
            let after = wall_secs();
            let d = http_date_secs(r.must_header("Date"));
            assert!(
                before <= d && d <= after,
                "[{b}] round {round}: Date {d} outside the wall clock's [{before}, {after}]"
            );
            dates.push(d);
            // A fresh connection's first response too.
            let r = get_host(s.port, "a.test", "/page.html");
            let d2 = http_date_secs(r.must_header("Date"));
            assert!(
                d2 >= d && d2 <= wall_secs(),
                "[{b}] round {round}: {d2} vs {d}"
            );
            if round == 0 {
                std::thread::sleep(Duration::from_millis(1100));
            }
        }
        assert!(dates[1] > dates[0], "[{b}] Date did not move: {dates:?}");
        // A pipelined batch: every Date within the batch's wall-clock window, none going back.
        let before = wall_secs();
        c.send(&req.repeat(40));
        let mut last = 0;
        for i in 0..40 {
            let d = http_date_secs(c.read_response().must_header("Date"));
            assert!(
                d >= last,
                "[{b}] response {i} of the batch went back: {d} < {last}"
            );
            last = d;
            assert!(d >= before && d <= wall_secs(), "[{b}] response {i}: {d}");
        }
    });
}

const TIMEOUT_CONF: &str = "{BASE}
workers 1;
keepalive_timeout 2s;
client_header_timeout 2s;
send_timeout 2s;
server {
    listen 127.0.0.1:{PORT};
    root {DIR}/www;
}
";

/// How long until the server closes `s` (reading and discarding whatever it sends), or None
/// when it is still open after `bound`.
fn closed_after(s: &mut TcpStream, since: Instant, bound: Duration) -> (Option<Duration>, Vec<u8>) {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while since.elapsed() < bound {
        match s.read(&mut chunk) {
            Ok(0) => return (Some(since.elapsed()), got),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (Some(since.elapsed()), got),
        }
    }
    (None, got)
}

/// A 16 MiB file: more than a client's receive buffer and the server's send buffer hold.
const BIG: usize = 16 << 20;

/// Deadlines made from the turn's stamp still fire, not early and not much late: an idle
/// keep-alive connection is closed after keepalive_timeout (2 s), a head that stops half-way
/// is cut at client_header_timeout (2 s, a 408 at most), a client that stops reading a large
/// response is dropped after send_timeout (2 s), one that pauses 1.2 s gets it whole; the
/// loop's 1 s tick is the slack. "Not early" is 1.6 s: a deadline cut to a quarter (0.5 s,
/// closed by the next tick, 1.5 s at most) fails it, a client a little late to note the
/// time does not.
#[test]
fn keepalive_header_and_send_timeouts_fire() {
    for_each_backend("keepalive_header_and_send_timeouts_fire", |b| {
        let s = Server::start(b, TIMEOUT_CONF, |dir| {
            setup(dir);
            fs::write(dir.join("www/big.bin"), pattern(BIG, 7)).unwrap();
        });
        let port = s.port;
        let big = |pause: Duration| {
            std::thread::spawn(move || {
                let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
                c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .unwrap();
                std::thread::sleep(pause);
                let (closed, got) = closed_after(&mut c, Instant::now(), Duration::from_secs(3));
                (closed.is_some(), got.len())
            })
        };
        // Never reads until the server must have given up (2 s past send_timeout: room for a
        // late tick on a loaded machine); pauses 0.8 s short of send_timeout.
        let (gone, paused) = (
            big(Duration::from_millis(5000)),
            big(Duration::from_millis(1200)),
        );
        let idle = std::thread::spawn(move || {
            let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            c.write_all(b"GET /ten.txt HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut r = Reader::new(c.try_clone().unwrap());
            let resp = r.read_response(false).unwrap();
            assert_eq!(resp.text(), "0123456789");
            let since = Instant::now();
            closed_after(&mut c, since, Duration::from_secs(7))
        });
        let mut h = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let since = Instant::now();
        h.write_all(b"GET /ten.txt HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .unwrap();
        let (head_closed, got) = closed_after(&mut h, since, Duration::from_secs(7));
        let (idle_closed, rest) = idle.join().unwrap();
        let head_closed =
            head_closed.unwrap_or_else(|| panic!("[{b}] a half head outlived 7 s (timeout 2 s)"));
        assert!(
            head_closed >= Duration::from_millis(1600),
            "[{b}] a half head cut after {head_closed:?}, before client_header_timeout 2s"
        );
        assert!(
            got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
            "[{b}] a cut head got {:?}",
            String::from_utf8_lossy(&got)
        );
        let idle_closed =
            idle_closed.unwrap_or_else(|| panic!("[{b}] an idle connection outlived 7 s"));
        assert!(
            idle_closed >= Duration::from_millis(1600),
            "[{b}] an idle connection closed after {idle_closed:?}, before keepalive_timeout 2s"
        );
        assert!(rest.is_empty(), "[{b}] an idle connection got {rest:?}");
        let (closed, got) = gone.join().unwrap();
        assert!(
            closed && got < BIG,
            "[{b}] a client that stopped reading was not dropped by send_timeout 2s \
             (closed {closed}, {got} bytes of {BIG})"
        );
        let (_, got) = paused.join().unwrap();
        assert!(
            got > BIG,
            "[{b}] a client that paused 1.2 s (send_timeout 2s) got {got} bytes of {BIG}"
        );
    });
}

/// A request of `fields` on `/ten.txt`, one per line.
fn req_with(fields: &[String]) -> Vec<u8> {
    let mut r = b"GET /ten.txt HTTP/1.1\r\nHost: a.test\r\n".to_vec();
    for f in fields {
        r.extend_from_slice(f.as_bytes());
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(b"\r\n");
    r
}

/// The conditional and range fields, looked up in one pass by name length: any case, the
/// first of duplicates, nothing for a name of the same length but other bytes, found as the
/// hundredth field; their semantics as before.
#[test]
fn conditional_fields_found_by_exact_name() {
    for_each_backend("conditional_fields_found_by_exact_name", |b| {
        let s = start(b);
        let base = request(s.port, &req_with(&[]));
        assert_eq!(base.status, 200, "[{b}]");
        let etag = base.must_header("ETag").to_string();
        let lm = base.must_header("Last-Modified").to_string();
        let cases: Vec<(Vec<String>, u16, &str)> = vec![
            (vec![format!("If-None-Match: {etag}")], 304, ""),
            (vec![format!("iF-nOnE-mAtCh: {etag}")], 304, ""),
            (vec![format!("If-Nope-Match: {etag}")], 200, "0123456789"),
            (vec![format!("If-None-Matc: {etag}")], 200, "0123456789"),
            (vec![format!("If-None-Matchx: {etag}")], 200, "0123456789"),
            // Duplicates: the first counts (and a list of both would match as well).
            (
                vec![
                    format!("If-None-Match: {etag}"),
                    "If-None-Match: \"other\"".into(),
                ],
                304,
                "",
            ),
            (vec![format!("If-Modified-Since: {lm}")], 304, ""),
            (vec![format!("IF-MODIFIED-SINCE: {lm}")], 304, ""),
            (vec![format!("If-Modified-Sincf: {lm}")], 200, "0123456789"),
            (vec!["Range: bytes=2-4".into()], 206, "234"),
            (vec!["rAnGe: bytes=2-4".into()], 206, "234"),
            (vec!["Rangf: bytes=2-4".into()], 200, "0123456789"),
            (
                vec!["Range: bytes=2-4".into(), "Range: bytes=5-6".into()],
                206,
                "234",
            ),
            (vec!["Range: bytes=20-".into()], 416, ""),
            (
                vec!["Range: bytes=2-4".into(), "If-Range: \"other\"".into()],
                200,
                "0123456789",
            ),
            (
                vec!["Range: bytes=2-4".into(), "If-Rangf: \"other\"".into()],
                206,
                "234",
            ),
            (
                vec!["Range: bytes=2-4".into(), format!("if-range: {etag}")],
                206,
                "234",
            ),
            (vec!["If-Match: \"other\"".into()], 412, ""),
            (vec!["If-Natch: \"other\"".into()], 200, "0123456789"),
            (vec![format!("If-Match: {etag}")], 200, "0123456789"),
            (
                vec!["If-Unmodified-Since: Sun, 06 Nov 1994 08:49:37 GMT".into()],
                412,
                "",
            ),
            (
                vec!["If-Unmodified-Sincf: Sun, 06 Nov 1994 08:49:37 GMT".into()],
                200,
                "0123456789",
            ),
            // Content-Type on a GET is asked for too (same length as other names).
            (
                vec![
                    "Content-Typf: x".into(),
                    "Content-Type: text/plain".into(),
                    format!("If-None-Match: {etag}"),
                ],
                304,
                "",
            ),
        ];
        for (fields, status, body) in cases {
            let r = request(s.port, &req_with(&fields));
            assert_eq!(r.status, status, "[{b}] {fields:?}:\n{}", r.dump());
            if status != 304 && status != 412 && status != 416 {
                assert_eq!(r.text(), body, "[{b}] {fields:?}");
            }
        }
        // The hundredth field (98 fillers of every length around the seven names, Host, and
        // If-None-Match last) is found; a hundred and first field is too many.
        let mut fields: Vec<String> = (0..98)
            .map(|i| format!("{}: {i}", "X".repeat(1 + i % 22)))
            .collect();
        fields.push(format!("If-None-Match: {etag}"));
        let r = request(s.port, &req_with(&fields));
        assert_eq!(
            r.status,
            304,
            "[{b}] If-None-Match as field 100:\n{}",
            r.dump()
        );
        fields.insert(0, "X-One-More: 1".into());
        let r = request(s.port, &req_with(&fields));
        assert_eq!(r.status, 431, "[{b}] 101 fields:\n{}", r.dump());
    });
}

/// Targets and Host values through the one-pass checks: absolute-form beats Host (its port
/// ignored for the name), ports, IPv6 literals, escapes; malformed ones are 400.
#[test]
fn authority_forms_route_as_before() {
    for_each_backend("authority_forms_route_as_before", |b| {
        let s = start(b);
        let ask = |target: &str, host: &[u8]| -> Response {
            let mut r = format!("GET {target} HTTP/1.1\r\nHost: ").into_bytes();
            r.extend_from_slice(host);
            r.extend_from_slice(b"\r\n\r\n");
            request(s.port, &r)
        };
        let cases: Vec<(&str, &[u8], u16, &str)> = vec![
            ("/page.html", b"b.test", 200, "<p>b</p>"),
            ("/page.html", b"b.test:8080", 200, "<p>b</p>"),
            ("/page.html", b"b.test:", 200, "<p>b</p>"),
            ("/page.html", b"B.Test", 200, "<p>b</p>"),
            ("/page.html", b"B.TEST:80", 200, "<p>b</p>"),
            ("HTTP://B.TEST/page.html", b"a.test", 200, "<p>b</p>"),
            ("/page.html", b"a.test", 200, "<p>a</p>"),
            ("/page.html", b"[::1]:8080", 200, "<p>a</p>"),
            ("/page.html", b"[::1]", 200, "<p>a</p>"),
            ("/page.html", b"127.0.0.1:99", 200, "<p>a</p>"),
            ("/page.html", b"b%2Etest", 200, "<p>a</p>"),
            ("http://b.test/page.html", b"a.test", 200, "<p>b</p>"),
            ("http://b.test:8080/page.html", b"a.test", 200, "<p>b</p>"),
            (
                "http://b.test:8080/page.html?x=/./",
                b"a.test",
                200,
                "<p>b</p>",
            ),
            ("http://[::1]:8080/page.html", b"b.test", 200, "<p>a</p>"),
            ("/%70age.html", b"b.test", 200, "<p>b</p>"),
            ("/x/../page.html", b"b.test", 200, "<p>b</p>"),
            ("/page.html", b"b%2", 400, ""),
            ("/page.html", b"b%zz", 400, ""),
            ("/page.html", b"b.test:123456", 400, ""),
            ("/page.html", b"b.test:8o", 400, ""),
            ("/page.html", b"[::1", 400, ""),
            ("/page.html", b"[]", 400, ""),
            ("/page.html", b":80", 400, ""),
            ("/page.html", "b\u{e9}.test".as_bytes(), 400, ""),
            ("/page.html", b"b test", 400, ""),
            ("http://b%zz/page.html", b"b.test", 400, ""),
            ("http://user@b.test/page.html", b"b.test", 400, ""),
        ];
        for (target, host, status, body) in cases {
            let r = ask(target, host);
            let h = String::from_utf8_lossy(host);
            assert_eq!(r.status, status, "[{b}] {target} Host {h}:\n{}", r.dump());
            if status == 200 {
                assert_eq!(r.text(), body, "[{b}] {target} Host {h}");
            }
        }
        // An absolute-form target without a path, with or without a query, is the server's "/"
        // (RFC 9110 §4.2.3).
        let root = ask("/", b"b.test");
        assert_eq!(root.text(), "<p>b index</p>", "[{b}] / on b.test");
        for target in ["http://b.test", "http://b.test?x=1", "http://B.TEST:8080?"] {
            let r = ask(target, b"a.test");
            assert_eq!(
                (r.status, &r.body),
                (root.status, &root.body),
                "[{b}] {target}:\n{}",
                r.dump()
            );
        }
    });
}

/// A reader that takes at most `chunk` bytes per read after a pause: the server's sends find
/// a window of a few hundred bytes and complete in parts.
struct Slow {
    s: TcpStream,
    chunk: usize,
    pause: Duration,
}

impl Read for Slow {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        std::thread::sleep(self.pause);
        let n = buf.len().min(self.chunk);
        self.s.read(&mut buf[..n])
    }
}

/// A connection with a small receive buffer (set before connect, so the window advertised is
/// small from the start): what the server sends piles up in its own socket, and its sends
/// complete in parts. (Smaller than 4 KiB, each response waits on the kernel's 200 ms window
/// probes.)
fn tiny_window(port: u16) -> TcpStream {
    use std::os::fd::FromRawFd;
    // SAFETY: a new socket owned here; setsockopt and connect get pointers to live values of
    // the sizes given; the fd is handed to a TcpStream that closes it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
        let size: libc::c_int = 4096;
        let rc = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &size as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "SO_RCVBUF: {}", io::Error::last_os_error());
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            &addr as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "connect: {}", io::Error::last_os_error());
        let s = TcpStream::from_raw_fd(fd);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }
}

/// Responses of every total around the 2 KiB copy bound (2,047, 2,048, 2,049 bytes among
/// them), one at a time and pipelined with HEAD, 304, 416 and 404 answers, to a client with a
/// tiny window that reads slowly: each arrives whole, exact, in order.
#[test]
fn small_responses_whole_through_a_tiny_window() {
    for_each_backend("small_responses_whole_through_a_tiny_window", |b| {
        let s = start(b);
        // One at a time: each response a send of its own (head and body).
        let stream = tiny_window(s.port);
        let mut w = stream.try_clone().unwrap();
        let mut r = Reader::new(Slow {
            s: stream,
            chunk: 300,
            pause: Duration::ZERO,
        });
        let mut totals = std::collections::BTreeSet::new();
        let mut etag = String::new();
        for n in SIZES {
            w.write_all(format!("GET /s{n}.bin HTTP/1.1\r\nHost: a.test\r\n\r\n").as_bytes())
                .unwrap();
            let resp = r.read_response(false).unwrap();
            assert_eq!(resp.status, 200, "[{b}] s{n}");
            assert!(resp.body == pattern(n, n as u8), "[{b}] s{n}: body differs");
            totals.insert(head_len(&resp) + n);
            if n == 1700 {
                etag = resp.must_header("ETag").to_string();
            }
        }
        for t in [2047, 2048, 2049] {
            assert!(
                totals.contains(&t),
                "[{b}] no response of {t} bytes: {:?}..{:?}",
                totals.first(),
                totals.last()
            );
        }
        // Asked one at a time but not read: each response a send of its own (head and body)
        // until the server's socket is full, then EAGAIN and coalesced batches. (The kernel
        // takes a small send whole or not at all here: partial sends of the copied piece are
        // the backend conformance test's, on a 4 KiB send buffer.)
        let stream = tiny_window(s.port);
        let mut w = stream.try_clone().unwrap();
        let asked: Vec<usize> = SIZES.rev().step_by(2).collect();
        for n in &asked {
            w.write_all(format!("GET /s{n}.bin HTTP/1.1\r\nHost: a.test\r\n\r\n").as_bytes())
                .unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut r = Reader::new(stream);
        for n in asked {
            let resp = r.read_response(false).unwrap();
            assert_eq!(resp.status, 200, "[{b}] unread s{n}");
            assert!(
                resp.body == pattern(n, n as u8),
                "[{b}] unread s{n}: body differs"
            );
        }
        // Pipelined, read late and slowly: the server's sends meet a full socket.
        let stream = tiny_window(s.port);
        let mut w = stream.try_clone().unwrap();
        let mut batch = Vec::new();
        let mut want = Vec::new();
        for (i, n) in SIZES.step_by(3).enumerate() {
            let (line, kind) = match i % 6 {
                0 => (format!("HEAD /s{n}.bin HTTP/1.1\r\n"), 'h'),
                1 => (
                    format!("GET /s1700.bin HTTP/1.1\r\nIf-None-Match: {etag}\r\n"),
                    '3',
                ),
                2 => (
                    format!("GET /s{n}.bin HTTP/1.1\r\nRange: bytes=9999-\r\n"),
                    '4',
                ),
                3 => (format!("GET /missing{n} HTTP/1.1\r\n"), 'n'),
                _ => (format!("GET /s{n}.bin HTTP/1.1\r\n"), 'g'),
            };
            batch.extend_from_slice(line.as_bytes());
            batch.extend_from_slice(b"Host: a.test\r\n\r\n");
            want.push((n, kind));
        }
        w.write_all(&batch).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let mut r = Reader::new(Slow {
            s: stream,
            chunk: 700,
            pause: Duration::from_micros(200),
        });
        for (n, kind) in want {
            let resp = r.read_response(kind == 'h').unwrap();
            let what = format!("[{b}] {kind} s{n}");
            match kind {
                'h' => {
                    assert_eq!(resp.status, 200, "{what}");
                    assert_eq!(resp.must_header("Content-Length"), n.to_string(), "{what}");
                    assert!(resp.body.is_empty(), "{what}");
                }
                '3' => assert_eq!(resp.status, 304, "{what}"),
                '4' => {
                    assert_eq!(resp.status, 416, "{what}");
                    assert_eq!(resp.must_header("Content-Range"), format!("bytes */{n}"));
                }
                'n' => assert_eq!(resp.status, 404, "{what}"),
                _ => {
                    assert_eq!(resp.status, 200, "{what}");
                    assert!(resp.body == pattern(n, n as u8), "{what}: body differs");
                }
            }
        }
    });
}

/// The `--debug` trace, moved out of the loop, still names each completion's connection and
/// request, and a task's completions by the task.
#[test]
fn debug_trace_names_completions() {
    for_each_backend("debug_trace_names_completions", |b| {
        let s = Server::start_opts(b, CONF, setup, &["--debug"], false);
        assert_eq!(get_host(s.port, "a.test", "/list/").status, 200, "[{b}]");
        assert_eq!(get_host(s.port, "a.test", "/page.html").text(), "<p>a</p>");
        let mut log = String::new();
        for _ in 0..50 {
            log = s.log();
            if log.contains("send →") && log.contains("list dir →") {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let sends: Vec<&str> = log.lines().filter(|l| l.contains(" send → Ok(")).collect();
        assert!(!sends.is_empty(), "[{b}] no send completion traced:\n{log}");
        assert!(
            sends
                .iter()
                .all(|l| l.contains(": send → ") && l.contains(" c") && l.contains(" conn#")),
            "[{b}] a send completion without its connection:\n{sends:?}"
        );
        let lists: Vec<&str> = log.lines().filter(|l| l.contains("list dir → ")).collect();
        assert!(
            !lists.is_empty(),
            "[{b}] no listing completion traced:\n{log}"
        );
        assert!(
            lists
                .iter()
                .all(|l| !l.contains("stale") && l.contains(" r1 ") && !l.contains("conn#")),
            "[{b}] a listing's completion not named by its request's task:\n{lists:?}"
        );
        assert!(
            log.contains("loop 0: accept → Ok("),
            "[{b}] accepts:\n{log}"
        );
    });
}
