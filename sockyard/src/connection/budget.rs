//! The message budget of one connection (`limits.max_messages_per_second`): a token bucket with
//! one token per packet processed, refilled continuously, holding at most one second's worth.

use std::time::Duration;

use tokio::time::Instant;

/// A token bucket.
#[derive(Debug)]
pub(super) struct Budget {
    rate: f64,
    tokens: f64,
    refreshed: Instant,
}

impl Budget {
    /// A full bucket of `rate` tokens per second.
    pub(super) fn new(rate: u32, now: Instant) -> Self {
        Self {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            refreshed: now,
        }
    }

    /// Takes a token, or says when one will be available.
    pub(super) fn take(&mut self, now: Instant) -> Result<(), Instant> {
        let elapsed = now.duration_since(self.refreshed).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.refreshed = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(now + Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_second_of_burst_then_refills_at_the_rate() {
        let start = Instant::now();
        let mut budget = Budget::new(4, start);
        for _ in 0..4 {
            assert_eq!(budget.take(start), Ok(()));
        }
        let next = budget.take(start).unwrap_err();
        assert_eq!(next, start + Duration::from_millis(250));
        assert_eq!(budget.take(next), Ok(()));
        // A long pause refills at most one second's worth.
        let later = next + Duration::from_secs(10);
        for _ in 0..4 {
            assert_eq!(budget.take(later), Ok(()));
        }
        assert!(budget.take(later).is_err());
    }
}
