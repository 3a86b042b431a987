//! Incremental request-head parser and request semantics (RFC 9112 §2–§7, RFC 9110).
//!
//! [`HeadParser::parse`] is called by the connection each time more bytes have arrived in its
//! receive buffer. It validates each line once, when that line's terminator has arrived, and
//! remembers how far it got, so a head delivered one byte at a time costs O(n), not O(n²).
//! While the head is still [`Status::Partial`], size limits ([`HeadLimits`], nginx's
//! `large_client_header_buffers`) are enforced on what is there already: an attacker cannot
//! make us buffer more than the request-line limit plus the header-section limit (at most
//! [`MAX_HEAD`] bytes) before we answer 414 or 431.
//!
//! [`Request`] borrows every slice from the caller's buffer and its field table from the
//! parser (no copy, no allocation).
//! [`Request::analyze`] then applies the semantic rules (Host, body framing, keep-alive,
//! Expect) and yields a [`RequestHead`].
//!
//! Line endings: CRLF, or a bare LF as a whole line terminator (RFC 9112 §2.2 allows a
//! recipient to recognise a single LF; nginx does). A CR anywhere else is rejected (400):
//! RFC 9112 §2.2 lets us either reject a bare CR or replace it with SP, and rejecting is the
//! choice that cannot desynchronise us from a proxy in front of us.

use super::error::Error;

/// Most header fields in one request. More → 431.
pub const MAX_HEADERS: usize = 100;

/// The longest Host value a parser remembers as valid ([`HeadParser`]'s `known_host`).
const KNOWN_HOST: usize = 64;

mod limits;
pub use limits::{HeadLimits, MAX_HEAD, MAX_HEADER_SECTION, MAX_REQUEST_LINE};

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
    /// INVARIANT: `Some(n)` only for an origin-form target whose path (`path[..n]`, up to the
    /// first `?` or the end) has no `%` and no `//` or `/.`: normalising it changes nothing.
    plain_path: Option<u16>,
    /// INVARIANT: whether the first Host field's value (if any) is a valid authority, as
    /// `valid_authority(value, true)` says: the parser checks it once it has the field.
    host_ok: bool,
    /// INVARIANT: the header fields in order, names valid tokens, values free of CTLs other
    /// than HTAB and trimmed of surrounding whitespace. Borrowed from the parser's table.
    fields: &'b [Field],
    /// The head from its start to the end of the target or of the first Host field, whichever
    /// is later, as text if it is UTF-8 (checked once, a word at a time from the head's start):
    /// the target, path and Host are sliced out of it, not checked each.
    text: Option<&'b str>,
}

impl<'b> Request<'b> {
    /// The request-target exactly as received (ASCII, validated).
    pub fn target(&self) -> &'b str {
        self.text_of(self.target)
    }

    /// [`ascii_str`] of a span of ASCII bytes (whose ends are then character boundaries).
    fn text_of(&self, s: Span) -> &'b str {
        let start = s.start as usize;
        match self.text.and_then(|t| t.get(start..start + s.len as usize)) {
            Some(t) => t,
            None => ascii_str(s.of(self.buf)),
        }
    }

    /// Origin-form path and query (`/a/b?x`), also for an absolute-form target; `*` for
    /// asterisk-form.
    pub fn path(&self) -> &'b str {
        if self.path.len == 0 {
            "/"
        } else {
            self.text_of(self.path)
        }
    }

    /// The authority of an absolute-form target (`host[:port]`), if that was the form used.
    pub fn target_authority(&self) -> Option<&'b [u8]> {
        self.authority.map(|a| a.of(self.buf))
    }

    /// The header fields in order of arrival, as (name, value) pairs.
    pub fn headers(&self) -> impl Iterator<Item = (&'b [u8], &'b [u8])> + '_ {
        let buf = self.buf;
        self.fields
            .iter()
            .map(move |f| (f.name.of(buf), f.value.of(buf)))
    }

    /// Number of header fields.
    pub fn header_count(&self) -> usize {
        self.fields.len()
    }

    /// The value of the first field named `name` (ASCII case-insensitive, RFC 9110 §5.1).
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        let name = name.as_bytes();
        // Lengths first: most fields are rejected without touching their bytes (a request
        // asks for seven names, most of them absent, on every static reply).
        self.fields
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
        for f in self.fields {
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

    /// [`path::normalize_into`](super::path::normalize_into) of [`Request::path`], the same
    /// result; a path the parser found to need no normalising is copied as it is, without a
    /// second look at its bytes.
    pub fn normalize_path_into(&self, path: &mut String) -> Result<Option<&'b str>, Error> {
        let Some(n) = self.plain_path else {
            return super::path::normalize_into(self.path(), path);
        };
        let p = self.path;
        path.clear();
        path.push_str(self.text_of(Span { len: n, ..p }));
        Ok((n < p.len).then(|| {
            self.text_of(Span {
                start: p.start + n + 1,
                len: p.len - n - 1,
            })
        }))
    }

    /// Apply the semantic rules of RFC 9112 and RFC 9110 to the parsed head: Host, body
    /// framing, persistence and expectations.
    pub fn analyze(&self) -> Result<RequestHead<'b>, Error> {
        let mut host: Option<Span> = None;
        let mut content_length: Option<u64> = None;
        let mut te_seen = false;
        let mut te_coding = TeCoding::Chunked;
        let mut close = false;
        let mut keep_alive_token = false;
        let mut expect_continue = false;
        let mut expect_other = false;

        for f in self.fields {
            let (name, value) = (f.name.of(self.buf), f.value.of(self.buf));
            match name.len() {
                4 if token_is(name, b"host") => {
                    // RFC 9112 §3.2: more than one Host field → 400; invalid value → 400.
                    // (`host_ok` is `valid_authority(value, true)` of the first one.)
                    if host.is_some() || !self.host_ok {
                        return Err(Error::Host);
                    }
                    host = Some(f.value);
                }
                14 if token_is(name, b"content-length") => {
                    // RFC 9112 §6.3 point 5 lets a recipient accept a list of identical
                    // values; we do not: a repeated field, even equal, is a smuggling smell.
                    if content_length.is_some() {
                        return Err(Error::ContentLength);
                    }
                    content_length = Some(parse_content_length(value)?);
                }
                17 if token_is(name, b"transfer-encoding") => {
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
                10 if token_is(name, b"connection") => {
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
                6 if token_is(name, b"expect") => {
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
        let host = self.authority.or(host).map_or("", |h| self.text_of(h));
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
    pub host: &'b str,
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
    plain_path: Option<u16>,
    /// The end of the first Host field's value, once there is one.
    host_end: Option<u16>,
    /// Whether the first Host field's value is a valid authority (`valid_authority(v, true)`);
    /// meaningful once `host_end` is `Some`.
    host_ok: bool,
    /// The last Host value found valid (`known_host[..known_host_len]`, not reset between
    /// requests): a connection sends the same Host again and again, and validity is a function
    /// of the bytes, so a value equal to it is not checked again.
    known_host: [u8; KNOWN_HOST],
    known_host_len: u8,
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
            plain_path: None,
            host_end: None,
            host_ok: false,
            known_host: [0; KNOWN_HOST],
            known_host_len: 0,
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
        self.host_end = None;
    }

    /// Parse as much of the head in `buf` as has arrived.
    ///
    /// Returns `Complete(request, head_len)` once the empty line ending the head is in `buf`
    /// (bytes after it are the body or the next request and are not looked at), `Partial`
    /// if more bytes are needed, or the error to answer with (the connection should close).
    /// A complete request borrows the parser's field table (no copy of it): the parser is
    /// borrowed as long as the request is.
    pub fn parse<'b>(&'b mut self, buf: &'b [u8]) -> Result<Status<Request<'b>>, Error> {
        if buf.len() < self.scanned {
            // The caller broke the append-only contract; start over rather than panic.
            self.reset();
        }
        let head_len = match self.parse_inner(buf) {
            Ok(Some(n)) => n,
            Ok(None) => return Ok(Status::Partial),
            Err(e) => {
                self.reset();
                return Err(e);
            }
        };
        let (n_fields, authority) = (self.n_fields, self.authority);
        let target_end = self.target.start + self.target.len;
        let text_end = self.host_end.map_or(target_end, |h| h.max(target_end));
        // The reset leaves the table's entries as they are: the request reads them.
        self.reset();
        Ok(Status::Complete(
            Request {
                buf: &buf[..head_len],
                method: self.method,
                minor: self.minor,
                target: self.target,
                authority,
                path: self.path,
                plain_path: self.plain_path,
                host_ok: self.host_ok,
                fields: &self.fields[..n_fields],
                // Whole 16-byte blocks where the head has them: the check goes a block at a
                // time and a byte at a time only in what is left.
                text: std::str::from_utf8(
                    &buf[..(text_end as usize).next_multiple_of(16).min(head_len)],
                )
                .ok(),
            },
            head_len,
        ))
    }

    /// The head's length once it is complete, `None` while it is not.
    fn parse_inner(&mut self, buf: &[u8]) -> Result<Option<usize>, Error> {
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
            // One pass over a request line that is there whole and valid, the common case:
            // anything else is judged by the loop below, which finds the line's end first.
            let start = self.line_start;
            if start < buf.len().min(self.limits.request_line()) {
                if let Ok(next) = self.request_line(buf, start, None) {
                    self.line_start = next;
                    self.scanned = next;
                    self.fields_start = next;
                    self.phase = Phase::Fields;
                }
            }
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
                self.request_line(buf, self.line_start, Some(end))?;
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
                Line::End(next) => return Ok(Some(next)),
                Line::Field(field, next) => {
                    if self.n_fields == MAX_HEADERS
                        || next - self.line_start > self.limits.field_line()
                    {
                        return Err(Error::HeadersTooLarge);
                    }
                    if self.host_end.is_none()
                        && field.name.len == 4
                        && token_is(field.name.of(buf), b"host")
                    {
                        self.host_end = Some(field.value.start + field.value.len);
                        self.host_ok = self.check_host(field.value.of(buf));
                    }
                    self.fields[self.n_fields] = field;
                    self.n_fields += 1;
                    self.line_start = next;
                    self.scanned = next;
                }
            }
        }
    }

    /// `valid_authority(v, true)`, remembering the last valid value.
    fn check_host(&mut self, v: &[u8]) -> bool {
        let n = self.known_host_len as usize;
        if n != 0 && v == &self.known_host[..n] {
            return true;
        }
        let ok = valid_authority(v, true);
        if ok && v.len() <= KNOWN_HOST {
            self.known_host[..v.len()].copy_from_slice(v);
            self.known_host_len = v.len() as u8;
        }
        ok
    }

    /// The head is incomplete at `len` bytes: fail now if it can no longer fit the limits.
    fn partial(&self, len: usize) -> Result<Option<usize>, Error> {
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
            _ => Ok(None),
        }
    }

    /// Validate the request line at `start`, RFC 9112 §3:
    /// `request-line = method SP request-target SP HTTP-version`, exactly one SP each.
    ///
    /// With `end`, the line is `buf[start..end]` (its terminator found). Without, it is taken
    /// to end after the version, where a CRLF or LF must follow, within `buf` and the limit:
    /// none of the bytes before can be an LF, so that is the line's end; then the offset after
    /// the terminator is returned. An error then only means "not that case" (the caller finds
    /// the terminator, and the error, the first way).
    #[inline(always)]
    fn request_line(
        &mut self,
        buf: &[u8],
        start: usize,
        end: Option<usize>,
    ) -> Result<usize, Error> {
        let line = &buf[start..end.unwrap_or(buf.len().min(self.limits.request_line()))];
        // method = token (RFC 9110 §9.1); GET, the most common, is known at a glance.
        let (m_len, method) = if line.starts_with(b"GET ") {
            (3, Some(Method::Get))
        } else {
            let m_len = skip(line, 0, TCHAR);
            if m_len == 0 || line.get(m_len) != Some(&b' ') {
                return Err(Error::RequestLine);
            }
            (m_len, Method::from_bytes(&line[..m_len]))
        };
        let t_start = m_len + 1;
        // The target's bytes, and on the way what normalising its path will need: the first
        // `?`, and whether the path before it has a `%`, `//` or `/.` (`plain_path`).
        let (mut i, mut query, mut plain) = (t_start, None, true);
        let t_end = loop {
            i = skip(line, i, PLAIN);
            match line.get(i) {
                Some(b'/') => {
                    plain &= !matches!(line.get(i + 1), Some(b'/' | b'.'));
                    i += 1;
                }
                Some(b'%') => {
                    plain = false;
                    i += 1;
                }
                Some(b'?') => {
                    query = Some(i - t_start);
                    break skip(line, i + 1, TARGET);
                }
                // Not a target byte (PLAIN and the three above are all of them).
                _ => break i,
            }
        };
        match line.get(t_end) {
            Some(b' ') if t_end > t_start => {}
            // A fragment is not part of a request-target (RFC 9112 §3.2).
            Some(b'#') => return Err(Error::Target),
            // Empty target (double SP), or no version (HTTP/0.9-style line).
            Some(b' ') | None => return Err(Error::RequestLine),
            Some(_) => return Err(Error::Target),
        }
        let (minor, next) = match end {
            Some(end) => (parse_version(&line[t_end + 1..])?, end),
            None => {
                let v_end = t_end + 9;
                let minor = parse_version(line.get(t_end + 1..v_end).ok_or(Error::Version)?)?;
                let next = match line[v_end..] {
                    [b'\r', b'\n', ..] => v_end + 2,
                    [b'\n', ..] => v_end + 1,
                    _ => return Err(Error::Version),
                };
                (minor, start + next)
            }
        };
        let target = &line[t_start..t_end];
        let abs = |s: usize, e: usize| Span::new(start + t_start + s, start + t_start + e);
        // RFC 9112 §3.2: origin-form, absolute-form, or asterisk-form (OPTIONS only).
        // Authority-form is only for CONNECT to a proxy; we are an origin server: 400.
        self.plain_path = None;
        let (authority, path) = if target[0] == b'/' {
            if plain {
                self.plain_path = Some(query.unwrap_or(target.len()) as u16);
            }
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
        Ok(next)
    }
}

/// `HTTP-version = "HTTP" "/" DIGIT "." DIGIT` (RFC 9112 §2.3, case-sensitive).
#[inline(always)]
fn parse_version(v: &[u8]) -> Result<u8, Error> {
    // "HTTP/" and "." compared as one word, the two digits masked out.
    const MASK: u64 = 0x00ff_00ff_ffff_ffff;
    const WANT: u64 = u64::from_le_bytes(*b"HTTP/0.0") & MASK;
    let Ok(&v) = <&[u8; 8]>::try_from(v) else {
        return Err(Error::Version);
    };
    let (major, minor) = (v[5], v[7]);
    match u64::from_le_bytes(v) & MASK == WANT {
        true if major.is_ascii_digit() && minor.is_ascii_digit() => {
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

/// Byte classes, one bit each in [`CLASS`]: one table and one test per byte for each scan.
/// `tchar` (RFC 9110 §5.6.2).
const TCHAR: u8 = 1 << 0;
/// Bytes we accept in a request-target: visible ASCII except `#` (fragments are not sent,
/// RFC 9112 §3.2). We are more lenient than RFC 3986 about `"<>\^`{|}` (as nginx is), but
/// reject SP, CTLs and non-ASCII (RFC 9112 §3.2: the target is URI syntax, ASCII only).
const TARGET: u8 = 1 << 1;
/// Target bytes that path normalisation passes over: all but `/`, `%` and `?`.
const PLAIN: u8 = 1 << 2;
/// `unreserved / sub-delims` of RFC 3986 §2: a reg-name's bytes other than `%`.
const REG: u8 = 1 << 3;
/// `HEXDIG`.
const HEX: u8 = 1 << 4;
/// An IPv6 literal's bytes (between the brackets): `HEXDIG`, `:` and `.`.
const IP_LITERAL: u8 = 1 << 5;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let alnum = b.is_ascii_alphanumeric();
        let mut c = 0;
        if alnum
            || matches!(
                b,
                b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-'
            )
            || matches!(b, b'.' | b'^' | b'_' | b'`' | b'|' | b'~')
        {
            c |= TCHAR;
        }
        if b >= 0x21 && b <= 0x7e && b != b'#' {
            c |= TARGET;
            if !matches!(b, b'/' | b'%' | b'?') {
                c |= PLAIN;
            }
        }
        if alnum
            || matches!(
                b,
                b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'\'' | b'('
            )
            || matches!(b, b')' | b'*' | b'+' | b',' | b';' | b'=')
        {
            c |= REG;
        }
        if b.is_ascii_hexdigit() {
            c |= HEX | IP_LITERAL;
        }
        if b == b':' || b == b'.' {
            c |= IP_LITERAL;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// The first index `>= i` of `buf` whose byte is not in `class`, or `buf.len()`.
#[inline(always)]
fn skip(buf: &[u8], mut i: usize, class: u8) -> usize {
    while i < buf.len() && CLASS[buf[i] as usize] & class != 0 {
        i += 1;
    }
    i
}

pub(crate) fn is_tchar(b: u8) -> bool {
    CLASS[b as usize] & TCHAR != 0
}

/// Whether the token `name` is `lower` (lower-case letters and `-`), ASCII case-insensitive,
/// a word at a time: a token byte ORed with 0x20 is a lower-case letter only if it is that
/// letter in either case, and `-` only if it is `-` (0x0D, the other candidate, is no token
/// byte).
#[inline(always)]
fn token_is(name: &[u8], lower: &[u8]) -> bool {
    let n = lower.len();
    if name.len() != n {
        return false;
    }
    let word = |s: &[u8], at: usize| -> u64 {
        if n >= 8 {
            u64::from_le_bytes([
                s[at],
                s[at + 1],
                s[at + 2],
                s[at + 3],
                s[at + 4],
                s[at + 5],
                s[at + 6],
                s[at + 7],
            ])
        } else {
            u32::from_le_bytes([s[at], s[at + 1], s[at + 2], s[at + 3]]) as u64
        }
    };
    if n < 4 {
        return name.eq_ignore_ascii_case(lower);
    }
    // Words at 0, 8, .. and one ending at n (overlapping the one before).
    let (step, last) = if n >= 8 { (8, n - 8) } else { (4, n - 4) };
    let lo = if n >= 8 {
        0x2020_2020_2020_2020
    } else {
        0x2020_2020
    };
    let mut at = 0;
    loop {
        let at_ = at.min(last);
        if word(name, at_) | lo != word(lower, at_) {
            return false;
        }
        if at_ == last {
            return true;
        }
        at += step;
    }
}

/// Whether `a` is a valid `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2): a
/// reg-name (which includes IPv4 literals), or an IP-literal in brackets, then an optional
/// port of at most five digits. The empty string is allowed only if `allow_empty` (an empty
/// Host field is valid, RFC 9112 §3.2).
pub fn valid_authority(a: &[u8], allow_empty: bool) -> bool {
    let Some(&first) = a.first() else {
        return allow_empty;
    };
    let host_end = if first == b'[' {
        // IP-literal: IPv6address (hex digits, ':', '.'); IPvFuture is not supported.
        let Some(close) = a.iter().position(|&b| b == b']') else {
            return false;
        };
        if close == 1 || skip(&a[..close], 1, IP_LITERAL) != close {
            return false;
        }
        close + 1
    } else {
        // reg-name = *( unreserved / pct-encoded / sub-delims ), one pass to what follows it.
        let mut i = 0;
        loop {
            i = skip(a, i, REG);
            let hex = |j: usize| a.get(j).is_some_and(|&b| CLASS[b as usize] & HEX != 0);
            if a.get(i) == Some(&b'%') && hex(i + 1) && hex(i + 2) {
                i += 3;
            } else {
                break;
            }
        }
        if i == 0 {
            return false;
        }
        i
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

#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;
