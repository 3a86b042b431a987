//! One request on a connection: its record (what the access log and error pages need), its
//! body reader and its task; starting, finishing and failing it.

use super::Flags;
use std::sync::Arc;

use super::env::Env;
use super::{Conn, Phase};
use crate::config::Config;
use crate::http::request::{BodyKind, Method};
use crate::server::ident::TaskKind;
use crate::server::reply::{self, Ctx, Reply};
use crate::server::task::body::BodyReader;
use crate::server::task::cgi::framing::Meta;
use crate::server::task::file::FileTask;
use crate::server::task::reply::ReplyTask;
use crate::server::task::{Abort, RequestTask, Step, Task};

/// Input buffers the loop keeps for connections that start a request: at most this many, of at
/// most this capacity.
const BUF_POOL_LEN: usize = 256;
const BUF_POOL_MAX: usize = 64 * 1024;

/// Local redirects followed in a row before the request fails with 500 (nginx's limit).
pub const MAX_REDIRECTS: u8 = 10;

/// The current request.
pub struct RequestRecord {
    /// Its number on the connection (from 1).
    pub seq: u32,
    /// The configuration it started under (a reload does not change it mid-way).
    pub cfg: Arc<Config>,
    pub server: usize,
    /// Normalised path and query.
    pub path: String,
    pub query: Option<String>,
    pub method: Method,
    /// The Host it named (for a CGI's local redirect, which is answered as a new GET).
    pub host: String,
    /// Local redirects followed so far.
    pub hops: u8,
    /// Set once an `error_page` sent it to a named location: routing starts there, and a
    /// second error is answered with the built-in page (nginx's `recursive_error_pages off`).
    pub named: Option<String>,
    /// `add_header` / `expires` lines for its final response head, until they are in it.
    pub extra: Option<Box<crate::server::headers::ExtraHeaders>>,
    /// The sequence number of its current task on the connection (in the task's tokens).
    pub tseq: u32,
    pub meta: Meta,
    /// For the access log (empty when there is none).
    pub line: String,
    /// The request headers the access log's format names (lower-case name, value).
    pub log_headers: Vec<(String, String)>,
    /// When its head was parsed (`$request_time`).
    pub started: std::time::Instant,
    /// `OutQueue::total` when the request started (bytes sent for it = the difference).
    pub out_start: u64,
    /// `OutQueue::heads` when it started: once the count moves, its answer is committed.
    pub heads_at_start: u32,
    pub body: Option<BodyReader>,
    pub task: Option<RequestTask>,
    /// The task to start once a body nobody needs has been read and dropped.
    pub deferred: Option<RequestTask>,
    /// Decoded request-body bytes on their way to the task (reused within the request).
    pub scratch: Vec<u8>,
    /// The client address it runs under (PROXY header and realip applied).
    pub client: std::net::SocketAddr,
    /// The head of a request whose routing waits for a lookup (`task::lookup`).
    pub held: Option<Box<Held>>,
}

/// A record from the worker's pool (`Env::records`), if it has one, with its host and path
/// Strings taken out, empty, for the next request to fill (their capacity is reused).
pub(super) fn pooled_record(env: &mut Env) -> (Option<Box<RequestRecord>>, String, String) {
    let mut record = env.pools.records.pop();
    let (mut host, mut path) = record.as_mut().map_or_else(Default::default, |r| {
        (std::mem::take(&mut r.host), std::mem::take(&mut r.path))
    });
    host.clear();
    path.clear();
    (record, host, path)
}

/// The record `fresh` builds, in the pooled box or in a new one. The pooled record's reference
/// to the configuration is handed on when it is `cfg` (as [`recycle`] leaves it unless a
/// reload came between): a clone and a drop are two locked instructions per request.
pub(super) fn boxed(
    record: Option<Box<RequestRecord>>,
    cfg: &Arc<Config>,
    fresh: impl FnOnce(Arc<Config>) -> RequestRecord,
) -> Box<RequestRecord> {
    match record {
        Some(mut r) => {
            let cfg = if Arc::ptr_eq(&r.cfg, cfg) {
                r.cfg
            } else {
                cfg.clone()
            };
            *r = fresh(cfg);
            r
        }
        None => Box::new(fresh(cfg.clone())),
    }
}

/// Give a finished request's record to the worker's pool (`Env::records`), emptied: what the
/// request owned (its task, body reader, held head, log line) is dropped now, as it was when the
/// record was freed; the host and path Strings keep their capacity for the next request.
pub(super) fn recycle(mut r: Box<RequestRecord>, env: &mut Env) {
    if env.pools.records.len() >= super::env::RECORDS_KEPT {
        return;
    }
    r.task = None;
    r.deferred = None;
    r.body = None;
    r.held = None;
    r.extra = None;
    r.named = None;
    r.query = None;
    r.line = String::new();
    r.log_headers = Vec::new();
    r.scratch = Vec::new();
    // Not an old configuration kept alive by the pool after a reload (compared first: a
    // clone and a drop are two locked instructions per request).
    if !Arc::ptr_eq(&r.cfg, env.cfg) {
        r.cfg = env.cfg.clone();
    }
    for s in [&mut r.host, &mut r.path] {
        s.clear();
        if s.capacity() > RECYCLED_STRING_MAX {
            *s = String::new();
        }
    }
    env.pools.records.push(r);
}

/// A longer host or path String is freed rather than kept in the pool.
const RECYCLED_STRING_MAX: usize = 1024;

/// A request head kept while a lookup runs off the loop's thread, to route it again after.
pub struct Held {
    pub head: Vec<u8>,
    pub body: BodyKind,
    pub expect: bool,
    /// The answers of the lookups done for it so far (`server::lookups`).
    pub known: Vec<crate::server::lookups::Resolved>,
    /// How many times it was held.
    pub holds: u8,
    /// Set when the held head is an internal redirect's (a CGI's local redirect, an
    /// `error_page` to a named location): what routing it again must keep.
    pub redirect: Option<Redirected>,
}

/// What an internal redirect held for a lookup keeps for its routing again: its hop count,
/// the named location it goes to, and the status its answer carries (0: its own).
pub struct Redirected {
    pub hops: u8,
    pub named: Option<String>,
    pub status: u16,
}

impl RequestRecord {
    pub fn body_done(&self) -> bool {
        self.body.as_ref().is_none_or(BodyReader::is_done)
    }
}

impl Conn {
    /// Whether the response being built is the connection's last (RFC 9112 §9.6): the client
    /// asked to close, `keepalive_requests` is reached, the server is stopping, or an error
    /// already decided it.
    pub(super) fn last_response(&self, keep_alive: bool, env: &Env) -> bool {
        !keep_alive
            || self.flags.has(Flags::CLOSE_AFTER)
            || self.served + 1 >= env.cfg.keepalive_requests
            || env.stopping
    }

    /// Turn a ready reply into its task.
    pub(super) fn reply_task(&self, r: Reply, kind: TaskKind, env: &mut Env) -> RequestTask {
        let id = env.gauges.task_id();
        match r {
            Reply::Full { status, head, body } => RequestTask::Reply(ReplyTask::new(
                kind,
                id,
                status,
                backends::SendBuf { head, body },
            )),
            Reply::File {
                head,
                file,
                offset,
                len,
                ..
            } => RequestTask::File(FileTask::new(id, head, file, offset, len)),
        }
    }

    /// The error response for `code`, with its configured error page.
    pub(super) fn error_reply(&self, code: u16, extra: &[(String, String)], env: &Env) -> Reply {
        let cfg = self
            .req
            .as_ref()
            .map_or_else(|| env.cfg.clone(), |r| r.cfg.clone());
        let (server_idx, path, head_only, ka10) = match &self.req {
            Some(r) => (
                r.server,
                r.path.as_str(),
                r.meta.head_only,
                r.meta.keep_alive_10,
            ),
            None => (cfg.server_index(self.local.get(), None), "/", false, false),
        };
        let close =
            self.flags.has(Flags::CLOSE_AFTER) || self.req.as_ref().is_none_or(|r| r.meta.close);
        let server = &cfg.servers[server_idx];
        let loc = server.location_for(path);
        let cx = Ctx {
            head_only,
            close,
            ..Ctx::plain(env.date, ka10 && !close)
        };
        let extra: Vec<(&str, &[u8])> = extra
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        reply::error(code, &cfg.error_bodies, server, loc, &extra, &cx)
    }

    /// Answer the current request with the error response for `code` (its configured error
    /// page streams like any file). A request that failed before its record existed gets a
    /// bare one.
    pub(super) fn answer_error(&mut self, code: u16, extra: &[(String, String)], env: &mut Env) {
        if let Some((name, status)) = self.named_error_page(code) {
            self.internal_redirect_named(&name, status.unwrap_or(0), env);
            return;
        }
        let r = self.error_reply(code, extra, env);
        let task = self.reply_task(r, TaskKind::ErrorPage, env);
        if self.req.is_none() {
            let bare = RequestRecord {
                seq: self.seq,
                cfg: env.cfg.clone(),
                server: env.cfg.server_index(self.local.get(), None),
                path: "/".to_string(),
                query: None,
                method: Method::Get,
                host: String::new(),
                hops: 0,
                named: None,
                extra: None,
                tseq: 0,
                meta: Meta {
                    http10: false,
                    head_only: false,
                    close: true,
                    keep_alive_10: false,
                },
                line: String::new(),
                log_headers: Vec::new(),
                started: env.now,
                out_start: self.out.total,
                heads_at_start: self.out.heads,
                body: None,
                task: None,
                deferred: None,
                scratch: Vec::new(),
                held: None,
                client: self.peer.get(),
            };
            self.req = Some(Box::new(bare));
        }
        self.set_phase(Phase::Active, env);
        self.start_task(task, env);
    }

    /// A framing or protocol error: answer `code` after the responses already queued, then
    /// close; nothing after it is read (no desynchronisation).
    pub(super) fn fail(&mut self, code: u16, env: &mut Env) {
        self.flags.set(Flags::CLOSE_AFTER, true);
        self.inbuf.clear();
        let committed = self
            .req
            .as_ref()
            .is_some_and(|r| self.out.heads > r.heads_at_start);
        if let Some(r) = self.req.as_mut() {
            r.body = None;
        }
        if !committed && self.req.as_ref().is_some_and(|r| r.task.is_some()) {
            // The task cleans up first (an upload answers once its files are removed).
            let step = self.with_task(env, |task, cx| task.on_body_error(code, cx));
            if step == Step::Pending {
                return;
            }
        }
        self.abort_task(Abort::Closing, env);
        if committed {
            // Its response head is already out (a CGI streaming while the body broke): a
            // second response cannot follow; the answer is cut and the connection closes.
            crate::info!("{}: {code} after the response head; closing", self.ident());
            self.finish_request(env);
            return;
        }
        self.answer_error(code, &[], env);
    }

    /// Start `task` for the current request and act on what it says.
    pub(super) fn start_task(&mut self, mut task: RequestTask, env: &mut Env) {
        let id = self.ident().with_task(task.id());
        crate::trace!("{id}: start");
        // Each task gets its own sequence number in its tokens: completions of an earlier task
        // of this connection (even of this request, before a local redirect) never reach it.
        self.tseq = self.tseq.wrapping_add(1);
        let tseq = self.tseq;
        let step = {
            let mut cx = env.cx(id, tseq, &mut self.out);
            cx.sendfile &= self.tls.is_none();
            task.start(&mut cx)
        };
        if let Some(r) = self.req.as_mut() {
            r.task = Some(task);
            r.tseq = tseq;
        }
        // A task that takes a body, for a request without one, hears its (empty) end now.
        let step = match step {
            Step::Pending if self.req.as_ref().is_some_and(|r| r.body.is_none()) => {
                self.with_task(env, |t, cx| t.on_body(&[], true, cx))
            }
            s => s,
        };
        self.handle(step, env);
    }

    /// Feed buffered body bytes to the task (or drop them for a deferred answer). Returns
    /// true when something moved.
    pub(super) fn feed_body(&mut self, env: &mut Env) -> bool {
        let Some(req) = self.req.as_mut() else {
            return false;
        };
        if req.body.as_ref().is_none_or(BodyReader::is_done) {
            return false;
        }
        let room = match (&req.task, &req.deferred) {
            (Some(t), _) => t.body_room(),
            (None, Some(_)) => usize::MAX,
            (None, None) => return false,
        };
        if room == 0 || self.inbuf.is_empty() {
            if self.flags.has(Flags::EOF) && self.inbuf.is_empty() {
                // The client went away mid-body: nothing is stored, the task is stopped.
                self.close(Abort::ClientGone, env);
                return true;
            }
            return false;
        }
        // Decoded bytes go through the request's own scratch buffer (an idle connection holds
        // none).
        let decoded = {
            let RequestRecord { body, scratch, .. } = &mut **req;
            scratch.clear();
            match body.as_mut() {
                Some(b) => b.decode(&self.inbuf, room, scratch),
                None => return false,
            }
        };
        let piece = match decoded {
            Ok(p) => p,
            Err(code) => {
                crate::info!("{}: bad request body ({code})", self.ident());
                self.fail(code, env);
                return true;
            }
        };
        self.inbuf.drain(..piece.consumed);
        self.deadline = env.deadline(env.cfg.timeouts.body);
        let id = self.ident();
        let Some(req) = self.req.as_mut() else {
            return true;
        };
        let RequestRecord {
            task,
            scratch,
            tseq,
            ..
        } = &mut **req;
        let step = match task.as_mut() {
            Some(task) => {
                if matches!(task, RequestTask::Upload(_) | RequestTask::Multipart(_)) {
                    let m = crate::server::metrics::mine();
                    m.upload_bytes.add(scratch.len() as u64);
                }
                let mut cx = env.cx(id, *tseq, &mut self.out);
                cx.sendfile &= self.tls.is_none();
                task.on_body(scratch, piece.done, &mut cx)
            }
            None => {
                if piece.done {
                    if let Some(t) = req.deferred.take() {
                        self.start_task(t, env);
                    }
                }
                Step::Pending
            }
        };
        self.handle(step, env);
        piece.consumed > 0 || piece.done
    }

    /// The request is answered (its response queued): log it, then get ready for the next
    /// one, or arrange to close once the queued bytes are out.
    pub(super) fn finish_request(&mut self, env: &mut Env) {
        let req = self.req.take();
        let mut last = false;
        if let Some(req) = &req {
            env.gauges.requests += 1;
            self.served += 1;
            let m = crate::server::metrics::mine();
            m.request(self.out.last_status, req.method);
            if self.served > 1 {
                m.keepalive_reused.add(1);
            }
            if !req.body_done() {
                // The answer came before the whole body: the rest cannot be told from a next
                // request.
                self.flags.set(Flags::CLOSE_AFTER, true);
            }
            last = req.meta.close;
            self.access_log(req, env);
        }
        if let Some(req) = req {
            recycle(req, env);
        }
        if last
            || self.flags.has(Flags::CLOSE_AFTER)
            || self.served >= env.cfg.keepalive_requests
            || env.stopping
            || (self.flags.has(Flags::EOF) && self.inbuf.is_empty())
        {
            self.flags.set(Flags::CLOSE_WHEN_FLUSHED, true);
        }
        let next = if self.inbuf.is_empty() || self.flags.has(Flags::CLOSE_WHEN_FLUSHED) {
            // Nothing of a next request yet: the buffers go back to the loop (an idle
            // connection holds none), and keepalive_timeout runs.
            self.deadline = env.deadline(env.cfg.timeouts.keepalive);
            let buf = std::mem::take(&mut self.inbuf);
            if buf.capacity() > 0 && buf.capacity() <= BUF_POOL_MAX && env.bufs.len() < BUF_POOL_LEN
            {
                let mut buf = buf;
                buf.clear();
                env.bufs.push(buf);
            }
            Phase::Idle
        } else {
            // A next head has started arriving (pipelined): its header timeout runs from now.
            self.deadline = env.deadline(env.cfg.timeouts.header);
            Phase::Head
        };
        self.set_phase(next, env);
    }

    fn access_log(&self, req: &RequestRecord, env: &mut Env) {
        let Some(f) = env.access.as_mut() else {
            return;
        };
        if req.line.is_empty() {
            return;
        }
        let sent = self
            .out
            .total
            .saturating_sub(req.out_start)
            .saturating_sub(u64::from(self.out.last_head));
        let now = std::time::SystemTime::now();
        let ms = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let took = env.now.saturating_duration_since(req.started).as_millis();
        let values = crate::cgi::params::LogValues {
            request: req.line.clone(),
            status: self.out.last_status,
            body_bytes_sent: sent,
            bytes_sent: self.out.total.saturating_sub(req.out_start),
            request_time: format!("{}.{:03}", took / 1000, took % 1000),
            msec: format!("{}.{:03}", ms / 1000, ms % 1000),
            time_local: crate::log::access_time((ms / 1000) as u64),
            connection: format!("{}.{}", self.slot, self.gen),
            connection_requests: req.seq,
            request_id: format!("c{}.{} r{}", self.slot, self.gen, req.seq),
            headers: req.log_headers.clone(),
        };
        let request_uri = req.line.split(' ').nth(1).unwrap_or("");
        let host = crate::config::normalize_host(&req.host);
        let remote = req.client.ip().to_string();
        let vars = crate::cgi::params::Vars {
            uri: &req.path,
            request_uri,
            args: req.query.as_deref().unwrap_or(""),
            host: &host,
            server_port: self.local.get().port(),
            remote_addr: &remote,
            request_method: req.method.as_str(),
            log: Some(&values),
            ..Default::default()
        };
        let fmt = f.format.clone();
        let mut line = String::with_capacity(256);
        crate::cgi::params::expand_escaped(&fmt.template, &vars, &mut line, |v, out| {
            crate::config::escape_into(fmt.escape, v, out)
        });
        f.push(&line, env.now);
    }
}

impl Conn {
    /// Unconsumed input and unsent in-memory output, in bytes: what [`super::IN_HIGH`] and
    /// [`super::OUT_HIGH`] bound (the simulation tests check it after every step).
    pub fn buffered(&self) -> (usize, usize) {
        (self.inbuf.len(), self.out.bytes())
    }
}
