//! The config as an operator meets it: `webserv -t` accepts a good file, and every bad file is
//! refused with `FILE:LINE:COL: error: message` on stderr (every finding, not only the first);
//! a warning alone does not refuse; a reload with a bad file keeps the running configuration;
//! a port already in use stops the server.

mod common;

use common::*;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs the binary with `args` in `dir`; panics if it is still running after 10 s.
fn run(dir: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(binary())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn webserv");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "webserv {args:?} still running after 10 s; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collect output")
}

fn check_config(text: &str) -> (Output, String) {
    let dir = temp_dir();
    let path = dir.join("test.conf");
    std::fs::write(&path, text).unwrap();
    std::fs::create_dir_all(dir.join("www")).unwrap();
    let out = run(&dir, &["-t", "-c", path.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, all)
}

/// Runs the server (to its exit, at most 10 s) with the configuration `text` written to
/// `name` in a fresh prefix that has an empty `www/`, on backend `b`.
fn run_server(b: &str, name: &str, text: &str) -> Output {
    let dir = temp_dir();
    let path = dir.join(name);
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::write(&path, text).unwrap();
    let args = [
        "-c",
        path.to_str().unwrap(),
        "-p",
        dir.to_str().unwrap(),
        "--backend",
        b,
    ];
    let out = run(&dir, &args);
    let _ = std::fs::remove_dir_all(&dir);
    out
}

#[test]
fn good_config_passes_test_mode() {
    let text = "error_log stderr info;
types { text/html html; }
default_type application/octet-stream;
client_max_body_size 10m;
keepalive_timeout 30s;
server {
    listen 127.0.0.1:8080 default_server;
    server_name localhost;
    root www;
    index index.html;
    error_page 404 /404.html;
    location / { autoindex on; }
    location = /old { return 301 /new; }
    location ~* \\.png$ { root www; }
    location /up/ { allow_methods GET PUT; upload_store www; client_max_body_size 1k; }
}
";
    let (out, all) = check_config(text);
    assert!(out.status.success(), "-t on a good config failed:\n{all}");
    let lower = all.to_lowercase();
    assert!(
        lower.contains("syntax is ok") || lower.contains("successful"),
        "-t printed no success message:\n{all}"
    );
}

#[test]
fn shipped_default_config_passes_test_mode() {
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/default.conf");
    let out = run(Path::new(env!("CARGO_MANIFEST_DIR")), &["-t", "-c", conf]);
    assert!(
        out.status.success(),
        "conf/default.conf rejected:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Each bad config and the `LINE:COL` its error must point at.
const BAD: &[(&str, &str, &str)] = &[
    (
        "unknown directive",
        "server {\n    listen 127.0.0.1:8080;\n    frobnicate on;\n}\n",
        "3:5",
    ),
    (
        "missing semicolon",
        "server {\n    listen 127.0.0.1:8080;\n    root www\n}\n",
        "4:1",
    ),
    (
        "unbalanced closing brace",
        "server {\n    listen 127.0.0.1:8080;\n}\n}\n",
        "4:1",
    ),
    (
        "unclosed block",
        "server {\n    listen 127.0.0.1:8080;\n",
        "3:1",
    ),
    ("bad size value", "client_max_body_size 10q;\n", "1:22"),
    (
        "bad size value in a location",
        "server {\n    listen 127.0.0.1:8080;\n    location / { client_max_body_size -1; }\n}\n",
        "3:39",
    ),
    (
        "two default servers on one address",
        "server {\n    listen 127.0.0.1:8080 default_server;\n}\nserver {\n    listen 127.0.0.1:8080 default_server;\n    server_name b.test;\n}\n",
        "5:27",
    ),
    ("no server at all", "http {\n}\n", "1:1"),
];

#[test]
fn bad_configs_report_file_line_col() {
    for (what, text, pos) in BAD {
        let (out, all) = check_config(text);
        assert!(!out.status.success(), "{what}: -t accepted:\n{text}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let want = format!("test.conf:{pos}:");
        assert!(
            stderr.contains(&want),
            "{what}: stderr lacks {want:?}:\n{stderr}\n(all output: {all})"
        );
        assert!(
            !all.to_lowercase().contains("successful"),
            "{what}: a failing test claims success:\n{all}"
        );
    }
}

#[test]
fn server_refuses_to_start_with_bad_config() {
    for_each_backend("server_refuses_to_start_with_bad_config", |b| {
        let out = run_server(
            b,
            "run.conf",
            &format!(
                "server {{\n    listen 127.0.0.1:{};\n    bogus;\n}}\n",
                free_port()
            ),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started with a bad config");
        assert!(stderr.contains("run.conf:3:5:"), "stderr:\n{stderr}");
    });
}

#[test]
fn port_in_use_is_refused_with_address() {
    for_each_backend("port_in_use_is_refused_with_address", |b| {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let out = run_server(
            b,
            "busy.conf",
            &format!("error_log stderr info;\nserver {{\n    listen 127.0.0.1:{port};\n    root www;\n}}\n"),
        );
        drop(taken);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "started on a port already bound:\n{stderr}"
        );
        assert!(
            stderr.contains(&format!("127.0.0.1:{port}")),
            "stderr does not name the address:\n{stderr}"
        );
    });
}

/// A second server on an address a running one serves with several workers (its listeners
/// share the address through SO_REUSEPORT) is refused, as nginx refuses it — before the
/// check, it bound the address too and silently took part of the first one's connections.
#[test]
fn second_server_on_a_served_address_is_refused() {
    for_each_backend("second_server_on_a_served_address_is_refused", |b| {
        let first = Server::start(
            b,
            "workers 2;\nerror_log stderr info;\nserver {\n    listen 127.0.0.1:{PORT};\n    root {DIR}/www;\n}\n",
            |d| write_file(d, "www/index.html", "first\n"),
        );
        let out = run_server(
            b,
            "second.conf",
            &format!(
                "workers 2;\nerror_log stderr info;\nserver {{\n    listen 127.0.0.1:{};\n    root www;\n}}\n",
                first.port
            ),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "a second server started on 127.0.0.1:{} beside a running one:\n{stderr}",
            first.port
        );
        assert!(
            stderr.contains(&format!("127.0.0.1:{}", first.port))
                && stderr.contains("Address already in use"),
            "stderr does not say the address is in use:\n{stderr}"
        );
        // The first one serves every connection, as before.
        for _ in 0..20 {
            let r = get(first.port, "/index.html");
            assert_eq!(r.status, 200);
            assert_eq!(r.body, b"first\n");
        }
    });
}

#[test]
fn help_and_version() {
    let dir = temp_dir();
    let out = run(&dir, &["-V"]);
    assert!(out.status.success());
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(v.starts_with("webserv "), "-V printed {v:?}");
    let out = run(&dir, &["-h"]);
    assert!(out.status.success());
    let h = String::from_utf8_lossy(&out.stdout);
    for flag in ["-c CONFIG", "-p PREFIX", "-t", "--backend", "--debug"] {
        assert!(h.contains(flag), "-h does not mention {flag}:\n{h}");
    }
    let out = run(&dir, &["--no-such-flag"]);
    assert!(!out.status.success(), "an unknown flag was accepted");
}

#[test]
fn debug_traces_each_task() {
    for_each_backend("debug_traces_each_task", |b| {
        let dir = temp_dir();
        write_file(&dir, "www/index.html", "hi");
        let port = free_port();
        let conf = format!("{BASE}\nserver {{ listen 127.0.0.1:{port}; root www; }}\n");
        write_file(&dir, "t.conf", conf);
        let child = Command::new(binary())
            .args(["-c", "t.conf", "-p", ".", "--backend", b, "--debug"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn webserv");
        let deadline = Instant::now() + Duration::from_secs(10);
        let r = loop {
            if server_listening(child.id(), port) {
                break get(port, "/index.html");
            }
            assert!(Instant::now() < deadline, "server did not come up");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(r.status, 200);
        backends::util::kill(child.id(), libc::SIGTERM).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "SIGTERM exit: {:?}", out.status);
        let log = String::from_utf8_lossy(&out.stderr);
        // Every line names its task in the one documented format (README, server/ident.rs):
        // `c<slot>.<gen> r<request> <kind>#<id>: ` — here the accept, the receive of the
        // request, a task's start and the send, each traced by dispatch or the task.
        let ident = r"\[debug\] \d+: c\d+\.\d+ r\d+ [a-z]+#\d+";
        for needle in [
            ": accepted fd ",
            ": recv → Ok\\(",
            ": start",
            ": send → Ok\\(",
        ] {
            let re = regex_lite::Regex::new(&format!("{ident}{needle}")).unwrap();
            assert!(
                log.lines().any(|l| re.is_match(l)),
                "{b}: no `{needle}` line in the --debug trace:\n{log}"
            );
        }
    });
}

/// Issue 13, item 1: `-t` prints every diagnostic in the GNU format, one per line on stderr, in
/// file order, and exits 1 when any is an error; nothing claims success.
#[test]
fn test_mode_lists_every_diagnostic() {
    let dir = temp_dir();
    std::fs::create_dir_all(dir.join("www")).unwrap();
    let text = "server {\n    listne 127.0.0.1:8080;\n    client_max_body_size 9999999999999m;\n    server_name a.test;\n    location / { allow_methods; }\n}\nserver {\n    server_name a.test;\n}\nkeepalive_timeout 99999999999999999999s;\n";
    std::fs::write(dir.join("site.conf"), text).unwrap();
    let out = run(&dir, &["-t", "-c", "site.conf"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    let want = [
        "site.conf:2:5: error: unknown directive \"listne\"",
        "site.conf:3:26: error: invalid value \"9999999999999m\" in \"client_max_body_size\" directive, the size overflows (more than 2^63 - 1 bytes)",
        "site.conf:5:18: error: \"allow_methods\" directive names no method, it needs at least one of GET, HEAD, POST, PUT or DELETE",
        "site.conf:10:19: error: invalid value \"99999999999999999999s\" in \"keepalive_timeout\" directive, the time overflows (more than 2^63 - 1 ms)",
        "site.conf:8:17: warning: conflicting server name \"a.test\" on 0.0.0.0:80, ignored",
        "webserv: configuration file site.conf test failed",
    ];
    let got: Vec<&str> = stderr.lines().collect();
    assert_eq!(got, want, "stderr:\n{stderr}");
    assert_eq!(stdout, "", "a failing test printed on stdout");
}

/// A warning alone: printed on stderr in the same format, and the test succeeds (exit 0).
#[test]
fn test_mode_passes_with_a_warning() {
    let dir = temp_dir();
    std::fs::create_dir_all(dir.join("www")).unwrap();
    let text = "server { listen 127.0.0.1:8080; server_name a.test; root www; }\nserver { listen 127.0.0.1:8080; server_name a.test; root www; }\n";
    std::fs::write(dir.join("w.conf"), text).unwrap();
    let out = run(&dir, &["-t", "-c", "w.conf"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    assert_eq!(
        stderr,
        "w.conf:2:45: warning: conflicting server name \"a.test\" on 127.0.0.1:8080, ignored\n"
    );
    assert!(stdout.contains("test is successful"), "{stdout}");
}

/// A reload (SIGHUP) with a bad file logs every diagnostic and keeps serving with the running
/// configuration; a good file afterwards is taken.
#[test]
fn reload_with_errors_keeps_the_running_config() {
    for_each_backend("reload_with_errors_keeps_the_running_config", |b| {
        let conf = "{BASE}\nserver {\n    listen 127.0.0.1:{PORT};\n    root www;\n}\n";
        let s = Server::start(b, conf, |d| write_file(d, "www/a.txt", "old"));
        let path = s.dir.join("webserv.conf");
        let good = std::fs::read_to_string(&path).unwrap();
        let bad = good.replace("root www;", "root www;\n    bogus;\n    allow_methods GET;");
        std::fs::write(&path, &bad).unwrap();
        s.signal(libc::SIGHUP);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !s.log().contains("keeping the running configuration") {
            assert!(
                std::time::Instant::now() < deadline,
                "no refusal logged:\n{}",
                s.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let log = s.log();
        let p = path.to_string_lossy();
        for want in [
            format!("SIGHUP: {p}:14:5: error: unknown directive \"bogus\""),
            format!("SIGHUP: {p}:15:5: error: \"allow_methods\" directive is not allowed here"),
            format!("SIGHUP: {p} has 2 error(s); keeping the running configuration"),
        ] {
            assert!(log.contains(&want), "log lacks {want:?}:\n{log}");
        }
        let r = get(s.port, "/a.txt");
        assert_eq!((r.status, r.text().as_str()), (200, "old"));
        // A good file is then taken: the new root answers.
        write_file(&s.dir, "www2/a.txt", "new");
        std::fs::write(&path, good.replace("root www;", "root www2;")).unwrap();
        s.signal(libc::SIGHUP);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let r = get(s.port, "/a.txt");
            if r.text() == "new" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "reload not taken");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    });
}
