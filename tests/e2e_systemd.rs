//! Issue 15: systemd socket activation and `Type=notify` readiness, with the environment faked
//! as systemd makes it: a listening socket as fd 3 with `LISTEN_PID`/`LISTEN_FDS`/
//! `LISTEN_FDNAMES` (a small python3 wrapper binds it, moves it to fd 3 and execs webserv, so
//! the pid is webserv's), and the notifications read from a unix datagram socket the test binds.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// argv: PORT PROGRAM ARGS... — binds 127.0.0.1:PORT, puts it on fd 3, execs PROGRAM.
const WRAPPER: &str = r#"
import os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(64)
os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
env = dict(os.environ)
env["LISTEN_PID"] = str(os.getpid())
env["LISTEN_FDS"] = "1"
env["LISTEN_FDNAMES"] = "web"
os.execve(sys.argv[2], sys.argv[2:], env)
"#;

struct Activated {
    child: Child,
    dir: std::path::PathBuf,
    notify: UnixDatagram,
}

impl Activated {
    fn start(backend: &str, inherited_port: u16, listen_port: u16) -> Activated {
        let dir = temp_dir();
        write_file(&dir, "www/index.html", "activated\n");
        let conf = format!(
            "error_log stderr info;\naccess_log off;\n\
             server {{ listen 127.0.0.1:{listen_port}; root {}/www; }}\n",
            dir.display()
        );
        write_file(&dir, "webserv.conf", &conf);
        let sock = dir.join("notify.sock");
        let notify = UnixDatagram::bind(&sock).expect("bind notify socket");
        notify
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        let child = Command::new("python3")
            .arg("-c")
            .arg(WRAPPER)
            .arg(inherited_port.to_string())
            .arg(binary())
            .arg("-c")
            .arg(dir.join("webserv.conf"))
            .arg("-p")
            .arg(&dir)
            .arg("--backend")
            .arg(backend)
            .env("NOTIFY_SOCKET", &sock)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn python3 wrapper");
        Activated { child, dir, notify }
    }

    fn next(&self) -> String {
        let mut buf = [0u8; 512];
        for _ in 0..100 {
            match self.notify.recv(&mut buf) {
                Ok(n) => return String::from_utf8_lossy(&buf[..n]).into_owned(),
                // A signal to the test process (a child's exit) interrupts the wait.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("no notification: {e}; log:\n{}", self.log()),
            }
        }
        panic!("notification wait interrupted 100 times")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    fn signal(&self, sig: libc::c_int) {
        backends::util::kill(self.child.id(), sig).unwrap();
    }

    fn wait_exit(&mut self) -> Option<std::process::ExitStatus> {
        for _ in 0..500 {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Activated {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- log ----\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

#[test]
fn socket_activation_and_notify_in_order() {
    for_each_backend("socket_activation_and_notify_in_order", |b| {
        let port = free_port();
        let mut a = Activated::start(b, port, port);
        assert_eq!(first_line(&a.next()), "READY=1", "({b})");
        // The server never bound the port itself (the wrapper's socket holds it: a second
        // bind would have failed with EADDRINUSE): it serves on the inherited one.
        let r = get(port, "/");
        assert_eq!((r.status, r.text().as_str()), (200, "activated\n"), "({b})");
        assert!(
            a.log().contains("using inherited socket web on 127.0.0.1:"),
            "{}",
            a.log()
        );
        a.signal(libc::SIGHUP);
        let reloading = a.next();
        assert_eq!(first_line(&reloading), "RELOADING=1", "({b})");
        assert!(
            reloading
                .lines()
                .any(|l| l.starts_with("MONOTONIC_USEC=")
                    && l[15..].parse::<u64>().is_ok_and(|n| n > 0)),
            "{reloading}"
        );
        assert_eq!(first_line(&a.next()), "READY=1", "({b})");
        assert_eq!(get(port, "/").status, 200);
        a.signal(libc::SIGTERM);
        assert_eq!(a.next(), "STOPPING=1", "({b})");
        let st = a.wait_exit().expect("webserv did not exit after SIGTERM");
        assert!(st.success(), "exit {st:?}; log:\n{}", a.log());
    });
}

#[test]
fn an_inherited_socket_no_listen_names_is_an_error() {
    for_each_backend("an_inherited_socket_no_listen_names_is_an_error", |b| {
        let (inherited, listen) = (free_port(), free_port());
        let mut a = Activated::start(b, inherited, listen);
        let st = a.wait_exit().expect("webserv did not exit");
        assert!(!st.success(), "({b}) exit {st:?}");
        let log = a.log();
        assert!(
            log.contains(&format!(
                "inherited socket web on 127.0.0.1:{inherited} matches no listen address"
            )),
            "{log}"
        );
        // Nothing was announced as ready.
        a.notify
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 64];
        let got = loop {
            match a.notify.recv(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        assert!(got.is_err(), "a notification was sent");
    });
}

/// Without the variables, nothing changes: the server binds its own sockets and sends nothing.
#[test]
fn without_systemd_nothing_is_inherited() {
    for_each_backend("without_systemd_nothing_is_inherited", |b| {
        let s = Server::start(
            b,
            "{BASE}\nserver { listen 127.0.0.1:{PORT}; root {DIR}; }",
            |d: &Path| write_file(d, "index.html", "own\n"),
        );
        assert_eq!(get(s.port, "/").text(), "own\n");
        assert!(!s.log().contains("inherited"), "{}", s.log());
    });
}
