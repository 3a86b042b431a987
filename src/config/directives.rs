//! The directive table: every name this loader knows, where it may appear, how many arguments
//! it takes, and whether it opens a block.
//!
//! One table gives the three classic nginx errors uniformly — `unknown directive`, `"x"
//! directive is not allowed here`, `invalid number of arguments in "x" directive` — before any
//! directive-specific code runs. Contexts follow nginx's "Context:" lines, narrowed where this
//! server keeps a value only globally (timeouts, logs, types live on `Config`).

/// Where a directive stands. The top level of the file is both `MAIN` and `HTTP`, since the
/// `http { }` wrapper is optional.
pub type Ctx = u8;
pub const MAIN: Ctx = 1;
pub const HTTP: Ctx = 2;
pub const SERVER: Ctx = 4;
pub const LOCATION: Ctx = 8;
pub const EVENTS: Ctx = 16;

/// A directive's shape.
pub struct Spec {
    pub name: &'static str,
    pub ctx: Ctx,
    pub min_args: usize,
    /// `usize::MAX` = no upper bound.
    pub max_args: usize,
    pub block: bool,
}

const ANY: usize = usize::MAX;
const HSL: Ctx = HTTP | SERVER | LOCATION;

const fn d(name: &'static str, ctx: Ctx, min_args: usize, max_args: usize) -> Spec {
    Spec {
        name,
        ctx,
        min_args,
        max_args,
        block: false,
    }
}

const fn b(name: &'static str, ctx: Ctx, min_args: usize, max_args: usize) -> Spec {
    Spec {
        name,
        ctx,
        min_args,
        max_args,
        block: true,
    }
}

pub static SPECS: &[Spec] = &[
    // main
    d("backend", MAIN, 1, 1),
    d("workers", MAIN, 1, 1),
    b("events", MAIN, 0, 0),
    d("worker_connections", MAIN | EVENTS, 1, 1),
    b("http", MAIN, 0, 0),
    d("error_log", MAIN | HTTP, 1, 2),
    // http (global in this server)
    d("access_log", HTTP, 1, 4),
    d("log_format", HTTP, 2, ANY),
    b("types", HTTP, 0, 0),
    d("default_type", HTTP, 1, 1),
    d("client_header_timeout", HTTP, 1, 1),
    d("client_body_timeout", HTTP, 1, 1),
    d("send_timeout", HTTP, 1, 1),
    // nginx's optional second argument (the Keep-Alive header's timeout) is accepted, ignored.
    d("keepalive_timeout", HTTP, 1, 2),
    d("keepalive_requests", HTTP, 1, 1),
    // Request-head limits (nginx: http and server; global here, as the head is read before
    // the server is known).
    d("client_header_buffer_size", HTTP, 1, 1),
    d("large_client_header_buffers", HTTP, 2, 2),
    // nginx: http, server, location; global here.
    d("server_tokens", HTTP, 1, 1),
    // The open-file cache (issue 12): http level only (nginx: also server and location).
    d("open_file_cache", HTTP, 1, 2),
    d("open_file_cache_valid", HTTP, 1, 1),
    // realip (issue 15): http level only, where nginx also allows server and location.
    d("set_real_ip_from", HTTP, 1, 1),
    d("real_ip_header", HTTP, 1, 1),
    d("real_ip_recursive", HTTP, 1, 1),
    // inherited http → server → location
    d("root", HSL, 1, 1),
    d("index", HSL, 1, ANY),
    d("autoindex", HSL, 1, 1),
    d("autoindex_max_entries", HSL, 1, 1),
    d("disable_symlinks", HSL, 1, 1),
    d("error_page", HSL, 2, ANY),
    d("client_max_body_size", HSL, 1, 1),
    d("cgi", HSL, 1, 2),
    d("cgi_timeout", HSL, 1, 1),
    d("cgi_param", HSL, 2, 3),
    d("add_header", HSL, 2, 3),
    d("expires", HSL, 1, 1),
    d("max_ranges", HSL, 1, 1),
    // server
    b("server", HTTP, 0, 0),
    d("listen", SERVER, 1, 4),
    // TLS (issue 14): per server, or at http level for every server.
    d("ssl_certificate", HTTP | SERVER, 1, 1),
    d("ssl_certificate_key", HTTP | SERVER, 1, 1),
    d("ssl_protocols", HTTP | SERVER, 1, ANY),
    d("ssl_session_tickets", HTTP | SERVER, 1, 1),
    d("ssl_session_timeout", HTTP | SERVER, 1, 1),
    d("server_name", SERVER, 1, ANY),
    d("upload_store", SERVER | LOCATION, 1, 1),
    d("return", SERVER | LOCATION, 1, 2),
    d("try_files", SERVER | LOCATION, 2, ANY),
    b("location", SERVER | LOCATION, 1, 2),
    // location
    d("alias", LOCATION, 1, 1),
    // No argument is refused by the builder with its own message.
    d("allow_methods", LOCATION, 0, ANY),
    d("status", LOCATION, 0, 0),
    // Expanded by tree.rs before this table is consulted; listed so `include x { }` gets the
    // "not terminated" error rather than "unknown directive".
    d("include", MAIN | HTTP | SERVER | LOCATION | EVENTS, 1, 1),
];

pub fn lookup(name: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        for (i, s) in SPECS.iter().enumerate() {
            assert!(
                SPECS[i + 1..].iter().all(|o| o.name != s.name),
                "{}",
                s.name
            );
            assert!(s.min_args <= s.max_args, "{}", s.name);
        }
    }
}
