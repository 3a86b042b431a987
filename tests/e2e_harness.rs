//! The harness's own promise that every other test leans on: `Server::start` returns once the
//! server it started listens, so the test's first request reaches that server.

mod common;

use common::*;
use std::io::Write;
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Another process's listening socket on the server's port answers a connect, but it is not the
/// server. This is what a child spawned by another test thread holds of the listener
/// `free_port` bound and dropped, until the child's exec closes it (close-on-exec): a port wait
/// that connected to such a leftover would end before the server had bound the port, and once
/// the leftover went, the first request would be refused (twice in CI, a first request was
/// refused right after the wait). Here `sleep` holds the leftover, and the server is started
/// only after the leftover is gone: the wait must outlast the leftover and end once the server
/// itself listens; the first request is then served.
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
                .arg("30")
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
            // The server's pid from the start (sh execs it) but its exec held back until a line
            // arrives on sh's stdin.
            let mut server = Command::new("/bin/sh")
                .arg("-c")
                .arg("read go && exec \"$0\" \"$@\"")
                .arg(binary())
                .args(["-c", "webserv.conf", "-p", ".", "--backend", b])
                .current_dir(&dir)
                .stdin(Stdio::piped())
                .stdout(log.try_clone().expect("dup log"))
                .stderr(log)
                .spawn()
                .expect("spawn sh");
            let mut go = server.stdin.take().expect("sh's stdin");
            let (backend, log_at) = (b.to_string(), log_path.clone());
            let waiter = std::thread::spawn(move || {
                let r = wait_for_server(&mut server, port, &backend, &log_at);
                (server, r, Instant::now())
            });
            // Time for a wait that takes any answer to end (it would, at its first connect).
            std::thread::sleep(Duration::from_millis(300));
            let _ = holder.kill();
            let _ = holder.wait();
            let released = Instant::now();
            let _ = go.write_all(b"go\n");
            let (mut server, waited, ended) = waiter.join().expect("the wait panicked");
            // The first request: once the leftover is gone, as CI's refused ones came.
            let r = std::panic::catch_unwind(|| get(port, "/a.txt"));
            // Before anything can fail: no process of this test outlives it.
            let _ = backends::util::kill(server.id(), libc::SIGTERM);
            let status = server.wait().expect("wait for webserv");
            let server_log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let _ = std::fs::remove_dir_all(&dir);
            waited.unwrap_or_else(|e| panic!("[{b}] {e}"));
            assert!(
                ended >= released,
                "[{b}] the wait ended while the leftover still answered, before the server was \
                 even started"
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
