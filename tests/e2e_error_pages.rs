//! `error_page` files are read when the configuration is loaded (start, reload), beneath the
//! target location's root like any request, so answering an error opens no file on the event
//! loop: the page's bytes are those of the last load, a change is taken at the next reload, and
//! a page that is a link out of the root is never served.

mod common;

use common::*;
use std::time::{Duration, Instant};

const CONF: &str = "{BASE}\nserver {\n    listen 127.0.0.1:{PORT};\n    root www;\n    \
                    error_page 404 /errors/404.html;\n    error_page 403 /errors/403.html;\n}\n";

#[test]
fn error_pages_are_read_at_load_and_again_at_reload() {
    for_each_backend("error_pages_are_read_at_load_and_again_at_reload", |b| {
        let s = Server::start(b, CONF, |d| {
            write_file(d, "www/errors/404.html", "<p>first 404</p>\n");
        });
        let r = get(s.port, "/missing");
        assert_eq!(r.status, 404);
        assert_eq!(r.text(), "<p>first 404</p>\n");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        // Changed behind the server's back: the page of the last load answers (no file is
        // opened to answer an error) ...
        write_file(&s.dir, "www/errors/404.html", "<p>second 404, longer</p>\n");
        for _ in 0..3 {
            let r = get(s.port, "/missing");
            assert_eq!((r.status, r.text().as_str()), (404, "<p>first 404</p>\n"));
        }
        // ... and a reload reads it again.
        s.signal(libc::SIGHUP);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let r = get(s.port, "/missing");
            assert_eq!(r.status, 404);
            if r.text() == "<p>second 404, longer</p>\n" {
                assert_eq!(r.header("content-length"), Some("26"));
                break;
            }
            assert!(Instant::now() < deadline, "reload did not reread the page");
            std::thread::sleep(Duration::from_millis(20));
        }
        // HEAD: the page's length, no body.
        let r = request(
            s.port,
            b"HEAD /missing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(r.status, 404);
        assert_eq!(r.header("content-length"), Some("26"));
        assert!(r.body.is_empty());
    });
}

#[test]
fn an_error_page_linked_out_of_the_root_is_not_served() {
    for_each_backend("an_error_page_linked_out_of_the_root_is_not_served", |b| {
        let s = Server::start(b, CONF, |d| {
            write_file(d, "secret.txt", "SECRET outside the root\n");
            std::fs::create_dir_all(d.join("www/errors")).unwrap();
            std::os::unix::fs::symlink(d.join("secret.txt"), d.join("www/errors/404.html"))
                .unwrap();
            // A FIFO where the 403 page should be: refused at load, never opened to answer.
            let fifo =
                std::ffi::CString::new(d.join("www/errors/403.html").to_str().unwrap().as_bytes())
                    .unwrap();
            // SAFETY: mkfifo with a NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        });
        let r = get(s.port, "/missing");
        assert_eq!(r.status, 404);
        assert!(
            !r.text().contains("SECRET"),
            "an error page outside the root was served: {:?}",
            r.text()
        );
        assert!(
            r.text().contains("404"),
            "the built-in page: {:?}",
            r.text()
        );
        assert!(
            s.log().contains("error_page 404 -> /errors/404.html"),
            "the refused page is not named in the log:\n{}",
            s.log()
        );
    });
}
