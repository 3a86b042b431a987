//! Atomic upload files: content goes to a hidden temp file in the destination directory and
//! appears under its final name only when complete. An aborted upload (413, client gone,
//! parse error) leaves nothing behind, and a reader never sees a half-written file.
//!
//! Everything is relative to a directory fd ([`StoreDir`]) opened beneath the upload store
//! with no symlink followed (`openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`): the temp file is
//! created, renamed and removed by name *in that directory*, so nothing done here can land
//! outside it, whatever a name or a planted symlink says.

use std::collections::hash_map::RandomState;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use backends::util;

/// How many random-suffix names a no-clobber commit tries after the wanted name is taken.
/// With 32 random bits each, a collision of all of them means something is wrong.
pub const MAX_RENAME_TRIES: u32 = 8;
/// The longest file name (bytes) the file systems we run on take (`NAME_MAX`).
pub const NAME_MAX: usize = 255;

/// A directory uploads land in, held open: every name below is resolved in it.
#[derive(Debug, Clone)]
pub struct StoreDir(Rc<OwnedFd>);

impl StoreDir {
    /// `rel` (a relative path, `""` for the store itself) beneath `store`, following no
    /// symlink on the way (a symlinked directory in a store is refused, `ELOOP`).
    pub fn open(store: &Path, rel: &str) -> io::Result<StoreDir> {
        let anchor = util::open_dir(store)?;
        StoreDir::open_at(anchor.as_raw_fd(), rel)
    }

    /// Like [`open`](Self::open), beneath an already open store directory.
    pub fn open_at(anchor: RawFd, rel: &str) -> io::Result<StoreDir> {
        let rel = if rel.is_empty() { "." } else { rel };
        let fd = util::open_beneath(
            anchor,
            OsStr::new(rel),
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
            true,
        )?;
        Ok(StoreDir(Rc::new(fd)))
    }

    /// A store directory opened elsewhere (beneath its store, no symlink followed).
    pub fn from_fd(fd: OwnedFd) -> StoreDir {
        StoreDir(Rc::new(fd))
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// A random 32-bit value: `RandomState`'s keys are seeded from the OS once per thread and
/// perturbed per instance; a process-wide counter makes every call's input distinct. No
/// system call.
pub fn random_u32() -> u32 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish() as u32
}

/// An upload in progress: a temp file `.upload-<random>.tmp`, removed on drop unless committed.
#[derive(Debug)]
pub struct AtomicFile {
    /// INVARIANT: `Some` until abandoned.
    file: Option<File>,
    dir: StoreDir,
    /// INVARIANT: `Some` until committed; the temp file exists while it is `Some`.
    tmp: Option<OsString>,
    len: u64,
}

/// A name no other upload (in this or another process) is likely to pick; `O_EXCL` settles any
/// collision.
fn random_name() -> String {
    format!(".upload-{:08x}{:08x}.tmp", random_u32(), random_u32())
}

/// How a commit ended, for the status: the name it landed under and whether it is new.
pub type Landed = (String, bool);

impl AtomicFile {
    /// Create the temp file in `dir`, where it will be committed (rename stays in one
    /// directory). `O_EXCL | O_NOFOLLOW`: a planted file or symlink is never written through;
    /// mode 0644 less the umask.
    pub fn create_in(dir: &StoreDir) -> io::Result<AtomicFile> {
        let mut last = None;
        for _ in 0..8 {
            let name = OsString::from(random_name());
            let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
            match util::openat(dir.fd(), &name, flags, 0o644) {
                Ok(fd) => {
                    return Ok(AtomicFile {
                        file: Some(File::from(fd)),
                        dir: dir.clone(),
                        tmp: Some(name),
                        len: 0,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::ErrorKind::AlreadyExists.into()))
    }

    /// The op that creates a temp file in `dir` off the loop's thread (`O_CREAT | O_EXCL |
    /// O_NOFOLLOW`, a random hidden name, mode 0644 less the umask). Its completion gives the
    /// fd and, in its `Buf::Path`, the name: make the file with [`opened`](Self::opened). An
    /// `EEXIST` (a name taken) is retried with a new op.
    pub fn create_op(dir: &StoreDir) -> io::Result<backends::Op> {
        Ok(backends::Op::OpenAt(backends::Open {
            dir: util::dup_fd(dir.fd())?,
            path: c_name(OsStr::new(&random_name()))?,
            flags: libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
            mode: 0o644,
            beneath: false,
            no_symlinks: false,
        }))
    }

    /// The temp file a [`create_op`](Self::create_op) made: `fd`, named `tmp` in `dir`.
    pub fn opened(fd: OwnedFd, dir: StoreDir, tmp: OsString) -> AtomicFile {
        AtomicFile {
            file: Some(File::from(fd)),
            dir,
            tmp: Some(tmp),
            len: 0,
        }
    }

    /// The temp file's fd, for backend write ops (at offset [`len`](Self::len)); report
    /// completed writes with [`advance`](Self::advance).
    pub fn fd(&self) -> RawFd {
        self.file.as_ref().map_or(-1, |f| f.as_raw_fd())
    }

    /// Record `n` bytes written through [`fd`](Self::fd) by the loop.
    pub fn advance(&mut self, n: u64) {
        self.len += n;
    }

    /// Synchronous fallback: append `data`.
    pub fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        let Some(f) = self.file.as_mut() else {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        };
        f.write_all(data)?;
        self.len += data.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Give up the upload: remove the temp file by name now, and hand back its fd for the
    /// caller to close through the backend (a write op may still be in flight on it, so the
    /// fd number must not be freed before that op completes).
    pub fn abandon(mut self) -> RawFd {
        if let Some(tmp) = self.tmp.take() {
            let _ = util::unlinkat(self.dir.fd(), &tmp);
        }
        self.file
            .take()
            .map_or(-1, std::os::fd::IntoRawFd::into_raw_fd)
    }

    /// The directory the file will land in.
    pub fn dir(&self) -> &StoreDir {
        &self.dir
    }

    /// The rename that gives the content the name `to` (one component) in its directory, as
    /// a backend op run off the loop's thread: `noreplace` (a POST upload) never overwrites
    /// (`EEXIST`: try [`suffixed`] names, at most [`MAX_RENAME_TRIES`]); otherwise (PUT) it
    /// replaces `to` atomically — a directory there fails with `EISDIR`. Once it succeeded,
    /// call [`committed`](Self::committed).
    pub fn rename_op(&self, to: &str, noreplace: bool) -> io::Result<backends::Op> {
        let Some(tmp) = self.tmp.as_ref() else {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        };
        Ok(backends::Op::RenameAt(backends::Rename {
            dir: util::dup_fd(self.dir.fd())?,
            from: c_name(tmp)?,
            to: c_name(OsStr::new(to))?,
            noreplace,
        }))
    }

    /// The rename op succeeded: the temp name is gone. Returns the fd, for the caller to close
    /// through the backend.
    pub fn committed(mut self) -> RawFd {
        self.tmp = None;
        self.file
            .take()
            .map_or(-1, std::os::fd::IntoRawFd::into_raw_fd)
    }

    /// Give up the upload through the backend: the op that removes the temp file (`None` when
    /// there is none) and the fd to close with an `Op::Close` (a write op may still be in
    /// flight on it). Nothing is removed on the loop's thread.
    pub fn discard(mut self) -> (Option<backends::Op>, RawFd) {
        let unlink = self
            .tmp
            .take()
            .and_then(|tmp| unlink_op(&self.dir, &tmp).ok());
        let fd = self
            .file
            .take()
            .map_or(-1, std::os::fd::IntoRawFd::into_raw_fd);
        (unlink, fd)
    }

    /// Give the content its final `name` (one component) in its directory, returning the name
    /// it landed under and whether a new file was created (201) rather than one replaced (204).
    ///
    /// - `replace` (PUT): `renameat(2)` over `name`, atomic; only a regular file is replaced —
    ///   a symlink, directory or anything else there is refused (`EPERM`; `EISDIR`).
    /// - otherwise (POST upload): never overwrite. `renameat2(RENAME_NOREPLACE)` to `name`, then
    ///   to at most [`MAX_RENAME_TRIES`] names with a random suffix (`stem-1a2b3c4d.ext`, the
    ///   stem trimmed so the name stays within [`NAME_MAX`]): O(1) system calls per file.
    ///
    /// On error the temp file is removed.
    pub fn commit(mut self, name: &str, replace: bool) -> io::Result<Landed> {
        let Some(tmp) = self.tmp.clone() else {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        };
        let dir = self.dir.fd();
        let landed = if replace {
            let existed = match util::fstatat(dir, OsStr::new(name), false) {
                Ok(st) if st.is_file() => true,
                Ok(st) if st.is_dir() => return Err(io::Error::from_raw_os_error(libc::EISDIR)),
                Ok(_) => return Err(io::Error::from_raw_os_error(libc::EPERM)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                Err(e) => return Err(e),
            };
            util::renameat(dir, &tmp, OsStr::new(name), false)?;
            (name.to_string(), !existed)
        } else {
            let mut n = 0;
            loop {
                let candidate = if n == 0 {
                    name.to_string()
                } else {
                    suffixed(name, random_u32())
                };
                match util::renameat(dir, &tmp, OsStr::new(&candidate), true) {
                    Ok(()) => break (candidate, true),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        n += 1;
                        if n > MAX_RENAME_TRIES {
                            return Err(e);
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        self.tmp = None;
        Ok(landed)
    }
}

/// `stem-<8 hex>.ext` for `stem.ext` (`name-<8 hex>` without extension), the stem trimmed (at
/// a char boundary) so that the whole stays within [`NAME_MAX`] bytes.
pub fn suffixed(name: &str, r: u32) -> String {
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 && name.len() - i <= 16 => name.split_at(i),
        _ => (name, ""),
    };
    let tail = format!("-{r:08x}{ext}");
    let mut cut = stem.len().min(NAME_MAX.saturating_sub(tail.len()));
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{tail}", &stem[..cut])
}

/// Remove a committed file by name (rolling back a multipart upload that failed later).
pub fn remove(dir: &StoreDir, name: &str) -> io::Result<()> {
    util::unlinkat(dir.fd(), OsStr::new(name))
}

/// The op that removes `name` (one component, never followed if a symlink) from `dir`, off
/// the loop's thread.
pub fn unlink_op(dir: &StoreDir, name: &OsStr) -> io::Result<backends::Op> {
    Ok(backends::Op::UnlinkAt(backends::Unlink {
        dir: util::dup_fd(dir.fd())?,
        path: c_name(name)?,
        rmdir: false,
    }))
}

fn c_name(name: &OsStr) -> io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(name.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = util::unlinkat(self.dir.fd(), &tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let d = std::env::temp_dir().join(format!(
                "webserv-atomic-{tag}-{}{}",
                std::process::id(),
                random_name()
            ));
            fs::create_dir_all(&d).unwrap();
            TempDir(d)
        }
        fn store(&self) -> StoreDir {
            StoreDir::open(&self.0, "").unwrap()
        }
        fn names(&self) -> Vec<String> {
            let mut v: Vec<String> = fs::read_dir(&self.0)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn drop_removes_temp_file() {
        let d = TempDir::new("drop");
        let mut f = AtomicFile::create_in(&d.store()).unwrap();
        f.write_all(b"partial").unwrap();
        let names = d.names();
        assert_eq!(names.len(), 1);
        assert!(
            names[0].starts_with(".upload-") && names[0].ends_with(".tmp"),
            "{names:?}"
        );
        let mode = fs::metadata(d.0.join(&names[0]))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7022, 0, "{mode:o}");
        drop(f);
        assert!(d.names().is_empty());
    }

    #[test]
    fn no_clobber_commit_suffixes_names() {
        let d = TempDir::new("noclobber");
        fs::write(d.0.join("report.pdf"), b"old").unwrap();
        let mut f = AtomicFile::create_in(&d.store()).unwrap();
        f.write_all(b"new ").unwrap();
        f.write_all(b"content").unwrap();
        assert_eq!(f.len(), 11);
        let (landed, created) = f.commit("report.pdf", false).unwrap();
        assert!(created);
        assert!(
            landed.starts_with("report-") && landed.ends_with(".pdf") && landed.len() == 19,
            "{landed}"
        );
        assert_eq!(fs::read(d.0.join(&landed)).unwrap(), b"new content");
        assert_eq!(fs::read(d.0.join("report.pdf")).unwrap(), b"old");
        assert_eq!(d.names().len(), 2);
        let f = AtomicFile::create_in(&d.store()).unwrap();
        assert_eq!(f.commit("fresh", false).unwrap(), ("fresh".into(), true));
    }

    #[test]
    fn suffix_keeps_name_max() {
        let long = format!("{}.txt", "n".repeat(251));
        let s = suffixed(&long, 0xdead_beef);
        assert_eq!(s.len(), 255);
        assert!(s.ends_with("-deadbeef.txt"), "{s}");
        let wide = "é".repeat(200);
        let s = suffixed(&wide, 1);
        assert!(s.len() <= 255 && s.ends_with("-00000001"), "{s}");
        assert_eq!(suffixed("a.tar.gz", 2), "a.tar-00000002.gz");
        assert_eq!(suffixed(".x", 3), ".x-00000003");
    }

    #[test]
    fn replace_commit_renames_over() {
        let d = TempDir::new("replace");
        let mut f = AtomicFile::create_in(&d.store()).unwrap();
        f.write_all(b"one").unwrap();
        assert_eq!(f.commit("a.txt", true).unwrap(), ("a.txt".into(), true));
        let mut f = AtomicFile::create_in(&d.store()).unwrap();
        f.write_all(b"two").unwrap();
        assert_eq!(f.commit("a.txt", true).unwrap(), ("a.txt".into(), false));
        assert_eq!(fs::read(d.0.join("a.txt")).unwrap(), b"two");
        assert_eq!(d.names(), ["a.txt"]);
    }

    #[test]
    fn symlinks_are_never_written_or_replaced() {
        let d = TempDir::new("symlink");
        let outside = TempDir::new("outside");
        fs::write(outside.0.join("target"), b"keep").unwrap();
        std::os::unix::fs::symlink(outside.0.join("target"), d.0.join("link")).unwrap();
        std::os::unix::fs::symlink(&outside.0, d.0.join("dirlink")).unwrap();
        let f = AtomicFile::create_in(&d.store()).unwrap();
        assert!(f.commit("link", true).is_err());
        assert_eq!(fs::read(outside.0.join("target")).unwrap(), b"keep");
        assert!(fs::symlink_metadata(d.0.join("link"))
            .unwrap()
            .file_type()
            .is_symlink());
        let e = StoreDir::open(&d.0, "dirlink").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
        assert!(StoreDir::open(&d.0, "../").is_err());
        assert_eq!(d.names(), ["dirlink", "link"]);
    }

    #[test]
    fn failed_commit_leaves_nothing() {
        let d = TempDir::new("fail");
        let f = AtomicFile::create_in(&d.store()).unwrap();
        assert!(f.commit("no/such/dir", false).is_err());
        assert!(d.names().is_empty());
        assert!(StoreDir::open(&d.0, "missing").is_err());
    }

    #[test]
    fn fd_writes_and_advance() {
        let d = TempDir::new("fd");
        let mut f = AtomicFile::create_in(&d.store()).unwrap();
        // Stand-in for a backend write op on the raw fd.
        let mut dup = fs::File::from(
            std::os::fd::AsFd::as_fd(f.file.as_ref().unwrap())
                .try_clone_to_owned()
                .unwrap(),
        );
        assert_ne!(dup.as_raw_fd(), f.fd());
        dup.write_all(b"xyz").unwrap();
        f.advance(3);
        assert_eq!((f.len(), f.is_empty()), (3, false));
        let (landed, _) = f.commit("up.bin", false).unwrap();
        assert_eq!(fs::read(d.0.join(landed)).unwrap(), b"xyz");
    }
}
