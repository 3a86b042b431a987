//! A connection: its I/O, its requests in order, back-pressure, keep-alive and closing.
//!
//! - **Input**: one multishot receive, armed only while the unconsumed input and the unsent
//!   output are under [`IN_HIGH`] / [`OUT_HIGH`] (cancelled above them and re-armed below), so
//!   per-connection memory is bounded whatever the client sends. While a request runs the
//!   receive stays armed (within those bounds; above them a hang-up watch stands in for it),
//!   so a client that leaves is seen and a CGI working for it is stopped.
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

mod close;
pub mod env;
mod flow;
pub mod head;
mod proxy;
mod redirect;
pub mod request;
mod tls;
mod try_files;

use std::net::SocketAddr;
use std::os::fd::RawFd;

use backends::{Buf, Completion, SendBuf};

use super::gauges::Gauge;
use super::ident::{LogId, TaskId, TaskKind};
use super::out::OutQueue;
use super::stamp::Stamp;
use super::task::{Abort, Cx, RequestTask, Step, Task};
use super::token::{OpTag, Tok};
use env::Env;
use request::RequestRecord;

/// Unconsumed input above which no receive is armed.
pub const IN_HIGH: usize = 64 * 1024;
/// Unsent output above which no receive is armed and no further request is started.
pub const OUT_HIGH: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// On a `proxy_protocol` listener, before the PROXY header is complete.
    Proxy,
    /// On an `ssl` listener, before the TLS handshake is complete.
    Handshake,
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
            Phase::Proxy | Phase::Handshake | Phase::Head => Gauge::Reading,
            Phase::Active | Phase::Linger => Gauge::Writing,
            Phase::Closing => Gauge::None,
        }
    }
}

/// A socket address in 20 bytes rather than `SocketAddr`'s 32 (a connection keeps two; the
/// IPv6 flow label and scope id are not kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addr {
    ip: [u8; 16],
    port: u16,
    v6: bool,
}

impl Addr {
    pub fn new(a: SocketAddr) -> Addr {
        match a {
            SocketAddr::V4(v4) => {
                let mut ip = [0; 16];
                ip[..4].copy_from_slice(&v4.ip().octets());
                Addr {
                    ip,
                    port: v4.port(),
                    v6: false,
                }
            }
            SocketAddr::V6(v6) => Addr {
                ip: v6.ip().octets(),
                port: v6.port(),
                v6: true,
            },
        }
    }

    pub fn get(self) -> SocketAddr {
        if self.v6 {
            SocketAddr::from((std::net::Ipv6Addr::from(self.ip), self.port))
        } else {
            let [a, b, c, d, ..] = self.ip;
            SocketAddr::from(([a, b, c, d], self.port))
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

/// The connection's yes/no facts, one bit each (an idle connection's record is a product
/// promise: see the size probe below).
#[derive(Clone, Copy, Default)]
struct Flags(u8);

impl Flags {
    /// A cancel of the receive is in flight.
    const CANCEL_PENDING: u8 = 1;
    /// A cancel of the hang-up watch is in flight.
    const HANGUP_CANCEL: u8 = 2;
    /// The client's end of stream (or reset) was seen.
    const EOF: u8 = 4;
    /// A send is in flight.
    const SENDING: u8 = 8;
    /// No further request is read on this connection.
    const CLOSE_AFTER: u8 = 16;
    /// Close (lingering) once everything queued is sent.
    const CLOSE_WHEN_FLUSHED: u8 = 32;
    /// Bytes were given to the TLS session (the first one told TLS from plain HTTP).
    const TLS_FED: u8 = 64;

    fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    fn set(&mut self, bit: u8, on: bool) {
        if on {
            self.0 |= bit;
        } else {
            self.0 &= !bit;
        }
    }
}

pub struct Conn {
    pub fd: RawFd,
    pub slot: u32,
    pub gen: u32,
    /// The id of the connection's own I/O task.
    task: u32,
    pub local: Addr,
    /// The client: the TCP peer, or on a `proxy_protocol` listener the source its PROXY
    /// header named (see `proxy.rs`).
    pub peer: Addr,
    inbuf: Vec<u8>,
    pub out: OutQueue,
    recv: RecvState,
    /// The hang-up watch (flow.rs).
    hangup: RecvState,
    flags: Flags,
    pub phase: Phase,
    parser: Option<Box<crate::http::request::HeadParser>>,
    req: Option<Box<RequestRecord>>,
    /// Requests started on this connection (the current one's number).
    seq: u32,
    /// Tasks started on this connection (the last one's number, in its tokens).
    tseq: u32,
    pub served: u32,
    pub deadline: Stamp,
    /// The TLS session on an `ssl` listener (tls.rs).
    tls: Option<Box<tls::Tls>>,
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
            local: Addr::new(local),
            peer: Addr::new(peer),
            inbuf: Vec::new(),
            out: OutQueue::default(),
            recv: RecvState::Off,
            hangup: RecvState::Off,
            flags: Flags::default(),
            phase: if env.cfg.proxy_protocol(local) {
                Phase::Proxy
            } else {
                Phase::Idle
            },
            parser: None,
            req: None,
            seq: 0,
            tseq: 0,
            served: 0,
            deadline: env.deadline(env.cfg.timeouts.header),
            tls: None,
        };
        env.gauges.enter(c.phase.gauge());
        c.tls_accept(env);
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

    /// The sequence number of the current request's task (0: none).
    pub fn task_seq(&self) -> u32 {
        self.req
            .as_ref()
            .filter(|r| r.task.is_some())
            .map_or(0, |r| r.tseq)
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
            OpTag::RecvCancel => self.flags.set(Flags::CANCEL_PENDING, false),
            OpTag::Hangup => self.on_hangup(c, env),
            OpTag::HangupCancel => self.flags.set(Flags::HANGUP_CANCEL, false),
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
            .is_some_and(|r| r.tseq as u8 == t.task && r.task.is_some());
        if !live {
            // A late completion of a task that is gone (a close, a cancelled read): its
            // buffer is dropped here, nothing else refers to it.
            crate::trace!("{}: stale {} completion dropped", self.ident(), t.op.name());
            crate::server::task::lookup::close_stray_fd(t.op, &c);
            let unlink = Tok {
                op: OpTag::UploadUnlink,
                ..t
            };
            crate::server::task::upload::undo_stray(t.op, c, env.be, unlink.encode());
            return;
        }
        let step = self.with_task(env, |task, cx| task.on_completion(t.op, c, cx));
        self.handle(step, env);
    }

    /// The child of this connection's current CGI exited (routed by the registry).
    pub fn on_child_exit(&mut self, tseq: u32, c: Completion, env: &mut Env) {
        if self.req.as_ref().is_some_and(|r| r.tseq == tseq) {
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
        let mut cx = env.cx(id, req.tseq, &mut self.out);
        // No sendfile under TLS: the file task reads and the records are encrypted here.
        cx.sendfile &= self.tls.is_none();
        cx.spare = self.tls.as_mut().and_then(|t| t.plain_spare.take());
        let step = f(task, &mut cx);
        if let (Some(t), Some(v)) = (self.tls.as_mut(), cx.spare) {
            t.plain_spare = Some(v);
        }
        step
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
                    self.flags.set(Flags::EOF, true);
                    self.close(Abort::ClientGone, env);
                }
                return;
            }
        };
        crate::server::metrics::mine().received_bytes.add(n as u64);
        if let Buf::Recv(b) = c.buf {
            if self.tls.is_some() && self.phase != Phase::Proxy {
                self.tls_input(&b, env);
                env.be.release(b);
            } else if self.keeps_input() {
                if self.phase == Phase::Idle {
                    // A new request starts: its whole head must arrive within the header
                    // timeout, however slowly it drips (slowloris).
                    self.deadline = env.deadline(env.cfg.timeouts.header);
                    self.set_phase(Phase::Head, env);
                }
                if self.inbuf.capacity() == 0 {
                    // Idle connections hold no input buffer; the loop lends one.
                    self.inbuf = env.bufs.pop().unwrap_or_default();
                }
                self.inbuf.extend_from_slice(&b);
                env.be.release(b);
            } else {
                env.be.release(b);
            }
        }
        if n == 0 && c.result.is_ok() && !self.flags.has(Flags::EOF) {
            self.flags.set(Flags::EOF, true);
            self.on_eof(env);
        }
    }

    /// Whether received input is kept for the HTTP layer.
    fn keeps_input(&self) -> bool {
        match self.phase {
            Phase::Closing | Phase::Linger => false,
            // After a framing error or the last request, input is dropped, not kept.
            _ => {
                !(self.flags.has(Flags::CLOSE_AFTER)
                    && self.req.as_ref().is_none_or(|r| r.body_done()))
            }
        }
    }

    fn on_eof(&mut self, env: &mut Env) {
        match self.phase {
            Phase::Linger | Phase::Handshake => self.close(Abort::ClientGone, env),
            Phase::Idle if self.out.is_empty() && !self.flags.has(Flags::SENDING) => {
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
        self.flags.set(Flags::SENDING, false);
        if let Buf::Send(b) = c.buf {
            match (self.tls.as_mut(), self.phase) {
                // The next piece of a response is encrypted into this buffer (tls.rs).
                (Some(t), Phase::Active) => t.recycle(b.head),
                // The head buffer comes back with the completion: kept for the next response
                // head (a large one is dropped).
                _ => env.give_head(b.head),
            }
        }
        match c.result {
            Ok(n) => {
                crate::server::metrics::mine().sent_bytes.add(n as u64);
                // Progress restarts send_timeout while output remains; once everything is
                // out, a connection waiting for its next request gets keepalive_timeout, and
                // one with a next head already started keeps that head's deadline.
                let t = env.cfg.timeouts;
                match self.phase {
                    Phase::Idle if self.out.is_empty() => {
                        self.deadline = env.deadline(t.keepalive);
                        self.out.release(&mut env.pools.queues, env::POOL_KEPT);
                    }
                    Phase::Head if self.out.is_empty() => {}
                    // The handshake keeps its own deadline.
                    Phase::Handshake => {}
                    Phase::Head => self.deadline = self.deadline.max(env.deadline(t.send)),
                    _ => self.deadline = env.deadline(t.send),
                }
            }
            Err(e) => {
                if self.phase != Phase::Closing {
                    crate::trace!("{}: send: {e}", self.io_ident());
                    self.close(Abort::ClientGone, env);
                }
            }
        }
    }

    /// Idle between requests with nothing buffered (for reclaiming and stopping).
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Idle | Phase::Proxy | Phase::Handshake)
            && self.inbuf.is_empty()
            && !self.flags.has(Flags::SENDING)
            && self.out.is_empty()
    }

    /// Queue an interim response (100 Continue).
    fn queue_raw(&mut self, bytes: &'static [u8]) {
        self.out.push(SendBuf {
            head: bytes.to_vec(),
            body: backends::Body::Empty,
        });
    }
}
