//! Reconnect delays: exponential growth with full jitter, so a fleet of agents that lost the
//! hub at the same moment doesn't reconnect in lockstep.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self { min, max: max.max(min), attempt: 0 }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The next delay: uniform in [min/2, cap] where cap = min·2^attempt bounded by max.
    pub fn next_delay(&mut self) -> Duration {
        let cap = self.cap();
        self.attempt = self.attempt.saturating_add(1);
        let low = self.min / 2;
        let span = cap.saturating_sub(low).as_millis() as u64;
        low + Duration::from_millis(random_u64() % (span + 1))
    }

    fn cap(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // A failed RNG only loses jitter, not correctness.
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut last_cap = Duration::ZERO;
        for _ in 0..10 {
            let cap = b.cap();
            assert!(cap >= last_cap && cap <= Duration::from_secs(2));
            last_cap = cap;
            let d = b.next_delay();
            assert!(d >= Duration::from_millis(50) && d <= cap, "{d:?} vs {cap:?}");
        }
        assert_eq!(last_cap, Duration::from_secs(2));
        b.reset();
        assert_eq!(b.cap(), Duration::from_millis(100));
    }

    #[test]
    fn delays_are_not_all_equal() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        b.attempt = 5;
        let ds: Vec<_> = (0..8)
            .map(|_| {
                b.attempt = 5;
                b.next_delay()
            })
            .collect();
        assert!(ds.iter().any(|d| *d != ds[0]), "jitter expected: {ds:?}");
    }
}
