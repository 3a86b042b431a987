//! Table-driven HTTP/1.1 message-syntax conformance: raw request bytes in, status and connection
//! fate out, on every backend.
//!
//! Each row is one request, sent on a fresh connection with a valid *canary* request pipelined
//! behind it in the same write (`GET /canary`, `Connection: close`). Then:
//!
//! - a **rejected** row must get exactly one response with the expected status, and the server
//!   must close the connection: the canary is never answered. That is what proves the server did
//!   not resynchronise on bytes it had already declared unparseable (RFC 9112 §11.2, request
//!   smuggling) — answering the canary would mean it guessed where the bad request ended;
//! - an **accepted** row must get the expected status (and body, for vhost rows), then either the
//!   canary's `200 CANARY` (a persistent connection, RFC 9112 §9.3) or nothing and a close (the
//!   row asked for close, or is HTTP/1.0 without keep-alive);
//! - rows that upload (`PUT /up/NAME`) also check the bytes stored on disk.
//!
//! Where the RFC leaves a choice, the row asserts the server's documented choice (module docs of
//! `src/http/request.rs` and `src/http/chunked.rs`) and says so. Where the server contradicts an
//! RFC MUST the row keeps the RFC's answer and fails: see the `BUG:` notes.
//!
//! All rows run; failures are collected and reported together, per backend.

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

const CONF: &str = "{BASE}
server {
    listen 127.0.0.1:{PORT};
    server_name a.test;
    root www;
    location / { return 200 \"a\"; }
    location = /canary { return 200 \"CANARY\"; }
    location /up/ { allow_methods GET PUT; upload_store up; client_max_body_size 1m; }
}
server {
    listen 127.0.0.1:{PORT};
    server_name b.test;
    root www;
    location / { return 200 \"b\"; }
}
";

fn setup(dir: &Path) {
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::create_dir_all(dir.join("up")).unwrap();
}

/// The request pipelined behind every row.
const CANARY: &[u8] = b"GET /canary HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n";

/// What must happen to a row's request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    /// Exactly one response with this status, then the connection closes.
    Reject(u16),
    /// This status (and this body, when given); the canary is answered afterwards.
    Keep(u16, Option<&'static str>),
    /// This status (and body); then the connection closes and the canary is not answered.
    Close(u16, Option<&'static str>),
    /// The request is still incomplete (the canary's bytes are part of its body): no response
    /// and no close within a second.
    Silent,
}
use Fate::*;

struct Row {
    /// The RFC section (and, for server choices, a note) the row checks.
    rule: &'static str,
    name: &'static str,
    req: Vec<u8>,
    fate: Fate,
    /// For uploads: the file under `up/` and the exact bytes it must hold afterwards.
    stored: Option<(&'static str, &'static [u8])>,
}

fn row(rule: &'static str, name: &'static str, req: impl AsRef<[u8]>, fate: Fate) -> Row {
    Row {
        rule,
        name,
        req: req.as_ref().to_vec(),
        fate,
        stored: None,
    }
}

/// A GET of `/` on vhost a with `extra` header lines (each ending in CRLF).
fn get_with(extra: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: a.test\r\n{extra}\r\n").into_bytes()
}

/// A chunked `PUT /up/NAME` with `body` as the raw (already chunk-framed) body.
fn put_chunked(name: &str, te: &str, body: &[u8]) -> Vec<u8> {
    let mut v =
        format!("PUT /up/{name} HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: {te}\r\n\r\n")
            .into_bytes();
    v.extend_from_slice(body);
    v
}

/// A `PUT /up/NAME` with raw header lines `hdrs` and body `body`.
fn put_raw(name: &str, hdrs: &str, body: &[u8]) -> Vec<u8> {
    let mut v = format!("PUT /up/{name} HTTP/1.1\r\nHost: a.test\r\n{hdrs}\r\n").into_bytes();
    v.extend_from_slice(body);
    v
}

fn stored(mut r: Row, file: &'static str, bytes: &'static [u8]) -> Row {
    r.stored = Some((file, bytes));
    r
}

const HELLO_CHUNKED: &[u8] = b"5\r\nhello\r\n0\r\n\r\n";

fn rows() -> Vec<Row> {
    let mut rows = vec![
        // ---- Transfer-Encoding and Content-Length (RFC 9112 §6) ----
        row(
            "RFC 9112 §6.1 (TE+CL: MAY reject with 400, then MUST close; server rejects)",
            "te+cl",
            put_raw(
                "te-cl",
                "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                HELLO_CHUNKED,
            ),
            Reject(400),
        ),
        row(
            "RFC 9112 §6.1 (CL then TE, same rule)",
            "cl+te",
            put_raw(
                "cl-te",
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                HELLO_CHUNKED,
            ),
            Reject(400),
        ),
        // BUG: the server answers 501 to every TE whose final coding is not chunked;
        // RFC 9112 §6.3 item 4 says MUST 400 (501 is for an unknown coding *before* chunked).
        row(
            "RFC 9112 §6.3 item 4 (chunked not final: MUST 400 and close)",
            "te identity",
            put_chunked("te-identity", "identity", HELLO_CHUNKED),
            Reject(400),
        ),
        row(
            "RFC 9112 §6.3 item 4 (chunked not final: MUST 400 and close)",
            "te chunked, gzip",
            put_chunked("te-cg", "chunked, gzip", HELLO_CHUNKED),
            Reject(400),
        ),
        row(
            "RFC 9112 §6.3 item 4 (xchunked is not chunked: MUST 400 and close)",
            "te xchunked",
            put_chunked("te-x", "xchunked", HELLO_CHUNKED),
            Reject(400),
        ),
        row(
            "RFC 9112 §6.1 (unknown coding before chunked: SHOULD 501)",
            "te gzip, chunked",
            put_chunked("te-gc", "gzip, chunked", HELLO_CHUNKED),
            Reject(501),
        ),
        row(
            "RFC 9110 §5.5 (VT is a CTL, invalid in a field value)",
            "te chunked\\x0b",
            put_chunked("te-vt", "chunked\x0b", HELLO_CHUNKED),
            Reject(400),
        ),
        row(
            "RFC 9112 §6.1 + RFC 9110 §5.5 (NUL inside the coding)",
            "te chunked\\0",
            put_chunked("te-nul", "chunked\0", HELLO_CHUNKED),
            Reject(400),
        ),
        stored(
            row(
                "RFC 9112 §5.1 (OWS before the value is not part of it)",
                "te ' chunked' (leading OWS)",
                put_chunked("te-ows", "  chunked", HELLO_CHUNKED),
                Keep(201, None),
            ),
            "te-ows",
            b"hello",
        ),
        stored(
            row(
                "RFC 9112 §5.1 (trailing OWS is not part of the value)",
                "te 'chunked ' (trailing OWS)",
                put_chunked("te-ows2", "chunked \t", HELLO_CHUNKED),
                Keep(201, None),
            ),
            "te-ows2",
            b"hello",
        ),
        stored(
            row(
                "RFC 9112 §7 (transfer-coding names are case-insensitive)",
                "te CHUNKED",
                put_chunked("te-upper", "CHUNKED", HELLO_CHUNKED),
                Keep(201, None),
            ),
            "te-upper",
            b"hello",
        ),
        // BUG: RFC 9110 §5.6.1.2 — a recipient MUST parse and ignore empty list elements, so
        // ", chunked" is the list (chunked). The server requires the value to be exactly
        // "chunked" and answers 501 (and closes).
        stored(
            row(
                "RFC 9110 §5.6.1.2 (MUST ignore empty list elements)",
                "te ', chunked'",
                put_chunked("te-empty-elem", ", chunked", HELLO_CHUNKED),
                Keep(201, None),
            ),
            "te-empty-elem",
            b"hello",
        ),
        row(
            "RFC 9112 §7 (chunked MUST NOT be applied twice; server rejects a repeated TE)",
            "te repeated chunked/chunked",
            put_raw(
                "te-rep",
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                HELLO_CHUNKED,
            ),
            Reject(400),
        ),
        row(
            "RFC 9112 §6.3 item 4 (TE lines combine to 'chunked, gzip': MUST 400)",
            "te repeated chunked/gzip",
            put_raw(
                "te-rep2",
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n",
                HELLO_CHUNKED,
            ),
            Reject(400),
        ),
        row(
            "RFC 9110 §5.3 (lines combine to 'gzip, chunked'; server rejects any repeated TE)",
            "te repeated gzip/chunked",
            put_raw(
                "te-rep3",
                "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
                HELLO_CHUNKED,
            ),
            Reject(400),
        ),
        row(
            "RFC 9112 §6.1 (TE in HTTP/1.0: MUST treat framing as faulty and close)",
            "te on HTTP/1.0",
            b"PUT /up/te10 HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            Reject(400),
        ),
        row(
            "RFC 9112 §6.1 (TE in HTTP/1.0 even with CL)",
            "te+cl on HTTP/1.0",
            b"PUT /up/te10cl HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 15\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            Reject(400),
        ),
        row(
            "RFC 9112 §6.3 item 5 (duplicate CL, even equal: server's choice is 400)",
            "cl duplicate equal",
            put_raw("cl-dup", "Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"),
            Reject(400),
        ),
        row(
            "RFC 9112 §6.3 item 5 (differing CLs: MUST 400 and close)",
            "cl duplicate different",
            put_raw("cl-dup2", "Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"),
            Reject(400),
        ),
        row(
            "RFC 9112 §6.3 item 5 (list '5, 5': server's choice is 400)",
            "cl list",
            put_raw("cl-list", "Content-Length: 5, 5\r\n", b"hello"),
            Reject(400),
        ),
        row(
            "RFC 9110 §8.6 (Content-Length = 1*DIGIT; invalid: MUST 400, RFC 9112 §6.3)",
            "cl +5",
            put_raw("cl-plus", "Content-Length: +5\r\n", b"hello"),
            Reject(400),
        ),
        row(
            "RFC 9110 §8.6 / RFC 9112 §6.3 item 5",
            "cl -1",
            put_raw("cl-neg", "Content-Length: -1\r\n", b""),
            Reject(400),
        ),
        row(
            "RFC 9110 §8.6 / RFC 9112 §6.3 item 5",
            "cl empty",
            put_raw("cl-empty", "Content-Length: \r\n", b""),
            Reject(400),
        ),
        row(
            "RFC 9110 §8.6 / RFC 9112 §6.3 item 5",
            "cl non-digit",
            put_raw("cl-alpha", "Content-Length: abc\r\n", b""),
            Reject(400),
        ),
        row(
            "RFC 9110 §8.6 / RFC 9112 §6.3 item 5",
            "cl 5a",
            put_raw("cl-5a", "Content-Length: 5a\r\n", b"hello"),
            Reject(400),
        ),
        row(
            "RFC 9110 §8.6 / RFC 9112 §6.3 item 5",
            "cl 0x5",
            put_raw("cl-hex", "Content-Length: 0x5\r\n", b"hello"),
            Reject(400),
        ),
        row(
            "RFC 9110 §8.6 / RFC 9112 §6.3 item 5",
            "cl '1 5'",
            put_raw("cl-sp", "Content-Length: 1 5\r\n", b"hello"),
            Reject(400),
        ),
        row(
            "RFC 9110 §8.6 (MUST anticipate overflow: 2^64 is invalid)",
            "cl 2^64",
            put_raw("cl-big", "Content-Length: 18446744073709551616\r\n", b""),
            Reject(400),
        ),
        row(
            "RFC 9110 §15.5.14 (2^64-1 parses but exceeds client_max_body_size: 413, close)",
            "cl 2^64-1",
            put_raw("cl-max", "Content-Length: 18446744073709551615\r\n", b""),
            Reject(413),
        ),
        stored(
            row(
                "RFC 9112 §5.1 (OWS around the value is not part of it)",
                "cl ' 5 '",
                put_raw("cl-ows", "Content-Length:  5 \r\n", b"hello"),
                Keep(201, None),
            ),
            "cl-ows",
            b"hello",
        ),
        stored(
            row(
                "RFC 9110 §8.6 (1*DIGIT: leading zeros are valid)",
                "cl 005",
                put_raw("cl-zeros", "Content-Length: 005\r\n", b"hello"),
                Keep(201, None),
            ),
            "cl-zeros",
            b"hello",
        ),
        row(
            "RFC 9112 §6.3 item 6 (a GET's CL body is read and discarded; framing kept)",
            "get with a body that looks like a request",
            b"GET / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 38\r\n\r\nGET /canary HTTP/1.1\r\nHost: a.test\r\n\r\n",
            Keep(200, Some("a")),
        ),
        // ---- Host (RFC 9112 §3.2) ----
        row(
            "RFC 9112 §3.2 (HTTP/1.1 without Host: MUST 400)",
            "host missing",
            b"GET / HTTP/1.1\r\n\r\n",
            Reject(400),
        ),
        row(
            "RFC 9112 §3.2 (Host is not required in HTTP/1.0; default server)",
            "host missing on HTTP/1.0",
            b"GET / HTTP/1.0\r\n\r\n",
            Close(200, Some("a")),
        ),
        row(
            "RFC 9112 §3.2 (more than one Host line: MUST 400)",
            "host duplicated equal",
            get_with("Host: a.test\r\n"),
            Reject(400),
        ),
        row(
            "RFC 9112 §3.2 (more than one Host line: MUST 400)",
            "host duplicated different",
            get_with("Host: b.test\r\n"),
            Reject(400),
        ),
        row(
            "RFC 9112 §3.2 (invalid Host value: MUST 400)",
            "host with space",
            b"GET / HTTP/1.1\r\nHost: a test\r\n\r\n",
            Reject(400),
        ),
        row(
            "RFC 9112 §3.2 / RFC 3986 §3.2.2 (no '/' in uri-host)",
            "host with slash",
            b"GET / HTTP/1.1\r\nHost: a.test/x\r\n\r\n",
            Reject(400),
        ),
        row(
            "RFC 9112 §3.2 / RFC 9110 §4.2.4 (no userinfo in Host)",
            "host with userinfo",
            b"GET / HTTP/1.1\r\nHost: u@b.test\r\n\r\n",
            Reject(400),
        ),
        row(
            "RFC 9112 §3.2 / RFC 3986 §3.2.3 (port is digits)",
            "host with two ports",
            b"GET / HTTP/1.1\r\nHost: a.test:80:80\r\n\r\n",
            Reject(400),
        ),
        row(
            "RFC 9112 §3.2 / RFC 3986 §3.2.2 (unclosed IP-literal)",
            "host [::1",
            b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
            Reject(400),
        ),
        row(
            "RFC 9112 §3.2 / RFC 3986 §3.2.2 (no '<' in reg-name)",
            "host with <",
            b"GET / HTTP/1.1\r\nHost: a<b\r\n\r\n",
            Reject(400),
        ),
        row(
            "RFC 9112 §3.2 (an empty Host is valid: default server)",
            "host empty",
            b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
            Keep(200, Some("a")),
        ),
        row(
            "RFC 3986 §3.2.3 (port = *DIGIT: an empty port is valid)",
            "host empty port",
            b"GET / HTTP/1.1\r\nHost: b.test:\r\n\r\n",
            Keep(200, Some("b")),
        ),
        row(
            "RFC 9110 §7.2 (Host selects the vhost)",
            "host b.test",
            b"GET / HTTP/1.1\r\nHost: b.test\r\n\r\n",
            Keep(200, Some("b")),
        ),
        row(
            "RFC 3986 §3.2.2 (host is case-insensitive)",
            "host B.TEST",
            b"GET / HTTP/1.1\r\nHost: B.TEST\r\n\r\n",
            Keep(200, Some("b")),
        ),
        // ---- request-target forms (RFC 9112 §3.2) ----
        row(
            "RFC 9112 §3.2.2 (absolute-form authority wins: MUST ignore Host)",
            "absolute-form b over Host a",
            b"GET http://b.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n",
            Keep(200, Some("b")),
        ),
        row(
            "RFC 9112 §3.2.2 (absolute-form authority wins: MUST ignore Host)",
            "absolute-form a over Host b",
            b"GET http://a.test/ HTTP/1.1\r\nHost: b.test\r\n\r\n",
            Keep(200, Some("a")),
        ),
        row(
            "RFC 9112 §3.2.2 + RFC 3986 §3.1 (scheme and host case-insensitive)",
            "absolute-form HTTP://B.TEST",
            b"GET HTTP://B.TEST/ HTTP/1.1\r\nHost: a.test\r\n\r\n",
            Keep(200, Some("b")),
        ),
        row(
            "RFC 9112 §3.2.2 (empty path is '/')",
            "absolute-form without path",
            b"GET http://b.test HTTP/1.1\r\nHost: a.test\r\n\r\n",
            Keep(200, Some("b")),
        ),
        row(
            "RFC 9110 §4.2.1 (http URI with empty host: MUST reject)",
            "absolute-form empty host",
            b"GET http:///x HTTP/1.1\r\nHost: a.test\r\n\r\n",
            Reject(400),
        ),
        row(
            "RFC 9110 §4.2.4 (userinfo in an http URI is an error)",
            "absolute-form userinfo",
            b"GET http://u@b.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n",
            Reject(400),
        ),
        row(
            "RFC 9112 §3.2.2 (server accepts http/https only)",
            "absolute-form ftp",
            b"GET ftp://b.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n",
            Reject(400),
        ),
        row(
            "RFC 9112 §3.2 (Host still required with absolute-form in HTTP/1.1)",
            "absolute-form without Host",
            b"GET http://b.test/ HTTP/1.1\r\n\r\n",
            Reject(400),
        ),
        row(
            "RFC 9112 §3.2.3 (authority-form only for CONNECT; origin server: 400)",
            "authority-form GET",
            b"GET a.test:80 HTTP/1.1\r\nHost: a.test\r\n\r\n",
            Reject(400),
        ),
        row(
            "RFC 9112 §3.2.4 (asterisk-form only for OPTIONS)",
            "asterisk-form GET",
            b"GET * HTTP/1.1\r\nHost: a.test\r\n\r\n",
            Reject(400),
        ),
        // ---- field syntax (RFC 9112 §5, RFC 9110 §5) ----
        row(
            "RFC 9112 §5.2 (obs-fold: MUST reject with 400 or replace; server rejects)",
            "obs-fold SP",
            get_with("X-A: a\r\n b\r\n"),
            Reject(400),
        ),
        row(
            "RFC 9112 §5.2 (obs-fold with HTAB)",
            "obs-fold HTAB",
            get_with("X-A: a\r\n\tb\r\n"),
            Reject(400),
        ),
        row(
            "RFC 9112 §2.2 (whitespace line after the start-line: MUST reject or ignore)",
            "whitespace before first field",
            b"GET / HTTP/1.1\r\n Host: a.test\r\n\r\n",
            Reject(400),
        ),
        row(
            "RFC 9112 §5.1 (whitespace between name and colon: MUST 400)",
            "space before colon",
            b"GET / HTTP/1.1\r\nHost : a.test\r\n\r\n",
            Reject(400),
        ),
        row(
            "RFC 9112 §5.1 (whitespace between name and colon: MUST 400)",
            "tab before colon",
            get_with("X-A\t: 1\r\n"),
            Reject(400),
        ),
        row(
            "RFC 9112 §2.2 (bare CR: MAY reject; server rejects)",
            "bare CR in value",
            get_with("X-A: a\rb\r\n"),
            Reject(400),
        ),
        row(
            "RFC 9112 §2.2 (bare CR)",
            "bare CR before CRLF",
            get_with("X-A: a\r\r\n"),
            Reject(400),
        ),
        row(
            "RFC 9112 §2.2 (bare CR in the request line)",
            "bare CR in request line",
            b"GET /\r HTTP/1.1\r\nHost: a.test\r\n\r\n",
            Reject(400),
        ),
        row(
            "RFC 9110 §5.5 (NUL in a value: MUST reject or replace; server rejects)",
            "NUL in value",
            get_with("X-A: a\0b\r\n"),
            Reject(400),
        ),
        row(
            "RFC 9112 §5 (LF ends the line; the rest is not a field line)",
            "LF inside value",
            get_with("X-A: a\nb\r\n"),
            Reject(400),
        ),
        row(
            "RFC 9110 §5.5 (CTL in a value)",
            "\\x01 in value",
            get_with("X-A: a\x01b\r\n"),
            Reject(400),
        ),
        row(
            "RFC 9110 §5.5 (DEL in a value)",
            "DEL in value",
            get_with("X-A: a\x7fb\r\n"),
            Reject(400),
        ),
        row(
            "RFC 9110 §5.1 (field-name = token)",
            "space in name",
            get_with("X A: 1\r\n"),
            Reject(400),
        ),
        row(
            "RFC 9110 §5.1 (field-name = token; '@' is not a tchar)",
            "@ in name",
            get_with("X@A: 1\r\n"),
            Reject(400),
        ),
        row(
            "RFC 9110 §5.1 (field-name = token; '(' ')' are delimiters)",
            "parens in name",
            get_with("(X): 1\r\n"),
            Reject(400),
        ),
        row(
            "RFC 9110 §5.1 (field-name = token; '/' is a delimiter)",
            "slash in name",
            get_with("X/A: 1\r\n"),
            Reject(400),
        ),
        row(
            "RFC 9110 §5.1 (field-name = token; ASCII only)",
            "non-ASCII name",
            get_with("X\u{e9}: 1\r\n"),
            Reject(400),
        ),
        row(
            "RFC 9110 §5.1 (field-name = 1*tchar: not empty)",
            "empty name",
            get_with(": x\r\n"),
            Reject(400),
        ),
        row(
            "RFC 9112 §5 (field-line needs a colon)",
            "line without colon",
            get_with("Foo\r\n"),
            Reject(400),
        ),
        row(
            "RFC 9110 §5.5 (obs-text is allowed in a value)",
            "obs-text in value",
            get_with("X-A: caf\u{e9}\r\n"),
            Keep(200, Some("a")),
        ),
        row(
            "RFC 9110 §5.5 (HTAB is allowed inside a value)",
            "tab in value",
            get_with("X-A: a\tb\r\n"),
            Keep(200, Some("a")),
        ),
        row(
            "RFC 9112 §2.2 (MAY accept a bare LF as line terminator; server does)",
            "bare LF line endings",
            b"GET / HTTP/1.1\nHost: b.test\n\n",
            Keep(200, Some("b")),
        ),
        row(
            "RFC 9110 §10.1.1 (an unknown expectation: MAY 417; server closes)",
            "expect unknown",
            get_with("Expect: teapot\r\n"),
            Reject(417),
        ),
        row(
            "RFC 9112 §9.6 (Connection: close — answer, then close)",
            "connection close",
            get_with("Connection: close\r\n"),
            Close(200, Some("a")),
        ),
        row(
            "RFC 9112 §9.3 / §C.2.2 (HTTP/1.0 keep-alive persists)",
            "HTTP/1.0 keep-alive",
            b"GET / HTTP/1.0\r\nHost: b.test\r\nConnection: keep-alive\r\n\r\n",
            Keep(200, Some("b")),
        ),
        row(
            "RFC 9112 §9.3 (HTTP/1.0 without keep-alive closes)",
            "HTTP/1.0 default close",
            b"GET / HTTP/1.0\r\nHost: b.test\r\n\r\n",
            Close(200, Some("b")),
        ),
        // ---- chunked framing (RFC 9112 §7.1) ----
        row(
            "RFC 9112 §7.1 (chunk-size overflow: 17 hex digits > u64)",
            "chunk size overflow",
            put_chunked("ch-ovf", "chunked", b"10000000000000000\r\nx\r\n0\r\n\r\n"),
            Reject(400),
        ),
        // 16 hex digits fit a u64: the chunk is merely huge, so the canary's bytes are chunk
        // data and nothing may be answered yet. (Server choice: it does not 413 on the size
        // line alone — nginx does — but only once more than client_max_body_size has arrived.)
        row(
            "RFC 9112 §7.1 (MUST anticipate large chunk-size numerals without overflow)",
            "chunk size 2^64-1",
            put_chunked("ch-max", "chunked", b"ffffffffffffffff\r\nx"),
            Silent,
        ),
        row(
            "RFC 9112 §7.1 (chunk-size = 1*HEXDIG: no '0x')",
            "chunk size 0x5",
            put_chunked("ch-0x", "chunked", b"0x5\r\nhello\r\n0\r\n\r\n"),
            Reject(400),
        ),
        row(
            "RFC 9112 §7.1 (chunk-size = 1*HEXDIG: no sign)",
            "chunk size +5",
            put_chunked("ch-plus", "chunked", b"+5\r\nhello\r\n0\r\n\r\n"),
            Reject(400),
        ),
        row(
            "RFC 9112 §7.1 (chunk-size = 1*HEXDIG: no sign)",
            "chunk size -5",
            put_chunked("ch-minus", "chunked", b"-5\r\nhello\r\n0\r\n\r\n"),
            Reject(400),
        ),
        row(
            "RFC 9112 §7.1 (no whitespace before chunk-size)",
            "chunk size leading space",
            put_chunked("ch-sp", "chunked", b" 5\r\nhello\r\n0\r\n\r\n"),
            Reject(400),
        ),
        row(
            "RFC 9112 §7.1 (chunk-size is not empty)",
            "chunk size empty",
            put_chunked("ch-empty", "chunked", b"\r\nhello\r\n0\r\n\r\n"),
            Reject(400),
        ),
        row(
            "RFC 9112 §7.1 (CRLF after chunk-size; server refuses bare LF in framing)",
            "chunk size bare LF",
            put_chunked("ch-lf", "chunked", b"5\nhello\r\n0\r\n\r\n"),
            Reject(400),
        ),
        row(
            "RFC 9112 §7.1 (CRLF after chunk-data; server refuses bare LF in framing)",
            "chunk data bare LF",
            put_chunked("ch-lf2", "chunked", b"5\r\nhello\n0\r\n\r\n"),
            Reject(400),
        ),
        row(
            "RFC 9112 §7.1 (chunk-data is followed by CRLF)",
            "chunk data without CRLF",
            put_chunked("ch-nocrlf", "chunked", b"5\r\nhello0\r\n\r\n"),
            Reject(400),
        ),
        row(
            "RFC 9112 §7.1 (more data than chunk-size)",
            "chunk data too long",
            put_chunked("ch-long", "chunked", b"3\r\nhello\r\n0\r\n\r\n"),
            Reject(400),
        ),
        row(
            "RFC 9112 §7.1 (final CRLF; server refuses bare LF)",
            "last chunk bare LF end",
            put_chunked("ch-lf3", "chunked", b"5\r\nhello\r\n0\r\n\n"),
            Reject(400),
        ),
        stored(
            row(
                "RFC 9112 §7.1.1 (extensions are ignored)",
                "chunk extension",
                put_chunked(
                    "ch-ext",
                    "chunked",
                    b"5;name=val\r\nhello\r\n6;q=\"x y\"\r\n world\r\n0;end\r\n\r\n",
                ),
                Keep(201, None),
            ),
            "ch-ext",
            b"hello world",
        ),
        stored(
            row(
                "RFC 9112 §7.1.1 (BWS around ';' and '=')",
                "chunk extension with BWS",
                put_chunked("ch-bws", "chunked", b"5 ; a = b\r\nhello\r\n0\r\n\r\n"),
                Keep(201, None),
            ),
            "ch-bws",
            b"hello",
        ),
        row(
            "RFC 9112 §7.1.1 (server limits chunk-ext length: 4096)",
            "chunk extension oversize",
            {
                let mut b = b"5;x=".to_vec();
                b.extend(std::iter::repeat_n(b'a', 5000));
                b.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
                put_chunked("ch-extbig", "chunked", &b)
            },
            Reject(400),
        ),
        row(
            "RFC 9112 §7.1.1 (chunk-ext has no CTLs)",
            "chunk extension with NUL",
            put_chunked("ch-extnul", "chunked", b"5;a\0\r\nhello\r\n0\r\n\r\n"),
            Reject(400),
        ),
        stored(
            row(
                "RFC 9112 §7.1.2 + RFC 9110 §6.5.1 (trailers accepted, never merged into the head)",
                "trailers",
                put_chunked(
                    "ch-trailer",
                    "chunked",
                    b"5\r\nhello\r\n0\r\nX-T: 1\r\nContent-Length: 3\r\nTransfer-Encoding: gzip\r\n\r\n",
                ),
                Keep(201, None),
            ),
            "ch-trailer",
            b"hello",
        ),
        row(
            "RFC 9112 §7.1.2 + §5.2 (obs-fold in the trailer section)",
            "trailer obs-fold",
            put_chunked("ch-tfold", "chunked", b"5\r\nhello\r\n0\r\nX-T: 1\r\n 2\r\n\r\n"),
            Reject(400),
        ),
        row(
            "RFC 9112 §7.1.2 (trailer field-line needs a colon)",
            "trailer without colon",
            put_chunked("ch-tcolon", "chunked", b"5\r\nhello\r\n0\r\nX-T\r\n\r\n"),
            Reject(400),
        ),
        stored(
            row(
                "RFC 9112 §7.1 (last-chunk = 1*\"0\"; HEXDIG is case-insensitive)",
                "chunk 000 and uppercase hex",
                put_chunked("ch-hex", "chunked", b"A\r\n0123456789\r\n000\r\n\r\n"),
                Keep(201, None),
            ),
            "ch-hex",
            b"0123456789",
        ),
        // ---- request line (RFC 9112 §3, §2.3; RFC 9110 §9) ----
        row(
            "RFC 9112 §3 (exactly one SP between method and target)",
            "double space after method",
            b"GET  / HTTP/1.1\r\nHost: a.test\r\n\r\n",
            Reject(400),
        ),
        row(
            "RFC 9112 §3 (exactly one SP between target and version)",
            "double space before version",
            b"GET /  HTTP/1.1\r\nHost: a.test\r\n\r\n",
            Reject(400),
        ),
        row(
            "RFC 9112 §3 (nothing after the version)",
            "trailing space after version",
            b"GET / HTTP/1.1 \r\nHost: a.test\r\n\r\n",
            Reject(400),
        ),
        row(
            "RFC 9112 §3 (separators are SP; server does not take HTAB)",
            "tab separators",
            b"GET\t/\tHTTP/1.1\r\nHost: a.test\r\n\r\n",
            Reject(400),
        ),
        row(
            "RFC 9112 §3.2 (target is URI syntax: no CTLs)",
            "control char in target",
            b"GET /\x01 HTTP/1.1\r\nHost: a.test\r\n\r\n",
            Reject(400),
        ),
        row(
            "RFC 9112 §3.2 (target is URI syntax: no DEL)",
            "DEL in target",
            b"GET /\x7f HTTP/1.1\r\nHost: a.test\r\n\r\n",
            Reject(400),
        ),
        row(
            "RFC 9112 §3.2 (target is URI syntax: ASCII only)",
            "non-ASCII in target",
            b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a.test\r\n\r\n",
            Reject(400),
        ),
        row(
            "RFC 9112 §3.2 (a fragment is not part of the request-target)",
            "fragment in target",
            b"GET /a#b HTTP/1.1\r\nHost: a.test\r\n\r\n",
            Reject(400),
        ),
        row(
            "RFC 9112 §2.3 (HTTP-version = HTTP/DIGIT.DIGIT)",
            "HTTP/1.11",
            b"GET / HTTP/1.11\r\nHost: a.test\r\n\r\n",
            Reject(400),
        ),
        row(
            "RFC 9110 §15.6.6 (unsupported major version: 505)",
            "HTTP/2.0",
            b"GET / HTTP/2.0\r\nHost: a.test\r\n\r\n",
            Reject(505),
        ),
        row(
            "RFC 9110 §15.6.6 (unsupported major version: 505)",
            "HTTP/0.9",
            b"GET / HTTP/0.9\r\nHost: a.test\r\n\r\n",
            Reject(505),
        ),
        row(
            "RFC 9112 §2.3 (one digit each: no overflow games)",
            "HTTP/4294967295.255",
            b"GET / HTTP/4294967295.255\r\nHost: a.test\r\n\r\n",
            Reject(400),
        ),
        row(
            "RFC 9110 §2.5 (higher minor of 1.x is processed as 1.1)",
            "HTTP/1.2",
            b"GET / HTTP/1.2\r\nHost: b.test\r\n\r\n",
            Keep(200, Some("b")),
        ),
        row(
            "RFC 9112 §2.3 (one digit each: a two-digit minor is 400; nginx takes it)",
            "HTTP/1.10",
            b"GET / HTTP/1.10\r\nHost: a.test\r\n\r\n",
            Reject(400),
        ),
        row(
            "RFC 9112 §2.3 (HTTP-name is case-sensitive)",
            "http/1.1 lower-case",
            b"GET / http/1.1\r\nHost: a.test\r\n\r\n",
            Reject(400),
        ),
        row(
            "RFC 9112 §2.3 (minor digit required)",
            "HTTP/1",
            b"GET / HTTP/1\r\nHost: a.test\r\n\r\n",
            Reject(400),
        ),
        row(
            "RFC 9112 §3 (no HTTP/0.9 simple requests)",
            "no version",
            b"GET /\r\nHost: a.test\r\n\r\n",
            Reject(400),
        ),
        row(
            "RFC 9110 §9.1 (methods are case-sensitive: 'get' is unknown, 501)",
            "lower-case method",
            b"get / HTTP/1.1\r\nHost: a.test\r\n\r\n",
            Reject(501),
        ),
        row(
            "RFC 9110 §9.1 (unrecognised method: SHOULD 501)",
            "unknown method",
            b"BREW / HTTP/1.1\r\nHost: a.test\r\n\r\n",
            Reject(501),
        ),
        row(
            "RFC 9110 §9.1 (method = token)",
            "method with delimiter",
            b"GE(T / HTTP/1.1\r\nHost: a.test\r\n\r\n",
            Reject(400),
        ),
        row(
            "RFC 9112 §3 (request line starts with the method: no leading SP)",
            "leading space",
            b" GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
            Reject(400),
        ),
        row(
            "RFC 9112 §2.2 (SHOULD ignore at least one empty line before the request line)",
            "leading CRLFs",
            b"\r\n\r\nGET / HTTP/1.1\r\nHost: b.test\r\n\r\n",
            Keep(200, Some("b")),
        ),
        row(
            "RFC 9112 §2.2 (empty line before the request line, bare LF)",
            "leading LF",
            b"\nGET / HTTP/1.1\r\nHost: b.test\r\n\r\n",
            Keep(200, Some("b")),
        ),
    ];

    // ---- limits (RFC 9112 §3, RFC 9110 §15.5.15, RFC 6585 §5) ----
    let long_path = "a".repeat(9000);
    rows.push(row(
        "RFC 9112 §3 + RFC 9110 §15.5.15 (request line over the 8 KiB limit: 414)",
        "oversize request line",
        format!("GET /{long_path} HTTP/1.1\r\nHost: a.test\r\n\r\n"),
        Reject(414),
    ));
    let ok_path = "a".repeat(8000);
    rows.push(row(
        "RFC 9112 §3 (SHOULD accept request lines of at least 8000 octets)",
        "8000-octet target",
        format!("GET /{ok_path} HTTP/1.1\r\nHost: b.test\r\n\r\n"),
        Keep(200, Some("b")),
    ));
    let many: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
    rows.push(row(
        "RFC 6585 §5 (101 fields, over the 100-field limit: 431)",
        "too many headers",
        get_with(&many),
        Reject(431),
    ));
    let ninety_nine: String = (0..99).map(|i| format!("X-{i}: v\r\n")).collect();
    rows.push(row(
        "RFC 6585 §5 (exactly 100 fields is within the limit)",
        "100 headers",
        format!("GET / HTTP/1.1\r\nHost: b.test\r\n{ninety_nine}\r\n"),
        Keep(200, Some("b")),
    ));
    rows.push(row(
        "RFC 6585 §5 (one 33 KB field, over the 32 KiB section: 431)",
        "oversize header",
        get_with(&format!("X-Big: {}\r\n", "v".repeat(33 * 1024))),
        Reject(431),
    ));
    let medium: String = (0..50)
        .map(|i| format!("X-{i}: {}\r\n", "v".repeat(700)))
        .collect();
    rows.push(row(
        "RFC 6585 §5 (50 x 700 B fields, over the 32 KiB section: 431)",
        "oversize header section",
        get_with(&medium),
        Reject(431),
    ));
    rows
}

/// Runs one row against `port`; returns a description of what went wrong, if anything.
fn check(port: u16, dir: &Path, r: &Row) -> Option<String> {
    let mut bytes = r.req.clone();
    bytes.extend_from_slice(CANARY);
    let wait = Duration::from_secs(if r.fate == Silent { 1 } else { 3 });
    let (raw, closed) = exchange(port, &bytes, wait);
    let (resps, err) = try_parse_responses(&raw);
    let text = String::from_utf8_lossy(&raw);
    let shown: String = text.chars().take(600).collect();
    let fail = |what: String| Some(format!("{what}\n  received: {shown:?}"));
    if r.fate == Silent {
        return (!raw.is_empty() || closed)
            .then(|| format!("answered or closed (closed: {closed})\n  received: {shown:?}"));
    }
    if let Some(e) = err {
        return fail(format!("unparseable response ({e})"));
    }
    let Some(first) = resps.first() else {
        return fail(format!("no response (closed: {closed})"));
    };
    let canary_answered = resps.iter().any(|x| x.body == b"CANARY");
    let (status, body, keep) = match r.fate {
        Reject(s) => (s, None, false),
        Keep(s, b) => (s, b, true),
        Close(s, b) => (s, b, false),
        Silent => unreachable!("handled above"),
    };
    if first.status != status {
        return fail(format!("status {} (want {status})", first.status));
    }
    if let Some(b) = body {
        if first.text() != b {
            return fail(format!("body {:?} (want {b:?})", first.text()));
        }
    }
    if keep {
        if resps.len() != 2 || !canary_answered {
            return fail(format!(
                "{} responses; want the row's and then the canary's",
                resps.len()
            ));
        }
    } else {
        if resps.len() != 1 || canary_answered {
            return fail(format!(
                "{} responses (canary answered: {canary_answered}); want exactly one",
                resps.len()
            ));
        }
        if !closed {
            return fail("connection still open after the response".into());
        }
    }
    if !closed {
        return fail("connection not closed after the canary's Connection: close".into());
    }
    if let Some((file, want)) = r.stored {
        match std::fs::read(dir.join("up").join(file)) {
            Ok(got) if got == want => {}
            Ok(got) => {
                return fail(format!(
                    "stored {:?}, want {:?}",
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(want)
                ))
            }
            Err(e) => return fail(format!("up/{file} not stored: {e}")),
        }
    }
    None
}

#[test]
fn conformance_table() {
    let rows = rows();
    assert!(rows.len() >= 80, "only {} rows", rows.len());
    let mut names: Vec<&str> = rows.iter().map(|r| r.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), rows.len(), "row names must be unique");
    // `for_each_backend` takes `Fn`, so failures are collected through a RefCell; every row
    // runs on every backend before the verdict, so one run shows every failing row.
    let failures = std::cell::RefCell::new(Vec::new());
    for_each_backend("conformance_table", |b| {
        let s = Server::start(b, CONF, setup);
        for r in &rows {
            if let Some(why) = check(s.port, &s.dir, r) {
                failures
                    .borrow_mut()
                    .push(format!("[{b}] {} ({}): {why}", r.name, r.rule));
            }
        }
    });
    let failures = failures.into_inner();
    assert!(
        failures.is_empty(),
        "{} of {} row runs failed:\n{}",
        failures.len(),
        rows.len() * backends().len(),
        failures.join("\n")
    );
}

/// Writes every row as a fuzz seed: the whole request to `fuzz/seeds/request_head/` (and, with
/// cut points in front, to `fuzz/seeds/split_invariance/`), and the body of each chunked row to `fuzz/seeds/chunked/`.
/// Run with `cargo test --test e2e_conformance -- --ignored dump_fuzz_seeds` after changing
/// the table; the seeds are committed.
#[test]
#[ignore = "writes fuzz seed files; run by hand after changing the table"]
fn dump_fuzz_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for (i, r) in rows().iter().enumerate() {
        let name: String = r
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let file = format!("{i:03}-{name}");
        write_file(&root, &format!("request_head/{file}"), &r.req);
        // split_invariance input: a cut count, little-endian u16 cut offsets, then the data.
        let len = r.req.len();
        let mut split = vec![3u8];
        for cut in [1, len / 2, len.saturating_sub(1)] {
            split.extend_from_slice(&(cut as u16).to_le_bytes());
        }
        split.extend_from_slice(&r.req);
        write_file(&root, &format!("split_invariance/{file}"), &split);
        let head_end = r.req.windows(4).position(|w| w == b"\r\n\r\n");
        if let (Some(end), true) = (head_end, r.req.starts_with(b"PUT ")) {
            let head = String::from_utf8_lossy(&r.req[..end]).to_ascii_lowercase();
            if head.contains("transfer-encoding") {
                write_file(&root, &format!("chunked/{file}"), &r.req[end + 4..]);
            }
        }
    }
}
