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
        Tls::over(TcpStream::connect(("127.0.0.1", port))?, cfg, sni)
    }

    /// The handshake on a connection that may already carry something (a PROXY header).
    fn over(tcp: TcpStream, cfg: &Arc<ClientConfig>, sni: &str) -> io::Result<Tls> {
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
client_header_timeout 1s;
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
        client_max_body_size 0;
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
        write_file(
            dir,
            "www/cgi-bin/echo.sh",
            "printf 'Content-Type: application/octet-stream\\r\\n\\r\\n'\ncat\n",
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
        let cfg = client_config(std::slice::from_ref(&site.a), false);
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
        let cfg12 = client_config(std::slice::from_ref(&site.a), true);
        let mut c = Tls::open(site.s.port, &cfg12, "a.test");
        c.send(get_req("/big.bin", "a.test").as_bytes());
        let r = c.response();
        assert!(r.status == 200 && r.body == big(), "TLS 1.2: {}", r.status);
        // The same server's plain listener still answers in clear.
        let r = get_host(site.s.port2, "a.test", "/");
        assert_eq!(r.body, b"site a\n");
    });
}

#[test]
fn keep_alive_pipelining_uploads_and_cgi_over_tls() {
    for_each_backend("keep_alive_pipelining_uploads_and_cgi_over_tls", |b| {
        let site = start(b, CONF);
        let cfg = client_config(std::slice::from_ref(&site.a), false);
        let mut c = Tls::open(site.s.port, &cfg, "a.test");
        // Three pipelined requests in one write, answered in order on one connection.
        let three = format!(
            "{}{}{}",
            get_req("/", "a.test"),
            get_req("/nope", "a.test"),
            get_req("/big.bin", "a.test")
        );
        c.send(three.as_bytes());
        let r = c.response();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"site a\n"[..]));
        assert_eq!(c.response().status, 404);
        let r = c.response();
        assert!(r.status == 200 && r.body == big(), "pipelined 1 MiB");
        // A range, and two ranges (multipart/byteranges), read from the file piece by piece.
        c.send(b"GET /big.bin HTTP/1.1\r\nHost: a.test\r\nRange: bytes=1000-300999\r\n\r\n");
        let r = c.response();
        assert_eq!(r.status, 206, "{}", r.dump());
        assert!(r.body == big()[1000..301000], "range bytes differ");
        c.send(b"GET /big.bin HTTP/1.1\r\nHost: a.test\r\nRange: bytes=0-9,500000-500009\r\n\r\n");
        let r = c.response();
        assert_eq!(r.status, 206);
        let body = r.body.clone();
        let find = |part: &[u8]| body.windows(part.len()).any(|w| w == part);
        assert!(
            find(&big()[0..10]) && find(&big()[500000..500010]),
            "byteranges parts"
        );
        // An upload on the same connection lands on disk byte for byte.
        let data: Vec<u8> = big()[..300_000].to_vec();
        let mut req = format!(
            "PUT /up/f.bin HTTP/1.1\r\nHost: a.test\r\nContent-Length: {}\r\n\r\n",
            data.len()
        )
        .into_bytes();
        req.extend_from_slice(&data);
        c.send(&req);
        let r = c.response();
        assert_eq!(r.status, 201, "{}", r.dump());
        assert!(std::fs::read(site.s.dir.join("www/up/f.bin")).unwrap() == data);
        // A POST body streams through a CGI and back.
        let mut req = format!(
            "POST /cgi-bin/echo.sh HTTP/1.1\r\nHost: a.test\r\nContent-Length: {}\r\n\r\n",
            data.len()
        )
        .into_bytes();
        req.extend_from_slice(&data);
        c.send(&req);
        let r = c.response();
        assert_eq!(r.status, 200, "{}", r.dump());
        assert!(r.body == data, "CGI echo over TLS: {} B", r.body.len());
        // The CGI sees HTTPS=on; over the plain listener it does not.
        c.send(get_req("/cgi-bin/env.sh", "a.test").as_bytes());
        let env = parse_env(&c.response().text());
        assert_eq!(env.get("HTTPS").map(String::as_str), Some("on"));
        let r = get_host(site.s.port2, "a.test", "/cgi-bin/env.sh");
        assert_eq!(parse_env(&r.text()).get("HTTPS"), None);
    });
}

#[test]
fn sni_picks_the_virtual_hosts_certificate() {
    for_each_backend("sni_picks_the_virtual_hosts_certificate", |b| {
        let site = start(b, CONF);
        let cfg = client_config(&[site.a.clone(), site.b.clone()], false);
        let mut c = Tls::open(site.s.port, &cfg, "b.test");
        assert!(c.peer_cert() == site.b, "b.test got another certificate");
        c.send(get_req("/", "b.test").as_bytes());
        assert_eq!(c.response().body, b"site b\n");
        let c = Tls::open(site.s.port, &cfg, "a.test");
        assert!(c.peer_cert() == site.a, "a.test got another certificate");
        // An unknown name gets the default server's certificate (a.test's), which the
        // client then refuses for that name: the handshake fails, the server lives on.
        let e = Tls::try_open(site.s.port, &cfg, "other.test").err();
        let e = e.expect("a certificate for a.test accepted for other.test");
        assert!(e.to_string().contains("certificate"), "{e}");
        let c = Tls::open(site.s.port, &cfg, "a.test");
        assert!(c.peer_cert() == site.a);
    });
}

/// A client that checks nothing but records the certificate it was shown (to see what the
/// server picks without SNI or for an unknown name).
mod shown {
    use super::*;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::UnixTime;
    use rustls::DigitallySignedStruct;

    #[derive(Debug)]
    pub struct AnyCert(pub std::sync::Mutex<Option<CertificateDer<'static>>>);

    impl ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            end: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            *self.0.lock().unwrap() = Some(end.clone().into_owned());
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }

    /// The certificate the server shows for `sni` (an IP address: no SNI is sent).
    pub fn cert_for(port: u16, sni: &str) -> CertificateDer<'static> {
        let v = Arc::new(AnyCert(Default::default()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(v.clone())
            .with_no_client_auth();
        let _c = Tls::open(port, &Arc::new(cfg), sni);
        let got = v.0.lock().unwrap().clone();
        got.expect("no certificate seen")
    }
}

#[test]
fn unknown_or_absent_sni_gets_the_default_servers_certificate() {
    for_each_backend(
        "unknown_or_absent_sni_gets_the_default_servers_certificate",
        |b| {
            let site = start(b, CONF);
            assert!(shown::cert_for(site.s.port, "other.test") == site.a);
            // rustls sends no SNI for an IP address.
            assert!(shown::cert_for(site.s.port, "127.0.0.1") == site.a);
            assert!(shown::cert_for(site.s.port, "b.test") == site.b);
        },
    );
}

#[test]
fn plain_http_on_the_tls_port_gets_nginxs_400() {
    for_each_backend("plain_http_on_the_tls_port_gets_nginxs_400", |b| {
        let site = start(b, CONF);
        let (bytes, _) = exchange(
            site.s.port,
            b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
            Duration::from_secs(3),
        );
        let rs = parse_responses(&bytes);
        assert_eq!(rs.len(), 1, "{}", String::from_utf8_lossy(&bytes));
        assert_eq!(rs[0].status, 400);
        let body = rs[0].text();
        assert!(
            body.contains("The plain HTTP request was sent to HTTPS port"),
            "{body}"
        );
        assert_eq!(rs[0].header("Connection"), Some("close"));
    });
}

#[test]
fn garbage_and_bad_handshakes_close_only_their_connection() {
    for_each_backend(
        "garbage_and_bad_handshakes_close_only_their_connection",
        |b| {
            let site = start(b, CONF);
            let cfg = client_config(std::slice::from_ref(&site.a), false);
            // A client mid-connection, before and after the garbage.
            let mut good = Tls::open(site.s.port, &cfg, "a.test");
            good.send(get_req("/", "a.test").as_bytes());
            assert_eq!(good.response().status, 200);
            let junk: [&[u8]; 3] = [
                b"\x00\x01\x02garbage that is no record\r\n\r\n",
                // A handshake record header announcing a record rustls refuses.
                b"\x16\x03\x01\xff\xff\x01\x02\x03",
                // A record of the wrong type first.
                b"\x17\x03\x03\x00\x05hello",
            ];
            for (i, j) in junk.into_iter().enumerate() {
                let (bytes, closed) = exchange(site.s.port, j, Duration::from_secs(3));
                assert!(closed, "not closed after {j:?}");
                if i == 1 {
                    // A record that rustls refuses gets a fatal alert back.
                    assert_eq!(bytes.first(), Some(&0x15), "no alert for {j:?}: {bytes:?}");
                }
                assert!(
                    !bytes.starts_with(b"HTTP/"),
                    "an HTTP answer to TLS garbage: {}",
                    String::from_utf8_lossy(&bytes)
                );
            }
            good.send(get_req("/big.bin", "a.test").as_bytes());
            let r = good.response();
            assert!(r.status == 200 && r.body == big());
            let mut again = Tls::open(site.s.port, &cfg, "a.test");
            again.send(get_req("/", "a.test").as_bytes());
            assert_eq!(again.response().status, 200);
        },
    );
}

#[test]
fn a_stalled_handshake_is_cut_by_the_header_timeout() {
    for_each_backend("a_stalled_handshake_is_cut_by_the_header_timeout", |b| {
        let site = start(b, CONF);
        // A ClientHello record header, then one byte every 200 ms: every byte is progress,
        // but the handshake never completes. client_header_timeout is 1 s.
        let mut s = TcpStream::connect(("127.0.0.1", site.s.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        // Record: handshake, 512 bytes; message: ClientHello, 508 bytes; version TLS 1.2.
        s.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
            .unwrap();
        let t0 = Instant::now();
        let mut closed = None;
        let mut one = [0u8; 1];
        while t0.elapsed() < Duration::from_secs(8) {
            if let Err(e) = s.write_all(b"\x00") {
                closed = Some(format!("write: {e}"));
                break;
            }
            match s.read(&mut one) {
                Ok(0) => {
                    closed = Some("EOF".into());
                    break;
                }
                Ok(_) => panic!("the server answered a half handshake"),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    closed = Some(format!("read: {e}"));
                    break;
                }
            }
        }
        let closed = closed.map(|how| format!("{how} after {:?}", t0.elapsed()));
        assert!(
            closed.is_some(),
            "a dripping handshake was still open after 8 s; log:\n{}",
            site.s.log()
        );
        // The log line is written before the close; give the log a moment to reach the file.
        let t1 = Instant::now();
        while !site.s.log().contains("no TLS handshake within")
            && t1.elapsed() < Duration::from_secs(3)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            site.s.log().contains("no TLS handshake within"),
            "{closed:?}: {}",
            site.s.log()
        );
    });
}

#[test]
fn sessions_resume() {
    for_each_backend("sessions_resume", |b| {
        let site = start(b, CONF);
        for tls12 in [false, true] {
            let cfg = client_config(std::slice::from_ref(&site.a), tls12);
            let mut c = Tls::open(site.s.port, &cfg, "a.test");
            assert!(!c.resumed());
            // Reading a response also takes in the session tickets sent after the handshake.
            c.send(get_req("/", "a.test").as_bytes());
            assert_eq!(c.response().status, 200);
            let mut d = Tls::open(site.s.port, &cfg, "a.test");
            assert!(
                d.resumed(),
                "TLS 1.{} session not resumed",
                if tls12 { 2 } else { 3 }
            );
            d.send(get_req("/", "a.test").as_bytes());
            assert_eq!(d.response().body, b"site a\n");
        }
    });
}

#[test]
fn connection_close_ends_with_close_notify() {
    for_each_backend("connection_close_ends_with_close_notify", |b| {
        let conf = CONF.replace(
            "client_header_timeout 1s;",
            "client_header_timeout 1s;\nkeepalive_timeout 1s;",
        );
        let site = start(b, &conf);
        let cfg = client_config(std::slice::from_ref(&site.a), false);
        // The keep-alive timeout also ends with close_notify.
        let mut c = Tls::open(site.s.port, &cfg, "a.test");
        c.send(get_req("/", "a.test").as_bytes());
        assert_eq!(c.response().body, b"site a\n");
        let mut rest = [0u8; 64];
        let n = c.s.0.borrow_mut().read(&mut rest);
        assert!(matches!(n, Ok(0)), "after the keep-alive timeout: {n:?}");
        let mut c = Tls::open(site.s.port, &cfg, "a.test");
        c.send(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n");
        assert_eq!(c.response().body, b"site a\n");
        // rustls reports a TCP close without close_notify as UnexpectedEof; a clean end of
        // the TLS stream reads as 0.
        let mut rest = [0u8; 64];
        let n = c.s.0.borrow_mut().read(&mut rest);
        assert!(matches!(n, Ok(0)), "after the last response: {n:?}");
    });
}

#[test]
fn ipv6_tls_listener() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        println!("ipv6_tls_listener: NOT RUN: no ::1 on this machine");
        return;
    }
    for_each_backend("ipv6_tls_listener", |b| {
        let conf = CONF.replace(
            "    listen 127.0.0.1:{PORT2};\n",
            "    listen 127.0.0.1:{PORT2};\n    listen [::1]:{PORT2} ssl;\n",
        );
        let site = start(b, &conf);
        let cfg = client_config(std::slice::from_ref(&site.a), false);
        let tcp = TcpStream::connect(("::1", site.s.port2)).unwrap();
        tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let name = ServerName::try_from("a.test").unwrap();
        let conn = ClientConnection::new(cfg, name).unwrap();
        let mut st = StreamOwned::new(conn, tcp);
        st.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        let _ = st.read_to_end(&mut got);
        let rs = parse_responses(&got);
        assert!(rs.len() == 1 && rs[0].body == b"site a\n", "{got:?}");
    });
}

/// `webserv -t -p DIR -c DIR/t.conf`: (success, stderr).
fn check(dir: &Path, conf: &str) -> (bool, String) {
    let path = dir.join("t.conf");
    std::fs::write(&path, conf).unwrap();
    let out = std::process::Command::new(binary())
        .args(["-t", "-p"])
        .arg(dir)
        .arg("-c")
        .arg(&path)
        .output()
        .expect("run webserv -t");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn test_mode_loads_and_matches_certificates_and_keys() {
    let dir = temp_dir();
    make_cert(&dir, "a", &["a.test"]);
    make_cert(&dir, "b", &["b.test"]);
    std::fs::create_dir_all(dir.join("www")).unwrap();
    let conf = |directives: &str| {
        format!("server {{\n    listen 127.0.0.1:8443 ssl;\n{directives}    root www;\n}}\n")
    };
    let good = conf("    ssl_certificate a.crt;\n    ssl_certificate_key a.key;\n");
    let (ok, text) = check(&dir, &good);
    assert!(ok, "{text}");
    let at =
        |line: u32, col: u32| format!("{}:{line}:{col}: error: ", dir.join("t.conf").display());
    let cases = [
        (
            conf("    ssl_certificate_key a.key;\n"),
            at(2, 12),
            "no \"ssl_certificate\" is defined for the \"listen ... ssl\" directive",
        ),
        (
            conf("    ssl_certificate a.crt;\n    ssl_certificate_key b.key;\n"),
            at(4, 25),
            "the key does not match certificate",
        ),
        (
            conf("    ssl_certificate none.crt;\n    ssl_certificate_key a.key;\n"),
            at(3, 21),
            "cannot load certificate",
        ),
        (
            conf("    ssl_certificate a.key;\n    ssl_certificate_key a.key;\n"),
            at(3, 21),
            "cannot load certificate",
        ),
        (
            conf("    ssl_certificate a.crt;\n    ssl_certificate_key a.crt;\n"),
            at(4, 25),
            "cannot load certificate key",
        ),
        (
            conf("    ssl_certificate a.crt;\n    ssl_certificate_key a.key;\n    ssl_protocols TLSv1;\n"),
            at(5, 19),
            "\"TLSv1\" is not supported",
        ),
    ];
    for (text_in, pos, msg) in cases {
        let (ok, text) = check(&dir, &text_in);
        assert!(!ok, "accepted:\n{text_in}");
        assert!(
            text.lines().any(|l| l.starts_with(&pos) && l.contains(msg)),
            "want {pos}{msg}\n got: {text}\nfor:\n{text_in}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn plain_listener_redirects_and_curl_trusts_the_ca_file() {
    for_each_backend(
        "plain_listener_redirects_and_curl_trusts_the_ca_file",
        |b| {
            let conf = format!(
                "{CONF}server {{\n    listen 127.0.0.1:{{PORT2}};\n    server_name c.test;\n    \
             return 301 https://$host:{{PORT}}$request_uri;\n}}\n"
            );
            let site = start(b, &conf);
            let r = get_host(site.s.port2, "c.test", "/x?y=1");
            assert_eq!(r.status, 301, "{}", r.dump());
            assert_eq!(
                r.header("Location"),
                Some(format!("https://c.test:{}/x?y=1", site.s.port).as_str())
            );
            let curl = std::process::Command::new("curl")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success());
            if !curl {
                println!("curl check: NOT RUN (no curl on this machine)");
                return;
            }
            let port = site.s.port;
            let out = std::process::Command::new("curl")
                .args(["-sS", "--max-time", "5", "--cacert"])
                .arg(site.s.dir.join("b.crt"))
                .args(["--resolve", &format!("b.test:{port}:127.0.0.1")])
                .arg(format!("https://b.test:{port}/"))
                .output()
                .expect("run curl");
            assert!(
                out.status.success(),
                "curl: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(out.stdout, b"site b\n");
            // Trusting only a.test's certificate, curl refuses b.test's.
            let out = std::process::Command::new("curl")
                .args(["-sS", "--max-time", "5", "--cacert"])
                .arg(site.s.dir.join("a.crt"))
                .args(["--resolve", &format!("b.test:{port}:127.0.0.1")])
                .arg(format!("https://b.test:{port}/"))
                .output()
                .expect("run curl");
            assert!(
                !out.status.success(),
                "curl accepted an untrusted certificate"
            );
        },
    );
}

#[test]
fn proxy_protocol_then_tls() {
    for_each_backend("proxy_protocol_then_tls", |b| {
        let conf = CONF.replace(
            "    listen 127.0.0.1:{PORT2};\n",
            "    listen 127.0.0.1:{PORT2} proxy_protocol ssl;\n",
        ).replace("client_header_timeout 1s;", "client_header_timeout 1s;\nset_real_ip_from 127.0.0.1;\nreal_ip_header proxy_protocol;");
        let site = start(b, &conf);
        let cfg = client_config(std::slice::from_ref(&site.a), false);
        let mut tcp = TcpStream::connect(("127.0.0.1", site.s.port2)).unwrap();
        // The PROXY header right before the ClientHello (one receive or two for the server).
        tcp.write_all(b"PROXY TCP4 192.0.2.9 192.0.2.1 4444 443\r\n")
            .unwrap();
        let mut c = Tls::over(tcp, &cfg, "a.test").expect("TLS after a PROXY header");
        c.send(get_req("/cgi-bin/env.sh", "a.test").as_bytes());
        let env = parse_env(&c.response().text());
        assert_eq!(
            env.get("REMOTE_ADDR").map(String::as_str),
            Some("192.0.2.9")
        );
        assert_eq!(env.get("HTTPS").map(String::as_str), Some("on"));
    });
}
