//! Splitting a request path into SCRIPT_NAME and PATH_INFO (RFC 3875 §4.1.13, §4.1.5).

/// Whether the path segment `seg` names a script with extension `ext`.
///
/// `ext` is written as in the config (`.py`); a bare `py` is accepted too and still needs the
/// dot in the file name. A segment that is only the extension (`/.py`) is not a script: it is a
/// hidden file, not `<name>.py`.
fn has_ext(seg: &str, ext: &str) -> bool {
    if ext.is_empty() {
        return false;
    }
    let Some(stem) = seg.strip_suffix(ext) else {
        return false;
    };
    if ext.starts_with('.') {
        !stem.is_empty()
    } else {
        stem.strip_suffix('.').is_some_and(|s| !s.is_empty())
    }
}

/// Split a normalised URI path at the first segment that ends in one of `exts`.
///
/// Returns `(script_uri, path_info)`: `/cgi-bin/env.py/a/b` → (`/cgi-bin/env.py`, `/a/b`).
/// `path_info` is empty or starts with `/`. `None` when no segment is a script.
///
/// The first match wins (as in Apache and nginx's usual `fastcgi_split_path_info`), so
/// `/a.py/b.py` runs `/a.py` with PATH_INFO `/b.py`.
pub fn split_script<'a>(uri_path: &'a str, exts: &[&str]) -> Option<(&'a str, &'a str)> {
    let mut start = 0;
    while start <= uri_path.len() {
        let end = uri_path[start..]
            .find('/')
            .map_or(uri_path.len(), |i| start + i);
        let seg = &uri_path[start..end];
        if exts.iter().any(|e| has_ext(seg, e)) {
            return Some((&uri_path[..end], &uri_path[end..]));
        }
        start = end + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::split_script;

    #[test]
    fn table() {
        let exts = [".py", ".cgi", "sh"];
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("/cgi-bin/env.py", Some(("/cgi-bin/env.py", ""))),
            ("/cgi-bin/env.py/a/b", Some(("/cgi-bin/env.py", "/a/b"))),
            ("/cgi-bin/env.py/", Some(("/cgi-bin/env.py", "/"))),
            ("/x.cgi/y.py", Some(("/x.cgi", "/y.py"))),
            ("/a/b/run.sh/z", Some(("/a/b/run.sh", "/z"))),
            ("/a/bsh/z", None),
            ("/a/.py/z", None),
            ("/a/.py", None),
            ("/env.pyc", None),
            ("/env.py.txt", None),
            ("/dir.py.d/x", None),
            ("/", None),
            ("", None),
            ("/index.html", None),
            ("/a.PY", None),
        ];
        for (path, want) in cases {
            assert_eq!(split_script(path, &exts), *want, "{path}");
        }
    }

    #[test]
    fn no_exts() {
        assert_eq!(split_script("/a.py", &[]), None);
        assert_eq!(split_script("/a.py", &[""]), None);
    }
}
