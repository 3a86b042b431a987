//! Byte ranges and conditional requests for static files (RFC 9110 §13, §14).
//!
//! A Range we cannot parse is ignored: the full representation is answered (RFC 9110 §14.2: a
//! server MAY ignore Range). Several ranges ([`parse_ranges`]) are answered as
//! `multipart/byteranges` (§14.6) by the caller, within nginx's `max_ranges` and only when they
//! add up to no more than the representation (nginx's guard against amplification: overlapping
//! or repeated ranges asking for more bytes than the file has get the whole file instead).

use super::date::parse_http_date;
use super::request::trim_ows;

/// What to send for a `Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// Ignore the header: send 200 with the whole representation.
    Full,
    /// Send 206 with bytes `start..=end` (INVARIANT: `start <= end < len`).
    Partial { start: u64, end: u64 },
    /// Send 416 with `Content-Range: bytes */len` (RFC 9110 §15.5.17).
    Unsatisfiable,
}

/// Evaluate a `Range` header value against a representation of `len` bytes
/// (RFC 9110 §14.1.2: `bytes=first-last`, `bytes=first-`, `bytes=-suffix`).
pub fn parse_range(value: &[u8], len: u64) -> ByteRange {
    let value = trim_ows(value);
    // The range unit is case-insensitive (RFC 9110 §14.1).
    let Some(spec) = value
        .get(..6)
        .filter(|u| u.eq_ignore_ascii_case(b"bytes="))
        .map(|_| trim_ows(&value[6..]))
    else {
        return ByteRange::Full;
    };
    if spec.contains(&b',') {
        return ByteRange::Full;
    }
    one_range(spec, len)
}

/// What to send for a `Range` header that may list several ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ranges {
    /// Ignore the header (unparseable, or over the limits): 200 with everything.
    Full,
    /// 416.
    Unsatisfiable,
    /// The satisfiable ranges, in the order asked (INVARIANT: not empty; each as in
    /// [`ByteRange::Partial`]). One range is a plain 206; more are multipart/byteranges.
    Parts(Vec<(u64, u64)>),
}

/// Evaluates a `Range` value with any number of ranges against `len` bytes: unsatisfiable
/// ranges are dropped (416 if none remains, RFC 9110 §14.1.1); more than `max` ranges, or
/// ranges totalling more than `len` bytes, are answered in full (nginx does both).
pub fn parse_ranges(value: &[u8], len: u64, max: u32) -> Ranges {
    let value = trim_ows(value);
    let Some(spec) = value
        .get(..6)
        .filter(|u| u.eq_ignore_ascii_case(b"bytes="))
        .map(|_| &value[6..])
    else {
        return Ranges::Full;
    };
    let mut parts = Vec::new();
    let mut total: u64 = 0;
    // RFC 9110 §5.6.1: empty list elements are allowed and ignored.
    for one in spec.split(|&b| b == b',').map(trim_ows) {
        if one.is_empty() {
            continue;
        }
        match one_range(one, len) {
            ByteRange::Full => return Ranges::Full,
            ByteRange::Unsatisfiable => {}
            ByteRange::Partial { start, end } => {
                total = total.saturating_add(end - start + 1);
                parts.push((start, end));
            }
        }
        if parts.len() > max as usize {
            return Ranges::Full;
        }
    }
    if parts.is_empty() {
        // `bytes=` with no range at all is not a range request.
        return if spec.iter().all(|&b| b == b',' || b == b' ' || b == b'\t') {
            Ranges::Full
        } else {
            Ranges::Unsatisfiable
        };
    }
    if total > len {
        return Ranges::Full;
    }
    Ranges::Parts(parts)
}

/// RFC 9110 §13.2.2, the steps before `If-None-Match` on a GET: whether `If-Match` (strong
/// comparison; `*` matches any current representation) or, without it, `If-Unmodified-Since`
/// fails against `current` (its entity tag and modification time; `None` when there is no
/// representation). For a method other than GET and HEAD, pass `if_none_match` too: a match
/// there is also 412 (step 3).
pub fn precondition_failed(
    if_match: Option<&[u8]>,
    if_unmodified_since: Option<&[u8]>,
    if_none_match_value: Option<&[u8]>,
    current: Option<(&str, u64)>,
) -> bool {
    if let Some(v) = if_match {
        let v = trim_ows(v);
        let ok = current.is_some_and(|(tag, _)| {
            v == b"*"
                || v.split(|&b| b == b',')
                    .map(trim_ows)
                    .any(|t| !t.starts_with(b"W/") && t == tag.as_bytes())
        });
        if !ok {
            return true;
        }
    } else if let Some(since) = if_unmodified_since.and_then(|v| parse_http_date(trim_ows(v))) {
        // §13.1.4: ignored without a modification date (no representation).
        if current.is_some_and(|(_, mtime)| mtime > since) {
            return true;
        }
    }
    match (if_none_match_value, current) {
        (Some(v), Some((tag, _))) => if_none_match(v, tag),
        _ => false,
    }
}

fn one_range(spec: &[u8], len: u64) -> ByteRange {
    let Some(dash) = spec.iter().position(|&b| b == b'-') else {
        return ByteRange::Full;
    };
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);
    match (digits(first), digits(last)) {
        // suffix-range: the last n bytes; n = 0 or an empty file cannot be satisfied.
        (None, Some(n)) if first.is_empty() => {
            if n == 0 || len == 0 {
                ByteRange::Unsatisfiable
            } else {
                ByteRange::Partial {
                    start: len.saturating_sub(n),
                    end: len - 1,
                }
            }
        }
        (Some(start), None) if last.is_empty() => satisfiable(start, u64::MAX, len),
        // RFC 9110 §14.1.1: last < first makes the range invalid (ignored, not 416).
        (Some(start), Some(end)) if end >= start => satisfiable(start, end, len),
        _ => ByteRange::Full,
    }
}

fn satisfiable(start: u64, end: u64, len: u64) -> ByteRange {
    // RFC 9110 §14.1.1: a first-pos at or past the length is unsatisfiable; a last-pos past
    // it is clamped.
    if start >= len {
        ByteRange::Unsatisfiable
    } else {
        ByteRange::Partial {
            start,
            end: end.min(len - 1),
        }
    }
}

/// `1*DIGIT` as a u64; `None` if empty or not digits. A number too large for u64 is still a
/// valid position (RFC 9110 §14.1.1 sets no limit) and saturates at `u64::MAX`: a last-pos
/// past the end then clamps, a first-pos past it is unsatisfiable (416), as for any other
/// number beyond the length.
fn digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |n, &b| {
        n.saturating_mul(10).saturating_add((b - b'0') as u64)
    }))
}

/// The `Content-Range` value for a 206 (`bytes 0-99/1000`) or 416 (`bytes */1000`).
pub fn content_range(range: ByteRange, len: u64) -> String {
    match range {
        ByteRange::Partial { start, end } => format!("bytes {start}-{end}/{len}"),
        _ => format!("bytes */{len}"),
    }
}

/// Entity tag of a file, nginx-style: `"<mtime hex>-<size hex>"` (a strong validator, as
/// nginx uses it; RFC 9110 §8.8.3).
pub fn etag(mtime_secs: u64, size: u64) -> String {
    format!("\"{mtime_secs:x}-{size:x}\"")
}

/// Whether `If-None-Match` matches `etag`: `*` matches any existing representation, else
/// any listed tag matches by weak comparison (RFC 9110 §13.1.2, §8.8.3.2).
pub fn if_none_match(value: &[u8], etag: &str) -> bool {
    let value = trim_ows(value);
    if value == b"*" {
        return true;
    }
    let ours = opaque(etag.as_bytes());
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .any(|tag| !tag.is_empty() && opaque(tag) == ours)
}

/// The opaque part of an entity tag, without a `W/` weakness prefix (weak comparison).
fn opaque(tag: &[u8]) -> &[u8] {
    tag.strip_prefix(b"W/").unwrap_or(tag)
}

/// Whether a GET/HEAD should be answered 304 Not Modified (RFC 9110 §13.2.2): evaluate
/// `If-None-Match` if present; only without it, `If-Modified-Since` (an unparseable date is
/// ignored, RFC 9110 §13.1.3).
pub fn not_modified(
    if_none_match_value: Option<&[u8]>,
    if_modified_since: Option<&[u8]>,
    etag: &str,
    mtime_secs: u64,
) -> bool {
    if let Some(v) = if_none_match_value {
        return if_none_match(v, etag);
    }
    match if_modified_since.and_then(|v| parse_http_date(trim_ows(v))) {
        Some(since) => mtime_secs <= since,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ByteRange::*;

    #[test]
    fn ranges() {
        let p = |start, end| Partial { start, end };
        let cases: &[(&str, u64, ByteRange)] = &[
            ("bytes=0-99", 1000, p(0, 99)),
            ("bytes=0-0", 1000, p(0, 0)),
            ("bytes=100-", 1000, p(100, 999)),
            ("bytes=-100", 1000, p(900, 999)),
            ("bytes=-5000", 1000, p(0, 999)),
            ("bytes=500-5000", 1000, p(500, 999)),
            ("bytes=999-999", 1000, p(999, 999)),
            ("BYTES=1-2", 1000, p(1, 2)),
            (" bytes= 1-2 ", 1000, p(1, 2)),
            ("bytes=0-18446744073709551615", 10, p(0, 9)),
            // Unsatisfiable → 416.
            ("bytes=1000-", 1000, Unsatisfiable),
            ("bytes=1000-2000", 1000, Unsatisfiable),
            ("bytes=-0", 1000, Unsatisfiable),
            ("bytes=0-", 0, Unsatisfiable),
            ("bytes=-1", 0, Unsatisfiable),
            // Invalid or unsupported → ignore the header (200).
            ("bytes=5-1", 1000, Full),
            ("bytes=0-1,5-6", 1000, Full),
            ("bytes=0-1,", 1000, Full),
            ("bytes=", 1000, Full),
            ("bytes=-", 1000, Full),
            ("bytes=a-b", 1000, Full),
            ("bytes=1", 1000, Full),
            ("bytes=+1-2", 1000, Full),
            ("bytes=1 - 2", 1000, Full),
            // Past u64: saturates, so a first-pos is past the end and a last-pos clamps.
            ("bytes=18446744073709551616-", 1000, Unsatisfiable),
            ("bytes=0-99999999999999999999", 1000, p(0, 999)),
            ("bytes=-99999999999999999999", 1000, p(0, 999)),
            ("items=0-1", 1000, Full),
            ("bytes 0-1", 1000, Full),
            ("", 1000, Full),
        ];
        for &(value, len, want) in cases {
            assert_eq!(parse_range(value.as_bytes(), len), want, "{value} / {len}");
        }
        assert_eq!(content_range(p(0, 99), 1000), "bytes 0-99/1000");
        assert_eq!(content_range(Unsatisfiable, 1000), "bytes */1000");
    }

    #[test]
    fn multiple_ranges() {
        let cases: &[(&str, u64, u32, Ranges)] = &[
            ("bytes=0-1,4-5", 10, 10, Ranges::Parts(vec![(0, 1), (4, 5)])),
            (
                "bytes=0-1, -2 ,",
                10,
                10,
                Ranges::Parts(vec![(0, 1), (8, 9)]),
            ),
            ("bytes=0-1,20-30", 10, 10, Ranges::Parts(vec![(0, 1)])),
            ("bytes=20-30,40-", 10, 10, Ranges::Unsatisfiable),
            ("bytes=0-1,x", 10, 10, Ranges::Full),
            ("bytes=0-1,2-3,4-5", 10, 2, Ranges::Full),
            ("bytes=0-1,2-3", 10, 2, Ranges::Parts(vec![(0, 1), (2, 3)])),
            ("bytes=0-1", 10, 0, Ranges::Full),
            // More bytes than the file: the whole file instead.
            ("bytes=0-9,0-9", 10, 10, Ranges::Full),
            ("bytes=,", 10, 10, Ranges::Full),
            ("items=0-1,2-3", 10, 10, Ranges::Full),
        ];
        for (v, len, max, want) in cases {
            assert_eq!(&parse_ranges(v.as_bytes(), *len, *max), want, "{v}");
        }
    }

    #[test]
    fn preconditions() {
        let tag = "\"a-1\"";
        let cur = Some((tag, 100u64));
        let pf = |im: Option<&str>, ius: Option<&str>, inm: Option<&str>, cur| {
            precondition_failed(
                im.map(str::as_bytes),
                ius.map(str::as_bytes),
                inm.map(str::as_bytes),
                cur,
            )
        };
        assert!(!pf(Some("\"a-1\""), None, None, cur));
        assert!(!pf(Some("\"x\", \"a-1\""), None, None, cur));
        assert!(!pf(Some("*"), None, None, cur));
        assert!(pf(Some("*"), None, None, None));
        assert!(pf(Some("W/\"a-1\""), None, None, cur));
        assert!(pf(Some("\"b\""), None, None, cur));
        // If-Unmodified-Since: 100 s after the epoch is "Thu, 01 Jan 1970 00:01:40 GMT".
        assert!(!pf(None, Some("Thu, 01 Jan 1970 00:01:40 GMT"), None, cur));
        assert!(pf(None, Some("Thu, 01 Jan 1970 00:01:39 GMT"), None, cur));
        assert!(!pf(None, Some("garbage"), None, cur));
        assert!(!pf(None, Some("Thu, 01 Jan 1970 00:01:39 GMT"), None, None));
        // If-Match wins over If-Unmodified-Since.
        assert!(!pf(
            Some("*"),
            Some("Thu, 01 Jan 1970 00:01:39 GMT"),
            None,
            cur
        ));
        // If-None-Match for PUT/DELETE.
        assert!(pf(None, None, Some("*"), cur));
        assert!(!pf(None, None, Some("*"), None));
        assert!(pf(None, None, Some("\"a-1\""), cur));
        assert!(!pf(None, None, Some("\"b\""), cur));
    }

    #[test]
    fn etags_and_conditionals() {
        let tag = etag(0x5f5e_1000, 1234);
        assert_eq!(tag, "\"5f5e1000-4d2\"");
        let inm: &[(&str, bool)] = &[
            ("\"5f5e1000-4d2\"", true),
            ("W/\"5f5e1000-4d2\"", true),
            ("\"x\", \"5f5e1000-4d2\"", true),
            ("\"x\",W/\"5f5e1000-4d2\" ", true),
            ("*", true),
            ("\"5f5e1000-4d3\"", false),
            ("5f5e1000-4d2", false),
            ("", false),
            (",", false),
        ];
        for &(value, want) in inm {
            assert_eq!(if_none_match(value.as_bytes(), &tag), want, "{value}");
        }
        let mtime = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT
        let ims = |v: &'static str| Some(v.as_bytes());
        type Case = (Option<&'static [u8]>, Option<&'static [u8]>, bool);
        let cases: &[Case] = &[
            (None, None, false),
            (None, ims("Sun, 06 Nov 1994 08:49:37 GMT"), true),
            (None, ims("Sun, 06 Nov 1994 08:49:38 GMT"), true),
            (None, ims("Sun, 06 Nov 1994 08:49:36 GMT"), false),
            (None, ims("not a date"), false),
            // If-None-Match takes precedence over If-Modified-Since (RFC 9110 §13.2.2).
            (
                Some(b"\"other\""),
                ims("Sun, 06 Nov 1994 08:49:37 GMT"),
                false,
            ),
            (Some(b"*"), ims("Sun, 06 Nov 1994 08:49:36 GMT"), true),
        ];
        for &(inm, since, want) in cases {
            assert_eq!(
                not_modified(inm, since, &tag, mtime),
                want,
                "{inm:?} {since:?}"
            );
        }
    }
}
