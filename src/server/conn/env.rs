//! What the loop lends a connection while it handles one event: the backend, the clock, the
//! configuration for new requests, the file cache, the child registry and the counters.

use std::sync::Arc;
use std::time::Instant;

use backends::Backend;

use super::out::OutQueue;
use super::Phase;
use crate::config::Config;
use crate::server::ident::LogId;
use crate::server::reply::FileCache;
use crate::server::task::cgi::child::Children;
use crate::server::task::Cx;

/// Counters for the status page, kept as connections change phase.
#[derive(Default, Debug)]
pub struct Gauges {
    pub accepted: u64,
    pub requests: u64,
    pub active: usize,
    pub reading: usize,
    pub writing: usize,
    pub idle: usize,
    /// The next task id (unique in this worker).
    pub next_task: u32,
}

impl Gauges {
    pub fn enter(&mut self, p: Phase) {
        match p {
            Phase::Idle => self.idle += 1,
            Phase::Head => self.reading += 1,
            Phase::Active | Phase::Linger => self.writing += 1,
            Phase::Closing => {}
        }
    }

    pub fn leave(&mut self, p: Phase) {
        let c = match p {
            Phase::Idle => &mut self.idle,
            Phase::Head => &mut self.reading,
            Phase::Active | Phase::Linger => &mut self.writing,
            Phase::Closing => return,
        };
        *c = c.saturating_sub(1);
    }

    pub fn task_id(&mut self) -> u32 {
        self.next_task = self.next_task.wrapping_add(1);
        self.next_task
    }
}

pub struct Env<'a> {
    pub be: &'a mut dyn Backend,
    pub now: Instant,
    pub date: &'a [u8; 29],
    /// The configuration new requests start under.
    pub cfg: &'a Arc<Config>,
    pub cache: &'a mut FileCache,
    pub children: &'a mut Children,
    pub gauges: &'a mut Gauges,
    pub access: &'a mut Option<std::fs::File>,
    pub stopping: bool,
    pub sendfile: bool,
    /// Request-head parsers not lent to a connection (none allocated per request).
    #[allow(clippy::vec_box)]
    pub parsers: &'a mut Vec<Box<crate::http::request::HeadParser>>,
}

impl Env<'_> {
    /// The context for a task of this connection.
    pub fn cx<'b>(&'b mut self, id: LogId, out: &'b mut OutQueue) -> Cx<'b> {
        Cx {
            be: &mut *self.be,
            now: self.now,
            date: self.date,
            id,
            out,
            children: &mut *self.children,
            sendfile: self.sendfile,
        }
    }
}
