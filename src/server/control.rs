//! Steering the loops from outside: stop and reload, set by the signal thread.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::config::Config;

/// What the signal thread tells the loops: stop (SIGTERM/SIGINT), or a new configuration
/// (SIGHUP, loaded and checked by the signal thread; a bad one never gets here).
pub struct Control {
    pub(super) stop: std::sync::atomic::AtomicBool,
    cfg: std::sync::Mutex<Arc<Config>>,
    pub(super) cfg_gen: std::sync::atomic::AtomicU64,
    wakers: std::sync::Mutex<Vec<backends::Waker>>,
    /// The configuration's directories, opened by the thread that loaded it (each loop takes
    /// duplicates; an old set is closed once the new one replaces it).
    dirs: std::sync::Mutex<Arc<crate::server::reply::DirFds>>,
    /// The workers' published state for the Prometheus page.
    pub metrics: super::metrics::Registry,
}

impl Control {
    pub fn new(mut cfg: Config) -> Arc<Control> {
        crate::http::response::set_server_tokens(cfg.server_tokens);
        crate::server::reply::preload_error_pages(&mut cfg);
        let dirs = crate::server::reply::preopen_dirs(&cfg);
        Arc::new(Control {
            dirs: std::sync::Mutex::new(Arc::new(dirs)),
            stop: false.into(),
            cfg: std::sync::Mutex::new(Arc::new(cfg)),
            cfg_gen: 0.into(),
            wakers: std::sync::Mutex::new(Vec::new()),
            metrics: super::metrics::Registry::default(),
        })
    }

    fn lock_cfg(&self) -> std::sync::MutexGuard<'_, Arc<Config>> {
        self.cfg.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn config(&self) -> Arc<Config> {
        self.lock_cfg().clone()
    }

    /// The directories the current configuration's load opened.
    pub fn dir_fds(&self) -> Arc<crate::server::reply::DirFds> {
        self.dirs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Ask every loop to stop gracefully.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake_all();
    }

    /// Hand a new (already validated) configuration to every loop.
    pub fn reload(&self, mut cfg: Config) {
        crate::http::response::set_server_tokens(cfg.server_tokens);
        // Read here, on the reloading thread, not by the loops.
        crate::server::reply::preload_error_pages(&mut cfg);
        let dirs = Arc::new(crate::server::reply::preopen_dirs(&cfg));
        *self.dirs.lock().unwrap_or_else(|e| e.into_inner()) = dirs;
        *self.lock_cfg() = Arc::new(cfg);
        self.cfg_gen.fetch_add(1, Ordering::SeqCst);
        self.wake_all();
    }

    fn wake_all(&self) {
        for w in self.wakers.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = w.wake();
        }
    }

    pub(super) fn add_waker(&self, w: backends::Waker) {
        self.wakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(w);
    }
}
