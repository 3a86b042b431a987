//! Uploads: a raw POST or a PUT written to a temp file and renamed into place when the body is
//! complete (atomic: a failed upload leaves nothing), and multipart/form-data with one temp
//! file per file part.
//!
//! The writes are plain `write(2)` calls on the loop (regular files; see the README's list of
//! what still blocks).

use std::path::PathBuf;

use backends::Completion;

use super::cgi::framing::Meta;
use super::{Abort, Cx, Step, Task};
use crate::handlers::atomic_file::AtomicFile;
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
    if e.raw_os_error() == Some(libc::ENOSPC) {
        507
    } else {
        500
    }
}

/// A raw POST (stored under a generated name) or a PUT (to its path).
pub struct UploadTask {
    id: TaskId,
    file: Option<AtomicFile>,
    dest: PathBuf,
    replace: bool,
    /// POST: the URI of the directory the file lands in (for `Location`).
    uri_dir: String,
    meta: Meta,
    bytes: u64,
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
        }
    }

    fn commit(&mut self, cx: &mut Cx) -> Step {
        let Some(file) = self.file.take() else {
            return Step::Fail(500);
        };
        let (landed, created) = match file.commit(&self.dest, self.replace) {
            Ok(x) => x,
            Err(e) => {
                crate::error!("{}: upload into {}: {e}", cx.id, self.dest.display());
                return Step::Fail(storage_status(&e));
            }
        };
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
            let name = landed
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            // The Location is a URI: every part percent-encoded, the request's directory too.
            let uri = crate::http::path::percent_encode_path(&format!("{}{name}", self.uri_dir));
            let body = format!(
                "<!doctype html><title>201 Created</title><p>Saved <a href=\"{0}\">{1}</a></p>\n",
                crate::http::path::html_escape(&uri),
                crate::http::path::html_escape(&name)
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
}

impl Task for UploadTask {
    fn id(&self) -> TaskId {
        self.id
    }
    fn start(&mut self, _cx: &mut Cx) -> Step {
        Step::Pending
    }
    fn body_room(&self) -> usize {
        if self.file.is_some() {
            usize::MAX
        } else {
            0
        }
    }
    fn on_body(&mut self, data: &[u8], done: bool, cx: &mut Cx) -> Step {
        let Some(f) = self.file.as_mut() else {
            return Step::Pending;
        };
        if let Err(e) = f.write_all(data) {
            crate::error!("{}: upload write: {e}", cx.id);
            self.file = None; // the temp file is removed
            return Step::Fail(storage_status(&e));
        }
        self.bytes += data.len() as u64;
        if done {
            return self.commit(cx);
        }
        Step::Pending
    }
    fn on_completion(&mut self, _op: OpTag, _c: Completion, _cx: &mut Cx) -> Step {
        Step::Pending
    }
    fn abort(&mut self, _why: Abort, _cx: &mut Cx) {
        self.file = None; // dropping the temp file removes it
    }
    fn describe(&self) -> String {
        format!("upload {} B to {}", self.bytes, self.dest.display())
    }
}

/// A multipart/form-data upload: each file part to its own temp file, committed at its end.
pub struct MultipartTask {
    id: TaskId,
    parser: crate::handlers::multipart::MultipartParser,
    dir: PathBuf,
    uri_dir: String,
    current: Option<(AtomicFile, String)>,
    saved: Vec<String>,
    meta: Meta,
    failed: bool,
}

impl MultipartTask {
    pub fn new(id: u32, boundary: &str, dir: PathBuf, uri_dir: String, meta: Meta) -> Self {
        MultipartTask {
            id: TaskId {
                kind: TaskKind::Multipart,
                id,
            },
            parser: crate::handlers::multipart::MultipartParser::new(boundary),
            dir,
            uri_dir,
            current: None,
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
            current,
            saved,
            ..
        } = self;
        parser
            .feed(data, &mut |part| {
                match part {
                    Part::Start { filename, .. } => {
                        // Only file parts are stored; plain form fields are skipped.
                        *current = match filename.as_deref().and_then(sanitize_filename) {
                            Some(name) => Some((AtomicFile::create_in(dir)?, name)),
                            None => None,
                        };
                    }
                    Part::Data(d) => {
                        if let Some((f, _)) = current.as_mut() {
                            f.write_all(d)?;
                        }
                    }
                    Part::End => {
                        if let Some((f, name)) = current.take() {
                            let (landed, _) = f.commit(&dir.join(&name), false)?;
                            let landed = landed
                                .file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or(name);
                            saved.push(landed);
                        }
                    }
                }
                Ok(())
            })
            .map_err(|e| e.status())
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
        if self.failed {
            0
        } else {
            usize::MAX
        }
    }
    fn on_body(&mut self, data: &[u8], done: bool, cx: &mut Cx) -> Step {
        if self.failed {
            return Step::Pending;
        }
        let mut r = self.feed(data);
        if r.is_ok() && done {
            r = self.parser.finish().map_err(|e| e.status());
        }
        if let Err(code) = r {
            crate::info!("{}: multipart upload failed ({code})", cx.id);
            self.failed = true;
            self.current = None;
            return Step::Fail(code);
        }
        if done {
            self.reply(cx);
            return Step::Done;
        }
        Step::Pending
    }
    fn on_completion(&mut self, _op: OpTag, _c: Completion, _cx: &mut Cx) -> Step {
        Step::Pending
    }
    fn abort(&mut self, _why: Abort, _cx: &mut Cx) {
        self.failed = true;
        self.current = None;
    }
    fn describe(&self) -> String {
        format!("multipart: {} file(s) saved", self.saved.len())
    }
}
