//! The small-file cache: files up to [`CACHE_FILE_MAX`] kept in memory with their validators.
//!
//! An entry is trusted without any system call for [`CACHE_VALID`] — unless a write through
//! webserv (PUT, upload, DELETE, in any worker) happened since, which bumps a process-wide
//! generation ([`note_write`]). Past that, the file is opened again (beneath its root, as any
//! request) and the entry kept only if (device, inode, size, mtime with nanoseconds, ctime) all
//! match: a same-size rewrite in the same second changes the nanoseconds or the inode, and a
//! `chmod` changes the ctime.

use std::fs::File;
use std::os::fd::{OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use backends::util::FileStat;

/// Files at most this large are kept in memory by the [`FileCache`].
pub const CACHE_FILE_MAX: u64 = 64 * 1024;
/// The cache's total size; past it, it starts over.
pub const CACHE_TOTAL_MAX: usize = 32 * 1024 * 1024;
/// What an entry costs besides its bytes and its key (the record, entity tag and kept head),
/// so that empty files — which anyone who may upload can make by the thousand — count too.
const ENTRY_COST: usize = 640;

/// What an entry for `path` with a `body_len`-byte body counts against [`CACHE_TOTAL_MAX`]:
/// its key is a whole path, up to `PATH_MAX`, and long names would otherwise hold several
/// times the total.
fn entry_cost(path: &Path, body_len: usize) -> usize {
    body_len + ENTRY_COST + key(path).len()
}
/// How long a cached file is trusted before it is checked again (nginx's
/// `open_file_cache_valid`, much shorter).
pub const CACHE_VALID: std::time::Duration = std::time::Duration::from_secs(1);

/// Bumped by every change webserv makes to a file (all workers share it).
static WRITES: AtomicU64 = AtomicU64::new(0);

/// A file was created, replaced or removed through webserv: every cached entry is checked again
/// before its next use.
pub fn note_write() {
    WRITES.fetch_add(1, Ordering::Release);
}

pub(super) fn writes() -> u64 {
    WRITES.load(Ordering::Acquire)
}

/// The entity tag of a file version: inode, mtime (seconds and nanoseconds) and size, so a
/// same-size rewrite within one second still gets a new tag. The inode matters: file times
/// advance by the kernel's tick (a few ms), so two uploads renamed into place one after the
/// other can share every time stamp, but never the inode.
pub fn etag_of(st: &FileStat) -> String {
    format!(
        "\"{:x}-{:x}.{:x}-{:x}\"",
        st.ino,
        st.mtime.0.max(0),
        st.mtime.1.max(0),
        st.size
    )
}

/// A small file in memory with what its responses need, shared by every send of it.
pub struct Cached {
    pub(super) body: std::rc::Rc<[u8]>,
    pub(super) mtime: u64,
    pub(super) etag: String,
    pub(super) last_modified: [u8; 29],
    stat: FileStat,
    checked: std::time::Instant,
    gen: u64,
    /// The head of the last plain 200 answered from this entry.
    pub(super) memo: std::cell::RefCell<HeadMemo>,
}

/// The head of the last plain `200` (no conditionals, no range) answered from a cached file,
/// kept to be copied: a hot file is answered many times within one second, and its head then
/// says the same every time. Everything the head depends on is in the key: the date, the
/// connection's `Connection` field, the `Server` name (`server_tokens` may change at a
/// reload), and the MIME type — through the URI's extension (two names of one file may
/// differ in it) under the configuration that maps it. That configuration is named by its
/// address and the worker's configuration epoch, which each reload advances before the new
/// configuration serves, so an address reused by a later configuration never matches. The
/// length and validators are the entry's own: a changed file is a new entry.
#[derive(Default)]
pub(super) struct HeadMemo {
    date: [u8; 29],
    close: bool,
    keep_alive_10: bool,
    server: usize,
    epoch: u64,
    config: usize,
    ext: Vec<u8>,
    head: Vec<u8>,
}

/// What a plain 200's head depends on besides the entry and the request's [`super::Ctx`].
pub(super) struct MemoKey<'a> {
    pub epoch: u64,
    pub config: &'a crate::config::Config,
    pub uri: &'a str,
}

impl MemoKey<'_> {
    fn ext(&self) -> &[u8] {
        crate::config::mime::extension(self.uri).map_or(b"", str::as_bytes)
    }

    fn config(&self) -> usize {
        std::ptr::from_ref(self.config) as usize
    }
}

impl HeadMemo {
    fn server() -> usize {
        crate::http::response::server_name().as_ptr() as usize
    }

    /// Copy the kept head into `out` when it was built for the same inputs.
    pub(super) fn copy_to(&self, k: &MemoKey, cx: &super::Ctx, out: &mut Vec<u8>) -> bool {
        let same = !self.head.is_empty()
            && self.date[..] == *cx.date
            && self.close == cx.close
            && self.keep_alive_10 == cx.keep_alive_10
            && self.server == Self::server()
            && self.epoch == k.epoch
            && self.config == k.config()
            && self.ext == k.ext();
        if same {
            out.clear();
            out.extend_from_slice(&self.head);
        }
        same
    }

    /// Keep `head`, built for `k` and `cx` (its buffers are reused: no allocation once they
    /// have grown).
    pub(super) fn keep(&mut self, k: &MemoKey, cx: &super::Ctx, head: &[u8]) {
        let Ok(date) = <[u8; 29]>::try_from(cx.date) else {
            return;
        };
        self.date = date;
        self.close = cx.close;
        self.keep_alive_10 = cx.keep_alive_10;
        self.server = Self::server();
        self.epoch = k.epoch;
        self.config = k.config();
        self.ext.clear();
        self.ext.extend_from_slice(k.ext());
        self.head.clear();
        self.head.extend_from_slice(head);
    }
}

/// A path as the caches' key: its bytes.
fn key(p: &Path) -> &[u8] {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes()
}

/// Small static files kept in memory (content + validators).
#[derive(Default)]
pub struct FileCache {
    /// Keyed by the path's bytes: `Path`'s own `Hash` walks its components and feeds each to
    /// the hasher separately (about 4 % of a pipelined request's CPU), and every path here
    /// is already normalised, so bytes compare as the paths do.
    map: std::collections::HashMap<Box<[u8]>, std::rc::Rc<Cached>>,
    /// Directory fds of roots, aliases and upload stores, opened on first use and dropped at
    /// reload: every path under them is resolved beneath one of these.
    anchors: std::collections::HashMap<Box<[u8]>, std::rc::Rc<OwnedFd>>,
    bytes: usize,
    /// Large files kept open (nginx's `open_file_cache`).
    pub open: super::open_files::OpenFiles,
    /// The loop turn's time (set by the loop: no clock read per request); `None` reads it.
    pub now: Option<std::time::Instant>,
    /// Advanced by each reload ([`FileCache::reset_anchors`]): see [`HeadMemo`].
    pub(super) epoch: u64,
}

impl FileCache {
    pub(super) fn now(&self) -> std::time::Instant {
        self.now.unwrap_or_else(std::time::Instant::now)
    }

    /// The directory fd of `dir` (a root, alias or upload store), opened once.
    pub fn anchor(&mut self, dir: &Path) -> std::io::Result<std::rc::Rc<OwnedFd>> {
        if let Some(fd) = self.anchors.get(key(dir)) {
            return Ok(fd.clone());
        }
        let fd = std::rc::Rc::new(backends::util::open_dir(dir)?);
        // Bounded: one entry per configured directory (and per alias target).
        self.anchors.insert(key(dir).into(), fd.clone());
        Ok(fd)
    }

    /// A reload may have changed what the configured paths name: start again from the
    /// directories the new configuration opened when it was loaded.
    pub fn reset_anchors(&mut self, dirs: &super::DirFds) {
        self.epoch += 1;
        self.anchors.clear();
        self.open.clear();
        for (dir, fd) in dirs {
            // dup(2) of an open fd: no lookup, nothing that waits for the disk.
            if let Ok(fd) = backends::util::dup_fd(std::os::fd::AsRawFd::as_raw_fd(fd)) {
                self.anchors.insert(key(dir).into(), std::rc::Rc::new(fd));
            }
        }
    }

    /// A worker's cache, starting from the directories the configuration's load opened.
    pub fn for_dirs(dirs: &super::DirFds) -> FileCache {
        let mut c = FileCache::default();
        c.reset_anchors(dirs);
        c
    }

    /// An expired entry checked without reading the file: `rel` looked up beneath `anchor`
    /// from the kernel's caches only (`openat2(O_PATH, RESOLVE_CACHED)`, then `fstat` of the
    /// held inode: never a wait for the disk on the loop's thread; a miss returns `None` and
    /// the request takes the open path, which looks up off the thread), or with `fstatat`
    /// where the caller allows a blocking lookup (`cached` false). The entry is kept only for
    /// the very same inode and times, i.e. the file that a contained open read before,
    /// unchanged — so serving it needs no descriptor even when none is left.
    pub(super) fn revalidate(
        &mut self,
        path: &Path,
        anchor: RawFd,
        rel: &str,
        cached: bool,
    ) -> Option<std::rc::Rc<Cached>> {
        if !self.map.contains_key(key(path)) {
            return None;
        }
        let name = std::ffi::OsStr::new(rel);
        let flags = backends::util::O_LOOKUP;
        let st =
            match cached.then(|| crate::server::lookups::open_cached(anchor, name, flags, false)) {
                Some(Ok(fd)) => {
                    use std::os::fd::AsRawFd;
                    backends::util::fstat(fd.as_raw_fd()).ok()?
                }
                // Out of descriptors: the check that needs none, so the cached copy is still
                // served to the connections there are.
                Some(Err(e)) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    backends::util::fstatat(anchor, name, true).ok()?
                }
                Some(Err(_)) => return None,
                None => backends::util::fstatat(anchor, name, true).ok()?,
            };
        let e = self.map.get_mut(key(path))?;
        if e.stat != st {
            return None;
        }
        let fresh = std::rc::Rc::new(Cached {
            body: e.body.clone(),
            mtime: e.mtime,
            etag: e.etag.clone(),
            last_modified: e.last_modified,
            stat: st,
            checked: self.now.unwrap_or_else(std::time::Instant::now),
            gen: writes(),
            memo: std::cell::RefCell::new(e.memo.take()),
        });
        *e = fresh.clone();
        Some(fresh)
    }

    /// The entry for `path` if it may be used without looking at the file at all.
    pub(super) fn fresh(&self, path: &Path) -> Option<std::rc::Rc<Cached>> {
        let e = self.map.get(key(path))?;
        (e.gen == writes() && self.now().duration_since(e.checked) < CACHE_VALID).then(|| e.clone())
    }

    /// After `file` was opened (beneath its root) and found to be `st`: the cached copy when its
    /// validators still match, else a fresh one read now when the file is small; `None` for a
    /// file to stream.
    pub(super) fn load(
        &mut self,
        path: &Path,
        file: &File,
        st: &FileStat,
    ) -> Option<std::rc::Rc<Cached>> {
        let now = self.now();
        let gen = writes();
        if !st.is_file() || st.size > CACHE_FILE_MAX {
            self.forget(path);
            return None;
        }
        if let Some(e) = self.map.get_mut(key(path)) {
            if e.stat == *st {
                let fresh = std::rc::Rc::new(Cached {
                    body: e.body.clone(),
                    mtime: e.mtime,
                    etag: e.etag.clone(),
                    last_modified: e.last_modified,
                    stat: *st,
                    checked: now,
                    gen,
                    memo: std::cell::RefCell::new(e.memo.take()),
                });
                *e = fresh.clone();
                return Some(fresh);
            }
        }
        self.forget(path);
        let mut body = vec![0u8; st.size as usize];
        // Regular files only (checked above): at most 64 KiB, read only when all of it is in
        // the page cache (`RWF_NOWAIT`: never a wait for the disk on the loop's thread).
        // Else, or for a file that shrank under us, it is served uncached (its reads off
        // the loop fill the page cache, and a later request fills this cache).
        use std::os::fd::AsRawFd;
        if !backends::util::read_cached_at(file.as_raw_fd(), &mut body, 0).ok()? {
            return None;
        }
        if self.bytes + entry_cost(path, body.len()) > CACHE_TOTAL_MAX {
            self.map.clear();
            self.bytes = 0;
        }
        let mtime = st.mtime.0.max(0) as u64;
        let entry = std::rc::Rc::new(Cached {
            etag: etag_of(st),
            last_modified: crate::http::date::format_unix(mtime),
            body: body.into(),
            mtime,
            stat: *st,
            checked: now,
            gen,
            memo: Default::default(),
        });
        self.bytes += entry_cost(path, entry.body.len());
        self.map.insert(key(path).into(), entry.clone());
        Some(entry)
    }

    pub(super) fn forget(&mut self, path: &Path) {
        if let Some(old) = self.map.remove(key(path)) {
            self.bytes -= entry_cost(path, old.body.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory named after `tag` and this process, holding an empty file: the
    /// directory, the file opened, and its stat.
    fn empty_file(tag: &str) -> (std::path::PathBuf, File, FileStat) {
        let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("empty");
        std::fs::write(&f, b"").unwrap();
        let file = File::open(&f).unwrap();
        let st = backends::util::fstat(std::os::fd::AsRawFd::as_raw_fd(&file)).unwrap();
        (dir, file, st)
    }

    /// Empty files cost their entry: a directory of them cannot grow the cache without bound.
    #[test]
    fn empty_files_count_against_the_total() {
        let (dir, file, st) = empty_file("webserv-cache");
        let mut c = FileCache::default();
        let most = CACHE_TOTAL_MAX / ENTRY_COST;
        for i in 0..most + 10 {
            let p = dir.join(format!("n{i}"));
            assert!(c.load(&p, &file, &st).is_some(), "entry {i} not kept");
            assert!(c.map.len() <= most, "{} entries after {i}", c.map.len());
            assert!(c.bytes <= CACHE_TOTAL_MAX);
        }
        c.forget(&dir.join(format!("n{}", most + 9)));
        let held: usize = c.map.keys().map(|k| ENTRY_COST + k.len()).sum();
        assert_eq!(c.bytes, held);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Hostile review (session 22): the keys are whole paths, up to PATH_MAX. Entries under
    /// long names must not hold several times the total in keys alone (4,000-byte names: 200 MB
    /// of keys in 52,000 entries when only the 640 B per entry counted).
    #[test]
    fn long_paths_count_against_the_total() {
        let (dir, file, st) = empty_file("webserv-cache-long");
        let mut c = FileCache::default();
        let long = "d/".repeat(2000);
        let rounds = 2 * CACHE_TOTAL_MAX / (ENTRY_COST + long.len());
        for i in 0..rounds {
            let p = dir.join(format!("{long}n{i}"));
            assert!(c.load(&p, &file, &st).is_some(), "entry {i} not kept");
            let held: usize = c.map.keys().map(|k| ENTRY_COST + k.len()).sum();
            assert!(
                held <= CACHE_TOTAL_MAX,
                "{held} bytes held after {i} entries"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
