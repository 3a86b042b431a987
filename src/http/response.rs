//! Building responses: reason phrases, a fast head writer, built-in error pages.

/// The reason phrase for a status code (RFC 9110 §15); empty for codes we never send
/// (a reason phrase may be empty, RFC 9112 §4).
pub fn reason(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "",
    }
}

/// Append the decimal form of `n` (no allocation, no `format!`).
pub fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Writes a response head into a reused buffer:
///
/// ```
/// # use webserv::http::response::ResponseHead;
/// let mut out = Vec::new();
/// ResponseHead::new(&mut out, 404)
///     .header("Content-Type", b"text/html")
///     .header_u64("Content-Length", 153)
///     .finish();
/// assert!(out.starts_with(b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\n"));
/// ```
pub struct ResponseHead<'o> {
    out: &'o mut Vec<u8>,
}

impl<'o> ResponseHead<'o> {
    /// Append the status line `HTTP/1.1 CODE REASON` (RFC 9112 §4).
    pub fn new(out: &'o mut Vec<u8>, code: u16) -> ResponseHead<'o> {
        debug_assert!((100..=999).contains(&code), "status code must be 3 digits");
        let code = code.clamp(100, 999);
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(&[
            b'0' + (code / 100) as u8,
            b'0' + (code / 10 % 10) as u8,
            b'0' + (code % 10) as u8,
            b' ',
        ]);
        out.extend_from_slice(reason(code).as_bytes());
        out.extend_from_slice(b"\r\n");
        ResponseHead { out }
    }

    /// Append a header field. `name` must be a token (a programming error otherwise). A CR,
    /// LF or NUL in `value` is replaced by SP (RFC 9110 §5.5), so no value can split the
    /// response.
    pub fn header(&mut self, name: &str, value: &[u8]) -> &mut Self {
        debug_assert!(!name.is_empty() && name.bytes().all(super::request::is_tchar));
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b": ");
        let start = self.out.len();
        self.out.extend_from_slice(value);
        // Almost every value is clean: three memchr scans decide that without a byte loop.
        if value.contains(&b'\r') || value.contains(&b'\n') || value.contains(&0) {
            for b in &mut self.out[start..] {
                if matches!(*b, b'\r' | b'\n' | 0) {
                    *b = b' ';
                }
            }
        }
        self.out.extend_from_slice(b"\r\n");
        self
    }

    /// Append a header field with a decimal value (Content-Length, Age, ...).
    pub fn header_u64(&mut self, name: &str, n: u64) -> &mut Self {
        debug_assert!(!name.is_empty() && name.bytes().all(super::request::is_tchar));
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b": ");
        write_u64(self.out, n);
        self.out.extend_from_slice(b"\r\n");
        self
    }

    /// End the head with the empty line.
    pub fn finish(&mut self) {
        self.out.extend_from_slice(b"\r\n");
    }
}

/// `Server` with `server_tokens on`: name and version.
const SERVER_VERSION: &str = concat!("webserv/", env!("CARGO_PKG_VERSION"));
/// `server_tokens` (default off). Process-wide: the setting is http-level, and a reload sets
/// it for every loop at once (a response being written meanwhile may show either form).
static SERVER_TOKENS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Applies `server_tokens on|off` (the server calls it when a configuration takes effect).
pub fn set_server_tokens(on: bool) {
    SERVER_TOKENS.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// What the `Server` header and the built-in error pages name: `webserv`, or with
/// `server_tokens on`, `webserv/VERSION` (nginx's rule).
pub fn server_name() -> &'static str {
    if SERVER_TOKENS.load(std::sync::atomic::Ordering::Relaxed) {
        SERVER_VERSION
    } else {
        "webserv"
    }
}

/// The built-in error page for `code`: a tiny HTML document naming the status.
pub fn error_page_html(code: u16) -> String {
    let mut status = String::with_capacity(40);
    let mut digits = Vec::with_capacity(3);
    write_u64(&mut digits, code as u64);
    status.extend(digits.iter().map(|&b| b as char));
    let r = reason(code);
    if !r.is_empty() {
        status.push(' ');
        status.push_str(r);
    }
    let mut page = String::with_capacity(160 + 2 * status.len());
    page.push_str("<!DOCTYPE html>\r\n<html>\r\n<head><title>");
    page.push_str(&status);
    page.push_str("</title></head>\r\n<body>\r\n<center><h1>");
    page.push_str(&status);
    page.push_str("</h1></center>\r\n<hr><center>");
    page.push_str(server_name());
    page.push_str("</center>\r\n</body>\r\n</html>\r\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_we_send_has_a_reason() {
        for code in [
            100, 200, 201, 204, 206, 301, 302, 303, 304, 307, 308, 400, 403, 404, 405, 408, 409,
            411, 413, 414, 415, 416, 417, 431, 500, 501, 502, 503, 504, 505, 507,
        ] {
            assert!(!reason(code).is_empty(), "{code}");
        }
        assert_eq!(reason(418), "");
        assert_eq!(reason(404), "Not Found");
    }

    #[test]
    fn writes_heads() {
        let mut out = Vec::new();
        ResponseHead::new(&mut out, 200)
            .header("Server", b"webserv")
            .header_u64("Content-Length", 0)
            .header_u64("X-Max", u64::MAX)
            .finish();
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nServer: webserv\r\nContent-Length: 0\r\nX-Max: 18446744073709551615\r\n\r\n"
        );
        out.clear();
        ResponseHead::new(&mut out, 301)
            .header("Location", b"/a\r\nSet-Cookie: x\0")
            .finish();
        assert_eq!(
            out,
            b"HTTP/1.1 301 Moved Permanently\r\nLocation: /a  Set-Cookie: x \r\n\r\n"
        );
        out.clear();
        ResponseHead::new(&mut out, 599).finish();
        assert_eq!(out, b"HTTP/1.1 599 \r\n\r\n");
        let cap = out.capacity();
        out.clear();
        ResponseHead::new(&mut out, 204).finish();
        assert_eq!(out.capacity(), cap, "the buffer is reused");
    }

    #[test]
    fn u64_formatting() {
        for n in [0u64, 7, 10, 99, 100, 12345, u32::MAX as u64, u64::MAX] {
            let mut out = Vec::new();
            write_u64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn error_pages() {
        let page = error_page_html(404);
        assert!(page.contains("<title>404 Not Found</title>"));
        assert!(page.contains("<h1>404 Not Found</h1>"));
        assert!(page.contains("<hr><center>webserv</center>"));
        assert!(error_page_html(505).contains("505 HTTP Version Not Supported"));
        assert!(error_page_html(599).contains("<title>599</title>"));
    }
}
