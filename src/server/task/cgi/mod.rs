//! The CGI task (RFC 3875): one script run for one request.
//!
//! It owns the child (through the registry, [`child`]), the three pipes and their buffers:
//! - **stdin**: request-body bytes arrive by `on_body`; at most one write is in flight and at
//!   most [`STDIN_HIGH_WATER`] bytes wait, so a slow script slows the client (back-pressure).
//! - **stdout**: read in pieces. Until the first [`BUFFER`] bytes are in, nothing is committed:
//!   output that ends there leaves as one write with `Content-Length`, after the child's exit
//!   status is known (a script that failed gets 500, its stderr tail in the error log). Larger
//!   output commits its head and streams, one read per drained output queue.
//! - **stderr**: read continuously; the last [`STDERR_TAIL`] bytes are kept for the log.
//! - **exit**: the child-exit op, routed here by the registry while the task lives.
//!
//! `cgi_timeout` is an inactivity limit: any stdin or stdout progress restarts it. Expiry before
//! the head is committed answers 504; after, the connection closes without a clean end.

pub mod child;
pub mod framing;
mod output;
pub mod plan;

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use backends::{Buf, Completion, Op};

use super::{Abort, Cx, Step, Task};
use crate::cgi::{CgiHead, CgiHeadParser};
use crate::server::ident::{TaskId, TaskKind, Trail};
use crate::server::token::OpTag;
use child::{ChildRef, Owner};
use framing::{Framing, Meta};

/// Body bytes waiting for the child's stdin before the connection stops feeding more.
pub const STDIN_HIGH_WATER: usize = 64 * 1024;
/// Output up to this size is answered with a Content-Length, after the exit status.
pub const BUFFER: usize = 64 * 1024;
/// Size of each stdout read.
const READ_SIZE: usize = 64 * 1024;
/// After stdout's EOF, how long the exit status is awaited before the answer goes out anyway.
const EXIT_GRACE: Duration = Duration::from_secs(1);
/// The stderr bytes kept for the error log.
const STDERR_TAIL: usize = 1024;

pub struct CgiTask {
    id: TaskId,
    plan: Option<plan::CgiPlan>,
    meta: Meta,
    pid: u32,
    child: Option<ChildRef>,
    stdin: Option<RawFd>,
    stdin_busy: bool,
    in_buf: Vec<u8>,
    body_done: bool,
    /// The whole request body has arrived (not merely: the script takes no more of it).
    body_received: bool,
    stdout: Option<RawFd>,
    reading: bool,
    out_eof: bool,
    stderr: Option<RawFd>,
    err_tail: Vec<u8>,
    parser: Option<CgiHeadParser>,
    head: Option<CgiHead>,
    held: Vec<u8>,
    framing: Option<Framing>,
    exit: Option<i32>,
    /// The output ended without a valid head (502 unless the exit status says 500).
    bad_head: Option<u16>,
    /// Stdout ended and the exit status was awaited for [`EXIT_GRACE`] in vain.
    exit_waited: bool,
    timeout: Duration,
    deadline: Instant,
    out_bytes: u64,
    trail: Trail,
    over: bool,
}

impl CgiTask {
    pub fn new(id: u32, plan: plan::CgiPlan, meta: Meta, has_body: bool) -> CgiTask {
        CgiTask {
            id: TaskId {
                kind: TaskKind::Cgi,
                id,
            },
            timeout: plan.timeout,
            plan: Some(plan),
            meta,
            pid: 0,
            child: None,
            stdin: None,
            stdin_busy: false,
            in_buf: Vec::new(),
            body_done: !has_body,
            body_received: !has_body,
            stdout: None,
            reading: false,
            out_eof: false,
            stderr: None,
            err_tail: Vec::new(),
            parser: Some(CgiHeadParser::new()),
            head: None,
            held: Vec::new(),
            framing: None,
            exit: None,
            bad_head: None,
            exit_waited: false,
            deadline: Instant::now(),
            out_bytes: 0,
            trail: Trail::default(),
            over: false,
        }
    }

    fn read_stdout(&mut self, cx: &mut Cx) {
        if let (Some(fd), false, false) = (self.stdout, self.reading, self.out_eof) {
            self.reading = true;
            cx.submit(
                OpTag::CgiStdout,
                Op::Read {
                    fd,
                    buf: Vec::with_capacity(READ_SIZE),
                    offset: None,
                },
            );
        }
    }

    fn read_stderr(&mut self, cx: &mut Cx, fd: RawFd) {
        cx.submit(
            OpTag::CgiStderr,
            Op::Read {
                fd,
                buf: Vec::with_capacity(4096),
                offset: None,
            },
        );
    }

    fn kick_stdin(&mut self, cx: &mut Cx) {
        let Some(fd) = self.stdin else { return };
        if self.stdin_busy {
            return;
        }
        if !self.in_buf.is_empty() {
            self.stdin_busy = true;
            let buf = std::mem::take(&mut self.in_buf);
            self.trail.push("stdin write", buf.len() as u64);
            cx.submit(
                OpTag::CgiStdin,
                Op::Write {
                    fd,
                    buf,
                    offset: None,
                },
            );
        } else if self.body_done {
            self.stdin = None;
            self.trail.push("stdin close", 0);
            cx.submit(OpTag::CgiStdinClose, Op::Close { fd });
        }
    }

    fn progress(&mut self, now: Instant) {
        self.deadline = now + self.timeout;
    }

    /// Fail the request; the connection logs it with this task's trail, which ends with `why`.
    fn fail(&mut self, cx: &mut Cx, status: u16, why: &'static str) -> Step {
        self.trail.push(why, u64::from(status));
        self.abort(Abort::Closing, cx);
        if self.framing.is_some() {
            Step::Close
        } else {
            Step::Fail(status)
        }
    }

    fn close(&mut self, cx: &mut Cx) -> Step {
        self.abort(Abort::Closing, cx);
        Step::Close
    }
}

impl Task for CgiTask {
    fn id(&self) -> TaskId {
        self.id
    }

    fn start(&mut self, cx: &mut Cx) -> Step {
        let Some(plan) = self.plan.take() else {
            return Step::Fail(500);
        };
        if let Err(code) = crate::cgi::check_script(&plan.script, plan.interpreter.as_deref()) {
            return Step::Fail(code);
        }
        // Through the backend (contract invariant 12), so a simulated backend runs its own.
        let sp = match crate::cgi::launch(plan.interpreter.as_deref(), &plan.script).and_then(|l| {
            let args = l.arg_refs();
            cx.be.spawn(&backends::spawn::Spec {
                program: &l.program,
                args: &args,
                env: &plan.env,
                dir: l.dir.as_deref(),
            })
        }) {
            Ok(s) => {
                crate::server::metrics::mine().cgi_spawned.add(1);
                s
            }
            Err(e) => {
                crate::server::metrics::mine().cgi_failed.add(1);
                crate::error!("{}: cannot run {}: {e}", cx.id, plan.script.display());
                return Step::Fail(crate::server::reply::static_file::io_status(&e));
            }
        };
        self.pid = sp.pid;
        let owner = Owner {
            conn: cx.id.conn,
            gen: cx.id.gen,
            tseq: cx.tseq,
        };
        self.child = cx.children.register(sp.pid, owner, cx.be);
        self.stdin = Some(sp.stdin);
        self.stdout = Some(sp.stdout);
        let err = sp.stderr;
        self.stderr = Some(err);
        self.trail.push("spawned pid", u64::from(sp.pid));
        crate::trace!(
            "{}: spawned pid {} ({})",
            cx.id,
            sp.pid,
            plan.script.display()
        );
        if self.child.is_none() {
            // No registry slot: do not run a child nobody can reap.
            return self.fail(cx, 503, "child registry full");
        }
        self.progress(cx.now);
        self.read_stdout(cx);
        self.read_stderr(cx, err);
        self.kick_stdin(cx);
        Step::Pending
    }

    fn body_room(&self) -> usize {
        if self.over {
            return 0;
        }
        if self.stdin.is_none() {
            // The script closed its stdin: the rest of the body is read and dropped.
            return usize::MAX;
        }
        STDIN_HIGH_WATER.saturating_sub(self.in_buf.len())
    }

    fn on_body(&mut self, data: &[u8], done: bool, cx: &mut Cx) -> Step {
        if self.over {
            return Step::Pending;
        }
        if self.stdin.is_some() {
            self.in_buf.extend_from_slice(data);
        }
        self.body_done |= done;
        self.body_received |= done;
        self.kick_stdin(cx);
        Step::Pending
    }

    fn on_completion(&mut self, op: OpTag, c: Completion, cx: &mut Cx) -> Step {
        if self.over {
            return Step::Pending; // aborted: what is still in flight just drains
        }
        match op {
            OpTag::CgiStdin => {
                self.stdin_busy = false;
                match c.result {
                    Ok(n) => {
                        self.progress(cx.now);
                        self.trail.push("stdin written", n as u64);
                    }
                    Err(e) => {
                        // The script stopped reading: the rest of the body is dropped.
                        crate::trace!("{}: stdin: {e}", cx.id);
                        self.in_buf = Vec::new();
                        self.body_done = true;
                        if let Some(fd) = self.stdin.take() {
                            cx.submit(OpTag::CgiStdinClose, Op::Close { fd });
                        }
                    }
                }
                self.kick_stdin(cx);
                Step::Pending
            }
            OpTag::CgiStdout => {
                self.reading = false;
                let Buf::Vec(data) = c.buf else {
                    return Step::Pending;
                };
                match c.result {
                    Ok(n) if n > 0 => {
                        self.progress(cx.now);
                        self.out_bytes += n as u64;
                        self.on_output(&data, cx)
                    }
                    Ok(_) => {
                        self.trail.push("stdout eof after", self.out_bytes);
                        crate::trace!("{}: stdout eof after {} B", cx.id, self.out_bytes);
                        self.on_eof(cx)
                    }
                    Err(e) => {
                        crate::error!("{}: stdout: {e}", cx.id);
                        self.on_eof(cx)
                    }
                }
            }
            OpTag::CgiStderr => {
                let Buf::Vec(data) = c.buf else {
                    return Step::Pending;
                };
                match c.result {
                    Ok(n) if n > 0 => {
                        self.err_tail.extend_from_slice(&data);
                        let excess = self.err_tail.len().saturating_sub(STDERR_TAIL);
                        self.err_tail.drain(..excess);
                        if let Some(fd) = self.stderr {
                            self.read_stderr(cx, fd);
                        }
                    }
                    _ => {
                        if let Some(fd) = self.stderr.take() {
                            cx.submit(OpTag::CgiStderrClose, Op::Close { fd });
                        }
                        if self.out_eof && self.exit.is_some() && !self.over {
                            // The answer waited for this stderr tail (a failed script).
                            return self.after_output_end(cx);
                        }
                    }
                }
                Step::Pending
            }
            OpTag::ChildExit => {
                let status = c.result.unwrap_or(0) as i32;
                self.exit = Some(status);
                self.trail.push("exit status", status as u64);
                crate::trace!("{}: pid {} exited ({status:#x})", cx.id, self.pid);
                self.child = None; // reaped: nothing to signal any more
                if !self.out_eof {
                    // Something it started still holds its stdout: stop that group.
                    cx.children.stop_group_of_exited(self.pid, cx.now, cx.be);
                    return Step::Pending;
                }
                self.after_output_end(cx)
            }
            _ => Step::Pending,
        }
    }

    fn on_drained(&mut self, cx: &mut Cx) -> Step {
        if !self.over && self.framing.is_some() {
            self.read_stdout(cx);
        }
        Step::Pending
    }

    fn deadline(&self) -> Option<Instant> {
        (!self.over).then_some(self.deadline)
    }

    fn on_deadline(&mut self, cx: &mut Cx) -> Step {
        if self.out_eof {
            // The answer is complete; the script has not exited within the grace: take it.
            self.exit_waited = true;
            self.trail.push("exit not awaited", 0);
            return self.after_output_end(cx);
        }
        crate::server::metrics::mine().cgi_timed_out.add(1);
        crate::error!(
            "{}: cgi_timeout ({:?} without progress)",
            cx.id,
            self.timeout
        );
        let committed = self.framing.is_some();
        self.abort(Abort::Timeout, cx);
        if committed {
            Step::Close
        } else {
            Step::Fail(504)
        }
    }

    fn abort(&mut self, why: Abort, cx: &mut Cx) {
        if self.over {
            return;
        }
        self.over = true;
        for (fd, op) in [
            (self.stdin.take(), OpTag::CgiStdinClose),
            (self.stdout.take(), OpTag::CgiStdoutClose),
            (self.stderr.take(), OpTag::CgiStderrClose),
        ] {
            if let Some(fd) = fd {
                cx.submit(op, Op::Close { fd });
            }
        }
        self.in_buf = Vec::new();
        self.held = Vec::new();
        if let Some(r) = self.child.take() {
            if why == Abort::Finished {
                // Its answer is complete: let it exit on its own, within cgi_timeout.
                cx.children
                    .release(r, cx.now + self.timeout.max(child::KILL_AFTER));
            } else {
                crate::trace!("{}: terminating pid {} ({why:?})", cx.id, self.pid);
                cx.children.terminate(r, cx.now, &mut *cx.be);
            }
        }
    }

    fn describe(&self) -> String {
        format!(
            "pid {}, stdout {} B, head committed: {}, exit {:?}; last: {}",
            self.pid,
            self.out_bytes,
            self.framing.is_some(),
            self.exit,
            self.trail
        )
    }
}
