//! Simulated children and the pipes between them and the server.
//!
//! A child follows a [`ChildPlan`] the test gives at spawn: what it reads of its stdin, what it
//! writes to stdout and stderr (in random pieces, as the pipe has room), an optional silence,
//! its exit status, whether it ignores SIGTERM, and whether a background grandchild keeps its
//! stdout open after it exits (so the server sees the exit long before the EOF, or never).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::rng::Rng;

/// A pipe's capacity (Linux's default).
pub const PIPE_CAP: usize = 64 * 1024;

/// How a child treats its stdin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StdinUse {
    /// Reads it to EOF before writing anything (a CGI that parses its body first).
    All,
    /// Never reads it (writes to it block once the pipe is full; EPIPE after it exits).
    Ignore,
    /// Reads this many bytes, then closes it (the server's next write gets EPIPE).
    Some(usize),
}

/// What a simulated child does, decided by the test when the server spawns it.
#[derive(Clone, Debug)]
pub struct ChildPlan {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub stdin: StdinUse,
    /// Raw wait status at its normal exit (`code << 8`, or a signal number).
    pub status: i32,
    /// Stay silent for this long once this many stdout bytes are out.
    pub stall: Option<(usize, Duration)>,
    /// A background grandchild holds stdout open this long after the exit (`Duration::MAX`:
    /// until the server closes its end).
    pub hold_stdout: Option<Duration>,
    /// SIGTERM does nothing (only SIGKILL ends it).
    pub ignore_term: bool,
}

impl ChildPlan {
    /// A well-behaved script writing `stdout` and exiting 0.
    pub fn ok(stdout: Vec<u8>) -> ChildPlan {
        ChildPlan {
            stdout,
            stderr: Vec::new(),
            stdin: StdinUse::All,
            status: 0,
            stall: None,
            hold_stdout: None,
            ignore_term: false,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Pipe {
    pub buf: VecDeque<u8>,
    /// The read end is open (the child's for stdin, the server's for stdout/stderr).
    pub reader: bool,
    /// The write end is open (the server's for stdin; the child's — or its grandchild's — for
    /// stdout/stderr).
    pub writer: bool,
}

impl Pipe {
    pub fn new() -> Pipe {
        Pipe {
            buf: VecDeque::new(),
            reader: true,
            writer: true,
        }
    }
    pub fn room(&self) -> usize {
        PIPE_CAP.saturating_sub(self.buf.len())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Life {
    Running,
    /// Exited with this raw status, not yet reaped (a zombie: signals still reach nothing).
    Exited(i32),
    /// Its exit op completed: the pid may be reused, it must never be signalled again.
    Reaped,
}

#[derive(Debug)]
pub(crate) struct Child {
    pub pid: u32,
    pub plan: ChildPlan,
    pub stdin: usize,
    pub stdout: usize,
    pub stderr: usize,
    pub life: Life,
    pub read_in: usize,
    pub out_done: usize,
    pub err_done: usize,
    pub stdin_done: bool,
    pub stalled: bool,
    pub wake_at: Instant,
    /// The grandchild releases stdout at this time (`None` with a hold: never).
    pub holder_until: Option<Instant>,
    pub holding: bool,
    pub signals: Vec<i32>,
}

impl Child {
    /// Exit now with `status`: the child's ends close, except stdout while a grandchild holds it.
    pub fn exit(&mut self, status: i32, now: Instant, pipes: &mut [Pipe]) {
        if self.life != Life::Running {
            return;
        }
        self.life = Life::Exited(status);
        pipes[self.stdin].reader = false;
        pipes[self.stderr].writer = false;
        match self.plan.hold_stdout {
            Some(d) => {
                self.holding = true;
                self.holder_until = now.checked_add(d);
            }
            None => pipes[self.stdout].writer = false,
        }
    }

    /// One step of the child's plan at virtual time `now`.
    pub fn step(&mut self, now: Instant, pipes: &mut [Pipe], rng: &mut Rng) {
        if self.holding && self.holder_until.is_some_and(|t| t <= now) {
            self.holding = false;
            pipes[self.stdout].writer = false;
        }
        if self.life != Life::Running || self.wake_at > now || rng.chance(300) {
            return;
        }
        // Reading stdin first, as the plan says.
        if !self.stdin_done {
            let p = &mut pipes[self.stdin];
            let want = match self.plan.stdin {
                StdinUse::All => usize::MAX,
                StdinUse::Ignore => 0,
                StdinUse::Some(n) => n.saturating_sub(self.read_in),
            };
            let n = want.min(p.buf.len()).min(rng.range(1, PIPE_CAP));
            p.buf.drain(..n);
            self.read_in += n;
            match self.plan.stdin {
                StdinUse::All if !p.writer && p.buf.is_empty() => self.stdin_done = true,
                StdinUse::All => return,
                StdinUse::Ignore => self.stdin_done = true,
                StdinUse::Some(n) => {
                    if self.read_in >= n || (!p.writer && p.buf.is_empty()) {
                        p.reader = false;
                        p.buf.clear();
                        self.stdin_done = true;
                    } else {
                        return;
                    }
                }
            }
        }
        if let Some((at, d)) = self.plan.stall {
            if !self.stalled && self.out_done >= at {
                self.stalled = true;
                self.wake_at = now + d;
                return;
            }
        }
        for (which, done) in [
            (self.stdout, &mut self.out_done),
            (self.stderr, &mut self.err_done),
        ] {
            let data = if which == self.stdout {
                &self.plan.stdout
            } else {
                &self.plan.stderr
            };
            let p = &mut pipes[which];
            let left = data.len() - *done;
            if left == 0 {
                continue;
            }
            if !p.reader {
                // Nobody reads any more: a real child would die of SIGPIPE.
                *done = data.len();
                continue;
            }
            let mut n = left.min(p.room()).min(rng.range(1, 16 * 1024));
            if let Some((at, _)) = self.plan.stall {
                if which == self.stdout && !self.stalled && *done < at {
                    n = n.min(at - *done);
                }
            }
            p.buf.extend(&data[*done..*done + n]);
            *done += n;
        }
        self.wake_at = now + Duration::from_millis(rng.below(20) as u64);
        if self.out_done == self.plan.stdout.len() && self.err_done == self.plan.stderr.len() {
            self.exit(self.plan.status, now, pipes);
        }
    }

    /// When this child next does something by itself.
    pub fn next_event(&self) -> Option<Instant> {
        match self.life {
            Life::Running => Some(self.wake_at),
            _ if self.holding => self.holder_until,
            _ => None,
        }
    }
}
