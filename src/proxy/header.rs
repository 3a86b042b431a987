//! The PROXY protocol header (HAProxy's "PROXY protocol" specification, versions 1 and 2),
//! which a load balancer sends first on a connection to say whom it forwards.
//!
//! [`parse`] looks at the bytes received so far and answers `Ok(Complete { len, addrs })`,
//! `Ok(Partial)` or `Err(Error)`. A prefix that can no longer become either signature is an
//! error at once (a plain `GET /` fails on its first byte, without waiting for more), so a
//! caller only ever waits for bytes that may still complete a header. The limits are explicit:
//! a v1 line is at most [`V1_MAX`] bytes (the specification's 107), a v2 header at most
//! [`V2_MAX`] bytes (its 16-byte preamble plus addresses and TLVs; the specification allows
//! 64 KiB, balancers send a few hundred bytes at most).
//!
//! `addrs` is `None` when the header carries no usable addresses (v1 `UNKNOWN`, v2 `LOCAL`,
//! v2 `UNSPEC`/`UNIX` families): the connection's own addresses then stand.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v1 line's maximum length, CRLF included (specification §2.1).
pub const V1_MAX: usize = 107;
/// The largest v2 header accepted (preamble included).
pub const V2_MAX: usize = 16 + 4096;

const V1_SIG: &[u8] = b"PROXY ";
const V2_SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// The header is `len` bytes long; `addrs` = (source, destination) when it names them.
    Complete {
        len: usize,
        addrs: Option<(SocketAddr, SocketAddr)>,
    },
    Partial,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The bytes start with neither signature.
    Missing,
    /// A v1 line that breaks the grammar.
    BadV1,
    /// A v1 line without CRLF within [`V1_MAX`] bytes.
    V1TooLong,
    /// A v2 header with a bad version, command, or address block.
    BadV2,
    /// A v2 header longer than [`V2_MAX`].
    V2TooLong,
}

impl Error {
    pub fn description(self) -> &'static str {
        match self {
            Error::Missing => "no PROXY protocol header",
            Error::BadV1 => "malformed PROXY v1 header",
            Error::V1TooLong => "PROXY v1 header longer than 107 bytes",
            Error::BadV2 => "malformed PROXY v2 header",
            Error::V2TooLong => "PROXY v2 header too long",
        }
    }
}

/// Parses the header at the start of `buf` (see the module docs).
pub fn parse(buf: &[u8]) -> Result<Parsed, Error> {
    let n = buf.len().min(V2_SIG.len());
    if buf[..n] == V2_SIG[..n] {
        return if n < V2_SIG.len() {
            Ok(Parsed::Partial)
        } else {
            v2(buf)
        };
    }
    let n = buf.len().min(V1_SIG.len());
    if buf[..n] == V1_SIG[..n] {
        return if n < V1_SIG.len() {
            Ok(Parsed::Partial)
        } else {
            v1(buf)
        };
    }
    Err(Error::Missing)
}

/// `PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n`, `PROXY TCP6 ...`, `PROXY UNKNOWN[ anything]\r\n`.
fn v1(buf: &[u8]) -> Result<Parsed, Error> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        if window.len() >= V1_MAX {
            return Err(Error::V1TooLong);
        }
        // A line feed or NUL before CR can never become valid.
        if window.iter().any(|&b| b == b'\n' || b == 0) {
            return Err(Error::BadV1);
        }
        return Ok(Parsed::Partial);
    };
    match window.get(cr + 1) {
        None if cr + 1 >= V1_MAX => return Err(Error::V1TooLong),
        None => return Ok(Parsed::Partial),
        Some(b'\n') => {}
        _ => return Err(Error::BadV1),
    }
    let len = cr + 2;
    let line = std::str::from_utf8(&buf[V1_SIG.len()..cr]).map_err(|_| Error::BadV1)?;
    if line.bytes().any(|b| b < 0x20) {
        // Control bytes (a stray LF, NUL) are refused even in an UNKNOWN line's free text.
        return Err(Error::BadV1);
    }
    if line == "UNKNOWN" || line.starts_with("UNKNOWN ") {
        // §2.1: the rest of an UNKNOWN line is ignored.
        return Ok(Parsed::Complete { len, addrs: None });
    }
    let mut it = line.split(' ');
    let (Some(proto), Some(src), Some(dst), Some(sp), Some(dp), None) = (
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
    ) else {
        return Err(Error::BadV1);
    };
    let (src, dst): (IpAddr, IpAddr) = match proto {
        "TCP4" => (
            src.parse::<Ipv4Addr>().map_err(|_| Error::BadV1)?.into(),
            dst.parse::<Ipv4Addr>().map_err(|_| Error::BadV1)?.into(),
        ),
        "TCP6" => (
            src.parse::<Ipv6Addr>().map_err(|_| Error::BadV1)?.into(),
            dst.parse::<Ipv6Addr>().map_err(|_| Error::BadV1)?.into(),
        ),
        _ => return Err(Error::BadV1),
    };
    let addrs = (
        SocketAddr::new(src, port(sp)?),
        SocketAddr::new(dst, port(dp)?),
    );
    Ok(Parsed::Complete {
        len,
        addrs: Some(addrs),
    })
}

/// A v1 port: decimal, 0..=65535, no sign and no leading zero (§2.1).
fn port(s: &str) -> Result<u16, Error> {
    let ok = !s.is_empty()
        && s.len() <= 5
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    if !ok {
        return Err(Error::BadV1);
    }
    s.parse().map_err(|_| Error::BadV1)
}

/// The binary header: 12-byte signature, version/command, family/transport, length (§2.2).
fn v2(buf: &[u8]) -> Result<Parsed, Error> {
    if buf.len() < 16 {
        // Check what is there already: the version nibble must be 2, the command 0 or 1.
        if let Some(&vc) = buf.get(12) {
            if vc >> 4 != 2 || vc & 0xF > 1 {
                return Err(Error::BadV2);
            }
        }
        return Ok(Parsed::Partial);
    }
    let (vc, fam) = (buf[12], buf[13]);
    if vc >> 4 != 2 || vc & 0xF > 1 {
        return Err(Error::BadV2);
    }
    let body = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = 16 + body;
    if len > V2_MAX {
        return Err(Error::V2TooLong);
    }
    if buf.len() < len {
        return Ok(Parsed::Partial);
    }
    let local = vc & 0xF == 0;
    let block = &buf[16..len];
    let addrs = match (fam >> 4, fam & 0xF) {
        // LOCAL: the balancer's own connection (a health check); addresses are ignored.
        _ if local => None,
        (_, t) if t > 2 => return Err(Error::BadV2),
        (a, _) if a > 3 => return Err(Error::BadV2),
        // AF_INET: 4 + 4 + 2 + 2 bytes, then TLVs (skipped).
        (1, _) => {
            let b: &[u8; 12] = block
                .get(..12)
                .and_then(|s| s.try_into().ok())
                .ok_or(Error::BadV2)?;
            let ip = |o: usize| IpAddr::from([b[o], b[o + 1], b[o + 2], b[o + 3]]);
            let p = |o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
            Some((SocketAddr::new(ip(0), p(8)), SocketAddr::new(ip(4), p(10))))
        }
        // AF_INET6: 16 + 16 + 2 + 2 bytes.
        (2, _) => {
            let b: &[u8; 36] = block
                .get(..36)
                .and_then(|s| s.try_into().ok())
                .ok_or(Error::BadV2)?;
            let ip = |o: usize| {
                let mut a = [0u8; 16];
                a.copy_from_slice(&b[o..o + 16]);
                IpAddr::from(a)
            };
            let p = |o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
            Some((
                SocketAddr::new(ip(0), p(32)),
                SocketAddr::new(ip(16), p(34)),
            ))
        }
        // AF_UNSPEC, AF_UNIX: accepted, the connection's own addresses stand (§2.2 allows it).
        _ => None,
    };
    Ok(Parsed::Complete { len, addrs })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn v2_header(cmd: u8, fam: u8, block: &[u8]) -> Vec<u8> {
        let mut h = V2_SIG.to_vec();
        h.push(0x20 | cmd);
        h.push(fam);
        h.extend_from_slice(&(block.len() as u16).to_be_bytes());
        h.extend_from_slice(block);
        h
    }

    #[test]
    fn v1_table() {
        let ok = |s: &str, a: Option<(&str, &str)>| {
            let want = Parsed::Complete {
                len: s.len(),
                addrs: a.map(|(x, y)| (sa(x), sa(y))),
            };
            let mut with_body = s.as_bytes().to_vec();
            with_body.extend_from_slice(b"GET / HTTP/1.1\r\n");
            assert_eq!(parse(&with_body), Ok(want), "{s:?}");
        };
        ok(
            "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n",
            Some(("192.0.2.1:56324", "198.51.100.2:443")),
        );
        ok(
            "PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n",
            Some(("[2001:db8::1]:1", "[2001:db8::2]:65535")),
        );
        ok("PROXY UNKNOWN\r\n", None);
        ok("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", None);
        let bad = [
            "PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\n",
            "PROXY TCP4 192.0.2.1  198.51.100.2 1 2\r\n",
            "PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n",
            "PROXY TCP6 192.0.2.1 198.51.100.2 1 2\r\n",
            "PROXY TCP4 192.0.2.1 198.51.100.2 01 2\r\n",
            "PROXY TCP4 192.0.2.1 198.51.100.2 1 65536\r\n",
            "PROXY TCP4 192.0.2.1 198.51.100.2 1 +2\r\n",
            "PROXY TCP4 192.0.2.1 198.51.100.2 1 2 \r\n",
            "PROXY UDP4 192.0.2.1 198.51.100.2 1 2\r\n",
            "PROXY TCP4 192.0.2.1 198.51.100.2 1 2\rX",
            "PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n",
            "PROXY UNKNOWN x\n\r\n",
            "PROXY UNKNOWN \0\r\n",
        ];
        for b in bad {
            assert_eq!(parse(b.as_bytes()), Err(Error::BadV1), "{b:?}");
        }
    }

    #[test]
    fn prefixes_wait_and_strangers_fail_at_once() {
        let full = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n";
        for i in 0..full.len() {
            assert_eq!(parse(&full[..i]), Ok(Parsed::Partial), "prefix {i}");
        }
        let h = v2_header(1, 0x11, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 80, 1, 187]);
        for i in 0..h.len() {
            assert_eq!(parse(&h[..i]), Ok(Parsed::Partial), "v2 prefix {i}");
        }
        assert_eq!(parse(b"G"), Err(Error::Missing));
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(Error::Missing));
        assert_eq!(parse(b"PROXX"), Err(Error::Missing));
        assert_eq!(parse(b"\r\n\r\n\0\r\nQUIX"), Err(Error::Missing));
    }

    #[test]
    fn v1_length_limit() {
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(V1_MAX, b'x');
        assert_eq!(parse(&long), Err(Error::V1TooLong));
        // 105 bytes + CRLF = 107: the longest line accepted.
        long.truncate(V1_MAX - 2);
        long.extend_from_slice(b"\r\n");
        assert!(matches!(
            parse(&long),
            Ok(Parsed::Complete { len: 107, .. })
        ));
        assert_eq!(parse(b"PROXY TCP4\n"), Err(Error::BadV1));
    }

    #[test]
    fn v2_table() {
        let v4 = [192, 0, 2, 1, 198, 51, 100, 2, 0xDC, 0x04, 0x01, 0xBB];
        let h = v2_header(1, 0x11, &v4);
        assert_eq!(
            parse(&h),
            Ok(Parsed::Complete {
                len: 28,
                addrs: Some((sa("192.0.2.1:56324"), sa("198.51.100.2:443")))
            })
        );
        // TLVs after the addresses are skipped (here a PP2_TYPE_AUTHORITY and a NOOP).
        let mut with_tlv = v4.to_vec();
        with_tlv.extend_from_slice(&[0x02, 0, 3, b'a', b'.', b'b', 0x04, 0, 0]);
        let h = v2_header(1, 0x11, &with_tlv);
        assert!(
            matches!(parse(&h), Ok(Parsed::Complete { len, addrs: Some(_) }) if len == h.len())
        );
        let mut v6 = vec![0x20, 0x01, 0x0d, 0xb8];
        v6.resize(15, 0);
        v6.push(1);
        v6.extend_from_slice(&[0xfe, 0x80]);
        v6.resize(32, 0);
        v6.extend_from_slice(&[0, 1, 0, 2]);
        let h = v2_header(1, 0x21, &v6);
        assert_eq!(
            parse(&h),
            Ok(Parsed::Complete {
                len: 52,
                addrs: Some((sa("[2001:db8::1]:1"), sa("[fe80::]:2")))
            })
        );
        // LOCAL: addresses ignored, whatever the family says.
        let h = v2_header(0, 0x11, &v4);
        assert_eq!(
            parse(&h),
            Ok(Parsed::Complete {
                len: 28,
                addrs: None
            })
        );
        let h = v2_header(0, 0x00, &[]);
        assert_eq!(
            parse(&h),
            Ok(Parsed::Complete {
                len: 16,
                addrs: None
            })
        );
        // UNSPEC and UNIX with PROXY: accepted without addresses.
        assert_eq!(
            parse(&v2_header(1, 0x00, &[])),
            Ok(Parsed::Complete {
                len: 16,
                addrs: None
            })
        );
        assert!(matches!(
            parse(&v2_header(1, 0x31, &[0; 216])),
            Ok(Parsed::Complete { addrs: None, .. })
        ));
    }

    #[test]
    fn v2_errors() {
        let v4 = [192, 0, 2, 1, 198, 51, 100, 2, 0, 1, 0, 2];
        // Version 1 in the binary form, command 2.
        let mut h = v2_header(1, 0x11, &v4);
        h[12] = 0x11;
        assert_eq!(parse(&h), Err(Error::BadV2));
        assert_eq!(parse(&h[..13]), Err(Error::BadV2));
        let mut h = v2_header(1, 0x11, &v4);
        h[12] = 0x22;
        assert_eq!(parse(&h), Err(Error::BadV2));
        // An address block shorter than its family needs.
        assert_eq!(parse(&v2_header(1, 0x11, &v4[..11])), Err(Error::BadV2));
        assert_eq!(parse(&v2_header(1, 0x21, &v4)), Err(Error::BadV2));
        // Unknown family or transport.
        assert_eq!(parse(&v2_header(1, 0x41, &v4)), Err(Error::BadV2));
        assert_eq!(parse(&v2_header(1, 0x13, &v4)), Err(Error::BadV2));
        // Oversized: refused from its preamble, before the body arrives.
        let mut big = V2_SIG.to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0x10, 0x01]);
        assert_eq!(parse(&big), Err(Error::V2TooLong));
    }
}
