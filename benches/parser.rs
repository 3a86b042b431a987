//! Request-head parsing: webserv's `HeadParser` against httparse on the same inputs.
//!
//! Run: `cargo bench --bench parser -j2`. Both parsers get the whole head in one buffer
//! (the common case: one recv holds it) and stop at the end of the head. Both have room for
//! 100 header fields, our limit; `httparse_16_slots` shows httparse with a small array.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use webserv::http::{HeadParser, Status};

const BROWSER: &[u8] = b"GET /wiki/Hypertext_Transfer_Protocol HTTP/1.1\r\n\
Host: en.wikipedia.org\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://www.google.com/\r\n\
Connection: keep-alive\r\n\
Cookie: WMF-Last-Access=01-Jan-2025; GeoIP=US:CA:San_Francisco:37.77:-122.42:v4\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\n\
If-Modified-Since: Sat, 28 Dec 2024 10:00:00 GMT\r\n\r\n";

const MINIMAL: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

const CHUNKED_POST: &[u8] = b"POST /cgi-bin/upload.py?dir=incoming HTTP/1.1\r\n\
Host: localhost:8080\r\n\
User-Agent: curl/8.11.1\r\n\
Accept: */*\r\n\
Content-Type: application/octet-stream\r\n\
Transfer-Encoding: chunked\r\n\
Expect: 100-continue\r\n\r\n";

fn ours(input: &[u8]) -> usize {
    let mut p = HeadParser::new();
    match p.parse(black_box(input)) {
        Ok(Status::Complete(r, n)) => r.header_count() + n,
        _ => unreachable!(),
    }
}

fn theirs(input: &[u8]) -> usize {
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut r = httparse::Request::new(&mut headers);
    match r.parse(black_box(input)) {
        Ok(httparse::Status::Complete(n)) => r.headers.len() + n,
        _ => unreachable!(),
    }
}

/// httparse with a 16-slot header array: less set-up work than our fixed 100 slots.
fn theirs_16(input: &[u8]) -> usize {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut r = httparse::Request::new(&mut headers);
    match r.parse(black_box(input)) {
        Ok(httparse::Status::Complete(n)) => r.headers.len() + n,
        _ => unreachable!(),
    }
}

fn bench(c: &mut Criterion) {
    for (name, input) in [
        ("browser_get", BROWSER),
        ("minimal_get", MINIMAL),
        ("chunked_post", CHUNKED_POST),
    ] {
        assert_eq!(
            ours(input),
            theirs(input),
            "{name}: both parsers must agree"
        );
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function("webserv", |b| b.iter(|| ours(input)));
        g.bench_function("httparse", |b| b.iter(|| theirs(input)));
        g.bench_function("httparse_16_slots", |b| b.iter(|| theirs_16(input)));
        g.bench_function("webserv+analyze", |b| {
            b.iter(|| {
                let mut p = HeadParser::new();
                match p.parse(black_box(input)) {
                    Ok(Status::Complete(r, _)) => r.analyze().is_ok(),
                    _ => unreachable!(),
                }
            })
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
