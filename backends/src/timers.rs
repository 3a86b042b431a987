//! A deadline heap, for backends without kernel timers that order by deadline (epoll, and
//! io_uring, whose relative timeouts fire in submission order once due): the nearest deadline
//! bounds the wait, and expired keys are reported in deadline order.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::time::{Duration, Instant};

#[derive(Default, Debug)]
pub struct TimerHeap {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Keys removed before they fired; skipped when they reach the top.
    removed: HashSet<u64>,
}

impl TimerHeap {
    pub fn add(&mut self, key: u64, deadline: Instant) {
        if !self.removed.is_empty() {
            self.removed.remove(&key);
        }
        self.heap.push(Reverse((deadline, key)));
    }

    pub fn remove(&mut self, key: u64) {
        self.removed.insert(key);
    }

    /// How long a wait may block given `timeout`, so that the nearest timer is not missed.
    pub fn bound(&mut self, timeout: Option<Duration>, now: Instant) -> Option<Duration> {
        self.skip_removed();
        match self.heap.peek() {
            None => timeout,
            Some(Reverse((d, _))) => {
                let t = d.saturating_duration_since(now);
                Some(timeout.map_or(t, |x| x.min(t)))
            }
        }
    }

    /// Pop every key whose deadline is at or before `now`, earliest first.
    pub fn expire(&mut self, now: Instant, mut f: impl FnMut(u64)) {
        loop {
            self.skip_removed();
            match self.heap.peek() {
                Some(Reverse((d, key))) if *d <= now => {
                    f(*key);
                    self.heap.pop();
                }
                _ => return,
            }
        }
    }

    fn skip_removed(&mut self) {
        // Hashing a key costs more than the rest of a wait's bookkeeping: none when nothing
        // was removed (the usual case: most timers fire).
        if self.removed.is_empty() {
            return;
        }
        while let Some(Reverse((_, key))) = self.heap.peek() {
            if self.removed.remove(key) {
                self.heap.pop();
            } else {
                return;
            }
        }
    }
}
