//! The connection's `try_files` phase (see `server::rewrite`): it may change the request's
//! path and query, and picks the location that answers — or a route to answer with at once (a
//! status, or a lookup to do off the loop's thread before routing again).

use super::env::Env;
use super::Conn;
use crate::server::route::Route;

impl Conn {
    /// Each fallback is a hop counted with local redirects, so a loop ends in 500. The
    /// existence checks look up from the kernel's caches only when `cached` (the first
    /// routing of a client's request): a miss holds the request while the lookup runs off
    /// the loop ([`Route::Lookup`]), then the request is routed again from its own path.
    pub(super) fn rewrite<'c>(
        &mut self,
        req: &crate::http::request::Request<'_>,
        srv: &'c crate::config::Server,
        env: &mut Env,
        cached: bool,
    ) -> Result<&'c crate::config::Location, Route> {
        use crate::server::rewrite::{try_files, TryOutcome};
        let id = self.ident();
        let Some(rq) = self.req.as_ref() else {
            return Err(Route::Error(500, Vec::new()));
        };
        let mut loc = match rq.named.as_deref().and_then(|n| srv.named_location(n)) {
            Some(l) => l,
            None => srv.location_for(&rq.path),
        };
        // A server-level `return` answers first (nginx's server rewrite phase).
        if loc.try_files.is_none() || srv.ret.is_some() {
            return Ok(loc);
        }
        let mut v = self.vars_for(req, srv);
        let Some(rq) = self.req.as_mut() else {
            return Err(Route::Error(500, Vec::new()));
        };
        loop {
            let Some(tf) = &loc.try_files else {
                return Ok(loc);
            };
            v.set_location(loc, &rq.path);
            rq.query.as_deref().unwrap_or("").clone_into(&mut v.args);
            match try_files(srv, loc, tf, &v.vars(), env.cache, cached) {
                TryOutcome::Found(uri) => {
                    crate::trace!("{id}: try_files: {uri}");
                    rq.path = uri;
                    return Ok(loc);
                }
                TryOutcome::Code(c) => return Err(Route::Error(c, Vec::new())),
                TryOutcome::Cold {
                    dir,
                    rel,
                    no_symlinks,
                } => {
                    crate::trace!("{id}: try_files: {rel:?} not in the kernel's caches");
                    return Err(Route::Lookup {
                        dir,
                        rel,
                        no_symlinks,
                    });
                }
                TryOutcome::Named(l) => {
                    crate::trace!("{id}: try_files: {}", l.pattern);
                    loc = l;
                }
                TryOutcome::Redirect(path, query) => {
                    crate::trace!("{id}: try_files: redirect to {path}");
                    rq.path = path;
                    rq.query = query;
                    loc = srv.location_for(&rq.path);
                }
            }
            rq.hops += 1;
            if rq.hops > super::request::MAX_REDIRECTS {
                crate::error!("{id}: try_files: more than {} redirects", rq.hops - 1);
                return Err(Route::Error(500, Vec::new()));
            }
        }
    }
}
