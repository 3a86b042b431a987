//! macOS and the BSDs: kqueue.

use std::io;

use std::os::fd::RawFd;

use crate::readiness::{kqueue::Kqueue, Readiness};
use crate::sys::Progress;
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

/// No splice here: a pipe to send a file through is never had, and every SendFile is a
/// `sendfile(2)` (the readiness adapter asks only when its poller says it splices).
#[derive(Debug)]
pub(crate) enum SplicePipe {}

impl SplicePipe {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_file(
        &self,
        _sock: RawFd,
        _file: RawFd,
        _offset: u64,
        _len: usize,
        _until: usize,
        _done: &mut usize,
        _held: &mut usize,
    ) -> Progress {
        match *self {}
    }
}

#[derive(Default)]
pub(crate) struct PipePool;

impl PipePool {
    pub(crate) fn new(_none: bool) -> PipePool {
        PipePool
    }

    pub(crate) fn take(&mut self) -> Option<SplicePipe> {
        None
    }

    pub(crate) fn give(&mut self, pipe: SplicePipe, _held: usize) {
        match pipe {}
    }
}
