//! Heap allocations per request on a warm keep-alive connection (issue 12, item 3).
//!
//! A counting global allocator wraps the system one; the server runs in this process (so its
//! allocations are counted) on an ephemeral port on 127.0.0.1, on every backend; the client is
//! a plain `TcpStream` with a stack buffer, which allocates nothing while counting is on. After
//! 50 warm-up requests, five windows of 20 GETs of a small cached file are counted — then the
//! same for a 200 KB file the open-file cache holds open (sent from its shared descriptor) —, and the
//! fewest allocations of any window count (a second boundary inside a window may add the
//! server's once-a-second work: the date, the cache revalidation).
//!
//! A second test sends sixteen pipelined GETs per write (their responses coalesced into one
//! send) and counts the same way.
//!
//! None may allocate: the bound is zero. Found with a backtrace per allocation and removed from
//! this path (so a new one fails this test): the boxed request record, its host and path
//! Strings (a worker-wide pool of emptied records), the response head's buffer (back from
//! the send's completion into a worker-wide pool), the mapped file path (a pooled `PathBuf`
//! lent to the reply), the output queue's memory (idle connections give it to a worker-wide
//! pool, so an idle connection still holds none), the percent-decoding copy of a path without
//! `%`, `normalize_host`'s copy of a lower-case Host, the readiness adapter's ready list and
//! the io_uring send op's box.
//!
//! Not timed: a count of allocations, whatever the machine's speed.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

/// Allocations (and reallocations) counted while `ON` is set, on every thread.
struct Counting;
static ON: AtomicBool = AtomicBool::new(false);
/// The counter is global: the tests of this binary (which the harness runs in parallel) take
/// turns, or one's server would be counted in the other's windows.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
static COUNT: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the counter is a relaxed
// side effect that never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if ON.load(SeqCst) {
            COUNT.fetch_add(1, SeqCst);
        }
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if ON.load(SeqCst) {
            COUNT.fetch_add(1, SeqCst);
        }
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if ON.load(SeqCst) {
            COUNT.fetch_add(1, SeqCst);
        }
        // SAFETY: as above.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const WINDOW: usize = 20;

const BODY_LEN: usize = 612;

/// A file too large for the small-file cache: kept open by the open-file cache instead, and
/// sent by sendfile (or backend reads) from the shared descriptor.
const BIG_LEN: usize = 200_000;

/// One GET of `path` (whose body is `len` bytes) and its whole response, read into `buf`; no
/// allocation.
fn get(s: &mut TcpStream, path: &[u8], len: usize, buf: &mut [u8]) {
    // The request in one write (on the stack): a head split over several segments would
    // measure the server's partial-head path instead.
    let mut req = [0u8; 128];
    let parts: [&[u8]; 3] = [b"GET ", path, b" HTTP/1.1\r\nHost: localhost\r\n\r\n"];
    let mut n = 0;
    for p in parts {
        req[n..n + p.len()].copy_from_slice(p);
        n += p.len();
    }
    s.write_all(&req[..n]).unwrap();
    let mut got = 0;
    loop {
        let n = s.read(&mut buf[got..]).unwrap();
        assert!(n > 0, "the server closed the keep-alive connection");
        got += n;
        if let Some(p) = buf[..got.min(4096)]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
        {
            if got >= p + 4 + len {
                assert!(buf.starts_with(b"HTTP/1.1 200 "), "not a 200");
                assert_eq!(got, p + 4 + len, "more than one response");
                return;
            }
        }
    }
}

/// The fewest allocations counted in any of five windows of `round` run `n` times.
fn fewest_allocations(n: usize, mut round: impl FnMut()) -> usize {
    let mut fewest = usize::MAX;
    for _ in 0..5 {
        COUNT.store(0, SeqCst);
        ON.store(true, SeqCst);
        for _ in 0..n {
            round();
        }
        ON.store(false, SeqCst);
        fewest = fewest.min(COUNT.load(SeqCst));
    }
    fewest
}

/// The fewest allocations in any of five windows of [`WINDOW`] GETs of `path`, after 50
/// warm-up GETs.
fn fewest(s: &mut TcpStream, path: &[u8], len: usize, buf: &mut [u8]) -> usize {
    for _ in 0..50 {
        get(s, path, len, buf);
    }
    fewest_allocations(WINDOW, || get(s, path, len, buf))
}

/// Sixteen pipelined GETs in one write, and their sixteen responses read whole; no allocation.
fn get_pipelined(s: &mut TcpStream, buf: &mut [u8]) {
    const ONE: &[u8] = b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut req = [0u8; ONE.len() * DEPTH];
    for chunk in req.chunks_mut(ONE.len()) {
        chunk.copy_from_slice(ONE);
    }
    s.write_all(&req).unwrap();
    let (mut got, mut seen, mut at) = (0, 0, 0);
    while seen < DEPTH {
        let n = s.read(&mut buf[got..]).unwrap();
        assert!(n > 0, "the server closed the keep-alive connection");
        got += n;
        // Count the complete responses from `at` on.
        while let Some(p) = buf[at..got].windows(4).position(|w| w == b"\r\n\r\n") {
            if got < at + p + 4 + BODY_LEN {
                break;
            }
            assert!(buf[at..].starts_with(b"HTTP/1.1 200 "), "not a 200");
            at += p + 4 + BODY_LEN;
            seen += 1;
        }
    }
    assert_eq!(at, got, "more than {DEPTH} responses");
}

const DEPTH: usize = 16;

/// Run an in-process server on `backend` (its root holds `index.html`, 612 B, and `big.bin`,
/// 200 KB) and hand `f` a connection to it.
fn with_server(backend: &str, f: impl FnOnce(&mut TcpStream)) {
    let dir = common::temp_dir();
    common::write_file(&dir, "index.html", vec![b'x'; BODY_LEN]);
    common::write_file(&dir, "big.bin", vec![b'y'; BIG_LEN]);
    let port = common::free_port();
    let conf = format!(
        "workers 1;\nerror_log stderr error;\naccess_log off;\nkeepalive_requests 100000;\n\
         server {{ listen 127.0.0.1:{port}; root {}; location / {{ }} }}\n",
        dir.display()
    );
    let cfg = webserv::config::parse_str(&conf, "alloc_free.conf", &dir).unwrap();
    let control = webserv::server::Control::new(cfg);
    let opts = webserv::server::RunOptions {
        backend: Some(backend.parse().unwrap()),
        no_sendfile: false,
        inherited: Vec::new(),
        notify: Arc::new(webserv::systemd::Notifier::from_env()),
    };
    let c = control.clone();
    let server = std::thread::spawn(move || webserv::server::serve(c, &opts));
    let mut s = None;
    for _ in 0..250 {
        if let Ok(t) = TcpStream::connect(("127.0.0.1", port)) {
            s = Some(t);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut s = s.expect("the in-process server did not listen within 5 s");
    f(&mut s);
    drop(s);
    control.stop();
    server.join().unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn keep_alive_get_of_a_cached_or_open_file_allocates_nothing() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // One backend at a time in this process: the counter is global.
    common::for_each_backend("alloc_free", |backend| {
        let (mut small, mut big) = (usize::MAX, usize::MAX);
        with_server(backend, |s| {
            let mut buf = vec![0u8; BIG_LEN + 4096];
            small = fewest(s, b"/index.html", BODY_LEN, &mut buf);
            big = fewest(s, b"/big.bin", BIG_LEN, &mut buf);
        });
        for (what, n) in [("cached 612 B file", small), ("hot 200 KB file", big)] {
            eprintln!(
                "alloc_free: {backend}: {n} allocations in {WINDOW} GETs of a {what} ({:.1} each)",
                n as f64 / WINDOW as f64
            );
        }
        assert!(
            small == 0,
            "{backend}: {small} allocations in {WINDOW} keep-alive GETs of a cached file \
             (none expected): an allocation on the request path"
        );
        assert!(
            big == 0,
            "{backend}: {big} allocations in {WINDOW} keep-alive GETs of a file the open-file \
             cache holds (none expected): an allocation on the request path"
        );
    });
}

/// Pipelined requests: the responses coalesced into one send use a pooled buffer, and each
/// response's head buffer goes back to its pool as it is copied (issue 12: the pipelined row).
#[test]
fn pipelined_gets_of_a_cached_file_allocate_nothing() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    common::for_each_backend("alloc_free_pipelined", |backend| {
        let mut fewest = usize::MAX;
        with_server(backend, |s| {
            let mut buf = vec![0u8; 32768];
            for _ in 0..20 {
                get_pipelined(s, &mut buf);
            }
            fewest = fewest_allocations(4, || get_pipelined(s, &mut buf));
        });
        let n = 4 * DEPTH;
        eprintln!("alloc_free: {backend}: {fewest} allocations in {n} pipelined requests");
        assert!(
            fewest == 0,
            "{backend}: {fewest} allocations in {n} pipelined GETs of a cached file (none \
             expected): an allocation on the pipelined path"
        );
    });
}
