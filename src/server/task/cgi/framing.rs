//! How a CGI's output becomes an HTTP response: the head the server writes, and the body framed
//! by the declared length, by chunks, or by closing.
//!
//! Rules (RFC 3875 §6, RFC 9112 §6):
//! - A declared `Content-Length` is enforced: bytes past it are dropped and the connection is
//!   closed after them; an output that ends short of it closes the connection (the client sees
//!   a truncated response, never the next response glued to it).
//! - Output that ended before the head was committed goes out with `Content-Length` in one
//!   write with its head.
//! - Otherwise: chunked on HTTP/1.1, delimited by closing on HTTP/1.0.
//! - HEAD, 204 and 304 send no body; the output is still drained.

use backends::{Body, SendBuf};

use crate::cgi::CgiHead;
use crate::server::out::OutQueue;

/// What the connection knows about the response's framing needs.
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    pub http10: bool,
    pub head_only: bool,
    /// This is the connection's last response: say `Connection: close`.
    pub close: bool,
    /// HTTP/1.0 client that asked for keep-alive: say so.
    pub keep_alive_10: bool,
}

/// How the body is being framed, once the head is committed.
#[derive(Debug, Default)]
pub struct Framing {
    pub chunked: bool,
    pub declared: Option<u64>,
    pub bodyless: bool,
    /// Body bytes sent (after framing decisions).
    pub sent: u64,
    /// The response is delimited by closing the connection.
    pub close_delimited: bool,
}

/// Write the response head for `head`; `known_len` is the body length when the whole output is
/// already at hand. Returns the head bytes and the framing.
pub fn head_bytes(
    head: &CgiHead,
    known_len: Option<u64>,
    meta: Meta,
    date: &[u8],
) -> (Vec<u8>, Framing) {
    let mut out = Vec::with_capacity(512);
    let mut h = crate::http::response::ResponseHead::new(&mut out, head.status);
    h.header("Server", crate::http::response::server_name().as_bytes())
        .header("Date", date);
    if let Some(ct) = &head.content_type {
        h.header("Content-Type", ct.as_bytes());
    }
    // A URL, or a path given with an explicit Status (a redirect after a POST): the client
    // follows it. (A path without Status is a local redirect and never gets here.)
    match &head.location {
        Some(crate::cgi::ScriptLocation::Url(u)) | Some(crate::cgi::ScriptLocation::Local(u)) => {
            h.header("Location", u.as_bytes());
        }
        None => {}
    }
    for (n, v) in &head.headers {
        if !n.is_empty() && n.bytes().all(crate::http::request::is_tchar) {
            h.header(n, v.as_bytes());
        }
    }
    let bodyless_status = head.status == 204 || head.status == 304;
    let mut f = Framing {
        bodyless: meta.head_only || bodyless_status,
        declared: head.content_length,
        ..Framing::default()
    };
    let mut close = meta.close;
    match (head.content_length, known_len) {
        _ if bodyless_status => {}
        (Some(n), _) => {
            h.header_u64("Content-Length", n);
        }
        (None, Some(n)) => {
            h.header_u64("Content-Length", n);
            f.declared = Some(n);
        }
        (None, None) if !meta.http10 => {
            h.header("Transfer-Encoding", b"chunked");
            f.chunked = !f.bodyless;
        }
        (None, None) => {
            close = true;
            f.close_delimited = true;
        }
    }
    if close {
        h.header("Connection", b"close");
    } else if meta.keep_alive_10 {
        h.header("Connection", b"keep-alive");
    }
    h.finish();
    (out, f)
}

/// What happened to a piece of body.
#[derive(Debug, PartialEq, Eq)]
pub enum Fed {
    Ok,
    /// The output went past the declared length: what fit was queued; close after it.
    TooLong,
}

impl Framing {
    /// Queue `data` as body (framed), respecting the declared length.
    pub fn body(&mut self, data: &[u8], out: &mut OutQueue) -> Fed {
        if self.bodyless || data.is_empty() {
            // Still count against the declared length: the script's output is checked alike.
            if let Some(d) = self.declared {
                self.sent += data.len() as u64;
                if self.sent > d && !self.bodyless {
                    return Fed::TooLong;
                }
            }
            return Fed::Ok;
        }
        let (take, verdict) = match self.declared {
            Some(d) => {
                let room = d.saturating_sub(self.sent) as usize;
                if data.len() > room {
                    (room, Fed::TooLong)
                } else {
                    (data.len(), Fed::Ok)
                }
            }
            None => (data.len(), Fed::Ok),
        };
        let data = &data[..take];
        self.sent += data.len() as u64;
        if data.is_empty() {
            return verdict;
        }
        if self.chunked {
            let mut head = Vec::with_capacity(12);
            crate::http::chunked::write_chunk_head(data.len(), &mut head);
            let mut body = Vec::with_capacity(data.len() + 2);
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
            out.push(SendBuf {
                head,
                body: Body::Owned(body),
            });
        } else {
            out.push(SendBuf {
                head: Vec::new(),
                body: Body::Owned(data.to_vec()),
            });
        }
        verdict
    }

    /// The output ended: queue the last chunk. `false` if the body is short of its declared
    /// length (the connection must close).
    pub fn end(&mut self, out: &mut OutQueue) -> bool {
        if self.chunked {
            out.push_bytes(b"0\r\n\r\n".to_vec());
        }
        match self.declared {
            Some(d) if !self.bodyless => self.sent >= d,
            _ => true,
        }
    }
}
