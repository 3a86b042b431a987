//! `listen ... proxy_protocol` and the realip directives (issue 15).

use std::path::Path;

use super::*;

fn parse(text: &str) -> Result<Config, String> {
    parse_str(text, "t.conf", Path::new("/srv")).map_err(|e| e.to_string())
}

#[test]
fn listen_proxy_protocol() {
    let c = parse(
        "server { listen 127.0.0.1:81 proxy_protocol default_server; }\n\
         server { listen 82; listen 127.0.0.1:82 proxy_protocol; }",
    )
    .unwrap();
    let l = c.servers[0].listens[0];
    assert!(l.proxy_protocol && l.default_server);
    assert!(c.proxy_protocol("127.0.0.1:81".parse().unwrap()));
    // A specific address served by its port's wildcard socket keeps its own setting.
    assert!(c.proxy_protocol("127.0.0.1:82".parse().unwrap()));
    assert!(!c.proxy_protocol("127.0.0.2:82".parse().unwrap()));
    assert!(!c.proxy_protocol("127.0.0.1:83".parse().unwrap()));
    for (text, want) in [
        (
            "server { listen 81 proxy_protocol proxy_protocol; }",
            "t.conf:1:35: error: invalid parameter \"proxy_protocol\"",
        ),
        (
            "server { listen 81 proxy; }",
            "t.conf:1:20: error: invalid parameter \"proxy\"",
        ),
    ] {
        assert_eq!(parse(text).unwrap_err(), want);
    }
}

#[test]
fn realip_directives() {
    let c = parse(
        "set_real_ip_from 10.0.0.0/8;\nset_real_ip_from ::1;\n\
         real_ip_header X-Forwarded-For;\nreal_ip_recursive on;\nserver { listen 81; }",
    )
    .unwrap();
    assert_eq!(c.realip.from.len(), 2);
    assert!(c.realip.recursive);
    assert_eq!(c.realip.source, crate::proxy::realip::Source::XForwardedFor);
    let d = parse("server { listen 81; }").unwrap();
    assert!(!d.realip.enabled() && !d.realip.recursive);
    assert_eq!(d.realip.source, crate::proxy::realip::Source::XRealIp);
    for (text, want) in [
        (
            "set_real_ip_from 10.0.0.1/8;",
            "t.conf:1:18: error: low address bits of \"10.0.0.1/8\" are meaningless",
        ),
        (
            "set_real_ip_from example.com;",
            "t.conf:1:18: error: invalid address or network \"example.com\"",
        ),
        (
            "real_ip_header Forwarded;",
            "t.conf:1:16: error: invalid value \"Forwarded\" in \"real_ip_header\" directive, it must be \"X-Real-IP\", \"X-Forwarded-For\" or \"proxy_protocol\"",
        ),
        (
            "real_ip_recursive yes;",
            "t.conf:1:19: error: invalid value \"yes\" in \"real_ip_recursive\" directive, it must be \"on\" or \"off\"",
        ),
        (
            "server { set_real_ip_from 10.0.0.0/8; }",
            "t.conf:1:10: error: \"set_real_ip_from\" directive is not allowed here",
        ),
        (
            "real_ip_header X-Real-IP;\nreal_ip_header X-Real-IP;",
            "t.conf:2:1: error: \"real_ip_header\" directive is duplicate",
        ),
    ] {
        assert_eq!(parse(text).unwrap_err(), want, "{text}");
    }
}
