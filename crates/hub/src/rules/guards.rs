//! What keeps the autopilot from becoming the outage: a cooldown per rule and process, and a
//! cap on automatic captures per hour across the hub. Time is passed in, so every decision is
//! testable with synthetic instants.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Most (rule, process) cooldowns remembered; beyond it, expired ones are forgotten first.
const MAX_COOLDOWNS: usize = 200_000;
const HOUR: Duration = Duration::from_secs(3600);

/// Why a rule that fired took no capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// Fired within its cooldown for this process (silent: no audit entry).
    Cooldown,
    /// The hub took its hourly number of automatic captures already.
    HourlyCap { cap: u32 },
}

#[derive(Debug, Default)]
pub struct Guards {
    /// When each (rule, process) last fired.
    last_fired: HashMap<(String, String), (Instant, Duration)>,
    /// When the automatic captures of the last hour were started, oldest first.
    captures: VecDeque<Instant>,
}

impl Guards {
    /// Decides whether `rule` may capture on `process` at `now`. A firing starts the cooldown
    /// whatever follows (a capture, a refusal, the cap), so each appears once per cooldown.
    pub fn admit(&mut self, rule: &str, process: &str, cooldown: Duration, cap: u32, now: Instant) -> Result<(), Held> {
        let key = (rule.to_string(), process.to_string());
        if let Some((at, cd)) = self.last_fired.get(&key) {
            if now.saturating_duration_since(*at) < *cd {
                return Err(Held::Cooldown);
            }
        }
        if self.last_fired.len() >= MAX_COOLDOWNS {
            self.last_fired.retain(|_, (at, cd)| now.saturating_duration_since(*at) < *cd);
        }
        if self.last_fired.len() < MAX_COOLDOWNS {
            self.last_fired.insert(key, (now, cooldown));
        }
        while self.captures.front().is_some_and(|t| now.saturating_duration_since(*t) >= HOUR) {
            self.captures.pop_front();
        }
        if self.captures.len() >= cap as usize {
            return Err(Held::HourlyCap { cap });
        }
        self.captures.push_back(now);
        Ok(())
    }

    /// Automatic captures started in the hour before `now`.
    pub fn captures_last_hour(&self, now: Instant) -> usize {
        self.captures.iter().filter(|t| now.saturating_duration_since(**t) < HOUR).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn cooldown_is_per_rule_and_process() {
        let t0 = Instant::now();
        let mut g = Guards::default();
        assert_eq!(g.admit("stall", "p1", s(60), 20, t0), Ok(()));
        assert_eq!(g.admit("stall", "p1", s(60), 20, t0 + s(59)), Err(Held::Cooldown));
        assert_eq!(g.admit("stall", "p2", s(60), 20, t0 + s(1)), Ok(()), "another process");
        assert_eq!(g.admit("oom", "p1", s(60), 20, t0 + s(1)), Ok(()), "another rule");
        assert_eq!(g.admit("stall", "p1", s(60), 20, t0 + s(60)), Ok(()));
    }

    #[test]
    fn the_hourly_cap_holds_and_frees_after_an_hour() {
        let t0 = Instant::now();
        let mut g = Guards::default();
        for i in 0..3 {
            assert_eq!(g.admit("r", &format!("p{i}"), s(1), 3, t0 + s(i)), Ok(()));
        }
        assert_eq!(g.admit("r", "p9", s(1), 3, t0 + s(10)), Err(Held::HourlyCap { cap: 3 }));
        // The held firing still started its cooldown: it is not reported again at once.
        assert_eq!(g.admit("r", "p9", s(30), 3, t0 + s(10)), Err(Held::Cooldown));
        assert_eq!(g.captures_last_hour(t0 + s(10)), 3);
        assert_eq!(g.admit("r", "p8", s(1), 3, t0 + s(3600)), Ok(()), "the first capture left the window");
    }

    #[test]
    fn a_process_stalling_every_second_for_a_minute_gets_one_capture_per_cooldown() {
        let t0 = Instant::now();
        let mut g = Guards::default();
        let taken = (0..60).filter(|i| g.admit("stall", "p", s(20), 20, t0 + s(*i)).is_ok()).count();
        assert_eq!(taken, 3, "at 0, 20 and 40 s");
    }
}
