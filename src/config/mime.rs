//! Content-Type by file extension, from `types { }` and `default_type`.
//!
//! As nginx's `ngx_http_set_exten`, the extension is what follows the last `.` of the last path
//! segment; lookup is case-insensitive (`INDEX.HTML` is text/html). No extension, or an unknown
//! one, gets `default_type`.

use super::model::Config;

/// The extension of the last path segment, if any (`/a.b/c` has none; `.hidden` is `hidden`,
/// as in nginx).
pub fn extension(path: &str) -> Option<&str> {
    // One backward scan (run per response; `rsplit` + `rsplit_once` cost two searches).
    let b = path.as_bytes();
    let dot = b.iter().rposition(|&c| c == b'.' || c == b'/')?;
    (b[dot] == b'.' && dot + 1 < b.len()).then(|| &path[dot + 1..])
}

impl Config {
    /// The MIME type to send for `path`.
    pub fn mime_type(&self, path: &str) -> &str {
        let Some(ext) = extension(path) else {
            return &self.default_type;
        };
        // Extensions are short; only allocate when the lookup needs lower-casing.
        let hit = if ext.bytes().any(|b| b.is_ascii_uppercase()) {
            self.types.get(&ext.to_ascii_lowercase())
        } else {
            self.types.get(ext)
        };
        hit.map_or(&self.default_type, |t| t.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions() {
        let cases = [
            ("/a/b.html", Some("html")),
            ("/a/b.tar.gz", Some("gz")),
            ("/a.d/b", None),
            ("/a/b.", None),
            ("/.hidden", Some("hidden")),
            ("plain", None),
        ];
        for (p, want) in cases {
            assert_eq!(extension(p), want, "{p}");
        }
    }
}
