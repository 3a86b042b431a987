//! The script's stdout becoming the response: the head (refused, redirected or kept), the
//! first buffer held until the output ends or grows past [`BUFFER`](super::BUFFER), the commit,
//! and how the answer ends once stdout is at EOF and the exit status is known.

use std::os::unix::process::ExitStatusExt;

use backends::Op;

use super::framing::{self, Fed};
use super::{CgiTask, BUFFER, EXIT_GRACE};
use crate::cgi::CgiHead;
use crate::server::task::{Abort, Cx, Step, Task};
use crate::server::token::OpTag;

impl CgiTask {
    /// Stdout bytes arrived.
    pub(super) fn on_output(&mut self, data: &[u8], cx: &mut Cx) -> Step {
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
    pub(super) fn take_head(&mut self, head: CgiHead, cx: &mut Cx) -> Option<Step> {
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

    pub(super) fn after_output(&mut self, cx: &mut Cx) -> Step {
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
    pub(super) fn commit(&mut self, known_len: Option<u64>, cx: &mut Cx) -> Option<Step> {
        let head = self.head.take()?;
        // An answer that goes out before the request body has all arrived is the connection's
        // last (the rest of the body cannot be told from a next request): say so.
        let mut meta = self.meta;
        if !self.body_received {
            meta.close = true;
            meta.keep_alive_10 = false;
        }
        let (bytes, mut f) = framing::head_bytes(&head, known_len, meta, cx.date);
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
    pub(super) fn on_eof(&mut self, cx: &mut Cx) -> Step {
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
                // Which failure it is (a script that died: 500; one that printed no head:
                // 502) is known once it has exited.
                Err(e) => self.bad_head = Some(e.status()),
            }
        }
        // The answer is complete; how the script ended decides how it goes out. Its exit
        // status is awaited for a short grace (a script that closes stdout and stays alive is
        // then taken at its word).
        self.deadline = cx.now + EXIT_GRACE.min(self.timeout);
        self.after_output_end(cx)
    }

    /// Stdout is at EOF: answer if the exit status is known (or no longer awaited).
    pub(super) fn after_output_end(&mut self, cx: &mut Cx) -> Step {
        if self.exit.is_none() && !self.exit_waited {
            return Step::Pending;
        }
        if self.framing.is_none()
            && self.stderr.is_some()
            && self.failed_exit().is_some()
            && !self.exit_waited
        {
            // A failed script's stderr tail goes to the error log: within the same grace,
            // its stderr is read to the end first (the exit can be seen before the last
            // stderr bytes are).
            return Step::Pending;
        }
        if self.framing.is_none() {
            return self.finish_small(cx);
        }
        self.finish_stream(cx)
    }

    pub(super) fn failed_exit(&self) -> Option<std::process::ExitStatus> {
        self.exit
            .map(std::process::ExitStatus::from_raw)
            .filter(|st| !st.success())
    }

    pub(super) fn finish_stream(&mut self, cx: &mut Cx) -> Step {
        if let Some(st) = self.failed_exit() {
            // A script that died mid-stream (killed, crashed) did not finish its answer: no
            // clean end, so the client can tell it was cut short.
            crate::error!(
                "{}: script exited with {st} after its head was sent; response cut",
                cx.id
            );
            return self.close(cx);
        }
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

    pub(super) fn finish_small(&mut self, cx: &mut Cx) -> Step {
        if let Some(st) = self.failed_exit() {
            let tail = String::from_utf8_lossy(&self.err_tail);
            crate::error!(
                "{}: script exited with {st} before its response was sent; stderr: {:?}",
                cx.id,
                tail.trim_end()
            );
            return self.fail(cx, 500, "script failed");
        }
        if let Some(code) = self.bad_head {
            return self.fail(cx, code, "no valid CGI header");
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
}
