//! A small pool of threads for the system calls that may block and that readiness cannot
//! watch (invariant 13): [`crate::Op::OpenAt`], [`crate::Op::RenameAt`] and
//! [`crate::Op::UnlinkAt`] on the readiness backends, and their reads and writes of regular
//! files; [`crate::Op::ListDir`] on every backend (no kernel has an opcode for reading a
//! directory: io_uring takes its pool's results after its eventfd wake-up). A job is queued
//! by the backend's thread, run by a pool thread, and its result handed back through the
//! backend's own wake-up ([`Offload::take_done`] in its `wait`), never to another thread.
//!
//! Threads start on demand, up to [`MAX_THREADS`], and stay (an idle one sleeps on a
//! condition variable). Dropping the pool asks them to stop after their current job; a job
//! still running then is not waited for (its thread finishes and exits alone), and an fd it
//! opened after the drop is closed by it.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::{Token, Wake};

/// The caller's waker of a backend with a pool: marks the wake-up as the caller's, then wakes
/// the backend (whose pool wakes it too, without the mark: only the caller's wake-ups are
/// completed with [`crate::WAKE_TOKEN`]).
pub(crate) struct UserWake {
    pub(crate) flag: Arc<AtomicBool>,
    pub(crate) inner: Arc<dyn Wake>,
}

impl Wake for UserWake {
    fn wake(&self) -> io::Result<()> {
        self.flag.store(true, Ordering::Release);
        self.inner.wake()
    }
}

/// At most this many lookups run at once (each may wait for a disk read).
pub const MAX_THREADS: usize = 4;

/// One blocking call and the token it completes.
#[derive(Debug)]
pub struct Job {
    pub token: Token,
    pub call: Call,
}

/// What a job runs: a call on names ([`crate::PathCall`]), or a read or write of a regular
/// file — which readiness cannot watch (a file is always "ready") and which waits for the
/// disk when the page cache does not have it.
#[derive(Debug)]
pub enum Call {
    Path(crate::PathCall),
    /// [`crate::Op::Read`]: once, into the spare capacity of `buf`.
    Read {
        fd: RawFd,
        buf: Vec<u8>,
        offset: Option<u64>,
    },
    /// [`crate::Op::Write`]: `buf` whole (invariant 6).
    Write {
        fd: RawFd,
        buf: Vec<u8>,
        offset: Option<u64>,
    },
}

impl Call {
    /// Run it, blocking.
    pub fn run(&mut self) -> io::Result<usize> {
        match self {
            Call::Path(p) => p.run(),
            Call::Read { fd, buf, offset } => loop {
                match crate::sys::read_spare(*fd, buf, *offset) {
                    Err(e) if crate::sys::interrupted(&e) => {}
                    r => return r,
                }
            },
            Call::Write { fd, buf, offset } => {
                let mut done = 0;
                while done < buf.len() {
                    let at = offset.map(|o| o + done as u64);
                    match crate::sys::write_at(*fd, &buf[done..], at) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => done += n,
                        Err(e) if crate::sys::interrupted(&e) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(done)
            }
        }
    }

    /// Whether a successful result is a new fd (which someone must close).
    pub fn opens(&self) -> bool {
        matches!(self, Call::Path(p) if p.opens())
    }

    pub fn kind(&self) -> crate::OpKind {
        match self {
            Call::Path(p) => p.kind(),
            Call::Read { .. } => crate::OpKind::Read,
            Call::Write { .. } => crate::OpKind::Write,
        }
    }

    /// What the completion gives back.
    pub fn into_buf(self) -> crate::Buf {
        match self {
            Call::Path(p) => p.into_buf(),
            Call::Read { buf, .. } | Call::Write { buf, .. } => crate::Buf::Vec(buf),
        }
    }
}

#[derive(Default)]
struct Inner {
    queued: VecDeque<Job>,
    /// Tokens of the jobs running now.
    running: Vec<Token>,
    /// Finished jobs: token, result, and what the job carried (given back with the result).
    done: Vec<(Token, io::Result<usize>, Call)>,
    threads: usize,
    idle: usize,
    closing: bool,
}

struct Shared {
    inner: Mutex<Inner>,
    work: Condvar,
    wake: Arc<dyn Wake>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic on a pool thread cannot leave the queue half-changed: keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct Offload {
    shared: Arc<Shared>,
}

impl Offload {
    /// `wake` interrupts the owning backend's wait when a job is done.
    pub fn new(wake: Arc<dyn Wake>) -> Offload {
        Offload {
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner::default()),
                work: Condvar::new(),
                wake,
            }),
        }
    }

    /// Queue `job`; a thread is started when none is idle and fewer than [`MAX_THREADS`] run.
    ///
    /// `Err` only when no thread could be started and none runs: the job is then dropped, not
    /// queued (the caller completes it with the error — a job left queued would run later and
    /// complete a second time, on an fd the caller has closed meanwhile). When threads run, a
    /// failed start only leaves the job to them.
    pub fn submit(&self, job: Job) -> io::Result<()> {
        let mut g = self.shared.lock();
        if g.idle == 0 && g.threads < MAX_THREADS {
            let shared = self.shared.clone();
            match spawn_worker(shared) {
                Ok(()) => g.threads += 1,
                Err(e) if g.threads == 0 => return Err(e),
                Err(_) => {}
            }
        }
        g.queued.push_back(job);
        self.shared.work.notify_one();
        Ok(())
    }

    /// Cancel the job named `token`: `Some(true)` if it was still queued (it is dropped: the
    /// caller completes it with `ECANCELED`), `Some(false)` if it is running (it completes
    /// with its result), `None` if no job has that token.
    pub fn cancel(&self, token: Token) -> Option<bool> {
        let mut g = self.shared.lock();
        if let Some(i) = g.queued.iter().position(|j| j.token == token) {
            g.queued.remove(i);
            return Some(true);
        }
        g.running.contains(&token).then_some(false)
    }

    /// A caller's cancel (`token`) of the job `target`: a queued job is dropped and completes
    /// with `ECANCELED`, a running one completes with its own result later; the cancel itself
    /// completes with 0, or `ENOENT` when no job has that token. Returns whether the job was
    /// dropped.
    pub fn cancel_op(&self, target: Token, token: Token, out: &mut Vec<crate::Completion>) -> bool {
        let none = crate::Buf::None;
        let (dropped, result) = match self.cancel(target) {
            Some(true) => {
                let c = crate::Completion::new(target, Err(crate::sys::canceled()), none, false);
                out.push(c);
                (true, Ok(0))
            }
            Some(false) => (false, Ok(0)),
            None => (false, Err(io::Error::from_raw_os_error(libc::ENOENT))),
        };
        out.push(crate::Completion::new(
            token,
            result,
            crate::Buf::None,
            false,
        ));
        dropped
    }

    /// The results of the jobs done since the last call, in the order they finished.
    pub fn take_done(&self, out: &mut Vec<(Token, io::Result<usize>, crate::Buf)>) {
        out.extend(
            self.shared
                .lock()
                .done
                .drain(..)
                .map(|(t, r, call)| (t, r, call.into_buf())),
        );
    }

    /// Jobs queued or running (results not yet taken count too).
    pub fn pending(&self) -> usize {
        let g = self.shared.lock();
        g.queued.len() + g.running.len() + g.done.len()
    }
}

impl Drop for Offload {
    fn drop(&mut self) {
        let mut g = self.shared.lock();
        g.closing = true;
        g.queued.clear();
        // Results nobody will take: an fd opened for nobody is closed here.
        for (_, r, call) in g.done.drain(..) {
            if let (Ok(fd), true) = (r, call.opens()) {
                close(fd as RawFd);
            }
        }
        drop(g);
        self.shared.work.notify_all();
    }
}

/// Start one pool thread.
#[cfg(not(test))]
fn spawn_worker(shared: Arc<Shared>) -> io::Result<()> {
    std::thread::Builder::new()
        .name("webserv-offload".into())
        .spawn(move || worker(shared))
        .map(drop)
}

/// Start one pool thread, or fail as the system may (`EAGAIN`) while this thread's
/// `FAIL_SPAWN` is set.
#[cfg(test)]
fn spawn_worker(shared: Arc<Shared>) -> io::Result<()> {
    if tests::FAIL_SPAWN.with(|f| f.get()) {
        return Err(io::Error::from_raw_os_error(libc::EAGAIN));
    }
    std::thread::Builder::new()
        .name("webserv-offload".into())
        .spawn(move || worker(shared))
        .map(drop)
}

/// Close an fd a job opened for nobody.
fn close(fd: RawFd) {
    // SAFETY: `fd` was returned by the job's open and handed to no one: it is ours alone.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
}

fn worker(shared: Arc<Shared>) {
    let mut g = shared.lock();
    loop {
        if g.closing {
            break;
        }
        let Some(mut job) = g.queued.pop_front() else {
            g.idle += 1;
            g = shared.work.wait(g).unwrap_or_else(|e| e.into_inner());
            g.idle -= 1;
            continue;
        };
        g.running.push(job.token);
        drop(g);
        let result = job.call.run();
        let opened = job.call.opens();
        g = shared.lock();
        g.running.retain(|&t| t != job.token);
        if g.closing {
            if let (Ok(fd), true) = (&result, opened) {
                close(*fd as RawFd);
            }
            break;
        }
        g.done.push((job.token, result, job.call));
        drop(g);
        // An eventfd write or EVFILT_USER trigger fails only when the backend is gone (its
        // pool is then closing and nobody waits for the result).
        let _ = shared.wake.wake();
        g = shared.lock();
    }
    g.threads -= 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::time::{Duration, Instant};

    thread_local! {
        pub(super) static FAIL_SPAWN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    struct NoWake;
    impl Wake for NoWake {
        fn wake(&self) -> io::Result<()> {
            Ok(())
        }
    }

    fn read_job(token: Token, fd: RawFd) -> Job {
        Job {
            token,
            call: Call::Read {
                fd,
                buf: Vec::with_capacity(8),
                offset: None,
            },
        }
    }

    /// A job whose thread could not be started, while another thread is busy: it completes
    /// exactly once — never an error *and* later a result (the caller would have closed its
    /// fd after the error, and the late job would read or write whatever took that number).
    #[test]
    fn a_job_whose_thread_cannot_start_completes_once() {
        let pool = Offload::new(Arc::new(NoWake));
        let (a_read, mut a_write) = std::io::pipe().unwrap();
        let (b_read, mut b_write) = std::io::pipe().unwrap();
        b_write.write_all(b"b").unwrap();
        // Job 1 blocks its thread (a read of an empty pipe) until the test writes.
        pool.submit(read_job(1, a_read.as_raw_fd())).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while pool.shared.lock().running.is_empty() {
            assert!(Instant::now() < deadline, "job 1 never started");
            std::thread::sleep(Duration::from_millis(5));
        }
        FAIL_SPAWN.with(|f| f.set(true));
        let submitted = pool.submit(read_job(2, b_read.as_raw_fd()));
        FAIL_SPAWN.with(|f| f.set(false));
        a_write.write_all(b"a").unwrap();
        let mut done = Vec::new();
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            pool.take_done(&mut done);
            std::thread::sleep(Duration::from_millis(5));
        }
        let twos = done.iter().filter(|(t, _, _)| *t == 2).count();
        match submitted {
            Ok(()) => assert_eq!(twos, 1, "job 2 accepted, then completed {twos} times"),
            Err(e) => assert_eq!(twos, 0, "job 2 refused ({e}), then run anyway"),
        }
        assert!(done.iter().any(|(t, _, _)| *t == 1));
    }
}
