//! CGI/1.1 (RFC 3875) building blocks, synchronous and I/O-free except for [`spawn`]:
//!
//! - [`script`]: which part of a URI path is the script and which is PATH_INFO (§4.1.5, §4.1.13).
//! - [`env`]: the meta-variables handed to the script (§4.1).
//! - [`spawn`]: start the script with piped, non-blocking stdin/stdout (§7); the event loop
//!   drives the pipes and reaps the child through its backend's ops.
//! - [`output`]: incremental parser for the script's response head (§6).
//!
//! Order for the loop: [`script::split_script`] → [`spawn::check_script`] (404/403) →
//! [`env::build_env`] → [`spawn::spawn`] → stream the request body to `stdin`, close it →
//! feed `stdout` bytes to [`output::CgiHeadParser`] until it yields a head → stream the rest.

pub mod env;
pub mod output;
pub mod params;
pub mod script;
pub mod spawn;

pub use env::{build_env, CgiParams};
pub use output::{CgiError, CgiHead, CgiHeadParser, ScriptLocation};
pub use script::split_script;
pub use spawn::{check_script, launch, spawn, Launch, Spawned};
