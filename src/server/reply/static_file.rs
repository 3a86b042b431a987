//! GET and HEAD of files and directories: conditionals, ranges, index files, autoindex.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use backends::util::{self, FileStat};

use super::autoindex::Pending;
use super::cache::{Cached, FileCache, MemoKey};
use super::{finish, full, header, header_u64, ret, start, Ctx, Reply, Stream};
use crate::config::{Location, Symlinks};
use crate::http::path::percent_encode_path;
use crate::http::range::{self, ByteRange};
use crate::http::response::error_page_html;

/// The validators of a file representation.
pub(super) struct Validators<'a> {
    pub(super) len: u64,
    pub(super) mtime: u64,
    pub(super) etag: &'a str,
    pub(super) last_modified: &'a [u8; 29],
}

/// The head of a GET/HEAD of a file: 304 when the conditionals say so, 416 for an unsatisfiable
/// range (both complete replies, `Err`), else 200 or 206 with the byte range to send.
pub(super) fn file_head(
    v: &Validators,
    uri: &str,
    mime: &crate::config::Config,
    cx: &Ctx,
    data: Body<'_>,
) -> Result<(u16, Vec<u8>, u64, u64), Reply> {
    let mut head = cx.head_buf.take();
    head.clear();
    head.reserve(320);
    if range::precondition_failed(
        cx.if_match,
        cx.if_unmodified_since,
        None,
        Some((v.etag, v.mtime)),
    ) {
        let body = error_page_html(412).into_bytes();
        return Err(full(412, "text/html; charset=utf-8", body, &[], cx));
    }
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
    // If-Range (RFC 9110 §13.1.5): a range of a representation that changed since the client
    // got its first part would splice two versions together; then the whole file is sent.
    let range = cx
        .range
        .filter(|_| cx.if_range.is_none_or(|ir| if_range_matches(ir, v)));
    let ranges = range.map(|r| range::parse_ranges(r, v.len, cx.max_ranges));
    let (status, from, count) = match ranges {
        Some(range::Ranges::Parts(p)) if p.len() == 1 => {
            let (start, end) = p[0];
            let r = ByteRange::Partial { start, end };
            start_range(&mut head, cx, &range::content_range(r, v.len));
            (206, start, end - start + 1)
        }
        // Several ranges: multipart, built whole from the cache's bytes or streamed from disk.
        Some(range::Ranges::Parts(p)) => {
            let ty = mime.mime_type(uri);
            return Err(match data {
                Body::Mem(d) => super::byteranges::reply(&p, d, ty, v, cx),
                Body::Disk(f) => match f.take() {
                    Some(f) => super::byteranges::file_reply(&p, f, ty, v, cx),
                    None => full(500, "text/plain", Vec::new(), &[], cx),
                },
                Body::Shared(fd) => match util::dup_fd(fd.as_raw_fd()) {
                    Ok(f) => super::byteranges::file_reply(&p, File::from(f), ty, v, cx),
                    Err(_) => full(500, "text/plain", Vec::new(), &[], cx),
                },
            });
        }
        Some(range::Ranges::Unsatisfiable) => {
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

fn serve_cached(
    c: &Cached,
    uri: &str,
    mime: &crate::config::Config,
    cx: &Ctx,
    epoch: u64,
) -> Reply {
    let key = MemoKey {
        epoch,
        config: mime,
        uri,
    };
    let plain = cx.range.is_none()
        && cx.if_none_match.is_none()
        && cx.if_modified_since.is_none()
        && cx.if_match.is_none()
        && cx.if_unmodified_since.is_none();
    if plain {
        let mut head = cx.head_buf.take();
        if c.memo.borrow().copy_to(&key, cx, &mut head) {
            let body = cached_body(c, 0, c.body.len() as u64, cx);
            return Reply::Full {
                status: 200,
                head,
                body,
            };
        }
        cx.head_buf.set(head);
    }
    let v = Validators {
        len: c.body.len() as u64,
        mtime: c.mtime,
        etag: &c.etag,
        last_modified: &c.last_modified,
    };
    let (status, head, from, count) = match file_head(&v, uri, mime, cx, Body::Mem(&c.body)) {
        Ok(h) => h,
        Err(reply) => return reply,
    };
    if plain && status == 200 {
        c.memo.borrow_mut().keep(&key, cx, &head);
    }
    let body = cached_body(c, from, count, cx);
    Reply::Full { status, head, body }
}

/// `count` bytes of a cached file from `from` as a response body (none for HEAD).
fn cached_body(c: &Cached, from: u64, count: u64, cx: &Ctx) -> backends::Body {
    if cx.head_only || count == 0 {
        backends::Body::Empty
    } else {
        backends::Body::Local(backends::Local {
            data: c.body.clone(),
            start: from as usize,
            end: (from + count) as usize,
        })
    }
}

/// Where a file's bytes are, for a multipart answer: in memory, or the open file (taken when a
/// multipart reply streams it).
pub(super) enum Body<'a> {
    Mem(&'a [u8]),
    Disk(&'a mut Option<File>),
    /// The open-file cache's descriptor (duplicated when a multipart reply streams it).
    Shared(&'a OwnedFd),
}

/// What a GET/HEAD of a mapped path resolves to.
pub enum Static {
    Reply(Reply),
    /// An error status to answer through [`error`].
    Error(u16),
    /// A lookup of `rel` beneath `dir` (a duplicate of the root's fd) would wait for the disk:
    /// have it done off the loop's thread, then route the request again.
    Lookup {
        dir: OwnedFd,
        rel: String,
        no_symlinks: bool,
    },
}

/// A lookup that met a cold cache, as [`Static::Lookup`] (or the error of duplicating the
/// root's fd, answered as any open error).
fn cold(anchor: RawFd, rel: String, no_symlinks: bool) -> Static {
    match backends::util::dup_fd(anchor) {
        Ok(dir) => Static::Lookup {
            dir,
            rel,
            no_symlinks,
        },
        Err(e) => Static::Error(open_status(&e)),
    }
}

fn is_cold(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::EAGAIN)
}

/// For a URI naming a directory (`/app/`), the URI of its first existing index file
/// (`/app/index.sh`) when `wanted` says that URI matters (a CGI would run it): resolved
/// before anything else looks at the extension, so the file that will be answered — not the
/// request path — decides whether a CGI runs it. No index name is looked up unless some
/// index name is wanted: a site whose index files are plain pages makes no system call here.
/// `is_file` answers whether an index URI names a regular file — or an error `E` (a lookup
/// that would wait for the disk: the request is held), which ends the search.
pub fn index_uri<E>(
    loc: &Location,
    path: &str,
    wanted: impl Fn(&str) -> bool,
    mut is_file: impl FnMut(&str) -> Result<bool, E>,
) -> Result<Option<String>, E> {
    if !path.ends_with('/') || loc.index.is_empty() {
        return Ok(None);
    }
    let uris: Vec<String> = loc.index.iter().map(|n| format!("{path}{n}")).collect();
    if !uris.iter().any(|u| wanted(u)) {
        return Ok(None);
    }
    for u in uris {
        if is_file(&u)? {
            return Ok(Some(u).filter(|u| wanted(u)));
        }
    }
    Ok(None)
}

/// The status for a failed open beneath a root: a symlink refused by `disable_symlinks`
/// (`ELOOP`) or one leading out of the root (`EXDEV`) is 403, as nginx answers a refused link.
fn open_status(e: &std::io::Error) -> u16 {
    match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::EXDEV) => 403,
        _ => io_status(e),
    }
}

/// `if_not_owner`: every symlink on the way to `rel` must have the owner of what it points to.
/// (The open itself already stayed beneath the root; this only decides whether to answer.)
fn same_owner_links(anchor: RawFd, rel: &str) -> std::io::Result<()> {
    let mut prefix = String::new();
    for part in rel.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(part);
        let at = OsStr::new(&prefix);
        let link = util::fstatat(anchor, at, false)?;
        if link.is_symlink() && util::fstatat(anchor, at, true)?.uid != link.uid {
            return Err(std::io::Error::from_raw_os_error(libc::ELOOP));
        }
    }
    Ok(())
}

/// Open `rel` beneath `anchor`; with `cached`, only as far as the kernel's caches go (`EAGAIN`
/// otherwise: see [`Static::Lookup`]).
pub(super) fn open_beneath(
    anchor: RawFd,
    rel: &str,
    flags: libc::c_int,
    nofollow: bool,
    cached: bool,
) -> std::io::Result<OwnedFd> {
    if cached {
        crate::server::lookups::open_cached(anchor, OsStr::new(rel), flags, nofollow)
    } else {
        util::open_beneath(anchor, OsStr::new(rel), flags, 0, nofollow)
    }
}

/// Open `rel` beneath `anchor` for reading, never blocking: `O_NONBLOCK` makes a FIFO open at
/// once (it is then refused by its type), and `openat2(RESOLVE_BENEATH)` keeps the resolution
/// beneath the root. Returns the file with its `fstat`.
fn open_read(
    anchor: RawFd,
    rel: &str,
    policy: Symlinks,
    cached: bool,
) -> std::io::Result<(OwnedFd, RawFd, FileStat)> {
    let flags = libc::O_RDONLY | libc::O_NONBLOCK;
    let fd = open_beneath(anchor, rel, flags, policy == Symlinks::Refuse, cached)?;
    if policy == Symlinks::IfSameOwner {
        same_owner_links(anchor, rel)?;
    }
    let st = util::fstat(fd.as_raw_fd())?;
    let raw = fd.as_raw_fd();
    Ok((fd, raw, st))
}

/// A buffer taken from a `Cell` for a while and put back when dropped.
struct Lent<'a>(std::path::PathBuf, &'a std::cell::Cell<std::path::PathBuf>);

impl<'a> Lent<'a> {
    fn new(cell: &'a std::cell::Cell<std::path::PathBuf>) -> Self {
        Lent(cell.take(), cell)
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        self.1.set(std::mem::take(&mut self.0));
    }
}

impl std::ops::Deref for Lent<'_> {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

/// Serve a GET/HEAD for normalised URI `path` in location `loc`.
pub fn serve_static(
    path: &str,
    loc: &Location,
    mime: &crate::config::Config,
    cx: &Ctx,
    cache: &mut FileCache,
) -> Static {
    // The mapped path is built in the buffer the request lent (given back on every return).
    let mut fs_path = Lent::new(&cx.path_buf);
    if !super::map::map_into(loc, path, &mut fs_path.0) {
        return Static::Error(404);
    }
    // The cache is keyed by the mapped path, which another location (an alias) may share
    // with a laxer symlink policy: a location that restricts symlinks answers from the cache
    // only after its own open (below) has checked the way to the file.
    let follow_all = loc.disable_symlinks == Symlinks::Follow;
    if !path.ends_with('/') && follow_all {
        if let Some(c) = cache.fresh(&fs_path) {
            return Static::Reply(serve_cached(&c, path, mime, cx, cache.epoch));
        }
    }
    if let Some(r) = super::open_files::hit(cache, loc, path, mime, cx) {
        return Static::Reply(r);
    }
    let Some((anchor, rel)) = super::map::resolve(loc, path) else {
        return Static::Error(404);
    };
    let anchor = match cache.anchor(&anchor) {
        Ok(a) => a,
        Err(e) => return Static::Error(open_status(&e)),
    };
    // The revalidating lookup follows links: under `disable_symlinks on` a linked directory
    // on the way would pass, so only a location that follows links revalidates so.
    if !path.ends_with('/') && follow_all {
        if let Some(c) = cache.revalidate(&fs_path, anchor.as_raw_fd(), &rel, cx.cached_lookups) {
            return Static::Reply(serve_cached(&c, path, mime, cx, cache.epoch));
        }
    }
    let a = anchor.as_raw_fd();
    if let Some(r) = super::open_files::revalidated(cache, a, loc, path, mime, cx) {
        return Static::Reply(r);
    }
    let nofollow = loc.disable_symlinks == Symlinks::Refuse;
    let cached = cx.cached_lookups;
    let (fd, raw, st) = match open_read(anchor.as_raw_fd(), &rel, loc.disable_symlinks, cached) {
        Ok(x) => x,
        Err(e) if is_cold(&e) => return cold(anchor.as_raw_fd(), rel, nofollow),
        Err(e) => {
            super::open_files::on_open_error(cache, &e);
            return Static::Error(open_status(&e));
        }
    };
    if st.is_dir() {
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
            let flags = libc::O_RDONLY | libc::O_NONBLOCK;
            let f = match open_beneath(raw, name, flags, nofollow, cached) {
                Ok(f) => f,
                Err(e) if is_cold(&e) => {
                    let rel = format!("{}/{name}", rel.trim_end_matches('/'));
                    return cold(anchor.as_raw_fd(), rel, nofollow);
                }
                Err(_) => continue,
            };
            let Ok(ist) = util::fstat(f.as_raw_fd()) else {
                continue;
            };
            if !ist.is_file() {
                continue;
            }
            let uri = format!("{path}{name}");
            return serve_file(
                File::from(f),
                &ist,
                &fs_path.join(name),
                &uri,
                mime,
                cx,
                cache,
            );
        }
        if loc.autoindex {
            let max = usize::try_from(loc.autoindex_max_entries).unwrap_or(usize::MAX);
            // Read off the loop's thread by the file task (`Op::ListDir`), from a duplicate
            // of the directory's fd.
            return match util::dup_fd(raw) {
                Ok(dir) => Static::Reply(listing_reply(dir, path, max, !nofollow, cx)),
                Err(e) => Static::Error(io_status(&e)),
            };
        }
        return Static::Error(403);
    }
    if !st.is_file() {
        // A FIFO, socket or device under the root: never read (a FIFO would block).
        return Static::Error(403);
    }
    match super::open_files::adopt(cache, loc, path, &fs_path, fd, &st, mime, cx) {
        Ok(reply) => Static::Reply(reply),
        Err(fd) => serve_file(File::from(fd), &st, &fs_path, path, mime, cx, cache),
    }
}

/// Whether an `If-Range` value still names this representation: an entity tag by strong
/// comparison (a weak tag never matches), or a date equal to Last-Modified.
fn if_range_matches(value: &[u8], v: &Validators) -> bool {
    let value = value.trim_ascii();
    if value.starts_with(b"W/") {
        return false;
    }
    if value.starts_with(b"\"") {
        return value == v.etag.as_bytes();
    }
    crate::http::date::parse_http_date(value) == Some(v.mtime)
}

/// A file-system error's status: [`crate::http::status::from_io`].
pub fn io_status(e: &std::io::Error) -> u16 {
    crate::http::status::from_io(e)
}

fn serve_file(
    file: File,
    st: &FileStat,
    fs_path: &Path,
    uri: &str,
    mime: &crate::config::Config,
    cx: &Ctx,
    cache: &mut FileCache,
) -> Static {
    if let Some(c) = cache.load(fs_path, &file, st) {
        return Static::Reply(serve_cached(&c, uri, mime, cx, cache.epoch));
    }
    let len = st.size;
    let mtime = st.mtime.0.max(0) as u64;
    let etag = super::cache::etag_of(st);
    let last_modified = crate::http::date::format_unix(mtime);
    let v = Validators {
        len,
        mtime,
        etag: &etag,
        last_modified: &last_modified,
    };
    let mut file = Some(file);
    let (status, head, offset, count) = match file_head(&v, uri, mime, cx, Body::Disk(&mut file)) {
        Ok(h) => h,
        Err(reply) => return Static::Reply(reply),
    };
    let Some(file) = file else {
        return Static::Error(500);
    };
    if cx.head_only || count == 0 {
        return Static::Reply(Reply::Full {
            status,
            head,
            body: backends::Body::Empty,
        });
    }
    // Not in the cache: the body streams through the file task (sendfile or backend reads),
    // never a blocking read of the whole file on the loop.
    Static::Reply(Reply::File {
        status,
        head,
        file: Stream::Disk(file),
        offset,
        len: count,
    })
}

/// A directory listing: read by the file task off the loop's thread, then its head (with the
/// length only the listing knows) and its body streamed in pieces.
fn listing_reply(dir: OwnedFd, uri: &str, max: usize, follow: bool, cx: &Ctx) -> Reply {
    let mut head = Vec::with_capacity(256);
    start(&mut head, 200, cx);
    header(&mut head, "Content-Type", b"text/html; charset=utf-8");
    let pending = Pending {
        dir: Some(dir),
        uri: uri.to_string(),
        max,
        follow,
        head,
        head_only: cx.head_only,
    };
    Reply::File {
        status: 200,
        head: Vec::new(),
        file: Stream::Listing(Box::new(pending)),
        offset: 0,
        len: 0,
    }
}

fn start_range(head: &mut Vec<u8>, cx: &Ctx, content_range: &str) {
    start(head, 206, cx);
    header(head, "Content-Range", content_range.as_bytes());
}
