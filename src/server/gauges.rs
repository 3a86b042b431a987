//! Counters for the status page, kept as connections change phase.

/// Which counter a connection's state counts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gauge {
    Idle,
    Reading,
    Writing,
    /// Closing: not counted.
    None,
}

/// Counters for the status page, kept as connections change phase.
#[derive(Default, Debug)]
pub struct Gauges {
    pub accepted: u64,
    pub requests: u64,
    pub active: usize,
    pub reading: usize,
    pub writing: usize,
    pub idle: usize,
    /// The next task id (unique in this worker).
    pub next_task: u32,
}

impl Gauges {
    pub fn enter(&mut self, g: Gauge) {
        match g {
            Gauge::Idle => self.idle += 1,
            Gauge::Reading => self.reading += 1,
            Gauge::Writing => self.writing += 1,
            Gauge::None => {}
        }
    }

    pub fn leave(&mut self, g: Gauge) {
        let c = match g {
            Gauge::Idle => &mut self.idle,
            Gauge::Reading => &mut self.reading,
            Gauge::Writing => &mut self.writing,
            Gauge::None => return,
        };
        *c = c.saturating_sub(1);
    }

    pub fn task_id(&mut self) -> u32 {
        self.next_task = self.next_task.wrapping_add(1);
        self.next_task
    }
}
