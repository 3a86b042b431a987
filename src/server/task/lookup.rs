//! A file lookup that would have blocked the loop: routing a request found a step of its path
//! missing from the kernel's caches (`RESOLVE_CACHED` said `EAGAIN`, or the kernel cannot
//! say), so the very open the routing wanted is done off the loop's thread ([`Op::OpenAt`])
//! and the request is then routed again from its held head, with that open's answer handed
//! to the routing ([`crate::server::lookups`]).
//!
//! The task holds nothing but its op (which owns a duplicate of the directory's fd) and then
//! its answer; the fd the open made is the answer's, or, when the request ended meanwhile,
//! is closed by the loop's stale-completion path ([`close_stray_fd`]).

use std::ffi::CString;
use std::os::fd::{OwnedFd, RawFd};

use backends::{Completion, Op};

use super::{Abort, Cx, Step, Task};
use crate::server::ident::{TaskId, TaskKind};
use crate::server::lookups::{Key, Miss, Resolved};
use crate::server::token::OpTag;

pub struct LookupTask {
    id: TaskId,
    op: Option<Op>,
    what: String,
    done: bool,
    /// Which open the op does, and then its answer, for the next routing.
    key: Option<Key>,
    answer: Option<Resolved>,
}

impl LookupTask {
    /// The lookup of `rel` beneath `dir` (a duplicate the op will own).
    pub fn new(id: u32, dir: OwnedFd, rel: &str, no_symlinks: bool) -> Option<LookupTask> {
        let path = CString::new(rel).ok()?;
        Some(LookupTask {
            id: TaskId {
                kind: TaskKind::Lookup,
                id,
            },
            op: Some(Op::OpenAt(backends::Open {
                dir,
                path,
                flags: backends::util::O_LOOKUP,
                mode: 0,
                beneath: true,
                no_symlinks,
            })),
            what: rel.to_string(),
            done: false,
            key: None,
            answer: None,
        })
    }

    /// The open a routing missed, done as it was asked (same directory, path, flags, symlink
    /// policy; contained), its answer kept for the next routing.
    pub fn of_miss(id: u32, m: Miss) -> LookupTask {
        LookupTask {
            id: TaskId {
                kind: TaskKind::Lookup,
                id,
            },
            what: m.rel.to_string_lossy().into_owned(),
            op: Some(Op::OpenAt(backends::Open {
                dir: m.dir,
                path: m.rel,
                flags: m.flags,
                mode: 0,
                beneath: true,
                no_symlinks: m.no_symlinks,
            })),
            done: false,
            key: Some(m.key),
            answer: None,
        }
    }

    /// The answer of the lookup, once done (for the routing that follows).
    pub fn take_answer(&mut self) -> Option<Resolved> {
        self.answer.take()
    }
}

/// Close the fd a lookup's open produced when nobody is left to use it.
pub fn close_stray_fd(op: OpTag, c: &Completion) {
    if op == OpTag::LookupOpen {
        if let Ok(fd) = c.result {
            // The backend handed this fd over with the completion; nobody else has it.
            drop(backends::util::adopt_fd(fd as RawFd));
        }
    }
}

impl Task for LookupTask {
    fn id(&self) -> TaskId {
        self.id
    }
    fn start(&mut self, cx: &mut Cx) -> Step {
        match self.op.take() {
            Some(op) => {
                cx.submit(OpTag::LookupOpen, op);
                Step::Pending
            }
            None => Step::Fail(500),
        }
    }
    fn on_completion(&mut self, op: OpTag, c: Completion, cx: &mut Cx) -> Step {
        if op != OpTag::LookupOpen || self.done {
            crate::error!("{}: unexpected {} completion", cx.id, op.name());
            close_stray_fd(op, &c);
            return Step::Pending;
        }
        self.done = true;
        if let Err(e) = &c.result {
            // The routing that follows answers it (404, 403, …).
            crate::trace!("{}: lookup of {:?}: {e}", cx.id, self.what);
        }
        match self.key.take() {
            Some(key) => self.answer = Some(Resolved::new(key, &c.result)),
            None => close_stray_fd(op, &c),
        }
        Step::Reroute
    }
    fn abort(&mut self, _why: Abort, _cx: &mut Cx) {
        // The open, if in flight, completes on its own; its fd is closed where it lands. An
        // answer nobody took closes its fd here.
        self.op = None;
        self.answer = None;
    }
    fn describe(&self) -> String {
        format!(
            "lookup of {:?} ({})",
            self.what,
            if self.done { "done" } else { "in flight" }
        )
    }
}
