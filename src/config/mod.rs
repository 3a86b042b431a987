//! nginx-syntax configuration (stub while the module grows).
mod error;
mod lexer;
pub use error::{ConfigError, Pos};
