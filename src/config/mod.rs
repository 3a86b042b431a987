//! nginx-syntax configuration: loading, validation, inheritance, and request routing.
//!
//! ```text
//! text ──lexer──▶ tokens ──tree (+include)──▶ directives ──build──▶ Config
//!                                                                   │ select_server  (vhost.rs)
//!                                                                   │ select_location (route.rs)
//!                                                                   └ mime_type      (mime.rs)
//! ```
//!
//! The result is fully *resolved*: http → server → location → nested-location inheritance is
//! applied at load (`settings.rs`), relative paths are made absolute against `prefix`, and the
//! routing tables are prebuilt, so the request path never walks parents or re-parses anything.
//!
//! The `http { }` wrapper is optional: its directives may stand at the top level. `include GLOB`
//! works anywhere and is relative to the including file's directory. Every finding is reported
//! as `FILE:LINE:COL: error: message` (or `warning:`) at the offending token (`error.rs`);
//! loading goes on after an error where it can, so [`load_all`] returns every diagnostic.
//!
//! Departures from nginx, each deliberate: `default_type` is application/octet-stream (nginx's
//! documented default, not the text/plain of its sample config); `worker_connections` defaults to
//! 10240; timeouts, logs, `types`, the request-head limits (`client_header_buffer_size`,
//! `large_client_header_buffers`, `limits.rs`) and `server_tokens` are global (http level
//! only); a configuration without any `server` is refused; regex server names are rejected;
//! named (`@x`) locations stand at server level and are reached only from `try_files` and
//! `error_page` (a missing one is a load error, not nginx's 500 per request); `alias` in a
//! regex location is used as the whole path, with the location's `$1`… substituted. Variables
//! (`template.rs`, a fixed list) are expanded in `cgi_param`, `try_files`, `return`,
//! `add_header`, a regex location's `alias`, and `log_format` (which also has the log-only
//! ones); elsewhere (`root`, say) a `$` is literal.

mod build;
mod directives;
mod error;
mod fasthash;
mod headers;
mod include;
mod lexer;
mod limits;
mod listen;
mod log_format;
pub(crate) mod mime;
mod model;
mod route;
mod settings;
mod template;
mod tls;
mod tree;
mod try_files;
mod values;
mod vhost;

#[cfg(test)]
mod cgi_param_tests;
#[cfg(test)]
mod diagnostics_tests;
#[cfg(test)]
mod proxy_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;

use std::path::Path;

pub use build::DEFAULT_WORKER_CONNECTIONS;
pub use error::{ConfigError, Diagnostics, Pos, Severity};
pub use headers::{AddHeader, Expires};
pub use log_format::{escape_into, LogEscape, LogFormat};
pub use model::{
    AddrServers, BackendChoice, Cgi, CgiParam, Config, DocRoot, ErrorLog, ErrorPage,
    ErrorPageStatus, Listen, Location, LogLevel, Methods, Modifier, OpenFileCache, Return, Server,
    ServerName, Symlinks, Timeouts, TryFallback, TryFiles, Workers, DEFAULT_AUTOINDEX_MAX_ENTRIES,
};
pub use settings::{DEFAULT_CGI_TIMEOUT, DEFAULT_CLIENT_MAX_BODY_SIZE};
pub use template::{Piece, Template, TemplateError, Variable, LOG_VARIABLES, VARIABLES};
pub use vhost::normalize_host;

/// A loaded configuration and the warnings found on the way.
pub type Loaded = (Config, Diagnostics);

/// Reads and resolves the config file at `path`; relative paths in it resolve against `prefix`
/// (includes against the including file's directory). On failure, the first error.
pub fn load(path: &Path, prefix: &Path) -> Result<Config, ConfigError> {
    load_all(path, prefix).map(|(c, _)| c).map_err(first)
}

/// As [`load`], with every diagnostic: `Ok` carries the warnings, `Err` every error and
/// warning in the order found (at least one error).
pub fn load_all(path: &Path, prefix: &Path) -> Result<Loaded, Diagnostics> {
    let name = path.to_string_lossy();
    let mut diags = Diagnostics::default();
    let text = read_text(path, &name, Pos::default()).map_err(|e| {
        diags.push(e);
        diags.clone()
    })?;
    let dir = path.parent().unwrap_or(Path::new(""));
    resolve_all(&text, &name, dir, prefix, diags)
}

/// Resolves config `text`; `file_name` labels errors and its directory anchors `include`
/// (when it has none, `prefix` does). On failure, the first error.
pub fn parse_str(text: &str, file_name: &str, prefix: &Path) -> Result<Config, ConfigError> {
    parse_str_all(text, file_name, prefix)
        .map(|(c, _)| c)
        .map_err(first)
}

/// As [`parse_str`], with every diagnostic (see [`load_all`]).
pub fn parse_str_all(text: &str, file_name: &str, prefix: &Path) -> Result<Loaded, Diagnostics> {
    let dir = match Path::new(file_name).parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => prefix,
    };
    resolve_all(text, file_name, dir, prefix, Diagnostics::default())
}

fn resolve_all(
    text: &str,
    name: &str,
    dir: &Path,
    prefix: &Path,
    mut diags: Diagnostics,
) -> Result<Loaded, Diagnostics> {
    let tree = tree::parse(text, name, dir, &mut diags);
    let config = match tree {
        Ok(tree) => build::build(&tree, name, prefix, &mut diags),
        Err(e) => {
            diags.push(e);
            None
        }
    };
    match config {
        Some(c) if !diags.has_errors() => Ok((c, diags)),
        _ => Err(diags),
    }
}

fn first(d: Diagnostics) -> ConfigError {
    d.first_error()
        .cloned()
        .unwrap_or_else(|| ConfigError::new("", Pos::default(), "invalid configuration"))
}

/// A config file's text. A file that is not UTF-8 is refused at the first bad byte (nginx
/// reads bytes, but every name and value this server uses is text); `at` is where the file is
/// named (an `include`), for a file that cannot be read at all.
pub(crate) fn read_text(path: &Path, named_in: &str, at: Pos) -> Result<String, ConfigError> {
    let label = path.to_string_lossy();
    let bytes = std::fs::read(path).map_err(|e| {
        if at == Pos::default() {
            ConfigError::new(&label, at, format!("cannot read config file: {e}"))
        } else {
            ConfigError::new(
                named_in,
                at,
                format!("cannot read \"{}\": {e}", path.display()),
            )
        }
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        // Safe: `good` is the valid prefix.
        let good = std::str::from_utf8(good).unwrap_or_default();
        let line = good.matches('\n').count() as u32 + 1;
        let col = good.rsplit('\n').next().unwrap_or("").chars().count() as u32 + 1;
        ConfigError::new(
            &label,
            Pos { line, col },
            "invalid UTF-8 byte in the configuration",
        )
    })
}
