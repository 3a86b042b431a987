//! HTTPS end to end (issue 14): a rustls client against the real server on every backend, with
//! certificates made by rcgen in the test. What a client sees: the certificate SNI picks, bytes
//! of small and large files, keep-alive and pipelining, uploads, CGI's `HTTPS=on`, session
//! resumption, nginx's 400 for plain HTTP on the TLS port, and that garbage or a stalled
//! handshake ends only that connection.

mod common;

use common::*;
use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// A self-signed certificate for `names` (ECDSA P-256), as PEM files `<stem>.crt`/`.key` in
/// `dir`; returns its DER for the client's trust store.
fn make_cert(dir: &Path, stem: &str, names: &[&str]) -> CertificateDer<'static> {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let ck = rcgen::generate_simple_self_signed(names).expect("rcgen");
    write_file(dir, &format!("{stem}.crt"), ck.cert.pem());
    write_file(dir, &format!("{stem}.key"), ck.signing_key.serialize_pem());
    ck.cert.der().clone()
}

fn client_config(trust: &[CertificateDer<'static>], tls12_only: bool) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in trust {
        roots.add(c.clone()).expect("trust anchor");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

type Stream = StreamOwned<ClientConnection, TcpStream>;

/// A TLS stream shared by a [`Reader`] (responses) and the writer (requests).
#[derive(Clone)]
struct Shared(Rc<RefCell<Stream>>);

impl Read for Shared {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        self.0.borrow_mut().read(b)
    }
}

/// A TLS client connection.
struct Tls {
    s: Shared,
    r: Reader<Shared>,
}

impl Tls {
    /// Connects and completes the handshake for `sni`.
    fn open(port: u16, cfg: &Arc<ClientConfig>, sni: &str) -> Tls {
        Tls::try_open(port, cfg, sni).unwrap_or_else(|e| panic!("TLS handshake: {e}"))
    }

    fn try_open(port: u16, cfg: &Arc<ClientConfig>, sni: &str) -> io::Result<Tls> {
        let tcp = TcpStream::connect(("127.0.0.1", port))?;
        tcp.set_read_timeout(Some(IO_TIMEOUT))?;
        tcp.set_write_timeout(Some(IO_TIMEOUT))?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(sni.to_string()).unwrap();
        let conn = ClientConnection::new(cfg.clone(), name).unwrap();
        let mut stream = StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        let s = Shared(Rc::new(RefCell::new(stream)));
        Ok(Tls {
            r: Reader::new(s.clone()),
            s,
        })
    }

    fn send(&mut self, b: &[u8]) {
        let mut st = self.s.0.borrow_mut();
        st.write_all(b).expect("TLS write");
        st.flush().expect("TLS flush");
    }

    fn response(&mut self) -> Response {
        self.r.read_response(false).expect("a response over TLS")
    }

    fn peer_cert(&self) -> CertificateDer<'static> {
        self.s
            .0
            .borrow()
            .conn
            .peer_certificates()
            .expect("server certificate")[0]
            .clone()
    }

    fn resumed(&self) -> bool {
        self.s.0.borrow().conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
    }
}

fn get_req(path: &str, host: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n")
}

const CONF: &str = "{BASE}
server {
    listen 127.0.0.1:{PORT} ssl;
    listen 127.0.0.1:{PORT2};
    server_name a.test;
    ssl_certificate a.crt;
    ssl_certificate_key a.key;
    root www;
    location / { }
    location /cgi-bin/ {
        allow_methods GET POST;
        cgi .sh /bin/sh;
    }
    location /up/ {
        allow_methods GET POST PUT;
        upload_store www/up;
    }
}
server {
    listen 127.0.0.1:{PORT} ssl;
    server_name b.test;
    ssl_certificate b.crt;
    ssl_certificate_key b.key;
    root www-b;
    location / { }
}
";

/// A 1 MiB file whose bytes are not periodic in any small unit.
fn big() -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

struct Site {
    s: Server,
    a: CertificateDer<'static>,
    b: CertificateDer<'static>,
}

fn start(backend: &str, conf: &str) -> Site {
    let certs = RefCell::new(None);
    let s = Server::start(backend, conf, |dir| {
        let a = make_cert(dir, "a", &["a.test"]);
        let b = make_cert(dir, "b", &["b.test"]);
        *certs.borrow_mut() = Some((a, b));
        write_file(dir, "www/index.html", "site a\n");
        write_file(dir, "www/big.bin", big());
        write_file(dir, "www-b/index.html", "site b\n");
        write_file(
            dir,
            "www/cgi-bin/env.sh",
            "printf 'Content-Type: text/plain\\r\\n\\r\\n'\nenv\n",
        );
        std::fs::create_dir_all(dir.join("www/up")).unwrap();
    });
    let (a, b) = certs.into_inner().unwrap();
    Site { s, a, b }
}

#[test]
fn static_files_small_and_large_over_tls() {
    for_each_backend("static_files_small_and_large_over_tls", |b| {
        let site = start(b, CONF);
        let cfg = client_config(&[site.a.clone()], false);
        let mut c = Tls::open(site.s.port, &cfg, "a.test");
        c.send(get_req("/", "a.test").as_bytes());
        let r = c.response();
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(r.body, b"site a\n");
        c.send(get_req("/big.bin", "a.test").as_bytes());
        let r = c.response();
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), 1 << 20);
        assert!(r.body == big(), "1 MiB body differs");
        // TLS 1.2 too.
        let cfg12 = client_config(&[site.a.clone()], true);
        let mut c = Tls::open(site.s.port, &cfg12, "a.test");
        c.send(get_req("/big.bin", "a.test").as_bytes());
        let r = c.response();
        assert!(r.status == 200 && r.body == big(), "TLS 1.2: {}", r.status);
        // The same server's plain listener still answers in clear.
        let r = get_host(site.s.port2, "a.test", "/");
        assert_eq!(r.body, b"site a\n");
    });
}
