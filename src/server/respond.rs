//! Building responses: static files (index, autoindex, ranges, conditionals), redirects, text
//! returns and error pages. Pure functions of the request and the file system; the event loop
//! sends what they return.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::config::{ErrorPageStatus, Location, Server};
use crate::http::path::{html_escape, percent_encode_path};
use crate::http::range::{self, ByteRange};
use crate::http::response::{error_page_html, ResponseHead};

/// Files up to this size are read whole and sent with their head in one vectored send.
pub const SMALL_FILE: u64 = 256 * 1024;
/// Larger files stream in chunks of this size (one chunk in flight per connection).
pub const CHUNK: usize = 256 * 1024;

/// What a handler decided; the loop turns it into sends.
pub enum Reply {
    /// A complete response in memory (head + body).
    Full {
        status: u16,
        head: Vec<u8>,
        body: backends::Body,
    },
    /// A head, then `len` bytes of `file` from `offset`, streamed.
    File {
        status: u16,
        head: Vec<u8>,
        file: File,
        offset: u64,
        len: u64,
    },
}

impl Reply {
    pub fn status(&self) -> u16 {
        match self {
            Reply::Full { status, .. } | Reply::File { status, .. } => *status,
        }
    }
}

/// Per-request facts the builders need.
pub struct Ctx<'a> {
    pub head_only: bool,
    pub close: bool,
    /// HTTP/1.0 client that asked for keep-alive: say so explicitly.
    pub keep_alive_10: bool,
    pub date: &'a [u8],
    pub query: Option<&'a str>,
    pub if_none_match: Option<&'a [u8]>,
    pub if_modified_since: Option<&'a [u8]>,
    pub range: Option<&'a [u8]>,
}

impl<'a> Ctx<'a> {
    /// A response to a plain request: no conditionals, no range, no query, keep-alive as is.
    pub fn plain(date: &'a [u8], keep_alive_10: bool) -> Ctx<'a> {
        Ctx {
            head_only: false,
            close: false,
            keep_alive_10,
            date,
            query: None,
            if_none_match: None,
            if_modified_since: None,
            range: None,
        }
    }
}

pub const SERVER: &[u8] = concat!("webserv/", env!("CARGO_PKG_VERSION")).as_bytes();

fn start(out: &mut Vec<u8>, code: u16, cx: &Ctx) {
    let mut h = ResponseHead::new(out, code);
    h.header("Server", SERVER).header("Date", cx.date);
    if cx.close {
        h.header("Connection", b"close");
    } else if cx.keep_alive_10 {
        h.header("Connection", b"keep-alive");
    }
}

fn finish(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\r\n");
}

fn header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn header_u64(out: &mut Vec<u8>, name: &str, n: u64) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    crate::http::response::write_u64(out, n);
    out.extend_from_slice(b"\r\n");
}

/// A response with an in-memory body.
pub fn full(
    code: u16,
    content_type: &str,
    body: Vec<u8>,
    extra: &[(&str, &[u8])],
    cx: &Ctx,
) -> Reply {
    let mut head = Vec::with_capacity(256);
    start(&mut head, code, cx);
    // 1xx, 204 and 304 carry no body and no Content-Length (RFC 9110 §8.6).
    let bodyless = code == 204 || code == 304 || (100..200).contains(&code);
    if !bodyless {
        header(&mut head, "Content-Type", content_type.as_bytes());
        header_u64(&mut head, "Content-Length", body.len() as u64);
    }
    for (n, v) in extra {
        header(&mut head, n, v);
    }
    finish(&mut head);
    let body = if cx.head_only || bodyless || body.is_empty() {
        backends::Body::Empty
    } else {
        backends::Body::Owned(body)
    };
    Reply::Full {
        status: code,
        head,
        body,
    }
}

/// The built-in page for `code`, or the configured `error_page` (served with the original
/// status unless the directive says otherwise).
pub fn error(
    code: u16,
    server: &Server,
    loc: &Location,
    extra: &[(&str, &[u8])],
    cx: &Ctx,
) -> Reply {
    if let Some(ep) = loc.error_page(code) {
        let status = match ep.status {
            ErrorPageStatus::Fixed(n) => n,
            _ => code,
        };
        let target = server.location_for(&ep.uri);
        let path = target.map_path(&ep.uri);
        if let Ok(body) = std::fs::read(&path) {
            let ty = mime_for(&path);
            return full(status, ty, body, extra, cx);
        }
        crate::warn!(
            "error_page {} -> {}: {} not readable",
            code,
            ep.uri,
            path.display()
        );
    }
    full(
        code,
        "text/html; charset=utf-8",
        error_page_html(code).into_bytes(),
        extra,
        cx,
    )
}

fn mime_for(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") | Some("htm") => "text/html; charset=utf-8",
        _ => "text/plain; charset=utf-8",
    }
}

/// `return CODE [URL|TEXT]`.
pub fn ret(code: u16, target: Option<&str>, cx: &Ctx) -> Reply {
    match code {
        301 | 302 | 303 | 307 | 308 => {
            let loc = target.unwrap_or("/");
            let body = crate::http::response::error_page_html(code).into_bytes();
            full(
                code,
                "text/html; charset=utf-8",
                body,
                &[("Location", loc.as_bytes())],
                cx,
            )
        }
        _ => {
            let body = target.unwrap_or("").as_bytes().to_vec();
            full(code, "text/plain; charset=utf-8", body, &[], cx)
        }
    }
}

/// Files at most this large are kept in memory by the [`FileCache`].
pub const CACHE_FILE_MAX: u64 = 64 * 1024;
/// The cache's total size; past it, it starts over.
pub const CACHE_TOTAL_MAX: usize = 32 * 1024 * 1024;
/// How long a cached file is trusted before its size and mtime are checked again (nginx's
/// `open_file_cache_valid`, much shorter).
pub const CACHE_VALID: std::time::Duration = std::time::Duration::from_secs(1);

/// A small file in memory with what its responses need, shared by every send of it.
pub struct Cached {
    body: std::sync::Arc<[u8]>,
    mtime: u64,
    etag: String,
    last_modified: [u8; 29],
    checked: std::time::Instant,
}

/// Small static files kept in memory (content + validators), revalidated by size and mtime at
/// most once per [`CACHE_VALID`]: a hit costs no system call at all.
#[derive(Default)]
pub struct FileCache {
    map: std::collections::HashMap<PathBuf, std::rc::Rc<Cached>>,
    bytes: usize,
    /// The loop turn's time (set by the loop: no clock read per request); `None` reads it.
    pub now: Option<std::time::Instant>,
}

impl FileCache {
    /// A fresh cached copy of `path`, if it is a small regular file.
    fn get(&mut self, path: &Path) -> Option<std::rc::Rc<Cached>> {
        let now = self.now.unwrap_or_else(std::time::Instant::now);
        if let Some(e) = self.map.get(path) {
            if now.duration_since(e.checked) < CACHE_VALID {
                return Some(e.clone());
            }
        }
        let meta = std::fs::metadata(path).ok().filter(|m| m.is_file());
        let Some(meta) = meta.filter(|m| m.len() <= CACHE_FILE_MAX) else {
            if let Some(old) = self.map.remove(path) {
                self.bytes -= old.body.len();
            }
            return None;
        };
        let mtime = meta.mtime().max(0) as u64;
        if let Some(e) = self.map.get_mut(path) {
            if e.mtime == mtime && e.body.len() as u64 == meta.len() {
                let fresh = std::rc::Rc::new(Cached {
                    body: e.body.clone(),
                    mtime,
                    etag: e.etag.clone(),
                    last_modified: e.last_modified,
                    checked: now,
                });
                *e = fresh.clone();
                return Some(fresh);
            }
        }
        let body = std::fs::read(path).ok()?;
        if body.len() as u64 != meta.len() {
            return None; // changing under us: serve it uncached
        }
        if self.bytes + body.len() > CACHE_TOTAL_MAX {
            self.map.clear();
            self.bytes = 0;
        }
        let entry = std::rc::Rc::new(Cached {
            etag: range::etag(mtime, body.len() as u64),
            last_modified: crate::http::date::format_unix(mtime),
            body: body.into(),
            mtime,
            checked: now,
        });
        self.bytes += entry.body.len();
        if let Some(old) = self.map.insert(path.to_path_buf(), entry.clone()) {
            self.bytes -= old.body.len();
        }
        Some(entry)
    }
}

/// The validators of a file representation.
struct Validators<'a> {
    len: u64,
    mtime: u64,
    etag: &'a str,
    last_modified: &'a [u8; 29],
}

/// The head of a GET/HEAD of a file: 304 when the conditionals say so, 416 for an unsatisfiable
/// range (both complete replies, `Err`), else 200 or 206 with the byte range to send.
fn file_head(
    v: &Validators,
    uri: &str,
    mime: &crate::config::Config,
    cx: &Ctx,
) -> Result<(u16, Vec<u8>, u64, u64), Reply> {
    let mut head = Vec::with_capacity(320);
    if range::not_modified(cx.if_none_match, cx.if_modified_since, v.etag, v.mtime) {
        start(&mut head, 304, cx);
        header(&mut head, "ETag", v.etag.as_bytes());
        header(&mut head, "Last-Modified", v.last_modified);
        finish(&mut head);
        return Err(Reply::Full {
            status: 304,
            head,
            body: backends::Body::Empty,
        });
    }
    let (status, from, count) = match cx.range.map(|r| range::parse_range(r, v.len)) {
        Some(r @ ByteRange::Partial { start, end }) => {
            start_range(&mut head, cx, &range::content_range(r, v.len));
            (206, start, end - start + 1)
        }
        Some(ByteRange::Unsatisfiable) => {
            let cr = range::content_range(ByteRange::Unsatisfiable, v.len);
            let body = error_page_html(416).into_bytes();
            let extra = [("Content-Range", cr.as_bytes())];
            return Err(full(416, "text/html; charset=utf-8", body, &extra, cx));
        }
        _ => {
            start(&mut head, 200, cx);
            (200, 0, v.len)
        }
    };
    header(&mut head, "Content-Type", mime.mime_type(uri).as_bytes());
    header_u64(&mut head, "Content-Length", count);
    header(&mut head, "Last-Modified", v.last_modified);
    header(&mut head, "ETag", v.etag.as_bytes());
    header(&mut head, "Accept-Ranges", b"bytes");
    finish(&mut head);
    Ok((status, head, from, count))
}

fn serve_cached(c: &Cached, uri: &str, mime: &crate::config::Config, cx: &Ctx) -> Reply {
    let v = Validators {
        len: c.body.len() as u64,
        mtime: c.mtime,
        etag: &c.etag,
        last_modified: &c.last_modified,
    };
    let (status, head, from, count) = match file_head(&v, uri, mime, cx) {
        Ok(h) => h,
        Err(reply) => return reply,
    };
    let body = if cx.head_only || count == 0 {
        backends::Body::Empty
    } else {
        backends::Body::Shared(backends::Shared {
            data: c.body.clone(),
            start: from as usize,
            end: (from + count) as usize,
        })
    };
    Reply::Full { status, head, body }
}

/// What a GET/HEAD of a mapped path resolves to.
pub enum Static {
    Reply(Reply),
    /// An error status to answer through [`error`].
    Error(u16),
}

/// Serve a GET/HEAD for normalised URI `path` in location `loc`.
pub fn serve_static(
    path: &str,
    loc: &Location,
    mime: &crate::config::Config,
    cx: &Ctx,
    cache: &mut FileCache,
) -> Static {
    let Some(fs_path) = map(loc, path) else {
        return Static::Error(404);
    };
    if !path.ends_with('/') {
        if let Some(c) = cache.get(&fs_path) {
            return Static::Reply(serve_cached(&c, path, mime, cx));
        }
    }
    let meta = match std::fs::metadata(&fs_path) {
        Ok(m) => m,
        Err(e) => return Static::Error(io_status(&e)),
    };
    if meta.is_dir() {
        if !path.ends_with('/') {
            // RFC 9110 §15.4.2: the directory lives at the URI with a trailing slash.
            let mut to = percent_encode_path(path);
            to.push('/');
            if let Some(q) = cx.query {
                to.push('?');
                to.push_str(q);
            }
            return Static::Reply(ret(301, Some(&to), cx));
        }
        for name in &loc.index {
            let candidate = fs_path.join(name);
            if candidate.is_file() {
                let uri = format!("{path}{name}");
                if let Some(c) = cache.get(&candidate) {
                    return Static::Reply(serve_cached(&c, &uri, mime, cx));
                }
                return serve_file(&candidate, &uri, mime, cx);
            }
        }
        if loc.autoindex {
            return match autoindex(&fs_path, path) {
                Ok(body) => Static::Reply(full(200, "text/html; charset=utf-8", body, &[], cx)),
                Err(e) => Static::Error(io_status(&e)),
            };
        }
        return Static::Error(403);
    }
    serve_file(&fs_path, path, mime, cx)
}

fn io_status(e: &std::io::Error) -> u16 {
    match e.kind() {
        std::io::ErrorKind::NotFound => 404,
        std::io::ErrorKind::PermissionDenied => 403,
        _ => match e.raw_os_error() {
            Some(libc::ENOTDIR) | Some(libc::ENAMETOOLONG) | Some(libc::ELOOP) => 404,
            _ => 500,
        },
    }
}

fn serve_file(fs_path: &Path, uri: &str, mime: &crate::config::Config, cx: &Ctx) -> Static {
    let file = match File::open(fs_path) {
        Ok(f) => f,
        Err(e) => return Static::Error(io_status(&e)),
    };
    let meta = match file.metadata() {
        Ok(m) if m.is_file() => m,
        Ok(_) => return Static::Error(403),
        Err(e) => return Static::Error(io_status(&e)),
    };
    let len = meta.len();
    let mtime = meta.mtime().max(0) as u64;
    let etag = range::etag(mtime, len);
    let last_modified = crate::http::date::format_unix(mtime);
    let v = Validators {
        len,
        mtime,
        etag: &etag,
        last_modified: &last_modified,
    };
    let (status, head, offset, count) = match file_head(&v, uri, mime, cx) {
        Ok(h) => h,
        Err(reply) => return Static::Reply(reply),
    };
    if cx.head_only || count == 0 {
        return Static::Reply(Reply::Full {
            status,
            head,
            body: backends::Body::Empty,
        });
    }
    if count <= SMALL_FILE {
        let mut body = vec![0u8; count as usize];
        use std::os::unix::fs::FileExt;
        if let Err(e) = file.read_exact_at(&mut body, offset) {
            return Static::Error(io_status(&e));
        }
        return Static::Reply(Reply::Full {
            status,
            head,
            body: backends::Body::Owned(body),
        });
    }
    Static::Reply(Reply::File {
        status,
        head,
        file,
        offset,
        len: count,
    })
}

fn start_range(head: &mut Vec<u8>, cx: &Ctx, content_range: &str) {
    start(head, 206, cx);
    header(head, "Content-Range", content_range.as_bytes());
}

/// An nginx-style directory listing: names escaped for HTML and percent-encoded in links.
pub fn autoindex(dir: &Path, uri: &str) -> std::io::Result<Vec<u8>> {
    let mut entries: Vec<(String, bool, u64, u64)> = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let Ok(m) = std::fs::metadata(e.path()) else {
            continue;
        };
        entries.push((name, m.is_dir(), m.len(), m.mtime().max(0) as u64));
    }
    entries.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let title = html_escape(uri);
    let mut out = format!(
        "<html>\r\n<head><title>Index of {title}</title></head>\r\n<body>\r\n<h1>Index of {title}</h1><hr><pre><a href=\"../\">../</a>\r\n"
    );
    for (name, is_dir, size, mtime) in entries {
        let slash = if is_dir { "/" } else { "" };
        let shown = format!("{name}{slash}");
        let href = format!("{}{slash}", percent_encode_path(&name));
        let pad = 51usize.saturating_sub(shown.chars().count());
        let date = crate::log::access_time(mtime);
        // "26/Nov/2026:13:00:00 +0000" → "26-Nov-2026 13:00"
        let when = format!(
            "{}-{}-{} {}",
            &date[0..2],
            &date[3..6],
            &date[7..11],
            &date[12..17]
        );
        let size = if is_dir {
            "-".to_string()
        } else {
            size.to_string()
        };
        out.push_str(&format!(
            "<a href=\"{}\">{}</a>{:pad$} {} {:>19}\r\n",
            html_escape(&href),
            html_escape(&shown),
            "",
            when,
            size,
            pad = pad
        ));
    }
    out.push_str("</pre><hr></body>\r\n</html>\r\n");
    Ok(out.into_bytes())
}

/// Whether the part of a URI that is appended to a root, alias or upload store is free of `..`
/// segments. A normalised URI has none of its own, but a location prefix without a trailing
/// slash can glue onto one: `location /img { alias /data/images/; }` and `/img../secret` give
/// `/data/images/../secret` (the alias "off-by-slash" escape). Such a request maps to nothing.
fn contained(rest: &str) -> bool {
    !rest.split('/').any(|seg| seg == "..")
}

/// The file a normalised URI maps to in `loc` (root or alias), or `None` if the mapping would
/// leave it.
pub fn map(loc: &Location, uri: &str) -> Option<PathBuf> {
    let rest = match &loc.docroot {
        crate::config::DocRoot::Root(_) => uri,
        crate::config::DocRoot::Alias { strip, .. } => {
            uri.strip_prefix(strip.as_str()).unwrap_or(uri)
        }
    };
    contained(rest).then(|| loc.map_path(uri))
}

/// Where a PUT/POST upload under `loc` lands: `upload_store` + the URI minus the location
/// prefix. `None` when the location has no upload store.
pub fn upload_target(loc: &Location, uri: &str) -> Option<PathBuf> {
    let store = loc.upload_store.as_ref()?;
    let prefix = loc.pattern.trim_end_matches('/');
    let rest = uri.strip_prefix(prefix).unwrap_or(uri);
    if !contained(rest) {
        return None;
    }
    let rest = rest.trim_start_matches('/');
    Some(if rest.is_empty() {
        store.clone()
    } else {
        store.join(rest)
    })
}
