//! The harness's own promise that every other test leans on: `Server::start` returns once the
//! server it started listens, so the test's first request reaches that server.

mod common;

use common::*;
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Another process's listening socket on the server's port answers a connect, but it is not the
/// server. This is what a child spawned by another test thread holds of the listener
/// `free_port` bound and dropped, until the child's exec closes it (close-on-exec): twice in CI
/// the port wait connected to such a leftover, the leftover went, and the first request was
/// refused before the server had bound the port. Here the leftover is held by `sleep` for
/// 300 ms and the server binds the port 500 ms after it is spawned: the wait must end only
/// when the server itself listens, and the first request, sent once the leftover is gone, is
/// then served (a wait that the leftover ended has it refused, as in CI).
#[test]
fn the_port_wait_waits_for_the_server_not_for_any_listener() {
    for_each_backend(
        "the_port_wait_waits_for_the_server_not_for_any_listener",
        |b| {
            let dir = temp_dir();
            write_file(&dir, "www/a.txt", "served");
            // A port of this process's own (`free_port`: no other test here gets it), listened
            // on again; another thread's bind(:0) may hold it for an instant, so a few tries.
            let (port, leftover) = (0..5)
                .find_map(|_| {
                    let port = free_port();
                    TcpListener::bind(("127.0.0.1", port))
                        .ok()
                        .map(|l| (port, l))
                })
                .expect("a free port to listen on");
            let mut holder = Command::new("sleep")
                .arg("0.3")
                .stdin(Stdio::from(OwnedFd::from(leftover)))
                .spawn()
                .expect("spawn sleep");
            assert!(listening(port), "the leftover answers a connect");
            write_file(
                &dir,
                "webserv.conf",
                format!("{BASE}\nserver {{\n    listen 127.0.0.1:{port};\n    root www;\n}}\n"),
            );
            let log_path = dir.join("server.log");
            let log = std::fs::File::create(&log_path).expect("create log");
            let mut server = Command::new("/bin/sh")
                .arg("-c")
                .arg("sleep 0.5 && exec \"$0\" \"$@\"")
                .arg(binary())
                .args(["-c", "webserv.conf", "-p", ".", "--backend", b])
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup log"))
                .stderr(log)
                .spawn()
                .expect("spawn sh");
            let started = Instant::now();
            let waited = wait_for_server(&mut server, port, b, &log_path);
            let took = started.elapsed();
            // The first request once the leftover is gone: what CI's refused first requests
            // met (a wait that the leftover ended sends it before the server has bound).
            let _ = holder.wait();
            let r = std::panic::catch_unwind(|| get(port, "/a.txt"));
            // Before anything can fail: no process of this test outlives it.
            let _ = backends::util::kill(server.id(), libc::SIGTERM);
            let status = server.wait().expect("wait for webserv");
            let server_log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let _ = std::fs::remove_dir_all(&dir);
            waited.unwrap_or_else(|e| panic!("[{b}] {e}"));
            assert!(
                took >= Duration::from_millis(400),
                "[{b}] the wait ended after {took:?}, before the server could listen (it \
                 answered for the leftover)"
            );
            let r =
                r.unwrap_or_else(|_| panic!("[{b}] the first request failed; log:\n{server_log}"));
            assert_eq!((r.status, r.text().as_str()), (200, "served"), "[{b}]");
            assert!(
                status.success(),
                "[{b}] webserv exit: {status:?}\n{server_log}"
            );
        },
    );
}
