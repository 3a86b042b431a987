//! `cgi_param` through the whole loader: contexts, inheritance, errors with positions, and the
//! shipped examples.

use std::path::Path;

use super::*;
use crate::cgi::params::{apply, Vars};

const PREFIX: &str = "/srv";

fn parse(text: &str) -> Config {
    parse_str(text, "t.conf", Path::new(PREFIX)).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// `NAME=VALUE` for each effective param of `loc`, values in their `${name}` display form.
fn shown(loc: &Location) -> Vec<String> {
    loc.cgi_params
        .iter()
        .map(|p| {
            let flag = if p.if_not_empty { " if_not_empty" } else { "" };
            format!("{}={}{flag}", p.name, p.value)
        })
        .collect()
}

#[test]
fn every_context() {
    // Top level (the `http { }` wrapper is optional), http, server, location, nested location.
    let cases = [
        ("cgi_param A 1; server { }", "A=1"),
        ("http { cgi_param A 1; server { } }", "A=1"),
        ("server { cgi_param A 1; }", "A=1"),
        ("server { location / { cgi_param A 1; } }", "A=1"),
        (
            "server { location /a/ { location /a/b { cgi_param A 1; } } }",
            "A=1",
        ),
    ];
    for (text, want) in cases {
        let c = parse(text);
        let s = &c.servers[0];
        let loc = s.locations.last().unwrap_or(&s.default_location);
        assert_eq!(shown(loc), [want], "{text}");
    }
    assert!(parse("server { }").servers[0]
        .default_location
        .cgi_params
        .is_empty());
}

#[test]
fn inheritance_replaces_whole_lists() {
    let c = parse(
        "cgi_param H1 h; cgi_param H2 $host;
         server {
             server_name inherits;
             location /a/ { }
         }
         server {
             server_name own;
             location /b/ {
                 location /b/c/ { }
                 location /b/d/ { cgi_param D d; }
             }
             location /e/ { cgi_param E e; }
             # Set after the locations: still inherited by them (nginx merges after reading).
             cgi_param S s;
         }",
    );
    let s = &c.servers[0];
    assert_eq!(shown(&s.default_location), ["H1=h", "H2=${host}"]);
    assert_eq!(shown(s.location_for("/a/x")), ["H1=h", "H2=${host}"]);
    let s = &c.servers[1];
    assert_eq!(shown(&s.default_location), ["S=s"]);
    assert_eq!(shown(s.location_for("/b/x")), ["S=s"]);
    assert_eq!(shown(s.location_for("/b/c/x")), ["S=s"]);
    assert_eq!(shown(s.location_for("/b/d/x")), ["D=d"]);
    assert_eq!(shown(s.location_for("/e/x")), ["E=e"]);
}

#[test]
fn repeated_name_is_kept_in_order_and_the_later_wins() {
    let c = parse(
        "server { location / {
             cgi_param A first;
             cgi_param B $request_method if_not_empty;
             cgi_param A second;
         } }",
    );
    let loc = c.servers[0].location_for("/x");
    assert_eq!(
        shown(loc),
        ["A=first", "B=${request_method} if_not_empty", "A=second"]
    );
    let mut env = vec![("A".to_string(), "builtin".to_string())];
    apply(&loc.cgi_params, &Vars::default(), &mut env);
    assert_eq!(env, [("A".to_string(), "second".to_string())]);
}

#[test]
fn values_quoted_braced_and_unquoted() {
    let c = parse(
        r#"server { location / {
             cgi_param PATH_INFO $uri;
             cgi_param SELF ${uri}x;
             cgi_param URL "http://$host:${server_port}$request_uri";
             cgi_param EMPTY "";
             cgi_param SPACE 'a b';
         } }"#,
    );
    let loc = c.servers[0].location_for("/x");
    assert_eq!(
        shown(loc),
        [
            "PATH_INFO=${uri}",
            "SELF=${uri}x",
            "URL=http://${host}:${server_port}${request_uri}",
            "EMPTY=",
            "SPACE=a b",
        ]
    );
    let vars = Vars {
        uri: "/cgi/t.py",
        request_uri: "/cgi/t.py?a=1",
        host: "h",
        server_port: 81,
        ..Vars::default()
    };
    let mut env = Vec::new();
    apply(&loc.cgi_params, &vars, &mut env);
    let got: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(
        got,
        [
            "PATH_INFO=/cgi/t.py",
            "SELF=/cgi/t.pyx",
            "URL=http://h:81/cgi/t.py?a=1",
            "EMPTY=",
            "SPACE=a b",
        ]
    );
}

#[test]
fn errors_point_at_the_name_or_the_variable() {
    let cases = [
        // Name: letters, digits, `_`, not starting with a digit.
        ("cgi_param 1A x;", "t.conf:1:11: error: invalid value \"1A\" in \"cgi_param\" directive, a name is letters, digits and \"_\", not starting with a digit"),
        ("server { cgi_param A-B x; }", "t.conf:1:20: error: invalid value \"A-B\" in \"cgi_param\" directive"),
        ("cgi_param \"\" x;", "t.conf:1:11: error: invalid value \"\" in \"cgi_param\" directive"),
        ("cgi_param É x;", "t.conf:1:11: error: invalid value \"É\" in \"cgi_param\" directive"),
        ("cgi_param \"A B\" x;", "t.conf:1:11: error: invalid value \"A B\" in \"cgi_param\" directive"),
        // Variables: the column is the `$`'s (inside quotes too).
        ("cgi_param X $nope;", "t.conf:1:13: error: unknown \"nope\" variable in \"cgi_param\" directive"),
        ("server {\n  location / {\n    cgi_param X a$uri$nope;\n  }\n}", "t.conf:3:22: error: unknown \"nope\" variable in \"cgi_param\" directive"),
        ("cgi_param X \"a b $uri ${nope}\";", "t.conf:1:23: error: unknown \"nope\" variable in \"cgi_param\" directive"),
        ("cgi_param X ${nope};", "t.conf:1:13: error: unknown \"nope\" variable in \"cgi_param\" directive"),
        ("cgi_param X a${uri;", "t.conf:1:14: error: the closing bracket in \"uri\" variable is missing in \"cgi_param\" directive"),
        ("cgi_param X 'cost: 5$';", "t.conf:1:21: error: invalid variable name in \"cgi_param\" directive"),
        ("cgi_param X ${12};", "t.conf:1:13: error: invalid capture \"${12}\" in \"cgi_param\" directive"),
        // An escape before the `$` moves it in the source: the word's start is reported.
        ("cgi_param X \"\\\"$nope\";", "t.conf:1:13: error: unknown \"nope\" variable in \"cgi_param\" directive"),
        // Shape.
        ("cgi_param A;", "t.conf:1:1: error: invalid number of arguments in \"cgi_param\" directive"),
        ("cgi_param A b c d;", "t.conf:1:1: error: invalid number of arguments in \"cgi_param\" directive"),
        ("cgi_param A b if_empty;", "t.conf:1:15: error: invalid value \"if_empty\" in \"cgi_param\" directive, it must be \"if_not_empty\""),
        ("events { cgi_param A b; }", "t.conf:1:10: error: \"cgi_param\" directive is not allowed here"),
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

/// Every file in conf/examples loads (what `webserv -t -c conf/examples/FILE` checks), and the
/// cgi_param example sets what its comments say.
#[test]
fn every_shipped_example_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("conf/examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "conf") {
            load(&path, root).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 2, "only {n} examples found in {}", dir.display());

    let c = load(&dir.join("cgi_param.conf"), root).unwrap_or_else(|e| panic!("{e}"));
    let s = &c.servers[0];
    let loc = s.location_for("/directory/youpi.bla");
    assert!(loc.cgi_for("/directory/youpi.bla").is_some());
    let vars = Vars {
        uri: "/directory/youpi.bla",
        ..Vars::default()
    };
    let mut env = vec![("PATH_INFO".to_string(), String::new())];
    apply(&loc.cgi_params, &vars, &mut env);
    assert!(
        env.contains(&("PATH_INFO".to_string(), "/directory/youpi.bla".to_string())),
        "{env:?}"
    );
}
