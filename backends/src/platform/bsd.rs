//! macOS and the BSDs: kqueue.

use std::io;

use crate::readiness::{kqueue::Kqueue, Readiness};
use crate::{Kind, Opened, Options};

pub fn open(kind: Kind, opts: &Options) -> io::Result<Opened> {
    match kind {
        Kind::Auto | Kind::Kqueue => Ok(Opened {
            backend: Box::new(Readiness::<Kqueue>::new(opts)?),
            fallback: None,
        }),
        Kind::Uring | Kind::Epoll => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "io_uring and epoll exist only on Linux; this platform has kqueue",
        )),
    }
}

pub fn available() -> Vec<Kind> {
    vec![Kind::Kqueue]
}
