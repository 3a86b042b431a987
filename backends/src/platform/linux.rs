//! Linux: io_uring first, epoll as the fallback.

use std::io;

use crate::readiness::{epoll::Epoll, Readiness};
use crate::uring::Uring;
use crate::{Kind, Opened, Options};

pub fn open(kind: Kind, opts: &Options) -> io::Result<Opened> {
    match kind {
        Kind::Uring => Uring::new(opts)
            .map(|b| Opened {
                backend: Box::new(b),
                fallback: None,
            })
            .map_err(|e| explain_uring(&e)),
        Kind::Epoll => Ok(Opened {
            backend: Box::new(Readiness::<Epoll>::new(opts)?),
            fallback: None,
        }),
        Kind::Kqueue => open_kqueue(opts),
        Kind::Auto => match Uring::new(opts) {
            Ok(b) => Ok(Opened {
                backend: Box::new(b),
                fallback: None,
            }),
            Err(e) => Ok(Opened {
                backend: Box::new(Readiness::<Epoll>::new(opts)?),
                fallback: Some(format!(
                    "io_uring unavailable ({}); using epoll",
                    explain_uring(&e)
                )),
            }),
        },
    }
}

/// Say why io_uring could not be opened, in the terms an operator can act on.
fn explain_uring(e: &io::Error) -> io::Error {
    let why = match e.raw_os_error() {
        Some(libc::ENOSYS) => "the kernel has no io_uring (ENOSYS)".to_string(),
        Some(libc::EPERM) => {
            let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
            if disabled == "2" || disabled == "1" {
                format!(
                    "io_uring is disabled by sysctl kernel.io_uring_disabled={disabled} (EPERM)"
                )
            } else {
                "io_uring is forbidden here, e.g. by a seccomp filter (EPERM)".to_string()
            }
        }
        _ => format!("io_uring setup failed: {e}"),
    };
    io::Error::new(e.kind(), why)
}

pub fn available() -> Vec<Kind> {
    let opts = Options {
        buf_count: 8,
        entries: 8,
        // Whether io_uring is there does not depend on WEBSERV_URING_FILE_SEND (a bad value
        // fails the open that uses it, loudly, instead of hiding the backend).
        uring_file_send: Some(crate::FileSend::Splice),
        ..Options::default()
    };
    let mut v = Vec::new();
    if Uring::new(&opts).is_ok() {
        v.push(Kind::Uring);
    }
    v.push(Kind::Epoll);
    if KQUEUE {
        v.push(Kind::Kqueue);
    }
    v
}

/// kqueue on Linux: the BSD shim over libkqueue, compiled in by the `libkqueue` feature so the
/// conformance and end-to-end suites can run it (see README, "kqueue on Linux").
#[cfg(feature = "libkqueue")]
const KQUEUE: bool = true;
#[cfg(not(feature = "libkqueue"))]
const KQUEUE: bool = false;

#[cfg(feature = "libkqueue")]
fn open_kqueue(opts: &Options) -> io::Result<Opened> {
    use crate::readiness::kqueue::Kqueue;
    Ok(Opened {
        backend: Box::new(Readiness::<Kqueue>::new(opts)?),
        fallback: None,
    })
}

#[cfg(not(feature = "libkqueue"))]
fn open_kqueue(_opts: &Options) -> io::Result<Opened> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "the kqueue backend exists on macOS and the BSDs; on Linux only in a build with the \
         `libkqueue` feature (see README)",
    ))
}
