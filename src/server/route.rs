//! Which answer a request gets: the decision, from the configuration and the file system, made
//! once the head is parsed. It returns a [`Route`]; the connection turns it into a task.

use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::gauges::Gauges;
use super::reply::{self, Ctx, Reply, Static};
use super::task::cgi::plan::CgiPlan;
use crate::config::{Config, Location, Server};
use crate::handlers::atomic_file::StoreDir;
use crate::http::request::{BodyKind, Method};

/// The decision.
pub enum Route {
    /// An answer ready now (in memory, or a file to stream).
    Reply(Reply),
    /// An error status (with extra headers such as `Allow`), answered with its error page.
    Error(u16, Vec<(String, String)>),
    /// Store the body: a PUT to `dest`, or a POST under a generated name in `dest`'s directory.
    Upload {
        dir: StoreDir,
        dest: PathBuf,
        replace: bool,
        /// PUT: a regular file of that name is there now (a 204, not a 201).
        existed: bool,
        uri_dir: String,
    },
    /// A multipart/form-data upload into `dir`.
    Multipart {
        boundary: String,
        dir: StoreDir,
        uri_dir: String,
    },
    /// Remove a file (a DELETE, checked): the unlink op and, for the log, what it removes.
    Delete(backends::Op, String),
    /// Run a CGI.
    Cgi(CgiPlan),
    /// A file lookup would wait for the disk: do it off the loop's thread, then route again
    /// (see `task::lookup`).
    Lookup {
        dir: std::os::fd::OwnedFd,
        rel: String,
        no_symlinks: bool,
    },
}

/// What the decision needs besides the configuration.
pub struct Input<'a> {
    pub cfg: &'a Config,
    pub server: &'a Server,
    pub loc: &'a Location,
    pub method: Method,
    pub body: BodyKind,
    pub path: &'a str,
    pub content_type: Option<&'a str>,
    pub cgi: Option<CgiPlan>,
    /// For the `status` page.
    pub gauges: &'a Gauges,
    pub backend: &'a dyn backends::Backend,
    /// For `?format=prometheus`: every worker's state, and this worker's slot in it.
    pub metrics: &'a super::metrics::Registry,
    pub worker: usize,
    /// For `return` targets with variables (`None` when none has any).
    pub vars: Option<&'a crate::cgi::params::Vars<'a>>,
}

pub fn route(x: Input<'_>, cx: &Ctx, cache: &mut reply::FileCache) -> Route {
    let Input {
        cfg,
        server,
        loc,
        method,
        body,
        path,
        ..
    } = x;
    let none = crate::cgi::params::Vars::default();
    let vars = x.vars.unwrap_or(&none);
    let ret = |r: &crate::config::Return| {
        let target = r
            .target
            .as_ref()
            .map(|t| crate::cgi::params::expand(t, vars));
        Route::Reply(reply::ret(r.code, target.as_deref(), cx))
    };
    if let Some(r) = &server.ret {
        return ret(r);
    }
    if !loc.allows(method.as_str()) {
        let allow = loc
            .allow_methods
            .map(|m| m.allow_header())
            .unwrap_or_default();
        return Route::Error(405, vec![("Allow".into(), allow)]);
    }
    if let Some(r) = &loc.ret {
        return ret(r);
    }
    if loc.status {
        let format = |f: &str| cx.query.is_some_and(|q| q.split('&').any(|p| p == f));
        let (ty, text) = if format("format=prometheus") {
            let own = super::metrics::WorkerState {
                active: x.gauges.active as u64,
                reading: x.gauges.reading as u64,
                writing: x.gauges.writing as u64,
                idle: x.gauges.idle as u64,
                accepted: x.gauges.accepted,
                stats: Some(x.backend.stats()),
                backend: x.backend.name(),
            };
            (
                "text/plain; version=0.0.4; charset=utf-8",
                x.metrics.render(x.worker, own),
            )
        } else {
            status_page(x.gauges, x.backend, format("format=json"))
        };
        return Route::Reply(reply::full(
            200,
            ty,
            text.into_bytes(),
            &[("Cache-Control", b"no-store")],
            cx,
        ));
    }
    if let BodyKind::Length(n) = body {
        let limit = loc.client_max_body_size;
        if limit != 0 && n > limit {
            return Route::Error(413, Vec::new());
        }
    }
    if let Some(plan) = x.cgi {
        return Route::Cgi(plan);
    }
    match method {
        Method::Get | Method::Head => match reply::serve_static(path, loc, cfg, cx, cache) {
            Static::Reply(r) => Route::Reply(r),
            Static::Error(code) => Route::Error(code, Vec::new()),
            Static::Lookup {
                dir,
                rel,
                no_symlinks,
            } => Route::Lookup {
                dir,
                rel,
                no_symlinks,
            },
        },
        // RFC 9110 §15.5.12: an upload must say how long it is (Content-Length, even 0, or
        // chunked).
        Method::Put | Method::Post if loc.upload_store.is_some() && body == BodyKind::None => {
            Route::Error(411, Vec::new())
        }
        Method::Put | Method::Post if loc.upload_store.is_some() => {
            let ct = x.content_type.unwrap_or("");
            let is_form = ct
                .split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("multipart/form-data"));
            match (method, crate::handlers::multipart::boundary(ct)) {
                (Method::Post, Some(b)) => multipart_route(loc, path, b, cx, cache),
                // RFC 7578 §4.1: the boundary parameter is required (RFC 2046 §5.1.1: 1–70
                // characters); a form without a usable one cannot be split into its parts.
                (Method::Post, None) if is_form => Route::Error(400, Vec::new()),
                _ => upload_route(loc, method, path, cx, cache),
            }
        }
        // DELETE changes files: only where uploads are enabled or the location lists DELETE
        // explicitly (nginx without DAV answers 405).
        Method::Delete
            if loc.upload_store.is_some()
                || loc.allow_methods.is_some_and(|m| m.allows("DELETE")) =>
        {
            delete(loc, path, cx, cache)
        }
        _ => {
            let allow = loc
                .allow_methods
                .map(|m| m.allow_header())
                .unwrap_or_else(|| "GET, HEAD".into());
            Route::Error(405, vec![("Allow".into(), allow)])
        }
    }
}

fn dir_uri(path: &str) -> String {
    let mut uri = path.to_string();
    if !uri.ends_with('/') {
        uri.push('/');
    }
    uri
}

/// The status for a failure to open a directory in an upload store: a symlink on the way
/// (`ELOOP`, never followed in a store) or an escape (`EXDEV`) is 403, a missing or non-directory
/// parent 409 (as nginx's DAV module), the rest as any file error.
fn store_status(e: &io::Error) -> u16 {
    match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::EXDEV) | Some(libc::EPERM) => 403,
        Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::EISDIR) => 409,
        _ => reply::static_file::io_status(e),
    }
}

/// A lookup in an upload store that the kernel's caches could not answer (`EAGAIN` from a
/// cached-only lookup): the request is held while `rel` is looked up off the loop's thread,
/// then routed again.
struct Cold(Route);

/// `rel` beneath the store (or root) `anchor` (the cache keeps its fd open), no symlink
/// followed, with `flags`: from the kernel's caches only when `cx.cached_lookups` (a miss is
/// [`Cold`], to look `rel` up off the loop), else a plain contained open.
fn store_open(
    cache: &mut reply::FileCache,
    cx: &Ctx,
    anchor: &Path,
    rel: &str,
    flags: libc::c_int,
) -> Result<io::Result<std::os::fd::OwnedFd>, Cold> {
    let fd = match cache.anchor(anchor) {
        Ok(fd) => fd,
        Err(e) => return Ok(Err(e)),
    };
    let rel = if rel.is_empty() { "." } else { rel };
    let name = std::ffi::OsStr::new(rel);
    if !cx.cached_lookups {
        return Ok(backends::util::open_beneath(
            fd.as_raw_fd(),
            name,
            flags,
            0,
            true,
        ));
    }
    match crate::server::lookups::open_cached(fd.as_raw_fd(), name, flags, true) {
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
            Err(Cold(match backends::util::dup_fd(fd.as_raw_fd()) {
                Ok(dir) => Route::Lookup {
                    dir,
                    rel: rel.to_string(),
                    no_symlinks: true,
                },
                Err(e) => Route::Error(reply::static_file::io_status(&e), Vec::new()),
            }))
        }
        r => Ok(r),
    }
}

/// Directory `rel` beneath the store (or root) `anchor` (see [`store_open`]).
fn open_store(
    cache: &mut reply::FileCache,
    cx: &Ctx,
    anchor: &Path,
    rel: &str,
) -> Result<io::Result<StoreDir>, Cold> {
    let r = store_open(cache, cx, anchor, rel, libc::O_RDONLY | libc::O_DIRECTORY)?;
    Ok(r.map(StoreDir::from_fd))
}

/// What one name in a store directory is, found with a cached-only lookup where the request
/// may be held (no `fstatat` that can wait for the disk on the loop): `Ok(None)` when there
/// is nothing, a symlink reads as `ELOOP` (it is never followed in a store).
fn stat_in_store(
    dir: &StoreDir,
    cx: &Ctx,
    name: &str,
    lookup: Route,
) -> Result<io::Result<Option<backends::util::FileStat>>, Cold> {
    let os = std::ffi::OsStr::new(name);
    let r = if cx.cached_lookups {
        crate::server::lookups::open_cached(dir.fd(), os, backends::util::O_LOOKUP, true)
    } else {
        backends::util::open_beneath(dir.fd(), os, backends::util::O_LOOKUP, 0, true)
    };
    match r {
        Ok(fd) => Ok(backends::util::fstat(fd.as_raw_fd()).map(Some)),
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Err(Cold(lookup)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Ok(None)),
        Err(e) => Ok(Err(e)),
    }
}

/// The held-request route for a cold lookup of `rel` beneath the store `anchor`.
fn cold_route(cache: &mut reply::FileCache, anchor: &Path, rel: &str) -> Route {
    let dir = cache
        .anchor(anchor)
        .and_then(|fd| backends::util::dup_fd(fd.as_raw_fd()));
    match dir {
        Ok(dir) => Route::Lookup {
            dir,
            rel: rel.to_string(),
            no_symlinks: true,
        },
        Err(e) => Route::Error(reply::static_file::io_status(&e), Vec::new()),
    }
}

/// Whether a path in an upload store names a dot-file (or goes through a dot-directory): the
/// store's temp files are `.upload-*.tmp`, so a PUT or DELETE of such a name could replace or
/// remove another upload in flight, and hidden files are not listed. Refused with 400.
fn hidden(rel: &str) -> bool {
    rel.split('/').any(|c| c.starts_with('.'))
}

/// `rel` split into its directory part and its last component.
fn split_last(rel: &str) -> (&str, &str) {
    match rel.rfind('/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => ("", rel),
    }
}

/// RFC 9110 §13.2.2 for a PUT or DELETE of the file `st` describes (`None`: there is none):
/// `If-Match`, `If-Unmodified-Since` and `If-None-Match` (a match is 412 for these methods).
fn precondition_failed(cx: &Ctx, st: Option<&backends::util::FileStat>) -> bool {
    let tag = st.map(reply::cache::etag_of);
    let current = st
        .zip(tag.as_deref())
        .map(|(s, t)| (t, s.mtime.0.max(0) as u64));
    crate::http::range::precondition_failed(
        cx.if_match,
        cx.if_unmodified_since,
        cx.if_none_match,
        current,
    )
}

fn upload_route(
    loc: &Location,
    method: Method,
    path: &str,
    cx: &Ctx,
    cache: &mut reply::FileCache,
) -> Route {
    // upload_store is set here, so no target means the path would leave the store.
    let Some((store, rel)) = reply::upload_rel(loc, path) else {
        return Route::Error(404, Vec::new());
    };
    if hidden(&rel) {
        return Route::Error(400, Vec::new());
    }
    let (dir_rel, name, replace, uri_dir) = if method == Method::Put {
        if path.ends_with('/') || rel.is_empty() {
            return Route::Error(409, Vec::new());
        }
        let (d, n) = split_last(&rel);
        (d.to_string(), n.to_string(), true, String::new())
    } else {
        // POST: a generated name in the directory the URI names.
        let name = format!(
            "upload-{}-{:08x}",
            crate::http::date::unix_secs(SystemTime::now()),
            crate::handlers::atomic_file::random_u32()
        );
        (
            rel.trim_end_matches('/').to_string(),
            name,
            false,
            dir_uri(path),
        )
    };
    let dir = match open_store(cache, cx, &store, &dir_rel) {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => return Route::Error(store_status(&e), Vec::new()),
        Err(Cold(r)) => return r,
    };
    let mut existed = false;
    if replace {
        // Only a regular file is replaced: a directory is 409, a symlink or a special file
        // 403 — checked now so the client is not asked for a body it cannot store.
        let st = match stat_in_store(&dir, cx, &name, cold_route(cache, &store, &rel)) {
            Ok(Ok(st)) => st,
            Ok(Err(e)) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Route::Error(403, Vec::new())
            }
            Ok(Err(e)) => return Route::Error(store_status(&e), Vec::new()),
            Err(Cold(r)) => return r,
        };
        existed = st.is_some();
        match &st {
            Some(st) if st.is_dir() => return Route::Error(409, Vec::new()),
            Some(st) if !st.is_file() => return Route::Error(403, Vec::new()),
            _ => {}
        }
        if precondition_failed(cx, st.as_ref()) {
            return Route::Error(412, Vec::new());
        }
    }
    Route::Upload {
        dir,
        dest: store.join(&dir_rel).join(&name),
        replace,
        existed,
        uri_dir,
    }
}

fn multipart_route(
    loc: &Location,
    path: &str,
    boundary: String,
    cx: &Ctx,
    cache: &mut reply::FileCache,
) -> Route {
    let Some((store, rel)) = reply::upload_rel(loc, path) else {
        return Route::Error(404, Vec::new());
    };
    if hidden(&rel) {
        return Route::Error(400, Vec::new());
    }
    let rel = rel.trim_end_matches('/');
    match open_store(cache, cx, &store, rel) {
        Ok(Ok(dir)) => Route::Multipart {
            boundary,
            dir,
            uri_dir: dir_uri(path),
        },
        Ok(Err(e)) => Route::Error(store_status(&e), Vec::new()),
        Err(Cold(r)) => r,
    }
}

fn delete(loc: &Location, path: &str, cx: &Ctx, cache: &mut reply::FileCache) -> Route {
    // Through the upload store where there is one, else the same mapping as GET; a path that
    // would leave either maps to nothing. Resolved beneath the directory with no symlink
    // followed, and a symlink itself is not removed either (403): one policy for writes and
    // deletes.
    let found = if loc.upload_store.is_some() {
        reply::upload_rel(loc, path)
    } else {
        reply::resolve(loc, path)
    };
    let Some((anchor, rel)) = found else {
        return Route::Error(404, Vec::new());
    };
    if loc.upload_store.is_some() && hidden(&rel) {
        return Route::Error(400, Vec::new());
    }
    let (dir_rel, name) = split_last(rel.trim_end_matches('/'));
    if name.is_empty() || name == "." {
        return Route::Error(403, Vec::new());
    }
    let dir = match open_store(cache, cx, &anchor, dir_rel) {
        Ok(Ok(d)) => d,
        Ok(Err(e)) if e.kind() == io::ErrorKind::NotFound => return Route::Error(404, Vec::new()),
        Ok(Err(e)) => return Route::Error(store_status(&e), Vec::new()),
        Err(Cold(r)) => return r,
    };
    let full = rel.trim_end_matches('/');
    let st = match stat_in_store(&dir, cx, name, cold_route(cache, &anchor, full)) {
        Ok(st) => st,
        Err(Cold(r)) => return r,
    };
    let name = std::ffi::OsStr::new(name);
    match st {
        Ok(None) => Route::Error(404, Vec::new()),
        Err(_) => Route::Error(403, Vec::new()),
        Ok(Some(st)) if !st.is_file() => Route::Error(403, Vec::new()),
        Ok(Some(st)) if precondition_failed(cx, Some(&st)) => Route::Error(412, Vec::new()),
        Ok(Some(_)) => match crate::handlers::atomic_file::unlink_op(&dir, name) {
            Ok(op) => Route::Delete(op, rel.to_string()),
            Err(e) => Route::Error(reply::static_file::io_status(&e), Vec::new()),
        },
    }
}

/// The `status` page (like nginx's stub_status, plus the backend's counters).
fn status_page(g: &Gauges, be: &dyn backends::Backend, json: bool) -> (&'static str, String) {
    let st = &be.stats();
    let backend = be.name();
    let ops: Vec<(&str, u64)> = backends::OpKind::ALL
        .iter()
        .map(|k| (k.name(), st.submitted[*k as usize]))
        .collect();
    if json {
        let ops_json: Vec<String> = ops.iter().map(|(n, v)| format!("\"{n}\":{v}")).collect();
        let body = format!(
            "{{\"backend\":\"{}\",\"connections\":{{\"active\":{},\"reading\":{},\"writing\":{},\"idle\":{}}},\"accepted\":{},\"requests\":{},\"ops_submitted\":{{{}}},\"kernel_entries\":{},\"waits\":{},\"completions\":{},\"completions_per_wait\":{:.3},\"max_completions_per_wait\":{},\"recv_buffers_in_use\":{},\"recv_buffers_total\":{}}}\n",
            backend, g.active, g.reading, g.writing, g.idle, g.accepted, g.requests,
            ops_json.join(","), st.enters, st.waits, st.completions, st.completions_per_wait(),
            st.max_per_wait, st.bufs_in_use, st.bufs_total
        );
        ("application/json", body)
    } else {
        let ops_txt: Vec<String> = ops.iter().map(|(n, v)| format!("{n}={v}")).collect();
        let body = format!(
            "Active connections: {}\nReading: {} Writing: {} Waiting: {}\naccepted {} requests {}\nbackend {}: ops submitted {}\nkernel entries {} waits {} completions {} per wait {:.3} (max {})\nrecv buffers in use {} of {}\n",
            g.active, g.reading, g.writing, g.idle, g.accepted, g.requests, backend,
            ops_txt.join(" "), st.enters, st.waits, st.completions, st.completions_per_wait(),
            st.max_per_wait, st.bufs_in_use, st.bufs_total
        );
        ("text/plain; charset=utf-8", body)
    }
}

/// Whether index URI `u` of `loc` names a regular file: looked up beneath the location's root
/// or alias with its symlink policy, from the kernel's caches only when `cached` (a miss holds
/// the request: the `Route::Lookup` to do).
pub fn index_is_file(
    cache: &mut crate::server::reply::FileCache,
    loc: &crate::config::Location,
    u: &str,
    cached: bool,
) -> Result<bool, Route> {
    use std::os::fd::AsRawFd;
    let Some((anchor, rel)) = crate::server::reply::map::resolve_ref(loc, u) else {
        return Ok(false);
    };
    let Ok(dir) = cache.anchor(anchor) else {
        return Ok(false);
    };
    let nofollow = loc.disable_symlinks == crate::config::Symlinks::Refuse;
    let (name, flags) = (std::ffi::OsStr::new(rel), backends::util::O_LOOKUP);
    let r = if cached {
        crate::server::lookups::open_cached(dir.as_raw_fd(), name, flags, nofollow)
    } else {
        backends::util::open_beneath(dir.as_raw_fd(), name, flags, 0, nofollow)
    };
    match r {
        Ok(fd) => Ok(backends::util::fstat(fd.as_raw_fd()).is_ok_and(|st| st.is_file())),
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
            match backends::util::dup_fd(dir.as_raw_fd()) {
                Ok(dir) => Err(Route::Lookup {
                    dir,
                    rel: rel.to_string(),
                    no_symlinks: nofollow,
                }),
                Err(e) => Err(Route::Error(
                    crate::server::reply::static_file::io_status(&e),
                    Vec::new(),
                )),
            }
        }
        Err(_) => Ok(false),
    }
}
