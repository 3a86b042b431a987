//! Lookups that never block the loop, and what a held request learnt from the ones done off
//! it.
//!
//! Every lookup made while routing a request goes through [`open_cached`]: an answer the
//! kernel's caches have (`openat2(RESOLVE_CACHED)`), or `EAGAIN`. On `EAGAIN` the miss is
//! recorded (which directory, which path, which flags) and the routing answers
//! `Route::Lookup`: the request's head is held and a `lookup` task has *that very open*
//! (same directory, path, flags and symlink policy) done off the loop's thread by the backend
//! (`Op::OpenAt`). Its result — the fd it opened, or its error — is handed to the next routing
//! of the request ([`Resolved`], kept with the held head): that routing runs with the results
//! installed ([`with_known`]), and the lookup that missed before now takes its answer from
//! them instead of asking the kernel's caches again. A routing that needs several lookups
//! (a directory, then its index file; `try_files` candidates; an upload store, then the
//! target's name) may be held once per lookup that misses, each time with one more answer.
//!
//! Why hand the result over rather than route again with the caches just warmed: the warm-up
//! may not last (memory pressure), and where the caches cannot be asked at all — a kernel
//! without `RESOLVE_CACHED` (< 5.12), the BSDs, or `WEBSERV_NO_CACHED_CALLS=1` /
//! `WEBSERV_COLD_LOOKUPS=1` in tests — every cached attempt misses, and only the handed-over
//! answers let the routing finish. It is also the exact answer of the open the routing
//! wanted, made once.
//!
//! Termination: each hold adds the answer of one distinct lookup, and a routing makes a
//! bounded number of lookups; a request held [`MAX_HOLDS`] times anyway (a lookup whose answer
//! the routing cannot use) is routed once more with the plain, blocking calls, and says so in
//! the error log — never a loop.
//!
//! The state lives in a thread-local for the duration of one routing: the call sites (the
//! static file path, `try_files`, the upload store) are many and deep, and a routing never
//! spans two threads or two requests.

use std::cell::RefCell;
use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use backends::util;

/// How many times one request may be held for lookups before it is routed with blocking calls.
pub const MAX_HOLDS: u8 = 16;

/// Which open a result answers: the directory (by device and inode, whatever fd names it),
/// the path beneath it, the flags and the symlink policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    dev: u64,
    ino: u64,
    rel: Vec<u8>,
    flags: libc::c_int,
    no_symlinks: bool,
}

impl Key {
    fn of(anchor: RawFd, rel: &OsStr, flags: libc::c_int, no_symlinks: bool) -> Option<Key> {
        // fstat of an open fd reads the inode already in memory: it never waits for the disk.
        let st = util::fstat(anchor).ok()?;
        Some(Key {
            dev: st.dev,
            ino: st.ino,
            rel: rel.as_bytes().to_vec(),
            flags,
            no_symlinks,
        })
    }
}

/// The answer of a lookup done off the loop's thread: the fd it opened, or its errno.
#[derive(Debug)]
pub struct Resolved {
    key: Key,
    result: Result<OwnedFd, i32>,
}

impl Resolved {
    /// The result of the lookup op `key` named (an fd the completion handed over, adopted).
    pub fn new(key: Key, result: &io::Result<usize>) -> Resolved {
        let result = match result {
            Ok(fd) => util::adopt_fd(*fd as RawFd).map_err(|e| e.raw_os_error().unwrap_or(0)),
            Err(e) => Err(e.raw_os_error().unwrap_or(libc::EIO)),
        };
        Resolved { key, result }
    }
}

/// A lookup the kernel's caches could not answer: the open to do off the loop's thread.
#[derive(Debug)]
pub struct Miss {
    pub key: Key,
    /// A duplicate of the directory's fd (the op owns it).
    pub dir: OwnedFd,
    pub rel: CString,
    pub flags: libc::c_int,
    pub no_symlinks: bool,
}

#[derive(Default)]
struct State {
    known: Vec<Resolved>,
    miss: Option<Miss>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::default();
}

/// Run one routing (`f`) with `known` — the answers a held request collected — installed;
/// they are given back after. The last lookup that missed during it is kept for
/// [`take_miss`].
pub fn with_known<R>(known: &mut Vec<Resolved>, f: impl FnOnce() -> R) -> R {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.miss = None;
        std::mem::swap(&mut s.known, known);
    });
    let r = f();
    STATE.with(|s| std::mem::swap(&mut s.borrow_mut().known, known));
    r
}

/// The lookup that made the last routing answer `Route::Lookup`, if it was recorded.
pub fn take_miss() -> Option<Miss> {
    STATE.with(|s| s.borrow_mut().miss.take())
}

/// `rel` opened beneath `anchor` (contained; no symlink followed with `no_symlinks`) without
/// ever waiting for the disk: a held request's answer for this very open when it has one,
/// else the kernel's caches (`RESOLVE_CACHED`), else `EAGAIN` — recorded as the miss to
/// look up off the loop.
pub fn open_cached(
    anchor: RawFd,
    rel: &OsStr,
    flags: libc::c_int,
    no_symlinks: bool,
) -> io::Result<OwnedFd> {
    let known = STATE.with(|s| {
        let s = s.borrow();
        if s.known.is_empty() {
            return None;
        }
        let key = Key::of(anchor, rel, flags, no_symlinks)?;
        s.known
            .iter()
            .find(|r| r.key == key)
            .map(|r| match &r.result {
                Ok(fd) => util::dup_fd(fd.as_raw_fd()),
                Err(errno) => Err(io::Error::from_raw_os_error(*errno)),
            })
    });
    if let Some(r) = known {
        return r;
    }
    match util::open_beneath_cached(anchor, rel, flags, no_symlinks) {
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
            let miss = Key::of(anchor, rel, flags, no_symlinks).and_then(|key| {
                Some(Miss {
                    key,
                    dir: util::dup_fd(anchor).ok()?,
                    rel: CString::new(rel.as_bytes()).ok()?,
                    flags,
                    no_symlinks,
                })
            });
            STATE.with(|s| s.borrow_mut().miss = miss);
            Err(e)
        }
        r => r,
    }
}
