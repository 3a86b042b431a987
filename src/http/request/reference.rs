//! The request-head parser, `analyze` and `valid_authority` as they were before the byte-class
//! table, the borrowed field table and the parse-time path facts (commit f5af961): the
//! reference the agreement tests in `tests.rs` hold the current parser to. Test-only.
#![allow(dead_code)]

use crate::http::Error;

/// Most header fields in one request. More → 431.
pub const MAX_HEADERS: usize = 100;

use super::HeadLimits;

/// Outcome of a parse step that did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status<T> {
    /// The value and the number of bytes of input it used (the head length).
    Complete(T, usize),
    /// The input ends before the value does: call again with more bytes.
    Partial,
}

impl<T> Status<T> {
    /// Whether this is `Complete`.
    pub fn is_complete(&self) -> bool {
        matches!(self, Status::Complete(..))
    }
}

/// Request methods we implement (RFC 9110 §9 plus PATCH, RFC 5789).
///
/// Any other syntactically valid method token (including lower-case `get`: methods are
/// case-sensitive, RFC 9110 §9.1) is answered with 501 ([`Error::NotImplemented`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Trace,
    Connect,
    Patch,
}

impl Method {
    /// Recognise a method token, case-sensitively.
    pub fn from_bytes(token: &[u8]) -> Option<Method> {
        Some(match token {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"TRACE" => Method::Trace,
            b"CONNECT" => Method::Connect,
            b"PATCH" => Method::Patch,
            _ => return None,
        })
    }

    /// The method token as sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Trace => "TRACE",
            Method::Connect => "CONNECT",
            Method::Patch => "PATCH",
        }
    }
}

/// How the request body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body: neither Content-Length nor Transfer-Encoding.
    None,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// Chunked transfer coding follows: see [`super::chunked::ChunkedDecoder`].
    Chunked,
}

/// A byte range of the head, stored as offsets so the parser can keep it across calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Span {
    start: u16,
    len: u16,
}

impl Span {
    fn new(start: usize, end: usize) -> Span {
        debug_assert!(start <= end && end <= u16::MAX as usize);
        Span {
            start: start as u16,
            len: (end - start) as u16,
        }
    }

    fn of(self, buf: &[u8]) -> &[u8] {
        let start = self.start as usize;
        &buf[start..start + self.len as usize]
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Field {
    name: Span,
    value: Span,
}

impl Field {
    /// Whether this field (of the head `buf`) is named `name`, ASCII case-insensitive: the
    /// length first, so most fields are passed over without touching their bytes.
    fn is_named(&self, buf: &[u8], name: &[u8]) -> bool {
        self.name.len as usize == name.len() && self.name.of(buf).eq_ignore_ascii_case(name)
    }
}

/// What a Transfer-Encoding list asks for, once it is known to end in `chunked`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TeCoding {
    /// Exactly `chunked`.
    Chunked,
    /// Other codings before the final `chunked` (e.g. `gzip, chunked`): not implemented.
    Unknown,
}

/// Classify a Transfer-Encoding value (a comma-separated list, RFC 9110 §5.6.1: empty elements
/// are ignored). RFC 9112 §6.3 (4): if `chunked` is not the final coding the body length cannot
/// be determined and the server MUST answer 400; chunked applied twice is invalid (RFC 9112
/// §7). Any other coding before the final chunked is one we do not implement (§6.1: 501).
fn classify_te(value: &[u8]) -> Result<TeCoding, Error> {
    let codings: Vec<&[u8]> = value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|c| !c.is_empty())
        .collect();
    let Some((last, rest)) = codings.split_last() else {
        return Err(Error::TransferEncoding);
    };
    if !last.eq_ignore_ascii_case(b"chunked") {
        return Err(Error::TransferEncoding);
    }
    if rest.iter().any(|c| c.eq_ignore_ascii_case(b"chunked")) {
        return Err(Error::TransferEncoding);
    }
    Ok(if rest.is_empty() {
        TeCoding::Chunked
    } else {
        TeCoding::Unknown
    })
}

/// A parsed request head. Every slice borrows from the buffer given to [`HeadParser::parse`].
#[derive(Clone, Copy)]
pub struct Request<'b> {
    /// The head's bytes (request line through the empty line).
    buf: &'b [u8],
    /// The method.
    pub method: Method,
    /// HTTP minor version: 0 or 1 (a higher 1.x is treated as 1.1, RFC 9110 §2.5).
    pub minor: u8,
    /// The request-target as received.
    target: Span,
    /// INVARIANT: `Some` exactly when the target is in absolute-form; then it is a valid,
    /// non-empty authority.
    authority: Option<Span>,
    /// Path and query of the target: for origin-form the whole target; for absolute-form what
    /// follows the authority (empty means "/"); for asterisk-form "*".
    path: Span,
    /// INVARIANT: `fields[..n_fields]` are the header fields in order, names valid tokens,
    /// values free of CTLs other than HTAB and trimmed of surrounding whitespace.
    fields: [Field; MAX_HEADERS],
    n_fields: usize,
}

impl<'b> Request<'b> {
    /// The request-target exactly as received (ASCII, validated).
    pub fn target(&self) -> &'b str {
        ascii_str(self.target.of(self.buf))
    }

    /// Origin-form path and query (`/a/b?x`), also for an absolute-form target; `*` for
    /// asterisk-form.
    pub fn path(&self) -> &'b str {
        let p = self.path.of(self.buf);
        if p.is_empty() {
            "/"
        } else {
            ascii_str(p)
        }
    }

    /// The authority of an absolute-form target (`host[:port]`), if that was the form used.
    pub fn target_authority(&self) -> Option<&'b [u8]> {
        self.authority.map(|a| a.of(self.buf))
    }

    /// The header fields in order of arrival, as (name, value) pairs.
    pub fn headers(&self) -> impl Iterator<Item = (&'b [u8], &'b [u8])> + '_ {
        let buf = self.buf;
        self.fields[..self.n_fields]
            .iter()
            .map(move |f| (f.name.of(buf), f.value.of(buf)))
    }

    /// Number of header fields.
    pub fn header_count(&self) -> usize {
        self.n_fields
    }

    /// The value of the first field named `name` (ASCII case-insensitive, RFC 9110 §5.1).
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        let name = name.as_bytes();
        // Lengths first: most fields are rejected without touching their bytes (a request
        // asks for seven names, most of them absent, on every static reply).
        self.fields[..self.n_fields]
            .iter()
            .find(|f| f.is_named(self.buf, name))
            .map(|f| f.value.of(self.buf))
    }

    /// The values of the first fields named `names` (ASCII case-insensitive), in one pass
    /// over the fields: what a reply asks of every request (the conditionals, `Range`).
    pub fn headers_named<const N: usize>(&self, names: [&str; N]) -> [Option<&'b [u8]>; N] {
        let mut found = [None; N];
        // The names' lengths as a bit set: most fields are passed over on their length alone.
        let lens = names.iter().fold(0u64, |m, n| m | 1 << n.len().min(63));
        for f in &self.fields[..self.n_fields] {
            if lens & 1 << (f.name.len as usize).min(63) == 0 {
                continue;
            }
            for (i, n) in names.iter().enumerate() {
                if found[i].is_none() && f.is_named(self.buf, n.as_bytes()) {
                    found[i] = Some(f.value.of(self.buf));
                }
            }
        }
        found
    }

    /// Length of the head in bytes.
    pub fn head_len(&self) -> usize {
        self.buf.len()
    }

    /// Apply the semantic rules of RFC 9112 and RFC 9110 to the parsed head: Host, body
    /// framing, persistence and expectations.
    pub fn analyze(&self) -> Result<RequestHead<'b>, Error> {
        let mut host: Option<&'b [u8]> = None;
        let mut content_length: Option<u64> = None;
        let mut te_seen = false;
        let mut te_coding = TeCoding::Chunked;
        let mut close = false;
        let mut keep_alive_token = false;
        let mut expect_continue = false;
        let mut expect_other = false;

        for (name, value) in self.headers() {
            match name.len() {
                4 if name.eq_ignore_ascii_case(b"host") => {
                    // RFC 9112 §3.2: more than one Host field → 400; invalid value → 400.
                    if host.is_some() || !valid_authority(value, true) {
                        return Err(Error::Host);
                    }
                    host = Some(value);
                }
                14 if name.eq_ignore_ascii_case(b"content-length") => {
                    // RFC 9112 §6.3 point 5 lets a recipient accept a list of identical
                    // values; we do not: a repeated field, even equal, is a smuggling smell.
                    if content_length.is_some() {
                        return Err(Error::ContentLength);
                    }
                    content_length = Some(parse_content_length(value)?);
                }
                17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                    // Repeated Transfer-Encoding: RFC 9110 §5.3 would let us combine the
                    // lines into a list, whose last coding must be chunked; we only accept
                    // exactly "chunked", so a second line is either a second "chunked"
                    // (invalid, RFC 9112 §7: chunked must not be applied twice) or another
                    // coding. Either way: 400.
                    if te_seen {
                        return Err(Error::TransferEncoding);
                    }
                    te_seen = true;
                    te_coding = classify_te(value)?;
                }
                10 if name.eq_ignore_ascii_case(b"connection") => {
                    // RFC 9112 §9.3: "close" ends persistence; "keep-alive" requests it for
                    // HTTP/1.0 (RFC 9112 §C.2.2).
                    for token in value.split(|&b| b == b',').map(trim_ows) {
                        if token.eq_ignore_ascii_case(b"close") {
                            close = true;
                        } else if token.eq_ignore_ascii_case(b"keep-alive") {
                            keep_alive_token = true;
                        }
                    }
                }
                6 if name.eq_ignore_ascii_case(b"expect") => {
                    // RFC 9110 §10.1.1: only 100-continue is defined; anything else → 417.
                    for token in value.split(|&b| b == b',').map(trim_ows) {
                        if token.eq_ignore_ascii_case(b"100-continue") {
                            expect_continue = true;
                        } else {
                            expect_other = true;
                        }
                    }
                }
                _ => {}
            }
        }

        // RFC 9112 §3.2: a server MUST respond 400 to an HTTP/1.1 request without Host.
        if host.is_none() && self.minor >= 1 {
            return Err(Error::Host);
        }
        let body = if te_seen {
            // RFC 9112 §6.1: a server MAY reject TE + CL as 400, and SHOULD treat TE in an
            // HTTP/1.0 message as faulty (and close) — we reject both.
            if self.minor == 0 || content_length.is_some() {
                return Err(Error::TransferEncoding);
            }
            // RFC 9112 §6.1: a coding we do not implement (before the final chunked) → 501.
            if te_coding == TeCoding::Unknown {
                return Err(Error::NotImplemented);
            }
            BodyKind::Chunked
        } else {
            match content_length {
                Some(n) => BodyKind::Length(n),
                None => BodyKind::None,
            }
        };
        if expect_other {
            return Err(Error::ExpectationFailed);
        }
        // RFC 9112 §3.2.2: the authority of an absolute-form target replaces Host.
        let host = self.target_authority().or(host).unwrap_or(b"");
        let keep_alive = !close && (self.minor >= 1 || keep_alive_token);
        Ok(RequestHead {
            host,
            body,
            keep_alive,
            // RFC 9110 §10.1.1: a 100-continue expectation in an HTTP/1.0 request MUST be
            // ignored.
            expect_continue: expect_continue && self.minor >= 1,
        })
    }
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct Fields<'a, 'b>(&'a Request<'b>);
        impl std::fmt::Debug for Fields<'_, '_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_list()
                    .entries(
                        self.0
                            .headers()
                            .map(|(n, v)| (String::from_utf8_lossy(n), String::from_utf8_lossy(v))),
                    )
                    .finish()
            }
        }
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("target", &self.target())
            .field("minor", &self.minor)
            .field("headers", &Fields(self))
            .finish()
    }
}

impl PartialEq for Request<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.method == other.method
            && self.minor == other.minor
            && self.target() == other.target()
            && self.path() == other.path()
            && self.target_authority() == other.target_authority()
            && self.headers().eq(other.headers())
    }
}

/// What the server needs to know about a request beyond its line and fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead<'b> {
    /// The authority to route on: an absolute-form target's authority, else the Host field;
    /// empty for an HTTP/1.0 request without Host.
    pub host: &'b [u8],
    /// How the body is framed.
    pub body: BodyKind,
    /// Whether the connection may be reused after the response.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request: send 100 before reading the body.
    pub expect_continue: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before and in the request line (leading empty lines are skipped, RFC 9112 §2.2).
    RequestLine,
    /// In the field lines.
    Fields,
}

/// Incremental request-head parser. One per connection; reused for each request.
///
/// Contract: between calls the caller may only *append* to the buffer (the bytes already
/// passed must be unchanged). After `Complete` or an error the parser resets itself for the
/// next request, which the caller passes starting at its first byte.
#[derive(Clone)]
pub struct HeadParser {
    phase: Phase,
    /// INVARIANT: `buf[..line_start]` holds complete lines, already validated and recorded.
    line_start: usize,
    /// INVARIANT: `line_start <= scanned` and `buf[line_start..scanned]` holds no LF: the
    /// search for the end of the current line resumes here.
    scanned: usize,
    /// INVARIANT: meaningful once `phase == Fields`: the first byte after the request line.
    fields_start: usize,
    method: Method,
    minor: u8,
    target: Span,
    authority: Option<Span>,
    path: Span,
    /// INVARIANT: `fields[..n_fields]` are the field lines of `buf[fields_start..line_start]`.
    fields: [Field; MAX_HEADERS],
    n_fields: usize,
    limits: HeadLimits,
}

impl Default for HeadParser {
    fn default() -> Self {
        HeadParser::new()
    }
}

impl HeadParser {
    /// A parser waiting for the first byte of a request.
    pub fn new() -> HeadParser {
        HeadParser {
            phase: Phase::RequestLine,
            line_start: 0,
            scanned: 0,
            fields_start: 0,
            method: Method::Get,
            minor: 1,
            target: Span::default(),
            authority: None,
            path: Span::default(),
            fields: [Field::default(); MAX_HEADERS],
            n_fields: 0,
            limits: HeadLimits::DEFAULT,
        }
    }

    /// Use `limits` from the next call on (the connection sets the configured ones before
    /// each parse; a reload may change them).
    pub fn set_limits(&mut self, limits: HeadLimits) {
        self.limits = limits;
    }

    /// Forget any partial head (e.g. the connection's buffer was discarded).
    pub fn reset(&mut self) {
        self.phase = Phase::RequestLine;
        self.line_start = 0;
        self.scanned = 0;
        self.n_fields = 0;
        self.authority = None;
    }

    /// Parse as much of the head in `buf` as has arrived.
    ///
    /// Returns `Complete(request, head_len)` once the empty line ending the head is in `buf`
    /// (bytes after it are the body or the next request and are not looked at), `Partial`
    /// if more bytes are needed, or the error to answer with (the connection should close).
    pub fn parse<'b>(&mut self, buf: &'b [u8]) -> Result<Status<Request<'b>>, Error> {
        if buf.len() < self.scanned {
            // The caller broke the append-only contract; start over rather than panic.
            self.reset();
        }
        let r = self.parse_inner(buf);
        if !matches!(r, Ok(Status::Partial)) {
            self.reset();
        }
        r
    }

    fn parse_inner<'b>(&mut self, buf: &'b [u8]) -> Result<Status<Request<'b>>, Error> {
        // Resume: if the current line was incomplete last time, only look at the new bytes
        // for its terminator before validating it again from its start.
        // (A CR last time must be looked at again: a bare CR is an error now.)
        if self.scanned > self.line_start {
            if buf[self.scanned - 1] != b'\r' && find_byte(&buf[self.scanned..], b'\n').is_none() {
                self.scanned = buf.len();
                return self.partial(buf.len());
            }
            self.scanned = self.line_start;
        }
        if self.phase == Phase::RequestLine {
            loop {
                // Never look past the limit: a request line that long is refused anyway.
                let max_line = self.limits.request_line();
                let view = &buf[self.line_start.min(max_line)..buf.len().min(max_line)];
                let Some(lf) = find_byte(view, b'\n') else {
                    self.scanned = buf.len();
                    return self.partial(buf.len());
                };
                let lf = self.line_start + lf;
                if lf >= max_line {
                    return Err(Error::UriTooLong);
                }
                let end = if lf > self.line_start && buf[lf - 1] == b'\r' {
                    lf - 1
                } else {
                    lf
                };
                if end == self.line_start {
                    // RFC 9112 §2.2: ignore empty lines before the request line.
                    self.line_start = lf + 1;
                    continue;
                }
                self.request_line(buf, self.line_start, end)?;
                self.line_start = lf + 1;
                self.scanned = self.line_start;
                self.fields_start = self.line_start;
                self.phase = Phase::Fields;
                break;
            }
        }
        // Never look past the limit: a field line ending beyond it is refused anyway (and
        // every offset within it fits a u16).
        let view = &buf[..buf.len().min(self.fields_start + self.limits.section())];
        loop {
            match parse_field_line(view, self.line_start)? {
                Line::Incomplete => {
                    self.scanned = buf.len();
                    return self.partial(buf.len());
                }
                Line::End(next) => {
                    return Ok(Status::Complete(self.request(&buf[..next]), next));
                }
                Line::Field(field, next) => {
                    if self.n_fields == MAX_HEADERS
                        || next - self.line_start > self.limits.field_line()
                    {
                        return Err(Error::HeadersTooLarge);
                    }
                    self.fields[self.n_fields] = field;
                    self.n_fields += 1;
                    self.line_start = next;
                    self.scanned = next;
                }
            }
        }
    }

    /// The head is incomplete at `len` bytes: fail now if it can no longer fit the limits.
    fn partial<T>(&self, len: usize) -> Result<Status<T>, Error> {
        match self.phase {
            // The request line (with its terminator) would be at least len + 1 bytes.
            Phase::RequestLine if len >= self.limits.request_line() => Err(Error::UriTooLong),
            // The section needs at least one more byte (the final LF), and so does the
            // field line under way.
            Phase::Fields
                if len - self.fields_start >= self.limits.section()
                    || len - self.line_start >= self.limits.field_line() =>
            {
                Err(Error::HeadersTooLarge)
            }
            _ => Ok(Status::Partial),
        }
    }

    fn request<'b>(&self, head: &'b [u8]) -> Request<'b> {
        Request {
            buf: head,
            method: self.method,
            minor: self.minor,
            target: self.target,
            authority: self.authority,
            path: self.path,
            fields: self.fields,
            n_fields: self.n_fields,
        }
    }

    /// Validate `buf[start..end]` (the request line without its terminator), RFC 9112 §3:
    /// `request-line = method SP request-target SP HTTP-version`, exactly one SP each.
    fn request_line(&mut self, buf: &[u8], start: usize, end: usize) -> Result<(), Error> {
        let line = &buf[start..end];
        // method = token (RFC 9110 §9.1)
        let m_len = line
            .iter()
            .position(|&b| !is_tchar(b))
            .unwrap_or(line.len());
        if m_len == 0 || line.get(m_len) != Some(&b' ') {
            return Err(Error::RequestLine);
        }
        let t_start = m_len + 1;
        let t_end = t_start
            + line[t_start..]
                .iter()
                .position(|&b| !is_target_byte(b))
                .unwrap_or(line.len() - t_start);
        match line.get(t_end) {
            Some(b' ') if t_end > t_start => {}
            // A fragment is not part of a request-target (RFC 9112 §3.2).
            Some(b'#') => return Err(Error::Target),
            // Empty target (double SP), or no version (HTTP/0.9-style line).
            Some(b' ') | None => return Err(Error::RequestLine),
            Some(_) => return Err(Error::Target),
        }
        let minor = parse_version(&line[t_end + 1..])?;
        let method = Method::from_bytes(&line[..m_len]);
        let target = &line[t_start..t_end];
        let abs = |s: usize, e: usize| Span::new(start + t_start + s, start + t_start + e);
        // RFC 9112 §3.2: origin-form, absolute-form, or asterisk-form (OPTIONS only).
        // Authority-form is only for CONNECT to a proxy; we are an origin server: 400.
        let (authority, path) = if target[0] == b'/' {
            (None, abs(0, target.len()))
        } else if target == b"*" {
            if method.is_some() && method != Some(Method::Options) {
                return Err(Error::Target);
            }
            (None, abs(0, 1))
        } else {
            let (a_start, a_end) = absolute_form(target)?;
            (Some(abs(a_start, a_end)), abs(a_end, target.len()))
        };
        // Syntax errors (400) and an unsupported version (505) were reported first.
        self.method = method.ok_or(Error::NotImplemented)?;
        self.minor = minor;
        self.target = abs(0, target.len());
        self.authority = authority;
        self.path = path;
        Ok(())
    }
}

/// `HTTP-version = "HTTP" "/" DIGIT "." DIGIT` (RFC 9112 §2.3, case-sensitive).
fn parse_version(v: &[u8]) -> Result<u8, Error> {
    match *v {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            if major != b'1' {
                return Err(Error::VersionNotSupported);
            }
            // RFC 9110 §2.5: a higher minor version of a major we implement is processed
            // as the highest minor we implement.
            Ok(if minor == b'0' { 0 } else { 1 })
        }
        _ => Err(Error::Version),
    }
}

/// Split an absolute-form target `scheme://authority[/path]`: returns the authority's
/// bounds within `target`. Only `http` and `https` schemes (case-insensitive, RFC 3986
/// §3.1); no userinfo (deprecated, RFC 9110 §4.2.4); the path, if any, must start with `/`
/// (`http://h?q` has an empty path and a query: RFC 9110 §4.2.3 makes it `/?q`).
fn absolute_form(target: &[u8]) -> Result<(usize, usize), Error> {
    let rest_at = if target.len() >= 7 && target[..7].eq_ignore_ascii_case(b"http://") {
        7
    } else if target.len() >= 8 && target[..8].eq_ignore_ascii_case(b"https://") {
        8
    } else {
        return Err(Error::Target);
    };
    let rest = &target[rest_at..];
    // RFC 3986 §3.2: the authority ends at the path's `/` or, with an empty path, the `?`.
    let a_len = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    // RFC 9110 §4.2.1: an http URI with an empty host MUST be rejected.
    if !valid_authority(&rest[..a_len], false) {
        return Err(Error::Target);
    }
    Ok((rest_at, rest_at + a_len))
}

enum Line {
    Field(Field, usize),
    End(usize),
    Incomplete,
}

/// Parse one field line starting at `start` (RFC 9112 §5):
/// `field-line = field-name ":" OWS field-value OWS`, ended by CRLF (or bare LF).
fn parse_field_line(buf: &[u8], start: usize) -> Result<Line, Error> {
    let mut i = start;
    match buf.get(i) {
        None => return Ok(Line::Incomplete),
        Some(b'\n') => return Ok(Line::End(i + 1)),
        Some(b'\r') => {
            return match buf.get(i + 1) {
                None => Ok(Line::Incomplete),
                Some(b'\n') => Ok(Line::End(i + 2)),
                Some(_) => Err(Error::BareCr),
            }
        }
        // RFC 9112 §5.2: obs-fold → 400 (also covers whitespace after the start-line,
        // RFC 9112 §2.2).
        Some(b' ' | b'\t') => return Err(Error::ObsFold),
        Some(_) => {}
    }
    i += buf[i..]
        .iter()
        .position(|&b| !is_tchar(b))
        .unwrap_or(buf.len() - i);
    match buf.get(i) {
        None => return Ok(Line::Incomplete),
        Some(b':') if i > start => {}
        // RFC 9112 §5.1: no whitespace between field name and colon → 400.
        _ => return Err(Error::HeaderName),
    }
    let name = Span::new(start, i);
    i += 1;
    while i < buf.len() && (buf[i] == b' ' || buf[i] == b'\t') {
        i += 1;
    }
    let v_start = i;
    // Find the first byte that is not a field-vchar (RFC 9110 §5.5): CTL or DEL.
    let (v_end, next) = loop {
        i = find_ctl(buf, i);
        match buf.get(i) {
            None => return Ok(Line::Incomplete),
            Some(b'\t') => i += 1,
            Some(b'\n') => break (i, i + 1),
            Some(b'\r') => match buf.get(i + 1) {
                None => return Ok(Line::Incomplete),
                Some(b'\n') => break (i, i + 2),
                Some(_) => return Err(Error::BareCr),
            },
            // NUL and other CTLs: RFC 9110 §5.5 → reject.
            Some(_) => return Err(Error::HeaderValue),
        }
    };
    let mut e = v_end;
    while e > v_start && (buf[e - 1] == b' ' || buf[e - 1] == b'\t') {
        e -= 1;
    }
    Ok(Line::Field(
        Field {
            name,
            value: Span::new(v_start, e),
        },
        next,
    ))
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Index of the first `needle` in `hay`, eight bytes at a time (SWAR "has zero byte"; the
/// lowest flagged byte is always exact, false positives only occur above a true match).
pub(crate) fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    let pat = LO * needle as u64;
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0;
    for c in &mut chunks {
        let x = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) ^ pat;
        let t = x.wrapping_sub(LO) & !x & HI;
        if t != 0 {
            return Some(base + (t.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == needle)
        .map(|p| base + p)
}

/// Index (≥ `from`) of the first byte of `buf` below 0x20 or equal to 0x7F, or `buf.len()`.
fn find_ctl(buf: &[u8], from: usize) -> usize {
    let mut i = from;
    while i + 8 <= buf.len() {
        let c = &buf[i..i + 8];
        let x = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let below = x.wrapping_sub(LO * 0x20) & !x & HI;
        let y = x ^ (LO * 0x7f);
        let del = y.wrapping_sub(LO) & !y & HI;
        let t = below | del;
        if t != 0 {
            return i + (t.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < buf.len() && buf[i] >= 0x20 && buf[i] != 0x7f {
        i += 1;
    }
    i
}

const fn make_table(allowed: &[u8], ranges: &[(u8, u8)]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < allowed.len() {
        t[allowed[i] as usize] = true;
        i += 1;
    }
    let mut r = 0;
    while r < ranges.len() {
        let mut b = ranges[r].0 as usize;
        while b <= ranges[r].1 as usize {
            t[b] = true;
            b += 1;
        }
        r += 1;
    }
    t
}

/// `tchar` (RFC 9110 §5.6.2).
static TCHAR: [bool; 256] = make_table(
    b"!#$%&'*+-.^_`|~",
    &[(b'0', b'9'), (b'A', b'Z'), (b'a', b'z')],
);

/// Bytes we accept in a request-target: visible ASCII except `#` (fragments are not sent,
/// RFC 9112 §3.2). We are more lenient than RFC 3986 about `"<>\^`{|}` (as nginx is), but
/// reject SP, CTLs and non-ASCII (RFC 9112 §3.2: the target is URI syntax, ASCII only).
static TARGET: [bool; 256] = {
    let mut t = make_table(b"", &[(0x21, 0x7e)]);
    t[b'#' as usize] = false;
    t
};

/// `unreserved / sub-delims` of RFC 3986 §2, plus `%` (checked separately).
pub(super) static REG_NAME: [bool; 256] = make_table(
    b"-._~!$&'()*+,;=%",
    &[(b'0', b'9'), (b'A', b'Z'), (b'a', b'z')],
);

pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[b as usize]
}

pub(super) fn is_target_byte(b: u8) -> bool {
    TARGET[b as usize]
}

/// Whether `a` is a valid `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2): a
/// reg-name (which includes IPv4 literals), or an IP-literal in brackets, then an optional
/// port of at most five digits. The empty string is allowed only if `allow_empty` (an empty
/// Host field is valid, RFC 9112 §3.2).
pub fn valid_authority(a: &[u8], allow_empty: bool) -> bool {
    if a.is_empty() {
        return allow_empty;
    }
    let host_end = if a[0] == b'[' {
        // IP-literal: IPv6address (hex digits, ':', '.'); IPvFuture is not supported.
        let Some(close) = a.iter().position(|&b| b == b']') else {
            return false;
        };
        let inner = &a[1..close];
        if inner.is_empty()
            || !inner
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        close + 1
    } else {
        // One pass to the port's ':' checks the reg-name's bytes and notes any escape.
        let (mut end, mut escaped) = (a.len(), false);
        for (i, &b) in a.iter().enumerate() {
            if b == b':' {
                end = i;
                break;
            }
            if !REG_NAME[b as usize] {
                return false;
            }
            escaped |= b == b'%';
        }
        let host = &a[..end];
        if host.is_empty() {
            return false;
        }
        // pct-encoded = "%" HEXDIG HEXDIG
        let mut i = 0;
        while escaped && i < host.len() {
            if host[i] == b'%' {
                if i + 2 >= host.len() {
                    return false;
                }
                if !(host[i + 1].is_ascii_hexdigit() && host[i + 2].is_ascii_hexdigit()) {
                    return false;
                }
                i += 3;
            } else {
                i += 1;
            }
        }
        end
    };
    match a.get(host_end) {
        None => true,
        Some(b':') => {
            let port = &a[host_end + 1..];
            port.len() <= 5 && port.iter().all(u8::is_ascii_digit)
        }
        Some(_) => false,
    }
}

/// `Content-Length = 1*DIGIT` (RFC 9110 §8.6), fitting a u64. Signs, spaces inside, empty,
/// lists → 400.
fn parse_content_length(v: &[u8]) -> Result<u64, Error> {
    if v.is_empty() {
        return Err(Error::ContentLength);
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return Err(Error::ContentLength);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add((b - b'0') as u64))
            .ok_or(Error::ContentLength)?;
    }
    Ok(n)
}

/// Trim optional whitespace (SP / HTAB, RFC 9110 §5.6.3) from both ends.
pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// A validated target or Host value (ASCII by the checks above) as text; cannot fail, and an
/// empty string stands in if it did.
pub(crate) fn ascii_str(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or("")
}
