//! The layout keeps the design's shape (issue 9): the modules of `src/server` form no import
//! cycle, nothing under `task/`, `conn/`, `reply/` names the loop, and no file grows past the
//! size a reader can hold.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file below `src/server` (`conn/mod.rs` → [conn], `conn/head.rs` →
/// [conn, head]).
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|l| l == "mod") {
        parts.pop();
    }
    parts
}

/// Names following `prefix` in `src`: `prefix::x` and `prefix::{x, y::z}`.
fn names_after(src: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in src.match_indices(prefix) {
        let rest = &src[i + prefix.len()..];
        if let Some(list) = rest.strip_prefix('{') {
            let end = list.find('}').unwrap_or(list.len());
            for item in list[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.push(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

#[test]
fn server_modules_form_no_cycle_and_stay_small() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server");
    let mut all = Vec::new();
    files(&root, &mut all);
    let top: BTreeSet<String> = all
        .iter()
        .filter_map(|p| module_of(p.strip_prefix(&root).unwrap()).first().cloned())
        .collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in &all {
        let rel = p.strip_prefix(&root).unwrap();
        let module = module_of(rel);
        let src = std::fs::read_to_string(p).unwrap();
        let lines = src.lines().count();
        assert!(lines <= 560, "{} has {lines} lines", rel.display());
        let Some(me) = module.first().cloned() else {
            continue; // server/mod.rs itself
        };
        if me == "layout_tests" {
            continue;
        }
        if ["task", "conn", "reply"].contains(&me.as_str()) {
            for word in ["Loop", "event_loop"] {
                let named = src
                    .split(|c: char| !c.is_alphanumeric() && c != '_')
                    .any(|w| w == word);
                assert!(!named, "{} names {word}", rel.display());
            }
        }
        let mut targets = names_after(&src, "crate::server::");
        // `super::` from a module at the top (a file directly in src/server, or a directory's
        // mod.rs) names a top-level module.
        if module.len() == 1 {
            targets.extend(names_after(&src, "super::"));
        }
        for t in targets {
            if t != me && top.contains(&t) {
                edges.entry(me.clone()).or_default().insert(t);
            }
        }
    }
    // Depth-first search for a cycle.
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if let Some(i) = path.iter().position(|p| p == n) {
            panic!("import cycle: {} → {n}", path[i..].join(" → "));
        }
        if done.contains(n) {
            return;
        }
        path.push(n.to_string());
        for m in edges.get(n).into_iter().flatten() {
            visit(m, edges, path, done);
        }
        path.pop();
        done.insert(n.to_string());
    }
    let mut done = BTreeSet::new();
    for n in &top {
        visit(n, &edges, &mut Vec::new(), &mut done);
    }
    eprintln!("server module graph: {edges:?}");
    assert!(
        edges.contains_key("event_loop"),
        "the scan found no edges at all"
    );
}
