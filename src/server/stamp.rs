//! [`Stamp`]: a deadline in 8 bytes instead of an `Instant`'s 16, for records kept per idle
//! connection (the memory an idle keep-alive connection costs is a product promise).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A moment as whole milliseconds since the process's first stamp, rounded up, so a deadline
/// stored as a stamp never fires before the `Instant` it was made from. A `u64` of
/// milliseconds does not wrap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(u64);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Stamp {
    /// `t`, rounded up to the millisecond (a moment before the epoch is the epoch).
    pub fn of(t: Instant) -> Stamp {
        let d = t.saturating_duration_since(epoch());
        let ms = d.as_millis() as u64;
        Stamp(ms + u64::from(!d.subsec_nanos().is_multiple_of(1_000_000)))
    }

    /// `d` after this stamp, rounded up to the millisecond: with `self` made from an instant
    /// `t`, never before `t + d`. Integer work only (a deadline per request is made this
    /// way from the turn's stamp: `Env::deadline`).
    pub fn after(self, d: Duration) -> Stamp {
        let ms = d.as_millis() as u64 + u64::from(!d.subsec_nanos().is_multiple_of(1_000_000));
        Stamp(self.0.saturating_add(ms))
    }

    /// The moment this stamp stands for.
    pub fn at(self) -> Instant {
        epoch() + Duration::from_millis(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_never_comes_before_its_instant() {
        let now = Instant::now();
        for us in [0u64, 1, 999, 1000, 1001, 1_500_000, 86_400_000_000] {
            let t = now + Duration::from_micros(us);
            let s = Stamp::of(t);
            assert!(s.at() >= t, "{us} µs");
            assert!(s.at() - t < Duration::from_millis(1), "{us} µs");
        }
        assert!(Stamp::of(now) <= Stamp::of(now + Duration::from_millis(1)));
    }

    #[test]
    fn a_deadline_after_a_stamp_never_comes_before_its_instant() {
        let now = Instant::now() + Duration::from_nanos(123_457);
        let s = Stamp::of(now);
        for us in [0u64, 1, 999, 1000, 1001, 1_500_000, 75_000_000] {
            let d = Duration::from_micros(us);
            let late = s.after(d);
            assert!(late.at() >= now + d, "{us} µs");
            assert!(late.at() - (now + d) < Duration::from_millis(2), "{us} µs");
            assert!(late >= Stamp::of(now + d), "{us} µs");
        }
    }
}
