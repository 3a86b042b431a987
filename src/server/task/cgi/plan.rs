//! Deciding that a request runs a CGI, and everything needed to start it — built while the
//! request head (which the environment borrows from) is still at hand.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::Location;
use crate::http::request::{BodyKind, Request};

/// What starting the script needs.
pub struct CgiPlan {
    pub script: PathBuf,
    pub interpreter: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
}

/// The request facts the plan needs besides the parsed head.
pub struct Facts<'a> {
    /// The normalised (decoded) URI path that decides the script: after index resolution.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub host: &'a str,
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub body: BodyKind,
    /// The virtual server's first exact `server_name` (nginx's `$server_name`), if any.
    pub server_name: Option<&'a str>,
    /// The connection speaks TLS.
    pub https: bool,
}

/// `Some(plan)` if `loc` runs a CGI for `facts.path`.
pub fn plan(req: &Request<'_>, loc: &Location, facts: &Facts<'_>) -> Option<CgiPlan> {
    if loc.cgi.is_empty() {
        return None;
    }
    let exts: Vec<&str> = loc.cgi.iter().map(|c| c.ext.as_str()).collect();
    let (script_uri, path_info) = crate::cgi::split_script(facts.path, &exts)?;
    let handler = loc.cgi_for(script_uri)?;
    let script = crate::server::reply::map(loc, script_uri)?;
    let headers: Vec<(&[u8], &[u8])> = req.headers().collect();
    let content_type = req
        .header("Content-Type")
        .and_then(|v| std::str::from_utf8(v).ok());
    let host = facts.host;
    // SERVER_NAME is the Host without its port (an IPv6 literal keeps its brackets).
    let server_name = match host.rsplit_once(':') {
        Some((h, p)) if !host.ends_with(']') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let path_translated = if path_info.is_empty() {
        None
    } else {
        crate::server::reply::map(loc, path_info)
    };
    let content_length = match facts.body {
        BodyKind::Length(n) => Some(n),
        _ => None,
    };
    let params = crate::cgi::CgiParams {
        method: req.method.as_str(),
        request_uri: req.target(),
        script_name: script_uri,
        script_filename: &script,
        path_info,
        path_translated,
        query: facts.query.unwrap_or(""),
        content_length,
        content_type,
        server_name: if server_name.is_empty() {
            "localhost"
        } else {
            server_name
        },
        server_port: facts.local.port(),
        server_protocol: if req.minor == 0 {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        },
        remote_addr: facts.peer,
        https: facts.https,
        headers: &headers,
    };
    let mut env = crate::cgi::build_env(&params);
    if !loc.cgi_params.is_empty() {
        // `cgi_param NAME VALUE`: added or overriding, with nginx variables expanded.
        let document_root = match &loc.docroot {
            crate::config::DocRoot::Root(d) => d.to_string_lossy(),
            crate::config::DocRoot::Alias { dir, .. } => dir.to_string_lossy(),
        };
        // nginx's $request_filename: the root or alias joined with the URI (not the script).
        let filename = crate::server::reply::map(loc, facts.path)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let remote = facts.peer.ip().to_string();
        let length = content_length.map(|n| n.to_string()).unwrap_or_default();
        // nginx's $host: the Host without its port, lower-cased; else the server's name.
        let host = server_name.to_ascii_lowercase();
        // `$1`…: the captures of a regex location, against the script's URI path.
        let captures: Vec<String> = loc
            .regex
            .as_ref()
            .and_then(|r| r.captures(facts.path))
            .map(|c| {
                c.iter()
                    .map(|m| m.map_or(String::new(), |m| m.as_str().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let vars = crate::cgi::params::Vars {
            uri: facts.path,
            request_uri: req.target(),
            args: facts.query.unwrap_or(""),
            document_root: &document_root,
            request_filename: &filename,
            host: if host.is_empty() {
                facts.server_name.unwrap_or("")
            } else {
                &host
            },
            server_name: facts.server_name.unwrap_or(server_name),
            server_port: facts.local.port(),
            https: facts.https,
            remote_addr: &remote,
            request_method: req.method.as_str(),
            content_type: content_type.unwrap_or(""),
            content_length: &length,
            captures: &captures,
            log: None,
        };
        crate::cgi::params::apply(&loc.cgi_params, &vars, &mut env);
    }
    Some(CgiPlan {
        script,
        interpreter: handler.interpreter.clone(),
        env,
        timeout: loc.cgi_timeout,
    })
}
