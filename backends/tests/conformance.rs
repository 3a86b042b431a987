//! The Backend conformance suite: every test body runs against every backend this machine has
//! (io_uring — multishot and single-shot — and epoll on Linux, plus kqueue through libkqueue with
//! the `libkqueue` feature; kqueue on the BSDs), and prints which ones it ran on. Tests talk only
//! to 127.0.0.1.
//!
//! `BACKENDS_ONLY=kqueue` (a space- or comma-separated list of uring, epoll, kqueue) narrows a
//! run; naming a backend this machine lacks fails rather than running nothing.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use backends::{Backend, Body, Buf, Completion, FileSend, Kind, Op, Options, SendBuf, WAKE_TOKEN};

/// The backends to run on: each available kind, plus io_uring forced to single-shot ops.
fn variants(base: &Options) -> Vec<(String, Options, Kind)> {
    let mut v = Vec::new();
    for kind in selected() {
        v.push((format!("{kind:?}").to_lowercase(), base.clone(), kind));
        if kind == Kind::Uring {
            let mut o = base.clone();
            o.force_single_shot = true;
            v.push(("uring-single-shot".into(), o, kind));
        }
    }
    v
}

/// The available backends, narrowed by `BACKENDS_ONLY` when it is set.
fn selected() -> Vec<Kind> {
    let all = backends::available();
    let Ok(only) = std::env::var("BACKENDS_ONLY") else {
        return all;
    };
    let mut v = Vec::new();
    for name in only.split([' ', ',']).filter(|s| !s.is_empty()) {
        let kind: Kind = name.parse().expect("BACKENDS_ONLY: a backend name");
        assert!(
            all.contains(&kind),
            "BACKENDS_ONLY names {name}, which is not available here ({all:?})"
        );
        v.push(kind);
    }
    v
}

/// How long one test body may run on one backend before the watchdog names it and aborts the
/// whole binary: a wait that never returns would otherwise hang the suite silently (every
/// body here finishes in seconds; the slowest, 10,000 connections, in well under a minute).
const HANG_LIMIT: Duration = Duration::from_secs(150);

/// The test bodies running now, by a serial number: (test, backend, started).
type Running = std::sync::Mutex<HashMap<u64, (String, String, Instant)>>;

fn running() -> &'static Running {
    static RUNNING: std::sync::OnceLock<Running> = std::sync::OnceLock::new();
    RUNNING.get_or_init(|| {
        std::thread::spawn(|| loop {
            std::thread::sleep(Duration::from_secs(1));
            let map = running().lock().unwrap_or_else(|e| e.into_inner());
            if let Some((test, backend, since)) =
                map.values().find(|(_, _, t)| t.elapsed() > HANG_LIMIT)
            {
                // Straight to fd 2: libtest captures only the print macros.
                let _ = writeln!(
                    std::io::stderr(),
                    "HANG: {test} on {backend} still running after {:?}; aborting the suite",
                    since.elapsed()
                );
                std::process::abort();
            }
        });
        std::sync::Mutex::new(HashMap::new())
    })
}

/// Registers one test body with the watchdog while it is alive.
struct Watched(u64);

impl Watched {
    fn new(test: &str, backend: &str) -> Watched {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        running()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, (test.into(), backend.into(), Instant::now()));
        Watched(id)
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        running()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.0);
    }
}

fn each_backend_with(test: &str, opts: Options, f: impl Fn(&mut dyn Backend)) {
    let mut ran = Vec::new();
    for (name, o, kind) in variants(&opts) {
        let _watch = Watched::new(test, &name);
        let mut b = backends::open(kind, &o).expect("open backend").backend;
        f(&mut *b);
        ran.push(name);
    }
    assert!(!ran.is_empty());
    println!("{test}: ran on {}", ran.join(", "));
}

fn each_backend(test: &str, f: impl Fn(&mut dyn Backend)) {
    each_backend_with(test, Options::default(), f)
}

/// [`each_backend`] with io_uring splicing `Op::SendFile` (`FileSend::Splice`), plus io_uring
/// with its default way (`FileSend::Sendfile`, 48 KiB rounds) and with the splice's fallback
/// when it gets no pipe, chosen by the options so no test depends on the environment.
fn each_file_send(test: &str, f: impl Fn(&mut dyn Backend)) {
    let splice = Options {
        uring_file_send: Some(FileSend::Splice),
        ..Options::default()
    };
    each_backend_with(test, splice, &f);
    if !selected().contains(&Kind::Uring) {
        return;
    }
    let sendfile = Options {
        uring_file_send: Some(FileSend::Sendfile),
        ..Options::default()
    };
    // Splice without a pipe to be had: every op takes the sendfile(2) fallback.
    let no_pipes = Options {
        uring_file_send: Some(FileSend::Splice),
        uring_no_pipes: true,
        ..Options::default()
    };
    for (name, o) in [
        ("uring-sendfile", sendfile),
        ("uring-splice-no-pipe", no_pipes),
    ] {
        let _watch = Watched::new(test, name);
        let mut b = backends::open(Kind::Uring, &o)
            .expect("open backend")
            .backend;
        f(&mut *b);
        println!("{test}: ran on {name}");
    }
}

/// Wait until `done` says so, feeding every completion to `on`; panics after `limit`.
fn run(
    b: &mut dyn Backend,
    limit: Duration,
    mut on: impl FnMut(&mut dyn Backend, Completion),
    done: impl Fn() -> bool,
) {
    let end = Instant::now() + limit;
    let mut out = Vec::new();
    while !done() {
        if Instant::now() >= end {
            eprintln!("stats at timeout: {:?}", b.stats());
            panic!("timed out waiting for completions on {}", b.name());
        }
        b.wait(&mut out, Some(Duration::from_millis(200))).unwrap();
        for c in out.drain(..) {
            on(b, c);
        }
    }
}

/// Collect completions until `n` arrived (or fail after 10 s).
fn collect(b: &mut dyn Backend, n: usize) -> Vec<Completion> {
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    while got.len() < n {
        assert!(
            Instant::now() < end,
            "only {} of {n} completions on {}",
            got.len(),
            b.name()
        );
        b.wait(&mut got, Some(Duration::from_millis(200))).unwrap();
    }
    got
}

/// A non-blocking listener on an ephemeral loopback port, with a backlog deep enough that
/// bursts of connects are not slowed by SYN retransmits.
fn listener() -> TcpListener {
    let addr = "127.0.0.1:0".parse().unwrap();
    TcpListener::from(backends::util::listen(addr, 8192, false).unwrap())
}

/// Accept exactly one connection through the backend.
fn accept_one(b: &mut dyn Backend, l: &TcpListener) -> RawFd {
    b.submit(1, Op::Accept { fd: l.as_raw_fd() });
    let c = collect(b, 1).pop().unwrap();
    assert_eq!(c.token, 1);
    let fd = c.result.unwrap() as RawFd;
    b.submit(2, Op::Cancel { target: 1 });
    let mut got = collect(b, 2);
    got.retain(|c| c.token == 1);
    assert!(got.iter().all(|c| !c.more));
    fd
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

fn rss_bytes() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = s
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit pointer.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        // Root (CI) may raise the hard limit too; elsewhere settle for the hard limit.
        let want = lim.rlim_max.max(65_536);
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: want,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            return want;
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    lim.rlim_cur
}

/// Receive through `b` until the end of stream, releasing each buffer; returns the bytes.
/// Every completion must be a successful one of `token`, and the EOF (0 bytes) its last.
fn recv_to_eof(b: &mut dyn Backend, token: u64, limit: Duration) -> Vec<u8> {
    let mut data = Vec::new();
    let eof = std::cell::Cell::new(false);
    run(
        b,
        limit,
        |b, c| {
            assert_eq!(c.token, token);
            let n = c.result.expect("recv");
            if let Buf::Recv(buf) = c.buf {
                data.extend_from_slice(&buf);
                b.release(buf);
            }
            if n == 0 {
                assert!(!c.more, "EOF must end the multishot recv");
                eof.set(true);
            }
        },
        || eof.get(),
    );
    data
}

/// Join a peer thread that reads until EOF after the backend closed its end, driving the
/// backend meanwhile as an event loop would. On io_uring with DEFER_TASKRUN the kernel may
/// still hold the socket after the Close completed (a request's last reference is dropped by
/// task work that runs only inside a later `io_uring_enter`), so the peer's EOF can depend on
/// the next `wait`: a test that stops calling `wait` and blocks on the peer would hang.
/// Any completion arriving meanwhile is a failure; so is waiting longer than 30 s.
fn join_driving<T>(b: &mut dyn Backend, peer: std::thread::JoinHandle<T>) -> T {
    let end = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while !peer.is_finished() {
        assert!(
            Instant::now() < end,
            "the peer never finished on {}",
            b.name()
        );
        b.wait(&mut out, Some(Duration::from_millis(20))).unwrap();
        assert!(out.is_empty(), "unexpected completions: {out:?}");
    }
    peer.join().unwrap()
}

/// A client thread that connects to `addr`, writes `payload` and shuts down its write side
/// while it reads everything back; joins to what it read.
fn echo_client(addr: std::net::SocketAddr, payload: Vec<u8>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let mut w = s.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            w.write_all(&payload).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        });
        let mut back = Vec::new();
        s.read_to_end(&mut back).unwrap();
        writer.join().unwrap();
        back
    })
}

/// An echo server over the backend: one connection, recv → send back, in order, with at most
/// one send in flight; closes after the peer's EOF once everything is echoed.
fn echo_connection(b: &mut dyn Backend, fd: RawFd, limit: Duration) -> usize {
    const RECV: u64 = 10;
    const SEND: u64 = 11;
    const CLOSE: u64 = 12;
    b.submit(RECV, Op::Recv { fd });
    let mut pending: Vec<u8> = Vec::new();
    let mut sending = false;
    let eof = std::cell::Cell::new(false);
    let closed = std::cell::Cell::new(false);
    let mut echoed = 0;
    run(
        b,
        limit,
        |b, c| match c.token {
            RECV => {
                let n = c.result.expect("recv");
                if let Buf::Recv(buf) = c.buf {
                    pending.extend_from_slice(&buf);
                    b.release(buf);
                }
                if n == 0 {
                    assert!(!c.more);
                    eof.set(true);
                }
                if !sending && !pending.is_empty() {
                    let head = std::mem::take(&mut pending);
                    b.submit(
                        SEND,
                        Op::Send {
                            fd,
                            buf: SendBuf {
                                head,
                                body: Body::Empty,
                            },
                        },
                    );
                    sending = true;
                }
                if eof.get() && !sending {
                    b.submit(CLOSE, Op::Close { fd });
                }
            }
            SEND => {
                let n = c.result.expect("send");
                echoed += n;
                let Buf::Send(sb) = c.buf else {
                    panic!("send buffer not returned")
                };
                assert_eq!(sb.len(), n, "send completed short");
                sending = false;
                if !pending.is_empty() {
                    let head = std::mem::take(&mut pending);
                    b.submit(
                        SEND,
                        Op::Send {
                            fd,
                            buf: SendBuf {
                                head,
                                body: Body::Empty,
                            },
                        },
                    );
                    sending = true;
                } else if eof.get() {
                    b.submit(CLOSE, Op::Close { fd });
                }
            }
            CLOSE => {
                c.result.expect("close");
                closed.set(true);
            }
            t => panic!("unexpected token {t}"),
        },
        || closed.get(),
    );
    echoed
}

#[test]
fn accept_burst_of_1000() {
    raise_nofile();
    each_backend("accept_burst_of_1000", |b| {
        let l = listener();
        let addr = l.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            (0..1000)
                .map(|_| TcpStream::connect(addr).unwrap())
                .collect::<Vec<_>>()
        });
        b.submit(1, Op::Accept { fd: l.as_raw_fd() });
        let fds = std::cell::RefCell::new(Vec::new());
        run(
            b,
            Duration::from_secs(20),
            |_, c| {
                assert_eq!(c.token, 1);
                assert!(c.more, "multishot accept ended: {:?}", c.result);
                fds.borrow_mut().push(c.result.unwrap() as RawFd);
            },
            || fds.borrow().len() == 1000,
        );
        let fds = fds.into_inner();
        let conns = client.join().unwrap();
        assert_eq!(conns.len(), 1000);
        let mut uniq = fds.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), 1000, "an fd was reported twice");
        for (i, fd) in fds.iter().enumerate() {
            b.submit(100 + i as u64, Op::Close { fd: *fd });
        }
        b.submit(2, Op::Cancel { target: 1 });
        let got = collect(b, 1002);
        assert!(got
            .iter()
            .filter(|c| c.token >= 100)
            .all(|c| c.result.is_ok()));
    });
}

#[test]
fn echo_payloads_0_to_16mib() {
    each_backend("echo_payloads_0_to_16mib", |b| {
        for size in [0usize, 1, 100, 4096, 65_536, 1 << 20, 16 << 20] {
            let l = listener();
            let addr = l.local_addr().unwrap();
            let data = pattern(size);
            let client = echo_client(addr, data.clone());
            let fd = accept_one(b, &l);
            eprintln!("echo {} B on {}", size, b.name());
            let echoed = echo_connection(b, fd, Duration::from_secs(60));
            let back = join_driving(b, client);
            assert_eq!(echoed, size);
            assert!(back == data, "echo of {size} B differs");
            assert_eq!(b.stats().bufs_in_use, 0);
        }
    });
}

/// A client thread that connects to `addr`, reads `slow` pieces of up to `chunk` bytes 2 ms
/// apart (so the sender meets a full socket), then everything else until EOF, and returns it.
fn reader(
    addr: std::net::SocketAddr,
    slow: usize,
    chunk: usize,
) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut got = Vec::new();
        let mut piece = vec![0u8; chunk];
        for _ in 0..slow {
            let n = s.read(&mut piece).unwrap();
            got.extend_from_slice(&piece[..n]);
            std::thread::sleep(Duration::from_millis(2));
        }
        s.read_to_end(&mut got).unwrap();
        got
    })
}

fn set_sndbuf(fd: RawFd, size: libc::c_int) {
    // SAFETY: setsockopt with a pointer to a live c_int.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0);
}

#[test]
fn short_writes_complete_whole() {
    each_backend("short_writes_complete_whole", |b| {
        let l = listener();
        let addr = l.local_addr().unwrap();
        let head = pattern(1000);
        let body = pattern(4 << 20);
        let mut expect = head.clone();
        expect.extend_from_slice(&body);
        // Read slowly at first so the sender sees many short writes.
        let client = reader(addr, 50, 1024);
        let fd = accept_one(b, &l);
        set_sndbuf(fd, 4096);
        let shared = std::sync::Arc::<[u8]>::from(body);
        b.submit(
            5,
            Op::Send {
                fd,
                buf: SendBuf {
                    head,
                    body: Body::Shared(backends::Shared::new(shared)),
                },
            },
        );
        let c = collect(b, 1).pop().unwrap();
        assert_eq!(c.result.unwrap(), 1000 + (4 << 20));
        assert!(matches!(c.buf, Buf::Send(_)));
        b.submit(6, Op::Close { fd });
        assert!(collect(b, 1)[0].result.is_ok());
        assert!(join_driving(b, client) == expect);
    });
}

/// Sends of every shape back to back on a full socket: head and body small enough to go as
/// one copied piece (io_uring's `IORING_OP_SEND` path), head only, body only, and pieces too
/// large to copy, with shared (`Arc`) and local (`Rc`) bodies; each comes back whole, and the
/// reader gets every byte in order.
#[test]
fn small_and_large_sends_in_a_row_complete_whole() {
    each_backend("small_and_large_sends_in_a_row_complete_whole", |b| {
        let l = listener();
        let addr = l.local_addr().unwrap();
        let client = reader(addr, 200, 512);
        let fd = accept_one(b, &l);
        set_sndbuf(fd, 4096);
        let mut expect = Vec::new();
        let shapes = [
            (300, 1500),
            (0, 700),
            (900, 0),
            (1, 2047),
            (2000, 48),
            (1500, 9000),
        ];
        for i in 0..240u64 {
            let (h, n) = shapes[i as usize % shapes.len()];
            let mut data = pattern(h + n);
            data.rotate_left(i as usize % 251);
            expect.extend_from_slice(&data);
            // Each shape with both kinds of shared body: across threads (Arc), one thread's (Rc).
            let body = if (i / shapes.len() as u64).is_multiple_of(2) {
                Body::Shared(backends::Shared::new(std::sync::Arc::from(&data[h..])))
            } else {
                Body::Local(backends::Local::new(std::rc::Rc::from(&data[h..])))
            };
            let buf = SendBuf {
                head: data[..h].to_vec(),
                body,
            };
            b.submit(100 + i, Op::Send { fd, buf });
            let c = collect(b, 1).pop().unwrap();
            assert_eq!(c.token, 100 + i);
            assert_eq!(c.result.unwrap(), h + n, "send {i} ({h} + {n} B)");
        }
        b.submit(6, Op::Close { fd });
        assert!(collect(b, 1)[0].result.is_ok());
        let got = join_driving(b, client);
        assert_eq!(got.len(), expect.len());
        assert!(
            got == expect,
            "the reader's bytes differ from what was sent"
        );
    });
}

#[test]
fn peer_reset_mid_recv() {
    each_backend("peer_reset_mid_recv", |b| {
        let l = listener();
        let addr = l.local_addr().unwrap();
        let s = TcpStream::connect(addr).unwrap();
        let fd = accept_one(b, &l);
        b.submit(3, Op::Recv { fd });
        (&s).write_all(b"partial request").unwrap();
        let lg = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt with a pointer to a live linger struct.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&lg as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0);
        std::thread::sleep(Duration::from_millis(50));
        drop(s); // RST: linger 0
        let mut data = Vec::new();
        let ended = std::cell::Cell::new(None);
        run(
            b,
            Duration::from_secs(5),
            |b, c| {
                if let Buf::Recv(buf) = c.buf {
                    data.extend_from_slice(&buf);
                    b.release(buf);
                }
                if !c.more {
                    ended.set(Some(c.result.map_err(|e| e.raw_os_error())));
                }
            },
            || ended.get().is_some(),
        );
        // Linux may drop unread data on RST; what arrived must be a prefix, and the op must end.
        assert!(b"partial request".starts_with(&data));
        let end = ended.get().unwrap();
        assert!(
            end == Err(Some(libc::ECONNRESET)) || end == Ok(0),
            "recv ended with {end:?}"
        );
        b.submit(4, Op::Close { fd });
        assert!(collect(b, 1)[0].result.is_ok());
        assert_eq!(b.stats().bufs_in_use, 0);
    });
}

#[test]
fn half_close_mid_recv() {
    each_backend("half_close_mid_recv", |b| {
        let l = listener();
        let addr = l.local_addr().unwrap();
        let mut s = TcpStream::connect(addr).unwrap();
        let fd = accept_one(b, &l);
        b.submit(3, Op::Recv { fd });
        s.write_all(b"abc").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let data = recv_to_eof(b, 3, Duration::from_secs(5));
        assert_eq!(data, b"abc");
        // The other direction still works after the peer's half-close.
        let buf = SendBuf {
            head: b"bye".to_vec(),
            body: Body::Empty,
        };
        b.submit(4, Op::Send { fd, buf });
        assert_eq!(collect(b, 1)[0].result.as_ref().unwrap(), &3);
        b.submit(5, Op::Close { fd });
        collect(b, 1);
        let mut back = String::new();
        s.read_to_string(&mut back).unwrap();
        assert_eq!(back, "bye");
    });
}

/// Data and the peer's FIN reach a socket whose receive is already waiting: one readiness
/// event reports both, the first read returns only the data (short), and the EOF must still be
/// delivered — the backend may not take that short read to mean "drained" (kqueue: `EV_EOF` on
/// the event; epoll: `EPOLLRDHUP`).
#[test]
fn eof_behind_data_on_a_waiting_recv() {
    each_backend("eof_behind_data_on_a_waiting_recv", |b| {
        let l = listener();
        let addr = l.local_addr().unwrap();
        let mut s = TcpStream::connect(addr).unwrap();
        let fd = accept_one(b, &l);
        b.submit(3, Op::Recv { fd });
        // Let the receive start and find nothing, so it waits for readiness.
        let mut early = Vec::new();
        b.wait(&mut early, Some(Duration::from_millis(50))).unwrap();
        assert!(early.is_empty(), "nothing was sent yet: {early:?}");
        // On loopback both segments are queued before the backend's next wait returns.
        s.write_all(b"abc").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut data = Vec::new();
        let eof = std::cell::Cell::new(false);
        run(
            b,
            Duration::from_secs(5),
            |b, c| {
                assert_eq!(c.token, 3);
                let n = c.result.unwrap();
                if let Buf::Recv(buf) = c.buf {
                    data.extend_from_slice(&buf);
                    b.release(buf);
                }
                if n == 0 {
                    eof.set(true);
                }
            },
            || eof.get(),
        );
        assert_eq!(data, b"abc");
        b.submit(5, Op::Close { fd });
        collect(b, 1);
    });
}

/// A connected Unix socket pair: our end as a raw fd for the backend, the peer as a stream.
/// Both non-blocking, as the sockets the server hands its backend are (and so that a test can
/// fill the peer's direction without blocking).
fn nonblocking_pair() -> (RawFd, UnixStream) {
    let (ours, peer) = UnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    peer.set_nonblocking(true).unwrap();
    (ours.into_raw_fd(), peer)
}

/// Close `fds` through the backend (tokens from `first` up) and wait for every close; the
/// receives still armed on them end with the close, and their buffers go back.
fn close_all(b: &mut dyn Backend, fds: &[RawFd], first: u64) {
    for (i, &fd) in fds.iter().enumerate() {
        b.submit(first + i as u64, Op::Close { fd });
    }
    let closed = std::cell::Cell::new(0);
    run(
        b,
        Duration::from_secs(10),
        |b, c| {
            if let Buf::Recv(buf) = c.buf {
                b.release(buf);
            }
            closed.set(closed.get() + usize::from(c.token >= first));
        },
        || closed.get() == fds.len(),
    );
}

/// More receives become ready at once than one wait hands back (the readiness backends bound
/// a wait's completions): every one still completes, with no new edge from its peer.
#[test]
fn many_ready_receives_all_complete() {
    each_backend("many_ready_receives_all_complete", |b| {
        let n = 300;
        let pairs: Vec<(RawFd, UnixStream)> = (0..n).map(|_| nonblocking_pair()).collect();
        for (i, (fd, _)) in pairs.iter().enumerate() {
            b.submit(i as u64 + 1, Op::Recv { fd: *fd });
        }
        // Let every receive start and find nothing; then all peers write before the next wait.
        let mut early = Vec::new();
        b.wait(&mut early, Some(Duration::from_millis(50))).unwrap();
        assert!(early.is_empty(), "nothing was sent yet: {early:?}");
        for (i, (_, peer)) in pairs.iter().enumerate() {
            (&*peer).write_all(&[i as u8]).unwrap();
        }
        let mut seen = vec![false; n];
        let (mut count, mut waits, mut largest) = (0, 0, 0);
        let end = Instant::now() + Duration::from_secs(10);
        let mut out = Vec::new();
        while count < n {
            assert!(
                Instant::now() < end,
                "{}: only {count} of {n} receives completed",
                b.name()
            );
            b.wait(&mut out, Some(Duration::from_millis(200))).unwrap();
            waits += 1;
            largest = largest.max(out.len());
            for c in out.drain(..) {
                let i = (c.token - 1) as usize;
                assert_eq!(
                    c.result.as_ref().ok(),
                    Some(&1),
                    "{}: receive {i}",
                    b.name()
                );
                let Buf::Recv(buf) = c.buf else {
                    panic!("{}: receive {i} without its buffer", b.name());
                };
                assert_eq!(&buf[..], &[i as u8], "{}: receive {i}'s byte", b.name());
                b.release(buf);
                assert!(!seen[i], "{}: receive {i} completed twice", b.name());
                seen[i] = true;
                count += 1;
            }
        }
        println!(
            "{}: {n} receives in {waits} waits, at most {largest} in one",
            b.name()
        );
        let fds: Vec<RawFd> = pairs.iter().map(|(fd, _)| *fd).collect();
        close_all(b, &fds, 1000);
    });
}

#[test]
fn close_while_recv_pending() {
    each_backend("close_while_recv_pending", |b| {
        let l = listener();
        let addr = l.local_addr().unwrap();
        let _idle = TcpStream::connect(addr).unwrap();
        let fd = accept_one(b, &l);
        b.submit(3, Op::Recv { fd });
        // Let the recv reach the kernel before closing.
        let mut out = Vec::new();
        b.wait(&mut out, Some(Duration::from_millis(20))).unwrap();
        assert!(out.is_empty(), "idle recv completed: {:?}", out);
        b.submit(4, Op::Close { fd });
        let got = collect(b, 2);
        let order: Vec<u64> = got.iter().map(|c| c.token).collect();
        assert_eq!(order, vec![3, 4], "the recv must complete before the close");
        assert_eq!(
            got[0].result.as_ref().unwrap_err().raw_os_error(),
            Some(libc::ECANCELED)
        );
        assert!(!got[0].more);
        assert!(got[1].result.is_ok());
        // The fd number may now be reused, and a new connection on it works normally.
        let mut s2 = TcpStream::connect(addr).unwrap();
        let fd2 = accept_one(b, &l);
        b.submit(5, Op::Recv { fd: fd2 });
        s2.write_all(b"x").unwrap();
        let c = collect(b, 1).pop().unwrap();
        assert_eq!(c.token, 5);
        if let Buf::Recv(buf) = c.buf {
            assert_eq!(&buf[..], b"x");
            b.release(buf);
        } else {
            panic!("no data");
        }
        b.submit(6, Op::Close { fd: fd2 });
        assert_eq!(collect(b, 2).len(), 2);
    });
}

#[test]
fn cancel_by_token() {
    each_backend("cancel_by_token", |b| {
        b.submit(
            1,
            Op::Timeout {
                deadline: Instant::now() + Duration::from_secs(60),
            },
        );
        let mut out = Vec::new();
        b.wait(&mut out, Some(Duration::from_millis(10))).unwrap();
        assert!(out.is_empty());
        b.submit(2, Op::Cancel { target: 1 });
        let got = collect(b, 2);
        let by: HashMap<u64, &Completion> = got.iter().map(|c| (c.token, c)).collect();
        let t = by[&1].result.as_ref().unwrap_err();
        assert_eq!(t.raw_os_error(), Some(libc::ECANCELED));
        assert!(by[&2].result.is_ok());
        // Nothing by that name any more.
        b.submit(3, Op::Cancel { target: 1 });
        let c = collect(b, 1).pop().unwrap();
        assert_eq!(c.result.unwrap_err().raw_os_error(), Some(libc::ENOENT));
        // Cancel a pending recv.
        let l = listener();
        let _s = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let fd = accept_one(b, &l);
        b.submit(4, Op::Recv { fd });
        b.wait(&mut out, Some(Duration::from_millis(10))).unwrap();
        b.submit(5, Op::Cancel { target: 4 });
        let got = collect(b, 2);
        let r = got.iter().find(|c| c.token == 4).unwrap();
        assert_eq!(
            r.result.as_ref().unwrap_err().raw_os_error(),
            Some(libc::ECANCELED)
        );
        assert!(!r.more);
        b.submit(6, Op::Close { fd });
        collect(b, 1);
    });
}

#[test]
fn timeouts_fire_in_deadline_order() {
    each_backend("timeouts_fire_in_deadline_order", |b| {
        let now = Instant::now();
        for (token, ms) in [(1u64, 50u64), (2, 10), (3, 30), (4, 20), (5, 40)] {
            b.submit(
                token,
                Op::Timeout {
                    deadline: now + Duration::from_millis(ms),
                },
            );
        }
        let got = collect(b, 5);
        let order: Vec<u64> = got.iter().map(|c| c.token).collect();
        assert_eq!(order, vec![2, 4, 3, 5, 1]);
        assert!(got.iter().all(|c| c.result.as_ref().is_ok_and(|&n| n == 0)));
        assert!(now.elapsed() >= Duration::from_millis(50));
    });
}

/// A timeout whose deadline has already passed completes at once (kqueue: a zero-length
/// `EVFILT_TIMER` must still fire).
#[test]
fn past_deadline_fires() {
    each_backend("past_deadline_fires", |b| {
        let past = Instant::now() - Duration::from_millis(5);
        b.submit(1, Op::Timeout { deadline: past });
        b.submit(
            2,
            Op::Timeout {
                deadline: Instant::now(),
            },
        );
        let got = collect(b, 2);
        let mut tokens: Vec<u64> = got.iter().map(|c| c.token).collect();
        tokens.sort();
        assert_eq!(tokens, vec![1, 2]);
        assert!(got.iter().all(|c| c.result.as_ref().is_ok_and(|&n| n == 0)));
    });
}

#[test]
fn hundred_children_each_reported_once() {
    use std::os::unix::process::ExitStatusExt;
    each_backend("hundred_children_each_reported_once", |b| {
        let mut pids = HashMap::new();
        for i in 0..100u64 {
            // The backend reaps the child (that is what is tested), not `Child::wait`.
            #[allow(clippy::zombie_processes)]
            let child = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("sleep 0.0{}; exit {}", i % 5, i % 7))
                .spawn()
                .unwrap();
            let pid = child.id();
            pids.insert(1000 + i, (pid, (i % 7) as i32));
            b.submit(1000 + i, Op::ChildExit { pid });
        }
        let got = collect(b, 100);
        let mut seen = std::collections::HashSet::new();
        for c in &got {
            assert!(seen.insert(c.token), "child {} reported twice", c.token);
            let (pid, code) = pids[&c.token];
            let status =
                std::process::ExitStatus::from_raw(c.result.as_ref().copied().unwrap() as i32);
            assert_eq!(status.code(), Some(code), "pid {pid}");
            // Reaped: no zombie left behind.
            assert!(
                !std::path::Path::new(&format!("/proc/{pid}")).exists(),
                "zombie {pid}"
            );
        }
        let mut out = Vec::new();
        b.wait(&mut out, Some(Duration::from_millis(50))).unwrap();
        assert!(out.is_empty(), "a child was reported again");
    });
}

fn pipe() -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two fds into the array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    for fd in fds {
        // SAFETY: fcntl on fds we own.
        unsafe {
            let fl = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
    }
    (fds[0], fds[1])
}

#[test]
fn pipes_both_ways_with_eof() {
    each_backend("pipes_both_ways_with_eof", |b| {
        let data = pattern(3 << 20);
        let (r, w) = pipe();
        b.submit(
            1,
            Op::Write {
                fd: w,
                buf: data.clone(),
                offset: None,
            },
        );
        b.submit(
            2,
            Op::Read {
                fd: r,
                buf: Vec::with_capacity(65536),
                offset: None,
            },
        );
        let mut got = Vec::new();
        let write_done = std::cell::Cell::new(false);
        let eof = std::cell::Cell::new(false);
        run(
            b,
            Duration::from_secs(20),
            |b, c| match c.token {
                1 => {
                    assert_eq!(c.result.unwrap(), data.len());
                    write_done.set(true);
                    b.submit(3, Op::Close { fd: w });
                }
                2 => {
                    let n = c.result.unwrap();
                    let Buf::Vec(mut v) = c.buf else { panic!() };
                    assert_eq!(v.len(), n);
                    got.extend_from_slice(&v);
                    if n == 0 {
                        eof.set(true);
                    } else {
                        v.clear();
                        b.submit(
                            2,
                            Op::Read {
                                fd: r,
                                buf: v,
                                offset: None,
                            },
                        );
                    }
                }
                3 => assert!(c.result.is_ok()),
                t => panic!("token {t}"),
            },
            || write_done.get() && eof.get(),
        );
        assert!(got == data);
        b.submit(4, Op::Close { fd: r });
        collect(b, 1);
    });
}

#[test]
fn file_read_write_at_offsets() {
    each_backend("file_read_write_at_offsets", |b| {
        let path = std::env::temp_dir().join(format!("wsb-{}-{}", std::process::id(), b.name()));
        let f = std::fs::File::create_new(&path)
            .or_else(|_| std::fs::File::create(&path))
            .unwrap();
        let fd = f.into_raw_fd();
        b.submit(
            1,
            Op::Write {
                fd,
                buf: b"world".to_vec(),
                offset: Some(6),
            },
        );
        collect(b, 1);
        b.submit(
            2,
            Op::Write {
                fd,
                buf: b"hello ".to_vec(),
                offset: Some(0),
            },
        );
        collect(b, 1);
        b.submit(3, Op::Close { fd });
        collect(b, 1);
        let fd = std::fs::File::open(&path).unwrap().into_raw_fd();
        b.submit(
            4,
            Op::Read {
                fd,
                buf: Vec::with_capacity(5),
                offset: Some(6),
            },
        );
        let c = collect(b, 1).pop().unwrap();
        assert_eq!(c.result.unwrap(), 5);
        let Buf::Vec(v) = c.buf else { panic!() };
        assert_eq!(v, b"world");
        b.submit(5, Op::Close { fd });
        collect(b, 1);
        std::fs::remove_file(&path).unwrap();
    });
}

#[test]
fn tiny_pool_runs_dry_without_losing_data() {
    let opts = Options {
        buf_count: 2,
        buf_size: 256,
        ..Options::default()
    };
    each_backend_with("tiny_pool_runs_dry_without_losing_data", opts, |b| {
        let l = listener();
        let addr = l.local_addr().unwrap();
        let data = pattern(64 * 1024);
        let sent = data.clone();
        let client = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&sent).unwrap();
            s.shutdown(Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        });
        let fd = accept_one(b, &l);
        b.submit(3, Op::Recv { fd });
        // Hold every buffer: the pool runs dry and receives must pause, not fail.
        let mut held = Vec::new();
        let mut got = Vec::new();
        let end = Instant::now() + Duration::from_secs(5);
        while held.len() < 2 {
            assert!(Instant::now() < end);
            let mut out = Vec::new();
            b.wait(&mut out, Some(Duration::from_millis(100))).unwrap();
            for c in out {
                assert!(
                    c.more && c.result.is_ok(),
                    "recv failed while dry: {:?}",
                    c.result
                );
                if let Buf::Recv(buf) = c.buf {
                    held.push(buf);
                }
            }
        }
        assert_eq!(b.stats().bufs_in_use, 2);
        let mut out = Vec::new();
        b.wait(&mut out, Some(Duration::from_millis(100))).unwrap();
        assert!(out.is_empty(), "a recv completed with the pool dry");
        for buf in held.drain(..) {
            got.extend_from_slice(&buf);
            b.release(buf);
        }
        got.extend(recv_to_eof(b, 3, Duration::from_secs(10)));
        assert!(got == data, "data lost or reordered while the pool was dry");
        b.submit(4, Op::Close { fd });
        collect(b, 1);
        join_driving(b, client);
    });
}

#[test]
fn ten_thousand_idle_connections_hold_no_buffers() {
    // The client side lives in a child process, so this process needs one fd per connection.
    let limit = raise_nofile();
    let n: usize = 10_000;
    assert!(
        limit as usize >= n + 200,
        "RLIMIT_NOFILE too low ({limit}) to hold {n} connections"
    );
    each_backend("ten_thousand_idle_connections_hold_no_buffers", |b| {
        let l = listener();
        let addr = l.local_addr().unwrap();
        // A Python client opens the connections and holds them until its stdin closes.
        let script = format!(
            "import resource, socket, sys\n\
             s, h = resource.getrlimit(resource.RLIMIT_NOFILE)\n\
             resource.setrlimit(resource.RLIMIT_NOFILE, (h, h))\n\
             c = [socket.create_connection(('127.0.0.1', {})) for _ in range({n})]\n\
             print('connected', flush=True)\n\
             sys.stdin.read()\n",
            addr.port()
        );
        let mut client = std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("python3 for the idle-connection client");
        let rss0 = rss_bytes();
        b.submit(1, Op::Accept { fd: l.as_raw_fd() });
        let fds = std::cell::RefCell::new(Vec::new());
        run(
            b,
            Duration::from_secs(120),
            |b, c| {
                if c.token == 1 {
                    let fd = c.result.unwrap() as RawFd;
                    fds.borrow_mut().push(fd);
                    b.submit(10_000_000 + fd as u64, Op::Recv { fd });
                } else {
                    panic!("idle connection produced {:?}", c.result);
                }
            },
            || fds.borrow().len() == n,
        );
        let fds = fds.into_inner();
        let mut out = Vec::new();
        b.wait(&mut out, Some(Duration::from_millis(200))).unwrap();
        assert!(out.is_empty());
        let rss1 = rss_bytes();
        let stats = b.stats();
        assert_eq!(
            stats.bufs_in_use, 0,
            "idle connections hold receive buffers"
        );
        println!(
            "{}: {n} idle connections with recv armed: bufs in use {}, RSS growth {:.0} B/connection",
            b.name(),
            stats.bufs_in_use,
            rss1.saturating_sub(rss0) as f64 / n as f64
        );
        for &fd in &fds {
            b.submit(20_000_000 + fd as u64, Op::Close { fd });
        }
        b.submit(2, Op::Cancel { target: 1 });
        collect(b, 2 * n + 2);
        drop(client.stdin.take());
        assert!(client.wait().unwrap().success(), "idle client failed");
    });
}

#[test]
fn waker_interrupts_wait() {
    each_backend("waker_interrupts_wait", |b| {
        let w = b.waker();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            w.wake().unwrap();
        });
        let start = Instant::now();
        let got = collect(b, 1);
        assert_eq!(got[0].token, WAKE_TOKEN);
        assert!(start.elapsed() < Duration::from_secs(5));
        t.join().unwrap();
    });
}

// ---- Issue 17: the contract under races. Each test names the defect it pins down. ----

fn errno_of(r: &std::io::Result<usize>) -> Option<i32> {
    r.as_ref().err().and_then(|e| e.raw_os_error())
}

/// A connected pair: our end accepted through the backend, the peer a plain stream.
fn connected(b: &mut dyn Backend) -> (TcpListener, TcpStream, RawFd) {
    let l = listener();
    let s = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let fd = accept_one(b, &l);
    (l, s, fd)
}

/// Wait until `target` has had its last completion (`more == false`) and the completion of
/// `cancel` arrived; returns (the target's last result, the cancel's result). Releases any
/// received buffers and closes accepted fds on the way. Then checks nothing more comes for
/// `target`: its token is free again (invariants 5 and 8).
fn target_and_cancel(
    b: &mut dyn Backend,
    target: u64,
    cancel: u64,
) -> (std::io::Result<usize>, std::io::Result<usize>) {
    let last = std::cell::RefCell::new(None);
    let cancelled = std::cell::RefCell::new(None);
    run(
        b,
        Duration::from_secs(5),
        |b, c| {
            if let Buf::Recv(buf) = c.buf {
                b.release(buf);
            }
            if c.token == target && !c.more {
                assert!(last.borrow().is_none(), "two last completions");
                *last.borrow_mut() = Some(c.result);
            } else if c.token == cancel {
                *cancelled.borrow_mut() = Some(c.result);
            }
        },
        || last.borrow().is_some() && cancelled.borrow().is_some(),
    );
    let mut out = Vec::new();
    b.wait(&mut out, Some(Duration::from_millis(100))).unwrap();
    assert!(
        out.iter().all(|c| c.token != target),
        "a completion of the cancelled token after its last one"
    );
    (last.into_inner().unwrap(), cancelled.into_inner().unwrap())
}

/// Defect 1: a large send and a close of its fd in one batch. The send goes out partly, the
/// kernel's cancel finds nothing, and the rest of the send must not be restarted behind the
/// close's back: the send completes, then the close, and the peer reads a prefix, then EOF.
#[test]
fn close_in_the_batch_of_a_partial_send_completes() {
    each_backend("close_in_the_batch_of_a_partial_send_completes", |b| {
        let (_l, mut s, fd) = connected(b);
        set_sndbuf(fd, 4096);
        let data = pattern(4 << 20);
        let buf = SendBuf {
            head: data.clone(),
            body: Body::Empty,
        };
        b.submit(5, Op::Send { fd, buf });
        b.submit(6, Op::Close { fd });
        let got = collect(b, 2);
        let order: Vec<u64> = got.iter().map(|c| c.token).collect();
        assert_eq!(order, vec![5, 6], "the send must complete before the close");
        assert!(
            matches!(got[0].buf, Buf::Send(_)),
            "send buffer not returned"
        );
        let r = &got[0].result;
        assert!(
            errno_of(r) == Some(libc::ECANCELED) || r.as_ref().ok() == Some(&data.len()),
            "send ended with {r:?}"
        );
        assert!(got[1].result.is_ok(), "close: {:?}", got[1].result);
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut back = Vec::new();
        s.read_to_end(&mut back).expect("the peer sees EOF");
        assert!(
            data.starts_with(&back),
            "the peer read bytes that were not sent"
        );
    });
}

/// Defect 1 (cancel): a send and a cancel of it in one batch: the cancel covers the rest of
/// the send the backend would restart, so it answers Ok and the send ends with ECANCELED.
#[test]
fn cancel_in_the_batch_of_a_partial_send_cancels_it() {
    each_backend("cancel_in_the_batch_of_a_partial_send_cancels_it", |b| {
        let (_l, _s, fd) = connected(b);
        set_sndbuf(fd, 4096);
        let buf = SendBuf {
            head: pattern(4 << 20),
            body: Body::Empty,
        };
        b.submit(5, Op::Send { fd, buf });
        b.submit(6, Op::Cancel { target: 5 });
        let (send, cancel) = target_and_cancel(b, 5, 6);
        assert_eq!(errno_of(&send), Some(libc::ECANCELED), "send: {send:?}");
        assert!(cancel.is_ok(), "cancel: {cancel:?}");
        b.submit(7, Op::Close { fd });
        assert!(collect(b, 1)[0].result.is_ok());
    });
}

/// Defect 1 (restarts of single-shot accept and poll-then-recv): an accept with a connection
/// waiting, and a recv with data waiting, each cancelled in the batch that starts it. Both
/// deliver what was ready and then end; nothing is restarted after the cancel.
#[test]
fn cancel_in_the_batch_of_a_ready_accept_or_recv_ends_it() {
    each_backend(
        "cancel_in_the_batch_of_a_ready_accept_or_recv_ends_it",
        |b| {
            let l = listener();
            let _c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            b.submit(1, Op::Accept { fd: l.as_raw_fd() });
            b.submit(2, Op::Cancel { target: 1 });
            let (accept, cancel) = target_and_cancel(b, 1, 2);
            // Neither op ends by itself: the cancel finds it (Ok) and it ends with ECANCELED.
            assert_eq!(
                errno_of(&accept),
                Some(libc::ECANCELED),
                "accept: {accept:?}"
            );
            assert!(cancel.is_ok(), "cancel: {cancel:?}");

            let (_l, mut s, fd) = connected(b);
            s.write_all(b"ready").unwrap();
            std::thread::sleep(Duration::from_millis(20));
            b.submit(3, Op::Recv { fd });
            b.submit(4, Op::Cancel { target: 3 });
            let (recv, cancel) = target_and_cancel(b, 3, 4);
            assert_eq!(errno_of(&recv), Some(libc::ECANCELED), "recv: {recv:?}");
            assert!(cancel.is_ok(), "cancel: {cancel:?}");
            b.submit(5, Op::Close { fd });
            assert!(collect(b, 1)[0].result.is_ok());
            assert_eq!(b.stats().bufs_in_use, 0);
        },
    );
}

/// Defect 2: a peer's FIN seen while nothing was queued on the fd is remembered when a new
/// op is queued: the new recv gets the data, then EOF.
#[test]
fn fin_seen_while_idle_is_not_forgotten() {
    each_backend("fin_seen_while_idle_is_not_forgotten", |b| {
        let (_l, mut s, fd) = connected(b);
        b.submit(3, Op::Recv { fd });
        let mut out = Vec::new();
        b.wait(&mut out, Some(Duration::from_millis(20))).unwrap();
        assert!(out.is_empty());
        b.submit(4, Op::Cancel { target: 3 });
        assert_eq!(collect(b, 2).len(), 2);
        s.write_all(b"abc").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        // The backend takes in the readiness news while nothing is queued on the fd.
        b.wait(&mut out, Some(Duration::from_millis(30))).unwrap();
        assert!(out.is_empty(), "{out:?}");
        b.submit(5, Op::Recv { fd });
        let data = recv_to_eof(b, 5, Duration::from_secs(5));
        assert_eq!(data, b"abc");
        b.submit(6, Op::Close { fd });
        assert!(collect(b, 1)[0].result.is_ok());
    });
}

/// Defect 3: keys hold at the largest generations and across their wrap: child exits, timers
/// and fd ops all still reach their op.
#[test]
fn keys_hold_at_the_largest_generations() {
    let opts = Options {
        first_generation: u32::MAX - 3,
        ..Options::default()
    };
    each_backend_with("keys_hold_at_the_largest_generations", opts, |b| {
        use std::os::unix::process::ExitStatusExt;
        let (_l, mut s, fd) = connected(b);
        for round in 0..8u64 {
            #[allow(clippy::zombie_processes)] // the backend reaps it
            let child = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("exit {round}"))
                .spawn()
                .unwrap();
            let pid = child.id();
            b.submit(100 + round, Op::ChildExit { pid });
            b.submit(
                200 + round,
                Op::Timeout {
                    deadline: Instant::now() + Duration::from_millis(5),
                },
            );
            b.submit(300 + round, Op::Recv { fd });
            s.write_all(b"x").unwrap();
            let mut got: HashMap<u64, Completion> = HashMap::new();
            let end = Instant::now() + Duration::from_secs(5);
            while got.len() < 3 {
                assert!(
                    Instant::now() < end,
                    "{}: round {round}: only {:?}",
                    b.name(),
                    got.keys()
                );
                let mut out = Vec::new();
                b.wait(&mut out, Some(Duration::from_millis(100))).unwrap();
                for mut c in out {
                    if let Buf::Recv(buf) = std::mem::take(&mut c.buf) {
                        assert_eq!(&buf[..], b"x");
                        b.release(buf);
                    }
                    got.insert(c.token, c);
                }
            }
            let status = got[&(100 + round)].result.as_ref().copied().unwrap() as i32;
            assert_eq!(
                std::process::ExitStatus::from_raw(status).code(),
                Some(round as i32)
            );
            assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
            assert!(got[&(200 + round)].result.is_ok());
            b.submit(
                400 + round,
                Op::Cancel {
                    target: 300 + round,
                },
            );
            collect(b, 2);
        }
        b.submit(9, Op::Close { fd });
        assert!(collect(b, 1)[0].result.is_ok());
    });
}

/// Defect 4: timers whose deadlines have passed still complete in deadline order.
#[test]
fn expired_timers_fire_in_deadline_order() {
    each_backend("expired_timers_fire_in_deadline_order", |b| {
        let now = Instant::now();
        let ms = Duration::from_millis;
        for (token, deadline) in [
            (1u64, now - ms(10)),
            (5, now + ms(30)),
            (2, now - ms(40)),
            (3, now - ms(20)),
            (4, now - ms(30)),
        ] {
            b.submit(token, Op::Timeout { deadline });
        }
        let got = collect(b, 5);
        let order: Vec<u64> = got.iter().map(|c| c.token).collect();
        assert_eq!(order, vec![2, 4, 3, 1, 5]);
        assert!(got.iter().all(|c| c.result.is_ok()));
    });
}

/// Defect 5: on io_uring without EXT_ARG (emulated), a wait that returns early leaves no
/// internal timeout behind to hold up the next, shorter wait.
#[test]
fn early_return_leaves_no_stale_wait_timeout() {
    let opts = Options {
        assume_no_ext_arg: true,
        ..Options::default()
    };
    each_backend_with("early_return_leaves_no_stale_wait_timeout", opts, |b| {
        b.submit(
            1,
            Op::Timeout {
                deadline: Instant::now() + Duration::from_millis(20),
            },
        );
        let mut out = Vec::new();
        while out.is_empty() {
            b.wait(&mut out, Some(Duration::from_secs(3))).unwrap();
        }
        assert_eq!(out[0].token, 1);
        out.clear();
        let start = Instant::now();
        b.wait(&mut out, Some(Duration::from_millis(100))).unwrap();
        assert!(out.is_empty());
        // 100 ms asked; a stale 3 s timeout would hold this wait for ~2.9 s.
        assert!(
            start.elapsed() < Duration::from_millis(1500),
            "a 100 ms wait took {:?}",
            start.elapsed()
        );
    });
}

/// Defect 6: a receive buffer released into a backend it did not come from (another pool,
/// another size) is refused, never given to the kernel: the backend's own buffers, data and
/// counts stay right.
#[test]
fn foreign_recv_buffer_is_refused() {
    each_backend("foreign_recv_buffer_is_refused", |b| {
        let small = Options {
            buf_count: 2,
            buf_size: 64,
            ..Options::default()
        };
        let kind = *backends::available().last().unwrap();
        let mut other = backends::open(kind, &small).unwrap().backend;
        let (_l2, mut s2, fd2) = connected(&mut *other);
        other.submit(3, Op::Recv { fd: fd2 });
        s2.write_all(b"foreign").unwrap();
        let mut c = collect(&mut *other, 1).pop().unwrap();
        let Buf::Recv(foreign) = std::mem::take(&mut c.buf) else {
            panic!("no foreign buffer")
        };

        let (_l, mut s, fd) = connected(b);
        b.submit(3, Op::Recv { fd });
        s.write_all(b"x").unwrap();
        let mut c = collect(b, 1).pop().unwrap();
        let Buf::Recv(own) = std::mem::take(&mut c.buf) else {
            panic!("no data")
        };
        assert_eq!(own.id(), foreign.id(), "the test wants clashing ids");
        b.release(foreign);
        assert_eq!(
            b.stats().bufs_in_use,
            1,
            "a foreign release changed the count"
        );
        let data = pattern(256 * 1024);
        let sent = data.clone();
        let writer = std::thread::spawn(move || {
            s.write_all(&sent).unwrap();
            s.shutdown(Shutdown::Write).unwrap();
            s
        });
        let got = recv_to_eof(b, 3, Duration::from_secs(10));
        assert!(got == data, "data corrupted after a foreign release");
        b.release(own);
        assert_eq!(b.stats().bufs_in_use, 0);
        b.submit(4, Op::Close { fd });
        collect(b, 1);
        drop(writer.join().unwrap());
        other.submit(4, Op::Close { fd: fd2 });
        collect(&mut *other, 2);
    });
}

/// Defect 7: negative and out-of-range fds complete with EBADF (no panic, no huge table).
#[test]
fn invalid_fds_complete_with_ebadf() {
    each_backend("invalid_fds_complete_with_ebadf", |b| {
        let (_l, _s, sock) = connected(b);
        let mut token = 100;
        for fd in [-1, -7, i32::MAX - 1, 1 << 29] {
            let ops = vec![
                Op::Accept { fd },
                Op::Recv { fd },
                Op::Send {
                    fd,
                    buf: SendBuf {
                        head: b"x".to_vec(),
                        body: Body::Empty,
                    },
                },
                Op::Read {
                    fd,
                    buf: Vec::with_capacity(8),
                    offset: None,
                },
                Op::Write {
                    fd,
                    buf: b"x".to_vec(),
                    offset: Some(0),
                },
                Op::SendFile {
                    fd,
                    file: 0,
                    offset: 0,
                    len: 10,
                },
                Op::SendFile {
                    fd: sock,
                    file: fd,
                    offset: 0,
                    len: 10,
                },
                Op::Close { fd },
            ];
            let n = ops.len();
            for op in ops {
                token += 1;
                b.submit(token, op);
            }
            for c in collect(b, n) {
                assert_eq!(
                    errno_of(&c.result),
                    Some(libc::EBADF),
                    "fd {fd} token {}: {:?}",
                    c.token,
                    c.result
                );
                assert!(!c.more);
            }
        }
        b.submit(1, Op::Close { fd: sock });
        assert!(collect(b, 1)[0].result.is_ok());
    });
}

fn temp_file_with(name: &str, data: &[u8]) -> (std::path::PathBuf, RawFd) {
    let path = std::env::temp_dir().join(format!("wsb-{}-{name}", std::process::id()));
    std::fs::write(&path, data).unwrap();
    let fd = std::fs::File::open(&path).unwrap().into_raw_fd();
    (path, fd)
}

/// Suspected: the file of a SendFile is in use by it. A close of the file while the send
/// waits for the socket cancels the send first, so the file's number is never reused under a
/// running sendfile.
#[test]
fn close_of_a_sendfile_source_waits_for_the_sendfile() {
    each_file_send("close_of_a_sendfile_source_waits_for_the_sendfile", |b| {
        let data = pattern(8 << 20);
        let (path, file) = temp_file_with(&format!("sf-{}", b.name()), &data);
        let (_l, mut s, sock) = connected(b);
        set_sndbuf(sock, 4096);
        b.submit(
            1,
            Op::SendFile {
                fd: sock,
                file,
                offset: 0,
                len: data.len(),
            },
        );
        let mut out = Vec::new();
        b.wait(&mut out, Some(Duration::from_millis(50))).unwrap();
        assert!(out.is_empty(), "{out:?}");
        b.submit(2, Op::Close { fd: file });
        let got = collect(b, 2);
        let order: Vec<u64> = got.iter().map(|c| c.token).collect();
        assert_eq!(order, vec![1, 2], "the file closed under its sendfile");
        assert_eq!(errno_of(&got[0].result), Some(libc::ECANCELED));
        assert!(got[1].result.is_ok());
        b.submit(3, Op::Close { fd: sock });
        collect(b, 1);
        let mut back = Vec::new();
        s.read_to_end(&mut back).unwrap();
        assert!(data.starts_with(&back));
        std::fs::remove_file(path).unwrap();
    });
}

/// Suspected: dropping a backend with ops in flight (a send the peer does not read, an armed
/// recv, a received buffer still held, a timer, an accept, a child) frees nothing the kernel
/// may still touch. Run under AddressSanitizer (ci/asan.sh) this sees user-space misuse; the
/// bytes the peers read and a fresh backend's echo afterwards see the rest.
#[test]
fn drop_with_ops_in_flight() {
    let mut all = variants(&Options::default());
    // io_uring's Drop when the kernel does not let go in time: it must leak, not free.
    let leak = Options {
        drop_without_waiting: true,
        ..Options::default()
    };
    all.extend(
        variants(&leak)
            .into_iter()
            .filter(|(_, _, k)| *k == Kind::Uring)
            .map(|(n, o, k)| (format!("{n}-leaking"), o, k)),
    );
    for (name, o, kind) in all {
        let _watch = Watched::new("drop_with_ops_in_flight", &name);
        let mut b = backends::open(kind, &o).unwrap().backend;
        let l = listener();
        let (_l1, mut s1, fd1) = connected(&mut *b);
        let (_l2, mut s2, fd2) = connected(&mut *b);
        set_sndbuf(fd1, 4096);
        let data = pattern(4 << 20);
        let buf = SendBuf {
            head: data.clone(),
            body: Body::Empty,
        };
        b.submit(1, Op::Send { fd: fd1, buf });
        b.submit(2, Op::Recv { fd: fd2 });
        b.submit(3, Op::Accept { fd: l.as_raw_fd() });
        b.submit(
            4,
            Op::Timeout {
                deadline: Instant::now() + Duration::from_secs(60),
            },
        );
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        b.submit(5, Op::ChildExit { pid: child.id() });
        b.submit(6, Op::Hangup { fd: fd1 });
        s2.write_all(b"held").unwrap();
        let mut held = None;
        let end = Instant::now() + Duration::from_secs(5);
        while held.is_none() {
            assert!(Instant::now() < end, "{name}: no recv");
            let mut out = Vec::new();
            b.wait(&mut out, Some(Duration::from_millis(50))).unwrap();
            for mut c in out {
                if let Buf::Recv(buf) = std::mem::take(&mut c.buf) {
                    held = Some(buf);
                }
            }
        }
        s2.write_all(b"more data arriving as the backend goes")
            .unwrap();
        drop(b);
        assert_eq!(&held.unwrap()[..], b"held");
        // The send stopped part way: what the peer reads is a prefix of what was sent.
        // SAFETY: closing our ends, which the dropped backend no longer uses.
        unsafe {
            libc::close(fd1);
            libc::close(fd2);
        }
        let mut back = Vec::new();
        s1.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s1.read_to_end(&mut back).unwrap();
        assert!(data.starts_with(&back), "{name}: the peer read wrong bytes");
        let _ = child.kill();
        let _ = child.wait();
        // The allocator is sound afterwards: a fresh backend echoes 1 MiB intact.
        let mut b = backends::open(kind, &o).unwrap().backend;
        let l = listener();
        let addr = l.local_addr().unwrap();
        let payload = pattern(1 << 20);
        let client = echo_client(addr, payload.clone());
        let fd = accept_one(&mut *b, &l);
        echo_connection(&mut *b, fd, Duration::from_secs(30));
        assert!(
            join_driving(&mut *b, client) == payload,
            "{name}: echo after drop"
        );
        println!("drop_with_ops_in_flight: {name} ok");
    }
}

// ---- Hang-up watch (invariant 10): a peer's FIN or reset is seen with no receive armed. ----

/// Reset the connection: linger 0, then close (an RST instead of a FIN).
fn reset(s: TcpStream) {
    let lg = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt with a pointer to a live linger struct.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&lg as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0);
    drop(s);
}

/// Nothing completes within `ms` milliseconds (several waits, so a late event is not missed).
fn quiet_for(b: &mut dyn Backend, ms: u64, what: &str) {
    let end = Instant::now() + Duration::from_millis(ms);
    let mut out = Vec::new();
    while Instant::now() < end {
        b.wait(&mut out, Some(Duration::from_millis(20))).unwrap();
        assert!(out.is_empty(), "{what} on {}: {out:?}", b.name());
    }
}

/// The single completion of a hang-up watch `token`: Ok(0), last, no buffer.
fn expect_hangup(b: &mut dyn Backend, token: u64) {
    let c = collect(b, 1).pop().unwrap();
    assert_eq!(c.token, token, "{:?}", c);
    assert_eq!(c.result.as_ref().ok(), Some(&0), "hang-up: {:?}", c.result);
    assert!(!c.more);
    assert!(matches!(c.buf, Buf::None));
}

#[test]
fn hangup_completes_on_peer_fin() {
    each_backend("hangup_completes_on_peer_fin", |b| {
        let (_l, s, fd) = connected(b);
        b.submit(3, Op::Hangup { fd });
        quiet_for(b, 50, "a hang-up watch completed with the peer still there");
        s.shutdown(Shutdown::Write).unwrap();
        expect_hangup(b, 3);
        quiet_for(b, 50, "more after the hang-up");
        b.submit(4, Op::Close { fd });
        assert!(collect(b, 1)[0].result.is_ok());
    });
}

#[test]
fn hangup_completes_on_peer_reset() {
    each_backend("hangup_completes_on_peer_reset", |b| {
        let (_l, s, fd) = connected(b);
        b.submit(3, Op::Hangup { fd });
        quiet_for(b, 50, "a hang-up watch completed with the peer still there");
        reset(s);
        expect_hangup(b, 3);
        b.submit(4, Op::Close { fd });
        assert!(collect(b, 1)[0].result.is_ok());
    });
}

/// Data alone is no hang-up, and the watch takes none of it: a cancel ends the watch with
/// ECANCELED, and a receive afterwards gets every byte.
#[test]
fn hangup_ignores_data_and_cancels() {
    each_backend("hangup_ignores_data_and_cancels", |b| {
        let (_l, mut s, fd) = connected(b);
        b.submit(3, Op::Hangup { fd });
        s.write_all(b"pending data").unwrap();
        quiet_for(b, 200, "a hang-up watch completed on data");
        b.submit(4, Op::Cancel { target: 3 });
        let (hangup, cancel) = target_and_cancel(b, 3, 4);
        assert_eq!(errno_of(&hangup), Some(libc::ECANCELED), "{hangup:?}");
        assert!(cancel.is_ok(), "cancel: {cancel:?}");
        b.submit(5, Op::Recv { fd });
        s.shutdown(Shutdown::Write).unwrap();
        assert_eq!(recv_to_eof(b, 5, Duration::from_secs(5)), b"pending data");
        b.submit(6, Op::Close { fd });
        assert!(collect(b, 1)[0].result.is_ok());
    });
}

/// A watch cancelled (or its fd closed) in the batch that starts it ends with ECANCELED: the
/// cancel finds it, the close completes after it.
#[test]
fn hangup_cancelled_or_closed_in_its_batch() {
    each_backend("hangup_cancelled_or_closed_in_its_batch", |b| {
        let (_l, _s, fd) = connected(b);
        b.submit(3, Op::Hangup { fd });
        b.submit(4, Op::Cancel { target: 3 });
        let (hangup, cancel) = target_and_cancel(b, 3, 4);
        assert_eq!(errno_of(&hangup), Some(libc::ECANCELED), "{hangup:?}");
        assert!(cancel.is_ok(), "cancel: {cancel:?}");
        b.submit(5, Op::Hangup { fd });
        b.submit(6, Op::Close { fd });
        let got = collect(b, 2);
        let order: Vec<u64> = got.iter().map(|c| c.token).collect();
        assert_eq!(
            order,
            vec![5, 6],
            "the watch must complete before the close"
        );
        assert_eq!(errno_of(&got[0].result), Some(libc::ECANCELED));
        assert!(got[1].result.is_ok(), "close: {:?}", got[1].result);
    });
}

#[test]
fn close_with_a_hangup_pending_completes_it_first() {
    each_backend("close_with_a_hangup_pending_completes_it_first", |b| {
        let (_l, _s, fd) = connected(b);
        b.submit(3, Op::Hangup { fd });
        quiet_for(b, 30, "a hang-up watch completed with the peer still there");
        b.submit(4, Op::Close { fd });
        let got = collect(b, 2);
        let order: Vec<u64> = got.iter().map(|c| c.token).collect();
        assert_eq!(
            order,
            vec![3, 4],
            "the watch must complete before the close"
        );
        assert_eq!(errno_of(&got[0].result), Some(libc::ECANCELED));
        assert!(!got[0].more);
        assert!(got[1].result.is_ok(), "close: {:?}", got[1].result);
    });
}

/// A FIN that arrived before the watch was submitted: on a fd the backend never watched, and
/// on one whose receive was cancelled and that took the news in while nothing was queued.
/// Either way the watch completes, and the data in front of the FIN is still there.
#[test]
fn hangup_after_the_fin_arrived_completes() {
    each_backend("hangup_after_the_fin_arrived_completes", |b| {
        // Never watched: the FIN is there before the backend first sees the fd.
        let (_l, mut s, fd) = connected(b);
        s.write_all(b"abc").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        b.submit(3, Op::Hangup { fd });
        expect_hangup(b, 3);
        b.submit(4, Op::Recv { fd });
        assert_eq!(recv_to_eof(b, 4, Duration::from_secs(5)), b"abc");
        b.submit(5, Op::Close { fd });
        assert!(collect(b, 1)[0].result.is_ok());

        // Seen while idle: a receive took data, was cancelled, then the FIN came.
        let (_l, mut s, fd) = connected(b);
        b.submit(6, Op::Recv { fd });
        s.write_all(b"x").unwrap();
        let c = collect(b, 1).pop().unwrap();
        assert_eq!(c.token, 6);
        if let Buf::Recv(buf) = c.buf {
            b.release(buf);
        }
        b.submit(7, Op::Cancel { target: 6 });
        let (_, cancel) = target_and_cancel(b, 6, 7);
        assert!(cancel.is_ok(), "cancel: {cancel:?}");
        s.write_all(b"def").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let mut out = Vec::new();
        b.wait(&mut out, Some(Duration::from_millis(30))).unwrap();
        assert!(out.is_empty(), "{out:?}");
        b.submit(8, Op::Hangup { fd });
        expect_hangup(b, 8);
        b.submit(9, Op::Recv { fd });
        assert_eq!(recv_to_eof(b, 9, Duration::from_secs(5)), b"def");
        b.submit(10, Op::Close { fd });
        assert!(collect(b, 1)[0].result.is_ok());
    });
}

/// A watch and a receive on the same fd do not stand in each other's way: data completes the
/// receive only; the FIN completes both.
#[test]
fn hangup_beside_a_recv() {
    each_backend("hangup_beside_a_recv", |b| {
        let (_l, mut s, fd) = connected(b);
        b.submit(3, Op::Recv { fd });
        b.submit(4, Op::Hangup { fd });
        s.write_all(b"abc").unwrap();
        let c = collect(b, 1).pop().unwrap();
        assert_eq!(c.token, 3, "{c:?}");
        if let Buf::Recv(buf) = c.buf {
            assert_eq!(&buf[..], b"abc");
            b.release(buf);
        }
        quiet_for(b, 100, "data completed the hang-up watch");
        s.shutdown(Shutdown::Write).unwrap();
        let got = collect(b, 2);
        let mut by: Vec<(u64, Option<usize>, bool)> = got
            .iter()
            .map(|c| (c.token, c.result.as_ref().ok().copied(), c.more))
            .collect();
        by.sort();
        assert_eq!(by, vec![(3, Some(0), false), (4, Some(0), false)]);
        b.submit(5, Op::Close { fd });
        assert!(collect(b, 1)[0].result.is_ok());
    });
}

/// Many peers leaving at once: every one of 600 armed receives sees its EOF. (libkqueue lost
/// the events that did not fit the caller's kevent array — a socket watched for reading and
/// writing gives two kevents per epoll event — and left ~40 of 300 sockets in CLOSE-WAIT;
/// ci/kqueue.sh patches it.)
#[test]
fn a_burst_of_closes_is_seen_whole() {
    raise_nofile();
    each_backend("a_burst_of_closes_is_seen_whole", |b| {
        const N: usize = 600;
        let l = listener();
        let addr = l.local_addr().unwrap();
        let peers: Vec<TcpStream> = (0..N).map(|_| TcpStream::connect(addr).unwrap()).collect();
        b.submit(1, Op::Accept { fd: l.as_raw_fd() });
        let fds = std::cell::RefCell::new(Vec::new());
        run(
            b,
            Duration::from_secs(30),
            |b, c| {
                assert_eq!(c.token, 1, "{:?}", c.result);
                let fd = c.result.unwrap() as RawFd;
                fds.borrow_mut().push(fd);
                b.submit(1_000_000 + fd as u64, Op::Recv { fd });
            },
            || fds.borrow().len() == N,
        );
        b.submit(2, Op::Cancel { target: 1 });
        let fds = fds.into_inner();
        drop(peers);
        let eof = std::cell::RefCell::new(std::collections::HashSet::new());
        run(
            b,
            Duration::from_secs(30),
            |b, c| match c.token {
                1 | 2 => {}
                t => {
                    let n = c.result.expect("recv");
                    if let Buf::Recv(buf) = c.buf {
                        b.release(buf);
                    }
                    assert_eq!(n, 0, "no data was sent");
                    assert!(eof.borrow_mut().insert(t), "a second EOF for {t}");
                }
            },
            || eof.borrow().len() == N,
        );
        for (i, &fd) in fds.iter().enumerate() {
            b.submit(3_000_000 + i as u64, Op::Close { fd });
        }
        let closed = collect(b, N);
        assert!(closed.iter().all(|c| c.result.is_ok()));
    });
}

/// A directory with `a.txt` ("hello"), a symlink `in` to it and a symlink `out` to /etc/hostname.
fn open_at_tree(name: &str) -> (std::path::PathBuf, std::os::fd::OwnedFd) {
    let d = std::env::temp_dir().join(format!("conformance-openat-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("a.txt"), b"hello").unwrap();
    std::os::unix::fs::symlink("a.txt", d.join("in")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", d.join("out")).unwrap();
    let dir = backends::util::open_dir(&d).unwrap();
    (d, dir)
}

fn open_at(dir: RawFd, path: &str, beneath: bool, no_symlinks: bool) -> Op {
    Op::OpenAt(backends::Open {
        dir: dup_dir(dir),
        path: std::ffi::CString::new(path).unwrap(),
        flags: libc::O_RDONLY,
        mode: 0,
        beneath,
        no_symlinks,
    })
}

/// Invariant 13: an open runs off the loop's thread and completes with a new fd (read back
/// through the backend); containment and the symlink policy hold; errors are the syscall's.
#[test]
fn open_at_opens_beneath_and_refuses_escapes() {
    each_backend("open_at_opens_beneath_and_refuses_escapes", |b| {
        let (d, dir) = open_at_tree("paths");
        let dfd = dir.as_raw_fd();
        b.submit(1, open_at(dfd, "a.txt", true, true));
        let c = collect(b, 1).pop().unwrap();
        assert_eq!(c.token, 1);
        let fd = c.result.expect("open a.txt") as RawFd;
        b.submit(
            2,
            Op::Read {
                fd,
                buf: Vec::with_capacity(64),
                offset: Some(0),
            },
        );
        let c = collect(b, 1).pop().unwrap();
        let Buf::Vec(got) = c.buf else {
            panic!("read buffer not returned")
        };
        assert_eq!(got, b"hello");
        b.submit(3, Op::Close { fd });
        assert!(collect(b, 1)[0].result.is_ok());
        let cases: [(&str, bool, bool, i32); 5] = [
            ("missing", true, false, libc::ENOENT),
            ("../x", true, false, libc::EXDEV),
            ("/etc/hostname", true, false, libc::EXDEV),
            ("out", true, false, libc::EXDEV),
            ("in", true, true, libc::ELOOP),
        ];
        for (i, (path, beneath, nosym, errno)) in cases.iter().enumerate() {
            let t = 10 + i as u64;
            b.submit(t, open_at(dfd, path, *beneath, *nosym));
            let c = collect(b, 1).pop().unwrap();
            assert_eq!(c.token, t);
            assert_eq!(errno_of(&c.result), Some(*errno), "{path}: {:?}", c.result);
        }
        // Without containment a symlink out is followed, as openat(2) does.
        b.submit(20, open_at(dfd, "in", true, false));
        let c = collect(b, 1).pop().unwrap();
        let fd = c.result.expect("open through an inner symlink") as RawFd;
        b.submit(21, Op::Close { fd });
        collect(b, 1);
        drop(dir);
        let _ = std::fs::remove_dir_all(d);
    });
}

/// Many opens in one batch each complete once, and the pool's wake-ups are not the caller's:
/// no completion with the waker's token appears.
#[test]
fn open_ats_in_one_batch_complete_once_each() {
    each_backend("open_ats_in_one_batch_complete_once_each", |b| {
        let (d, dir) = open_at_tree("batch");
        const N: u64 = 200;
        for t in 0..N {
            b.submit(100 + t, open_at(dir.as_raw_fd(), "a.txt", true, false));
        }
        let got = collect(b, N as usize);
        let mut seen = std::collections::HashSet::new();
        for c in &got {
            assert!(seen.insert(c.token), "token {} completed twice", c.token);
            assert!((100..100 + N).contains(&c.token), "unexpected {c:?}");
            let fd = c.result.as_ref().expect("open");
            b.submit(1000 + c.token, Op::Close { fd: *fd as RawFd });
        }
        let closed = collect(b, N as usize);
        assert!(closed.iter().all(|c| c.result.is_ok()));
        quiet_for(b, 100, "after the opens");
        drop(dir);
        let _ = std::fs::remove_dir_all(d);
    });
}

/// A Cancel of an open: the open completes exactly once (ECANCELED, or the fd it reached,
/// which is then the caller's), and the cancel completes.
#[test]
fn cancel_of_an_open_at_completes_it_once() {
    each_backend("cancel_of_an_open_at_completes_it_once", |b| {
        let (d, dir) = open_at_tree("cancel");
        for round in 0..20u64 {
            let t = 10 * round + 1;
            b.submit(t, open_at(dir.as_raw_fd(), "a.txt", true, false));
            b.submit(t + 1, Op::Cancel { target: t });
            let got = collect(b, 2);
            let open: Vec<_> = got.iter().filter(|c| c.token == t).collect();
            let cancel: Vec<_> = got.iter().filter(|c| c.token == t + 1).collect();
            assert_eq!((open.len(), cancel.len()), (1, 1), "{got:?}");
            match &open[0].result {
                Ok(fd) => {
                    b.submit(t + 2, Op::Close { fd: *fd as RawFd });
                    collect(b, 1);
                }
                Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ECANCELED)),
            }
            let c = &cancel[0].result;
            assert!(
                c.is_ok() || (errno_of(c) == Some(libc::ENOENT) && open[0].result.is_ok()),
                "cancel: {c:?}, open: {:?}",
                open[0].result
            );
        }
        quiet_for(b, 50, "after the cancels");
        drop(dir);
        let _ = std::fs::remove_dir_all(d);
    });
}

fn dup_dir(dir: RawFd) -> std::os::fd::OwnedFd {
    // SAFETY: `dir` is open (the caller's directory); the op gets its own duplicate.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(dir) }
        .try_clone_to_owned()
        .unwrap()
}

fn rename_at(dir: RawFd, from: &str, to: &str, noreplace: bool) -> Op {
    Op::RenameAt(backends::Rename {
        dir: dup_dir(dir),
        from: std::ffi::CString::new(from).unwrap(),
        to: std::ffi::CString::new(to).unwrap(),
        noreplace,
    })
}

fn unlink_at(dir: RawFd, path: &str, rmdir: bool) -> Op {
    Op::UnlinkAt(backends::Unlink {
        dir: dup_dir(dir),
        path: std::ffi::CString::new(path).unwrap(),
        rmdir,
    })
}

/// Invariant 13 for renames and unlinks: each completes once with 0 or the syscall's error,
/// and what it did is on disk: a no-replace rename never replaces, a plain one does; an
/// unlink of a symlink removes the link, never its target; `rmdir` removes an empty directory
/// only.
#[test]
fn rename_and_unlink_at_do_what_they_say() {
    each_backend("rename_and_unlink_at_do_what_they_say", |b| {
        let (d, dir) = open_at_tree("names");
        let dfd = dir.as_raw_fd();
        std::fs::write(d.join("b.txt"), b"bee").unwrap();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/x"), b"x").unwrap();
        std::fs::create_dir(d.join("empty")).unwrap();
        let run = |b: &mut dyn Backend, t: u64, op: Op| -> Result<usize, i32> {
            b.submit(t, op);
            let c = collect(b, 1).pop().unwrap();
            assert_eq!(c.token, t);
            assert!(!c.more);
            c.result.map_err(|e| e.raw_os_error().unwrap())
        };
        // No-replace onto an existing name: EEXIST, both files intact.
        assert_eq!(
            run(b, 1, rename_at(dfd, "a.txt", "b.txt", true)),
            Err(libc::EEXIST)
        );
        assert_eq!(std::fs::read(d.join("b.txt")).unwrap(), b"bee");
        // No-replace onto a free name: moved.
        assert_eq!(run(b, 2, rename_at(dfd, "a.txt", "c.txt", true)), Ok(0));
        assert!(!d.join("a.txt").exists());
        assert_eq!(std::fs::read(d.join("c.txt")).unwrap(), b"hello");
        // A plain rename replaces.
        assert_eq!(run(b, 3, rename_at(dfd, "c.txt", "b.txt", false)), Ok(0));
        assert_eq!(std::fs::read(d.join("b.txt")).unwrap(), b"hello");
        assert_eq!(
            run(b, 4, rename_at(dfd, "missing", "z", false)),
            Err(libc::ENOENT)
        );
        // Unlink a symlink to a file: the link goes, the file stays.
        assert_eq!(run(b, 5, unlink_at(dfd, "out", false)), Ok(0));
        assert!(std::fs::symlink_metadata(d.join("out")).is_err());
        assert!(std::path::Path::new("/etc/hostname").exists());
        assert_eq!(run(b, 6, unlink_at(dfd, "b.txt", false)), Ok(0));
        assert!(!d.join("b.txt").exists());
        assert_eq!(run(b, 7, unlink_at(dfd, "b.txt", false)), Err(libc::ENOENT));
        // A directory: not without rmdir; not when it has entries; yes when empty.
        assert_eq!(run(b, 8, unlink_at(dfd, "empty", false)), Err(libc::EISDIR));
        assert_eq!(run(b, 9, unlink_at(dfd, "sub", true)), Err(libc::ENOTEMPTY));
        assert_eq!(run(b, 10, unlink_at(dfd, "empty", true)), Ok(0));
        assert!(!d.join("empty").exists());
        // The completion gives the op's directory and names back (a caller can undo it).
        std::fs::write(d.join("g"), b"g").unwrap();
        b.submit(11, rename_at(dfd, "g", "h", true));
        let c = collect(b, 1).pop().unwrap();
        assert_eq!(c.token, 11);
        assert!(c.result.is_ok(), "{c:?}");
        match c.buf {
            Buf::Path(call) => match *call {
                backends::PathCall::Rename(r) => {
                    assert_eq!(r.from.to_bytes(), b"g");
                    assert_eq!(r.to.to_bytes(), b"h");
                    assert!(r.dir.as_raw_fd() >= 0);
                }
                other => panic!("a rename gave back {other:?}"),
            },
            other => panic!("a rename gave back {other:?}"),
        }
        // Many in one batch complete once each.
        for i in 0..50 {
            std::fs::write(d.join(format!("m{i}")), b"m").unwrap();
        }
        for i in 0..50u64 {
            b.submit(100 + i, unlink_at(dfd, &format!("m{i}"), false));
        }
        let got = collect(b, 50);
        let mut seen = std::collections::HashSet::new();
        for c in &got {
            assert!(seen.insert(c.token), "token {} completed twice", c.token);
            assert!(c.result.is_ok(), "{c:?}");
        }
        assert!((0..50).all(|i| !d.join(format!("m{i}")).exists()));
        quiet_for(b, 100, "after the unlinks");
        drop(dir);
        let _ = std::fs::remove_dir_all(d);
    });
}

/// Invariant 7 for regular files, whose reads and writes the readiness backends run on their
/// pool: a Close in the batch of a large write completes after it; the write either ran
/// whole (its bytes on disk) or was cancelled before it began, never half.
#[test]
fn close_in_the_batch_of_a_file_write_completes_after_it() {
    each_backend(
        "close_in_the_batch_of_a_file_write_completes_after_it",
        |b| {
            let path = std::env::temp_dir().join(format!(
                "conformance-file-close-{}-{}",
                std::process::id(),
                b.name()
            ));
            for round in 0..20u64 {
                let f = std::fs::File::create(&path).unwrap();
                let fd = std::os::fd::IntoRawFd::into_raw_fd(f);
                let len = 4 << 20;
                b.submit(
                    10 * round + 1,
                    Op::Write {
                        fd,
                        buf: vec![b'w'; len],
                        offset: Some(0),
                    },
                );
                b.submit(10 * round + 2, Op::Close { fd });
                let got = collect(b, 2);
                assert_eq!(got[0].token, 10 * round + 1, "the write first: {got:?}");
                assert_eq!(got[1].token, 10 * round + 2);
                assert!(got[1].result.is_ok(), "{got:?}");
                let size = std::fs::metadata(&path).unwrap().len();
                match &got[0].result {
                    Ok(n) => assert_eq!((*n, size), (len, len as u64)),
                    Err(e) => {
                        assert_eq!(e.raw_os_error(), Some(libc::ECANCELED), "{e}");
                        assert!(size == 0 || size == len as u64, "half a write: {size}");
                    }
                }
            }
            let _ = std::fs::remove_file(&path);
        },
    );
}

/// Many files written at once (8 writes each at disjoint offsets, all in one batch with
/// each file's Close, and a Cancel of some writes): every op completes exactly once, each
/// Close after its file's writes, a completed write is whole on disk and a cancelled one
/// (by its Cancel or its file's Close) left none of its bytes.
#[test]
fn many_files_written_at_once_with_closes_and_cancels_in_the_batch() {
    each_backend(
        "many_files_written_at_once_with_closes_and_cancels_in_the_batch",
        |b| {
            let files = 24u64;
            let piece = 64 * 1024;
            let mut paths = Vec::new();
            for i in 0..files {
                let path = std::env::temp_dir().join(format!(
                    "conformance-many-{}-{}-{i}",
                    std::process::id(),
                    b.name()
                ));
                let fd = std::fs::File::create(&path).unwrap().into_raw_fd();
                for k in 0..8u64 {
                    b.submit(
                        1000 * i + k,
                        Op::Write {
                            fd,
                            buf: vec![(i * 8 + k) as u8; piece],
                            offset: Some(k * piece as u64),
                        },
                    );
                }
                if i % 3 == 0 {
                    // A cancel of the last write: done (ECANCELED) or whole, never both.
                    b.submit(
                        1000 * i + 500,
                        Op::Cancel {
                            target: 1000 * i + 7,
                        },
                    );
                }
                b.submit(1000 * i + 999, Op::Close { fd });
                paths.push(path);
            }
            let n = files * 9 + files.div_ceil(3);
            let got = collect(b, n as usize);
            let mut seen = HashMap::new();
            for (at, c) in got.iter().enumerate() {
                assert!(
                    seen.insert(c.token, at).is_none(),
                    "token {} completed twice",
                    c.token
                );
            }
            for i in 0..files {
                let close_at = seen[&(1000 * i + 999)];
                assert!(got[close_at].result.is_ok(), "{:?}", got[close_at]);
                let on_disk = std::fs::read(&paths[i as usize]).unwrap();
                for k in 0..8u64 {
                    let w = &got[seen[&(1000 * i + k)]];
                    assert!(
                        seen[&(1000 * i + k)] < close_at,
                        "close before write {k} of {i}"
                    );
                    let lo = (k as usize) * piece;
                    match &w.result {
                        Ok(len) => {
                            assert_eq!(*len, piece);
                            assert!(
                                on_disk[lo..lo + piece]
                                    .iter()
                                    .all(|&x| x == (i * 8 + k) as u8),
                                "file {i} piece {k} not on disk"
                            );
                        }
                        Err(e) => {
                            // Cancelled (by the Cancel or by the Close, invariant 7) before it
                            // began: none of its bytes, never half.
                            assert_eq!(e.raw_os_error(), Some(libc::ECANCELED), "{e}");
                            let region = on_disk.get(lo..(lo + piece).min(on_disk.len()));
                            let ok = region.is_none_or(|r| {
                                r.iter().all(|&x| x == 0)
                                    || r.iter().all(|&x| x == (i * 8 + k) as u8)
                            });
                            assert!(ok, "file {i}: cancelled write {k} half on disk");
                        }
                    }
                }
                let _ = std::fs::remove_file(&paths[i as usize]);
            }
        },
    );
}

fn list_dir(dir: RawFd, max: usize, follow: bool) -> Op {
    Op::ListDir(backends::ListDir::new(dup_dir(dir), max, follow))
}

/// The listing a completed `ListDir` gave back: its entries by name, and the truncated flag.
fn listed(c: Completion) -> (HashMap<String, backends::DirEntry>, bool) {
    let Buf::Path(call) = c.buf else {
        panic!("a listing gives back its call: {:?}", c.buf)
    };
    let backends::PathCall::ListDir(l) = *call else {
        panic!("not a listing: {call:?}")
    };
    assert_eq!(c.result.ok(), Some(l.entries.len()), "result = entry count");
    let by_name = l
        .entries
        .into_iter()
        .map(|e| (e.name.to_string_lossy().into_owned(), e))
        .collect();
    (by_name, l.truncated)
}

/// Invariant 14: a directory is read off the loop's thread on every backend: the names (no
/// `.`/`..`) with their type, size and mtime; symlinks followed or not as asked (a dangling
/// one left out when followed); at most `max` names, and then `truncated`; no wake-up of the
/// caller's is reported for the pool's work.
#[test]
fn list_dir_reads_names_and_facts() {
    each_backend("list_dir_reads_names_and_facts", |b| {
        let (d, dir) = open_at_tree("listdir");
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("big"), vec![7u8; 12345]).unwrap();
        std::os::unix::fs::symlink("nowhere", d.join("dangling")).unwrap();
        let mtime = std::fs::metadata(d.join("big"))
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        b.submit(1, list_dir(dir.as_raw_fd(), 100, true));
        let c = collect(b, 1).pop().unwrap();
        assert_eq!(c.token, 1);
        let (all, truncated) = listed(c);
        let mut names: Vec<_> = all.keys().cloned().collect();
        names.sort();
        // `out` leads to /etc/hostname (followed: a file), `dangling` to nothing (left out).
        assert_eq!(names, ["a.txt", "big", "in", "out", "sub"], "{all:?}");
        assert!(!truncated);
        assert!(all["sub"].is_dir && !all["big"].is_dir);
        assert_eq!((all["big"].size, all["big"].mtime), (12345, mtime));
        assert_eq!(all["in"].size, 5, "a followed link has its target's size");
        b.submit(2, list_dir(dir.as_raw_fd(), 100, false));
        let (all, _) = listed(collect(b, 1).pop().unwrap());
        assert_eq!(all.len(), 6, "not followed, every link is listed: {all:?}");
        assert_eq!(all["in"].size, "a.txt".len() as u64, "a link's own size");
        b.submit(3, list_dir(dir.as_raw_fd(), 2, false));
        let (all, truncated) = listed(collect(b, 1).pop().unwrap());
        assert_eq!((all.len(), truncated), (2, true));
        b.submit(4, list_dir(dir.as_raw_fd(), 6, false));
        let (all, truncated) = listed(collect(b, 1).pop().unwrap());
        assert_eq!(
            (all.len(), truncated),
            (6, false),
            "exactly max names is whole"
        );
        // Not a directory: the error of reading it.
        let f = std::fs::File::open(d.join("a.txt")).unwrap();
        b.submit(5, Op::ListDir(backends::ListDir::new(f.into(), 10, true)));
        let c = collect(b, 1).pop().unwrap();
        assert_eq!(errno_of(&c.result), Some(libc::ENOTDIR), "{c:?}");
        quiet_for(b, 100, "after the listings");
        drop(dir);
        let _ = std::fs::remove_dir_all(d);
    });
}

/// A Cancel of a listing: it completes exactly once (ECANCELED, or its entries), and the
/// cancel completes (Ok, or ENOENT when the listing had already finished).
#[test]
fn cancel_of_a_list_dir_completes_it_once() {
    each_backend("cancel_of_a_list_dir_completes_it_once", |b| {
        let (d, dir) = open_at_tree("listcancel");
        let mut cancelled = 0;
        for round in 0..40u64 {
            let t = 10 * round + 1;
            // Several in one batch so that some are still queued on the pool when cancelled.
            for k in 0..6 {
                b.submit(t + k, list_dir(dir.as_raw_fd(), 100, true));
            }
            b.submit(t + 8, Op::Cancel { target: t + 5 });
            let got = collect(b, 7);
            for k in 0..6 {
                let n = got.iter().filter(|c| c.token == t + k).count();
                assert_eq!(n, 1, "listing {k}: {got:?}");
            }
            let l = got.iter().find(|c| c.token == t + 5).unwrap();
            let c = got.iter().find(|c| c.token == t + 8).unwrap();
            match &l.result {
                Ok(n) => assert_eq!(*n, 3, "{l:?}"),
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::ECANCELED));
                    cancelled += 1;
                }
            }
            assert!(
                c.result.is_ok() || (errno_of(&c.result) == Some(libc::ENOENT) && l.result.is_ok()),
                "cancel: {:?}, listing: {:?}",
                c.result,
                l.result
            );
        }
        println!(
            "{}: {cancelled} of 40 listings cancelled before they ran",
            b.name()
        );
        quiet_for(b, 50, "after the cancels");
        drop(dir);
        let _ = std::fs::remove_dir_all(d);
    });
}

/// A caller's wake-up among listings completing on the pool (whose threads wake the backend
/// too): reported exactly once each time — never lost behind a pool wake-up, never doubled,
/// and no pool wake-up reported as the caller's.
#[test]
fn a_wake_among_pool_completions_is_reported_once() {
    each_backend("a_wake_among_pool_completions_is_reported_once", |b| {
        let (d, dir) = open_at_tree("listwake");
        for round in 0..30u64 {
            let t = 10 * round + 1;
            for k in 0..6 {
                b.submit(t + k, list_dir(dir.as_raw_fd(), 100, true));
            }
            let w = b.waker();
            let delay = Duration::from_micros(137 * (round % 8));
            let waker = std::thread::spawn(move || {
                std::thread::sleep(delay);
                w.wake().unwrap();
            });
            let mut got: Vec<Completion> = Vec::new();
            let end = Instant::now() + Duration::from_secs(10);
            let wakes = |g: &Vec<Completion>| g.iter().filter(|c| c.token == WAKE_TOKEN).count();
            while got.iter().filter(|c| c.token != WAKE_TOKEN).count() < 6 || wakes(&got) == 0 {
                assert!(Instant::now() < end, "round {round}: {got:?}");
                b.wait(&mut got, Some(Duration::from_millis(50))).unwrap();
            }
            waker.join().unwrap();
            let settle = Instant::now() + Duration::from_millis(20);
            while Instant::now() < settle {
                b.wait(&mut got, Some(Duration::from_millis(5))).unwrap();
            }
            assert_eq!(wakes(&got), 1, "round {round} on {}: {got:?}", b.name());
            for k in 0..6 {
                let n = got.iter().filter(|c| c.token == t + k).count();
                assert_eq!(n, 1, "round {round}: listing {k}: {got:?}");
            }
            assert_eq!(got.len(), 7, "round {round}: {got:?}");
        }
        drop(dir);
        let _ = std::fs::remove_dir_all(d);
    });
}

/// SendFile of ranges (unaligned offsets, a piece inside a page, zero bytes, the whole file)
/// to a socket with a small send buffer and a slow reader: each completes whole (invariant 6)
/// with its length, and the peer reads exactly those bytes in order.
#[test]
fn sendfile_ranges_complete_whole() {
    each_file_send("sendfile_ranges_complete_whole", |b| {
        let data = pattern((3 << 20) + 123);
        let (path, file) = temp_file_with(&format!("ranges-{}", b.name()), &data);
        let ranges = [
            (0, data.len()),
            (4095, (1 << 20) + 7),
            (data.len() - 10, 10),
            (5, 0),
            (100, 3000),
            (1 << 20, 2 << 20),
        ];
        let mut expect = Vec::new();
        for &(off, len) in &ranges {
            expect.extend_from_slice(&data[off..off + len]);
        }
        let l = listener();
        let addr = l.local_addr().unwrap();
        let total = expect.len();
        // Slowly at first, so the sender meets a full socket.
        let client = reader(addr, 20, 4096);
        let fd = accept_one(b, &l);
        set_sndbuf(fd, 16 << 10);
        for (i, &(offset, len)) in ranges.iter().enumerate() {
            let token = 10 + i as u64;
            b.submit(
                token,
                Op::SendFile {
                    fd,
                    file,
                    offset: offset as u64,
                    len,
                },
            );
            let c = collect(b, 1).pop().unwrap();
            assert_eq!(c.token, token);
            assert!(!c.more);
            if !b.sendfile_native() {
                assert_eq!(errno_of(&c.result), Some(libc::EOPNOTSUPP));
                break;
            }
            assert_eq!(c.result.unwrap(), len, "range {offset}+{len}");
        }
        b.submit(2, Op::Close { fd });
        assert!(collect(b, 1)[0].result.is_ok());
        let got = join_driving(b, client);
        if b.sendfile_native() {
            assert_eq!(got.len(), total);
            assert!(got == expect, "the peer read other bytes");
        }
        b.submit(3, Op::Close { fd: file });
        assert!(collect(b, 1)[0].result.is_ok());
        std::fs::remove_file(path).unwrap();
    });
}

/// A SendFile past the end of its file sends what there is and fails (UnexpectedEof) rather
/// than spinning or reporting success.
#[test]
fn sendfile_past_the_end_fails() {
    each_file_send("sendfile_past_the_end_fails", |b| {
        if !b.sendfile_native() {
            return;
        }
        let data = pattern(1000);
        let (path, file) = temp_file_with(&format!("eof-{}", b.name()), &data);
        let (_l, mut s, sock) = connected(b);
        b.submit(
            1,
            Op::SendFile {
                fd: sock,
                file,
                offset: 500,
                len: 1000,
            },
        );
        let c = collect(b, 1).pop().unwrap();
        let e = c.result.expect_err("a sendfile past the end succeeded");
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
        b.submit(2, Op::Close { fd: sock });
        b.submit(3, Op::Close { fd: file });
        assert!(collect(b, 2).iter().all(|c| c.result.is_ok()));
        let mut back = Vec::new();
        s.read_to_end(&mut back).unwrap();
        assert!(back == data[500..], "the peer read {} bytes", back.len());
        std::fs::remove_file(path).unwrap();
    });
}

/// A SendFile cancelled by token while the peer does not read completes (ECANCELED, or with
/// what it finished first) before or beside the cancel; a second SendFile on another
/// connection of the same backend afterwards sends exactly its own bytes (nothing left over
/// from the cancelled one, in a reused pipe or buffer).
#[test]
fn sendfile_cancelled_then_another_sends_its_own_bytes() {
    each_file_send("sendfile_cancelled_then_another_sends_its_own_bytes", |b| {
        if !b.sendfile_native() {
            return;
        }
        let data = pattern(8 << 20);
        let (path, file) = temp_file_with(&format!("cancel-{}", b.name()), &data);
        let (_l, s, sock) = connected(b);
        set_sndbuf(sock, 4096);
        b.submit(
            1,
            Op::SendFile {
                fd: sock,
                file,
                offset: 0,
                len: data.len(),
            },
        );
        let mut out = Vec::new();
        b.wait(&mut out, Some(Duration::from_millis(50))).unwrap();
        assert!(out.is_empty(), "{out:?}");
        b.submit(2, Op::Cancel { target: 1 });
        let (last, cancel) = target_and_cancel(b, 1, 2);
        assert_eq!(errno_of(&last), Some(libc::ECANCELED), "{last:?}");
        assert!(cancel.is_ok(), "{cancel:?}");
        b.submit(3, Op::Close { fd: sock });
        assert!(collect(b, 1)[0].result.is_ok());
        drop(s);
        // Another connection, another range: exactly its bytes arrive.
        let l = listener();
        let addr = l.local_addr().unwrap();
        let client = reader(addr, 0, 0);
        let fd = accept_one(b, &l);
        let (off, len) = (777, (2 << 20) + 5);
        b.submit(
            4,
            Op::SendFile {
                fd,
                file,
                offset: off as u64,
                len,
            },
        );
        let c = collect(b, 1).pop().unwrap();
        assert_eq!(c.result.unwrap(), len);
        b.submit(5, Op::Close { fd });
        assert!(collect(b, 1)[0].result.is_ok());
        let got = join_driving(b, client);
        assert!(
            got == data[off..off + len],
            "the peer read {} other bytes",
            got.len()
        );
        b.submit(6, Op::Close { fd: file });
        assert!(collect(b, 1)[0].result.is_ok());
        std::fs::remove_file(path).unwrap();
    });
}

/// Hostile review (session 22): a SendFile cancelled, its socket closed, or its source file
/// closed in the very batch that starts it — its splice round in flight — completes exactly once, and whatever its pipe still held
/// never reaches a later op's peer: twelve in a row on one backend, each peer checked to read
/// a prefix of its own range only (the file's bytes never repeat, so a foreign byte shows).
#[test]
fn sendfile_stopped_in_its_batch_leaks_nothing_into_the_next() {
    each_file_send(
        "sendfile_stopped_in_its_batch_leaks_nothing_into_the_next",
        |b| {
            if !b.sendfile_native() {
                return;
            }
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
            let data: Vec<u8> = (0..6 << 20)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let (path, file) = temp_file_with(&format!("stopped-{}", b.name()), &data);
            for i in 0..12u64 {
                let l = listener();
                let addr = l.local_addr().unwrap();
                let peer = std::thread::spawn(move || {
                    let mut s = TcpStream::connect(addr).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                    let mut got = Vec::new();
                    let _ = s.read_to_end(&mut got);
                    got
                });
                let sock = accept_one(b, &l);
                let (off, len) = ((i as usize * 77_777) % (3 << 20) + 1, (1 << 20) + 3);
                let token = 100 + i;
                // Every third op sends from a descriptor of its own, closed in the batch.
                let src = if i % 3 == 2 {
                    std::fs::File::open(&path).unwrap().into_raw_fd()
                } else {
                    file
                };
                b.submit(
                    token,
                    Op::SendFile {
                        fd: sock,
                        file: src,
                        offset: off as u64,
                        len,
                    },
                );
                if i % 3 == 0 {
                    b.submit(9, Op::Cancel { target: token });
                    let (last, cancel) = target_and_cancel(b, token, 9);
                    match &last {
                        Ok(n) => assert_eq!(*n, len, "a short success"),
                        Err(_) => assert_eq!(errno_of(&last), Some(libc::ECANCELED), "{last:?}"),
                    }
                    let _ = cancel;
                    b.submit(8, Op::Close { fd: sock });
                    assert!(collect(b, 1)[0].result.is_ok());
                } else {
                    let stop = if src == file { sock } else { src };
                    b.submit(8, Op::Close { fd: stop });
                    let mut lasts = 0;
                    let closed = std::cell::Cell::new(false);
                    run(
                        b,
                        Duration::from_secs(10),
                        |_, c| {
                            if c.token == token {
                                assert!(!c.more);
                                lasts += 1;
                            } else if c.token == 8 {
                                assert!(c.result.is_ok(), "{:?}", c.result);
                                closed.set(true);
                            }
                        },
                        || closed.get(),
                    );
                    assert_eq!(lasts, 1, "the sendfile's completions before its close's");
                    let mut out = Vec::new();
                    b.wait(&mut out, Some(Duration::from_millis(20))).unwrap();
                    assert!(out.iter().all(|c| c.token != token), "{out:?}");
                    if stop != sock {
                        b.submit(8, Op::Close { fd: sock });
                        assert!(collect(b, 1)[0].result.is_ok());
                    }
                }
                let got = join_driving(b, peer);
                assert!(
                    got.len() <= len,
                    "op {i}: {} bytes for a {len}-byte range",
                    got.len()
                );
                assert!(
                    got == data[off..off + got.len()],
                    "op {i}: the peer read bytes not of its range"
                );
                // The next op, whole: exactly its own bytes, whatever pipe it was given.
                let l = listener();
                let addr = l.local_addr().unwrap();
                let peer = std::thread::spawn(move || {
                    let mut s = TcpStream::connect(addr).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                    let mut got = Vec::new();
                    let _ = s.read_to_end(&mut got);
                    got
                });
                let sock = accept_one(b, &l);
                let (off, len) = (off + 4099, 300_007);
                b.submit(
                    7,
                    Op::SendFile {
                        fd: sock,
                        file,
                        offset: off as u64,
                        len,
                    },
                );
                let c = collect(b, 1).pop().unwrap();
                assert_eq!((c.token, c.result.unwrap()), (7, len));
                b.submit(8, Op::Close { fd: sock });
                assert!(collect(b, 1)[0].result.is_ok());
                let got = join_driving(b, peer);
                assert!(
                    got == data[off..off + len],
                    "after op {i}: the next op's peer read {} bytes, not its range",
                    got.len()
                );
            }
            b.submit(3, Op::Close { fd: file });
            assert!(collect(b, 1)[0].result.is_ok());
            std::fs::remove_file(path).unwrap();
        },
    );
}

/// epoll moves a SendFile at most a round (`Poller::SENDFILE_ROUND`, 48 KiB) per turn of its
/// socket, then lets the other ready fds go (benches/load/README.md, point 7): a send on another
/// connection, queued after a 256 KiB SendFile that the socket could take whole, completes
/// first; both peers read exactly their bytes.
#[test]
fn epoll_sendfile_yields_to_other_connections() {
    if !selected().contains(&Kind::Epoll) {
        println!("epoll_sendfile_yields_to_other_connections: epoll not selected");
        return;
    }
    {
        let name = "epoll";
        let _watch = Watched::new("epoll_sendfile_yields_to_other_connections", name);
        let b = &mut *backends::open(Kind::Epoll, &Options::default())
            .expect("open")
            .backend;
        let data = pattern(256 << 10);
        let (path, file) = temp_file_with(&format!("yield-{name}"), &data);
        let (la, lb) = (listener(), listener());
        let (ra, rb) = (
            reader(la.local_addr().unwrap(), 0, 0),
            reader(lb.local_addr().unwrap(), 0, 0),
        );
        let a = accept_one(b, &la);
        let bs = accept_one(b, &lb);
        // Room for the whole range at once (the kernel doubles it): without rounds, one
        // sendfile call would take it all in the socket's first turn.
        set_sndbuf(a, 1 << 20);
        b.submit(
            10,
            Op::SendFile {
                fd: a,
                file,
                offset: 0,
                len: data.len(),
            },
        );
        b.submit(
            11,
            Op::Send {
                fd: bs,
                buf: SendBuf {
                    head: b"hello".to_vec(),
                    body: Body::Empty,
                },
            },
        );
        let got = collect(b, 2);
        let order: Vec<u64> = got.iter().map(|c| c.token).collect();
        assert_eq!(order, vec![11, 10], "on {name}: {got:?}");
        assert_eq!(got[1].result.as_ref().ok(), Some(&data.len()));
        b.submit(12, Op::Close { fd: a });
        b.submit(13, Op::Close { fd: bs });
        assert!(collect(b, 2).iter().all(|c| c.result.is_ok()));
        assert!(
            join_driving(b, ra) == data,
            "on {name}: the SendFile's peer"
        );
        assert_eq!(join_driving(b, rb), b"hello", "on {name}: the send's peer");
        b.submit(14, Op::Close { fd: file });
        assert!(collect(b, 1)[0].result.is_ok());
        std::fs::remove_file(path).unwrap();
        println!("epoll_sendfile_yields_to_other_connections: ran on {name}");
    }
}

/// Two receives that fill a wait's bound turn after turn (their peers wrote far more than a
/// turn reads) must not keep a third, ready receive waiting: the fds a wait did not reach go
/// before those it ran again.
#[test]
fn busy_receives_do_not_starve_a_ready_one() {
    let opts = Options {
        buf_size: 64,
        ..Options::default()
    };
    each_backend_with("busy_receives_do_not_starve_a_ready_one", opts, |b| {
        let (hogs, quiet) = ([nonblocking_pair(), nonblocking_pair()], nonblocking_pair());
        for (_, peer) in &hogs {
            // As much as the socket takes: thousands of 64-byte receives.
            let chunk = vec![7u8; 4096];
            while (&*peer).write(&chunk).is_ok() {}
        }
        (&quiet.1).write_all(b"q").unwrap();
        b.submit(1, Op::Recv { fd: hogs[0].0 });
        b.submit(2, Op::Recv { fd: hogs[1].0 });
        b.submit(3, Op::Recv { fd: quiet.0 });
        let mut out = Vec::new();
        let mut hog_bytes = 0;
        let mut quiet_seen = false;
        for _ in 0..8 {
            b.wait(&mut out, Some(Duration::from_millis(200))).unwrap();
            for c in out.drain(..) {
                let n = *c.result.as_ref().unwrap();
                if c.token == 3 {
                    quiet_seen = true;
                } else {
                    hog_bytes += n;
                }
                if let Buf::Recv(buf) = c.buf {
                    b.release(buf);
                }
            }
            if quiet_seen {
                break;
            }
        }
        assert!(
            quiet_seen,
            "{}: the quiet receive waited 8 waits while the busy ones read {hog_bytes} bytes",
            b.name()
        );
        close_all(b, &[hogs[0].0, hogs[1].0, quiet.0], 100);
    });
}
