//! URI → file: the root or alias of a location, or its upload store, with the containment rule.

use std::path::PathBuf;

use crate::config::Location;

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
