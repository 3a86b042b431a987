//! Atomic uploads: a temp file in the target directory, renamed into place when complete.
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub struct AtomicFile {
    file: Option<File>,
    tmp: PathBuf,
    len: u64,
}

impl AtomicFile {
    pub fn create_in(dir: &Path) -> io::Result<AtomicFile> {
        for i in 0..16u32 {
            let name = format!(".upload-{}-{}-{}.tmp", std::process::id(), nanos(), i);
            let tmp = dir.join(name);
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&tmp)
            {
                Ok(file) => {
                    return Ok(AtomicFile {
                        file: Some(file),
                        tmp,
                        len: 0,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::ErrorKind::AlreadyExists.into())
    }

    pub fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.as_mut().expect("open").write_all(data)?;
        self.len += data.len() as u64;
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Move into place; returns where it landed and whether `dest` was new.
    pub fn commit(mut self, dest: &Path, replace: bool) -> io::Result<(PathBuf, bool)> {
        drop(self.file.take());
        let existed = dest.exists();
        if replace {
            std::fs::rename(&self.tmp, dest)?;
            return Ok((dest.to_path_buf(), !existed));
        }
        let stem = dest
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ext = dest
            .extension()
            .map(|s| format!(".{}", s.to_string_lossy()))
            .unwrap_or_default();
        for i in 0..1000 {
            let cand = if i == 0 {
                dest.to_path_buf()
            } else {
                dest.with_file_name(format!("{stem}-{i}{ext}"))
            };
            match std::fs::hard_link(&self.tmp, &cand) {
                Ok(()) => {
                    let _ = std::fs::remove_file(&self.tmp);
                    return Ok((cand, true));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::ErrorKind::AlreadyExists.into())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.is_some() || self.tmp.exists() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}
