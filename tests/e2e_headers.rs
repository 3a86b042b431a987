//! `add_header` and `expires` as a client sees them: which statuses get them, `always`,
//! nginx's inheritance rule (a level with any `add_header` replaces the inherited ones), values
//! with variables, and `expires` replacing a CGI's own cache fields.

mod common;

use common::*;
use std::path::Path;

const CONF: &str = "{BASE}
server {
    listen 127.0.0.1:{PORT};
    server_name localhost;
    root www;
    add_header X-Server-Level srv;
    add_header X-Always-Srv yes always;
    expires 1h;
    location / { }
    location /own/ {
        add_header X-Own \"$uri on $host?$args\";
        add_header X-Empty $args;
        expires off;
    }
    location /epoch/ { expires epoch; }
    location /max/ { expires max; }
    location /neg/ { expires -1; }
    location /cgi/ {
        cgi .sh /bin/sh;
        expires 30s;
    }
    location /ret/ {
        add_header X-Ret r;
        return 301 /elsewhere;
    }
}
";

fn setup(dir: &Path) {
    for d in ["", "own/", "epoch/", "max/", "neg/"] {
        write_file(dir, &format!("www/{d}a.txt"), "a");
    }
    write_file(
        dir,
        "www/cgi/c.sh",
        "printf 'Content-Type: text/plain\\r\\nCache-Control: private\\r\\nExpires: 0\\r\\n\\r\\ncgi'\n",
    );
}

/// Seconds since the epoch of an IMF-fixdate (`Thu, 01 Jan 1970 00:00:01 GMT`).
fn http_date(s: &str) -> i64 {
    let p: Vec<&str> = s.split([' ', ':']).collect();
    assert_eq!(p.len(), 8, "{s}");
    let day: i64 = p[1].parse().unwrap();
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = months.iter().position(|x| *x == p[2]).unwrap() as i64 + 1;
    let y: i64 = p[3].parse().unwrap();
    // Days from civil (Howard Hinnant's algorithm).
    let (y2, m2) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let (h, mi, se): (i64, i64, i64) = (
        p[4].parse().unwrap(),
        p[5].parse().unwrap(),
        p[6].parse().unwrap(),
    );
    days * 86400 + h * 3600 + mi * 60 + se
}

#[test]
fn add_header_by_status_and_always() {
    for_each_backend("add_header_by_status_and_always", |be| {
        let s = Server::start(be, CONF, setup);
        let r = get(s.port, "/a.txt");
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(r.text(), "a");
        assert_eq!(r.headers_all("X-Server-Level"), ["srv"], "{}", r.dump());
        assert_eq!(r.headers_all("X-Always-Srv"), ["yes"]);
        // A 404 gets only the `always` one, and no Expires.
        let r = get(s.port, "/absent.txt");
        assert_eq!(r.status, 404, "{}", r.dump());
        assert_eq!(r.header("X-Server-Level"), None, "{}", r.dump());
        assert_eq!(r.headers_all("X-Always-Srv"), ["yes"]);
        assert_eq!(r.header("Expires"), None);
        assert_eq!(r.header("Cache-Control"), None);
        // The body still frames right after the head grew (keep-alive: a second request).
        let mut c = Conn::open(s.port);
        c.send(
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /own/a.txt?k=v HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        let r1 = c.read_response();
        let r2 = c.read_response();
        assert_eq!((r1.status, r1.text().as_str()), (200, "a"));
        assert_eq!((r2.status, r2.text().as_str()), (200, "a"));
        // A redirect (301) is in nginx's list.
        let r = get(s.port, "/ret/x");
        assert_eq!(r.status, 301, "{}", r.dump());
        assert_eq!(r.header("Location"), Some("/elsewhere"));
        assert_eq!(r.headers_all("X-Ret"), ["r"]);
    });
}

#[test]
fn add_header_inheritance_and_variables() {
    for_each_backend("add_header_inheritance_and_variables", |be| {
        let s = Server::start(be, CONF, setup);
        let r = get_host(s.port, "Example.TEST:8080", "/own/a.txt?q=1");
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(r.headers_all("X-Own"), ["/own/a.txt on example.test?q=1"]);
        // A level with its own add_header inherits none (not even `always` ones); an empty
        // value adds nothing; `expires off` there.
        assert_eq!(r.header("X-Server-Level"), None, "{}", r.dump());
        assert_eq!(r.header("X-Always-Srv"), None);
        let r = get(s.port, "/own/a.txt");
        assert_eq!(r.header("X-Empty"), None, "{}", r.dump());
        assert_eq!(r.header("Expires"), None);
        assert_eq!(r.header("Cache-Control"), None);
    });
}

#[test]
fn expires_values() {
    for_each_backend("expires_values", |be| {
        let s = Server::start(be, CONF, setup);
        let r = get(s.port, "/a.txt");
        assert_eq!(
            r.header("Cache-Control"),
            Some("max-age=3600"),
            "{}",
            r.dump()
        );
        let ahead = http_date(r.must_header("Expires")) - http_date(r.must_header("Date"));
        assert!((3599..=3601).contains(&ahead), "Expires - Date = {ahead}");
        let r = get(s.port, "/epoch/a.txt");
        assert_eq!(r.header("Expires"), Some("Thu, 01 Jan 1970 00:00:01 GMT"));
        assert_eq!(r.header("Cache-Control"), Some("no-cache"));
        let r = get(s.port, "/max/a.txt");
        assert_eq!(r.header("Expires"), Some("Thu, 31 Dec 2037 23:55:55 GMT"));
        assert_eq!(r.header("Cache-Control"), Some("max-age=315360000"));
        let r = get(s.port, "/neg/a.txt");
        assert_eq!(r.header("Cache-Control"), Some("no-cache"), "{}", r.dump());
        let behind = http_date(r.must_header("Expires")) - http_date(r.must_header("Date"));
        assert!((-2..=0).contains(&behind), "Expires - Date = {behind}");
        // A CGI's own Expires and Cache-Control are replaced, once each.
        let r = get(s.port, "/cgi/c.sh");
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(r.text(), "cgi");
        assert_eq!(
            r.headers_all("Cache-Control"),
            ["max-age=30"],
            "{}",
            r.dump()
        );
        assert_eq!(r.headers_all("Expires").len(), 1);
        // Conditional GET: a 304 carries them too (nginx's list has 304).
        let etag = get(s.port, "/a.txt").must_header("ETag").to_string();
        let req = format!(
            "GET /a.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n"
        );
        let r = request(s.port, req.as_bytes());
        assert_eq!(r.status, 304, "{}", r.dump());
        assert_eq!(r.header("Cache-Control"), Some("max-age=3600"));
    });
}

#[test]
fn header_directive_errors() {
    let cases = [
        (
            "add_header \"Bad Name\" x;",
            "invalid value \"Bad Name\" in \"add_header\" directive",
        ),
        (
            "add_header X y sometimes;",
            "invalid value \"sometimes\" in \"add_header\" directive",
        ),
        (
            "add_header X $nope;",
            "unknown \"nope\" variable in \"add_header\" directive",
        ),
        (
            "expires soon;",
            "invalid value \"soon\" in \"expires\" directive",
        ),
        (
            "expires 1h; expires 2h;",
            "\"expires\" directive is duplicate",
        ),
    ];
    for (body, want) in cases {
        let dir = temp_dir();
        let path = dir.join("t.conf");
        let conf = format!("server {{ listen 127.0.0.1:1; location / {{ {body} }} }}");
        std::fs::write(&path, &conf).unwrap();
        let out = std::process::Command::new(binary())
            .args(["-t", "-c"])
            .arg(&path)
            .arg("-p")
            .arg(&dir)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{conf}: accepted");
        assert!(text.contains(want), "{conf}: {text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
