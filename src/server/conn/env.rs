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

/// Memory finished requests leave for the next ones, shared by a worker's connections (so an
/// idle connection holds none, and a request on a warm connection allocates none of it).
#[derive(Default)]
pub struct Pools {
    /// Records of finished requests, emptied (at most [`RECORDS_KEPT`]).
    #[allow(clippy::vec_box)]
    pub records: Vec<Box<super::request::RequestRecord>>,
    /// Response-head buffers back from finished sends, emptied (at most [`HEADS_KEPT`], of at
    /// most [`HEAD_KEPT_MAX`] bytes each).
    pub heads: Vec<Vec<u8>>,
    /// Output queues' memory from connections gone idle (at most [`POOL_KEPT`]).
    pub queues: Vec<crate::server::out::Queue>,
    /// Path buffers for the file a request maps to (at most [`POOL_KEPT`]).
    pub paths: Vec<std::path::PathBuf>,
    /// Buffers pipelined responses were coalesced into, back from their sends (at most
    /// [`BATCHES_KEPT`], of at most [`BATCH_KEPT_MAX`] bytes each).
    pub batches: Vec<Vec<u8>>,
    /// The server the last request head chose: the next one, on the same address with the
    /// same `Host`, is given it without the lookup. Emptied when a reload swaps the
    /// configuration (new heads are always routed under the loop's current one).
    pub last_server: LastServer,
}

#[derive(Default)]
pub struct LastServer {
    local: Option<std::net::SocketAddr>,
    host: Vec<u8>,
    index: usize,
}

impl Pools {
    /// `cfg.server_index` for a head on `local` naming `host` (empty: none), from the last
    /// head's answer when it asked the same.
    pub fn server_index(&mut self, cfg: &Config, local: std::net::SocketAddr, host: &str) -> usize {
        let last = &mut self.last_server;
        if last.local == Some(local) && last.host == host.as_bytes() {
            return last.index;
        }
        let index = cfg.server_index(local, (!host.is_empty()).then_some(host));
        last.local = Some(local);
        last.host.clear();
        last.host.extend_from_slice(host.as_bytes());
        last.index = index;
        index
    }
}

/// How many emptied request records a worker keeps for reuse.
pub const RECORDS_KEPT: usize = 64;
/// How many head buffers and queues a worker keeps for reuse.
pub const POOL_KEPT: usize = 64;
/// How many response-head buffers a worker keeps: pipelining clients have a response head per
/// request waiting at once (50 connections × 16 in the bench), and a smaller pool sent every
/// one past it through malloc and free. At most ~330 KB, reached only after such a burst.
pub const HEADS_KEPT: usize = 1024;
/// A head buffer larger than this is not kept as a head (a batch may be: [`BATCH_KEPT_MAX`]).
pub const HEAD_KEPT_MAX: usize = 4096;
/// How many coalescing buffers a worker keeps (one per connection sending a batch at once).
pub const BATCHES_KEPT: usize = 16;
/// A coalescing buffer larger than this is freed (the batch limit is 64 KiB plus one piece).
pub const BATCH_KEPT_MAX: usize = 128 * 1024;

pub struct Env<'a> {
    pub be: &'a mut dyn Backend,
    pub now: Instant,
    /// `now` as a stamp, for the deadlines requests set ([`Env::deadline`]).
    pub stamp: crate::server::stamp::Stamp,
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
    /// What finished requests leave for the next ones.
    pub pools: &'a mut Pools,
    /// Every worker's published state, and this worker's slot (the Prometheus page).
    pub metrics: &'a crate::server::metrics::Registry,
    pub worker: usize,
}

impl Env<'_> {
    /// The deadline `d` from now (at the millisecond, never early).
    pub fn deadline(&self, d: std::time::Duration) -> crate::server::stamp::Stamp {
        self.stamp.after(d)
    }

    /// Keep a path buffer for the next request's file (not one grown large).
    pub fn give_path(&mut self, p: std::path::PathBuf) {
        let paths = &mut self.pools.paths;
        if p.capacity() > 0 && p.capacity() <= HEAD_KEPT_MAX && paths.len() < POOL_KEPT {
            paths.push(p);
        }
    }

    /// Keep a head buffer for the next response head (emptied), if the pool has room and it
    /// is not one grown large.
    /// A buffer past [`HEAD_KEPT_MAX`] (a batch of pipelined responses) goes to the batches.
    pub fn give_head(&mut self, mut h: Vec<u8>) {
        let p = &mut *self.pools;
        let cap = h.capacity();
        let pool = if cap <= HEAD_KEPT_MAX {
            (&mut p.heads, HEADS_KEPT)
        } else if cap <= BATCH_KEPT_MAX {
            (&mut p.batches, BATCHES_KEPT)
        } else {
            return;
        };
        if cap > 0 && pool.0.len() < pool.1 {
            h.clear();
            pool.0.push(h);
        }
    }

    /// An empty buffer to coalesce responses into (one kept from an earlier batch if any).
    pub fn take_batch(&mut self) -> Vec<u8> {
        self.pools.batches.pop().unwrap_or_default()
    }

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
            spare: None,
        }
    }
}
