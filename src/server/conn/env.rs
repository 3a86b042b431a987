//! What the loop lends a connection while it handles one event: the backend, the clock, the
//! configuration for new requests, the file cache, the child registry and the counters.

use std::sync::Arc;
use std::time::Instant;

use backends::Backend;

use crate::config::Config;
use crate::server::gauges::Gauges;
use crate::server::ident::LogId;
use crate::server::out::OutQueue;
use crate::server::reply::FileCache;
use crate::server::task::cgi::child::Children;
use crate::server::task::Cx;

/// How many emptied request records a worker keeps for reuse.
pub const RECORDS_KEPT: usize = 64;

pub struct Env<'a> {
    pub be: &'a mut dyn Backend,
    pub now: Instant,
    pub date: &'a [u8; 29],
    /// The configuration new requests start under.
    pub cfg: &'a Arc<Config>,
    pub cache: &'a mut FileCache,
    pub children: &'a mut Children,
    pub gauges: &'a mut Gauges,
    pub access: &'a mut Option<crate::server::access_log::AccessLog>,
    pub stopping: bool,
    pub sendfile: bool,
    /// Request-head parsers not lent to a connection (none allocated per request).
    #[allow(clippy::vec_box)]
    pub parsers: &'a mut Vec<Box<crate::http::request::HeadParser>>,
    /// Input buffers not lent to a connection.
    pub bufs: &'a mut Vec<Vec<u8>>,
    /// Records of finished requests, emptied, for the next ones (none allocated per request;
    /// at most [`RECORDS_KEPT`], shared by the worker's connections, so an idle connection
    /// holds none).
    #[allow(clippy::vec_box)]
    pub records: &'a mut Vec<Box<super::request::RequestRecord>>,
    /// Every worker's published state, and this worker's slot (the Prometheus page).
    pub metrics: &'a crate::server::metrics::Registry,
    pub worker: usize,
}

impl Env<'_> {
    /// The context for a task of this connection.
    pub fn cx<'b>(&'b mut self, id: LogId, tseq: u32, out: &'b mut OutQueue) -> Cx<'b> {
        Cx {
            be: &mut *self.be,
            now: self.now,
            date: self.date,
            id,
            tseq,
            out,
            children: &mut *self.children,
            sendfile: self.sendfile,
        }
    }
}
