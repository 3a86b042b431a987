//! CGI/1.1 (RFC 3875) end to end: the environment a script sees, its stdin and stdout streamed
//! both ways, the statuses for broken, slow, missing and unrunnable scripts, and that every child
//! the server starts is gone (killed and reaped) when its request ends for any reason.

mod common;

use common::*;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

const CONF: &str = "{BASE}
server {
    listen 127.0.0.1:{PORT};
    server_name localhost;
    root www;
    location / { }
    location /cgi-bin/ {
        allow_methods GET HEAD POST;
        cgi .py /usr/bin/python3;
        cgi .sh /bin/sh;
        cgi .cgi;
        cgi_timeout 30s;
        client_max_body_size 0;
    }
    location /slow/ {
        allow_methods GET POST;
        cgi .sh /bin/sh;
        cgi_timeout 1s;
    }
}
";

/// Prints its whole environment, one `NAME=value` per line.
const ENV_SH: &str = "printf 'Content-Type: text/plain\\r\\n\\r\\n'\nenv\n";
/// Echoes the body length variables and then stdin.
const ECHO_SH: &str = "printf 'Content-Type: text/plain\\r\\n\\r\\n'
echo \"CL=${CONTENT_LENGTH-unset}\"
echo \"CT=${CONTENT_TYPE-unset}\"
cat
";

fn setup(dir: &Path) {
    write_file(dir, "www/cgi-bin/env.sh", ENV_SH);
    write_file(dir, "www/cgi-bin/echo.sh", ECHO_SH);
    write_file(
        dir,
        "www/cgi-bin/upper.sh",
        "printf 'Content-Type: application/octet-stream\\r\\n\\r\\n'\nexec tr a-z A-Z\n",
    );
    write_file(
        dir,
        "www/cgi-bin/query.sh",
        "printf 'Content-Type: text/plain\\r\\n\\r\\nq=%s\\n' \"$QUERY_STRING\"\n",
    );
    write_file(
        dir,
        "www/cgi-bin/garbage.sh",
        "echo 'this is not a header line'\n",
    );
    write_file(dir, "www/cgi-bin/silent.sh", "exit 0\n");
    write_file(
        dir,
        "www/cgi-bin/status404.sh",
        "printf 'Status: 404 Not Here\\r\\nContent-Type: text/plain\\r\\n\\r\\nscript says no\\n'\n",
    );
    write_file(
        dir,
        "www/cgi-bin/redirect.sh",
        "printf 'Location: http://x/\\r\\n\\r\\n'\n",
    );
    write_file(
        dir,
        "www/cgi-bin/hello.py",
        "import sys\nsys.stdout.write('Content-Type: text/plain\\r\\n\\r\\nhello from python\\n')\n",
    );
    // Run directly (`cgi .cgi;` has no interpreter): needs its execute bit.
    let direct = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\ndirect\\n'\n";
    write_file(dir, "www/cgi-bin/runme.cgi", direct);
    chmod(&dir.join("www/cgi-bin/runme.cgi"), 0o755);
    write_file(dir, "www/cgi-bin/noexec.cgi", direct);
    chmod(&dir.join("www/cgi-bin/noexec.cgi"), 0o644);
    // Scripts that never answer: they record their pid, then become `sleep` (same pid).
    let sleeper = |pidfile: &str| {
        format!(
            "echo $$ > '{}'\nexec sleep 30\n",
            dir.join(pidfile).display()
        )
    };
    write_file(dir, "www/slow/sleep.sh", sleeper("timeout.pid"));
    write_file(dir, "www/cgi-bin/sleep.sh", sleeper("abort.pid"));
}

fn start(backend: &str) -> Server {
    Server::start(backend, CONF, setup)
}

/// Sends `req` and returns the response and the client's own port (for REMOTE_PORT).
fn request_from(port: u16, req: &[u8]) -> (Response, u16) {
    let mut s = connect_with_timeout(port, Duration::from_secs(10));
    let local = s.local_addr().unwrap().port();
    s.write_all(req).expect("write request");
    let r = Reader::new(s)
        .read_response(req.starts_with(b"HEAD "))
        .expect("read response");
    (r, local)
}

#[test]
fn every_meta_variable_is_set() {
    for_each_backend("every_meta_variable_is_set", |b| {
        let s = start(b);
        let req = format!(
            "GET /cgi-bin/env.sh/extra/a%20b?x=1&y=%2F HTTP/1.1\r\nHost: localhost:{}\r\n\
             User-Agent: e2e/1\r\nX-Custom-Header: hello\r\nCookie: a=1\r\nCookie: b=2\r\n\
             Connection: close\r\n\r\n",
            s.port
        );
        let (r, client_port) = request_from(s.port, req.as_bytes());
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(r.header("content-type"), Some("text/plain"));
        let env = parse_env(&r.text());
        let root = s.dir.join("www");
        let want: &[(&str, String)] = &[
            ("GATEWAY_INTERFACE", "CGI/1.1".into()),
            ("SERVER_NAME", "localhost".into()),
            ("SERVER_PORT", s.port.to_string()),
            ("SERVER_PROTOCOL", "HTTP/1.1".into()),
            ("REQUEST_METHOD", "GET".into()),
            (
                "REQUEST_URI",
                "/cgi-bin/env.sh/extra/a%20b?x=1&y=%2F".into(),
            ),
            ("SCRIPT_NAME", "/cgi-bin/env.sh".into()),
            (
                "SCRIPT_FILENAME",
                root.join("cgi-bin/env.sh").display().to_string(),
            ),
            ("PATH_INFO", "/extra/a b".into()),
            (
                "PATH_TRANSLATED",
                root.join("extra/a b").display().to_string(),
            ),
            ("QUERY_STRING", "x=1&y=%2F".into()),
            ("REMOTE_ADDR", "127.0.0.1".into()),
            ("REMOTE_PORT", client_port.to_string()),
            ("REDIRECT_STATUS", "200".into()),
            ("PATH", "/usr/local/bin:/usr/bin:/bin".into()),
            ("HTTP_HOST", format!("localhost:{}", s.port)),
            ("HTTP_USER_AGENT", "e2e/1".into()),
            ("HTTP_X_CUSTOM_HEADER", "hello".into()),
            ("HTTP_COOKIE", "a=1; b=2".into()),
        ];
        for (k, v) in want {
            assert_eq!(env.get(*k), Some(v), "{k} in:\n{}", r.text());
        }
        assert!(
            env.get("SERVER_SOFTWARE")
                .is_some_and(|v| v.starts_with("webserv/")),
            "SERVER_SOFTWARE in:\n{}",
            r.text()
        );
        // A GET has no body: no CONTENT_LENGTH / CONTENT_TYPE.
        assert_eq!(env.get("CONTENT_LENGTH"), None);
        assert_eq!(env.get("CONTENT_TYPE"), None);
        // The server's own environment does not leak into the script's (the shell adds a few
        // variables of its own).
        for (k, _) in std::env::vars() {
            if ["PATH", "PWD", "OLDPWD", "SHLVL", "_"].contains(&k.as_str()) {
                continue;
            }
            assert!(
                !env.contains_key(&k),
                "server environment variable {k} reached the CGI"
            );
        }
    });
}

#[test]
fn path_info_empty_and_no_path_translated_without_it() {
    for_each_backend("path_info_empty_and_no_path_translated_without_it", |b| {
        let s = start(b);
        let r = get(s.port, "/cgi-bin/env.sh");
        assert_eq!(r.status, 200, "{}", r.dump());
        let env = parse_env(&r.text());
        assert_eq!(
            env.get("SCRIPT_NAME").map(String::as_str),
            Some("/cgi-bin/env.sh")
        );
        assert_eq!(env.get("PATH_INFO").map(String::as_str), Some(""));
        assert_eq!(env.get("PATH_TRANSLATED"), None);
        // §4.1.7: QUERY_STRING is set, empty, when there is no query.
        assert_eq!(env.get("QUERY_STRING").map(String::as_str), Some(""));

        let r = get(s.port, "/cgi-bin/env.sh/");
        let env = parse_env(&r.text());
        assert_eq!(env.get("PATH_INFO").map(String::as_str), Some("/"));
    });
}

#[test]
fn query_strings_reach_the_script_verbatim() {
    for_each_backend("query_strings_reach_the_script_verbatim", |b| {
        let s = start(b);
        for q in [
            "a=1",
            "a=1&b=2&b=3",
            "x=%20y%26z&empty=&flag",
            "%E2%9C%93=ok",
        ] {
            let r = get(s.port, &format!("/cgi-bin/query.sh?{q}"));
            assert_eq!(r.status, 200, "{}", r.dump());
            assert_eq!(r.text(), format!("q={q}\n"));
        }
        let r = get(s.port, "/cgi-bin/query.sh");
        assert_eq!(r.text(), "q=\n");
    });
}

#[test]
fn post_with_content_length_reaches_stdin() {
    for_each_backend("post_with_content_length_reaches_stdin", |b| {
        let s = start(b);
        let body = "name=webserv&msg=hello+world";
        let r = request(
            s.port,
            format!(
                "POST /cgi-bin/echo.sh HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(
            r.text(),
            format!(
                "CL={}\nCT=application/x-www-form-urlencoded\n{body}",
                body.len()
            )
        );
        // The Python interpreter mapping works as well.
        let r = get(s.port, "/cgi-bin/hello.py");
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(r.text(), "hello from python\n");
    });
}

#[test]
fn chunked_post_is_dechunked_into_stdin() {
    for_each_backend("chunked_post_is_dechunked_into_stdin", |b| {
        let s = start(b);
        let mut c = Conn::open(s.port);
        c.send(
            b"POST /cgi-bin/echo.sh HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n\
              Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        );
        std::thread::sleep(Duration::from_millis(100));
        c.send(b"1;ext=1\r\n \r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: x\r\n\r\n");
        let r = c.read_response();
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(r.text(), "CL=unset\nCT=text/plain\nhello 0123456789abcdef");
        // The connection stays usable (keep-alive after a chunked CGI exchange).
        c.send(b"GET /cgi-bin/query.sh?again HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let r = c.read_response();
        assert_eq!(r.text(), "q=again\n");
    });
}

/// The n-th byte of the 100 MB test body: printable ASCII from a xorshift stream.
struct Gen(u64);
impl Gen {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = b' ' + (self.0 % 95) as u8;
        }
    }
}

#[test]
fn hundred_megabytes_through_an_upper_casing_cgi_in_bounded_memory() {
    const TOTAL: u64 = 100 * 1024 * 1024;
    const RSS_LIMIT_KIB: u64 = 64 * 1024;
    for_each_backend(
        "hundred_megabytes_through_an_upper_casing_cgi_in_bounded_memory",
        |b| {
            let s = start(b);
            let pid = s.pid().expect("server pid");
            let stream = connect_with_timeout(s.port, Duration::from_secs(30));
            let mut w = stream.try_clone().unwrap();
            let writer = std::thread::spawn(move || {
                write!(
                    w,
                    "POST /cgi-bin/upper.sh HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                     Content-Type: application/octet-stream\r\nContent-Length: {TOTAL}\r\n\r\n"
                )
                .unwrap();
                let mut g = Gen(0x9e37_79b9_7f4a_7c15);
                let mut want = Fnv64::default();
                let mut buf = vec![0u8; 64 * 1024];
                let mut sent = 0u64;
                while sent < TOTAL {
                    let n = (TOTAL - sent).min(buf.len() as u64) as usize;
                    g.fill(&mut buf[..n]);
                    w.write_all(&buf[..n]).expect("write body");
                    buf[..n].make_ascii_uppercase();
                    want.update(&buf[..n]);
                    sent += n as u64;
                }
                want
            });
            let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let sampler = {
                let done = done.clone();
                std::thread::spawn(move || {
                    let mut peak = 0;
                    while !done.load(std::sync::atomic::Ordering::Relaxed) {
                        peak = peak.max(vm_rss_kib(pid).unwrap_or(0));
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    peak
                })
            };
            let started = Instant::now();
            let mut got = Fnv64::default();
            let res = Reader::new(stream).read_response_streaming(|d| got.update(d));
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            let peak = sampler.join().unwrap();
            let want = writer.join().expect("writer thread");
            let (r, len) = res.expect("read the 100 MB response");
            println!(
                "[{b}] 100 MB through CGI in {:.1} s; server VmRSS peak {} KiB ({:.1} MiB)",
                started.elapsed().as_secs_f64(),
                peak,
                peak as f64 / 1024.0
            );
            assert_eq!(r.status, 200, "{}", r.dump());
            assert_eq!(len, TOTAL, "response body length");
            assert_eq!(got, want, "upper-cased body differs from what was sent");
            assert!(peak > 0, "never sampled the server's RSS");
            assert!(
                peak < RSS_LIMIT_KIB,
                "server VmRSS peaked at {peak} KiB (limit {RSS_LIMIT_KIB} KiB) while streaming"
            );
        },
    );
}

#[test]
fn garbage_or_no_output_is_502() {
    for_each_backend("garbage_or_no_output_is_502", |b| {
        let s = start(b);
        for script in ["garbage.sh", "silent.sh"] {
            let r = get(s.port, &format!("/cgi-bin/{script}"));
            assert_eq!(r.status, 502, "{script}:\n{}", r.dump());
        }
    });
}

#[test]
fn cgi_timeout_is_504_and_the_child_is_killed_and_reaped() {
    for_each_backend(
        "cgi_timeout_is_504_and_the_child_is_killed_and_reaped",
        |b| {
            let s = start(b);
            let pidfile = s.dir.join("timeout.pid");
            let started = Instant::now();
            let r = request(
                s.port,
                b"GET /slow/sleep.sh HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            );
            let took = started.elapsed();
            assert_eq!(r.status, 504, "{}", r.dump());
            assert!(
                took >= Duration::from_millis(900) && took < Duration::from_secs(5),
                "504 after {took:?} with cgi_timeout 1s"
            );
            let pid: u32 = wait_for_file(&pidfile, Duration::from_secs(1))
                .expect("the script wrote its pid")
                .parse()
                .unwrap();
            if let Err(state) = wait_process_gone(pid, Duration::from_secs(4)) {
                panic!("CGI child {pid} still there 4 s after the 504 (state {state})");
            }
        },
    );
}

#[test]
fn client_abort_kills_and_reaps_the_child() {
    for_each_backend("client_abort_kills_and_reaps_the_child", |b| {
        let s = start(b);
        let pidfile = s.dir.join("abort.pid");
        let mut c = connect_with_timeout(s.port, Duration::from_secs(5));
        c.write_all(b"GET /cgi-bin/sleep.sh HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let pid: u32 = wait_for_file(&pidfile, Duration::from_secs(5))
            .expect("the script wrote its pid")
            .parse()
            .unwrap();
        assert!(proc_state(pid).is_some(), "child {pid} ended on its own");
        drop(c);
        if let Err(state) = wait_process_gone(pid, Duration::from_secs(5)) {
            panic!("CGI child {pid} still there 5 s after the client left (state {state})");
        }
        // The server is still fine.
        assert_eq!(get(s.port, "/cgi-bin/query.sh?ok").text(), "q=ok\n");
    });
}

#[test]
fn hundred_concurrent_cgi_requests_all_complete() {
    for_each_backend("hundred_concurrent_cgi_requests_all_complete", |b| {
        let s = start(b);
        let port = s.port;
        let results: Vec<(usize, Result<Response, String>)> = std::thread::scope(|sc| {
            let handles: Vec<_> = (0..100)
                .map(|i| {
                    sc.spawn(move || {
                        let mut c = connect_with_timeout(port, Duration::from_secs(30));
                        let req = format!(
                            "GET /cgi-bin/query.sh?n={i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                        );
                        let r = c
                            .write_all(req.as_bytes())
                            .map_err(|e| e.to_string())
                            .and_then(|_| {
                                Reader::new(c).read_response(false).map_err(|e| e.to_string())
                            });
                        (i, r)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (i, r) in results {
            let r = r.unwrap_or_else(|e| panic!("request {i}: {e}"));
            assert_eq!(r.status, 200, "request {i}:\n{}", r.dump());
            assert_eq!(r.text(), format!("q=n={i}\n"), "request {i}");
        }
    });
}

#[test]
fn proxy_and_underscore_headers_are_not_passed() {
    for_each_backend("proxy_and_underscore_headers_are_not_passed", |b| {
        let s = start(b);
        let r = request(
            s.port,
            b"GET /cgi-bin/env.sh HTTP/1.1\r\nHost: x\r\nProxy: http://evil.example:3128/\r\n\
              X_Under: smuggled\r\nX-Over: fine\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(r.status, 200, "{}", r.dump());
        let env = parse_env(&r.text());
        assert_eq!(
            env.get("HTTP_PROXY"),
            None,
            "httpoxy: Proxy header passed on"
        );
        assert_eq!(env.get("HTTP_X_UNDER"), None, "header with '_' passed on");
        assert!(
            !env.values().any(|v| v == "smuggled"),
            "underscore header value reached the CGI:\n{}",
            r.text()
        );
        assert_eq!(env.get("HTTP_X_OVER").map(String::as_str), Some("fine"));
    });
}

#[test]
fn missing_script_is_404_and_unexecutable_is_403() {
    for_each_backend("missing_script_is_404_and_unexecutable_is_403", |b| {
        let s = start(b);
        let r = get(s.port, "/cgi-bin/nope.sh");
        assert_eq!(r.status, 404, "{}", r.dump());
        let r = get(s.port, "/cgi-bin/nope.sh/with/path/info");
        assert_eq!(r.status, 404, "{}", r.dump());
        // No interpreter mapped for .cgi: an executable file runs, a 0644 one is refused.
        let r = get(s.port, "/cgi-bin/runme.cgi");
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(r.text(), "direct\n");
        let r = get(s.port, "/cgi-bin/noexec.cgi");
        assert_eq!(r.status, 403, "{}", r.dump());
    });
}

#[test]
fn status_and_location_headers_set_the_status() {
    for_each_backend("status_and_location_headers_set_the_status", |b| {
        let s = start(b);
        let r = get(s.port, "/cgi-bin/status404.sh");
        assert_eq!(r.status, 404, "{}", r.dump());
        assert_eq!(r.text(), "script says no\n");
        let r = get(s.port, "/cgi-bin/redirect.sh");
        assert_eq!(r.status, 302, "{}", r.dump());
        assert_eq!(r.header("location"), Some("http://x/"), "{}", r.dump());
    });
}
