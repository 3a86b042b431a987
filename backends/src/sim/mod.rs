//! The simulation backend: [`Backend`] over in-memory sockets, pipes and children and a
//! virtual clock, every choice drawn from one seeded RNG, so that one seed is one exact
//! schedule and replays it (the deterministic simulation FoundationDB and TigerBeetle test
//! with). Test-only: behind the `sim` cargo feature.
//!
//! What it does that a real kernel does rarely and unrepeatably, always within the contract
//! in the crate docs:
//! - completes ready operations in a random order, a random number per wait; a Cancel before
//!   or after its target; a child's exit before or after its stdout EOF; a cancelled
//!   operation with `ECANCELED` or with the result it reached first;
//! - splits receives and pipe reads at random sizes, moves sends in random pieces as the
//!   client's window allows (a slow reader), runs the receive-buffer pool dry (a pool of 1 to
//!   8 buffers: receives wait, as invariant 4 says);
//! - fails operations with the errors kernels give: `EMFILE`/`ENFILE`/`ENOBUFS`/`ENOMEM` on
//!   accept, `ECONNRESET` on receive and `EPIPE`/`ECONNRESET`/`ENOBUFS` on send (a peer that
//!   resets), `EPIPE` writing to a child that closed its stdin, `EAGAIN`/`EMFILE` from spawn.
//!   `EINTR` never surfaces: every backend retries it inside (`readiness/ops.rs`), so the
//!   contract does not let it reach the caller, and neither does the simulation;
//! - advances a virtual clock ([`Backend::now`]) straight to the next deadline when nothing
//!   else can happen, so a 75 s keep-alive timeout costs nothing.
//!
//! It also checks the caller against the contract and records **violations**: a token reused
//! while in flight, two sends in flight on one fd, an operation on an fd after its Close, a
//! send after `shutdown_write`, a second Recv armed on one fd, a buffer released twice or to
//! the wrong pool, a signal to a pid that is not a live child of this backend (never spawned,
//! or already reaped). [`Sim::leaks`] lists what is still held when a scenario ends.
//!
//! Simulated fds start at [`FD_BASE`] and are never reused, so one can never be confused with a
//! real fd. Real fds (the files the server opens itself, the listening socket) are served by
//! the real syscalls (`read`, `pwrite`, `close`) under the same schedule. The listening
//! socket is only a name: connections come from [`Sim::connect`].
//!
//! The server's other system calls (clock, socket options, spawn, kill) reach the simulation
//! through the [`Backend`] methods of contract invariant 12, which is why those are methods of
//! the backend: the loop already lends it to every connection and task.
//!
//! Limits (what it does not simulate): files are real (opened by the server, read, written
//! and closed by the real syscalls; a SendFile reads its range when submitted); a child
//! writing to a stdout nobody reads stops writing instead of dying of SIGPIPE; the
//! [`Waker`] does nothing (stop and reload reach the loop through its `Control`, checked every
//! turn); one listener; the client side has a receive window but no send window (what a
//! client sends is queued whole).

mod engine;
mod proc;
pub mod rng;
mod submit;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::RawFd;
use std::process::Command;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proc::{Child, Life, Pipe};
pub use proc::{ChildPlan, StdinUse, PIPE_CAP};
use rng::Rng;

use crate::pool::BufPool;
use crate::{Backend, Completion, Op, RecvBuf, Spawned, Stats, Token, Wake, Waker};

/// The first simulated fd number (far above any real descriptor table).
pub const FD_BASE: RawFd = 0x1000_0000;

/// The knobs of one simulated world; [`SimOptions::from_seed`] draws them all.
#[derive(Clone, Debug)]
pub struct SimOptions {
    pub seed: u64,
    pub buf_count: u16,
    pub buf_size: usize,
    pub sendfile: bool,
    /// Injected failures, per thousand eligible operations.
    pub faults: u32,
    /// Most completions one wait returns.
    pub max_batch: usize,
    /// The address connections arrive on.
    pub local: SocketAddr,
}

impl SimOptions {
    pub fn from_seed(seed: u64, local: SocketAddr) -> SimOptions {
        let mut r = Rng::new(seed ^ 0x5151);
        SimOptions {
            seed,
            buf_count: r.range(1, 8) as u16,
            buf_size: *r.pick(&[16, 100, 1024, 4096, 16384]),
            sendfile: r.chance(500),
            faults: *r.pick(&[0, 0, 2, 10, 40]),
            max_batch: r.range(1, 8),
            local,
        }
    }
}

/// The function that decides what a spawned child does (the test's script of its children).
pub type Spawner = Box<dyn FnMut(&Command, &mut Rng) -> io::Result<ChildPlan>>;

/// A client's side of one simulated connection.
#[derive(Debug, Default)]
pub(crate) struct Client {
    pub fd: Option<RawFd>,
    /// Sent by the client, not yet received by the server.
    pub to_server: VecDeque<u8>,
    pub fin: bool,
    pub rst: bool,
    /// Sent by the server, not yet read by the client.
    pub from_server: VecDeque<u8>,
    /// The client's receive window: sends stall while `from_server` holds this much.
    pub window: usize,
    /// The server half-closed or closed: no byte may follow.
    pub server_fin: bool,
    /// The server's Close completed.
    pub closed: bool,
    /// The simulation injected a failure on this connection.
    pub faulted: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Obj {
    Sock(usize),
    /// The server's read end of a child's stdout/stderr pipe.
    PipeR(usize),
    /// The server's write end of a child's stdin pipe.
    PipeW(usize),
}

pub(crate) struct State {
    pub rng: Rng,
    pub opts: SimOptions,
    pub now: Instant,
    pub start: Instant,
    pub next_fd: RawFd,
    pub next_pid: u32,
    pub queued: Vec<(Token, Op)>,
    pub pending: Vec<engine::Pending>,
    pub seq: u64,
    pub pool: BufPool,
    pub clients: Vec<Client>,
    pub backlog: VecDeque<usize>,
    pub fds: BTreeMap<RawFd, Obj>,
    /// Simulated fds whose Close was submitted (never reused).
    pub closed: BTreeSet<RawFd>,
    /// Real fds some operation used and no Close has closed yet.
    /// Real fds ops were given, with the file each named then (device, inode).
    pub real_open: std::collections::BTreeMap<RawFd, (u64, u64)>,
    pub listeners: BTreeSet<RawFd>,
    pub pipes: Vec<Pipe>,
    pub children: Vec<Child>,
    pub spawner: Option<Spawner>,
    pub violations: Vec<String>,
    pub stats: Stats,
    /// Completions delivered and random choices made: the size of the explored schedule.
    pub choices: u64,
    pub trace: bool,
}

/// The simulation backend. Clones share one world: the test keeps one to play the clients
/// while the server's loop owns another as its `Box<dyn Backend>`.
#[derive(Clone)]
pub struct Sim(Rc<RefCell<State>>);

struct NoWake;
impl Wake for NoWake {
    fn wake(&self) -> io::Result<()> {
        Ok(())
    }
}

impl Sim {
    pub fn new(opts: SimOptions) -> Sim {
        let now = Instant::now();
        Sim(Rc::new(RefCell::new(State {
            rng: Rng::new(opts.seed),
            now,
            start: now,
            next_fd: FD_BASE,
            next_pid: 1000,
            queued: Vec::new(),
            pending: Vec::new(),
            seq: 0,
            pool: BufPool::new(opts.buf_count, opts.buf_size),
            clients: Vec::new(),
            backlog: VecDeque::new(),
            fds: BTreeMap::new(),
            closed: BTreeSet::new(),
            real_open: std::collections::BTreeMap::new(),
            listeners: BTreeSet::new(),
            pipes: Vec::new(),
            children: Vec::new(),
            spawner: None,
            violations: Vec::new(),
            stats: Stats::default(),
            choices: 0,
            trace: std::env::var_os("SIM_TRACE").is_some(),
            opts,
        })))
    }

    /// Let `f` decide what each spawned child does.
    pub fn on_spawn(&self, f: Spawner) {
        self.0.borrow_mut().spawner = Some(f);
    }

    /// The world's RNG, for the test's own choices (one seed decides everything).
    pub fn with_rng<T>(&self, f: impl FnOnce(&mut Rng) -> T) -> T {
        f(&mut self.0.borrow_mut().rng)
    }

    pub fn options(&self) -> SimOptions {
        self.0.borrow().opts.clone()
    }

    /// A new client connection, queued on the listener; returns its id.
    pub fn connect(&self, window: usize) -> usize {
        let mut s = self.0.borrow_mut();
        let id = s.clients.len();
        s.clients.push(Client {
            window: window.max(1),
            ..Client::default()
        });
        s.backlog.push_back(id);
        id
    }

    /// The client sends `data` (dropped once it reset or shut its side).
    pub fn send(&self, c: usize, data: &[u8]) {
        let mut s = self.0.borrow_mut();
        let cl = &mut s.clients[c];
        if !cl.fin && !cl.rst {
            cl.to_server.extend(data);
        }
    }

    /// The client half-closes (FIN after what it sent).
    pub fn shutdown(&self, c: usize) {
        self.0.borrow_mut().clients[c].fin = true;
    }

    /// The client aborts (RST): what it sent and had not been received is lost.
    pub fn reset(&self, c: usize) {
        let mut s = self.0.borrow_mut();
        let cl = &mut s.clients[c];
        cl.rst = true;
        cl.to_server.clear();
    }

    /// The client reads up to `max` bytes of what the server sent.
    pub fn read(&self, c: usize, max: usize) -> Vec<u8> {
        let mut s = self.0.borrow_mut();
        let q = &mut s.clients[c].from_server;
        let n = max.min(q.len());
        q.drain(..n).collect()
    }

    pub fn set_window(&self, c: usize, window: usize) {
        self.0.borrow_mut().clients[c].window = window.max(1);
    }

    /// What the client sees of the server's side: (end of stream, connection closed,
    /// a failure was injected on it).
    pub fn client_state(&self, c: usize) -> (bool, bool, bool) {
        let s = self.0.borrow();
        let cl = &s.clients[c];
        (cl.server_fin || cl.closed, cl.closed, cl.faulted)
    }

    /// Whether the client still has bytes the server has not received.
    pub fn unsent(&self, c: usize) -> usize {
        self.0.borrow().clients[c].to_server.len()
    }

    /// Contract violations seen so far (taken).
    pub fn take_violations(&self) -> Vec<String> {
        std::mem::take(&mut self.0.borrow_mut().violations)
    }

    /// Completions delivered so far (each one a scheduling choice).
    pub fn choices(&self) -> u64 {
        self.0.borrow().choices
    }

    /// Signals sent to children, as (pid, signal).
    pub fn signals(&self) -> Vec<(u32, i32)> {
        let s = self.0.borrow();
        s.children
            .iter()
            .flat_map(|c| c.signals.iter().map(move |&g| (c.pid, g)))
            .collect()
    }

    /// Virtual time elapsed since the simulation began.
    pub fn elapsed(&self) -> Duration {
        let s = self.0.borrow();
        s.now - s.start
    }

    /// Operations in flight besides the loop's own (its timer, accepts and their cancels).
    pub fn busy(&self) -> usize {
        self.0
            .borrow()
            .pending
            .iter()
            .filter(|p| !p.is_loop_own())
            .count()
    }

    /// What is still held: open simulated fds, real fds used by ops and never closed, lent
    /// receive buffers, operations in flight (but the loop's own timer, accepts and cancels),
    /// children never reaped.
    pub fn leaks(&self) -> Vec<String> {
        let s = self.0.borrow();
        let mut v = Vec::new();
        for (fd, o) in &s.fds {
            v.push(format!("fd {fd:#x} ({o:?}) never closed"));
        }
        for (fd, id) in &s.real_open {
            // The contract lets a caller close an fd itself once no op on it is in flight (an
            // upload's temp file, say): only one still open on the same file is a leak (other
            // test threads reuse fd numbers for other files).
            if file_id(*fd) == Some(*id) {
                v.push(format!("real fd {fd} used by an op and never closed"));
            }
        }
        let st = s.pool.counted(&s.stats);
        if st.bufs_in_use > 0 {
            v.push(format!("{} receive buffers never released", st.bufs_in_use));
        }
        for p in &s.pending {
            if !p.is_loop_own() {
                v.push(format!("op still in flight: {}", p.describe()));
            }
        }
        // The loop's own tick is the one timer that may stay armed.
        let timers = s.pending.iter().filter(|p| p.is_timer()).count();
        if timers > 1 {
            v.push(format!(
                "{timers} timers armed (the loop's tick is the only one)"
            ));
        }
        for c in &s.children {
            if c.life != Life::Reaped {
                v.push(format!("child {} never reaped ({:?})", c.pid, c.life));
            }
        }
        v
    }
}

impl State {
    pub(crate) fn violation(&mut self, what: String) {
        if self.trace {
            eprintln!("sim VIOLATION: {what}");
        }
        self.violations.push(what);
    }

    fn new_fd(&mut self, o: Obj) -> RawFd {
        let fd = self.next_fd;
        self.next_fd += 1;
        self.fds.insert(fd, o);
        fd
    }

    fn sock(&mut self, fd: RawFd, what: &str) -> Option<usize> {
        match self.fds.get(&fd) {
            Some(Obj::Sock(c)) => Some(*c),
            _ => {
                self.violation(format!(
                    "{what} on fd {fd:#x}, not an open simulated socket"
                ));
                None
            }
        }
    }
}

impl Backend for Sim {
    fn name(&self) -> &'static str {
        "sim"
    }
    fn submit(&mut self, token: Token, op: Op) {
        let mut s = self.0.borrow_mut();
        s.stats.submitted[op.kind() as usize] += 1;
        s.queued.push((token, op));
    }
    fn wait(&mut self, out: &mut Vec<Completion>, timeout: Option<Duration>) -> io::Result<()> {
        let mut s = self.0.borrow_mut();
        s.stats.enters += 1;
        let before = out.len();
        let r = s.wait(out, timeout);
        let n = out.len() - before;
        s.stats.count_wait(n);
        r
    }
    fn release(&mut self, buf: RecvBuf) {
        let mut s = self.0.borrow_mut();
        if !s.pool.restore(buf) {
            s.violation("a receive buffer released twice or to the wrong pool".into());
        }
    }
    fn waker(&self) -> Waker {
        Waker::new(Arc::new(NoWake))
    }
    fn stats(&self) -> Stats {
        let s = self.0.borrow();
        s.pool.counted(&s.stats)
    }
    fn sendfile_native(&self) -> bool {
        self.0.borrow().opts.sendfile
    }
    fn now(&self) -> Instant {
        self.0.borrow().now
    }
    fn set_nodelay(&mut self, fd: RawFd) -> io::Result<()> {
        self.0
            .borrow_mut()
            .sock(fd, "set_nodelay")
            .map(drop)
            .ok_or_else(crate::sys::ebadf)
    }
    fn local_addr(&self, _fd: RawFd) -> io::Result<SocketAddr> {
        Ok(self.0.borrow().opts.local)
    }
    fn peer_addr(&self, fd: RawFd) -> io::Result<SocketAddr> {
        let s = self.0.borrow();
        match s.fds.get(&fd) {
            Some(Obj::Sock(c)) => Ok(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                40000 + (*c % 20000) as u16,
            )),
            _ => Err(crate::sys::ebadf()),
        }
    }
    fn shutdown_write(&mut self, fd: RawFd) -> io::Result<()> {
        let mut s = self.0.borrow_mut();
        let Some(c) = s.sock(fd, "shutdown_write") else {
            return Err(crate::sys::ebadf());
        };
        if s.pending.iter().any(|p| p.is_send_on(fd)) {
            s.violation(format!(
                "shutdown_write on fd {fd:#x} with a send in flight"
            ));
        }
        s.clients[c].server_fin = true;
        Ok(())
    }
    fn spawn(&mut self, spec: &crate::spawn::Spec<'_>) -> io::Result<Spawned> {
        // The scripted children are chosen from the command a real spawn would run.
        let mut command = Command::new(spec.program);
        command
            .args(spec.args)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)));
        if let Some(d) = spec.dir {
            command.current_dir(d);
        }
        let cmd = &mut command;
        let mut s = self.0.borrow_mut();
        let s = &mut *s;
        if s.opts.faults > 0 && s.rng.chance(s.opts.faults) {
            let e = *s.rng.pick(&[libc::EAGAIN, libc::EMFILE, libc::ENOMEM]);
            return Err(io::Error::from_raw_os_error(e));
        }
        let Some(f) = s.spawner.as_mut() else {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        };
        let plan = f(cmd, &mut s.rng)?;
        let base = s.pipes.len();
        for _ in 0..3 {
            s.pipes.push(Pipe::new());
        }
        let pid = s.next_pid;
        s.next_pid += 1;
        let now = s.now;
        s.children.push(Child {
            pid,
            plan,
            stdin: base,
            stdout: base + 1,
            stderr: base + 2,
            life: Life::Running,
            read_in: 0,
            out_done: 0,
            err_done: 0,
            stdin_done: false,
            stalled: false,
            wake_at: now,
            holder_until: None,
            holding: false,
            signals: Vec::new(),
        });
        Ok(Spawned {
            pid,
            stdin: s.new_fd(Obj::PipeW(base)),
            stdout: s.new_fd(Obj::PipeR(base + 1)),
            stderr: s.new_fd(Obj::PipeR(base + 2)),
        })
    }
    /// A simulated child has no group of its own beyond itself: a group signal is a signal to
    /// it, with one allowance — right at its reap, while something it started still holds its
    /// stdout (the server's documented exception), it ends that holder.
    fn kill_group(&mut self, pgid: u32, signal: i32) -> io::Result<()> {
        {
            let mut s = self.0.borrow_mut();
            let s = &mut *s;
            if let Some(c) = s.children.iter_mut().find(|c| c.pid == pgid) {
                if matches!(c.life, Life::Reaped) {
                    c.signals.push(signal);
                    c.holder_until = None;
                    c.holding = false;
                    return Ok(());
                }
            }
        }
        self.kill(pgid, signal)
    }
    fn kill(&mut self, pid: u32, signal: i32) -> io::Result<()> {
        let mut s = self.0.borrow_mut();
        let s = &mut *s;
        let Some(c) = s.children.iter_mut().find(|c| c.pid == pid) else {
            s.violation(format!("signal {signal} to pid {pid}, never spawned here"));
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        };
        c.signals.push(signal);
        match c.life {
            Life::Reaped => {
                let what = format!("signal {signal} to pid {pid} after it was reaped");
                s.violation(what);
                Err(io::Error::from_raw_os_error(libc::ESRCH))
            }
            Life::Exited(_) => Ok(()),
            Life::Running => {
                if signal == libc::SIGKILL || (signal == libc::SIGTERM && !c.plan.ignore_term) {
                    c.exit(signal, s.now, &mut s.pipes);
                }
                Ok(())
            }
        }
    }
}

/// (device, inode) of an open real fd, or None when it is not open.
pub(crate) fn file_id(fd: RawFd) -> Option<(u64, u64)> {
    // SAFETY: fstat writes into the zeroed stat it is given; any fd number is a valid argument.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        (libc::fstat(fd, &mut st) == 0).then_some((st.st_dev, st.st_ino))
    }
}
