//! Incremental decoder for the chunked transfer coding (RFC 9112 §7.1).
//!
//! ```text
//! chunked-body = *chunk last-chunk trailer-section CRLF
//! chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size   = 1*HEXDIG
//! last-chunk   = 1*("0") [ chunk-ext ] CRLF
//! chunk-ext    = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//! ```
//!
//! The decoder is a byte-level state machine: input may be split at any byte boundary, and
//! nothing but a few counters is kept between calls, so memory does not grow with the body.
//! [`ChunkedDecoder::decode_slice`] hands out chunk data as sub-slices of the input
//! (zero-copy, for streaming to a file or a CGI's stdin); [`ChunkedDecoder::decode`] appends
//! it to a `Vec`.
//!
//! Framing is strict, unlike the head: CRLF is required everywhere (a bare LF is 400), since
//! lenient chunk parsing is a classic request-smuggling vector. Extensions are bounded and
//! ignored; trailer fields are checked for syntax, bounded by [`MAX_HEADER_SECTION`], and
//! discarded (RFC 9110 §6.5.1 lets a recipient discard them; they never join the headers).

use super::error::Error;
use super::request::{is_tchar, MAX_HEADER_SECTION};

/// Most hex digits in a chunk-size (16 digits fill a u64, so no overflow is possible).
pub const MAX_CHUNK_SIZE_DIGITS: u8 = 16;
/// Longest chunk-size line we accept, extensions included, without its CRLF.
pub const MAX_CHUNK_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In the chunk-size digits (at least one seen iff `digits > 0`).
    Size,
    /// After the size, in BWS that must lead to ";" (RFC 9112 §7.1.1).
    SizeWs,
    /// In chunk extensions, up to the CR.
    Ext,
    /// Saw the CR ending the size line.
    SizeLf,
    /// In chunk data; `remaining` bytes to go.
    Data,
    /// After chunk data: CR, then LF.
    DataCr,
    DataLf,
    /// At the start of a trailer line or the final CRLF.
    TrailerStart,
    /// In a trailer field name, then its value.
    TrailerName,
    TrailerValue,
    /// Saw the CR ending a trailer line.
    TrailerLf,
    /// Saw the CR of the final empty line.
    EndLf,
    /// The body is complete.
    Done,
}

/// Chunked body decoder. One per request body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// INVARIANT: in `Size`, the value of the digits so far; in `Data`, the bytes left.
    remaining: u64,
    /// INVARIANT: number of size digits seen in the current size line (≤ 16).
    digits: u8,
    /// INVARIANT: bytes of the current size line so far (≤ MAX_CHUNK_LINE).
    line_len: usize,
    /// INVARIANT: bytes of the trailer section so far (≤ MAX_HEADER_SECTION).
    trailer_len: usize,
}

/// One step of decoding: how much input was used, the chunk data found in it, and whether
/// the body is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// Input bytes used (framing and data). Bytes after the end of the body are not used.
    pub consumed: usize,
    /// Chunk data: a sub-slice of the input, possibly empty.
    pub data: &'a [u8],
    /// The last chunk and trailer section have been read.
    pub done: bool,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a chunked body.
    pub fn new() -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size,
            remaining: 0,
            digits: 0,
            line_len: 0,
            trailer_len: 0,
        }
    }

    /// Whether the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decode all of `input` that belongs to the body, appending chunk data to `out`.
    /// Returns (bytes consumed, done). Once done, the rest of `input` is the next request.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(usize, bool), Error> {
        let mut used = 0;
        loop {
            let step = self.decode_slice(&input[used..])?;
            out.extend_from_slice(step.data);
            used += step.consumed;
            if step.done || used == input.len() {
                return Ok((used, step.done));
            }
        }
    }

    /// Decode framing from `input` up to and including the next run of chunk data, which is
    /// returned as a sub-slice of `input` (zero-copy). Call again with the unconsumed rest.
    pub fn decode_slice<'a>(&mut self, input: &'a [u8]) -> Result<Decoded<'a>, Error> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Data => {
                    let avail = (input.len() - i) as u64;
                    let n = self.remaining.min(avail) as usize;
                    self.remaining -= n as u64;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                    return Ok(Decoded {
                        consumed: i + n,
                        data: &input[i..i + n],
                        done: false,
                    });
                }
                State::Done => break,
                _ => self.step(b)?,
            }
            i += 1;
        }
        Ok(Decoded {
            consumed: i,
            data: &[],
            done: self.state == State::Done,
        })
    }

    /// Advance the framing state machine by one byte.
    fn step(&mut self, b: u8) -> Result<(), Error> {
        if matches!(self.state, State::Size | State::SizeWs | State::Ext) && b != b'\r' {
            self.line_len += 1;
            if self.line_len > MAX_CHUNK_LINE {
                return Err(Error::Chunk);
            }
        }
        if matches!(
            self.state,
            State::TrailerStart
                | State::TrailerName
                | State::TrailerValue
                | State::TrailerLf
                | State::EndLf
        ) {
            self.trailer_len += 1;
            if self.trailer_len > MAX_HEADER_SECTION {
                return Err(Error::HeadersTooLarge);
            }
        }
        self.state = match (self.state, b) {
            (State::Size, _) if b.is_ascii_hexdigit() => {
                if self.digits == MAX_CHUNK_SIZE_DIGITS {
                    return Err(Error::Chunk);
                }
                self.digits += 1;
                self.remaining = (self.remaining << 4) | hex_val(b);
                State::Size
            }
            // Anything but a hex digit first ("0x", "+", "-", " ", ";") → 400.
            (State::Size, _) if self.digits == 0 => return Err(Error::Chunk),
            (State::Size, b';') | (State::SizeWs, b';') => State::Ext,
            (State::Size, b' ' | b'\t') | (State::SizeWs, b' ' | b'\t') => State::SizeWs,
            (State::Size, b'\r') | (State::Ext, b'\r') => State::SizeLf,
            // Extensions are ignored (RFC 9112 §7.1.1) but must be free of CTLs.
            (State::Ext, _) if b == b'\t' || (b >= 0x20 && b != 0x7f) => State::Ext,
            (State::SizeLf, b'\n') => {
                self.line_len = 0;
                self.digits = 0;
                if self.remaining == 0 {
                    State::TrailerStart
                } else {
                    State::Data
                }
            }
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => State::Size,
            (State::TrailerStart, b'\r') => State::EndLf,
            (State::TrailerStart | State::TrailerName, _) if is_tchar(b) => State::TrailerName,
            (State::TrailerName, b':') => State::TrailerValue,
            (State::TrailerValue, b'\r') => State::TrailerLf,
            (State::TrailerValue, _) if b == b'\t' || (b >= 0x20 && b != 0x7f) => {
                State::TrailerValue
            }
            (State::TrailerLf, b'\n') => State::TrailerStart,
            (State::EndLf, b'\n') => State::Done,
            // Bare LF, missing CRLF after data, CTLs, obs-fold in trailers, ... → 400.
            _ => return Err(Error::Chunk),
        };
        Ok(())
    }
}

fn hex_val(b: u8) -> u64 {
    match b {
        b'0'..=b'9' => (b - b'0') as u64,
        b'a'..=b'f' => (b - b'a' + 10) as u64,
        _ => (b - b'A' + 10) as u64,
    }
}

/// Append a chunk-size line for a chunk of `len` bytes (lower-case hex, then CRLF).
/// `len` 0 writes the last-chunk line; follow it with [`write_last_chunk_end`].
pub fn write_chunk_head(len: usize, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut n = len as u64;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = HEX[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

/// Append the end of a chunked body after the data: `0\r\n\r\n` (last chunk, no trailers).
pub fn write_last_chunk_end(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, usize, bool), Error> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let (n, done) = d.decode(input, &mut out)?;
        Ok((out, n, done))
    }

    const VALID: &[(&[u8], &[u8], usize)] = &[
        // (input, body, consumed)
        (b"0\r\n\r\n", b"", 5),
        (b"5\r\nhello\r\n0\r\n\r\n", b"hello", 15),
        (
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT",
            b"hello world",
            26,
        ),
        (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789", 20),
        (b"a\r\n0123456789\r\n000\r\n\r\n", b"0123456789", 22),
        (b"0000000000000003\r\nabc\r\n0\r\n\r\n", b"abc", 28),
        // RFC 9112 §7.1.1: extensions (with BWS before ";") are ignored.
        (b"3;name=val;x=\"q s\"\r\nabc\r\n0;last\r\n\r\n", b"abc", 35),
        (b"3 ; ext\r\nabc\r\n0\r\n\r\n", b"abc", 19),
        // RFC 9112 §7.1.2: trailer fields are parsed and discarded.
        (
            b"3\r\nabc\r\n0\r\nX-Sum: 1\r\nX-Two:\t2 \r\n\r\n",
            b"abc",
            34,
        ),
        (b"2\r\n\r\n\r\n0\r\n\r\n", b"\r\n", 12),
    ];

    #[test]
    fn valid_bodies() {
        for &(input, body, consumed) in VALID {
            let (out, n, done) = decode_all(input).unwrap();
            assert_eq!((&out[..], n, done), (body, consumed, true), "{:?}", input);
        }
    }

    #[test]
    fn split_invariance() {
        for &(input, body, consumed) in VALID {
            // Two pieces, split at every byte.
            for k in 0..=input.len() {
                let mut d = ChunkedDecoder::new();
                let mut out = Vec::new();
                let (a, done_a) = d.decode(&input[..k], &mut out).unwrap();
                assert_eq!(a, k.min(consumed));
                let (b, done) = if done_a {
                    (0, true)
                } else {
                    d.decode(&input[a..], &mut out).unwrap()
                };
                assert_eq!(
                    (&out[..], a + b, done),
                    (body, consumed, true),
                    "split {k} {:?}",
                    input
                );
            }
            // One byte at a time, through the zero-copy API.
            let mut d = ChunkedDecoder::new();
            let mut out = Vec::new();
            let mut used = 0;
            while !d.is_done() {
                let step = d.decode_slice(&input[used..used + 1]).unwrap();
                out.extend_from_slice(step.data);
                used += step.consumed;
            }
            assert_eq!((&out[..], used), (body, consumed));
        }
    }

    #[test]
    fn invalid_bodies() {
        let cases: &[&[u8]] = &[
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"-5\r\n",
            b" 5\r\n",
            b"5 \r\nhello\r\n",
            b"5 5\r\n",
            b";ext\r\n",
            b"\r\n",
            b"g\r\n",
            b"5\nhello\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhelloX\r\n",
            b"5\r\nhello\r\r\n",
            b"0\r\n\n",
            b"0\r\n\r\r",
            b"0\r\nX: y\n\r\n",
            b"0\r\n y\r\n\r\n",
            b"0\r\nX y\r\n\r\n",
            b"0\r\nX: a\x00b\r\n\r\n",
            b"1;a\x00\r\n",
            // 17 hex digits, even leading zeros: more than we ever need.
            b"00000000000000001\r\n",
            b"10000000000000000\r\n",
        ];
        for input in cases {
            assert_eq!(
                decode_all(input),
                Err(Error::Chunk),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn limits() {
        // u64::MAX in 16 digits is fine as a size (the server caps bodies elsewhere).
        let (_, n, done) = decode_all(b"ffffffffffffffff\r\nabc").unwrap();
        assert_eq!((n, done), (21, false));
        let mut line = b"1;".to_vec();
        line.resize(MAX_CHUNK_LINE, b'e');
        line.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert!(decode_all(&line).unwrap().2);
        let mut line = b"1;".to_vec();
        line.resize(MAX_CHUNK_LINE + 1, b'e');
        assert_eq!(decode_all(&line), Err(Error::Chunk));
        let mut trailers = b"0\r\n".to_vec();
        while trailers.len() < MAX_HEADER_SECTION + 10 {
            trailers.extend_from_slice(b"X-Pad: 0123456789\r\n");
        }
        assert_eq!(decode_all(&trailers), Err(Error::HeadersTooLarge));
    }

    #[test]
    fn chunk_heads_round_trip() {
        for (len, want) in [
            (0usize, &b"0\r\n"[..]),
            (1, b"1\r\n"),
            (255, b"ff\r\n"),
            (4096, b"1000\r\n"),
            (usize::MAX, b"ffffffffffffffff\r\n"),
        ] {
            let mut out = Vec::new();
            write_chunk_head(len, &mut out);
            assert_eq!(out, want);
        }
        let mut body = Vec::new();
        write_chunk_head(11, &mut body);
        body.extend_from_slice(b"hello world\r\n");
        write_last_chunk_end(&mut body);
        assert_eq!(
            decode_all(&body).unwrap(),
            (b"hello world".to_vec(), body.len(), true)
        );
    }
}
