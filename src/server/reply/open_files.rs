//! The open-file cache (nginx's `open_file_cache`): a file too large for the small-file cache
//! ([`super::cache::CACHE_FILE_MAX`]) keeps its descriptor, its `fstat` and its validators
//! (ETag, Last-Modified) between requests, so a hot large file costs no `openat`, `fstat` or
//! `close` per request — only what sending needs.
//!
//! An entry is keyed by the directory its file was resolved beneath (the location's root or
//! alias), the relative path and the `disable_symlinks` policy, so it is only ever served to a
//! request whose own open would have reached the same file by the same rules. It is trusted
//! without a system call for `open_file_cache_valid` (1 s by default) unless a write through
//! webserv happened since ([`super::cache::note_write`]); past that, the path is looked up
//! again exactly as an uncached open does it (beneath the same directory, with the same
//! symlink rule, from the kernel's caches only on the loop's thread) but with `O_PATH` and one
//! `fstat`, and the entry is kept only when (device, inode, size, mtime and ctime with
//! nanoseconds) all match: a replaced file has a new inode, a rewritten one new times, a
//! `chmod` a new ctime — then the file is opened anew, with the answer an uncached open gives.
//! `if_not_owner` locations (which check every link's owner on each open) are not cached.
//!
//! Descriptors are shared (`Rc`): a response in flight keeps its file open while its entry is
//! evicted or replaced, and whoever holds the last reference closes it through the backend
//! ([`OpenFiles::close_evicted`], or the file task's own close), never while an operation on it
//! may be in flight. Entries unused for `inactive` go (swept once a second), the oldest eighth
//! goes when `max` is reached, and the whole cache goes when the process runs out of
//! descriptors (`EMFILE`/`ENFILE`). At most a quarter of `RLIMIT_NOFILE`, shared by the
//! workers, is ever held.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use backends::util::FileStat;

use super::cache::{FileCache, CACHE_FILE_MAX};
use super::static_file::{file_head, open_beneath, Body, Validators};
use super::{Ctx, Reply, Stream};
use crate::config::{Config, Location, OpenFileCache, Symlinks};
use crate::server::token::{OpTag, Tok};

/// How often entries unused for `inactive` are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A large file kept open with what its responses need.
pub struct OpenEntry {
    pub(super) fd: Rc<OwnedFd>,
    stat: FileStat,
    etag: String,
    last_modified: [u8; 29],
    mtime: u64,
    /// When the file was last looked at, and the write generation then.
    checked: Instant,
    gen: u64,
    /// When a request last used the entry (for `inactive` and eviction).
    used: Instant,
}

/// One worker's open files (see the module docs).
#[derive(Default)]
pub struct OpenFiles {
    map: HashMap<Vec<u8>, OpenEntry>,
    /// The key of the request at hand, built here so a lookup allocates nothing.
    key: Vec<u8>,
    /// Descriptors evicted with no response using them, to close through the backend.
    closing: Vec<OwnedFd>,
    next_sweep: Option<Instant>,
    /// Closes submitted (each one's token is unique).
    closed: u64,
}

impl OpenFiles {
    fn set_key(&mut self, anchor: &Path, rel: &str, policy: Symlinks) {
        self.key.clear();
        self.key.push(match policy {
            Symlinks::Follow => b'f',
            Symlinks::Refuse => b'r',
            Symlinks::IfSameOwner => b'o',
        });
        self.key.extend_from_slice(anchor.as_os_str().as_bytes());
        self.key.push(0);
        self.key.extend_from_slice(rel.as_bytes());
    }

    /// Drop `e`; its descriptor is closed (by [`OpenFiles::close_evicted`]) unless a response
    /// still sends from it (that response's task closes it then).
    fn retire(closing: &mut Vec<OwnedFd>, e: OpenEntry) {
        if let Ok(fd) = Rc::try_unwrap(e.fd) {
            closing.push(fd);
        }
    }

    /// Forget every entry (a reload, or the process out of descriptors).
    pub fn clear(&mut self) {
        for (_, e) in self.map.drain() {
            Self::retire(&mut self.closing, e);
        }
    }

    fn sweep(&mut self, now: Instant, inactive: Duration) {
        if self.next_sweep.is_some_and(|t| now < t) {
            return;
        }
        self.next_sweep = Some(now + SWEEP_EVERY);
        let idle =
            |_: &Vec<u8>, e: &mut OpenEntry| now.saturating_duration_since(e.used) >= inactive;
        for (_, e) in self.map.extract_if(idle) {
            Self::retire(&mut self.closing, e);
        }
    }

    /// Make room for one more entry: the oldest eighth goes (at least one).
    fn evict_oldest(&mut self) {
        let mut ages: Vec<Instant> = self.map.values().map(|e| e.used).collect();
        let n = (ages.len() / 8).max(1).min(ages.len());
        if n == 0 {
            return;
        }
        let (_, cut, _) = ages.select_nth_unstable(n - 1);
        let cut = *cut;
        for (_, e) in self.map.extract_if(|_, e| e.used <= cut) {
            Self::retire(&mut self.closing, e);
        }
    }

    /// Close what was evicted (after routing a request: no operation is in flight on these
    /// descriptors, so the close only returns the number; through the backend all the same).
    pub fn close_evicted(&mut self, be: &mut dyn backends::Backend) {
        for fd in self.closing.drain(..) {
            // A close nobody waits for (the loop ignores its completion), under a token of its
            // own (a count; task 1 keeps it apart from the loop's refused-connection closes).
            self.closed += 1;
            let n = self.closed;
            let t = Tok::new((n >> 20) as u32, n as u32, 1, OpTag::RefuseClose);
            be.submit(
                t.encode(),
                backends::Op::Close {
                    fd: fd.into_raw_fd(),
                },
            );
        }
    }

    /// How many files are held open (for tests and the status page).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// A quarter of the process's descriptor limit, shared by its workers.
fn budget(cfg: &Config) -> usize {
    // Read once: the server raised the soft limit to the hard one before its loops started.
    static NOFILE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let nofile = *NOFILE.get_or_init(backends::util::nofile_limit);
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let workers = match cfg.workers {
        crate::config::Workers::Count(n) => n,
        crate::config::Workers::Auto => {
            *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        }
    } as u64;
    usize::try_from(nofile / 4 / workers.max(1)).unwrap_or(usize::MAX)
}

fn cacheable(loc: &Location, path: &str, conf: &OpenFileCache) -> bool {
    conf.max > 0 && !path.ends_with('/') && loc.disable_symlinks != Symlinks::IfSameOwner
}

/// Set the cache's key to `path` in `loc` when the cache may hold that file: the name
/// beneath the location's directory, and the loop turn's time.
fn keyed<'p>(
    cache: &mut FileCache,
    loc: &'p Location,
    path: &'p str,
    conf: &OpenFileCache,
) -> Option<(&'p str, Instant)> {
    if !cacheable(loc, path, conf) {
        return None;
    }
    let (anchor, rel) = super::map::resolve_ref(loc, path)?;
    cache.open.set_key(anchor, rel, loc.disable_symlinks);
    Some((rel, cache.now()))
}

/// The answer from a cached entry trusted as it is (within `open_file_cache_valid`, no write
/// through webserv since): no system call.
pub(super) fn hit(
    cache: &mut FileCache,
    loc: &Location,
    path: &str,
    cfg: &Config,
    cx: &Ctx,
) -> Option<Reply> {
    let conf = &cfg.open_file_cache;
    let (_, now) = keyed(cache, loc, path, conf)?;
    let of = &mut cache.open;
    of.sweep(now, conf.inactive);
    let e = of.map.get_mut(of.key.as_slice())?;
    if e.gen != super::cache::writes() || now.saturating_duration_since(e.checked) >= conf.valid {
        return None;
    }
    e.used = now;
    Some(serve(e, path, cfg, cx))
}

/// An entry past its validity checked again: `rel` looked up beneath `anchor` as an uncached
/// open would (only from the kernel's caches when `cx.cached_lookups`), with `O_PATH`, and
/// `fstat`. The answer from the entry when the file is the very same, unchanged; else the
/// entry is dropped and `None` (the caller opens the file, and answers as it finds it).
pub(super) fn revalidated(
    cache: &mut FileCache,
    anchor_fd: RawFd,
    loc: &Location,
    path: &str,
    cfg: &Config,
    cx: &Ctx,
) -> Option<Reply> {
    let (rel, now) = keyed(cache, loc, path, &cfg.open_file_cache)?;
    let of = &mut cache.open;
    if !of.map.contains_key(of.key.as_slice()) {
        return None;
    }
    let nofollow = loc.disable_symlinks == Symlinks::Refuse;
    let flags = backends::util::O_LOOKUP;
    let st = open_beneath(anchor_fd, rel, flags, nofollow, cx.cached_lookups)
        .and_then(|fd| backends::util::fstat(fd.as_raw_fd()));
    match st {
        Ok(st) if of.map.get(of.key.as_slice()).is_some_and(|e| e.stat == st) => {
            let e = of.map.get_mut(of.key.as_slice())?;
            e.checked = now;
            e.gen = super::cache::writes();
            e.used = now;
            Some(serve(e, path, cfg, cx))
        }
        _ => {
            if let Some(e) = of.map.remove(of.key.as_slice()) {
                OpenFiles::retire(&mut of.closing, e);
            }
            None
        }
    }
}

/// After an uncached open found `fd` to be `st`: a regular file too large for the small-file
/// cache is kept, and answered from its new entry; anything else is handed back.
#[allow(clippy::too_many_arguments)]
pub(super) fn adopt(
    cache: &mut FileCache,
    loc: &Location,
    path: &str,
    fs_path: &Path,
    fd: OwnedFd,
    st: &FileStat,
    cfg: &Config,
    cx: &Ctx,
) -> Result<Reply, OwnedFd> {
    let conf = &cfg.open_file_cache;
    if !st.is_file() || st.size <= CACHE_FILE_MAX {
        return Err(fd);
    }
    let Some((_, now)) = keyed(cache, loc, path, conf) else {
        return Err(fd);
    };
    // A small file that grew: its copy in memory is stale.
    cache.forget(fs_path);
    let cap = conf.max.min(budget(cfg));
    let of = &mut cache.open;
    of.sweep(now, conf.inactive);
    if let Some(old) = of.map.remove(of.key.as_slice()) {
        OpenFiles::retire(&mut of.closing, old);
    }
    if cap == 0 {
        return Err(fd);
    }
    if of.map.len() >= cap {
        of.evict_oldest();
    }
    let mtime = st.mtime.0.max(0) as u64;
    let e = OpenEntry {
        fd: Rc::new(fd),
        stat: *st,
        etag: super::cache::etag_of(st),
        last_modified: crate::http::date::format_unix(mtime),
        mtime,
        checked: now,
        gen: super::cache::writes(),
        used: now,
    };
    let reply = serve(&e, path, cfg, cx);
    of.map.insert(of.key.clone(), e);
    Ok(reply)
}

/// An open of a file failed with `e`: out of descriptors, the cache gives back all it holds.
pub(super) fn on_open_error(cache: &mut FileCache, e: &std::io::Error) {
    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) && !cache.open.is_empty() {
        crate::warn!(
            "out of file descriptors: the open-file cache closes its {} files",
            cache.open.len()
        );
        cache.open.clear();
    }
}

/// The response from an entry: its head built from the kept validators, its body the shared
/// descriptor (several ranges: a duplicate of it, streamed as any file).
fn serve(e: &OpenEntry, uri: &str, cfg: &Config, cx: &Ctx) -> Reply {
    let v = Validators {
        len: e.stat.size,
        mtime: e.mtime,
        etag: &e.etag,
        last_modified: &e.last_modified,
    };
    let (status, head, offset, count) = match file_head(&v, uri, cfg, cx, Body::Shared(&e.fd)) {
        Ok(h) => h,
        Err(reply) => return reply,
    };
    if cx.head_only || count == 0 {
        return Reply::Full {
            status,
            head,
            body: backends::Body::Empty,
        };
    }
    Reply::File {
        status,
        head,
        file: Stream::Shared(e.fd.clone()),
        offset,
        len: count,
    }
}
