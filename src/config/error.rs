//! The one error type of the config loader: where (file, line, column) and what.
//!
//! Every failure — lexing, nesting, an unknown or misplaced directive, a bad value, a routing
//! conflict found after the whole file is read — becomes one `ConfigError` that points at the
//! offending token, so an operator can jump straight to it. Loading stops at the first error, as
//! `nginx -t` does.

use std::fmt;

/// A position in a config file. Lines and columns are 1-based; a column counts characters
/// (not bytes) from the start of the line. `line == 0` means "no position" (e.g. the file
/// itself could not be opened).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

/// A load failure. `Display` renders `FILE:LINE:COL: message`, the format compilers and
/// editors understand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: u32,
    pub col: u32,
    pub message: String,
}

impl ConfigError {
    pub fn new(file: &str, pos: Pos, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_string(),
            line: pos.line,
            col: pos.col,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

impl std::error::Error for ConfigError {}
