//! The resolved configuration: what the server reads on the request path.
//!
//! "Resolved" means every inherited value has been copied down at load time (http → server →
//! location → nested location), so a request never walks up to a parent, and every relative path
//! is already absolute against the prefix. INVARIANT: nothing here refers back to the parse tree.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use regex_lite::Regex;

use super::template::Template;

/// Which I/O backend to run (`backend` directive); `Auto` lets the server probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    Auto,
    Uring,
    Epoll,
    Kqueue,
}

/// `workers auto|N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    Auto,
    Count(usize),
}

/// `error_log` levels, least to most severe (nginx's list minus alert/emerg).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Notice,
    Warn,
    Error,
    Crit,
}

/// `error_log FILE|stderr [LEVEL]`. Default: stderr at `error` (nginx's compiled-in default
/// is a file under its prefix; a server started from a terminal is more useful on stderr).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorLog {
    /// `None` = stderr.
    pub path: Option<PathBuf>,
    /// Messages below this level are dropped.
    pub level: LogLevel,
}

/// The connection timeouts (nginx defaults: 60s, 60s, 60s, 75s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// `client_header_timeout`: whole request head must arrive within this.
    pub header: Duration,
    /// `client_body_timeout`: longest gap between two body reads.
    pub body: Duration,
    /// `send_timeout`: longest gap between two successful writes.
    pub send: Duration,
    /// `keepalive_timeout`: idle time allowed between requests; zero disables keep-alive.
    pub keepalive: Duration,
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub prefix: PathBuf,
    pub backend: BackendChoice,
    pub workers: Workers,
    pub error_log: ErrorLog,
    /// `None` = `access_log off` or not configured.
    pub access_log: Option<PathBuf>,
    /// Its format (`combined` unless named).
    pub access_log_format: std::sync::Arc<super::log_format::LogFormat>,
    /// `buffer=SIZE`: lines collect up to SIZE before a write (`None`: written each loop turn).
    pub access_log_buffer: Option<usize>,
    /// `flush=TIME`: buffered lines are written at the latest this long after the first.
    pub access_log_flush: Option<Duration>,
    pub timeouts: Timeouts,
    pub keepalive_requests: u32,
    /// `set_real_ip_from`, `real_ip_header`, `real_ip_recursive`.
    pub realip: crate::proxy::realip::RealIp,
    /// Per worker. Default 10240: nginx's 512 is sized for a worker among many; one
    /// event loop here is expected to carry a benchmark's worth of connections.
    pub worker_connections: usize,
    /// `default_type`: used when no extension matches (nginx default application/octet-stream).
    pub default_type: String,
    /// Lower-case extension (no dot) → MIME type, from `types { }` blocks.
    pub types: super::fasthash::ConfigMap<String, String>,
    /// `client_header_buffer_size` and `large_client_header_buffers`: the request-head
    /// limits (414 / 431).
    pub head_limits: crate::http::request::HeadLimits,
    /// `server_tokens`: the version in the `Server` header and error pages (default off).
    pub server_tokens: bool,
    /// `open_file_cache` and `open_file_cache_valid` (http level).
    pub open_file_cache: OpenFileCache,
    /// The files `error_page` URIs map to, read when the configuration is loaded (at start
    /// and at each reload, never on an event loop): answering an error makes no file system
    /// call. Filled by `server::reply::preload_error_pages`.
    pub error_bodies: std::collections::HashMap<std::path::PathBuf, std::sync::Arc<[u8]>>,
    /// In file order.
    pub servers: Vec<Server>,
    /// One entry per distinct listen address, with its servers and routing tables.
    pub addrs: Vec<AddrServers>,
}

/// The open-file cache of each worker (nginx's `open_file_cache`): files larger than the
/// small-file cache keeps in memory keep their descriptor and validators between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFileCache {
    /// Entries per worker (`max=N`); 0 is `open_file_cache off`.
    pub max: usize,
    /// An entry unused this long is dropped (`inactive=TIME`).
    pub inactive: Duration,
    /// How long an entry is trusted before its file is looked at again
    /// (`open_file_cache_valid`).
    pub valid: Duration,
}

impl OpenFileCache {
    /// On by default, unlike nginx (whose cache is off, and whose `valid` is 60 s): 1000
    /// entries, 60 s inactive, checked again after 1 s as the small-file cache is.
    pub const DEFAULT: OpenFileCache = OpenFileCache {
        max: 1000,
        inactive: Duration::from_secs(60),
        valid: Duration::from_secs(1),
    };
}

/// One `listen` of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    pub addr: SocketAddr,
    pub default_server: bool,
    /// `proxy_protocol`: every connection starts with a PROXY header.
    pub proxy_protocol: bool,
    /// `ssl`: connections on this address speak TLS (issue 14).
    pub ssl: bool,
}

/// A `server_name` entry, already lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerName {
    /// `example.com`, or `""` (matches a request without Host).
    Exact(String),
    /// `*.example.com` stored as `.example.com`; `bare` is set for nginx's `.example.com`
    /// form, which also matches `example.com` itself.
    StarPrefix { suffix: String, bare: bool },
    /// `www.example.*` stored as `www.example.`.
    StarSuffix(String),
}

impl std::fmt::Display for ServerName {
    /// As written in the config (lower-cased): `a.com`, `*.a.com`, `.a.com`, `www.a.*`, `""`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerName::Exact(n) if n.is_empty() => f.write_str("\"\""),
            ServerName::Exact(n) => f.write_str(n),
            ServerName::StarPrefix { suffix, bare: true } => f.write_str(suffix),
            ServerName::StarPrefix {
                suffix,
                bare: false,
            } => write!(f, "*{suffix}"),
            ServerName::StarSuffix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

/// The servers reachable through one listen address, with the name tables built once at load.
#[derive(Debug, Clone)]
pub struct AddrServers {
    pub addr: SocketAddr,
    /// Indices into `Config::servers`, in file order.
    pub servers: Vec<usize>,
    /// The `default_server`, else the first server listening here.
    pub default: usize,
    /// Some `listen` of this address has `proxy_protocol` (it applies to the socket).
    pub proxy_protocol: bool,
    /// Some `listen` of this address has `ssl` (it applies to the socket).
    pub ssl: bool,
    /// The TLS configuration of an `ssl` address (certificates by SNI), built at load.
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    pub(crate) exact: super::fasthash::ConfigMap<String, usize>,
    /// Longest suffix first.
    pub(crate) star_prefix: Vec<(String, bool, usize)>,
    /// Longest prefix first.
    pub(crate) star_suffix: Vec<(String, usize)>,
}

/// A virtual host.
#[derive(Debug, Clone)]
pub struct Server {
    pub listens: Vec<Listen>,
    pub names: Vec<ServerName>,
    /// Server-level `root` (inherited from http, default `<prefix>/html` as in nginx).
    pub root: PathBuf,
    /// Server-level `return`: answered before any location is searched (nginx rewrite phase).
    pub ret: Option<Return>,
    /// Every location of this server, nested ones included, in file order (pre-order).
    pub locations: Vec<Location>,
    /// Named locations (`location @name`), reached only from `try_files` and `error_page`;
    /// `pattern` keeps the `@`.
    pub named: Vec<Location>,
    /// What a request matching no location gets: server-level settings, prefix `/`.
    pub default_location: Location,
    /// The server's top-level location search tables.
    pub(crate) tree: LocationTree,
}

/// `location` modifiers (<https://nginx.org/en/docs/http/ngx_http_core_module.html#location>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modifier {
    /// no modifier: longest prefix, regexes may still override.
    Prefix,
    /// `=`: exact match, ends the search.
    Exact,
    /// `^~`: longest prefix that, when chosen, skips regexes.
    PreferPrefix,
    /// `~`: case-sensitive regex.
    Regex,
    /// `~*`: case-insensitive regex.
    RegexCaseless,
    /// `@name`: never matched against a path; reached by `try_files` or `error_page`.
    Named,
}

/// Where a location's files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocRoot {
    /// `root DIR`: file = DIR + full URI path.
    Root(PathBuf),
    /// `alias DIR` in location `strip`: file = DIR + (URI path minus `strip`). For regex
    /// locations `strip` is empty and DIR is used as-is: the whole file path (after its
    /// `$1`… captures are substituted, see `Location::alias_captures`).
    Alias { dir: PathBuf, strip: String },
}

/// A method set, bitflags-style. Allowing GET allows HEAD (nginx `limit_except` rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Methods(pub u8);

impl Methods {
    pub const GET: Methods = Methods(1);
    pub const HEAD: Methods = Methods(2);
    pub const POST: Methods = Methods(4);
    pub const PUT: Methods = Methods(8);
    pub const DELETE: Methods = Methods(16);

    pub fn contains(self, other: Methods) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    pub fn insert(&mut self, other: Methods) {
        self.0 |= other.0;
    }

    /// Whether `method` (as on the request line) is allowed.
    pub fn allows(self, method: &str) -> bool {
        super::values::method(method).is_some_and(|m| self.contains(m))
    }

    /// The `Allow` header value for a 405 (RFC 9110 §15.5.6), in a fixed order.
    pub fn allow_header(self) -> String {
        let names = [
            (Methods::GET, "GET"),
            (Methods::HEAD, "HEAD"),
            (Methods::POST, "POST"),
            (Methods::PUT, "PUT"),
            (Methods::DELETE, "DELETE"),
        ];
        names
            .iter()
            .filter(|(m, _)| self.contains(*m))
            .map(|(_, n)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `return CODE [URL|TEXT]` / `return URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Return {
    pub code: u16,
    /// For 301/302/303/307/308 the Location URL, otherwise the response body text; variables
    /// (`$host`, `$request_uri`, `$1`…) are expanded per request.
    pub target: Option<Template>,
}

/// `try_files FILE... FALLBACK`: the first FILE that exists under the location's root or alias
/// answers (in this location, with `$uri` set to it); a FILE ending in `/` checks for a
/// directory. When none exists, FALLBACK decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TryFiles {
    /// INVARIANT: not empty.
    pub files: Vec<Template>,
    pub fallback: TryFallback,
}

/// The last argument of `try_files`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TryFallback {
    /// `=404`: answer with this status (and its error page).
    Code(u16),
    /// `@name`: the named location answers, with the URI unchanged (without the `@`).
    Named(String),
    /// A URI (`/index.py?$args`): an internal redirect to it, method and body kept.
    Uri(Template),
}

/// What status an `error_page` answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorPageStatus {
    /// `error_page 404 /404.html;` — keep the original code.
    Original,
    /// `error_page 404 =200 /x;`
    Fixed(u16),
    /// `error_page 404 = /x;` — whatever the target answers.
    FromTarget,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorPage {
    pub code: u16,
    pub status: ErrorPageStatus,
    pub uri: String,
}

/// `cgi EXT [INTERPRETER]`; no interpreter means the script is executed itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgi {
    /// With the dot, e.g. `.py`.
    pub ext: String,
    pub interpreter: Option<PathBuf>,
}

/// `cgi_param NAME VALUE [if_not_empty]`: sets (or overrides) the CGI environment variable
/// NAME to VALUE expanded for the request (see `crate::cgi::params::apply`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgiParam {
    /// INVARIANT: `[A-Za-z_][A-Za-z0-9_]*`.
    pub name: String,
    pub value: Template,
    /// nginx's `if_not_empty`: when VALUE expands to `""`, the variable is left as it was.
    pub if_not_empty: bool,
}

/// nginx's `disable_symlinks`: whether reads under a root or alias follow symbolic links.
/// Whatever the setting, resolution never leaves the root (the kernel's `RESOLVE_BENEATH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Symlinks {
    /// `off` (the default): symlinks are followed, within the root.
    #[default]
    Follow,
    /// `on`: any symlink on the way is refused (403).
    Refuse,
    /// `if_not_owner`: a symlink is followed only when it and its target have the same owner.
    IfSameOwner,
}

/// Entries an autoindex listing shows when `autoindex_max_entries` is not set.
pub const DEFAULT_AUTOINDEX_MAX_ENTRIES: u64 = 10_000;

/// A resolved location: everything needed to answer a request, nothing to look up elsewhere.
#[derive(Debug, Clone)]
pub struct Location {
    pub modifier: Modifier,
    pub pattern: String,
    pub docroot: DocRoot,
    pub index: Vec<String>,
    pub autoindex: bool,
    /// `autoindex_max_entries N`: a listing shows at most N entries (nginx has no cap).
    pub autoindex_max_entries: u64,
    /// `disable_symlinks off|on|if_not_owner` for reads under the root or alias.
    pub disable_symlinks: Symlinks,
    /// `None` = every implemented method is allowed.
    pub allow_methods: Option<Methods>,
    pub ret: Option<Return>,
    /// A level that sets any `error_page` replaces the inherited list (nginx array semantics).
    pub error_pages: Vec<ErrorPage>,
    /// 0 = unlimited.
    pub client_max_body_size: u64,
    pub cgi: Vec<Cgi>,
    pub cgi_timeout: Duration,
    /// The effective `cgi_param` list, in order: a level that has any `cgi_param` replaces the
    /// inherited list (nginx `fastcgi_param` semantics); apply it in order, so for a NAME given
    /// twice the later one wins.
    pub cgi_params: Vec<CgiParam>,
    pub upload_store: Option<PathBuf>,
    /// `status`: answer with server statistics (stub_status).
    pub status: bool,
    /// `add_header` list in effect (a level with any replaces the inherited list).
    pub add_headers: Vec<super::headers::AddHeader>,
    /// `expires`; `None` = off (the default).
    pub expires: Option<super::headers::Expires>,
    /// A regex location's `alias` that uses captures (`alias /data/$1;`): substituted per
    /// request into `docroot` (`server::rewrite::with_captures`).
    pub alias_captures: Option<Template>,
    /// `max_ranges N`: a Range with more ranges is answered in full (`u32::MAX`: no limit,
    /// nginx's default; 0 turns ranges off).
    pub max_ranges: u32,
    /// `try_files` of this location (not inherited, as in nginx).
    pub try_files: Option<TryFiles>,
    /// Compiled pattern for regex modifiers.
    pub(crate) regex: Option<Regex>,
    /// Search tables for nested locations (indices into `Server::locations`).
    pub(crate) tree: LocationTree,
}

impl Location {
    /// The file a (normalised) URI path maps to under this location's root or alias, without
    /// the containment check: callers use `server::reply::map`, which adds it.
    pub(crate) fn map_path(&self, uri_path: &str) -> PathBuf {
        let mut out = PathBuf::new();
        self.map_path_into(uri_path, &mut out);
        out
    }

    /// [`Location::map_path`] into `out` (replaced; its capacity is reused).
    pub(crate) fn map_path_into(&self, uri_path: &str, out: &mut PathBuf) {
        let s = out.as_mut_os_string();
        s.clear();
        match &self.docroot {
            DocRoot::Root(dir) => join_uri(dir, uri_path, s),
            DocRoot::Alias { dir, strip } if strip.is_empty() => s.push(dir.as_os_str()),
            DocRoot::Alias { dir, strip } => join_uri(
                dir,
                uri_path.strip_prefix(strip.as_str()).unwrap_or(uri_path),
                s,
            ),
        }
    }

    /// The `error_page` entry for `code`, if any.
    pub fn error_page(&self, code: u16) -> Option<&ErrorPage> {
        self.error_pages.iter().find(|e| e.code == code)
    }

    /// The CGI handler for a path by extension (case-sensitive, as file names are).
    pub fn cgi_for(&self, path: &str) -> Option<&Cgi> {
        self.cgi.iter().find(|c| path.ends_with(c.ext.as_str()))
    }

    /// Whether `method` may be used here.
    pub fn allows(&self, method: &str) -> bool {
        self.allow_methods.is_none_or(|m| m.allows(method))
    }
}

/// `dir` + `/rest` without `PathBuf::join` replacing `dir` when `rest` is absolute.
/// Appended to `s` (empty), reserved once for the whole path.
fn join_uri(dir: &std::path::Path, rest: &str, s: &mut std::ffi::OsString) {
    let dir = dir.as_os_str();
    let dir_slash = dir.as_encoded_bytes().ends_with(b"/");
    s.reserve(dir.len() + 1 + rest.len());
    s.push(dir);
    if !rest.is_empty() && !rest.starts_with('/') && !dir_slash {
        s.push("/");
    }
    if rest.starts_with('/') && dir_slash {
        s.push(&rest[1..]);
    } else {
        s.push(rest);
    }
}

/// Search tables for one level of locations: indices into `Server::locations`.
#[derive(Debug, Clone, Default)]
pub(crate) struct LocationTree {
    /// `=` locations.
    pub exact: Vec<usize>,
    /// Plain and `^~` prefix locations, longest pattern first.
    pub prefix: Vec<usize>,
    /// `~` and `~*` locations, in file order.
    pub regex: Vec<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods() {
        let mut m = Methods::default();
        m.insert(Methods::GET);
        m.insert(Methods::DELETE);
        assert!(m.allows("GET"));
        assert!(!m.allows("HEAD")); // the builder adds HEAD for GET, not Methods itself
        assert!(!m.allows("POST"));
        assert!(!m.allows("get"));
        assert_eq!(m.allow_header(), "GET, DELETE");
    }

    #[test]
    fn join() {
        let cases = [
            ("/srv/www", "/a/b.html", "/srv/www/a/b.html"),
            ("/srv/www/", "/a", "/srv/www/a"),
            ("/srv/www", "a", "/srv/www/a"),
            ("/srv/www", "", "/srv/www"),
        ];
        for (dir, rest, want) in cases {
            let mut s = std::ffi::OsString::new();
            join_uri(std::path::Path::new(dir), rest, &mut s);
            assert_eq!(PathBuf::from(s), PathBuf::from(want));
        }
    }
}
