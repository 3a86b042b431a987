//! Virtual hosts: which addresses to bind, and which server answers a connection + Host.
//!
//! nginx picks the server in two steps (<https://nginx.org/en/docs/http/request_processing.html>,
//! <https://nginx.org/en/docs/http/server_names.html>): first by the *address* the connection
//! arrived on — servers listening on that exact IP:port, else those on the wildcard address of
//! that port — then by name among those servers only: exact name, longest `*.`-prefixed wildcard,
//! longest `.*`-suffixed wildcard, else the address's `default_server`, else the first server
//! listening there. A server that listens on `*:80` is therefore *not* a candidate for a
//! connection that arrived on a specific `127.0.0.1:80` someone else listens on.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::build::RawServer;
use super::error::Diagnostics;
use super::model::{AddrServers, Config, Server, ServerName};

/// Groups listens by address, checking nginx's two conflicts: two `default_server`s on one
/// address (an error: nginx's "a duplicate default server"), and the same name on one address
/// in two servers (a warning, as nginx's "conflicting server name ..., ignored": the first
/// server keeps the name).
pub(crate) fn address_tables(servers: &[RawServer], diags: &mut Diagnostics) -> Vec<AddrServers> {
    let mut out: Vec<AddrServers> = Vec::new();
    for (si, s) in servers.iter().enumerate() {
        for (listen, _, dflt_word) in &s.listens {
            let at = match out.iter().position(|a| a.addr == listen.addr) {
                Some(at) => at,
                None => {
                    out.push(AddrServers {
                        addr: listen.addr,
                        servers: Vec::new(),
                        default: si,
                        proxy_protocol: false,
                        ssl: false,
                        tls: None,
                        exact: Default::default(),
                        star_prefix: Vec::new(),
                        star_suffix: Vec::new(),
                    });
                    out.len() - 1
                }
            };
            let a = &mut out[at];
            a.proxy_protocol |= listen.proxy_protocol;
            a.ssl |= listen.ssl;
            if let Some(w) = dflt_word {
                let has_default = a.servers.iter().any(|&o| {
                    servers[o]
                        .listens
                        .iter()
                        .any(|l| l.0.addr == a.addr && l.0.default_server)
                });
                if has_default {
                    diags.push(w.err(format!("a duplicate default server for {}", a.addr)));
                } else {
                    a.default = si;
                }
            }
            a.servers.push(si);
            for (name, word) in &s.names {
                let clash = match name {
                    ServerName::Exact(n) => *a.exact.entry(n.clone()).or_insert(si) != si,
                    ServerName::StarPrefix { suffix, bare } => {
                        let prev = a
                            .star_prefix
                            .iter()
                            .find(|p| &p.0 == suffix && p.1 == *bare);
                        let clash = prev.is_some_and(|p| p.2 != si);
                        if prev.is_none() {
                            a.star_prefix.push((suffix.clone(), *bare, si));
                        }
                        clash
                    }
                    ServerName::StarSuffix(prefix) => {
                        let prev = a.star_suffix.iter().find(|p| &p.0 == prefix);
                        let clash = prev.is_some_and(|p| p.1 != si);
                        if prev.is_none() {
                            a.star_suffix.push((prefix.clone(), si));
                        }
                        clash
                    }
                };
                if clash {
                    let shown = match name {
                        ServerName::Exact(n) if n.is_empty() => String::new(),
                        other => other.to_string(),
                    };
                    diags.push(
                        word.err(format!(
                            "conflicting server name \"{shown}\" on {}, ignored",
                            a.addr
                        ))
                        .into_warning(),
                    );
                }
            }
        }
    }
    for a in &mut out {
        a.star_prefix.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        a.star_suffix.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
    }
    out
}

fn is_wildcard(ip: IpAddr) -> bool {
    ip.is_unspecified()
}

/// Host header → lookup key: port stripped (IPv6 literals keep their brackets), lower-cased,
/// one trailing dot removed (RFC 9110 §7.2 / nginx `ngx_http_validate_host`).
pub fn normalize_host(host: &str) -> std::borrow::Cow<'_, str> {
    let h = if host.starts_with('[') {
        match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        let colon = host.bytes().position(|b| b == b':');
        colon.map_or(host, |i| &host[..i])
    };
    let h = h.strip_suffix('.').unwrap_or(h);
    // Borrowed when already lower-case (every request names its Host: no copy per request).
    if h.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(h.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(h)
    }
}

impl AddrServers {
    /// The server for `host` (already normalised) among this address's servers.
    pub(crate) fn pick_name(&self, host: &str) -> usize {
        self.pick(host)
    }

    fn pick(&self, host: &str) -> usize {
        if let Some(&i) = self.exact.get(host) {
            return i;
        }
        for (suffix, bare, i) in &self.star_prefix {
            if (host.len() > suffix.len() && host.ends_with(suffix.as_str()))
                || (*bare && host == &suffix[1..])
            {
                return *i;
            }
        }
        for (prefix, i) in &self.star_suffix {
            if host.len() > prefix.len() && host.starts_with(prefix.as_str()) {
                return *i;
            }
        }
        self.default
    }
}

impl Config {
    /// The distinct addresses to bind. A specific address whose port is also listened on by
    /// the same family's wildcard is left out: the wildcard socket receives those connections
    /// (binding both would fail with EADDRINUSE), and `select_server` still routes them by the
    /// connection's local address, as nginx does without `bind`. IPv6 wildcards assume the
    /// listener sets IPV6_V6ONLY (nginx's `ipv6only=on` default) so `[::]:80` and `0.0.0.0:80`
    /// can both be bound.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        let wildcard_ports: Vec<(bool, u16)> = self
            .addrs
            .iter()
            .filter(|a| is_wildcard(a.addr.ip()))
            .map(|a| (a.addr.is_ipv6(), a.addr.port()))
            .collect();
        self.addrs
            .iter()
            .map(|a| a.addr)
            .filter(|a| is_wildcard(a.ip()) || !wildcard_ports.contains(&(a.is_ipv6(), a.port())))
            .collect()
    }

    /// The server for a connection accepted on `local` (its getsockname address) carrying
    /// `host` (the Host header, or `None` when absent). Falls back to the first server when
    /// nothing listens on `local` at all (cannot happen for sockets bound from `listen_addrs`).
    ///
    /// # Panics
    /// When the config has no server at all; `listen_addrs` is then empty, so no connection
    /// exists to route.
    pub fn select_server(&self, local: SocketAddr, host: Option<&str>) -> &Server {
        &self.servers[self.server_index(local, host)]
    }

    /// The index in `servers` of [`Config::select_server`]'s answer.
    pub fn server_index(&self, local: SocketAddr, host: Option<&str>) -> usize {
        let Some(table) = self.addr_table(local) else {
            return 0;
        };
        let host = normalize_host(host.unwrap_or(""));
        table.pick(&host)
    }

    /// Whether connections accepted on `local` start with a PROXY header (the `listen`
    /// that owns the address, or the wildcard of its port, says `proxy_protocol`).
    pub fn proxy_protocol(&self, local: SocketAddr) -> bool {
        self.addr_table(local).is_some_and(|t| t.proxy_protocol)
    }

    /// The TLS configuration for connections accepted on `local`, if that address is `ssl`.
    pub fn tls(&self, local: SocketAddr) -> Option<&std::sync::Arc<rustls::ServerConfig>> {
        self.addr_table(local).and_then(|t| t.tls.as_ref())
    }

    /// The table for `local`: its own address, else the wildcard of its port.
    fn addr_table(&self, local: SocketAddr) -> Option<&AddrServers> {
        self.addrs.iter().find(|a| a.addr == local).or_else(|| {
            let any: IpAddr = if local.is_ipv6() {
                Ipv6Addr::UNSPECIFIED.into()
            } else {
                Ipv4Addr::UNSPECIFIED.into()
            };
            let wild = SocketAddr::new(any, local.port());
            self.addrs.iter().find(|a| a.addr == wild)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let cases = [
            ("Example.COM", "example.com"),
            ("example.com:8080", "example.com"),
            ("example.com.", "example.com"),
            ("example.com.:80", "example.com"),
            ("[::1]:8080", "[::1]"),
            ("[::1]", "[::1]"),
            ("", ""),
        ];
        for (h, want) in cases {
            assert_eq!(normalize_host(h), want, "{h:?}");
        }
    }
}
