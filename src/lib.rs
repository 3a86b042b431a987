//! webserv: a non-blocking HTTP/1.1 origin server on a completion-model I/O backend.
//!
//! Layers, from the bottom: [`backends`] (its own crate: io_uring, epoll, kqueue), `config`
//! (nginx-syntax configuration and request routing), `http` (parsing and response building),
//! `server` (the event loop and connection state machine), `handlers` (what answers a request).
pub mod cgi;
pub mod config;
pub mod handlers;
pub mod http;
#[macro_use]
pub mod log;
pub mod proxy;
pub mod server;
pub mod systemd;
pub mod tls;
