//! A 206 with several ranges: `multipart/byteranges` (RFC 9110 §14.6), for a file whose bytes
//! are in memory (the small-file cache).

use super::static_file::Validators;
use super::{finish, header, header_u64, start, Ctx, Reply};

/// The 206 for `parts` (each `start..=end` within `data`) of a representation of type `ty`.
pub(super) fn reply(
    parts: &[(u64, u64)],
    data: &[u8],
    ty: &str,
    v: &Validators,
    cx: &Ctx,
) -> Reply {
    // A boundary must not occur in the content (RFC 2046 §5.1.1); 20 random digits, as nginx's
    // is a 20-digit number, make that vanishingly unlikely for the small files served here.
    let boundary = format!(
        "{:010}{:010}",
        crate::handlers::atomic_file::random_u32(),
        crate::handlers::atomic_file::random_u32()
    );
    let len = data.len() as u64;
    let mut body = Vec::with_capacity(parts.len() * 96 + data.len());
    for (i, &(s, e)) in parts.iter().enumerate() {
        if i > 0 {
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}\r\nContent-Type: {ty}\r\n").as_bytes());
        body.extend_from_slice(format!("Content-Range: bytes {s}-{e}/{len}\r\n\r\n").as_bytes());
        body.extend_from_slice(&data[s as usize..=e as usize]);
    }
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut head = Vec::with_capacity(320);
    start(&mut head, 206, cx);
    let ct = format!("multipart/byteranges; boundary={boundary}");
    header(&mut head, "Content-Type", ct.as_bytes());
    header_u64(&mut head, "Content-Length", body.len() as u64);
    header(&mut head, "Last-Modified", v.last_modified);
    header(&mut head, "ETag", v.etag.as_bytes());
    header(&mut head, "Accept-Ranges", b"bytes");
    finish(&mut head);
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
