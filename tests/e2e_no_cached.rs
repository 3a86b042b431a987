//! Issue 16 on kernels that cannot answer from their caches alone: without `RESOLVE_CACHED`
//! (Linux < 5.12, the BSDs) every lookup goes off the loop's thread (`Op::OpenAt`), and the
//! held request is routed again with that open's answer; without `cachestat` (Linux < 6.5) no
//! file is sent by sendfile(2) — its pages are read by `Op::Read` — and the small-file cache
//! is filled only by a read that cannot wait (`RWF_NOWAIT`). `WEBSERV_NO_CACHED_CALLS=1`
//! makes this kernel behave so; every kind of request must answer as on any other, and the
//! status page's op counts show the work went through the backend.

mod common;

use common::*;
use std::fs;
use std::path::Path;

const CONF: &str = "{BASE}
workers 1;
server {
    listen 127.0.0.1:{PORT};
    root www;
    index index.html;
    location / { }
    location /list/ { autoindex on; }
    location /tf/ { try_files $uri /tf/fallback.txt; }
    location /up/ {
        allow_methods GET HEAD PUT POST DELETE;
        upload_store www/up;
    }
    location = /status { status; }
}
";

fn setup(dir: &Path) {
    fs::create_dir_all(dir.join("www/up")).unwrap();
    write_file(dir, "www/index.html", "root index");
    write_file(dir, "www/small.txt", "small file");
    let big: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(dir.join("www/big.bin"), big).unwrap();
    write_file(dir, "www/list/a.txt", "a");
    write_file(dir, "www/list/b.txt", "bb");
    write_file(dir, "www/tf/here.txt", "here");
    write_file(dir, "www/tf/fallback.txt", "fallback");
}

fn big() -> Vec<u8> {
    (0..600_000u32).map(|i| (i % 251) as u8).collect()
}

#[test]
fn without_cached_calls_every_request_answers_through_backend_ops() {
    for_each_backend(
        "without_cached_calls_every_request_answers_through_backend_ops",
        |b| {
            let s = Server::start_env(
                b,
                CONF,
                setup,
                &["--debug"],
                false,
                &[("WEBSERV_NO_CACHED_CALLS", "1")],
            );
            let before = ops_submitted(s.port);
            let r = get(s.port, "/small.txt");
            assert_eq!((r.status, r.text()), (200, "small file".into()), "[{b}]");
            // Twice: the second may come from the small-file cache.
            let r = get(s.port, "/small.txt");
            assert_eq!((r.status, r.text()), (200, "small file".into()), "[{b}]");
            let r = get(s.port, "/big.bin");
            assert_eq!(r.status, 200, "[{b}]");
            assert!(r.body == big(), "[{b}] big.bin: {} bytes", r.body.len());
            let r = request(
                s.port,
                b"GET /big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=100000-100009\r\nConnection: close\r\n\r\n",
            );
            assert_eq!(r.status, 206, "[{b}]");
            assert_eq!(r.body, big()[100_000..100_010], "[{b}]");
            let r = request(
                s.port,
                b"HEAD /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            );
            assert_eq!(r.status, 200, "[{b}]");
            assert_eq!(r.header("Content-Length"), Some("600000"), "[{b}]");
            assert!(r.body.is_empty(), "[{b}]");
            let r = get(s.port, "/");
            assert_eq!((r.status, r.text()), (200, "root index".into()), "[{b}]");
            assert_eq!(get(s.port, "/missing").status, 404, "[{b}]");
            let r = get(s.port, "/list/");
            assert_eq!(r.status, 200, "[{b}]");
            assert!(
                r.text().contains("<a href=\"a.txt\">a.txt</a>")
                    && r.text().contains("<a href=\"b.txt\">b.txt</a>"),
                "[{b}] {}",
                r.text()
            );
            let r = get(s.port, "/tf/here.txt");
            assert_eq!((r.status, r.text()), (200, "here".into()), "[{b}]");
            let r = get(s.port, "/tf/nothing.txt");
            assert_eq!((r.status, r.text()), (200, "fallback".into()), "[{b}]");
            let put = |body: &str| {
                request(
                    s.port,
                    format!(
                        "PUT /up/p.txt HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .status
            };
            assert_eq!(put("one"), 201, "[{b}]");
            assert_eq!(put("two"), 204, "[{b}]");
            assert_eq!(
                fs::read(s.dir.join("www/up/p.txt")).unwrap(),
                b"two",
                "[{b}]"
            );
            let r = get(s.port, "/up/p.txt");
            assert_eq!((r.status, r.text()), (200, "two".into()), "[{b}]");
            let del = || {
                request(
                    s.port,
                    b"DELETE /up/p.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                )
                .status
            };
            assert_eq!(del(), 204, "[{b}]");
            assert_eq!(del(), 404, "[{b}]");
            assert!(!s.dir.join("www/up/p.txt").exists(), "[{b}]");
            let after = ops_submitted(s.port);
            let d =
                |k: &str| after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
            // Every lookup went through the backend: at least one open per request above
            // (16 requests; a directory and its index file, a try_files check and its
            // answer, a store and its target name each take one more).
            assert!(d("openat") >= 16, "[{b}] lookups as ops: {after:?}");
            assert_eq!(d("listdir"), 1, "[{b}] {after:?}");
            // Without cachestat nothing is sendfile'd: big.bin's 600 KB came by reads.
            assert_eq!(d("sendfile"), 0, "[{b}] {after:?}");
            assert!(d("read") >= 3, "[{b}] file reads as ops: {after:?}");
            let log = s.log();
            assert!(
                !log.contains("routed with blocking calls"),
                "[{b}] a request fell back to blocking lookups:\n{log}"
            );
        },
    );
}
