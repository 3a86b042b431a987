//! HTTP/1.1 connection behaviour: keep-alive, close, pipelining, body limits, chunked uploads,
//! 100-continue, and the status codes for requests the server must refuse.

mod common;

use common::*;
use std::path::Path;

const CONF: &str = "{BASE}
keepalive_timeout 30s;
server {
    listen 127.0.0.1:{PORT};
    root www;
    location / { }
    location = /status { status; }
    location /up/ { allow_methods GET PUT; upload_store up; client_max_body_size 1k; }
    location /big/ { allow_methods PUT; upload_store big; client_max_body_size 10m; }
}
";

fn setup(dir: &Path) {
    write_file(dir, "www/a.txt", "file a");
    write_file(dir, "www/b.txt", "file b");
    for i in 0..100 {
        write_file(dir, &format!("www/p/{i}.txt"), format!("pipelined {i}"));
    }
    std::fs::create_dir_all(dir.join("up")).unwrap();
    std::fs::create_dir_all(dir.join("big")).unwrap();
}

fn start(backend: &str) -> Server {
    Server::start(backend, CONF, setup)
}

#[test]
fn keep_alive_serves_several_requests() {
    for_each_backend("keep_alive_serves_several_requests", |b| {
        let s = start(b);
        let mut c = Conn::open(s.port);
        c.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n");
        let r = c.read_response();
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(r.text(), "file a");
        assert_ne!(
            r.header("connection").map(|v| v.to_ascii_lowercase()),
            Some("close".into())
        );
        c.send(b"GET /b.txt HTTP/1.1\r\nHost: x\r\n\r\n");
        let r = c.read_response();
        assert_eq!(r.text(), "file b");
        c.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let r = c.read_response();
        assert_eq!(r.text(), "file a");
        assert!(c.is_closed(), "connection open after Connection: close");
    });
}

#[test]
fn connection_close_is_honoured() {
    for_each_backend("connection_close_is_honoured", |b| {
        let s = start(b);
        let mut c = Conn::open(s.port);
        c.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let r = c.read_response();
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "file a");
        assert!(c.is_closed(), "connection open after Connection: close");
    });
}

#[test]
fn http10_closes_by_default() {
    for_each_backend("http10_closes_by_default", |b| {
        let s = start(b);
        let mut c = Conn::open(s.port);
        c.send(b"GET /a.txt HTTP/1.0\r\n\r\n");
        let r = c.read_response();
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(r.text(), "file a");
        assert!(c.is_closed(), "HTTP/1.0 connection left open");

        // ... unless the client asks for keep-alive.
        let mut c = Conn::open(s.port);
        c.send(b"GET /a.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(c.read_response().text(), "file a");
        c.send(b"GET /b.txt HTTP/1.0\r\n\r\n");
        assert_eq!(c.read_response().text(), "file b");
        assert!(c.is_closed());
    });
}

#[test]
fn hundred_pipelined_requests_answered_in_order() {
    for_each_backend("hundred_pipelined_requests_answered_in_order", |b| {
        let s = start(b);
        let mut all = Vec::new();
        for i in 0..100 {
            let close = if i == 99 { "Connection: close\r\n" } else { "" };
            all.extend_from_slice(
                format!("GET /p/{i}.txt HTTP/1.1\r\nHost: x\r\n{close}\r\n").as_bytes(),
            );
        }
        let mut c = Conn::open(s.port);
        c.send(&all);
        for i in 0..100 {
            let r = c.read_response();
            assert_eq!(r.status, 200, "response #{i}:\n{}", r.dump());
            assert_eq!(
                r.text(),
                format!("pipelined {i}"),
                "response #{i} out of order"
            );
        }
        assert!(c.is_closed());
    });
}

/// Requests that arrive together are all answered before the first send: one write for the
/// batch, not the first response alone and then the rest (the status page counts the sends).
#[test]
fn pipelined_batch_is_answered_in_one_send() {
    for_each_backend("pipelined_batch_is_answered_in_one_send", |b| {
        let s = start(b);
        let mut c = Conn::open(s.port);
        for _ in 0..2 {
            // Warm: the file is in the small-file cache, so every answer is ready at once.
            c.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n");
            assert_eq!(c.read_response().status, 200);
        }
        let before = ops_submitted(s.port);
        c.send(&b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n".repeat(16));
        for i in 0..16 {
            let r = c.read_response();
            assert_eq!((r.status, r.text()), (200, "file a".into()), "[{b}] #{i}");
        }
        let after = ops_submitted(s.port);
        let sends = after["send"] - before["send"];
        // One for the batch, one for the first status page (the second one's own send is
        // submitted after it counted).
        assert_eq!(sends, 2, "[{b}] sends: {before:?} -> {after:?}");
    });
}

#[test]
fn content_length_over_limit_gets_413_and_close() {
    for_each_backend("content_length_over_limit_gets_413_and_close", |b| {
        let s = start(b);
        let mut c = Conn::open(s.port);
        // Headers only: the server must answer before reading any body.
        c.send(b"PUT /up/toolarge HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n");
        let r = c.read_response();
        assert_eq!(r.status, 413, "{}", r.dump());
        assert!(c.is_closed(), "connection open after 413");
        assert!(
            !s.dir.join("up/toolarge").exists(),
            "oversized upload stored"
        );
    });
}

#[test]
fn content_length_over_limit_sent_eagerly_still_readable_413() {
    for_each_backend(
        "content_length_over_limit_sent_eagerly_still_readable_413",
        |b| {
            let s = start(b);
            let mut c = Conn::open(s.port);
            // A client (like curl without Expect) that sends the body right away must still be
            // able to read the 413 rather than see a reset (nginx's lingering close).
            let mut req =
                b"PUT /up/eager HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\n\r\n".to_vec();
            req.extend(std::iter::repeat_n(b'e', 65536));
            let _ = c.try_send(&req);
            let r = c
                .try_read_response()
                .unwrap_or_else(|e| panic!("413 not readable: {e}"));
            assert_eq!(r.status, 413, "{}", r.dump());
            assert!(!s.dir.join("up/eager").exists(), "oversized upload stored");
        },
    );
}

#[test]
fn chunked_body_over_limit_gets_413_and_close() {
    for_each_backend("chunked_body_over_limit_gets_413_and_close", |b| {
        let s = start(b);
        let mut c = Conn::open(s.port);
        let mut req =
            b"PUT /up/chunky HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        req.extend_from_slice(b"200\r\n");
        req.extend(std::iter::repeat_n(b'c', 0x200));
        req.extend_from_slice(b"\r\n800\r\n");
        req.extend(std::iter::repeat_n(b'd', 0x800));
        req.extend_from_slice(b"\r\n");
        // No last chunk: the limit (1k) is already exceeded, so the server must not wait for it.
        c.send(&req);
        let r = c.read_response();
        assert_eq!(r.status, 413, "{}", r.dump());
        assert!(c.is_closed(), "connection open after 413");
        assert!(!s.dir.join("up/chunky").exists(), "oversized upload stored");
    });
}

fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].min(rest.len());
        if i == 1 {
            // A chunk extension, which the decoder must skip.
            out.extend_from_slice(format!("{n:x};name=value\r\n").as_bytes());
        } else {
            out.extend_from_slice(format!("{n:X}\r\n").as_bytes());
        }
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
        i += 1;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[test]
fn chunked_put_is_decoded_and_stored() {
    for_each_backend("chunked_put_is_decoded_and_stored", |b| {
        let s = start(b);
        let body: Vec<u8> = (0..700u32).map(|i| (i % 256) as u8).collect();
        let mut req =
            b"PUT /up/stored.bin HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        req.extend(chunked(&body, &[1, 100, 17, 300]));
        let mut c = Conn::open(s.port);
        c.send(&req);
        let r = c.read_response();
        assert_eq!(r.status, 201, "{}", r.dump());
        let stored = std::fs::read(s.dir.join("up/stored.bin")).expect("file stored");
        assert!(
            stored == body,
            "stored {} bytes, differ from sent",
            stored.len()
        );

        // Same name again on the same connection: replaced, 204.
        let mut req = b"PUT /up/stored.bin HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
        req.extend(chunked(b"replacement", &[4]));
        c.send(&req);
        let r = c.read_response();
        assert_eq!(r.status, 204, "{}", r.dump());
        assert_eq!(
            std::fs::read(s.dir.join("up/stored.bin")).unwrap(),
            b"replacement"
        );
    });
}

#[test]
fn large_chunked_put_streams_to_disk() {
    for_each_backend("large_chunked_put_streams_to_disk", |b| {
        let s = start(b);
        let body: Vec<u8> = (0..3_000_000u32).map(|i| (i * 31 % 253) as u8).collect();
        let mut req =
            b"PUT /big/large.bin HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                .to_vec();
        req.extend(chunked(&body, &[65536, 1000, 12345]));
        let mut c = Conn::open(s.port);
        c.send(&req);
        let r = c.read_response();
        assert_eq!(r.status, 201, "{}", r.dump());
        let stored = std::fs::read(s.dir.join("big/large.bin")).expect("file stored");
        assert_eq!(stored.len(), body.len());
        assert!(stored == body, "stored bytes differ");
    });
}

#[test]
fn expect_100_continue() {
    for_each_backend("expect_100_continue", |b| {
        let s = start(b);
        let mut c = Conn::open(s.port);
        c.send(
            b"PUT /up/cont.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n",
        );
        let r = c.read_response();
        assert_eq!(r.status, 100, "{}", r.dump());
        assert_eq!(r.version, "HTTP/1.1");
        c.send(b"hello world");
        let r = c.read_response();
        assert_eq!(r.status, 201, "{}", r.dump());
        assert_eq!(
            std::fs::read(s.dir.join("up/cont.txt")).unwrap(),
            b"hello world"
        );

        // Over the limit: 413 straight away, no 100 first.
        let mut c = Conn::open(s.port);
        c.send(
            b"PUT /up/no.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\nExpect: 100-continue\r\n\r\n",
        );
        let r = c.read_response();
        assert_eq!(r.status, 413, "{}", r.dump());
        assert!(!s.dir.join("up/no.txt").exists());
    });
}

#[test]
fn malformed_request_gets_400_and_close() {
    for_each_backend("malformed_request_gets_400_and_close", |b| {
        let s = start(b);
        let bad: [&[u8]; 6] = [
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
            b"GET /a.txt HTTP/1.1\r\nHost : x\r\n\r\n",
            b"GET /a.txt HTTP/1.1\r\n\r\n",
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
            b"GET a.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        ];
        for req in bad {
            let mut all = req.to_vec();
            all.extend_from_slice(b"GET /b.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let raw = send_raw(s.port, &all);
            let resps = parse_responses(&raw);
            let shown = String::from_utf8_lossy(req);
            assert_eq!(
                resps.len(),
                1,
                "{shown:?}: want exactly one response (400, then close), got:\n{}",
                String::from_utf8_lossy(&raw)
            );
            assert_eq!(resps[0].status, 400, "{shown:?}:\n{}", resps[0].dump());
        }
    });
}

fn status_of(port: u16, req: &[u8]) -> Response {
    request(port, req)
}

#[test]
fn unsupported_version_505() {
    for_each_backend("unsupported_version_505", |b| {
        let s = start(b);
        let r = status_of(s.port, b"GET /a.txt HTTP/2.0\r\nHost: x\r\n\r\n");
        assert_eq!(r.status, 505, "{}", r.dump());
    });
}

#[test]
fn not_implemented_501() {
    for_each_backend("not_implemented_501", |b| {
        let s = start(b);
        let r = status_of(
            s.port,
            b"FOO /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(r.status, 501, "unknown method:\n{}", r.dump());
        let r = status_of(
            s.port,
            b"PUT /up/g HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n",
        );
        // RFC 9112 §6.1: a coding we do not implement (before the final chunked) → 501.
        // (A list whose last coding is not chunked is a 400: RFC 9112 §6.3, e2e_conformance.)
        assert_eq!(
            r.status,
            501,
            "Transfer-Encoding: gzip, chunked:\n{}",
            r.dump()
        );
        assert!(!s.dir.join("up/g").exists());
    });
}

#[test]
fn too_many_headers_431() {
    for_each_backend("too_many_headers_431", |b| {
        let s = start(b);
        let mut req = b"GET /a.txt HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..150 {
            req.extend_from_slice(format!("X-Header-{i}: v\r\n").as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        let r = status_of(s.port, &req);
        assert_eq!(r.status, 431, "{}", r.dump());
    });
}

#[test]
fn long_request_line_414() {
    for_each_backend("long_request_line_414", |b| {
        let s = start(b);
        let path = format!("/{}", "a".repeat(9 * 1024));
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        let r = status_of(s.port, req.as_bytes());
        assert_eq!(r.status, 414, "{}", r.dump());
    });
}

#[test]
fn sigterm_exits_zero() {
    for_each_backend("sigterm_exits_zero", |b| {
        let mut s = start(b);
        assert_eq!(get(s.port, "/a.txt").text(), "file a");
        let status = s.terminate().expect("server still running before SIGTERM");
        assert!(status.success(), "exit after SIGTERM: {status}");
    });
}

#[test]
fn request_trickled_byte_by_byte() {
    for_each_backend("request_trickled_byte_by_byte", |b| {
        let s = start(b);
        let mut c = Conn::open(s.port);
        let req = b"GET /a.txt HTTP/1.1\r\nHost: x\r\nUser-Agent: trickle\r\n\r\nGET /b.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        for byte in req.iter() {
            c.send(std::slice::from_ref(byte));
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert_eq!(c.read_response().text(), "file a");
        assert_eq!(c.read_response().text(), "file b");
        assert!(c.is_closed());
    });
}

#[test]
fn connection_survives_error_responses() {
    for_each_backend("connection_survives_error_responses", |b| {
        let s = start(b);
        let mut c = Conn::open(s.port);
        c.send(b"GET /missing.txt HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(c.read_response().status, 404);
        c.send(b"PUT /up/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(c.read_response().status, 409, "PUT to a directory");
        c.send(b"POST /up/x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(
            c.read_response().status,
            405,
            "POST where only GET PUT are allowed"
        );
        c.send(b"GET /a.txt?x=1&y=2 HTTP/1.1\r\nHost: x\r\n\r\n");
        let r = c.read_response();
        assert_eq!(r.status, 200, "query string:\n{}", r.dump());
        assert_eq!(r.text(), "file a");
        c.send(b"HEAD /missing.txt HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(c.read_response_head(true).status, 404);
        // A body after the HEAD 404 would break this next parse.
        c.send(b"GET /b.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assert_eq!(c.read_response().text(), "file b");
    });
}

#[test]
fn expect_100_continue_answered_when_body_is_refused() {
    for_each_backend("expect_100_continue_answered_when_body_is_refused", |b| {
        let s = start(b);
        let mut c = Conn::open(s.port);
        c.send(
            b"PUT /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        );
        // RFC 9110 §10.1.1: the server MUST answer at once, either with the final status
        // (it is known from the head alone) or with 100 Continue first.
        let mut r = c.read_response();
        if r.status == 100 {
            c.send(b"abcde");
            r = c.read_response();
        }
        assert_eq!(r.status, 405, "{}", r.dump());
        assert_eq!(
            std::fs::read_to_string(s.dir.join("www/a.txt")).unwrap(),
            "file a"
        );
    });
}

#[test]
fn delete_without_allow_methods_keeps_static_files() {
    for_each_backend("delete_without_allow_methods_keeps_static_files", |b| {
        let s = start(b);
        // `location / { }` has no allow_methods and no upload_store: a plain static location.
        // As in nginx (no dav_methods), DELETE there is 405 and the file stays.
        let r = request(
            s.port,
            b"DELETE /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(
            s.dir.join("www/a.txt").exists(),
            "DELETE removed a static file (status {})",
            r.status
        );
        assert_eq!(r.status, 405, "{}", r.dump());
    });
}

#[test]
fn many_concurrent_keep_alive_clients() {
    for_each_backend("many_concurrent_keep_alive_clients", |b| {
        let s = start(b);
        let port = s.port;
        let threads: Vec<_> = (0..32)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut c = Conn::open(port);
                    for i in 0..20 {
                        let n = (t * 20 + i) % 100;
                        c.send(format!("GET /p/{n}.txt HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
                        let r = c.read_response();
                        assert_eq!(r.text(), format!("pipelined {n}"), "client {t} request {i}");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("client thread failed");
        }
    });
}

const TIMEOUTS: &str = "{BASE}
keepalive_timeout 1s;
client_header_timeout 1s;
server {
    listen 127.0.0.1:{PORT};
    root www;
}
";

#[test]
fn idle_and_stalled_connections_are_closed() {
    for_each_backend("idle_and_stalled_connections_are_closed", |b| {
        let s = Server::start(b, TIMEOUTS, setup);
        // Idle keep-alive connection: closed after keepalive_timeout.
        let mut c = Conn::open(s.port);
        c.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(c.read_response().text(), "file a");
        std::thread::sleep(std::time::Duration::from_millis(1500));
        assert!(
            c.is_closed(),
            "idle connection outlived keepalive_timeout 1s"
        );

        // Half a request head: closed after client_header_timeout (a 408 may precede it).
        let mut c = Conn::open(s.port);
        c.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n");
        std::thread::sleep(std::time::Duration::from_millis(1500));
        if let Ok(r) = c.try_read_response() {
            assert_eq!(r.status, 408, "{}", r.dump());
        }
        assert!(
            c.is_closed(),
            "stalled head outlived client_header_timeout 1s"
        );
    });
}
