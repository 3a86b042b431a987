//! A response prepared in memory (cached file, redirect, text `return`, status page, error page,
//! DELETE result): queued at start, done at once.

use backends::{Completion, SendBuf};

use super::{Abort, Cx, Step, Task};
use crate::server::ident::{TaskId, TaskKind};
use crate::server::token::OpTag;

pub struct ReplyTask {
    id: TaskId,
    status: u16,
    buf: Option<SendBuf>,
}

impl ReplyTask {
    pub fn new(kind: TaskKind, id: u32, status: u16, buf: SendBuf) -> ReplyTask {
        ReplyTask {
            id: TaskId { kind, id },
            status,
            buf: Some(buf),
        }
    }
}

impl Task for ReplyTask {
    fn id(&self) -> TaskId {
        self.id
    }
    fn start(&mut self, cx: &mut Cx) -> Step {
        if let Some(b) = self.buf.take() {
            cx.out.push(b);
        }
        Step::Done
    }
    fn on_completion(&mut self, op: OpTag, _c: Completion, cx: &mut Cx) -> Step {
        crate::error!("{}: unexpected {} completion", cx.id, op.name());
        Step::Pending
    }
    fn abort(&mut self, _why: Abort, _cx: &mut Cx) {
        self.buf = None;
    }
    fn describe(&self) -> String {
        format!("{} reply", self.status)
    }
}
