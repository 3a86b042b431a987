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
