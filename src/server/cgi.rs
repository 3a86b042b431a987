//! CGI/1.1 tasks of a connection (RFC 3875): the request body streams into the child's stdin
//! while its stdout streams back to the client, each through backend operations with
//! back-pressure both ways (at most one stdin write and one stdout read in flight, and no read
//! while the previous chunk is still being sent). The child's exit is an operation too; the
//! loop never blocks on a pipe or in `waitpid`.
//!
//! Children outlive their connection only briefly: a connection that closes (client gone,
//! timeout, bad output) sends TERM, and the tick sends KILL a second later if the child is still
//! there. Every child is reaped by its exit operation: no zombies.

use std::os::fd::{IntoRawFd, RawFd};
use std::time::{Duration, Instant};

use backends::{Body as SendBody, Buf, Completion, Op, SendBuf};

use super::{respond, token, Loop, Phase};
use crate::cgi::{CgiHead, CgiHeadParser};

pub(super) const K_CGI_IN: u64 = 6;
pub(super) const K_CGI_OUT: u64 = 7;
pub(super) const K_CGI_EXIT: u64 = 8;
pub(super) const K_CGI_IN_CLOSE: u64 = 9;
pub(super) const K_CGI_OUT_CLOSE: u64 = 10;

/// Body bytes waiting for the child's stdin before the connection stops reading more.
const STDIN_HIGH_WATER: usize = 64 * 1024;
/// Size of each stdout read.
const STDOUT_CHUNK: usize = 64 * 1024;

/// A child process the loop still has to see exit.
pub(super) struct Child {
    pub pid: u32,
    /// The connection it serves, while it serves one.
    pub conn: Option<(u32, u32)>,
    /// When to send KILL (after a TERM).
    pub kill_at: Option<Instant>,
}

/// What the connection knows of its CGI.
pub(super) struct CgiTask {
    pub child: u32,
    pub pid: u32,
    pub stdin: Option<RawFd>,
    pub stdout: Option<RawFd>,
    pub writing: bool,
    pub in_buf: Vec<u8>,
    pub body_done: bool,
    pub reading: bool,
    pub head: Option<CgiHeadParser>,
    pub chunked: bool,
    pub out_done: bool,
    pub deadline: Instant,
}

/// Everything needed to start a CGI, decided while the request head was still at hand.
pub(super) struct CgiPlan {
    pub script: std::path::PathBuf,
    pub interpreter: Option<std::path::PathBuf>,
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
}

impl Loop {
    /// Spawn the child and start its tasks. Returns an error status if it cannot start.
    pub(super) fn start_cgi(&mut self, slot: u32, plan: CgiPlan) -> Result<(), u16> {
        crate::cgi::check_script(&plan.script, plan.interpreter.as_deref())?;
        let sp = match crate::cgi::spawn(plan.interpreter.as_deref(), &plan.script, &plan.env) {
            Ok(s) => s,
            Err(e) => {
                crate::error!("cgi {}: {e}", plan.script.display());
                return Err(match e.kind() {
                    std::io::ErrorKind::NotFound => 404,
                    std::io::ErrorKind::PermissionDenied => 403,
                    _ => 500,
                });
            }
        };
        let gen = self.conn(slot).gen;
        let child = match self.children_free.pop() {
            Some(i) => i,
            None => {
                self.children.push(None);
                (self.children.len() - 1) as u32
            }
        };
        self.children[child as usize] = Some(Child {
            pid: sp.pid,
            conn: Some((slot, gen)),
            kill_at: None,
        });
        let (stdin, stdout) = (sp.stdin.into_raw_fd(), sp.stdout.into_raw_fd());
        crate::trace!(
            "conn {slot} task cgi#{child}: spawned pid {} ({})",
            sp.pid,
            plan.script.display()
        );
        self.be
            .submit(token(0, child, K_CGI_EXIT), Op::ChildExit { pid: sp.pid });
        self.be.submit(
            token(gen, slot, K_CGI_OUT),
            Op::Read {
                fd: stdout,
                buf: Vec::with_capacity(STDOUT_CHUNK),
                offset: None,
            },
        );
        let conn = self.conn(slot);
        conn.cgi = Some(Box::new(CgiTask {
            child,
            pid: sp.pid,
            stdin: Some(stdin),
            stdout: Some(stdout),
            writing: false,
            in_buf: Vec::new(),
            body_done: false,
            reading: true,
            head: Some(CgiHeadParser::new()),
            chunked: false,
            out_done: false,
            deadline: Instant::now() + plan.timeout,
        }));
        Ok(())
    }

    /// Queue request-body bytes for the child. Returns false when its buffer is full (the caller
    /// stops consuming: back-pressure reaches the client through TCP).
    pub(super) fn cgi_accepts(&mut self, slot: u32) -> bool {
        self.conn(slot)
            .cgi
            .as_ref()
            .is_some_and(|t| t.in_buf.len() < STDIN_HIGH_WATER)
    }

    pub(super) fn cgi_push_body(&mut self, slot: u32, data: &[u8], done: bool) {
        if let Some(t) = self.conn(slot).cgi.as_mut() {
            t.in_buf.extend_from_slice(data);
            t.body_done |= done;
        }
        self.cgi_kick_stdin(slot);
    }

    /// Start a stdin write if there is something to write, or close stdin once all is written.
    pub(super) fn cgi_kick_stdin(&mut self, slot: u32) {
        let conn = self.conn(slot);
        let gen = conn.gen;
        let Some(t) = conn.cgi.as_mut() else {
            return;
        };
        let Some(fd) = t.stdin else {
            return;
        };
        if t.writing {
            return;
        }
        if !t.in_buf.is_empty() {
            t.writing = true;
            let buf = std::mem::take(&mut t.in_buf);
            crate::trace!(
                "conn {slot} task cgi#{}: stdin write {} B",
                t.child,
                buf.len()
            );
            self.be.submit(
                token(gen, slot, K_CGI_IN),
                Op::Write {
                    fd,
                    buf,
                    offset: None,
                },
            );
        } else if t.body_done {
            t.stdin = None;
            crate::trace!("conn {slot} task cgi#{}: stdin closed", t.child);
            self.be
                .submit(token(gen, slot, K_CGI_IN_CLOSE), Op::Close { fd });
        }
    }

    pub(super) fn on_cgi(&mut self, slot: u32, kind: u64, c: Completion) {
        match kind {
            K_CGI_IN => {
                let Some(t) = self.conn(slot).cgi.as_mut() else {
                    return;
                };
                t.writing = false;
                if let Err(e) = c.result {
                    // The child stopped reading (closed stdin early): drop the rest of the body.
                    crate::trace!("conn {slot} task cgi#{}: stdin: {e}", t.child);
                    t.in_buf.clear();
                    t.body_done = true;
                    if let Some(fd) = t.stdin.take() {
                        let gen = self.conn(slot).gen;
                        self.be
                            .submit(token(gen, slot, K_CGI_IN_CLOSE), Op::Close { fd });
                    }
                    // Keep reading the request body so the connection stays in sync.
                } else {
                    self.cgi_kick_stdin(slot);
                }
                self.advance(slot);
            }
            K_CGI_OUT => self.on_cgi_stdout(slot, c),
            _ => {} // pipe closes
        }
    }

    fn on_cgi_stdout(&mut self, slot: u32, c: Completion) {
        let gen = self.conn(slot).gen;
        let Buf::Vec(data) = c.buf else {
            return;
        };
        let Some(t) = self.conn(slot).cgi.as_mut() else {
            return;
        };
        t.reading = false;
        let n = match c.result {
            Ok(n) => n,
            Err(e) => {
                crate::error!("cgi#{} stdout: {e}", t.child);
                0
            }
        };
        crate::trace!("conn {slot} task cgi#{}: stdout read {n} B", t.child);
        if n == 0 {
            t.out_done = true;
            if let Some(fd) = t.stdout.take() {
                self.be
                    .submit(token(gen, slot, K_CGI_OUT_CLOSE), Op::Close { fd });
            }
            let t = self.conn(slot).cgi.as_mut().unwrap();
            if let Some(mut p) = t.head.take() {
                match p.finish() {
                    Ok(head) => self.cgi_head(slot, head, &[]),
                    Err(e) => return self.cgi_fail(slot, e.status(), "no valid CGI header"),
                }
            }
            let t = self.conn(slot).cgi.as_mut().unwrap();
            if t.chunked {
                self.conn(slot).out.push_back(SendBuf {
                    head: b"0\r\n\r\n".to_vec(),
                    body: SendBody::Empty,
                });
            }
            self.cgi_done(slot);
            self.pump(slot);
            return;
        }
        if let Some(p) = t.head.as_mut() {
            match p.feed(&data) {
                Ok(Some((head, used))) => {
                    self.conn(slot).cgi.as_mut().unwrap().head = None;
                    self.cgi_head(slot, head, &data[used..]);
                }
                Ok(None) => {}
                Err(e) => return self.cgi_fail(slot, e.status(), "bad CGI header"),
            }
        } else {
            self.cgi_body(slot, &data);
        }
        self.pump(slot);
    }

    /// The CGI's response head is known: answer the client.
    fn cgi_head(&mut self, slot: u32, head: CgiHead, rest: &[u8]) {
        if let Some(path) = head.local_redirect().map(str::to_string) {
            // RFC 3875 §6.2.2: a local redirect is answered by the server as a GET of that path.
            self.cgi_detach(slot, false);
            let cx_date = self.date_now;
            let conn = self.conn(slot);
            let info = conn.req.as_ref().unwrap();
            let cfg = info.cfg.clone();
            let server = &cfg.servers[info.server];
            let (p, q) = match path.split_once('?') {
                Some((p, q)) => (p.to_string(), Some(q.to_string())),
                None => (path.clone(), None),
            };
            let cx = respond::Ctx {
                head_only: info.head_only,
                query: q.as_deref(),
                ..respond::Ctx::plain(&cx_date, info.keep_alive_10)
            };
            let loc = server.location_for(&p);
            let reply = match respond::serve_static(&p, loc, &cfg, &cx, &mut self.cache) {
                respond::Static::Reply(r) => r,
                respond::Static::Error(code) => respond::error(code, server, loc, &[], &cx),
            };
            self.conn(slot).phase = Phase::Respond;
            self.send_reply(slot, reply);
            return;
        }
        let date = self.date_now;
        let conn = self.conn(slot);
        let info = conn.req.as_ref().unwrap();
        let http10 = info.http10;
        let head_only = info.head_only;
        let mut out = Vec::with_capacity(512);
        let mut h = crate::http::response::ResponseHead::new(&mut out, head.status);
        h.header("Server", respond::SERVER).header("Date", &date);
        if let Some(ct) = &head.content_type {
            h.header("Content-Type", ct.as_bytes());
        }
        if let Some(crate::cgi::Location::Url(u)) = &head.location {
            h.header("Location", u.as_bytes());
        }
        for (n, v) in &head.headers {
            h.header(n, v.as_bytes());
        }
        let bodyless = head_only || head.status == 204 || head.status == 304;
        let t = conn.cgi.as_mut().unwrap();
        match head.content_length {
            Some(len) => {
                h.header_u64("Content-Length", len);
            }
            None if bodyless => {}
            // Without a length: chunked on HTTP/1.1, delimited by closing on HTTP/1.0.
            None if !http10 => {
                h.header("Transfer-Encoding", b"chunked");
                t.chunked = true;
            }
            None => {
                conn.close_after = true;
            }
        }
        if conn.close_after || !info.keep_alive {
            h.header("Connection", b"close");
            conn.close_after = true;
        } else if info.keep_alive_10 {
            h.header("Connection", b"keep-alive");
        }
        h.finish();
        if bodyless {
            // Nothing of the body goes out (cgi_body drops it); the output is still drained.
            t.chunked = false;
        }
        conn.note_reply(head.status, 0);
        conn.out.push_back(SendBuf {
            head: out,
            body: SendBody::Empty,
        });
        if !rest.is_empty() {
            self.cgi_body(slot, rest);
        }
    }

    fn cgi_body(&mut self, slot: u32, data: &[u8]) {
        let conn = self.conn(slot);
        let status = conn.req.as_ref().map_or(0, |r| r.status);
        if status == 204 || status == 304 || conn.req.as_ref().is_some_and(|r| r.head_only) {
            return;
        }
        if let Some(r) = conn.req.as_mut() {
            r.sent_bytes += data.len() as u64;
        }
        let chunked = conn.cgi.as_ref().is_some_and(|t| t.chunked);
        let mut head = Vec::new();
        if chunked {
            crate::http::chunked::write_chunk_head(data.len(), &mut head);
        }
        let mut body = data.to_vec();
        if chunked {
            body.extend_from_slice(b"\r\n");
        }
        conn.out.push_back(SendBuf {
            head,
            body: SendBody::Owned(body),
        });
    }

    /// Issue the next stdout read once what was read before has been sent (back-pressure).
    pub(super) fn cgi_kick_stdout(&mut self, slot: u32) {
        let conn = self.conn(slot);
        let gen = conn.gen;
        if conn.sending || !conn.out.is_empty() {
            return;
        }
        let Some(t) = conn.cgi.as_mut() else {
            return;
        };
        if t.reading || t.out_done {
            return;
        }
        let Some(fd) = t.stdout else {
            return;
        };
        t.reading = true;
        self.be.submit(
            token(gen, slot, K_CGI_OUT),
            Op::Read {
                fd,
                buf: Vec::with_capacity(STDOUT_CHUNK),
                offset: None,
            },
        );
    }

    /// The CGI failed before its head: 502 (or `code`), and the child goes.
    fn cgi_fail(&mut self, slot: u32, code: u16, why: &str) {
        crate::error!("conn {slot}: cgi: {why} ({code})");
        self.cgi_detach(slot, true);
        let conn = self.conn(slot);
        conn.close_after = true;
        conn.body = None;
        conn.phase = Phase::Respond;
        self.respond_error(slot, code, &[]);
    }

    /// The child's output is complete: the task is over (its exit is still awaited).
    fn cgi_done(&mut self, slot: u32) {
        self.cgi_detach(slot, false);
        let conn = self.conn(slot);
        if conn.phase == Phase::Body {
            // The script answered before reading the whole body: close after the response.
            conn.close_after = true;
            conn.body = None;
        }
        conn.phase = Phase::Respond;
    }

    /// Separate the task from the connection: close its pipes and (if `kill`) TERM the child;
    /// a child that is still running gets KILL from the tick a second later.
    pub(super) fn cgi_detach(&mut self, slot: u32, kill: bool) {
        let conn = self.conn(slot);
        let gen = conn.gen;
        let Some(t) = conn.cgi.take() else {
            return;
        };
        if let Some(fd) = t.stdin {
            self.be
                .submit(token(gen, slot, K_CGI_IN_CLOSE), Op::Close { fd });
        }
        if let Some(fd) = t.stdout {
            self.be
                .submit(token(gen, slot, K_CGI_OUT_CLOSE), Op::Close { fd });
        }
        if let Some(Some(ch)) = self.children.get_mut(t.child as usize) {
            ch.conn = None;
            if kill {
                let _ = backends::util::kill(t.pid, libc::SIGTERM);
                ch.kill_at = Some(Instant::now() + Duration::from_secs(1));
            } else {
                // Its output is complete; give it the CGI timeout to exit before KILL.
                ch.kill_at = Some(t.deadline.max(Instant::now() + Duration::from_secs(1)));
            }
        }
    }

    /// A child exited (and was reaped by the backend).
    pub(super) fn on_child_exit(&mut self, child: u32, c: Completion) {
        let Some(ch) = self.children.get_mut(child as usize).and_then(Option::take) else {
            return;
        };
        self.children_free.push(child);
        crate::trace!("task cgi#{child}: pid {} exited: {:?}", ch.pid, c.result);
        if let Some((slot, gen)) = ch.conn {
            let live = self
                .conns
                .get(slot as usize)
                .and_then(|c| c.as_ref())
                .is_some_and(|c| c.gen == gen);
            if live {
                if let Some(t) = self.conn(slot).cgi.as_mut() {
                    // Its stdout EOF decides the response; just forget the pid.
                    t.pid = 0;
                }
            }
        }
    }

    /// Tick: CGI timeouts (504 and kill) and KILL for children that ignored TERM.
    pub(super) fn cgi_tick(&mut self, now: Instant) {
        for slot in 0..self.conns.len() {
            let expired = self.conns[slot]
                .as_ref()
                .and_then(|c| c.cgi.as_ref())
                .is_some_and(|t| t.deadline <= now);
            if expired {
                let slot = slot as u32;
                let head_sent = self
                    .conn(slot)
                    .cgi
                    .as_ref()
                    .is_some_and(|t| t.head.is_none());
                crate::error!("conn {slot}: cgi_timeout");
                if head_sent {
                    self.cgi_detach(slot, true);
                    self.close(slot);
                } else {
                    self.cgi_fail(slot, 504, "cgi_timeout");
                }
            }
        }
        for ch in self.children.iter_mut().flatten() {
            if ch.kill_at.is_some_and(|t| t <= now) {
                let _ = backends::util::kill(ch.pid, libc::SIGKILL);
                ch.kill_at = Some(now + Duration::from_secs(5));
            }
        }
    }
}
