//! Issue 16: a file lookup never blocks the loop. A GET first looks up only as far as the
//! kernel's caches go (`RESOLVE_CACHED`); when that is not enough, the lookup is done off the
//! loop's thread (`Op::OpenAt`: io_uring's io-wq, the readiness backends' offload pool) by a
//! `lookup` task and the request is routed again. `WEBSERV_COLD_LOOKUPS=1` makes every cached
//! attempt miss, so each test here takes the slow way on every backend; the answers must be
//! exactly those of the fast way, and the `--debug` log names the lookup tasks.

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
    error_page 404 /err404.html;
    location / { }
    location /strict/ { disable_symlinks on; }
    location /app/ { index index.sh; cgi .sh /bin/sh; }
    location /gone/ { error_page 404 @gone; }
    location @gone { root www/fb; try_files /gone.txt =500; }
    location /redir/ { cgi .sh /bin/sh; }
    location /tf/ { try_files $uri /tf/fallback.txt; }
    location /tfs/ { disable_symlinks on; try_files $uri /tfs/real.txt; }
    location /up/ {
        allow_methods GET HEAD PUT POST DELETE;
        upload_store www/up;
    }
}
";

fn setup(dir: &Path) {
    fs::create_dir_all(dir.join("www/sub")).unwrap();
    fs::create_dir_all(dir.join("www/strict")).unwrap();
    fs::create_dir_all(dir.join("www/up")).unwrap();
    fs::create_dir_all(dir.join("outside")).unwrap();
    write_file(dir, "www/index.html", "root index");
    write_file(dir, "www/a.txt", "alpha");
    write_file(dir, "www/sub/index.html", "sub index");
    write_file(dir, "www/err404.html", "custom 404");
    write_file(dir, "www/fb/gone.txt", "gone, from the named location");
    write_file(
        dir,
        "www/redir/go.sh",
        "printf 'Location: /a.txt\\r\\n\\r\\n'\n",
    );
    write_file(
        dir,
        "www/app/index.sh",
        "printf 'Content-Type: text/plain\\r\\n\\r\\nran index.sh'\n",
    );
    write_file(dir, "www/strict/real.txt", "real");
    write_file(dir, "www/tf/here.txt", "here");
    write_file(dir, "www/tf/fallback.txt", "fallback");
    write_file(dir, "www/tfs/real.txt", "tfs real");
    write_file(dir, "www/tfs/other.txt", "other");
    std::os::unix::fs::symlink("other.txt", dir.join("www/tfs/link.txt")).unwrap();
    write_file(dir, "outside/secret.txt", "secret");
    std::os::unix::fs::symlink("../outside/secret.txt", dir.join("www/escape.txt")).unwrap();
    std::os::unix::fs::symlink("real.txt", dir.join("www/strict/link.txt")).unwrap();
}

fn cold(backend: &str) -> Server {
    Server::start_env(
        backend,
        CONF,
        setup,
        &["--debug"],
        false,
        &[("WEBSERV_COLD_LOOKUPS", "1")],
    )
}

/// Every static answer (file, index, 404 with its error page, 301 to the slash, a symlink out
/// of the root, a refused symlink) is the same when each lookup goes off the loop's thread.
#[test]
fn cold_lookups_answer_as_warm_ones() {
    for_each_backend("cold_lookups_answer_as_warm_ones", |b| {
        let s = cold(b);
        let r = get(s.port, "/a.txt");
        assert_eq!(
            (r.status, r.text()),
            (200, "alpha".into()),
            "[{b}] {}",
            r.dump()
        );
        let r = get(s.port, "/");
        assert_eq!((r.status, r.text()), (200, "root index".into()), "[{b}]");
        let r = get(s.port, "/sub/");
        assert_eq!((r.status, r.text()), (200, "sub index".into()), "[{b}]");
        let r = get(s.port, "/sub");
        assert_eq!(r.status, 301, "[{b}] {}", r.dump());
        assert!(
            r.header("Location").is_some_and(|l| l.ends_with("/sub/")),
            "[{b}]"
        );
        let r = get(s.port, "/missing.txt");
        assert_eq!((r.status, r.text()), (404, "custom 404".into()), "[{b}]");
        // A directory whose index file is a CGI: the index is looked up off the loop too,
        // and the script runs (it is not sent as a file).
        let r = get(s.port, "/app/");
        assert_eq!(
            (r.status, r.text()),
            (200, "ran index.sh".into()),
            "[{b}] {}",
            r.dump()
        );
        // Internal redirects are held for their lookups too: an `error_page` to a named
        // location (its answer keeps the 404), a CGI's local redirect to a file.
        let r = get(s.port, "/gone/x.txt");
        assert_eq!(
            (r.status, r.text()),
            (404, "gone, from the named location".into()),
            "[{b}] {}",
            r.dump()
        );
        let r = get(s.port, "/redir/go.sh");
        assert_eq!(
            (r.status, r.text()),
            (200, "alpha".into()),
            "[{b}] {}",
            r.dump()
        );
        let r = get(s.port, "/escape.txt");
        assert_eq!(
            r.status,
            403,
            "[{b}] a symlink out of the root: {}",
            r.dump()
        );
        let r = get(s.port, "/strict/link.txt");
        assert_eq!(r.status, 403, "[{b}] disable_symlinks on: {}", r.dump());
        let r = get(s.port, "/strict/real.txt");
        assert_eq!((r.status, r.text()), (200, "real".into()), "[{b}]");
        let r = request(
            s.port,
            b"HEAD /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(r.status, 200, "[{b}]");
        assert_eq!(r.header("Content-Length"), Some("5"), "[{b}]");
        assert!(r.body.is_empty(), "[{b}]");
        let log = s.log();
        assert_no_blocking_reroute(b, &log);
        assert!(
            log.contains(" lookup#") && log.contains("lookup open"),
            "[{b}] no lookup task in the log:\n{log}"
        );
    });
}

/// Pipelined requests whose lookups go off the loop's thread are answered in order, on one
/// connection, and the connection stays usable; a request with a body is held too.
#[test]
fn cold_lookups_keep_pipelined_order() {
    for_each_backend("cold_lookups_keep_pipelined_order", |b| {
        let s = cold(b);
        let mut c = Conn::open(s.port);
        c.send(
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /missing HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /sub/ HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /strict/real.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        let got: Vec<(u16, String)> = (0..4)
            .map(|_| {
                let r = c.read_response();
                (r.status, r.text())
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (200, "alpha".to_string()),
                (404, "custom 404".to_string()),
                (200, "sub index".to_string()),
                (200, "real".to_string()),
            ],
            "[{b}]"
        );
        c.send(b"PUT /up/new.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nnew");
        let r = c.read_response();
        assert!(matches!(r.status, 200 | 201 | 204), "[{b}] {}", r.dump());
        c.send(b"GET /up/new.txt HTTP/1.1\r\nHost: x\r\n\r\n");
        let r = c.read_response();
        assert_eq!((r.status, r.text()), (200, "new".into()), "[{b}]");
    });
}

/// Clients that leave while their lookup is off the loop's thread cost nothing: the server
/// keeps serving and holds no fd per abandoned lookup.
#[test]
fn cold_lookups_abandoned_leave_no_fds() {
    for_each_backend("cold_lookups_abandoned_leave_no_fds", |b| {
        let s = cold(b);
        let pid = s.pid().unwrap();
        assert_eq!(get(s.port, "/a.txt").status, 200, "[{b}]");
        let fds = || fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
        let before = fds();
        for _ in 0..200 {
            let mut c = Conn::open(s.port);
            c.send(b"GET /sub/ HTTP/1.1\r\nHost: x\r\n\r\n");
            drop(c);
        }
        let r = get(s.port, "/a.txt");
        assert_eq!((r.status, r.text()), (200, "alpha".into()), "[{b}]");
        // Let closes and late lookups land, then count again.
        let mut after = fds();
        for _ in 0..50 {
            if after <= before + 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            after = fds();
        }
        assert!(
            after <= before + 2,
            "[{b}] {before} fds before 200 abandoned lookups, {after} after"
        );
    });
}

/// Uploads and DELETE look their store up from the kernel's caches only; when that misses the
/// request is held (its body waiting in the input), the lookup runs off the loop's thread, and
/// the answers and files are those of the warm way: PUT 201 then 204, `Expect: 100-continue`,
/// multipart, DELETE 204 then 404, a symlink in the store refused, a pipeline in order.
#[test]
fn cold_lookups_hold_uploads_and_deletes() {
    for_each_backend("cold_lookups_hold_uploads_and_deletes", |b| {
        let s = cold(b);
        let up = s.dir.join("www/up");
        std::os::unix::fs::symlink("../a.txt", up.join("link")).unwrap();
        let put = |path: &str, body: &str| {
            request(
                s.port,
                format!(
                    "PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
        };
        assert_eq!(put("/up/p.txt", "one").status, 201, "[{b}]");
        assert_eq!(put("/up/p.txt", "two").status, 204, "[{b}]");
        assert_eq!(fs::read(up.join("p.txt")).unwrap(), b"two", "[{b}]");
        assert_eq!(
            put("/up/link", "x").status,
            403,
            "[{b}] a symlink in the store"
        );
        assert_eq!(
            fs::read(s.dir.join("www/a.txt")).unwrap(),
            b"alpha",
            "[{b}]"
        );
        assert_eq!(put("/up/nodir/x", "x").status, 409, "[{b}]");
        // 100-continue: the interim answer comes once the held request is routed.
        let mut c = Conn::open(s.port);
        c.send(b"PUT /up/c.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
        assert_eq!(c.read_response_head(false).status, 100, "[{b}]");
        c.send(b"cont");
        assert_eq!(c.read_response().status, 201, "[{b}]");
        assert_eq!(fs::read(up.join("c.txt")).unwrap(), b"cont", "[{b}]");
        // Multipart.
        let body = "--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"m.txt\"\r\n\r\nmpart\r\n--B--\r\n";
        let r = request(
            s.port,
            format!(
                "POST /up/ HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        assert_eq!(r.status, 201, "[{b}] {}", r.dump());
        assert_eq!(fs::read(up.join("m.txt")).unwrap(), b"mpart", "[{b}]");
        // DELETE, and a pipeline of PUT, GET, DELETE, GET on one connection.
        let del = |path: &str| {
            request(
                s.port,
                format!("DELETE {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .status
        };
        assert_eq!(del("/up/m.txt"), 204, "[{b}]");
        assert_eq!(del("/up/m.txt"), 404, "[{b}]");
        assert_eq!(del("/up/link"), 403, "[{b}]");
        let mut c = Conn::open(s.port);
        c.send(
            b"PUT /up/q.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nqueue\
              GET /up/q.txt HTTP/1.1\r\nHost: x\r\n\r\n\
              DELETE /up/q.txt HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /up/q.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        let got: Vec<(u16, String)> = (0..4)
            .map(|_| {
                let r = c.read_response();
                (r.status, r.text())
            })
            .collect();
        assert_eq!(got[0].0, 201, "[{b}] {got:?}");
        assert_eq!(got[1], (200, "queue".to_string()), "[{b}]");
        assert_eq!(got[2].0, 204, "[{b}] {got:?}");
        assert_eq!(got[3].0, 404, "[{b}] {got:?}");
        let mut left: Vec<String> = fs::read_dir(&up)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["c.txt", "link", "p.txt"], "[{b}]");
        // Each upload and DELETE was held: its request ran a lookup task before its own.
        let log = s.log();
        assert_no_blocking_reroute(b, &log);
        for kind in [" upload#", " multipart#", " delete#"] {
            let held = log.lines().filter(|l| l.contains(kind)).all(|l| {
                let (_, rest) = l.split_once("]").unwrap_or(("", l));
                let who = rest.split(kind).next().unwrap_or("");
                let who = who.rsplit(": ").next().unwrap_or(who);
                log.lines()
                    .any(|m| m.contains(&format!("{who} lookup#")) && m.contains("lookup open"))
            });
            assert!(
                held && log.contains(kind),
                "[{b}] a{kind} task without a lookup before it:\n{log}"
            );
        }
    });
}

/// A large file whose pages are not in the page cache is not sent by sendfile(2) — which would
/// read it from the disk on the loop's thread — but read by backend read ops (io_uring's own,
/// the readiness backends' pool) and sent from memory; once cached, sendfile again. The file
/// lives under the target directory (a disk file system: pages of a tmpfs cannot be evicted).
#[test]
fn file_pages_not_in_the_page_cache_are_read_off_the_loop() {
    use std::os::fd::AsRawFd;
    for_each_backend(
        "file_pages_not_in_the_page_cache_are_read_off_the_loop",
        |b| {
            let cold_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("cold-pages-{}-{b}", std::process::id()));
            let _ = fs::remove_dir_all(&cold_dir);
            fs::create_dir_all(&cold_dir).unwrap();
            let conf = CONF.replace(
            "    location / { }",
            &format!(
                "    location / {{ }}\n    location = /status {{ status; }}\n    location /cold/ {{ alias {}/; }}",
                cold_dir.display()
            ),
        );
            let s = Server::start(b, &conf, setup);
            let body: Vec<u8> = (0..3u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
            fs::write(cold_dir.join("big.bin"), &body).unwrap();
            let f = fs::File::open(cold_dir.join("big.bin")).unwrap();
            // Written pages must reach the disk before they can be dropped from the cache.
            f.sync_all().unwrap();
            // SAFETY: a live fd; advice only.
            let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            assert_eq!(r, 0);
            let known = backends::util::cached_fully(f.as_raw_fd(), 0, body.len() as u64);
            println!("[{b}] page cache after DONTNEED, whole file cached: {known:?}");
            let before = ops_submitted(s.port);
            let r = get(s.port, "/cold/big.bin");
            assert_eq!(r.status, 200, "[{b}]");
            assert!(r.body == body, "[{b}] the bytes differ");
            let after = ops_submitted(s.port);
            let d =
                |k: &str| after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
            match known {
                Some(false) => {
                    assert_eq!(
                        d("sendfile"),
                        0,
                        "[{b}] sendfile of uncached pages: {after:?}"
                    );
                    assert!(d("read") >= 3, "[{b}] read ops: {after:?}");
                }
                Some(true) => panic!("[{b}] the file's pages could not be evicted"),
                // No cachestat(2): sendfile, as before.
                None => assert!(d("sendfile") >= 1, "[{b}] {after:?}"),
            }
            // The reads filled the page cache: the next GET is a sendfile.
            let before = ops_submitted(s.port);
            let r = get(s.port, "/cold/big.bin");
            assert!(r.status == 200 && r.body == body, "[{b}] second GET");
            let after = ops_submitted(s.port);
            let d =
                |k: &str| after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
            assert!(
                d("sendfile") >= 1,
                "[{b}] a cached file goes by sendfile: {after:?}"
            );
            drop(f);
            let _ = fs::remove_dir_all(&cold_dir);
        },
    );
}

/// `try_files` checks look up from the kernel's caches only: a miss holds the request while
/// the lookup runs off the loop, and the answers are those of the warm way — a found file, the
/// fallback — with the location's symlink policy applied to the check itself (`disable_symlinks
/// on`: a link is not there, so the fallback answers, as nginx does).
#[test]
fn cold_try_files_checks_are_held_and_follow_the_symlink_policy() {
    for_each_backend(
        "cold_try_files_checks_are_held_and_follow_the_symlink_policy",
        |b| {
            for s in [cold(b), Server::start(b, CONF, setup)] {
                let r = get(s.port, "/tf/here.txt");
                assert_eq!(
                    (r.status, r.text()),
                    (200, "here".into()),
                    "[{b}] {}",
                    r.dump()
                );
                let r = get(s.port, "/tf/missing.txt");
                assert_eq!((r.status, r.text()), (200, "fallback".into()), "[{b}]");
                let r = get(s.port, "/tfs/link.txt");
                assert_eq!(
                    (r.status, r.text()),
                    (200, "tfs real".into()),
                    "[{b}] {}",
                    r.dump()
                );
                let r = get(s.port, "/tfs/other.txt");
                assert_eq!((r.status, r.text()), (200, "other".into()), "[{b}]");
            }
            let s = cold(b);
            assert_eq!(get(s.port, "/tf/here.txt").status, 200);
            let log = s.log();
            assert_no_blocking_reroute(b, &log);
            assert!(
                log.contains("try_files: \"tf/here.txt\" not in the kernel's caches"),
                "[{b}] the check was not held:\n{log}"
            );
        },
    );
}

/// A held request is routed again with the answers of the lookups done for it
/// (`server::lookups`): even with every cached lookup missing, no request needs the
/// fallback to blocking calls.
fn assert_no_blocking_reroute(b: &str, log: &str) {
    assert!(
        !log.contains("routed with blocking calls"),
        "[{b}] a request fell back to blocking lookups:\n{log}"
    );
}
