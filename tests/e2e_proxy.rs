//! Issue 15: the PROXY protocol on `listen ... proxy_protocol`, and realip. Every test runs a
//! real server on every backend; what it checks is what a CGI and the access log see.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

const HEAD: &str = "error_log stderr info;
access_log {DIR}/access.log;
types { text/plain txt; }
";

const ENV_SH: &str = "printf 'Content-Type: text/plain\\r\\n\\r\\n'\nenv\n";

fn setup(dir: &Path) {
    write_file(dir, "www/cgi-bin/env.sh", ENV_SH);
    write_file(dir, "www/a.txt", "a\n");
}

fn conf(http_extra: &str) -> String {
    format!(
        "{HEAD}{http_extra}
server {{
    listen 127.0.0.1:{{PORT}} proxy_protocol;
    root {{DIR}}/www;
    location /cgi-bin/ {{ cgi .sh /bin/sh; }}
}}
server {{
    listen 127.0.0.1:{{PORT2}};
    root {{DIR}}/www;
    location /cgi-bin/ {{ cgi .sh /bin/sh; }}
}}
"
    )
}

const GET_ENV: &[u8] = b"GET /cgi-bin/env.sh HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

fn v2(cmd: u8, fam: u8, block: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x20 | cmd);
    h.push(fam);
    h.extend_from_slice(&(block.len() as u16).to_be_bytes());
    h.extend_from_slice(block);
    h
}

fn v2_tcp4(src: [u8; 4], sport: u16, tlvs: &[u8]) -> Vec<u8> {
    let mut b = src.to_vec();
    b.extend_from_slice(&[127, 0, 0, 1]);
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&80u16.to_be_bytes());
    b.extend_from_slice(tlvs);
    v2(1, 0x11, &b)
}

fn v2_tcp6(src: std::net::Ipv6Addr, sport: u16) -> Vec<u8> {
    let mut b = src.octets().to_vec();
    b.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&80u16.to_be_bytes());
    v2(1, 0x21, &b)
}

/// Sends `prefix` + a CGI request, in pieces of `piece` bytes, and returns the CGI's
/// REMOTE_ADDR and REMOTE_PORT.
fn remote_of(port: u16, prefix: &[u8], piece: usize, extra_headers: &str) -> (String, String) {
    let mut bytes = prefix.to_vec();
    let req = format!(
        "GET /cgi-bin/env.sh HTTP/1.1\r\nHost: x\r\n{extra_headers}Connection: close\r\n\r\n"
    );
    bytes.extend_from_slice(req.as_bytes());
    let mut c = common::Conn::open(port);
    for p in bytes.chunks(piece) {
        c.send(p);
        if piece < bytes.len() {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.dump());
    let env = parse_env(&r.text());
    (
        env.get("REMOTE_ADDR").cloned().unwrap_or_default(),
        env.get("REMOTE_PORT").cloned().unwrap_or_default(),
    )
}

/// The access log's lines (waiting a little for the last to be written).
fn access_lines(dir: &Path, at_least: usize) -> Vec<String> {
    for _ in 0..100 {
        let text = std::fs::read_to_string(dir.join("access.log")).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= at_least {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("access log has fewer than {at_least} lines");
}

#[test]
fn proxy_v1_and_v2_set_the_client_address() {
    for_each_backend("proxy_v1_and_v2_set_the_client_address", |b| {
        let s = Server::start(b, &conf(""), setup);
        let cases: Vec<(Vec<u8>, &str, &str)> = vec![
            (
                b"PROXY TCP4 192.0.2.1 127.0.0.1 56324 80\r\n".to_vec(),
                "192.0.2.1",
                "56324",
            ),
            (
                b"PROXY TCP6 2001:db8::1 ::1 4242 80\r\n".to_vec(),
                "2001:db8::1",
                "4242",
            ),
            (
                // With TLVs (PP2_TYPE_AUTHORITY, PP2_TYPE_NOOP): skipped.
                v2_tcp4(
                    [198, 51, 100, 7],
                    61000,
                    &[0x02, 0, 5, b'a', b'.', b'c', b'o', b'm', 0x04, 0, 2, 0, 0],
                ),
                "198.51.100.7",
                "61000",
            ),
            (
                v2_tcp6("2001:db8:0:1::9".parse().unwrap(), 1),
                "2001:db8:0:1::9",
                "1",
            ),
            // UNKNOWN and LOCAL: the connection's own address stands.
            (b"PROXY UNKNOWN\r\n".to_vec(), "127.0.0.1", ""),
            (v2(0, 0x00, &[]), "127.0.0.1", ""),
        ];
        for (i, (prefix, addr, port)) in cases.iter().enumerate() {
            // Whole, and one byte at a time (the header split over many receives).
            for piece in [usize::MAX, 1] {
                let piece = piece.min(prefix.len() + 200);
                let (a, p) = remote_of(s.port, prefix, piece, "");
                assert_eq!(&a, addr, "case {i}, pieces of {piece} ({b})");
                if !port.is_empty() {
                    assert_eq!(&p, port, "case {i} ({b})");
                } else {
                    assert_ne!(p, "80", "case {i}: the balancer's port, not the header's");
                }
            }
        }
        let lines = access_lines(&s.dir, cases.len() * 2);
        let firsts: Vec<&str> = lines
            .iter()
            .map(|l| l.split(' ').next().unwrap_or(""))
            .collect();
        let want: Vec<&str> = cases.iter().flat_map(|c| [c.1, c.1]).collect();
        assert_eq!(firsts, want, "access log:\n{}", lines.join("\n"));
    });
}

#[test]
fn proxy_header_then_keepalive_requests_keep_the_address() {
    for_each_backend("proxy_header_then_keepalive_requests", |b| {
        let s = Server::start(b, &conf(""), setup);
        let mut c = common::Conn::open(s.port);
        c.send(b"PROXY TCP4 203.0.113.44 127.0.0.1 5000 80\r\n");
        for _ in 0..3 {
            c.send(b"GET /cgi-bin/env.sh HTTP/1.1\r\nHost: x\r\n\r\n");
            let r = c.read_response();
            assert_eq!(r.status, 200, "{}", r.dump());
            assert_eq!(parse_env(&r.text())["REMOTE_ADDR"], "203.0.113.44");
        }
        // A second PROXY line on the same connection is just a bad request line.
        c.send(b"PROXY TCP4 198.51.100.1 127.0.0.1 5000 80\r\n\r\n");
        let r = c.read_response();
        assert_eq!(r.status, 400, "{}", r.dump());
        // The plain listener does not expect a header.
        let r = request(s.port2, GET_ENV);
        assert_eq!(parse_env(&r.text())["REMOTE_ADDR"], "127.0.0.1");
    });
}

#[test]
fn bad_proxy_headers_close_without_a_response() {
    for_each_backend("bad_proxy_headers_close_without_a_response", |b| {
        let s = Server::start(b, &conf(""), setup);
        let mut oversized_v1 = b"PROXY UNKNOWN ".to_vec();
        oversized_v1.resize(300, b'x');
        let mut oversized_v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff".to_vec();
        oversized_v2.resize(2000, 0);
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("missing", GET_ENV.to_vec(), "no PROXY protocol header"),
            (
                "malformed v1",
                b"PROXY TCP4 192.0.2.1 nope 1 2\r\nGET / HTTP/1.1\r\n\r\n".to_vec(),
                "malformed PROXY v1 header",
            ),
            (
                "v6 address in TCP4",
                b"PROXY TCP4 ::1 127.0.0.1 1 2\r\n".to_vec(),
                "malformed PROXY v1 header",
            ),
            (
                "oversized v1",
                oversized_v1,
                "PROXY v1 header longer than 107 bytes",
            ),
            ("oversized v2", oversized_v2, "PROXY v2 header too long"),
            (
                "v2 version 1",
                {
                    let mut h = v2_tcp4([192, 0, 2, 1], 1, &[]);
                    h[12] = 0x11;
                    h
                },
                "malformed PROXY v2 header",
            ),
            (
                "v2 truncated address block",
                v2(1, 0x21, &[0; 12]),
                "malformed PROXY v2 header",
            ),
        ];
        for (name, bytes, why) in &cases {
            let (got, closed) = exchange(s.port, bytes, IO_TIMEOUT);
            assert!(closed, "{name}: the server did not close ({b})");
            assert!(
                got.is_empty(),
                "{name}: the server answered: {:?}",
                String::from_utf8_lossy(&got)
            );
            let log = s.log();
            assert!(log.contains(why), "{name}: no log line {why:?}:\n{log}");
        }
        // An incomplete header followed by the client's close: closed, nothing sent.
        let mut c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        std::io::Write::write_all(&mut c, b"PROXY TCP4 192.0.").unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let (got, closed) = read_until_close(&mut c, IO_TIMEOUT);
        assert!(closed && got.is_empty(), "({b})");
        // Each failure is logged once, with the connection's identity (`c<slot>.<gen>`).
        let log = s.log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("closing without a response"))
            .collect();
        assert_eq!(lines.len(), cases.len(), "{log}");
        assert!(
            lines
                .iter()
                .all(|l| l.contains(": c") && l.contains("conn#")),
            "{log}"
        );
        // The server still serves.
        let (a, _) = remote_of(s.port, b"PROXY TCP4 192.0.2.8 127.0.0.1 1 2\r\n", 4096, "");
        assert_eq!(a, "192.0.2.8");
        assert!(
            access_lines(&s.dir, 1).len() == 1,
            "no request reached HTTP before"
        );
    });
}

#[test]
fn realip_forwarded_for_only_from_trusted_peers() {
    for_each_backend("realip_forwarded_for_only_from_trusted_peers", |b| {
        let xff = "X-Forwarded-For: 203.0.113.5, 10.1.1.1\r\n";
        // Not recursive: the last address of the list.
        let s = Server::start(
            b,
            &conf("set_real_ip_from 127.0.0.1;\nreal_ip_header X-Forwarded-For;\n"),
            setup,
        );
        assert_eq!(remote_of(s.port2, b"", 4096, xff).0, "10.1.1.1");
        // HAProxy's `option forwardfor` adds its own line: the lines are one list.
        let two = "X-Forwarded-For: 198.51.100.66\r\nX-Forwarded-For: 10.2.2.2\r\n";
        assert_eq!(remote_of(s.port2, b"", 4096, two).0, "10.2.2.2");
        assert_eq!(remote_of(s.port2, b"", 4096, "").0, "127.0.0.1");
        assert_eq!(
            remote_of(s.port2, b"", 4096, "X-Forwarded-For: junk\r\n").0,
            "127.0.0.1"
        );
        let lines = access_lines(&s.dir, 4);
        assert!(lines[0].starts_with("10.1.1.1 "), "{}", lines[0]);
        drop(s);
        // Recursive: past every trusted hop.
        let s = Server::start(
            b,
            &conf(
                "set_real_ip_from 127.0.0.1;\nset_real_ip_from 10.0.0.0/8;\n\
                 real_ip_header X-Forwarded-For;\nreal_ip_recursive on;\n",
            ),
            setup,
        );
        assert_eq!(remote_of(s.port2, b"", 4096, xff).0, "203.0.113.5");
        drop(s);
        // The peer (127.0.0.1) is not trusted: its header is ignored.
        let s = Server::start(
            b,
            &conf("set_real_ip_from 10.0.0.0/8;\nreal_ip_header X-Forwarded-For;\n"),
            setup,
        );
        assert_eq!(remote_of(s.port2, b"", 4096, xff).0, "127.0.0.1");
        drop(s);
        // X-Real-IP (the default header).
        let s = Server::start(b, &conf("set_real_ip_from 127.0.0.0/8;\n"), setup);
        let (a, p) = remote_of(s.port2, b"", 4096, "X-Real-IP: 2001:db8::5\r\n");
        assert_eq!((a.as_str(), p.as_str()), ("2001:db8::5", "0"));
        let lines = access_lines(&s.dir, 1);
        assert!(lines[0].starts_with("2001:db8::5 "), "{}", lines[0]);
    });
}

#[test]
fn realip_proxy_protocol_needs_a_trusted_balancer() {
    for_each_backend("realip_proxy_protocol_needs_a_trusted_balancer", |b| {
        let hdr = b"PROXY TCP4 192.0.2.77 127.0.0.1 7777 80\r\n";
        let s = Server::start(
            b,
            &conf("set_real_ip_from 127.0.0.1;\nreal_ip_header proxy_protocol;\n"),
            setup,
        );
        assert_eq!(remote_of(s.port, hdr, 4096, "").0, "192.0.2.77");
        drop(s);
        let s = Server::start(
            b,
            &conf("set_real_ip_from 192.0.2.0/24;\nreal_ip_header proxy_protocol;\n"),
            setup,
        );
        assert_eq!(remote_of(s.port, hdr, 4096, "").0, "127.0.0.1");
        drop(s);
        // Behind PROXY, X-Forwarded-For is honoured when the PROXY source is trusted.
        let s = Server::start(
            b,
            &conf("set_real_ip_from 192.0.2.77;\nreal_ip_header X-Forwarded-For;\n"),
            setup,
        );
        let xff = "X-Forwarded-For: 203.0.113.9\r\n";
        assert_eq!(remote_of(s.port, hdr, 4096, xff).0, "203.0.113.9");
        let other = b"PROXY TCP4 192.0.2.78 127.0.0.1 7777 80\r\n";
        assert_eq!(remote_of(s.port, other, 4096, xff).0, "192.0.2.78");
    });
}

#[test]
fn a_silent_connection_on_a_proxy_listener_is_closed_at_the_header_timeout() {
    for_each_backend("a_silent_proxy_connection_times_out", |b| {
        let s = Server::start(b, &conf("client_header_timeout 1s;\n"), setup);
        let mut c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        // Half a header, then nothing.
        std::io::Write::write_all(&mut c, b"PROXY TCP4 ").unwrap();
        let (got, closed) = read_until_close(&mut c, IO_TIMEOUT);
        assert!(closed, "not closed ({b})");
        assert!(
            got.is_empty(),
            "answered: {:?}",
            String::from_utf8_lossy(&got)
        );
        let log = s.log();
        assert!(
            log.contains("no PROXY header within client_header_timeout; closing"),
            "{log}"
        );
    });
}
