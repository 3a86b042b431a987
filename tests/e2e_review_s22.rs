//! Hostile review of session 22's additions: io_uring's `Op::SendFile` splicing through pooled
//! pipes (resets, truncation, ranges, keep-alive reuse, descriptor pressure, SIGTERM), the kept
//! response heads of cached files, the worker's remembered server per (address, Host), and the
//! byte-scan rewrites (extension, containment, Host port). Each test attacks a real server, on
//! every backend.

mod common;

use common::*;
use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

const CONF: &str = "{BASE}
workers 1;
send_timeout 1s;
server {
    listen 127.0.0.1:{PORT};
    server_name a.test;
    root {DIR}/www;
    location /hdr/ { alias {DIR}/www/; add_header X-Hdr yes; expires 1h; }
}
server {
    listen 127.0.0.1:{PORT};
    server_name b.test;
    root {DIR}/wwwb;
}
server {
    listen 127.0.0.1:{PORT2};
    server_name b.test;
    root {DIR}/wwwc;
}
";

/// Bytes that differ at every offset of a 256-byte cycle and between files (`seed`): foreign
/// or shifted bytes never match.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(7) as u8 ^ seed)
        .collect()
}

const BIG: usize = (3 << 20) + 4097;

fn setup(dir: &Path) {
    fs::create_dir_all(dir.join("www")).unwrap();
    fs::create_dir_all(dir.join("wwwb")).unwrap();
    fs::create_dir_all(dir.join("wwwc")).unwrap();
    fs::write(dir.join("www/big.bin"), pattern(BIG, 1)).unwrap();
    fs::write(dir.join("www/big2.bin"), pattern(BIG, 2)).unwrap();
    write_file(dir, "www/small.txt", "small file");
    write_file(dir, "www/page.html", "<p>a</p>");
    write_file(dir, "wwwb/page.html", "<p>b</p>");
    write_file(dir, "wwwc/page.html", "<p>c</p>");
}

fn start(backend: &str) -> Server {
    Server::start(backend, CONF, setup)
}

/// A response's body must equal `want` exactly.
fn same(what: &str, got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("{what}: first wrong byte at {i}");
    }
}

/// Pipelined ranges at odd offsets (every splice round short of a pipeful), whole files, HEAD
/// and small files on one connection: each response's bytes exact, none leaking into the next.
#[test]
fn pipelined_ranges_and_whole_files_are_exact() {
    for_each_backend("pipelined_ranges_and_whole_files_are_exact", |b| {
        let s = start(b);
        let big = pattern(BIG, 1);
        let big2 = pattern(BIG, 2);
        let mut c = Conn::open(s.port);
        let reqs = "GET /big.bin HTTP/1.1\r\nHost: a.test\r\nRange: bytes=1-700000\r\n\r\n\
             GET /small.txt HTTP/1.1\r\nHost: a.test\r\n\r\n\
             GET /big2.bin HTTP/1.1\r\nHost: a.test\r\n\r\n\
             HEAD /big.bin HTTP/1.1\r\nHost: a.test\r\n\r\n\
             GET /big.bin HTTP/1.1\r\nHost: a.test\r\nRange: bytes=4095-\r\n\r\n\
             GET /small.txt HTTP/1.1\r\nHost: a.test\r\n\r\n";
        c.send(reqs.as_bytes());
        let r = c.read_response();
        assert_eq!(r.status, 206);
        same("range 1-700000", &r.body, &big[1..700_001]);
        let r = c.read_response();
        assert_eq!(r.text(), "small file");
        let r = c.read_response();
        assert_eq!(r.status, 200);
        same("big2", &r.body, &big2);
        let r = c.read_response_head(true);
        assert_eq!(r.status, 200);
        assert_eq!(r.must_header("Content-Length"), BIG.to_string());
        let r = c.read_response();
        assert_eq!(r.status, 206);
        same("range 4095-", &r.body, &big[4095..]);
        let r = c.read_response();
        assert_eq!(r.text(), "small file");
        // One-byte ranges (a one-byte splice round), the last byte, and HTTP/1.0 whole.
        c.send(
            b"GET /big.bin HTTP/1.1\r\nHost: a.test\r\nRange: bytes=0-0\r\n\r\n\
              GET /big.bin HTTP/1.1\r\nHost: a.test\r\nRange: bytes=-1\r\n\r\n",
        );
        assert_eq!(c.read_response().body, &big[..1]);
        assert_eq!(c.read_response().body, &big[BIG - 1..]);
        let r = request(s.port, b"GET /big.bin HTTP/1.0\r\n\r\n");
        same("HTTP/1.0 whole", &r.body, &big);
    });
}

/// Clients that reset or close while their large response is being spliced: the pipes they
/// leave holding bytes must not carry those bytes into anyone else's response.
#[test]
fn resets_mid_send_leave_no_foreign_bytes() {
    for_each_backend("resets_mid_send_leave_no_foreign_bytes", |b| {
        let s = start(b);
        let mut quitters = Vec::new();
        for i in 0..12 {
            let mut t = connect_with_timeout(s.port, Duration::from_secs(5));
            t.write_all(b"GET /big.bin HTTP/1.1\r\nHost: a.test\r\n\r\n")
                .unwrap();
            let mut first = vec![0u8; 1000 + i * 3000];
            t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            t.read_exact(&mut first).unwrap();
            quitters.push(t);
        }
        for (i, t) in quitters.into_iter().enumerate() {
            if i % 2 == 0 {
                reset_connection(t);
            } else {
                drop(t);
            }
        }
        let big2 = pattern(BIG, 2);
        for round in 0..3 {
            let mut c = Conn::open(s.port);
            c.send(b"GET /big2.bin HTTP/1.1\r\nHost: a.test\r\n\r\nGET /small.txt HTTP/1.1\r\nHost: a.test\r\n\r\n");
            let r = c.read_response();
            same(&format!("big2, round {round}"), &r.body, &big2);
            assert_eq!(c.read_response().text(), "small file");
        }
    });
}

/// A file cut short while it is being sent: the connection closes (the body is short, not
/// padded), promptly, and every byte that did arrive is the file's.
#[test]
fn file_truncated_mid_send_closes_the_connection() {
    for_each_backend("file_truncated_mid_send_closes_the_connection", |b| {
        let s = start(b);
        let len = 48 << 20;
        let data = pattern(len, 3);
        let path = s.dir.join("www/trunc.bin");
        fs::write(&path, &data).unwrap();
        let mut t = connect_with_timeout(s.port, Duration::from_secs(5));
        t.write_all(b"GET /trunc.bin HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .unwrap();
        t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = vec![0u8; 64 << 10];
        t.read_exact(&mut got).unwrap();
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(100 << 10)
            .unwrap();
        let started = Instant::now();
        let (rest, closed) = read_until_close(&mut t, Duration::from_secs(5));
        assert!(
            closed,
            "the connection stayed open ({:?})",
            started.elapsed()
        );
        got.extend_from_slice(&rest);
        let body_at = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let body = &got[body_at..];
        assert!(body.len() < len, "a full body from a truncated file");
        // What was in flight when the file was cut is the kernel's: the pages spliced (or
        // sendfile'd) by reference read as zeros once truncated, on every backend alike. Before
        // the cut point every byte is the file's; after it, the file's or zero, never other.
        let cut = body.len().min(100 << 10);
        same("the bytes before the cut", &body[..cut], &data[..cut]);
        let odd = body[cut..]
            .iter()
            .zip(&data[cut..])
            .position(|(&a, &b)| a != b && a != 0);
        assert_eq!(
            odd, None,
            "a byte neither the file's nor zero after the cut"
        );
        // The server still serves.
        assert_eq!(get(s.port, "/small.txt").text(), "small file");
    });
}

/// A stalled reader of a large file and SIGTERM: the server gives up on it (send_timeout 1s)
/// and exits; it does not hang on the splice.
#[test]
fn sigterm_with_a_stalled_download_exits() {
    for_each_backend("sigterm_with_a_stalled_download_exits", |b| {
        let mut s = start(b);
        fs::write(s.dir.join("www/huge.bin"), pattern(64 << 20, 4)).unwrap();
        let mut stalled = Vec::new();
        for _ in 0..3 {
            let mut t = connect_with_timeout(s.port, Duration::from_secs(5));
            t.write_all(b"GET /huge.bin HTTP/1.1\r\nHost: a.test\r\n\r\n")
                .unwrap();
            let mut first = [0u8; 100];
            t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            t.read_exact(&mut first).unwrap();
            stalled.push(t);
        }
        std::thread::sleep(Duration::from_millis(100));
        s.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(8);
        while s.alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!s.alive(), "still running 8 s after SIGTERM\n{}", s.log());
        drop(stalled);
    });
}

/// Descriptor pressure: with a low RLIMIT_NOFILE, stalled large downloads (each holding its
/// response in the kernel) must leave the server able to accept and answer a small request.
#[test]
fn stalled_downloads_leave_descriptors_for_new_clients() {
    for_each_backend("stalled_downloads_leave_descriptors_for_new_clients", |b| {
        let nofile = 64;
        let s = Server::start_with_nofile(
            b,
            "{BASE}\nworkers 1;\nserver { listen 127.0.0.1:{PORT}; root {DIR}/www; }\n",
            |d| {
                setup(d);
                fs::write(d.join("www/huge.bin"), pattern(64 << 20, 5)).unwrap();
            },
            nofile,
        );
        let pid = s.pid().unwrap();
        let base = fd_count(pid).unwrap();
        // Each stalled download costs its socket (the file is shared through the open-file
        // cache): leave a dozen descriptors spare for them.
        let n = (nofile as usize - base - 12).min(40);
        let mut stalled = Vec::new();
        for _ in 0..n {
            let mut t = connect_with_timeout(s.port, Duration::from_secs(5));
            t.write_all(b"GET /huge.bin HTTP/1.1\r\nHost: a\r\n\r\n")
                .unwrap();
            let mut first = [0u8; 100];
            t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            t.read_exact(&mut first).unwrap();
            stalled.push(t);
        }
        let during = fd_count(pid).unwrap();
        eprintln!("{b}: {base} fds at start, {during} with {n} stalled downloads");
        let mut t = connect_with_timeout(s.port, Duration::from_secs(5));
        t.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        t.write_all(b"GET /small.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .unwrap();
        let (got, _) = read_until_close(&mut t, Duration::from_secs(3));
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("HTTP/1.1 200") && text.ends_with("small file"),
            "{b}: {base} fds at start, {during} with {n} stalled downloads; a new client got {text:?}\n{}",
            s.log()
        );
        drop(stalled);
    });
}

const HEADS: &str = "{BASE}
workers 1;
keepalive_requests 6;
server {
    listen 127.0.0.1:{PORT};
    root {DIR}/www;
    location /hdr/ { alias {DIR}/www/; add_header X-Hdr yes; expires 1h; }
    location ~ ^/named$ { alias {DIR}/www/page.html; }
    location /up/ { root {DIR}//www/; allow_methods GET HEAD PUT; upload_store {DIR}/www/./up/; }
}
";

/// The kept head of a cached file, attacked with everything that changes a head but is not
/// the file: HEAD, another location's add_header/expires and another name's type, the last
/// request of keepalive_requests, HTTP/1.0 with and without keep-alive, and a PUT through the
/// server between two GETs — all within one second, pipelined.
#[test]
fn kept_heads_follow_what_the_head_depends_on() {
    for_each_backend("kept_heads_follow_what_the_head_depends_on", |b| {
        let s = Server::start(b, HEADS, |d| {
            setup(d);
            fs::create_dir_all(d.join("www/up")).unwrap();
            write_file(d, "www/up/f.txt", "old");
        });
        let mut c = Conn::open(s.port);
        c.send(
            b"GET /page.html HTTP/1.1\r\nHost: a\r\n\r\n\
              HEAD /page.html HTTP/1.1\r\nHost: a\r\n\r\n\
              GET /hdr/page.html HTTP/1.1\r\nHost: a\r\n\r\n\
              GET /named HTTP/1.1\r\nHost: a\r\n\r\n\
              GET /page.html HTTP/1.1\r\nHost: a\r\n\r\n\
              GET /page.html HTTP/1.1\r\nHost: a\r\n\r\n",
        );
        let r = c.read_response();
        assert_eq!((r.status, r.text().as_str()), (200, "<p>a</p>"));
        assert_eq!(r.header("Connection"), None);
        assert_eq!(r.must_header("Content-Type"), "text/html");
        let h = c.read_response_head(true);
        assert_eq!(h.must_header("Content-Length"), "8");
        assert_eq!(h.must_header("ETag"), r.must_header("ETag"));
        let r = c.read_response();
        assert_eq!(r.header("X-Hdr"), Some("yes"), "{}", r.dump());
        assert!(r.header("Expires").is_some(), "{}", r.dump());
        let r = c.read_response();
        assert_eq!(r.text(), "<p>a</p>");
        assert_eq!(r.must_header("Content-Type"), "application/octet-stream");
        let r = c.read_response();
        assert_eq!(r.header("X-Hdr"), None, "{}", r.dump());
        assert_eq!(r.header("Expires"), None, "{}", r.dump());
        assert_eq!(r.header("Connection"), None);
        let r = c.read_response();
        assert_eq!(r.text(), "<p>a</p>");
        assert_eq!(
            r.header("Connection"),
            Some("close"),
            "the 6th of keepalive_requests 6"
        );
        assert!(c.is_closed());
        // HTTP/1.0, plain and with keep-alive, then 1.1 again.
        let r = request(s.port, b"GET /page.html HTTP/1.0\r\n\r\n");
        assert_eq!(r.header("Connection"), Some("close"), "{}", r.dump());
        let mut c = Conn::open(s.port);
        c.send(
            b"GET /page.html HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
              GET /page.html HTTP/1.1\r\nHost: a\r\n\r\n",
        );
        let r = c.read_response();
        assert_eq!(r.header("Connection"), Some("keep-alive"), "{}", r.dump());
        let r = c.read_response();
        assert_eq!(r.header("Connection"), None, "{}", r.dump());
        // A PUT through the server between two GETs of the same second.
        let mut c = Conn::open(s.port);
        c.send(
            b"GET /up/f.txt HTTP/1.1\r\nHost: a\r\n\r\n\
              PUT /up/f.txt HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nnewer\
              GET /up/f.txt HTTP/1.1\r\nHost: a\r\n\r\n",
        );
        let first = c.read_response();
        assert_eq!(first.text(), "old");
        let put = c.read_response();
        assert!(
            put.status == 200 || put.status == 201 || put.status == 204,
            "{}",
            put.dump()
        );
        let r = c.read_response();
        assert_eq!(r.text(), "newer");
        assert_eq!(r.must_header("Content-Length"), "5");
        assert_ne!(r.must_header("ETag"), first.must_header("ETag"));
    });
}

/// The remembered (address, Host) → server, attacked with Host spellings that name the same
/// server or another, absolute-form targets, no Host at all, and the same Host on another
/// address, interleaved so each differs from the last.
#[test]
fn remembered_server_follows_host_spellings_and_addresses() {
    for_each_backend(
        "remembered_server_follows_host_spellings_and_addresses",
        |b| {
            let s = start(b);
            let mut c = Conn::open(s.port);
            let cases: [(&str, &str, &str); 9] = [
                ("/page.html", "a.test", "a"),
                ("/page.html", "B.TEST.", "b"),
                ("/page.html", "b.test:8080", "b"),
                ("/page.html", "a.test", "a"),
                ("/page.html", "[::1]", "a"),
                ("/page.html", "b.test", "b"),
                ("http://b.test/page.html", "a.test", "b"),
                ("http://a.test/page.html", "b.test", "a"),
                ("/page.html", "b.test", "b"),
            ];
            let mut reqs = String::new();
            for (target, host, _) in cases {
                reqs.push_str(&format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n"));
            }
            c.send(reqs.as_bytes());
            let mut c2 = Conn::open(s.port2);
            for (target, host, want) in cases {
                let r = c.read_response();
                assert_eq!(r.text(), format!("<p>{want}</p>"), "{target} Host {host}");
                // The same Host on the other address: its own server.
                c2.send(format!("GET /page.html HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
                let r = c2.read_response();
                assert_eq!(r.text(), "<p>c</p>", "port2, Host {host}");
            }
            c.send(b"GET /page.html HTTP/1.0\r\n\r\n");
            assert_eq!(
                c.read_response().text(),
                "<p>a</p>",
                "HTTP/1.0 without Host"
            );
        },
    );
}

/// Many concurrent large downloads, read slowly at first, while the pipe cap (a low
/// RLIMIT_NOFILE) makes some run spliced and the rest as sendfile(2): every body exact, and
/// the small response pipelined behind each starts right after its last byte.
#[test]
fn concurrent_slow_downloads_are_exact() {
    for_each_backend("concurrent_slow_downloads_are_exact", |b| {
        let s = Server::start_with_nofile(
            b,
            "{BASE}\nworkers 1;\nserver { listen 127.0.0.1:{PORT}; root {DIR}/www; }\n",
            setup,
            128,
        );
        let port = s.port;
        let clients: Vec<_> = (0..20)
            .map(|i| {
                std::thread::spawn(move || {
                    let (name, seed) = if i % 2 == 0 { ("big", 1) } else { ("big2", 2) };
                    let mut t = connect_with_timeout(port, Duration::from_secs(5));
                    t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    let range = if i % 3 == 0 {
                        "Range: bytes=12345-\r\n"
                    } else {
                        ""
                    };
                    let req = format!(
                        "GET /{name}.bin HTTP/1.1\r\nHost: a\r\n{range}\r\n\
                         GET /small.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                    );
                    t.write_all(req.as_bytes()).unwrap();
                    let mut got = Vec::new();
                    let mut chunk = [0u8; 2048];
                    for _ in 0..30 {
                        let n = t.read(&mut chunk).unwrap();
                        got.extend_from_slice(&chunk[..n]);
                        std::thread::sleep(Duration::from_millis(3));
                    }
                    t.read_to_end(&mut got).unwrap();
                    let at = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    let from = if range.is_empty() { 0 } else { 12345 };
                    let want = pattern(BIG, seed);
                    let (body, rest) = got[at..].split_at((BIG - from).min(got.len() - at));
                    same(&format!("client {i}"), body, &want[from..]);
                    // The pipelined small response follows the large one's last byte.
                    let r = parse_responses(rest);
                    assert_eq!(r.len(), 1, "client {i}: after the body");
                    assert_eq!(r[0].text(), "small file", "client {i}");
                })
            })
            .collect();
        for c in clients {
            c.join().expect("a client failed");
        }
    });
}

/// A reload while a large response is being spliced, and its file replaced: the open-file
/// cache is emptied under it (its descriptor must stay the response's until it is sent), the
/// body arrives exact — the old file's — and the next request gets the new file.
#[test]
fn reload_mid_download_keeps_its_bytes() {
    for_each_backend("reload_mid_download_keeps_its_bytes", |b| {
        let s = start(b);
        let len = 24 << 20;
        let data = pattern(len, 6);
        fs::write(s.dir.join("www/mid.bin"), &data).unwrap();
        let mut t = connect_with_timeout(s.port, Duration::from_secs(5));
        t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        t.write_all(b"GET /mid.bin HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .unwrap();
        let mut rd = Reader::new(t.try_clone().unwrap());
        let mut sum = Fnv64::default();
        let mut first = true;
        let (r, n) = rd
            .read_response_streaming(|d| {
                if first {
                    first = false;
                    s.reload();
                    // And the file replaced under the response: it is the old file's to finish.
                    let tmp = s.dir.join("www/mid.new");
                    fs::write(&tmp, pattern(len / 2, 7)).unwrap();
                    fs::rename(&tmp, s.dir.join("www/mid.bin")).unwrap();
                    // Files opened after the reload take the numbers the cache gave back.
                    for _ in 0..4 {
                        assert_eq!(get(s.port, "/big2.bin").body.len(), BIG);
                    }
                }
                sum.update(d);
            })
            .unwrap();
        assert_eq!((r.status, n), (200, len as u64));
        let mut want = Fnv64::default();
        want.update(&data);
        assert_eq!(sum, want, "the body is not the file's");
        t.write_all(b"GET /small.txt HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .unwrap();
        assert_eq!(rd.read_response(false).unwrap().text(), "small file");
        t.write_all(b"GET /mid.bin HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .unwrap();
        let r = rd.read_response(false).unwrap();
        same("the new file", &r.body, &pattern(len / 2, 7));
    });
}
