//! A request head: parse it from the input buffer (incrementally, borrowing), build the
//! request record, decide the route, and start the task that answers it.

use super::env::Env;
use super::request::{Held, RequestRecord};
use super::Flags;
use super::{Conn, Phase};
use crate::http::request::{BodyKind, Method, Status};
use crate::server::ident::TaskKind;
use crate::server::reply::{self, Ctx};
use crate::server::route::{self, Route};
use crate::server::task::cgi::framing::Meta;
use crate::server::task::cgi::{plan, CgiTask};
use crate::server::task::lookup::LookupTask;
use crate::server::task::multipart::MultipartTask;
use crate::server::task::upload::UploadTask;
use crate::server::task::{body::BodyReader, RequestTask};

impl Conn {
    /// Parse what is buffered. Returns true when a request started (or failed).
    pub(super) fn parse_head(&mut self, env: &mut Env) -> bool {
        // Parse from the buffer taken out of the connection, so the request (which borrows it)
        // and the connection can be used side by side; what remains goes back.
        let buf = std::mem::take(&mut self.inbuf);
        // Out of the connection too: a complete request borrows the parser's field table.
        let mut parser = self
            .parser
            .take()
            .unwrap_or_else(|| env.parsers.pop().unwrap_or_default());
        // `large_client_header_buffers`: 414 / 431 past the configured sizes.
        parser.set_limits(env.cfg.head_limits);
        let parsed = parser.parse(&buf);
        // Once complete or failed the parser has reset itself: back to the pool when the
        // request no longer borrows it.
        let req = match &parsed {
            Ok(Status::Partial) => {
                self.parser = Some(parser);
                self.inbuf = buf;
                if self.flags.has(Flags::EOF) {
                    // This head can never complete. Answers to the requests before it may
                    // still be queued for a half-closed client that reads on: they go out
                    // first, then the connection closes.
                    if self.out.is_empty() && !self.flags.has(Flags::SENDING) {
                        self.close(crate::server::task::Abort::ClientGone, env);
                    } else {
                        self.flags.set(Flags::CLOSE_WHEN_FLUSHED, true);
                    }
                    return true;
                }
                return false;
            }
            Err(e) => {
                let e = *e;
                env.parsers.push(parser);
                crate::info!(
                    "{}: bad request: {} ({})",
                    self.ident(),
                    e.description(),
                    e.status()
                );
                self.seq += 1;
                self.fail(e.status(), env);
                return true;
            }
            Ok(Status::Complete(req, _)) => req,
        };
        self.seq += 1;
        let cfg: &std::sync::Arc<crate::config::Config> = env.cfg;
        let head_len = req.head_len();
        let logging = env.access.is_some();
        // The headers the access log's format names, kept for its line.
        let log_headers = env.access.as_ref().map_or_else(Vec::new, |a| {
            a.format
                .headers
                .iter()
                .filter_map(|h| {
                    req.header(h)
                        .map(|v| (h.clone(), String::from_utf8_lossy(v).into_owned()))
                })
                .collect()
        });
        let analyzed = req.analyze();
        let keep_alive = analyzed.as_ref().is_ok_and(|h| h.keep_alive);
        let (record, mut host, mut path) = super::request::pooled_record(env);
        if let Ok(h) = analyzed.as_ref() {
            host.push_str(h.host);
        }
        let server = env.pools.server_index(cfg, self.local.get(), &host);
        let close = self.last_response(keep_alive, env);
        let meta = Meta {
            http10: req.minor == 0,
            head_only: req.method == Method::Head,
            close,
            keep_alive_10: req.minor == 0 && keep_alive && !close,
        };
        let (query, bad_path) = match req.normalize_path_into(&mut path) {
            Ok(q) => (q.map(str::to_string), None),
            Err(e) => {
                path.clear();
                path.push('/');
                (None, Some(e))
            }
        };
        let client = self.client_addr(req, env);
        let (seq, out_start, heads_at_start) = (self.seq, self.out.total, self.out.heads);
        let fresh = |cfg| RequestRecord {
            seq,
            cfg,
            server,
            path,
            query,
            method: req.method,
            host,
            hops: 0,
            named: None,
            extra: None,
            tseq: 0,
            meta,
            line: if logging {
                format!(
                    "{} {} HTTP/1.{}",
                    req.method.as_str(),
                    req.target(),
                    req.minor
                )
            } else {
                String::new()
            },
            log_headers,
            started: env.now,
            out_start,
            heads_at_start,
            body: None,
            task: None,
            deferred: None,
            scratch: Vec::new(),
            held: None,
            client,
        };
        self.req = Some(super::request::boxed(record, cfg, fresh));
        self.out.adopt(&mut env.pools.queues);
        self.set_phase(Phase::Active, env);
        self.deadline = env.deadline(env.cfg.timeouts.send);
        let head = match (analyzed, bad_path) {
            (Ok(h), None) => h,
            (Err(e), _) | (_, Some(e)) => {
                env.parsers.push(parser);
                // Nothing after a bad head is read (fail drops the input).
                self.fail(e.status(), env);
                return true;
            }
        };
        let (body, expect) = (head.body, head.expect_continue);
        let (route, limit) = crate::server::lookups::with_known(&mut Vec::new(), || {
            self.route_parsed(req, body, env, true)
        });
        env.parsers.push(parser);
        if matches!(route, Route::Lookup { .. }) {
            // Routed again once the lookup is done: from this head, held until then. A body
            // waits in the input (at most `IN_HIGH` of it read) and is read after the
            // routing; a `100 Continue` is sent only then.
            if let Some(r) = self.req.as_mut() {
                r.held = Some(Box::new(Held {
                    head: buf[..head_len].to_vec(),
                    body,
                    expect,
                    known: Vec::new(),
                    holds: 1,
                    redirect: None,
                }));
            }
        }
        // The head is consumed; what follows in the buffer is the body or the next request.
        let mut buf = buf;
        buf.drain(..head_len);
        self.inbuf = buf;
        self.dispatch_route(route, body, expect, limit, env);
        true
    }

    /// Decide the route for a parsed request (a client's, or a CGI's local redirect), from
    /// the current request record's path; returns it with the body-size limit that applies.
    pub(super) fn route_parsed<'a>(
        &mut self,
        req: &crate::http::request::Request<'_>,
        body: BodyKind,
        env: &mut Env<'a>,
        cached_lookups: bool,
    ) -> (Route, u64) {
        // The request's configuration: the loop's own reference when it is the current one
        // (no clone: two locked instructions per request), a clone after a reload.
        let cur: &'a std::sync::Arc<crate::config::Config> = env.cfg;
        let held;
        let cfg = match self.req.as_ref() {
            Some(r) if std::sync::Arc::ptr_eq(&r.cfg, cur) => cur,
            Some(r) => {
                held = r.cfg.clone();
                &held
            }
            None => return (Route::Error(500, Vec::new()), 0),
        };
        let srv = &cfg.servers[cfg_server(self)];
        let mut loc = match self.rewrite(req, srv, env, cached_lookups) {
            Ok(l) => l,
            Err(route) => return (route, 0),
        };
        if let Some(rq) = self.req.as_mut() {
            // A local redirect routes again: only the last location's lines apply.
            rq.extra = None;
        }
        let ret_vars = |r: &Option<crate::config::Return>| {
            r.as_ref()
                .and_then(|r| r.target.as_ref())
                .is_some_and(|t| t.has_vars())
        };
        let headers = !loc.add_headers.is_empty() || loc.expires.is_some();
        let mut vars = None;
        if headers || ret_vars(&srv.ret) || ret_vars(&loc.ret) || loc.alias_captures.is_some() {
            let mut v = self.vars_for(req, srv);
            if let Some(rq) = self.req.as_mut() {
                v.set_location(loc, &rq.path);
                rq.query.as_deref().unwrap_or("").clone_into(&mut v.args);
                if headers {
                    let now = std::time::SystemTime::now();
                    rq.extra = crate::server::headers::for_location(loc, &v.vars(), now);
                }
            }
            vars = Some(v);
        }
        // A regex location's alias with captures names this request's file: the location
        // answers with the substituted alias.
        let substituted;
        if let (Some(t), Some(v)) = (&loc.alias_captures, &vars) {
            let mut l = loc.clone();
            let dir = crate::cgi::params::expand(t, &v.vars());
            l.docroot = crate::config::DocRoot::Alias {
                dir: dir.into(),
                strip: String::new(),
            };
            substituted = l;
            loc = &substituted;
        }
        let Some(rq) = self.req.as_ref() else {
            return (Route::Error(500, Vec::new()), 0);
        };
        // The index file is resolved before anything looks at the extension: the file that
        // will answer (`/app/index.sh`), not the request path (`/app/`), decides whether a CGI
        // runs it.
        let wanted = |u: &str| {
            let l = srv.location_for(u);
            !l.cgi.is_empty() && l.cgi_for(u).is_some()
        };
        let cache = &mut *env.cache;
        let found = reply::static_file::index_uri(loc, &rq.path, wanted, |u| {
            crate::server::route::index_is_file(cache, loc, u, cached_lookups)
        });
        let index = match found {
            Ok(i) => i,
            Err(route) => return (route, 0),
        };
        let cgi_path = match &index {
            Some(u) => {
                loc = srv.location_for(u);
                u.as_str()
            }
            None => rq.path.as_str(),
        };
        let cgi = plan::plan(
            req,
            loc,
            &plan::Facts {
                path: cgi_path,
                query: rq.query.as_deref(),
                host: &rq.host,
                local: self.local.get(),
                peer: rq.client,
                body,
                server_name: srv.names.iter().find_map(|n| match n {
                    crate::config::ServerName::Exact(s) if !s.is_empty() => Some(s.as_str()),
                    _ => None,
                }),
                https: self.is_tls(),
            },
        );
        let [content_type, if_none_match, if_modified_since, range, if_range, if_match, if_unmodified_since] =
            req.headers_named([
                "Content-Type",
                "If-None-Match",
                "If-Modified-Since",
                "Range",
                "If-Range",
                "If-Match",
                "If-Unmodified-Since",
            ]);
        let content_type = content_type.and_then(|v| std::str::from_utf8(v).ok());
        let meta = rq.meta;
        let cx = Ctx {
            head_only: meta.head_only,
            close: meta.close,
            keep_alive_10: meta.keep_alive_10,
            date: env.date,
            query: rq.query.as_deref(),
            if_none_match,
            if_modified_since,
            range,
            if_range,
            cached_lookups,
            if_match,
            if_unmodified_since,
            max_ranges: loc.max_ranges,
            head_buf: std::cell::Cell::new(env.pools.heads.pop().unwrap_or_default()),
            path_buf: std::cell::Cell::new(env.pools.paths.pop().unwrap_or_default()),
        };
        let route = route::route(
            route::Input {
                cfg,
                server: srv,
                loc,
                method: req.method,
                body,
                path: &rq.path,
                content_type,
                cgi,
                gauges: env.gauges,
                backend: &*env.be,
                metrics: env.metrics,
                worker: env.worker,
                vars: vars.as_ref().map(|v| v.vars()).as_ref(),
            },
            &cx,
            env.cache,
        );
        env.cache.open.close_evicted(&mut *env.be);
        env.give_head(cx.head_buf.take()); // when no reply took it
        env.give_path(cx.path_buf.take());
        (route, loc.client_max_body_size)
    }

    /// The values templates may use for this request (location-dependent ones empty; see
    /// `VarsOwned::set_location`).
    pub(super) fn vars_for(
        &self,
        req: &crate::http::request::Request<'_>,
        srv: &crate::config::Server,
    ) -> crate::server::rewrite::VarsOwned {
        let (local, peer) = (self.local.get(), self.peer.get());
        let rq_host = self.req.as_ref().map_or("", |r| r.host.as_str());
        let server_name = srv
            .names
            .iter()
            .find_map(|n| match n {
                crate::config::ServerName::Exact(s) if !s.is_empty() => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let host = crate::config::normalize_host(rq_host);
        let text = |n: &str| {
            req.header(n)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        crate::server::rewrite::VarsOwned {
            uri: String::new(),
            request_uri: req.target().to_string(),
            args: String::new(),
            document_root: String::new(),
            request_filename: String::new(),
            host: if host.is_empty() {
                server_name.clone()
            } else {
                host.into_owned()
            },
            server_name,
            server_port: local.port(),
            https: self.is_tls(),
            // The request's client (PROXY header and realip applied), as the access log and
            // a CGI see it: realip sets `$remote_addr` for the whole request, as nginx's.
            remote_addr: self
                .req
                .as_ref()
                .map_or(peer, |r| r.client)
                .ip()
                .to_string(),
            request_method: req.method.as_str(),
            content_type: text("Content-Type"),
            content_length: text("Content-Length"),
            captures: Vec::new(),
        }
    }

    /// The add_header and expires lines wait with the request until its final head is queued
    /// (see `server::headers`); called after every task step, before anything is sent.
    pub(super) fn add_headers(&mut self) {
        let Some(req) = self.req.as_mut() else {
            return;
        };
        if req.extra.is_none() || self.out.heads == req.heads_at_start {
            return;
        }
        if let Some(x) = req.extra.take() {
            self.out
                .patch_last_head(|h| crate::server::headers::apply(&x, h));
        }
    }

    pub(super) fn dispatch_route(
        &mut self,
        route: Route,
        body: BodyKind,
        expect: bool,
        limit: u64,
        env: &mut Env,
    ) {
        let has_body = !matches!(body, BodyKind::None | BodyKind::Length(0));
        let Some(meta) = self.req.as_ref().map(|r| r.meta) else {
            return;
        };
        let reader = || Some(BodyReader::new(body, limit));
        match route {
            Route::Reply(r) => {
                if has_body && expect {
                    // A client waiting for `100 Continue` gets the final answer at once
                    // instead (RFC 9110 §10.1.1) and the connection closes: its body may or
                    // may not follow.
                    self.flags.set(Flags::CLOSE_AFTER, true);
                }
                let task = self.reply_task(r, TaskKind::Reply, env);
                if has_body && !expect {
                    // Keep the connection in sync: read and drop the body, then answer.
                    self.set_body(reader(), Some(task));
                } else {
                    self.start_task(task, env);
                }
            }
            Route::Error(code, extra) => {
                if has_body && !expect && code != 413 {
                    self.set_body(reader(), None);
                    let r = self.error_reply(code, &extra, env);
                    let task = self.reply_task(r, TaskKind::ErrorPage, env);
                    if let Some(req) = self.req.as_mut() {
                        req.deferred = Some(task);
                    }
                } else {
                    if has_body {
                        self.flags.set(Flags::CLOSE_AFTER, true);
                    }
                    self.answer_error(code, &extra, env);
                }
            }
            Route::Delete(op, what) => {
                let id = env.gauges.task_id();
                let t = crate::server::task::delete::DeleteTask::new(id, op, what, meta);
                self.start_with_body(RequestTask::Delete(t), body, expect, limit, env);
            }
            Route::Upload {
                dir,
                dest,
                replace,
                existed,
                uri_dir,
            } => {
                let id = env.gauges.task_id();
                let t = UploadTask::new(id, dir, dest, replace, existed, uri_dir, meta);
                self.start_with_body(RequestTask::Upload(Box::new(t)), body, expect, limit, env);
            }
            Route::Multipart {
                boundary,
                dir,
                uri_dir,
            } => {
                let id = env.gauges.task_id();
                let t = MultipartTask::new(id, &boundary, dir, uri_dir, meta);
                self.start_with_body(
                    RequestTask::Multipart(Box::new(t)),
                    body,
                    expect,
                    limit,
                    env,
                );
            }
            Route::Lookup {
                dir,
                rel,
                no_symlinks,
            } => {
                let id = env.gauges.task_id();
                // The very open that missed, when the routing recorded it (its answer goes to
                // the next routing); else a lookup that only warms the caches.
                let task = match crate::server::lookups::take_miss() {
                    Some(m) => Some(LookupTask::of_miss(id, m)),
                    None => LookupTask::new(id, dir, &rel, no_symlinks),
                };
                match task {
                    Some(t) => self.start_task(RequestTask::Lookup(t), env),
                    None => self.answer_error(404, &[], env),
                }
            }
            Route::Cgi(plan) => {
                let id = env.gauges.task_id();
                let t = CgiTask::new(id, plan, meta, has_body);
                self.start_with_body(RequestTask::Cgi(Box::new(t)), body, expect, limit, env);
            }
        }
    }

    fn set_body(&mut self, reader: Option<BodyReader>, deferred: Option<RequestTask>) {
        if let Some(req) = self.req.as_mut() {
            req.body = reader;
            req.deferred = deferred;
        }
    }

    fn start_with_body(
        &mut self,
        task: RequestTask,
        body: BodyKind,
        expect: bool,
        limit: u64,
        env: &mut Env,
    ) {
        let has_body = !matches!(body, BodyKind::None | BodyKind::Length(0));
        if has_body {
            if expect {
                self.queue_raw(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            self.deadline = env.deadline(env.cfg.timeouts.body);
            self.set_body(Some(BodyReader::new(body, limit)), None);
        }
        self.start_task(task, env);
    }
}

/// The index of the virtual server the current request was routed to.
fn cfg_server(c: &Conn) -> usize {
    c.req.as_ref().map_or(0, |r| r.server)
}
