//! The request-body task: framing (Content-Length or chunked, RFC 9112 §6), the size limit
//! (`client_max_body_size`), decoded bytes handed on to the request's task in pieces no larger
//! than it can take (back-pressure: what it cannot take stays in the connection's input buffer
//! and then in the socket).

use crate::http::chunked::ChunkedDecoder;
use crate::http::request::BodyKind;

pub struct BodyReader {
    /// Bytes still expected (Content-Length), or None for chunked.
    remaining: Option<u64>,
    chunked: Option<ChunkedDecoder>,
    received: u64,
    limit: u64,
    done: bool,
}

/// One step of decoding.
pub struct Piece {
    /// Input bytes consumed.
    pub consumed: usize,
    /// The body is complete.
    pub done: bool,
}

impl BodyReader {
    pub fn new(body: BodyKind, limit: u64) -> BodyReader {
        let remaining = match body {
            BodyKind::Length(n) => Some(n),
            BodyKind::Chunked => None,
            BodyKind::None => Some(0),
        };
        BodyReader {
            remaining,
            chunked: matches!(body, BodyKind::Chunked).then(ChunkedDecoder::new),
            received: 0,
            limit,
            done: remaining == Some(0),
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Decode from `input`, taking at most `room` decoded bytes, appending them to `out`.
    /// `Err(status)`: bad framing (400) or over the limit (413).
    pub fn decode(&mut self, input: &[u8], room: usize, out: &mut Vec<u8>) -> Result<Piece, u16> {
        if self.done {
            return Ok(Piece {
                consumed: 0,
                done: true,
            });
        }
        let before = out.len();
        let (consumed, done) = match (&mut self.chunked, self.remaining) {
            (Some(dec), _) => {
                // Decoded bytes never outnumber input bytes: bounding the input bounds them.
                let take = input.len().min(room.max(1));
                dec.decode(&input[..take], out).map_err(|e| e.status())?
            }
            (None, Some(rem)) => {
                let n = (rem as usize).min(input.len()).min(room);
                out.extend_from_slice(&input[..n]);
                (n, n as u64 == rem)
            }
            (None, None) => (0, true),
        };
        let got = (out.len() - before) as u64;
        self.received += got;
        if let Some(rem) = self.remaining.as_mut() {
            *rem -= got;
        }
        if self.limit != 0 && self.received > self.limit {
            return Err(413);
        }
        self.done = done;
        Ok(Piece { consumed, done })
    }
}
