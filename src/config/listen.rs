//! `listen` addresses and `server_name` entries, parsed into their routing forms.
//!
//! Address forms (<https://nginx.org/en/docs/http/ngx_http_core_module.html#listen>):
//! `PORT` and `*:PORT` mean 0.0.0.0:PORT; `ADDR:PORT`, `[V6]:PORT`; an address without a port
//! means port 80. `localhost` is accepted as 127.0.0.1; other host names are not resolved (a
//! config load must not depend on DNS).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::model::ServerName;
use super::values::number;

/// Parses a `listen` address. Errors are messages without position.
pub fn addr(s: &str) -> Result<SocketAddr, String> {
    let invalid = || format!("invalid listen address \"{s}\"");
    let port = |p: &str| -> Result<u16, String> {
        match number(p) {
            Some(n) if (1..=65535).contains(&n) => Ok(n as u16),
            _ => Err(format!("invalid port in \"{s}\"")),
        }
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(invalid)?;
        let ip: std::net::Ipv6Addr = host.parse().map_err(|_| invalid())?;
        let p = match after {
            "" => 80,
            _ => port(after.strip_prefix(':').ok_or_else(invalid)?)?,
        };
        return Ok(SocketAddr::new(IpAddr::V6(ip), p));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port(s)?));
    }
    let (host, p) = match s.rsplit_once(':') {
        Some((h, p)) => (h, port(p)?),
        None => (s, 80),
    };
    let ip = match host {
        "*" => Ipv4Addr::UNSPECIFIED,
        "localhost" => Ipv4Addr::LOCALHOST,
        _ => host.parse().map_err(|_| invalid())?,
    };
    Ok(SocketAddr::new(IpAddr::V4(ip), p))
}

/// Parses one `server_name` argument (<https://nginx.org/en/docs/http/server_names.html>).
pub fn server_name(s: &str) -> Result<ServerName, String> {
    let s = s.to_ascii_lowercase();
    if s.starts_with('~') {
        return Err(format!("regex server names are not supported: \"{s}\""));
    }
    if let Some(suffix) = s.strip_prefix('*') {
        if !suffix.starts_with('.') || suffix.len() < 2 || suffix.contains('*') {
            return Err(format!("invalid server name \"{s}\""));
        }
        return Ok(ServerName::StarPrefix {
            suffix: suffix.to_string(),
            bare: false,
        });
    }
    if let Some(prefix) = s.strip_suffix('*') {
        if !prefix.ends_with('.') || prefix.len() < 2 || prefix.contains('*') {
            return Err(format!("invalid server name \"{s}\""));
        }
        return Ok(ServerName::StarSuffix(prefix.to_string()));
    }
    if s.contains('*') {
        return Err(format!("invalid server name \"{s}\""));
    }
    if s.len() > 1 && s.starts_with('.') {
        return Ok(ServerName::StarPrefix {
            suffix: s,
            bare: true,
        });
    }
    Ok(ServerName::Exact(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addrs() {
        let cases = [
            ("8080", Ok("0.0.0.0:8080")),
            ("*:80", Ok("0.0.0.0:80")),
            ("127.0.0.1:8080", Ok("127.0.0.1:8080")),
            ("127.0.0.1", Ok("127.0.0.1:80")),
            ("localhost:81", Ok("127.0.0.1:81")),
            ("[::]:8080", Ok("[::]:8080")),
            ("[::1]:80", Ok("[::1]:80")),
            ("[::1]", Ok("[::1]:80")),
            ("0", Err("invalid port in \"0\"")),
            ("65536", Err("invalid port in \"65536\"")),
            ("1.2.3.4:x", Err("invalid port in \"1.2.3.4:x\"")),
            (
                "example.com:80",
                Err("invalid listen address \"example.com:80\""),
            ),
            ("[::1:80", Err("invalid listen address \"[::1:80\"")),
            ("[::1]80", Err("invalid listen address \"[::1]80\"")),
        ];
        for (s, want) in cases {
            let got = addr(s).map(|a| a.to_string());
            assert_eq!(got, want.map(str::to_string).map_err(str::to_string), "{s}");
        }
    }

    #[test]
    fn names() {
        use ServerName::*;
        let cases = [
            ("Example.COM", Ok(Exact("example.com".into()))),
            ("", Ok(Exact("".into()))),
            (
                "*.example.com",
                Ok(StarPrefix {
                    suffix: ".example.com".into(),
                    bare: false,
                }),
            ),
            (
                ".example.com",
                Ok(StarPrefix {
                    suffix: ".example.com".into(),
                    bare: true,
                }),
            ),
            ("www.example.*", Ok(StarSuffix("www.example.".into()))),
            ("*example.com", Err(())),
            ("www.*.com", Err(())),
            ("*", Err(())),
            ("~^www", Err(())),
        ];
        for (s, want) in cases {
            assert_eq!(server_name(s).map_err(|_| ()), want, "{s:?}");
        }
    }
}
