//! Stall detection for the JS main thread, as a pure state machine.
//!
//! The JS side beats (a ref-less timer calling into the addon) well within the threshold;
//! the native thread calls `check(now)` on its own schedule. No beat for longer than the
//! threshold means the event loop is stuck (a hot loop, a sync syscall, a long GC). Time is
//! passed in, never read here, so every transition is testable with synthetic Instants.

use std::time::{Duration, Instant};

use serde::Serialize;

/// Default threshold: no JS beat for more than 1 s counts as blocked.
pub const DEFAULT_STALL_THRESHOLD: Duration = Duration::from_millis(1000);

/// What the native thread currently believes about the JS thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StallState {
    Running,
    /// `since` is the last beat seen; `for_ms` how long ago that was at the `check`.
    Blocked {
        since: Instant,
        for_ms: u64,
    },
}

/// The serializable form sent to the hub: `{"state":"running"}` or
/// `{"state":"blocked","blocked_ms":1234}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum StallReport {
    Running,
    Blocked { blocked_ms: u64 },
}

impl StallState {
    pub fn report(&self) -> StallReport {
        match *self {
            StallState::Running => StallReport::Running,
            StallState::Blocked { for_ms, .. } => StallReport::Blocked { blocked_ms: for_ms },
        }
    }

    pub fn is_blocked(&self) -> bool {
        matches!(self, StallState::Blocked { .. })
    }
}

/// Tracks JS heartbeats and decides Running / Blocked.
#[derive(Debug, Clone)]
pub struct StallDetector {
    threshold: Duration,
    last_beat: Option<Instant>,
    stalls: u64,
    longest: Duration,
}

impl Default for StallDetector {
    fn default() -> Self {
        Self::new(DEFAULT_STALL_THRESHOLD)
    }
}

impl StallDetector {
    /// Armed by the first `js_beat`: before it, `check` says Running (JS has not started
    /// beating yet, and blaming it would be a false alarm at start-up).
    pub fn new(threshold: Duration) -> Self {
        StallDetector { threshold, last_beat: None, stalls: 0, longest: Duration::ZERO }
    }

    /// When JS last beat (`None` before its first beat): the autopilot measures a stall from it
    /// against each rule's own `blocked_ms`, whatever this detector's threshold.
    pub fn last_beat(&self) -> Option<Instant> {
        self.last_beat
    }

    pub fn threshold(&self) -> Duration {
        self.threshold
    }

    /// Records a beat from JS. Returns the length of the stall that just ended, if the gap
    /// since the previous beat exceeded the threshold (whether or not `check` saw it).
    pub fn js_beat(&mut self, now: Instant) -> Option<Duration> {
        let gap = self.last_beat.map(|t| now.saturating_duration_since(t));
        // Out-of-order beats (an older `now`) must not move the clock backwards.
        if self.last_beat.is_none_or(|t| now > t) {
            self.last_beat = Some(now);
        }
        let gap = gap.filter(|g| *g > self.threshold)?;
        self.stalls += 1;
        self.longest = self.longest.max(gap);
        Some(gap)
    }

    /// The state at `now`. Blocked clears by itself on the next beat.
    pub fn check(&self, now: Instant) -> StallState {
        let Some(last) = self.last_beat else {
            return StallState::Running;
        };
        let gap = now.saturating_duration_since(last);
        if gap > self.threshold {
            let for_ms = u64::try_from(gap.as_millis()).unwrap_or(u64::MAX);
            StallState::Blocked { since: last, for_ms }
        } else {
            StallState::Running
        }
    }

    /// Stalls that have ended so far (counted at the beat that ended them).
    pub fn stall_count(&self) -> u64 {
        self.stalls
    }

    /// The longest ended stall.
    pub fn longest_stall(&self) -> Duration {
        self.longest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn running_before_first_beat() {
        let d = StallDetector::default();
        assert_eq!(d.check(Instant::now() + ms(60_000)), StallState::Running);
    }

    #[test]
    fn blocked_after_threshold_then_clears() {
        let t0 = Instant::now();
        let mut d = StallDetector::default();
        assert_eq!(d.js_beat(t0), None);
        assert_eq!(d.check(t0 + ms(500)), StallState::Running);
        assert_eq!(d.check(t0 + ms(1000)), StallState::Running); // exactly the threshold: not yet
        assert_eq!(d.check(t0 + ms(1001)), StallState::Blocked { since: t0, for_ms: 1001 });
        let s = d.check(t0 + ms(3500));
        assert_eq!(s, StallState::Blocked { since: t0, for_ms: 3500 });
        assert_eq!(s.report(), StallReport::Blocked { blocked_ms: 3500 });
        assert_eq!(d.js_beat(t0 + ms(4000)), Some(ms(4000)));
        assert_eq!(d.check(t0 + ms(4001)), StallState::Running);
        assert_eq!(d.stall_count(), 1);
        assert_eq!(d.longest_stall(), ms(4000));
    }

    #[test]
    fn regular_beats_never_block() {
        let t0 = Instant::now();
        let mut d = StallDetector::new(ms(200));
        for i in 0..100 {
            assert_eq!(d.js_beat(t0 + ms(i * 100)), None);
            assert_eq!(d.check(t0 + ms(i * 100 + 150)), StallState::Running);
        }
        assert_eq!(d.stall_count(), 0);
    }

    #[test]
    fn stall_unseen_by_check_still_counted() {
        let t0 = Instant::now();
        let mut d = StallDetector::new(ms(100));
        d.js_beat(t0);
        assert_eq!(d.js_beat(t0 + ms(250)), Some(ms(250)));
        assert_eq!(d.stall_count(), 1);
    }

    #[test]
    fn out_of_order_instants_do_not_panic_or_rewind() {
        let t0 = Instant::now() + ms(10_000);
        let mut d = StallDetector::new(ms(100));
        d.js_beat(t0);
        assert_eq!(d.js_beat(t0 - ms(5000)), None);
        assert_eq!(d.check(t0 - ms(9000)), StallState::Running);
        assert!(d.check(t0 + ms(150)).is_blocked());
    }

    #[test]
    fn report_json() {
        let j = serde_json::to_string(&StallReport::Blocked { blocked_ms: 12 }).unwrap();
        assert_eq!(j, r#"{"state":"blocked","blocked_ms":12}"#);
        assert_eq!(serde_json::to_string(&StallReport::Running).unwrap(), r#"{"state":"running"}"#);
    }
}
