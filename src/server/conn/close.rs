//! How requests and connections end: a task's outcome, deadlines, lingering close, close.

use super::Flags;
use std::time::Duration;

use backends::Op;

use super::env::Env;
use super::{Conn, Phase};
use crate::server::task::{Abort, Step, Task};
use crate::server::token::OpTag;

/// How long a lingering close waits for the client to close its side.
const LINGERING_TIMEOUT: Duration = Duration::from_secs(2);

impl Conn {
    /// A task failed: say so with its identity and its last transitions — at `error` when the
    /// server is at fault (5xx, or a response cut short), at `info` for a client's error.
    pub(super) fn log_failure(&self, step: &Step) {
        let Some(t) = self.req.as_ref().and_then(|r| r.task.as_ref()) else {
            return;
        };
        let (server_fault, what) = match step {
            Step::Fail(code) => (*code >= 500, format!("failed with {code}")),
            Step::Close => (true, "cut short; closing".to_string()),
            _ => return,
        };
        let id = self.ident();
        if server_fault {
            crate::error!("{id}: {what}: {}", t.describe());
        } else {
            crate::info!("{id}: {what}: {}", t.describe());
        }
    }

    /// What a task said.
    pub(super) fn handle(&mut self, step: Step, env: &mut Env) {
        self.log_failure(&step);
        self.add_headers();
        match step {
            Step::Pending => {}
            Step::Done => self.finish_request(env),
            Step::Fail(code) => {
                self.abort_task(Abort::Closing, env);
                if let Some(r) = self.req.as_mut() {
                    if !r.body_done() {
                        // The rest of the body can no longer be told from a next request.
                        self.flags.set(Flags::CLOSE_AFTER, true);
                        r.body = None;
                    }
                }
                self.answer_error(code, &[], env);
            }
            Step::Close => {
                self.abort_task(Abort::Closing, env);
                self.flags.set(Flags::CLOSE_AFTER, true);
                self.finish_request(env);
            }
            Step::Internal(path) => self.internal_redirect(&path, env),
            Step::Reroute => self.reroute(env),
        }
    }

    pub(super) fn abort_task(&mut self, why: Abort, env: &mut Env) {
        let id = self.ident();
        if let Some(req) = self.req.as_mut() {
            if let Some(mut task) = req.task.take() {
                let mut cx = env.cx(id, req.tseq, &mut self.out);
                task.abort(why, &mut cx);
            }
            req.deferred = None;
        }
    }

    /// Close after the last response the way RFC 9112 §9.6 asks.
    pub(super) fn linger(&mut self, env: &mut Env) {
        if self.flags.has(Flags::EOF) || env.be.shutdown_write(self.fd).is_err() {
            self.close(Abort::Closing, env);
            return;
        }
        crate::trace!("{}: lingering close", self.io_ident());
        self.inbuf = Vec::new();
        self.deadline = env.deadline(LINGERING_TIMEOUT);
        self.set_phase(Phase::Linger, env);
    }

    /// Close the connection now: abort the request's task, cancel everything on the socket.
    pub fn close(&mut self, why: Abort, env: &mut Env) {
        if self.phase == Phase::Closing {
            return;
        }
        self.abort_task(why, env);
        if let Some(req) = self.req.take() {
            if req.task.is_none() && why != Abort::Closing {
                crate::trace!("{}: closed mid-request ({why:?})", self.ident());
            }
        }
        self.out.clear();
        self.inbuf = Vec::new();
        self.set_phase(Phase::Closing, env);
        env.be
            .submit(self.tok(OpTag::Close), Op::Close { fd: self.fd });
    }

    /// Deadlines, checked once a second by the loop's tick.
    pub fn on_tick(&mut self, env: &mut Env) {
        let now = env.now;
        if self.phase != Phase::Active {
            if let Some(t) = self.tls.as_mut() {
                t.release_spare();
            }
        }
        if self.phase == Phase::Active {
            let due = self
                .req
                .as_ref()
                .and_then(|r| r.task.as_ref())
                .and_then(|t| t.deadline())
                .is_some_and(|d| d <= now);
            if due {
                let step = self.with_task(env, |task, cx| task.on_deadline(cx));
                self.handle(step, env);
                self.drive(env);
                return;
            }
        }
        if self.deadline.at() > now {
            return;
        }
        let id = self.ident();
        match self.phase {
            Phase::Closing => {}
            Phase::Idle => {
                crate::trace!("{id}: keepalive timeout");
                if self.is_tls() && self.out.is_empty() && !self.flags.has(Flags::SENDING) {
                    // close_notify first, then the lingering close (pump).
                    self.flags.set(Flags::CLOSE_AFTER, true);
                    self.flags.set(Flags::CLOSE_WHEN_FLUSHED, true);
                } else {
                    self.close(Abort::Timeout, env);
                }
            }
            Phase::Linger => self.close(Abort::Timeout, env),
            Phase::Handshake => {
                crate::info!("{id}: no TLS handshake within client_header_timeout; closing");
                self.close(Abort::Timeout, env);
            }
            Phase::Proxy => {
                crate::info!("{id}: no PROXY header within client_header_timeout; closing");
                self.close(Abort::Timeout, env);
            }
            Phase::Head => {
                // Mid-request: 408 while a response is still possible (RFC 9110 §15.5.9).
                crate::info!("{id}: client_header_timeout");
                self.fail(408, env);
            }
            Phase::Active => {
                if self.req.as_ref().is_some_and(|r| !r.body_done()) {
                    crate::info!("{id}: client_body_timeout");
                    // The task hears of it (an upload answers once its files are removed).
                    self.fail(408, env);
                } else if self.flags.has(Flags::SENDING) || !self.out.is_empty() {
                    crate::info!("{id}: send_timeout");
                    self.close(Abort::Timeout, env);
                    return;
                } else {
                    // A task at work (a CGI): its own deadline applies.
                    return;
                }
            }
        }
        self.drive(env);
    }
}
