//! `cgi_param`: configured CGI environment variables, expanded per request.
//!
//! The config loader has already parsed each value into a [`Template`] (literal text and
//! variable references, see `crate::config::Template`), so expanding one is a concatenation
//! of borrowed strings — no parsing on the request path. [`apply`] runs after
//! [`crate::cgi::build_env`]: each `cgi_param` overrides the variable of that name in place or
//! appends it, in configuration order, so for a NAME given twice the later one wins.

use std::fmt::Write as _;

pub use crate::config::{CgiParam, Piece, Template, Variable};

/// The request values a `cgi_param` may use, borrowed from the request and the routing
/// result. Each field is the nginx variable of the same name
/// (<https://nginx.org/en/docs/http/ngx_http_core_module.html#variables>); an absent value is
/// `""`, as nginx expands a variable that is not found.
#[derive(Debug, Clone, Copy, Default)]
pub struct Vars<'a> {
    /// `$uri`: the normalised, percent-decoded path (no query), after index resolution — for
    /// `GET /app/` served by `index.sh` it is `/app/index.sh`, as after nginx's internal redirect.
    pub uri: &'a str,
    /// `$request_uri`: the request-target as received (path and query, not decoded).
    pub request_uri: &'a str,
    /// `$args` and `$query_string`: the query without `?`, not decoded.
    pub args: &'a str,
    /// `$document_root`: the `root` or `alias` directory of the location that answers.
    pub document_root: &'a str,
    /// `$request_filename`: the file path the URI maps to (the script file for a CGI).
    pub request_filename: &'a str,
    /// `$host`: the Host header's host (lower case, without port), else the server name.
    pub host: &'a str,
    /// `$server_name`: the first `server_name` of the server that answers.
    pub server_name: &'a str,
    /// `$server_port`: the local port the request came in on.
    pub server_port: u16,
    /// `$scheme` is `https` (and `$https` is `on`).
    pub https: bool,
    /// `$remote_addr`: the client's IP address (an IPv4-mapped one shown as IPv4).
    pub remote_addr: &'a str,
    /// `$request_method`: as on the request line.
    pub request_method: &'a str,
    /// `$content_type`: the Content-Type request header field.
    pub content_type: &'a str,
    /// `$content_length`: the Content-Length request header field.
    pub content_length: &'a str,
    /// `$0`…`$9`: the captures of the regex location that answers (index 0: the whole match;
    /// a group that did not take part is `""`).
    pub captures: &'a [String],
    /// The `log_format` values (`None` outside the access log: they expand to `""`).
    pub log: Option<&'a LogValues>,
}

/// The values only an access-log line has (nginx's names; see `config::LOG_VARIABLES`).
#[derive(Debug, Clone, Default)]
pub struct LogValues {
    /// `$request`: the request line as received.
    pub request: String,
    pub status: u16,
    pub body_bytes_sent: u64,
    pub bytes_sent: u64,
    /// `$request_time`: seconds with millisecond resolution, from the first byte of the head.
    pub request_time: String,
    /// `$msec`: the time of the log write, seconds with millisecond resolution.
    pub msec: String,
    pub time_local: String,
    /// `$connection`: the connection's identity (`17.2`: slot and generation).
    pub connection: String,
    pub connection_requests: u32,
    /// `$request_id`: the request's identity in this server's log lines (`c17.2 r3`).
    pub request_id: String,
    /// The request headers the format names (lower-case name, value).
    pub headers: Vec<(String, String)>,
}

impl Vars<'_> {
    /// Appends the value of `var` to `out`.
    fn push(&self, var: Variable, out: &mut String) {
        let s = match var {
            Variable::Uri => self.uri,
            Variable::RequestUri => self.request_uri,
            Variable::Args => self.args,
            Variable::DocumentRoot => self.document_root,
            Variable::RequestFilename => self.request_filename,
            Variable::Host => self.host,
            Variable::ServerName => self.server_name,
            Variable::ServerPort => {
                // Writing to a String cannot fail.
                let _ = write!(out, "{}", self.server_port);
                return;
            }
            Variable::RemoteAddr => self.remote_addr,
            Variable::RequestMethod => self.request_method,
            Variable::ContentType => self.content_type,
            Variable::ContentLength => self.content_length,
            Variable::Scheme if self.https => "https",
            Variable::Scheme => "http",
            log_var => {
                if let Some(l) = self.log {
                    // Writing to a String cannot fail.
                    let _ = match log_var {
                        Variable::Request => write!(out, "{}", l.request),
                        Variable::Status => write!(out, "{}", l.status),
                        Variable::BodyBytesSent => write!(out, "{}", l.body_bytes_sent),
                        Variable::BytesSent => write!(out, "{}", l.bytes_sent),
                        Variable::RequestTime => write!(out, "{}", l.request_time),
                        Variable::Msec => write!(out, "{}", l.msec),
                        Variable::TimeLocal => write!(out, "{}", l.time_local),
                        Variable::Connection => write!(out, "{}", l.connection),
                        Variable::ConnectionRequests => write!(out, "{}", l.connection_requests),
                        Variable::RequestId => write!(out, "{}", l.request_id),
                        _ => Ok(()),
                    };
                }
                return;
            }
        };
        out.push_str(s);
    }
}

/// Appends `t` expanded with `vars` to `out`.
pub fn expand_into(t: &Template, vars: &Vars<'_>, out: &mut String) {
    for piece in t.pieces() {
        match piece {
            Piece::Literal(s) => out.push_str(s),
            _ => value_into(piece, vars, out),
        }
    }
}

/// Appends the value of one variable piece.
fn value_into(piece: &Piece, vars: &Vars<'_>, out: &mut String) {
    match piece {
        Piece::Literal(s) => out.push_str(s),
        Piece::Var(v) => vars.push(*v, out),
        Piece::Capture(n) => {
            if let Some(c) = vars.captures.get(usize::from(*n)) {
                out.push_str(c);
            }
        }
        Piece::Http(name) => {
            let v = vars
                .log
                .and_then(|l| l.headers.iter().find(|(n, _)| n == name));
            if let Some((_, v)) = v {
                out.push_str(v);
            }
        }
    }
}

/// Appends `t` expanded with `vars`, each variable's value passed through `escape` (literal
/// text as is): what an access-log line needs.
pub fn expand_escaped(
    t: &Template,
    vars: &Vars<'_>,
    out: &mut String,
    mut escape: impl FnMut(&str, &mut String),
) {
    let mut value = String::new();
    for piece in t.pieces() {
        match piece {
            Piece::Literal(s) => out.push_str(s),
            _ => {
                value.clear();
                value_into(piece, vars, &mut value);
                escape(&value, out);
            }
        }
    }
}

/// `t` expanded with `vars`.
pub fn expand(t: &Template, vars: &Vars<'_>) -> String {
    let mut out = String::new();
    expand_into(t, vars, &mut out);
    out
}

/// Applies `params` in order to `env`: each overrides the entry with its exact NAME in place, or
/// is appended. An `if_not_empty` param whose value expands to `""` changes nothing.
///
/// A NUL byte cannot be in an environment value (execve(2) takes C strings), so a value is cut
/// at its first NUL — what a C program would read — rather than making the spawn fail.
pub fn apply(params: &[CgiParam], vars: &Vars<'_>, env: &mut Vec<(String, String)>) {
    for p in params {
        let mut value = expand(&p.value, vars);
        if let Some(nul) = value.find('\0') {
            value.truncate(nul);
        }
        if p.if_not_empty && value.is_empty() {
            continue;
        }
        match env.iter_mut().find(|(k, _)| *k == p.name) {
            Some((_, v)) => *v = value,
            None => env.push((p.name.clone(), value)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::VARIABLES;

    fn vars() -> Vars<'static> {
        Vars {
            uri: "/cgi/a b.py",
            request_uri: "/cgi/a%20b.py/x?q=1&r",
            args: "q=1&r",
            document_root: "/srv/www",
            request_filename: "/srv/www/cgi/a b.py",
            host: "example.com",
            server_name: "www.example.com",
            server_port: 8080,
            https: false,
            remote_addr: "127.0.0.1",
            request_method: "POST",
            content_type: "text/plain",
            content_length: "12",
            captures: &[],
            log: None,
        }
    }

    fn param(name: &str, value: &str) -> CgiParam {
        CgiParam {
            name: name.to_string(),
            value: Template::parse(value).unwrap(),
            if_not_empty: false,
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_variable_expands() {
        let v = vars();
        let want = [
            ("uri", "/cgi/a b.py"),
            ("request_uri", "/cgi/a%20b.py/x?q=1&r"),
            ("args", "q=1&r"),
            ("query_string", "q=1&r"),
            ("document_root", "/srv/www"),
            ("request_filename", "/srv/www/cgi/a b.py"),
            ("host", "example.com"),
            ("server_name", "www.example.com"),
            ("server_port", "8080"),
            ("remote_addr", "127.0.0.1"),
            ("request_method", "POST"),
            ("content_type", "text/plain"),
            ("content_length", "12"),
            ("scheme", "http"),
        ];
        assert_eq!(want.len(), VARIABLES.len(), "a variable has no case here");
        for (name, value) in want {
            for text in [format!("${name}"), format!("${{{name}}}")] {
                let t = Template::parse(&text).unwrap();
                assert_eq!(expand(&t, &v), value, "{text}");
            }
        }
    }

    #[test]
    fn mixed_templates() {
        let v = vars();
        let cases = [
            ("", ""),
            ("plain", "plain"),
            (
                "http://$host:$server_port$request_uri",
                "http://example.com:8080/cgi/a%20b.py/x?q=1&r",
            ),
            ("${uri}.bak", "/cgi/a b.py.bak"),
            ("[$REQUEST_METHOD]", "[POST]"),
            ("$args$args", "q=1&rq=1&r"),
        ];
        for (text, want) in cases {
            let t = Template::parse(text).unwrap();
            assert_eq!(expand(&t, &v), want, "{text:?}");
        }
        // Absent values expand to "".
        let t = Template::parse("<$content_type|$args>").unwrap();
        assert_eq!(expand(&t, &Vars::default()), "<|>");
        let mut out = String::from("keep:");
        expand_into(&Template::parse("$uri").unwrap(), &v, &mut out);
        assert_eq!(out, "keep:/cgi/a b.py");
    }

    #[test]
    fn apply_overrides_in_place_and_appends() {
        let mut e = env(&[
            ("PATH_INFO", ""),
            ("QUERY_STRING", "q=1&r"),
            ("PATH", "/bin"),
        ]);
        let params = [
            param("PATH_INFO", "$uri"),
            param("SCRIPT_ROOT", "$document_root"),
            param("path", "lower case is another name"),
        ];
        apply(&params, &vars(), &mut e);
        assert_eq!(
            e,
            env(&[
                ("PATH_INFO", "/cgi/a b.py"),
                ("QUERY_STRING", "q=1&r"),
                ("PATH", "/bin"),
                ("SCRIPT_ROOT", "/srv/www"),
                ("path", "lower case is another name"),
            ])
        );
    }

    #[test]
    fn apply_later_param_wins_and_empty_values() {
        let mut e = env(&[("A", "old")]);
        let params = [param("A", "first"), param("B", "x"), param("A", "second")];
        apply(&params, &vars(), &mut e);
        assert_eq!(e, env(&[("A", "second"), ("B", "x")]));

        // Without if_not_empty an empty value is set; with it, nothing changes.
        let mut e = env(&[("A", "old"), ("B", "old")]);
        let mut keep = param("B", "$content_type");
        keep.if_not_empty = true;
        let mut add = param("C", "$content_type");
        add.if_not_empty = true;
        apply(
            &[param("A", "$content_type"), keep, add],
            &Vars::default(),
            &mut e,
        );
        assert_eq!(e, env(&[("A", ""), ("B", "old")]));

        // if_not_empty with a non-empty value overrides as usual.
        let mut e = env(&[("B", "old")]);
        let mut p = param("B", "$request_method");
        p.if_not_empty = true;
        apply(&[p], &vars(), &mut e);
        assert_eq!(e, env(&[("B", "POST")]));
    }

    #[test]
    fn apply_cuts_a_value_at_nul() {
        let v = Vars {
            uri: "/a\0b",
            ..Vars::default()
        };
        let mut e = Vec::new();
        apply(&[param("X", "$uri!")], &v, &mut e);
        assert_eq!(e, env(&[("X", "/a")]));
    }
}
