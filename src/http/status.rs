//! The one mapping of an I/O error to a response status, used wherever a file-system or
//! process operation fails on behalf of a request (static files, uploads, deletes, CGI scripts).
//! Places that need a finer answer (an upload store's missing directory is 409) refine it and
//! fall back to it.

use std::io;

/// 404 when the name does not lead to anything (missing, a component not a directory, too
/// long, a symlink loop), 403 when access is refused, 507 when storage is full, else 500.
pub fn from_io(e: &io::Error) -> u16 {
    match e.kind() {
        io::ErrorKind::NotFound => 404,
        io::ErrorKind::PermissionDenied => 403,
        _ => match e.raw_os_error() {
            Some(libc::ENOTDIR) | Some(libc::ENAMETOOLONG) | Some(libc::ELOOP) => 404,
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => 507,
            _ => 500,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let os = io::Error::from_raw_os_error;
        for (e, want) in [
            (os(libc::ENOENT), 404),
            (os(libc::ENOTDIR), 404),
            (os(libc::ELOOP), 404),
            (os(libc::EACCES), 403),
            (os(libc::EPERM), 403),
            (os(libc::ENOSPC), 507),
            (os(libc::EIO), 500),
        ] {
            assert_eq!(from_io(&e), want, "{e}");
        }
    }
}
