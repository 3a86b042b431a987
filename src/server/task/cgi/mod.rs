//! The CGI task (RFC 3875): one script run for one request.
//!
//! It owns the child (through the registry, [`child`]), the three pipes and their buffers:
//! - **stdin**: request-body bytes arrive by `on_body`; at most one write is in flight and at
//!   most [`STDIN_HIGH_WATER`] bytes wait, so a slow script slows the client (back-pressure).
//! - **stdout**: read in pieces. Until the first [`BUFFER`] bytes are in, nothing is committed:
//!   output that ends there leaves as one write with `Content-Length`, after the child's exit
//!   status is known (a script that failed gets 500, its stderr tail in the error log). Larger
//!   output commits its head and streams, one read per drained output queue.
//! - **stderr**: read continuously; the last [`STDERR_TAIL`] bytes are kept for the log.
//! - **exit**: the child-exit op, routed here by the registry while the task lives.
//!
//! `cgi_timeout` is an inactivity limit: any stdin or stdout progress restarts it. Expiry before
//! the head is committed answers 504; after, the connection closes without a clean end.

pub mod child;
pub mod framing;
pub mod plan;

use std::os::fd::RawFd;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use backends::{Buf, Completion, Op};

use super::{Abort, Cx, Step, Task};
use crate::cgi::{CgiHead, CgiHeadParser};
use crate::server::ident::{TaskId, TaskKind, Trail};
use crate::server::token::OpTag;
use child::{ChildRef, Owner};
use framing::{Fed, Framing, Meta};

/// Body bytes waiting for the child's stdin before the connection stops feeding more.
pub const STDIN_HIGH_WATER: usize = 64 * 1024;
/// Output up to this size is answered with a Content-Length, after the exit status.
pub const BUFFER: usize = 64 * 1024;
/// Size of each stdout read.
const READ_SIZE: usize = 64 * 1024;
/// The stderr bytes kept for the error log.
const STDERR_TAIL: usize = 1024;

pub struct CgiTask {
    id: TaskId,
    plan: Option<plan::CgiPlan>,
    meta: Meta,
    pid: u32,
    child: Option<ChildRef>,
    stdin: Option<RawFd>,
    stdin_busy: bool,
    in_buf: Vec<u8>,
    body_done: bool,
    stdout: Option<RawFd>,
    reading: bool,
    out_eof: bool,
    stderr: Option<RawFd>,
    err_tail: Vec<u8>,
    parser: Option<CgiHeadParser>,
    head: Option<CgiHead>,
    held: Vec<u8>,
    framing: Option<Framing>,
    exit: Option<i32>,
    timeout: Duration,
    deadline: Instant,
    out_bytes: u64,
    trail: Trail,
    over: bool,
}

impl CgiTask {
    pub fn new(id: u32, plan: plan::CgiPlan, meta: Meta, has_body: bool) -> CgiTask {
        CgiTask {
            id: TaskId {
                kind: TaskKind::Cgi,
                id,
            },
            timeout: plan.timeout,
            plan: Some(plan),
            meta,
            pid: 0,
            child: None,
            stdin: None,
            stdin_busy: false,
            in_buf: Vec::new(),
            body_done: !has_body,
            stdout: None,
            reading: false,
            out_eof: false,
            stderr: None,
            err_tail: Vec::new(),
            parser: Some(CgiHeadParser::new()),
            head: None,
            held: Vec::new(),
            framing: None,
            exit: None,
            deadline: Instant::now(),
            out_bytes: 0,
            trail: Trail::default(),
            over: false,
        }
    }

    fn read_stdout(&mut self, cx: &mut Cx) {
        if let (Some(fd), false, false) = (self.stdout, self.reading, self.out_eof) {
            self.reading = true;
            cx.submit(
                OpTag::CgiStdout,
                Op::Read {
                    fd,
                    buf: Vec::with_capacity(READ_SIZE),
                    offset: None,
                },
            );
        }
    }

    fn read_stderr(&mut self, cx: &mut Cx, fd: RawFd) {
        cx.submit(
            OpTag::CgiStderr,
            Op::Read {
                fd,
                buf: Vec::with_capacity(4096),
                offset: None,
            },
        );
    }

    fn kick_stdin(&mut self, cx: &mut Cx) {
        let Some(fd) = self.stdin else { return };
        if self.stdin_busy {
            return;
        }
        if !self.in_buf.is_empty() {
            self.stdin_busy = true;
            let buf = std::mem::take(&mut self.in_buf);
            self.trail.push("stdin write", buf.len() as u64);
            cx.submit(
                OpTag::CgiStdin,
                Op::Write {
                    fd,
                    buf,
                    offset: None,
                },
            );
        } else if self.body_done {
            self.stdin = None;
            self.trail.push("stdin close", 0);
            cx.submit(OpTag::CgiStdinClose, Op::Close { fd });
        }
    }

    fn progress(&mut self, now: Instant) {
        self.deadline = now + self.timeout;
    }

    /// Stdout bytes arrived.
    fn on_output(&mut self, data: &[u8], cx: &mut Cx) -> Step {
        let mut body = data;
        if let Some(p) = self.parser.as_mut() {
            match p.feed(data) {
                Ok(None) => return self.after_output(cx),
                Ok(Some((head, used))) => {
                    self.parser = None;
                    if let Some(step) = self.take_head(head, cx) {
                        return step;
                    }
                    body = &data[used..];
                }
                Err(e) => return self.fail(cx, e.status(), "bad CGI header"),
            }
        }
        match self.framing.as_mut() {
            Some(f) => {
                if f.body(body, cx.out) == Fed::TooLong {
                    crate::info!("{}: output longer than its Content-Length; closing", cx.id);
                    return self.close(cx);
                }
            }
            None => self.held.extend_from_slice(body),
        }
        self.after_output(cx)
    }

    /// A head was parsed: refuse what cannot be answered, take local redirects.
    fn take_head(&mut self, head: CgiHead, cx: &mut Cx) -> Option<Step> {
        if head.status < 200 {
            // A 1xx from a script would be read by the client as an interim answer and the
            // script's body as the real response (RFC 9110 §15.2): refuse it.
            return Some(self.fail(cx, 502, "1xx status from a CGI"));
        }
        if let Some(path) = head.local_redirect() {
            let path = path.to_string();
            self.trail.push("local redirect", 0);
            self.abort(Abort::Finished, cx);
            return Some(Step::Internal(path));
        }
        self.head = Some(head);
        None
    }

    fn after_output(&mut self, cx: &mut Cx) -> Step {
        if self.framing.is_none() && self.head.is_some() && self.held.len() >= BUFFER {
            self.commit(None, cx);
        }
        if self.framing.is_none() {
            // Still gathering the first buffer: read on.
            self.read_stdout(cx);
        }
        Step::Pending
    }

    /// Queue the head (and what is held) and stream from here.
    fn commit(&mut self, known_len: Option<u64>, cx: &mut Cx) -> Option<Step> {
        let head = self.head.take()?;
        let (bytes, mut f) = framing::head_bytes(&head, known_len, self.meta, cx.date);
        self.trail.push("head committed", u64::from(head.status));
        let held = std::mem::take(&mut self.held);
        if known_len.is_some() && !f.bodyless && !f.chunked {
            // One write: head and body together.
            let take = f
                .declared
                .map_or(held.len(), |d| (d as usize).min(held.len()));
            f.sent = take as u64;
            cx.out.push(backends::SendBuf {
                head: bytes,
                body: backends::Body::Owned(held[..take].to_vec()),
            });
            let long = held.len() > take;
            self.framing = Some(f);
            return long.then(|| {
                crate::info!("{}: output longer than its Content-Length; closing", cx.id);
                Step::Close
            });
        }
        cx.out.push_bytes(bytes);
        let fed = f.body(&held, cx.out);
        self.framing = Some(f);
        (fed == Fed::TooLong).then_some(Step::Close)
    }

    /// Stdout reached EOF.
    fn on_eof(&mut self, cx: &mut Cx) -> Step {
        self.out_eof = true;
        if let Some(fd) = self.stdout.take() {
            cx.submit(OpTag::CgiStdoutClose, Op::Close { fd });
        }
        if let Some(mut p) = self.parser.take() {
            match p.finish() {
                Ok(head) => {
                    if let Some(step) = self.take_head(head, cx) {
                        return step;
                    }
                }
                Err(e) => return self.fail(cx, e.status(), "no valid CGI header"),
            }
        }
        if self.framing.is_none() {
            // Everything is held: answer once the exit status is known.
            return self.finish_small(cx);
        }
        self.finish_stream(cx)
    }

    fn finish_stream(&mut self, cx: &mut Cx) -> Step {
        let whole = self.framing.as_mut().is_some_and(|f| f.end(cx.out));
        if !whole {
            crate::info!("{}: output shorter than its Content-Length; closing", cx.id);
            return self.close(cx);
        }
        if self.framing.as_ref().is_some_and(|f| f.close_delimited) {
            self.abort(Abort::Finished, cx);
            return Step::Close;
        }
        self.abort(Abort::Finished, cx);
        Step::Done
    }

    fn finish_small(&mut self, cx: &mut Cx) -> Step {
        let Some(status) = self.exit else {
            return Step::Pending; // the exit op comes
        };
        let st = std::process::ExitStatus::from_raw(status);
        if !st.success() {
            let tail = String::from_utf8_lossy(&self.err_tail);
            crate::error!(
                "{}: script exited with {st} before its response was sent; stderr: {:?}",
                cx.id,
                tail.trim_end()
            );
            return self.fail(cx, 500, "script failed");
        }
        let len = self.held.len() as u64;
        let step = self.commit(Some(len), cx);
        self.abort(Abort::Finished, cx);
        match step {
            Some(s) => s,
            None if self
                .framing
                .as_ref()
                .is_some_and(|f| f.declared.is_some_and(|d| d > f.sent) && !f.bodyless) =>
            {
                crate::info!("{}: output shorter than its Content-Length; closing", cx.id);
                Step::Close
            }
            None => Step::Done,
        }
    }

    fn fail(&mut self, cx: &mut Cx, status: u16, why: &str) -> Step {
        crate::error!("{}: {why} ({status}); {}", cx.id, self.trail);
        self.abort(Abort::Closing, cx);
        if self.framing.is_some() {
            Step::Close
        } else {
            Step::Fail(status)
        }
    }

    fn close(&mut self, cx: &mut Cx) -> Step {
        self.abort(Abort::Closing, cx);
        Step::Close
    }
}

impl Task for CgiTask {
    fn id(&self) -> TaskId {
        self.id
    }

    fn start(&mut self, cx: &mut Cx) -> Step {
        let Some(plan) = self.plan.take() else {
            return Step::Fail(500);
        };
        if let Err(code) = crate::cgi::check_script(&plan.script, plan.interpreter.as_deref()) {
            return Step::Fail(code);
        }
        // Through the backend (contract invariant 11), so a simulated backend runs its own.
        let sp = match crate::cgi::command(plan.interpreter.as_deref(), &plan.script, &plan.env)
            .and_then(|mut cmd| cx.be.spawn(&mut cmd))
        {
            Ok(s) => s,
            Err(e) => {
                crate::error!("{}: cannot run {}: {e}", cx.id, plan.script.display());
                return Step::Fail(crate::server::reply::static_file::io_status(&e));
            }
        };
        self.pid = sp.pid;
        let owner = Owner {
            conn: cx.id.conn,
            gen: cx.id.gen,
            req: cx.id.req,
        };
        self.child = cx.children.register(sp.pid, owner, cx.be);
        self.stdin = Some(sp.stdin);
        self.stdout = Some(sp.stdout);
        let err = sp.stderr;
        self.stderr = Some(err);
        self.trail.push("spawned pid", u64::from(sp.pid));
        crate::trace!(
            "{}: spawned pid {} ({})",
            cx.id,
            sp.pid,
            plan.script.display()
        );
        if self.child.is_none() {
            // No registry slot: do not run a child nobody can reap.
            return self.fail(cx, 503, "child registry full");
        }
        self.progress(cx.now);
        self.read_stdout(cx);
        self.read_stderr(cx, err);
        self.kick_stdin(cx);
        Step::Pending
    }

    fn body_room(&self) -> usize {
        if self.over {
            return 0;
        }
        if self.stdin.is_none() {
            // The script closed its stdin: the rest of the body is read and dropped.
            return usize::MAX;
        }
        STDIN_HIGH_WATER.saturating_sub(self.in_buf.len())
    }

    fn on_body(&mut self, data: &[u8], done: bool, cx: &mut Cx) -> Step {
        if self.over {
            return Step::Pending;
        }
        if self.stdin.is_some() {
            self.in_buf.extend_from_slice(data);
        }
        self.body_done |= done;
        self.kick_stdin(cx);
        Step::Pending
    }

    fn on_completion(&mut self, op: OpTag, c: Completion, cx: &mut Cx) -> Step {
        if self.over {
            return Step::Pending; // aborted: what is still in flight just drains
        }
        match op {
            OpTag::CgiStdin => {
                self.stdin_busy = false;
                match c.result {
                    Ok(n) => {
                        self.progress(cx.now);
                        self.trail.push("stdin written", n as u64);
                    }
                    Err(e) => {
                        // The script stopped reading: the rest of the body is dropped.
                        crate::trace!("{}: stdin: {e}", cx.id);
                        self.in_buf = Vec::new();
                        self.body_done = true;
                        if let Some(fd) = self.stdin.take() {
                            cx.submit(OpTag::CgiStdinClose, Op::Close { fd });
                        }
                    }
                }
                self.kick_stdin(cx);
                Step::Pending
            }
            OpTag::CgiStdout => {
                self.reading = false;
                let Buf::Vec(data) = c.buf else {
                    return Step::Pending;
                };
                match c.result {
                    Ok(n) if n > 0 => {
                        self.progress(cx.now);
                        self.out_bytes += n as u64;
                        self.on_output(&data, cx)
                    }
                    Ok(_) => {
                        self.trail.push("stdout eof after", self.out_bytes);
                        crate::trace!("{}: stdout eof after {} B", cx.id, self.out_bytes);
                        self.on_eof(cx)
                    }
                    Err(e) => {
                        crate::error!("{}: stdout: {e}", cx.id);
                        self.on_eof(cx)
                    }
                }
            }
            OpTag::CgiStderr => {
                let Buf::Vec(data) = c.buf else {
                    return Step::Pending;
                };
                match c.result {
                    Ok(n) if n > 0 => {
                        self.err_tail.extend_from_slice(&data);
                        let excess = self.err_tail.len().saturating_sub(STDERR_TAIL);
                        self.err_tail.drain(..excess);
                        if let Some(fd) = self.stderr {
                            self.read_stderr(cx, fd);
                        }
                    }
                    _ => {
                        if let Some(fd) = self.stderr.take() {
                            cx.submit(OpTag::CgiStderrClose, Op::Close { fd });
                        }
                    }
                }
                Step::Pending
            }
            OpTag::ChildExit => {
                let status = c.result.unwrap_or(0) as i32;
                self.exit = Some(status);
                self.trail.push("exit status", status as u64);
                crate::trace!("{}: pid {} exited ({status:#x})", cx.id, self.pid);
                self.child = None; // reaped: nothing to signal any more
                if self.out_eof && self.framing.is_none() {
                    return self.finish_small(cx);
                }
                Step::Pending
            }
            _ => Step::Pending,
        }
    }

    fn on_drained(&mut self, cx: &mut Cx) -> Step {
        if !self.over && self.framing.is_some() {
            self.read_stdout(cx);
        }
        Step::Pending
    }

    fn deadline(&self) -> Option<Instant> {
        (!self.over).then_some(self.deadline)
    }

    fn on_deadline(&mut self, cx: &mut Cx) -> Step {
        crate::error!(
            "{}: cgi_timeout ({:?} without progress); {}",
            cx.id,
            self.timeout,
            self.trail
        );
        let committed = self.framing.is_some();
        self.abort(Abort::Timeout, cx);
        if committed {
            Step::Close
        } else {
            Step::Fail(504)
        }
    }

    fn abort(&mut self, why: Abort, cx: &mut Cx) {
        if self.over {
            return;
        }
        self.over = true;
        for (fd, op) in [
            (self.stdin.take(), OpTag::CgiStdinClose),
            (self.stdout.take(), OpTag::CgiStdoutClose),
            (self.stderr.take(), OpTag::CgiStderrClose),
        ] {
            if let Some(fd) = fd {
                cx.submit(op, Op::Close { fd });
            }
        }
        self.in_buf = Vec::new();
        self.held = Vec::new();
        if let Some(r) = self.child.take() {
            if why == Abort::Finished {
                // Its answer is complete: let it exit on its own, within cgi_timeout.
                cx.children
                    .release(r, cx.now + self.timeout.max(child::KILL_AFTER));
            } else {
                crate::trace!("{}: terminating pid {} ({why:?})", cx.id, self.pid);
                cx.children.terminate(r, cx.now, &mut *cx.be);
            }
        }
    }

    fn describe(&self) -> String {
        format!(
            "cgi pid {} stdout {} B, committed {}, exit {:?}",
            self.pid,
            self.out_bytes,
            self.framing.is_some(),
            self.exit
        )
    }
}
