//! Responses built in memory: the [`Reply`] a task hands to its connection, the per-request
//! facts the builders need ([`Ctx`]), error pages, redirects and text `return`s. Static files
//! ([`static_file`]), the small-file cache ([`cache`]), directory listings ([`autoindex`]) and
//! the URI → file mapping with its containment rule ([`map`]) live beside it.
//!
//! Nothing here submits an operation or knows a connection: these are functions of the request,
//! the configuration and the file system.

pub mod autoindex;
pub mod byteranges;
pub mod cache;
pub mod map;
pub mod open_files;
pub mod static_file;

use std::fs::File;
use std::path::Path;

use crate::config::{ErrorPageStatus, Location, Server};
use crate::http::response::{error_page_html, ResponseHead};

pub use cache::FileCache;
pub use map::{map, resolve, upload_rel, upload_target};
pub use static_file::{serve_static, Static};

/// Files not in the cache stream in pieces of this size when they are read (not sendfile'd).
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
        file: Stream,
        offset: u64,
        len: u64,
    },
}

/// Where a streamed body comes from: a file on disk (sendfile or reads), or a directory
/// listing, read off the loop's thread and then rendered a piece at a time (its head, built
/// once the length is known, comes with it: the reply's own head is empty).
pub enum Stream {
    Disk(File),
    /// A file the open-file cache keeps open, shared with it and other responses.
    Shared(std::rc::Rc<std::os::fd::OwnedFd>),
    Listing(Box<autoindex::Pending>),
    /// Several ranges of a file: `multipart/byteranges` (each part's header, then its bytes,
    /// then the closing delimiter).
    Ranges(File, Box<byteranges::Parts>),
}

impl Reply {
    pub fn status(&self) -> u16 {
        match self {
            Reply::Full { status, .. } | Reply::File { status, .. } => *status,
        }
    }

    /// The same reply with another status (an `error_page` answered by a named location keeps
    /// the error's status, as nginx's `err_status`): the status line is rewritten.
    pub fn with_status(mut self, code: u16) -> Reply {
        if let Reply::File {
            file: Stream::Listing(p),
            status,
            ..
        } = &mut self
        {
            *status = code;
            // A listing's head waits with it: the status line is there.
            let mut r = Reply::Full {
                status: 200,
                head: std::mem::take(&mut p.head),
                body: backends::Body::Empty,
            }
            .with_status(code);
            if let Reply::Full { head, .. } = &mut r {
                p.head = std::mem::take(head);
            }
        }
        let (Reply::Full { status, head, .. } | Reply::File { status, head, .. }) = &mut self;
        if let Some(end) = head.windows(2).position(|w| w == b"\r\n") {
            let mut line = Vec::with_capacity(40);
            crate::http::response::ResponseHead::new(&mut line, code);
            head.splice(..end + 2, line);
            *status = code;
        }
        self
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
    /// `If-Range` (RFC 9110 §13.1.5): the range applies only if this validator still matches.
    pub if_range: Option<&'a [u8]>,
    /// Look files up only as far as the kernel's caches go: a lookup that would wait for the
    /// disk gives [`static_file::Static::Lookup`] instead of blocking the loop.
    pub cached_lookups: bool,
    /// `If-Match` and `If-Unmodified-Since` (RFC 9110 §13.1.1, §13.1.4): 412 when they fail.
    pub if_match: Option<&'a [u8]>,
    pub if_unmodified_since: Option<&'a [u8]>,
    /// `max_ranges` of the location (`u32::MAX`: no limit).
    pub max_ranges: u32,
    /// An empty buffer for the response head, from the worker's pool (`Env::heads`); a reply
    /// that builds a head takes it, else it goes back to the pool.
    pub head_buf: std::cell::Cell<Vec<u8>>,
    /// The same for the path a static file maps to (the file cache's key).
    pub path_buf: std::cell::Cell<std::path::PathBuf>,
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
            if_range: None,
            cached_lookups: false,
            if_match: None,
            if_unmodified_since: None,
            max_ranges: u32::MAX,
            head_buf: Default::default(),
            path_buf: Default::default(),
        }
    }
}

pub(crate) fn start(out: &mut Vec<u8>, code: u16, cx: &Ctx) {
    let mut h = ResponseHead::new(out, code);
    h.header("Server", crate::http::response::server_name().as_bytes())
        .header("Date", cx.date);
    if cx.close {
        h.header("Connection", b"close");
    } else if cx.keep_alive_10 {
        h.header("Connection", b"keep-alive");
    }
}

pub(crate) fn finish(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\r\n");
}

/// Append a header field whose value the server made (a MIME type, a date, an entity tag).
#[inline]
pub(crate) fn header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Append a header field whose value may come from outside (a path from the request, a
/// caller's extra field): CR, LF and NUL become SP, so no value can split the response
/// (RFC 9110 §5.5).
pub(crate) fn header_checked(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    let start = out.len() + name.len() + 2;
    header(out, name, value);
    if value.contains(&b'\r') || value.contains(&b'\n') || value.contains(&0) {
        for b in &mut out[start..start + value.len()] {
            if matches!(*b, b'\r' | b'\n' | 0) {
                *b = b' ';
            }
        }
    }
}

pub(crate) fn header_u64(out: &mut Vec<u8>, name: &str, n: u64) {
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
        header_checked(&mut head, n, v);
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
    bodies: &std::collections::HashMap<std::path::PathBuf, std::sync::Arc<[u8]>>,
    server: &Server,
    loc: &Location,
    extra: &[(&str, &[u8])],
    cx: &Ctx,
) -> Reply {
    // An `@name` target is routed by the connection (`Conn::answer_error`); here, where that
    // is not possible (a second error while answering the first), the built-in page answers.
    if let Some(ep) = loc.error_page(code).filter(|e| !e.uri.starts_with('@')) {
        let status = match ep.status {
            ErrorPageStatus::Fixed(n) => n,
            _ => code,
        };
        let target = server.location_for(&ep.uri);
        // The same mapping (and containment rule) as any request for that URI; the file was
        // read when the configuration was loaded (`preload_error_pages`).
        let path = map(target, &ep.uri).unwrap_or_default();
        if let Some(body) = bodies.get(&path) {
            return error_file(status, &path, body, extra, cx);
        }
        crate::warn!(
            "error_page {} -> {}: {} was not readable when the configuration was loaded",
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

/// A configured error page, from the bytes read at load time (shared, not copied).
fn error_file(
    status: u16,
    path: &Path,
    body: &std::sync::Arc<[u8]>,
    extra: &[(&str, &[u8])],
    cx: &Ctx,
) -> Reply {
    let mut head = Vec::with_capacity(256);
    start(&mut head, status, cx);
    header(&mut head, "Content-Type", mime_for(path).as_bytes());
    header_u64(&mut head, "Content-Length", body.len() as u64);
    for (n, v) in extra {
        header_checked(&mut head, n, v);
    }
    finish(&mut head);
    let body = if cx.head_only || body.is_empty() {
        backends::Body::Empty
    } else {
        backends::Body::Shared(backends::Shared {
            data: body.clone(),
            start: 0,
            end: body.len(),
        })
    };
    Reply::Full { status, head, body }
}

/// The largest `error_page` file kept in memory; a larger one is refused at load (the
/// built-in page answers, with a warning).
pub const ERROR_PAGE_MAX: u64 = 1 << 20;

/// Read every file an `error_page` URI maps to into `cfg.error_bodies` — on the thread that
/// loads the configuration (startup, reload), so that answering an error never opens a file
/// on an event loop. The path is the one a request for the URI maps to, opened beneath the
/// target location's root or alias like any request (`RESOLVE_BENEATH`, and no symlinks under
/// `disable_symlinks on`); only a regular file of at most [`ERROR_PAGE_MAX`] bytes is kept.
/// A page missing or changed after the load is seen at the next reload (nginx reads it per
/// error).
pub fn preload_error_pages(cfg: &mut crate::config::Config) {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let mut bodies = std::collections::HashMap::new();
    for server in &cfg.servers {
        for loc in server.every_location() {
            for ep in loc.error_pages.iter().filter(|e| !e.uri.starts_with('@')) {
                let target = server.location_for(&ep.uri);
                let Some(path) = map(target, &ep.uri) else {
                    continue;
                };
                if bodies.contains_key(&path) {
                    continue;
                }
                let Some((dir, rel)) = map::resolve(target, &ep.uri) else {
                    continue;
                };
                let nofollow = target.disable_symlinks == crate::config::Symlinks::Refuse;
                let read = || -> std::io::Result<Vec<u8>> {
                    let anchor = backends::util::open_dir(&dir)?;
                    let flags = libc::O_RDONLY | libc::O_NONBLOCK;
                    let fd = backends::util::open_beneath(
                        anchor.as_raw_fd(),
                        std::ffi::OsStr::new(&rel),
                        flags,
                        0,
                        nofollow,
                    )?;
                    let st = backends::util::fstat(fd.as_raw_fd())?;
                    if !st.is_file() || st.size > ERROR_PAGE_MAX {
                        return Err(std::io::Error::other("not a regular file of at most 1 MiB"));
                    }
                    let mut v = Vec::with_capacity(st.size as usize);
                    std::fs::File::from(fd).read_to_end(&mut v)?;
                    Ok(v)
                };
                match read() {
                    Ok(v) => {
                        bodies.insert(path, std::sync::Arc::from(v));
                    }
                    Err(e) => crate::warn!(
                        "error_page {} -> {}: {}: {e}",
                        ep.code,
                        ep.uri,
                        path.display()
                    ),
                }
            }
        }
    }
    cfg.error_bodies = bodies;
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

/// The directories of every `root`, `alias` and `upload_store` of a configuration, opened by
/// the thread that loads it (`Control`): each loop starts from duplicates of them.
pub type DirFds = std::collections::HashMap<std::path::PathBuf, std::os::fd::OwnedFd>;

/// Open the directory of every `root`, `alias` (one without captures) and `upload_store` of
/// `cfg`, on the thread loading the configuration: the loops start from duplicates of them
/// ([`FileCache::for_dirs`]) instead of opening them by path. A directory missing at load is
/// opened by path when first needed (and fails then if still missing).
pub fn preopen_dirs(cfg: &crate::config::Config) -> DirFds {
    let mut fds = std::collections::HashMap::new();
    for server in &cfg.servers {
        for loc in server.every_location() {
            let dir = match &loc.docroot {
                crate::config::DocRoot::Root(d) => Some(d),
                crate::config::DocRoot::Alias { dir, strip } if !strip.is_empty() => Some(dir),
                crate::config::DocRoot::Alias { .. } => None,
            };
            for d in dir.into_iter().chain(loc.upload_store.as_ref()) {
                if !fds.contains_key(d) {
                    if let Ok(fd) = backends::util::open_dir(d) {
                        fds.insert(d.clone(), fd);
                    }
                }
            }
        }
    }
    fds
}
