//! Issue 13, item 1: every refusal with its message, line and column in the GNU format; `-t`
//! lists every finding, and a duplicate server name is a warning.

use std::path::Path;

use super::*;

const PREFIX: &str = "/srv";

fn all(text: &str) -> Result<Loaded, Diagnostics> {
    parse_str_all(text, "t.conf", Path::new(PREFIX))
}

/// Each config and the exact diagnostics it gets, one per line.
#[test]
fn each_refusal_with_line_and_column() {
    let long = "a".repeat(4097);
    let just = "a".repeat(4096);
    let cases: Vec<(String, String)> = vec![
        // Nothing to serve.
        ("".into(), "t.conf:1:1: error: no \"server\" block: the configuration serves nothing".into()),
        ("# comments only\n".into(), "t.conf:1:1: error: no \"server\" block: the configuration serves nothing".into()),
        ("\n  http {\n  }\n".into(), "t.conf:2:3: error: no \"server\" block: the configuration serves nothing".into()),
        // A size or a time that overflows (nginx's bounds: off_t, and 2^63 - 1 ms).
        (
            "server {\n    client_max_body_size 9999999999999m;\n}".into(),
            "t.conf:2:26: error: invalid value \"9999999999999m\" in \"client_max_body_size\" directive, the size overflows (more than 2^63 - 1 bytes)".into(),
        ),
        (
            "keepalive_timeout 99999999999999999999s;\nserver { }".into(),
            "t.conf:1:19: error: invalid value \"99999999999999999999s\" in \"keepalive_timeout\" directive, the time overflows (more than 2^63 - 1 ms)".into(),
        ),
        (
            "server { location / { cgi_timeout 106751991167301d; } }".into(),
            "t.conf:1:35: error: invalid value \"106751991167301d\" in \"cgi_timeout\" directive, the time overflows (more than 2^63 - 1 ms)".into(),
        ),
        // A token longer than 4 KiB (4096 bytes is fine).
        (format!("server {{ root {just}; }}"), String::new()),
        (
            format!("server {{\n  root {long};\n}}"),
            "t.conf:2:8: error: too long token (4097 bytes, at most 4096)".into(),
        ),
        // Blocks nested deeper than 16.
        (
            format!("server {{\n{}{}}}", "location / {\n".repeat(16), "}".repeat(16)),
            "t.conf:17:12: error: blocks nested more than 16 levels deep".into(),
        ),
        // A NUL byte.
        (
            "server {\n  root /x\0y;\n}".into(),
            "t.conf:2:10: error: NUL byte in the configuration (a binary or corrupt file?)".into(),
        ),
        // Two default servers on one address.
        (
            "server { listen 80 default_server; server_name a; }\nserver {\n  listen 80 default_server;\n  server_name b;\n}".into(),
            "t.conf:3:13: error: a duplicate default server for 0.0.0.0:80".into(),
        ),
        // allow_methods with no method, or an unknown one.
        (
            "server {\n  location / {\n    allow_methods;\n  }\n}".into(),
            "t.conf:3:5: error: \"allow_methods\" directive names no method, it needs at least one of GET, HEAD, POST, PUT or DELETE".into(),
        ),
        (
            "server { location / { allow_methods GET patch; } }".into(),
            "t.conf:1:41: error: invalid value \"patch\" in \"allow_methods\" directive, it must be GET, HEAD, POST, PUT or DELETE".into(),
        ),
        // A duplicate server_name on one address: a warning, the first server keeps it.
        (
            "server { listen 80; server_name a; }\nserver { listen 80; server_name b A; }".into(),
            "t.conf:2:35: warning: conflicting server name \"a\" on 0.0.0.0:80, ignored".into(),
        ),
        (
            "server { listen 80; }\nserver { listen 80; }".into(),
            "t.conf:2:1: warning: conflicting server name \"\" on 0.0.0.0:80, ignored".into(),
        ),
        // The new directives' own checks.
        (
            "large_client_header_buffers 0 8k;\nserver { }".into(),
            "t.conf:1:29: error: invalid value \"0\" in \"large_client_header_buffers\" directive, it must be a number from 1 to 1024".into(),
        ),
        (
            "large_client_header_buffers 4 0;\nserver { }".into(),
            "t.conf:1:31: error: invalid value \"0\" in \"large_client_header_buffers\" directive, it must be between 1 and 65535 bytes".into(),
        ),
        (
            "http {\n  large_client_header_buffers 8 8k;\n  server { }\n}".into(),
            "t.conf:2:3: error: the request line (8192 bytes) and the header section (8 x 8192 bytes) may take at most 65535 bytes together".into(),
        ),
        (
            "client_header_buffer_size 1x;\nserver { }".into(),
            "t.conf:1:27: error: invalid value \"1x\" in \"client_header_buffer_size\" directive".into(),
        ),
        (
            "server_tokens yes;\nserver { }".into(),
            "t.conf:1:15: error: invalid value \"yes\" in \"server_tokens\" directive, it must be \"on\" or \"off\"".into(),
        ),
        (
            "server { server_tokens on; }".into(),
            "t.conf:1:10: error: \"server_tokens\" directive is not allowed here".into(),
        ),
    ];
    for (text, want) in cases {
        let got = match all(&text) {
            Ok((_, warnings)) => warnings.to_string(),
            Err(d) => d.to_string(),
        };
        let want = if want.is_empty() { want } else { want + "\n" };
        assert_eq!(got, want, "input {:?}", &text[..text.len().min(80)]);
    }
}

/// One load reports every error it can find, in file order, not only the first.
#[test]
fn every_error_is_reported() {
    let text = "foo;\n\
                server {\n\
                \x20   listen 99999;\n\
                \x20   bar on;\n\
                \x20   location / { allow_methods; autoindex maybe; }\n\
                \x20   root /a; root /b;\n\
                }\n\
                keepalive_timeout 5y;\n";
    let d = all(text).unwrap_err();
    let got: Vec<String> = d.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        got,
        [
            "t.conf:1:1: error: unknown directive \"foo\"",
            "t.conf:3:12: error: invalid port in \"99999\"",
            "t.conf:4:5: error: unknown directive \"bar\"",
            "t.conf:5:18: error: \"allow_methods\" directive names no method, it needs at least one of GET, HEAD, POST, PUT or DELETE",
            "t.conf:5:43: error: invalid value \"maybe\" in \"autoindex\" directive, it must be \"on\" or \"off\"",
            "t.conf:6:14: error: \"root\" directive is duplicate",
            "t.conf:8:19: error: invalid value \"5y\" in \"keepalive_timeout\" directive",
        ]
    );
    // The first-error API still answers with the first one.
    let e = parse_str(text, "t.conf", Path::new(PREFIX)).unwrap_err();
    assert_eq!((e.line, e.col), (1, 1));
}

/// Warnings do not refuse a configuration; errors and warnings are reported together.
#[test]
fn warnings_keep_the_config() {
    let text = "server { listen 80; server_name a; root /one; }\n\
                server { listen 80; server_name a; root /two; }\n";
    let (c, w) = all(text).unwrap();
    assert_eq!(w.iter().filter(|d| !d.is_error()).count(), 1);
    assert!(!w.has_errors());
    // nginx ignores the second: the name still reaches the first server.
    let srv = c.select_server("0.0.0.0:80".parse().unwrap(), Some("a"));
    assert_eq!(srv.root, std::path::PathBuf::from("/one"));

    let d = all(&format!("{text}nope;\n")).unwrap_err();
    let got: Vec<String> = d.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        got,
        [
            "t.conf:3:1: error: unknown directive \"nope\"",
            "t.conf:2:33: warning: conflicting server name \"a\" on 0.0.0.0:80, ignored",
        ]
    );
}

/// Files: an unreadable or non-UTF-8 file and an include's errors are placed in their file.
#[test]
fn file_errors() {
    let dir = std::env::temp_dir().join(format!("webserv-diag-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let main = dir.join("main.conf");
    std::fs::write(&main, "server {\n  include inner.conf;\n  bogus;\n}\n").unwrap();
    std::fs::write(dir.join("inner.conf"), "root /x;\nroot\n").unwrap();
    let d = load_all(&main, Path::new("/p")).unwrap_err();
    let m = main.to_string_lossy();
    let i = dir.join("inner.conf");
    let i = i.to_string_lossy();
    let got: Vec<String> = d.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        got,
        [
            format!("{i}:3:1: error: unexpected end of file, expecting \";\" or \"}}\""),
            format!("{m}:3:3: error: unknown directive \"bogus\""),
        ]
    );
    let bin = dir.join("bin.conf");
    std::fs::write(&bin, b"server {\n  root /\xff;\n}\n").unwrap();
    let d = load_all(&bin, Path::new("/p")).unwrap_err();
    assert_eq!(
        d.to_string(),
        format!(
            "{}:2:9: error: invalid UTF-8 byte in the configuration\n",
            bin.to_string_lossy()
        )
    );
    let _ = std::fs::remove_dir_all(&dir);
}
