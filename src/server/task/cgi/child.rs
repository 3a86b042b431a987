//! The child registry: every CGI child from spawn until the backend reports it reaped.
//!
//! A CGI task holds a [`ChildRef`] (slot + generation), never a bare pid. Signals go through
//! [`Children::terminate`] and the tick, which only ever signal an entry that is registered, not
//! yet reported exited, and whose pid is a real process id (> 1): a reused slot, a child already
//! reaped, or a pid of 0 (the whole process group) can never be signalled.
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
    pub req: u32,
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
}

#[derive(Default)]
pub struct Children {
    slab: Slab<Child>,
    /// Signals sent, for the stray-signal tests and the status page.
    pub signalled: u64,
}

/// Signal through the backend (contract invariant 11: a simulated backend owns its children).
fn signal(be: &mut dyn Backend, pid: u32, sig: libc::c_int) -> bool {
    // Never 0 (the process group), 1 (init) or a value that is negative as a pid_t.
    if pid <= 1 || pid > i32::MAX as u32 {
        return false;
    }
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
            if !c.exited && signal(be, c.pid, libc::SIGTERM) {
                self.signalled += 1;
            }
            c.kill_at = Some(now + KILL_AFTER);
        }
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
