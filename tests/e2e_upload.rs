//! Uploads and DELETE end to end: what lands on disk (byte for byte) for multipart POST, raw
//! POST and PUT, and that a refused or aborted upload leaves nothing behind — no file, no
//! `.upload-*.tmp`.

mod common;

use common::*;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CONF: &str = "{BASE}
server {
    listen 127.0.0.1:{PORT};
    root www;
    location / { }
    location /uploads/ {
        allow_methods GET HEAD POST PUT DELETE;
        upload_store www/uploads;
        autoindex on;
        client_max_body_size 10m;
    }
    location = /status { status; }
    location /small/ {
        allow_methods GET POST PUT;
        upload_store www/small;
        client_max_body_size 1k;
    }
}
";

fn setup(dir: &Path) {
    fs::create_dir_all(dir.join("www/uploads/sub")).unwrap();
    fs::create_dir_all(dir.join("www/small")).unwrap();
    write_file(dir, "www/index.html", "index");
}

fn start(backend: &str) -> Server {
    Server::start(backend, CONF, setup)
}

fn store(s: &Server) -> PathBuf {
    s.dir.join("www/uploads")
}

/// Names in `dir` (sorted), hidden ones included.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn temp_files(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| n.starts_with(".upload-") && n.ends_with(".tmp"))
        .collect()
}

/// Deterministic bytes covering every value, with multipart-looking sequences mixed in.
fn binary(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x.is_multiple_of(997) {
            v.extend_from_slice(b"\r\n--XyZ-boundary\r\n--");
        } else {
            v.push(x as u8);
        }
    }
    v.truncate(len);
    v
}

const BOUNDARY: &str = "XyZ-boundary-e2e";

/// A multipart/form-data body: `(field name, file name, content)`; `None` file name = a plain
/// field.
fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, file, data) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match file {
            Some(f) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn post_multipart(port: u16, path: &str, body: &[u8]) -> Response {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    let mut c = Conn::open(port);
    c.send(&req);
    c.read_response()
}

fn put(port: u16, path: &str, body: &[u8]) -> Response {
    let mut req = format!(
        "PUT {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    request(port, &req)
}

fn delete(port: u16, path: &str) -> Response {
    request(
        port,
        format!("DELETE {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// Polls until `cond` holds or `within` passes; returns whether it held.
fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn multipart_with_several_files_lands_byte_exact() {
    for_each_backend("multipart_with_several_files_lands_byte_exact", |b| {
        let s = start(b);
        let big = binary(1 << 20);
        let body = multipart(&[
            ("note", None, b"a plain field, not a file"),
            ("file", Some("hello.txt"), b"hello, world\n"),
            ("file", Some("blob.bin"), &big),
            ("file", Some("empty.txt"), b""),
        ]);
        let r = post_multipart(s.port, "/uploads/", &body);
        assert_eq!(r.status, 201, "{}", r.dump());
        let page = r.text();
        let saved = page
            .split("<ul id=\"saved\">")
            .nth(1)
            .and_then(|rest| rest.split("</ul>").next())
            .unwrap_or_else(|| panic!("no <ul id=\"saved\"> in:\n{page}"));
        for name in ["hello.txt", "blob.bin", "empty.txt"] {
            assert!(
                saved.contains(&format!("href=\"/uploads/{name}\"")),
                "{name} not linked in:\n{saved}"
            );
        }
        assert!(!saved.contains("note"), "a plain field was saved:\n{saved}");
        let dir = store(&s);
        assert_eq!(fs::read(dir.join("hello.txt")).unwrap(), b"hello, world\n");
        let on_disk = fs::read(dir.join("blob.bin")).unwrap();
        assert_eq!(on_disk.len(), big.len(), "blob.bin size on disk");
        assert!(on_disk == big, "blob.bin differs from what was sent");
        assert_eq!(fs::read(dir.join("empty.txt")).unwrap(), b"");
        assert_eq!(
            names(&dir),
            ["blob.bin", "empty.txt", "hello.txt", "sub"],
            "store holds exactly the uploaded files"
        );
        // What was stored is served back.
        let r = get(s.port, "/uploads/blob.bin");
        assert_eq!(r.status, 200, "{}", r.dump());
        assert!(r.body == big, "GET /uploads/blob.bin differs");
    });
}

#[test]
fn put_creates_201_then_replaces_204() {
    for_each_backend("put_creates_201_then_replaces_204", |b| {
        let s = start(b);
        let path = store(&s).join("notes.txt");
        let r = put(s.port, "/uploads/notes.txt", b"first version\n");
        assert_eq!(r.status, 201, "{}", r.dump());
        assert_eq!(fs::read(&path).unwrap(), b"first version\n");
        let r = put(s.port, "/uploads/notes.txt", b"second\n");
        assert_eq!(r.status, 204, "{}", r.dump());
        assert!(r.body.is_empty());
        assert_eq!(fs::read(&path).unwrap(), b"second\n");
        assert_eq!(get(s.port, "/uploads/notes.txt").text(), "second\n");
        assert!(temp_files(&store(&s)).is_empty());
    });
}

#[test]
fn put_into_a_missing_directory_is_409() {
    for_each_backend("put_into_a_missing_directory_is_409", |b| {
        let s = start(b);
        let r = put(s.port, "/uploads/no/such/dir/x.txt", b"data");
        assert_eq!(r.status, 409, "{}", r.dump());
        assert!(!store(&s).join("no").exists(), "a directory was created");
        assert_eq!(names(&store(&s)), ["sub"]);
    });
}

#[test]
fn upload_without_a_length_is_411() {
    for_each_backend("upload_without_a_length_is_411", |b| {
        let s = start(b);
        // RFC 9110 §15.5.12: neither Content-Length nor chunked → 411, nothing stored.
        let r = request(
            s.port,
            b"PUT /uploads/nolen.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(r.status, 411, "{}", r.dump());
        assert!(!store(&s).join("nolen.txt").exists());
        // An explicit empty body is fine.
        let r = put(s.port, "/uploads/empty.txt", b"");
        assert_eq!(r.status, 201, "{}", r.dump());
        assert_eq!(fs::read(store(&s).join("empty.txt")).unwrap(), b"");
    });
}

/// Sends the head and half of a 1 MB body, checks the upload is in progress (a temp file
/// exists), closes, and checks that nothing at all is left.
fn abort_halfway(s: &Server, head: &str, body: &[u8]) {
    let dir = store(s);
    let mut c = connect_with_timeout(s.port, Duration::from_secs(5));
    c.write_all(head.as_bytes()).unwrap();
    c.write_all(&body[..body.len() / 2]).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || !temp_files(&dir).is_empty()),
        "no .upload-*.tmp while the upload was in progress: {:?}",
        names(&dir)
    );
    drop(c);
    assert!(
        eventually(Duration::from_secs(5), || names(&dir) == ["sub"]),
        "left behind after the client aborted: {:?}",
        names(&dir)
    );
    // Still serving.
    assert_eq!(get(s.port, "/index.html").text(), "index");
}

#[test]
fn aborted_upload_leaves_no_file() {
    for_each_backend("aborted_upload_leaves_no_file", |b| {
        let s = start(b);
        let body = binary(1_000_000);
        abort_halfway(
            &s,
            &format!(
                "PUT /uploads/aborted.bin HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                body.len()
            ),
            &body,
        );
        abort_halfway(
            &s,
            &format!(
                "POST /uploads/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n\
                 Content-Length: {}\r\n\r\n",
                body.len()
            ),
            &body,
        );
        let mp = multipart(&[("file", Some("aborted.bin"), &body)]);
        abort_halfway(
            &s,
            &format!(
                "POST /uploads/ HTTP/1.1\r\nHost: x\r\n\
                 Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {}\r\n\r\n",
                mp.len()
            ),
            &mp,
        );
    });
}

#[test]
fn too_large_is_413_and_leaves_no_file() {
    for_each_backend("too_large_is_413_and_leaves_no_file", |b| {
        let s = start(b);
        let dir = s.dir.join("www/small");
        // Declared too large: refused before any byte of the body.
        let r = put(s.port, "/small/big.bin", &binary(4096));
        assert_eq!(r.status, 413, "{}", r.dump());
        // Chunked: only found out while streaming, after a temp file was started.
        let mut c = Conn::open(s.port);
        c.send(b"PUT /small/chunked.bin HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
        for _ in 0..4 {
            if c.try_send(b"200\r\n").is_err() {
                break;
            }
            if c.try_send(&[b'z'; 0x200]).is_err() || c.try_send(b"\r\n").is_err() {
                break;
            }
        }
        let _ = c.try_send(b"0\r\n\r\n");
        let r = c.read_response();
        assert_eq!(r.status, 413, "{}", r.dump());
        // A multipart POST over the limit as well.
        let r = post_multipart(
            s.port,
            "/small/",
            &multipart(&[("file", Some("mp.bin"), &binary(4096))]),
        );
        assert_eq!(r.status, 413, "{}", r.dump());
        assert!(
            eventually(Duration::from_secs(3), || names(&dir).is_empty()),
            "left behind after 413: {:?}",
            names(&dir)
        );
        // Within the limit works (so the location is not simply broken).
        let r = put(s.port, "/small/ok.txt", b"small enough");
        assert_eq!(r.status, 201, "{}", r.dump());
        assert_eq!(names(&dir), ["ok.txt"]);
    });
}

#[test]
fn delete_204_then_404_and_directory_403() {
    for_each_backend("delete_204_then_404_and_directory_403", |b| {
        let s = start(b);
        let path = store(&s).join("gone.txt");
        fs::write(&path, "bye").unwrap();
        let r = delete(s.port, "/uploads/gone.txt");
        assert_eq!(r.status, 204, "{}", r.dump());
        assert!(!path.exists(), "file still on disk after 204");
        let r = delete(s.port, "/uploads/gone.txt");
        assert_eq!(r.status, 404, "{}", r.dump());
        let r = delete(s.port, "/uploads/sub");
        assert_eq!(r.status, 403, "{}", r.dump());
        let r = delete(s.port, "/uploads/sub/");
        assert_eq!(r.status, 403, "{}", r.dump());
        assert!(store(&s).join("sub").is_dir(), "directory removed");
    });
}

#[test]
fn post_raw_body_201_with_location_that_serves_the_bytes() {
    for_each_backend(
        "post_raw_body_201_with_location_that_serves_the_bytes",
        |b| {
            let s = start(b);
            let data = binary(200_000);
            let mut req = format!(
                "POST /uploads/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                data.len()
            )
            .into_bytes();
            req.extend_from_slice(&data);
            let r = request(s.port, &req);
            assert_eq!(r.status, 201, "{}", r.dump());
            let loc = r.must_header("location").to_string();
            assert!(loc.starts_with("/uploads/"), "Location {loc}");
            let name = loc.trim_start_matches("/uploads/");
            assert!(
                !name.is_empty() && !name.contains('/'),
                "Location {loc} names no file in the store"
            );
            assert!(
                fs::read(store(&s).join(name)).unwrap() == data,
                "bytes on disk differ"
            );
            let back = get(s.port, &loc);
            assert_eq!(back.status, 200, "{}", back.dump());
            assert!(back.body == data, "GET {loc} differs from what was posted");
        },
    );
}

#[test]
fn uploaded_filenames_are_sanitised_into_the_store() {
    for_each_backend("uploaded_filenames_are_sanitised_into_the_store", |b| {
        let s = start(b);
        let body = multipart(&[
            ("file", Some("../../evil.txt"), b"evil"),
            ("file", Some("..\\\\..\\\\win.txt"), b"win"),
            ("file", Some(".hidden"), b"hidden"),
        ]);
        let r = post_multipart(s.port, "/uploads/", &body);
        assert_eq!(r.status, 201, "{}", r.dump());
        let dir = store(&s);
        assert_eq!(fs::read(dir.join("evil.txt")).unwrap(), b"evil");
        assert_eq!(fs::read(dir.join("win.txt")).unwrap(), b"win");
        assert_eq!(fs::read(dir.join("hidden")).unwrap(), b"hidden");
        for escaped in ["evil.txt", "www/evil.txt"] {
            assert!(
                !s.dir.join(escaped).exists(),
                "{escaped} written outside the store"
            );
        }
        assert_eq!(names(&dir), ["evil.txt", "hidden", "sub", "win.txt"]);
    });
}

/// Issue 16: an upload's commit, a failed upload's clean-up and a DELETE go through the
/// backend's rename and unlink ops (io_uring's own opcodes, the readiness backends' pool),
/// not through calls on the loop's thread: the status page counts them, and the files say
/// what they did.
#[test]
fn commits_rollbacks_and_deletes_are_backend_ops() {
    for_each_backend("commits_rollbacks_and_deletes_are_backend_ops", |b| {
        let s = start(b);
        let before = ops_submitted(s.port);
        assert_eq!(put(s.port, "/uploads/op.txt", b"one").status, 201);
        let body = multipart(&[("f", Some("m1.txt"), b"m1"), ("g", Some("m2.txt"), b"m2")]);
        assert_eq!(post_multipart(s.port, "/uploads/", &body).status, 201);
        // Over the limit in /small/: the temp file is unlinked before the 413.
        assert_eq!(put(s.port, "/small/big", &[b'x'; 4096]).status, 413);
        assert_eq!(delete(s.port, "/uploads/op.txt").status, 204);
        let after = ops_submitted(s.port);
        let d = |k: &str| after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
        assert_eq!(d("renameat"), 3, "[{b}] one PUT, two parts: {after:?}");
        // Three temp files, plus any lookup the kernel's caches could not answer (a new
        // name's first lookup, say).
        assert!(d("openat") >= 3, "[{b}] their temp files: {after:?}");
        assert!(d("unlinkat") >= 1, "[{b}] the DELETE: {after:?}");
        assert_eq!(names(&store(&s)), ["m1.txt", "m2.txt", "sub"], "[{b}]");
        assert_eq!(fs::read(store(&s).join("m2.txt")).unwrap(), b"m2");
        assert!(temp_files(&s.dir.join("www/small")).is_empty(), "[{b}]");
        assert!(names(&s.dir.join("www/small")).is_empty(), "[{b}]");
    });
}
