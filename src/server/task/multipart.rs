//! A multipart/form-data upload: one temp file per file part, all committed (renamed into
//! place through backend ops) only when the whole body arrived and parsed.

use backends::Completion;

use super::cgi::framing::Meta;
use super::upload::{
    commit_status, created, ctx, discard, queue, storage_status, Undo, CREATE_TRIES, WRITE_MAX,
};
use super::{Abort, Cx, Step, Task};
use crate::handlers::atomic_file::{self, AtomicFile, StoreDir};
use crate::server::ident::{TaskId, TaskKind};
use crate::server::reply;
use crate::server::token::OpTag;

/// A multipart/form-data upload: each file part to its own temp file; all of them are committed
/// only when the whole body has arrived and parsed (all or nothing: a failure at any point
/// removes every part, committed ones included).
///
/// Part contents are written through backend write ops at explicit offsets, one in flight;
/// while writes are queued or in flight `body_room` is 0, so at most one body piece
/// ([`WRITE_MAX`]) waits in memory. Each part's temp file is created by a create op before its
/// writes go out; the parts are renamed into place one rename op at a time at the end.
pub struct MultipartTask {
    id: TaskId,
    parser: crate::handlers::multipart::MultipartParser,
    dir: StoreDir,
    uri_dir: String,
    /// Every file part so far, with its final name and the offset its next write goes to.
    /// (The temp file is `None` until its create op completed.)
    files: Vec<(Option<AtomicFile>, String, u64)>,
    /// The create op in flight: the file index, and how many taken names came before.
    opening: Option<(usize, u32)>,
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
    /// The rename op in flight (of `files[0]`): the name it gives, and the taken names before.
    renaming: Option<(String, u32)>,
    undo: Undo,
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
            renaming: None,
            undo: Undo::default(),
            opening: None,
        }
    }

    fn feed(&mut self, data: &[u8]) -> Result<(), u16> {
        use crate::handlers::multipart::{sanitize_filename, Part};
        let MultipartTask {
            parser,
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
                                files.push((None, name, 0));
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
        if self.writing.is_some() || self.opening.is_some() {
            return Step::Pending;
        }
        // Every part's temp file is created (one create op at a time) before writes go on.
        if let Some(i) = self.files.iter().position(|f| f.0.is_none()) {
            return self.create(i, 0, cx);
        }
        if let Some((i, offset, buf)) = self.pending.pop_front() {
            self.writing = Some(i);
            let fd = self.files[i].0.as_ref().map_or(-1, AtomicFile::fd);
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
        self.commit_next(cx)
    }

    /// Submit the op that creates part `i`'s temp file; `tries` names were taken before.
    fn create(&mut self, i: usize, tries: u32, cx: &mut Cx) -> Step {
        match AtomicFile::create_op(&self.dir) {
            Ok(op) => {
                cx.submit(OpTag::UploadOpen, op);
                self.opening = Some((i, tries));
                Step::Pending
            }
            Err(e) => {
                crate::error!("{}: multipart temp file: {e}", cx.id);
                self.fail(storage_status(&e), cx)
            }
        }
    }

    fn on_created(&mut self, c: Completion, cx: &mut Cx) -> Step {
        let Some((i, tries)) = self.opening.take() else {
            return Step::Pending;
        };
        let r = created(c, &self.dir);
        if self.failed {
            // Rolled back while the create ran: the new file goes too.
            if let Ok(f) = r {
                discard(f, &mut self.undo, cx);
            }
            return Step::Pending;
        }
        match r {
            Ok(f) => {
                if let Some(slot) = self.files.get_mut(i) {
                    slot.0 = Some(f);
                }
                self.pump(cx)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < CREATE_TRIES => {
                self.create(i, tries + 1, cx)
            }
            Err(e) => {
                crate::error!("{}: multipart temp file: {e}", cx.id);
                self.fail(commit_status(&e), cx)
            }
        }
    }

    /// Every complete part under its name, or none: one rename op at a time (off the loop's
    /// thread); a rename that fails rolls back those that went before. Answers when the last
    /// one is done.
    fn commit_next(&mut self, cx: &mut Cx) -> Step {
        if self.renaming.is_some() {
            return Step::Pending;
        }
        if self.files.is_empty() {
            crate::server::reply::cache::note_write();
            self.reply(cx);
            return Step::Done;
        }
        let name = self.files[0].1.clone();
        self.rename_first(name, 0, cx)
    }

    fn rename_first(&mut self, candidate: String, tries: u32, cx: &mut Cx) -> Step {
        let op = match &self.files[0].0 {
            Some(f) => f.rename_op(&candidate, true),
            None => Err(std::io::Error::from_raw_os_error(libc::EBADF)),
        };
        match op {
            Ok(op) => {
                cx.submit(OpTag::UploadRename, op);
                self.renaming = Some((candidate, tries));
                Step::Pending
            }
            Err(e) => {
                crate::error!("{}: multipart commit of {candidate:?}: {e}", cx.id);
                self.fail(commit_status(&e), cx)
            }
        }
    }

    fn renamed(&mut self, result: std::io::Result<usize>, cx: &mut Cx) -> Step {
        let Some((landed, tries)) = self.renaming.take() else {
            return Step::Pending;
        };
        if self.failed || self.files.is_empty() {
            return Step::Pending;
        }
        match result {
            Ok(_) => {
                let (f, _, _) = self.files.remove(0);
                let fd = f.map_or(-1, AtomicFile::committed);
                if fd >= 0 {
                    cx.submit(OpTag::UploadClose, backends::Op::Close { fd });
                }
                self.saved.push(landed);
                self.commit_next(cx)
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::AlreadyExists
                    && tries < atomic_file::MAX_RENAME_TRIES =>
            {
                let next = atomic_file::suffixed(&self.files[0].1, atomic_file::random_u32());
                self.rename_first(next, tries + 1, cx)
            }
            Err(e) => {
                crate::error!("{}: multipart commit of {landed:?}: {e}", cx.id);
                self.fail(commit_status(&e), cx)
            }
        }
    }

    fn fail(&mut self, code: u16, cx: &mut Cx) -> Step {
        crate::info!("{}: multipart upload failed ({code})", cx.id);
        self.rollback(cx);
        self.undo.fail(code)
    }

    /// Undo everything through the backend: committed names and temp files removed by unlink
    /// ops, fds closed by close ops (a write may still be in flight on one).
    fn rollback(&mut self, cx: &mut Cx) {
        self.failed = true;
        for name in std::mem::take(&mut self.saved) {
            match atomic_file::unlink_op(&self.dir, std::ffi::OsStr::new(&name)) {
                Ok(op) => self.undo.unlink(op, cx),
                Err(e) => crate::error!("{}: multipart rollback of {name:?}: {e}", cx.id),
            }
        }
        self.pending.clear();
        self.current = None;
        self.writing = None;
        for (f, _, _) in std::mem::take(&mut self.files) {
            if let Some(f) = f {
                discard(f, &mut self.undo, cx);
            }
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
        if op == OpTag::UploadRename {
            return self.renamed(c.result, cx);
        }
        if op == OpTag::UploadUnlink {
            return self.undo.unlinked();
        }
        if op == OpTag::UploadOpen {
            return self.on_created(c, cx);
        }
        if op != OpTag::UploadWrite {
            return Step::Pending;
        }
        let Some(i) = self.writing.take() else {
            return Step::Pending;
        };
        match c.result {
            Ok(n) => {
                if let Some((Some(f), _, _)) = self.files.get_mut(i) {
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
    fn on_body_error(&mut self, code: u16, cx: &mut Cx) -> Step {
        self.fail(code, cx)
    }
    fn abort(&mut self, _why: Abort, cx: &mut Cx) {
        if self.files.is_empty()
            && self.writing.is_none()
            && self.pending.is_empty()
            && self.opening.is_none()
        {
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
