//! A 206 with several ranges: `multipart/byteranges` (RFC 9110 §14.6) — built whole for a file
//! whose bytes are in memory (the small-file cache), or as [`Parts`] that the file task streams
//! (each part's header, then its range by sendfile or backend reads).

use super::static_file::Validators;
use super::{finish, header, header_u64, start, Ctx, Reply};

/// The parts of a multipart body streamed from a file.
pub struct Parts {
    /// Each part's delimiter and header, then its range (offset, length), in order.
    pub parts: std::collections::VecDeque<(Vec<u8>, u64, u64)>,
    /// The closing delimiter.
    pub trailer: Vec<u8>,
}

fn boundary() -> String {
    // A boundary must not occur in the content (RFC 2046 §5.1.1); 20 random digits (nginx's is
    // a 20-digit number) make that vanishingly unlikely.
    format!(
        "{:010}{:010}",
        crate::handlers::atomic_file::random_u32(),
        crate::handlers::atomic_file::random_u32()
    )
}

fn part_header(b: &str, i: usize, ty: &str, s: u64, e: u64, len: u64) -> Vec<u8> {
    let sep = if i > 0 { "\r\n" } else { "" };
    format!("{sep}--{b}\r\nContent-Type: {ty}\r\nContent-Range: bytes {s}-{e}/{len}\r\n\r\n")
        .into_bytes()
}

fn head(b: &str, body_len: u64, v: &Validators, cx: &Ctx) -> Vec<u8> {
    let mut head = Vec::with_capacity(320);
    start(&mut head, 206, cx);
    let ct = format!("multipart/byteranges; boundary={b}");
    header(&mut head, "Content-Type", ct.as_bytes());
    header_u64(&mut head, "Content-Length", body_len);
    header(&mut head, "Last-Modified", v.last_modified);
    header(&mut head, "ETag", v.etag.as_bytes());
    header(&mut head, "Accept-Ranges", b"bytes");
    finish(&mut head);
    head
}

/// The 206 for `parts` of `file` (`v.len` bytes), streamed by the file task.
pub(super) fn file_reply(
    parts: &[(u64, u64)],
    file: std::fs::File,
    ty: &str,
    v: &Validators,
    cx: &Ctx,
) -> Reply {
    let b = boundary();
    let mut body_len = 0;
    let mut list = std::collections::VecDeque::with_capacity(parts.len());
    for (i, &(s, e)) in parts.iter().enumerate() {
        let h = part_header(&b, i, ty, s, e, v.len);
        body_len += h.len() as u64 + (e - s + 1);
        list.push_back((h, s, e - s + 1));
    }
    let trailer = format!("\r\n--{b}--\r\n").into_bytes();
    body_len += trailer.len() as u64;
    let head = head(&b, body_len, v, cx);
    if cx.head_only {
        return Reply::Full {
            status: 206,
            head,
            body: backends::Body::Empty,
        };
    }
    Reply::File {
        status: 206,
        head,
        file: super::Stream::Ranges(
            file,
            Box::new(Parts {
                parts: list,
                trailer,
            }),
        ),
        offset: 0,
        len: body_len,
    }
}

/// The 206 for `parts` (each `start..=end` within `data`) of a representation of type `ty`.
pub(super) fn reply(
    parts: &[(u64, u64)],
    data: &[u8],
    ty: &str,
    v: &Validators,
    cx: &Ctx,
) -> Reply {
    let boundary = boundary();
    let len = data.len() as u64;
    let mut body = Vec::with_capacity(parts.len() * 96 + data.len());
    for (i, &(s, e)) in parts.iter().enumerate() {
        body.extend_from_slice(&part_header(&boundary, i, ty, s, e, len));
        body.extend_from_slice(&data[s as usize..=e as usize]);
    }
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let head = head(&boundary, body.len() as u64, v, cx);
    let body = if cx.head_only {
        backends::Body::Empty
    } else {
        backends::Body::Owned(body)
    };
    Reply::Full {
        status: 206,
        head,
        body,
    }
}
