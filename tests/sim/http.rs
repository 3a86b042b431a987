//! The simulated client's reading of responses: status line, headers, and the body by
//! `Content-Length`, chunked coding or end of stream, as RFC 9112 §6.3 orders them.

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: Vec<u8>,
    /// The server said `Connection: close`.
    pub close: bool,
}

pub enum Parsed {
    /// A whole response and the bytes it took.
    Done(Resp, usize),
    /// Not all of it yet.
    Partial,
    /// Bytes no HTTP/1.1 response can start or go on with (a desynchronised stream).
    Bad(String),
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parse one response from `buf`; `head` when it answers a HEAD; `eof` when no byte follows.
pub fn parse(buf: &[u8], head: bool, eof: bool) -> Parsed {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > 64 * 1024 {
            return Parsed::Bad("response head over 64 KiB".into());
        }
        if !buf.is_empty() && !b"HTTP/1.".starts_with(&buf[..buf.len().min(7)]) {
            return Parsed::Bad(format!("not a status line: {:?}", show(buf)));
        }
        return Parsed::Partial;
    };
    let text = String::from_utf8_lossy(&buf[..end]);
    let mut lines = text.split("\r\n");
    let sl = lines.next().unwrap_or("");
    let mut parts = sl.splitn(3, ' ');
    let (v, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !v.starts_with("HTTP/1.") || code.len() != 3 {
        return Parsed::Bad(format!("bad status line {sl:?}"));
    }
    let Ok(status) = code.parse::<u16>() else {
        return Parsed::Bad(format!("bad status code {sl:?}"));
    };
    let mut len = None;
    let mut chunked = false;
    let mut close = false;
    for l in lines {
        let Some((k, val)) = l.split_once(':') else {
            return Parsed::Bad(format!("bad header line {l:?}"));
        };
        let (k, val) = (
            k.trim().to_ascii_lowercase(),
            val.trim().to_ascii_lowercase(),
        );
        match k.as_str() {
            "content-length" => match val.parse::<usize>() {
                Ok(n) if len.is_none_or(|m| m == n) => len = Some(n),
                _ => return Parsed::Bad(format!("bad or repeated Content-Length {val:?}")),
            },
            "transfer-encoding" => chunked = val == "chunked",
            "connection" => close = val.contains("close"),
            _ => {}
        }
    }
    let rest = &buf[end + 4..];
    if (100..200).contains(&status) || head || status == 204 || status == 304 {
        let body = Vec::new();
        return Parsed::Done(
            Resp {
                status,
                body,
                close,
            },
            end + 4,
        );
    }
    if chunked {
        let mut at = 0;
        let mut body = Vec::new();
        loop {
            let Some(le) = find(&rest[at..], b"\r\n") else {
                return Parsed::Partial;
            };
            let line = String::from_utf8_lossy(&rest[at..at + le]);
            let hex = line.split(';').next().unwrap_or("").trim();
            let Ok(n) = usize::from_str_radix(hex, 16) else {
                return Parsed::Bad(format!("bad chunk size {line:?}"));
            };
            at += le + 2;
            if n == 0 {
                // Trailers, then the blank line.
                loop {
                    let Some(le) = find(&rest[at..], b"\r\n") else {
                        return Parsed::Partial;
                    };
                    at += le + 2;
                    if le == 0 {
                        let r = Resp {
                            status,
                            body,
                            close,
                        };
                        return Parsed::Done(r, end + 4 + at);
                    }
                }
            }
            if rest.len() < at + n + 2 {
                return Parsed::Partial;
            }
            body.extend_from_slice(&rest[at..at + n]);
            if &rest[at + n..at + n + 2] != b"\r\n" {
                return Parsed::Bad("chunk not followed by CRLF".into());
            }
            at += n + 2;
        }
    }
    match len {
        Some(n) if rest.len() >= n => Parsed::Done(
            Resp {
                status,
                body: rest[..n].to_vec(),
                close,
            },
            end + 4 + n,
        ),
        Some(_) => Parsed::Partial,
        None if eof => Parsed::Done(
            Resp {
                status,
                body: rest.to_vec(),
                close: true,
            },
            buf.len(),
        ),
        None => Parsed::Partial,
    }
}

pub fn show(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(120)]).into_owned();
    if b.len() > 120 {
        format!("{s}…")
    } else {
        s
    }
}
