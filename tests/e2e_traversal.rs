//! Path traversal: no request, however its path is encoded, reads a file outside the document
//! root, writes a file outside the upload store, deletes a file outside the store, or hands a
//! CGI script a PATH_TRANSLATED outside the root — on every backend.
//!
//! Layout of the server's prefix (one temp dir per server):
//!
//! ```text
//! site/www/                 root: index.html, inner/ok.txt, cgi-bin/pt.sh,
//!                           link.txt -> ../linked/linked.txt, linkdir -> ../linked
//! site/private/secret.txt   the secret (a sibling of the root), evil.sh, sentinel.txt
//! site/secret.txt           the secret again, one level up
//! site/sentinel.txt         must never be deleted
//! site/up/                  upload store of `location /up/`  (link-to-sentinel -> ../sentinel.txt)
//! site/drop/                upload store of `location /drop` (no trailing slash: off-by-slash)
//! site/data/images/pic.txt  `location /img { alias site/data/images/; }` (off-by-slash)
//! site/data/secret          the secret, reachable only by escaping the alias
//! site/linked/linked.txt    outside the root; the root's symlinks to it are refused (403)
//! ```
//!
//! Path rules under test: RFC 3986 §2.1 (percent-encoding, decoded once), §5.2.4 (dot-segment
//! removal), RFC 9110 §4.2.3 / §17.3 ("path traversal" security consideration: a server MUST NOT
//! serve files outside its document root by `..` resolution), RFC 3875 §4.1.6 (PATH_TRANSLATED
//! maps PATH_INFO through the document root), RFC 3629 §3 (overlong UTF-8 is invalid).

mod common;

use common::*;
use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

const SECRET: &str = "TOPSECRET-traversal-9f3a";
const SENTINEL: &str = "SENTINEL-keep-me";
const EVIL: &str = "EVIL-SCRIPT-RAN";
/// Every file a PUT tries to create carries this in its name, so a stray one is easy to find.
const ESC: &str = "trav-esc-";

const CONF: &str = "{BASE}
server {
    listen 127.0.0.1:{PORT};
    root site/www;
    location / { allow_methods GET HEAD DELETE; }
    location /up/ { allow_methods GET PUT DELETE; upload_store site/up; client_max_body_size 1k; }
    location /drop { allow_methods GET PUT DELETE; upload_store site/drop; client_max_body_size 1k; }
    location /img { alias site/data/images/; }
    location /cgi-bin/ { allow_methods GET; cgi .sh /bin/sh; }
}
";

/// A CGI script that reads nothing and prints where the server says its PATH_INFO maps.
const PT_SH: &str = "printf 'Content-Type: text/plain\\r\\n\\r\\n'
printf 'PATH_INFO=%s\\n' \"$PATH_INFO\"
printf 'PATH_TRANSLATED=%s\\n' \"$PATH_TRANSLATED\"
";

fn setup(d: &Path) {
    write_file(d, "site/www/index.html", "public index");
    write_file(d, "site/www/inner/ok.txt", "inner ok");
    write_file(d, "site/www/cgi-bin/pt.sh", PT_SH);
    write_file(d, "site/private/secret.txt", SECRET);
    write_file(
        d,
        "site/private/evil.sh",
        format!("printf 'Content-Type: text/plain\\r\\n\\r\\n{EVIL}'\n"),
    );
    write_file(d, "site/private/sentinel.txt", SENTINEL);
    write_file(d, "site/secret.txt", SECRET);
    write_file(d, "site/sentinel.txt", SENTINEL);
    write_file(d, "site/data/images/pic.txt", "PIC");
    write_file(d, "site/data/secret", SECRET);
    write_file(d, "site/data/sentinel", SENTINEL);
    write_file(d, "site/linked/linked.txt", "LINKED-OUTSIDE-ROOT");
    std::fs::create_dir_all(d.join("site/up")).unwrap();
    std::fs::create_dir_all(d.join("site/drop")).unwrap();
    std::os::unix::fs::symlink("../linked/linked.txt", d.join("site/www/link.txt")).unwrap();
    std::os::unix::fs::symlink("../linked", d.join("site/www/linkdir")).unwrap();
    std::os::unix::fs::symlink("../sentinel.txt", d.join("site/up/link-to-sentinel")).unwrap();
}

/// One way of writing "go up one directory" in a request path (each includes its separator).
/// Applied 1, 2 and 40 times (the last is the "very deep chain").
const UNITS: &[(&str, &str)] = &[
    ("plain", "../"),
    ("encoded dots", "%2e%2e/"),
    ("encoded dots upper", "%2E%2E/"),
    ("first dot encoded", "%2e./"),
    ("second dot encoded", ".%2e/"),
    ("second dot encoded upper", ".%2E/"),
    ("encoded slash", "..%2f"),
    ("encoded slash upper", "..%2F"),
    ("all encoded", "%2e%2e%2f"),
    ("all encoded upper", "%2E%2E%2F"),
    ("encoded backslash", "..%5c"),
    ("backslash", "..\\"),
    ("encoded dots and backslash", "%2e%2e%5c"),
    ("double-encoded dots", "%252e%252e/"),
    ("double-encoded slash", "..%252f"),
    ("nested double-encoding", "%%32%65%%32%65/"),
    ("overlong 2-byte dots", "%c0%ae%c0%ae/"),
    ("overlong 2-byte slash", "..%c0%af"),
    ("overlong 3-byte dots", "%e0%80%ae%e0%80%ae/"),
    ("fullwidth dots", "%ef%bc%8e%ef%bc%8e/"),
    ("NUL after dots", "..%00/"),
    ("semicolon", "..;/"),
    ("three dots", ".../"),
    ("four dots double slash", "....//"),
    ("dot segment first", "./../"),
    ("double slash", ".//..//"),
    ("encoded leading slash", "%2f..%2f"),
    ("down then up twice", "x/../../"),
    ("mixed encoded pair", "..%2f%2e%2e/"),
    ("tab after dots", "..%09/"),
];

const DEPTHS: &[usize] = &[1, 2, 40];

/// Every request path under `prefix` (a location, ending in `/`) that tries to reach `target`
/// (relative to the directory above the location's directory) with one encoding.
/// `abs` is the absolute path of the target on disk (for the `%2f`-absolute forms).
fn attempts(prefix: &str, target: &str, abs: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, unit) in UNITS {
        for &d in DEPTHS {
            out.push((
                format!("{name} x{d}"),
                format!("{prefix}{}{target}", unit.repeat(d)),
            ));
        }
    }
    let abs = abs.to_string_lossy();
    out.push((
        "%2f absolute".into(),
        format!("{prefix}{}", abs.replace('/', "%2f")),
    ));
    out.push(("// absolute".into(), format!("{prefix}/{abs}")));
    out.push((
        "%2F absolute upper".into(),
        format!("{prefix}{}", abs.replace('/', "%2F")),
    ));
    out.push((
        "trailing dot segment".into(),
        format!("{prefix}../{target}/."),
    ));
    out.push(("trailing ..".into(), format!("{prefix}..")));
    out.push(("trailing encoded ..".into(), format!("{prefix}%2e%2e")));
    out.push(("/./ chain".into(), format!("{prefix}./././../{target}")));
    out.push((
        "NUL before extension".into(),
        format!("{prefix}../{target}%00.html"),
    ));
    out
}

/// The lexical normal form of an absolute path (`.` and `..` resolved, no symlinks).
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// What was found on disk outside the upload stores (paths relative to the prefix).
fn outside_stores(dir: &Path) -> BTreeSet<PathBuf> {
    tree(dir)
        .into_iter()
        .filter(|p| {
            !(p.starts_with("site/up/") || p.starts_with("site/drop/"))
                && p != Path::new("server.log")
        })
        .collect()
}

/// Names in `dir` (not recursive) containing the escape marker.
fn stray_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(ESC))
                .collect()
        })
        .unwrap_or_default()
}

struct Probe<'a> {
    s: &'a Server,
    /// Every request sent, with its status, for failure messages.
    log: Vec<String>,
}

impl Probe<'_> {
    /// Sends `method path` (with `body` for PUT) and returns the status and the raw response.
    /// Asserts what holds for every request: one response, the secret's bytes and the evil
    /// script's output never in it, and no 5xx.
    fn send(&mut self, method: &str, path: &str, body: &str) -> (u16, String) {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (raw, closed) = exchange(self.s.port, req.as_bytes(), Duration::from_secs(5));
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (resps, err) = try_parse_responses(&raw);
        assert!(
            err.is_none() && resps.len() == 1 && closed,
            "[{}] {method} {path}: want one response then close (closed: {closed}, {err:?}):\n{text}",
            self.s.backend
        );
        assert!(
            !text.contains(SECRET),
            "[{}] {method} {path} leaked the secret:\n{text}",
            self.s.backend
        );
        assert!(
            !text.contains(EVIL),
            "[{}] {method} {path} ran a script outside the root:\n{text}",
            self.s.backend
        );
        let status = resps[0].status;
        assert!(
            status < 500,
            "[{}] {method} {path}: server error {status}:\n{text}",
            self.s.backend
        );
        self.log.push(format!("{method} {path} -> {status}"));
        (status, text)
    }
}

#[test]
fn traversal_never_escapes_root_or_store() {
    for_each_backend("traversal_never_escapes_root_or_store", |be| {
        let s = Server::start(be, CONF, setup);
        let root = std::fs::canonicalize(s.dir.join("site/www")).unwrap();
        let site = std::fs::canonicalize(s.dir.join("site")).unwrap();
        let tmp = std::env::temp_dir();
        let before = outside_stores(&s.dir);
        let (tmp_before, slash_before) = (stray_names(&tmp), stray_names(Path::new("/")));
        let mut p = Probe {
            s: &s,
            log: Vec::new(),
        };
        let mut n_requests = 0;

        // Sanity: each mechanism works for a legitimate request, so a refusal below means
        // "refused", not "broken".
        assert_eq!(p.send("GET", "/index.html", "").0, 200);
        assert_eq!(p.send("GET", "/img/pic.txt", "").0, 200);
        assert_eq!(p.send("PUT", "/up/legit.txt", "ok").0, 201);
        assert_eq!(p.send("PUT", "/drop/legit.txt", "ok").0, 201);
        assert_eq!(p.send("DELETE", "/up/legit.txt", "").0, 204);
        let (st, text) = p.send("GET", "/cgi-bin/pt.sh/a/b", "");
        assert_eq!(st, 200, "{text}");
        assert!(
            text.contains(&format!("PATH_TRANSLATED={}/a/b", root.display()))
                || text.contains("PATH_TRANSLATED=") && text.contains("site/www/a/b"),
            "PATH_TRANSLATED not under the root:\n{text}"
        );

        // GET: the secret one level above the root (site/private/secret.txt).
        for (name, path) in attempts("/", "private/secret.txt", &site.join("private/secret.txt")) {
            let (st, text) = p.send("GET", &path, "");
            assert!(
                matches!(st, 400 | 403 | 404),
                "[{be}] GET {path} ({name}): status {st}, want 400/403/404:\n{text}"
            );
            n_requests += 1;
        }

        // CGI PATH_INFO: the script runs or not, but what it is told must stay in the root;
        // and no script outside the root ever runs.
        for (name, path) in attempts(
            "/cgi-bin/pt.sh/",
            "private/secret.txt",
            &site.join("private/secret.txt"),
        )
        .into_iter()
        .chain(attempts(
            "/cgi-bin/",
            "private/evil.sh",
            &site.join("private/evil.sh"),
        )) {
            let (st, text) = p.send("GET", &path, "");
            if st == 200 {
                for line in text.lines() {
                    if let Some(pi) = line.strip_prefix("PATH_INFO=") {
                        assert!(
                            !pi.split('/').any(|seg| seg == ".." || seg == "."),
                            "[{be}] GET {path} ({name}): PATH_INFO {pi:?} has dot segments"
                        );
                    }
                    if let Some(pt) = line.strip_prefix("PATH_TRANSLATED=") {
                        if !pt.is_empty() {
                            let canon_root = lexical(&root);
                            let rel_root = lexical(&s.dir.join("site/www"));
                            let pt = lexical(Path::new(pt));
                            assert!(
                                pt.starts_with(&canon_root) || pt.starts_with(&rel_root),
                                "[{be}] GET {path} ({name}): PATH_TRANSLATED {} outside the root",
                                pt.display()
                            );
                        }
                    }
                }
            }
            n_requests += 1;
        }

        // PUT: try to create files next to the stores (site/ and above).
        let abs = site.join(format!("{ESC}abs"));
        for (_name, path) in attempts("/up/", &format!("{ESC}up"), &abs)
            .into_iter()
            .chain(attempts("/drop/", &format!("{ESC}drop"), &abs))
        {
            p.send("PUT", &path, "ESCAPED");
            n_requests += 1;
        }

        // DELETE: try to remove the sentinels next to the stores and the root.
        for (_name, path) in attempts("/up/", "sentinel.txt", &site.join("sentinel.txt"))
            .into_iter()
            .chain(attempts(
                "/up/",
                "private/sentinel.txt",
                &site.join("private/sentinel.txt"),
            ))
            .chain(attempts("/", "sentinel.txt", &site.join("sentinel.txt")))
            .chain(attempts(
                "/",
                "private/secret.txt",
                &site.join("private/secret.txt"),
            ))
        {
            p.send("DELETE", &path, "");
            n_requests += 1;
        }
        assert!(n_requests >= 30 * 4, "only {n_requests} attempts");

        let after = outside_stores(&s.dir);
        let created: Vec<_> = after.difference(&before).collect();
        let removed: Vec<_> = before.difference(&after).collect();
        assert!(
            created.is_empty() && removed.is_empty(),
            "[{be}] files changed outside the upload stores: created {created:?}, removed \
             {removed:?}\nrequests:\n{}",
            p.log.join("\n")
        );
        assert_eq!(
            stray_names(&tmp),
            tmp_before,
            "[{be}] file created in {tmp:?}"
        );
        assert_eq!(
            stray_names(Path::new("/")),
            slash_before,
            "[{be}] file created in /"
        );
        for f in [
            "site/sentinel.txt",
            "site/private/sentinel.txt",
            "site/data/sentinel",
        ] {
            assert_eq!(
                std::fs::read_to_string(s.dir.join(f)).ok().as_deref(),
                Some(SENTINEL),
                "[{be}] {f} changed"
            );
        }
    });
}

/// `location /drop` (no trailing slash) with an upload store: `/drop../x` matches the prefix
/// `/drop`, and naive prefix stripping would map it to `site/drop/../x` = `site/x`. The same
/// holds for DELETE. (The analogue of nginx's alias "off-by-slash".)
#[test]
fn upload_store_off_by_slash_does_not_escape() {
    for_each_backend("upload_store_off_by_slash_does_not_escape", |be| {
        let s = Server::start(be, CONF, setup);
        let before = outside_stores(&s.dir);
        let mut p = Probe {
            s: &s,
            log: Vec::new(),
        };
        for path in [
            format!("/drop../{ESC}obs1"),
            format!("/drop%2e%2e/{ESC}obs2"),
            format!("/drop..%2f{ESC}obs3"),
            format!("/drop../private/{ESC}obs4"),
        ] {
            p.send("PUT", &path, "ESCAPED");
        }
        for path in ["/drop../sentinel.txt", "/drop%2e%2e/private/sentinel.txt"] {
            p.send("DELETE", path, "");
        }
        let after = outside_stores(&s.dir);
        let created: Vec<_> = after.difference(&before).collect();
        let removed: Vec<_> = before.difference(&after).collect();
        assert!(
            created.is_empty() && removed.is_empty(),
            "[{be}] /drop.. escaped the store: created {created:?}, removed {removed:?}\n{}",
            p.log.join("\n")
        );
    });
}

/// `location /img { alias site/data/images/; }`: `/img../secret` matches the prefix `/img`;
/// replacing it with the alias directory gives `site/data/images/../secret` — the classic
/// nginx alias traversal. The secret (`site/data/secret`) must never be served.
#[test]
fn alias_off_by_slash_does_not_escape() {
    for_each_backend("alias_off_by_slash_does_not_escape", |be| {
        let s = Server::start(be, CONF, setup);
        let mut p = Probe {
            s: &s,
            log: Vec::new(),
        };
        assert_eq!(p.send("GET", "/img/pic.txt", "").0, 200);
        for path in [
            "/img../secret",
            "/img%2e%2e/secret",
            "/img..%2fsecret",
            "/img.%2e/secret",
            "/img../data/secret",
            "/img../../secret.txt",
            "/img../../private/secret.txt",
        ] {
            let (st, text) = p.send("GET", path, "");
            assert!(
                matches!(st, 400 | 403 | 404),
                "[{be}] GET {path}: status {st}:\n{text}"
            );
        }
        assert_eq!(
            std::fs::read_to_string(s.dir.join("site/data/sentinel")).unwrap(),
            SENTINEL
        );
    });
}

/// Symlink policy (issue 16). With nginx's default `disable_symlinks off` the server follows
/// symlinks, but resolution never leaves the root (`openat2(RESOLVE_BENEATH)`): a link to a
/// file inside the root is served, one leading out of it is refused with 403 (nginx would
/// follow it: see the README's differences from nginx).
///
/// DELETE never follows a symlink and never removes one either (403), so a link in the store
/// cannot be used to delete its target.
#[test]
fn symlinks_inside_root_are_followed_delete_is_not() {
    for_each_backend("symlinks_inside_root_are_followed_delete_is_not", |be| {
        let s = Server::start(be, CONF, setup);
        write_file(&s.dir, "site/www/sub/real.txt", "REAL");
        std::os::unix::fs::symlink("sub/real.txt", s.dir.join("site/www/inroot.txt")).unwrap();
        let r = get(s.port, "/inroot.txt");
        assert_eq!(
            r.status,
            200,
            "[{be}] symlink within the root:\n{}",
            r.dump()
        );
        assert_eq!(r.text(), "REAL");
        let r = get(s.port, "/link.txt");
        assert_eq!(
            r.status,
            403,
            "[{be}] symlink out of the root:\n{}",
            r.dump()
        );
        let r = get(s.port, "/linkdir/linked.txt");
        assert_eq!(
            r.status,
            403,
            "[{be}] file in a symlinked dir out of the root:\n{}",
            r.dump()
        );

        let r = request(
            s.port,
            b"DELETE /up/link-to-sentinel HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(r.status, 403, "[{be}] DELETE of a symlink:\n{}", r.dump());
        assert_eq!(
            std::fs::read_to_string(s.dir.join("site/sentinel.txt")).unwrap(),
            SENTINEL,
            "[{be}] the symlink's target was deleted"
        );
        assert!(
            std::fs::symlink_metadata(s.dir.join("site/up/link-to-sentinel")).is_ok(),
            "[{be}] the symlink itself was deleted"
        );
    });
}
