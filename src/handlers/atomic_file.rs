//! Atomic upload files: content goes to a hidden temp file in the destination directory and
//! appears under its final name only when complete. An aborted upload (413, client gone,
//! parse error) leaves nothing behind, and a reader never sees a half-written file.

use std::collections::hash_map::RandomState;
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// How many `name-N.ext` alternatives a no-clobber commit tries before giving up.
pub const MAX_RENAME_TRIES: u32 = 1000;

/// An upload in progress: a temp file `.upload-<random>.tmp`, removed on drop unless committed.
#[derive(Debug)]
pub struct AtomicFile {
    file: File,
    /// INVARIANT: `Some` until committed; the temp file exists while it is `Some`.
    tmp: Option<PathBuf>,
    len: u64,
}

/// A name no other upload (in this or another process) is likely to pick; `create_new`
/// settles any collision.
fn random_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded from the OS once per process and perturbed per instance.
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    format!(".upload-{:016x}.tmp", h.finish())
}

impl AtomicFile {
    /// Create the temp file in `dir`, which must be where the file will be committed (same
    /// file system: `rename` and `link` do not cross them).
    ///
    /// `O_NOFOLLOW` and `create_new` (`O_EXCL`) mean a planted symlink or existing file is never
    /// written through; mode 0644 (less the umask).
    pub fn create_in(dir: &Path) -> io::Result<AtomicFile> {
        let mut last = None;
        for _ in 0..8 {
            let path = dir.join(random_name());
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(AtomicFile {
                        file,
                        tmp: Some(path),
                        len: 0,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::ErrorKind::AlreadyExists.into()))
    }

    /// The temp file's fd, for backend write ops (at offset [`len`](Self::len)); report
    /// completed writes with [`advance`](Self::advance).
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Record `n` bytes written through [`fd`](Self::fd) by the loop.
    pub fn advance(&mut self, n: u64) {
        self.len += n;
    }

    /// Synchronous fallback: append `data`.
    pub fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data)?;
        self.len += data.len() as u64;
        Ok(())
    }

    /// Bytes written so far (by [`write_all`](Self::write_all) or recorded by
    /// [`advance`](Self::advance)).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where the content is while uncommitted.
    pub fn temp_path(&self) -> &Path {
        self.tmp.as_deref().unwrap_or(Path::new(""))
    }

    /// Give the content its final name, returning where it landed and whether a new file was
    /// created (201) rather than one replaced (200/204).
    ///
    /// - `replace` (PUT): `rename(2)` over `dest`, atomic; a symlink at `dest` is replaced,
    ///   never followed.
    /// - otherwise (POST upload): never overwrite. `link(2)` fails on an existing name, so it
    ///   tries `dest`, then `stem-1.ext`, `stem-2.ext`, … up to [`MAX_RENAME_TRIES`].
    ///
    /// On error the temp file is removed.
    pub fn commit(mut self, dest: &Path, replace: bool) -> io::Result<(PathBuf, bool)> {
        let tmp = self
            .tmp
            .clone()
            .expect("uncommitted AtomicFile has a temp path");
        let landed = if replace {
            let existed = dest.symlink_metadata().is_ok();
            std::fs::rename(&tmp, dest)?;
            (dest.to_path_buf(), !existed)
        } else {
            let mut n = 0;
            loop {
                let candidate = if n == 0 {
                    dest.to_path_buf()
                } else {
                    numbered(dest, n)
                };
                match std::fs::hard_link(&tmp, &candidate) {
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
        // The content now lives under its final name; the temp name is only a second link
        // (or gone, after rename).
        self.tmp = None;
        if !replace {
            let _ = std::fs::remove_file(&tmp);
        }
        Ok(landed)
    }
}

/// `dir/stem-n.ext` for `dir/stem.ext` (`dir/name-n` without extension).
fn numbered(dest: &Path, n: u32) -> PathBuf {
    let stem = dest.file_stem().unwrap_or_default().to_string_lossy();
    let name = match dest.extension() {
        Some(ext) => format!("{stem}-{n}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{n}"),
    };
    dest.with_file_name(name)
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

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
        let mut f = AtomicFile::create_in(&d.0).unwrap();
        f.write_all(b"partial").unwrap();
        let name = f
            .temp_path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            name.starts_with(".upload-") && name.ends_with(".tmp"),
            "{name}"
        );
        assert_eq!(d.names(), vec![name]);
        let mode = fs::metadata(f.temp_path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o7022, 0, "{mode:o}");
        drop(f);
        assert!(d.names().is_empty());
    }

    #[test]
    fn no_clobber_commit_numbers_names() {
        let d = TempDir::new("noclobber");
        let dest = d.0.join("report.pdf");
        fs::write(&dest, b"old").unwrap();
        fs::write(d.0.join("report-1.pdf"), b"old1").unwrap();
        let mut f = AtomicFile::create_in(&d.0).unwrap();
        f.write_all(b"new ").unwrap();
        f.write_all(b"content").unwrap();
        assert_eq!(f.len(), 11);
        let (landed, created) = f.commit(&dest, false).unwrap();
        assert_eq!(landed, d.0.join("report-2.pdf"));
        assert!(created);
        assert_eq!(fs::read(&landed).unwrap(), b"new content");
        assert_eq!(fs::read(&dest).unwrap(), b"old");
        assert_eq!(d.names(), ["report-1.pdf", "report-2.pdf", "report.pdf"]);

        let f = AtomicFile::create_in(&d.0).unwrap();
        let (landed, created) = f.commit(&d.0.join("fresh"), false).unwrap();
        assert_eq!((landed, created), (d.0.join("fresh"), true));
        fs::write(d.0.join("noext"), b"").unwrap();
        let f = AtomicFile::create_in(&d.0).unwrap();
        let (landed, _) = f.commit(&d.0.join("noext"), false).unwrap();
        assert_eq!(landed, d.0.join("noext-1"));
    }

    #[test]
    fn replace_commit_renames_over() {
        let d = TempDir::new("replace");
        let dest = d.0.join("a.txt");
        let mut f = AtomicFile::create_in(&d.0).unwrap();
        f.write_all(b"one").unwrap();
        assert_eq!(f.commit(&dest, true).unwrap(), (dest.clone(), true));
        let mut f = AtomicFile::create_in(&d.0).unwrap();
        f.write_all(b"two").unwrap();
        assert_eq!(f.commit(&dest, true).unwrap(), (dest.clone(), false));
        assert_eq!(fs::read(&dest).unwrap(), b"two");
        assert_eq!(d.names(), ["a.txt"]);
    }

    #[test]
    fn replace_does_not_follow_symlink() {
        let d = TempDir::new("symlink");
        let target = d.0.join("target");
        fs::write(&target, b"keep").unwrap();
        let link = d.0.join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let mut f = AtomicFile::create_in(&d.0).unwrap();
        f.write_all(b"new").unwrap();
        assert_eq!(f.commit(&link, true).unwrap(), (link.clone(), false));
        assert_eq!(fs::read(&target).unwrap(), b"keep");
        assert!(!fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn failed_commit_leaves_nothing() {
        let d = TempDir::new("fail");
        let f = AtomicFile::create_in(&d.0).unwrap();
        assert!(f.commit(&d.0.join("no/such/dir"), false).is_err());
        assert!(d.names().is_empty());
        assert!(AtomicFile::create_in(&d.0.join("missing")).is_err());
    }

    #[test]
    fn fd_writes_and_advance() {
        let d = TempDir::new("fd");
        let mut f = AtomicFile::create_in(&d.0).unwrap();
        // Stand-in for a backend write op on the raw fd.
        let mut dup = fs::File::from(
            std::os::fd::AsFd::as_fd(&f.file)
                .try_clone_to_owned()
                .unwrap(),
        );
        assert_ne!(dup.as_raw_fd(), f.fd());
        dup.write_all(b"xyz").unwrap();
        f.advance(3);
        assert_eq!((f.len(), f.is_empty()), (3, false));
        let (landed, _) = f.commit(&d.0.join("up.bin"), false).unwrap();
        assert_eq!(fs::read(landed).unwrap(), b"xyz");
    }
}
