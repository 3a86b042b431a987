//! Request routing as a client sees it: virtual hosts and ports, location modifiers, root vs
//! alias, `return`, method restrictions, and that no request path escapes the document root.

mod common;

use common::*;
use std::path::Path;

const VHOSTS: &str = "{BASE}
server {
    listen 127.0.0.1:{PORT};
    server_name a.test;
    root a;
}
server {
    listen 127.0.0.1:{PORT} default_server;
    server_name b.test www.b.test;
    root b;
}
server {
    listen 127.0.0.1:{PORT2};
    server_name c.test;
    root c;
}
server {
    listen 127.0.0.1:{PORT2};
    server_name a.test;
    root d;
}
";

fn vhost_setup(dir: &Path) {
    for site in ["a", "b", "c", "d"] {
        write_file(dir, &format!("{site}/index.html"), format!("site {site}"));
    }
}

#[test]
fn virtual_hosts_by_host_header() {
    for_each_backend("virtual_hosts_by_host_header", |be| {
        let s = Server::start(be, VHOSTS, vhost_setup);
        let cases = [
            ("a.test", "site a"),
            ("A.TEST", "site a"),
            ("a.test:8080", "site a"),
            ("b.test", "site b"),
            ("www.b.test", "site b"),
            // Unknown host: the port's default_server (declared second).
            ("unknown.test", "site b"),
            ("c.test", "site b"),
        ];
        for (host, want) in cases {
            let r = get_host(s.port, host, "/");
            assert_eq!(r.status, 200, "Host {host}:\n{}", r.dump());
            assert_eq!(r.text(), want, "Host {host} on port 1");
        }
    });
}

#[test]
fn second_port_has_its_own_servers() {
    for_each_backend("second_port_has_its_own_servers", |be| {
        let s = Server::start(be, VHOSTS, vhost_setup);
        let cases = [
            ("c.test", "site c"),
            ("a.test", "site d"),
            // No default_server on this port: the first server declared for it.
            ("unknown.test", "site c"),
            ("b.test", "site c"),
        ];
        for (host, want) in cases {
            let r = get_host(s.port2, host, "/");
            assert_eq!(r.status, 200, "Host {host}:\n{}", r.dump());
            assert_eq!(r.text(), want, "Host {host} on port 2");
        }
        // HTTP/1.0 without Host goes to the default server.
        let r = request(s.port, b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(r.text(), "site b");
    });
}

/// One connection per port, pipelining heads whose `Host` repeats and changes: each is
/// routed by its own `Host` and address (the worker remembers the last answer), also across
/// a reload that gives a name to another server.
#[test]
fn repeated_and_changing_hosts_pipelined() {
    for_each_backend("repeated_and_changing_hosts_pipelined", |be| {
        let s = Server::start(be, VHOSTS, vhost_setup);
        let pipelined = |port: u16, hosts: &[&str]| -> Vec<String> {
            let mut c = Conn::open(port);
            let reqs: String = hosts
                .iter()
                .map(|h| format!("GET / HTTP/1.1\r\nHost: {h}\r\n\r\n"))
                .collect();
            c.send(reqs.as_bytes());
            hosts.iter().map(|_| c.read_response().text()).collect()
        };
        let hosts = [
            "a.test", "a.test", "b.test", "a.test", "nope", "nope", "A.test",
        ];
        let want = [
            "site a", "site a", "site b", "site a", "site b", "site b", "site a",
        ];
        assert_eq!(pipelined(s.port, &hosts), want);
        // The same names on the other port: its own servers.
        let want2 = [
            "site d", "site d", "site c", "site d", "site c", "site c", "site d",
        ];
        assert_eq!(pipelined(s.port2, &hosts), want2);
        assert_eq!(pipelined(s.port, &["a.test"]), ["site a"]);
        // a.test moves to the server with root b: the next head naming it goes there.
        let path = s.dir.join("webserv.conf");
        let conf = std::fs::read_to_string(&path).unwrap();
        let moved = conf
            .replacen("server_name a.test;", "server_name x.test;", 1)
            .replace(
                "server_name b.test www.b.test;",
                "server_name b.test a.test;",
            );
        std::fs::write(&path, moved).unwrap();
        s.reload();
        assert_eq!(
            pipelined(s.port, &["a.test", "x.test"]),
            ["site b", "site a"]
        );
    });
}

const LOCATIONS: &str = r#"{BASE}
server {
    listen 127.0.0.1:{PORT};
    root www;

    location = /exact { return 200 "exact"; }
    location / { return 200 "root-prefix"; }
    location /images/ { return 200 "images-prefix"; }
    location ^~ /static/ { return 200 "static-caret"; }
    location ~ \.php$ { return 200 "php-regex"; }
    location ~* \.(gif|jpg)$ { return 200 "img-regex-ci"; }
    location /docs/ { return 200 "docs"; }
    location /docs/api/ { return 200 "docs-api"; }
    location ~ ^/order/ { return 200 "order-1"; }
    location ~ ^/order/b { return 200 "order-2"; }
    location = /hi { return 200 "hi there"; }

    location = /r301 { return 301 /target; }
    location = /r302 { return 302 /target; }
    location = /r307 { return 307 http://example.test/t307; }
    location = /r308 { return 308 https://example.test/t308; }

    location /r/ { root files; }
    location /al/ { alias files/aliased/; }

    location /ro/ { root files; allow_methods GET; }
    location /rw/ { root files; allow_methods GET POST DELETE; }
}
"#;

fn location_setup(dir: &Path) {
    write_file(dir, "files/r/x.txt", "root-mapped");
    write_file(dir, "files/aliased/x.txt", "alias-mapped");
    write_file(dir, "files/x.txt", "wrong-file");
    write_file(dir, "files/al/x.txt", "alias-treated-as-root");
    write_file(dir, "files/ro/f.txt", "read-only");
    write_file(dir, "files/rw/f.txt", "read-write");
}

#[test]
fn location_modifiers_pick_the_nginx_winner() {
    for_each_backend("location_modifiers_pick_the_nginx_winner", |be| {
        let s = Server::start(be, LOCATIONS, location_setup);
        let cases = [
            ("/exact", "exact"),
            ("/exact/", "root-prefix"),
            ("/exactly", "root-prefix"),
            ("/static/x.php", "static-caret"),
            ("/static/a.GIF", "static-caret"),
            ("/images/a.gif", "img-regex-ci"),
            ("/images/a.JPG", "img-regex-ci"),
            ("/images/a.txt", "images-prefix"),
            ("/x.php", "php-regex"),
            ("/x.PHP", "root-prefix"),
            ("/docs/api/v1", "docs-api"),
            ("/docs/other", "docs"),
            ("/docsx", "root-prefix"),
            ("/order/b", "order-1"),
            ("/anything", "root-prefix"),
            ("/exact?q=1", "exact"),
        ];
        for (path, want) in cases {
            let r = get(s.port, path);
            assert_eq!(r.status, 200, "{path}:\n{}", r.dump());
            assert_eq!(r.text(), want, "GET {path}");
        }
    });
}

#[test]
fn return_text_and_redirects() {
    for_each_backend("return_text_and_redirects", |be| {
        let s = Server::start(be, LOCATIONS, location_setup);
        let r = get(s.port, "/hi");
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "hi there");
        assert_eq!(r.must_header("content-length"), "8");

        for (path, code) in [("/r301", 301), ("/r302", 302)] {
            let r = get(s.port, path);
            assert_eq!(r.status, code, "{path}:\n{}", r.dump());
            let loc = r.must_header("location");
            assert!(
                loc == "/target" || loc.ends_with(&format!(":{}/target", s.port)),
                "{path}: Location {loc:?}"
            );
        }
        let r = get(s.port, "/r307");
        assert_eq!(r.status, 307, "{}", r.dump());
        assert_eq!(r.must_header("location"), "http://example.test/t307");
        let r = get(s.port, "/r308");
        assert_eq!(r.status, 308, "{}", r.dump());
        assert_eq!(r.must_header("location"), "https://example.test/t308");
    });
}

#[test]
fn root_appends_alias_replaces() {
    for_each_backend("root_appends_alias_replaces", |be| {
        let s = Server::start(be, LOCATIONS, location_setup);
        let r = get(s.port, "/r/x.txt");
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(r.text(), "root-mapped");
        let r = get(s.port, "/al/x.txt");
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(r.text(), "alias-mapped");
    });
}

fn allow_list(r: &Response) -> Vec<String> {
    let mut v: Vec<String> = r
        .must_header("allow")
        .split(',')
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect();
    v.sort();
    v
}

#[test]
fn disallowed_method_gets_405_with_allow() {
    for_each_backend("disallowed_method_gets_405_with_allow", |be| {
        let s = Server::start(be, LOCATIONS, location_setup);
        let r = request(
            s.port,
            b"POST /ro/f.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(r.status, 405, "{}", r.dump());
        assert_eq!(allow_list(&r), ["GET", "HEAD"]);

        let r = request(
            s.port,
            b"DELETE /ro/f.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(r.status, 405, "{}", r.dump());
        // The file survived.
        assert!(s.dir.join("files/ro/f.txt").exists());

        // GET implies HEAD.
        let r = request(
            s.port,
            b"HEAD /ro/f.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(r.status, 200, "{}", r.dump());

        let r = request(
            s.port,
            b"PUT /rw/f.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nzz",
        );
        assert_eq!(r.status, 405, "{}", r.dump());
        assert_eq!(allow_list(&r), ["DELETE", "GET", "HEAD", "POST"]);
        assert_eq!(
            std::fs::read_to_string(s.dir.join("files/rw/f.txt")).unwrap(),
            "read-write"
        );
    });
}

const TRAVERSAL: &str = "{BASE}
server {
    listen 127.0.0.1:{PORT};
    root site/www;
    location / { }
    location /al/ { alias site/www/inner/; }
}
";

const SECRET: &str = "TOPSECRET-do-not-serve";

#[test]
fn traversal_never_leaves_root() {
    for_each_backend("traversal_never_leaves_root", |be| {
        let s = Server::start(be, TRAVERSAL, |d| {
            write_file(d, "site/www/index.html", "public index");
            write_file(d, "site/www/inner/ok.txt", "inner ok");
            write_file(d, "site/secret.txt", SECRET);
            write_file(d, "secret.txt", SECRET);
        });
        // Sanity: the public files are reachable, so a 404 below means "refused", not "broken".
        assert_eq!(get(s.port, "/index.html").text(), "public index");
        assert_eq!(get(s.port, "/al/ok.txt").text(), "inner ok");
        let attempts = [
            "/../secret.txt",
            "/../../secret.txt",
            "/%2e%2e/secret.txt",
            "/%2E%2E/%2e%2e/secret.txt",
            "/.%2e/secret.txt",
            "/a/%2e%2e/%2e%2e/secret.txt",
            "/a/%2e%2e/%2e%2e/%2e%2e/secret.txt",
            "/..%2fsecret.txt",
            "/%2e%2e%2fsecret.txt",
            "/al/../../secret.txt",
            "/al/%2e%2e/%2e%2e/secret.txt",
            "/al/..%2f..%2fsecret.txt",
            "//etc/passwd",
            "/../../../../../../etc/passwd",
            "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
            "/index.html%00.txt",
            "/%00/../secret.txt",
            "/../webserv.conf",
        ];
        for path in attempts {
            let raw = send_raw(
                s.port,
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            );
            let text = String::from_utf8_lossy(&raw);
            assert!(!text.contains(SECRET), "{path} served the secret:\n{text}");
            assert!(
                !text.contains("root:x:0"),
                "{path} served /etc/passwd:\n{text}"
            );
            assert!(
                !text.contains("listen 127.0.0.1"),
                "{path} served the config:\n{text}"
            );
            let resps = parse_responses(&raw);
            assert_eq!(resps.len(), 1, "{path}: one response expected:\n{text}");
            assert!(
                resps[0].status == 400 || resps[0].status == 404,
                "{path}: status {} (want 400 or 404)",
                resps[0].status
            );
        }
    });
}
