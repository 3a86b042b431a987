//! A file lookup that would have blocked the loop: routing a GET found a step of its path
//! missing from the kernel's caches (`RESOLVE_CACHED` said `EAGAIN`), so the same lookup is
//! done off the loop's thread ([`Op::OpenAt`], `O_PATH` where it exists: no file is read) and the request is
//! then routed again from its held head, with the caches warm.
//!
//! The task holds nothing but its op: the op owns a duplicate of the root's directory fd, and
//! the fd it opens is closed as soon as it arrives — by this task, or, when the request ended
//! meanwhile, by the loop's stale-completion path ([`close_stray_fd`]).

use std::ffi::CString;
use std::os::fd::{OwnedFd, RawFd};

use backends::{Completion, Op};

use super::{Abort, Cx, Step, Task};
use crate::server::ident::{TaskId, TaskKind};
use crate::server::token::OpTag;

pub struct LookupTask {
    id: TaskId,
    op: Option<Op>,
    what: String,
    done: bool,
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
        })
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
        close_stray_fd(op, &c);
        if let Err(e) = &c.result {
            // The routing that follows looks up again (now blocking) and answers what it
            // finds: the error here only tells what the warm-up met.
            crate::trace!("{}: lookup of {:?}: {e}", cx.id, self.what);
        }
        Step::Reroute
    }
    fn abort(&mut self, _why: Abort, _cx: &mut Cx) {
        // The open, if in flight, completes on its own; its fd is closed where it lands.
        self.op = None;
    }
    fn describe(&self) -> String {
        format!(
            "lookup of {:?} ({})",
            self.what,
            if self.done { "done" } else { "in flight" }
        )
    }
}
