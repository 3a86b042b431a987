//! The PROXY protocol header on a `listen ... proxy_protocol` connection (issue 15): it is the
//! first thing read, from the connection's ordinary receive buffer, before the HTTP parser
//! sees a byte. A missing, malformed or oversized header closes the connection without a
//! response (there is no client to answer: the bytes are not from an HTTP client we know),
//! with one log line naming the connection.
//!
//! And the client address of a request: the PROXY source if there was one (set on the
//! connection when the header is read), then nginx's realip over it (`crate::proxy::realip`).

use std::net::SocketAddr;

use super::env::Env;
use super::{Addr, Conn, Flags, Phase};
use crate::proxy::header::{self, Parsed};
use crate::proxy::realip::Source;
use crate::server::task::Abort;

impl Conn {
    /// Parse the PROXY header from what is buffered. Returns true when something changed
    /// (header consumed, or the connection closed).
    pub(super) fn read_proxy_header(&mut self, env: &mut Env) -> bool {
        match header::parse(&self.inbuf) {
            Ok(Parsed::Partial) => {
                if self.flags.has(Flags::EOF) {
                    crate::info!(
                        "{}: closed before a complete PROXY header ({} B)",
                        self.io_ident(),
                        self.inbuf.len()
                    );
                    self.close(Abort::ClientGone, env);
                    return true;
                }
                false
            }
            Ok(Parsed::Complete { len, addrs }) => {
                self.inbuf.drain(..len);
                if let Some((src, dst)) = addrs {
                    // The header's source becomes the connection's client address (with
                    // `real_ip_header proxy_protocol`, only from a trusted balancer). The
                    // balancer's own address is not kept: nothing after this needs it.
                    let lb = self.peer.get();
                    let client = env.cfg.realip.client(lb, Some(src), None);
                    self.peer = Addr::new(client);
                    crate::trace!(
                        "{}: PROXY header: {src} to {dst}, via {lb}: client {client}",
                        self.io_ident()
                    );
                } else {
                    crate::trace!("{}: PROXY header without addresses", self.io_ident());
                }
                if self.tls.is_some() {
                    // On an `ssl` listener the TLS handshake follows the PROXY header.
                    let rest = std::mem::take(&mut self.inbuf);
                    self.set_phase(Phase::Handshake, env);
                    self.tls_input(&rest, env);
                } else if self.inbuf.is_empty() {
                    // Nothing of a request yet: the buffer goes back to the loop's pool.
                    let mut b = std::mem::take(&mut self.inbuf);
                    if b.capacity() > 0 && b.capacity() <= 64 * 1024 && env.bufs.len() < 256 {
                        b.clear();
                        env.bufs.push(b);
                    }
                    self.set_phase(Phase::Idle, env);
                } else {
                    // The request head follows in the same bytes: its header timeout is the one
                    // the connection started with.
                    self.set_phase(Phase::Head, env);
                }
                true
            }
            Err(e) => {
                let m = crate::server::metrics::mine();
                m.proxy_rejected.add(1);
                crate::info!(
                    "{}: {} from {}; closing without a response",
                    self.io_ident(),
                    e.description(),
                    self.peer.get()
                );
                self.close(Abort::Closing, env);
                true
            }
        }
    }

    /// The address a request is logged and run under (access log, `$remote_addr`, CGI
    /// `REMOTE_ADDR`/`REMOTE_PORT`).
    pub(super) fn client_addr(
        &self,
        req: &crate::http::request::Request<'_>,
        env: &Env,
    ) -> SocketAddr {
        let conn = self.peer.get();
        let r = &env.cfg.realip;
        let Some(name) = r.source.header().filter(|_| r.enabled()) else {
            return conn;
        };
        // Repeated X-Forwarded-For lines are one list in order (RFC 9110 §5.3: a proxy may
        // add its own line rather than extend the last); for X-Real-IP the last line counts.
        let mut joined: Vec<u8> = Vec::new();
        for (n, v) in req.headers() {
            if n.eq_ignore_ascii_case(name.as_bytes()) {
                if r.source == Source::XForwardedFor && !joined.is_empty() {
                    joined.push(b',');
                } else {
                    joined.clear();
                }
                joined.extend_from_slice(v);
            }
        }
        let value = (!joined.is_empty()).then_some(joined.as_slice());
        r.client(conn, None, value)
    }
}
