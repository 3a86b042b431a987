//! The one error type of the HTTP layer. Each variant names *what* was wrong (for logs and
//! tests); [`Error::status`] maps it to the response status the server sends.

use std::fmt;

/// Why a request (head, body framing or target) was refused.
///
/// Kept `Copy` and one byte wide so parsers can return it cheaply, as httparse does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// Malformed request line: separators, method token (400).
    RequestLine,
    /// Request-target not in a form we accept, or containing forbidden bytes (400).
    Target,
    /// HTTP-version not of the form `HTTP/DIGIT.DIGIT` (400).
    Version,
    /// Header field name is not a token, or whitespace before the colon (400).
    HeaderName,
    /// Header field value contains a forbidden byte (NUL, CTL, bare CR/LF) (400).
    HeaderValue,
    /// A line starting with whitespace: obsolete line folding, RFC 9112 §5.2 (400).
    ObsFold,
    /// A CR not followed by LF, RFC 9112 §2.2 (400).
    BareCr,
    /// Host missing (HTTP/1.1), repeated, or not a valid authority, RFC 9112 §3.2 (400).
    Host,
    /// Content-Length invalid or repeated, RFC 9112 §6.3 (400).
    ContentLength,
    /// Transfer-Encoding repeated, combined with Content-Length, or sent with HTTP/1.0 (400).
    TransferEncoding,
    /// Malformed chunked body framing, RFC 9112 §7.1 (400).
    Chunk,
    /// Percent-decoding or dot-segment resolution failed (400).
    Path,
    /// Request line longer than its limit ([`crate::http::request::HeadLimits`]) (414).
    UriTooLong,
    /// Header section (or trailer section) or one field line too large, or too many fields
    /// (431).
    HeadersTooLarge,
    /// Method token or transfer coding we do not implement (501).
    NotImplemented,
    /// Well-formed HTTP-version with a major version other than 1 (505).
    VersionNotSupported,
    /// An `Expect` other than `100-continue`, RFC 9110 §10.1.1 (417).
    ExpectationFailed,
}

impl Error {
    /// The response status code for this error.
    pub fn status(self) -> u16 {
        match self {
            Error::RequestLine
            | Error::Target
            | Error::Version
            | Error::HeaderName
            | Error::HeaderValue
            | Error::ObsFold
            | Error::BareCr
            | Error::Host
            | Error::ContentLength
            | Error::TransferEncoding
            | Error::Chunk
            | Error::Path => 400,
            Error::UriTooLong => 414,
            Error::HeadersTooLarge => 431,
            Error::NotImplemented => 501,
            Error::VersionNotSupported => 505,
            Error::ExpectationFailed => 417,
        }
    }

    /// A short description for logs.
    pub fn description(self) -> &'static str {
        match self {
            Error::RequestLine => "invalid request line",
            Error::Target => "invalid request target",
            Error::Version => "invalid HTTP version",
            Error::HeaderName => "invalid header name",
            Error::HeaderValue => "invalid header value",
            Error::ObsFold => "obsolete line folding",
            Error::BareCr => "bare CR",
            Error::Host => "missing, repeated or invalid Host",
            Error::ContentLength => "invalid Content-Length",
            Error::TransferEncoding => "invalid Transfer-Encoding",
            Error::Chunk => "invalid chunked framing",
            Error::Path => "invalid path",
            Error::UriTooLong => "request line too long",
            Error::HeadersTooLarge => "header section too large",
            Error::NotImplemented => "not implemented",
            Error::VersionNotSupported => "HTTP version not supported",
            Error::ExpectationFailed => "expectation failed",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.description(), self.status())
    }
}

impl std::error::Error for Error {}
