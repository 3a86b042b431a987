//! `log_format` and `access_log PATH [FORMAT] [buffer=SIZE flush=TIME]` as an operator sees
//! them: the lines in the file, their escaping, and when buffered lines reach the disk.

mod common;

use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

fn conf(access: &str) -> String {
    format!(
        "error_log stderr info;
default_type text/plain;
log_format j escape=json '{{\"uri\":\"$uri\",\"args\":\"$args\",\"status\":$status,'
                         '\"ua\":\"$http_user_agent\",\"x\":\"$http_x_custom\",'
                         '\"cr\":$connection_requests,\"bytes\":$body_bytes_sent,'
                         '\"req\":\"$request\",\"host\":\"$host\",\"rt\":$request_time}}';
log_format plain '$remote_addr $request_method $uri $status \"$http_user_agent\" $request_id';
{access}
server {{
    listen 127.0.0.1:{{PORT}};
    server_name localhost;
    root www;
    location / {{ }}
    location = /status {{ status; }}
}}
"
    )
}

fn setup(dir: &Path) {
    write_file(dir, "www/a.txt", "hello");
}

/// The log's lines, once it has at least `n` (bounded wait: lines are written by the loop).
fn lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let l: Vec<String> = text.lines().map(str::to_string).collect();
        if l.len() >= n || Instant::now() > deadline {
            return l;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn log_format_json_with_variables() {
    for_each_backend("log_format_json_with_variables", |be| {
        let s = Server::start(be, &conf("access_log logs/j.log j;"), setup);
        let mut c = Conn::open(s.port);
        c.send(
            b"GET /a.txt?k=v HTTP/1.1\r\nHost: Example.Test\r\nUser-Agent: a \"quoted\" \\ agent\r\nX-Custom: yes\r\n\r\n\
              GET /missing HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        assert_eq!(c.read_response().status, 200);
        assert_eq!(c.read_response().status, 404);
        let l = lines(&s.dir.join("logs/j.log"), 2);
        assert_eq!(l.len(), 2, "{l:?}");
        let (head, rt) = l[0].rsplit_once(",\"rt\":").unwrap();
        assert_eq!(
            head,
            "{\"uri\":\"/a.txt\",\"args\":\"k=v\",\"status\":200,\"ua\":\"a \\\"quoted\\\" \\\\ agent\",\
             \"x\":\"yes\",\"cr\":1,\"bytes\":5,\"req\":\"GET /a.txt?k=v HTTP/1.1\",\"host\":\"example.test\"",
        );
        let rt = rt.strip_suffix('}').unwrap();
        let (secs, ms) = rt.split_once('.').unwrap();
        assert!(secs.parse::<u64>().is_ok() && ms.len() == 3, "{rt}");
        // Absent header: empty in JSON (not "-"); the second request on the connection.
        assert!(l[1].starts_with("{\"uri\":\"/missing\",\"args\":\"\",\"status\":404,\"ua\":\"\",\"x\":\"\",\"cr\":2,"), "{}", l[1]);
    });
}

#[test]
fn log_format_default_escape_and_combined() {
    for_each_backend("log_format_default_escape_and_combined", |be| {
        let s = Server::start(be, &conf("access_log logs/p.log plain;"), setup);
        let r = request(
            s.port,
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\nUser-Agent: say \"hi\"\\\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(r.status, 200);
        let l = lines(&s.dir.join("logs/p.log"), 1);
        assert_eq!(l.len(), 1, "{l:?}");
        let (front, id) = l[0].rsplit_once(' ').unwrap();
        // `$request_id` is `c<slot>.<gen> r<n>`: "-" never, the request number last.
        assert!(
            front.starts_with("127.0.0.1 GET /a.txt 200 \"say \\x22hi\\x22\\x5C\" c"),
            "{}",
            l[0]
        );
        assert_eq!(id, "r1", "{}", l[0]);
    });
}

#[test]
fn buffered_access_log_is_written_through_the_backend() {
    for_each_backend("buffered_access_log_is_written_through_the_backend", |be| {
        // A large buffer and no flush: nothing reaches the file until the server stops.
        let mut s = Server::start(
            be,
            &conf("access_log logs/b.log combined buffer=1m;"),
            setup,
        );
        for _ in 0..3 {
            assert_eq!(get(s.port, "/a.txt").status, 200);
        }
        let path = s.dir.join("logs/b.log");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap_or_default(),
            "",
            "written before the buffer filled"
        );
        let st = get(s.port, "/status");
        // The status page's op counters: no write has been submitted yet (only buffered).
        assert!(st.text().contains(" write=0"), "{}", st.text());
        let status = s.terminate();
        assert!(status.is_some_and(|st| st.success()), "{status:?}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 4, "{text}");
        assert!(
            text.lines().all(|l| l.starts_with("127.0.0.1 - - [")),
            "{text}"
        );
    });
}

#[test]
fn flush_writes_buffered_lines_within_its_time() {
    for_each_backend("flush_writes_buffered_lines_within_its_time", |be| {
        let s = Server::start(
            be,
            &conf("access_log logs/f.log combined buffer=1m flush=1s;"),
            setup,
        );
        assert_eq!(get(s.port, "/a.txt").status, 200);
        // Written by the tick once a second old (the bound here is generous, not a timing claim).
        let l = lines(&s.dir.join("logs/f.log"), 1);
        assert_eq!(l.len(), 1, "{l:?}");
        assert!(
            l[0].contains("\"GET /a.txt HTTP/1.1\" 200 5 \"-\" \"-\""),
            "{}",
            l[0]
        );
        let st = get(s.port, "/status");
        assert!(!st.text().contains(" write=0"), "{}", st.text());
    });
}

#[test]
fn access_log_config_errors() {
    let cases = [
        ("access_log a.log nope;", "unknown log format \"nope\""),
        (
            "log_format combined '$uri';",
            "duplicate \"log_format\" name \"combined\"",
        ),
        (
            "log_format x escape=xml '$uri';",
            "invalid value \"escape=xml\" in \"log_format\" directive",
        ),
        (
            "log_format x '$nope';",
            "unknown \"nope\" variable in \"log_format\" directive",
        ),
        (
            "access_log a.log combined flush=1s;",
            "\"flush\" without \"buffer\"",
        ),
        (
            "access_log a.log combined buffer=0;",
            "invalid value \"buffer=0\" in \"access_log\" directive",
        ),
        (
            "add_header X $status;",
            "unknown \"status\" variable in \"add_header\" directive",
        ),
    ];
    for (line, want) in cases {
        let dir = temp_dir();
        let path = dir.join("t.conf");
        let text = format!("{line}\nserver {{ listen 127.0.0.1:1; }}\n");
        std::fs::write(&path, &text).unwrap();
        let out = std::process::Command::new(binary())
            .args(["-t", "-c"])
            .arg(&path)
            .arg("-p")
            .arg(&dir)
            .output()
            .unwrap();
        let msg = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{line}: accepted");
        assert!(msg.contains(want), "{line}: {msg}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
