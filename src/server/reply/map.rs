//! URI → file: the root or alias of a location, or its upload store, with the containment rule.

use std::path::{Path, PathBuf};

use crate::config::Location;

/// Whether the part of a URI that is appended to a root, alias or upload store is free of `..`
/// segments. A normalised URI has none of its own, but a location prefix without a trailing
/// slash can glue onto one: `location /img { alias /data/images/; }` and `/img../secret` give
/// `/data/images/../secret` (the alias "off-by-slash" escape). Such a request maps to nothing.
fn contained(rest: &str) -> bool {
    // Byte segments: short paths, where str's char searcher costs more than the scan.
    !rest
        .as_bytes()
        .split(|&b| b == b'/')
        .any(|seg| seg == b"..")
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

/// [`map`] into `out` (its capacity reused); false if the mapping would leave the root.
pub fn map_into(loc: &Location, uri: &str, out: &mut PathBuf) -> bool {
    let rest = match &loc.docroot {
        crate::config::DocRoot::Root(_) => uri,
        crate::config::DocRoot::Alias { strip, .. } => {
            uri.strip_prefix(strip.as_str()).unwrap_or(uri)
        }
    };
    if !contained(rest) {
        return false;
    }
    loc.map_path_into(uri, out);
    true
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

/// The directory a location's files are resolved beneath (its root, or its alias) and the
/// relative path of `uri` in it: the kernel then keeps resolution beneath the directory
/// (`openat2(RESOLVE_BENEATH)`), whatever the relative part or a symlink says. `None` when the
/// string check above already refuses it.
pub fn resolve(loc: &Location, uri: &str) -> Option<(PathBuf, String)> {
    let (anchor, rel) = resolve_ref(loc, uri)?;
    Some((anchor.to_path_buf(), rel.to_string()))
}

/// [`resolve`] without a copy: the directory borrowed from the location, the relative path
/// from the URI (the open-file cache looks entries up with it, allocating nothing).
pub fn resolve_ref<'a>(loc: &'a Location, uri: &'a str) -> Option<(&'a Path, &'a str)> {
    let (anchor, rest) = match &loc.docroot {
        crate::config::DocRoot::Root(dir) => (dir.as_path(), uri),
        crate::config::DocRoot::Alias { dir, strip } if strip.is_empty() => {
            // A regex location's alias names the file itself: resolve its last component in
            // its parent.
            return Some((dir.parent()?, dir.file_name()?.to_str()?));
        }
        crate::config::DocRoot::Alias { dir, strip } => (
            dir.as_path(),
            uri.strip_prefix(strip.as_str()).unwrap_or(uri),
        ),
    };
    if !contained(rest) {
        return None;
    }
    let rel = rest.trim_start_matches('/');
    Some((anchor, if rel.is_empty() { "." } else { rel }))
}

/// Like [`upload_target`], split into the store and the relative path in it (`""`: the store
/// itself).
pub fn upload_rel(loc: &Location, uri: &str) -> Option<(PathBuf, String)> {
    let store = loc.upload_store.as_ref()?;
    let prefix = loc.pattern.trim_end_matches('/');
    let rest = uri.strip_prefix(prefix).unwrap_or(uri);
    if !contained(rest) {
        return None;
    }
    Some((store.clone(), rest.trim_start_matches('/').to_string()))
}
