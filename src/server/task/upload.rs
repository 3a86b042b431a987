//! Uploads: a raw POST or a PUT written to a temp file and renamed into place when the body is
//! complete (atomic: a failed upload leaves nothing); multipart/form-data (one temp file per
//! file part) is [`super::multipart`].
//!
//! Every file-system call of an upload is a backend op, off the loop's thread where the
//! backend can (README, "File lookups off the event loop"): the temp file is created by
//! `Op::OpenAt` (`O_CREAT | O_EXCL`, a random hidden name), written by `Op::Write` (one in
//! flight, at explicit offsets), named by `Op::RenameAt` and, on failure, removed by
//! `Op::UnlinkAt` — the client told of a failure only once that is done. An op that completes
//! after its client left is undone by [`undo_stray`] from what the op gives back.

use std::path::PathBuf;

use backends::Completion;

use super::cgi::framing::Meta;
use super::{Abort, Cx, Step, Task};
use crate::handlers::atomic_file::{self, AtomicFile, StoreDir};
use crate::server::ident::{TaskId, TaskKind};
use crate::server::reply::{self, Ctx};
use crate::server::token::OpTag;

pub(super) fn ctx<'a>(meta: &Meta, date: &'a [u8]) -> Ctx<'a> {
    Ctx {
        close: meta.close,
        ..Ctx::plain(date, meta.keep_alive_10 && !meta.close)
    }
}

pub(super) fn queue(r: reply::Reply, cx: &mut Cx) {
    if let reply::Reply::Full { head, body, .. } = r {
        cx.out.push(backends::SendBuf { head, body });
    }
}

pub(super) fn storage_status(e: &std::io::Error) -> u16 {
    crate::http::status::from_io(e)
}

/// How many random temp names are tried after the first is taken (64 random bits each: a
/// collision of all of them means something else is wrong).
pub(super) const CREATE_TRIES: u32 = 8;

/// Most body bytes one write op carries.
pub(super) const WRITE_MAX: usize = 256 * 1024;

/// A raw POST (stored under a generated name) or a PUT (to its path). The body goes to the temp
/// file through backend write ops at explicit offsets, one in flight: `body_room` is 0 while it
/// is, which is the back-pressure on the client.
pub struct UploadTask {
    id: TaskId,
    /// The temp file, once its create op completed.
    file: Option<AtomicFile>,
    dir: StoreDir,
    /// The create op in flight, and how many taken names came before it.
    opening: Option<u32>,
    /// For the log and the final name (its last component).
    dest: PathBuf,
    replace: bool,
    /// PUT: a file of that name was there when the request was routed (204, not 201).
    existed: bool,
    /// POST: the URI of the directory the file lands in (for `Location`).
    uri_dir: String,
    meta: Meta,
    bytes: u64,
    writing: bool,
    /// The rename op in flight: the name it gives, and how many taken names came before.
    renaming: Option<(String, u32)>,
    undo: Undo,
    /// The last body byte has been handed over.
    body_done: bool,
}

impl UploadTask {
    pub fn new(
        id: u32,
        dir: StoreDir,
        dest: PathBuf,
        replace: bool,
        existed: bool,
        uri_dir: String,
        meta: Meta,
    ) -> UploadTask {
        UploadTask {
            id: TaskId {
                kind: TaskKind::Upload,
                id,
            },
            file: None,
            dir,
            opening: None,
            dest,
            replace,
            existed,
            uri_dir,
            meta,
            bytes: 0,
            writing: false,
            renaming: None,
            undo: Undo::default(),
            body_done: false,
        }
    }

    /// Submit the op that creates the temp file (off the loop's thread); `tries` names were
    /// taken before.
    fn create(&mut self, tries: u32, cx: &mut Cx) -> Step {
        match AtomicFile::create_op(&self.dir) {
            Ok(op) => {
                cx.submit(OpTag::UploadOpen, op);
                self.opening = Some(tries);
                Step::Pending
            }
            Err(e) => {
                crate::error!(
                    "{}: upload temp file for {}: {e}",
                    cx.id,
                    self.dest.display()
                );
                Step::Fail(storage_status(&e))
            }
        }
    }

    fn on_created(&mut self, c: Completion, cx: &mut Cx) -> Step {
        let Some(tries) = self.opening.take() else {
            return Step::Pending;
        };
        match created(c, &self.dir) {
            Ok(f) => {
                self.file = Some(f);
                if self.body_done {
                    return self.commit(cx);
                }
                Step::Pending
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < CREATE_TRIES => {
                self.create(tries + 1, cx)
            }
            Err(e) => {
                crate::error!(
                    "{}: upload temp file for {}: {e}",
                    cx.id,
                    self.dest.display()
                );
                Step::Fail(commit_status(&e))
            }
        }
    }

    /// The body is all written: give the temp file its name through a rename op (off the
    /// loop's thread); [`renamed`](Self::renamed) answers when it completes.
    fn commit(&mut self, cx: &mut Cx) -> Step {
        if self.renaming.is_some() {
            return Step::Pending;
        }
        let name = self
            .dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.rename_to(name, 0, cx)
    }

    fn rename_to(&mut self, candidate: String, tries: u32, cx: &mut Cx) -> Step {
        let Some(file) = self.file.as_ref() else {
            return Step::Fail(500);
        };
        match file.rename_op(&candidate, !self.replace) {
            Ok(op) => {
                cx.submit(OpTag::UploadRename, op);
                self.renaming = Some((candidate, tries));
                Step::Pending
            }
            Err(e) => {
                crate::error!("{}: upload into {}: {e}", cx.id, self.dest.display());
                self.fail(commit_status(&e), cx)
            }
        }
    }

    /// The rename op completed: answer, try the next free name (a POST whose name is taken),
    /// or fail and drop the temp file.
    fn renamed(&mut self, result: std::io::Result<usize>, cx: &mut Cx) -> Step {
        let Some((landed, tries)) = self.renaming.take() else {
            return Step::Pending;
        };
        match result {
            Ok(_) => {}
            Err(e)
                if !self.replace
                    && e.kind() == std::io::ErrorKind::AlreadyExists
                    && tries < atomic_file::MAX_RENAME_TRIES =>
            {
                let name = self
                    .dest
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let next = atomic_file::suffixed(&name, atomic_file::random_u32());
                return self.rename_to(next, tries + 1, cx);
            }
            Err(e) => {
                crate::error!("{}: upload into {}: {e}", cx.id, self.dest.display());
                return self.fail(commit_status(&e), cx);
            }
        }
        if let Some(f) = self.file.take() {
            let fd = f.committed();
            if fd >= 0 {
                cx.submit(OpTag::UploadClose, backends::Op::Close { fd });
            }
        }
        crate::server::reply::cache::note_write();
        let date = *cx.date;
        let c = ctx(&self.meta, &date);
        let r = if self.replace {
            if !self.existed {
                reply::full(
                    201,
                    "text/plain; charset=utf-8",
                    b"Created\n".to_vec(),
                    &[],
                    &c,
                )
            } else {
                reply::full(204, "text/plain", Vec::new(), &[], &c)
            }
        } else {
            // The Location is a URI: every part percent-encoded, the request's directory too.
            let uri = crate::http::path::percent_encode_path(&format!("{}{landed}", self.uri_dir));
            let body = format!(
                "<!doctype html><title>201 Created</title><p>Saved <a href=\"{0}\">{1}</a></p>\n",
                crate::http::path::html_escape(&uri),
                crate::http::path::html_escape(&landed)
            );
            reply::full(
                201,
                "text/html; charset=utf-8",
                body.into_bytes(),
                &[("Location", uri.as_bytes())],
                &c,
            )
        };
        queue(r, cx);
        Step::Done
    }

    /// Drop the temp file: removed and its fd closed through the backend (a write may be in
    /// flight; nothing waits for either).
    fn release(&mut self, cx: &mut Cx) {
        if let Some(f) = self.file.take() {
            discard(f, &mut self.undo, cx);
        }
    }

    /// Fail with `code` once the temp file is gone (the client is told only then).
    fn fail(&mut self, code: u16, cx: &mut Cx) -> Step {
        self.release(cx);
        self.undo.fail(code)
    }
}

/// What an upload's create op ([`AtomicFile::create_op`]) completed with: the temp file in
/// `dir`, or the error (`EEXIST`: the name was taken, try another).
pub(super) fn created(c: Completion, dir: &StoreDir) -> std::io::Result<AtomicFile> {
    use std::os::unix::ffi::OsStringExt;
    let fd = backends::util::adopt_fd(c.result? as std::os::fd::RawFd)?;
    match c.buf {
        backends::Buf::Path(call) => match *call {
            backends::PathCall::Open(o) => Ok(AtomicFile::opened(
                fd,
                dir.clone(),
                std::ffi::OsString::from_vec(o.path.into_bytes()),
            )),
            _ => Err(std::io::Error::from_raw_os_error(libc::EIO)),
        },
        _ => Err(std::io::Error::from_raw_os_error(libc::EIO)),
    }
}

/// An upload op that completed after its task was gone (the client left meanwhile), undone
/// with the directory and names the op gives back, through an unlink op submitted with
/// `token`:
/// - a temp file created for nobody: its fd closed, its name removed;
/// - a no-replace rename (a POST's file, a multipart part): a file under a name nobody was
///   told of, in an upload the client never saw succeed — removed again. A PUT's rename
///   (replace) is kept: its body was whole, and the file it replaced is gone either way.
pub fn undo_stray(op: OpTag, c: Completion, be: &mut dyn backends::Backend, token: u64) {
    if !matches!(op, OpTag::UploadRename | OpTag::UploadOpen) {
        return;
    }
    let Ok(n) = c.result else {
        return;
    };
    let backends::Buf::Path(call) = c.buf else {
        return;
    };
    let (dir, path) = match *call {
        backends::PathCall::Open(o) if op == OpTag::UploadOpen => {
            drop(backends::util::adopt_fd(n as std::os::fd::RawFd));
            (o.dir, o.path)
        }
        backends::PathCall::Rename(r) if r.noreplace => (r.dir, r.to),
        _ => return,
    };
    crate::info!(
        "{} completed after its request ended: its file is removed",
        op.name()
    );
    let rmdir = false;
    be.submit(
        token,
        backends::Op::UnlinkAt(backends::Unlink { dir, path, rmdir }),
    );
}

/// Unlinks in flight for a failed upload, and the status it answers once they are done: a
/// client told that its upload failed finds nothing of it left.
#[derive(Default)]
pub(super) struct Undo {
    unlinking: u32,
    failing: Option<u16>,
}

impl Undo {
    pub(super) fn unlink(&mut self, op: backends::Op, cx: &mut Cx) {
        self.unlinking += 1;
        cx.submit(OpTag::UploadUnlink, op);
    }
    /// Fail now, or when the last unlink completes.
    pub(super) fn fail(&mut self, code: u16) -> Step {
        if self.unlinking == 0 {
            Step::Fail(code)
        } else {
            self.failing = Some(code);
            Step::Pending
        }
    }
    pub(super) fn unlinked(&mut self) -> Step {
        self.unlinking = self.unlinking.saturating_sub(1);
        match self.failing {
            Some(code) if self.unlinking == 0 => Step::Fail(code),
            _ => Step::Pending,
        }
    }
}

/// The ops that remove a temp file and close its fd.
pub(super) fn discard(f: AtomicFile, undo: &mut Undo, cx: &mut Cx) {
    let (unlink, fd) = f.discard();
    if let Some(op) = unlink {
        undo.unlink(op, cx);
    }
    if fd >= 0 {
        cx.submit(OpTag::UploadClose, backends::Op::Close { fd });
    }
}

/// The status of a failed commit: a symlink or special file in the way is 403, a directory 409.
pub(super) fn commit_status(e: &std::io::Error) -> u16 {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::ELOOP) => 403,
        Some(libc::EISDIR) => 409,
        _ => storage_status(e),
    }
}

impl Task for UploadTask {
    fn id(&self) -> TaskId {
        self.id
    }
    fn start(&mut self, cx: &mut Cx) -> Step {
        self.create(0, cx)
    }
    fn body_room(&self) -> usize {
        if self.file.is_some() && !self.writing && !self.body_done {
            WRITE_MAX
        } else {
            0
        }
    }
    fn on_body(&mut self, data: &[u8], done: bool, cx: &mut Cx) -> Step {
        if self.opening.is_some() && data.is_empty() {
            // A request without a body ends before its temp file exists.
            self.body_done |= done;
            return Step::Pending;
        }
        let Some(f) = self.file.as_ref() else {
            return Step::Pending;
        };
        self.body_done |= done;
        if data.is_empty() {
            return if done && !self.writing {
                self.commit(cx)
            } else {
                Step::Pending
            };
        }
        let (fd, offset) = (f.fd(), f.len());
        self.writing = true;
        cx.submit(
            OpTag::UploadWrite,
            backends::Op::Write {
                fd,
                buf: data.to_vec(),
                offset: Some(offset),
            },
        );
        Step::Pending
    }
    fn on_completion(&mut self, op: OpTag, c: Completion, cx: &mut Cx) -> Step {
        if op == OpTag::UploadRename {
            return self.renamed(c.result, cx);
        }
        if op == OpTag::UploadUnlink {
            return self.undo.unlinked();
        }
        if op == OpTag::UploadOpen {
            return self.on_created(c, cx);
        }
        if op != OpTag::UploadWrite || !self.writing {
            return Step::Pending;
        }
        self.writing = false;
        let Some(f) = self.file.as_mut() else {
            return Step::Pending;
        };
        match c.result {
            Ok(n) => {
                f.advance(n as u64);
                self.bytes += n as u64;
            }
            Err(e) => {
                crate::error!("{}: upload write: {e}", cx.id);
                return self.fail(storage_status(&e), cx);
            }
        }
        if self.body_done {
            return self.commit(cx);
        }
        Step::Pending
    }
    fn on_body_error(&mut self, code: u16, cx: &mut Cx) -> Step {
        self.fail(code, cx)
    }
    fn abort(&mut self, _why: Abort, cx: &mut Cx) {
        self.release(cx);
    }
    fn describe(&self) -> String {
        format!("upload {} B to {}", self.bytes, self.dest.display())
    }
}
