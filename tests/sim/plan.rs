//! What a scenario's clients ask and what a correct server may answer: requests with their
//! acceptable statuses and, for a success, the exact body (so a response that answers another
//! request is caught), and the scripts of the simulated CGI children.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use backends::sim::rng::Rng;
use backends::sim::{ChildPlan, StdinUse};

pub struct Req {
    pub bytes: Vec<u8>,
    pub head: bool,
    /// Statuses a correct server gives this request when nothing disturbs the connection.
    pub ok: Vec<u16>,
    /// The exact body of a 2xx answer, when known.
    pub body: Option<Vec<u8>>,
    /// A hostile CGI: 5xx, a truncated answer or a close are all correct.
    pub hostile: bool,
    /// The server closes the connection after answering it.
    pub closes: bool,
    /// It runs a CGI (an injected spawn failure answers 500).
    pub cgi: bool,
}

/// The static files requests name, with their bytes.
pub struct Site {
    pub files: Vec<(&'static str, Vec<u8>)>,
}

impl Site {
    pub fn load(www: &Path) -> Site {
        let names = [
            "/index.html",
            "/demo/readme.txt",
            "/static/style.css",
            "/upload.html",
            "/demo/sim-mid.bin",
            "/demo/sim-big.bin",
        ];
        Site {
            files: names
                .iter()
                .map(|n| (*n, std::fs::read(www.join(&n[1..])).expect("site file")))
                .collect(),
        }
    }
}

fn cgi_body(tag: &str, size: usize) -> Vec<u8> {
    let line = format!("cgi {tag}\n");
    line.as_bytes()
        .iter()
        .copied()
        .cycle()
        .take(size.max(line.len()))
        .collect()
}

const CGI_KINDS: [&str; 14] = [
    "ok",
    "ok",
    "cl",
    "big",
    "status",
    "stderr",
    "nohead",
    "shortcl",
    "longcl",
    "silent",
    "early",
    "grand",
    "stubborn",
    "stdinclose",
];

fn hostile(kind: &str) -> bool {
    matches!(
        kind,
        "nohead" | "shortcl" | "longcl" | "silent" | "early" | "grand" | "stubborn" | "stdinclose"
    )
}

/// The child script for a spawn of `/cgi-bin/sim.py?k=KIND&n=SIZE&t=TAG`.
pub fn child_plan(cmd: &Command, rng: &mut Rng) -> std::io::Result<ChildPlan> {
    let q = cmd
        .get_envs()
        .find(|(k, _)| *k == "QUERY_STRING")
        .and_then(|(_, v)| v)
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_default();
    let get = |key: &str| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .unwrap_or("")
            .to_string()
    };
    let kind = get("k");
    let size: usize = get("n").parse().unwrap_or(10);
    let body = cgi_body(&get("t"), size);
    let ct = b"Content-Type: text/plain\r\n".to_vec();
    let with_head = |head: &[u8], body: &[u8]| [head, b"\r\n", body].concat();
    let mut p = ChildPlan::ok(with_head(&ct, &body));
    match kind.as_str() {
        "cl" | "shortcl" | "longcl" => {
            let n = match kind.as_str() {
                "cl" => body.len(),
                "shortcl" => body.len() + 10,
                _ => body.len().saturating_sub(5),
            };
            let h = format!("Content-Type: text/plain\r\nContent-Length: {n}\r\n");
            p.stdout = with_head(h.as_bytes(), &body);
        }
        "status" => p.stdout = with_head(b"Status: 404 Not Found\r\n", &body),
        "stderr" => p.stderr = vec![b'e'; rng.range(1, 9000)],
        "nohead" => p.stdout = body.clone(),
        "silent" => p.stall = Some((rng.below(p.stdout.len()), Duration::from_secs(40))),
        "early" => {
            p.stdout.truncate(rng.below(ct.len()));
            p.status = 1 << 8;
        }
        "grand" => {
            p.hold_stdout = Some(*rng.pick(&[Duration::from_secs(3), Duration::MAX]));
        }
        "stubborn" => {
            p.ignore_term = true;
            p.stall = Some((rng.below(p.stdout.len()), Duration::from_secs(100)));
        }
        "stdinclose" => p.stdin = StdinUse::Some(rng.below(3000)),
        _ => {}
    }
    if rng.chance(100) {
        p.stdin = StdinUse::Ignore;
    }
    Ok(p)
}

/// A request body; `big` allows the large ones (not with tiny receive buffers: a 300 kB body
/// in 16-byte receives costs 20,000 completions and explores nothing new).
fn body_bytes(rng: &mut Rng, big: bool) -> Vec<u8> {
    let n = match rng.below(if big { 10 } else { 7 }) {
        0 => 0,
        1..=6 => rng.range(1, 3000),
        7 | 8 => rng.range(3000, 80_000),
        _ => rng.range(80_000, 300_000),
    };
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

/// `Content-Length` or chunked framing of `body` (chunks of random sizes).
fn framed(rng: &mut Rng, body: &[u8]) -> (String, Vec<u8>) {
    if rng.chance(600) {
        return (format!("Content-Length: {}\r\n", body.len()), body.to_vec());
    }
    let mut out = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let n = rng.range(1, (body.len() - at).min(40_000));
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend_from_slice(&body[at..at + n]);
        out.extend_from_slice(b"\r\n");
        at += n;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    ("Transfer-Encoding: chunked\r\n".into(), out)
}

/// One request of client `tag` (unique in the process).
pub fn request(rng: &mut Rng, site: &Site, tag: &str, last: bool, big: bool) -> Req {
    let conn_close = last && rng.chance(200);
    let hdr_close = if conn_close {
        "Connection: close\r\n"
    } else {
        ""
    };
    let mut r = Req {
        bytes: Vec::new(),
        head: false,
        ok: vec![200],
        body: None,
        hostile: false,
        closes: conn_close,
        cgi: false,
    };
    match rng.below(20) {
        0..=5 => {
            let (name, data) = rng.pick(&site.files);
            r.head = rng.chance(150);
            let m = if r.head { "HEAD" } else { "GET" };
            r.bytes = format!("{m} {name} HTTP/1.1\r\nHost: localhost\r\n{hdr_close}\r\n").into();
            r.body = Some(if r.head { Vec::new() } else { data.clone() });
        }
        6 if rng.chance(300) => {
            // A directory listing (Op::ListDir), of a directory uploads change meanwhile or not.
            let dir = if rng.chance(500) {
                "/demo/"
            } else {
                "/uploads/"
            };
            r.bytes = format!("GET {dir} HTTP/1.1\r\nHost: localhost\r\n{hdr_close}\r\n").into();
        }
        6 => {
            r.bytes =
                format!("GET /missing-{tag}.html HTTP/1.1\r\nHost: localhost\r\n{hdr_close}\r\n")
                    .into();
            r.ok = vec![404];
        }
        7 | 8 => {
            let body = body_bytes(rng, big);
            let (fr, wire) = framed(rng, &body);
            let expect = if rng.chance(200) {
                "Expect: 100-continue\r\n"
            } else {
                ""
            };
            r.bytes = format!(
                "PUT /uploads/sim-{tag}.txt HTTP/1.1\r\nHost: localhost\r\n{fr}{expect}{hdr_close}\r\n"
            )
            .into();
            r.bytes.extend_from_slice(&wire);
            r.ok = vec![201, 204];
        }
        9 => {
            r.bytes = format!(
                "DELETE /uploads/sim-{tag}.txt HTTP/1.1\r\nHost: localhost\r\n{hdr_close}\r\n"
            )
            .into();
            r.ok = vec![204, 404];
        }
        10..=16 => {
            let kind = *rng.pick(&CGI_KINDS);
            let size = match rng.below(if big { 4 } else { 3 }) {
                0..=2 => rng.range(1, 5000),
                _ => rng.range(60_000, 200_000),
            };
            let size = if kind == "big" {
                size.max(70_000)
            } else {
                size
            };
            let q = format!("k={kind}&n={size}&t={tag}");
            let body = cgi_body(tag, size);
            r.body = Some(match kind {
                "longcl" => body[..body.len().saturating_sub(5)].to_vec(),
                _ => body,
            });
            r.hostile = hostile(kind);
            r.cgi = true;
            r.ok = match kind {
                "status" => vec![404],
                _ if r.hostile => vec![200, 500, 502, 504],
                _ => vec![200],
            };
            if rng.chance(400) {
                let b = body_bytes(rng, big);
                let (fr, wire) = framed(rng, &b);
                r.bytes = format!(
                    "POST /cgi-bin/sim.py?{q} HTTP/1.1\r\nHost: localhost\r\n{fr}{hdr_close}\r\n"
                )
                .into();
                r.bytes.extend_from_slice(&wire);
            } else {
                r.bytes = format!(
                    "GET /cgi-bin/sim.py?{q} HTTP/1.1\r\nHost: localhost\r\n{hdr_close}\r\n"
                )
                .into();
            }
        }
        17 => {
            let (name, data) = rng.pick(&site.files);
            r.bytes = format!("GET {name} HTTP/1.0\r\n\r\n").into();
            r.body = Some(data.clone());
            r.closes = true;
        }
        18 => {
            // Framing errors: the answer, then the connection closes.
            r.bytes = match rng.below(3) {
                0 => b"GET /index.html HTTP/1.1\r\nHost localhost\r\n\r\n".to_vec(),
                1 => format!("GET /{} HTTP/1.1\r\nHost: localhost\r\n\r\n", "a".repeat(9000)).into(),
                _ => b"POST /uploads/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
            };
            r.ok = vec![400, 414];
            r.closes = true;
        }
        _ => {
            r.bytes = format!("GET /status HTTP/1.1\r\nHost: localhost\r\n{hdr_close}\r\n").into();
        }
    }
    r
}
