//! Hostile review of session 21's additions: directory listings read by `Op::ListDir` (the
//! io_uring pool, stale completions), lookups handed over to a held request's next routing,
//! kernels without `RESOLVE_CACHED`/`cachestat` (`WEBSERV_NO_CACHED_CALLS=1`), and the pooled
//! output buffers. Each test attacks a real server, on every backend.

mod common;

use common::*;
use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

const CONF: &str = "{BASE}
workers 1;
server {
    listen 127.0.0.1:{PORT};
    root www;
    location / { autoindex on; }
    location /hdr/ { autoindex on; add_header X-Listing yes; }
    location /capped/ { autoindex on; autoindex_max_entries 3; }
    location /dots/ { autoindex on; autoindex_max_entries 5; }
    location /noidx/ { error_page 403 @list; }
    location @list { autoindex on; }
    location = /status { status; }
}
";

fn setup(dir: &Path) {
    fs::create_dir_all(dir.join("www/list/sub")).unwrap();
    fs::create_dir_all(dir.join("www/hdr")).unwrap();
    fs::create_dir_all(dir.join("www/capped")).unwrap();
    fs::create_dir_all(dir.join("www/many")).unwrap();
    fs::create_dir_all(dir.join("www/noidx")).unwrap();
    fs::create_dir_all(dir.join("www/odd")).unwrap();
    write_file(dir, "www/list/a.txt", "alpha");
    write_file(dir, "www/hdr/h.txt", "h");
    write_file(dir, "www/noidx/n.txt", "n");
    write_file(dir, "www/small.txt", "small file");
    for i in 0..10 {
        write_file(dir, &format!("www/capped/f{i}"), "c");
    }
    for i in 0..2000 {
        write_file(dir, &format!("www/many/file-{i:05}.txt"), "m");
    }
    for i in 0..20 {
        write_file(dir, &format!("www/dots/.upload-{i:02}.tmp"), "partial");
    }
    for n in ["one", "two", "three"] {
        write_file(dir, &format!("www/dots/{n}.txt"), n);
    }
    let odd = dir.join("www/odd");
    write_file(dir, "www/odd/a<b>&\"c'.txt", "x");
    fs::write(odd.join(OsStr::from_bytes(b"\xff\xfe-bin")), b"y").unwrap();
    fs::write(odd.join("line\nbreak.txt"), b"z").unwrap();
    fs::write(odd.join("l".repeat(255)), b"w").unwrap();
    fs::write(odd.join("100% sure.txt"), b"v").unwrap();
}

/// A listing of names with markup, quotes, a newline, bytes that are not UTF-8 and the
/// longest name a file system allows: every name escaped, the length announced is the length
/// sent, and the GET and HEAD agree.
#[test]
fn odd_names_are_escaped_and_the_length_holds() {
    for_each_backend("odd_names_are_escaped_and_the_length_holds", |b| {
        let s = Server::start(b, CONF, setup);
        let r = get(s.port, "/odd/");
        assert_eq!(r.status, 200, "[{b}] {}", r.dump());
        assert_eq!(
            r.header("Content-Length"),
            Some(r.body.len().to_string().as_str()),
            "[{b}]"
        );
        let t = r.text();
        assert!(t.contains("a&lt;b&gt;&amp;&quot;c&#39;.txt"), "[{b}] {t}");
        assert!(!t.contains("<b>") && !t.contains("&\"c"), "[{b}] {t}");
        assert!(t.contains(&"l".repeat(255)), "[{b}]");
        assert!(t.contains("href=\"line%0Abreak.txt\""), "[{b}] {t}");
        assert!(t.contains("href=\"100%25%20sure.txt\""), "[{b}] {t}");
        let h = request(
            s.port,
            b"HEAD /odd/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(h.status, 200, "[{b}]");
        assert_eq!(h.header("Content-Length"), r.header("Content-Length"));
    });
}

/// Listings pipelined between other requests on one connection: each answer in its place,
/// whole, a HEAD's without a body, and `add_header` in the listing's head (GET and HEAD).
#[test]
fn pipelined_listings_answer_in_order_with_their_headers() {
    for_each_backend(
        "pipelined_listings_answer_in_order_with_their_headers",
        |b| {
            let s = Server::start(b, CONF, setup);
            let mut c = Conn::open(s.port);
            c.send(
                b"GET /list/ HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n\
              HEAD /hdr/ HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /many/ HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /hdr/ HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /capped/ HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            );
            let r = c.read_response();
            assert_eq!(r.status, 200, "[{b}]");
            assert!(r.text().contains("a.txt</a>"), "[{b}] {}", r.text());
            let r = c.read_response();
            assert_eq!((r.status, r.text()), (200, "small file".into()), "[{b}]");
            let h = c.read_response_head(true);
            assert_eq!(h.status, 200, "[{b}]");
            assert_eq!(h.header("X-Listing"), Some("yes"), "[{b}] {}", h.dump());
            let r = c.read_response();
            assert_eq!(r.status, 200, "[{b}]");
            assert_eq!(r.text().matches("<a href=\"file-").count(), 2000, "[{b}]");
            let g = c.read_response();
            assert_eq!(g.status, 200, "[{b}]");
            assert_eq!(g.header("X-Listing"), Some("yes"), "[{b}] {}", g.dump());
            assert_eq!(
                g.header("Content-Length"),
                h.header("Content-Length"),
                "[{b}]"
            );
            assert!(g.text().contains("h.txt</a>"), "[{b}]");
            let r = c.read_response();
            assert_eq!(r.text().matches("<a href=\"f").count(), 3, "[{b}]");
            let r = c.read_response();
            assert_eq!((r.status, r.text()), (200, "small file".into()), "[{b}]");
            assert!(c.is_closed(), "[{b}]");
        },
    );
}

/// An `error_page` to a named location that lists the directory keeps the error's status
/// (nginx's behaviour for `error_page 403 @x`): the listing's status line says 403, and its
/// length is right.
#[test]
fn an_error_page_listing_keeps_the_error_status() {
    for_each_backend("an_error_page_listing_keeps_the_error_status", |b| {
        let s = Server::start(b, CONF, setup);
        let r = get(s.port, "/noidx/");
        assert_eq!(r.status, 403, "[{b}] {}", r.dump());
        assert!(r.text().contains("n.txt</a>"), "[{b}] {}", r.dump());
        assert_eq!(
            r.header("Content-Length"),
            Some(r.body.len().to_string().as_str()),
            "[{b}]"
        );
    });
}

/// Many listings at once, four times more than the pool has threads, half of their clients
/// resetting: every listing read to its end is whole, and no fd is left behind.
#[test]
fn listings_beyond_the_pool_with_resets_are_whole_and_leak_nothing() {
    for_each_backend(
        "listings_beyond_the_pool_with_resets_are_whole_and_leak_nothing",
        |b| {
            let s = Server::start(b, CONF, setup);
            let pid = s.pid().unwrap();
            let want = get(s.port, "/many/");
            assert_eq!(want.status, 200, "[{b}]");
            let before = fd_count(pid).unwrap();
            let port = s.port;
            let threads: Vec<_> = (0..16)
                .map(|i| {
                    std::thread::spawn(move || {
                        let mut got = Vec::new();
                        for j in 0..3 {
                            let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                            c.write_all(
                                b"GET /many/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                            )
                            .unwrap();
                            if (i + j) % 2 == 0 {
                                reset_connection(c);
                                continue;
                            }
                            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                            let mut all = Vec::new();
                            let _ = c.read_to_end(&mut all);
                            got.push(all);
                        }
                        got
                    })
                })
                .collect();
            let mut n = 0;
            for t in threads {
                for all in t.join().unwrap() {
                    let rs = parse_responses(&all);
                    assert_eq!(rs.len(), 1, "[{b}] {} bytes", all.len());
                    assert_eq!(rs[0].status, 200, "[{b}]");
                    assert!(rs[0].body == want.body, "[{b}] a listing differs");
                    n += 1;
                }
            }
            assert_eq!(n, 24, "[{b}]");
            let mut after = fd_count(pid).unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            while after > before + 2 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
                after = fd_count(pid).unwrap();
            }
            assert!(after <= before + 2, "[{b}] fds {before} → {after}");
            let r = get(s.port, "/small.txt");
            assert_eq!(r.status, 200, "[{b}]");
        },
    );
}

const COLD_CONF: &str = "{BASE}
workers 1;
server {
    listen 127.0.0.1:{PORT};
    root www;
    location / { }
    location /idx/ { index n1 n2 n3 n4 n5 n6 n7 n8 n9 n10 n11 n12 n13 n14 n15 n16 n17 n18 n19 n20 index.html; }
    location /tf/ { try_files /tf/m1 /tf/m2 /tf/m3 /tf/m4 /tf/m5 /tf/m6 /tf/m7 /tf/m8 /tf/m9 /tf/m10 /tf/m11 /tf/m12 /tf/m13 /tf/m14 /tf/m15 /tf/m16 /tf/m17 /tf/m18 /tf/m19 /tf/m20 $uri /tf/fallback.txt; }
    location /strict/ { disable_symlinks on; }
    location /list/ { autoindex on; disable_symlinks on; }
    location /tfl/ { autoindex on; try_files $uri $uri/ =404; }
}
";

fn cold_setup(dir: &Path) {
    fs::create_dir_all(dir.join("www/idx")).unwrap();
    fs::create_dir_all(dir.join("www/tf")).unwrap();
    fs::create_dir_all(dir.join("www/strict/real")).unwrap();
    fs::create_dir_all(dir.join("www/list")).unwrap();
    write_file(dir, "www/idx/index.html", "the index");
    write_file(dir, "www/tf/fallback.txt", "fallback");
    write_file(dir, "www/tf/here.txt", "here");
    write_file(dir, "www/strict/real/f.txt", "real");
    write_file(dir, "www/secret.txt", "outside the location");
    std::os::unix::fs::symlink("real", dir.join("www/strict/link")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", dir.join("www/strict/s.txt")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", dir.join("www/escape.txt")).unwrap();
    write_file(dir, "www/list/x.txt", "x");
    write_file(dir, "www/tfl/d/in.txt", "in");
    let big: Vec<u8> = (0..4_000_000u32).map(|i| (i % 253) as u8).collect();
    fs::write(dir.join("www/big.bin"), big).unwrap();
}

fn big4() -> Vec<u8> {
    (0..4_000_000u32).map(|i| (i % 253) as u8).collect()
}

/// With every lookup off the loop (no `RESOLVE_CACHED`) or forced cold, routings that need
/// more lookups than a request may be held for (20 index names, 20 `try_files` candidates)
/// still answer right, and symlinks stay refused or contained.
#[test]
fn cold_routings_with_many_lookups_answer_right_and_stay_contained() {
    for env in ["WEBSERV_NO_CACHED_CALLS", "WEBSERV_COLD_LOOKUPS"] {
        for_each_backend(
            "cold_routings_with_many_lookups_answer_right_and_stay_contained",
            |b| {
                let s = Server::start_env(b, COLD_CONF, cold_setup, &[], false, &[(env, "1")]);
                let r = get(s.port, "/idx/");
                assert_eq!(
                    (r.status, r.text()),
                    (200, "the index".into()),
                    "[{b} {env}]"
                );
                let r = get(s.port, "/tf/here.txt");
                assert_eq!((r.status, r.text()), (200, "here".into()), "[{b} {env}]");
                let r = get(s.port, "/tf/nothing");
                assert_eq!(
                    (r.status, r.text()),
                    (200, "fallback".into()),
                    "[{b} {env}]"
                );
                let r = get(s.port, "/strict/real/f.txt");
                assert_eq!((r.status, r.text()), (200, "real".into()), "[{b} {env}]");
                assert_eq!(get(s.port, "/strict/link/f.txt").status, 403, "[{b} {env}]");
                assert_eq!(get(s.port, "/strict/s.txt").status, 403, "[{b} {env}]");
                let r = get(s.port, "/escape.txt");
                assert!(
                    r.status == 403 || r.status == 404,
                    "[{b} {env}] escaped the root: {}",
                    r.dump()
                );
                // Pipelined behind held requests: each answer is its own request's.
                let mut c = Conn::open(s.port);
                c.send(
                    b"GET /tf/nothing HTTP/1.1\r\nHost: x\r\n\r\n\
                      GET /idx/ HTTP/1.1\r\nHost: x\r\n\r\n\
                      GET /strict/link/f.txt HTTP/1.1\r\nHost: x\r\n\r\n\
                      GET /list/ HTTP/1.1\r\nHost: x\r\n\r\n\
                      GET /strict/real/f.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                );
                let r = c.read_response();
                assert_eq!(r.text(), "fallback", "[{b} {env}]");
                let r = c.read_response();
                assert_eq!(r.text(), "the index", "[{b} {env}]");
                assert_eq!(c.read_response().status, 403, "[{b} {env}]");
                let r = c.read_response();
                assert!(r.text().contains("x.txt</a>"), "[{b} {env}] {}", r.dump());
                let r = c.read_response();
                assert_eq!(r.text(), "real", "[{b} {env}]");
                // try_files to a directory, listed; a GET with a body (read and dropped).
                let r = get(s.port, "/tfl/d");
                assert_eq!(r.status, 200, "[{b} {env}] {}", r.dump());
                assert!(r.text().contains("in.txt</a>"), "[{b} {env}] {}", r.dump());
                let mut c = Conn::open(s.port);
                let mut req =
                    b"GET /list/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".to_vec();
                req.extend(std::iter::repeat_n(b'q', 100_000));
                req.extend_from_slice(
                    b"GET /tfl/d/in.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                );
                c.send(&req);
                let r = c.read_response();
                assert!(r.text().contains("x.txt</a>"), "[{b} {env}] {}", r.dump());
                assert_eq!(c.read_response().text(), "in", "[{b} {env}]");
            },
        );
    }
}

/// Without `cachestat` every file is read by `Op::Read`: a multipart range answer is exact,
/// and a file truncated while it is sent ends the response early with the connection closed
/// (never a hang, never bytes that were not in the file) and the server keeps serving.
#[test]
fn uncached_reads_serve_ranges_and_survive_a_truncated_file() {
    for_each_backend(
        "uncached_reads_serve_ranges_and_survive_a_truncated_file",
        |b| {
            let s = Server::start_env(
                b,
                COLD_CONF,
                cold_setup,
                &[],
                false,
                &[("WEBSERV_NO_CACHED_CALLS", "1")],
            );
            let big = big4();
            let r = request(
                s.port,
                b"GET /big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9,3000000-3000009,-5\r\nConnection: close\r\n\r\n",
            );
            assert_eq!(r.status, 206, "[{b}]");
            let t = r.body.clone();
            for (from, to) in [
                (0usize, 10usize),
                (3_000_000, 3_000_010),
                (3_999_995, 4_000_000),
            ] {
                assert!(
                    t.windows(10.min(to - from))
                        .any(|w| w == &big[from..from + 10.min(to - from)]),
                    "[{b}] range {from}-{to} missing"
                );
            }
            // A client that reads slowly while the file shrinks under it (32 MB: more than
            // the socket buffers of both ends hold).
            let huge: Vec<u8> = (0..32_000_000u32).map(|i| (i % 241) as u8).collect();
            fs::write(s.dir.join("www/huge.bin"), &huge).unwrap();
            let mut c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c.write_all(b"GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut got = vec![0u8; 64 * 1024];
            c.read_exact(&mut got).unwrap();
            let f = fs::OpenOptions::new()
                .write(true)
                .open(s.dir.join("www/huge.bin"))
                .unwrap();
            f.set_len(1_000_000).unwrap();
            drop(f);
            let mut rest = Vec::new();
            let _ = c.read_to_end(&mut rest);
            got.extend_from_slice(&rest);
            let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            let body = &got[head_end..];
            assert!(body.len() < huge.len(), "[{b}] the whole length came");
            assert!(body == &huge[..body.len()], "[{b}] bytes not in the file");
            let r = get(s.port, "/tf/here.txt");
            assert_eq!(r.status, 200, "[{b}]");
        },
    );
}

const UP_CONF: &str = "{BASE}
workers 1;
server {
    listen 127.0.0.1:{PORT};
    root www;
    location / { }
    location /up/ {
        allow_methods GET HEAD PUT POST DELETE;
        upload_store www/up;
        autoindex on;
    }
}
";

fn up_setup(dir: &Path) {
    fs::create_dir_all(dir.join("www/up")).unwrap();
    write_file(dir, "www/small.txt", "small file");
}

/// Every PUT is held for its lookups on a kernel without `RESOLVE_CACHED`: a client that waits
/// for `100 Continue` gets it after the hold, its body is stored whole, a request pipelined
/// behind a body that arrives while the head is held is answered in its turn, and an anonymous
/// uploader's names with markup come back escaped in the store's listing.
#[test]
fn held_uploads_with_continue_and_pipelining_store_whole_bodies() {
    for_each_backend(
        "held_uploads_with_continue_and_pipelining_store_whole_bodies",
        |b| {
            let s = Server::start_env(
                b,
                UP_CONF,
                up_setup,
                &[],
                false,
                &[("WEBSERV_NO_CACHED_CALLS", "1")],
            );
            let body: Vec<u8> = (0..300_000u32).map(|i| (i % 249) as u8).collect();
            let mut c = Conn::open(s.port);
            c.send(
                format!(
                    "PUT /up/c.bin HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            let r = c.read_response();
            assert_eq!(r.status, 100, "[{b}] {}", r.dump());
            c.send(&body);
            let r = c.read_response();
            assert_eq!(r.status, 201, "[{b}] {}", r.dump());
            assert!(
                fs::read(s.dir.join("www/up/c.bin")).unwrap() == body,
                "[{b}]"
            );
            // The head, then (while it is held) its body and the next requests at once.
            let mut c = Conn::open(s.port);
            let mut all = format!(
                "PUT /up/d.bin HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            all.extend_from_slice(&body);
            all.extend_from_slice(
                b"GET /up/d.bin HTTP/1.1\r\nHost: x\r\n\r\n\
                  PUT /up/%3Cb%3E%26%22.html HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
                  GET /up/ HTTP/1.1\r\nHost: x\r\n\r\n\
                  DELETE /up/d.bin HTTP/1.1\r\nHost: x\r\n\r\n\
                  GET /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            );
            c.send(&all);
            let r = c.read_response();
            assert_eq!(r.status, 201, "[{b}] {}", r.dump());
            let r = c.read_response();
            assert_eq!(r.status, 200, "[{b}]");
            assert!(
                r.body == body,
                "[{b}] d.bin differs: {} bytes",
                r.body.len()
            );
            let r = c.read_response();
            assert!(
                r.status == 201 || r.status == 403 || r.status == 400,
                "[{b}] {}",
                r.dump()
            );
            let stored = r.status == 201;
            let r = c.read_response();
            assert_eq!(r.status, 200, "[{b}]");
            let t = r.text();
            assert!(
                t.contains("c.bin</a>") && t.contains("d.bin</a>"),
                "[{b}] {t}"
            );
            assert!(!t.contains("<b>"), "[{b}] {t}");
            if stored {
                assert!(t.contains("&lt;b&gt;&amp;&quot;.html"), "[{b}] {t}");
            }
            assert_eq!(c.read_response().status, 204, "[{b}]");
            let r = c.read_response();
            assert_eq!((r.status, r.text()), (200, "small file".into()), "[{b}]");
            assert!(!s.dir.join("www/up/d.bin").exists(), "[{b}]");
        },
    );
}

/// Listings asked for while the server is out of descriptors (every one held by an idle
/// keep-alive connection): each answers whole or with an error status — never a hang, a
/// truncated body or a wrong length — and once the connections go, listings work again and
/// no descriptor is left behind.
#[test]
fn listings_out_of_descriptors_answer_and_recover() {
    for_each_backend("listings_out_of_descriptors_answer_and_recover", |b| {
        let s = Server::start_with_nofile(b, CONF, setup, 64);
        let pid = s.pid().unwrap();
        let want = get(s.port, "/list/");
        assert_eq!(want.status, 200, "[{b}]");
        let base = fd_count(pid).unwrap();
        let mut conns = Vec::new();
        for _ in 0..80 {
            let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", s.port)) else {
                break;
            };
            c.set_read_timeout(Some(Duration::from_millis(700)))
                .unwrap();
            c.write_all(b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut r = Reader::new(c.try_clone().unwrap());
            match r.read_response(false) {
                Ok(resp) if resp.status == 200 => conns.push((c, r)),
                _ => break,
            }
        }
        assert!(conns.len() > 20, "[{b}] {} connections", conns.len());
        let mut answered = 0;
        for (c, r) in conns.iter_mut().take(6) {
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            c.write_all(b"GET /list/ HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            match r.read_response(false) {
                Ok(resp) if resp.status == 200 => {
                    assert!(resp.body == want.body, "[{b}] a listing differs");
                    answered += 1;
                }
                Ok(resp) => assert!(resp.status >= 500, "[{b}] {}", resp.dump()),
                Err(e) => panic!("[{b}] no answer to a listing out of fds: {e}"),
            }
        }
        println!(
            "[{b}] {} idle connections; {answered} of 6 listings answered 200",
            conns.len()
        );
        drop(conns);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut ok = false;
        while Instant::now() < deadline {
            let r = get(s.port, "/list/");
            if r.status == 200 && r.body == want.body && fd_count(pid).unwrap() <= base + 2 {
                ok = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            ok,
            "[{b}] not recovered: fds {base} → {:?}; {answered} listings answered",
            fd_count(pid)
        );
    });
}

const TLS_CONF: &str = "{BASE}
workers 1;
server {
    listen 127.0.0.1:{PORT} ssl;
    server_name a.test;
    ssl_certificate a.crt;
    ssl_certificate_key a.key;
    root www;
    location / { autoindex on; }
    location /hdr/ { autoindex on; add_header X-Listing yes; }
}
";

/// Listings over TLS (its send path recycles buffers its own way), pipelined with a small file,
/// a HEAD and a 2,000-entry listing of several pieces: each answer whole and in its place.
#[test]
fn tls_pipelined_listings_are_whole_and_in_order() {
    for_each_backend("tls_pipelined_listings_are_whole_and_in_order", |b| {
        let mut cert = None;
        let s = Server::start(b, TLS_CONF, |dir| {
            setup(dir);
            let ck = rcgen::generate_simple_self_signed(vec!["a.test".to_string()]).unwrap();
            write_file(dir, "a.crt", ck.cert.pem());
            write_file(dir, "a.key", ck.signing_key.serialize_pem());
            cert = Some(ck.cert.der().clone());
        });
        let mut roots = RootCertStore::empty();
        roots.add(cert.unwrap()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let conn =
            ClientConnection::new(Arc::new(cfg), ServerName::try_from("a.test").unwrap()).unwrap();
        let tcp = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut t = StreamOwned::new(conn, tcp);
        t.write_all(
            b"GET /many/ HTTP/1.1\r\nHost: a.test\r\n\r\n\
              GET /small.txt HTTP/1.1\r\nHost: a.test\r\n\r\n\
              HEAD /hdr/ HTTP/1.1\r\nHost: a.test\r\n\r\n\
              GET /hdr/ HTTP/1.1\r\nHost: a.test\r\n\r\n\
              GET /many/ HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let mut all = Vec::new();
        let _ = t.read_to_end(&mut all);
        // Split by hand: the HEAD's head has a Content-Length but no body.
        let mut at = 0;
        let mut rs = Vec::new();
        for head_only in [false, false, true, false, false] {
            let h = all[at..]
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .unwrap_or_else(|| panic!("[{b}] response {} missing", rs.len()))
                + at
                + 4;
            let head = String::from_utf8_lossy(&all[at..h]).into_owned();
            let len: usize = head
                .to_ascii_lowercase()
                .lines()
                .find_map(|l| {
                    l.strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            let end = if head_only { h } else { h + len };
            assert!(end <= all.len(), "[{b}] response {} cut short", rs.len());
            rs.push(Reader::new(&all[at..end]).read_response(head_only).unwrap());
            if head_only {
                assert_eq!(
                    rs.last().unwrap().header("Content-Length"),
                    Some(len.to_string().as_str())
                );
            }
            at = end;
        }
        assert_eq!(at, all.len(), "[{b}] bytes after the last response");
        assert_eq!(rs[0].status, 200, "[{b}]");
        assert_eq!(
            rs[0].text().matches("<a href=\"file-").count(),
            2000,
            "[{b}]"
        );
        assert_eq!(
            (rs[1].status, rs[1].text()),
            (200, "small file".into()),
            "[{b}]"
        );
        assert_eq!(rs[2].header("X-Listing"), Some("yes"), "[{b}]");
        assert_eq!(rs[3].header("X-Listing"), Some("yes"), "[{b}]");
        assert_eq!(
            rs[3].header("Content-Length"),
            rs[2].header("Content-Length"),
            "[{b}]"
        );
        assert!(rs[3].text().contains("h.txt</a>"), "[{b}]");
        assert!(rs[4].body == rs[0].body, "[{b}]");
        let _ = &mut t;
    });
}

/// A reload (SIGHUP) while listings are read and sent to clients that have not read them yet,
/// then a stop (SIGTERM) with more listings just asked for: the listings under way finish
/// whole after the reload, and the stop ends the process cleanly (exit 0) within the grace
/// time instead of waiting on the pool.
#[test]
fn reload_and_stop_during_listings() {
    for_each_backend("reload_and_stop_during_listings", |b| {
        let mut s = Server::start(b, CONF, setup);
        let want = get(s.port, "/many/");
        assert_eq!(want.status, 200, "[{b}]");
        let open = |n: usize| -> Vec<std::net::TcpStream> {
            (0..n)
                .map(|_| {
                    let mut c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
                    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    c.write_all(b"GET /many/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        .unwrap();
                    c
                })
                .collect()
        };
        let waiting = open(12);
        s.signal(libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(300));
        for mut c in waiting {
            let mut all = Vec::new();
            let _ = c.read_to_end(&mut all);
            let rs = parse_responses(&all);
            assert_eq!(rs.len(), 1, "[{b}]");
            assert!(
                rs[0].body == want.body,
                "[{b}] a listing across the reload differs"
            );
        }
        assert_eq!(get(s.port, "/list/").status, 200, "[{b}] after the reload");
        let late = open(12);
        let started = Instant::now();
        // The stop arrives with these listings queued, running or being sent; their clients
        // then leave (a client that stays would only be waited for by the lingering close).
        s.signal(libc::SIGTERM);
        drop(late);
        let status = s.terminate().expect("the server status");
        println!("[{b}] stopped in {:?}", started.elapsed());
        assert!(status.success(), "[{b}] {status:?}\n{}", s.log());
    });
}

/// Names a listing does not show (dot-files: an upload store's temp files, one per upload under
/// way) do not count against `autoindex_max_entries`: an anonymous uploader with slow uploads
/// under way must not push the store's files out of its listing, nor make a listing of three
/// files say it was truncated at five.
#[test]
fn hidden_names_do_not_eat_the_listing_cap() {
    for_each_backend("hidden_names_do_not_eat_the_listing_cap", |b| {
        let s = Server::start(b, CONF, setup);
        let r = get(s.port, "/dots/");
        assert_eq!(r.status, 200, "[{b}]");
        let t = r.text();
        for n in ["one", "two", "three"] {
            assert!(
                t.contains(&format!(">{n}.txt</a>")),
                "[{b}] {n}.txt missing:\n{t}"
            );
        }
        assert!(!t.contains("truncated"), "[{b}] {t}");
        assert!(!t.contains(".upload-"), "[{b}] {t}");
    });
}

/// Without `cachestat` a large file is read into memory piece by piece (`Op::Read`): clients
/// that ask for a 32 MB file and never read hold at most a piece each in the server, not the
/// file — and a byte range and a multipart answer from the same file are exact meanwhile.
#[test]
fn uncached_reads_for_clients_that_do_not_read_stay_bounded() {
    for_each_backend(
        "uncached_reads_for_clients_that_do_not_read_stay_bounded",
        |b| {
            let s = Server::start_env(
                b,
                COLD_CONF,
                cold_setup,
                &[],
                false,
                &[("WEBSERV_NO_CACHED_CALLS", "1")],
            );
            let pid = s.pid().unwrap();
            let huge: Vec<u8> = (0..32_000_000u32).map(|i| (i % 241) as u8).collect();
            fs::write(s.dir.join("www/huge.bin"), &huge).unwrap();
            assert_eq!(get(s.port, "/tf/here.txt").status, 200, "[{b}]");
            let before = vm_rss_kib(pid).unwrap();
            let stalled: Vec<_> = (0..8)
                .map(|_| {
                    let mut c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
                    c.write_all(b"GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")
                        .unwrap();
                    c
                })
                .collect();
            std::thread::sleep(Duration::from_millis(1500));
            let during = vm_rss_kib(pid).unwrap();
            let r = request(
                s.port,
                b"GET /huge.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=31999990-\r\nConnection: close\r\n\r\n",
            );
            assert_eq!(r.status, 206, "[{b}]");
            assert_eq!(r.body, huge[31_999_990..], "[{b}]");
            drop(stalled);
            println!("[{b}] RSS {before} KiB → {during} KiB with 8 stalled 32 MB downloads");
            assert!(
                during < before + 16 * 1024,
                "[{b}] RSS grew from {before} to {during} KiB"
            );
        },
    );
}

/// Workers sharing an IPv4 and an IPv6 address on one port (SO_REUSEPORT) both serve, and a
/// second server on that IPv6 address is refused (the check covers IPv6 as IPv4) while the
/// first keeps every connection.
#[test]
fn reuseport_check_covers_ipv6_beside_ipv4() {
    for_each_backend("reuseport_check_covers_ipv6_beside_ipv4", |b| {
        let conf = "workers 2;\nerror_log stderr info;\nserver {\n    listen 127.0.0.1:{PORT};\n    listen [::1]:{PORT};\n    root {DIR}/www;\n}\n";
        let first = Server::start(b, conf, |d| write_file(d, "www/index.html", "first\n"));
        let v6 = |port: u16| {
            let mut c = std::net::TcpStream::connect(("::1", port)).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            c.write_all(b"GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut all = Vec::new();
            let _ = c.read_to_end(&mut all);
            parse_responses(&all)
        };
        assert_eq!(v6(first.port)[0].body, b"first\n", "[{b}]");
        assert_eq!(get(first.port, "/index.html").body, b"first\n", "[{b}]");
        let dir = temp_dir();
        fs::create_dir_all(dir.join("www")).unwrap();
        let path = dir.join("second.conf");
        fs::write(
            &path,
            format!(
                "workers 2;\nerror_log stderr info;\nserver {{\n    listen [::1]:{};\n    root www;\n}}\n",
                first.port
            ),
        )
        .unwrap();
        let mut second = std::process::Command::new(binary())
            .args(["-c", path.to_str().unwrap(), "-p", dir.to_str().unwrap()])
            .args(["--backend", b])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(st) = second.try_wait().unwrap() {
                break Some(st);
            }
            if Instant::now() > deadline {
                let _ = second.kill();
                let _ = second.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        if let Some(mut e) = second.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let _ = fs::remove_dir_all(&dir);
        let status = status.unwrap_or_else(|| panic!("[{b}] a second server runs on [::1]"));
        assert!(!status.success(), "[{b}] {err}");
        assert!(err.contains("Address already in use"), "[{b}] {err}");
        for _ in 0..10 {
            assert_eq!(v6(first.port)[0].body, b"first\n", "[{b}]");
        }
    });
}

const SWAP_CONF: &str = "{BASE}
workers 1;
server {
    listen 127.0.0.1:{PORT};
    root www;
    location / { autoindex on; }
    location /strict/ { autoindex on; disable_symlinks on; }
}
";

/// With every lookup done off the loop and its answer handed to the next routing, a link
/// swapped between a directory inside the root and one outside it, again and again while
/// files and listings under it are asked for, never serves or lists what is outside: the
/// off-loop open is contained, and what the routing uses is what it opened.
#[test]
fn links_swapped_during_cold_lookups_never_escape() {
    for env in ["WEBSERV_NO_CACHED_CALLS", "WEBSERV_COLD_LOOKUPS"] {
        for_each_backend("links_swapped_during_cold_lookups_never_escape", |b| {
            let s = Server::start_env(
                b,
                SWAP_CONF,
                |d| {
                    write_file(d, "secret/f.txt", "SECRET");
                    write_file(d, "secret/only-outside.txt", "SECRET");
                    write_file(d, "www/real/f.txt", "inside");
                    write_file(d, "www/strict/real/f.txt", "inside");
                    std::os::unix::fs::symlink("real", d.join("www/flip")).unwrap();
                    std::os::unix::fs::symlink("real", d.join("www/strict/flip")).unwrap();
                },
                &[],
                false,
                &[(env, "1")],
            );
            let dir = s.dir.clone();
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let swapper = {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut n = 0u32;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 200_000 {
                        for (link, out) in [
                            ("www/flip", "../secret"),
                            ("www/strict/flip", "../../secret"),
                        ] {
                            let target = if n.is_multiple_of(2) { out } else { "real" };
                            let tmp = dir.join(format!("{link}.tmp"));
                            let _ = fs::remove_file(&tmp);
                            if std::os::unix::fs::symlink(target, &tmp).is_err()
                                || fs::rename(&tmp, dir.join(link)).is_err()
                            {
                                return n; // the test ended (its prefix is gone)
                            }
                        }
                        n += 1;
                    }
                    n
                })
            };
            let mut c = Conn::open(s.port);
            let (mut inside, mut refused) = (0, 0);
            let started = Instant::now();
            while started.elapsed() < Duration::from_millis(500) {
                for path in [
                    "/flip/f.txt",
                    "/flip/",
                    "/strict/flip/f.txt",
                    "/strict/flip/",
                ] {
                    c.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
                    let r = c.read_response();
                    let t = r.text();
                    assert!(
                        !t.contains("SECRET") && !t.contains("only-outside"),
                        "[{b} {env}] {path} escaped the root: {}",
                        r.dump()
                    );
                    match r.status {
                        200 => inside += 1,
                        403 | 404 => refused += 1,
                        s => panic!("[{b} {env}] {path}: {s}"),
                    }
                    if path.starts_with("/strict/") {
                        assert_ne!(
                            r.status, 200,
                            "[{b} {env}] a link followed under disable_symlinks on"
                        );
                    }
                    if r.header("Connection")
                        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                    {
                        c = Conn::open(s.port); // keepalive_requests reached
                    }
                }
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let swaps = swapper.join().unwrap();
            println!("[{b} {env}] {swaps} swaps; {inside} answers from inside, {refused} refused");
            assert!(inside > 0 && refused > 0, "[{b} {env}] the race never bit");
        });
    }
}

const MIX_CONF: &str = "{BASE}
workers 1;
keepalive_requests 10000;
server {
    listen 127.0.0.1:{PORT};
    root www;
    error_page 404 /err404.html;
    location / { autoindex on; }
}
";

/// Two hundred pipelined requests of every kind on one connection — small cached files, a
/// file too large for the cache (sendfile or reads), 404 with its error page (a file), 304,
/// 416, HEAD, ranges, listings — so that pooled head buffers, coalescing batches and file
/// pieces interleave: every answer is its own, whole and in order.
#[test]
fn pipelined_mix_through_the_pools_answers_each_request_exactly() {
    for env in [None, Some("WEBSERV_NO_CACHED_CALLS")] {
        for_each_backend(
            "pipelined_mix_through_the_pools_answers_each_request_exactly",
            |b| {
                let envs: Vec<(&str, &str)> = env.iter().map(|e| (*e, "1")).collect();
                let big: Vec<u8> = (0..300_000u32).map(|i| (i % 239) as u8).collect();
                let big2 = big.clone();
                let s = Server::start_env(
                    b,
                    MIX_CONF,
                    move |d| {
                        write_file(d, "www/a.txt", "aaaa");
                        write_file(d, "www/b.txt", "bb");
                        write_file(d, "www/err404.html", "custom 404 page");
                        write_file(d, "www/dir/x.txt", "x");
                        fs::write(d.join("www/big.bin"), &big2).unwrap();
                    },
                    &[],
                    false,
                    &envs,
                );
                let etag = get(s.port, "/a.txt").must_header("ETag").to_string();
                let kinds = 8;
                let mut req = Vec::new();
                for i in 0..200 {
                    let r = match i % kinds {
                        0 => "GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
                        1 => "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
                        2 => "GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
                        3 => format!(
                            "GET /a.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n"
                        ),
                        4 => {
                            "GET /b.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=5-9\r\n\r\n".to_string()
                        }
                        5 => "HEAD /big.bin HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
                        6 => {
                            "GET /big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=1000-1009,-3\r\n\r\n"
                                .to_string()
                        }
                        _ => "GET /dir/ HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
                    };
                    req.extend_from_slice(r.as_bytes());
                }
                let stream = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let mut c = Reader::new(stream.try_clone().unwrap());
                let sender = {
                    let mut w = stream;
                    std::thread::spawn(move || w.write_all(&req).unwrap())
                };
                for i in 0..200 {
                    let k = i % kinds;
                    let r = c
                        .read_response(k == 5)
                        .unwrap_or_else(|e| panic!("[{b} {env:?}] response {i}: {e}"));
                    let what = format!("[{b} {env:?}] request {i} (kind {k})");
                    match k {
                        0 => assert_eq!((r.status, r.text()), (200, "aaaa".into()), "{what}"),
                        1 => assert_eq!(
                            (r.status, r.text()),
                            (404, "custom 404 page".into()),
                            "{what}"
                        ),
                        2 => assert!(r.status == 200 && r.body == big, "{what}: {}", r.status),
                        3 => assert_eq!((r.status, r.body.len()), (304, 0), "{what}"),
                        4 => assert_eq!(r.status, 416, "{what}"),
                        5 => assert_eq!(
                            (r.status, r.header("Content-Length")),
                            (200, Some("300000")),
                            "{what}"
                        ),
                        6 => {
                            assert_eq!(r.status, 206, "{what}");
                            let t = &r.body;
                            assert!(t.windows(10).any(|w| w == &big[1000..1010]), "{what}");
                            assert!(t.windows(3).any(|w| w == &big[299_997..]), "{what}");
                        }
                        _ => assert!(r.status == 200 && r.text().contains("x.txt</a>"), "{what}"),
                    }
                }
                sender.join().unwrap();
            },
        );
    }
}

/// A store listed while uploads and deletes change it (names vanish between the op's read of
/// the names and its `fstatat`s; temp files come and go): every listing is a 200 whose length
/// is what it announced, with no temp file in it.
#[test]
fn store_listed_while_uploads_change_it() {
    for_each_backend("store_listed_while_uploads_change_it", |b| {
        let s = Server::start(b, UP_CONF, up_setup);
        let port = s.port;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let churn = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut c = Conn::open(port);
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 100_000 {
                    let name = format!("/up/f{}.txt", n % 40);
                    let req = if n % 3 == 2 {
                        format!("DELETE {name} HTTP/1.1\r\nHost: x\r\n\r\n")
                    } else {
                        format!("PUT {name} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
                    };
                    c.send(req.as_bytes());
                    let r = c.read_response();
                    assert!(matches!(r.status, 201 | 204 | 404), "{}", r.dump());
                    if r.header("Connection")
                        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                    {
                        c = Conn::open(port);
                    }
                    n += 1;
                }
                n
            })
        };
        let mut c = Conn::open(s.port);
        let started = Instant::now();
        let mut listings = 0;
        while started.elapsed() < Duration::from_millis(500) {
            c.send(b"GET /up/ HTTP/1.1\r\nHost: x\r\n\r\n");
            let r = c.read_response();
            assert_eq!(r.status, 200, "[{b}] {}", r.dump());
            assert!(!r.text().contains(".upload-"), "[{b}] {}", r.text());
            assert!(r.text().ends_with("</html>\r\n"), "[{b}] {}", r.text());
            listings += 1;
            if r.header("Connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"))
            {
                c = Conn::open(s.port);
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let changes = churn.join().unwrap();
        println!("[{b}] {listings} listings during {changes} changes");
        assert!(listings > 5 && changes > 5, "[{b}]");
    });
}

/// The per-connection tables reserved up front for `worker_connections` are address space,
/// not memory: a server configured for a million connections on each of four workers starts,
/// serves, and stays small.
#[test]
fn a_million_connection_reservation_costs_no_memory() {
    for_each_backend("a_million_connection_reservation_costs_no_memory", |b| {
        let conf = "{BASE}\nworkers 4;\nworker_connections 1048576;\nserver {\n    listen 127.0.0.1:{PORT};\n    root www;\n    location / { autoindex on; }\n}\n";
        let s = Server::start(b, conf, setup);
        assert_eq!(get(s.port, "/small.txt").text(), "small file", "[{b}]");
        assert_eq!(get(s.port, "/list/").status, 200, "[{b}]");
        let rss = vm_rss_kib(s.pid().unwrap()).unwrap();
        println!("[{b}] RSS {rss} KiB");
        assert!(rss < 64 * 1024, "[{b}] RSS {rss} KiB");
    });
}

/// Without `cachestat`, the small-file cache is filled by reads that cannot wait: a file
/// changed behind the server's back (another size) is served new once the entry's 1 s of trust
/// is over, and one changed through it (a PUT of the same size) at once.
#[test]
fn uncached_small_file_cache_follows_changes() {
    for_each_backend("uncached_small_file_cache_follows_changes", |b| {
        let s = Server::start_env(
            b,
            UP_CONF,
            |d| {
                up_setup(d);
                write_file(d, "www/up/v.txt", "v1");
            },
            &[],
            false,
            &[("WEBSERV_NO_CACHED_CALLS", "1")],
        );
        for _ in 0..3 {
            assert_eq!(get(s.port, "/up/v.txt").text(), "v1", "[{b}]");
        }
        // Behind its back: trusted for 1 s (README), then checked.
        fs::write(s.dir.join("www/up/v.txt"), "version 2").unwrap();
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let t = get(s.port, "/up/v.txt").text();
            if t == "version 2" {
                break;
            }
            assert_eq!(t, "v1", "[{b}]");
            assert!(
                Instant::now() < deadline,
                "[{b}] still the old copy after 3 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let r = request(
            s.port,
            b"PUT /up/v.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\nConnection: close\r\n\r\nversion 3",
        );
        assert_eq!(r.status, 204, "[{b}] {}", r.dump());
        assert_eq!(get(s.port, "/up/v.txt").text(), "version 3", "[{b}]");
    });
}
