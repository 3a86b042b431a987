//! Static files as a client sees them: bytes, types, index files, directory redirects and
//! listings, error pages, ranges and conditional requests.

mod common;

use common::*;
use std::path::Path;

const CONF: &str = "{BASE}
server {
    listen 127.0.0.1:{PORT} default_server;
    server_name localhost;
    root www;
    index index.html;

    location / { }
    location /idx/ { index first.html second.html; }
    location /list/ { autoindex on; }
    location /custom/ { error_page 404 /errors/404.html; }
}
";

const INDEX: &str = "<h1>home</h1>\n";
const CSS: &str = "body { color: red; }\n";
const RANGE: &str = "0123456789abcdefghij";
const CUSTOM_404: &str = "<p>custom not found page</p>\n";

fn png() -> Vec<u8> {
    // Every byte value, so any text-mode mangling shows.
    (0..=255u8).cycle().take(3000).collect()
}

fn big() -> Vec<u8> {
    (0..(1 << 20) + 17)
        .map(|i: u32| (i * 7 % 251) as u8)
        .collect()
}

fn setup(dir: &Path) {
    write_file(dir, "www/index.html", INDEX);
    write_file(dir, "www/style.css", CSS);
    write_file(dir, "www/img.png", png());
    write_file(dir, "www/big.bin", big());
    write_file(dir, "www/blob.zzz", "opaque");
    write_file(dir, "www/range.txt", RANGE);
    write_file(dir, "www/sub/index.html", "sub index");
    write_file(dir, "www/noindex/a.txt", "a");
    write_file(dir, "www/idx/both/first.html", "first");
    write_file(dir, "www/idx/both/second.html", "second");
    write_file(dir, "www/idx/one/second.html", "only second");
    write_file(dir, "www/idx/first.html", "idx first");
    write_file(dir, "www/list/<a&b>.txt", "escaped");
    write_file(dir, "www/list/plain.txt", "plain");
    write_file(dir, "www/list/d/x.txt", "x");
    write_file(dir, "www/errors/404.html", CUSTOM_404);
}

fn start(backend: &str) -> Server {
    Server::start(backend, CONF, setup)
}

fn assert_common_headers(r: &Response) {
    assert!(r.header("date").is_some(), "no Date header:\n{}", r.dump());
    assert!(
        r.header("server").is_some(),
        "no Server header:\n{}",
        r.dump()
    );
}

#[test]
fn get_returns_file_bytes_and_type() {
    for_each_backend("get_returns_file_bytes_and_type", |b| {
        let s = start(b);
        let r = get(s.port, "/index.html");
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(r.body, INDEX.as_bytes());
        assert!(r.must_header("content-type").starts_with("text/html"));
        assert_eq!(r.must_header("content-length"), INDEX.len().to_string());
        assert_common_headers(&r);

        let r = get(s.port, "/style.css");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, CSS.as_bytes());
        assert!(r.must_header("content-type").starts_with("text/css"));

        let r = get(s.port, "/img.png");
        assert_eq!(r.status, 200);
        assert_eq!(r.must_header("content-type"), "image/png");
        assert!(r.body == png(), "png bytes differ");

        let r = get(s.port, "/blob.zzz");
        assert_eq!(r.status, 200);
        assert_eq!(r.must_header("content-type"), "application/octet-stream");
        assert_eq!(r.body, b"opaque");
    });
}

#[test]
fn large_file_is_sent_whole() {
    for_each_backend("large_file_is_sent_whole", |b| {
        let s = start(b);
        let r = get(s.port, "/big.bin");
        assert_eq!(r.status, 200, "{}", r.dump());
        let want = big();
        assert_eq!(r.body.len(), want.len());
        assert!(r.body == want, "big.bin bytes differ");
    });
}

/// The read-and-send path (NetBSD and OpenBSD have no sendfile; `--no-sendfile` takes it
/// anywhere): a whole large file, a range in its middle, and a keep-alive request after both.
#[test]
fn large_file_without_sendfile_is_read_and_sent() {
    for_each_backend("large_file_without_sendfile_is_read_and_sent", |b| {
        let s = Server::start_opts(b, CONF, setup, &["--no-sendfile"], false);
        let want = big();
        let mut c = Conn::open(s.port);
        c.send(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n");
        let r = c.read_response();
        assert_eq!(r.status, 200, "{}", r.dump());
        assert!(r.body == want, "big.bin bytes differ ({} B)", r.body.len());
        c.send(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\nRange: bytes=300000-700016\r\n\r\n");
        let r = c.read_response();
        assert_eq!(r.status, 206, "{}", r.dump());
        assert!(r.body == want[300000..=700016], "range bytes differ");
        c.send(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        assert_eq!(c.read_response().text(), INDEX);
    });
}

#[test]
fn head_has_get_headers_and_no_body() {
    for_each_backend("head_has_get_headers_and_no_body", |b| {
        let s = start(b);
        let g = get(s.port, "/style.css");
        let mut c = Conn::open(s.port);
        // HEAD then GET on one connection: a body after HEAD would be parsed as the next
        // status line and fail.
        c.send(b"HEAD /style.css HTTP/1.1\r\nHost: localhost\r\n\r\n");
        let h = c.read_response_head(true);
        c.send(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let after = c.read_response();
        assert_eq!(h.status, 200, "{}", h.dump());
        for name in ["content-type", "content-length", "etag", "last-modified"] {
            assert_eq!(h.header(name), g.header(name), "HEAD vs GET header {name}");
        }
        assert_eq!(h.must_header("content-length"), CSS.len().to_string());
        assert_common_headers(&h);
        assert_eq!(after.status, 200, "{}", after.dump());
        assert_eq!(after.body, INDEX.as_bytes(), "bytes after HEAD response");
    });
}

#[test]
fn index_files_tried_in_order() {
    for_each_backend("index_files_tried_in_order", |b| {
        let s = start(b);
        let r = get(s.port, "/");
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(r.body, INDEX.as_bytes());
        let r = get(s.port, "/idx/both/");
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(r.text(), "first");
        let r = get(s.port, "/idx/one/");
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(r.text(), "only second");
        let r = get(s.port, "/sub/");
        assert_eq!(r.text(), "sub index");
    });
}

#[test]
fn directory_without_slash_redirects() {
    for_each_backend("directory_without_slash_redirects", |b| {
        let s = start(b);
        let r = get(s.port, "/sub");
        assert_eq!(r.status, 301, "{}", r.dump());
        let loc = r.must_header("location");
        assert!(loc.ends_with("/sub/"), "Location {loc:?}");
        assert_common_headers(&r);
        let r = get(s.port, "/list/d");
        assert_eq!(r.status, 301, "{}", r.dump());
        assert!(r.must_header("location").ends_with("/list/d/"));
    });
}

#[test]
fn directory_without_index_is_forbidden() {
    for_each_backend("directory_without_index_is_forbidden", |b| {
        let s = start(b);
        let r = get(s.port, "/noindex/");
        assert_eq!(r.status, 403, "{}", r.dump());
        assert!(!r.text().contains("a.txt"), "403 page lists files");
        // The file itself is still served.
        assert_eq!(get(s.port, "/noindex/a.txt").text(), "a");
    });
}

#[test]
fn autoindex_lists_escaped_names() {
    for_each_backend("autoindex_lists_escaped_names", |b| {
        let s = start(b);
        let r = get(s.port, "/list/");
        assert_eq!(r.status, 200, "{}", r.dump());
        assert!(r.must_header("content-type").starts_with("text/html"));
        let body = r.text();
        assert!(body.contains("href=\"plain.txt\""), "{body}");
        assert!(body.contains("href=\"d/\""), "{body}");
        assert!(
            body.contains("&lt;a&amp;b&gt;.txt"),
            "name not escaped:\n{body}"
        );
        assert!(!body.contains("<a&b>"), "raw name in listing:\n{body}");
        assert!(
            body.contains("href=\"%3Ca%26b%3E.txt\"")
                || body.contains("href=\"&lt;a&amp;b&gt;.txt\""),
            "href of <a&b>.txt neither percent- nor HTML-escaped:\n{body}"
        );
        // And the escaped link leads to the file.
        assert_eq!(get(s.port, "/list/%3Ca%26b%3E.txt").text(), "escaped");
    });
}

#[test]
fn missing_file_gets_builtin_404() {
    for_each_backend("missing_file_gets_builtin_404", |b| {
        let s = start(b);
        let r = get(s.port, "/nope.html");
        assert_eq!(r.status, 404, "{}", r.dump());
        assert!(r.text().contains("404"), "{}", r.dump());
        assert_common_headers(&r);
    });
}

#[test]
fn error_page_serves_custom_404() {
    for_each_backend("error_page_serves_custom_404", |b| {
        let s = start(b);
        let r = get(s.port, "/custom/missing.html");
        assert_eq!(r.status, 404, "{}", r.dump());
        assert_eq!(r.text(), CUSTOM_404);
        assert!(r.must_header("content-type").starts_with("text/html"));
        // Without error_page, the built-in page, not the custom one.
        let r = get(s.port, "/missing.html");
        assert_eq!(r.status, 404);
        assert_ne!(r.text(), CUSTOM_404);
    });
}

fn range(port: u16, spec: &str) -> Response {
    request(
        port,
        format!(
            "GET /range.txt HTTP/1.1\r\nHost: localhost\r\nRange: {spec}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
}

#[test]
fn range_requests() {
    for_each_backend("range_requests", |b| {
        let s = start(b);
        for (spec, body, cr) in [
            ("bytes=2-5", "2345", "bytes 2-5/20"),
            ("bytes=15-", "fghij", "bytes 15-19/20"),
            ("bytes=-3", "hij", "bytes 17-19/20"),
            ("bytes=18-100", "ij", "bytes 18-19/20"),
            ("bytes=0-0", "0", "bytes 0-0/20"),
        ] {
            let r = range(s.port, spec);
            assert_eq!(r.status, 206, "{spec}:\n{}", r.dump());
            assert_eq!(r.text(), body, "{spec}");
            assert_eq!(r.must_header("content-range"), cr, "{spec}");
            assert_eq!(r.must_header("content-length"), body.len().to_string());
        }
        for spec in ["bytes=20-", "bytes=50-60"] {
            let r = range(s.port, spec);
            assert_eq!(r.status, 416, "{spec}:\n{}", r.dump());
            assert_eq!(r.must_header("content-range"), "bytes */20", "{spec}");
        }
        // Plain GET still gets the whole file.
        let r = get(s.port, "/range.txt");
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), RANGE);
    });
}

#[test]
fn conditional_requests() {
    for_each_backend("conditional_requests", |b| {
        let s = start(b);
        let r = get(s.port, "/range.txt");
        let etag = r.must_header("etag").to_string();
        let lm = r.must_header("last-modified").to_string();
        assert!(lm.ends_with(" GMT"), "Last-Modified {lm:?}");

        let cond = |h: &str| {
            request(
                s.port,
                format!(
                    "GET /range.txt HTTP/1.1\r\nHost: localhost\r\n{h}\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            )
        };
        let r = cond(&format!("If-None-Match: {etag}"));
        assert_eq!(r.status, 304, "{}", r.dump());
        assert!(r.body.is_empty());
        assert_eq!(r.header("etag"), Some(etag.as_str()));
        assert_common_headers(&r);

        let r = cond("If-None-Match: \"something-else\"");
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(r.text(), RANGE);

        let r = cond(&format!("If-Modified-Since: {lm}"));
        assert_eq!(r.status, 304, "{}", r.dump());
        assert!(r.body.is_empty());

        let r = cond("If-Modified-Since: Thu, 01 Jan 1970 00:00:01 GMT");
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(r.text(), RANGE);
    });
}

#[test]
fn percent_encoded_names_and_queries() {
    for_each_backend("percent_encoded_names_and_queries", |b| {
        let s = Server::start(b, CONF, |d| {
            setup(d);
            write_file(d, "www/hello world.txt", "spaced");
            write_file(d, "www/R&D notes.txt", "ampersand");
        });
        let r = get(s.port, "/hello%20world.txt");
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(r.text(), "spaced");
        assert_eq!(get(s.port, "/R%26D%20notes.txt").text(), "ampersand");
        assert_eq!(get(s.port, "/R&D%20notes.txt").text(), "ampersand");
        let r = get(s.port, "/index.html?v=1&w=%20");
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(r.body, INDEX.as_bytes());
    });
}

#[test]
fn head_on_range_and_listing_has_no_body() {
    for_each_backend("head_on_range_and_listing_has_no_body", |b| {
        let s = start(b);
        let mut c = Conn::open(s.port);
        c.send(b"HEAD /range.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=2-5\r\n\r\n");
        let r = c.read_response_head(true);
        assert_eq!(r.status, 206, "{}", r.dump());
        assert_eq!(r.must_header("content-range"), "bytes 2-5/20");
        c.send(b"HEAD /list/ HTTP/1.1\r\nHost: x\r\n\r\n");
        let r = c.read_response_head(true);
        assert_eq!(r.status, 200, "{}", r.dump());
        c.send(b"HEAD /nope HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(c.read_response_head(true).status, 404);
        c.send(b"GET /style.css HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let r = c.read_response();
        assert_eq!(r.text(), CSS, "bytes left over from a HEAD response");
        assert!(c.is_closed());
    });
}

#[test]
fn access_log_is_in_combined_format() {
    for_each_backend("access_log_is_in_combined_format", |b| {
        let base = BASE.replace("access_log off;", "access_log logs/access.log;");
        let conf = CONF.replace("{BASE}", &base);
        let s = Server::start(b, &conf, setup);
        let r = request(
            s.port,
            b"GET /index.html HTTP/1.1\r\nHost: localhost\r\nReferer: http://ref.example/\r\nUser-Agent: tester/1.0\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(r.status, 200);
        let r = get(s.port, "/missing");
        assert_eq!(r.status, 404);
        // Lines are written when the response is queued; give the server a moment.
        let path = s.dir.join("logs/access.log");
        let mut log = String::new();
        for _ in 0..50 {
            log = std::fs::read_to_string(&path).unwrap_or_default();
            if log.lines().count() >= 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 2, "access log:\n{log}");
        // nginx "combined": $remote_addr - $remote_user [$time_local] "$request" $status
        // $body_bytes_sent "$http_referer" "$http_user_agent"
        assert!(lines[0].starts_with("127.0.0.1 - - ["), "{}", lines[0]);
        assert!(
            lines[0].ends_with(&format!(
                "] \"GET /index.html HTTP/1.1\" 200 {} \"http://ref.example/\" \"tester/1.0\"",
                INDEX.len()
            )),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].contains("\"GET /missing HTTP/1.1\" 404 "),
            "{}",
            lines[1]
        );
        assert!(lines[1].ends_with("\"-\" \"-\""), "{}", lines[1]);
    });
}

/// One expected response: status, Content-Type (without parameters), body, `Connection`.
type Want<'a> = (u16, Option<&'a str>, &'a [u8], Option<&'a str>);

/// A hot cached file's head is built once and copied while it would say the same: requests
/// that differ in what the head says — the URI's type, HTTP/1.0 keep-alive, `close`,
/// conditionals, ranges, HEAD — each get their own head, pipelined within one second.
#[test]
fn one_cached_file_gets_the_head_each_request_needs() {
    for_each_backend("one_cached_file_gets_the_head_each_request_needs", |b| {
        let conf = "{BASE}
server {
    listen 127.0.0.1:{PORT};
    root www;
    location = /readme.txt { alias www/index.html; }
}
";
        let s = Server::start(b, conf, |d| write_file(d, "www/index.html", INDEX));
        // Warm the cache and learn the validators.
        let first = get(s.port, "/index.html");
        let etag = first.must_header("etag").to_string();
        let mut c = Conn::open(s.port);
        let g = |p: &str| format!("GET {p} HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut reqs = String::new();
        reqs += &g("/index.html");
        reqs += &g("/readme.txt");
        reqs += "GET /index.html HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
        reqs += &g("/index.html");
        reqs += &format!("GET /index.html HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n");
        reqs += "GET /index.html HTTP/1.1\r\nHost: x\r\nRange: bytes=1-3\r\n\r\n";
        reqs += "HEAD /index.html HTTP/1.1\r\nHost: x\r\n\r\n";
        reqs += &g("/index.html");
        reqs += "GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        c.send(reqs.as_bytes());
        let want: [Want; 9] = [
            (200, Some("text/html"), INDEX.as_bytes(), None),
            (200, Some("text/plain"), INDEX.as_bytes(), None),
            (200, Some("text/html"), INDEX.as_bytes(), Some("keep-alive")),
            (200, Some("text/html"), INDEX.as_bytes(), None),
            (304, None, b"", None),
            (206, Some("text/html"), &INDEX.as_bytes()[1..4], None),
            (200, Some("text/html"), b"", None),
            (200, Some("text/html"), INDEX.as_bytes(), None),
            (200, Some("text/html"), INDEX.as_bytes(), Some("close")),
        ];
        for (i, (status, ty, body, connection)) in want.into_iter().enumerate() {
            let r = c.read_response_head(i == 6);
            assert_eq!(r.status, status, "response {i}:\n{}", r.dump());
            assert_eq!(r.body, body, "response {i}:\n{}", r.dump());
            let got_ty = r
                .header("content-type")
                .map(|t| t.split(';').next().unwrap());
            assert_eq!(got_ty, ty, "response {i}:\n{}", r.dump());
            assert_eq!(
                r.header("connection"),
                connection,
                "response {i}:\n{}",
                r.dump()
            );
            assert_eq!(r.must_header("etag"), etag, "response {i}:\n{}", r.dump());
            if status == 200 {
                let len = INDEX.len().to_string();
                assert_eq!(r.must_header("content-length"), len, "response {i}");
            }
        }
        assert!(c.is_closed(), "the connection outlived `Connection: close`");
    });
}

/// A reload that turns `server_tokens` on and changes `default_type` shows both in the next
/// responses for hot files, even within the second whose heads were built before the reload.
#[test]
fn a_reload_changes_the_heads_of_hot_files() {
    for_each_backend("a_reload_changes_the_heads_of_hot_files", |b| {
        let conf = "{BASE}\nserver {\n    listen 127.0.0.1:{PORT};\n    root www;\n}\n";
        let s = Server::start(b, conf, |d| {
            write_file(d, "www/index.html", INDEX);
            write_file(d, "www/README", "no extension");
        });
        for _ in 0..3 {
            assert_eq!(get(s.port, "/index.html").must_header("server"), "webserv");
            let r = get(s.port, "/README");
            assert_eq!(r.must_header("content-type"), "application/octet-stream");
        }
        // Each reload changes one input of the heads, so that the other cannot mask it.
        let path = s.dir.join("webserv.conf");
        let reload = |from: &str, to: &str| {
            let conf = std::fs::read_to_string(&path).unwrap();
            assert!(conf.contains(from));
            std::fs::write(&path, conf.replace(from, to)).unwrap();
            s.reload();
        };
        reload(
            "default_type application/octet-stream;",
            "default_type text/x-changed;",
        );
        let r = get(s.port, "/README");
        assert_eq!(
            r.must_header("content-type"),
            "text/x-changed",
            "{}",
            r.dump()
        );
        assert_eq!(get(s.port, "/index.html").must_header("server"), "webserv");
        reload("server {", "server_tokens on;\nserver {");
        let r = get(s.port, "/index.html");
        assert!(
            r.must_header("server").starts_with("webserv/"),
            "{}",
            r.dump()
        );
    });
}
