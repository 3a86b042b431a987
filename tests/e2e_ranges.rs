//! Several ranges (`multipart/byteranges`, `max_ranges`) and preconditions (`If-Match`,
//! `If-Unmodified-Since` → 412 on GET; `If-Match` / `If-None-Match` on PUT and DELETE) as a
//! client sees them.

mod common;

use common::*;
use std::path::Path;

const CONF: &str = "{BASE}
server {
    listen 127.0.0.1:{PORT};
    server_name localhost;
    root www;
    location / { }
    location /two/ { max_ranges 2; }
    location /none/ { max_ranges 0; }
    location /store/ {
        allow_methods GET PUT DELETE;
        upload_store www/store;
    }
}
";

const DIGITS: &str = "0123456789abcdefghijklmnopqrstuvwxyz";

fn setup(dir: &Path) {
    write_file(dir, "www/d.txt", DIGITS);
    write_file(dir, "www/two/d.txt", DIGITS);
    write_file(dir, "www/none/d.txt", DIGITS);
    write_file(dir, "www/store/keep.txt", "v1");
    write_file(dir, "www/store/gone.txt", "bye");
    // Past the small-file cache (64 KiB): streamed from disk.
    write_file(dir, "www/big.bin", big());
}

/// 600 KiB (more than one 256 KiB read piece) whose every byte says where it is.
fn big() -> Vec<u8> {
    (0..600 * 1024u32).map(|i| (i % 251) as u8).collect()
}

fn get_with(port: u16, path: &str, headers: &str) -> Response {
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n");
    request(port, req.as_bytes())
}

#[test]
fn multiple_ranges_are_multipart_byteranges() {
    for_each_backend("multiple_ranges_are_multipart_byteranges", |be| {
        let s = Server::start(be, CONF, setup);
        let r = get_with(s.port, "/d.txt", "Range: bytes=0-2, 10-12,-3\r\n");
        assert_eq!(r.status, 206, "{}", r.dump());
        let ct = r.must_header("Content-Type");
        let boundary = ct
            .strip_prefix("multipart/byteranges; boundary=")
            .unwrap_or_else(|| panic!("{ct}"));
        assert!(!boundary.is_empty());
        assert_eq!(r.header("Content-Range"), None);
        let want = format!(
            "--{b}\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-2/36\r\n\r\n012\r\n\
             --{b}\r\nContent-Type: text/plain\r\nContent-Range: bytes 10-12/36\r\n\r\nabc\r\n\
             --{b}\r\nContent-Type: text/plain\r\nContent-Range: bytes 33-35/36\r\n\r\nxyz\r\n\
             --{b}--\r\n",
            b = boundary
        );
        assert_eq!(r.text(), want);
        assert_eq!(r.must_header("Content-Length"), want.len().to_string());
        // One satisfiable range among unsatisfiable ones: a plain 206.
        let r = get_with(s.port, "/d.txt", "Range: bytes=100-200,5-6\r\n");
        assert_eq!(r.status, 206, "{}", r.dump());
        assert_eq!(r.header("Content-Range"), Some("bytes 5-6/36"));
        assert_eq!(r.text(), "56");
        // None satisfiable: 416.
        let r = get_with(s.port, "/d.txt", "Range: bytes=100-200,300-\r\n");
        assert_eq!(r.status, 416, "{}", r.dump());
        assert_eq!(r.header("Content-Range"), Some("bytes */36"));
        // Asking for more bytes than the file has (overlaps): the whole file.
        let r = get_with(s.port, "/d.txt", "Range: bytes=0-35,0-35\r\n");
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(r.text(), DIGITS);
    });
}

/// The parts of a multipart/byteranges body: (Content-Range, bytes), checked for framing.
fn split_multipart(r: &Response) -> Vec<(String, Vec<u8>)> {
    let ct = r.must_header("Content-Type");
    let b = ct.strip_prefix("multipart/byteranges; boundary=").unwrap();
    let delim = format!("--{b}\r\n");
    let end = format!("\r\n--{b}--\r\n");
    assert!(r.body.ends_with(end.as_bytes()), "no closing delimiter");
    let mut rest = &r.body[..r.body.len() - end.len()];
    let mut out = Vec::new();
    let mut first = true;
    loop {
        let sep = if first {
            delim.clone()
        } else {
            format!("\r\n{delim}")
        };
        first = false;
        assert!(rest.starts_with(sep.as_bytes()), "part delimiter missing");
        rest = &rest[sep.len()..];
        let hend = rest.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = std::str::from_utf8(&rest[..hend]).unwrap();
        let cr = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Range: "))
            .unwrap()
            .to_string();
        rest = &rest[hend + 4..];
        let (s, e) = cr
            .strip_prefix("bytes ")
            .and_then(|x| x.split('/').next())
            .and_then(|x| x.split_once('-'))
            .map(|(a, b)| (a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()))
            .unwrap();
        let n = e - s + 1;
        out.push((cr, rest[..n].to_vec()));
        rest = &rest[n..];
        if rest.is_empty() {
            return out;
        }
    }
}

#[test]
fn multiple_ranges_of_a_large_file_stream_from_disk() {
    for_each_backend("multiple_ranges_of_a_large_file_stream_from_disk", |be| {
        let data = big();
        let len = data.len();
        for args in [&[][..], &["--no-sendfile"][..]] {
            let s = Server::start_opts(be, CONF, setup, args, false);
            let spec = "bytes=0-9,300000-562143,-5";
            let r = get_with(s.port, "/big.bin", &format!("Range: {spec}\r\n"));
            assert_eq!(r.status, 206, "{args:?}: {}", r.dump());
            assert_eq!(
                r.must_header("Content-Length"),
                r.body.len().to_string(),
                "{args:?}"
            );
            let parts = split_multipart(&r);
            let want = [(0, 9), (300_000, 562_143), (len - 5, len - 1)];
            assert_eq!(parts.len(), want.len(), "{args:?}");
            for ((cr, bytes), (s0, e0)) in parts.iter().zip(want) {
                assert_eq!(cr, &format!("bytes {s0}-{e0}/{len}"), "{args:?}");
                assert!(bytes[..] == data[s0..=e0], "{args:?}: part {cr} differs");
            }
            // The connection stays usable (the body was framed right).
            let mut c = Conn::open(s.port);
            c.send(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=1-2,4-4\r\n\r\nGET /d.txt HTTP/1.1\r\nHost: x\r\n\r\n");
            let r1 = c.read_response();
            assert_eq!(r1.status, 206);
            assert_eq!(split_multipart(&r1).len(), 2);
            let r2 = c.read_response();
            assert_eq!((r2.status, r2.text().as_str()), (200, DIGITS));
            // HEAD: the same head, no body.
            let r = request(
                s.port,
                format!("HEAD /big.bin HTTP/1.1\r\nHost: x\r\nRange: {spec}\r\nConnection: close\r\n\r\n").as_bytes(),
            );
            assert_eq!(r.status, 206);
            assert!(r.body.is_empty());
        }
    });
}

#[test]
fn max_ranges_limits_them() {
    for_each_backend("max_ranges_limits_them", |be| {
        let s = Server::start(be, CONF, setup);
        let r = get_with(s.port, "/two/d.txt", "Range: bytes=0-0,2-2\r\n");
        assert_eq!(r.status, 206, "{}", r.dump());
        let r = get_with(s.port, "/two/d.txt", "Range: bytes=0-0,2-2,4-4\r\n");
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(r.text(), DIGITS);
        let r = get_with(s.port, "/none/d.txt", "Range: bytes=0-0\r\n");
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(r.text(), DIGITS);
    });
}

#[test]
fn if_match_and_if_unmodified_since_on_get() {
    for_each_backend("if_match_and_if_unmodified_since_on_get", |be| {
        let s = Server::start(be, CONF, setup);
        let first = get(s.port, "/d.txt");
        let etag = first.must_header("ETag").to_string();
        let lm = first.must_header("Last-Modified").to_string();
        let r = get_with(s.port, "/d.txt", &format!("If-Match: \"nope\", {etag}\r\n"));
        assert_eq!((r.status, r.text().as_str()), (200, DIGITS));
        let r = get_with(s.port, "/d.txt", "If-Match: \"nope\"\r\n");
        assert_eq!(r.status, 412, "{}", r.dump());
        let r = get_with(s.port, "/d.txt", &format!("If-Match: W/{etag}\r\n"));
        assert_eq!(
            r.status,
            412,
            "weak tags never match If-Match:\n{}",
            r.dump()
        );
        let r = get_with(s.port, "/d.txt", "If-Match: *\r\n");
        assert_eq!(r.status, 200);
        let r = get_with(s.port, "/d.txt", &format!("If-Unmodified-Since: {lm}\r\n"));
        assert_eq!(r.status, 200, "{}", r.dump());
        let r = get_with(
            s.port,
            "/d.txt",
            "If-Unmodified-Since: Thu, 01 Jan 1970 00:00:01 GMT\r\n",
        );
        assert_eq!(r.status, 412, "{}", r.dump());
        // A 412 wins over a Range.
        let r = get_with(
            s.port,
            "/d.txt",
            "If-Match: \"nope\"\r\nRange: bytes=0-1\r\n",
        );
        assert_eq!(r.status, 412);
    });
}

fn put(port: u16, path: &str, headers: &str, body: &str) -> Response {
    let req = format!(
        "PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n{headers}Connection: close\r\n\r\n{body}",
        body.len()
    );
    request(port, req.as_bytes())
}

fn delete(port: u16, path: &str, headers: &str) -> Response {
    let req = format!("DELETE {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n");
    request(port, req.as_bytes())
}

#[test]
fn preconditions_on_put_and_delete() {
    for_each_backend("preconditions_on_put_and_delete", |be| {
        let s = Server::start(be, CONF, setup);
        let store = s.dir.join("www/store");
        let read = |n: &str| std::fs::read_to_string(store.join(n)).ok();
        // Create-only: If-None-Match: * refuses to replace, allows a new file.
        let r = put(s.port, "/store/keep.txt", "If-None-Match: *\r\n", "v2");
        assert_eq!(r.status, 412, "{}", r.dump());
        assert_eq!(read("keep.txt").as_deref(), Some("v1"));
        let r = put(s.port, "/store/new.txt", "If-None-Match: *\r\n", "new");
        assert!(r.status == 201 || r.status == 204, "{}", r.dump());
        assert_eq!(read("new.txt").as_deref(), Some("new"));
        // Lost-update guard: If-Match with the current tag replaces, a stale one does not.
        let etag = get(s.port, "/store/keep.txt")
            .must_header("ETag")
            .to_string();
        let r = put(s.port, "/store/keep.txt", "If-Match: \"stale\"\r\n", "v2");
        assert_eq!(r.status, 412, "{}", r.dump());
        assert_eq!(read("keep.txt").as_deref(), Some("v1"));
        let r = put(
            s.port,
            "/store/keep.txt",
            &format!("If-Match: {etag}\r\n"),
            "v2",
        );
        assert!(r.status == 200 || r.status == 204, "{}", r.dump());
        assert_eq!(read("keep.txt").as_deref(), Some("v2"));
        // If-Match on a file that does not exist: 412, nothing created.
        let r = put(s.port, "/store/absent.txt", "If-Match: *\r\n", "x");
        assert_eq!(r.status, 412, "{}", r.dump());
        assert_eq!(read("absent.txt"), None);
        // DELETE: a stale tag or an old date keeps the file; the current tag removes it.
        let r = delete(s.port, "/store/gone.txt", "If-Match: \"stale\"\r\n");
        assert_eq!(r.status, 412, "{}", r.dump());
        let r = delete(
            s.port,
            "/store/gone.txt",
            "If-Unmodified-Since: Thu, 01 Jan 1970 00:00:01 GMT\r\n",
        );
        assert_eq!(r.status, 412, "{}", r.dump());
        let etag = get(s.port, "/store/gone.txt")
            .must_header("ETag")
            .to_string();
        let r = delete(
            s.port,
            "/store/gone.txt",
            &format!("If-None-Match: {etag}\r\n"),
        );
        assert_eq!(r.status, 412, "{}", r.dump());
        assert_eq!(read("gone.txt").as_deref(), Some("bye"));
        let r = delete(s.port, "/store/gone.txt", &format!("If-Match: {etag}\r\n"));
        assert_eq!(r.status, 204, "{}", r.dump());
        assert_eq!(read("gone.txt"), None);
    });
}
