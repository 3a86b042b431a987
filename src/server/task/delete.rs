//! A DELETE: the file's name removed by an unlink op off the loop's thread
//! ([`backends::Op::UnlinkAt`]); the answer (204, or the error's status) follows its
//! completion. Routing already checked, beneath the root or store, that a regular file is
//! there and that the request's preconditions hold.

use backends::{Completion, Op};

use super::cgi::framing::Meta;
use super::upload::{ctx, queue};
use super::{Abort, Cx, Step, Task};
use crate::server::ident::{TaskId, TaskKind};
use crate::server::reply;
use crate::server::token::OpTag;

pub struct DeleteTask {
    id: TaskId,
    op: Option<Op>,
    what: String,
    meta: Meta,
    done: bool,
}

impl DeleteTask {
    pub fn new(id: u32, op: Op, what: String, meta: Meta) -> DeleteTask {
        DeleteTask {
            id: TaskId {
                kind: TaskKind::Delete,
                id,
            },
            op: Some(op),
            what,
            meta,
            done: false,
        }
    }
}

impl Task for DeleteTask {
    fn id(&self) -> TaskId {
        self.id
    }
    fn start(&mut self, cx: &mut Cx) -> Step {
        match self.op.take() {
            Some(op) => {
                cx.submit(OpTag::DeleteUnlink, op);
                Step::Pending
            }
            None => Step::Fail(500),
        }
    }
    fn on_completion(&mut self, op: OpTag, c: Completion, cx: &mut Cx) -> Step {
        if op != OpTag::DeleteUnlink || self.done {
            return Step::Pending;
        }
        self.done = true;
        if let Err(e) = &c.result {
            crate::info!("{}: delete {:?}: {e}", cx.id, self.what);
            return Step::Fail(match e.raw_os_error() {
                Some(libc::ENOENT) => 404,
                Some(libc::EISDIR) | Some(libc::EPERM) => 403,
                _ => reply::static_file::io_status(e),
            });
        }
        crate::server::reply::cache::note_write();
        let date = *cx.date;
        let r = reply::full(204, "text/plain", Vec::new(), &[], &ctx(&self.meta, &date));
        queue(r, cx);
        Step::Done
    }
    fn abort(&mut self, _why: Abort, _cx: &mut Cx) {
        // The unlink, if in flight, completes on its own: the client asked for it.
        self.op = None;
    }
    fn describe(&self) -> String {
        format!(
            "delete of {:?} ({})",
            self.what,
            if self.done { "done" } else { "in flight" }
        )
    }
}
