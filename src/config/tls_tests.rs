//! `listen ... ssl` and the `ssl_*` directives (issue 14): inheritance from `http`, which
//! addresses get a TLS configuration, and values (SNI itself: tests/e2e_tls.rs).

use std::path::{Path, PathBuf};

use super::*;

/// A prefix holding self-signed `a.crt`/`a.key` (a.test) and `b.crt`/`b.key` (*.b.test).
fn prefix() -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("webserv-tls-unit-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (stem, name) in [("a", "a.test"), ("b", "*.b.test")] {
        let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        std::fs::write(dir.join(format!("{stem}.crt")), ck.cert.pem()).unwrap();
        std::fs::write(
            dir.join(format!("{stem}.key")),
            ck.signing_key.serialize_pem(),
        )
        .unwrap();
    }
    dir
}

fn parse(text: &str, dir: &Path) -> Result<Config, String> {
    parse_str(text, "t.conf", dir).map_err(|e| e.to_string())
}

#[test]
fn http_level_certificate_is_inherited_and_ssl_applies_to_the_address() {
    let dir = prefix();
    let c = parse(
        "ssl_certificate a.crt; ssl_certificate_key a.key; ssl_protocols TLSv1.3;\n\
         server { listen 127.0.0.1:443 ssl; listen 127.0.0.1:80; server_name a.test; }\n\
         server { listen 127.0.0.1:443; server_name .b.test;\n\
                  ssl_certificate b.crt; ssl_certificate_key b.key; }\n",
        &dir,
    )
    .unwrap();
    // One `ssl` listen makes the address TLS for every server on it.
    let tls = c.tls("127.0.0.1:443".parse().unwrap()).expect("TLS on 443");
    assert!(c.tls("127.0.0.1:80".parse().unwrap()).is_none());
    assert_eq!(tls.alpn_protocols, [b"http/1.1".to_vec()]);
    let table = c.addrs.iter().find(|a| a.addr.port() == 443).unwrap();
    assert!(table.ssl);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn values_and_their_errors() {
    let dir = prefix();
    let ok =
        "server { listen 127.0.0.1:443 ssl; ssl_certificate a.crt; ssl_certificate_key a.key;\n";
    for extra in [
        "ssl_protocols TLSv1.2;",
        "ssl_protocols TLSv1.2 TLSv1.3;",
        "ssl_session_tickets off;",
        "ssl_session_timeout 1h;",
    ] {
        parse(&format!("{ok}{extra} }}"), &dir).unwrap_or_else(|e| panic!("{extra}: {e}"));
    }
    for (extra, want) in [
        (
            "ssl_protocols TLSv1.4;",
            "t.conf:2:15: error: invalid value \"TLSv1.4\"",
        ),
        (
            "ssl_session_tickets maybe;",
            "error: invalid value \"maybe\"",
        ),
        ("ssl_session_timeout soon;", "error: invalid value \"soon\""),
        (
            "ssl_session_tickets on; ssl_session_tickets off;",
            "directive is duplicate",
        ),
        (
            "location / { ssl_protocols TLSv1.2; }",
            "\"ssl_protocols\" directive is not allowed here",
        ),
    ] {
        let e = parse(&format!("{ok}{extra} }}"), &dir).err();
        let e = e.unwrap_or_else(|| panic!("{extra} accepted"));
        assert!(e.contains(want), "{extra}: {e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
