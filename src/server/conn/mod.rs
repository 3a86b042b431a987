//! A connection: its I/O, its requests in order, back-pressure, keep-alive and closing.
//!
//! - **Input**: one multishot receive, armed only while the unconsumed input and the unsent
//!   output are under [`IN_HIGH`] / [`OUT_HIGH`] (cancelled above them and re-armed below), so
//!   per-connection memory is bounded whatever the client sends. While a request runs the
//!   receive stays armed (within those bounds), so a client that leaves is seen and a CGI
//!   working for it is stopped.
//! - **Requests**: one at a time, in order ([`head`] parses, [`request`] starts and finishes).
//!   The next pipelined request starts only once the previous one's response is fully queued
//!   and the queue is under [`OUT_HIGH`], so responses leave in request order and an error on
//!   request N answers N after 1..N-1, then closes.
//! - **Output**: [`OutQueue`], at most one send in flight; small queued responses leave
//!   in one write; file ranges by sendfile in pieces.
//! - **Closing**: after the last response, a lingering close (half-close, drain, close) so a
//!   request already in flight does not turn into a reset (RFC 9112 §9.6).
//!
//! Everything here sees the loop only through [`env::Env`]; the request's task only through
//! its `Cx`.

pub mod env;
pub mod head;
pub mod request;

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use backends::{Buf, Completion, Op, SendBuf};

use super::gauges::Gauge;
use super::ident::{LogId, TaskId, TaskKind};
use super::out::{Out, OutQueue};
use super::task::{Abort, Cx, RequestTask, Step, Task};
use super::token::{OpTag, Tok};
use env::Env;
use request::RequestRecord;

/// Unconsumed input above which no receive is armed.
pub const IN_HIGH: usize = 64 * 1024;
/// Unsent output above which no receive is armed and no further request is started.
pub const OUT_HIGH: usize = 64 * 1024;
/// Small queued buffers are merged into one send up to this size.
const COALESCE: usize = 64 * 1024;
/// A file range goes out by sendfile in pieces of this size (each restarts send_timeout).
const SENDFILE_PIECE: u64 = 4 << 20;
/// How long a lingering close waits for the client to close its side.
const LINGERING_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Between requests, nothing buffered.
    Idle,
    /// Reading a request head.
    Head,
    /// A request is in progress.
    Active,
    /// Half-closed after the last response; draining what the client still sends.
    Linger,
    /// Close submitted; the slot is freed when it completes.
    Closing,
}

impl Phase {
    /// The status page's counter for this phase.
    fn gauge(self) -> Gauge {
        match self {
            Phase::Idle => Gauge::Idle,
            Phase::Head => Gauge::Reading,
            Phase::Active | Phase::Linger => Gauge::Writing,
            Phase::Closing => Gauge::None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RecvState {
    Off,
    Armed,
    /// Cancelled; its last completion has not come yet.
    Cancelling,
}

pub struct Conn {
    pub fd: RawFd,
    pub slot: u32,
    pub gen: u32,
    /// The id of the connection's own I/O task.
    task: u32,
    pub local: SocketAddr,
    pub peer: SocketAddr,
    inbuf: Vec<u8>,
    pub out: OutQueue,
    /// Decoded request-body bytes on their way to the task (reused).
    scratch: Vec<u8>,
    recv: RecvState,
    cancel_pending: bool,
    eof: bool,
    sending: bool,
    pub phase: Phase,
    parser: Option<Box<crate::http::request::HeadParser>>,
    req: Option<Box<RequestRecord>>,
    /// Requests started on this connection (the current one's number).
    seq: u32,
    pub served: u32,
    pub deadline: Instant,
    /// No further request is read on this connection.
    close_after: bool,
    /// Close (lingering) once everything queued is sent.
    close_when_flushed: bool,
}

impl Conn {
    pub fn new(
        fd: RawFd,
        slot: u32,
        gen: u32,
        local: SocketAddr,
        peer: SocketAddr,
        env: &mut Env,
    ) -> Conn {
        let mut c = Conn {
            fd,
            slot,
            gen,
            task: env.gauges.task_id(),
            local,
            peer,
            inbuf: Vec::new(),
            out: OutQueue::default(),
            scratch: Vec::new(),
            recv: RecvState::Off,
            cancel_pending: false,
            eof: false,
            sending: false,
            phase: Phase::Idle,
            parser: None,
            req: None,
            seq: 0,
            served: 0,
            deadline: env.now + env.cfg.timeouts.header,
            close_after: false,
            close_when_flushed: false,
        };
        env.gauges.enter(Gauge::Idle);
        c.update_recv(env);
        c
    }

    fn tok(&self, op: OpTag) -> u64 {
        Tok::new(self.gen, self.slot, 0, op).encode()
    }

    /// The identity for a log line about this connection (and its current request and task).
    pub fn ident(&self) -> LogId {
        let mut id = self.io_ident();
        if let Some(t) = self.req.as_ref().and_then(|r| r.task.as_ref()) {
            id.task = t.id();
        }
        id
    }

    /// The identity of the connection's own I/O task (accept, receive, send, close).
    pub fn io_ident(&self) -> LogId {
        let kind = if self.phase == Phase::Linger {
            TaskKind::Linger
        } else {
            TaskKind::Conn
        };
        LogId {
            conn: self.slot,
            gen: self.gen,
            req: self.req.as_ref().map_or(0, |r| r.seq),
            task: TaskId {
                kind,
                id: self.task,
            },
        }
    }

    fn set_phase(&mut self, p: Phase, env: &mut Env) {
        if self.phase != p {
            env.gauges.leave(self.phase.gauge());
            env.gauges.enter(p.gauge());
            self.phase = p;
        }
    }

    /// A completion of one of this connection's ops (or its task's). Returns true when the
    /// connection is gone (its close completed): the loop frees the slot.
    pub fn on_completion(&mut self, t: Tok, c: Completion, env: &mut Env) -> bool {
        match t.op {
            OpTag::Recv => self.on_recv(c, env),
            OpTag::RecvCancel => self.cancel_pending = false,
            OpTag::Send => self.on_send(c, env),
            OpTag::Close => {
                env.gauges.leave(self.phase.gauge());
                return true;
            }
            _ => self.on_task_completion(t, c, env),
        }
        self.drive(env);
        false
    }

    fn on_task_completion(&mut self, t: Tok, c: Completion, env: &mut Env) {
        let live = self
            .req
            .as_ref()
            .is_some_and(|r| r.seq as u8 == t.req && r.task.is_some());
        if !live {
            // A late completion of a task that is gone (a close, a cancelled read): its
            // buffer is dropped here, nothing else refers to it.
            crate::trace!("{}: stale {} completion dropped", self.ident(), t.op.name());
            return;
        }
        let step = self.with_task(env, |task, cx| task.on_completion(t.op, c, cx));
        self.handle(step, env);
    }

    /// The child of this connection's current CGI exited (routed by the registry).
    pub fn on_child_exit(&mut self, req: u32, c: Completion, env: &mut Env) {
        if self.req.as_ref().is_some_and(|r| r.seq == req) {
            let step = self.with_task(env, |task, cx| task.on_completion(OpTag::ChildExit, c, cx));
            self.handle(step, env);
            self.drive(env);
        }
    }

    /// Run `f` on the current task with its context.
    fn with_task(
        &mut self,
        env: &mut Env,
        f: impl FnOnce(&mut RequestTask, &mut Cx) -> Step,
    ) -> Step {
        let id = self.ident();
        let Some(req) = self.req.as_mut() else {
            return Step::Pending;
        };
        let Some(task) = req.task.as_mut() else {
            return Step::Pending;
        };
        let mut cx = env.cx(id, &mut self.out);
        f(task, &mut cx)
    }

    fn on_recv(&mut self, c: Completion, env: &mut Env) {
        if !c.more {
            self.recv = RecvState::Off;
        }
        let n = match c.result {
            Ok(n) => n,
            Err(e) => {
                if e.raw_os_error() != Some(libc::ECANCELED) && self.phase != Phase::Closing {
                    crate::trace!("{}: recv: {e}", self.io_ident());
                    self.eof = true;
                    self.close(Abort::ClientGone, env);
                }
                return;
            }
        };
        if let Buf::Recv(b) = c.buf {
            let keep = match self.phase {
                Phase::Closing | Phase::Linger => false,
                // After a framing error or the last request, input is dropped, not kept.
                _ => !(self.close_after && self.req.as_ref().is_none_or(|r| r.body_done())),
            };
            if keep {
                if self.phase == Phase::Idle {
                    // A new request starts: its whole head must arrive within the header
                    // timeout, however slowly it drips (slowloris).
                    self.deadline = env.now + env.cfg.timeouts.header;
                    self.set_phase(Phase::Head, env);
                }
                self.inbuf.extend_from_slice(&b);
            }
            env.be.release(b);
        }
        if n == 0 && c.result.is_ok() && !self.eof {
            self.eof = true;
            self.on_eof(env);
        }
    }

    fn on_eof(&mut self, env: &mut Env) {
        match self.phase {
            Phase::Linger => self.close(Abort::ClientGone, env),
            Phase::Idle if self.out.is_empty() && !self.sending => {
                self.close(Abort::ClientGone, env)
            }
            Phase::Active => {
                let (body_open, stops) = match &self.req {
                    Some(r) => (
                        !r.body_done(),
                        r.task
                            .as_ref()
                            .is_some_and(|t| t.stops_when_client_leaves()),
                    ),
                    None => (false, false),
                };
                if (stops || body_open) && self.inbuf.is_empty() {
                    // The client left: a CGI working for it is stopped now (TERM, KILL a
                    // second later, reaped), an unfinished upload is dropped.
                    crate::info!("{}: client closed the connection", self.ident());
                    self.close(Abort::ClientGone, env);
                }
            }
            _ => {}
        }
    }

    fn on_send(&mut self, c: Completion, env: &mut Env) {
        self.sending = false;
        match c.result {
            Ok(_) => {
                // Progress restarts send_timeout; a connection that has sent everything and
                // waits for its next request gets keepalive_timeout.
                let t = if self.phase == Phase::Idle && self.out.is_empty() {
                    env.cfg.timeouts.keepalive
                } else {
                    env.cfg.timeouts.send
                };
                self.deadline = env.now + t;
            }
            Err(e) => {
                if self.phase != Phase::Closing {
                    crate::trace!("{}: send: {e}", self.io_ident());
                    self.close(Abort::ClientGone, env);
                }
            }
        }
    }

    /// Make all the progress possible: parse, feed bodies, send; then (re)arm the receive.
    pub fn drive(&mut self, env: &mut Env) {
        for _ in 0..64 {
            let a = self.advance(env);
            let p = self.pump(env);
            if !a && !p {
                break;
            }
        }
        self.update_recv(env);
    }

    fn advance(&mut self, env: &mut Env) -> bool {
        match self.phase {
            Phase::Closing | Phase::Linger => false,
            Phase::Active => self.feed_body(env),
            Phase::Idle | Phase::Head => {
                if self.close_after || self.close_when_flushed || self.out.bytes() > OUT_HIGH {
                    return false;
                }
                if self.inbuf.is_empty() {
                    if self.eof && self.out.is_empty() && !self.sending {
                        self.close(Abort::ClientGone, env);
                        return true;
                    }
                    return false;
                }
                self.parse_head(env)
            }
        }
    }

    /// Keep one send in flight; when the queue is empty, let the task produce more.
    fn pump(&mut self, env: &mut Env) -> bool {
        if self.sending || matches!(self.phase, Phase::Closing | Phase::Linger) {
            return false;
        }
        if let Some(o) = self.out.pop() {
            let op = match o {
                Out::Buf(mut buf) => {
                    // Coalesce small queued pieces into one send (pipelining: one write).
                    while let Some(next) = self.out.pop_buf_if(COALESCE, buf.len()) {
                        let body = std::mem::take(&mut buf.body);
                        buf.head.extend_from_slice(body.as_slice());
                        buf.head.extend_from_slice(&next.head);
                        buf.head.extend_from_slice(next.body.as_slice());
                    }
                    Op::Send { fd: self.fd, buf }
                }
                Out::File { fd, offset, len } => {
                    let piece = len.min(SENDFILE_PIECE);
                    if len > piece {
                        self.out.push_front(Out::File {
                            fd,
                            offset: offset + piece,
                            len: len - piece,
                        });
                    }
                    Op::SendFile {
                        fd: self.fd,
                        file: fd,
                        offset,
                        len: piece as usize,
                    }
                }
            };
            self.sending = true;
            env.be.submit(self.tok(OpTag::Send), op);
            return true;
        }
        if self.phase == Phase::Active {
            let before = self.phase;
            let step = self.with_task(env, |task, cx| task.on_drained(cx));
            let moved = step != Step::Pending;
            self.handle(step, env);
            return moved || !self.out.is_empty() || self.phase != before;
        }
        if self.close_when_flushed {
            self.linger(env);
            return true;
        }
        false
    }

    fn update_recv(&mut self, env: &mut Env) {
        let want = match self.phase {
            Phase::Closing => false,
            Phase::Linger => !self.eof,
            _ => !self.eof && self.inbuf.len() < IN_HIGH && self.out.bytes() < OUT_HIGH,
        };
        match (want, self.recv) {
            (true, RecvState::Off) => {
                self.recv = RecvState::Armed;
                env.be
                    .submit(self.tok(OpTag::Recv), Op::Recv { fd: self.fd });
            }
            (false, RecvState::Armed) if !self.cancel_pending => {
                // Back-pressure: no buffer is posted for this connection until it catches up.
                self.recv = RecvState::Cancelling;
                self.cancel_pending = true;
                let target = self.tok(OpTag::Recv);
                env.be
                    .submit(self.tok(OpTag::RecvCancel), Op::Cancel { target });
            }
            _ => {}
        }
    }

    /// What a task said.
    fn handle(&mut self, step: Step, env: &mut Env) {
        match step {
            Step::Pending => {}
            Step::Done => self.finish_request(env),
            Step::Fail(code) => {
                self.abort_task(Abort::Closing, env);
                if self.req.as_ref().is_some_and(|r| !r.body_done()) {
                    self.close_after = true;
                }
                self.queue_error(code, &[], env);
                self.finish_request(env);
            }
            Step::Close => {
                self.abort_task(Abort::Closing, env);
                self.close_after = true;
                self.finish_request(env);
            }
            Step::Internal(path) => self.internal_redirect(&path, env),
        }
    }

    fn abort_task(&mut self, why: Abort, env: &mut Env) {
        let id = self.ident();
        if let Some(req) = self.req.as_mut() {
            if let Some(mut task) = req.task.take() {
                let mut cx = env.cx(id, &mut self.out);
                task.abort(why, &mut cx);
            }
            req.deferred = None;
        }
    }

    /// Close after the last response the way RFC 9112 §9.6 asks.
    fn linger(&mut self, env: &mut Env) {
        if self.eof || env.be.shutdown_write(self.fd).is_err() {
            self.close(Abort::Closing, env);
            return;
        }
        crate::trace!("{}: lingering close", self.io_ident());
        self.inbuf = Vec::new();
        self.deadline = env.now + LINGERING_TIMEOUT;
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
        if self.deadline > now {
            return;
        }
        let id = self.ident();
        match self.phase {
            Phase::Closing => {}
            Phase::Idle => {
                crate::trace!("{id}: keepalive timeout");
                self.close(Abort::Timeout, env);
            }
            Phase::Linger => self.close(Abort::Timeout, env),
            Phase::Head => {
                // Mid-request: 408 while a response is still possible (RFC 9110 §15.5.9).
                crate::info!("{id}: client_header_timeout");
                self.fail(408, env);
            }
            Phase::Active => {
                if self.req.as_ref().is_some_and(|r| !r.body_done()) {
                    crate::info!("{id}: client_body_timeout");
                    self.abort_task(Abort::Timeout, env);
                    self.fail(408, env);
                } else if self.sending || !self.out.is_empty() {
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

    /// Idle between requests with nothing buffered (for reclaiming and stopping).
    pub fn is_idle(&self) -> bool {
        self.phase == Phase::Idle && self.inbuf.is_empty() && !self.sending && self.out.is_empty()
    }

    /// Queue an interim response (100 Continue).
    fn queue_raw(&mut self, bytes: &'static [u8]) {
        self.out.push(SendBuf {
            head: bytes.to_vec(),
            body: backends::Body::Empty,
        });
    }
}
