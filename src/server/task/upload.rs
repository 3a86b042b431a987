//! Uploads: a raw POST or a PUT written to a temp file and renamed into place when the body is
//! complete (atomic: a failed upload leaves nothing); multipart/form-data (one temp file per
//! file part) is [`super::multipart`].
//!
//! A raw upload writes through backend write ops (one in flight, at explicit offsets); a
//! multipart upload's parts are written with plain `write(2)` calls on the loop while the parser
//! runs (regular files; see the README's list of what still blocks).

use std::path::PathBuf;

use backends::Completion;

use super::cgi::framing::Meta;
use super::{Abort, Cx, Step, Task};
use crate::handlers::atomic_file::{self, AtomicFile};
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

/// Most body bytes one write op carries.
pub(super) const WRITE_MAX: usize = 256 * 1024;

/// A raw POST (stored under a generated name) or a PUT (to its path). The body goes to the temp
/// file through backend write ops at explicit offsets, one in flight: `body_room` is 0 while it
/// is, which is the back-pressure on the client.
pub struct UploadTask {
    id: TaskId,
    file: Option<AtomicFile>,
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
        file: AtomicFile,
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
            file: Some(file),
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

/// A rename that completed after its upload task was gone (the client left while it ran):
/// a no-replace rename (a POST's file, a multipart part) put a file under a name nobody was
/// told of, in an upload the client never saw succeed — it is removed again, by the unlink
/// op submitted here with `token`. A PUT's rename (replace) is kept: its body was whole, and
/// the file it replaced is gone either way.
pub fn undo_stray_rename(op: OpTag, c: Completion, be: &mut dyn backends::Backend, token: u64) {
    if op != OpTag::UploadRename || c.result.is_err() {
        return;
    }
    if let backends::Buf::Path(call) = c.buf {
        if let backends::PathCall::Rename(r) = *call {
            if r.noreplace {
                crate::info!("upload rename completed after its request ended: removed again");
                be.submit(
                    token,
                    backends::Op::UnlinkAt(backends::Unlink {
                        dir: r.dir,
                        path: r.to,
                        rmdir: false,
                    }),
                );
            }
        }
    }
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
    fn start(&mut self, _cx: &mut Cx) -> Step {
        Step::Pending
    }
    fn body_room(&self) -> usize {
        if self.file.is_some() && !self.writing && !self.body_done {
            WRITE_MAX
        } else {
            0
        }
    }
    fn on_body(&mut self, data: &[u8], done: bool, cx: &mut Cx) -> Step {
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
    fn abort(&mut self, _why: Abort, cx: &mut Cx) {
        self.release(cx);
    }
    fn describe(&self) -> String {
        format!("upload {} B to {}", self.bytes, self.dest.display())
    }
}
