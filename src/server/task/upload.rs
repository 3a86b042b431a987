//! Uploads: a raw POST or a PUT written to a temp file and renamed into place when the body is
//! complete (atomic: a failed upload leaves nothing), and multipart/form-data with one temp
//! file per file part.
//!
//! A raw upload writes through backend write ops (one in flight, at explicit offsets); a
//! multipart upload's parts are written with plain `write(2)` calls on the loop while the parser
//! runs (regular files; see the README's list of what still blocks).

use std::path::PathBuf;

use backends::Completion;

use super::cgi::framing::Meta;
use super::{Abort, Cx, Step, Task};
use crate::handlers::atomic_file::{self, AtomicFile, StoreDir};
use crate::server::ident::{TaskId, TaskKind};
use crate::server::reply::{self, Ctx};
use crate::server::token::OpTag;

fn ctx<'a>(meta: &Meta, date: &'a [u8]) -> Ctx<'a> {
    Ctx {
        close: meta.close,
        ..Ctx::plain(date, meta.keep_alive_10 && !meta.close)
    }
}

fn queue(r: reply::Reply, cx: &mut Cx) {
    if let reply::Reply::Full { head, body, .. } = r {
        cx.out.push(backends::SendBuf { head, body });
    }
}

fn storage_status(e: &std::io::Error) -> u16 {
    crate::http::status::from_io(e)
}

/// Most body bytes one write op carries.
const WRITE_MAX: usize = 256 * 1024;

/// A raw POST (stored under a generated name) or a PUT (to its path). The body goes to the temp
/// file through backend write ops at explicit offsets, one in flight: `body_room` is 0 while it
/// is, which is the back-pressure on the client.
pub struct UploadTask {
    id: TaskId,
    file: Option<AtomicFile>,
    /// For the log and the final name (its last component).
    dest: PathBuf,
    replace: bool,
    /// POST: the URI of the directory the file lands in (for `Location`).
    uri_dir: String,
    meta: Meta,
    bytes: u64,
    writing: bool,
    /// The last body byte has been handed over.
    body_done: bool,
}

impl UploadTask {
    pub fn new(
        id: u32,
        file: AtomicFile,
        dest: PathBuf,
        replace: bool,
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
            uri_dir,
            meta,
            bytes: 0,
            writing: false,
            body_done: false,
        }
    }

    fn commit(&mut self, cx: &mut Cx) -> Step {
        let Some(file) = self.file.take() else {
            return Step::Fail(500);
        };
        let name = self
            .dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (landed, created) = match file.commit(&name, self.replace) {
            Ok(x) => x,
            Err(e) => {
                crate::error!("{}: upload into {}: {e}", cx.id, self.dest.display());
                return Step::Fail(commit_status(&e));
            }
        };
        crate::server::reply::cache::note_write();
        let date = *cx.date;
        let c = ctx(&self.meta, &date);
        let r = if self.replace {
            if created {
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

    /// Drop the temp file; its fd is closed through the backend (a write may be in flight).
    fn release(&mut self, cx: &mut Cx) {
        if let Some(f) = self.file.take() {
            let fd = f.abandon();
            if fd >= 0 {
                cx.submit(OpTag::UploadClose, backends::Op::Close { fd });
            }
        }
    }
}

/// The status of a failed commit: a symlink or special file in the way is 403, a directory 409.
fn commit_status(e: &std::io::Error) -> u16 {
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
                self.release(cx);
                return Step::Fail(storage_status(&e));
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

/// A multipart/form-data upload: each file part to its own temp file; all of them are committed
/// only when the whole body has arrived and parsed (all or nothing: a failure at any point
/// removes every part, committed ones included).
///
/// Part contents are written through backend write ops at explicit offsets, one in flight;
/// while writes are queued or in flight `body_room` is 0, so at most one body piece
/// ([`WRITE_MAX`]) waits in memory. Creating a part's temp file (`openat`) runs on the loop.
pub struct MultipartTask {
    id: TaskId,
    parser: crate::handlers::multipart::MultipartParser,
    dir: StoreDir,
    uri_dir: String,
    /// Every file part so far, with its final name and the offset its next write goes to.
    files: Vec<(AtomicFile, String, u64)>,
    /// The part being received (an index into `files`), if it is a file part.
    current: Option<usize>,
    /// Writes not yet submitted: (file index, offset, bytes).
    pending: std::collections::VecDeque<(usize, u64, Vec<u8>)>,
    /// The file index of the write in flight.
    writing: Option<usize>,
    body_done: bool,
    saved: Vec<String>,
    meta: Meta,
    failed: bool,
}

impl MultipartTask {
    pub fn new(id: u32, boundary: &str, dir: StoreDir, uri_dir: String, meta: Meta) -> Self {
        MultipartTask {
            id: TaskId {
                kind: TaskKind::Multipart,
                id,
            },
            parser: crate::handlers::multipart::MultipartParser::new(boundary),
            dir,
            uri_dir,
            files: Vec::new(),
            current: None,
            pending: std::collections::VecDeque::new(),
            writing: None,
            body_done: false,
            saved: Vec::new(),
            meta,
            failed: false,
        }
    }

    fn feed(&mut self, data: &[u8]) -> Result<(), u16> {
        use crate::handlers::multipart::{sanitize_filename, Part};
        let MultipartTask {
            parser,
            dir,
            files,
            current,
            pending,
            ..
        } = self;
        parser
            .feed(data, &mut |part| {
                match part {
                    Part::Start { filename, .. } => {
                        // Only file parts are stored; plain form fields, and a file input left
                        // empty (`filename=""`), are skipped. A name that sanitises to nothing
                        // gets a generated one, never the raw one.
                        *current = match filename.as_deref() {
                            None | Some("") => None,
                            Some(raw) => {
                                let name = sanitize_filename(raw).unwrap_or_else(|| {
                                    format!("upload-{:08x}", atomic_file::random_u32())
                                });
                                files.push((AtomicFile::create_in(dir)?, name, 0));
                                Some(files.len() - 1)
                            }
                        };
                    }
                    Part::Data(d) => {
                        if let Some(i) = *current {
                            let at = files[i].2;
                            files[i].2 += d.len() as u64;
                            match pending.back_mut() {
                                Some((j, _, buf)) if *j == i && buf.len() < WRITE_MAX => {
                                    buf.extend_from_slice(d)
                                }
                                _ => pending.push_back((i, at, d.to_vec())),
                            }
                        }
                    }
                    Part::End => *current = None,
                }
                Ok(())
            })
            .map_err(|e| e.status())
    }

    /// Submit the next queued write, or — all written and the body complete — commit.
    fn pump(&mut self, cx: &mut Cx) -> Step {
        if self.writing.is_some() {
            return Step::Pending;
        }
        if let Some((i, offset, buf)) = self.pending.pop_front() {
            self.writing = Some(i);
            let fd = self.files[i].0.fd();
            cx.submit(
                OpTag::UploadWrite,
                backends::Op::Write {
                    fd,
                    buf,
                    offset: Some(offset),
                },
            );
            return Step::Pending;
        }
        if !self.body_done {
            return Step::Pending;
        }
        if let Err(code) = self.commit_all(cx) {
            return self.fail(code, cx);
        }
        self.reply(cx);
        Step::Done
    }

    /// Every complete part under its name, or none: a commit that fails removes those that
    /// went before.
    fn commit_all(&mut self, cx: &mut Cx) -> Result<(), u16> {
        for (f, name, _) in std::mem::take(&mut self.files) {
            match f.commit(&name, false) {
                Ok((landed, _)) => self.saved.push(landed),
                Err(e) => {
                    crate::error!("{}: multipart commit of {name:?}: {e}", cx.id);
                    return Err(commit_status(&e));
                }
            }
        }
        crate::server::reply::cache::note_write();
        Ok(())
    }

    fn fail(&mut self, code: u16, cx: &mut Cx) -> Step {
        crate::info!("{}: multipart upload failed ({code})", cx.id);
        self.rollback(cx);
        Step::Fail(code)
    }

    /// Undo everything: committed names removed, temp files removed; the fd of a write still
    /// in flight is closed through the backend.
    fn rollback(&mut self, cx: &mut Cx) {
        self.failed = true;
        for name in std::mem::take(&mut self.saved) {
            let _ = atomic_file::remove(&self.dir, &name);
        }
        self.pending.clear();
        self.current = None;
        let busy = self.writing.take();
        for (i, (f, _, _)) in std::mem::take(&mut self.files).into_iter().enumerate() {
            if Some(i) == busy {
                let fd = f.abandon();
                if fd >= 0 {
                    cx.submit(OpTag::UploadClose, backends::Op::Close { fd });
                }
            } // else: dropping it removes its temp file and closes its fd
        }
    }

    fn reply(&self, cx: &mut Cx) {
        let mut items = String::new();
        for name in &self.saved {
            let href = format!(
                "{}{}",
                self.uri_dir,
                crate::http::path::percent_encode_path(name)
            );
            items.push_str(&format!(
                "<li><a href=\"{}\">{}</a></li>\n",
                crate::http::path::html_escape(&href),
                crate::http::path::html_escape(name)
            ));
        }
        let body = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Uploaded</title>\
             <link rel=\"stylesheet\" href=\"/static/style.css\"></head>\n<body><main>\
             <h1>{} file(s) saved</h1>\n<ul id=\"saved\">\n{items}</ul>\
             <p><a href=\"/files.html\">All files</a> · <a href=\"/upload.html\">Upload more</a></p></main></body></html>\n",
            self.saved.len()
        );
        let first = self
            .saved
            .first()
            .map(|n| crate::http::path::percent_encode_path(&format!("{}{n}", self.uri_dir)));
        let extra: Vec<(&str, &[u8])> = first
            .as_deref()
            .map(|l| vec![("Location", l.as_bytes())])
            .unwrap_or_default();
        let date = *cx.date;
        let r = reply::full(
            201,
            "text/html; charset=utf-8",
            body.into_bytes(),
            &extra,
            &ctx(&self.meta, &date),
        );
        queue(r, cx);
    }
}

impl Task for MultipartTask {
    fn id(&self) -> TaskId {
        self.id
    }
    fn start(&mut self, _cx: &mut Cx) -> Step {
        Step::Pending
    }
    fn body_room(&self) -> usize {
        if self.failed || self.body_done || self.writing.is_some() || !self.pending.is_empty() {
            0
        } else {
            WRITE_MAX
        }
    }
    fn on_body(&mut self, data: &[u8], done: bool, cx: &mut Cx) -> Step {
        if self.failed || self.body_done {
            return Step::Pending;
        }
        let mut r = self.feed(data);
        if r.is_ok() && done {
            r = self.parser.finish().map_err(|e| e.status());
        }
        if let Err(code) = r {
            return self.fail(code, cx);
        }
        self.body_done = done;
        self.pump(cx)
    }
    fn on_completion(&mut self, op: OpTag, c: Completion, cx: &mut Cx) -> Step {
        if op != OpTag::UploadWrite {
            return Step::Pending;
        }
        let Some(i) = self.writing.take() else {
            return Step::Pending;
        };
        match c.result {
            Ok(n) => {
                if let Some((f, _, _)) = self.files.get_mut(i) {
                    f.advance(n as u64);
                }
                self.pump(cx)
            }
            Err(e) => {
                crate::error!("{}: multipart write: {e}", cx.id);
                self.fail(storage_status(&e), cx)
            }
        }
    }
    fn abort(&mut self, _why: Abort, cx: &mut Cx) {
        if self.files.is_empty() && self.writing.is_none() && self.pending.is_empty() {
            // Nothing in progress: either everything was committed and answered, or it was
            // already rolled back.
            if self.failed || !self.body_done {
                self.rollback(cx);
            }
            return;
        }
        self.rollback(cx);
    }
    fn describe(&self) -> String {
        format!(
            "multipart: {} part(s) written, {} saved",
            self.files.len(),
            self.saved.len()
        )
    }
}
