//! Incremental parser for a CGI script's response head (RFC 3875 §6).
//!
//! The head is header lines ended by LF or CRLF (§6.1 allows either), then an empty line. The
//! parser buffers at most [`MAX_HEAD`] bytes and scans every byte once, whatever the chunking.

use std::fmt;

/// Most bytes of response head accepted from a script.
pub const MAX_HEAD: usize = 32 * 1024;

/// A script's response is unusable; the client gets 502 Bad Gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgiError {
    /// The script closed stdout before writing anything.
    Empty,
    /// The head is longer than [`MAX_HEAD`].
    HeadTooLarge,
    /// A header line is not `name: value` (or is an obs-fold continuation).
    MalformedHeader,
    /// `Status:` is not a 3-digit code 100..=599 optionally followed by a reason.
    BadStatus,
    /// `Content-Length:` is not a decimal number.
    BadContentLength,
    /// `Status`, `Content-Type`, `Location` or `Content-Length` given twice.
    DuplicateField,
    /// None of `Content-Type`, `Location`, `Status` (§6.2: no valid response type).
    NoCgiField,
}

impl CgiError {
    /// The status the client sees.
    pub fn status(self) -> u16 {
        502
    }
}

impl fmt::Display for CgiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CgiError::Empty => "CGI script produced no output",
            CgiError::HeadTooLarge => "CGI response head too large",
            CgiError::MalformedHeader => "malformed CGI header line",
            CgiError::BadStatus => "invalid CGI Status header",
            CgiError::BadContentLength => "invalid CGI Content-Length header",
            CgiError::DuplicateField => "repeated CGI header field",
            CgiError::NoCgiField => "CGI response has no Content-Type, Location or Status",
        })
    }
}

impl std::error::Error for CgiError {}

/// The `Location` a script gave (§6.3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptLocation {
    /// Starts with a single `/`: a path (and query) on this server.
    Local(String),
    /// Anything else, normally an absolute URI (`http://…`), `//host/…` included.
    Url(String),
}

/// A parsed CGI response head.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CgiHead {
    /// From `Status:`; else 302 when there is a `Location`; else 200.
    pub status: u16,
    /// Whether `status` came from a `Status:` header.
    pub status_explicit: bool,
    /// The reason phrase from `Status:`, when one was given.
    pub reason: Option<String>,
    pub content_type: Option<String>,
    pub location: Option<ScriptLocation>,
    pub content_length: Option<u64>,
    /// Every other field in order, to pass through. Hop-by-hop fields (Connection,
    /// Transfer-Encoding, Keep-Alive, TE, Trailer, Upgrade, Proxy-Connection) are dropped: the
    /// server frames the response itself.
    pub headers: Vec<(String, String)>,
}

impl CgiHead {
    /// `Some(path)` for a local redirect response (§6.2.2): `Location: /path` without a
    /// `Status`. The server discards the script's body and answers as if the client had
    /// requested `path` with GET (keeping `status` = 302 is a usable fallback: clients follow
    /// a relative Location too).
    pub fn local_redirect(&self) -> Option<&str> {
        match &self.location {
            Some(ScriptLocation::Local(p)) if !self.status_explicit => Some(p),
            _ => None,
        }
    }

    fn from_lines(head: &[u8]) -> Result<CgiHead, CgiError> {
        let mut h = CgiHead {
            status: 200,
            ..CgiHead::default()
        };
        for line in head.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            h.field(line)?;
        }
        if h.content_type.is_none() && h.location.is_none() && !h.status_explicit {
            return Err(CgiError::NoCgiField);
        }
        if !h.status_explicit && h.location.is_some() {
            h.status = 302;
        }
        Ok(h)
    }

    fn field(&mut self, line: &[u8]) -> Result<(), CgiError> {
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(CgiError::MalformedHeader)?;
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(CgiError::MalformedHeader);
        }
        let value = trim_ows(&line[colon + 1..]);
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(CgiError::MalformedHeader);
        }
        let name = std::str::from_utf8(name).map_err(|_| CgiError::MalformedHeader)?;
        let value = String::from_utf8_lossy(value).into_owned();
        let once = |set: bool| {
            if set {
                Err(CgiError::DuplicateField)
            } else {
                Ok(())
            }
        };
        if name.eq_ignore_ascii_case("status") {
            once(self.status_explicit)?;
            let (status, reason) = parse_status(&value)?;
            self.status = status;
            self.reason = reason;
            self.status_explicit = true;
        } else if name.eq_ignore_ascii_case("content-type") {
            once(self.content_type.is_some())?;
            self.content_type = Some(value);
        } else if name.eq_ignore_ascii_case("location") {
            once(self.location.is_some())?;
            let local = value.starts_with('/') && !value.starts_with("//");
            self.location = Some(if local {
                ScriptLocation::Local(value)
            } else {
                ScriptLocation::Url(value)
            });
        } else if name.eq_ignore_ascii_case("content-length") {
            once(self.content_length.is_some())?;
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(CgiError::BadContentLength);
            }
            self.content_length = Some(value.parse().map_err(|_| CgiError::BadContentLength)?);
        } else if !HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            self.headers.push((name.to_owned(), value));
        }
        Ok(())
    }
}

const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "transfer-encoding",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
];

/// RFC 9110 §5.6.2 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// `Status: 404 Not Found` (§6.3.3): three digits, then optionally SP and a reason phrase.
fn parse_status(v: &str) -> Result<(u16, Option<String>), CgiError> {
    let (code, reason) = match v.find([' ', '\t']) {
        Some(i) => (&v[..i], v[i..].trim_matches([' ', '\t'])),
        None => (v, ""),
    };
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CgiError::BadStatus);
    }
    let code: u16 = code.parse().map_err(|_| CgiError::BadStatus)?;
    if !(100..=599).contains(&code) {
        return Err(CgiError::BadStatus);
    }
    Ok((code, (!reason.is_empty()).then(|| reason.to_owned())))
}

/// Feed it stdout bytes as they arrive until it returns a head.
#[derive(Debug, Default)]
pub struct CgiHeadParser {
    /// INVARIANT: `buf` holds head bytes not yet ending in an empty line; ≤ [`MAX_HEAD`].
    buf: Vec<u8>,
    /// INVARIANT: whether the current (unterminated) line in `buf` has a byte other than CR.
    line_has_content: bool,
}

impl CgiHeadParser {
    pub fn new() -> CgiHeadParser {
        CgiHeadParser::default()
    }

    /// Take the next bytes of the script's stdout.
    ///
    /// `Ok(None)`: all of `data` was head, feed more. `Ok(Some((head, n)))`: the head ended
    /// within `data`; `data[n..]` is the first part of the body. After that the parser is
    /// spent: feed body bytes to the client, not here.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<(CgiHead, usize)>, CgiError> {
        for (i, &b) in data.iter().enumerate() {
            match b {
                b'\n' if !self.line_has_content => {
                    let n = i + 1;
                    self.take(&data[..n])?;
                    if self.buf.iter().all(|&b| b == b'\r' || b == b'\n') {
                        // The very first line is empty: no header at all.
                        return Err(CgiError::NoCgiField);
                    }
                    let head = CgiHead::from_lines(&self.buf);
                    self.buf = Vec::new();
                    return head.map(|h| Some((h, n)));
                }
                b'\n' => self.line_has_content = false,
                b'\r' => {}
                _ => self.line_has_content = true,
            }
        }
        self.take(data)?;
        Ok(None)
    }

    /// The script closed stdout before the empty line ending the head.
    ///
    /// Empty output is [`CgiError::Empty`]; otherwise the lines buffered so far are taken as
    /// the whole head of a response without body (lenient towards scripts that print headers
    /// and exit).
    pub fn finish(&mut self) -> Result<CgiHead, CgiError> {
        if self.buf.is_empty() {
            return Err(CgiError::Empty);
        }
        let head = CgiHead::from_lines(&self.buf);
        self.buf = Vec::new();
        head
    }

    fn take(&mut self, bytes: &[u8]) -> Result<(), CgiError> {
        if self.buf.len() + bytes.len() > MAX_HEAD {
            return Err(CgiError::HeadTooLarge);
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> Result<(CgiHead, usize), CgiError> {
        let mut p = CgiHeadParser::new();
        match p.feed(input)? {
            Some(r) => Ok(r),
            None => p.finish().map(|h| (h, input.len())),
        }
    }

    fn hdrs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn document_responses() {
        let (h, n) = parse_all(b"Content-Type: text/html\r\n\r\n<p>").unwrap();
        assert_eq!(n, 27);
        assert_eq!(h.status, 200);
        assert_eq!(h.content_type.as_deref(), Some("text/html"));
        assert!(h.headers.is_empty());

        let (h, n) =
            parse_all(b"Status: 404 Not Found\nContent-type:text/plain  \nX-A: 1\n\nnope").unwrap();
        assert_eq!(n, 56); // everything up to "nope"
        assert_eq!((h.status, h.reason.as_deref()), (404, Some("Not Found")));
        assert_eq!(h.content_type.as_deref(), Some("text/plain"));
        assert_eq!(h.headers, hdrs(&[("X-A", "1")]));
        assert_eq!(h.local_redirect(), None);

        let (h, _) = parse_all(
            b"Content-Type: a/b\nContent-Length: 12\nConnection: close\nTransfer-Encoding: chunked\n\
              Keep-Alive: x\nSet-Cookie: a=1\nSet-Cookie: b=2\n\n",
        )
        .unwrap();
        assert_eq!(h.content_length, Some(12));
        assert_eq!(
            h.headers,
            hdrs(&[("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
        );

        // Status alone (e.g. 204) is a valid head.
        let (h, _) = parse_all(b"Status: 204\r\n\r\n").unwrap();
        assert_eq!((h.status, h.reason), (204, None));
    }

    #[test]
    fn redirects() {
        let (h, _) = parse_all(b"Location: http://example.test/x\n\n").unwrap();
        assert_eq!(h.status, 302);
        assert_eq!(
            h.location,
            Some(ScriptLocation::Url("http://example.test/x".into()))
        );
        assert_eq!(h.local_redirect(), None);

        let (h, _) = parse_all(b"Location: /other?q=1\r\n\r\n").unwrap();
        assert_eq!(h.local_redirect(), Some("/other?q=1"));
        assert_eq!(h.status, 302);

        let (h, _) = parse_all(b"Status: 301 Moved\nLocation: /new\n\n").unwrap();
        assert_eq!(h.status, 301);
        assert_eq!(h.local_redirect(), None);
        assert_eq!(h.location, Some(ScriptLocation::Local("/new".into())));

        let (h, _) = parse_all(b"Location: //cdn.test/x\n\n").unwrap();
        assert_eq!(h.location, Some(ScriptLocation::Url("//cdn.test/x".into())));
    }

    #[test]
    fn errors() {
        let cases: &[(&[u8], CgiError)] = &[
            (b"\n\nbody", CgiError::NoCgiField),
            (b"\r\n\r\n", CgiError::NoCgiField),
            (b"X-Only: 1\n\n", CgiError::NoCgiField),
            (b"no colon here\n\n", CgiError::MalformedHeader),
            (b": empty name\n\n", CgiError::MalformedHeader),
            (b"Bad Name: x\n\n", CgiError::MalformedHeader),
            (b"Content-Type: a/b\n folded\n\n", CgiError::MalformedHeader),
            (b"Content-Type: a\x01b\n\n", CgiError::MalformedHeader),
            (b"Status: 99\n\n", CgiError::BadStatus),
            (b"Status: 600 X\n\n", CgiError::BadStatus),
            (b"Status: abc\n\n", CgiError::BadStatus),
            (b"Status: 2000\n\n", CgiError::BadStatus),
            (
                b"Content-Type: a/b\nContent-Length: -1\n\n",
                CgiError::BadContentLength,
            ),
            (
                b"Content-Type: a/b\nContent-Length: 99999999999999999999999\n\n",
                CgiError::BadContentLength,
            ),
            (
                b"Content-Type: a/b\nContent-Type: c/d\n\n",
                CgiError::DuplicateField,
            ),
            (b"Status: 200\nStatus: 404\n\n", CgiError::DuplicateField),
            (b"", CgiError::Empty),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_all(input).map(|_| ()),
                Err(*want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(want.status(), 502);
        }
    }

    #[test]
    fn finish_takes_unterminated_head() {
        let mut p = CgiHeadParser::new();
        assert_eq!(p.feed(b"Content-Type: text/plain\n").unwrap(), None);
        assert_eq!(
            p.finish().unwrap().content_type.as_deref(),
            Some("text/plain")
        );
    }

    #[test]
    fn split_at_every_byte() {
        let input =
            b"Status: 201 Created\r\nContent-Type: text/plain\r\nX-Y: z\r\n\r\nbody\r\n\r\n";
        let head_len = input.len() - 8;
        let (want, n) = parse_all(input).unwrap();
        assert_eq!(n, head_len);
        for cut in 0..=input.len() {
            let mut p = CgiHeadParser::new();
            let got = match p.feed(&input[..cut]).unwrap() {
                Some((h, n)) => (h, n),
                None => {
                    let (h, n) = p.feed(&input[cut..]).unwrap().expect("head");
                    (h, cut + n)
                }
            };
            assert_eq!(got, (want.clone(), head_len), "cut {cut}");
        }
        // One byte at a time.
        let mut p = CgiHeadParser::new();
        let mut done = None;
        for (i, b) in input.iter().enumerate() {
            if let Some((h, n)) = p.feed(std::slice::from_ref(b)).unwrap() {
                assert_eq!(n, 1);
                done = Some((h, i + 1));
                break;
            }
        }
        assert_eq!(done, Some((want, head_len)));
    }

    #[test]
    fn head_size_limit() {
        let mut p = CgiHeadParser::new();
        let line = format!("X-Pad: {}\n", "a".repeat(1000));
        let mut total = 0;
        let err = loop {
            match p.feed(line.as_bytes()) {
                Ok(None) => total += line.len(),
                Ok(Some(_)) => panic!("no head end was sent"),
                Err(e) => break e,
            }
        };
        assert_eq!(err, CgiError::HeadTooLarge);
        assert!(total <= MAX_HEAD);
        // Just under the limit is fine.
        let mut head = b"Content-Type: a/b\n".to_vec();
        head.extend(format!("X: {}\n\n", "b".repeat(MAX_HEAD - head.len() - 5)).bytes());
        assert_eq!(head.len(), MAX_HEAD);
        assert!(parse_all(&head).is_ok());
    }
}
