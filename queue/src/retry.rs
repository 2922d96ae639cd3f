//! Retry schedules: the delay before a failed job's next attempt.
//!
//! The schedule is data in the database (`run_at`), computed here; nothing sleeps in a worker.

use std::time::Duration;

/// Exponential backoff with jitter and a cap: `base * 2^(attempt-1)`, at most `cap`,
/// then spread by up to `jitter` (a fraction) either way so retries of a burst do not stampede.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub cap: Duration,
    pub jitter: f64,
}

impl RetryPolicy {
    pub const fn exponential(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            jitter: 0.2,
        }
    }

    /// The delay after failed attempt number `attempt` (1 for the first attempt).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(32);
        let raw = self.base.as_secs_f64() * 2f64.powi(exponent as i32);
        let capped = raw.min(self.cap.as_secs_f64());
        let spread = 1.0 + self.jitter * (fastrand::f64() * 2.0 - 1.0);
        Duration::from_secs_f64((capped * spread).max(0.0))
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::exponential(Duration::from_secs(5), Duration::from_secs(3600))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_within_jitter_and_stops_at_the_cap() {
        let policy = RetryPolicy::exponential(Duration::from_secs(2), Duration::from_secs(60));
        for _ in 0..200 {
            let first = policy.backoff(1).as_secs_f64();
            assert!((1.6..=2.4).contains(&first), "attempt 1 gave {first}");
            let third = policy.backoff(3).as_secs_f64();
            assert!((6.4..=9.6).contains(&third), "attempt 3 gave {third}");
            let late = policy.backoff(40).as_secs_f64();
            assert!((48.0..=72.0).contains(&late), "attempt 40 gave {late}");
        }
    }

    #[test]
    fn jitter_spreads_a_burst() {
        let policy = RetryPolicy::default();
        let delays: std::collections::BTreeSet<u128> =
            (0..50).map(|_| policy.backoff(2).as_micros()).collect();
        assert!(delays.len() > 40, "only {} distinct delays", delays.len());
    }
}
