//! The event loop: it owns the backend, the listeners, the connections and the child
//! registry; it waits for completions and routes each one — in [`Loop::dispatch`], the only
//! place a completion is routed — to its owner, by its typed token. It never reaches into a
//! task: a connection's completions go to the connection, which hands its task's to the task.
//!
//! Deadlines are checked by one tick a second (header, body, send, keep-alive, linger, CGI
//! inactivity, KILL after TERM), so keeping a request alive costs no timer operation.

use crate::server::access_log::AccessLogs;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use backends::{Backend, Buf, Completion, Op, WAKE_TOKEN};

use super::conn::env::Env;
use super::conn::Conn;
use super::control::Control;
use super::gauges::Gauges;
use super::reply::FileCache;
use super::stamp::Stamp;
use super::task::cgi::child::Children;
use super::task::Abort;
use super::token::{OpTag, Slab, Tok, SLOT_MASK};
use crate::config::Config;

struct Listener {
    fd: std::os::fd::OwnedFd,
    addr: SocketAddr,
}

/// One event loop (one per worker thread).
pub struct Loop {
    cfg: Arc<Config>,
    be: Box<dyn Backend>,
    sendfile: bool,
    listeners: Vec<Listener>,
    conns: Slab<Conn>,
    children: Children,
    cache: FileCache,
    gauges: Gauges,
    date: crate::http::date::DateCache,
    date_now: [u8; 29],
    /// When the wall clock's second turns next (by `now`): `date_now` is remade then.
    date_due: Instant,
    access: AccessLogs,
    stopping: Option<Instant>,
    control: Arc<Control>,
    cfg_gen: u64,
    /// Listeners whose accept stopped on EMFILE/ENFILE; re-armed by the tick.
    accept_paused: Vec<u32>,
    /// An accept error was logged and no accept has worked since (log it once, not per retry).
    accept_failing: bool,
    /// Connections refused at accept (each close gets its own token).
    refused: u64,
    /// The time of the current loop turn (read once per wait: deadlines need no finer grain).
    now: Instant,
    /// `now` as a stamp (deadlines are made from it).
    stamp: Stamp,
    #[allow(clippy::vec_box)]
    parsers: Vec<Box<crate::http::request::HeadParser>>,
    /// Input buffers lent to connections while they read a request.
    bufs: Vec<Vec<u8>>,
    /// What finished requests leave for the next ones (`Env::pools`).
    pools: crate::server::conn::env::Pools,
    /// The completions of one wait (kept between turns for its capacity).
    batch: Vec<Completion>,
    /// This loop's slot in `control.metrics`.
    worker: usize,
}

/// How long a stopping server waits for CGI children to be reaped after the last connection.
const STOP_GRACE: Duration = Duration::from_secs(5);

impl Loop {
    pub fn new(
        cfg: Arc<Config>,
        be: Box<dyn Backend>,
        listeners: Vec<(SocketAddr, std::os::fd::OwnedFd)>,
        control: Arc<Control>,
    ) -> io::Result<Loop> {
        let access = AccessLogs::open(&cfg)?;
        let now = be.now();
        Ok(Loop {
            now,
            stamp: Stamp::of(now),
            conns: Slab::with_room(cfg.worker_connections.min(backends::MAX_RESERVED_FDS)),
            cache: FileCache::for_dirs(&control.dir_fds()),
            cfg,
            sendfile: be.sendfile_native(),
            be,
            listeners: listeners
                .into_iter()
                .map(|(addr, fd)| Listener { fd, addr })
                .collect(),
            children: Children::default(),
            gauges: Gauges::default(),
            date: crate::http::date::DateCache::default(),
            date_now: [0; 29],
            date_due: now,
            access,
            stopping: None,
            cfg_gen: control.cfg_gen.load(Ordering::SeqCst),
            worker: control.metrics.register(),
            control,
            accept_paused: Vec::new(),
            accept_failing: false,
            refused: 0,
            parsers: Vec::new(),
            bufs: Vec::new(),
            pools: Default::default(),
            batch: Vec::with_capacity(256),
        })
    }

    /// Send files by reading them through the backend, not with sendfile(2).
    pub fn disable_sendfile(&mut self) {
        self.sendfile = false;
    }

    pub fn backend_name(&self) -> &'static str {
        self.be.name()
    }

    /// Serve until asked to stop, then finish in-flight responses and return.
    pub fn run(&mut self) -> io::Result<()> {
        self.start();
        while !self.turn(None)? {}
        Ok(())
    }

    /// Arm the accepts and the tick: what [`Loop::run`] does before its first turn.
    pub fn start(&mut self) {
        for li in 0..self.listeners.len() as u32 {
            self.arm_accept(li);
            let addr = self.listeners[li as usize].addr;
            crate::info!("listening on {addr} ({})", self.be.name());
        }
        self.arm_tick();
        self.read_clock();
    }

    /// One turn: one wait (up to `timeout`), every completion it gave dispatched, then stop
    /// and reload requests handled. Returns true once a stopping loop has finished (what
    /// ends [`Loop::run`]); the simulation tests step the loop with it.
    pub fn turn(&mut self, timeout: Option<Duration>) -> io::Result<bool> {
        let mut out = std::mem::take(&mut self.batch);
        let r = self.turn_with(&mut out, timeout);
        out.clear();
        self.batch = out;
        r
    }

    fn turn_with(
        &mut self,
        out: &mut Vec<Completion>,
        timeout: Option<Duration>,
    ) -> io::Result<bool> {
        self.be.wait(out, timeout)?;
        super::metrics::mine().wait(out.len());
        self.read_clock();
        // A child whose exit is in this batch was reaped already: its pid may be reused,
        // so nothing dispatched before its exit may signal it.
        for c in out.iter() {
            if let Some(t) = Tok::decode(c.token).filter(|t| t.op == OpTag::ChildExit) {
                self.children.mark_exited(t.slot, t.gen);
            }
        }
        for c in out.drain(..) {
            self.dispatch(c);
        }
        let stopping = self.stopping.is_some();
        self.access.pump(&mut *self.be, self.now, stopping);
        if self.control.stop.load(Ordering::Relaxed) && self.stopping.is_none() {
            self.begin_stop();
        }
        let gen = self.control.cfg_gen.load(Ordering::Relaxed);
        if gen != self.cfg_gen {
            self.cfg_gen = gen;
            self.reload();
        }
        if let Some(since) = self.stopping {
            // The last access-log lines are written before the loop exits.
            self.access.pump(&mut *self.be, self.now, true);
            if self.conns.is_empty()
                && self.access.idle()
                && (self.children.is_empty() || self.now >= since + STOP_GRACE)
            {
                crate::info!("all connections finished; exiting");
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// What the simulation tests check after every turn: live connections with their
    /// buffered input and output (bytes), and children not yet reaped.
    pub fn probe(&self) -> (Vec<(usize, usize)>, usize) {
        let conns = self
            .conns
            .keys()
            .into_iter()
            .filter_map(|(s, g)| self.conns.get(s, g).map(Conn::buffered))
            .collect();
        (conns, self.children.len())
    }

    /// Take the new configuration for requests that start from now on; requests in flight
    /// finish under the one they started with. Listen sockets stay as they are.
    fn reload(&mut self) {
        let new = self.control.config();
        let mut old_addrs = self.cfg.listen_addrs();
        let mut new_addrs = new.listen_addrs();
        old_addrs.sort();
        new_addrs.sort();
        if old_addrs != new_addrs {
            crate::warn!("reload: listen addresses changed; they take effect after a restart");
        }
        // The access log is opened anew (a new path, a rotated file), or the old one is kept.
        self.access.reload(&new, &mut *self.be, self.now);
        self.cfg = new;
        self.pools.last_server = Default::default();
        // Roots and stores as the new configuration's load opened them.
        self.cache.reset_anchors(&self.control.dir_fds());
        crate::notice!(
            "configuration reloaded ({} connections kept)",
            self.conns.len()
        );
    }

    /// The time for this turn: the instant, its stamp, the `Date` header's text. The wall
    /// clock is read only once its second may have turned (a clock read per turn saved).
    fn read_clock(&mut self) {
        self.now = self.be.now();
        self.stamp = Stamp::of(self.now);
        self.cache.now = Some(self.now);
        if self.now >= self.date_due {
            let wall = SystemTime::now();
            self.date_now = *self.date.get(wall);
            let into = wall
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            self.date_due = self.now + Duration::from_nanos(1_000_000_000 - u64::from(into));
        }
    }

    fn arm_tick(&mut self) {
        let t = Tok::new(0, 0, 0, OpTag::Tick).encode();
        self.be.submit(
            t,
            Op::Timeout {
                deadline: self.be.now() + Duration::from_secs(1),
            },
        );
    }

    fn begin_stop(&mut self) {
        crate::notice!(
            "stopping: no new connections; finishing {} in flight",
            self.conns.len()
        );
        self.stopping = Some(self.now);
        // Scripts that finished their answers but still run are stopped now (requests in
        // flight keep theirs until they end; their children are stopped then, by the tick).
        self.children.stop_unowned(self.now, &mut *self.be);
        for i in 0..self.listeners.len() as u32 {
            let target = Tok::new(0, i, 0, OpTag::Accept).encode();
            let t = Tok::new(0, i, 0, OpTag::AcceptCancel).encode();
            self.be.submit(t, Op::Cancel { target });
        }
        // Idle keep-alive connections have nothing in flight: close them now.
        for (slot, gen) in self.conns.keys() {
            self.with_conn(slot, gen, |c, env| {
                if c.is_idle() {
                    c.close(Abort::Closing, env);
                }
                false
            });
        }
    }

    /// Run `f` on connection `slot`/`gen` with its environment; `f` returning true (its close
    /// completed) frees the slot.
    fn with_conn(
        &mut self,
        slot: u32,
        gen: u32,
        f: impl FnOnce(&mut Conn, &mut Env) -> bool,
    ) -> bool {
        let (conns, mut env) = self.split();
        let Some(conn) = conns.get_mut(slot, gen) else {
            return false;
        };
        if f(conn, &mut env) {
            conns.remove(slot, gen);
            env.gauges.active -= 1;
        }
        true
    }

    /// The connections, and the environment they are lent (disjoint borrows of the loop).
    fn split(&mut self) -> (&mut Slab<Conn>, Env<'_>) {
        let Loop {
            cfg,
            be,
            sendfile,
            conns,
            children,
            cache,
            gauges,
            date_now,
            access: AccessLogs {
                current: access, ..
            },
            stopping,
            now,
            stamp,
            parsers,
            bufs,
            pools,
            control,
            worker,
            ..
        } = self;
        let env = Env {
            be: &mut **be,
            now: *now,
            stamp: *stamp,
            date: date_now,
            cfg,
            cache,
            children,
            gauges,
            access,
            stopping: stopping.is_some(),
            sendfile: *sendfile,
            parsers,
            bufs,
            pools,
            metrics: &control.metrics,
            worker: *worker,
        };
        (conns, env)
    }

    /// The one place a completion is routed.
    fn dispatch(&mut self, c: Completion) {
        if c.token == WAKE_TOKEN {
            return;
        }
        let Some(t) = Tok::decode(c.token) else {
            crate::error!("completion with a token no op was given: {:#x}", c.token);
            self.drop_buf(c.buf);
            return;
        };
        if crate::log::tracing() {
            super::trace::completion(&self.conns, &t, &c);
        }
        match t.op {
            OpTag::Accept => self.on_accept(t.slot, c),
            OpTag::Tick => self.on_tick(),
            OpTag::RefuseClose | OpTag::AcceptCancel => {}
            OpTag::AccessWrite => self.access.on_write(t.slot, c, &mut *self.be, self.now),
            OpTag::ChildExit => self.on_child_exit(t, c),
            _ => {
                if self.conns.get(t.slot, t.gen).is_none() {
                    // Its connection is gone (a stale completion): only its buffer (a listing's
                    // dir fd), a lookup's fd, or an upload's file created or named for nobody.
                    crate::server::task::lookup::close_stray_fd(t.op, &c);
                    if matches!(t.op, OpTag::UploadOpen | OpTag::UploadRename) {
                        let unlink = Tok {
                            op: OpTag::UploadUnlink,
                            ..t
                        }
                        .encode();
                        crate::server::task::upload::undo_stray(t.op, c, &mut *self.be, unlink);
                    } else {
                        self.drop_buf(c.buf);
                    }
                    return;
                }
                self.with_conn(t.slot, t.gen, |conn, env| conn.on_completion(t, c, env));
            }
        }
    }

    fn drop_buf(&mut self, b: Buf) {
        if let Buf::Recv(b) = b {
            self.be.release(b);
        }
    }

    fn refuse(&mut self, fd: RawFd) {
        self.refused += 1;
        let n = self.refused;
        let t = Tok::new(
            (n >> 20) as u32,
            (n as u32) & SLOT_MASK,
            0,
            OpTag::RefuseClose,
        );
        self.be.submit(t.encode(), Op::Close { fd });
    }

    fn on_accept(&mut self, li: u32, c: Completion) {
        let fd = match c.result {
            Ok(fd) => fd as RawFd,
            Err(e) => {
                if !c.more && self.stopping.is_none() && !self.accept_paused.contains(&li) {
                    // Out of descriptors (EMFILE/ENFILE) or memory: say so once, and let the
                    // tick try again in a second while the connections we have go on being
                    // served.
                    if !self.accept_failing {
                        crate::error!(
                            "accept on {}: {e}; pausing accepts (retried every second)",
                            self.listeners[li as usize].addr
                        );
                        self.accept_failing = true;
                    }
                    self.accept_paused.push(li);
                }
                return;
            }
        };
        if self.stopping.is_some() {
            self.refuse(fd);
            return;
        }
        if self.accept_failing {
            self.accept_failing = false;
            crate::notice!("accepting connections again");
        }
        if self.conns.len() >= self.cfg.worker_connections && self.reclaim_idle(1) == 0 {
            // At the connection limit with nothing idle to reclaim: refuse this one.
            self.refuse(fd);
            return;
        }
        let _ = self.be.set_nodelay(fd);
        let listen_addr = self.listeners[li as usize].addr;
        let local = self.be.local_addr(fd).unwrap_or(listen_addr);
        let peer = self.be.peer_addr(fd).unwrap_or(local);
        let (conns, mut env) = self.split();
        match conns.insert_with(|slot, gen| Conn::new(fd, slot, gen, local, peer, &mut env)) {
            Some((slot, gen)) => {
                if let Some(c) = conns.get(slot, gen) {
                    crate::trace!("{}: accepted fd {fd} from {peer}", c.io_ident());
                }
                env.gauges.active += 1;
                env.gauges.accepted += 1;
                super::metrics::mine().accepted.add(1);
            }
            None => self.refuse(fd),
        }
    }

    /// Close up to `n` idle keep-alive connections (between requests, nothing buffered),
    /// oldest deadline first. Returns how many were closed.
    fn reclaim_idle(&mut self, n: usize) -> usize {
        let mut idle: Vec<(super::stamp::Stamp, u32, u32)> = self
            .conns
            .keys()
            .into_iter()
            .filter_map(|(s, g)| {
                let c = self.conns.get(s, g)?;
                (c.is_idle() && c.served > 0).then_some((c.deadline, s, g))
            })
            .collect();
        idle.sort();
        let mut closed = 0;
        for (_, s, g) in idle.into_iter().take(n) {
            self.with_conn(s, g, |c, env| {
                c.close(Abort::Closing, env);
                false
            });
            closed += 1;
        }
        closed
    }

    fn arm_accept(&mut self, li: u32) {
        let fd = self.listeners[li as usize].fd.as_raw_fd();
        let t = Tok::new(0, li, 0, OpTag::Accept).encode();
        self.be.submit(t, Op::Accept { fd });
    }

    fn on_tick(&mut self) {
        self.read_clock();
        for li in std::mem::take(&mut self.accept_paused) {
            if self.stopping.is_none() {
                self.arm_accept(li);
            }
        }
        if self.stopping.is_some() {
            self.children.stop_unowned(self.now, &mut *self.be);
        }
        self.children.tick(self.now, &mut *self.be);
        self.publish_metrics();
        for (slot, gen) in self.conns.keys() {
            self.with_conn(slot, gen, |c, env| {
                c.on_tick(env);
                false
            });
        }
        self.arm_tick();
    }

    /// Copy this loop's connection states and backend counters where the Prometheus page of
    /// another worker reads them (once a second, on the tick).
    fn publish_metrics(&self) {
        let g = &self.gauges;
        self.control.metrics.publish(
            self.worker,
            super::metrics::WorkerState {
                active: g.active as u64,
                reading: g.reading as u64,
                writing: g.writing as u64,
                idle: g.idle as u64,
                accepted: g.accepted,
                stats: Some(self.be.stats()),
                backend: self.be.name(),
            },
        );
    }

    /// A child exited and was reaped: free its registry entry, and tell the task that owns it
    /// (if it still does).
    fn on_child_exit(&mut self, t: Tok, c: Completion) {
        let Some((owner, pid)) = self.children.on_exit(t.slot, t.gen) else {
            crate::trace!("child {}.{}: reaped (no task waits for it)", t.slot, t.gen);
            return;
        };
        crate::trace!(
            "child {}.{}: pid {pid} reaped (for sequence {} on c{}.{})",
            t.slot,
            t.gen,
            owner.tseq,
            owner.conn,
            owner.gen
        );
        self.with_conn(owner.conn, owner.gen, |conn, env| {
            conn.on_child_exit(owner.tseq, c, env);
            false
        });
    }
}
