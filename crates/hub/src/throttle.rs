//! Aggregation of events a flood could repeat without end (refused connections, forged upload
//! tokens, takeover attempts): the first event of a key in a window is reported at once, the
//! rest of that window only as a count with the next report, so a log or the audit trail gets
//! at most one entry per key per window however fast the events come.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most keys tracked at once; beyond, events share one overflow key (still counted).
const MAX_KEYS: usize = 4096;
const OVERFLOW_KEY: &str = "*";

pub struct Throttle {
    window: Duration,
    keys: Mutex<HashMap<String, Window>>,
}

struct Window {
    started: Instant,
    /// Events of this window not reported yet.
    suppressed: u64,
}

impl Throttle {
    pub fn new(window: Duration) -> Self {
        Self { window, keys: Mutex::new(HashMap::new()) }
    }

    /// Counts one event of `key`. `Some(n)`: report it now, with `n` earlier events of the key
    /// that were only counted; `None`: counted, report later.
    pub fn hit(&self, key: &str) -> Option<u64> {
        let now = Instant::now();
        let Ok(mut keys) = self.keys.lock() else { return Some(0) };
        if keys.len() >= MAX_KEYS && !keys.contains_key(key) {
            keys.retain(|_, w| now.duration_since(w.started) < self.window);
        }
        let key = if keys.len() >= MAX_KEYS && !keys.contains_key(key) { OVERFLOW_KEY } else { key };
        match keys.get_mut(key) {
            Some(w) if now.duration_since(w.started) < self.window => {
                w.suppressed += 1;
                None
            }
            Some(w) => {
                let earlier = w.suppressed;
                *w = Window { started: now, suppressed: 0 };
                Some(earlier)
            }
            None => {
                keys.insert(key.to_string(), Window { started: now, suppressed: 0 });
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_report_per_key_per_window_with_the_count() {
        let t = Throttle::new(Duration::from_millis(50));
        assert_eq!(t.hit("a"), Some(0));
        assert_eq!(t.hit("a"), None);
        assert_eq!(t.hit("a"), None);
        assert_eq!(t.hit("b"), Some(0), "keys are independent");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(t.hit("a"), Some(2), "the next window reports what was only counted");
    }

    #[test]
    fn keys_are_bounded() {
        let t = Throttle::new(Duration::from_secs(60));
        for i in 0..MAX_KEYS * 2 {
            t.hit(&format!("k{i}"));
        }
        assert!(t.keys.lock().expect("lock").len() <= MAX_KEYS + 1);
    }
}
