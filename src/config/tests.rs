//! Whole-loader tests: errors with positions, includes, inheritance, server and location
//! selection. Unit tables for the pieces live next to each piece.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const PREFIX: &str = "/srv";

fn parse(text: &str) -> Config {
    parse_str(text, "t.conf", Path::new(PREFIX)).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn errors_point_at_the_token() {
    let cases = [
        ("foo;", "t.conf:1:1: error: unknown directive \"foo\""),
        ("server { listen 80; }\nlisten 81;", "t.conf:2:1: error: \"listen\" directive is not allowed here"),
        ("http { backend epoll; }", "t.conf:1:8: error: \"backend\" directive is not allowed here"),
        ("server { alias /x; }", "t.conf:1:10: error: \"alias\" directive is not allowed here"),
        ("root;", "t.conf:1:1: error: invalid number of arguments in \"root\" directive"),
        ("root a b;", "t.conf:1:1: error: invalid number of arguments in \"root\" directive"),
        ("server { status; }", "t.conf:1:10: error: \"status\" directive is not allowed here"),
        ("server { location / { status x; } }", "t.conf:1:23: error: invalid number of arguments in \"status\" directive"),
        ("server;", "t.conf:1:1: error: directive \"server\" has no opening \"{\""),
        ("root /x { }", "t.conf:1:1: error: directive \"root\" is not terminated by \";\""),
        ("client_max_body_size 1x;", "t.conf:1:22: error: invalid value \"1x\" in \"client_max_body_size\" directive"),
        ("keepalive_timeout 5y;", "t.conf:1:19: error: invalid value \"5y\" in \"keepalive_timeout\" directive"),
        ("autoindex yes;", "t.conf:1:11: error: invalid value \"yes\" in \"autoindex\" directive, it must be \"on\" or \"off\""),
        ("server {\n  listen 99999;\n}", "t.conf:2:10: error: invalid port in \"99999\""),
        ("server { listen 80 http3; }", "t.conf:1:20: error: invalid parameter \"http3\""),
        ("server { location / { allow_methods GET PATCH; } }", "t.conf:1:41: error: invalid value \"PATCH\" in \"allow_methods\" directive, it must be GET, HEAD, POST, PUT or DELETE"),
        ("server { return 1000; }", "t.conf:1:17: error: invalid value \"1000\" in \"return\" directive"),
        ("server { return /x; }", "t.conf:1:17: error: invalid return code \"/x\""),
        ("error_page 200 /x;", "t.conf:1:12: error: invalid value \"200\" in \"error_page\" directive, it must be between 300 and 599"),
        ("error_page 404 =9 /x;", "t.conf:1:16: error: invalid value \"=9\" in \"error_page\" directive"),
        ("backend io;", "t.conf:1:9: error: invalid value \"io\" in \"backend\" directive, it must be \"auto\", \"uring\", \"epoll\" or \"kqueue\""),
        ("workers 0;", "t.conf:1:9: error: invalid value \"0\" in \"workers\" directive"),
        ("error_log x.log loud;", "t.conf:1:17: error: invalid value \"loud\" in \"error_log\" directive"),
        ("root /a;\nroot /b;", "t.conf:2:1: error: \"root\" directive is duplicate"),
        ("server { location / { root /a; alias /b; } }", "t.conf:1:32: error: \"alias\" directive is duplicate, \"root\" directive was specified earlier"),
        ("server { location ~ \"(\" { } }", "t.conf:1:21: error: invalid regex \"(\": "),
        ("server { location ! /x { } }", "t.conf:1:19: error: invalid location modifier \"!\""),
        ("server { location /a { location /b { } } }", "t.conf:1:33: error: location \"/b\" is outside location \"/a\""),
        ("server { location = /a { location /a/b { } } }", "t.conf:1:35: error: location \"/a/b\" cannot be inside the exact location \"/a\""),
        ("server { location /a { } location ^~ /a { } }", "t.conf:1:38: error: duplicate location \"/a\""),
        ("server { listen 80 default_server; server_name a; }\nserver { listen 80 default_server; server_name b; }", "t.conf:2:20: error: a duplicate default server for 0.0.0.0:80"),
        ("server { listen 80; listen *:80; }", "t.conf:1:28: error: duplicate listen 0.0.0.0:80"),
        ("server { server_name ~^x; }", "t.conf:1:22: error: regex server names are not supported: \"~^x\""),
        ("types { text/html; }", "t.conf:1:9: error: no extensions for type \"text/html\""),
        ("cgi py;", "t.conf:1:5: error: invalid value \"py\" in \"cgi\" directive, it must look like \".py\""),
        ("http { } http { }", "t.conf:1:10: error: \"http\" directive is duplicate"),
        ("server {\n  root /x\n}", "t.conf:3:1: error: unexpected \"}\""),
        ("server {\n", "t.conf:2:1: error: unexpected end of file, expecting \"}\""),
        ("server { include x { } }", "t.conf:1:10: error: directive \"include\" is not terminated by \";\""),
        ("include nope.conf;", "t.conf:1:9: error: cannot open included file \"/srv/nope.conf\": no such file"),
    ];
    for (text, want) in cases {
        let err = parse_str(text, "t.conf", Path::new(PREFIX)).expect_err(text);
        let got = err.to_string();
        assert!(
            got.starts_with(want),
            "input {text:?}\n got: {got}\nwant: {want}"
        );
    }
}

#[test]
fn defaults() {
    let c = parse("server { }");
    assert_eq!(c.backend, BackendChoice::Auto);
    assert_eq!(c.workers, Workers::Count(1));
    assert_eq!(c.worker_connections, 10240);
    assert_eq!(c.keepalive_requests, 1000);
    let s = Duration::from_secs;
    assert_eq!(
        c.timeouts,
        Timeouts {
            header: s(60),
            body: s(60),
            send: s(60),
            keepalive: s(75)
        }
    );
    assert_eq!(c.default_type, "application/octet-stream");
    assert_eq!(
        c.error_log,
        ErrorLog {
            path: None,
            level: LogLevel::Error
        }
    );
    assert_eq!(c.head_limits, crate::http::request::HeadLimits::DEFAULT);
    assert!(!c.server_tokens);

    let srv = &c.servers[0];
    assert_eq!(
        srv.listens,
        [Listen {
            addr: sa("0.0.0.0:80"),
            default_server: false,
            proxy_protocol: false,
            ssl: false
        }]
    );
    assert_eq!(srv.names, [ServerName::Exact(String::new())]);
    assert_eq!(srv.root, PathBuf::from("/srv/html"));
    let d = &srv.default_location;
    assert_eq!(d.index, ["index.html"]);
    assert_eq!(d.client_max_body_size, 1 << 20);
    assert_eq!(d.cgi_timeout, s(60));
    assert!(!d.autoindex && d.allow_methods.is_none() && d.upload_store.is_none());
}

#[test]
fn globals() {
    let c = parse(
        "backend uring; workers auto; events { worker_connections 64; }
         error_log logs/e.log debug; http { access_log /var/log/a.log; keepalive_timeout 5s 5;
         client_header_timeout 500ms; send_timeout 2m; keepalive_requests 7; default_type text/plain;
         server_tokens on; large_client_header_buffers 8 2k; client_header_buffer_size 4k;
         server { } }",
    );
    assert_eq!(c.backend, BackendChoice::Uring);
    assert_eq!(c.workers, Workers::Auto);
    assert_eq!(c.worker_connections, 64);
    assert_eq!(
        c.error_log,
        ErrorLog {
            path: Some("/srv/logs/e.log".into()),
            level: LogLevel::Debug
        }
    );
    assert_eq!(c.access_log, Some(PathBuf::from("/var/log/a.log")));
    assert_eq!(c.timeouts.keepalive, Duration::from_secs(5));
    assert_eq!(c.timeouts.header, Duration::from_millis(500));
    assert_eq!(c.timeouts.send, Duration::from_secs(120));
    assert_eq!(c.keepalive_requests, 7);
    assert_eq!(c.default_type, "text/plain");
    assert_eq!(parse("access_log off; server { }").access_log, None);
    assert!(c.server_tokens);
    let l = c.head_limits;
    // The request line may fill client_header_buffer_size when it is the larger.
    assert_eq!(
        (l.request_line(), l.field_line(), l.section()),
        (4096, 2048, 8 * 2048)
    );
}

#[test]
fn inheritance() {
    let c = parse(
        r#"
        root www; index a.html b.html; autoindex on; client_max_body_size 2m;
        error_page 404 /404.html; cgi .sh; cgi_timeout 5s;
        server {
            listen 8080;
            error_page 500 502 =200 /5xx.html;
            upload_store up;
            location /inherit { }
            location /own {
                root /o; index o.html; autoindex off; client_max_body_size 0;
                error_page 403 = /403.html; cgi .py /usr/bin/python3; cgi .pl perl;
                cgi_timeout 1m; upload_store /u; allow_methods GET POST;
                location /own/nested { }
                location /own/n2 { alias al/; allow_methods DELETE; }
            }
            location /ret { return 301 https://x/; }
            root after;
        }"#,
    );
    let srv = &c.servers[0];
    let get = |p: &str| srv.locations.iter().find(|l| l.pattern == p).unwrap();

    let inh = get("/inherit");
    // `root after;` comes after the location in the file and still applies (merge after parse).
    assert_eq!(inh.docroot, DocRoot::Root("/srv/after".into()));
    assert_eq!(inh.index, ["a.html", "b.html"]);
    assert!(inh.autoindex);
    assert_eq!(inh.client_max_body_size, 2 << 20);
    let codes: Vec<_> = inh.error_pages.iter().map(|e| (e.code, e.status)).collect();
    assert_eq!(
        codes,
        [
            (500, ErrorPageStatus::Fixed(200)),
            (502, ErrorPageStatus::Fixed(200))
        ],
        "server error_page replaces http's"
    );
    assert_eq!(
        inh.cgi,
        [Cgi {
            ext: ".sh".into(),
            interpreter: None
        }]
    );
    assert_eq!(inh.cgi_timeout, Duration::from_secs(5));
    assert_eq!(inh.upload_store, Some("/srv/up".into()));
    assert!(inh.ret.is_none() && inh.allows("PUT"));

    let own = get("/own");
    assert_eq!(own.docroot, DocRoot::Root("/o".into()));
    assert_eq!(own.index, ["o.html"]);
    assert!(!own.autoindex);
    assert_eq!(own.client_max_body_size, 0);
    assert_eq!(
        own.error_page(403).unwrap().status,
        ErrorPageStatus::FromTarget
    );
    assert!(own.error_page(500).is_none());
    assert_eq!(
        own.cgi,
        [
            Cgi {
                ext: ".py".into(),
                interpreter: Some("/usr/bin/python3".into())
            },
            Cgi {
                ext: ".pl".into(),
                interpreter: Some("perl".into())
            },
        ]
    );
    assert_eq!(own.cgi_for("/x/a.py").unwrap().ext, ".py");
    assert!(own.cgi_for("/x/a.rb").is_none());
    assert_eq!(own.cgi_timeout, Duration::from_secs(60));
    assert_eq!(own.upload_store, Some("/u".into()));
    assert!(own.allows("GET") && own.allows("HEAD") && own.allows("POST"));
    assert!(!own.allows("DELETE"));
    assert_eq!(own.allow_methods.unwrap().allow_header(), "GET, HEAD, POST");

    let nested = get("/own/nested");
    assert_eq!(nested.docroot, DocRoot::Root("/o".into()));
    assert_eq!(nested.index, ["o.html"]);
    assert_eq!(nested.client_max_body_size, 0);
    assert_eq!(nested.cgi.len(), 2);
    assert!(nested.allows("POST") && !nested.allows("DELETE"));
    let n2 = get("/own/n2");
    assert_eq!(
        n2.docroot,
        DocRoot::Alias {
            dir: "/srv/al/".into(),
            strip: "/own/n2".into()
        }
    );
    assert_eq!(n2.map_path("/own/n2/f.txt"), PathBuf::from("/srv/al/f.txt"));
    assert!(n2.allows("DELETE") && !n2.allows("GET"));

    assert_eq!(
        get("/ret").ret,
        Some(Return {
            code: 301,
            target: Some("https://x/".into())
        })
    );
    assert_eq!(
        srv.default_location.docroot,
        DocRoot::Root("/srv/after".into())
    );
    assert_eq!(
        inh.map_path("/inherit/x"),
        PathBuf::from("/srv/after/inherit/x")
    );
}

#[test]
fn returns() {
    let cases = [
        (
            "return 204;",
            Return {
                code: 204,
                target: None,
            },
        ),
        (
            "return 404 \"gone away\";",
            Return {
                code: 404,
                target: Some("gone away".into()),
            },
        ),
        (
            "return https://e.com/;",
            Return {
                code: 302,
                target: Some("https://e.com/".into()),
            },
        ),
        (
            "return 444;",
            Return {
                code: 444,
                target: None,
            },
        ),
    ];
    for (line, want) in cases {
        let c = parse(&format!("server {{ location / {{ {line} }} }}"));
        assert_eq!(
            c.servers[0].locations[0].ret.as_ref(),
            Some(&want),
            "{line}"
        );
    }
    let c = parse("server { return 301 http://a/; }");
    assert_eq!(c.servers[0].ret.as_ref().unwrap().code, 301);
}

#[test]
fn mime_types() {
    let c = parse("types { text/html html htm; image/png PNG; } types { text/x-a a; } server { }");
    let cases = [
        ("/i.html", "text/html"),
        ("/I.HTM", "text/html"),
        ("/x.png", "image/png"),
        ("/x.a", "text/x-a"),
        ("/noext", "application/octet-stream"),
        ("/x.unknown", "application/octet-stream"),
    ];
    for (p, want) in cases {
        assert_eq!(c.mime_type(p), want, "{p}");
    }
    // The shipped conf/mime.types parses and covers the common types.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = format!("include {}/conf/mime.types; server {{ }}", root.display());
    let c = parse(&text);
    let cases = [
        ("a.html", "text/html"),
        ("a.css", "text/css"),
        ("a.js", "text/javascript"),
        ("a.json", "application/json"),
        ("a.png", "image/png"),
        ("a.JPG", "image/jpeg"),
        ("a.svg", "image/svg+xml"),
        ("a.wasm", "application/wasm"),
        ("a.woff2", "font/woff2"),
        ("a.mp4", "video/mp4"),
        ("a.md", "text/markdown"),
    ];
    for (p, want) in cases {
        assert_eq!(c.mime_type(p), want, "{p}");
    }
}

/// A unique scratch directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("webserv-config-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn includes() {
    let t = TempDir::new("inc");
    let main = t.write(
        "main.conf",
        "include mime.types;\nhttp {\n  include sites/*.conf;\n  include sites/none-*.conf;\n}\n",
    );
    t.write("mime.types", "types { text/css css; }");
    t.write(
        "sites/a.conf",
        "server { listen 81; server_name a; include ../common/loc.inc; }",
    );
    t.write("sites/b.conf", "server { listen 82; server_name b; }");
    t.write("sites/.b.conf.swp", "garbage");
    t.write("sites/c.txt", "garbage");
    t.write("common/loc.inc", "location /inc { autoindex on; }");
    let c = load(&main, Path::new("/p")).unwrap();
    assert_eq!(c.mime_type("x.css"), "text/css");
    let names: Vec<_> = c.servers.iter().map(|s| s.names[0].clone()).collect();
    assert_eq!(
        names,
        [ServerName::Exact("a".into()), ServerName::Exact("b".into())]
    );
    assert!(c.servers[0].locations[0].autoindex);

    // Errors inside an included file name that file; a missing include names the includer.
    t.write("bad/main.conf", "server {\n include inner.conf;\n}");
    t.write("bad/inner.conf", "\n  location / { bogus; }");
    let err = load(&t.0.join("bad/main.conf"), Path::new("/p")).unwrap_err();
    assert_eq!(err.file, t.0.join("bad/inner.conf").to_string_lossy());
    assert_eq!(
        (err.line, err.col, err.message.as_str()),
        (2, 16, "unknown directive \"bogus\"")
    );

    t.write("miss.conf", "\n\n   include missing.conf;");
    let err = load(&t.0.join("miss.conf"), Path::new("/p")).unwrap_err();
    assert_eq!((err.line, err.col), (3, 12));
    assert!(
        err.message.starts_with("cannot open included file"),
        "{err}"
    );

    t.write("loop.conf", "include loop.conf;");
    let err = load(&t.0.join("loop.conf"), Path::new("/p")).unwrap_err();
    assert!(err.message.contains("include cycle"), "{err}");

    let err = load(&t.0.join("absent.conf"), Path::new("/p")).unwrap_err();
    assert_eq!((err.line, err.col), (0, 0));
}

const VHOSTS: &str = r#"
server { listen 8080; server_name example.com www.example.com; root /a; }
server { listen 8080; server_name *.example.com; root /b; }
server { listen 8080; server_name *.sub.example.com; root /c; }
server { listen 8080; server_name www.example.*; root /d; }
server { listen 8080 default_server; server_name other.org; root /e; }
server { listen 127.0.0.1:8080; server_name example.com; root /f; }
server { listen 9090; listen [::]:9090; server_name .dot.org; root /g; }
server { listen 9090; server_name ""; root /h; }
server { listen [::1]:7070; root /i; }
"#;

#[test]
fn server_selection() {
    let c = parse(VHOSTS);
    let cases = [
        ("0.0.0.0:8080", Some("example.com"), "/a"),
        ("10.0.0.1:8080", Some("EXAMPLE.com:8080"), "/a"),
        ("10.0.0.1:8080", Some("example.com."), "/a"),
        ("10.0.0.1:8080", Some("www.example.com"), "/a"), // exact beats both wildcards
        ("10.0.0.1:8080", Some("a.example.com"), "/b"),
        ("10.0.0.1:8080", Some("a.b.example.com"), "/b"),
        ("10.0.0.1:8080", Some("x.sub.example.com"), "/c"), // longest *. wildcard
        ("10.0.0.1:8080", Some("www.example.org"), "/d"),   // .* suffix wildcard
        ("10.0.0.1:8080", Some("www.example.co.uk"), "/d"),
        ("10.0.0.1:8080", Some("unknown.net"), "/e"), // default_server
        ("10.0.0.1:8080", None, "/e"),
        ("10.0.0.1:8080", Some("other.org"), "/e"),
        // Address first: only 127.0.0.1:8080's servers are candidates there.
        ("127.0.0.1:8080", Some("example.com"), "/f"),
        ("127.0.0.1:8080", Some("a.example.com"), "/f"),
        ("127.0.0.1:8080", Some("other.org"), "/f"),
        ("10.0.0.1:9090", Some("dot.org"), "/g"), // `.dot.org` matches the bare name
        ("10.0.0.1:9090", Some("x.dot.org"), "/g"),
        ("10.0.0.1:9090", None, "/h"),         // "" name = no Host
        ("10.0.0.1:9090", Some("nope"), "/g"), // no default_server: first listener
        ("[::2]:9090", Some("x.dot.org"), "/g"),
        ("[::2]:9090", None, "/g"),
        ("[::1]:7070", Some("anything"), "/i"),
    ];
    for (local, host, want) in cases {
        let got = &c.select_server(sa(local), host).root;
        assert_eq!(got, Path::new(want), "{local} {host:?}");
    }
    let mut addrs = c.listen_addrs();
    addrs.sort();
    let mut want = vec![
        sa("0.0.0.0:8080"),
        sa("0.0.0.0:9090"),
        sa("[::]:9090"),
        sa("[::1]:7070"),
    ];
    want.sort();
    assert_eq!(
        addrs, want,
        "127.0.0.1:8080 is served by the 0.0.0.0:8080 socket"
    );

    let c =
        parse("server { listen 127.0.0.1:1; root /x; } server { listen 127.0.0.2:1; root /y; }");
    assert_eq!(c.listen_addrs(), [sa("127.0.0.1:1"), sa("127.0.0.2:1")]);
    assert_eq!(
        c.select_server(sa("127.0.0.2:1"), None).root,
        Path::new("/y")
    );
}

const LOCATIONS: &str = r#"
server {
    location = / { return 200 exact-root; }
    location / { return 200 root; }
    location /docs/ { return 200 docs;
        location /docs/api/ { return 200 docs-api; }
        location ~ \.pdf$ { return 200 docs-pdf-regex; }
        location ^~ /docs/raw/ { return 200 docs-raw; }
    }
    location ^~ /static/ { return 200 static; }
    location /img { return 200 img-prefix; }
    location ~ \.(png|jpg)$ { return 200 png-regex; }
    location ~* \.GIF$ { return 200 gif-caseless; }
    location ~ ^/img/special { return 200 img-special;
        location ~ \.png$ { return 200 special-png; }
    }
    location = /exact { return 200 exact; }
    location /exact { return 200 exact-prefix; }
    location ~ \.txt$ { return 200 txt-regex; }
}
"#;

#[test]
fn location_selection() {
    let c = parse(LOCATIONS);
    let srv = &c.servers[0];
    let cases = [
        ("/", "exact-root"),
        ("/index.html", "root"),
        ("/docs/", "docs"),
        ("/docs/guide", "docs"),
        ("/docs/api/x", "docs-api"),
        ("/docs/api/x.pdf", "docs-pdf-regex"), // nested regex beats the nested prefix
        ("/docs/raw/x.pdf", "docs-raw"),       // nested ^~ stops the nested regexes...
        ("/docs/raw/x.txt", "txt-regex"),      // ...but not the outer level's (nginx does the same)
        ("/docs/x.txt", "txt-regex"),
        ("/static/a.png", "static"), // ^~ beats regex
        ("/img/a.png", "png-regex"), // regex beats plain prefix
        ("/img/a.bmp", "img-prefix"),
        ("/a.gif", "gif-caseless"),
        ("/a.GiF", "gif-caseless"),
        ("/a.PNG", "root"),                    // `~` is case-sensitive
        ("/img/special/a.bmp", "img-special"), // regex match, its nested regex does not match
        ("/img/special/b.png", "png-regex"),   // first regex in file order wins
        ("/exact", "exact"),
        ("/exact/", "exact-prefix"),
        ("/exactly", "exact-prefix"),
    ];
    for (path, want) in cases {
        let loc = srv.select_location(path).unwrap();
        let got = loc
            .ret
            .as_ref()
            .unwrap()
            .target
            .as_ref()
            .unwrap()
            .to_string();
        assert_eq!(got, want, "{path}");
    }

    // Regex nested inside a regex location.
    let c = parse(
        r"server { location ~ ^/special { return 200 outer; location ~ \.png$ { return 200 inner; } } }",
    );
    let srv = &c.servers[0];
    let target = |p| {
        srv.select_location(p)
            .and_then(|l| l.ret.as_ref())
            .and_then(|r| r.target.as_ref())
            .map(|t| t.to_string())
    };
    assert_eq!(target("/special/a.png").as_deref(), Some("inner"));
    assert_eq!(target("/special/a.bmp").as_deref(), Some("outer"));
    assert!(srv.select_location("/other").is_none());
    assert_eq!(srv.location_for("/other").pattern, "/");
}

#[test]
fn shipped_example_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let c = load(
        &root.join("conf/examples/vhosts.conf"),
        Path::new("/prefix"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.servers.len(), 3);
    assert_eq!(c.listen_addrs().len(), 3);
    assert_eq!(c.mime_type("/a.css"), "text/css");
    let s = c.select_server(sa("127.0.0.1:8080"), Some("blog.example.com"));
    assert_eq!(s.root, Path::new("/prefix/www/wildcard"));
    let s = c.select_server(sa("127.0.0.1:8080"), Some("nobody"));
    let loc = s.location_for("/cgi/x.py");
    assert_eq!(loc.cgi.len(), 2);
    assert_eq!(loc.error_page(502).unwrap().uri, "/errors/50x.html");
    assert_eq!(
        s.location_for("/uploads/private/x")
            .ret
            .as_ref()
            .unwrap()
            .code,
        403
    );
    assert!(s.location_for("/status").status);
    let api = c.select_server(sa("127.0.0.1:9090"), None);
    assert_eq!(
        api.location_for("/files/a/b").map_path("/files/a/b"),
        PathBuf::from("/prefix/www/api/data/a/b")
    );
}

#[test]
fn limits_example_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (c, warnings) = load_all(
        &root.join("conf/examples/limits.conf"),
        Path::new("/prefix"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(warnings.is_empty(), "{warnings}");
    assert!(c.server_tokens);
    let l = c.head_limits;
    assert_eq!(
        (l.request_line(), l.field_line(), l.section()),
        (16 * 1024, 16 * 1024, 32 * 1024)
    );
    // The shipped default config states nginx's defaults, and loads without a warning.
    let (c, warnings) = load_all(&root.join("conf/default.conf"), root).unwrap();
    assert!(warnings.is_empty(), "{warnings}");
    assert!(!c.server_tokens);
    assert_eq!(c.head_limits, crate::http::request::HeadLimits::DEFAULT);
}

#[test]
fn open_file_cache_directives() {
    const S: &str = "\nserver { listen 80; }";
    assert_eq!(parse(S).open_file_cache, OpenFileCache::DEFAULT);
    let c = parse(&format!(
        "open_file_cache max=8 inactive=5m;\nopen_file_cache_valid 30s;{S}"
    ));
    assert_eq!(
        c.open_file_cache,
        OpenFileCache {
            max: 8,
            inactive: Duration::from_secs(300),
            valid: Duration::from_secs(30),
        }
    );
    let c = parse(&format!("http {{ open_file_cache max=2; {S} }}"));
    assert_eq!(c.open_file_cache.max, 2);
    assert_eq!(c.open_file_cache.inactive, Duration::from_secs(60));
    assert_eq!(
        parse(&format!("open_file_cache off;{S}"))
            .open_file_cache
            .max,
        0
    );
    for bad in [
        "open_file_cache max=0;",
        "open_file_cache inactive=5s;",
        "open_file_cache max=5 min_uses=2;",
        "open_file_cache off max=5;",
        "open_file_cache_valid x;",
        "server { listen 80; open_file_cache off; }",
        "open_file_cache off; open_file_cache off;",
    ] {
        let text = format!("{bad}{S}");
        let e = parse_str(&text, "t.conf", Path::new(PREFIX)).err();
        assert!(e.is_some(), "{bad}");
    }
}
