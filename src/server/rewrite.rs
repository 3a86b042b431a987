//! What nginx does before content is produced, as far as this server has it: `try_files`
//! (nginx's try-files phase). It may change the request's URI, pick a named location or end
//! the request with a status; the caller then routes the request as usual.
//!
//! The existence checks look the name up beneath the location's root or alias, with its
//! symlink policy (`disable_symlinks on`: a link on the way is not there), from the kernel's
//! caches only where the request may be held: a miss ends the phase with
//! [`TryOutcome::Cold`], the lookup is done off the loop's thread, and the request is routed
//! again. What answers is opened later beneath the root with the same containment rule as any
//! request, so a check cannot widen what is served.

use crate::cgi::params::{expand, Vars};
use crate::config::{Location, Server, TryFallback, TryFiles};

/// What `try_files` decided.
pub enum TryOutcome<'a> {
    /// `uri` exists: it answers in the same location (the request's `$uri` becomes it).
    Found(String),
    /// Nothing exists; `=CODE`.
    Code(u16),
    /// Nothing exists; the named location answers with the URI unchanged.
    Named(&'a Location),
    /// Nothing exists; redirect internally to this path and query (method and body kept).
    Redirect(String, Option<String>),
    /// A check could not be answered from the kernel's caches: look `rel` up beneath `dir`
    /// off the loop's thread, then route the request again.
    Cold {
        dir: std::os::fd::OwnedFd,
        rel: String,
        no_symlinks: bool,
    },
}

/// Runs `tf` (the `try_files` of `loc`) for a request with `vars`.
pub fn try_files<'a>(
    server: &'a Server,
    loc: &Location,
    tf: &TryFiles,
    vars: &Vars<'_>,
    cache: &mut crate::server::reply::FileCache,
    cached: bool,
) -> TryOutcome<'a> {
    for t in &tf.files {
        let uri = expand(t, vars);
        match exists(loc, &uri, cache, cached) {
            Exists::Yes => return TryOutcome::Found(uri),
            Exists::No => {}
            Exists::Cold(c) => return c,
        }
    }
    match &tf.fallback {
        TryFallback::Code(c) => TryOutcome::Code(*c),
        // The loader checked that the name exists; a config without it cannot get here.
        TryFallback::Named(n) => match server.named_location(n) {
            Some(l) => TryOutcome::Named(l),
            None => TryOutcome::Code(500),
        },
        TryFallback::Uri(t) => {
            let target = expand(t, vars);
            let (path, query) = match target.split_once('?') {
                Some((p, q)) => (p.to_string(), Some(q.to_string())),
                None => (target, None),
            };
            // The expansion is a URI the config built (already decoded, as nginx uses it):
            // it must be absolute and must not climb.
            if !path.starts_with('/') || path.split('/').any(|s| s == "..") {
                crate::error!("try_files: fallback {path:?} is not a local absolute path");
                return TryOutcome::Code(500);
            }
            TryOutcome::Redirect(path, query.filter(|q| !q.is_empty()))
        }
    }
}

enum Exists<'a> {
    Yes,
    No,
    Cold(TryOutcome<'a>),
}

/// Whether `uri` names a file (or, ending in `/`, a directory) under `loc`'s root or alias:
/// an `O_PATH` lookup beneath it (cached-only when `cached`) and `fstat` of what it found.
fn exists<'a>(
    loc: &Location,
    uri: &str,
    cache: &mut crate::server::reply::FileCache,
    cached: bool,
) -> Exists<'a> {
    use std::os::fd::AsRawFd;
    if !uri.starts_with('/') || uri.split('/').any(|s| s == "..") {
        return Exists::No;
    }
    let Some((anchor, rel)) = crate::server::reply::resolve(loc, uri) else {
        return Exists::No;
    };
    let Ok(anchor) = cache.anchor(&anchor) else {
        return Exists::No;
    };
    let no_symlinks = loc.disable_symlinks == crate::config::Symlinks::Refuse;
    let name = std::ffi::OsStr::new(if rel.is_empty() { "." } else { rel.as_str() });
    let flags = backends::util::O_LOOKUP;
    let found = if cached {
        crate::server::lookups::open_cached(anchor.as_raw_fd(), name, flags, no_symlinks)
    } else {
        backends::util::open_beneath(anchor.as_raw_fd(), name, flags, 0, no_symlinks)
    };
    let fd = match found {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
            return match backends::util::dup_fd(anchor.as_raw_fd()) {
                Ok(dir) => Exists::Cold(TryOutcome::Cold {
                    dir,
                    rel,
                    no_symlinks,
                }),
                Err(_) => Exists::No,
            };
        }
        Err(_) => return Exists::No,
    };
    match backends::util::fstat(fd.as_raw_fd()) {
        Ok(st) if uri.ends_with('/') => bool_exists(st.is_dir()),
        Ok(st) => bool_exists(st.is_file()),
        Err(_) => Exists::No,
    }
}

fn bool_exists<'a>(yes: bool) -> Exists<'a> {
    if yes {
        Exists::Yes
    } else {
        Exists::No
    }
}

/// The values a template may use, owned for the time of one routing decision (the borrowed
/// [`Vars`] point into it).
pub struct VarsOwned {
    pub uri: String,
    pub request_uri: String,
    pub args: String,
    pub document_root: String,
    pub request_filename: String,
    pub host: String,
    pub server_name: String,
    pub server_port: u16,
    pub https: bool,
    pub remote_addr: String,
    pub request_method: &'static str,
    pub content_type: String,
    pub content_length: String,
    pub captures: Vec<String>,
}

impl VarsOwned {
    pub fn vars(&self) -> Vars<'_> {
        Vars {
            uri: &self.uri,
            request_uri: &self.request_uri,
            args: &self.args,
            document_root: &self.document_root,
            request_filename: &self.request_filename,
            host: &self.host,
            server_name: &self.server_name,
            server_port: self.server_port,
            https: self.https,
            remote_addr: &self.remote_addr,
            request_method: self.request_method,
            content_type: &self.content_type,
            content_length: &self.content_length,
            captures: &self.captures,
            log: None,
        }
    }

    /// Points the location-dependent values (`$uri`, `$document_root`, `$request_filename`)
    /// at `uri` under `loc`.
    pub fn set_location(&mut self, loc: &Location, uri: &str) {
        uri.clone_into(&mut self.uri);
        self.document_root = match &loc.docroot {
            crate::config::DocRoot::Root(d) => d.to_string_lossy().into_owned(),
            crate::config::DocRoot::Alias { dir, .. } => dir.to_string_lossy().into_owned(),
        };
        self.captures.clear();
        if let Some(c) = loc.regex.as_ref().and_then(|r| r.captures(uri)) {
            self.captures.extend(
                c.iter()
                    .map(|m| m.map_or(String::new(), |m| m.as_str().to_string())),
            );
        }
        self.request_filename = crate::server::reply::map(loc, uri)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
    }
}
