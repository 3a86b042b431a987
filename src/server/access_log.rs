//! The access log: lines formatted per `log_format`, collected in memory and written through the
//! backend (`Op::Write` on the `O_APPEND` file), never by a blocking write per request.
//!
//! Without `buffer=`, what one loop turn logged is written at the end of that turn (one write
//! for all of them). With `buffer=SIZE`, lines collect until SIZE bytes or, with `flush=TIME`,
//! until the oldest is TIME old (checked each turn; the loop's tick makes one every second).
//! One write is in flight at a time; lines logged meanwhile wait for the next. A stopping loop
//! writes what is left before it exits; a reload hands the old file's remainder to it before
//! the new file takes over. If the disk cannot keep up, at most [`MAX_PENDING`] bytes wait and
//! further lines are dropped, counted, and said in the error log.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backends::{Backend, Buf, Completion, Op};

use crate::config::{Config, LogFormat};
use crate::server::token::{OpTag, Tok};

/// Bytes of lines that may wait for the disk before lines are dropped.
pub const MAX_PENDING: usize = 16 << 20;

pub struct AccessLog {
    file: File,
    /// Tells this file's write completions from an earlier (reloaded) one's: the token's slot.
    gen: u32,
    pub format: Arc<LogFormat>,
    buf: Vec<u8>,
    in_flight: bool,
    buffer: Option<usize>,
    flush: Option<Duration>,
    /// When the oldest line in `buf` was added.
    first: Option<Instant>,
    dropped: u64,
}

impl AccessLog {
    /// The log `cfg` asks for (`None`: off).
    pub fn open(cfg: &Config, gen: u32) -> std::io::Result<Option<AccessLog>> {
        let Some(p) = &cfg.access_log else {
            return Ok(None);
        };
        Ok(Some(AccessLog {
            file: crate::log::open_append(p)?,
            gen,
            format: cfg.access_log_format.clone(),
            buf: Vec::new(),
            in_flight: false,
            buffer: cfg.access_log_buffer,
            flush: cfg.access_log_flush,
            first: None,
            dropped: 0,
        }))
    }

    pub fn gen(&self) -> u32 {
        self.gen
    }

    /// Adds one line (without its newline).
    pub fn push(&mut self, line: &str, now: Instant) {
        if self.buf.len() + line.len() + 1 > MAX_PENDING {
            if self.dropped == 0 {
                crate::error!("access log: the disk does not keep up; dropping lines");
            }
            self.dropped += 1;
            return;
        }
        if self.buf.is_empty() {
            self.first = Some(now);
        }
        self.buf.extend_from_slice(line.as_bytes());
        self.buf.push(b'\n');
    }

    /// Submits a write of what is collected if it is due (`force`: whatever is there).
    pub fn pump(&mut self, be: &mut dyn Backend, now: Instant, force: bool) {
        if self.in_flight || self.buf.is_empty() {
            return;
        }
        let due = force
            || match self.buffer {
                None => true,
                Some(n) => {
                    self.buf.len() >= n
                        || self
                            .flush
                            .zip(self.first)
                            .is_some_and(|(f, t)| now >= t + f)
                }
            };
        if !due {
            return;
        }
        let buf = std::mem::take(&mut self.buf);
        self.first = None;
        self.in_flight = true;
        let t = Tok::new(0, self.gen, 0, OpTag::AccessWrite).encode();
        be.submit(
            t,
            Op::Write {
                fd: self.file.as_raw_fd(),
                buf,
                offset: None,
            },
        );
    }

    /// Its write completed.
    pub fn on_write(&mut self, c: Completion) {
        self.in_flight = false;
        if let Err(e) = &c.result {
            crate::error!("access log write: {e}");
        }
        if self.dropped > 0 {
            crate::error!("access log: {} lines dropped", self.dropped);
            self.dropped = 0;
        }
        // Its buffer's capacity is used again for the next lines.
        if let Buf::Vec(mut v) = c.buf {
            if self.buf.is_empty() {
                v.clear();
                self.buf = v;
            }
        }
    }

    /// Nothing waiting, nothing in flight: it may be closed.
    pub fn idle(&self) -> bool {
        !self.in_flight && self.buf.is_empty()
    }
}

/// A loop's access log, and the ones a reload replaced that still have lines to write.
#[derive(Default)]
pub struct AccessLogs {
    pub current: Option<AccessLog>,
    retired: Vec<AccessLog>,
    /// The newest log's generation.
    gen: u32,
}

impl AccessLogs {
    pub fn open(cfg: &Config) -> std::io::Result<AccessLogs> {
        Ok(AccessLogs {
            current: AccessLog::open(cfg, 0)?,
            ..AccessLogs::default()
        })
    }

    /// A reload: the log `cfg` names takes over (opened anew: a changed path or a rotated
    /// file); the old one closes once what it holds is written. If the new one cannot be
    /// opened, the old one stays and the reason is logged.
    pub fn reload(&mut self, cfg: &Config, be: &mut dyn Backend, now: Instant) {
        let gen = self.gen.wrapping_add(1);
        match AccessLog::open(cfg, gen) {
            Ok(log) => {
                self.gen = gen;
                if let Some(mut old) = std::mem::replace(&mut self.current, log) {
                    old.pump(be, now, true);
                    if !old.idle() {
                        self.retired.push(old);
                    }
                }
            }
            Err(e) => crate::error!(
                "reload: access_log {}: {e}; keeping the old one",
                cfg.access_log
                    .as_deref()
                    .unwrap_or(std::path::Path::new(""))
                    .display()
            ),
        }
    }

    /// Writes what is due (everything when `stopping`).
    pub fn pump(&mut self, be: &mut dyn Backend, now: Instant, stopping: bool) {
        if let Some(a) = self.current.as_mut() {
            a.pump(be, now, stopping);
        }
        for a in &mut self.retired {
            a.pump(be, now, true);
        }
    }

    /// The completion of log `gen`'s write.
    pub fn on_write(&mut self, gen: u32, c: Completion, be: &mut dyn Backend, now: Instant) {
        if let Some(a) = self.current.as_mut().filter(|a| a.gen == gen) {
            a.on_write(c);
            return;
        }
        if let Some(i) = self.retired.iter().position(|a| a.gen == gen) {
            self.retired[i].on_write(c);
            self.retired[i].pump(be, now, true);
            if self.retired[i].idle() {
                self.retired.swap_remove(i);
            }
        }
    }

    /// Every line written: the loop may exit.
    pub fn idle(&self) -> bool {
        self.current.as_ref().is_none_or(AccessLog::idle) && self.retired.is_empty()
    }
}
