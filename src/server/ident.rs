//! Who a log line is about: the task identity every error-log and `--debug` line starts with.
//!
//! The one format, documented in the README:
//!
//! ```text
//! c17.2 r3 cgi#41: stdout eof after 5120 B
//! │   │  │  │   └─ the task's id (unique in this worker since start)
//! │   │  │  └───── the task's kind
//! │   │  └──────── the request's sequence number on its connection (from 1)
//! │   └─────────── the connection slot's generation
//! └─────────────── the connection slot
//! ```
//!
//! The shape is fixed, so a line is found with one pattern: between requests the request number
//! is `r0`, and lines about the connection's own I/O (accept, receive, send, close) name its
//! connection task (`conn#N`, or `linger#N` while it closes). A task that fails logs its last transitions ([`Trail`]) at `error`, so the
//! moment and the cause are visible without `--debug`.

use std::fmt;

/// The kinds of task (see `task/mod.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskKind {
    /// Connection I/O: accept, receive, parse heads, send, keep-alive.
    Conn,
    /// A response built in memory at once: a cached file, redirect, text `return`.
    Reply,
    /// An error response (with its configured error page).
    ErrorPage,
    /// The `status` page.
    Status,
    /// A file streamed from disk in pieces (sendfile, or reads).
    File,
    /// A request body read and dropped, then a prepared answer.
    Discard,
    /// An upload: raw POST or PUT to a temp file, renamed into place.
    Upload,
    /// A multipart/form-data upload.
    Multipart,
    /// A DELETE.
    Delete,
    /// A CGI script: spawn, stdin, stdout, stderr, child exit.
    Cgi,
    /// Lingering close after a connection's last response.
    Linger,
    /// A file lookup that would have blocked, done off the loop's thread before the request
    /// is routed again.
    Lookup,
}

impl TaskKind {
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Conn => "conn",
            TaskKind::Reply => "reply",
            TaskKind::ErrorPage => "error",
            TaskKind::Status => "status",
            TaskKind::File => "file",
            TaskKind::Discard => "discard",
            TaskKind::Upload => "upload",
            TaskKind::Multipart => "multipart",
            TaskKind::Delete => "delete",
            TaskKind::Cgi => "cgi",
            TaskKind::Linger => "linger",
            TaskKind::Lookup => "lookup",
        }
    }
}

/// A task's name: kind and a per-worker id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskId {
    pub kind: TaskKind,
    pub id: u32,
}

/// The identity at the start of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogId {
    pub conn: u32,
    pub gen: u32,
    /// Request sequence number on the connection (0: between requests).
    pub req: u32,
    pub task: TaskId,
}

impl LogId {
    pub fn with_task(self, task: TaskId) -> LogId {
        LogId { task, ..self }
    }
}

impl fmt::Display for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "c{}.{} r{} {}#{}",
            self.conn,
            self.gen,
            self.req,
            self.task.kind.name(),
            self.task.id
        )
    }
}

/// The last few transitions of a task, kept without allocating, for the error log.
#[derive(Clone, Debug, Default)]
pub struct Trail {
    events: [(&'static str, u64); 8],
    next: usize,
    len: usize,
}

impl Trail {
    pub fn push(&mut self, what: &'static str, n: u64) {
        self.events[self.next] = (what, n);
        self.next = (self.next + 1) % self.events.len();
        self.len = (self.len + 1).min(self.events.len());
    }
}

impl fmt::Display for Trail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cap = self.events.len();
        let start = (self.next + cap - self.len) % cap;
        for i in 0..self.len {
            let (what, n) = self.events[(start + i) % cap];
            if i > 0 {
                f.write_str(" → ")?;
            }
            write!(f, "{what} {n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_shape() {
        let id = LogId {
            conn: 17,
            gen: 2,
            req: 3,
            task: TaskId {
                kind: TaskKind::Cgi,
                id: 41,
            },
        };
        assert_eq!(id.to_string(), "c17.2 r3 cgi#41");
        let between = LogId {
            req: 0,
            task: TaskId {
                kind: TaskKind::Conn,
                id: 7,
            },
            ..id
        };
        assert_eq!(between.to_string(), "c17.2 r0 conn#7");
    }

    #[test]
    fn trail_keeps_the_last_eight_in_order() {
        let mut t = Trail::default();
        for i in 0..10 {
            t.push("ev", i);
        }
        assert_eq!(
            t.to_string(),
            "ev 2 → ev 3 → ev 4 → ev 5 → ev 6 → ev 7 → ev 8 → ev 9"
        );
    }
}
