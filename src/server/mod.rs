//! The event loop and the connection state machine.
//!
//! One loop owns a [`Backend`] and every connection. It submits operations and reacts to their
//! completions, routed by token: `generation | connection slot | task kind`. A connection moves
//! through *head* (reading and parsing the request head), *body* (streaming the request body to
//! its sink), *respond* (sends in flight, one at a time, in order) and back to *head* for the
//! next request (keep-alive, pipelining) or to *closing*. Deadlines are checked by one tick timer
//! a second, so keeping a request alive costs no timer operations.
//!
//! `--debug` traces every task transition: `conn 17 recv: 512 B`, `conn 17 send: 1024 B`.

mod cgi;
pub mod respond;

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use backends::{Backend, Body as SendBody, Buf, Completion, Op, SendBuf, WAKE_TOKEN};

use crate::config::{Config, Location, Server};
use crate::http::chunked::ChunkedDecoder;
use crate::http::request::{Body, HeadParser, Method, Status};
use respond::{Ctx, Reply, Static};

/// What the signal thread tells the loops: stop (SIGTERM/SIGINT), or a new configuration
/// (SIGHUP, loaded and checked by the signal thread; a bad one never gets here).
pub struct Control {
    stop: std::sync::atomic::AtomicBool,
    cfg: std::sync::Mutex<Arc<Config>>,
    cfg_gen: std::sync::atomic::AtomicU64,
    wakers: std::sync::Mutex<Vec<backends::Waker>>,
}

impl Control {
    pub fn new(cfg: Config) -> Arc<Control> {
        Arc::new(Control {
            stop: false.into(),
            cfg: std::sync::Mutex::new(Arc::new(cfg)),
            cfg_gen: 0.into(),
            wakers: std::sync::Mutex::new(Vec::new()),
        })
    }

    fn lock_cfg(&self) -> std::sync::MutexGuard<'_, Arc<Config>> {
        self.cfg.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn config(&self) -> Arc<Config> {
        self.lock_cfg().clone()
    }

    /// Ask every loop to stop gracefully.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake_all();
    }

    /// Hand a new (already validated) configuration to every loop.
    pub fn reload(&self, cfg: Config) {
        *self.lock_cfg() = Arc::new(cfg);
        self.cfg_gen.fetch_add(1, Ordering::SeqCst);
        self.wake_all();
    }

    fn wake_all(&self) {
        for w in self.wakers.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = w.wake();
        }
    }
}

const K_ACCEPT: u64 = 1;
const K_RECV: u64 = 2;
const K_SEND: u64 = 3;
const K_CLOSE: u64 = 4;
const K_TICK: u64 = 5;
/// At most this many spare buffers and send queues are kept for reuse.
const POOL_MAX: usize = 256;
const K_FILE_READ: u64 = 11;
const K_FILE_CLOSE: u64 = 12;
const K_SENDFILE: u64 = 13;
/// listen(2) backlog: deep enough that a burst of connects (thousands of clients reconnecting
/// at once) is queued rather than answered with SYN drops and 1 s retransmits. The kernel caps
/// it at net.core.somaxconn (4096 by default on current kernels).
const LISTEN_BACKLOG: i32 = 4096;
/// How long a lingering close waits for the client to close its side.
const LINGERING_TIMEOUT: Duration = Duration::from_secs(2);
/// A large file goes out by sendfile in pieces of this size (each one restarts send_timeout).
const SENDFILE_PIECE: u64 = 4 << 20;

fn token(gen: u32, slot: u32, kind: u64) -> u64 {
    (u64::from(gen & 0x7fff_ffff) << 32) | (u64::from(slot) << 4) | kind
}

fn split(token: u64) -> (u32, u32, u64) {
    (
        (token >> 32) as u32,
        ((token >> 4) & 0x0fff_ffff) as u32,
        token & 0xf,
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Head,
    Body,
    Respond,
}

/// Where a request body goes.
enum Sink {
    /// Read and dropped (a body nobody wants, kept in sync so the connection survives).
    Discard,
    /// The request body of a CGI: to the child's stdin.
    Cgi,
    /// A multipart/form-data upload: each file part to its own temp file.
    Multipart(Box<MultipartSink>),
    /// An upload being written to a temp file; renamed into place when complete.
    Upload {
        file: crate::handlers::atomic_file::AtomicFile,
        dest: PathBuf,
        replace: bool,
    },
}

struct BodyReader {
    /// Bytes still expected (Content-Length), or None for chunked.
    remaining: Option<u64>,
    chunked: Option<ChunkedDecoder>,
    received: u64,
    limit: u64,
    sink: Sink,
}

/// What the current request needs after its head was consumed.
struct ReqInfo {
    http10: bool,
    /// The response's status and body bytes, for the access log.
    status: u16,
    sent_bytes: u64,
    /// The configuration the request started under (a reload does not change it mid-way).
    cfg: Arc<Config>,
    line: String,
    path: String,
    query: Option<String>,
    referer: String,
    user_agent: String,
    server: usize,
    head_only: bool,
    keep_alive: bool,
    /// HTTP/1.0 that asked for keep-alive.
    keep_alive_10: bool,
    /// The upload request's Location header path (for POST saved under a generated name).
    upload_uri: Option<String>,
}

/// A large file being sent chunk by chunk (its fd is closed through the backend).
struct FileStream {
    fd: RawFd,
    offset: u64,
    left: u64,
    reading: bool,
    /// The chunk buffer, back from the last send, for the next read.
    spare: Option<Vec<u8>>,
}

struct Conn {
    fd: RawFd,
    gen: u32,
    local: SocketAddr,
    buf: Vec<u8>,
    /// Lent from the loop's pool while a request head is being read; idle connections hold none.
    parser: Option<Box<HeadParser>>,
    phase: Phase,
    deadline: Instant,
    served: u32,
    /// The peer finished sending (recv returned 0).
    eof: bool,
    recv_live: bool,
    sending: bool,
    out: VecDeque<SendBuf>,
    /// A large file still being streamed.
    stream: Option<Box<FileStream>>,
    /// Close as soon as everything queued has been sent.
    close_when_flushed: bool,
    /// Half-closed after the last response; what arrives is dropped until the peer closes.
    lingering: bool,
    req: Option<Box<ReqInfo>>,
    body: Option<Box<BodyReader>>,
    /// Close once everything queued has been sent.
    close_after: bool,
    closing: bool,
    /// The answer to send once a body nobody needs has been read.
    pending: Option<Box<Reply>>,
    /// A CGI serving the current request.
    cgi: Option<Box<cgi::CgiTask>>,
}

/// Run-time switches from the command line.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub backend: Option<backends::Kind>,
}

struct Listener {
    fd: std::os::fd::OwnedFd,
    addr: SocketAddr,
}

/// The server: one event loop.
pub struct Loop {
    cfg: Arc<Config>,
    be: Box<dyn Backend>,
    listeners: Vec<Listener>,
    conns: Vec<Option<Conn>>,
    free: Vec<u32>,
    gens: Vec<u32>,
    date: crate::http::date::DateCache,
    date_now: [u8; 29],
    access: Option<std::fs::File>,
    stopping: bool,
    control: Arc<Control>,
    cfg_gen: u64,
    active: usize,
    /// Listeners whose accept stopped on EMFILE/ENFILE; re-armed by the tick.
    accept_paused: Vec<u32>,
    /// An accept error was logged and no accept has worked since (log it once, not per retry).
    accept_failing: bool,
    /// Requests answered since start (for `status`).
    requests: u64,
    accepted: u64,
    children: Vec<Option<cgi::Child>>,
    children_free: Vec<u32>,
    cache: respond::FileCache,
    /// Emptied connection buffers and send queues, reused so a request allocates neither.
    buf_pool: Vec<Vec<u8>>,
    out_pool: Vec<VecDeque<SendBuf>>,
    /// The time of the current loop turn (read once per wait: deadlines need no finer grain).
    now: Instant,
    /// Request-head parsers not lent to a connection (no allocation per request). Boxed on
    /// purpose: a box moves between this pool and a connection without copying the parser.
    #[allow(clippy::vec_box)]
    parsers: Vec<Box<HeadParser>>,
}

/// Bind every listen address of `cfg` (errors name the address).
pub fn bind(cfg: &Config, reuse_port: bool) -> io::Result<Vec<(SocketAddr, std::os::fd::OwnedFd)>> {
    let mut v = Vec::new();
    for addr in cfg.listen_addrs() {
        let fd = backends::util::listen(addr, LISTEN_BACKLOG, reuse_port)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        v.push((addr, fd));
    }
    Ok(v)
}

impl Loop {
    pub fn new(
        cfg: Arc<Config>,
        be: Box<dyn Backend>,
        listeners: Vec<(SocketAddr, std::os::fd::OwnedFd)>,
        control: Arc<Control>,
    ) -> io::Result<Loop> {
        let access = match &cfg.access_log {
            Some(p) => Some(crate::log::open_append(p)?),
            None => None,
        };
        Ok(Loop {
            cfg,
            be,
            listeners: listeners
                .into_iter()
                .map(|(addr, fd)| Listener { fd, addr })
                .collect(),
            conns: Vec::new(),
            free: Vec::new(),
            gens: Vec::new(),
            date: crate::http::date::DateCache::default(),
            date_now: [0; 29],
            access,
            stopping: false,
            cfg_gen: control.cfg_gen.load(Ordering::SeqCst),
            control,
            active: 0,
            accept_paused: Vec::new(),
            accept_failing: false,
            requests: 0,
            accepted: 0,
            children: Vec::new(),
            children_free: Vec::new(),
            cache: respond::FileCache::default(),
            parsers: Vec::new(),
            now: Instant::now(),
            buf_pool: Vec::new(),
            out_pool: Vec::new(),
        })
    }

    pub fn backend_name(&self) -> &'static str {
        self.be.name()
    }

    /// Serve until asked to stop, then finish in-flight responses and return.
    pub fn run(&mut self) -> io::Result<()> {
        for (i, l) in self.listeners.iter().enumerate() {
            self.be.submit(
                token(0, i as u32, K_ACCEPT),
                Op::Accept {
                    fd: l.fd.as_raw_fd(),
                },
            );
            crate::info!("listening on {} ({})", l.addr, self.be.name());
        }
        self.arm_tick();
        self.refresh_date();
        let mut out = Vec::with_capacity(256);
        loop {
            self.be.wait(&mut out, None)?;
            self.now = Instant::now();
            self.cache.now = Some(self.now);
            self.refresh_date();
            for c in out.drain(..) {
                self.dispatch(c);
            }
            if self.control.stop.load(Ordering::Relaxed) && !self.stopping {
                self.begin_stop();
            }
            let gen = self.control.cfg_gen.load(Ordering::Relaxed);
            if gen != self.cfg_gen {
                self.cfg_gen = gen;
                self.reload();
            }
            if self.stopping && self.active == 0 {
                crate::info!("all connections finished; exiting");
                return Ok(());
            }
        }
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
        self.cfg = new;
        crate::notice!("configuration reloaded ({} connections kept)", self.active);
    }

    fn refresh_date(&mut self) {
        self.date_now = *self.date.get(SystemTime::now());
    }

    fn arm_tick(&mut self) {
        self.be.submit(
            token(0, 0, K_TICK),
            Op::Timeout {
                deadline: Instant::now() + Duration::from_secs(1),
            },
        );
    }

    fn begin_stop(&mut self) {
        crate::notice!(
            "stopping: no new connections; finishing {} in flight",
            self.active
        );
        self.stopping = true;
        for i in 0..self.listeners.len() {
            self.be.submit(
                token(0, i as u32, K_CLOSE),
                Op::Cancel {
                    target: token(0, i as u32, K_ACCEPT),
                },
            );
        }
        // Idle keep-alive connections have nothing in flight: close them now.
        for slot in 0..self.conns.len() {
            let idle = self.conns[slot]
                .as_ref()
                .is_some_and(|c| c.phase == Phase::Head && c.buf.is_empty() && !c.closing);
            if idle {
                self.close(slot as u32);
            }
        }
    }

    fn dispatch(&mut self, c: Completion) {
        if c.token == WAKE_TOKEN {
            return;
        }
        let (gen, slot, kind) = split(c.token);
        match kind {
            K_ACCEPT => self.on_accept(slot, c),
            K_TICK => self.on_tick(),
            cgi::K_CGI_EXIT => self.on_child_exit(slot, c),
            K_RECV
            | K_SEND
            | K_CLOSE
            | cgi::K_CGI_IN
            | cgi::K_CGI_OUT
            | cgi::K_CGI_IN_CLOSE
            | cgi::K_CGI_OUT_CLOSE
            | K_FILE_READ
            | K_FILE_CLOSE
            | K_SENDFILE => {
                if gen == 0 && kind == K_CLOSE {
                    return; // a listener's accept cancelled at stop
                }
                let live = self
                    .conns
                    .get(slot as usize)
                    .and_then(|c| c.as_ref())
                    .is_some_and(|conn| conn.gen == gen);
                if !live {
                    if let Buf::Recv(b) = c.buf {
                        self.be.release(b);
                    }
                    return;
                }
                match kind {
                    K_RECV => self.on_recv(slot, c),
                    K_SEND => self.on_send(slot, c),
                    K_CLOSE => self.on_close(slot, c),
                    K_FILE_READ => self.on_file_read(slot, c),
                    K_SENDFILE => self.on_sendfile(slot, c),
                    K_FILE_CLOSE => {}
                    _ => self.on_cgi(slot, kind, c),
                }
            }
            _ => {}
        }
    }

    fn on_accept(&mut self, li: u32, c: Completion) {
        let fd = match c.result {
            Ok(fd) => fd as RawFd,
            Err(e) => {
                if !c.more && !self.stopping && !self.accept_paused.contains(&li) {
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
                    // Existing connections, idle ones included, keep being served (only
                    // worker_connections reclaims idle ones).
                    self.accept_paused.push(li);
                }
                return;
            }
        };
        if self.stopping {
            // Stopping: refuse politely by closing at once (gen 0 close completions are ignored).
            self.be.submit(token(0, li, K_CLOSE), Op::Close { fd });
            return;
        }
        if self.accept_failing {
            self.accept_failing = false;
            crate::notice!("accepting connections again");
        }
        if self.active >= self.cfg.worker_connections && self.reclaim_idle(1) == 0 {
            // At the connection limit with nothing idle to reclaim: refuse this one.
            self.be.submit(token(0, li, K_CLOSE), Op::Close { fd });
            return;
        }
        let _ = backends::util::set_nodelay(fd);
        let local = backends::util::local_addr(fd).unwrap_or(self.listeners[li as usize].addr);
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.conns.push(None);
                self.gens.push(0);
                (self.conns.len() - 1) as u32
            }
        };
        let gen = self.gens[slot as usize].wrapping_add(1) & 0x7fff_ffff;
        let gen = gen.max(1);
        self.gens[slot as usize] = gen;
        let conn = Conn {
            fd,
            gen,
            local,
            buf: Vec::new(),
            parser: None,
            phase: Phase::Head,
            deadline: Instant::now() + self.cfg.timeouts.header,
            served: 0,
            eof: false,
            recv_live: true,
            sending: false,
            out: VecDeque::new(),
            stream: None,
            close_when_flushed: false,
            lingering: false,
            req: None,
            body: None,
            close_after: false,
            closing: false,
            pending: None,
            cgi: None,
        };
        self.conns[slot as usize] = Some(conn);
        self.active += 1;
        self.accepted += 1;
        if crate::log::tracing() {
            let peer = backends::util::peer_addr(fd).unwrap_or(local);
            crate::trace!("conn {slot} accept: fd {fd} from {peer}");
        }
        self.be.submit(token(gen, slot, K_RECV), Op::Recv { fd });
    }

    /// Close up to `n` idle keep-alive connections (between requests, nothing buffered),
    /// oldest deadline first. Returns how many were closed.
    fn reclaim_idle(&mut self, n: usize) -> usize {
        let mut idle: Vec<(Instant, u32)> = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (i, c)))
            .filter(|(_, c)| {
                !c.closing && c.phase == Phase::Head && c.buf.is_empty() && c.served > 0
            })
            .map(|(i, c)| (c.deadline, i as u32))
            .collect();
        idle.sort();
        let mut closed = 0;
        for (_, slot) in idle.into_iter().take(n) {
            self.close(slot);
            closed += 1;
        }
        closed
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        for li in std::mem::take(&mut self.accept_paused) {
            if !self.stopping {
                let fd = self.listeners[li as usize].fd.as_raw_fd();
                self.be.submit(token(0, li, K_ACCEPT), Op::Accept { fd });
            }
        }
        self.cgi_tick(now);
        for slot in 0..self.conns.len() {
            let Some(c) = self.conns[slot].as_ref() else {
                continue;
            };
            if c.closing || c.deadline > now {
                continue;
            }
            if c.lingering {
                self.close(slot as u32);
                continue;
            }
            // While a CGI works, its own timeout applies (cgi_tick), except to a body upload.
            if c.cgi.is_some() && c.phase != Phase::Body {
                continue;
            }
            let slot = slot as u32;
            match c.phase {
                // Mid-request: 408 if a response is still possible (RFC 9110 §15.5.9).
                Phase::Head if !c.buf.is_empty() => {
                    crate::info!("conn {slot}: client_header_timeout");
                    self.fail(slot, 408);
                }
                Phase::Body => {
                    crate::info!("conn {slot}: client_body_timeout");
                    self.fail(slot, 408);
                }
                Phase::Head => {
                    crate::trace!("conn {slot} keepalive timeout");
                    self.close(slot);
                }
                Phase::Respond => {
                    crate::info!("conn {slot}: send_timeout");
                    self.close(slot);
                }
            }
        }
        self.arm_tick();
    }

    fn conn(&mut self, slot: u32) -> &mut Conn {
        self.conns[slot as usize].as_mut().expect("live connection")
    }

    fn on_recv(&mut self, slot: u32, c: Completion) {
        let now = self.now;
        let n = match c.result {
            Ok(n) => n,
            Err(e) => {
                let conn = self.conns[slot as usize].as_mut().expect("live connection");
                conn.recv_live = false;
                if !conn.closing {
                    crate::trace!("conn {slot} recv: {e}");
                    conn.eof = true;
                    self.close(slot);
                }
                return;
            }
        };
        crate::trace!("conn {slot} recv: {n} B");
        if self.conn(slot).lingering {
            if let Buf::Recv(b) = c.buf {
                self.be.release(b);
            }
            if n == 0 || !c.more {
                self.close(slot);
            }
            return;
        }
        let header_timeout = self.cfg.timeouts.header;
        let conn = self.conns[slot as usize].as_mut().expect("live connection");
        if !c.more {
            conn.recv_live = false;
        }
        if let Buf::Recv(b) = c.buf {
            if !conn.closing {
                if conn.phase == Phase::Head && conn.buf.is_empty() && conn.served > 0 {
                    // A new request starts: its whole head must arrive within the header
                    // timeout, however slowly it drips (slowloris).
                    conn.deadline = now + header_timeout;
                }
                if conn.buf.capacity() == 0 {
                    conn.buf = self.buf_pool.pop().unwrap_or_default();
                }
                conn.buf.extend_from_slice(&b);
            }
            self.be.release(b);
        }
        if n == 0 {
            let conn = self.conn(slot);
            conn.eof = true;
            if conn.phase == Phase::Head && conn.buf.is_empty() && !conn.sending {
                self.close(slot);
                return;
            }
            // The client left while a CGI works for it: stop the child now (it is killed and
            // reaped), rather than at its timeout.
            if conn.cgi.is_some() && conn.phase != Phase::Body {
                crate::info!("conn {slot}: client closed during CGI");
                self.close(slot);
                return;
            }
        }
        if !self.conn(slot).closing {
            self.advance(slot);
        }
    }

    fn on_send(&mut self, slot: u32, c: Completion) {
        let now = self.now;
        let send_timeout = self.cfg.timeouts.send;
        let conn = self.conn(slot);
        conn.sending = false;
        match c.result {
            Ok(n) => {
                crate::trace!("conn {slot} send: {n} B");
                conn.deadline = now + send_timeout;
            }
            Err(e) => {
                crate::trace!("conn {slot} send: {e}");
                self.close(slot);
                return;
            }
        }
        if conn.closing {
            return;
        }
        if let Some(st) = conn.stream.as_mut() {
            if let Buf::Send(SendBuf {
                body: SendBody::Owned(v),
                ..
            }) = c.buf
            {
                st.spare = Some(v);
            }
        }
        self.pump(slot);
    }

    fn on_close(&mut self, slot: u32, _c: Completion) {
        crate::trace!("conn {slot} closed");
        self.conns[slot as usize] = None;
        self.free.push(slot);
        self.active -= 1;
    }

    /// Close after the last response the way RFC 9112 §9.6 asks: half-close first, then read and
    /// drop what the client still sends (a request already on its way) until it closes too or a
    /// short timeout passes. Closing at once could turn that data into a reset that destroys
    /// the response before the client has read it.
    fn linger(&mut self, slot: u32) {
        let now = self.now;
        let conn = self.conn(slot);
        if conn.closing || conn.lingering {
            return;
        }
        if conn.eof || !conn.recv_live || backends::util::shutdown_write(conn.fd).is_err() {
            self.close(slot);
            return;
        }
        crate::trace!("conn {slot} lingering close");
        conn.lingering = true;
        conn.buf = Vec::new();
        conn.deadline = now + LINGERING_TIMEOUT;
    }

    /// Close the connection (cancelling its receive); the slot is freed on completion.
    fn close(&mut self, slot: u32) {
        let conn = self.conn(slot);
        if conn.closing {
            return;
        }
        conn.closing = true;
        conn.body = None; // drops an unfinished upload: its temp file is removed
        if let Some(st) = conn.stream.take() {
            let gen = conn.gen;
            self.be
                .submit(token(gen, slot, K_FILE_CLOSE), Op::Close { fd: st.fd });
        }
        // A client gone mid-CGI: the child is killed and (by its exit op) reaped.
        self.cgi_detach(slot, true);
        let conn = self.conn(slot);
        let (fd, gen) = (conn.fd, conn.gen);
        self.be.submit(token(gen, slot, K_CLOSE), Op::Close { fd });
    }

    /// Parse and handle what is buffered, as far as it goes.
    fn advance(&mut self, slot: u32) {
        loop {
            let conn = self.conn(slot);
            if conn.closing {
                return;
            }
            match conn.phase {
                Phase::Respond => return,
                Phase::Body => {
                    if !self.feed_body(slot) {
                        return;
                    }
                }
                Phase::Head => {
                    if conn.buf.is_empty() {
                        if conn.eof {
                            self.close(slot);
                        }
                        return;
                    }
                    if !self.parse_head(slot) {
                        return;
                    }
                }
            }
        }
    }

    /// Returns true when the state moved on (so `advance` should continue).
    fn parse_head(&mut self, slot: u32) -> bool {
        let now = self.now;
        let cfg = self.cfg.clone();
        let conn = self.conns[slot as usize].as_mut().unwrap();
        // Parse from the buffer taken out of the connection, so the request (which borrows it)
        // and the connection can be used side by side; it goes back before returning.
        let buf = std::mem::take(&mut conn.buf);
        let parser = conn
            .parser
            .get_or_insert_with(|| self.parsers.pop().unwrap_or_default());
        let parsed = parser.parse(&buf);
        if !matches!(parsed, Ok(Status::Partial)) {
            // The parser reset itself (complete or failed): back to the pool.
            if let Some(p) = conn.parser.take() {
                self.parsers.push(p);
            }
        }
        let req = match parsed {
            Ok(Status::Partial) => {
                conn.buf = buf;
                if conn.eof {
                    self.close(slot);
                }
                return false;
            }
            Err(e) => {
                crate::info!(
                    "conn {slot}: bad request: {} ({})",
                    e.description(),
                    e.status()
                );
                conn.req = None;
                self.fail(slot, e.status());
                return false;
            }
            Ok(Status::Complete(req, _)) => req,
        };
        let head_len = req.head_len();
        let analyzed = req.analyze();
        // What only the access log needs is only copied out when there is an access log.
        let logging = self.access.is_some();
        let line = if logging {
            format!(
                "{} {} HTTP/1.{}",
                req.method.as_str(),
                req.target(),
                req.minor
            )
        } else {
            String::new()
        };
        let text = |name: &str| {
            req.header(name)
                .filter(|_| logging)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        let (referer, user_agent) = (text("Referer"), text("User-Agent"));
        let info_base = |keep_alive: bool| ReqInfo {
            http10: req.minor == 0,
            status: 0,
            sent_bytes: 0,
            cfg: cfg.clone(),
            line: line.clone(),
            path: String::new(),
            query: None,
            referer: referer.clone(),
            user_agent: user_agent.clone(),
            server: 0,
            head_only: req.method == Method::Head,
            keep_alive,
            keep_alive_10: req.minor == 0 && keep_alive,
            upload_uri: None,
        };
        let head = match analyzed {
            Ok(h) => h,
            Err(e) => {
                conn.req = Some(Box::new(info_base(false)));
                self.fail(slot, e.status());
                return false;
            }
        };
        let host = String::from_utf8_lossy(head.host).into_owned();
        let mut info = info_base(head.keep_alive);
        let host_opt = (!host.is_empty()).then_some(host.as_str());
        let server_idx = {
            let s = cfg.select_server(conn.local, host_opt);
            cfg.servers
                .iter()
                .position(|x| std::ptr::eq(x, s))
                .unwrap_or(0)
        };
        info.server = server_idx;
        let server = &cfg.servers[server_idx];
        let norm = match crate::http::path::normalize(req.path()) {
            Ok(n) => n,
            Err(e) => {
                conn.req = Some(Box::new(info));
                self.fail(slot, e.status());
                return false;
            }
        };
        let query = norm.query;
        info.path = norm.path;
        info.query = query.map(str::to_string);
        let loc = server.location_for(&info.path);
        let range = req.header("Range").map(<[u8]>::to_vec);
        let inm = req.header("If-None-Match").map(<[u8]>::to_vec);
        let ims = req.header("If-Modified-Since").map(<[u8]>::to_vec);
        let body_kind = head.body;
        let expect_continue = head.expect_continue;
        let has_body = !matches!(body_kind, Body::None | Body::Length(0));
        let method = req.method;
        let content_type = req
            .header("Content-Type")
            .map(|v| String::from_utf8_lossy(v).into_owned());
        let cgi_plan = self.cgi_plan(slot, &req, loc, &info.path, query, &host, body_kind);
        let conn = self.conns[slot as usize].as_mut().unwrap();
        // The head is consumed; what follows in the buffer is the body or the next request.
        let mut buf = buf;
        buf.drain(..head_len);
        conn.buf = buf;
        conn.phase = Phase::Respond;
        conn.deadline = now + cfg.timeouts.send;
        conn.req = Some(Box::new(info));

        // Decide the response (or the body's destination).
        let reply = self.route(
            slot,
            server_idx,
            loc,
            method,
            body_kind,
            RequestExtras {
                range,
                inm,
                ims,
                expect_continue,
                content_type,
                cgi: cgi_plan,
            },
        );
        // A client waiting for `100 Continue` gets the final answer at once instead (RFC 9110
        // §10.1.1) and the connection closes: its body may or may not follow.
        let reply = match reply {
            Route::Reply(r) if has_body && expect_continue => {
                self.conn(slot).close_after = true;
                self.send_reply(slot, r);
                return true;
            }
            Route::Error(code, extra) if has_body && expect_continue => {
                self.conn(slot).close_after = true;
                self.respond_error(slot, code, &extra);
                return true;
            }
            other => other,
        };
        match reply {
            Route::Reply(r) => {
                if has_body {
                    // Keep the connection in sync: read and drop the body, then answer.
                    self.start_body(slot, body_kind, loc.client_max_body_size, Sink::Discard);
                    self.conn(slot).pending_reply(r);
                } else {
                    self.send_reply(slot, r);
                }
            }
            Route::Error(code, extra) => {
                if has_body && code != 413 {
                    self.start_body(slot, body_kind, loc.client_max_body_size, Sink::Discard);
                    let r = self.error_reply(slot, code, &extra);
                    self.conn(slot).pending_reply(r);
                } else {
                    if has_body {
                        self.conn(slot).close_after = true;
                    }
                    self.respond_error(slot, code, &extra);
                }
            }
            Route::Body(sink, expect) => {
                if expect {
                    self.send_continue(slot);
                }
                self.start_body(slot, body_kind, loc.client_max_body_size, sink);
            }
            Route::Cgi(plan, expect) => match self.start_cgi(slot, plan) {
                Ok(()) => {
                    if has_body {
                        if expect {
                            self.send_continue(slot);
                        }
                        self.start_body(slot, body_kind, loc.client_max_body_size, Sink::Cgi);
                    } else {
                        self.cgi_push_body(slot, &[], true);
                    }
                }
                Err(code) => {
                    if has_body {
                        self.conn(slot).close_after = true;
                    }
                    self.respond_error(slot, code, &[]);
                }
            },
        }
        true
    }

    /// The interim `100 Continue` (RFC 9110 §10.1.1), sent before the body is read.
    fn send_continue(&mut self, slot: u32) {
        let c = self.conn(slot);
        c.out.push_back(SendBuf {
            head: b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(),
            body: SendBody::Empty,
        });
        self.pump(slot);
    }

    /// If `loc` runs CGI for this path, everything needed to start it (built now, while the
    /// request's header fields are still at hand).
    #[allow(clippy::too_many_arguments)]
    fn cgi_plan(
        &self,
        slot: u32,
        req: &crate::http::request::Request<'_>,
        loc: &Location,
        path: &str,
        query: Option<&str>,
        host: &str,
        body: Body,
    ) -> Option<cgi::CgiPlan> {
        if loc.cgi.is_empty() {
            return None;
        }
        let exts: Vec<&str> = loc.cgi.iter().map(|c| c.ext.as_str()).collect();
        let (script_uri, path_info) = crate::cgi::split_script(path, &exts)?;
        let handler = loc.cgi_for(script_uri)?;
        let script = respond::map(loc, script_uri)?;
        let conn = self.conns[slot as usize].as_ref().unwrap();
        let headers: Vec<(&[u8], &[u8])> = req.headers().collect();
        let content_type = req
            .header("Content-Type")
            .and_then(|v| std::str::from_utf8(v).ok());
        let server_name = host.rsplit_once(':').map_or(host, |(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(']') || h.ends_with(']') {
                h
            } else {
                host
            }
        });
        let path_translated = if path_info.is_empty() {
            None
        } else {
            respond::map(loc, path_info)
        };
        let params = crate::cgi::CgiParams {
            method: req.method.as_str(),
            request_uri: req.target(),
            script_name: script_uri,
            script_filename: &script,
            path_info,
            path_translated,
            query: query.unwrap_or(""),
            content_length: match body {
                Body::Length(n) => Some(n),
                _ => None,
            },
            content_type,
            server_name: if server_name.is_empty() {
                "localhost"
            } else {
                server_name
            },
            server_port: conn.local.port(),
            server_protocol: if req.minor == 0 {
                "HTTP/1.0"
            } else {
                "HTTP/1.1"
            },
            remote_addr: backends::util::peer_addr(conn.fd).unwrap_or(conn.local),
            headers: &headers,
        };
        let env = crate::cgi::build_env(&params);
        Some(cgi::CgiPlan {
            script,
            interpreter: handler.interpreter.clone(),
            env,
            timeout: loc.cgi_timeout,
        })
    }

    fn route(
        &mut self,
        slot: u32,
        server_idx: usize,
        loc: &Location,
        method: Method,
        body: Body,
        x: RequestExtras,
    ) -> Route {
        // Borrowed out of the request for the length of this call (no copies), put back below.
        let (path, query) = {
            let info = self.conns[slot as usize]
                .as_mut()
                .unwrap()
                .req
                .as_mut()
                .unwrap();
            (std::mem::take(&mut info.path), info.query.take())
        };
        let route = self.route_with(
            slot,
            server_idx,
            loc,
            method,
            body,
            x,
            &path,
            query.as_deref(),
        );
        if let Some(info) = self.conns[slot as usize]
            .as_mut()
            .and_then(|c| c.req.as_mut())
        {
            info.path = path;
            info.query = query;
        }
        route
    }

    #[allow(clippy::too_many_arguments)]
    fn route_with(
        &mut self,
        slot: u32,
        server_idx: usize,
        loc: &Location,
        method: Method,
        body: Body,
        x: RequestExtras,
        path: &str,
        query: Option<&str>,
    ) -> Route {
        let cfg = self.cfg.clone();
        let server: &Server = &cfg.servers[server_idx];
        let date = self.date_now;
        let max_requests = self.cfg.keepalive_requests;
        let stopping = self.stopping;
        let conn = self.conns[slot as usize].as_ref().unwrap();
        let info = conn.req.as_ref().unwrap();
        // Say so when this response is the connection's last (RFC 9112 §9.6): the client asked
        // to close, or keepalive_requests is reached, or the server is stopping.
        let cx_close =
            !info.keep_alive || conn.close_after || conn.served + 1 >= max_requests || stopping;
        let cx = Ctx {
            head_only: info.head_only,
            close: cx_close,
            keep_alive_10: info.keep_alive_10,
            date: &date,
            query,
            if_none_match: x.inm.as_deref(),
            if_modified_since: x.ims.as_deref(),
            range: x.range.as_deref(),
        };
        if let Some(r) = &server.ret {
            return Route::Reply(respond::ret(r.code, r.target.as_deref(), &cx));
        }
        if !loc.allows(method.as_str()) {
            let allow = loc
                .allow_methods
                .map(|m| m.allow_header())
                .unwrap_or_default();
            return Route::Error(405, vec![("Allow".into(), allow)]);
        }
        if let Some(r) = &loc.ret {
            return Route::Reply(respond::ret(r.code, r.target.as_deref(), &cx));
        }
        if loc.status {
            let json = query.is_some_and(|q| q.split('&').any(|p| p == "format=json"));
            let (ty, body) = self.status_page(json);
            return Route::Reply(respond::full(
                200,
                ty,
                body.into_bytes(),
                &[("Cache-Control", b"no-store")],
                &cx,
            ));
        }
        let limit = loc.client_max_body_size;
        if let Body::Length(n) = body {
            if limit != 0 && n > limit {
                return Route::Error(413, Vec::new());
            }
        }
        if let Some(plan) = x.cgi {
            return Route::Cgi(plan, x.expect_continue);
        }
        match method {
            Method::Get | Method::Head => {
                match respond::serve_static(path, loc, &cfg, &cx, &mut self.cache) {
                    Static::Reply(r) => Route::Reply(r),
                    Static::Error(code) => Route::Error(code, Vec::new()),
                }
            }
            // RFC 9110 §15.5.12: an upload must say how long it is (Content-Length, even 0, or
            // chunked).
            Method::Put | Method::Post if loc.upload_store.is_some() && body == Body::None => {
                Route::Error(411, Vec::new())
            }
            Method::Put | Method::Post if loc.upload_store.is_some() => {
                let multipart = x
                    .content_type
                    .as_deref()
                    .and_then(crate::handlers::multipart::boundary);
                match (method, multipart) {
                    (Method::Post, Some(b)) => {
                        self.route_multipart(loc, path, b, x.expect_continue)
                    }
                    _ => self.route_upload(slot, loc, method, path, x.expect_continue),
                }
            }
            // DELETE changes files: only where uploads are enabled or the location lists DELETE
            // explicitly (nginx without DAV answers 405).
            Method::Delete
                if loc.upload_store.is_some()
                    || loc.allow_methods.is_some_and(|m| m.allows("DELETE")) =>
            {
                self.route_delete(loc, path, &cx)
            }
            _ => {
                let allow = loc
                    .allow_methods
                    .map(|m| m.allow_header())
                    .unwrap_or_else(|| "GET, HEAD".into());
                Route::Error(405, vec![("Allow".into(), allow)])
            }
        }
    }

    fn route_upload(
        &mut self,
        slot: u32,
        loc: &Location,
        method: Method,
        path: &str,
        expect: bool,
    ) -> Route {
        // upload_store is set here, so no target means the path would leave the store.
        let Some(target) = respond::upload_target(loc, path) else {
            return Route::Error(404, Vec::new());
        };
        let (dest, replace, dir) = if method == Method::Put {
            if path.ends_with('/') {
                return Route::Error(409, Vec::new());
            }
            let dir = target.parent().map(PathBuf::from).unwrap_or_default();
            (target, true, dir)
        } else {
            // POST: a generated name in the directory the URI names.
            let name = format!(
                "upload-{}-{:x}",
                crate::http::date::unix_secs(SystemTime::now()),
                rand_u64() & 0xffff_ffff
            );
            let dir = target.clone();
            let mut uri = path.to_string();
            if !uri.ends_with('/') {
                uri.push('/');
            }
            uri.push_str(&name);
            self.conn(slot).req.as_mut().unwrap().upload_uri = Some(uri);
            (target.join(name), false, dir)
        };
        if !dir.is_dir() {
            return Route::Error(409, Vec::new());
        }
        if dest.is_dir() {
            return Route::Error(409, Vec::new());
        }
        match crate::handlers::atomic_file::AtomicFile::create_in(&dir) {
            Ok(file) => Route::Body(
                Sink::Upload {
                    file,
                    dest,
                    replace,
                },
                expect,
            ),
            Err(e) => {
                crate::error!("upload temp file in {}: {e}", dir.display());
                Route::Error(500, Vec::new())
            }
        }
    }

    fn route_delete(&mut self, loc: &Location, path: &str, cx: &Ctx) -> Route {
        // Through the upload store where there is one, else the same mapping as GET; a path
        // that would leave either maps to nothing.
        let target = if loc.upload_store.is_some() {
            respond::upload_target(loc, path)
        } else {
            respond::map(loc, path)
        };
        let Some(target) = target else {
            return Route::Error(404, Vec::new());
        };
        match std::fs::symlink_metadata(&target) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Route::Error(404, Vec::new()),
            Err(_) => Route::Error(403, Vec::new()),
            Ok(m) if !m.is_file() => Route::Error(403, Vec::new()),
            Ok(_) => match std::fs::remove_file(&target) {
                Ok(()) => Route::Reply(respond::full(204, "text/plain", Vec::new(), &[], cx)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Route::Error(404, Vec::new()),
                Err(_) => Route::Error(403, Vec::new()),
            },
        }
    }

    fn start_body(&mut self, slot: u32, body: Body, limit: u64, sink: Sink) {
        let now = self.now;
        let timeout = self.cfg.timeouts.body;
        let conn = self.conn(slot);
        conn.phase = Phase::Body;
        conn.deadline = now + timeout;
        conn.body = Some(Box::new(BodyReader {
            remaining: match body {
                Body::Length(n) => Some(n),
                _ => None,
            },
            chunked: matches!(body, Body::Chunked).then(ChunkedDecoder::new),
            received: 0,
            limit,
            sink,
        }));
    }

    /// Feed buffered bytes to the body reader. Returns true when the body is complete and the
    /// state moved on.
    fn feed_body(&mut self, slot: u32) -> bool {
        let now = self.now;
        let timeout = self.cfg.timeouts.body;
        let is_cgi = matches!(
            self.conn(slot).body.as_ref().map(|b| &b.sink),
            Some(Sink::Cgi)
        );
        // Back-pressure: while the child has not taken what it was given, leave the rest in the
        // connection buffer (and the socket).
        if is_cgi && !self.cgi_accepts(slot) {
            return false;
        }
        let conn = self.conns[slot as usize].as_mut().unwrap();
        // An empty body (Content-Length: 0) is complete without a byte arriving.
        let empty = conn.body.as_ref().is_some_and(|b| {
            b.remaining == Some(0) || (b.remaining.is_none() && b.chunked.is_none())
        });
        if conn.buf.is_empty() && !empty {
            if conn.eof {
                // The client went away mid-body: nothing is stored (the temp file is dropped).
                self.close(slot);
            }
            return false;
        }
        conn.deadline = now + timeout;
        let br = conn.body.as_mut().unwrap();
        let mut decoded = Vec::new();
        let (consumed, done, data): (usize, bool, &[u8]) = match (&mut br.chunked, br.remaining) {
            (Some(dec), _) => match dec.decode(&conn.buf, &mut decoded) {
                Ok((n, done)) => (n, done, &decoded[..]),
                Err(e) => {
                    crate::info!("conn {slot}: bad chunked body: {}", e.description());
                    self.body_error(slot, e.status());
                    return false;
                }
            },
            (None, Some(rem)) => {
                let n = (rem as usize).min(conn.buf.len());
                (n, n as u64 == rem, &conn.buf[..n])
            }
            (None, None) => (0, true, &[][..]),
        };
        br.received += data.len() as u64;
        if let Some(rem) = br.remaining.as_mut() {
            *rem -= data.len() as u64;
        }
        if br.limit != 0 && br.received > br.limit {
            // Streaming past client_max_body_size (a chunked body): 413, and nothing is kept.
            self.body_error(slot, 413);
            return false;
        }
        let mut for_cgi = None;
        let sink_err = match &mut br.sink {
            Sink::Discard => None,
            Sink::Cgi => {
                for_cgi = Some(data.to_vec());
                None
            }
            Sink::Upload { file, .. } => file.write_all(data).err().map(|e| {
                crate::error!("conn {slot}: upload write: {e}");
                if e.raw_os_error() == Some(libc::ENOSPC) {
                    507
                } else {
                    500
                }
            }),
            Sink::Multipart(m) => m.feed(data).err(),
        };
        conn.buf.drain(..consumed);
        if let Some(code) = sink_err {
            self.body_error(slot, code);
            return false;
        }
        if let Some(bytes) = for_cgi {
            self.cgi_push_body(slot, &bytes, done);
            if done {
                let conn = self.conn(slot);
                conn.body = None;
                conn.phase = Phase::Respond;
                // The CGI's stdout drives the response from here.
                self.pump(slot);
                return true;
            }
            return !self.conn(slot).buf.is_empty();
        }
        if !done {
            return false;
        }
        let conn = self.conn(slot);
        let br = conn.body.take().unwrap();
        conn.phase = Phase::Respond;
        match br.sink {
            Sink::Discard => {
                let r = conn.pending.take();
                match r {
                    Some(r) => self.send_reply(slot, *r),
                    None => self.respond_error(slot, 500, &[]),
                }
            }
            Sink::Cgi => {}
            Sink::Multipart(mut m) => match m.finish() {
                Ok(()) => {
                    let r = self.multipart_reply(slot, &m);
                    self.send_reply(slot, r);
                }
                Err(code) => self.respond_error(slot, code, &[]),
            },
            Sink::Upload {
                file,
                dest,
                replace,
            } => self.finish_upload(slot, file, dest, replace),
        }
        true
    }

    /// The body cannot be taken (bad framing, too large, storage failed): answer `code` and
    /// close; whatever was stored is dropped (temp files removed, a CGI killed).
    fn body_error(&mut self, slot: u32, code: u16) {
        self.cgi_detach(slot, true);
        let conn = self.conn(slot);
        conn.body = None;
        conn.close_after = true;
        conn.pending = None;
        conn.phase = Phase::Respond;
        self.respond_error(slot, code, &[]);
    }

    fn route_multipart(
        &mut self,
        loc: &Location,
        path: &str,
        boundary: String,
        expect: bool,
    ) -> Route {
        let Some(dir) = respond::upload_target(loc, path) else {
            return Route::Error(404, Vec::new());
        };
        if !dir.is_dir() {
            return Route::Error(409, Vec::new());
        }
        let mut uri_dir = path.to_string();
        if !uri_dir.ends_with('/') {
            uri_dir.push('/');
        }
        let sink = MultipartSink {
            parser: crate::handlers::multipart::MultipartParser::new(&boundary),
            dir,
            uri_dir,
            current: None,
            saved: Vec::new(),
        };
        Route::Body(Sink::Multipart(Box::new(sink)), expect)
    }

    fn multipart_reply(&mut self, slot: u32, m: &MultipartSink) -> Reply {
        let date = self.date_now;
        let info = self.conn(slot).req.as_ref().unwrap();
        let cx = Ctx::plain(&date, info.keep_alive_10);
        let mut items = String::new();
        for name in &m.saved {
            let href = format!(
                "{}{}",
                m.uri_dir,
                crate::http::path::percent_encode_path(name)
            );
            items.push_str(&format!(
                "<li><a href=\"{}\">{}</a></li>\n",
                crate::http::path::html_escape(&href),
                crate::http::path::html_escape(name)
            ));
        }
        let body = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Uploaded</title>\
             <link rel=\"stylesheet\" href=\"/static/style.css\"></head>\n<body><main>\
             <h1>{} file(s) saved</h1>\n<ul id=\"saved\">\n{items}</ul>\
             <p><a href=\"/files.html\">All files</a> · <a href=\"/upload.html\">Upload more</a></p></main></body></html>\n",
            m.saved.len()
        );
        let first = m
            .saved
            .first()
            .map(|n| format!("{}{}", m.uri_dir, crate::http::path::percent_encode_path(n)));
        let extra: Vec<(&str, &[u8])> = first
            .as_deref()
            .map(|l| vec![("Location", l.as_bytes())])
            .unwrap_or_default();
        respond::full(
            201,
            "text/html; charset=utf-8",
            body.into_bytes(),
            &extra,
            &cx,
        )
    }

    fn finish_upload(
        &mut self,
        slot: u32,
        file: crate::handlers::atomic_file::AtomicFile,
        dest: PathBuf,
        replace: bool,
    ) {
        match file.commit(&dest, replace) {
            Ok((landed, created)) => {
                let cx_date = self.date_now;
                let info = self.conn(slot).req.as_ref().unwrap();
                let cx = Ctx::plain(&cx_date, info.keep_alive_10);
                let r = if replace {
                    if created {
                        respond::full(
                            201,
                            "text/plain; charset=utf-8",
                            b"Created\n".to_vec(),
                            &[],
                            &cx,
                        )
                    } else {
                        respond::full(204, "text/plain", Vec::new(), &[], &cx)
                    }
                } else {
                    let base = info.upload_uri.clone().unwrap_or_default();
                    let name = landed
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let dir = base.rsplit_once('/').map(|x| x.0).unwrap_or("");
                    let uri = format!("{dir}/{}", crate::http::path::percent_encode_path(&name));
                    let body = format!(
                        "<!doctype html><title>201 Created</title><p>Saved <a href=\"{0}\">{1}</a></p>\n",
                        crate::http::path::html_escape(&uri),
                        crate::http::path::html_escape(&name)
                    );
                    respond::full(
                        201,
                        "text/html; charset=utf-8",
                        body.into_bytes(),
                        &[("Location", uri.as_bytes())],
                        &cx,
                    )
                };
                self.send_reply(slot, r);
            }
            Err(e) => {
                crate::error!("upload into {}: {e}", dest.display());
                self.respond_error(slot, 500, &[]);
            }
        }
    }

    fn error_reply(&mut self, slot: u32, code: u16, extra: &[(String, String)]) -> Reply {
        let date = self.date_now;
        let cfg = match self.conn(slot).req.as_ref() {
            Some(r) => r.cfg.clone(),
            None => self.cfg.clone(),
        };
        let conn = self.conn(slot);
        let close = conn.close_after || conn.req.as_ref().is_none_or(|r| !r.keep_alive);
        let (server_idx, path, head_only, ka10) = match &conn.req {
            Some(r) => (r.server, r.path.clone(), r.head_only, r.keep_alive_10),
            None => (
                cfg.servers
                    .iter()
                    .position(|s| std::ptr::eq(s, cfg.select_server(conn.local, None)))
                    .unwrap_or(0),
                "/".to_string(),
                false,
                false,
            ),
        };
        let server = &cfg.servers[server_idx];
        let loc = server.location_for(&path);
        let cx = Ctx {
            head_only,
            close,
            ..Ctx::plain(&date, ka10 && !close)
        };
        let extra: Vec<(&str, &[u8])> = extra
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        respond::error(code, server, loc, &extra, &cx)
    }

    /// Answer with an error status; framing errors (no request) close the connection.
    fn respond_error(&mut self, slot: u32, code: u16, extra: &[(String, String)]) {
        let r = self.error_reply(slot, code, extra);
        self.send_reply(slot, r);
    }

    /// A framing or protocol error: answer and close; nothing after it is read (no desync).
    fn fail(&mut self, slot: u32, code: u16) {
        let conn = self.conn(slot);
        conn.close_after = true;
        conn.body = None;
        conn.phase = Phase::Respond;
        conn.buf.clear();
        conn.out.clear();
        self.respond_error(slot, code, &[]);
    }

    fn send_reply(&mut self, slot: u32, r: Reply) {
        let conn = self.conns[slot as usize].as_mut().expect("live connection");
        conn.phase = Phase::Respond;
        let status = r.status();
        let keep = conn.req.as_ref().is_some_and(|q| q.keep_alive);
        if !keep {
            conn.close_after = true;
        }
        match r {
            Reply::Full { head, body, .. } => {
                conn.note_reply(status, body.as_slice().len() as u64);
                conn.queue(&mut self.out_pool, SendBuf { head, body });
                // The whole response is queued: the request is done, and the next pipelined
                // one may be parsed while this one is still being sent.
                self.request_done(slot);
            }
            Reply::File {
                head,
                file,
                offset,
                len,
                ..
            } => {
                conn.note_reply(status, len);
                conn.out.push_back(SendBuf {
                    head,
                    body: SendBody::Empty,
                });
                conn.stream = Some(Box::new(FileStream {
                    fd: file.into_raw_fd(),
                    offset,
                    left: len,
                    reading: false,
                    spare: None,
                }));
            }
        }
        self.pump(slot);
    }

    /// Keep one send in flight. Responses queued back to back (pipelined requests) go out in
    /// one write. When everything is out: finish a streamed request, or close if asked to.
    fn pump(&mut self, slot: u32) {
        let now = self.now;
        let keepalive = self.cfg.timeouts.keepalive;
        let conn = self.conns[slot as usize].as_mut().expect("live connection");
        if conn.sending || conn.closing {
            return;
        }
        if conn.out.is_empty() {
            if let Some(st) = conn.stream.as_mut() {
                if !st.reading && self.be.sendfile_native() {
                    // The kernel copies file to socket (sendfile): no user-space copy at all.
                    st.reading = true;
                    conn.sending = true;
                    // In pieces, so that send_timeout measures progress, not the whole file.
                    let len = st.left.min(SENDFILE_PIECE) as usize;
                    let (file, offset, gen) = (st.fd, st.offset, conn.gen);
                    crate::trace!("conn {slot} task file: sendfile {len} B at {offset}");
                    let fd = conn.fd;
                    self.be.submit(
                        token(gen, slot, K_SENDFILE),
                        Op::SendFile {
                            fd,
                            file,
                            offset,
                            len,
                        },
                    );
                } else if !st.reading {
                    // The next chunk of a large file, read through the backend into the
                    // connection's reused chunk buffer.
                    st.reading = true;
                    let n = st.left.min(respond::CHUNK as u64) as usize;
                    let mut buf = st.spare.take().unwrap_or_default();
                    buf.clear();
                    buf.reserve_exact(n);
                    let (fd, offset, gen) = (st.fd, st.offset, conn.gen);
                    crate::trace!("conn {slot} task file: read {n} B at {offset}");
                    self.be.submit(
                        token(gen, slot, K_FILE_READ),
                        Op::Read {
                            fd,
                            buf,
                            offset: Some(offset),
                        },
                    );
                }
                return;
            }
        }
        let conn = self.conn(slot);
        if let Some(mut buf) = conn.out.pop_front() {
            // Coalesce small queued responses into one send (pipelining: one write for many).
            while let Some(next) = conn.out.front() {
                if buf.len() + next.len() > 64 * 1024 {
                    break;
                }
                let next = conn.out.pop_front().unwrap();
                let body = std::mem::take(&mut buf.body);
                buf.head.extend_from_slice(body.as_slice());
                buf.head.extend_from_slice(&next.head);
                buf.head.extend_from_slice(next.body.as_slice());
            }
            conn.sending = true;
            let (fd, gen) = (conn.fd, conn.gen);
            self.be
                .submit(token(gen, slot, K_SEND), Op::Send { fd, buf });
            return;
        }
        if conn.close_when_flushed {
            self.linger(slot);
        } else if conn.cgi.is_some() {
            self.cgi_kick_stdout(slot);
        } else if conn.phase == Phase::Respond && conn.stream.is_none() {
            self.finish_request(slot);
        } else if conn.phase == Phase::Head && conn.buf.is_empty() {
            conn.deadline = now + keepalive;
            // Idle between requests: the send queue's memory goes back to the loop's pool.
            let out = std::mem::take(&mut conn.out);
            if out.capacity() > 0 && out.capacity() <= 64 && self.out_pool.len() < POOL_MAX {
                self.out_pool.push(out);
            }
        }
    }

    /// A whole file went out by sendfile.
    fn on_sendfile(&mut self, slot: u32, c: Completion) {
        let send_timeout = self.cfg.timeouts.send;
        let now = self.now;
        let conn = self.conn(slot);
        conn.sending = false;
        if let Err(e) = c.result {
            crate::trace!("conn {slot} task file: sendfile: {e}");
            self.close(slot);
            return;
        }
        conn.deadline = now + send_timeout;
        let sent = c.result.unwrap_or(0) as u64;
        if let Some(st) = conn.stream.as_mut() {
            st.reading = false;
            st.offset += sent;
            st.left = st.left.saturating_sub(sent);
            if st.left == 0 {
                let fd = st.fd;
                conn.stream = None;
                let gen = conn.gen;
                self.be
                    .submit(token(gen, slot, K_FILE_CLOSE), Op::Close { fd });
            }
        }
        self.pump(slot);
    }

    /// A chunk of a streamed file arrived from the backend: send it.
    fn on_file_read(&mut self, slot: u32, c: Completion) {
        let conn = self.conn(slot);
        let Buf::Vec(buf) = c.buf else {
            return;
        };
        let Some(st) = conn.stream.as_mut() else {
            return;
        };
        st.reading = false;
        crate::trace!("conn {slot} task file: read {:?}", c.result);
        let n = match c.result {
            Ok(n) if n > 0 => n,
            Ok(_) | Err(_) => {
                crate::error!("conn {slot}: file read: {:?}", c.result.err());
                self.close(slot);
                return;
            }
        };
        st.offset += n as u64;
        st.left = st.left.saturating_sub(n as u64);
        let finished = (st.left == 0).then_some(st.fd);
        if finished.is_some() {
            conn.stream = None;
        }
        conn.out.push_back(SendBuf {
            head: Vec::new(),
            body: SendBody::Owned(buf),
        });
        let gen = conn.gen;
        if let Some(fd) = finished {
            self.be
                .submit(token(gen, slot, K_FILE_CLOSE), Op::Close { fd });
        }
        self.pump(slot);
    }

    /// The request is answered (its response queued): count and log it, then either get ready
    /// for the next request on this connection (returns true) or arrange to close once the
    /// queued bytes are out.
    fn request_done(&mut self, slot: u32) -> bool {
        let now = self.now;
        self.requests += 1;
        self.access_log(slot);
        let keepalive = self.cfg.timeouts.keepalive;
        let max = self.cfg.keepalive_requests;
        let stopping = self.stopping;
        let conn = self.conns[slot as usize].as_mut().expect("live connection");
        conn.served += 1;
        conn.req = None;
        if conn.close_after || conn.served >= max || stopping || (conn.eof && conn.buf.is_empty()) {
            conn.close_when_flushed = true;
            conn.phase = Phase::Respond;
            return false;
        }
        conn.phase = Phase::Head;
        conn.deadline = now + keepalive;
        if conn.buf.is_empty() {
            // An idle connection keeps no buffer; the loop keeps a few for the next requests.
            let buf = std::mem::take(&mut conn.buf);
            if buf.capacity() > 0 && buf.capacity() <= 64 * 1024 && self.buf_pool.len() < POOL_MAX {
                self.buf_pool.push(buf);
            }
        }
        if !conn.recv_live && !conn.eof {
            conn.recv_live = true;
            let (fd, gen) = (conn.fd, conn.gen);
            self.be.submit(token(gen, slot, K_RECV), Op::Recv { fd });
        }
        true
    }

    /// A streamed response (large file, CGI) has been sent whole.
    fn finish_request(&mut self, slot: u32) {
        if self.request_done(slot) {
            self.advance(slot);
        } else {
            self.pump(slot);
        }
    }

    /// The `status` page (like nginx's stub_status, plus the backend's counters).
    fn status_page(&self, json: bool) -> (&'static str, String) {
        let (mut reading, mut writing, mut idle) = (0, 0, 0);
        for c in self.conns.iter().flatten() {
            match c.phase {
                Phase::Head if c.buf.is_empty() => idle += 1,
                Phase::Head | Phase::Body => reading += 1,
                Phase::Respond => writing += 1,
            }
        }
        let st = self.be.stats();
        let ops: Vec<(&str, u64)> = backends::OpKind::ALL
            .iter()
            .map(|k| (k.name(), st.submitted[*k as usize]))
            .collect();
        if json {
            let ops_json: Vec<String> = ops.iter().map(|(n, v)| format!("\"{n}\":{v}")).collect();
            let body = format!(
                "{{\"backend\":\"{}\",\"connections\":{{\"active\":{},\"reading\":{},\"writing\":{},\"idle\":{}}},\"accepted\":{},\"requests\":{},\"ops_submitted\":{{{}}},\"kernel_entries\":{},\"waits\":{},\"completions\":{},\"completions_per_wait\":{:.3},\"max_completions_per_wait\":{},\"recv_buffers_in_use\":{},\"recv_buffers_total\":{}}}\n",
                self.be.name(), self.active, reading, writing, idle, self.accepted, self.requests,
                ops_json.join(","), st.enters, st.waits, st.completions, st.completions_per_wait(),
                st.max_per_wait, st.bufs_in_use, st.bufs_total
            );
            ("application/json", body)
        } else {
            let ops_txt: Vec<String> = ops.iter().map(|(n, v)| format!("{n}={v}")).collect();
            let body = format!(
                "Active connections: {}\nReading: {} Writing: {} Waiting: {}\naccepted {} requests {}\nbackend {}: ops submitted {}\nkernel entries {} waits {} completions {} per wait {:.3} (max {})\nrecv buffers in use {} of {}\n",
                self.active, reading, writing, idle, self.accepted, self.requests, self.be.name(),
                ops_txt.join(" "), st.enters, st.waits, st.completions, st.completions_per_wait(),
                st.max_per_wait, st.bufs_in_use, st.bufs_total
            );
            ("text/plain; charset=utf-8", body)
        }
    }

    fn access_log(&mut self, slot: u32) {
        let Some(mut f) = self.access.take() else {
            return;
        };
        let conn = self.conn(slot);
        if let Some(r) = &conn.req {
            let secs = crate::http::date::unix_secs(SystemTime::now());
            let line = format!(
                "{} - - [{}] \"{}\" {} {} \"{}\" \"{}\"\n",
                backends::util::peer_addr(conn.fd).map_or(conn.local.ip(), |a| a.ip()),
                crate::log::access_time(secs),
                r.line.escape_debug(),
                r.status,
                r.sent_bytes,
                if r.referer.is_empty() {
                    "-"
                } else {
                    &r.referer
                },
                if r.user_agent.is_empty() {
                    "-"
                } else {
                    &r.user_agent
                },
            );
            use std::io::Write;
            let _ = f.write_all(line.as_bytes());
        }
        self.access = Some(f);
    }
}

struct RequestExtras {
    range: Option<Vec<u8>>,
    inm: Option<Vec<u8>>,
    ims: Option<Vec<u8>>,
    expect_continue: bool,
    content_type: Option<String>,
    cgi: Option<cgi::CgiPlan>,
}

enum Route {
    Reply(Reply),
    Error(u16, Vec<(String, String)>),
    /// Read the body into this sink (sending 100 Continue first when asked).
    Body(Sink, bool),
    /// Run a CGI (its body, if any, streams to the child's stdin).
    Cgi(cgi::CgiPlan, bool),
}

/// A multipart/form-data upload in progress.
struct MultipartSink {
    parser: crate::handlers::multipart::MultipartParser,
    dir: PathBuf,
    uri_dir: String,
    /// The file part being written and its sanitised name.
    current: Option<(crate::handlers::atomic_file::AtomicFile, String)>,
    saved: Vec<String>,
}

impl MultipartSink {
    fn feed(&mut self, data: &[u8]) -> Result<(), u16> {
        use crate::handlers::multipart::{sanitize_filename, Part};
        let MultipartSink {
            parser,
            dir,
            current,
            saved,
            ..
        } = self;
        parser
            .feed(data, &mut |part| {
                match part {
                    Part::Start { filename, .. } => {
                        // Only file parts are stored; plain form fields are skipped.
                        *current = match filename.as_deref().and_then(sanitize_filename) {
                            Some(name) => Some((
                                crate::handlers::atomic_file::AtomicFile::create_in(dir)?,
                                name,
                            )),
                            None => None,
                        };
                    }
                    Part::Data(d) => {
                        if let Some((f, _)) = current.as_mut() {
                            f.write_all(d)?;
                        }
                    }
                    Part::End => {
                        if let Some((f, name)) = current.take() {
                            let (landed, _) = f.commit(&dir.join(&name), false)?;
                            let landed = landed
                                .file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or(name);
                            saved.push(landed);
                        }
                    }
                }
                Ok(())
            })
            .map_err(|e| e.status())
    }

    fn finish(&mut self) -> Result<(), u16> {
        self.parser.finish().map_err(|e| e.status())
    }
}

impl Conn {
    /// Remember what is being answered (for the access log; a request that could not even be
    /// parsed has no record and is not logged).
    fn note_reply(&mut self, status: u16, body_bytes: u64) {
        if let Some(r) = self.req.as_mut() {
            r.status = status;
            r.sent_bytes = body_bytes;
        }
    }

    /// Queue bytes to send (the queue's memory comes from `pool` when it has none).
    fn queue(&mut self, pool: &mut Vec<VecDeque<SendBuf>>, buf: SendBuf) {
        if self.out.capacity() == 0 {
            if let Some(q) = pool.pop() {
                self.out = q;
            }
        }
        self.out.push_back(buf);
    }

    fn pending_reply(&mut self, r: Reply) {
        self.pending = Some(Box::new(r));
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// How many event loops `workers` asks for.
pub fn worker_count(w: crate::config::Workers) -> usize {
    match w {
        crate::config::Workers::Auto => std::thread::available_parallelism().map_or(1, |n| n.get()),
        crate::config::Workers::Count(n) => n.max(1),
    }
}

/// Serve the configuration in `control` until it says stop. With `workers N > 1`, each of N
/// threads runs its own loop with its own backend and its own `SO_REUSEPORT` listeners, and the
/// kernel spreads connections over them.
pub fn serve(control: Arc<Control>, opts: &RunOptions) -> io::Result<()> {
    let cfg = control.config();
    let kind = opts.backend.unwrap_or(match cfg.backend {
        crate::config::BackendChoice::Auto => backends::Kind::Auto,
        crate::config::BackendChoice::Uring => backends::Kind::Uring,
        crate::config::BackendChoice::Epoll => backends::Kind::Epoll,
        crate::config::BackendChoice::Kqueue => backends::Kind::Kqueue,
    });
    let n = worker_count(cfg.workers);
    backends::util::raise_nofile_limit();
    // Bind everything before any loop starts, so an unbindable address is reported at once.
    let mut sets = Vec::new();
    for _ in 0..n {
        sets.push(bind(&cfg, n > 1)?);
    }
    let mut handles = Vec::new();
    for (i, listeners) in sets.into_iter().enumerate() {
        let control = control.clone();
        let cfg = cfg.clone();
        let run = move || -> io::Result<()> {
            // The backend is opened on the thread that uses it (io_uring SINGLE_ISSUER).
            let opened = backends::open(kind, &backends::Options::default())
                .map_err(|e| io::Error::new(e.kind(), format!("backend {kind:?}: {e}")))?;
            if let Some(why) = &opened.fallback {
                crate::notice!("{why}");
            }
            control
                .wakers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(opened.backend.waker());
            let mut lp = Loop::new(cfg, opened.backend, listeners, control)?;
            crate::notice!(
                "webserv {} worker {i} started, backend {}",
                env!("CARGO_PKG_VERSION"),
                lp.backend_name()
            );
            lp.run()
        };
        if n == 1 {
            return run();
        }
        handles.push(
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(run)?,
        );
    }
    let mut result = Ok(());
    for h in handles {
        let r = h
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("worker panicked")));
        if let Err(e) = r {
            // One worker failing stops the others: the server is not half up.
            control.stop();
            result = Err(e);
        }
    }
    result
}

#[cfg(test)]
mod size_probe {
    /// Memory per idle connection is a product promise (README, bench): keep the per-connection
    /// record small; request state lives in boxes that idle connections do not hold.
    #[test]
    fn idle_connection_record_stays_small() {
        let conn = std::mem::size_of::<super::Conn>();
        eprintln!("Conn {conn} B");
        assert!(conn <= 192, "Conn grew to {conn} bytes");
    }
}
