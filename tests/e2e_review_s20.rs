//! Hostile review of session 20's additions (TLS through the completion backends, uploads
//! through backend path ops). Each test attacks a real server, on every backend.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

fn make_cert(dir: &Path, stem: &str, names: &[&str]) -> CertificateDer<'static> {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let ck = rcgen::generate_simple_self_signed(names).expect("rcgen");
    write_file(dir, &format!("{stem}.crt"), ck.cert.pem());
    write_file(dir, &format!("{stem}.key"), ck.signing_key.serialize_pem());
    ck.cert.der().clone()
}

fn client_config(trust: &CertificateDer<'static>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(trust.clone()).expect("trust anchor");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(cfg)
}

const CONF: &str = "{BASE}
workers 1;
client_header_timeout 2s;
server {
    listen 127.0.0.1:{PORT} ssl;
    server_name a.test;
    ssl_certificate a.crt;
    ssl_certificate_key a.key;
    root www;
    location / { }
}
";

fn big() -> Vec<u8> {
    (0..1u32 << 20).map(|i| (i * 7 + i / 251) as u8).collect()
}

struct Site {
    s: Server,
    cfg: Arc<ClientConfig>,
}

fn start(backend: &str) -> Site {
    let mut cert = None;
    let s = Server::start(backend, CONF, |dir| {
        cert = Some(make_cert(dir, "a", &["a.test"]));
        write_file(dir, "www/index.html", "site a\n");
        write_file(dir, "www/big.bin", big());
    });
    Site {
        s,
        cfg: client_config(&cert.unwrap()),
    }
}

type Stream = StreamOwned<ClientConnection, TcpStream>;

fn tcp(port: u16) -> TcpStream {
    let t = TcpStream::connect(("127.0.0.1", port)).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    t.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    t.set_nodelay(true).unwrap();
    t
}

fn client(cfg: &Arc<ClientConfig>, sni: &str) -> ClientConnection {
    ClientConnection::new(cfg.clone(), ServerName::try_from(sni.to_string()).unwrap()).unwrap()
}

fn handshake(port: u16, cfg: &Arc<ClientConfig>) -> Stream {
    let mut s = StreamOwned::new(client(cfg, "a.test"), tcp(port));
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).expect("handshake");
    }
    s
}

/// Reads one response (Content-Length framed) from a TLS stream.
fn response(s: &mut Stream) -> Response {
    responses(s, 1).remove(0)
}

/// Reads `n` responses (Content-Length framed, nothing after them) from a TLS stream.
fn responses(s: &mut Stream, n: usize) -> Vec<Response> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        let mut at = 0;
        let mut count = 0;
        while let Some(h) = buf[at..].windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[at..at + h]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() < at + h + 4 + len {
                break;
            }
            at += h + 4 + len;
            count += 1;
        }
        if count >= n {
            return parse_responses(&buf[..at]);
        }
        let got = s.read(&mut chunk).expect("TLS read");
        assert!(got > 0, "EOF after {} bytes", buf.len());
        buf.extend_from_slice(&chunk[..got]);
    }
}

/// The first flight of a client (its ClientHello records), as bytes.
fn client_hello(c: &mut ClientConnection) -> Vec<u8> {
    let mut out = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut out).unwrap();
    }
    out
}

/// A ClientHello that arrives one byte per TCP segment, then a request whose every byte is a
/// TLS record of its own, two requests pipelined: both are answered.
#[test]
fn tls_byte_by_byte_hello_and_one_record_per_request_byte() {
    for_each_backend(
        "tls_byte_by_byte_hello_and_one_record_per_request_byte",
        |b| {
            let site = start(b);
            for drip in [true, false] {
                let mut conn = client(&site.cfg, "a.test");
                let hello = client_hello(&mut conn);
                let mut t = tcp(site.s.port);
                let step = if drip { 1 } else { hello.len() };
                for byte in hello.chunks(step) {
                    t.write_all(byte).unwrap();
                    std::thread::sleep(Duration::from_micros(200));
                }
                let mut s = StreamOwned::new(conn, t);
                while s.conn.is_handshaking() {
                    s.conn
                        .complete_io(&mut s.sock)
                        .expect("handshake after a dripped hello");
                }
                let two = b"GET /index.html HTTP/1.1\r\nHost: a.test\r\n\r\nGET /big.bin HTTP/1.1\r\nHost: a.test\r\n\r\n";
                let rstep = if drip { 1 } else { two.len() };
                for byte in two.chunks(rstep) {
                    s.write_all(byte).unwrap();
                    s.flush().unwrap();
                }
                let rs = responses(&mut s, 2);
                assert_eq!(
                    (rs[0].status, rs[0].body.as_slice()),
                    (200, &b"site a\n"[..])
                );
                assert!(
                    rs[1].status == 200 && rs[1].body == big(),
                    "{}",
                    rs[1].status
                );
            }
        },
    );
}

/// A client that pipelines many requests for a 1 MiB file and never reads: the server's
/// memory stays bounded (back-pressure holds through the TLS layer).
#[test]
fn tls_client_that_never_reads_keeps_server_memory_bounded() {
    for_each_backend(
        "tls_client_that_never_reads_keeps_server_memory_bounded",
        |b| {
            let site = start(b);
            let pid = site.s.pid().unwrap();
            let mut s = handshake(site.s.port, &site.cfg);
            // Warm up: one full response, so buffers and the file cache exist.
            s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: a.test\r\n\r\n")
                .unwrap();
            s.flush().unwrap();
            assert_eq!(response(&mut s).body.len(), 1 << 20);
            let base = vm_rss_kib(pid).unwrap();
            s.sock
                .set_write_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let mut sent = 0;
            for _ in 0..200 {
                if s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: a.test\r\n\r\n")
                    .is_err()
                    || s.flush().is_err()
                {
                    break;
                }
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(1500));
            let peak = vm_rss_kib(pid).unwrap();
            eprintln!("never reads: {sent} GETs pipelined; VmRSS {base} -> {peak} KiB");
            assert!(
                peak < base + 24 * 1024,
                "VmRSS {base} KiB -> {peak} KiB with {sent} pipelined 1 MiB GETs unread"
            );
            // The connection still works once the client reads.
            s.sock
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let r = response(&mut s);
            assert!(r.status == 200 && r.body == big());
        },
    );
}

/// TLS 1.3 KeyUpdate: a client that updates its keys (asking for the server's update too)
/// between requests keeps being answered; a flood of updates with no data between them
/// closes that connection only.
#[test]
fn tls_key_updates_between_requests_and_a_flood() {
    for_each_backend("tls_key_updates_between_requests_and_a_flood", |b| {
        let site = start(b);
        let mut s = handshake(site.s.port, &site.cfg);
        assert_eq!(
            s.conn.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        for _ in 0..20 {
            s.conn.refresh_traffic_keys().unwrap();
            s.write_all(b"GET /index.html HTTP/1.1\r\nHost: a.test\r\n\r\n")
                .unwrap();
            s.flush().unwrap();
            let r = response(&mut s);
            assert_eq!(r.status, 200);
        }
        // A flood: updates and nothing else.
        let mut f = handshake(site.s.port, &site.cfg);
        for _ in 0..200 {
            if f.conn.refresh_traffic_keys().is_err() {
                break;
            }
            while f.conn.wants_write() {
                if f.conn.write_tls(&mut f.sock).is_err() {
                    break;
                }
            }
        }
        let mut sink = [0u8; 4096];
        let t0 = Instant::now();
        let closed = loop {
            match f.sock.read(&mut sink) {
                Ok(0) | Err(_) => break true,
                Ok(_) if t0.elapsed() > Duration::from_secs(5) => break false,
                Ok(_) => {}
            }
        };
        assert!(closed, "a KeyUpdate flood left the connection open");
        let mut g = handshake(site.s.port, &site.cfg);
        g.write_all(b"GET /index.html HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .unwrap();
        g.flush().unwrap();
        assert_eq!(response(&mut g).status, 200);
    });
}

/// close_notify right after a complete request: the answer still comes (like a FIN after a
/// request on plain HTTP); close_notify mid-head or mid-handshake: the connection closes.
#[test]
fn tls_close_notify_at_each_phase() {
    for_each_backend("tls_close_notify_at_each_phase", |b| {
        let site = start(b);
        // After a complete request.
        let mut s = handshake(site.s.port, &site.cfg);
        s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .unwrap();
        s.conn.send_close_notify();
        s.flush().unwrap();
        s.sock.shutdown(std::net::Shutdown::Write).unwrap();
        let r = response(&mut s);
        assert!(r.status == 200 && r.body == big());
        // Mid-head.
        let mut s = handshake(site.s.port, &site.cfg);
        s.write_all(b"GET /index.html HTTP/1.1\r\nHo").unwrap();
        s.conn.send_close_notify();
        s.flush().unwrap();
        let (bytes, closed) = read_until_close(&mut s.sock, Duration::from_secs(5));
        assert!(
            closed,
            "open after close_notify mid-head ({} bytes)",
            bytes.len()
        );
        // Mid-handshake: a ClientHello, then the TCP write side closed.
        let mut c = client(&site.cfg, "a.test");
        let hello = client_hello(&mut c);
        let mut t = tcp(site.s.port);
        t.write_all(&hello).unwrap();
        t.shutdown(std::net::Shutdown::Write).unwrap();
        let (_, closed) = read_until_close(&mut t, Duration::from_secs(5));
        assert!(closed, "open after a half-closed handshake");
    });
}

/// 1000 handshakes abandoned mid-way (half a ClientHello, or a whole one whose answer is
/// never read): once the clients are gone the server's descriptors return to where they were.
#[test]
fn tls_abandoned_handshakes_release_their_descriptors() {
    for_each_backend("tls_abandoned_handshakes_release_their_descriptors", |b| {
        raise_fd_limit();
        let site = start(b);
        let pid = site.s.pid().unwrap();
        let mut warm = handshake(site.s.port, &site.cfg);
        warm.write_all(b"GET /index.html HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .unwrap();
        warm.flush().unwrap();
        assert_eq!(response(&mut warm).status, 200);
        drop(warm);
        std::thread::sleep(Duration::from_millis(300));
        let fds0 = fd_count(pid).unwrap();
        let rss0 = vm_rss_kib(pid).unwrap();
        let hello = client_hello(&mut client(&site.cfg, "a.test"));
        let mut held = Vec::new();
        for i in 0..1000 {
            let Ok(mut t) = TcpStream::connect(("127.0.0.1", site.s.port)) else {
                break;
            };
            let part = if i % 2 == 0 {
                &hello[..hello.len() / 2]
            } else {
                &hello[..]
            };
            let _ = t.write_all(part);
            held.push(t);
        }
        assert!(held.len() >= 900, "only {} connections", held.len());
        std::thread::sleep(Duration::from_millis(500));
        let rss_mid = vm_rss_kib(pid).unwrap();
        let fds_mid = fd_count(pid).unwrap();
        assert!(
            fds_mid > fds0 + held.len() / 2,
            "the server held {fds_mid} fds with {} clients",
            held.len()
        );
        drop(held);
        let t0 = Instant::now();
        let mut fds = fd_count(pid).unwrap();
        while fds > fds0 && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(50));
            fds = fd_count(pid).unwrap();
        }
        let rss1 = vm_rss_kib(pid).unwrap();
        eprintln!(
            "abandoned handshakes: fds {fds0} -> {fds}; VmRSS {rss0} -> {rss_mid} -> {rss1} KiB"
        );
        assert!(
            fds <= fds0,
            "descriptors {fds0} -> {fds} after the clients left"
        );
        assert!(rss1 < rss0 + 32 * 1024, "VmRSS {rss0} -> {rss1} KiB");
        let mut g = handshake(site.s.port, &site.cfg);
        g.write_all(b"GET /index.html HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .unwrap();
        g.flush().unwrap();
        assert_eq!(response(&mut g).status, 200);
    });
}

/// SNI with odd names: a 253-byte name, a trailing dot (the client strips it or not), and
/// bytes that are no host name (non-ASCII patched into a real ClientHello). Each gets the
/// default certificate or an alert; none takes the server down.
#[test]
fn tls_odd_sni_names() {
    for_each_backend("tls_odd_sni_names", |b| {
        let site = start(b);
        let long = format!("{}.test", vec!["a".repeat(60); 4].join("."));
        assert!(long.len() > 240);
        for name in [long.as_str(), "a.test.", "A.TEST"] {
            // Verification would fail for other names; only the server's survival matters.
            let mut s = StreamOwned::new(client(&site.cfg, name), tcp(site.s.port));
            let mut ok = true;
            while s.conn.is_handshaking() {
                if s.conn.complete_io(&mut s.sock).is_err() {
                    ok = false;
                    break;
                }
            }
            if name != long.as_str() {
                assert!(ok, "handshake with SNI {name:?} failed");
                s.write_all(b"GET /index.html HTTP/1.1\r\nHost: a.test\r\n\r\n")
                    .unwrap();
                s.flush().unwrap();
                assert_eq!(response(&mut s).status, 200, "SNI {name:?}");
            }
        }
        // Non-ASCII bytes in place of a name of the same length.
        let mut hello = client_hello(&mut client(&site.cfg, "zzzzzzzz.test"));
        let at = hello
            .windows(13)
            .position(|w| w == b"zzzzzzzz.test")
            .expect("SNI in the hello");
        for (i, x) in hello[at..at + 8].iter_mut().enumerate() {
            *x = [0xff, 0xc3, 0xa9, 0x00, 0x80, 0x2f, 0x5c, 0x7f][i];
        }
        let (bytes, closed) = exchange(site.s.port, &hello, Duration::from_secs(5));
        assert!(!bytes.starts_with(b"HTTP/"));
        eprintln!("non-ASCII SNI: {} bytes back, closed {closed}", bytes.len());
        let mut g = handshake(site.s.port, &site.cfg);
        g.write_all(b"GET /index.html HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .unwrap();
        g.flush().unwrap();
        assert_eq!(response(&mut g).status, 200);
        assert!(site.s.log().lines().all(|l| !l.contains("panic")));
    });
}

/// A stream of many small records (each an empty-ish application data record) ahead of a
/// request, all in one burst: the request behind them is still answered.
#[test]
fn tls_thousands_of_tiny_records_then_a_request() {
    for_each_backend("tls_thousands_of_tiny_records_then_a_request", |b| {
        let site = start(b);
        let mut s = handshake(site.s.port, &site.cfg);
        // Collect 6000 one-byte records of a request's leading blank lines... a header of
        // spaces is not HTTP, so use a long header value one byte per record instead.
        let mut wire = Vec::new();
        let head = format!(
            "GET /index.html HTTP/1.1\r\nHost: a.test\r\nX-Pad: {}\r\n\r\n",
            "p".repeat(6000)
        );
        for byte in head.as_bytes() {
            s.conn
                .writer()
                .write_all(std::slice::from_ref(byte))
                .unwrap();
            while s.conn.wants_write() {
                s.conn.write_tls(&mut wire).unwrap();
            }
        }
        s.sock.write_all(&wire).unwrap();
        let r = response(&mut s);
        assert_eq!(r.status, 200, "{}", r.dump());
    });
}

const UP_CONF: &str = "{BASE}
workers 1;
client_body_timeout 1s;
server {
    listen 127.0.0.1:{PORT};
    root www;
    location / { }
    location /uploads/ {
        allow_methods GET HEAD POST PUT DELETE;
        upload_store www/uploads;
        client_max_body_size 10m;
    }
    location /small/ {
        allow_methods POST PUT;
        upload_store www/small;
        client_max_body_size 20k;
    }
}
";

const BOUNDARY: &str = "rv20-boundary";

fn up_start(backend: &str) -> Server {
    Server::start(backend, UP_CONF, |dir| {
        std::fs::create_dir_all(dir.join("www/uploads")).unwrap();
        std::fs::create_dir_all(dir.join("www/small")).unwrap();
        write_file(dir, "www/index.html", "index");
    })
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn multipart_req(parts: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (f, data) in parts {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"f\"; filename=\"{f}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    let mut req = format!(
        "POST /uploads/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    req
}

fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if t0.elapsed() > within {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A multipart upload of many parts whose client resets the connection at a moment that
/// sweeps from mid-body to the final renames: each upload lands whole (every part) or not at
/// all, and no temp file stays.
#[test]
fn multipart_client_leaving_at_every_moment_lands_all_or_nothing() {
    for_each_backend(
        "multipart_client_leaving_at_every_moment_lands_all_or_nothing",
        |b| {
            let s = up_start(b);
            let dir = s.dir.join("www/uploads");
            let rounds = 40;
            let parts = 24;
            for round in 0..rounds {
                let req = multipart_req(
                    &(0..parts)
                        .map(|i| {
                            (
                                format!("r{round}-p{i}.bin"),
                                vec![b'a' + (i % 26) as u8; 3000],
                            )
                        })
                        .collect::<Vec<_>>(),
                );
                let mut c = connect_with_timeout(s.port, Duration::from_secs(5));
                // Cut at a point that sweeps the body, then at the end (renames under way).
                let cut = if round < rounds / 2 {
                    req.len() * (round + 1) / (rounds / 2 + 1)
                } else {
                    req.len()
                };
                let _ = c.write_all(&req[..cut]);
                if round >= rounds / 2 {
                    std::thread::sleep(Duration::from_micros(((round - rounds / 2) * 150) as u64));
                }
                reset_connection(c);
            }
            let settled = wait_until(Duration::from_secs(5), || {
                names(&dir).iter().all(|n| !n.starts_with(".upload-"))
            });
            let left = names(&dir);
            assert!(settled, "temp files left: {left:?}");
            for round in 0..rounds {
                let n = left
                    .iter()
                    .filter(|f| f.starts_with(&format!("r{round}-")))
                    .count();
                assert!(
                    n == 0 || n == parts,
                    "round {round}: {n} of {parts} parts stayed after the client left: {left:?}"
                );
            }
            assert_eq!(get(s.port, "/index.html").text(), "index");
        },
    );
}

/// Many parts with one file name: each is saved under its own name, byte exact.
#[test]
fn multipart_many_parts_with_one_name_all_saved() {
    for_each_backend("multipart_many_parts_with_one_name_all_saved", |b| {
        let s = up_start(b);
        let dir = s.dir.join("www/uploads");
        let parts: Vec<(String, Vec<u8>)> = (0..30)
            .map(|i| ("same.bin".to_string(), format!("part {i}\n").into_bytes()))
            .collect();
        let r = request(s.port, &multipart_req(&parts));
        assert_eq!(r.status, 201, "{}", r.dump());
        let left = names(&dir);
        assert_eq!(left.len(), 30, "{left:?}");
        let mut bodies: Vec<String> = left
            .iter()
            .map(|n| std::fs::read_to_string(dir.join(n)).unwrap())
            .collect();
        bodies.sort();
        let mut want: Vec<String> = (0..30).map(|i| format!("part {i}\n")).collect();
        want.sort();
        assert_eq!(bodies, want);
    });
}

/// PUT racing DELETE on one name from several clients: every answer is a success or a 404,
/// the file at the end is absent or one PUT's body whole, and no temp file stays.
#[test]
fn put_racing_delete_on_one_name() {
    for_each_backend("put_racing_delete_on_one_name", |b| {
        let s = up_start(b);
        let dir = s.dir.join("www/uploads");
        let port = s.port;
        let mut threads = Vec::new();
        for t in 0..4u8 {
            threads.push(std::thread::spawn(move || {
                let mut statuses = Vec::new();
                for i in 0..40 {
                    let r = if (t + i) % 2 == 0 {
                        let body = vec![b'A' + t; 100_000 + t as usize];
                        let mut req = format!(
                            "PUT /uploads/race.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                             Content-Length: {}\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        req.extend_from_slice(&body);
                        request(port, &req)
                    } else {
                        request(
                            port,
                            b"DELETE /uploads/race.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                        )
                    };
                    statuses.push(r.status);
                }
                statuses
            }));
        }
        for t in threads {
            for st in t.join().unwrap() {
                assert!(matches!(st, 201 | 204 | 404), "status {st}");
            }
        }
        let left = names(&dir);
        assert!(left.iter().all(|n| n == "race.bin"), "{left:?}");
        if !left.is_empty() {
            let body = std::fs::read(dir.join("race.bin")).unwrap();
            let t = body[0] - b'A';
            assert_eq!(body, vec![b'A' + t; 100_000 + t as usize]);
        }
    });
}

/// Raw uploads whose client resets at a moment that sweeps from right after the head (the
/// temp file's create in flight) to after the whole body (the rename in flight): a POST's file
/// lands whole or not at all, a PUT's file is absent or whole, and no temp file stays.
#[test]
fn raw_upload_client_leaving_at_every_moment() {
    for_each_backend("raw_upload_client_leaving_at_every_moment", |b| {
        let s = up_start(b);
        let dir = s.dir.join("www/uploads");
        let body = vec![b'z'; 300_000];
        for round in 0..40usize {
            let head = if round % 2 == 0 {
                format!(
                    "PUT /uploads/put{round}.bin HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
            } else {
                format!(
                    "POST /uploads/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n\
                     Content-Length: {}\r\n\r\n",
                    body.len()
                )
            };
            let mut c = connect_with_timeout(s.port, Duration::from_secs(5));
            let _ = c.write_all(head.as_bytes());
            let cut = [0, 1, 1000, 150_000, body.len()][round % 5];
            let _ = c.write_all(&body[..cut]);
            if cut == body.len() {
                std::thread::sleep(Duration::from_micros(100 * (round % 7) as u64));
            }
            reset_connection(c);
        }
        let settled = wait_until(Duration::from_secs(5), || {
            names(&dir).iter().all(|n| !n.starts_with(".upload-"))
        });
        let left = names(&dir);
        assert!(settled, "temp files left: {left:?}");
        for n in &left {
            let len = std::fs::metadata(dir.join(n)).unwrap().len();
            assert_eq!(len, body.len() as u64, "{n} is partial: {left:?}");
        }
    });
}

/// A chunked multipart upload that passes client_max_body_size after some parts were
/// written: the 413 comes only once its files are gone (nothing left when it is read).
#[test]
fn failed_multipart_answers_after_its_files_are_removed() {
    for_each_backend(
        "failed_multipart_answers_after_its_files_are_removed",
        |b| {
            let s = up_start(b);
            let dir = s.dir.join("www/small");
            for round in 0..30 {
                let req = multipart_req(
                    &(0..12)
                        .map(|i| (format!("s{round}-{i}.bin"), vec![b'q'; 3000]))
                        .collect::<Vec<_>>(),
                );
                let at = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                let head = String::from_utf8_lossy(&req[..at])
                    .replace("POST /uploads/", "POST /small/")
                    .replace(
                        "Content-Length",
                        "Transfer-Encoding: chunked\r\nX-Old-Length",
                    );
                let mut out = head.into_bytes();
                for piece in req[at..].chunks(2500) {
                    out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                    out.extend_from_slice(piece);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
                let mut c = connect_with_timeout(s.port, Duration::from_secs(5));
                let _ = c.write_all(&out);
                let (bytes, _) = read_until_close(&mut c, Duration::from_secs(5));
                let left = names(&dir);
                let rs = parse_responses(&bytes);
                assert_eq!(
                    rs.first().map(|r| r.status),
                    Some(413),
                    "{}",
                    String::from_utf8_lossy(&bytes)
                );
                assert!(
                    left.is_empty(),
                    "round {round}: left when the 413 was read: {left:?}"
                );
            }
        },
    );
}

/// The store directory renamed away and replaced by a symlink to a directory outside the
/// root while uploads are in flight: nothing of theirs is written through the symlink (they
/// finish in the directory they started in), and no temp file stays.
#[test]
fn store_replaced_by_a_symlink_mid_upload() {
    for_each_backend("store_replaced_by_a_symlink_mid_upload", |b| {
        let s = up_start(b);
        let store = s.dir.join("www/uploads");
        let moved = s.dir.join("www/moved");
        let outside = s.dir.join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let body = vec![b'm'; 200_000];
        let mut conns = Vec::new();
        for i in 0..4 {
            let head = if i % 2 == 0 {
                format!(
                    "PUT /uploads/p{i}.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
            } else {
                String::from_utf8_lossy(&multipart_req(&[(format!("m{i}.bin"), body.clone())]))
                    .split("\r\n\r\n")
                    .next()
                    .unwrap()
                    .to_string()
                    + "\r\n\r\n"
            };
            let mut c = connect_with_timeout(s.port, Duration::from_secs(5));
            c.write_all(head.as_bytes()).unwrap();
            conns.push((i, c));
        }
        // Half of each body, then the swap.
        let mp: Vec<Vec<u8>> = (0..4)
            .map(|i| {
                let r = multipart_req(&[(format!("m{i}.bin"), body.clone())]);
                let at = r.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                r[at..].to_vec()
            })
            .collect();
        for (i, c) in conns.iter_mut() {
            let b: &[u8] = if *i % 2 == 0 { &body } else { &mp[*i] };
            c.write_all(&b[..b.len() / 2]).unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
        std::fs::rename(&store, &moved).unwrap();
        std::os::unix::fs::symlink(&outside, &store).unwrap();
        for (i, c) in conns.iter_mut() {
            let b: &[u8] = if *i % 2 == 0 { &body } else { &mp[*i] };
            c.write_all(&b[b.len() / 2..]).unwrap();
        }
        for (_, mut c) in conns {
            let (bytes, _) = read_until_close(&mut c, Duration::from_secs(5));
            let rs = parse_responses(&bytes);
            assert!(!rs.is_empty(), "no answer");
        }
        // New uploads go where the configured store path leads now (as nginx would): not
        // checked. The uploads in flight at the swap stay in the directory they started in.
        assert!(
            wait_until(Duration::from_secs(3), || names(&moved)
                .iter()
                .all(|n| !n.starts_with(".upload-"))),
            "{:?}",
            names(&moved)
        );
        assert_eq!(
            names(&outside),
            Vec::<String>::new(),
            "written through the symlink"
        );
    });
}

/// 950 pipelined GETs over TLS, written as fast as the server takes them while the
/// responses are read: every one is answered, in order (back-pressure through the TLS layer
/// never stalls the connection).
#[test]
fn tls_hundreds_of_pipelined_requests_all_answered() {
    for_each_backend("tls_hundreds_of_pipelined_requests_all_answered", |b| {
        let site = start(b);
        let mut s = handshake(site.s.port, &site.cfg);
        // Under keepalive_requests (1000, as nginx), which ends the connection after.
        let n = 950;
        let mut wire = Vec::new();
        for i in 0..n {
            let path = if i % 100 == 99 {
                "/big.bin"
            } else {
                "/index.html"
            };
            s.conn
                .writer()
                .write_all(format!("GET {path} HTTP/1.1\r\nHost: a.test\r\n\r\n").as_bytes())
                .unwrap();
            while s.conn.wants_write() {
                s.conn.write_tls(&mut wire).unwrap();
            }
        }
        s.sock.set_nonblocking(true).unwrap();
        let (mut sent, mut plain) = (0, Vec::new());
        let mut chunk = vec![0u8; 65536];
        let t0 = Instant::now();
        let want = n / 100 * ((1 << 20) + 100) + n * 100;
        while t0.elapsed() < Duration::from_secs(30) {
            let mut progress = false;
            if sent < wire.len() {
                match s.sock.write(&wire[sent..]) {
                    Ok(k) => {
                        sent += k;
                        progress = true;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("write: {e}"),
                }
            }
            match s.conn.read_tls(&mut s.sock) {
                Ok(0) => panic!("EOF after {} plaintext bytes", plain.len()),
                Ok(_) => {
                    progress = true;
                    s.conn.process_new_packets().unwrap();
                    while let Ok(k) = s.conn.reader().read(&mut chunk) {
                        if k == 0 {
                            break;
                        }
                        plain.extend_from_slice(&chunk[..k]);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("read: {e}"),
            }
            if plain.len() >= want {
                let done = plain.windows(9).filter(|w| w == b"HTTP/1.1 ").count();
                if done == n {
                    break;
                }
            }
            if !progress {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let rs = parse_responses(&plain);
        assert_eq!(
            rs.len(),
            n,
            "{} of {n} answered, {sent} of {} bytes sent",
            rs.len(),
            wire.len()
        );
        for (i, r) in rs.iter().enumerate() {
            assert_eq!(r.status, 200);
            let len = if i % 100 == 99 { 1 << 20 } else { 7 };
            assert_eq!(r.body.len(), len, "response {i}");
        }
    });
}

/// A chunked multipart upload that passes client_max_body_size in its first part, sent in
/// one write (the part's temp file create is in flight when the limit is passed): nothing is
/// left when the 413 is read.
#[test]
fn multipart_over_the_limit_in_its_first_part_leaves_nothing_when_answered() {
    for_each_backend(
        "multipart_over_the_limit_in_its_first_part_leaves_nothing_when_answered",
        |b| {
            let s = up_start(b);
            let dir = s.dir.join("www/small");
            for round in 0..40 {
                let req = multipart_req(&[(format!("one{round}.bin"), vec![b'q'; 40_000])]);
                let at = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                let head = String::from_utf8_lossy(&req[..at])
                    .replace("POST /uploads/", "POST /small/")
                    .replace(
                        "Content-Length",
                        "Transfer-Encoding: chunked\r\nX-Old-Length",
                    );
                let mut out = head.into_bytes();
                let body = &req[at..];
                out.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
                out.extend_from_slice(body);
                out.extend_from_slice(b"\r\n0\r\n\r\n");
                let mut c = connect_with_timeout(s.port, Duration::from_secs(5));
                let _ = c.write_all(&out);
                let (bytes, _) = read_until_close(&mut c, Duration::from_secs(5));
                let left = names(&dir);
                let rs = parse_responses(&bytes);
                assert_eq!(rs.first().map(|r| r.status), Some(413));
                assert!(
                    left.is_empty(),
                    "round {round}: left when the 413 was read: {left:?}"
                );
            }
        },
    );
}

/// An upload's temp file is nobody else's business: while a PUT is half sent, the store's
/// listing does not show its `.upload-*.tmp`, a DELETE of that name is refused, and the
/// upload still lands whole.
#[test]
fn temp_files_of_uploads_in_flight_are_not_exposed() {
    for_each_backend("temp_files_of_uploads_in_flight_are_not_exposed", |b| {
        let s = Server::start(
            b,
            &UP_CONF.replace(
                "upload_store www/uploads;",
                "upload_store www/uploads;\n        autoindex on;",
            ),
            |dir| {
                std::fs::create_dir_all(dir.join("www/uploads")).unwrap();
                std::fs::create_dir_all(dir.join("www/small")).unwrap();
            },
        );
        let dir = s.dir.join("www/uploads");
        let body = vec![b'k'; 200_000];
        let mut c = connect_with_timeout(s.port, Duration::from_secs(5));
        c.write_all(
            format!(
                "PUT /uploads/k.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
        c.write_all(&body[..100_000]).unwrap();
        assert!(wait_until(Duration::from_secs(5), || names(&dir)
            .iter()
            .any(|n| n.starts_with(".upload-"))));
        let tmp = names(&dir)
            .into_iter()
            .find(|n| n.starts_with(".upload-"))
            .unwrap();
        let listing = get(s.port, "/uploads/");
        assert!(!listing.text().contains(".upload-"), "{}", listing.text());
        let r = request(
            s.port,
            format!("DELETE /uploads/{tmp} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        assert!(
            r.status >= 400,
            "DELETE of an upload's temp file: {}",
            r.status
        );
        c.write_all(&body[100_000..]).unwrap();
        let (bytes, _) = read_until_close(&mut c, Duration::from_secs(5));
        let rs = parse_responses(&bytes);
        assert_eq!(
            rs.first().map(|r| r.status),
            Some(201),
            "{}",
            String::from_utf8_lossy(&bytes)
        );
        assert_eq!(std::fs::read(dir.join("k.bin")).unwrap(), body);
    });
}

/// An upload (PUT, multipart) whose body stalls past client_body_timeout: the 408 comes only once the temp
/// files are gone (nothing left when it is read).
#[test]
fn upload_body_timeout_answers_after_its_files_are_removed() {
    for_each_backend(
        "upload_body_timeout_answers_after_its_files_are_removed",
        |b| {
            let s = up_start(b);
            let dir = s.dir.join("www/uploads");
            for i in 0..4 {
                let mut c = connect_with_timeout(s.port, Duration::from_secs(5));
                let req = if i % 2 == 0 {
                    let mut r = format!(
                        "PUT /uploads/t{i}.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 300000\r\n\r\n"
                    )
                    .into_bytes();
                    r.extend_from_slice(&[b't'; 150_000]);
                    r
                } else {
                    let parts: Vec<(String, Vec<u8>)> = (0..6)
                        .map(|k| (format!("t{i}-{k}.bin"), vec![b'u'; 20_000]))
                        .collect();
                    let r = multipart_req(&parts);
                    r[..r.len() - 10_000].to_vec()
                };
                c.write_all(&req).unwrap();
                let (bytes, _) = read_until_close(&mut c, Duration::from_secs(5));
                let left = names(&dir);
                let rs = parse_responses(&bytes);
                assert_eq!(
                    rs.first().map(|r| r.status),
                    Some(408),
                    "{}",
                    String::from_utf8_lossy(&bytes)
                );
                assert!(
                    left.is_empty(),
                    "upload {i}: left when its 408 was read: {left:?}"
                );
            }
        },
    );
}
