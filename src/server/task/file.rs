//! A body streamed: a file from disk — the head, then the body by sendfile(2) where the backend
//! has it (the kernel copies file to socket) and the file's pages are all in the page cache,
//! else by backend reads into a buffer (off the loop's thread), one piece per drained output
//! queue — or a directory listing, read off the loop's thread (`Op::ListDir`) and then
//! rendered one piece per drained queue (its
//! back-pressure: nothing more is produced while the client has not taken the last piece). The
//! task owns the file's fd and closes it through the backend.

use std::os::fd::{AsRawFd, IntoRawFd, RawFd};

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
    /// `fd` when the open-file cache shares it: closed only by its last holder.
    shared: Option<std::rc::Rc<std::os::fd::OwnedFd>>,
    /// A listing to render, or the parts of a multipart body (one box: the task stays small).
    more: Option<Box<More>>,
    head: Option<Vec<u8>>,
    offset: u64,
    left: u64,
    reading: bool,
    queued: bool,
    trail: Trail,
}

/// What a file task streams besides a plain file range.
enum More {
    /// A directory being read off the loop's thread (`Op::ListDir`); `true` once submitted.
    Reading(crate::server::reply::autoindex::Pending, bool),
    Listing(crate::server::reply::autoindex::Listing),
    /// The parts of a multipart/byteranges body still to send: each one's header, then its
    /// range; then the closing delimiter.
    Parts(crate::server::reply::byteranges::Parts),
}

impl FileTask {
    pub fn new(id: u32, head: Vec<u8>, file: Stream, offset: u64, len: u64) -> FileTask {
        let mut shared = None;
        let (fd, more) = match file {
            Stream::Disk(f) => (Some(f.into_raw_fd()), None),
            Stream::Shared(f) => (Some(shared.insert(f).as_raw_fd()), None),
            Stream::Listing(p) => (None, Some(Box::new(More::Reading(*p, false)))),
            Stream::Ranges(f, p) => (Some(f.into_raw_fd()), Some(Box::new(More::Parts(*p)))),
        };
        // With parts, the first range comes from them (with its header).
        let len = if more.is_some() { 0 } else { len };
        FileTask {
            id: TaskId {
                kind: TaskKind::File,
                id,
            },
            fd,
            shared,
            more,
            head: Some(head),
            offset,
            left: len,
            reading: false,
            queued: false,
            trail: Trail::default(),
        }
    }

    /// Whether some of what is to be sent may not be in the page cache (`cachestat(2)`): then
    /// it is read by backend read ops (io_uring's own, the readiness backends' pool) rather
    /// than by sendfile(2), which would wait for the disk on the loop's thread. Where the
    /// kernel cannot say (Linux < 6.5, the BSDs), every file is read so.
    fn cold(&mut self) -> bool {
        let Some(fd) = self.fd else {
            return false;
        };
        let cached = |off: u64, len: u64| backends::util::cached_fully(fd, off, len) == Some(true);
        let warm = match self.more.as_deref() {
            Some(More::Parts(p)) => p.parts.iter().all(|(_, off, len)| cached(*off, *len)),
            Some(More::Listing(_) | More::Reading(..)) => true,
            None => cached(self.offset, self.left),
        };
        if !warm {
            self.trail
                .push("not known to be in the page cache: reads at", self.offset);
        }
        !warm
    }

    /// The directory was read: the head (now with its length), then the first piece.
    fn listed(&mut self, c: Completion, cx: &mut Cx) -> Step {
        let Some(More::Reading(p, true)) = self.more.as_deref_mut() else {
            return Step::Pending;
        };
        let read = match (c.result, c.buf) {
            (Ok(_), Buf::Path(call)) => match *call {
                backends::PathCall::ListDir(l) => l,
                _ => return Step::Fail(500),
            },
            (Err(e), _) => {
                crate::trace!("{}: listing {:?}: {e}", cx.id, p.uri);
                return Step::Fail(crate::server::reply::static_file::io_status(&e));
            }
            (Ok(_), _) => return Step::Fail(500),
        };
        let (head, listing) = p.finish(read);
        self.trail
            .push("listed, bytes", listing.as_ref().map_or(0, |l| l.len()));
        cx.out.push_bytes(head);
        match listing {
            Some(l) => {
                self.left = l.len();
                self.more = Some(Box::new(More::Listing(l)));
                self.on_drained(cx)
            }
            None => {
                self.more = None;
                Step::Done
            }
        }
    }

    /// Close the file through the backend (which first ends any op still on it) — a shared
    /// one only when this response holds its last reference: the cache, or another response,
    /// still uses it otherwise, and its last holder closes it.
    fn close(&mut self, cx: &mut Cx) {
        let Some(fd) = self.fd.take() else {
            return;
        };
        let fd = match self.shared.take().map(std::rc::Rc::try_unwrap) {
            None => fd,
            Some(Ok(owned)) => owned.into_raw_fd(),
            Some(Err(_)) => return,
        };
        cx.submit(OpTag::FileClose, Op::Close { fd });
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
        if let Some(More::Reading(p, submitted)) = self.more.as_deref_mut() {
            let Some(op) = p.op() else {
                return Step::Fail(500);
            };
            *submitted = true;
            self.trail.push("listing submitted, max", p.max as u64);
            cx.submit(OpTag::ListDir, op);
            return Step::Pending;
        }
        if cx.sendfile && !self.cold() {
            if let Some(fd) = self.fd {
                if let Some(More::Parts(p)) = self.more.take().map(|b| *b) {
                    // Every part queued at once: headers in memory, ranges by sendfile.
                    for (h, off, len) in p.parts {
                        cx.out.push_bytes(h);
                        cx.out.push_file(fd, off, len);
                    }
                    cx.out.push_bytes(p.trailer);
                } else {
                    cx.out.push_file(fd, self.offset, self.left);
                }
                self.queued = true;
                self.trail.push("sendfile queued", self.left);
            }
        }
        Step::Pending
    }

    fn on_completion(&mut self, op: OpTag, c: Completion, cx: &mut Cx) -> Step {
        if op == OpTag::ListDir {
            return self.listed(c, cx);
        }
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
        if let Some(More::Reading(..)) = self.more.as_deref() {
            return Step::Pending; // nothing queued until the directory is read
        }
        if let Some(More::Listing(l)) = self.more.as_deref_mut() {
            return match l.next_piece(LISTING_PIECE) {
                Some(piece) => {
                    self.offset += piece.len() as u64;
                    self.left = self.left.saturating_sub(piece.len() as u64);
                    cx.out.push_bytes(piece);
                    Step::Pending
                }
                None => {
                    self.more = None;
                    Step::Done
                }
            };
        }
        let Some(fd) = self.fd else {
            return Step::Done;
        };
        if self.left == 0 && !self.queued {
            // By reads: the next part's header and range, or the closing delimiter.
            if let Some(More::Parts(p)) = self.more.as_deref_mut() {
                if let Some((h, off, len)) = p.parts.pop_front() {
                    cx.out.push_bytes(h);
                    self.offset = off;
                    self.left = len;
                } else {
                    let t = std::mem::take(&mut p.trailer);
                    self.more = None;
                    cx.out.push_bytes(t);
                    return Step::Pending;
                }
            }
        }
        if self.queued || self.left == 0 {
            // Everything went out (the queue drained past the file range).
            self.close(cx);
            return Step::Done;
        }
        if !self.reading {
            self.reading = true;
            let n = self.left.min(crate::server::reply::CHUNK as u64) as usize;
            self.trail.push("read submitted at", self.offset);
            // A read fills the buffer's whole spare capacity: only one of exactly `n` bytes
            // may be reused (a larger one would read past the range).
            let buf = match cx.spare.take() {
                Some(mut v) if v.capacity() == n => {
                    v.clear();
                    v
                }
                _ => Vec::with_capacity(n),
            };
            cx.submit(
                OpTag::FileRead,
                Op::Read {
                    fd,
                    buf,
                    offset: Some(self.offset),
                },
            );
        }
        Step::Pending
    }

    fn abort(&mut self, _why: Abort, cx: &mut Cx) {
        if let Some(More::Reading(_, true)) = self.more.as_deref() {
            // The listing may still be queued on the pool: cancel it (a running one
            // completes; its late completion drops its directory fd and entries).
            let target = cx.token(OpTag::ListDir);
            cx.submit(OpTag::ListDirCancel, Op::Cancel { target });
        }
        self.more = None;
        self.close(cx);
    }

    fn describe(&self) -> String {
        format!(
            "at {} ({} B left); last: {}",
            self.offset, self.left, self.trail
        )
    }
}
