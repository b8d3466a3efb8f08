//! The agent's side of the hub's stall rules: the capture starts here, on the native thread,
//! while the JS loop is still blocked — no round trip to the hub.
//!
//! Design (see `docs/autopilot.md`):
//! 1. The hub sends `rules {rules: [...]}` (the stall rules that apply to this process) after
//!    the welcome and on every change, only to agents whose hello lists the `rules` capability
//!    (an older agent treats an unknown message as a protocol error).
//! 2. A watcher task checks the time since the last JS beat every [`WATCH_EVERY`] while there
//!    are rules. When it reaches a rule's `blocked_ms` (once per stall, outside the rule's
//!    cooldown, with no heavy command running and no own heap snapshot in this stall) it picks
//!    the artifact id and the upload token itself, queues `auto_capture {command_id, rule, reason,
//!    kind..., upload_token}` and dispatches the capture like a hub command — the ack follows the
//!    announcement on the same ordered link, so the hub's record exists before it.
//! 3. The hub records the artifact (`requested_by: "rule:NAME"`, `trigger`), applying its hourly
//!    cap; if it does not take it, it answers `cancel {command_id, reason}` and the agent drops
//!    the capture (nothing is uploaded).

use crate::Inner;
use perf_protocol::{AgentRule, AutoCapture, Command, Message, MAX_AGENT_RULES};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the watcher looks while there are stall rules (the latency floor of a firing).
pub const WATCH_EVERY: Duration = Duration::from_millis(20);
/// Shortest stall a rule may fire on: JS beats every 250 ms, so shorter gaps are its rhythm.
const MIN_BLOCKED_MS: u64 = 500;
/// How often it looks for rules when there are none.
const IDLE_EVERY: Duration = Duration::from_millis(250);

#[derive(Default)]
pub(crate) struct AutopilotState {
    rules: Mutex<Vec<AgentRule>>,
    /// When each rule last fired (its cooldown).
    last_fired: Mutex<HashMap<String, Instant>>,
    /// The stall (identified by its last beat) each rule has fired in already.
    fired_in: Mutex<HashMap<String, Instant>>,
}

impl AutopilotState {
    pub fn set_rules(&self, mut rules: Vec<AgentRule>) {
        // Whatever the hub sends, the host is never profiled in a loop: a rule must wait for a
        // real stall (longer than the beat interval) and keep at least a second between firings.
        rules.retain(|r| r.blocked_ms >= MIN_BLOCKED_MS);
        for r in &mut rules {
            r.cooldown_secs = r.cooldown_secs.max(1);
        }
        rules.truncate(MAX_AGENT_RULES);
        if let Ok(mut r) = self.rules.lock() {
            *r = rules;
        }
    }

    fn rules(&self) -> Vec<AgentRule> {
        self.rules.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// A rule due in the stall that began after `last_beat`, `gap` into it, at `now`.
pub(crate) fn due<'a>(
    rules: &'a [AgentRule],
    last_fired: &HashMap<String, Instant>,
    fired_in: &HashMap<String, Instant>,
    last_beat: Instant,
    gap: Duration,
    now: Instant,
) -> Option<&'a AgentRule> {
    rules.iter().find(|r| {
        gap >= Duration::from_millis(r.blocked_ms)
            && fired_in.get(&r.name) != Some(&last_beat)
            && last_fired.get(&r.name).is_none_or(|t| now.duration_since(*t) >= Duration::from_secs(r.cooldown_secs))
    })
}

pub(crate) async fn watch(inner: Arc<Inner>) {
    let mut shutdown = inner.shutdown.subscribe();
    loop {
        let rules = inner.autopilot.rules();
        let every = if rules.is_empty() { IDLE_EVERY } else { WATCH_EVERY };
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        if !rules.is_empty() && inner.is_connected() {
            check(&inner, &rules, Instant::now());
        }
    }
}

fn check(inner: &Arc<Inner>, rules: &[AgentRule], now: Instant) {
    let Some(last_beat) = inner.metrics.last_beat() else { return };
    let gap = now.saturating_duration_since(last_beat);
    let st = &inner.autopilot;
    let (Ok(mut last_fired), Ok(mut fired_in)) = (st.last_fired.lock(), st.fired_in.lock()) else { return };
    let Some(rule) = due(rules, &last_fired, &fired_in, last_beat, gap, now) else { return };
    // Marked whatever follows: one decision per rule and stall.
    fired_in.insert(rule.name.clone(), last_beat);
    // The agent's own snapshot paused the loop: that stall is ours, not the app's. (Another
    // capture running is not checked here: the dispatch refuses it as busy, and the hub shows
    // the rule's artifact refused with that reason.)
    if inner.pausing_capture().is_some() || inner.metrics.own_pause_in_stall() {
        tracing::debug!(rule = %rule.name, "perf-agent: stall rule ignores the pause of the agent's own snapshot");
        return;
    }
    last_fired.insert(rule.name.clone(), now);
    drop((last_fired, fired_in));
    let late_ms = gap.as_millis().saturating_sub(u128::from(rule.blocked_ms));
    let gap_ms = u64::try_from(gap.as_millis()).unwrap_or(u64::MAX);
    let (Ok(id), Ok(upload_token)) = (random_hex(16), random_hex(32)) else { return };
    let reason = format!(
        "event loop blocked for {gap_ms} ms (rule: blocked_ms >= {}); the agent started the capture {late_ms} ms after the threshold",
        rule.blocked_ms
    );
    tracing::info!(rule = %rule.name, command = %id, late_ms = late_ms as u64, "perf-agent: stall rule fired");
    inner.send(Message::AutoCapture(AutoCapture {
        command_id: id.clone(),
        rule: rule.name.clone(),
        reason,
        blocked_ms: gap_ms,
        kind: rule.capture.clone(),
        upload_token: upload_token.clone(),
    }));
    inner.handle_command(Command { id, kind: rule.capture.clone(), upload_token, force: false });
}

fn random_hex(n: usize) -> Result<String, getrandom::Error> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b)?;
    Ok(hex::encode(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use perf_protocol::CommandKind;

    fn rule(name: &str, blocked_ms: u64, cooldown_secs: u64) -> AgentRule {
        AgentRule {
            name: name.into(),
            blocked_ms,
            capture: CommandKind::CpuProfile { seconds: 1, interval_us: None },
            cooldown_secs,
        }
    }

    #[test]
    fn rules_that_would_profile_a_healthy_loop_are_dropped() {
        let st = AutopilotState::default();
        st.set_rules(vec![rule("twitchy", 100, 0), rule("stall", 1000, 0)]);
        let rules = st.rules();
        assert_eq!(rules.iter().map(|r| (r.name.as_str(), r.cooldown_secs)).collect::<Vec<_>>(), [("stall", 1)]);
    }

    #[test]
    fn a_rule_fires_once_per_stall_past_its_threshold_and_outside_its_cooldown() {
        let t0 = Instant::now();
        let rules = [rule("long", 2000, 60), rule("stall", 1000, 60)];
        let (mut fired, mut fired_in) = (HashMap::new(), HashMap::new());
        let ms = Duration::from_millis;
        assert!(due(&rules, &fired, &fired_in, t0, ms(999), t0 + ms(999)).is_none(), "not yet");
        let r = due(&rules, &fired, &fired_in, t0, ms(1000), t0 + ms(1000)).expect("due at the threshold");
        assert_eq!(r.name, "stall");
        fired.insert(r.name.clone(), t0 + ms(1000));
        fired_in.insert(r.name.clone(), t0);
        assert!(due(&rules, &fired, &fired_in, t0, ms(1500), t0 + ms(1500)).is_none(), "once per stall");
        assert_eq!(due(&rules, &fired, &fired_in, t0, ms(2000), t0 + ms(2000)).map(|r| &*r.name), Some("long"));
        // A new stall (another last beat) within the cooldown: held; after it: due again.
        let t1 = t0 + ms(5000);
        assert!(due(&rules[1..], &fired, &fired_in, t1, ms(1200), t1 + ms(1200)).is_none(), "cooldown");
        let t2 = t0 + Duration::from_secs(70);
        assert!(due(&rules[1..], &fired, &fired_in, t2, ms(1200), t2 + ms(1200)).is_some());
    }
}
