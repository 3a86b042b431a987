//! The one diagnostic type of the config loader: where (file, line, column), how bad, and what.
//!
//! Every finding — lexing, nesting, an unknown or misplaced directive, a bad value, a routing
//! conflict found after the whole file is read — becomes one `ConfigError` that points at the
//! offending token, so an operator (or an editor, or a CI annotator) can jump straight to it.
//! `Display` is the GNU format compilers use: `FILE:LINE:COL: error: message` or
//! `FILE:LINE:COL: warning: message`.
//!
//! Unlike nginx, which stops at the first error, the loader goes on after an error wherever the
//! rest of the file still has a meaning (the next directive, the next server), so `webserv -t`
//! lists every problem at once; [`Diagnostics`] holds them in the order they were found. Only a
//! syntax error that leaves the block structure unknown (an unclosed quote or brace, a stray
//! `}`) stops the reading of that file.

use std::fmt;

/// A position in a config file. Lines and columns are 1-based; a column counts characters
/// (not bytes) from the start of the line. `line == 0` means "no position" (e.g. the file
/// itself could not be opened).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

/// How bad a finding is. An error refuses the configuration; a warning is reported and the
/// configuration is used (nginx's `[warn]`, e.g. a conflicting server name it ignores).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Severity {
    #[default]
    Error,
    Warning,
}

/// One finding. `Display` renders `FILE:LINE:COL: error: message` (or `warning:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: u32,
    pub col: u32,
    pub severity: Severity,
    pub message: String,
}

impl ConfigError {
    /// An error at `pos`.
    pub fn new(file: &str, pos: Pos, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_string(),
            line: pos.line,
            col: pos.col,
            severity: Severity::Error,
            message: message.into(),
        }
    }

    /// The same finding as a warning.
    pub fn into_warning(mut self) -> Self {
        self.severity = Severity::Warning;
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {kind}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

impl std::error::Error for ConfigError {}

/// Every finding of one load, in the order found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<ConfigError>);

impl Diagnostics {
    pub fn push(&mut self, d: ConfigError) {
        self.0.push(d);
    }

    /// Records `r`'s error, if any; returns the value otherwise.
    pub fn take<T>(&mut self, r: Result<T, ConfigError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e);
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(ConfigError::is_error)
    }

    /// The first error, if any.
    pub fn first_error(&self) -> Option<&ConfigError> {
        self.0.iter().find(|d| d.is_error())
    }

    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }
}

impl fmt::Display for Diagnostics {
    /// One diagnostic per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}
