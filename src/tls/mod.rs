//! TLS (issue 14): certificates and keys from PEM files, one rustls `ServerConfig` per TLS
//! listen address, and SNI choosing a virtual host's certificate.
//!
//! The crypto provider is *ring* (a C compiler is all it needs on Linux, macOS and FreeBSD;
//! aws-lc-rs would also want cmake and, on some targets, a Go toolchain or nasm). The
//! connection layer that drives a `ServerConnection` over the backend's receive and send
//! operations is `server/conn/tls.rs`.

mod session;

pub use session::{Session, Writer};

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ProducesTickets, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::config::AddrServers;

/// `ssl_protocols`: which versions a TLS listener offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protocols {
    pub tls12: bool,
    pub tls13: bool,
}

impl Default for Protocols {
    /// nginx's default is `TLSv1.2 TLSv1.3` (1.23.4 and later); rustls has nothing older.
    fn default() -> Self {
        Protocols {
            tls12: true,
            tls13: true,
        }
    }
}

/// The session settings of a TLS listener (taken from its default server, as nginx does for
/// the handshake's first flight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub protocols: Protocols,
    /// `ssl_session_tickets` (default on).
    pub tickets: bool,
    /// `ssl_session_timeout` (default 5m): the lifetime of a ticket.
    pub session_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            protocols: Protocols::default(),
            tickets: true,
            session_timeout: Duration::from_secs(300),
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Which of the two files a [`LoadError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Cert,
    Key,
}

/// A certificate or key that did not load, with nginx-like wording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub which: Which,
    pub message: String,
}

/// Loads a PEM certificate chain (leaf first) and its private key (PKCS#8, PKCS#1 or SEC1), and
/// checks that the key is the certificate's.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, LoadError> {
    let cert_err = |m: String| LoadError {
        which: Which::Cert,
        message: format!("cannot load certificate \"{}\": {m}", cert.display()),
    };
    let key_err = |m: String| LoadError {
        which: Which::Key,
        message: format!("cannot load certificate key \"{}\": {m}", key.display()),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_err(pem_error(e)))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(pem_error(e)))?;
    if chain.is_empty() {
        return Err(cert_err("no certificate in PEM file".into()));
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| key_err(pem_error(e)))?;
    let provider = provider();
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| key_err(e.to_string()))?;
    let ck = CertifiedKey::new(chain, signing);
    match ck.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(key_err(format!(
                "the key does not match certificate \"{}\"",
                cert.display()
            )))
        }
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => return Err(cert_err(e.to_string())),
    }
    Ok(Arc::new(ck))
}

fn pem_error(e: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(io) => {
            let m = io.to_string();
            m.split(" (os error").next().unwrap_or(&m).to_string()
        }
        Error::NoItemsFound => "no PEM section of the expected kind".into(),
        other => format!("malformed PEM: {other:?}"),
    }
}

/// SNI: the certificate of the server the client's name picks among the servers of one listen
/// address (nginx's name rules, as for Host), else the address's default server's.
#[derive(Debug)]
pub struct SniResolver {
    table: AddrServers,
    /// By server index (`Config::servers`); `None` for servers not on this address.
    certs: Vec<Option<Arc<CertifiedKey>>>,
}

impl SniResolver {
    pub fn new(table: AddrServers, certs: Vec<Option<Arc<CertifiedKey>>>) -> SniResolver {
        SniResolver { table, certs }
    }

    /// The certificate for a client hello naming `name` (or none).
    pub fn pick(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let i = match name {
            Some(n) => self.table.pick_name(&crate::config::normalize_host(n)),
            None => self.table.default,
        };
        self.certs
            .get(i)
            .and_then(Option::clone)
            .or_else(|| self.certs.get(self.table.default).and_then(Option::clone))
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name())
    }
}

/// `ssl_session_timeout` as the advertised ticket lifetime, over rustls's rotating ticketer.
#[derive(Debug)]
struct Lifetime {
    inner: Arc<dyn ProducesTickets>,
    secs: u32,
}

impl ProducesTickets for Lifetime {
    fn enabled(&self) -> bool {
        self.inner.enabled()
    }
    fn lifetime(&self) -> u32 {
        self.secs
    }
    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.inner.encrypt(plain)
    }
    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.inner.decrypt(cipher)
    }
}

/// Sessions the server remembers for resumption without tickets (`ssl_session_tickets off`).
const SESSION_CACHE: usize = 20_000;

/// The rustls configuration of one TLS listen address.
pub fn server_config(resolver: SniResolver, o: &Options) -> Result<Arc<ServerConfig>, String> {
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if o.protocols.tls13 {
        versions.push(&rustls::version::TLS13);
    }
    if o.protocols.tls12 {
        versions.push(&rustls::version::TLS12);
    }
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions)
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
    if o.tickets {
        let inner = rustls::crypto::ring::Ticketer::new().map_err(|e| e.to_string())?;
        let secs = o.session_timeout.as_secs().clamp(1, 7 * 24 * 3600) as u32;
        cfg.ticketer = Arc::new(Lifetime { inner, secs });
    } else {
        // TLS 1.3 still resumes through the session cache (stateful tickets).
        cfg.send_tls13_tickets = 1;
    }
    Ok(Arc::new(cfg))
}
