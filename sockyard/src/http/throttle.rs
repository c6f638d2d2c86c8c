//! A warning that repeats in a storm — a failing `accept` when the process is out of file
//! descriptors — logged at most once per interval, with how many were held back in between,
//! and the end of the storm noted once.

use std::time::{Duration, Instant};

/// Decides which occurrences of a repeating failure are logged.
#[derive(Debug)]
pub(crate) struct Throttle {
    /// The shortest time between two logged occurrences.
    interval: Duration,
    /// When the last logged occurrence was.
    last: Option<Instant>,
    /// Occurrences since the last logged one, not logged.
    held_back: u64,
    /// Occurrences since the last success.
    streak: u64,
}

impl Throttle {
    /// Logs at most one occurrence per `interval`.
    pub(crate) const fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
            held_back: 0,
            streak: 0,
        }
    }

    /// Counts an occurrence at `now`: `Some(held_back)` when it is to be logged (`held_back`:
    /// how many were not logged since the last logged one), `None` when it is held back.
    pub(crate) fn occur(&mut self, now: Instant) -> Option<u64> {
        self.streak += 1;
        let due = self
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= self.interval);
        if !due {
            self.held_back += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held_back))
    }

    /// Notes a success: `Some(failures)` when it ends a run of failures (how many there were
    /// in all), so the recovery is logged once.
    pub(crate) fn succeed(&mut self) -> Option<u64> {
        self.held_back = 0;
        self.last = None;
        (self.streak > 0).then(|| std::mem::take(&mut self.streak))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storm_is_logged_once_per_interval_with_what_was_held_back() {
        let mut throttle = Throttle::new(Duration::from_secs(1));
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        // 20 failures a second for 3 seconds (the accept loop backs off 50 ms).
        let logged: Vec<(u64, u64)> = (0..60)
            .filter_map(|i| throttle.occur(at(i * 50)).map(|held| (i * 50, held)))
            .collect();
        assert_eq!(logged, [(0, 0), (1000, 19), (2000, 19)]);
        assert_eq!(throttle.succeed(), Some(60));
        assert_eq!(throttle.succeed(), None, "reported once");
        // A new storm starts logging at once.
        assert_eq!(throttle.occur(at(3100)), Some(0));
        assert_eq!(throttle.occur(at(3150)), None);
    }
}
