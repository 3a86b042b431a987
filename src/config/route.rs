//! Location selection: which `location` answers a request path, exactly as nginx chooses.
//!
//! From <https://nginx.org/en/docs/http/ngx_http_core_module.html#location> and the search order
//! of nginx's `ngx_http_core_find_location`, at each level:
//! 1. an `=` location equal to the path ends the search;
//! 2. otherwise the longest matching prefix location (plain or `^~`) is remembered, and the
//!    search repeats among *its* nested locations (a result found there that is final — exact or
//!    regex — ends the search; a deeper prefix replaces the remembered one);
//! 3. unless the prefix remembered *at this level* is `^~`, this level's regex locations are
//!    tried in file order and the first match wins (its own nested locations are then searched);
//! 4. otherwise the remembered prefix is the answer.
//!
//! So a `^~` deep inside a nested location stops regexes at its level only; outer-level regexes
//! are still tried — nginx behaves the same way.

use super::error::ConfigError;
use super::model::{Location, LocationTree, Modifier, Server};
use super::tree::Word;

impl LocationTree {
    /// Files location `idx` under the list its modifier searches.
    pub(crate) fn push(&mut self, idx: usize, locs: &[Location]) {
        match locs[idx].modifier {
            Modifier::Exact => self.exact.push(idx),
            Modifier::Prefix | Modifier::PreferPrefix => self.prefix.push(idx),
            Modifier::Regex | Modifier::RegexCaseless => self.regex.push(idx),
            // Reached by name only (`Server::named_location`).
            Modifier::Named => {}
        }
    }

    /// Orders prefixes longest first so the first hit is the longest match.
    pub(crate) fn sort(&mut self, locs: &[Location]) {
        self.prefix
            .sort_by_key(|&i| std::cmp::Reverse(locs[i].pattern.len()));
    }
}

/// nginx rejects two locations with the same name at one level ("duplicate location"); `/x` and
/// `^~ /x` count as the same name, `= /x` is separate, regexes are not compared.
pub(crate) fn check_siblings<'a>(
    sibs: impl Iterator<Item = (Modifier, &'a Word)>,
) -> Result<(), ConfigError> {
    let mut seen: Vec<(bool, &str)> = Vec::new();
    for (m, w) in sibs {
        let key = match m {
            Modifier::Exact => (true, w.text.as_str()),
            Modifier::Prefix | Modifier::PreferPrefix | Modifier::Named => (false, w.text.as_str()),
            Modifier::Regex | Modifier::RegexCaseless => continue,
        };
        if seen.contains(&key) {
            return Err(w.err(format!("duplicate location \"{}\"", w.text)));
        }
        seen.push(key);
    }
    Ok(())
}

/// A match and whether it ends the search (exact or regex).
type Found = Option<(usize, bool)>;

fn find(locs: &[Location], tree: &LocationTree, path: &str) -> Found {
    if let Some(&i) = tree.exact.iter().find(|&&i| locs[i].pattern == path) {
        return Some((i, true));
    }
    let mut found = None;
    let mut noregex = false;
    if let Some(&i) = tree
        .prefix
        .iter()
        .find(|&&i| path.starts_with(locs[i].pattern.as_str()))
    {
        found = Some(i);
        noregex = locs[i].modifier == Modifier::PreferPrefix;
        match find(locs, &locs[i].tree, path) {
            Some((j, true)) => return Some((j, true)),
            Some((j, false)) => found = Some(j),
            None => {}
        }
    }
    if !noregex {
        for &i in &tree.regex {
            let hit = locs[i].regex.as_ref().is_some_and(|r| r.is_match(path));
            if hit {
                let inner = find(locs, &locs[i].tree, path);
                return Some((inner.map_or(i, |(j, _)| j), true));
            }
        }
    }
    found.map(|i| (i, false))
}

impl Server {
    /// Every location of the server: the configured ones, the named (`@name`) ones and the
    /// server-level fallback.
    pub fn every_location(&self) -> impl Iterator<Item = &Location> {
        let named = self.locations.iter().chain(&self.named);
        named.chain(std::iter::once(&self.default_location))
    }

    /// The configured location for an already-normalised path, or `None` when no location
    /// matches (use [`Server::location_for`] to get the server-level fallback instead).
    pub fn select_location(&self, path: &str) -> Option<&Location> {
        find(&self.locations, &self.tree, path).map(|(i, _)| &self.locations[i])
    }

    /// Like `select_location`, but a path matching nothing gets `default_location` (the
    /// server-level root, index, error pages, limits).
    pub fn location_for(&self, path: &str) -> &Location {
        self.select_location(path).unwrap_or(&self.default_location)
    }

    /// The named location `@name` (`name` without the `@`).
    pub fn named_location(&self, name: &str) -> Option<&Location> {
        self.named
            .iter()
            .find(|l| l.pattern.strip_prefix('@') == Some(name))
    }
}
