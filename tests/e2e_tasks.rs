//! Issue 9, pinned end to end before the fix: the 13 CGI / pipelining defects (`d01_` … `d13_`)
//! and the behaviours the task system adds (`t_`): small CGI outputs with `Content-Length`, 500 for
//! a script that fails before its head is committed, HEAD on a CGI, `cgi_param`, in-order error
//! answers on a pipeline, thousands of CGI start/exit/abort interleavings, and the task identity
//! on every log line.
//!
//! Each test states what a client (or `ps`) sees. The hostile CGI scripts are written into the
//! server's temp prefix by `setup`; the ones that must be found by pid write a pid file first.
//! Servers run in a process group of their own (`Server::start_opts(.., own_group = true)`), so a
//! server that signals its whole group cannot take the test runner with it, and a `sleep` sibling
//! in that group shows whether it did.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

const CONF: &str = "{BASE}
client_body_timeout 1s;
server {
    listen 127.0.0.1:{PORT};
    server_name localhost;
    root www;
    location / { }
    location /cgi-bin/ {
        allow_methods GET HEAD POST;
        cgi .sh /bin/sh;
        cgi_timeout 10s;
        client_max_body_size 0;
    }
    location /tick/ {
        cgi .sh /bin/sh;
        cgi_timeout 1500ms;
    }
    location /app/ {
        index index.sh;
        cgi .sh /bin/sh;
    }
    location /uploads/ {
        allow_methods GET HEAD POST;
        upload_store www/uploads;
    }
}
";

/// `printf` of a CGI head with a text/plain body, for scripts.
const TEXT_HEAD: &str = "printf 'Content-Type: text/plain\\r\\n\\r\\n'";

fn setup(dir: &Path) {
    let d = dir.display();
    write_file(dir, "www/index.html", "the index page\n");
    write_file(dir, "www/a.txt", "a");
    write_file(dir, "www/b.txt", "b");
    write_file(dir, "www/real.txt", "real");
    write_file(dir, "www/smuggled.txt", "SMUGGLED");
    write_file(dir, "www/r.txt", "0123456789abcdefghij");
    std::fs::create_dir_all(dir.join("www/uploads/a b")).unwrap();
    let sh = |path: &str, body: String| write_file(dir, &format!("www/{path}"), body);
    sh("cgi-bin/hello.sh", format!("{TEXT_HEAD}\necho hello\n"));
    // d01: answers, leaves a grandchild holding stdout for 2 s, exits at once.
    sh(
        "cgi-bin/bg.sh",
        format!("{TEXT_HEAD}\necho bg\nsleep 2 &\nexit 0\n"),
    );
    sh(
        "cgi-bin/slow3.sh",
        format!("sleep 3\n{TEXT_HEAD}\necho slow3\n"),
    );
    // d02: a Location head that never ends (no blank line).
    sh(
        "cgi-bin/loc_noblank.sh",
        "printf 'Location: /index.html\\n'\n".into(),
    );
    // d03: a local redirect that never reads its stdin.
    sh(
        "cgi-bin/localredir.sh",
        "printf 'Location: /index.html\\r\\n\\r\\n'\n".into(),
    );
    // d05: Content-Length disagreeing with the body, both ways.
    sh(
        "cgi-bin/cl_long.sh",
        "printf 'Content-Type: text/plain\\r\\nContent-Length: 5\\r\\n\\r\\n'\n\
         printf 'helloHTTP/1.1 200 OK\\r\\nContent-Length: 7\\r\\n\\r\\nspoofed'\n"
            .into(),
    );
    sh(
        "cgi-bin/cl_short.sh",
        "printf 'Content-Type: text/plain\\r\\nContent-Length: 50\\r\\n\\r\\n'\n\
         printf 'short'\n"
            .into(),
    );
    // d06: silent past client_body_timeout, then answers without reading stdin.
    sh(
        "cgi-bin/late.sh",
        format!("sleep 3\n{TEXT_HEAD}\necho late\n"),
    );
    // d08: the index of /app/ is a script.
    sh(
        "app/index.sh",
        format!("{TEXT_HEAD}\necho ran-the-index-script\n"),
    );
    // d09: a 1xx status followed by a spoofed response.
    sh(
        "cgi-bin/status100.sh",
        "printf 'Status: 100 Continue\\r\\nContent-Type: text/plain\\r\\n\\r\\n'\n\
         printf 'HTTP/1.1 200 OK\\r\\nContent-Length: 7\\r\\n\\r\\nspoofed'\n"
            .into(),
    );
    // d10: a line every 0.5 s for 3 s, under cgi_timeout 1500ms.
    sh(
        "tick/tick.sh",
        format!("{TEXT_HEAD}\nfor i in 1 2 3 4 5 6; do echo line$i; sleep 0.5; done\n"),
    );
    // d13 / aborts: record the pid, then become `sleep` (same pid).
    sh(
        "cgi-bin/sleeper.sh",
        format!("echo $$ > '{d}/sleeper.pid'\nexec sleep 30\n"),
    );
    // t_: small and large outputs.
    sh(
        "cgi-bin/small.sh",
        format!(
            "{TEXT_HEAD}\necho 'small body 1'\necho \"$REQUEST_METHOD\" > '{d}/small.method'\n"
        ),
    );
    sh(
        "cgi-bin/large.sh",
        "printf 'Content-Type: application/octet-stream\\r\\n\\r\\n'\n\
         head -c 204800 /dev/zero | tr '\\000' x\n"
            .into(),
    );
    // t_: a complete small answer, then a failure before the head could be committed.
    sh(
        "cgi-bin/exit3.sh",
        format!("{TEXT_HEAD}\necho partial\necho boom-stderr-tail >&2\nexit 3\n"),
    );
    sh(
        "cgi-bin/killed.sh",
        format!("{TEXT_HEAD}\necho partial\nkill -KILL $$\n"),
    );
    sh("cgi-bin/fail3.sh", "echo fail3-stderr >&2\nexit 3\n".into());
    // d13: ignores TERM (recording it), so only KILL ends it; bounded to 30 s.
    sh(
        "cgi-bin/stubborn.sh",
        format!(
            "echo $$ > '{d}/stubborn.pid'\ntrap 'echo TERM >> \"{d}/stubborn.term\"' TERM\n\
             i=0\nwhile [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done\n"
        ),
    );
    sh(
        "cgi-bin/slow05.sh",
        format!("sleep 0.5\n{TEXT_HEAD}\necho slow05\n"),
    );
    sh(
        "cgi-bin/out5120.sh",
        format!("{TEXT_HEAD}\nhead -c 5120 /dev/zero | tr '\\000' y\n"),
    );
}

fn start(backend: &str) -> Server {
    Server::start_opts(backend, CONF, setup, &[], true)
}

/// A `sleep` in the server's process group, killed and reaped on drop.
struct Sibling(Child);

impl Sibling {
    fn new(s: &Server) -> Sibling {
        Sibling(s.group_sibling())
    }

    /// Still running: nobody signalled the server's process group.
    fn alive(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for Sibling {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The server process is running and answers a fresh GET.
fn assert_serving(s: &mut Server, what: &str) {
    assert!(s.alive(), "{what}: the server died ({:?})", s.exit_status());
    let r = get(s.port, "/a.txt");
    assert_eq!(r.status, 200, "{what}: after it, {}", r.dump());
    assert_eq!(r.text(), "a", "{what}");
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The raw value bytes of the first header line `name:` in a response head (before the blank
/// line), exactly as sent.
fn raw_header(bytes: &[u8], name: &str) -> Option<Vec<u8>> {
    let end = find(bytes, b"\r\n\r\n").unwrap_or(bytes.len());
    let head = &bytes[..end];
    let mut lines = head.split(|&b| b == b'\n');
    lines.next();
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(i) = line.iter().position(|&b| b == b':') {
            if line[..i].eq_ignore_ascii_case(name.as_bytes()) {
                let v = &line[i + 1..];
                let start = v.iter().position(|&b| b != b' ').unwrap_or(v.len());
                return Some(v[start..].to_vec());
            }
        }
    }
    None
}

fn get_req(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")
}

// ---------------------------------------------------------------------------------------------
// The 13 defects
// ---------------------------------------------------------------------------------------------

/// Defect 1: a reaped child's slot reused by a second CGI, then the first client leaves: the
/// server must not signal pid 0 (its own process group).
#[test]
fn d01_reused_child_slot_never_signals_the_process_group() {
    for_each_backend(
        "d01_reused_child_slot_never_signals_the_process_group",
        |b| {
            let mut s = start(b);
            let mut sib = Sibling::new(&s);
            // c1: the script answers and exits; its grandchild keeps stdout open for 2 s.
            let mut c1 = connect_with_timeout(s.port, Duration::from_secs(5));
            c1.write_all(get_req("/cgi-bin/bg.sh").as_bytes()).unwrap();
            // The child exits and is reaped; its task waits for stdout EOF.
            std::thread::sleep(Duration::from_millis(300));
            // c2: a CGI that runs 3 s, started while c1's task is still attached.
            let mut c2 = connect_with_timeout(s.port, Duration::from_secs(10));
            c2.write_all(b"GET /cgi-bin/slow3.sh HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            std::thread::sleep(Duration::from_millis(300));
            // c1 leaves (reset: its next send and receive fail).
            reset_connection(c1);
            let r = Reader::new(c2).read_response(false);
            assert!(
                sib.alive(),
                "a process in the server's group was signalled (kill(0, ...))"
            );
            let r = r.unwrap_or_else(|e| {
                panic!("c2's CGI answer lost ({e}); server alive: {}", s.alive())
            });
            assert_eq!(r.status, 200, "{}", r.dump());
            assert_eq!(r.text(), "slow3\n");
            std::thread::sleep(Duration::from_millis(300));
            assert!(sib.alive(), "the server's process group was signalled");
            assert_serving(&mut s, "c1 left with a reused child slot");
        },
    );
}

/// Defect 2: output `Location: /index.html\n` and EOF, no blank line.
#[test]
fn d02_location_head_without_blank_line_does_not_crash() {
    for_each_backend("d02_location_head_without_blank_line_does_not_crash", |b| {
        let mut s = start(b);
        let (bytes, _) = exchange(
            s.port,
            b"GET /cgi-bin/loc_noblank.sh HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(3),
        );
        let (resps, err) = try_parse_responses(&bytes);
        assert!(
            err.is_none() && resps.len() == 1,
            "want exactly one well-formed response, got {} ({err:?}):\n{}",
            resps.len(),
            String::from_utf8_lossy(&bytes)
        );
        let r = &resps[0];
        assert!(
            (r.status == 200 && r.text() == "the index page\n")
                || r.status == 502
                || r.status == 500,
            "want the redirect target, 502 or 500:\n{}",
            r.dump()
        );
        assert_serving(&mut s, "Location head without a blank line");
    });
}

/// Defect 3: a POST answered by a local redirect, whose body is itself a request.
#[test]
fn d03_local_redirect_does_not_answer_the_body_as_a_request() {
    for_each_backend(
        "d03_local_redirect_does_not_answer_the_body_as_a_request",
        |b| {
            let mut s = start(b);
            let smuggled = "GET /smuggled.txt HTTP/1.1\r\nHost: x\r\n\r\n";
            let head = format!(
                "POST /cgi-bin/localredir.sh HTTP/1.1\r\nHost: x\r\n\
                 Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                smuggled.len()
            );
            // The body arrives after the script has answered (it never reads its stdin).
            let mut c = connect_with_timeout(s.port, Duration::from_secs(5));
            c.write_all(head.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(400));
            let _ = c.write_all(smuggled.as_bytes());
            let (bytes, _) = read_until_close(&mut c, Duration::from_millis(1500));
            let (resps, err) = try_parse_responses(&bytes);
            assert!(
                find(&bytes, b"SMUGGLED").is_none(),
                "the request body was answered as a request:\n{}",
                String::from_utf8_lossy(&bytes)
            );
            assert!(
                err.is_none() && resps.len() == 1,
                "want exactly one response, got {} ({err:?}):\n{}",
                resps.len(),
                String::from_utf8_lossy(&bytes)
            );
            assert_serving(&mut s, "local redirect of a POST");
        },
    );
}

/// Defect 4a: a 32 MB response the client never reads while it keeps sending requests: the
/// client's writes must block (the server stops receiving), and the server's RSS stays flat.
#[test]
fn d04a_unread_response_plus_endless_requests_is_back_pressured() {
    const SEND_LIMIT: usize = 48 << 20;
    const GROWTH_LIMIT_KIB: u64 = 16 * 1024;
    for_each_backend(
        "d04a_unread_response_plus_endless_requests_is_back_pressured",
        |b| {
            let mut s = Server::start_opts(
                b,
                CONF,
                |dir| {
                    setup(dir);
                    write_file(dir, "www/big.bin", vec![b'z'; 32 << 20]);
                },
                &[],
                true,
            );
            let pid = s.pid().unwrap();
            assert_eq!(get(s.port, "/a.txt").status, 200);
            let base = vm_rss_kib(pid).expect("server RSS");
            let mut c = connect_with_timeout(s.port, Duration::from_secs(5));
            c.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
            c.write_all(get_req("/big.bin").as_bytes()).unwrap();
            let block: Vec<u8> = get_req("/a.txt").repeat(2048).into_bytes();
            let mut sent = 0usize;
            let mut peak = base;
            let mut blocked = None;
            while sent < SEND_LIMIT {
                match c.write(&block) {
                    Ok(n) => sent += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        blocked = Some(e);
                        break;
                    }
                }
                peak = peak.max(vm_rss_kib(pid).unwrap_or(0));
            }
            std::thread::sleep(Duration::from_millis(500));
            peak = peak.max(vm_rss_kib(pid).unwrap_or(0));
            println!(
                "[{b}] sent {:.1} MiB before {}; server VmRSS {base} -> peak {peak} KiB",
                sent as f64 / 1048576.0,
                blocked
                    .as_ref()
                    .map_or("the limit".to_string(), |e| e.to_string())
            );
            let e = blocked.unwrap_or_else(|| {
                panic!(
                    "the client sent {} MiB without blocking: the server keeps receiving \
                     (VmRSS {base} -> {peak} KiB)",
                    sent >> 20
                )
            });
            assert!(
                matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ),
                "the send failed instead of blocking: {e}"
            );
            assert!(
                peak - base < GROWTH_LIMIT_KIB,
                "server VmRSS grew {} KiB (limit {GROWTH_LIMIT_KIB}) for {} MiB sent",
                peak - base,
                sent >> 20
            );
            drop(c);
            assert_serving(&mut s, "an unread 32 MB response");
        },
    );
}

/// Defect 4b: 100 pipelined GETs of a 200 kB file, never read: RSS stays flat, and all 100
/// answers still arrive, in order, once the client reads.
#[test]
fn d04b_hundred_unread_pipelined_responses_stay_bounded() {
    const SIZE: usize = 200_000;
    const GROWTH_LIMIT_KIB: u64 = 6 * 1024;
    for_each_backend(
        "d04b_hundred_unread_pipelined_responses_stay_bounded",
        |b| {
            let mut s = Server::start_opts(
                b,
                CONF,
                |dir| {
                    setup(dir);
                    let body: Vec<u8> = (0..SIZE).map(|i| b'a' + (i % 26) as u8).collect();
                    write_file(dir, "www/f200k.bin", body);
                },
                &[],
                true,
            );
            let pid = s.pid().unwrap();
            assert_eq!(get(s.port, "/f200k.bin").body.len(), SIZE);
            let base = vm_rss_kib(pid).expect("server RSS");
            let mut c = connect_with_timeout(s.port, Duration::from_secs(10));
            let mut reqs = String::new();
            for i in 0..100 {
                reqs.push_str(&format!(
                    "GET /f200k.bin?{i} HTTP/1.1\r\nHost: x\r\n{}\r\n",
                    if i == 99 { "Connection: close\r\n" } else { "" }
                ));
            }
            c.write_all(reqs.as_bytes()).unwrap();
            let mut peak = base;
            for _ in 0..15 {
                std::thread::sleep(Duration::from_millis(100));
                peak = peak.max(vm_rss_kib(pid).unwrap_or(0));
            }
            println!("[{b}] 100 unread 200 kB responses: server VmRSS {base} -> peak {peak} KiB");
            let mut rd = Reader::new(c);
            for i in 0..100 {
                let r = rd
                    .read_response(false)
                    .unwrap_or_else(|e| panic!("response {i}: {e}"));
                assert_eq!(r.status, 200, "response {i}");
                assert_eq!(r.body.len(), SIZE, "response {i}");
                assert_eq!(&r.body[..3], b"abc", "response {i}");
            }
            assert!(
                peak - base < GROWTH_LIMIT_KIB,
                "server VmRSS grew {} KiB (limit {GROWTH_LIMIT_KIB}) for 100 unread responses",
                peak - base
            );
            assert_serving(&mut s, "100 unread pipelined responses");
        },
    );
}

/// Defect 5: a CGI's Content-Length that disagrees with what it writes never desynchronises a
/// keep-alive connection.
#[test]
fn d05_cgi_content_length_mismatch_never_desyncs() {
    for_each_backend("d05_cgi_content_length_mismatch_never_desyncs", |b| {
        let mut s = start(b);
        // Longer than declared: answer 1 is "hello"; then a correct answer 2, or a close.
        let mut c = Conn::open(s.port);
        c.send(get_req("/cgi-bin/cl_long.sh").as_bytes());
        let r = c.read_response();
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(r.text(), "hello");
        if c.try_send(get_req("/real.txt").as_bytes()).is_ok() {
            match c.try_read_response() {
                Ok(r2) => {
                    assert_eq!(
                        (r2.status, r2.text().as_str()),
                        (200, "real"),
                        "the answer to the next request is the CGI's extra bytes:\n{}",
                        r2.dump()
                    )
                }
                Err(_) => assert!(c.is_closed(), "neither an answer nor a close"),
            }
        }
        // Shorter than declared, with a request pipelined behind: the connection closes after
        // the short body; the next answer never fills the gap.
        let mut t = connect_with_timeout(s.port, Duration::from_secs(5));
        t.write_all(
            format!(
                "{}{}",
                get_req("/cgi-bin/cl_short.sh"),
                get_req("/real.txt")
            )
            .as_bytes(),
        )
        .unwrap();
        let (bytes, closed) = read_until_close(&mut t, Duration::from_secs(3));
        let raw = String::from_utf8_lossy(&bytes);
        let (resps, err) = try_parse_responses(&bytes);
        for r in &resps {
            assert!(
                find(&r.body, b"HTTP/1.1").is_none(),
                "the next response was read as the rest of a short CGI body:\n{raw}"
            );
        }
        if err.is_some() {
            // A cut response (the short body): the client learns it from the close.
            assert!(
                closed,
                "a short CGI body, and the connection stays open (the client waits \
                 forever):\n{raw}"
            );
        } else {
            // Whole responses (e.g. a 502 for the short output): then the next one is right.
            assert!(!resps.is_empty(), "no answer at all");
            if let Some(r2) = resps.get(1) {
                assert_eq!((r2.status, r2.text().as_str()), (200, "real"), "{raw}");
            } else {
                assert!(closed, "one answer for two requests, and no close:\n{raw}");
            }
        }
        assert_serving(&mut s, "Content-Length mismatch");
    });
}

/// Defect 6: client_body_timeout while the CGI runs, then the script answers.
#[test]
fn d06_body_timeout_during_cgi_does_not_crash() {
    for_each_backend("d06_body_timeout_during_cgi_does_not_crash", |b| {
        let mut s = start(b);
        let started = Instant::now();
        let mut c = connect_with_timeout(s.port, Duration::from_secs(5));
        c.write_all(
            b"POST /cgi-bin/late.sh HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",
        )
        .unwrap();
        let (bytes, closed) = read_until_close(&mut c, Duration::from_secs(3));
        // The script writes at 3 s (the body timeout fires at 1-2 s): let it reach the server.
        if let Some(rest) = Duration::from_millis(3700).checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
        assert!(s.alive(), "the server died ({:?})", s.exit_status());
        let (resps, err) = try_parse_responses(&bytes);
        assert!(
            err.is_none() && resps.len() <= 1,
            "malformed answer ({err:?}):\n{}",
            String::from_utf8_lossy(&bytes)
        );
        if let Some(r) = resps.first() {
            assert_eq!(r.status, 408, "{}", r.dump());
        }
        assert!(closed, "the connection stays open after the body timeout");
        assert_serving(&mut s, "client_body_timeout during a CGI");
    });
}

/// Defect 7: an error on the third pipelined request does not drop the second's answer.
#[test]
fn d07_pipelined_error_keeps_earlier_answers_in_order() {
    for_each_backend("d07_pipelined_error_keeps_earlier_answers_in_order", |b| {
        let s = start(b);
        let req = format!(
            "{}{}{}",
            get_req("/a.txt"),
            get_req("/b.txt"),
            get_req("/%zz")
        );
        let (bytes, _) = exchange(s.port, req.as_bytes(), Duration::from_secs(3));
        let (resps, err) = try_parse_responses(&bytes);
        let got = statuses_and_bodies(&resps);
        assert_eq!(
            got,
            vec![
                (200, "a".to_string()),
                (200, "b".to_string()),
                (400, String::new())
            ],
            "({err:?}) raw:\n{}",
            String::from_utf8_lossy(&bytes)
        );
    });
}

/// Defect 8: the index file of a CGI location is run, never served as source.
#[test]
fn d08_cgi_index_is_run_not_disclosed() {
    for_each_backend("d08_cgi_index_is_run_not_disclosed", |b| {
        let s = start(b);
        let r = get(s.port, "/app/");
        assert!(
            !r.text().contains("printf"),
            "GET /app/ disclosed the script's source:\n{}",
            r.dump()
        );
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(r.text(), "ran-the-index-script\n");
        // The script named directly runs as well.
        assert_eq!(
            get(s.port, "/app/index.sh").text(),
            "ran-the-index-script\n"
        );
    });
}

/// Defect 9: `Status: 100` from a script is a bad gateway answer, not a final status.
#[test]
fn d09_cgi_status_1xx_is_502() {
    for_each_backend("d09_cgi_status_1xx_is_502", |b| {
        let s = start(b);
        let (bytes, _) = exchange(
            s.port,
            b"GET /cgi-bin/status100.sh HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(3),
        );
        assert!(
            bytes.starts_with(b"HTTP/1.1 502"),
            "want 502:\n{}",
            String::from_utf8_lossy(&bytes)
        );
        assert!(
            find(&bytes, b"spoofed").is_none(),
            "the script's body reached the client:\n{}",
            String::from_utf8_lossy(&bytes)
        );
    });
}

/// Defect 10: cgi_timeout limits silence, not run time.
#[test]
fn d10_cgi_timeout_is_an_inactivity_limit() {
    for_each_backend("d10_cgi_timeout_is_an_inactivity_limit", |b| {
        let s = start(b);
        let mut c = connect_with_timeout(s.port, Duration::from_secs(8));
        c.write_all(b"GET /tick/tick.sh HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let (bytes, closed) = read_until_close(&mut c, Duration::from_secs(5));
        assert!(closed, "no end of the response");
        let (resps, err) = try_parse_responses(&bytes);
        assert!(
            err.is_none() && resps.len() == 1,
            "want one complete response ({err:?}):\n{}",
            String::from_utf8_lossy(&bytes)
        );
        let r = &resps[0];
        assert_eq!(r.status, 200, "{}", r.dump());
        assert!(
            r.header("content-length").is_some()
                || r.header("transfer-encoding") == Some("chunked"),
            "the body is not framed, so its end cannot be told from a cut:\n{}",
            r.dump()
        );
        assert_eq!(r.text(), "line1\nline2\nline3\nline4\nline5\nline6\n");
    });
}

/// Defect 11: the Location of an upload into a directory with a space is percent-encoded.
#[test]
fn d11_upload_location_is_percent_encoded() {
    for_each_backend("d11_upload_location_is_percent_encoded", |b| {
        let s = start(b);
        let (bytes, _) = exchange(
            s.port,
            b"POST /uploads/a%20b/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
              Content-Type: application/octet-stream\r\nContent-Length: 5\r\n\r\nhello",
            Duration::from_secs(3),
        );
        assert!(
            bytes.starts_with(b"HTTP/1.1 201"),
            "want 201:\n{}",
            String::from_utf8_lossy(&bytes)
        );
        let loc = raw_header(&bytes, "location").expect("a Location header");
        let text = String::from_utf8_lossy(&loc).into_owned();
        assert!(
            !loc.iter()
                .any(|&c| c == b' ' || c == b'\r' || c == b'\n' || c >= 0x80),
            "raw bytes in Location {text:?}"
        );
        assert!(text.starts_with("/uploads/a%20b/"), "Location {text:?}");
        let back = get(s.port, &text);
        assert_eq!(back.status, 200, "GET {text}: {}", back.dump());
        assert_eq!(back.text(), "hello");
    });
}

/// Defect 12: If-Range with a validator that does not match gets the whole file.
#[test]
fn d12_if_range_mismatch_sends_the_whole_file() {
    for_each_backend("d12_if_range_mismatch_sends_the_whole_file", |b| {
        let s = start(b);
        let full = get(s.port, "/r.txt");
        let etag = full.must_header("etag").to_string();
        let ranged = |if_range: &str| {
            request(
                s.port,
                format!(
                    "GET /r.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\nRange: bytes=0-9\r\n\
                     If-Range: {if_range}\r\n\r\n"
                )
                .as_bytes(),
            )
        };
        let r = ranged(&etag);
        assert_eq!(r.status, 206, "current ETag: {}", r.dump());
        assert_eq!(r.text(), "0123456789");
        for stale in ["\"stale\"", "Sat, 01 Jan 2000 00:00:00 GMT"] {
            let r = ranged(stale);
            assert_eq!(r.status, 200, "If-Range {stale}: {}", r.dump());
            assert_eq!(r.text(), "0123456789abcdefghij", "If-Range {stale}");
        }
    });
}

/// Defect 13: a client that leaves while a silent CGI runs gets its child killed and reaped.
#[test]
fn d13_client_gone_kills_and_reaps_a_silent_cgi() {
    for_each_backend("d13_client_gone_kills_and_reaps_a_silent_cgi", |b| {
        let mut s = start(b);
        let mut c = connect_with_timeout(s.port, Duration::from_secs(5));
        c.write_all(get_req("/cgi-bin/sleeper.sh").as_bytes())
            .unwrap();
        let pid: u32 = wait_for_file(&s.dir.join("sleeper.pid"), Duration::from_secs(5))
            .expect("the script wrote its pid")
            .parse()
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        assert!(proc_state(pid).is_some(), "the CGI {pid} ended on its own");
        drop(c);
        if let Err(state) = wait_process_gone(pid, Duration::from_secs(3)) {
            panic!("CGI {pid} still there (state {state}) 3 s after its client left");
        }
        // One that ignores TERM: TERM first, KILL a second later, reaped.
        let mut c = connect_with_timeout(s.port, Duration::from_secs(5));
        c.write_all(get_req("/cgi-bin/stubborn.sh").as_bytes())
            .unwrap();
        let pid: u32 = wait_for_file(&s.dir.join("stubborn.pid"), Duration::from_secs(5))
            .expect("the script wrote its pid")
            .parse()
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        drop(c);
        if let Err(state) = wait_process_gone(pid, Duration::from_secs(3)) {
            panic!("TERM-ignoring CGI {pid} still there (state {state}) 3 s after its client left");
        }
        assert_eq!(
            std::fs::read_to_string(s.dir.join("stubborn.term"))
                .ok()
                .as_deref(),
            Some("TERM\n"),
            "the script was not sent TERM (once) before KILL"
        );
        assert_serving(&mut s, "client gone during a CGI");
    });
}

// ---------------------------------------------------------------------------------------------
// The behaviours "What to build" adds
// ---------------------------------------------------------------------------------------------

/// Output that ends within the first buffer gets Content-Length, no chunked coding.
#[test]
fn t_small_cgi_output_has_content_length() {
    for_each_backend("t_small_cgi_output_has_content_length", |b| {
        let s = start(b);
        let r = get(s.port, "/cgi-bin/small.sh");
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(r.text(), "small body 1\n");
        assert_eq!(r.header("transfer-encoding"), None, "{}", r.dump());
        assert_eq!(r.header("content-length"), Some("13"), "{}", r.dump());
    });
}

/// Output beyond the first buffer streams, chunked on HTTP/1.1.
#[test]
fn t_large_cgi_output_streams_chunked() {
    for_each_backend("t_large_cgi_output_streams_chunked", |b| {
        let s = start(b);
        let r = get(s.port, "/cgi-bin/large.sh");
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(
            r.header("transfer-encoding"),
            Some("chunked"),
            "{}",
            r.dump()
        );
        assert_eq!(r.header("content-length"), None);
        assert_eq!(r.body.len(), 204_800);
        assert!(r.body.iter().all(|&c| c == b'x'));
    });
}

/// A script that fails (exit status 3, or SIGKILL) before its head was committed is a 500, and
/// its stderr reaches the error log.
#[test]
fn t_cgi_failing_before_head_is_500() {
    for_each_backend("t_cgi_failing_before_head_is_500", |b| {
        let mut s = start(b);
        for script in ["exit3.sh", "killed.sh"] {
            let r = get(s.port, &format!("/cgi-bin/{script}"));
            assert_eq!(r.status, 500, "{script}: {}", r.dump());
            assert!(!r.text().contains("partial"), "{script}: {}", r.dump());
        }
        assert!(
            s.log().contains("boom-stderr-tail"),
            "stderr tail not logged"
        );
        assert_serving(&mut s, "failing scripts");
    });
}

/// HEAD on a CGI runs it and answers GET's headers without a body.
#[test]
fn t_head_on_cgi_matches_get_without_body() {
    for_each_backend("t_head_on_cgi_matches_get_without_body", |b| {
        let s = start(b);
        let g = get(s.port, "/cgi-bin/small.sh");
        let method = s.dir.join("small.method");
        let _ = std::fs::remove_file(&method);
        let (bytes, closed) = exchange(
            s.port,
            b"HEAD /cgi-bin/small.sh HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(3),
        );
        assert!(closed, "no close after the HEAD response");
        let head_end = find(&bytes, b"\r\n\r\n").expect("a response head") + 4;
        assert_eq!(
            &bytes[head_end..],
            b"",
            "HEAD answered with body bytes:\n{}",
            String::from_utf8_lossy(&bytes)
        );
        let h = Reader::new(&bytes[..]).read_response(true).unwrap();
        assert_eq!(h.status, g.status, "{}", h.dump());
        assert_eq!(h.header("content-type"), g.header("content-type"));
        assert_eq!(
            h.header("content-length"),
            Some(g.body.len().to_string().as_str()),
            "HEAD:\n{}\nGET:\n{}",
            h.dump(),
            g.dump()
        );
        assert_eq!(
            wait_for_file(&method, Duration::from_secs(1)).as_deref(),
            Some("HEAD"),
            "the script did not run for HEAD"
        );
    });
}

const PARAM_CONF: &str = "http {
{BASE}
    cgi_param X_HTTP_LEVEL from-http;
    server {
        listen 127.0.0.1:{PORT};
        server_name localhost;
        root www;
        location /plain/ { cgi .sh /bin/sh; }
        location /p/ {
            allow_methods GET POST;
            cgi .sh /bin/sh;
            cgi_param PATH_INFO $uri;
            cgi_param SERVER_SOFTWARE custom-software;
            cgi_param X_URI $uri;
            cgi_param X_REQUEST_URI $request_uri;
            cgi_param X_ARGS $args;
            cgi_param X_QUERY_STRING $query_string;
            cgi_param X_HOST $host;
            cgi_param X_METHOD $request_method;
            cgi_param X_DOCROOT $document_root;
            cgi_param X_FILENAME $request_filename;
            cgi_param X_SERVER_NAME $server_name;
            cgi_param X_SERVER_PORT $server_port;
            cgi_param X_REMOTE_ADDR $remote_addr;
            cgi_param X_CONTENT_TYPE $content_type;
            cgi_param X_CONTENT_LENGTH $content_length;
            cgi_param X_COMBO $request_method:$host;
        }
    }
    server {
        listen 127.0.0.1:{PORT2};
        server_name second;
        root www;
        cgi_param X_SERVER_LEVEL from-server;
        location /plain/ { cgi .sh /bin/sh; }
    }
}
";

/// `cgi_param` at http, server and location level, with nginx variables.
#[test]
fn t_cgi_param_sets_variables_at_every_level() {
    for_each_backend("t_cgi_param_sets_variables_at_every_level", |b| {
        let s = Server::start_opts(
            b,
            PARAM_CONF,
            |dir| {
                let env = "printf 'Content-Type: text/plain\\r\\n\\r\\n'\nenv\n";
                write_file(dir, "www/p/env.sh", env);
                write_file(dir, "www/plain/env.sh", env);
            },
            &[],
            true,
        );
        let body = "k=v";
        let r = request(
            s.port,
            format!(
                "POST /p/env.sh/extra?a=1&b=%2F HTTP/1.1\r\nHost: LocalHost:{}\r\n\
                 Connection: close\r\nContent-Type: text/x-test\r\nContent-Length: {}\r\n\r\n{body}",
                s.port,
                body.len()
            )
            .as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.dump());
        let env = parse_env(&r.text());
        let root = s.dir.join("www").display().to_string();
        let want: &[(&str, String)] = &[
            ("PATH_INFO", "/p/env.sh/extra".into()),
            ("SERVER_SOFTWARE", "custom-software".into()),
            ("X_URI", "/p/env.sh/extra".into()),
            ("X_REQUEST_URI", "/p/env.sh/extra?a=1&b=%2F".into()),
            ("X_ARGS", "a=1&b=%2F".into()),
            ("X_QUERY_STRING", "a=1&b=%2F".into()),
            ("X_HOST", "localhost".into()),
            ("X_METHOD", "POST".into()),
            ("X_DOCROOT", root.clone()),
            ("X_FILENAME", format!("{root}/p/env.sh/extra")),
            ("X_SERVER_NAME", "localhost".into()),
            ("X_SERVER_PORT", s.port.to_string()),
            ("X_REMOTE_ADDR", "127.0.0.1".into()),
            ("X_CONTENT_TYPE", "text/x-test".into()),
            ("X_CONTENT_LENGTH", body.len().to_string()),
            ("X_COMBO", "POST:localhost".into()),
            // The standard variables stay where no cgi_param overrides them.
            ("SCRIPT_NAME", "/p/env.sh".into()),
            ("QUERY_STRING", "a=1&b=%2F".into()),
        ];
        for (k, v) in want {
            assert_eq!(env.get(*k), Some(v), "{k} in:\n{}", r.text());
        }
        // Inherited from http{} by a location that sets none.
        let r = get(s.port, "/plain/env.sh");
        let env = parse_env(&r.text());
        assert_eq!(
            env.get("X_HTTP_LEVEL").map(String::as_str),
            Some("from-http"),
            "{}",
            r.text()
        );
        assert_eq!(env.get("PATH_INFO").map(String::as_str), Some(""));
        // Inherited from server{}.
        let r = get_host(s.port2, "second", "/plain/env.sh");
        let env = parse_env(&r.text());
        assert_eq!(
            env.get("X_SERVER_LEVEL").map(String::as_str),
            Some("from-server"),
            "{}",
            r.text()
        );
    });
}

/// An error on request 3 of a pipeline whose first request is a slow CGI: answers 1 and 2 in
/// order, then the error, then the connection closes (request 4 is never answered).
#[test]
fn t_pipeline_error_answers_in_order_then_closes() {
    for_each_backend("t_pipeline_error_answers_in_order_then_closes", |b| {
        let s = start(b);
        let req = format!(
            "{}{}GET /a.txt HTTP/1.1\r\nHost: x\r\nbad header line\r\n\r\n{}",
            get_req("/cgi-bin/slow05.sh"),
            get_req("/b.txt"),
            get_req("/a.txt"),
        );
        let (bytes, closed) = exchange(s.port, req.as_bytes(), Duration::from_secs(3));
        let (resps, err) = try_parse_responses(&bytes);
        let got = statuses_and_bodies(&resps);
        assert_eq!(
            got,
            vec![
                (200, "slow05\n".to_string()),
                (200, "b".to_string()),
                (400, String::new())
            ],
            "({err:?}) raw:\n{}",
            String::from_utf8_lossy(&bytes)
        );
        assert!(closed, "the connection stays open after the 400");
    });
}

const CHURN_CONF: &str = "{BASE}
server {
    listen 127.0.0.1:{PORT};
    root www;
    location / { }
    location /churn/ { cgi .sh /bin/sh; cgi_timeout 5s; }
}
";

/// xorshift64: a fixed, reproducible sequence of choices per thread.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Thousands of CGI starts, exits, failures and client aborts, with grandchildren that keep
/// stdout open or outlive their parent, over several connections at once: the server answers
/// throughout, signals nothing outside its children, and leaves no zombie.
#[test]
fn t_cgi_churn_start_exit_abort_with_grandchildren() {
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 500;
    for_each_backend("t_cgi_churn_start_exit_abort_with_grandchildren", |b| {
        let mut s = Server::start_opts(
            b,
            CHURN_CONF,
            |dir| {
                write_file(dir, "www/a.txt", "a");
                let head = "printf 'Content-Type: text/plain\\r\\n\\r\\n'";
                let sh = |n: &str, body: String| write_file(dir, &format!("www/churn/{n}"), body);
                sh("quick.sh", format!("{head}\necho q\n"));
                sh(
                    "bgquiet.sh",
                    format!("sleep 0.5 </dev/null >/dev/null 2>&1 &\n{head}\necho g\n"),
                );
                sh("bgout.sh", format!("{head}\necho o\nsleep 0.3 &\nexit 0\n"));
                sh("slow.sh", format!("sleep 0.3\n{head}\necho s\n"));
                sh("fail.sh", "exit 1\n".into());
            },
            &[],
            true,
        );
        let mut sib = Sibling::new(&s);
        zombie_check_sees_a_zombie();
        let port = s.port;
        let started = Instant::now();
        let counts = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..THREADS)
                .map(|t| {
                    sc.spawn(move || {
                        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((t + 1) * 0x1234_5678));
                        let mut counts = [0u64; 5];
                        let mut keep: Option<Conn> = None;
                        for i in 0..PER_THREAD {
                            let pick = (rng.next() % 100) as usize;
                            let kind = match pick {
                                0..=39 => 0,
                                40..=54 => 1,
                                55..=69 => 2,
                                70..=84 => 3,
                                _ => 4,
                            };
                            counts[kind] += 1;
                            let what = format!("thread {t} request {i} (kind {kind})");
                            match kind {
                                // Quick CGIs on a keep-alive connection.
                                0 | 1 => {
                                    let c = keep.get_or_insert_with(|| Conn::open(port));
                                    let path = if kind == 0 { "quick.sh" } else { "bgquiet.sh" };
                                    c.send(get_req(&format!("/churn/{path}")).as_bytes());
                                    let r = c
                                        .try_read_response()
                                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                                    assert_eq!(r.status, 200, "{what}: {}", r.dump());
                                    let want = if kind == 0 { "q\n" } else { "g\n" };
                                    assert_eq!(r.text(), want, "{what}");
                                    if r.header("connection") == Some("close") {
                                        keep = None; // keepalive_requests reached
                                    }
                                }
                                // A grandchild holds stdout; the client leaves within 40 ms,
                                // before or after the script exits (reset or close).
                                2 => {
                                    let mut c = connect_with_timeout(port, Duration::from_secs(10));
                                    c.write_all(get_req("/churn/bgout.sh").as_bytes()).unwrap();
                                    let wait = rng.next() % 40;
                                    std::thread::sleep(Duration::from_millis(wait));
                                    if rng.next().is_multiple_of(2) {
                                        reset_connection(c);
                                    }
                                }
                                // The client leaves before the script says anything.
                                3 => {
                                    let mut c = connect_with_timeout(port, Duration::from_secs(10));
                                    c.write_all(get_req("/churn/slow.sh").as_bytes()).unwrap();
                                    if rng.next().is_multiple_of(2) {
                                        std::thread::sleep(Duration::from_millis(5));
                                        reset_connection(c);
                                    }
                                }
                                // A script that fails without output.
                                _ => {
                                    let r = request(
                                        port,
                                        b"GET /churn/fail.sh HTTP/1.1\r\nHost: x\r\n\
                                          Connection: close\r\n\r\n",
                                    );
                                    assert!(
                                        r.status == 500 || r.status == 502,
                                        "{what}: {}",
                                        r.dump()
                                    );
                                }
                            }
                        }
                        counts
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join()).collect::<Vec<_>>()
        });
        let failures: Vec<String> = counts
            .iter()
            .filter_map(|r| r.as_ref().err())
            .map(|p| {
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            })
            .collect();
        assert!(
            failures.is_empty(),
            "client threads failed (server alive: {}, its process group signalled: {}):\n{}",
            s.alive(),
            !sib.alive(),
            failures.join("\n")
        );
        let counts: Vec<[u64; 5]> = counts.into_iter().flatten().collect();
        let mut total = [0u64; 5];
        for c in &counts {
            for k in 0..5 {
                total[k] += c[k];
            }
        }
        println!(
            "[{b}] {} CGI requests (quick, bg-quiet, bg-stdout+abort, slow+abort, fail = {total:?}) \
             in {:.1} s",
            THREADS * PER_THREAD,
            started.elapsed().as_secs_f64()
        );
        assert!(sib.alive(), "the server's process group was signalled");
        assert_serving(&mut s, "the CGI churn");
        // Every aborted script and every grandchild is done within a second or so; then the
        // server has no zombie child left.
        let pid = s.pid().unwrap();
        let deadline = Instant::now() + Duration::from_secs(4);
        loop {
            let zombies = zombie_children(pid);
            if zombies.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "zombie children of the server: {zombies:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(sib.alive(), "the server's process group was signalled");
    });
}

/// The zombie check can fail: a shell that execs `sleep` after starting a short child leaves
/// that child a zombie (nobody reaps it), and `zombie_children` must see it.
fn zombie_check_sees_a_zombie() {
    let mut parent = std::process::Command::new("/bin/sh")
        .args(["-c", "sleep 0 & exec sleep 2"])
        .spawn()
        .expect("spawn sh");
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut seen = Vec::new();
    while seen.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        seen = zombie_children(parent.id());
    }
    let _ = parent.kill();
    let _ = parent.wait();
    assert!(
        !seen.is_empty(),
        "zombie_children does not see a known zombie"
    );
}

/// The children of `pid` that are zombies, from `/proc/*/stat` (field 3 the state, field 4 the
/// parent pid; the command name before them is in parentheses and may hold spaces).
fn zombie_children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let procs = std::fs::read_dir("/proc").expect("read /proc");
    for p in procs.flatten() {
        let Some(child) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(p.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let (state, ppid) = (f.next(), f.next().and_then(|v| v.parse::<u32>().ok()));
        if ppid == Some(pid) && state == Some("Z") {
            out.push(child);
        }
    }
    out
}

/// The documented identity at the start of a log message: `c<conn>.<gen> r<req> <kind>#<id>: `.
/// (status, body of a 200) for each response, in order.
fn statuses_and_bodies(resps: &[Response]) -> Vec<(u16, String)> {
    resps
        .iter()
        .map(|r| {
            (
                r.status,
                if r.status == 200 {
                    r.text()
                } else {
                    String::new()
                },
            )
        })
        .collect()
}

fn identity_re() -> regex_lite::Regex {
    regex_lite::Regex::new(r"^c(\d+)\.(\d+) r(\d+) ([a-z][a-z0-9_-]*)#(\d+): \S").unwrap()
}

/// `(level, message)` of each error-log line (`YYYY/MM/DD HH:MM:SS [level] PID: message`).
fn log_messages(log: &str) -> Vec<(String, String)> {
    let line =
        regex_lite::Regex::new(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[([a-z]+)\] \d+: (.*)$").unwrap();
    log.lines()
        .filter_map(|l| line.captures(l))
        .map(|c| (c[1].to_string(), c[2].to_string()))
        .collect()
}

/// `--debug`: the trace lines of a connection's tasks carry the identity, a CGI's lines name
/// their task `cgi#N`, and two requests on one connection have two request ids.
#[test]
fn t_debug_log_lines_carry_the_task_identity() {
    for_each_backend("t_debug_log_lines_carry_the_task_identity", |b| {
        let s = Server::start_opts(b, CONF, setup, &["--debug"], true);
        let mut c = Conn::open(s.port);
        for _ in 0..2 {
            c.send(get_req("/cgi-bin/out5120.sh").as_bytes());
            let r = c.read_response();
            assert_eq!(r.status, 200, "{}", r.dump());
            assert_eq!(r.body.len(), 5120);
        }
        drop(c);
        std::thread::sleep(Duration::from_millis(300));
        let log = s.log();
        let msgs = log_messages(&log);
        let id = identity_re();
        let debug: Vec<&String> = msgs
            .iter()
            .filter(|(l, _)| l == "debug")
            .map(|(_, m)| m)
            .collect();
        assert!(!debug.is_empty(), "--debug wrote no debug line:\n{log}");
        // Lines about a connection or a task use the one documented shape.
        let task_like = regex_lite::Regex::new(r"^c\d|\bconn \d|\btask\b|#\d+:").unwrap();
        let bad: Vec<&&String> = debug
            .iter()
            .filter(|m| task_like.is_match(m) && !id.is_match(m))
            .collect();
        assert!(
            bad.is_empty(),
            "{} debug lines name a connection or task without the identity \
             `c<N>.<gen> r<N> <kind>#<id>: `, e.g.:\n{}",
            bad.len(),
            bad.iter()
                .take(8)
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
        // CGI lines, for two requests on one connection.
        let mut cgi_reqs: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for m in &debug {
            if let Some(cap) = id.captures(m) {
                if &cap[4] == "cgi" {
                    cgi_reqs
                        .entry((cap[1].to_string(), cap[2].to_string()))
                        .or_default()
                        .push(cap[3].to_string());
                }
            }
        }
        assert!(
            cgi_reqs.values().any(|rs| {
                let mut rs = rs.clone();
                rs.sort();
                rs.dedup();
                rs.len() >= 2
            }),
            "no `cgi#N` identity lines for two requests of one connection (by c<N>.<gen>: \
             {cgi_reqs:?}); debug lines:\n{}",
            debug
                .iter()
                .take(30)
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    });
}

/// Without `--debug`, a failing CGI still logs an `error` line with its task identity.
#[test]
fn t_failing_cgi_logs_an_error_with_its_identity() {
    for_each_backend("t_failing_cgi_logs_an_error_with_its_identity", |b| {
        let s = start(b);
        let r = get(s.port, "/cgi-bin/fail3.sh");
        // No output and exit status 3: the script failed (500), not a bad gateway (502).
        assert_eq!(r.status, 500, "{}", r.dump());
        std::thread::sleep(Duration::from_millis(300));
        let log = s.log();
        let id = identity_re();
        let found = log_messages(&log)
            .into_iter()
            .any(|(l, m)| l == "error" && id.captures(&m).is_some_and(|c| &c[4] == "cgi"));
        assert!(
            found,
            "no `[error] ... c<N>.<gen> r<N> cgi#<id>: ` line for a script that exited 3 \
             without output:\n{log}"
        );
        assert!(
            log_messages(&log)
                .iter()
                .any(|(l, m)| l == "error" && m.contains("fail3-stderr")),
            "the script's stderr tail is not in the error log:\n{log}"
        );
        assert!(
            !log_messages(&log).iter().any(|(l, _)| l == "debug"),
            "debug lines without --debug"
        );
    });
}
