//! HTTP/1.1 message handling: pure functions and state machines over byte slices, no I/O.
//!
//! The event loop owns the sockets and buffers; this module only looks at bytes it is given:
//!
//! - [`request`]: incremental request-head parser ([`HeadParser`]) and the semantic checks
//!   that decide body framing ([`Request::analyze`]), RFC 9112 §2–§6, RFC 9110 §5–§10.
//! - [`chunked`]: incremental chunked transfer-coding decoder, RFC 9112 §7.1.
//! - [`path`]: request-target normalisation for routing (percent-decoding, dot segments).
//! - [`response`]: reason phrases, the response-head writer, built-in error pages.
//! - [`date`]: IMF-fixdate formatting and HTTP-date parsing, RFC 9110 §5.6.7.
//! - [`range`]: single byte-range requests and conditional requests, RFC 9110 §13–§14.
//! - [`status`]: the one mapping of an I/O error to a response status.
//!
//! Parsers follow one shape: `Ok(Complete(..))`, `Ok(Partial)` (give me more bytes) or
//! `Err(Error)`, where [`Error`] is a small `Copy` enum that knows its status code.

pub mod chunked;
pub mod date;
mod error;
pub mod path;
pub mod range;
pub mod request;
pub mod response;
pub mod status;

pub use chunked::ChunkedDecoder;
pub use error::Error;
pub use request::{BodyKind, HeadParser, Method, Request, RequestHead, Status};

/// Calls `f` with every string of at most `max` bytes over `alphabet`: the exhaustive tests
/// that hold the one-pass scans to their former versions.
#[cfg(test)]
pub(crate) fn every_input(alphabet: &[u8], max: u32, mut f: impl FnMut(&[u8])) {
    let mut s = Vec::new();
    for len in 0..=max {
        for mut n in 0..alphabet.len().pow(len) {
            s.clear();
            for _ in 0..len {
                s.push(alphabet[n % alphabet.len()]);
                n /= alphabet.len();
            }
            f(&s);
        }
    }
}
