//! Directive tree → resolved `Config`.
//!
//! Two passes, as nginx does it: first every block's own values are collected (checking each
//! directive's context, arity and value), then values are merged top-down so each location holds
//! its final settings. Routing tables (per-address server names, per-level location lists) are
//! built last, in `vhost.rs` and `route.rs`.

use std::path::Path;
use std::time::Duration;

use regex_lite::Regex;

use super::directives::{self, Ctx, EVENTS, HTTP, LOCATION, MAIN, SERVER};
use super::error::{ConfigError, Diagnostics, Pos};
use super::limits::HeadBuffers;
use super::listen;
use super::model::{
    BackendChoice, Config, DocRoot, ErrorLog, Listen, Location, LocationTree, LogLevel, Methods,
    Modifier, OpenFileCache, Return, Server, ServerName, Symlinks, Timeouts, TryFiles, Workers,
    DEFAULT_AUTOINDEX_MAX_ENTRIES,
};
use super::settings::{
    bad_value, resolve, Settings, DEFAULT_CGI_TIMEOUT, DEFAULT_CLIENT_MAX_BODY_SIZE,
};
use super::template::Template;
use super::tree::{Directive, Word};
use super::{route, try_files, values, vhost};

/// Per-worker connection cap when `worker_connections` is not set (see `Config` docs).
pub const DEFAULT_WORKER_CONNECTIONS: usize = 1024 * 10;

/// A server as written, before inheritance. Words are kept for error positions.
pub(crate) struct RawServer {
    pub decl: Word,
    pub listens: Vec<(Listen, Word, Option<Word>)>,
    pub names: Vec<(ServerName, Word)>,
    settings: Settings,
    ret: Option<Return>,
    try_files: Option<TryFiles>,
    locations: Vec<RawLocation>,
    /// `ssl_*` directives (inherited from http in `finish`).
    pub tls: super::tls::RawTls,
}

struct RawLocation {
    modifier: Modifier,
    pattern: Word,
    regex: Option<Regex>,
    settings: Settings,
    allow_methods: Option<Methods>,
    ret: Option<Return>,
    status: bool,
    try_files: Option<TryFiles>,
    children: Vec<RawLocation>,
}

struct Builder<'a> {
    prefix: &'a Path,
    g: Globals,
    /// Every finding so far; a directive with an error is left out and the next one read.
    diags: &'a mut Diagnostics,
}

/// Values collected at main/http level, `None` until set.
#[derive(Default)]
struct Globals {
    backend: Option<BackendChoice>,
    workers: Option<Workers>,
    worker_connections: Option<usize>,
    error_log: Option<ErrorLog>,
    access_log: Option<Option<std::path::PathBuf>>,
    access_opts: Option<super::log_format::AccessOpts>,
    /// The `access_log` directive, for an error about its format name.
    access_word: Option<Word>,
    log_formats: Vec<super::log_format::LogFormat>,
    default_type: Option<String>,
    types: Option<super::fasthash::ConfigMap<String, String>>,
    header: Option<Duration>,
    body: Option<Duration>,
    send: Option<Duration>,
    keepalive: Option<Duration>,
    realip_from: Vec<crate::proxy::realip::Cidr>,
    realip_source: Option<crate::proxy::realip::Source>,
    realip_recursive: Option<bool>,
    keepalive_requests: Option<u32>,
    head_buffers: HeadBuffers,
    server_tokens: Option<bool>,
    open_file_cache: Option<Option<(usize, Duration)>>,
    open_file_cache_valid: Option<Duration>,
    seen_http: bool,
    seen_events: bool,
    http: Settings,
    /// http-level `ssl_*` directives.
    tls: super::tls::RawTls,
    servers: Vec<RawServer>,
}

/// Builds the resolved config from a parsed tree of the main file `file`. Every finding goes
/// to `diags`; `None` when the configuration cannot be built at all. (The caller refuses any
/// result when `diags` holds an error.)
pub fn build(
    tree: &[Directive],
    file: &str,
    prefix: &Path,
    diags: &mut Diagnostics,
) -> Option<Config> {
    let mut b = Builder {
        prefix,
        g: Globals::default(),
        diags,
    };
    b.block(tree, MAIN | HTTP);
    if b.g.servers.is_empty() {
        // nginx starts and listens nowhere; a server that serves nothing is a mistake.
        let at = tree
            .first()
            .map(|d| d.name.pos)
            .unwrap_or(Pos { line: 1, col: 1 });
        let at_file = tree.first().map_or(file, |d| &d.name.file);
        let e = ConfigError::new(
            at_file,
            at,
            "no \"server\" block: the configuration serves nothing",
        );
        b.diags.push(e);
        return None;
    }
    b.finish()
}

/// Checks name, context, arity and block-ness against the directive table.
fn check(d: &Directive, ctx: Ctx) -> Result<(), ConfigError> {
    let name = &d.name.text;
    let Some(spec) = directives::lookup(name) else {
        return Err(d.name.err(format!("unknown directive \"{name}\"")));
    };
    if spec.ctx & ctx == 0 {
        return Err(d
            .name
            .err(format!("\"{name}\" directive is not allowed here")));
    }
    let n = d.args.len();
    if n < spec.min_args || n > spec.max_args {
        return Err(d.name.err(format!(
            "invalid number of arguments in \"{name}\" directive"
        )));
    }
    match (spec.block, &d.block) {
        (true, None) => Err(d
            .name
            .err(format!("directive \"{name}\" has no opening \"{{\""))),
        (false, Some(_)) => Err(d
            .name
            .err(format!("directive \"{name}\" is not terminated by \";\""))),
        _ => Ok(()),
    }
}

fn set_once<T>(slot: &mut Option<T>, v: T, d: &Directive) -> Result<(), ConfigError> {
    if slot.is_some() {
        return Err(d
            .name
            .err(format!("\"{}\" directive is duplicate", d.name.text)));
    }
    *slot = Some(v);
    Ok(())
}

/// `open_file_cache off` or `open_file_cache max=N [inactive=TIME]` (nginx's syntax; its
/// `inactive` defaults to 60 s).
fn parse_open_file_cache(d: &Directive) -> Result<Option<(usize, Duration)>, ConfigError> {
    if d.args[0].text == "off" {
        return match d.args.len() {
            1 => Ok(None),
            _ => Err(bad_value(d, 1, "")),
        };
    }
    let (mut max, mut inactive) = (None, OpenFileCache::DEFAULT.inactive);
    for (i, a) in d.args.iter().enumerate() {
        if let Some(n) = a.text.strip_prefix("max=") {
            let n = values::number(n).filter(|&n| (1..=1 << 20).contains(&n));
            max = Some(n.ok_or_else(|| bad_value(d, i, ", max must be 1 to 1048576"))? as usize);
        } else if let Some(t) = a.text.strip_prefix("inactive=") {
            inactive = values::time_or(t).map_err(|b| bad_value(d, i, &b.hint("time")))?;
        } else {
            return Err(bad_value(
                d,
                i,
                ", it must be \"off\", \"max=N\" or \"inactive=TIME\"",
            ));
        }
    }
    match max {
        Some(m) => Ok(Some((m, inactive))),
        None => Err(d
            .name
            .err("\"open_file_cache\" needs \"max=N\" or \"off\"".to_string())),
    }
}

fn time_arg(d: &Directive) -> Result<Duration, ConfigError> {
    values::time_or(&d.args[0].text).map_err(|b| bad_value(d, 0, &b.hint("time")))
}

/// `return CODE [TEXT|URL]` or `return URL` (302), per ngx_http_rewrite_module.
fn parse_return(d: &Directive) -> Result<Return, ConfigError> {
    let first = &d.args[0].text;
    if first.bytes().all(|b| b.is_ascii_digit()) {
        let code = values::status(first, 0..=999).ok_or_else(|| bad_value(d, 0, ""))?;
        let target = match d.args.get(1) {
            Some(_) => Some(try_files::template_arg(d, 1)?),
            None => None,
        };
        return Ok(Return { code, target });
    }
    if d.args.len() == 1
        && (first.starts_with("http://")
            || first.starts_with("https://")
            || first.starts_with("$scheme"))
    {
        return Ok(Return {
            code: 302,
            target: Some(try_files::template_arg(d, 0)?),
        });
    }
    Err(d.args[0].err(format!("invalid return code \"{first}\"")))
}

impl Builder<'_> {
    /// Main / http / events level.
    fn block(&mut self, ds: &[Directive], ctx: Ctx) {
        for d in ds {
            let r = self.main_directive(d, ctx);
            self.diags.take(r);
        }
    }

    fn main_directive(&mut self, d: &Directive, ctx: Ctx) -> Result<(), ConfigError> {
        {
            check(d, ctx)?;
            let arg = |i: usize| d.args[i].text.as_str();
            match d.name.text.as_str() {
                "http" => {
                    if self.g.seen_http {
                        return Err(d.name.err("\"http\" directive is duplicate"));
                    }
                    self.g.seen_http = true;
                    self.block(d.block.as_deref().unwrap_or_default(), HTTP);
                }
                "events" => {
                    if self.g.seen_events {
                        return Err(d.name.err("\"events\" directive is duplicate"));
                    }
                    self.g.seen_events = true;
                    self.block(d.block.as_deref().unwrap_or_default(), EVENTS);
                }
                "backend" => {
                    let v = match arg(0) {
                        "auto" => BackendChoice::Auto,
                        "uring" => BackendChoice::Uring,
                        "epoll" => BackendChoice::Epoll,
                        "kqueue" => BackendChoice::Kqueue,
                        _ => {
                            return Err(bad_value(
                                d,
                                0,
                                ", it must be \"auto\", \"uring\", \"epoll\" or \"kqueue\"",
                            ))
                        }
                    };
                    set_once(&mut self.g.backend, v, d)?;
                }
                "workers" => {
                    let v = match arg(0) {
                        "auto" => Workers::Auto,
                        s => match values::number(s) {
                            Some(n) if (1..=1024).contains(&n) => Workers::Count(n as usize),
                            _ => return Err(bad_value(d, 0, "")),
                        },
                    };
                    set_once(&mut self.g.workers, v, d)?;
                }
                "worker_connections" => {
                    let v = match values::number(arg(0)) {
                        Some(n) if (1..=u32::MAX as u64).contains(&n) => n as usize,
                        _ => return Err(bad_value(d, 0, "")),
                    };
                    set_once(&mut self.g.worker_connections, v, d)?;
                }
                "error_log" => {
                    let level = match d.args.get(1).map(|a| a.text.as_str()) {
                        None | Some("error") => LogLevel::Error,
                        Some("debug") => LogLevel::Debug,
                        Some("info") => LogLevel::Info,
                        Some("notice") => LogLevel::Notice,
                        Some("warn") => LogLevel::Warn,
                        Some("crit") => LogLevel::Crit,
                        Some(_) => return Err(bad_value(d, 1, "")),
                    };
                    let path = match arg(0) {
                        "stderr" => None,
                        p => Some(resolve(self.prefix, p)),
                    };
                    set_once(&mut self.g.error_log, ErrorLog { path, level }, d)?;
                }
                "access_log" => {
                    let v = match arg(0) {
                        "off" if d.args.len() == 1 => None,
                        "off" => return Err(bad_value(d, 1, "")),
                        p => Some(resolve(self.prefix, p)),
                    };
                    set_once(&mut self.g.access_log, v, d)?;
                    let opts = super::log_format::parse_access_opts(d)?;
                    if let Some((_, i)) = &opts.format {
                        self.g.access_word = Some(d.args[*i].clone());
                    }
                    self.g.access_opts = Some(opts);
                }
                "log_format" => {
                    let f = super::log_format::parse_log_format(d)?;
                    if f.name == "combined" || self.g.log_formats.iter().any(|o| o.name == f.name) {
                        return Err(
                            d.args[0].err(format!("duplicate \"log_format\" name \"{}\"", f.name))
                        );
                    }
                    self.g.log_formats.push(f);
                }
                "default_type" => set_once(&mut self.g.default_type, arg(0).to_string(), d)?,
                "types" => self.types(d)?,
                "client_header_timeout" => set_once(&mut self.g.header, time_arg(d)?, d)?,
                "client_body_timeout" => set_once(&mut self.g.body, time_arg(d)?, d)?,
                "send_timeout" => set_once(&mut self.g.send, time_arg(d)?, d)?,
                "keepalive_timeout" => set_once(&mut self.g.keepalive, time_arg(d)?, d)?,
                "keepalive_requests" => {
                    let v = values::number(arg(0))
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| bad_value(d, 0, ""))?;
                    set_once(&mut self.g.keepalive_requests, v, d)?;
                }
                "client_header_buffer_size" | "large_client_header_buffers" => {
                    self.g.head_buffers.apply(d)?;
                }
                "server_tokens" => {
                    let v = values::flag(arg(0))
                        .ok_or_else(|| bad_value(d, 0, ", it must be \"on\" or \"off\""))?;
                    set_once(&mut self.g.server_tokens, v, d)?;
                }
                "open_file_cache" => {
                    let v = parse_open_file_cache(d)?;
                    set_once(&mut self.g.open_file_cache, v, d)?;
                }
                "open_file_cache_valid" => {
                    set_once(&mut self.g.open_file_cache_valid, time_arg(d)?, d)?
                }
                "set_real_ip_from" => {
                    let c =
                        crate::proxy::realip::Cidr::parse(arg(0)).map_err(|m| d.args[0].err(m))?;
                    self.g.realip_from.push(c);
                }
                "real_ip_header" => {
                    let v = crate::proxy::realip::Source::parse(arg(0)).ok_or_else(|| {
                        bad_value(
                            d,
                            0,
                            ", it must be \"X-Real-IP\", \"X-Forwarded-For\" or \"proxy_protocol\"",
                        )
                    })?;
                    set_once(&mut self.g.realip_source, v, d)?;
                }
                "real_ip_recursive" => {
                    let v = match arg(0) {
                        "on" => true,
                        "off" => false,
                        _ => return Err(bad_value(d, 0, ", it must be \"on\" or \"off\"")),
                    };
                    set_once(&mut self.g.realip_recursive, v, d)?;
                }
                "server" => {
                    let s = self.server(d);
                    self.g.servers.push(s);
                }
                n if n.starts_with("ssl_") => {
                    self.g.tls.apply(d, self.prefix)?;
                }
                _ => {
                    let handled = self.g.http.apply(d, self.prefix, None)?;
                    debug_assert!(
                        handled,
                        "directive table and builder disagree: {}",
                        d.name.text
                    );
                }
            }
        }
        Ok(())
    }

    /// `types { mime ext...; }`. Several blocks merge; a later mapping of an extension wins.
    fn types(&mut self, d: &Directive) -> Result<(), ConfigError> {
        let map = self.g.types.get_or_insert_with(Default::default);
        for t in d.block.as_deref().unwrap_or_default() {
            if t.block.is_some() {
                return Err(t.name.err("unexpected \"{\" in \"types\" block"));
            }
            if t.args.is_empty() {
                return Err(t
                    .name
                    .err(format!("no extensions for type \"{}\"", t.name.text)));
            }
            for ext in &t.args {
                map.insert(ext.text.to_ascii_lowercase(), t.name.text.clone());
            }
        }
        Ok(())
    }

    /// A server block; its directives' errors are recorded and the server kept without them.
    fn server(&mut self, d: &Directive) -> RawServer {
        let mut s = RawServer {
            decl: d.name.clone(),
            listens: Vec::new(),
            names: Vec::new(),
            settings: Settings::default(),
            ret: None,
            try_files: None,
            locations: Vec::new(),
            tls: Default::default(),
        };
        for c in d.block.as_deref().unwrap_or_default() {
            let r = self.server_directive(&mut s, c);
            self.diags.take(r);
        }
        let r = route::check_siblings(s.locations.iter().map(|l| (l.modifier, &l.pattern)));
        self.diags.take(r);
        let named: Vec<&str> = s
            .locations
            .iter()
            .filter(|l| l.modifier == Modifier::Named)
            .map(|l| l.pattern.text.as_str())
            .collect();
        let mut refs = Vec::new();
        named_refs(d.block.as_deref().unwrap_or_default(), &mut refs);
        let r = try_files::check_names(&refs, &named);
        self.diags.take(r);
        s
    }

    fn server_directive(&mut self, s: &mut RawServer, c: &Directive) -> Result<(), ConfigError> {
        {
            check(c, SERVER)?;
            match c.name.text.as_str() {
                "listen" => {
                    let addr = listen::addr(&c.args[0].text).map_err(|m| c.args[0].err(m))?;
                    let mut dflt = None;
                    let mut proxy_protocol = false;
                    let mut ssl = false;
                    for p in &c.args[1..] {
                        match p.text.as_str() {
                            // nginx also spells it `default` (pre-0.8.21).
                            "default_server" | "default" if dflt.is_none() => {
                                dflt = Some(p.clone())
                            }
                            "proxy_protocol" if !proxy_protocol => proxy_protocol = true,
                            "ssl" if !ssl => ssl = true,
                            _ => return Err(p.err(format!("invalid parameter \"{}\"", p.text))),
                        }
                    }
                    if s.listens.iter().any(|(l, _, _)| l.addr == addr) {
                        return Err(c.args[0].err(format!("duplicate listen {addr}")));
                    }
                    let l = Listen {
                        addr,
                        default_server: dflt.is_some(),
                        proxy_protocol,
                        ssl,
                    };
                    s.listens.push((l, c.args[0].clone(), dflt));
                }
                n if n.starts_with("ssl_") => {
                    s.tls.apply(c, self.prefix)?;
                }
                "server_name" => {
                    for a in &c.args {
                        let n = listen::server_name(&a.text).map_err(|m| a.err(m))?;
                        s.names.push((n, a.clone()));
                    }
                }
                "return" => {
                    let r = parse_return(c)?;
                    set_once(&mut s.ret, r, c)?;
                }
                "try_files" => set_once(&mut s.try_files, try_files::parse(c)?, c)?,
                "location" => {
                    let loc = self.location(c, None)?;
                    s.locations.push(loc);
                }
                _ => {
                    let handled = s.settings.apply(c, self.prefix, None)?;
                    debug_assert!(
                        handled,
                        "directive table and builder disagree: {}",
                        c.name.text
                    );
                }
            }
        }
        Ok(())
    }

    fn location(
        &mut self,
        d: &Directive,
        parent: Option<(Modifier, &Word)>,
    ) -> Result<RawLocation, ConfigError> {
        let (modifier, pattern) = match d.args.as_slice() {
            [m, p] => {
                let modifier = match m.text.as_str() {
                    "=" => Modifier::Exact,
                    "^~" => Modifier::PreferPrefix,
                    "~" => Modifier::Regex,
                    "~*" => Modifier::RegexCaseless,
                    _ => return Err(m.err(format!("invalid location modifier \"{}\"", m.text))),
                };
                (modifier, p.clone())
            }
            [p] if p.text.len() > 1 && p.text.starts_with('=') => {
                let mut w = p.clone();
                w.text.remove(0);
                w.pos.col += 1;
                (Modifier::Exact, w)
            }
            [p] => (Modifier::Prefix, p.clone()),
            _ => unreachable!("arity checked against the directive table"),
        };
        let named = pattern.text.starts_with('@');
        if named && modifier != Modifier::Prefix {
            return Err(pattern.err(format!(
                "invalid location modifier for the named location \"{}\"",
                pattern.text
            )));
        }
        if named && pattern.text.len() == 1 {
            return Err(pattern.err("invalid named location \"@\""));
        }
        let modifier = if named { Modifier::Named } else { modifier };
        if let Some((pm, pw)) = parent {
            // nginx's messages for the two nestings it refuses.
            if named {
                return Err(pattern.err(format!(
                    "named location \"{}\" can be on the server level only",
                    pattern.text
                )));
            }
            if pm == Modifier::Named {
                return Err(pattern.err(format!(
                    "location \"{}\" could not be inside the named location \"{}\"",
                    pattern.text, pw.text
                )));
            }
        }
        let is_regex = matches!(modifier, Modifier::Regex | Modifier::RegexCaseless);
        if let Some((pm, pw)) = parent {
            if pm == Modifier::Exact {
                return Err(pattern.err(format!(
                    "location \"{}\" cannot be inside the exact location \"{}\"",
                    pattern.text, pw.text
                )));
            }
            if !is_regex && !pattern.text.starts_with(pw.text.as_str()) {
                return Err(pattern.err(format!(
                    "location \"{}\" is outside location \"{}\"",
                    pattern.text, pw.text
                )));
            }
        }
        let regex = if is_regex {
            let src = if modifier == Modifier::RegexCaseless {
                format!("(?i){}", pattern.text)
            } else {
                pattern.text.clone()
            };
            Some(
                Regex::new(&src)
                    .map_err(|e| pattern.err(format!("invalid regex \"{}\": {e}", pattern.text)))?,
            )
        } else {
            None
        };
        let mut loc = RawLocation {
            modifier,
            pattern,
            regex,
            settings: Settings::default(),
            allow_methods: None,
            ret: None,
            status: false,
            try_files: None,
            children: Vec::new(),
        };
        for c in d.block.as_deref().unwrap_or_default() {
            let r = self.location_directive(&mut loc, is_regex, c);
            self.diags.take(r);
        }
        let r = route::check_siblings(loc.children.iter().map(|l| (l.modifier, &l.pattern)));
        self.diags.take(r);
        Ok(loc)
    }

    fn location_directive(
        &mut self,
        loc: &mut RawLocation,
        is_regex: bool,
        c: &Directive,
    ) -> Result<(), ConfigError> {
        {
            check(c, LOCATION)?;
            match c.name.text.as_str() {
                "location" => {
                    let child = self.location(c, Some((loc.modifier, &loc.pattern)))?;
                    loc.children.push(child);
                }
                "allow_methods" => {
                    if loc.allow_methods.is_some() {
                        return Err(c.name.err("\"allow_methods\" directive is duplicate"));
                    }
                    if c.args.is_empty() {
                        return Err(c.name.err(
                            "\"allow_methods\" directive names no method, it needs at least one \
                             of GET, HEAD, POST, PUT or DELETE",
                        ));
                    }
                    let mut m = Methods::default();
                    for (i, a) in c.args.iter().enumerate() {
                        let one = values::method(&a.text).ok_or_else(|| {
                            bad_value(c, i, ", it must be GET, HEAD, POST, PUT or DELETE")
                        })?;
                        m.insert(one);
                    }
                    // nginx limit_except: "Allowing the GET method makes the HEAD method also
                    // allowed."
                    if m.contains(Methods::GET) {
                        m.insert(Methods::HEAD);
                    }
                    loc.allow_methods = Some(m);
                }
                "return" => {
                    let r = parse_return(c)?;
                    set_once(&mut loc.ret, r, c)?;
                }
                "try_files" => set_once(&mut loc.try_files, try_files::parse(c)?, c)?,
                "status" => {
                    if loc.status {
                        return Err(c.name.err("\"status\" directive is duplicate"));
                    }
                    loc.status = true;
                }
                _ => {
                    let ctx = Some((is_regex, loc.pattern.text.as_str()));
                    let handled = loc.settings.apply(c, self.prefix, ctx)?;
                    debug_assert!(
                        handled,
                        "directive table and builder disagree: {}",
                        c.name.text
                    );
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> Option<Config> {
        let head_limits = self.g.head_buffers.limits(self.diags);
        let prefix = self.prefix;
        let mut http = self.g.http;
        // The bottom of the inheritance chain: nginx's compiled-in defaults.
        let defaults = Settings {
            docroot: Some(DocRoot::Root(prefix.join("html"))),
            index: Some(vec!["index.html".to_string()]),
            autoindex: Some(false),
            autoindex_max_entries: Some(DEFAULT_AUTOINDEX_MAX_ENTRIES),
            disable_symlinks: Some(Symlinks::Follow),
            error_pages: Some(Vec::new()),
            client_max_body_size: Some(DEFAULT_CLIENT_MAX_BODY_SIZE),
            cgi: Some(Vec::new()),
            cgi_timeout: Some(DEFAULT_CGI_TIMEOUT),
            cgi_params: Some(Vec::new()),
            upload_store: None,
            add_headers: Some(Vec::new()),
            expires: Some(None),
            max_ranges: None,
        };
        http.inherit(&defaults);
        let mut servers = Vec::with_capacity(self.g.servers.len());
        let mut raws = self.g.servers;
        for raw in &mut raws {
            if raw.listens.is_empty() {
                // nginx's default is *:80 (8000 when not started as root); keep the documented one.
                let addr = std::net::SocketAddr::from(([0, 0, 0, 0], 80));
                raw.listens.push((
                    Listen {
                        addr,
                        default_server: false,
                        proxy_protocol: false,
                        ssl: false,
                    },
                    raw.decl.clone(),
                    None,
                ));
            }
            if raw.names.is_empty() {
                raw.names
                    .push((ServerName::Exact(String::new()), raw.decl.clone()));
            }
            raw.settings.inherit(&http);
            raw.tls.inherit(&self.g.tls);
            let root = match &raw.settings.docroot {
                Some(DocRoot::Root(p)) => p.clone(),
                _ => prefix.join("html"),
            };
            let mut locations = Vec::new();
            let mut named = Vec::new();
            let mut tree = LocationTree::default();
            for l in &raw.locations {
                if l.modifier == Modifier::Named {
                    // Named locations have no children (refused above): resolve it alone.
                    let mut settings = l.settings.clone();
                    settings.inherit(&raw.settings);
                    let mut loc = resolve_location(
                        l.modifier,
                        l.pattern.text.clone(),
                        None,
                        &settings,
                        l.allow_methods,
                        l.ret.clone(),
                        l.status,
                    );
                    loc.try_files.clone_from(&l.try_files);
                    named.push(loc);
                    continue;
                }
                let idx = flatten(l, &raw.settings, None, &mut locations);
                tree.push(idx, &locations);
            }
            tree.sort(&locations);
            let mut default_location = resolve_location(
                Modifier::Prefix,
                "/".to_string(),
                None,
                &raw.settings,
                None,
                None,
                false,
            );
            default_location.try_files.clone_from(&raw.try_files);
            servers.push(Server {
                listens: raw.listens.iter().map(|l| l.0).collect(),
                names: raw.names.iter().map(|n| n.0.clone()).collect(),
                root,
                ret: raw.ret.clone(),
                locations,
                named,
                default_location,
                tree,
            });
        }
        let mut addrs = vhost::address_tables(&raws, self.diags);
        super::tls::build(&mut addrs, &raws, self.diags);
        let types = self.g.types.unwrap_or_else(|| {
            // nginx's built-in map when no `types` block is given.
            [
                ("html", "text/html"),
                ("gif", "image/gif"),
                ("jpg", "image/jpeg"),
            ]
            .into_iter()
            .map(|(e, t)| (e.to_string(), t.to_string()))
            .collect()
        });
        let opts = self.g.access_opts.unwrap_or(super::log_format::AccessOpts {
            format: None,
            buffer: None,
            flush: None,
        });
        let access_log_format = match &opts.format {
            None => super::log_format::LogFormat::combined(),
            Some((n, _)) if n == "combined" => super::log_format::LogFormat::combined(),
            Some((n, _)) => match self.g.log_formats.iter().find(|f| &f.name == n) {
                Some(f) => f.clone(),
                None => {
                    let msg = format!("unknown log format \"{n}\"");
                    self.diags.push(match &self.g.access_word {
                        Some(w) => w.err(msg),
                        None => ConfigError::new("", Default::default(), msg),
                    });
                    return None;
                }
            },
        };
        Some(Config {
            access_log_format: std::sync::Arc::new(access_log_format),
            access_log_buffer: opts.buffer,
            access_log_flush: opts.flush,
            prefix: prefix.to_path_buf(),
            backend: self.g.backend.unwrap_or(BackendChoice::Auto),
            workers: self.g.workers.unwrap_or(Workers::Count(1)),
            error_log: self.g.error_log.unwrap_or(ErrorLog {
                path: None,
                level: LogLevel::Error,
            }),
            access_log: self.g.access_log.flatten(),
            timeouts: Timeouts {
                header: self.g.header.unwrap_or(Duration::from_secs(60)),
                body: self.g.body.unwrap_or(Duration::from_secs(60)),
                send: self.g.send.unwrap_or(Duration::from_secs(60)),
                keepalive: self.g.keepalive.unwrap_or(Duration::from_secs(75)),
            },
            keepalive_requests: self.g.keepalive_requests.unwrap_or(1000),
            realip: crate::proxy::realip::RealIp {
                from: self.g.realip_from,
                source: self.g.realip_source.unwrap_or_default(),
                recursive: self.g.realip_recursive.unwrap_or(false),
            },
            worker_connections: self
                .g
                .worker_connections
                .unwrap_or(DEFAULT_WORKER_CONNECTIONS),
            default_type: self
                .g
                .default_type
                .unwrap_or_else(|| "application/octet-stream".to_string()),
            types,
            head_limits,
            server_tokens: self.g.server_tokens.unwrap_or(false),
            open_file_cache: OpenFileCache {
                max: match self.g.open_file_cache {
                    Some(v) => v.map_or(0, |(max, _)| max),
                    None => OpenFileCache::DEFAULT.max,
                },
                inactive: self
                    .g
                    .open_file_cache
                    .flatten()
                    .map_or(OpenFileCache::DEFAULT.inactive, |(_, t)| t),
                valid: self
                    .g
                    .open_file_cache_valid
                    .unwrap_or(OpenFileCache::DEFAULT.valid),
            },
            error_bodies: Default::default(),
            servers,
            addrs,
        })
    }
}

/// Resolves `raw` and its children (pre-order) into `out`; returns `raw`'s index.
fn flatten(
    raw: &RawLocation,
    parent: &Settings,
    parent_methods: Option<crate::config::model::Methods>,
    out: &mut Vec<Location>,
) -> usize {
    let mut settings = raw.settings.clone();
    settings.inherit(parent);
    let methods = raw.allow_methods.or(parent_methods);
    let idx = out.len();
    out.push(resolve_location(
        raw.modifier,
        raw.pattern.text.clone(),
        raw.regex.clone(),
        &settings,
        methods,
        raw.ret.clone(),
        raw.status,
    ));
    out[idx].try_files.clone_from(&raw.try_files);
    let mut tree = LocationTree::default();
    for c in &raw.children {
        let ci = flatten(c, &settings, methods, out);
        tree.push(ci, out);
    }
    tree.sort(out);
    out[idx].tree = tree;
    idx
}

fn resolve_location(
    modifier: Modifier,
    pattern: String,
    regex: Option<Regex>,
    s: &Settings,
    allow_methods: Option<Methods>,
    ret: Option<Return>,
    status: bool,
) -> Location {
    // Every field is Some here: `s` has inherited from the defaults at the http level.
    Location {
        modifier,
        pattern,
        docroot: s.docroot.clone().unwrap_or(DocRoot::Root("html".into())),
        index: s.index.clone().unwrap_or_default(),
        autoindex: s.autoindex.unwrap_or(false),
        autoindex_max_entries: s
            .autoindex_max_entries
            .unwrap_or(DEFAULT_AUTOINDEX_MAX_ENTRIES),
        disable_symlinks: s.disable_symlinks.unwrap_or(Symlinks::Follow),
        allow_methods,
        ret,
        error_pages: s.error_pages.clone().unwrap_or_default(),
        client_max_body_size: s
            .client_max_body_size
            .unwrap_or(DEFAULT_CLIENT_MAX_BODY_SIZE),
        cgi: s.cgi.clone().unwrap_or_default(),
        cgi_timeout: s.cgi_timeout.unwrap_or(DEFAULT_CGI_TIMEOUT),
        cgi_params: s.cgi_params.clone().unwrap_or_default(),
        upload_store: s.upload_store.clone(),
        alias_captures: match (&s.docroot, modifier) {
            (Some(DocRoot::Alias { dir, .. }), Modifier::Regex | Modifier::RegexCaseless) => {
                let text = dir.to_string_lossy();
                // Checked at load (settings.rs); a `$` that does not parse stays literal.
                Template::parse(&text).ok().filter(|t| t.has_vars())
            }
            _ => None,
        },
        add_headers: s.add_headers.clone().unwrap_or_default(),
        expires: s.expires.flatten(),
        max_ranges: s.max_ranges.unwrap_or(u32::MAX),
        status,
        // Not inherited (nginx): set by the caller from the location's own directive.
        try_files: None,
        regex,
        tree: LocationTree::default(),
    }
}

/// The `@name` references in a server's directives (nested locations included): `try_files`
/// fallbacks and `error_page` targets, with the word to point at.
fn named_refs(ds: &[Directive], out: &mut Vec<(String, Word)>) {
    for d in ds {
        if matches!(d.name.text.as_str(), "try_files" | "error_page") {
            if let Some(w) = d.args.last() {
                if let Some(name) = w.text.strip_prefix('@') {
                    out.push((name.to_string(), w.clone()));
                }
            }
        }
        if let Some(b) = &d.block {
            named_refs(b, out);
        }
    }
}
