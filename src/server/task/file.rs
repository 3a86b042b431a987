//! A body streamed: a file from disk — the head, then the body by sendfile(2) where the backend
//! has it (the kernel copies file to socket), else by backend reads into a buffer, one piece
//! per drained output queue — or a directory listing rendered one piece per drained queue (its
//! back-pressure: nothing more is produced while the client has not taken the last piece). The
//! task owns the file's fd and closes it through the backend.

use std::os::fd::{IntoRawFd, RawFd};

use backends::{Body, Buf, Completion, Op, SendBuf};

use super::{Abort, Cx, Step, Task};
use crate::server::ident::{TaskId, TaskKind, Trail};
use crate::server::reply::Stream;
use crate::server::token::OpTag;

/// A listing's pieces are about this large.
const LISTING_PIECE: usize = 64 * 1024;

pub struct FileTask {
    id: TaskId,
    fd: Option<RawFd>,
    listing: Option<Box<crate::server::reply::autoindex::Listing>>,
    head: Option<Vec<u8>>,
    offset: u64,
    left: u64,
    reading: bool,
    queued: bool,
    trail: Trail,
}

impl FileTask {
    pub fn new(id: u32, head: Vec<u8>, file: Stream, offset: u64, len: u64) -> FileTask {
        let (fd, listing) = match file {
            Stream::Disk(f) => (Some(f.into_raw_fd()), None),
            Stream::Listing(l) => (None, Some(l)),
        };
        FileTask {
            id: TaskId {
                kind: TaskKind::File,
                id,
            },
            fd,
            listing,
            head: Some(head),
            offset,
            left: len,
            reading: false,
            queued: false,
            trail: Trail::default(),
        }
    }

    fn close(&mut self, cx: &mut Cx) {
        if let Some(fd) = self.fd.take() {
            cx.submit(OpTag::FileClose, Op::Close { fd });
        }
    }
}

impl Task for FileTask {
    fn id(&self) -> TaskId {
        self.id
    }

    fn start(&mut self, cx: &mut Cx) -> Step {
        if let Some(h) = self.head.take() {
            cx.out.push_bytes(h);
        }
        if self.listing.is_some() {
            return self.on_drained(cx);
        }
        if cx.sendfile {
            if let Some(fd) = self.fd {
                cx.out.push_file(fd, self.offset, self.left);
                self.queued = true;
                self.trail.push("sendfile queued", self.left);
            }
        }
        Step::Pending
    }

    fn on_completion(&mut self, op: OpTag, c: Completion, cx: &mut Cx) -> Step {
        if op != OpTag::FileRead || self.fd.is_none() {
            return Step::Pending;
        }
        self.reading = false;
        let Buf::Vec(buf) = c.buf else {
            return Step::Pending;
        };
        match c.result {
            Ok(n) if n > 0 => {
                self.trail.push("read", n as u64);
                self.offset += n as u64;
                self.left = self.left.saturating_sub(n as u64);
                cx.out.push(SendBuf {
                    head: Vec::new(),
                    body: Body::Owned(buf),
                });
                Step::Pending
            }
            r => {
                // The file shrank or failed under us: the head is out, so close.
                self.trail.push("read failed at", self.offset);
                crate::error!("{}: file read at {}: {r:?}", cx.id, self.offset);
                self.close(cx);
                Step::Close
            }
        }
    }

    fn on_drained(&mut self, cx: &mut Cx) -> Step {
        if let Some(l) = self.listing.as_mut() {
            return match l.next_piece(LISTING_PIECE) {
                Some(piece) => {
                    self.offset += piece.len() as u64;
                    self.left = self.left.saturating_sub(piece.len() as u64);
                    cx.out.push_bytes(piece);
                    Step::Pending
                }
                None => {
                    self.listing = None;
                    Step::Done
                }
            };
        }
        let Some(fd) = self.fd else {
            return Step::Done;
        };
        if self.queued || self.left == 0 {
            // Everything went out (the queue drained past the file range).
            self.close(cx);
            return Step::Done;
        }
        if !self.reading {
            self.reading = true;
            let n = self.left.min(crate::server::reply::CHUNK as u64) as usize;
            self.trail.push("read submitted at", self.offset);
            cx.submit(
                OpTag::FileRead,
                Op::Read {
                    fd,
                    buf: Vec::with_capacity(n),
                    offset: Some(self.offset),
                },
            );
        }
        Step::Pending
    }

    fn abort(&mut self, _why: Abort, cx: &mut Cx) {
        self.listing = None;
        self.close(cx);
    }

    fn describe(&self) -> String {
        format!(
            "at {} ({} B left); last: {}",
            self.offset, self.left, self.trail
        )
    }
}
