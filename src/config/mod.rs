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
//! works anywhere and is relative to the including file's directory. Loading stops at the first
//! error, reported as `FILE:LINE:COL: message` at the offending token.
//!
//! Departures from nginx, each deliberate: `default_type` is application/octet-stream (nginx's
//! documented default, not the text/plain of its sample config); `worker_connections` defaults to
//! 10240; timeouts, logs and `types` are global (http level only); regex server names are
//! rejected; named (`@x`) locations stand at server level and are reached only from `try_files`
//! and `error_page` (a missing one is a load error, not nginx's 500 per request); `alias` in a
//! regex location is used as the whole path, with the location's `$1`… substituted. Variables (`template.rs`, a fixed list) are expanded
//! in `cgi_param`, `try_files`, `return`, `add_header`, a regex location's `alias`, and
//! `log_format` (which also has the log-only ones); elsewhere (`root`, say) a `$` is literal.

mod build;
mod directives;
mod error;
mod headers;
mod include;
mod lexer;
mod listen;
mod log_format;
mod mime;
mod model;
mod route;
mod settings;
mod template;
mod tree;
mod try_files;
mod values;
mod vhost;

#[cfg(test)]
mod cgi_param_tests;
#[cfg(test)]
mod tests;

use std::path::Path;

pub use build::DEFAULT_WORKER_CONNECTIONS;
pub use error::{ConfigError, Pos};
pub use headers::{AddHeader, Expires};
pub use log_format::{escape_into, LogEscape, LogFormat};
pub use model::{
    AddrServers, BackendChoice, Cgi, CgiParam, Config, DocRoot, ErrorLog, ErrorPage,
    ErrorPageStatus, Listen, Location, LogLevel, Methods, Modifier, Return, Server, ServerName,
    Symlinks, Timeouts, TryFallback, TryFiles, Workers, DEFAULT_AUTOINDEX_MAX_ENTRIES,
};
pub use settings::{DEFAULT_CGI_TIMEOUT, DEFAULT_CLIENT_MAX_BODY_SIZE};
pub use template::{Piece, Template, TemplateError, Variable, LOG_VARIABLES, VARIABLES};
pub use vhost::normalize_host;

/// Reads and resolves the config file at `path`; relative paths in it resolve against `prefix`
/// (includes against the including file's directory).
pub fn load(path: &Path, prefix: &Path) -> Result<Config, ConfigError> {
    let name = path.to_string_lossy();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            &name,
            Pos::default(),
            format!("cannot read config file: {e}"),
        )
    })?;
    let dir = path.parent().unwrap_or(Path::new(""));
    let tree = tree::parse(&text, &name, dir)?;
    build::build(&tree, prefix)
}

/// Resolves config `text`; `file_name` labels errors and its directory anchors `include`
/// (when it has none, `prefix` does).
pub fn parse_str(text: &str, file_name: &str, prefix: &Path) -> Result<Config, ConfigError> {
    let dir = match Path::new(file_name).parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => prefix,
    };
    let tree = tree::parse(text, file_name, dir)?;
    build::build(&tree, prefix)
}
