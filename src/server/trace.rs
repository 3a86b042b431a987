//! The `--debug` trace of the loop: one line per completion, naming its task.

use backends::Completion;

use super::conn::Conn;
use super::token::{OpTag, Slab, Tok};

/// The `--debug` line for one completion: `c17.2 r3 cgi#41 stdout read: Ok(5120)`.
pub(super) fn completion(conns: &Slab<Conn>, t: &Tok, c: &Completion) {
    let id = match t.op {
        OpTag::Accept
        | OpTag::Tick
        | OpTag::RefuseClose
        | OpTag::AcceptCancel
        | OpTag::AccessWrite => {
            format!("loop {}", t.slot)
        }
        OpTag::ChildExit => format!("child {}.{}", t.slot, t.gen),
        _ => match conns.get(t.slot, t.gen) {
            Some(conn) if !t.op.is_task_op() => conn.io_ident().to_string(),
            Some(conn) => {
                let id = conn.ident();
                if conn.task_seq() as u8 != t.task {
                    format!(
                        "stale completion (sequence {} on c{}.{})",
                        t.task, t.slot, t.gen
                    )
                } else {
                    id.to_string()
                }
            }
            None => format!("stale completion (c{}.{} is gone)", t.slot, t.gen),
        },
    };
    let more = if c.more { " +more" } else { "" };
    crate::trace!("{id}: {} → {:?}{more}", t.op.name(), c.result);
}
