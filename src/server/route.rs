//! Which answer a request gets: the decision, from the configuration and the file system, made
//! once the head is parsed. It returns a [`Route`]; the connection turns it into a task.

use std::io;
use std::path::PathBuf;
use std::time::SystemTime;

use super::gauges::Gauges;
use super::reply::{self, Ctx, Reply, Static};
use super::task::cgi::plan::CgiPlan;
use crate::config::{Config, Location, Server};
use crate::handlers::atomic_file::AtomicFile;
use crate::http::request::{BodyKind, Method};

/// The decision.
pub enum Route {
    /// An answer ready now (in memory, or a file to stream).
    Reply(Reply),
    /// An error status (with extra headers such as `Allow`), answered with its error page.
    Error(u16, Vec<(String, String)>),
    /// Store the body: a PUT to `dest`, or a POST under a generated name in `dest`'s directory.
    Upload {
        file: AtomicFile,
        dest: PathBuf,
        replace: bool,
        uri_dir: String,
    },
    /// A multipart/form-data upload into `dir`.
    Multipart {
        boundary: String,
        dir: PathBuf,
        uri_dir: String,
    },
    /// Run a CGI.
    Cgi(CgiPlan),
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
    if let Some(r) = &server.ret {
        return Route::Reply(reply::ret(r.code, r.target.as_deref(), cx));
    }
    if !loc.allows(method.as_str()) {
        let allow = loc
            .allow_methods
            .map(|m| m.allow_header())
            .unwrap_or_default();
        return Route::Error(405, vec![("Allow".into(), allow)]);
    }
    if let Some(r) = &loc.ret {
        return Route::Reply(reply::ret(r.code, r.target.as_deref(), cx));
    }
    if loc.status {
        let json = cx
            .query
            .is_some_and(|q| q.split('&').any(|p| p == "format=json"));
        let (ty, text) = status_page(x.gauges, x.backend, json);
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
        },
        // RFC 9110 §15.5.12: an upload must say how long it is (Content-Length, even 0, or
        // chunked).
        Method::Put | Method::Post if loc.upload_store.is_some() && body == BodyKind::None => {
            Route::Error(411, Vec::new())
        }
        Method::Put | Method::Post if loc.upload_store.is_some() => {
            let multipart = x
                .content_type
                .and_then(crate::handlers::multipart::boundary);
            match (method, multipart) {
                (Method::Post, Some(b)) => multipart_route(loc, path, b),
                _ => upload_route(loc, method, path),
            }
        }
        // DELETE changes files: only where uploads are enabled or the location lists DELETE
        // explicitly (nginx without DAV answers 405).
        Method::Delete
            if loc.upload_store.is_some()
                || loc.allow_methods.is_some_and(|m| m.allows("DELETE")) =>
        {
            delete(loc, path, cx)
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

fn upload_route(loc: &Location, method: Method, path: &str) -> Route {
    // upload_store is set here, so no target means the path would leave the store.
    let Some(target) = reply::upload_target(loc, path) else {
        return Route::Error(404, Vec::new());
    };
    let (dest, replace, dir, uri_dir) = if method == Method::Put {
        if path.ends_with('/') {
            return Route::Error(409, Vec::new());
        }
        let dir = target.parent().map(PathBuf::from).unwrap_or_default();
        (target, true, dir, String::new())
    } else {
        // POST: a generated name in the directory the URI names.
        let name = format!(
            "upload-{}-{:x}",
            crate::http::date::unix_secs(SystemTime::now()),
            rand_u64() & 0xffff_ffff
        );
        (target.join(name), false, target, dir_uri(path))
    };
    if !dir.is_dir() || dest.is_dir() {
        return Route::Error(409, Vec::new());
    }
    match AtomicFile::create_in(&dir) {
        Ok(file) => Route::Upload {
            file,
            dest,
            replace,
            uri_dir,
        },
        Err(e) => {
            crate::error!("upload temp file in {}: {e}", dir.display());
            Route::Error(500, Vec::new())
        }
    }
}

fn multipart_route(loc: &Location, path: &str, boundary: String) -> Route {
    let Some(dir) = reply::upload_target(loc, path) else {
        return Route::Error(404, Vec::new());
    };
    if !dir.is_dir() {
        return Route::Error(409, Vec::new());
    }
    Route::Multipart {
        boundary,
        dir,
        uri_dir: dir_uri(path),
    }
}

fn delete(loc: &Location, path: &str, cx: &Ctx) -> Route {
    // Through the upload store where there is one, else the same mapping as GET; a path that
    // would leave either maps to nothing.
    let target = if loc.upload_store.is_some() {
        reply::upload_target(loc, path)
    } else {
        reply::map(loc, path)
    };
    let Some(target) = target else {
        return Route::Error(404, Vec::new());
    };
    match std::fs::symlink_metadata(&target) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Route::Error(404, Vec::new()),
        Err(_) => Route::Error(403, Vec::new()),
        Ok(m) if !m.is_file() => Route::Error(403, Vec::new()),
        Ok(_) => match std::fs::remove_file(&target) {
            Ok(()) => Route::Reply(reply::full(204, "text/plain", Vec::new(), &[], cx)),
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

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}
