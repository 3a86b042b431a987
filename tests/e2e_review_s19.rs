//! Hostile review of session 19's additions (PROXY protocol, realip, lookups off the loop,
//! ranges, try_files). Each test is a defect found by attacking a real server, on every backend.

mod common;

use common::*;
use std::path::Path;

fn cold(backend: &str, conf: &str, setup: impl FnOnce(&Path)) -> Server {
    Server::start_env(
        backend,
        conf,
        setup,
        &[],
        false,
        &[("WEBSERV_COLD_LOOKUPS", "1")],
    )
}

const TRY_CONF: &str = "{BASE}
workers 1;
server {
    listen 127.0.0.1:{PORT};
    root www;
    location / { }
    location /a/ { try_files /b/x.txt =404; }
    location /b/ { return 403; }
}
";

fn try_setup(dir: &Path) {
    write_file(dir, "www/b/x.txt", "bx");
}

/// `try_files` that finds a file answers it in the location that ran it (nginx: only the last,
/// fallback parameter is an internal redirect). When the file's lookup went off the loop's
/// thread, the request was routed again from the rewritten path, and so matched another
/// location (here one that answers 403): a cold cache changed the answer.
#[test]
fn try_files_found_file_keeps_its_location_after_a_cold_lookup() {
    for_each_backend(
        "try_files_found_file_keeps_its_location_after_a_cold_lookup",
        |b| {
            let warm = Server::start(b, TRY_CONF, try_setup);
            let r = get(warm.port, "/a/q");
            assert_eq!((r.status, r.text()), (200, "bx".into()), "[{b}] warm");
            let s = cold(b, TRY_CONF, try_setup);
            for _ in 0..2 {
                let r = get(s.port, "/a/q");
                assert_eq!(
                    (r.status, r.text()),
                    (200, "bx".into()),
                    "[{b}] cold: {}",
                    r.dump()
                );
            }
        },
    );
}

fn realip_conf(recursive: bool) -> String {
    format!(
        "{{BASE}}
workers 1;
set_real_ip_from 127.0.0.0/8;
real_ip_header X-Forwarded-For;
real_ip_recursive {};
server {{
    listen 127.0.0.1:{{PORT}};
    root www;
    location /cgi-bin/ {{ cgi .sh /bin/sh; }}
    location = /ret {{ return 200 \"$remote_addr\\n\"; }}
    location = /hdr {{ add_header X-Client $remote_addr; return 204; }}
}}
",
        if recursive {
            {
                "on"
            }
        } else {
            {
                "off"
            }
        }
    )
}

fn realip_setup(dir: &Path) {
    write_file(
        dir,
        "www/cgi-bin/ra.sh",
        "printf 'Content-Type: text/plain\\r\\n\\r\\n'\necho \"$REMOTE_ADDR\"\n",
    );
}

fn remote_addr(port: u16, xff: &str) -> String {
    let req = format!(
        "GET /cgi-bin/ra.sh HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: {xff}\r\nConnection: close\r\n\r\n"
    );
    let r = request(port, req.as_bytes());
    assert_eq!(r.status, 200, "{}", r.dump());
    r.text().trim().to_string()
}

/// X-Forwarded-For is a list, and a recipient must accept empty elements (RFC 9110 §5.6.1;
/// nginx skips them). An empty element was taken for a bad address: a trailing comma from a
/// trusted proxy dropped the client address (the proxy's own stood), and in recursive mode an
/// empty element stopped the walk at a trusted proxy's address.
#[test]
fn realip_skips_empty_forwarded_for_elements() {
    for_each_backend("realip_skips_empty_forwarded_for_elements", |b| {
        let s = Server::start(b, &realip_conf(false), realip_setup);
        let rec = Server::start(b, &realip_conf(true), realip_setup);
        // Sanity: the plain forms work.
        assert_eq!(remote_addr(s.port, "198.51.100.7"), "198.51.100.7", "[{b}]");
        assert_eq!(
            remote_addr(s.port, "198.51.100.7,"),
            "198.51.100.7",
            "[{b}]"
        );
        assert_eq!(
            remote_addr(s.port, "198.51.100.7 , ,"),
            "198.51.100.7",
            "[{b}]"
        );
        assert_eq!(
            remote_addr(rec.port, "198.51.100.7,, 127.0.0.5"),
            "198.51.100.7",
            "[{b}] recursive"
        );
        // A bad element still ends the walk (the address to its right stands).
        assert_eq!(
            remote_addr(rec.port, "198.51.100.7, bogus, 127.0.0.5"),
            "127.0.0.5",
            "[{b}] recursive, bad element"
        );
    });
}

const SYMLINK_CONF: &str = "{BASE}
workers 1;
server {
    listen 127.0.0.1:{PORT};
    root www;
    location /strict/ { disable_symlinks on; }
    location /x/ { alias www/strict/; }
}
";

fn symlink_setup(dir: &Path) {
    write_file(dir, "www/strict/real.txt", "real");
    write_file(dir, "www/strict/realdir/f.txt", "in a linked dir");
    std::os::unix::fs::symlink("real.txt", dir.join("www/strict/link.txt")).unwrap();
    std::os::unix::fs::symlink("realdir", dir.join("www/strict/d")).unwrap();
}

/// `disable_symlinks on` refuses a symlink anywhere on the way (403). The small-file cache is
/// keyed by the mapped path, which an alias in a location that follows links shares: once that
/// location had served the file, the strict location answered it from the cache (200).
#[test]
fn disable_symlinks_holds_after_another_location_cached_the_file() {
    for_each_backend(
        "disable_symlinks_holds_after_another_location_cached_the_file",
        |b| {
            let s = Server::start(b, SYMLINK_CONF, symlink_setup);
            for (strict, lax, body) in [
                ("/strict/link.txt", "/x/link.txt", "real"),
                ("/strict/d/f.txt", "/x/d/f.txt", "in a linked dir"),
            ] {
                let r = get(s.port, strict);
                assert_eq!(r.status, 403, "[{b}] {strict} first: {}", r.dump());
                let r = get(s.port, lax);
                assert_eq!((r.status, r.text()), (200, body.into()), "[{b}] {lax}");
                let r = get(s.port, strict);
                assert_eq!(r.status, 403, "[{b}] {strict} after {lax}: {}", r.dump());
            }
            let r = get(s.port, "/strict/real.txt");
            assert_eq!((r.status, r.text()), (200, "real".into()), "[{b}]");
        },
    );
}

/// realip sets the client address for the whole request (nginx: `$remote_addr`): the access log
/// and a CGI had it, but `$remote_addr` in `return` and `add_header` still said the proxy's
/// address.
#[test]
fn realip_address_is_remote_addr_in_return_and_add_header() {
    for_each_backend(
        "realip_address_is_remote_addr_in_return_and_add_header",
        |b| {
            let s = Server::start(b, &realip_conf(false), realip_setup);
            assert_eq!(
                remote_addr(s.port, "198.51.100.7"),
                "198.51.100.7",
                "[{b}] CGI"
            );
            let r = request(
            s.port,
            b"GET /ret HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.7\r\nConnection: close\r\n\r\n",
        );
            assert_eq!(
                (r.status, r.text()),
                (200, "198.51.100.7\n".into()),
                "[{b}] {}",
                r.dump()
            );
            let r = request(
            s.port,
            b"GET /hdr HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.7\r\nConnection: close\r\n\r\n",
        );
            assert_eq!(
                r.header("X-Client"),
                Some("198.51.100.7"),
                "[{b}] {}",
                r.dump()
            );
        },
    );
}

const PIPE_CONF: &str = "{BASE}
workers 1;
server {
    listen 127.0.0.1:{PORT};
    root www;
    index index.html;
}
";

fn pipe_setup(dir: &Path) {
    write_file(dir, "www/a.txt", "alpha");
    write_file(dir, "www/dir/index.html", "idx");
    write_file(dir, "www/big.bin", vec![b'z'; 100_000]);
}

/// Complete pipelined requests, then the start of one more and a half-close: the client reads
/// on, and every complete request is answered before the server closes (RFC 9112 §9.3: the
/// partial one can never complete). The server closed at once on seeing the partial head at
/// EOF, dropping answers still queued; warm and cold lookups alike.
#[test]
fn answers_queued_before_a_partial_head_at_eof_are_sent() {
    for_each_backend(
        "answers_queued_before_a_partial_head_at_eof_are_sent",
        |b| {
            for cold_lookups in [false, true] {
                let env: &[(&str, &str)] = if cold_lookups {
                    &[("WEBSERV_COLD_LOOKUPS", "1")]
                } else {
                    &[]
                };
                let s = Server::start_env(b, PIPE_CONF, pipe_setup, &[], false, env);
                for (paths, want) in [
                    (&["/a.txt", "/a.txt"][..], vec![200, 200]),
                    (&["/big.bin", "/dir/", "/a.txt"][..], vec![200, 200, 200]),
                ] {
                    for _ in 0..5 {
                        let mut req = Vec::new();
                        for p in paths {
                            req.extend_from_slice(
                                format!("GET {p} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
                            );
                        }
                        req.extend_from_slice(b"GET /a.txt HTTP/1.1\r\nHo");
                        let mut c = connect_with_timeout(s.port, std::time::Duration::from_secs(5));
                        use std::io::Write;
                        c.write_all(&req).unwrap();
                        c.shutdown(std::net::Shutdown::Write).unwrap();
                        let (bytes, closed) =
                            read_until_close(&mut c, std::time::Duration::from_secs(5));
                        let got: Vec<u16> =
                            parse_responses(&bytes).iter().map(|r| r.status).collect();
                        assert_eq!(
                            (got, closed),
                            (want.clone(), true),
                            "[{b}] cold={cold_lookups} {paths:?}:\n{}",
                            String::from_utf8_lossy(&bytes[..bytes.len().min(600)])
                        );
                    }
                }
            }
        },
    );
}
