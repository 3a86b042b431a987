//! Issue 13, items 2 and 3, as a client sees them on every backend: the request-head limits in
//! nginx's terms (`client_header_buffer_size`, `large_client_header_buffers NUMBER SIZE`) answer
//! 414 and 431 with exact status lines, earlier pipelined requests are answered first, and the
//! server goes on serving; `server_tokens` decides whether `Server` and the built-in error pages
//! carry the version.

mod common;

use common::*;

/// A request for `/a.txt` whose request line (with CRLF) is `line` bytes long.
fn request_with_line(line: usize) -> Vec<u8> {
    let fixed = "GET /a.txt? HTTP/1.1\r\n".len();
    let mut r = format!("GET /a.txt?{} HTTP/1.1\r\n", "q".repeat(line - fixed)).into_bytes();
    assert_eq!(r.len(), line);
    r.extend_from_slice(b"Host: localhost\r\n\r\n");
    r
}

/// A request with one field line (with CRLF) of `field` bytes.
fn request_with_field(field: usize) -> Vec<u8> {
    let mut r = b"GET /a.txt HTTP/1.1\r\nHost: localhost\r\n".to_vec();
    let name = "X-Big: ";
    r.extend_from_slice(name.as_bytes());
    r.extend(std::iter::repeat_n(b'v', field - name.len() - 2));
    r.extend_from_slice(b"\r\n\r\n");
    r
}

/// A request whose header section (`Host` line, `n` field lines of `each` bytes, final CRLF).
fn request_with_fields(n: usize, each: usize) -> Vec<u8> {
    let mut r = b"GET /a.txt HTTP/1.1\r\nHost: localhost\r\n".to_vec();
    for i in 0..n {
        let name = format!("X-{i:04}: ");
        r.extend_from_slice(name.as_bytes());
        r.extend(std::iter::repeat_n(b'v', each - name.len() - 2));
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(b"\r\n");
    r
}

/// Sends `req` on a fresh connection and returns the one status line; the server must then
/// close (a head it refused leaves the connection out of sync).
fn status_line_then_close(port: u16, req: &[u8]) -> String {
    let raw = send_raw(port, req);
    let text = String::from_utf8_lossy(&raw);
    let responses = parse_responses(&raw);
    assert_eq!(responses.len(), 1, "one response, then close:\n{text}");
    text.lines().next().unwrap_or_default().to_string()
}

fn serves_again(port: u16) {
    let r = get(port, "/a.txt");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "file a"),
        "{}",
        r.dump()
    );
}

const DEFAULTS: &str = "{BASE}
server {
    listen 127.0.0.1:{PORT};
    root www;
}
";

/// nginx's defaults (`4 8k`): a request line of 8192 bytes is served and one of 8193 is 414; a
/// field line of 8192 bytes is served and one of 8193 is 431 (nginx says 400: RFC 6585 §5);
/// more than 4 × 8k of header section is 431 although every line fits. Before issue 13 a
/// 10,000-byte header line was accepted.
#[test]
fn default_limits_are_nginx_4_8k() {
    for_each_backend("default_limits_are_nginx_4_8k", |b| {
        let s = Server::start(b, DEFAULTS, |d| write_file(d, "www/a.txt", "file a"));
        let ok = request(s.port, &request_with_line(8192));
        assert_eq!(ok.status, 200, "{}", ok.dump());
        assert_eq!(
            status_line_then_close(s.port, &request_with_line(8193)),
            "HTTP/1.1 414 URI Too Long"
        );
        serves_again(s.port);
        let ok = request(s.port, &request_with_field(8192));
        assert_eq!(ok.status, 200, "{}", ok.dump());
        for big in [8193, 10_000] {
            assert_eq!(
                status_line_then_close(s.port, &request_with_field(big)),
                "HTTP/1.1 431 Request Header Fields Too Large",
                "a {big}-byte field line"
            );
        }
        serves_again(s.port);
        // Section: "Host: localhost\r\n" (17) + 4 × 8000 + 2 = 32,019 ≤ 32,768: served;
        // 5 lines of 7,000 (35,019) are not.
        let ok = request(s.port, &request_with_fields(4, 8000));
        assert_eq!(ok.status, 200, "{}", ok.dump());
        assert_eq!(
            status_line_then_close(s.port, &request_with_fields(5, 7000)),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
        serves_again(s.port);
    });
}

const SMALL: &str = "{BASE}
client_header_buffer_size 512;
large_client_header_buffers 2 1k;
server {
    listen 127.0.0.1:{PORT};
    root www;
}
";

/// Configured limits: `2 1k`. The refusal comes after the responses to earlier pipelined
/// requests on the same connection, and other clients are served meanwhile and after.
#[test]
fn configured_limits_414_431_in_order() {
    for_each_backend("configured_limits_414_431_in_order", |b| {
        let s = Server::start(b, SMALL, |d| write_file(d, "www/a.txt", "file a"));
        let cases: [(&str, Vec<u8>, &str); 4] = [
            (
                "request line 1024",
                request_with_line(1024),
                "HTTP/1.1 200 OK",
            ),
            (
                "request line 1025",
                request_with_line(1025),
                "HTTP/1.1 414 URI Too Long",
            ),
            (
                "field line 1025",
                request_with_field(1025),
                "HTTP/1.1 431 Request Header Fields Too Large",
            ),
            (
                // 17 + 3 × 700 + 2 = 2,119 > 2,048, each line under 1k.
                "section over 2 x 1k",
                request_with_fields(3, 700),
                "HTTP/1.1 431 Request Header Fields Too Large",
            ),
        ];
        // An idle client holds a connection open all along: it is still served at the end.
        let mut other = Conn::open(s.port);
        for (what, req, want) in &cases {
            if want.contains("200") {
                let r = request(s.port, req);
                assert_eq!(r.status, 200, "{what}: {}", r.dump());
                continue;
            }
            // A good request, then the bad one, pipelined on one connection: 200, then the
            // refusal, then the connection closes.
            let mut both = b"GET /a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec();
            both.extend_from_slice(req);
            let raw = send_raw(s.port, &both);
            let text = String::from_utf8_lossy(&raw);
            let rs = parse_responses(&raw);
            assert_eq!(rs.len(), 2, "{what}:\n{text}");
            let lines: Vec<String> = rs
                .iter()
                .map(|r| format!("{} {} {}", r.version, r.status, r.reason))
                .collect();
            assert_eq!(lines, ["HTTP/1.1 200 OK", *want], "{what}");
            assert_eq!(rs[0].text(), "file a");
            serves_again(s.port);
        }
        other.send(b"GET /a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n");
        let r = other.read_response();
        assert_eq!((r.status, r.text().as_str()), (200, "file a"));
    });
}

const TOKENS_ON: &str = "{BASE}
server_tokens on;
server {
    listen 127.0.0.1:{PORT};
    root www;
}
";

/// `server_tokens off` (the default) names the server without its version in the `Server`
/// header and in the built-in error pages; `on` adds the version, as nginx does.
#[test]
fn server_tokens_off_and_on() {
    for_each_backend("server_tokens_off_and_on", |b| {
        let version = concat!("webserv/", env!("CARGO_PKG_VERSION"));
        for (conf, want) in [(DEFAULTS, "webserv"), (TOKENS_ON, version)] {
            let s = Server::start(b, conf, |d| write_file(d, "www/a.txt", "file a"));
            let ok = get(s.port, "/a.txt");
            assert_eq!(ok.status, 200);
            assert_eq!(ok.headers_all("Server"), [want], "{}", ok.dump());
            let missing = get(s.port, "/missing");
            assert_eq!(missing.status, 404);
            assert_eq!(missing.headers_all("Server"), [want]);
            let page = missing.text();
            assert!(
                page.contains(&format!("<hr><center>{want}</center>")),
                "404 page: {page}"
            );
            assert_eq!(page.contains(version), want == version, "{page}");
            // A refusal before any routing (431) carries it too.
            let raw = send_raw(s.port, &request_with_field(9000));
            let rs = parse_responses(&raw);
            assert_eq!(rs.len(), 1);
            assert_eq!(rs[0].status, 431);
            assert_eq!(rs[0].headers_all("Server"), [want]);
            assert!(rs[0].text().contains(&format!("<center>{want}</center>")));
        }
    });
}
