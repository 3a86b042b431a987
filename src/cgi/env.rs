//! CGI meta-variables (RFC 3875 §4.1) built from a request.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// `PATH` for scripts: a fixed safe default, never the server's own environment (the child is
/// started with a cleared environment, see [`crate::cgi::spawn`]).
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Everything [`build_env`] needs, borrowed from the request and the routing result.
#[derive(Debug, Clone)]
pub struct CgiParams<'a> {
    pub method: &'a str,
    /// The raw request-target as received (path and query, not decoded).
    pub request_uri: &'a str,
    /// The script's URI path (first part of [`crate::cgi::split_script`]).
    pub script_name: &'a str,
    pub script_filename: &'a Path,
    /// Second part of [`crate::cgi::split_script`]; empty when there is none.
    pub path_info: &'a str,
    /// PATH_INFO mapped through the document root (§4.1.6); only emitted with a non-empty
    /// `path_info`.
    pub path_translated: Option<PathBuf>,
    /// The query string without `?`, as received (§4.1.7); may be empty.
    pub query: &'a str,
    /// The request body's length once known (§4.1.2). A chunked request body must be
    /// de-chunked by the server; then this is `None` unless the server buffered it to count.
    pub content_length: Option<u64>,
    pub content_type: Option<&'a str>,
    pub server_name: &'a str,
    pub server_port: u16,
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub server_protocol: &'a str,
    pub remote_addr: SocketAddr,
    /// The request came over TLS: `HTTPS=on` (as nginx's `fastcgi_params` sets it).
    pub https: bool,
    /// Request header fields in arrival order, names as received.
    pub headers: &'a [(&'a [u8], &'a [u8])],
}

/// The environment for a CGI script: meta-variables (§4.1) then `HTTP_*` protocol variables
/// (§4.1.18), each name at most once.
pub fn build_env(p: &CgiParams<'_>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::with_capacity(24 + p.headers.len());
    let mut put = |k: &str, v: String| env.push((k.to_owned(), v));
    put("GATEWAY_INTERFACE", "CGI/1.1".into());
    put(
        "SERVER_SOFTWARE",
        concat!("webserv/", env!("CARGO_PKG_VERSION")).into(),
    );
    put("SERVER_NAME", p.server_name.into());
    put("SERVER_PORT", p.server_port.to_string());
    put("SERVER_PROTOCOL", p.server_protocol.into());
    if p.https {
        put("HTTPS", "on".into());
    }
    put("REQUEST_METHOD", p.method.into());
    put("REQUEST_URI", p.request_uri.into());
    put("SCRIPT_NAME", p.script_name.into());
    put(
        "SCRIPT_FILENAME",
        p.script_filename.to_string_lossy().into_owned(),
    );
    put("PATH_INFO", p.path_info.into());
    if !p.path_info.is_empty() {
        if let Some(t) = &p.path_translated {
            put("PATH_TRANSLATED", t.to_string_lossy().into_owned());
        }
    }
    // §4.1.7: QUERY_STRING MUST be set, to "" when there is no query.
    put("QUERY_STRING", p.query.into());
    if let Some(n) = p.content_length {
        put("CONTENT_LENGTH", n.to_string());
    }
    if let Some(t) = p.content_type {
        put("CONTENT_TYPE", t.into());
    }
    // A v4-mapped address from a dual-stack socket is shown as the IPv4 address scripts expect.
    put("REMOTE_ADDR", p.remote_addr.ip().to_canonical().to_string());
    put("REMOTE_PORT", p.remote_addr.port().to_string());
    // PHP's php-cgi refuses to run without it (its `cgi.force_redirect` check).
    put("REDIRECT_STATUS", "200".into());
    put("PATH", DEFAULT_PATH.into());

    let first_http = env.len();
    for (name, value) in p.headers {
        let Some(var) = header_var(name) else {
            continue;
        };
        let value = String::from_utf8_lossy(value);
        let value = value.trim_matches([' ', '\t']);
        if let Some((_, v)) = env[first_http..].iter_mut().find(|(k, _)| *k == var) {
            // RFC 9110 §5.3: repeated fields combine with commas — except Cookie, whose
            // pairs are separated by "; " (RFC 6265 §5.4).
            v.push_str(if var == "HTTP_COOKIE" { "; " } else { ", " });
            v.push_str(value);
        } else {
            env.push((var, value.to_owned()));
        }
    }
    env
}

/// The `HTTP_*` name for a request header, or `None` when it must not be passed on.
fn header_var(name: &[u8]) -> Option<String> {
    // Underscores would let `X-Foo` and `X_Foo` collide in the environment and smuggle a
    // variable past a proxy that checked the other spelling (nginx drops them by default).
    if name.is_empty() || name.contains(&b'_') {
        return None;
    }
    // httpoxy (CVE-2016-5385): `Proxy:` would become HTTP_PROXY, which many HTTP client
    // libraries read as their proxy setting.
    if name.eq_ignore_ascii_case(b"proxy")
        // Already the CONTENT_LENGTH / CONTENT_TYPE meta-variables (§4.1.18).
        || name.eq_ignore_ascii_case(b"content-length")
        || name.eq_ignore_ascii_case(b"content-type")
    {
        return None;
    }
    let mut var = String::with_capacity(5 + name.len());
    var.push_str("HTTP_");
    for &b in name {
        match b {
            b'-' => var.push('_'),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => var.push(b.to_ascii_uppercase() as char),
            // Other tchars (`!#$%&'*+.^`|~`) have no place in a shell-friendly name.
            _ => return None,
        }
    }
    Some(var)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params<'a>(headers: &'a [(&'a [u8], &'a [u8])]) -> CgiParams<'a> {
        CgiParams {
            method: "POST",
            request_uri: "/cgi-bin/env.py/a%20b?x=1",
            script_name: "/cgi-bin/env.py",
            script_filename: Path::new("/srv/www/cgi-bin/env.py"),
            path_info: "/a b",
            path_translated: Some(PathBuf::from("/srv/www/a b")),
            query: "x=1",
            content_length: Some(5),
            content_type: Some("text/plain"),
            server_name: "example.test",
            server_port: 8080,
            server_protocol: "HTTP/1.1",
            remote_addr: "192.0.2.7:54321".parse().unwrap(),
            https: false,
            headers,
        }
    }

    fn get<'e>(env: &'e [(String, String)], k: &str) -> Option<&'e str> {
        let mut it = env.iter().filter(|(n, _)| n == k);
        let v = it.next().map(|(_, v)| v.as_str());
        assert!(it.next().is_none(), "{k} set twice");
        v
    }

    #[test]
    fn meta_variables() {
        let env = build_env(&params(&[]));
        let want = [
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            ("SERVER_NAME", "example.test"),
            ("SERVER_PORT", "8080"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("REQUEST_METHOD", "POST"),
            ("REQUEST_URI", "/cgi-bin/env.py/a%20b?x=1"),
            ("SCRIPT_NAME", "/cgi-bin/env.py"),
            ("SCRIPT_FILENAME", "/srv/www/cgi-bin/env.py"),
            ("PATH_INFO", "/a b"),
            ("PATH_TRANSLATED", "/srv/www/a b"),
            ("QUERY_STRING", "x=1"),
            ("CONTENT_LENGTH", "5"),
            ("CONTENT_TYPE", "text/plain"),
            ("REMOTE_ADDR", "192.0.2.7"),
            ("REMOTE_PORT", "54321"),
            ("REDIRECT_STATUS", "200"),
            ("PATH", DEFAULT_PATH),
        ];
        for (k, v) in want {
            assert_eq!(get(&env, k), Some(v), "{k}");
        }
        assert!(get(&env, "SERVER_SOFTWARE")
            .unwrap()
            .starts_with("webserv/"));
    }

    #[test]
    fn optional_variables() {
        let mut p = params(&[]);
        p.path_info = "";
        p.query = "";
        p.content_length = None;
        p.content_type = None;
        p.remote_addr = "[::ffff:10.0.0.1]:1".parse().unwrap();
        let env = build_env(&p);
        assert_eq!(get(&env, "PATH_INFO"), Some(""));
        assert_eq!(get(&env, "PATH_TRANSLATED"), None);
        assert_eq!(get(&env, "QUERY_STRING"), Some(""));
        assert_eq!(get(&env, "CONTENT_LENGTH"), None);
        assert_eq!(get(&env, "CONTENT_TYPE"), None);
        assert_eq!(get(&env, "REMOTE_ADDR"), Some("10.0.0.1"));
        p.remote_addr = "[2001:db8::1]:443".parse().unwrap();
        assert_eq!(get(&build_env(&p), "REMOTE_ADDR"), Some("2001:db8::1"));
    }

    #[test]
    fn header_variables() {
        let h: &[(&[u8], &[u8])] = &[
            (b"Host", b"example.test:8080"),
            (b"user-agent", b"t/1"),
            (b"X-Multi-Word", b" v "),
            (b"Accept", b"a/b"),
            (b"accept", b"c/d"),
            (b"Cookie", b"a=1"),
            (b"Cookie", b"b=2"),
            (b"Proxy", b"http://evil:1"),
            (b"X_Under", b"no"),
            (b"Content-Length", b"5"),
            (b"Content-Type", b"text/plain"),
            (b"X.Dot", b"no"),
            (b"PATH", b"/evil"),
        ];
        let env = build_env(&params(h));
        assert_eq!(get(&env, "HTTP_HOST"), Some("example.test:8080"));
        assert_eq!(get(&env, "HTTP_USER_AGENT"), Some("t/1"));
        assert_eq!(get(&env, "HTTP_X_MULTI_WORD"), Some("v"));
        assert_eq!(get(&env, "HTTP_ACCEPT"), Some("a/b, c/d"));
        assert_eq!(get(&env, "HTTP_COOKIE"), Some("a=1; b=2"));
        assert_eq!(get(&env, "HTTP_PROXY"), None);
        assert_eq!(get(&env, "HTTP_X_UNDER"), None);
        assert_eq!(get(&env, "HTTP_CONTENT_LENGTH"), None);
        assert_eq!(get(&env, "HTTP_CONTENT_TYPE"), None);
        assert!(env.iter().all(|(k, _)| !k.contains('.')));
        // A header never overrides a meta-variable.
        assert_eq!(get(&env, "PATH"), Some(DEFAULT_PATH));
        assert_eq!(get(&env, "HTTP_PATH"), Some("/evil"));
    }
}
