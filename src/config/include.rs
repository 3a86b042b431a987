//! `include` path resolution: relative paths and the `*`/`?` wildcard in the last component.
//!
//! nginx resolves a relative include against its prefix/conf dir; this project resolves it
//! against the *including file's* directory (DESIGN: a config tree can be moved as a whole).
//! As in nginx (which uses glob(3)), a pattern that matches nothing is fine, but a plain path that
//! does not exist is an error. Matches are sorted so the load order is reproducible, and a
//! leading `.` is only matched by a pattern that itself starts with `.` (glob(3) rule: editors'
//! swap files such as `.site.conf.swp` are not included by `*.conf`).

use std::path::{Path, PathBuf};

/// The files `pattern` names, in load order. Errors are messages; the caller adds the position.
pub fn expand(base_dir: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let full = base_dir.join(pattern);
    let is_glob = pattern.contains(['*', '?']);
    if !is_glob {
        if !full.is_file() {
            return Err(format!(
                "cannot open included file \"{}\": no such file",
                full.display()
            ));
        }
        return Ok(vec![full]);
    }
    let file_pat = full
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("invalid include pattern \"{pattern}\""))?
        .to_string();
    let dir = full.parent().unwrap_or(Path::new("."));
    if dir.to_string_lossy().contains(['*', '?']) {
        return Err(format!(
            "wildcards are only supported in the last path component: \"{pattern}\""
        ));
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        // glob(3) over a missing directory matches nothing, which nginx accepts.
        Err(_) => return Ok(Vec::new()),
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            (!name.starts_with('.') || file_pat.starts_with('.')) && wildcard(&file_pat, &name)
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    Ok(out)
}

/// Shell-style match of `name` against `pat` with `*` (any run) and `?` (one char).
pub fn wildcard(pat: &str, name: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Classic greedy matcher with one backtrack point: linear-ish, no recursion.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_table() {
        let cases = [
            ("*.conf", "a.conf", true),
            ("*.conf", ".conf", true),
            ("*.conf", "a.conf.bak", false),
            ("*", "", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*a*b", "xxaxxb", true),
            ("*a*b", "xxaxxbc", false),
            ("site-*.conf", "site-1.conf", true),
            ("exact", "exact", true),
        ];
        for (pat, name, want) in cases {
            assert_eq!(wildcard(pat, name), want, "{pat} vs {name}");
        }
    }
}
