//! Requests routed again inside the server: a CGI's local redirect, an `error_page` to a named
//! location, and a request held while its file lookup ran off the loop's thread.

use super::env::Env;
use super::request::MAX_REDIRECTS;
use super::{Conn, Flags};
use crate::http::request::BodyKind;
use crate::server::ident::TaskKind;
use crate::server::task::Abort;

impl Conn {
    /// A lookup finished off the loop's thread: route the held head again, with its answer
    /// and those of the lookups before (`server::lookups`); a lookup that still misses holds
    /// it again (at most `MAX_HOLDS` times, then the plain calls).
    pub(super) fn reroute(&mut self, env: &mut Env) {
        let answer = self
            .req
            .as_mut()
            .and_then(|r| r.task.as_mut())
            .and_then(|t| t.take_lookup_answer());
        self.abort_task(Abort::Finished, env);
        let held = self.req.as_mut().and_then(|r| r.held.take());
        let Some(mut held) = held else {
            crate::error!("{}: nothing to route again", self.ident());
            self.answer_error(500, &[], env);
            return;
        };
        // Under the limits it was accepted with: the request's configuration, which a reload
        // during the lookup does not change (a lowered limit would fail a head already taken).
        let limits = self
            .req
            .as_ref()
            .map_or(env.cfg.head_limits, |r| r.cfg.head_limits);
        let mut parser = crate::http::request::HeadParser::new();
        parser.set_limits(limits);
        let parsed = parser.parse(&held.head);
        let Ok(crate::http::request::Status::Complete(r, _)) = parsed else {
            crate::error!("{}: the held head no longer parses", self.ident());
            self.answer_error(500, &[], env);
            return;
        };
        // Route it as it first was, from the client's path: the first routing's `try_files`
        // may have rewritten the path (a found file answers in the location that tried it,
        // which the rewritten path need not match) and counted hops.
        // An internal redirect's head is routed as its redirect was: same hops, same named
        // location.
        if let (Some(rq), Ok(n)) = (self.req.as_mut(), crate::http::path::normalize(r.path())) {
            rq.path = n.path;
            rq.query = n.query.map(str::to_string);
            rq.hops = held.redirect.as_ref().map_or(0, |d| d.hops);
            rq.named = held.redirect.as_ref().and_then(|d| d.named.clone());
        }
        // Routed with the answers of the lookups done for it (`server::lookups`): one more
        // each time it was held; past `MAX_HOLDS`, with the plain calls.
        held.known.extend(answer);
        let cached = held.holds < crate::server::lookups::MAX_HOLDS;
        if !cached {
            crate::error!(
                "{}: held {} times for lookups: routed with blocking calls",
                self.ident(),
                held.holds
            );
        }
        let mut known = std::mem::take(&mut held.known);
        let (route, limit) = crate::server::lookups::with_known(&mut known, || {
            self.route_parsed(&r, held.body, env, cached)
        });
        let route = with_status(route, held.redirect.as_ref().map_or(0, |d| d.status));
        let (body, expect) = (held.body, held.expect);
        if matches!(route, crate::server::route::Route::Lookup { .. }) {
            // Another lookup missed: held again, with what it knows so far.
            held.known = known;
            held.holds += 1;
            if let Some(rq) = self.req.as_mut() {
                rq.held = Some(held);
            }
        }
        self.dispatch_route(route, body, expect, limit, env);
    }

    /// Leave the current task for an internal redirect: its body, if unread, is dropped (the
    /// rest of it can no longer be told from a next request: the connection closes after) and
    /// the hop is counted. False when there is no request.
    fn leave_for_redirect(&mut self, env: &mut Env) -> bool {
        self.abort_task(Abort::Finished, env);
        let Some(req) = self.req.as_mut() else {
            return false;
        };
        if !req.body_done() {
            self.flags.set(Flags::CLOSE_AFTER, true);
        }
        req.body = None;
        req.hops += 1;
        true
    }

    /// A CGI's local redirect: answer a GET of `path` instead (RFC 3875 §6.2.2), routed like
    /// any request — a location's `return`, `allow_methods` or CGI apply to it (a script is run,
    /// never served as a file). The new request carries only its Host. At most
    /// [`MAX_REDIRECTS`] in a row (nginx's limit for internal redirects), then 500.
    pub(super) fn internal_redirect(&mut self, path: &str, env: &mut Env) {
        if !self.leave_for_redirect(env) {
            return;
        }
        let id = self.ident();
        let Some(req) = self.req.as_mut() else {
            return;
        };
        let head = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", req.host);
        let mut parser = crate::http::request::HeadParser::new();
        let parsed = parser.parse(head.as_bytes());
        let norm = match &parsed {
            Ok(crate::http::request::Status::Complete(r, _)) if req.hops <= MAX_REDIRECTS => {
                crate::http::path::normalize(r.path()).ok()
            }
            _ => None,
        };
        let (Some(n), Ok(crate::http::request::Status::Complete(r, _))) = (norm, &parsed) else {
            crate::error!(
                "{id}: local redirect to {path:?} refused (hop {})",
                req.hops
            );
            self.answer_error(500, &[], env);
            return;
        };
        crate::trace!("{id}: local redirect to {path}");
        req.path = n.path;
        req.query = n.query.map(str::to_string);
        let (route, _) = self.route_parsed(r, BodyKind::None, env, true);
        self.hold_redirect(&route, head.as_bytes(), 0);
        self.dispatch_route(route, BodyKind::None, false, 0, env);
    }

    /// An internal redirect whose routing met a lookup that would wait for the disk: its head
    /// is held (as a client's would be) with what routing it again must keep.
    fn hold_redirect(&mut self, route: &crate::server::route::Route, head: &[u8], status: u16) {
        if !matches!(route, crate::server::route::Route::Lookup { .. }) {
            return;
        }
        if let Some(rq) = self.req.as_mut() {
            let redirect = super::request::Redirected {
                hops: rq.hops,
                named: rq.named.clone(),
                status,
            };
            rq.held = Some(Box::new(super::request::Held {
                head: head.to_vec(),
                body: BodyKind::None,
                expect: false,
                known: Vec::new(),
                holds: 1,
                redirect: Some(redirect),
            }));
        }
    }

    /// The named location an `error_page` for `code` sends the current request to, with the
    /// status to answer with (`None`: the named location's own, for `error_page CODE = @x`).
    pub(super) fn named_error_page(&self, code: u16) -> Option<(String, Option<u16>)> {
        let req = self.req.as_ref()?;
        if req.named.is_some() || req.hops >= MAX_REDIRECTS {
            return None;
        }
        let ep = req.cfg.servers[req.server]
            .location_for(&req.path)
            .error_page(code)?;
        let name = ep.uri.strip_prefix('@')?;
        let status = match ep.status {
            crate::config::ErrorPageStatus::Original => Some(code),
            crate::config::ErrorPageStatus::Fixed(n) => Some(n),
            crate::config::ErrorPageStatus::FromTarget => None,
        };
        Some((name.to_string(), status))
    }

    /// An `error_page` to `@name`: the request (as a GET, or HEAD, of the same URI, body
    /// dropped — nginx keeps the method for a named location, but the body is gone by now) is
    /// routed from that location, and its answer carries `status` (0: its own).
    pub(super) fn internal_redirect_named(&mut self, name: &str, status: u16, env: &mut Env) {
        if !self.leave_for_redirect(env) {
            return;
        }
        let Some(req) = self.req.as_mut() else {
            return;
        };
        req.named = Some(name.to_string());
        let mut target = req.path.clone();
        if let Some(q) = &req.query {
            target.push('?');
            target.push_str(q);
        }
        let head = format!("GET {target} HTTP/1.1\r\nHost: {}\r\n\r\n", req.host);
        let mut parser = crate::http::request::HeadParser::new();
        let parsed = parser.parse(head.as_bytes());
        let Ok(crate::http::request::Status::Complete(r, _)) = &parsed else {
            // The path came from a parsed request; it parses again. If not: the built-in page.
            let r = self.error_reply(500, &[], env);
            let task = self.reply_task(r, TaskKind::ErrorPage, env);
            self.start_task(task, env);
            return;
        };
        crate::trace!("{}: error_page to @{name}", self.ident());
        let (route, _) = self.route_parsed(r, BodyKind::None, env, true);
        self.hold_redirect(&route, head.as_bytes(), status);
        let route = with_status(route, status);
        self.dispatch_route(route, BodyKind::None, false, 0, env);
    }
}

/// A named `error_page`'s answer carries its status (0: the answer's own).
fn with_status(route: crate::server::route::Route, status: u16) -> crate::server::route::Route {
    match route {
        crate::server::route::Route::Reply(rep) if status != 0 => {
            crate::server::route::Route::Reply(rep.with_status(status))
        }
        other => other,
    }
}
