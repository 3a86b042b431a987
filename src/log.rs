//! Error log (levels, stderr or a file) and access log (nginx "combined" format).
//!
//! One global error logger, set once at start; lines are written whole so that lines from
//! several workers do not interleave.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

pub use crate::config::LogLevel;

struct Logger {
    level: LogLevel,
    debug_trace: bool,
    out: Mutex<Box<dyn Write + Send>>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Set up the error log: `path` None is stderr. `debug_trace` enables the `--debug` task trace.
pub fn init(path: Option<&Path>, level: LogLevel, debug_trace: bool) -> std::io::Result<()> {
    let out: Box<dyn Write + Send> = match path {
        None => Box::new(std::io::stderr()),
        Some(p) => Box::new(open_append(p)?),
    };
    let level = if debug_trace { LogLevel::Debug } else { level };
    let _ = LOGGER.set(Logger {
        level,
        debug_trace,
        out: Mutex::new(out),
    });
    Ok(())
}

pub fn open_append(p: &Path) -> std::io::Result<File> {
    if let Some(dir) = p.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    OpenOptions::new().create(true).append(true).open(p)
}

fn level_name(l: LogLevel) -> &'static str {
    match l {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Notice => "notice",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
        LogLevel::Crit => "crit",
    }
}

pub fn enabled(level: LogLevel) -> bool {
    LOGGER
        .get()
        .map_or(level >= LogLevel::Info, |l| level >= l.level)
}

/// Whether the `--debug` per-task trace is on.
pub fn tracing() -> bool {
    LOGGER.get().is_some_and(|l| l.debug_trace)
}

pub fn log(level: LogLevel, msg: std::fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let secs = crate::http::date::unix_secs(std::time::SystemTime::now());
    let line = format!(
        "{} [{}] {}: {}\n",
        local_time(secs),
        level_name(level),
        std::process::id(),
        msg
    );
    match LOGGER.get() {
        Some(l) => {
            let mut out = l.out.lock().unwrap_or_else(|e| e.into_inner());
            let _ = out.write_all(line.as_bytes());
            let _ = out.flush();
        }
        None => eprint!("{line}"),
    }
}

/// `YYYY/MM/DD HH:MM:SS` (UTC), as nginx's error log prints it.
fn local_time(secs: u64) -> String {
    let d = crate::http::date::format_unix(secs);
    // "Sun, 06 Nov 1994 08:49:37 GMT" → pieces
    let s = std::str::from_utf8(&d).unwrap_or("");
    let (day, mon, year, time) = (&s[5..7], &s[8..11], &s[12..16], &s[17..25]);
    let m = month_num(mon);
    format!("{year}/{m:02}/{day} {time}")
}

fn month_num(m: &str) -> u32 {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    MONTHS
        .iter()
        .position(|x| *x == m)
        .map_or(1, |i| i as u32 + 1)
}

/// `26/Nov/2026:13:00:00 +0000`, the access log's `$time_local` (kept in UTC).
pub fn access_time(secs: u64) -> String {
    let d = crate::http::date::format_unix(secs);
    let s = std::str::from_utf8(&d).unwrap_or("");
    format!(
        "{}/{}/{}:{} +0000",
        &s[5..7],
        &s[8..11],
        &s[12..16],
        &s[17..25]
    )
}

#[macro_export]
macro_rules! error { ($($t:tt)*) => { $crate::log::log($crate::log::LogLevel::Error, format_args!($($t)*)) } }
#[macro_export]
macro_rules! warn { ($($t:tt)*) => { $crate::log::log($crate::log::LogLevel::Warn, format_args!($($t)*)) } }
#[macro_export]
macro_rules! notice { ($($t:tt)*) => { $crate::log::log($crate::log::LogLevel::Notice, format_args!($($t)*)) } }
#[macro_export]
macro_rules! info { ($($t:tt)*) => { $crate::log::log($crate::log::LogLevel::Info, format_args!($($t)*)) } }
/// The `--debug` task trace: "conn 17 task recv: 512 B".
#[macro_export]
macro_rules! trace {
    ($($t:tt)*) => {
        if $crate::log::tracing() {
            $crate::log::log($crate::log::LogLevel::Debug, format_args!($($t)*))
        }
    };
}
