//! Tasks: every unit of work a request needs, behind one interface.
//!
//! A request is served by one [`RequestTask`]: a prepared reply (cached file, redirect, status
//! page, error page, DELETE), a file streamed from disk, a body read and dropped, an upload (raw,
//! PUT, multipart) or a CGI script. The connection's own I/O and its lingering close are the
//! connection's part (`conn/`); a CGI's child exit is routed to its task through the child
//! registry (`cgi/child.rs`).
//!
//! Every task implements [`Task`]: `start`, `on_body` (request-body bytes, with `body_room` for
//! back-pressure), `on_completion` (one of its ops completed), `on_drained` (the connection's
//! output queue emptied: produce more), `on_deadline`, `abort(reason)` and `describe`. A task
//! owns its fds, child, timers and buffers; `abort` releases all of them, in one place, and may
//! be called at any moment and more than once.
//!
//! A task sees only [`Cx`]: submit an op under its own token, the clock, the date, its log
//! identity, the connection's output queue and the child registry. It never sees the loop or the
//! connection, so nothing here depends on them.
//!
//! Why an enum over a trait rather than `Box<dyn Task>`: the set of kinds is closed and known
//! here, a request's task then costs no allocation (the request path is meant to be
//! allocation-free), and `dispatch` still calls through the one trait (the enum implements it by
//! delegation), so no caller matches on the kind.

pub mod body;
pub mod cgi;
pub mod delete;
pub mod file;
pub mod lookup;
pub mod multipart;
pub mod reply;
pub mod upload;

use std::time::Instant;

use backends::{Backend, Completion, Op};

use super::ident::{LogId, TaskId};
use super::out::OutQueue;
use super::token::{OpTag, Tok};

/// What a task tells its connection after an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// More events to come.
    Pending,
    /// The whole response is queued (or sent); the task holds nothing more.
    Done,
    /// Failed before any byte of the response was queued: the connection answers `status`.
    Fail(u16),
    /// Failed after the response head was queued: flush what is queued, then close without a
    /// clean end (the client sees a truncated response, never a desynchronised one).
    Close,
    /// A CGI local redirect (RFC 3875 §6.2.2): answer a GET of this path instead.
    Internal(String),
    /// A lookup ran off the loop's thread: route the request again from its held head.
    Reroute,
}

/// Why a task is aborted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abort {
    /// The client went away (EOF, reset, send error).
    ClientGone,
    /// A connection deadline passed (header, body, send).
    Timeout,
    /// The connection is closing for another reason (framing error, server stop).
    Closing,
    /// The task's answer is complete; release what remains (a CGI may exit on its own).
    Finished,
}

/// The narrow context a task is handed.
pub struct Cx<'a> {
    pub be: &'a mut dyn Backend,
    pub now: Instant,
    pub date: &'a [u8; 29],
    /// The task's identity for log lines (`c17.2 r3 cgi#41`).
    pub id: LogId,
    /// The task's sequence number on its connection (in its tokens).
    pub tseq: u32,
    /// The connection's output queue, in request order.
    pub out: &'a mut OutQueue,
    pub children: &'a mut cgi::child::Children,
    /// Whether the backend sends files with sendfile(2).
    pub sendfile: bool,
    /// A buffer the connection no longer needs (a file piece already encrypted), for the next
    /// read into memory: its pages are already faulted in.
    pub spare: Option<Vec<u8>>,
}

impl Cx<'_> {
    /// The token of this task's op `op`.
    pub fn token(&self, op: OpTag) -> u64 {
        Tok::new(self.id.gen, self.id.conn, self.tseq, op).encode()
    }

    /// Submit one of this task's ops.
    pub fn submit(&mut self, op: OpTag, o: Op) {
        let t = self.token(op);
        self.be.submit(t, o);
    }
}

/// The one interface of every task.
pub trait Task {
    fn id(&self) -> TaskId;
    /// Begin: queue output and/or submit the first ops.
    fn start(&mut self, cx: &mut Cx) -> Step;
    /// How many more request-body bytes the task takes now (0: none until an event).
    fn body_room(&self) -> usize {
        0
    }
    /// Decoded request-body bytes; `done` with the last (possibly empty) piece.
    fn on_body(&mut self, _data: &[u8], _done: bool, _cx: &mut Cx) -> Step {
        Step::Pending
    }
    /// One of the task's ops completed.
    fn on_completion(&mut self, op: OpTag, c: Completion, cx: &mut Cx) -> Step;
    /// The connection sent everything queued: produce more, or say `Done`.
    fn on_drained(&mut self, _cx: &mut Cx) -> Step {
        Step::Pending
    }
    /// The task's own deadline (a CGI's inactivity limit), if any.
    fn deadline(&self) -> Option<Instant> {
        None
    }
    fn on_deadline(&mut self, _cx: &mut Cx) -> Step {
        Step::Pending
    }
    /// The request body broke (`code`: over the size limit, bad chunking). `Pending` holds
    /// the answer until the task says `Fail` (an upload: once its files are removed).
    fn on_body_error(&mut self, code: u16, _cx: &mut Cx) -> Step {
        Step::Fail(code)
    }
    /// Release every resource; idempotent.
    fn abort(&mut self, why: Abort, cx: &mut Cx);
    /// One line on its state, for the error log.
    fn describe(&self) -> String;
}

/// The task serving one request.
pub enum RequestTask {
    Reply(reply::ReplyTask),
    File(file::FileTask),
    Upload(Box<upload::UploadTask>),
    Multipart(Box<multipart::MultipartTask>),
    Cgi(Box<cgi::CgiTask>),
    Lookup(lookup::LookupTask),
    Delete(delete::DeleteTask),
}

macro_rules! each {
    ($self:ident, $t:ident => $e:expr) => {
        match $self {
            RequestTask::Reply($t) => $e,
            RequestTask::File($t) => $e,
            RequestTask::Upload($t) => $e,
            RequestTask::Multipart($t) => $e,
            RequestTask::Cgi($t) => $e,
            RequestTask::Lookup($t) => $e,
            RequestTask::Delete($t) => $e,
        }
    };
}

impl Task for RequestTask {
    fn id(&self) -> TaskId {
        each!(self, t => t.id())
    }
    fn start(&mut self, cx: &mut Cx) -> Step {
        each!(self, t => t.start(cx))
    }
    fn body_room(&self) -> usize {
        each!(self, t => t.body_room())
    }
    fn on_body(&mut self, data: &[u8], done: bool, cx: &mut Cx) -> Step {
        each!(self, t => t.on_body(data, done, cx))
    }
    fn on_completion(&mut self, op: OpTag, c: Completion, cx: &mut Cx) -> Step {
        each!(self, t => t.on_completion(op, c, cx))
    }
    fn on_drained(&mut self, cx: &mut Cx) -> Step {
        each!(self, t => t.on_drained(cx))
    }
    fn deadline(&self) -> Option<Instant> {
        each!(self, t => t.deadline())
    }
    fn on_deadline(&mut self, cx: &mut Cx) -> Step {
        each!(self, t => t.on_deadline(cx))
    }
    fn on_body_error(&mut self, code: u16, cx: &mut Cx) -> Step {
        each!(self, t => t.on_body_error(code, cx))
    }
    fn abort(&mut self, why: Abort, cx: &mut Cx) {
        each!(self, t => t.abort(why, cx))
    }
    fn describe(&self) -> String {
        each!(self, t => t.describe())
    }
}

impl RequestTask {
    /// A lookup task's answer, for the routing that follows it.
    pub fn take_lookup_answer(&mut self) -> Option<crate::server::lookups::Resolved> {
        match self {
            RequestTask::Lookup(t) => t.take_answer(),
            _ => None,
        }
    }

    /// Whether a client that leaves should stop this task at once (a CGI); other tasks end
    /// when their next send fails.
    pub fn stops_when_client_leaves(&self) -> bool {
        matches!(self, RequestTask::Cgi(_))
    }
}
