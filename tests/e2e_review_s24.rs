//! Hostile review of session 24's speed work (issue 12): the rewritten head parser (the
//! remembered valid Host of a pooled parser, the one UTF-8 check over the head's prefix, the
//! one-pass request line), per-thread metrics counters summed by the status page, and the
//! request record's configuration handed on instead of cloned (a reload mid-request). Each
//! test attacks a real server, on every backend.

mod common;

use common::*;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

const CONF: &str = "{BASE}
workers 1;
server {
    listen 127.0.0.1:{PORT};
    server_name a.test;
    root {DIR}/www;
    location /cgi-bin/ { cgi .sh /bin/sh; }
    location /r/ { root {DIR}/ROOT_MARK; }
}
server {
    listen 127.0.0.1:{PORT};
    server_name b.test;
    root {DIR}/wwwb;
}
";

fn setup(dir: &Path) {
    fs::create_dir_all(dir.join("www/cgi-bin")).unwrap();
    fs::create_dir_all(dir.join("wwwb")).unwrap();
    write_file(dir, "www/page.html", "<p>a</p>");
    write_file(dir, "wwwb/page.html", "<p>b</p>");
    write_file(dir, "ROOT_MARK/r/x.txt", "old root");
    write_file(dir, "new/r/x.txt", "new root");
    // Started: a file says so; then a second later a local redirect (RFC 3875 §6.2.2).
    write_file(
        dir,
        "www/cgi-bin/slow.sh",
        format!(
            "touch {}/started\nsleep 1\nprintf 'Location: /r/x.txt\\r\\n\\r\\n'\n",
            dir.display()
        ),
    );
}

/// The status line's code of each response in `bytes`, and its body as text.
fn answers(bytes: &[u8]) -> Vec<(u16, String)> {
    parse_responses(bytes)
        .iter()
        .map(|r| (r.status, r.text()))
        .collect()
}

/// One request on a connection of its own (which closes after it): each head is parsed by a
/// parser taken from the worker's pool, the one the connection before gave back.
fn one(port: u16, head: &[u8]) -> (u16, String) {
    let a = answers(&send_raw(port, head));
    assert_eq!(a.len(), 1, "{:?}: {a:?}", String::from_utf8_lossy(head));
    a[0].clone()
}

fn with_host(host: &[u8]) -> Vec<u8> {
    let mut v = b"GET /page.html HTTP/1.1\r\nConnection: close\r\nHost: ".to_vec();
    v.extend_from_slice(host);
    v.extend_from_slice(b"\r\n\r\n");
    v
}

/// The parser remembers the last valid Host (up to 64 bytes) and does not check it again: a
/// Host that differs from it by one byte, a byte more, or a byte less, on the next connection
/// (the same pooled parser, one worker), is judged on its own bytes (RFC 9112 §3.2: an invalid
/// Host → 400).
#[test]
fn a_remembered_host_vouches_only_for_the_very_same_bytes() {
    for_each_backend(
        "a_remembered_host_vouches_only_for_the_very_same_bytes",
        |b| {
            let s = Server::start(b, CONF, setup);
            let h63 = format!("{}.test", "h".repeat(58));
            let h64 = format!("{}.test", "h".repeat(59));
            let h65 = format!("{}.test", "h".repeat(60));
            for good in [
                "b.test",
                "b.test:80",
                h63.as_str(),
                h64.as_str(),
                h65.as_str(),
            ] {
                let want = if good.starts_with("b.test") {
                    "<p>b</p>"
                } else {
                    "<p>a</p>"
                };
                let ok = (200, want.to_string());
                assert_eq!(one(s.port, &with_host(good.as_bytes())), ok, "{good} ({b})");
                let g = good.as_bytes();
                let mut bad: Vec<Vec<u8>> = Vec::new();
                for tail in [
                    &b"@"[..],
                    b"/",
                    b"\x80",
                    b"\xc3\xa9",
                    b" x",
                    b":123456",
                    b"]",
                ] {
                    bad.push([g, tail].concat());
                }
                // The last byte replaced, and the first.
                for x in [b'@', b'/', b'\x80', b'#'] {
                    let mut v = g.to_vec();
                    *v.last_mut().unwrap() = x;
                    bad.push(v.clone());
                    v = g.to_vec();
                    v[0] = x;
                    bad.push(v);
                }
                for v in &bad {
                    // Remembered again each time: the bad one comes right after the good one.
                    assert_eq!(one(s.port, &with_host(g)), ok, "{good} ({b})");
                    assert_eq!(
                        one(s.port, &with_host(v)).0,
                        400,
                        "Host {:?} after {good} ({b})",
                        String::from_utf8_lossy(v)
                    );
                }
                // Two Host fields, both the remembered value: still two (RFC 9112 §3.2).
                let two =
                    format!("GET /page.html HTTP/1.1\r\nHost: {good}\r\nHost: {good}\r\n\r\n");
                assert_eq!(one(s.port, two.as_bytes()).0, 400, "{good} twice ({b})");
            }
        },
    );
}

/// Heads pipelined on one connection, the second and third cut mid-Host across reads: each
/// routes by its own Host, the remembered one vouches for none of the others, and a bad one
/// is the last answer.
#[test]
fn pipelined_heads_cut_mid_host_route_by_their_own_host() {
    for_each_backend(
        "pipelined_heads_cut_mid_host_route_by_their_own_host",
        |b| {
            let s = Server::start(b, CONF, setup);
            let mut t = connect_with_timeout(s.port, Duration::from_secs(5));
            let pieces: [&[u8]; 4] = [
            b"GET /page.html HTTP/1.1\r\nHost: a.test\r\n\r\nGET /page.html HTTP/1.1\r\nHost: b.te",
            b"st\r\n\r\nGET /page.html HTTP/1.1\r\nHost: b.test",
            b"\x80\r\n\r\n",
            b"GET /page.html HTTP/1.1\r\nHost: b.test\r\n\r\n",
        ];
            for p in pieces {
                // A write of its own each (a few milliseconds apart): the server reads them apart.
                let _ = t.write_all(p);
                std::thread::sleep(Duration::from_millis(30));
            }
            let (got, _) = read_until_close(&mut t, Duration::from_secs(3));
            let a = answers(&got);
            let codes: Vec<u16> = a.iter().map(|x| x.0).collect();
            assert_eq!(
                codes,
                [200, 200, 400],
                "({b}) {:?}",
                String::from_utf8_lossy(&got)
            );
            assert_eq!(
                (a[0].1.as_str(), a[1].1.as_str()),
                ("<p>a</p>", "<p>b</p>"),
                "({b})"
            );
        },
    );
}

/// The target and the Host are taken from one UTF-8 check over the head up to the later of
/// them, rounded up to 16 bytes: text around them (valid UTF-8 or not, a character cut by the
/// rounding) changes nothing, and non-ASCII in the target or Host is still a 400.
#[test]
fn text_around_the_host_and_target_changes_nothing() {
    for_each_backend("text_around_the_host_and_target_changes_nothing", |b| {
        let s = Server::start(b, CONF, setup);
        let b_page = (200, "<p>b</p>".to_string());
        for pad in 0..20 {
            let x = "x".repeat(pad);
            for (before, after) in [
                (&b""[..], &b"X-After: \xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"[..]),
                (
                    b"X-Before: caf\xc3\xa9\r\n",
                    b"X-After: \xe2\x82\xac\xe2\x82\xac",
                ),
                (b"X-Before: \xff\xfe\r\n", b"X-After: ok"),
                (b"", b"X-After: \xf0\x9f\x98\x80\xf0\x9f\x98\x80"),
            ] {
                let mut v =
                    format!("GET /page.html?{x} HTTP/1.1\r\nConnection: close\r\n").into_bytes();
                v.extend_from_slice(before);
                v.extend_from_slice(b"Host: b.test\r\n");
                v.extend_from_slice(after);
                v.extend_from_slice(b"\r\n\r\n");
                assert_eq!(
                    one(s.port, &v),
                    b_page,
                    "({b}) {:?}",
                    String::from_utf8_lossy(&v)
                );
            }
        }
        for bad in [
            &b"GET /p\xc3\xa9.html HTTP/1.1\r\nHost: b.test\r\n\r\n"[..],
            b"GET /page.html HTTP/1.1\r\nHost: b.t\xc3\xa9st\r\n\r\n",
            b"GET /page.html HTTP/1.1\r\nX: caf\xc3\xa9\r\nHost: \xc3\xa9\r\n\r\n",
            b"GET http://b.test/page.html HTTP/1.1\r\nHost: a.t\xc3\xa9st\r\n\r\n",
            b"GET http://b.t\xc3\xa9st/page.html HTTP/1.1\r\nHost: b.test\r\n\r\n",
        ] {
            assert_eq!(
                one(s.port, bad).0,
                400,
                "({b}) {:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // Absolute-form: its authority routes (RFC 9112 §3.2.2), the Host is only checked.
        assert_eq!(
            one(
                s.port,
                b"GET http://b.test/page.html HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
            ),
            b_page,
            "({b})"
        );
    });
}

/// A request whose CGI answers with a local redirect after a reload is routed again under the
/// configuration it started with, while requests after the reload (their records taken from
/// the pool, one of them pooled under the old configuration) get the new one.
#[test]
fn a_local_redirect_after_a_reload_keeps_the_requests_config() {
    for_each_backend(
        "a_local_redirect_after_a_reload_keeps_the_requests_config",
        |b| {
            let s = Server::start(b, CONF, setup);
            let conf = s.dir.join("webserv.conf");
            let old = fs::read_to_string(&conf).unwrap();
            let mut c = common::Conn::open(s.port);
            c.send(b"GET /r/x.txt HTTP/1.1\r\nHost: a.test\r\n\r\n");
            assert_eq!(c.read_response().text(), "old root", "({b})");
            let _ = fs::remove_file(s.dir.join("started"));
            c.send(b"GET /cgi-bin/slow.sh HTTP/1.1\r\nHost: a.test\r\n\r\n");
            let until = Instant::now() + Duration::from_secs(5);
            while !s.dir.join("started").exists() {
                assert!(Instant::now() < until, "the script did not start ({b})");
                std::thread::sleep(Duration::from_millis(5));
            }
            // Another request while the script runs: its record goes back to the pool with the
            // old configuration, and is the one the first request after the reload takes.
            assert_eq!(
                get_host(s.port, "a.test", "/r/x.txt").text(),
                "old root",
                "({b})"
            );
            fs::write(&conf, old.replace("ROOT_MARK", "new")).unwrap();
            s.reload();
            assert_eq!(
                get_host(s.port, "a.test", "/r/x.txt").text(),
                "new root",
                "({b})"
            );
            let r = c.read_response();
            assert_eq!((r.status, r.text().as_str()), (200, "old root"), "({b})");
            c.send(b"GET /r/x.txt HTTP/1.1\r\nHost: a.test\r\n\r\n");
            assert_eq!(c.read_response().text(), "new root", "({b})");
            assert_eq!(
                get_host(s.port, "a.test", "/r/x.txt").text(),
                "new root",
                "({b})"
            );
        },
    );
}

/// Two workers, each counting in its own set: the page's totals are every request and every
/// connection, none lost, none twice, whichever worker answers the page.
#[test]
fn two_workers_count_every_request_once() {
    for_each_backend("two_workers_count_every_request_once", |b| {
        let conf = CONF.replace("workers 1;", "workers 2;").replace(
            "location /r/",
            "location = /status { status; }\n    location /r/",
        );
        let s = Server::start(b, &conf, setup);
        let value = |page: &str, key: &str| -> u64 {
            page.lines()
                .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
                .unwrap_or(0)
        };
        const GETS: &str = "webserv_requests_total{code=\"2xx\",method=\"GET\"}";
        const NOT_FOUND: &str = "webserv_requests_total{code=\"4xx\",method=\"GET\"}";
        let page = || get_host(s.port, "a.test", "/status?format=prometheus").text();
        // Settle: every page request so far counted (each is counted once it is answered):
        // a page shows exactly the one before it more.
        let mut p1 = page();
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(20));
            let p = page();
            let settled = value(&p, GETS) == value(&p1, GETS) + 1;
            p1 = p;
            if settled {
                break;
            }
        }
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let port = s.port;
                std::thread::spawn(move || {
                    for k in 0..25 {
                        let path = if (i + k) % 5 == 0 {
                            "/nope"
                        } else {
                            "/page.html"
                        };
                        get_host(port, "a.test", path);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // p1 itself, and each page asked for while waiting, count too.
        let (base, mut pages) = (value(&p1, GETS) + 80, 1);
        let want_404 = value(&p1, NOT_FOUND) + 20;
        let mut p2 = page();
        let until = Instant::now() + Duration::from_secs(3);
        while value(&p2, GETS) < base + pages && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
            p2 = page();
            pages += 1;
        }
        let want_gets = base + pages;
        assert_eq!(value(&p2, GETS), want_gets, "({b})\n{p2}");
        assert_eq!(value(&p2, NOT_FOUND), want_404, "({b})\n{p2}");
    });
}

/// A head cut mid-Host keeps its connection's parser while other connections on the same
/// worker take parsers from the pool and give them back (with other Hosts remembered, valid
/// and not): when the rest arrives, the head is read from where it was, by its own Host.
#[test]
fn a_partial_head_keeps_its_parser_while_others_come_and_go() {
    for_each_backend(
        "a_partial_head_keeps_its_parser_while_others_come_and_go",
        |b| {
            let s = Server::start(b, CONF, setup);
            let mut held = Vec::new();
            for cut in ["Host: b.te", "Host: b.test", "Ho", ""] {
                let mut c = common::Conn::open(s.port);
                c.send(
                    format!("GET /page.html?q=held-head HTTP/1.1\r\nX-Held: 1\r\n{cut}").as_bytes(),
                );
                held.push((c, cut));
            }
            std::thread::sleep(Duration::from_millis(50));
            for _ in 0..3 {
                assert_eq!(one(s.port, &with_host(b"a.test")).1, "<p>a</p>", "({b})");
                assert_eq!(one(s.port, &with_host(b"b.test@")).0, 400, "({b})");
                assert_eq!(one(s.port, &with_host(b"b.test")).1, "<p>b</p>", "({b})");
            }
            for (mut c, cut) in held {
                let rest = &"Host: b.test\r\nX-B: 2\r\n\r\n"[cut.len()..];
                c.send(rest.as_bytes());
                let r = c.read_response();
                assert_eq!(
                    (r.status, r.text().as_str()),
                    (200, "<p>b</p>"),
                    "{cut:?} ({b})"
                );
            }
        },
    );
}
