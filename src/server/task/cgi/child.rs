//! The child registry: every CGI child from spawn until the backend reports it reaped.
//!
//! A CGI task holds a [`ChildRef`] (slot + generation), never a bare pid. Each child leads its
//! own process group (see `cgi::spawn`), and signals go to that group — the script and what it
//! started. They go through [`Children::terminate`] and the tick, which only ever signal an entry
//! that is registered and not yet reported exited (so its pid, which is the group's id, cannot
//! have been reused), with an id > 1: a reused slot, a child already reaped, or 0 (the server's
//! own group) can never be signalled. One exception, [`Children::stop_group_of_exited`], is
//! documented there.
//!
//! The exit op's token names the registry entry, so a child outlives its task safely: an
//! aborted task detaches (the child gets TERM, then KILL a second later from the tick), and
//! the exit completion frees the entry whenever it comes.

use std::time::{Duration, Instant};

use backends::{Backend, Op};

use crate::server::token::{OpTag, Slab, Tok};

/// How long a child has to exit after TERM before it gets KILL.
pub const KILL_AFTER: Duration = Duration::from_secs(1);

/// The request a child works for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub conn: u32,
    pub gen: u32,
    /// The task's sequence number on the connection.
    pub tseq: u32,
}

/// A task's handle on its child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChildRef {
    slot: u32,
    gen: u32,
}

struct Child {
    pid: u32,
    owner: Option<Owner>,
    /// When to send KILL (after TERM, or when a finished script overstays).
    kill_at: Option<Instant>,
    /// Its exit completion is in this loop turn's batch: the pid may already be reused.
    exited: bool,
    /// TERM was sent.
    termed: bool,
}

#[derive(Default)]
pub struct Children {
    slab: Slab<Child>,
    /// Groups of reaped children that were sent TERM: (group id, when to send KILL).
    groups: Vec<(u32, Instant)>,
    /// Signals sent, for the stray-signal tests and the status page.
    pub signalled: u64,
}

/// Signal the child's process group (its pid is the group id); ids that are not a real
/// process (0, 1, negative as a pid_t) are refused by `kill_group`.
fn signal(be: &mut dyn Backend, pid: u32, sig: libc::c_int) -> bool {
    be.kill_group(pid, sig).is_ok()
}

/// Signal the child alone: TERM goes to the script, which may end what it started its own way
/// (a shell runs its trap once its foreground command ends); the KILL that follows goes to the
/// whole group.
fn signal_leader(be: &mut dyn Backend, pid: u32, sig: libc::c_int) -> bool {
    be.kill(pid, sig).is_ok()
}

impl Children {
    /// Register a spawned child and submit its exit op.
    pub fn register(&mut self, pid: u32, owner: Owner, be: &mut dyn Backend) -> Option<ChildRef> {
        let (slot, gen) = self.slab.insert_with(|_, _| Child {
            pid,
            owner: Some(owner),
            kill_at: None,
            exited: false,
            termed: false,
        })?;
        be.submit(
            Tok::new(gen, slot, 0, OpTag::ChildExit).encode(),
            Op::ChildExit { pid },
        );
        Some(ChildRef { slot, gen })
    }

    /// Before a batch is dispatched: a child whose exit is in it is no longer signalled.
    pub fn mark_exited(&mut self, slot: u32, gen: u32) {
        if let Some(c) = self.slab.get_mut(slot, gen) {
            c.exited = true;
        }
    }

    /// The backend reaped the child: free its entry; returns its owner if one is attached.
    pub fn on_exit(&mut self, slot: u32, gen: u32) -> Option<(Owner, u32)> {
        let c = self.slab.remove(slot, gen)?;
        c.owner.map(|o| (o, c.pid))
    }

    /// Detach from the task and send TERM now (KILL follows from the tick).
    pub fn terminate(&mut self, r: ChildRef, now: Instant, be: &mut dyn Backend) {
        if let Some(c) = self.slab.get_mut(r.slot, r.gen) {
            c.owner = None;
            c.termed = true;
            if !c.exited && signal_leader(be, c.pid, libc::SIGTERM) {
                self.signalled += 1;
            }
            c.kill_at = Some(now + KILL_AFTER);
        }
    }

    /// The child `pid` has just been reaped while something it started still holds its stdout
    /// (a background job that inherited it): TERM the group it led, so the response can end.
    ///
    /// The one signal sent after a reap: the group id cannot name another group while any of
    /// its members lives (the kernel keeps an id in use as long as a process has it as its
    /// group), and when none does the call finds nothing (ESRCH). It is made in the same loop
    /// turn as the reap.
    /// KILL follows a second later (from the tick) if the group still exists then.
    pub fn stop_group_of_exited(&mut self, pid: u32, now: Instant, be: &mut dyn Backend) {
        if signal(be, pid, libc::SIGTERM) {
            self.signalled += 1;
            self.groups.push((pid, now + KILL_AFTER));
        }
    }

    /// The server is stopping: TERM every child no task waits for any more (finished scripts
    /// still running), KILL a second later from the tick.
    pub fn stop_unowned(&mut self, now: Instant, be: &mut dyn Backend) {
        let mut sent = 0;
        for c in self.slab.iter_mut() {
            if c.owner.is_none() && !c.exited && !c.termed {
                c.termed = true;
                if signal_leader(be, c.pid, libc::SIGTERM) {
                    sent += 1;
                }
                c.kill_at = Some(
                    c.kill_at
                        .map_or(now + KILL_AFTER, |k| k.min(now + KILL_AFTER)),
                );
            }
        }
        self.signalled += sent;
    }

    /// Detach from the task and let the child exit on its own until `kill_at`.
    pub fn release(&mut self, r: ChildRef, kill_at: Instant) {
        if let Some(c) = self.slab.get_mut(r.slot, r.gen) {
            c.owner = None;
            c.kill_at = Some(kill_at);
        }
    }

    /// KILL children whose time is up (again every 5 s until their exit is reported).
    pub fn tick(&mut self, now: Instant, be: &mut dyn Backend) {
        let mut sent = 0;
        self.groups.retain(|&(pgid, at)| {
            if at > now {
                return true;
            }
            if signal(be, pgid, libc::SIGKILL) {
                sent += 1;
            }
            false
        });
        for c in self.slab.iter_mut() {
            if !c.exited && c.kill_at.is_some_and(|t| t <= now) {
                if signal(be, c.pid, libc::SIGKILL) {
                    sent += 1;
                }
                c.kill_at = Some(now + Duration::from_secs(5));
            }
        }
        self.signalled += sent;
    }

    /// Children not yet reaped.
    pub fn len(&self) -> usize {
        self.slab.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }
}
