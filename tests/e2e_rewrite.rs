//! nginx's rewrite-phase directives as a client sees them: `try_files` (files, directories,
//! `=CODE`, a named location, the front-controller fallback with method and body kept) and
//! named locations reached from `try_files` and `error_page`.

mod common;

use common::*;
use std::path::Path;

const TRY_CONF: &str = "{BASE}
server {
    listen 127.0.0.1:{PORT};
    server_name localhost;
    root www;
    location / {
        allow_methods GET HEAD POST;
        cgi .sh /bin/sh;
        try_files $uri $uri/ /index.sh?$args;
    }
    location /strict/ {
        try_files $uri =404;
        error_page 404 /missing.html;
    }
    location /teapot/ {
        try_files /nothing/$uri =418;
    }
    location /named/ {
        try_files $uri @fallback;
    }
    location /pages/ {
        try_files $uri.html $uri/index.html =404;
    }
    location /loop/ {
        try_files /no-such-file /loop/again;
    }
    location /gone/ {
        error_page 404 @gone;
    }
    location @fallback {
        root fallback;
        try_files /default.txt =503;
    }
    location @gone {
        root fallback;
        try_files /gone.txt =500;
    }
}
";

/// The front controller: what it was asked, and the body it was given.
const INDEX_SH: &str = "printf 'Content-Type: text/plain\\r\\n\\r\\n'
echo \"method=$REQUEST_METHOD\"
echo \"script=$SCRIPT_NAME\"
echo \"query=$QUERY_STRING\"
echo \"request_uri=$REQUEST_URI\"
cat
";

fn setup(dir: &Path) {
    write_file(dir, "www/index.sh", INDEX_SH);
    write_file(dir, "www/style.css", "body{}");
    write_file(dir, "www/docs/index.html", "docs index");
    write_file(dir, "www/strict/here.txt", "strict here");
    write_file(dir, "www/missing.html", "custom 404 page");
    write_file(dir, "www/named/real.txt", "named real");
    write_file(dir, "www/pages/about.html", "about page");
    write_file(dir, "www/pages/team/index.html", "team page");
    write_file(dir, "fallback/default.txt", "from the named location");
    write_file(dir, "fallback/gone.txt", "gone page");
}

#[test]
fn try_files_serves_an_existing_file_or_directory() {
    for_each_backend("try_files_serves_an_existing_file_or_directory", |be| {
        let s = Server::start(be, TRY_CONF, setup);
        let r = get(s.port, "/style.css");
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(r.header("Content-Type"), Some("text/css"));
        assert_eq!(r.text(), "body{}");
        // `$uri/`: the directory exists, its index answers (no redirect, as nginx).
        let r = get(s.port, "/docs");
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(r.text(), "docs index");
        // `$uri.html`, then `$uri/index.html`.
        let r = get(s.port, "/pages/about");
        assert_eq!((r.status, r.text().as_str()), (200, "about page"));
        assert_eq!(r.header("Content-Type"), Some("text/html"));
        let r = get(s.port, "/pages/team");
        assert_eq!((r.status, r.text().as_str()), (200, "team page"));
        let r = get(s.port, "/pages/nobody");
        assert_eq!(r.status, 404, "{}", r.dump());
    });
}

#[test]
fn try_files_front_controller_keeps_method_body_and_args() {
    for_each_backend(
        "try_files_front_controller_keeps_method_body_and_args",
        |be| {
            let s = Server::start(be, TRY_CONF, setup);
            let r = get(s.port, "/blog/2024/hello?page=2&x=y");
            assert_eq!(r.status, 200, "{}", r.dump());
            assert_eq!(
            r.text(),
            "method=GET\nscript=/index.sh\nquery=page=2&x=y\nrequest_uri=/blog/2024/hello?page=2&x=y\n"
        );
            let r = request(
            s.port,
            b"POST /api/items HTTP/1.1\r\nHost: localhost\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello=world",
        );
            assert_eq!(r.status, 200, "{}", r.dump());
            assert_eq!(
                r.text(),
                "method=POST\nscript=/index.sh\nquery=\nrequest_uri=/api/items\nhello=world"
            );
            // A HEAD gets the head only.
            let r = request(
                s.port,
                b"HEAD /anything HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            );
            assert_eq!(r.status, 200, "{}", r.dump());
            assert!(r.body.is_empty());
        },
    );
}

#[test]
fn try_files_code_and_error_page() {
    for_each_backend("try_files_code_and_error_page", |be| {
        let s = Server::start(be, TRY_CONF, setup);
        let r = get(s.port, "/strict/here.txt");
        assert_eq!((r.status, r.text().as_str()), (200, "strict here"));
        let r = get(s.port, "/strict/absent.txt");
        assert_eq!(r.status, 404, "{}", r.dump());
        assert_eq!(r.text(), "custom 404 page");
        let r = get(s.port, "/teapot/x");
        assert_eq!(r.status, 418, "{}", r.dump());
    });
}

#[test]
fn named_locations_from_try_files_and_error_page() {
    for_each_backend("named_locations_from_try_files_and_error_page", |be| {
        let s = Server::start(be, TRY_CONF, setup);
        let r = get(s.port, "/named/real.txt");
        assert_eq!((r.status, r.text().as_str()), (200, "named real"));
        let r = get(s.port, "/named/other.txt");
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(r.text(), "from the named location");
        // error_page to a named location: its answer, with the original status.
        let r = get(s.port, "/gone/x");
        assert_eq!(r.status, 404, "{}", r.dump());
        assert_eq!(r.text(), "gone page");
        // A named location is never matched by a path.
        let r = get(s.port, "/@fallback");
        assert_eq!(r.status, 200, "{}", r.dump());
        assert!(
            r.text().starts_with("method=GET\nscript=/index.sh\n"),
            "{}",
            r.text()
        );
    });
}

#[test]
fn try_files_redirect_loop_ends_in_500() {
    for_each_backend("try_files_redirect_loop_ends_in_500", |be| {
        let s = Server::start(be, TRY_CONF, setup);
        let r = get(s.port, "/loop/start");
        assert_eq!(r.status, 500, "{}", r.dump());
        // The connection is still usable after it.
        let r = get(s.port, "/style.css");
        assert_eq!(r.status, 200);
    });
}

#[test]
fn try_files_config_errors() {
    let cases = [
        (
            "server { listen 127.0.0.1:1; try_files $uri @nope; }",
            "named location \"@nope\" is not defined",
        ),
        (
            "server { listen 127.0.0.1:1; location / { error_page 404 @x; } }",
            "named location \"@x\" is not defined",
        ),
        (
            "server { listen 127.0.0.1:1; location / { location @in { } } }",
            "named location \"@in\" can be on the server level only",
        ),
        (
            "server { listen 127.0.0.1:1; location @n { location /x { } } }",
            "location \"/x\" could not be inside the named location \"@n\"",
        ),
        (
            "server { listen 127.0.0.1:1; location / { try_files $nope =404; } }",
            "unknown \"nope\" variable in \"try_files\" directive",
        ),
        (
            "server { listen 127.0.0.1:1; location / { try_files $uri =abc; } }",
            "invalid value \"=abc\" in \"try_files\" directive",
        ),
        (
            "server { listen 127.0.0.1:1; location / { try_files $uri; } }",
            "invalid number of arguments in \"try_files\" directive",
        ),
    ];
    for (conf, want) in cases {
        let dir = temp_dir();
        let path = dir.join("t.conf");
        std::fs::write(&path, conf).unwrap();
        let out = std::process::Command::new(binary())
            .arg("-t")
            .arg("-c")
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

const RETURN_CONF: &str = "{BASE}
server {
    listen 127.0.0.1:{PORT};
    server_name localhost;
    root www;
    location ~ ^/old/(.*)$ {
        return 301 /new/$1?was=$uri;
    }
    location ~* ^/text/(\\w+)/(\\w+)?$ {
        return 200 \"hello $1 [$2] via $request_method $scheme://$host:$server_port$request_uri\";
    }
    location ~ ^/img/(.+)\\.png$ {
        alias pictures/$1-large.png;
    }
    location ~ ^/pic/(?<name>[a-z]+)/(\\d+)$ {
        alias pictures/${2}_$1.png;
    }
}
server {
    listen 127.0.0.1:{PORT2};
    server_name localhost;
    return 301 https://$host$request_uri;
}
";

fn return_setup(dir: &Path) {
    write_file(dir, "pictures/cat-large.png", "large cat");
    write_file(dir, "pictures/a/b-large.png", "nested b");
    write_file(dir, "pictures/7_dog.png", "dog seven");
}

#[test]
fn return_with_variables_and_captures() {
    for_each_backend("return_with_variables_and_captures", |be| {
        let s = Server::start(be, RETURN_CONF, return_setup);
        let r = get(s.port, "/old/a/b.html?x=1");
        assert_eq!(r.status, 301, "{}", r.dump());
        assert_eq!(
            r.header("Location"),
            Some("/new/a/b.html?was=/old/a/b.html")
        );
        let r = get_host(s.port, "Example.COM", "/TEXT/world/?q=%41");
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(
            r.text(),
            format!(
                "hello world [] via GET http://example.com:{}/TEXT/world/?q=%41",
                s.port
            )
        );
        // The server-level redirect to https, with the Host as sent (port dropped) and the
        // target as received.
        let r = get_host(s.port2, "www.example.org:8080", "/a%20b/c?d=e&f");
        assert_eq!(r.status, 301, "{}", r.dump());
        assert_eq!(
            r.header("Location"),
            Some("https://www.example.org/a%20b/c?d=e&f")
        );
    });
}

#[test]
fn alias_with_regex_captures() {
    for_each_backend("alias_with_regex_captures", |be| {
        let s = Server::start(be, RETURN_CONF, return_setup);
        let r = get(s.port, "/img/cat.png");
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(r.text(), "large cat");
        assert_eq!(r.header("Content-Type"), Some("image/png"));
        let r = get(s.port, "/img/a/b.png");
        assert_eq!((r.status, r.text().as_str()), (200, "nested b"));
        let r = get(s.port, "/pic/dog/7");
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "dog seven"),
            "{}",
            r.dump()
        );
        let r = get(s.port, "/img/none.png");
        assert_eq!(r.status, 404, "{}", r.dump());
        // A normalised path cannot climb out through a capture.
        let r = get(s.port, "/img/../../etc/passwd.png");
        assert_ne!(r.status, 200, "{}", r.dump());
    });
}

const CAPTURE_CGI_CONF: &str = "{BASE}
server {
    listen 127.0.0.1:{PORT};
    server_name localhost;
    root www;
    location ~ ^/app/(\\w+)/(\\w+)\\.sh$ {
        allow_methods GET;
        cgi .sh /bin/sh;
        cgi_param APP_SECTION $1;
        cgi_param APP_MISSING $3;
    }
    location /e/ {
        error_page 404 =200 @soft;
        error_page 403 = @soft;
    }
    location @soft {
        return 202 \"soft $uri\";
    }
}
";

#[test]
fn cgi_param_captures_and_error_page_status_to_a_named_location() {
    for_each_backend(
        "cgi_param_captures_and_error_page_status_to_a_named_location",
        |be| {
            let s = Server::start(be, CAPTURE_CGI_CONF, |d| {
                write_file(
                d,
                "www/app/shop/run.sh",
                "printf 'Content-Type: text/plain\\r\\n\\r\\n[%s][%s]' \"$APP_SECTION\" \"$APP_MISSING\"\n",
            );
                std::fs::create_dir_all(d.join("www/e/locked")).unwrap();
            });
            let r = get(s.port, "/app/shop/run.sh");
            assert_eq!(r.status, 200, "{}", r.dump());
            assert_eq!(r.text(), "[shop][]");
            // `=200`: that status, whatever the named location answers.
            let r = get(s.port, "/e/absent");
            assert_eq!(r.status, 200, "{}", r.dump());
            assert_eq!(r.text(), "soft /e/absent");
            // `=`: the named location's own status (a directory without index: 403 first).
            let r = get(s.port, "/e/locked/");
            assert_eq!(r.status, 202, "{}", r.dump());
            assert_eq!(r.text(), "soft /e/locked/");
        },
    );
}
