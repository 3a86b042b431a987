//! `add_header` and `expires` on a response head
//! (<https://nginx.org/en/docs/http/ngx_http_headers_module.html>).
//!
//! The lines are computed once the location that answers is known (values expanded then) and
//! kept with the request; the connection inserts them into the request's final response head
//! when a task queues it — whatever made the head: a file, an error page, a `return`, an
//! upload's answer or a CGI's. As in nginx, they apply to 200, 201, 204, 206, 301, 302, 303,
//! 304, 307 and 308, and an `add_header … always` to every status. `expires` replaces any
//! `Expires` and `Cache-Control` the head already has (a CGI's, say).

use std::time::SystemTime;

use crate::cgi::params::{expand, Vars};
use crate::config::{Expires, Location};

/// The statuses `add_header` (without `always`) and `expires` apply to.
const STATUSES: [u16; 10] = [200, 201, 204, 206, 301, 302, 303, 304, 307, 308];

/// nginx's `expires max` date and age.
const MAX_DATE: &[u8] = b"Thu, 31 Dec 2037 23:55:55 GMT";
const MAX_AGE: u64 = 315_360_000;
const EPOCH_DATE: &[u8] = b"Thu, 01 Jan 1970 00:00:01 GMT";

/// The header lines one request's answer gets.
#[derive(Debug, Default)]
pub struct ExtraHeaders {
    /// For a status in [`STATUSES`].
    listed: Vec<u8>,
    /// For any status.
    always: Vec<u8>,
    /// Whether `listed` holds an `expires` (existing `Expires`/`Cache-Control` go).
    expires: bool,
}

fn line(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    crate::server::reply::header_checked(out, name, value);
}

/// The lines for an answer from `loc`, or `None` when it has neither `add_header` nor
/// `expires`.
pub fn for_location(loc: &Location, vars: &Vars<'_>, now: SystemTime) -> Option<Box<ExtraHeaders>> {
    if loc.add_headers.is_empty() && loc.expires.is_none() {
        return None;
    }
    let mut x = ExtraHeaders::default();
    if let Some(e) = loc.expires {
        x.expires = true;
        let (date, cc) = match e {
            Expires::Epoch => (EPOCH_DATE.to_vec(), "no-cache".to_string()),
            Expires::Max => (MAX_DATE.to_vec(), format!("max-age={MAX_AGE}")),
            Expires::Secs(s) => {
                let base = crate::http::date::unix_secs(now) as i64;
                let at = base.saturating_add(s).max(1) as u64;
                let date = crate::http::date::format_unix(at).to_vec();
                let cc = if s < 0 {
                    "no-cache".to_string()
                } else {
                    format!("max-age={s}")
                };
                (date, cc)
            }
        };
        line(&mut x.listed, "Expires", &date);
        line(&mut x.listed, "Cache-Control", cc.as_bytes());
    }
    for h in &loc.add_headers {
        let v = expand(&h.value, vars);
        if v.is_empty() {
            continue;
        }
        let out = if h.always {
            &mut x.always
        } else {
            &mut x.listed
        };
        line(out, &h.name, v.as_bytes());
    }
    Some(Box::new(x))
}

/// The status of a response head (`HTTP/1.1 200 …`).
fn status(head: &[u8]) -> Option<u16> {
    std::str::from_utf8(head.get(9..12)?).ok()?.parse().ok()
}

/// Inserts `x`'s lines for this head's status before its blank line.
pub fn apply(x: &ExtraHeaders, head: &mut Vec<u8>) {
    let Some(code) = status(head) else {
        return;
    };
    let listed = STATUSES.contains(&code);
    if listed && x.expires {
        remove_fields(head, &["expires", "cache-control"]);
    }
    let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
        return;
    };
    let at = end + 2;
    let mut add = Vec::with_capacity(x.listed.len() + x.always.len());
    if listed {
        add.extend_from_slice(&x.listed);
    }
    add.extend_from_slice(&x.always);
    head.splice(at..at, add);
}

/// Removes the header lines named (lower case) in `names` from a head.
fn remove_fields(head: &mut Vec<u8>, names: &[&str]) {
    let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
        return;
    };
    let Some(first) = head.windows(2).position(|w| w == b"\r\n") else {
        return;
    };
    let mut kept = head[..first + 2].to_vec();
    for l in head[first + 2..end + 2].split_inclusive(|&b| b == b'\n') {
        let name = l.split(|&b| b == b':').next().unwrap_or_default();
        let drop = names
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n.as_bytes()));
        if !drop {
            kept.extend_from_slice(l);
        }
    }
    kept.extend_from_slice(&head[end + 2..]);
    *head = kept;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x(listed: &str, always: &str, expires: bool) -> ExtraHeaders {
        ExtraHeaders {
            listed: listed.as_bytes().to_vec(),
            always: always.as_bytes().to_vec(),
            expires,
        }
    }

    #[test]
    fn inserted_by_status() {
        let h = x("A: 1\r\n", "B: 2\r\n", false);
        let mut head = b"HTTP/1.1 200 OK\r\nServer: w\r\n\r\n".to_vec();
        apply(&h, &mut head);
        assert_eq!(
            head,
            b"HTTP/1.1 200 OK\r\nServer: w\r\nA: 1\r\nB: 2\r\n\r\n"
        );
        let mut head = b"HTTP/1.1 404 Not Found\r\nServer: w\r\n\r\n".to_vec();
        apply(&h, &mut head);
        assert_eq!(head, b"HTTP/1.1 404 Not Found\r\nServer: w\r\nB: 2\r\n\r\n");
    }

    #[test]
    fn expires_replaces_cache_fields() {
        let h = x("Expires: E\r\nCache-Control: max-age=1\r\n", "", true);
        let mut head =
            b"HTTP/1.1 200 OK\r\nexpires: old\r\nX: y\r\nCache-Control: private\r\n\r\n".to_vec();
        apply(&h, &mut head);
        assert_eq!(
            head,
            b"HTTP/1.1 200 OK\r\nX: y\r\nExpires: E\r\nCache-Control: max-age=1\r\n\r\n"
        );
    }
}
