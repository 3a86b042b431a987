//! The server: an event loop over a completion backend, connections, and the tasks that answer
//! requests.
//!
//! ```text
//! serve        bind, worker threads; control: stop/reload from the signal thread
//!   └─ event_loop   Loop: wait, dispatch (the one router of completions), tick, accept
//!        └─ conn/        a connection: recv/send/close, back-pressure, requests in order
//!             ├─ route      which answer a request gets (→ a task)
//!             └─ task/      the tasks: reply, file, body, upload, multipart, cgi/
//!                  └─ reply/   responses in memory, static files, cache, autoindex, mapping
//! token        typed, generation-checked op tokens and the slab allocator
//! ident        the task identity of every log line (`c17.2 r3 cgi#41: …`)
//! stamp        deadlines in 8 bytes for per-connection records
//! ```
//!
//! Dependencies point one way, down this tree: `event_loop` knows `conn`; `conn` knows
//! `route`, `task` and `reply`; tasks know only their `Cx` (and `reply`); nothing below names
//! the loop.

pub mod access_log;
pub mod conn;
pub mod control;
pub mod event_loop;
pub mod gauges;
pub mod headers;
pub mod ident;
pub mod lookups;
pub mod metrics;
pub mod out;
pub mod reply;
pub mod rewrite;
pub mod route;
pub mod serve;
pub mod stamp;
pub mod task;
pub mod token;
mod trace;

#[cfg(test)]
mod layout_tests;

pub use control::Control;
pub use event_loop::Loop;
pub use serve::{bind, serve, worker_count, RunOptions};

#[cfg(test)]
mod size_probe {
    /// Memory per idle connection is a product promise (README, bench): keep the per-connection
    /// record small; request state lives in a box that idle connections do not hold.
    #[test]
    fn idle_connection_record_stays_small() {
        let conn = std::mem::size_of::<super::conn::Conn>();
        eprintln!("Conn {conn} B");
        // 176 before TLS, 184 with its session pointer; 160 since the output deque is boxed and
        // lent from a pool only while there is something to send (issue 12, item 6).
        assert!(conn <= 160, "Conn grew to {conn} bytes");
    }
}
