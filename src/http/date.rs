//! HTTP dates (RFC 9110 §5.6.7): IMF-fixdate formatting, a once-per-second cache for the
//! `Date` header, and parsing of all three formats a recipient must accept.
//!
//! Calendar arithmetic uses the proleptic Gregorian days-from-civil / civil-from-days
//! formulas (400-year eras of 146097 days), so no time-zone database or crate is needed:
//! HTTP dates are always GMT.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Length of an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub const HTTP_DATE_LEN: usize = 29;

const DAYS: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
const DAYS_LONG: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Seconds since the Unix epoch (times before it count as the epoch).
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// (year, month 1–12, day 1–31) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1
    let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Day count since 1970-01-01 of a civil date (month 1–12).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Format seconds since the epoch as an IMF-fixdate.
pub fn format_unix(secs: u64) -> [u8; HTTP_DATE_LEN] {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (rem / 3600, rem / 60 % 60, rem % 60);
    // 1970-01-01 was a Thursday.
    let wd = DAYS[((days + 4) % 7) as usize];
    let mon = MONTHS[m as usize - 1];
    let y = y.clamp(0, 9999) as u64;
    let two = |n: u64| [b'0' + (n / 10) as u8, b'0' + (n % 10) as u8];
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[..3].copy_from_slice(wd);
    out[5..7].copy_from_slice(&two(d as u64));
    out[8..11].copy_from_slice(mon);
    out[12..14].copy_from_slice(&two(y / 100));
    out[14..16].copy_from_slice(&two(y % 100));
    out[17..19].copy_from_slice(&two(hh));
    out[20..22].copy_from_slice(&two(mm));
    out[23..25].copy_from_slice(&two(ss));
    out
}

/// Format a time as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 §5.6.7).
pub fn format_http_date(t: SystemTime) -> [u8; HTTP_DATE_LEN] {
    format_unix(unix_secs(t))
}

/// The `Date` header value, reformatted at most once per second.
#[derive(Debug, Clone)]
pub struct DateCache {
    /// INVARIANT: `text` is the IMF-fixdate of `secs`.
    secs: u64,
    text: [u8; HTTP_DATE_LEN],
}

impl Default for DateCache {
    fn default() -> Self {
        DateCache {
            secs: 0,
            text: format_unix(0),
        }
    }
}

impl DateCache {
    /// The date for `now` (the event loop passes its cached clock).
    pub fn get(&mut self, now: SystemTime) -> &[u8; HTTP_DATE_LEN] {
        let secs = unix_secs(now);
        if secs != self.secs {
            self.secs = secs;
            self.text = format_unix(secs);
        }
        &self.text
    }
}

/// Parse an HTTP-date in any of the three formats of RFC 9110 §5.6.7 (IMF-fixdate,
/// obsolete RFC 850, asctime). Returns seconds since the epoch, or `None` if the value is
/// not a valid date (the caller then ignores the header, RFC 9110 §13.1.3).
pub fn parse_http_date(s: &[u8]) -> Option<u64> {
    let now_year = civil_from_days((unix_secs(SystemTime::now()) / 86_400) as i64).0;
    parse_http_date_at(s, now_year)
}

/// [`parse_http_date`] with the current year given (for two-digit RFC 850 years).
fn parse_http_date_at(s: &[u8], now_year: i64) -> Option<u64> {
    let s = std::str::from_utf8(s).ok()?;
    let num = |t: &str, len: usize| -> Option<u32> {
        if t.len() == len && t.bytes().all(|b| b.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    let month = |t: &str| {
        MONTHS
            .iter()
            .position(|m| m[..] == *t.as_bytes())
            .map(|i| i as u32 + 1)
    };
    let short_day = |t: &str| DAYS.iter().any(|d| d[..] == *t.as_bytes());
    let time = |t: &str| -> Option<(u32, u32, u32)> {
        let mut it = t.split(':');
        let hms = (
            num(it.next()?, 2)?,
            num(it.next()?, 2)?,
            num(it.next()?, 2)?,
        );
        it.next().is_none().then_some(hms)
    };
    let (y, m, d, (hh, mm, ss)) = if s.len() == HTTP_DATE_LEN && s.as_bytes()[3] == b',' {
        // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
        let p: Vec<&str> = s.split(' ').collect();
        if p.len() != 6 || !short_day(p[0].strip_suffix(',')?) || p[5] != "GMT" {
            return None;
        }
        (
            num(p[3], 4)? as i64,
            month(p[2])?,
            num(p[1], 2)?,
            time(p[4])?,
        )
    } else if let Some((day, rest)) = s.split_once(", ") {
        // RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT"
        let p: Vec<&str> = rest.split(' ').collect();
        if !DAYS_LONG.contains(&day) || p.len() != 3 || p[2] != "GMT" {
            return None;
        }
        let dmy: Vec<&str> = p[0].split('-').collect();
        if dmy.len() != 3 {
            return None;
        }
        // RFC 9110 §5.6.7: a two-digit year more than 50 years in the future means the most
        // recent past year with those last two digits.
        let yy = num(dmy[2], 2)? as i64;
        let mut y = now_year - now_year.rem_euclid(100) + yy;
        if y > now_year + 50 {
            y -= 100;
        }
        (y, month(dmy[1])?, num(dmy[0], 2)?, time(p[1])?)
    } else {
        // asctime: "Sun Nov  6 08:49:37 1994" (day padded with a space)
        let b = s.as_bytes();
        if b.len() != 24 || b[3] != b' ' || b[7] != b' ' || b[10] != b' ' || b[19] != b' ' {
            return None;
        }
        if !short_day(&s[..3]) {
            return None;
        }
        let day = s[8..10].trim_start_matches(' ');
        (
            num(&s[20..], 4)? as i64,
            month(&s[4..7])?,
            num(day, day.len().max(1))?,
            time(&s[11..19])?,
        )
    };
    if !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 || y < 1970 {
        return None;
    }
    let days = days_from_civil(y, m, d);
    // Reject impossible dates such as 31 Feb: they would not round-trip.
    if civil_from_days(days) != (y, m, d) {
        return None;
    }
    Some(days as u64 * 86_400 + (hh * 3600 + mm * 60 + ss.min(59)) as u64)
}

/// The time for seconds since the epoch (convenience for callers comparing mtimes).
pub fn from_unix(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CASES: &[(u64, &str)] = &[
        (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
        (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
        (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
        (1_234_567_890, "Fri, 13 Feb 2009 23:31:30 GMT"),
        (4_133_980_799, "Fri, 31 Dec 2100 23:59:59 GMT"),
        (253_402_300_799, "Fri, 31 Dec 9999 23:59:59 GMT"),
    ];

    #[test]
    fn formats_imf_fixdate() {
        for &(secs, text) in CASES {
            assert_eq!(&format_unix(secs), text.as_bytes(), "{secs}");
            assert_eq!(format_http_date(from_unix(secs)), format_unix(secs));
        }
    }

    #[test]
    fn round_trips_every_day_for_600_years() {
        for days in 0..(600 * 366) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            let secs = days as u64 * 86_400 + 12 * 3600 + 34 * 60 + 56;
            assert_eq!(parse_http_date_at(&format_unix(secs), 2025), Some(secs));
        }
    }

    #[test]
    fn parses_three_formats() {
        let cases: &[(&str, Option<u64>)] = &[
            ("Sun, 06 Nov 1994 08:49:37 GMT", Some(784_111_777)),
            ("Sunday, 06-Nov-94 08:49:37 GMT", Some(784_111_777)),
            ("Sun Nov  6 08:49:37 1994", Some(784_111_777)),
            ("Sun Nov 16 08:49:37 1994", Some(784_111_777 + 10 * 86_400)),
            // Two-digit years: 2025 + 50 = 2075 is the pivot.
            ("Thursday, 01-Jan-70 00:00:00 GMT", Some(3_155_760_000)), // 2070: < 50 years ahead
            ("Sunday, 01-Jan-76 00:00:00 GMT", Some(189_302_400)),     // 2076 is > 50 ahead
            ("Friday, 13-Feb-09 23:31:30 GMT", Some(1_234_567_890)),
            ("Sun, 06 Nov 1994 08:49:37 UTC", None),
            ("Sun, 06 Nov 1994 08:49:37", None),
            ("Sun, 6 Nov 1994 08:49:37 GMT", None),
            ("Sun, 06 nov 1994 08:49:37 GMT", None),
            ("Xyz, 06 Nov 1994 08:49:37 GMT", None),
            ("Sun, 31 Feb 1994 08:49:37 GMT", None),
            ("Sun, 06 Nov 1994 24:00:00 GMT", None),
            ("Sun, 06 Nov 1994 08:60:00 GMT", None),
            ("Sun, 06 Nov 1969 08:49:37 GMT", None),
            ("Sun, 06 Nov 1994 8:49:37 GMT ", None),
            ("Sunday, 06-Nov-1994 08:49:37 GMT", None),
            ("Sun Nov 6 08:49:37 1994", None),
            ("", None),
            ("garbage", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_http_date_at(text.as_bytes(), 2025), *want, "{text}");
        }
        assert_eq!(
            parse_http_date_at(b"Sunday, 06-Nov-94 08:49:37 GMT", 2043),
            Some(784_111_777)
        );
        // In 2080, "94" is 2094 only if not > 50 years ahead: 2094 ≤ 2130, so 2094.
        assert!(
            parse_http_date_at(b"Saturday, 06-Nov-94 08:49:37 GMT", 2080).unwrap() > 3_000_000_000
        );
        assert!(parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT").is_some());
    }

    #[test]
    fn cache_reformats_once_per_second() {
        let mut c = DateCache::default();
        let t = from_unix(784_111_777);
        assert_eq!(c.get(t), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(
            c.get(t + Duration::from_millis(999)),
            b"Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(
            c.get(t + Duration::from_secs(1)),
            b"Sun, 06 Nov 1994 08:49:38 GMT"
        );
    }
}
