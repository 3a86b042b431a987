//! The TLS directives (issue 14) and each `ssl` address's rustls configuration, built at load
//! so that `-t` already loads every certificate and key and checks they match.
//!
//! `ssl_certificate` and `ssl_certificate_key` are per server (or inherited from `http`): SNI
//! picks the server, and with it the certificate. `ssl_protocols`, `ssl_session_tickets` and
//! `ssl_session_timeout` apply to a listen address as a whole and are taken from its default
//! server (nginx, too, settles them before it has seen the client's server name).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::build::RawServer;
use super::error::{ConfigError, Diagnostics};
use super::model::AddrServers;
use super::settings::{bad_value, resolve};
use super::tree::{Directive, Word};
use super::values;
use crate::tls::{Options, Protocols, Which};

/// A level's TLS directives as written (`None`: not set here, inherited).
#[derive(Debug, Clone, Default)]
pub(crate) struct RawTls {
    cert: Option<(PathBuf, Word)>,
    key: Option<(PathBuf, Word)>,
    protocols: Option<Protocols>,
    tickets: Option<bool>,
    timeout: Option<Duration>,
}

fn once<T>(slot: &mut Option<T>, v: T, d: &Directive) -> Result<(), ConfigError> {
    if slot.is_some() {
        return Err(d
            .name
            .err(format!("\"{}\" directive is duplicate", d.name.text)));
    }
    *slot = Some(v);
    Ok(())
}

impl RawTls {
    /// Takes `d` if it is a TLS directive (false: not one).
    pub fn apply(&mut self, d: &Directive, prefix: &Path) -> Result<bool, ConfigError> {
        let arg = &d.args[0];
        match d.name.text.as_str() {
            "ssl_certificate" => {
                once(&mut self.cert, (resolve(prefix, &arg.text), arg.clone()), d)?
            }
            "ssl_certificate_key" => {
                once(&mut self.key, (resolve(prefix, &arg.text), arg.clone()), d)?
            }
            "ssl_protocols" => {
                let mut p = Protocols {
                    tls12: false,
                    tls13: false,
                };
                for (i, a) in d.args.iter().enumerate() {
                    match a.text.as_str() {
                        "TLSv1.2" => p.tls12 = true,
                        "TLSv1.3" => p.tls13 = true,
                        "SSLv2" | "SSLv3" | "TLSv1" | "TLSv1.1" => {
                            return Err(a.err(format!(
                                "\"{}\" is not supported (rustls speaks TLSv1.2 and TLSv1.3 only)",
                                a.text
                            )))
                        }
                        _ => {
                            return Err(bad_value(d, i, ", it must be \"TLSv1.2\" or \"TLSv1.3\""))
                        }
                    }
                }
                once(&mut self.protocols, p, d)?
            }
            "ssl_session_tickets" => {
                let v = values::flag(&arg.text)
                    .ok_or_else(|| bad_value(d, 0, ", it must be \"on\" or \"off\""))?;
                once(&mut self.tickets, v, d)?
            }
            "ssl_session_timeout" => {
                let v = values::time_or(&arg.text).map_err(|b| bad_value(d, 0, &b.hint("time")))?;
                once(&mut self.timeout, v, d)?
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Fills what this level did not set from `parent` (the `http` level).
    pub fn inherit(&mut self, parent: &RawTls) {
        if self.cert.is_none() {
            self.cert.clone_from(&parent.cert);
        }
        if self.key.is_none() {
            self.key.clone_from(&parent.key);
        }
        self.protocols = self.protocols.or(parent.protocols);
        self.tickets = self.tickets.or(parent.tickets);
        self.timeout = self.timeout.or(parent.timeout);
    }

    fn options(&self) -> Options {
        let d = Options::default();
        Options {
            protocols: self.protocols.unwrap_or(d.protocols),
            tickets: self.tickets.unwrap_or(d.tickets),
            session_timeout: self.timeout.unwrap_or(d.session_timeout),
        }
    }
}

/// Builds the rustls configuration of every `ssl` address: each of its servers' certificate
/// and key are loaded (once per server) and checked; a server without them is an error at its
/// `listen`, as in nginx (`no "ssl_certificate" is defined for the "listen ... ssl" directive`).
pub(crate) fn build(addrs: &mut [AddrServers], raws: &[RawServer], diags: &mut Diagnostics) {
    type Loaded = Option<Option<Arc<rustls::sign::CertifiedKey>>>;
    let mut loaded: Vec<Loaded> = vec![None; raws.len()];
    for a in addrs.iter_mut().filter(|a| a.ssl) {
        let mut certs = vec![None; raws.len()];
        let mut ok = true;
        for &si in &a.servers {
            let s = &raws[si];
            let ck = loaded[si].get_or_insert_with(|| {
                let listen = s
                    .listens
                    .iter()
                    .find(|l| l.0.addr == a.addr)
                    .map_or(&s.decl, |l| &l.1);
                let r = load(&s.tls, listen);
                r.map_err(|e| diags.push(e)).ok()
            });
            match ck {
                Some(ck) => certs[si] = Some(ck.clone()),
                None => ok = false,
            }
        }
        if !ok {
            continue;
        }
        let opts = raws[a.default].tls.options();
        let mut table = a.clone();
        table.tls = None;
        let resolver = crate::tls::SniResolver::new(table, certs);
        match crate::tls::server_config(resolver, &opts) {
            Ok(cfg) => a.tls = Some(cfg),
            Err(m) => diags.push(raws[a.default].decl.err(format!("TLS for {}: {m}", a.addr))),
        }
    }
}

fn load(t: &RawTls, listen: &Word) -> Result<Arc<rustls::sign::CertifiedKey>, ConfigError> {
    let Some((cert, cert_word)) = &t.cert else {
        return Err(
            listen.err("no \"ssl_certificate\" is defined for the \"listen ... ssl\" directive")
        );
    };
    let Some((key, key_word)) = &t.key else {
        return Err(listen
            .err("no \"ssl_certificate_key\" is defined for the \"listen ... ssl\" directive"));
    };
    crate::tls::load_certified_key(cert, key).map_err(|e| match e.which {
        Which::Cert => cert_word.err(e.message),
        Which::Key => key_word.err(e.message),
    })
}
