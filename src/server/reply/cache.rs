//! The small-file cache: files up to [`CACHE_FILE_MAX`] kept in memory with their validators.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::http::range;

/// Files at most this large are kept in memory by the [`FileCache`].
pub const CACHE_FILE_MAX: u64 = 64 * 1024;
/// The cache's total size; past it, it starts over.
pub const CACHE_TOTAL_MAX: usize = 32 * 1024 * 1024;
/// How long a cached file is trusted before its size and mtime are checked again (nginx's
/// `open_file_cache_valid`, much shorter).
pub const CACHE_VALID: std::time::Duration = std::time::Duration::from_secs(1);

/// A small file in memory with what its responses need, shared by every send of it.
pub struct Cached {
    pub(super) body: std::sync::Arc<[u8]>,
    pub(super) mtime: u64,
    pub(super) etag: String,
    pub(super) last_modified: [u8; 29],
    checked: std::time::Instant,
}

/// Small static files kept in memory (content + validators), revalidated by size and mtime at
/// most once per [`CACHE_VALID`]: a hit costs no system call at all.
#[derive(Default)]
pub struct FileCache {
    map: std::collections::HashMap<PathBuf, std::rc::Rc<Cached>>,
    bytes: usize,
    /// The loop turn's time (set by the loop: no clock read per request); `None` reads it.
    pub now: Option<std::time::Instant>,
}

impl FileCache {
    /// A fresh cached copy of `path`, if it is a small regular file.
    pub(super) fn get(&mut self, path: &Path) -> Option<std::rc::Rc<Cached>> {
        let now = self.now.unwrap_or_else(std::time::Instant::now);
        if let Some(e) = self.map.get(path) {
            if now.duration_since(e.checked) < CACHE_VALID {
                return Some(e.clone());
            }
        }
        let meta = std::fs::metadata(path).ok().filter(|m| m.is_file());
        let Some(meta) = meta.filter(|m| m.len() <= CACHE_FILE_MAX) else {
            if let Some(old) = self.map.remove(path) {
                self.bytes -= old.body.len();
            }
            return None;
        };
        let mtime = meta.mtime().max(0) as u64;
        if let Some(e) = self.map.get_mut(path) {
            if e.mtime == mtime && e.body.len() as u64 == meta.len() {
                let fresh = std::rc::Rc::new(Cached {
                    body: e.body.clone(),
                    mtime,
                    etag: e.etag.clone(),
                    last_modified: e.last_modified,
                    checked: now,
                });
                *e = fresh.clone();
                return Some(fresh);
            }
        }
        let body = std::fs::read(path).ok()?;
        if body.len() as u64 != meta.len() {
            return None; // changing under us: serve it uncached
        }
        if self.bytes + body.len() > CACHE_TOTAL_MAX {
            self.map.clear();
            self.bytes = 0;
        }
        let entry = std::rc::Rc::new(Cached {
            etag: range::etag(mtime, body.len() as u64),
            last_modified: crate::http::date::format_unix(mtime),
            body: body.into(),
            mtime,
            checked: now,
        });
        self.bytes += entry.body.len();
        if let Some(old) = self.map.insert(path.to_path_buf(), entry.clone()) {
            self.bytes -= old.body.len();
        }
        Some(entry)
    }
}
