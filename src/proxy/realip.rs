//! nginx's realip (<https://nginx.org/en/docs/http/ngx_http_realip_module.html>): the client
//! address a request is logged and run under, when a trusted proxy says whom it forwards.
//!
//! - `set_real_ip_from ADDR|CIDR` (repeatable): the trusted proxies. Without any, realip is off.
//! - `real_ip_header X-Real-IP | X-Forwarded-For | proxy_protocol` (default `X-Real-IP`).
//! - `real_ip_recursive on|off` (default off): with X-Forwarded-For, off takes the last address
//!   of the list; on walks it from the right past trusted addresses and takes the first
//!   untrusted one (the leftmost if all are trusted).
//!
//! Only a trusted connection address has its headers honoured; anything else is ignored, as is
//! a header whose address does not parse (the connection's address then stands).

use std::net::{IpAddr, SocketAddr};

/// An address block: `192.0.2.0/24`, `2001:db8::/32`, or one address (a full-length prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let bad = || format!("invalid address or network \"{s}\"");
        let (ip, bits) = match s.split_once('/') {
            Some((ip, b)) => (ip, Some(b)),
            None => (s, None),
        };
        let net: IpAddr = ip.parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) if !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit()) && b.len() <= 3 => {
                b.parse::<u8>().ok().filter(|&n| n <= max).ok_or_else(bad)?
            }
            Some(_) => return Err(bad()),
        };
        let c = Cidr { net, bits };
        // nginx warns about host bits set; refusing is clearer than silently masking them.
        if !c.contains(net) || c.masked(net) != bits_of(net) {
            return Err(format!("low address bits of \"{s}\" are meaningless"));
        }
        Ok(c)
    }

    fn masked(&self, ip: IpAddr) -> u128 {
        let (v, width) = match ip {
            IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => (u128::from(a), 128),
        };
        let keep = u32::from(self.bits);
        if keep == 0 {
            0
        } else {
            v & (u128::MAX << (width - keep)) & width_mask(width)
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.net.is_ipv4() && self.masked(ip) == self.masked(self.net)
    }
}

fn width_mask(width: u32) -> u128 {
    if width == 128 {
        u128::MAX
    } else {
        (1u128 << width) - 1
    }
}

fn bits_of(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, what a dual-stack socket reports) is
/// matched as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// `real_ip_header`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Source {
    #[default]
    XRealIp,
    XForwardedFor,
    ProxyProtocol,
}

impl Source {
    pub fn parse(s: &str) -> Option<Source> {
        if s.eq_ignore_ascii_case("X-Real-IP") {
            Some(Source::XRealIp)
        } else if s.eq_ignore_ascii_case("X-Forwarded-For") {
            Some(Source::XForwardedFor)
        } else if s == "proxy_protocol" {
            Some(Source::ProxyProtocol)
        } else {
            None
        }
    }

    /// The request header it reads (none for `proxy_protocol`).
    pub fn header(self) -> Option<&'static str> {
        match self {
            Source::XRealIp => Some("X-Real-IP"),
            Source::XForwardedFor => Some("X-Forwarded-For"),
            Source::ProxyProtocol => None,
        }
    }
}

/// The realip settings (http level).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RealIp {
    pub from: Vec<Cidr>,
    pub source: Source,
    pub recursive: bool,
}

impl RealIp {
    pub fn enabled(&self) -> bool {
        !self.from.is_empty()
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.from.iter().any(|c| c.contains(ip))
    }

    /// The client address of a request. `tcp` is the socket's peer, `proxied` the source a
    /// PROXY header named (on a `proxy_protocol` listener), `value` the configured header's
    /// value (joined if repeated).
    ///
    /// On a `proxy_protocol` listener the PROXY source is the connection's client address by
    /// itself (the listener accepts nothing without the header). `real_ip_header
    /// proxy_protocol` is the stricter nginx form: the PROXY source is used only when the
    /// balancer (`tcp`) is trusted.
    pub fn client(
        &self,
        tcp: SocketAddr,
        proxied: Option<SocketAddr>,
        value: Option<&[u8]>,
    ) -> SocketAddr {
        if self.source == Source::ProxyProtocol {
            return match proxied {
                Some(p) if self.trusted(tcp.ip()) => p,
                _ => tcp,
            };
        }
        let conn = proxied.unwrap_or(tcp);
        if !self.enabled() || !self.trusted(conn.ip()) {
            return conn;
        }
        let Some(v) = value.and_then(|v| std::str::from_utf8(v).ok()) else {
            return conn;
        };
        let found = match self.source {
            Source::XRealIp => one(v.trim()),
            _ => {
                let mut found = None;
                // RFC 9110 §5.6.1: empty list elements (`a,,b`, a trailing comma) are
                // accepted and skipped, not taken for a bad address.
                for item in v.rsplit(',').map(str::trim).filter(|i| !i.is_empty()) {
                    let Some(a) = one(item) else {
                        break;
                    };
                    found = Some(a);
                    if !self.recursive || !self.trusted(a.ip()) {
                        break;
                    }
                }
                found
            }
        };
        found.unwrap_or(conn)
    }
}

/// One address from a header: `192.0.2.1`, `2001:db8::1`, `192.0.2.1:5000`, `[2001:db8::1]:5000`
/// (port 0 when none is given: the header does not say it).
fn one(s: &str) -> Option<SocketAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 0));
    }
    s.parse::<SocketAddr>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(!c.contains("::a00:1".parse().unwrap()));
        let one = Cidr::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert!(Cidr::parse("::/0")
            .unwrap()
            .contains("::1".parse().unwrap()));
        for bad in [
            "10.0.0.1/8",
            "10.0.0.0/33",
            "10.0.0.0/",
            "x",
            "10.0.0.0/+8",
            "::1/129",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    fn rip(from: &[&str], source: Source, recursive: bool) -> RealIp {
        RealIp {
            from: from.iter().map(|s| Cidr::parse(s).unwrap()).collect(),
            source,
            recursive,
        }
    }

    #[test]
    fn forwarded_for() {
        let lb = sa("10.0.0.5:40000");
        let xff = Some(&b"203.0.113.7, 10.0.0.9, 10.0.0.8"[..]);
        let r = rip(&["10.0.0.0/8"], Source::XForwardedFor, false);
        assert_eq!(r.client(lb, None, xff), sa("10.0.0.8:0"));
        let r = rip(&["10.0.0.0/8"], Source::XForwardedFor, true);
        assert_eq!(r.client(lb, None, xff), sa("203.0.113.7:0"));
        // All trusted: the leftmost.
        let r2 = Some(&b"10.1.1.1,10.2.2.2"[..]);
        assert_eq!(r.client(lb, None, r2), sa("10.1.1.1:0"));
        // An untrusted peer's header is ignored.
        let stranger = sa("198.51.100.1:1234");
        assert_eq!(r.client(stranger, None, xff), stranger);
        // A garbage value leaves the connection's address.
        assert_eq!(r.client(lb, None, Some(b"not-an-ip")), lb);
        assert_eq!(r.client(lb, None, None), lb);
        // Off without set_real_ip_from.
        assert_eq!(RealIp::default().client(lb, None, xff), lb);
    }

    #[test]
    fn real_ip_and_proxy_protocol() {
        let lb = sa("10.0.0.5:40000");
        let r = rip(&["10.0.0.5"], Source::XRealIp, false);
        assert_eq!(
            r.client(lb, None, Some(b" 2001:db8::7 ")),
            sa("[2001:db8::7]:0")
        );
        assert_eq!(
            r.client(lb, None, Some(b"192.0.2.4:777")),
            sa("192.0.2.4:777")
        );
        let p = Some(sa("192.0.2.9:5555"));
        // Without realip, a PROXY source is the client.
        assert_eq!(RealIp::default().client(lb, p, None), sa("192.0.2.9:5555"));
        // real_ip_header proxy_protocol: only from a trusted balancer.
        let r = rip(&["10.0.0.5"], Source::ProxyProtocol, false);
        assert_eq!(r.client(lb, p, None), sa("192.0.2.9:5555"));
        let r = rip(&["10.9.9.9"], Source::ProxyProtocol, false);
        assert_eq!(r.client(lb, p, None), lb);
        // X-Forwarded-For behind PROXY: the PROXY source is the one that must be trusted.
        let r = rip(&["192.0.2.9"], Source::XForwardedFor, false);
        assert_eq!(r.client(lb, p, Some(b"203.0.113.1")), sa("203.0.113.1:0"));
        let r = rip(&["10.0.0.5"], Source::XForwardedFor, false);
        assert_eq!(r.client(lb, p, Some(b"203.0.113.1")), sa("192.0.2.9:5555"));
    }
}
