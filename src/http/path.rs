//! Request-target normalisation for routing and file lookup (nginx-like), and the escaping
//! needed to put a path back into a header or an HTML page.
//!
//! [`normalize`] takes the origin-form target (`/a/b?q`) and:
//! 1. splits off the query at the first `?` (RFC 3986 §3.4), leaving it encoded;
//! 2. percent-decodes the path once (RFC 3986 §2.1). A malformed escape (`%zz`, `%2`) or a
//!    decoded NUL (which no file name can hold) → 400. The result must be UTF-8 (400
//!    otherwise): routing and location matching work on `str`;
//! 3. resolves `.` and `..` segments and merges repeated slashes (RFC 3986 §5.2.4). Going
//!    above the root → 400.
//!
//! Decoding happens *before* segmenting, as nginx does: `%2F` becomes a real `/`, so
//! `/a%2F..%2Fb` is `/b`, and an encoded `%2E%2E` is a `..` segment. This is what keeps
//! encoded dot-segments from escaping the document root.
//!
//! A backslash is an ordinary byte on Unix and is kept as is.

use super::error::Error;

/// A normalised target: a decoded, dot-free path starting with `/`, and the raw query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized<'a> {
    /// INVARIANT: starts with `/`; no empty, `.` or `..` segments; ends with `/` exactly
    /// when the target's path did (after resolving, e.g. `/a/b/..` → `/a/`).
    pub path: String,
    /// The query without the `?`, still percent-encoded (CGI's QUERY_STRING wants it so).
    pub query: Option<&'a str>,
}

impl Normalized<'_> {
    /// Whether the path ends with `/` (a directory request: index file or autoindex).
    pub fn ends_with_slash(&self) -> bool {
        self.path.ends_with('/')
    }
}

/// Normalise an origin-form request target. See the module docs for the rules.
pub fn normalize(target: &str) -> Result<Normalized<'_>, Error> {
    let mut path = String::new();
    let query = normalize_into(target, &mut path)?;
    Ok(Normalized { path, query })
}

/// [`normalize`] into `path` (cleared first; its capacity is reused), returning the query.
/// On an error `path` holds a partial result.
pub fn normalize_into<'a>(target: &'a str, path: &mut String) -> Result<Option<&'a str>, Error> {
    path.clear();
    // One pass over the target finds the query, any `%`, and whether a segment is empty,
    // `.` or `..` (a `//` or `/.`): most targets have none, and are then the path as is.
    let bytes = target.as_bytes();
    let (mut end, mut escaped, mut plain) = (bytes.len(), false, true);
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'?' => {
                end = i;
                break;
            }
            b'%' => escaped = true,
            b'/' => plain &= !matches!(bytes.get(i + 1), Some(b'/' | b'.')),
            _ => {}
        }
    }
    let (raw, query) = (&target[..end], target.get(end + 1..));
    if raw.is_empty() && query.is_some() {
        // An absolute-form target with an empty path and a query (`http://h?q`): the path
        // is `/` (RFC 9110 §4.2.3). An origin-form target always starts with `/`.
        path.push('/');
        return Ok(query);
    }
    if !raw.starts_with('/') {
        return Err(Error::Path);
    }
    // Without a `%` there is nothing to decode: no copy (most targets).
    let decoded = if escaped {
        std::borrow::Cow::Owned(
            String::from_utf8(percent_decode(raw.as_bytes())?).map_err(|_| Error::Path)?,
        )
    } else {
        std::borrow::Cow::Borrowed(raw)
    };
    let plain = if escaped {
        decoded
            .as_bytes()
            .windows(2)
            .all(|w| w[0] != b'/' || (w[1] != b'/' && w[1] != b'.'))
    } else {
        plain
    };
    if plain {
        path.push_str(&decoded);
        return Ok(query);
    }
    path.reserve(decoded.len());
    let mut trailing = false;
    // The first segment is the empty one before the leading '/'.
    for seg in decoded.split('/').skip(1) {
        trailing = matches!(seg, "" | "." | "..");
        match seg {
            "" | "." => {}
            ".." => {
                // RFC 3986 §5.2.4 would clamp at the root; like nginx we refuse instead.
                let cut = path.rfind('/').ok_or(Error::Path)?;
                path.truncate(cut);
            }
            _ => {
                path.push('/');
                path.push_str(seg);
            }
        }
    }
    if path.is_empty() || trailing {
        path.push('/');
    }
    Ok(query)
}

/// Decode `%XX` escapes once. Malformed escapes and `%00` → [`Error::Path`].
pub fn percent_decode(s: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let (Some(&h), Some(&l)) = (s.get(i + 1), s.get(i + 2)) else {
                return Err(Error::Path);
            };
            let (Some(h), Some(l)) = (hex(h), hex(l)) else {
                return Err(Error::Path);
            };
            let b = h << 4 | l;
            if b == 0 {
                return Err(Error::Path);
            }
            out.push(b);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-encode a path for a `Location` header or an `href`: everything except
/// `unreserved` (RFC 3986 §2.3) and `/` is encoded, so the result is safe in a header, in a
/// URI, and (after [`html_escape`], which then changes nothing) in HTML.
pub fn percent_encode_path(path: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(path.len());
    for &b in path.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        }
    }
    out
}

/// Escape text for HTML element content and quoted attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `normalize_into` as it was before its scans became one pass (the query, `%` and the
    /// dot/empty segments each found by their own search): the reference for the test below.
    fn reference(target: &str, path: &mut String) -> Result<Option<String>, Error> {
        path.clear();
        let (raw, query) = match target.find('?') {
            Some(q) => (&target[..q], Some(&target[q + 1..])),
            None => (target, None),
        };
        if raw.is_empty() && query.is_some() {
            path.push('/');
            return Ok(query.map(str::to_string));
        }
        if !raw.starts_with('/') {
            return Err(Error::Path);
        }
        let decoded = if raw.contains('%') {
            String::from_utf8(percent_decode(raw.as_bytes())?).map_err(|_| Error::Path)?
        } else {
            raw.to_string()
        };
        let mut trailing = false;
        for seg in decoded.split('/').skip(1) {
            trailing = matches!(seg, "" | "." | "..");
            match seg {
                "" | "." => {}
                ".." => {
                    let cut = path.rfind('/').ok_or(Error::Path)?;
                    path.truncate(cut);
                }
                _ => {
                    path.push('/');
                    path.push_str(seg);
                }
            }
        }
        if path.is_empty() || trailing {
            path.push('/');
        }
        Ok(query.map(str::to_string))
    }

    /// Every target of up to six characters over the characters that matter agrees with the
    /// reference: the same path, query and error.
    #[test]
    fn one_pass_agrees_with_the_reference_on_every_short_target() {
        let (mut got, mut want) = (String::new(), String::new());
        crate::http::every_input(b"/.%2eF?a", 6, |t| {
            let target = std::str::from_utf8(t).unwrap();
            let a = normalize_into(target, &mut got).map(|q| q.map(str::to_string));
            let b = reference(target, &mut want);
            assert_eq!(a, b, "{target:?}");
            if a.is_ok() {
                assert_eq!(got, want, "{target:?}");
            }
        });
    }

    #[test]
    fn normalizes() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("/", "/", None),
            ("/a", "/a", None),
            ("/a/", "/a/", None),
            ("/a//b///c", "/a/b/c", None),
            ("//", "/", None),
            ("/./a/./b/.", "/a/b/", None),
            ("/a/b/..", "/a/", None),
            ("/a/b/../c", "/a/c", None),
            ("/a/b/../../c/", "/c/", None),
            ("/a/..", "/", None),
            ("/..a/b..", "/..a/b..", None),
            ("/.hidden", "/.hidden", None),
            ("/...", "/...", None),
            ("/a?x=1&y=%20", "/a", Some("x=1&y=%20")),
            ("/a?", "/a", Some("")),
            ("/a?b?c", "/a", Some("b?c")),
            ("/a/../b?../..", "/b", Some("../..")),
            // What an absolute-form target with an empty path leaves (`http://h?x`).
            ("?x", "/", Some("x")),
            ("?", "/", Some("")),
            ("/%7Euser/%C3%A9t%C3%A9", "/~user/été", None),
            ("/a%20b", "/a b", None),
            ("/a%25b", "/a%b", None),
            // nginx decodes %2F before resolving: it is a separator.
            ("/a%2Fb", "/a/b", None),
            ("/a%2F..%2Fb", "/b", None),
            ("/a/%2e%2E/b", "/b", None),
            ("/a/%2e", "/a/", None),
            ("/a\\b", "/a\\b", None),
            ("/a/..\\b", "/a/..\\b", None),
        ];
        for (input, path, query) in cases {
            let n = normalize(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!((n.path.as_str(), n.query), (*path, *query), "{input}");
        }
        assert!(normalize("/a/").unwrap().ends_with_slash());
        assert!(!normalize("/a").unwrap().ends_with_slash());
    }

    #[test]
    fn rejects() {
        for input in [
            "/..",
            "/../",
            "/a/../..",
            "/a/../../b",
            "/%2e%2e/etc/passwd",
            "/a%2F..%2F..%2Fetc",
            "/%zz",
            "/%2",
            "/%",
            "/a%g0",
            "/%00",
            "/a%00.txt",
            "/%C3",
            "/%FF",
            "a/b",
            "",
            "*",
        ] {
            assert_eq!(normalize(input), Err(Error::Path), "{input}");
        }
    }

    #[test]
    fn encodes_and_escapes() {
        let cases = [
            ("/a b/c", "/a%20b/c"),
            ("/été", "/%C3%A9t%C3%A9"),
            ("/a?b#c", "/a%3Fb%23c"),
            ("/x\r\ny", "/x%0D%0Ay"),
            ("/~user/file-1_2.txt", "/~user/file-1_2.txt"),
            ("/<\"'&>", "/%3C%22%27%26%3E"),
        ];
        for (input, want) in cases {
            let enc = percent_encode_path(input);
            assert_eq!(enc, want);
            // Round trip through the decoder.
            assert_eq!(normalize(&enc).unwrap().path, input);
        }
        assert_eq!(
            html_escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(html_escape("plain été"), "plain été");
    }
}
