//! Parsers for directive argument values: sizes, times, flags, status codes, methods.
//!
//! Syntax follows nginx's "Syntax" page (<https://nginx.org/en/docs/syntax.html>): sizes are bytes
//! with an optional `k`/`m`/`g` suffix (either case); times are a number with an optional
//! `ms`/`s`/`m`/`h`/`d` suffix, a bare number meaning seconds. Each parser returns `None` on bad
//! input; the caller turns that into an error pointing at the word.

use std::time::Duration;

use super::model::Methods;

/// Largest size: nginx's bound, a file offset (`off_t`), 2^63 - 1 bytes.
pub const MAX_SIZE: u64 = i64::MAX as u64;
/// Largest time, in milliseconds (nginx's bound on 64-bit systems, `NGX_MAX_INT_T_VALUE`).
pub const MAX_TIME_MS: u64 = i64::MAX as u64;

/// Why a size or time was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    /// Not of the form at all.
    Syntax,
    /// Well formed, but larger than [`MAX_SIZE`] / [`MAX_TIME_MS`].
    Overflow,
}

impl Bad {
    /// The tail of an "invalid value" message.
    pub fn hint(self, what: &str) -> String {
        match self {
            Bad::Syntax => String::new(),
            Bad::Overflow => format!(
                ", the {what} overflows (more than 2^63 - 1 {})",
                if what == "time" { "ms" } else { "bytes" }
            ),
        }
    }
}

/// `1024`, `8k`, `1M`, `2g`.
pub fn size(s: &str) -> Option<u64> {
    size_or(s).ok()
}

/// As [`size`], telling a malformed value from one too large.
pub fn size_or(s: &str) -> Result<u64, Bad> {
    let (digits, mult) = match s.as_bytes().last().ok_or(Bad::Syntax)? {
        b'k' | b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&s[..s.len() - 1], 1 << 20),
        b'g' | b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    big_number(digits)?
        .checked_mul(mult)
        .filter(|&n| n <= MAX_SIZE)
        .ok_or(Bad::Overflow)
}

/// `30`, `30s`, `500ms`, `5m`, `1h`, `1d`.
pub fn time(s: &str) -> Option<Duration> {
    time_or(s).ok()
}

/// As [`time`], telling a malformed value from one too large.
pub fn time_or(s: &str) -> Result<Duration, Bad> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let ms_per_unit: u64 = match &s[split..] {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(Bad::Syntax),
    };
    let ms = big_number(&s[..split])?
        .checked_mul(ms_per_unit)
        .filter(|&n| n <= MAX_TIME_MS)
        .ok_or(Bad::Overflow)?;
    Ok(Duration::from_millis(ms))
}

/// Digits only; more than `u64` holds is an overflow, not a syntax error.
fn big_number(s: &str) -> Result<u64, Bad> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Bad::Syntax);
    }
    s.parse().map_err(|_| Bad::Overflow)
}

/// Digits only: no sign, no spaces (`u64::from_str` would accept a leading `+`).
pub fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `on` / `off`.
pub fn flag(s: &str) -> Option<bool> {
    match s {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    }
}

/// A three-digit status code within `range`.
pub fn status(s: &str, range: std::ops::RangeInclusive<u16>) -> Option<u16> {
    if s.len() != 3 {
        return None;
    }
    let n = number(s)? as u16;
    range.contains(&n).then_some(n)
}

/// An HTTP method this server implements, as a `Methods` bit. Methods are case-sensitive
/// (RFC 9110 §9.1), so `get` is rejected.
pub fn method(s: &str) -> Option<Methods> {
    Some(match s {
        "GET" => Methods::GET,
        "HEAD" => Methods::HEAD,
        "POST" => Methods::POST,
        "PUT" => Methods::PUT,
        "DELETE" => Methods::DELETE,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let cases = [
            ("0", Some(0)),
            ("1024", Some(1024)),
            ("8k", Some(8192)),
            ("8K", Some(8192)),
            ("1m", Some(1 << 20)),
            ("1M", Some(1 << 20)),
            ("2g", Some(2 << 30)),
            ("2G", Some(2 << 30)),
            ("", None),
            ("k", None),
            ("-1", None),
            ("+1", None),
            ("1.5m", None),
            ("1t", None),
            ("1 m", None),
            ("99999999999999999999", None),
            ("18446744073709551615k", None),
            ("9999999999m", Some(9999999999 << 20)),
        ];
        for (s, want) in cases {
            assert_eq!(size(s), want, "{s:?}");
        }
        let bad = [
            ("x", Bad::Syntax),
            ("1.5m", Bad::Syntax),
            ("99999999999999999999", Bad::Overflow),
            ("9223372036854775808", Bad::Overflow),
            ("8796093022208m", Bad::Overflow),
            ("18446744073709551615k", Bad::Overflow),
        ];
        for (s, want) in bad {
            assert_eq!(size_or(s), Err(want), "{s:?}");
        }
        assert_eq!(size_or("8796093022207m"), Ok(8796093022207 << 20));
    }

    #[test]
    fn times() {
        let ms = Duration::from_millis;
        let cases = [
            ("0", Some(ms(0))),
            ("30", Some(ms(30_000))),
            ("30s", Some(ms(30_000))),
            ("500ms", Some(ms(500))),
            ("5m", Some(ms(300_000))),
            ("2h", Some(ms(7_200_000))),
            ("1d", Some(ms(86_400_000))),
            ("", None),
            ("s", None),
            ("1x", None),
            ("1S", None),
            ("1.5s", None),
            ("-1s", None),
        ];
        for (s, want) in cases {
            assert_eq!(time(s), want, "{s:?}");
        }
        assert_eq!(time_or("99999999999999999999s"), Err(Bad::Overflow));
        assert_eq!(time_or("106751991167301d"), Err(Bad::Overflow));
        assert_eq!(
            time_or("106751991167d"),
            Ok(Duration::from_millis(106751991167 * 86_400_000))
        );
        assert_eq!(time_or("5y"), Err(Bad::Syntax));
    }

    #[test]
    fn flags_statuses_methods() {
        assert_eq!(flag("on"), Some(true));
        assert_eq!(flag("off"), Some(false));
        assert_eq!(flag("ON"), None);
        assert_eq!(status("404", 300..=599), Some(404));
        assert_eq!(status("200", 300..=599), None);
        assert_eq!(status("40", 0..=999), None);
        assert_eq!(status("4x4", 0..=999), None);
        assert_eq!(method("DELETE"), Some(Methods::DELETE));
        assert_eq!(method("get"), None);
        assert_eq!(method("PATCH"), None);
    }
}
