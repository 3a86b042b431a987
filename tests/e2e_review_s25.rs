//! Pipelined batches answered before the first send (`Conn::drive`): whatever a batch mixes
//! (cached files, sendfile, HEAD, 304, errors, uploads), its answers leave whole and in order;
//! a batch deeper than one drive's bound is answered to the end; an error that closes ends the
//! batch after the answers before it.

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

const CONF: &str = "{BASE}
keepalive_timeout 30s;
server {
    listen 127.0.0.1:{PORT};
    root www;
    location / { }
    location /up/ { allow_methods GET PUT; upload_store up; client_max_body_size 1k; }
}
";

const BIG: usize = 300 * 1024;

fn big() -> Vec<u8> {
    (0..BIG).map(|i| (i % 251) as u8).collect()
}

fn setup(dir: &Path) {
    write_file(dir, "www/a.txt", "file a");
    write_file(dir, "www/b.txt", "file b");
    write_file(dir, "www/big.bin", big());
    for i in 0..150 {
        write_file(dir, &format!("www/p/{i}.txt"), format!("pipelined {i}"));
    }
    std::fs::create_dir_all(dir.join("up")).unwrap();
}

/// Writes `req` on a fresh connection and shuts the write side (the client's FIN), then reads
/// until the server closes or 3 s pass without a byte: the responses, and whether it closed.
fn exchange_then_fin(port: u16, req: &[u8]) -> (Vec<Response>, bool) {
    let mut t = connect_with_timeout(port, Duration::from_secs(5));
    std::io::Write::write_all(&mut t, req).unwrap();
    t.shutdown(std::net::Shutdown::Write).unwrap();
    let (bytes, closed) = read_until_close(&mut t, Duration::from_secs(3));
    (parse_responses(&bytes), closed)
}

/// One write holding a cached small file, a big file (sendfile), HEAD, a 304, a 404, an upload
/// by Content-Length and one chunked: every answer in order, uploads on disk.
#[test]
fn mixed_pipeline_is_answered_whole_and_in_order() {
    for_each_backend("mixed_pipeline_is_answered_whole_and_in_order", |b| {
        let s = Server::start(b, CONF, setup);
        let mut c = Conn::open(s.port);
        c.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n");
        let r = c.read_response();
        let etag = r.must_header("etag").to_string();
        let mut req = Vec::new();
        req.extend_from_slice(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n");
        req.extend_from_slice(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n");
        req.extend_from_slice(b"HEAD /big.bin HTTP/1.1\r\nHost: x\r\n\r\n");
        req.extend_from_slice(
            format!("GET /a.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n").as_bytes(),
        );
        req.extend_from_slice(b"GET /nope.txt HTTP/1.1\r\nHost: x\r\n\r\n");
        req.extend_from_slice(
            b"PUT /up/cl.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        );
        req.extend_from_slice(
            b"PUT /up/ch.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        );
        req.extend_from_slice(b"GET /b.txt HTTP/1.1\r\nHost: x\r\n\r\n");
        c.send(&req);
        let r = c.read_response();
        assert_eq!((r.status, r.text()), (200, "file a".into()), "[{b}] #0");
        let r = c.read_response();
        assert_eq!(r.status, 200, "[{b}] #1 big");
        assert!(
            r.body == big(),
            "[{b}] #1 big body of {} bytes",
            r.body.len()
        );
        let r = c.read_response_head(true);
        assert_eq!(r.status, 200, "[{b}] #2 HEAD");
        assert_eq!(
            r.header("content-length"),
            Some(BIG.to_string().as_str()),
            "[{b}] #2"
        );
        assert!(r.body.is_empty(), "[{b}] #2 HEAD with a body");
        let r = c.read_response();
        assert_eq!((r.status, r.body.len()), (304, 0), "[{b}] #3 304");
        let r = c.read_response();
        assert_eq!(r.status, 404, "[{b}] #4");
        let r = c.read_response();
        assert!(
            matches!(r.status, 200 | 201 | 204),
            "[{b}] #5 PUT: {}",
            r.dump()
        );
        let r = c.read_response();
        assert!(
            matches!(r.status, 200 | 201 | 204),
            "[{b}] #6 PUT: {}",
            r.dump()
        );
        let r = c.read_response();
        assert_eq!((r.status, r.text()), (200, "file b".into()), "[{b}] #7");
        assert_eq!(
            std::fs::read(s.dir.join("up/cl.txt")).unwrap(),
            b"hello",
            "[{b}]"
        );
        assert_eq!(
            std::fs::read(s.dir.join("up/ch.txt")).unwrap(),
            b"abcde",
            "[{b}]"
        );
    });
}

/// 150 requests in one write (more than one drive's 64 turns), then the client's FIN: all
/// 150 answered in order, then the server closes.
#[test]
fn deep_pipeline_then_fin_is_answered_to_the_end() {
    for_each_backend("deep_pipeline_then_fin_is_answered_to_the_end", |b| {
        let s = Server::start(b, CONF, setup);
        let mut req = Vec::new();
        for i in 0..150 {
            req.extend_from_slice(format!("GET /p/{i}.txt HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        }
        let (rs, closed) = exchange_then_fin(s.port, &req);
        assert_eq!(rs.len(), 150, "[{b}] answers (closed: {closed})");
        for (i, r) in rs.iter().enumerate() {
            assert_eq!(
                (r.status, r.text()),
                (200, format!("pipelined {i}")),
                "[{b}] #{i}"
            );
        }
        assert!(closed, "[{b}] open after the batch and the client's FIN");
    });
}

/// A malformed head in the middle of a batch: the answers before it, its 400, and the close;
/// nothing after it is answered.
#[test]
fn bad_head_mid_batch_closes_after_the_answers_before_it() {
    for_each_backend(
        "bad_head_mid_batch_closes_after_the_answers_before_it",
        |b| {
            let s = Server::start(b, CONF, setup);
            let mut req = b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n".repeat(3);
            req.extend_from_slice(b"GARBAGE\r\n\r\n");
            req.extend_from_slice(b"GET /b.txt HTTP/1.1\r\nHost: x\r\n\r\n");
            let (bytes, closed) = exchange(s.port, &req, Duration::from_secs(3));
            let rs = parse_responses(&bytes);
            let got: Vec<u16> = rs.iter().map(|r| r.status).collect();
            assert_eq!(got, [200, 200, 200, 400], "[{b}]");
            assert!(closed, "[{b}] open after a 400");
        },
    );
}

/// A batch whose last head is cut short, then the client's FIN: the complete requests are
/// answered (queued before the first send), then the server closes.
#[test]
fn batch_cut_mid_head_then_fin_answers_the_complete_ones() {
    for_each_backend(
        "batch_cut_mid_head_then_fin_answers_the_complete_ones",
        |b| {
            let s = Server::start(b, CONF, setup);
            let mut req = b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n".repeat(3);
            req.extend_from_slice(b"GET /b.txt HTTP/1.1\r\nHo");
            let (rs, closed) = exchange_then_fin(s.port, &req);
            let got: Vec<(u16, String)> = rs.iter().map(|r| (r.status, r.text())).collect();
            assert_eq!(got, vec![(200, "file a".to_string()); 3], "[{b}]");
            assert!(closed, "[{b}] open after the client's FIN");
        },
    );
}
