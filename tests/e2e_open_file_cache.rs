//! The open-file cache (issue 12, item 2; nginx's `open_file_cache`): files larger than the
//! small-file cache's 64 KiB keep their descriptor and validators between requests. What a user
//! must never see from it: an old file after the validity window (1 s) or at all after a write
//! through webserv, a file served that an uncached open would refuse (permissions, a symlink
//! under `disable_symlinks on`, a deleted file), wrong bytes for a range or a conditional, or
//! descriptors piling up. Every test runs on every backend, against a real server on 127.0.0.1.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::{for_each_backend, get, request, write_file, Response, Server};

/// Larger than the small-file cache's limit (64 KiB): served through the open-file cache.
const BIG: usize = 100_000;

/// The validity window (`open_file_cache_valid`, 1 s by default) and a margin.
const PAST_WINDOW: Duration = Duration::from_millis(1300);

const CONF: &str = "{BASE}
server {
    listen 127.0.0.1:{PORT};
    root {DIR}/www;
    location / { }
    location /up/ { allow_methods GET PUT DELETE; upload_store {DIR}/www/up; }
    location /strict/ { disable_symlinks on; }
    location /lax/ { alias {DIR}/www/strict/; }
}
";

/// `n` bytes that differ with `seed` everywhere.
fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn setup(dir: &Path) {
    write_file(dir, "www/r.bin", pattern(BIG, 1));
    write_file(dir, "www/strict/f.bin", pattern(BIG, 2));
    write_file(dir, "www/strict/other.bin", pattern(BIG, 3));
    fs::create_dir_all(dir.join("www/up")).unwrap();
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

fn with_headers(port: u16, m: &str, path: &str, extra: &str) -> Response {
    request(
        port,
        format!("{m} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n").as_bytes(),
    )
}

/// The server's open descriptors whose target ends with `suffix` (`/proc/PID/fd`).
fn open_fds(pid: u32, suffix: &str) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .filter(|t| t.to_string_lossy().ends_with(suffix))
        .count()
}

/// The server's open descriptors, with what they name.
fn fd_list(pid: u32) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .filter_map(|e| {
            let e = e.ok()?;
            let t = fs::read_link(e.path()).ok()?;
            Some(format!(
                "{}={}",
                e.file_name().to_string_lossy(),
                t.display()
            ))
        })
        .collect();
    v.sort();
    v
}

/// Whether the server holds `path` open (the cache has an entry for it).
fn holds(s: &Server, path: &Path) -> bool {
    let pid = s.pid().expect("server pid");
    fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .any(|t| t == path)
}

/// Write `body` to `dir/name` by a rename over it (a new inode), with the modification time
/// of the file it replaces (the same second, the same nanoseconds).
fn replace_by_rename(dir: &Path, name: &str, body: &[u8]) {
    let target = dir.join(name);
    let mtime = fs::metadata(&target).unwrap().modified().unwrap();
    let tmp = dir.join(format!(".{name}.new"));
    fs::write(&tmp, body).unwrap();
    fs::File::options()
        .write(true)
        .open(&tmp)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    fs::rename(&tmp, &target).unwrap();
}

#[test]
fn a_renamed_in_file_is_served_after_the_window_and_at_once_after_a_put() {
    for_each_backend("open_file_cache_rename_put", |b| {
        let s = Server::start(b, CONF, setup);
        let www = s.dir.join("www");
        let a = pattern(BIG, 1);
        let first = get(s.port, "/r.bin");
        assert_eq!((first.status, &first.body), (200, &a), "[{b}]");
        assert_eq!(get(s.port, "/r.bin").body, a, "[{b}] a hit");
        assert!(
            holds(&s, &www.join("r.bin")),
            "[{b}] the file is not kept open"
        );
        // Behind webserv's back: same size, same mtime, another inode.
        let new = pattern(BIG, 9);
        replace_by_rename(&www, "r.bin", &new);
        std::thread::sleep(PAST_WINDOW);
        let r = get(s.port, "/r.bin");
        assert_eq!(
            (r.status, r.body == new),
            (200, true),
            "[{b}] old bytes after the window"
        );
        assert_ne!(first.header("ETag"), r.header("ETag"), "[{b}]");
        assert_eq!(
            get(s.port, "/r.bin").body,
            new,
            "[{b}] a hit of the new file"
        );

        // Through webserv: at once, whatever the window.
        let (x, y) = (pattern(BIG, 4), pattern(BIG, 5));
        assert_eq!(put(s.port, "/up/p.bin", &x).status, 201, "[{b}]");
        assert_eq!(get(s.port, "/up/p.bin").body, x, "[{b}]");
        assert_eq!(get(s.port, "/up/p.bin").body, x, "[{b}] a hit");
        assert!(holds(&s, &www.join("up/p.bin")), "[{b}] not kept open");
        assert_eq!(put(s.port, "/up/p.bin", &y).status, 204, "[{b}]");
        let r = get(s.port, "/up/p.bin");
        assert_eq!(
            (r.status, r.body == y),
            (200, true),
            "[{b}] old bytes after a PUT"
        );
        // A DELETE through webserv: 404 at once.
        assert_eq!(with_headers(s.port, "DELETE", "/up/p.bin", "").status, 204);
        assert_eq!(
            get(s.port, "/up/p.bin").status,
            404,
            "[{b}] served after DELETE"
        );
    });
}

#[test]
fn a_file_made_unreadable_is_refused_after_the_window() {
    for_each_backend("open_file_cache_chmod", |b| {
        // As root the permission bits would not bind the server: it runs as nobody then.
        let s = if is_root() {
            Server::start_as(65534, b, CONF, setup)
        } else {
            Server::start(b, CONF, setup)
        };
        let f = s.dir.join("www/r.bin");
        assert_eq!(get(s.port, "/r.bin").status, 200, "[{b}] {}", s.log());
        assert_eq!(get(s.port, "/r.bin").status, 200, "[{b}] a hit");
        assert!(holds(&s, &f), "[{b}] not kept open");
        common::chmod(&f, 0o000);
        std::thread::sleep(PAST_WINDOW);
        let r = get(s.port, "/r.bin");
        assert_eq!(
            r.status,
            403,
            "[{b}] an unreadable file served: {}",
            r.dump()
        );
        assert_eq!(get(s.port, "/r.bin").status, 403, "[{b}] again");
        common::chmod(&f, 0o644);
        std::thread::sleep(PAST_WINDOW);
        assert_eq!(
            get(s.port, "/r.bin").body,
            pattern(BIG, 1),
            "[{b}] readable again"
        );
    });
}

/// Whether this process runs as root (`/proc/self/status` says the effective uid).
fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

#[test]
fn a_symlink_swapped_in_under_disable_symlinks_on_is_refused() {
    for_each_backend("open_file_cache_symlink", |b| {
        let s = Server::start(b, CONF, setup);
        let dir = s.dir.join("www/strict");
        let f = pattern(BIG, 2);
        assert_eq!(get(s.port, "/strict/f.bin").body, f, "[{b}]");
        assert_eq!(get(s.port, "/strict/f.bin").body, f, "[{b}] a hit");
        // The same file through a location that follows links: a separate entry.
        assert_eq!(get(s.port, "/lax/f.bin").body, f, "[{b}]");
        // f.bin becomes a link to a file beside it (beneath the root: only the symlink rule
        // refuses it), put in place by a rename.
        std::os::unix::fs::symlink("other.bin", dir.join(".link")).unwrap();
        fs::rename(dir.join(".link"), dir.join("f.bin")).unwrap();
        std::thread::sleep(PAST_WINDOW);
        let r = get(s.port, "/strict/f.bin");
        assert_eq!(r.status, 403, "[{b}] a symlink served: {}", r.dump());
        let lax = get(s.port, "/lax/f.bin");
        assert_eq!(
            lax.body,
            pattern(BIG, 3),
            "[{b}] the lax location follows the link"
        );
        // The lax location's entry never answers the strict one.
        assert_eq!(
            get(s.port, "/strict/f.bin").status,
            403,
            "[{b}] after /lax/"
        );
    });
}

#[test]
fn evicted_entries_do_not_keep_descriptors() {
    for_each_backend("open_file_cache_eviction", |b| {
        let conf = format!("open_file_cache max=4 inactive=60s;\n{CONF}");
        let s = Server::start(b, &conf, |dir| {
            setup(dir);
            write_file(dir, "www/small.txt", "s");
            for i in 0..40 {
                write_file(dir, &format!("www/many/{i}.big"), pattern(BIG, i as u8));
            }
        });
        let pid = s.pid().expect("server pid");
        // The root's directory descriptor is opened by the first request, and the first large
        // response sets up what the backend reuses to send files (io_uring's pooled pipe).
        assert_eq!(get(s.port, "/small.txt").status, 200, "[{b}]");
        assert_eq!(get(s.port, "/r.bin").body, pattern(BIG, 1), "[{b}]");
        let before = fd_list(pid);
        for round in 0..2 {
            for i in 0..40 {
                let r = get(s.port, &format!("/many/{i}.big"));
                assert_eq!(
                    r.body,
                    pattern(BIG, i as u8),
                    "[{b}] round {round} file {i}"
                );
            }
        }
        // Closes the server submitted as its last responses went out may still be completing.
        std::thread::sleep(Duration::from_millis(200));
        let kept = open_fds(pid, ".big");
        assert!(
            (1..=4).contains(&kept),
            "[{b}] {kept} files held open with max=4"
        );
        let after = fd_list(pid);
        assert!(
            after.len() <= before.len() + 4,
            "[{b}] descriptors before 80 GETs of 40 files: {before:?}; after: {after:?}"
        );

        // `open_file_cache off`: nothing is held.
        let conf = format!("open_file_cache off;\n{CONF}");
        let s = Server::start(b, &conf, setup);
        for _ in 0..3 {
            assert_eq!(get(s.port, "/r.bin").body, pattern(BIG, 1), "[{b}] off");
        }
        let pid = s.pid().expect("server pid");
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            open_fds(pid, "r.bin"),
            0,
            "[{b}] a file held with the cache off"
        );
    });
}

#[test]
fn ranges_and_conditionals_from_a_cached_entry_are_exact() {
    for_each_backend("open_file_cache_ranges", |b| {
        let s = Server::start(b, CONF, setup);
        let a = pattern(BIG, 1);
        let full = get(s.port, "/r.bin");
        assert_eq!(full.body, a, "[{b}]");
        assert!(holds(&s, &s.dir.join("www/r.bin")), "[{b}] not kept open");
        let etag = full.must_header("ETag").to_string();
        let lm = full.must_header("Last-Modified").to_string();

        let r = with_headers(s.port, "GET", "/r.bin", "Range: bytes=70000-70999\r\n");
        assert_eq!(r.status, 206, "[{b}] {}", r.dump());
        assert_eq!(r.body, &a[70000..71000], "[{b}] range bytes");
        assert_eq!(r.header("Content-Range"), Some("bytes 70000-70999/100000"));
        let r = with_headers(s.port, "GET", "/r.bin", "Range: bytes=-10\r\n");
        assert_eq!(
            (r.status, &r.body[..]),
            (206, &a[BIG - 10..]),
            "[{b}] suffix"
        );

        // Two ranges: multipart, each part's bytes exact.
        let r = with_headers(s.port, "GET", "/r.bin", "Range: bytes=0-9,99990-99999\r\n");
        assert_eq!(r.status, 206, "[{b}]");
        let ct = r.must_header("Content-Type");
        assert!(ct.starts_with("multipart/byteranges"), "[{b}] {ct}");
        let body = &r.body;
        let find = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
        assert!(
            find(&a[..10]) && find(&a[BIG - 10..]),
            "[{b}] multipart parts"
        );
        assert!(find(b"Content-Range: bytes 99990-99999/100000"), "[{b}]");

        let inm = format!("If-None-Match: {etag}\r\n");
        let r = with_headers(s.port, "GET", "/r.bin", &inm);
        assert_eq!((r.status, r.body.len()), (304, 0), "[{b}] If-None-Match");
        assert_eq!(r.header("ETag"), Some(etag.as_str()), "[{b}]");
        let ims = format!("If-Modified-Since: {lm}\r\n");
        assert_eq!(with_headers(s.port, "GET", "/r.bin", &ims).status, 304);
        let ir = format!("If-Range: {etag}\r\nRange: bytes=5-9\r\n");
        let r = with_headers(s.port, "GET", "/r.bin", &ir);
        assert_eq!((r.status, &r.body[..]), (206, &a[5..10]), "[{b}] If-Range");
        let ir = "If-Range: \"stale\"\r\nRange: bytes=5-9\r\n";
        let r = with_headers(s.port, "GET", "/r.bin", ir);
        assert_eq!(
            (r.status, r.body == a),
            (200, true),
            "[{b}] If-Range mismatch"
        );
        let im = "If-Match: \"stale\"\r\n";
        assert_eq!(with_headers(s.port, "GET", "/r.bin", im).status, 412);
        let h = with_headers(s.port, "HEAD", "/r.bin", "");
        assert_eq!(h.header("Content-Length"), Some("100000"), "[{b}] HEAD");
        // Many responses at once from one shared descriptor, on one keep-alive connection.
        let mut c = common::Conn::open(s.port);
        let req = b"GET /r.bin HTTP/1.1\r\nHost: x\r\n\r\n".repeat(8);
        c.send(&req);
        for i in 0..8 {
            let r = c.read_response();
            assert_eq!((r.status, r.body == a), (200, true), "[{b}] pipelined {i}");
        }
    });
}

/// The cache never takes the descriptors connections need: with `RLIMIT_NOFILE` 64 a worker
/// keeps at most a quarter (16) open, whatever `max` says, and new connections are still served
/// (ten at once: the kqueue backend through libkqueue alone holds 17 descriptors).
#[test]
fn a_low_descriptor_limit_caps_the_cache() {
    for_each_backend("open_file_cache_nofile", |b| {
        let conf = format!("open_file_cache max=1000;\nworkers 1;\n{CONF}");
        let s = Server::start_with_nofile(
            b,
            &conf,
            |dir| {
                setup(dir);
                for i in 0..40 {
                    write_file(dir, &format!("www/many/{i}.big"), pattern(BIG, i as u8));
                }
            },
            64,
        );
        for i in 0..40 {
            let r = get(s.port, &format!("/many/{i}.big"));
            assert_eq!(r.body, pattern(BIG, i as u8), "[{b}] file {i}");
        }
        std::thread::sleep(Duration::from_millis(200));
        let pid = s.pid().expect("server pid");
        let kept = open_fds(pid, ".big");
        assert!((1..=16).contains(&kept), "[{b}] {kept} files held open");
        // Ten connections at once, each answered.
        let mut conns: Vec<common::Conn> = (0..10).map(|_| common::Conn::open(s.port)).collect();
        for (i, c) in conns.iter_mut().enumerate() {
            c.send(format!("GET /many/{i}.big HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        }
        for (i, c) in conns.iter_mut().enumerate() {
            let r = c.read_response();
            assert_eq!(r.body, pattern(BIG, i as u8), "[{b}] connection {i}");
        }
    });
}
