//! Autopilot capture rules: "when this process stalls / nears its heap limit / grows its RSS /
//! burns CPU, capture it" — without an operator at the console.
//!
//! - [`spec`]: what a rule is, how a request becomes one (validation);
//! - [`guards`]: the cooldown per rule and process, the hourly cap across the hub;
//! - [`eval`]: a metrics sample against a rule's trigger;
//! - here: the rules domain (rules from `hub.db` and the config file, kept in memory for the
//!   evaluation on every sample) and the firing path.
//!
//! Where a trigger is evaluated: on the hub, on metrics ingest (latency: one sample; the agent
//! sends a sample at once when its loop becomes blocked). Stall rules are also pushed down the
//! link to agents that announce the `rules` capability ([`AgentRule`]), whose native stall watcher
//! starts the capture itself — see `docs/autopilot.md` for that path.
//!
//! Guards, in order: a sample the agent marks as taken during its own capture (a heap snapshot's
//! pause is not a stall) fires nothing; a rule fires at most once per `cooldown_secs` per
//! process; a process with a capture in flight is skipped (audited, saying which command); the
//! hub takes at most `autopilot_max_captures_per_hour` automatic captures (audited when held).
//! Each capture is on the audit trail as actor `rule:NAME` with the figures that fired it; its
//! artifact carries `trigger: {rule, reason}` and `requested_by: "rule:NAME"`.
//!
//! The last capture each rule took ([`LastFired`], `last_fired` in `GET /api/rules`) is kept in
//! memory and found again after a restart from the newest artifacts (each names its rule), so
//! it needs no write per firing.

pub mod eval;
pub mod fire;
pub mod guards;
pub mod spec;

use crate::store::{Db, StoreError};
use guards::{Guards, Held};
use perf_protocol::MetricsSample;
use serde::Serialize;
pub use spec::{Rule, RuleSource, RuleSpec, Trigger, When};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

/// Why a rule could not be added or removed.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("{0}")]
    Invalid(String),
    #[error("a rule named '{0}' exists")]
    Exists(String),
    #[error("no such rule '{0}'")]
    NotFound(String),
    #[error("rule '{0}' comes from the hub's config file: remove it there")]
    FromConfig(String),
    #[error("the hub holds {0} rules already")]
    TooMany(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A rule that fired for a process and passed the cooldown and the cap: capture now.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    pub rule: Rule,
    /// `"blocked_ms 1250 >= 1000"`: what the artifact's `trigger.reason` says.
    pub reason: String,
    /// The figures of the sample that fired it, for the audit.
    pub figures: serde_json::Value,
}

/// What the evaluation of one sample decided, per rule that fired.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Capture(Firing),
    /// Fired but held by the hourly cap (audited).
    Held(Firing, String),
}

/// The last capture a rule took: when, which artifact, of which process, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastFired {
    pub at: String,
    pub artifact: String,
    pub process_id: String,
    pub reason: String,
}

/// A rule as `GET /api/rules` shows it: the rule and its last capture (`null`: never fired).
#[derive(Debug, Clone, Serialize)]
pub struct RuleView {
    #[serde(flatten)]
    pub rule: Rule,
    pub last_fired: Option<LastFired>,
}

/// Newest artifacts read at start to find each rule's last capture again (older firings are
/// shown as "never" after a restart: a bound on the start-up cost).
const LAST_FIRED_SCAN: u32 = 5000;

/// See [`Rules::admit_agent_firing`].
const AGENT_COOLDOWN_SLACK: std::time::Duration = std::time::Duration::from_secs(2);

pub struct Rules {
    db: Db,
    /// Every rule, config file's first; swapped whole on a change (readers never wait long).
    all: RwLock<Arc<Vec<Rule>>>,
    guards: Mutex<Guards>,
    /// Since when each (process, rule) has been above a `cpu_percent` threshold.
    cpu_above: Mutex<HashMap<String, HashMap<String, Instant>>>,
    /// Per rule name (only rules that exist: at most [`spec::MAX_RULES`] entries).
    last_fired: Mutex<HashMap<String, LastFired>>,
    max_per_hour: u32,
}

impl Rules {
    /// The stored rules and those of the config file (which win over a stored one of the same
    /// name: the file is what the operator wrote last).
    pub fn open(db: Db, from_config: Vec<Rule>, max_per_hour: u32) -> Result<Self, StoreError> {
        let stored = db.blocking().list_rules()?;
        let mut all = from_config;
        for (name, doc) in stored {
            match serde_json::from_str::<Rule>(&doc) {
                Ok(r) if !all.iter().any(|c| c.name == r.name) => all.push(r),
                Ok(_) => tracing::warn!(rule = %name, "rule in hub.db shadowed by the config file's rule of that name"),
                Err(e) => tracing::warn!(rule = %name, error = %e, "store: skipping a rule that does not parse"),
            }
        }
        let last_fired = last_fired_from_artifacts(&db, &all)?;
        Ok(Self {
            db,
            all: RwLock::new(Arc::new(all)),
            guards: Mutex::new(Guards::default()),
            cpu_above: Mutex::new(HashMap::new()),
            last_fired: Mutex::new(last_fired),
            max_per_hour,
        })
    }

    /// Every rule with its last capture.
    pub fn views(&self) -> Vec<RuleView> {
        let last = self.last_fired.lock().map(|m| m.clone()).unwrap_or_default();
        self.all().iter().map(|r| RuleView { rule: r.clone(), last_fired: last.get(&r.name).cloned() }).collect()
    }

    /// `rule` took a capture: the artifact `a`.
    pub fn record_firing(&self, rule: &str, a: &crate::store::ArtifactRecord) {
        if !self.all().iter().any(|r| r.name == rule) {
            return;
        }
        if let Ok(mut m) = self.last_fired.lock() {
            m.insert(rule.to_string(), last_fired_of(a));
        }
    }

    pub fn all(&self) -> Arc<Vec<Rule>> {
        self.all.read().map(|a| a.clone()).unwrap_or_default()
    }

    pub async fn add(&self, rule: Rule) -> Result<Rule, RuleError> {
        let current = self.all();
        if current.len() >= spec::MAX_RULES {
            return Err(RuleError::TooMany(current.len()));
        }
        if current.iter().any(|r| r.name == rule.name) {
            return Err(RuleError::Exists(rule.name));
        }
        let doc = serde_json::to_string(&rule).map_err(|e| RuleError::Invalid(e.to_string()))?;
        let (name, created) = (rule.name.clone(), rule.created_at.clone());
        if !self.db.run(move |s| s.insert_rule(&name, &created, &doc)).await? {
            return Err(RuleError::Exists(rule.name));
        }
        // A new rule of an old name has not fired yet.
        if let Ok(mut m) = self.last_fired.lock() {
            m.remove(&rule.name);
        }
        self.replace(|all| all.push(rule.clone()));
        Ok(rule)
    }

    pub async fn remove(&self, name: &str) -> Result<Rule, RuleError> {
        let rule =
            self.all().iter().find(|r| r.name == name).cloned().ok_or_else(|| RuleError::NotFound(name.into()))?;
        if rule.source == RuleSource::Config {
            return Err(RuleError::FromConfig(rule.name));
        }
        let key = name.to_string();
        self.db.run(move |s| s.delete_rule(&key)).await?;
        self.replace(|all| all.retain(|r| r.name != name));
        if let Ok(mut m) = self.last_fired.lock() {
            m.remove(name);
        }
        Ok(rule)
    }

    fn replace(&self, change: impl FnOnce(&mut Vec<Rule>)) {
        if let Ok(mut all) = self.all.write() {
            let mut next = all.as_ref().clone();
            change(&mut next);
            *all = Arc::new(next);
        }
    }

    /// The stall rules that apply to a process, as pushed to its agent.
    pub fn for_agent(&self, app: &str, labels: &BTreeMap<String, String>) -> Vec<perf_protocol::AgentRule> {
        self.all()
            .iter()
            .filter(|r| r.matches(app, labels))
            .filter_map(|r| match r.trigger() {
                Trigger::BlockedMs(ms) => Some(perf_protocol::AgentRule {
                    name: r.name.clone(),
                    blocked_ms: ms,
                    capture: r.capture.clone(),
                    cooldown_secs: r.cooldown_secs,
                }),
                _ => None,
            })
            .collect()
    }

    /// Evaluates one sample of a process against every rule that applies to it. `agent_fires`:
    /// the process's agent runs its stall rules itself (the hub then leaves those to it).
    pub fn evaluate(
        &self,
        process_id: &str,
        app: &str,
        labels: &BTreeMap<String, String>,
        sample: &MetricsSample,
        agent_fires: bool,
    ) -> Vec<Decision> {
        let rules = self.all();
        if rules.is_empty() {
            return vec![];
        }
        let now = Instant::now();
        let figures = eval::Figures::of(sample);
        let mut decisions = vec![];
        for rule in rules.iter().filter(|r| r.matches(app, labels)) {
            let trigger = rule.trigger();
            if agent_fires && matches!(trigger, Trigger::BlockedMs(_)) {
                continue;
            }
            let above_since = self.cpu_above_since(process_id, rule, &trigger, &figures, now);
            let Some(reason) = eval::fired(&trigger, &figures, above_since, now) else { continue };
            // The agent's own heap snapshot paused the loop: that stall is ours, not the app's.
            if figures.own_capture.is_some() && matches!(trigger, Trigger::BlockedMs(_)) {
                tracing::debug!(rule = %rule.name, process = %process_id, "stall rule ignores the pause of the agent's own snapshot");
                continue;
            }
            let firing = Firing { rule: rule.clone(), reason, figures: figures.to_json() };
            let cooldown = std::time::Duration::from_secs(rule.cooldown_secs);
            let Ok(mut guards) = self.guards.lock() else { continue };
            match guards.admit(&rule.name, process_id, cooldown, self.max_per_hour, now) {
                Ok(()) => decisions.push(Decision::Capture(firing)),
                Err(Held::Cooldown) => {}
                Err(Held::HourlyCap { cap }) => {
                    decisions.push(Decision::Held(firing, format!("held: the hourly cap of {cap} automatic captures")))
                }
            }
        }
        decisions
    }

    /// An agent-initiated capture (the agent's own stall watcher fired `rule`): passes the same
    /// cooldown and cap as a hub-side firing.
    pub fn admit_agent_firing(&self, rule: &Rule, process_id: &str) -> Result<(), String> {
        // The agent keeps the cooldown exactly; the hub's record of the last firing is a link's
        // latency later, so the next firing at the agent's cooldown edge must not look early.
        let cooldown = std::time::Duration::from_secs(rule.cooldown_secs).saturating_sub(AGENT_COOLDOWN_SLACK);
        let mut guards = self.guards.lock().map_err(|_| "rule state poisoned".to_string())?;
        match guards.admit(&rule.name, process_id, cooldown, self.max_per_hour, Instant::now()) {
            Ok(()) => Ok(()),
            Err(Held::Cooldown) => Err("held: within the rule's cooldown for this process".into()),
            Err(Held::HourlyCap { cap }) => Err(format!("held: the hourly cap of {cap} automatic captures")),
        }
    }

    /// For a `cpu_percent` rule: since when the process has been above it (reset below it).
    fn cpu_above_since(
        &self,
        process_id: &str,
        rule: &Rule,
        trigger: &Trigger,
        f: &eval::Figures,
        now: Instant,
    ) -> Option<Instant> {
        let Trigger::Cpu { percent, .. } = trigger else { return None };
        let mut map = self.cpu_above.lock().ok()?;
        let per_process = map.entry(process_id.to_string()).or_default();
        if f.cpu_percent.is_some_and(|c| c > *percent) {
            Some(*per_process.entry(rule.name.clone()).or_insert(now))
        } else {
            per_process.remove(&rule.name);
            None
        }
    }

    /// A process's link is gone: its CPU streaks end (cooldowns stay, across a reconnect).
    pub fn forget(&self, process_id: &str) {
        if let Ok(mut m) = self.cpu_above.lock() {
            m.remove(process_id);
        }
    }

    /// Automatic captures taken in the last hour.
    pub fn captures_last_hour(&self) -> usize {
        self.guards.lock().map(|g| g.captures_last_hour(Instant::now())).unwrap_or(0)
    }
}

fn last_fired_of(a: &crate::store::ArtifactRecord) -> LastFired {
    LastFired {
        at: a.created_at.clone(),
        artifact: a.id.clone(),
        process_id: a.process_id.clone(),
        reason: a.trigger.as_ref().map(|t| t.reason.clone()).unwrap_or_default(),
    }
}

/// Each rule's newest capture among the newest artifacts, taken after the rule was made (a
/// deleted rule's captures don't count for a new rule of its name).
fn last_fired_from_artifacts(db: &Db, rules: &[Rule]) -> Result<HashMap<String, LastFired>, StoreError> {
    let mut out = HashMap::new();
    // Measured: ~0.3 s for 5,000 artifacts in a debug build; nothing at all without rules.
    if rules.is_empty() {
        return Ok(out);
    }
    for a in db.blocking().list_artifacts_page(None, None, None, LAST_FIRED_SCAN)? {
        let Some(t) = &a.trigger else { continue };
        let Some(rule) = rules.iter().find(|r| r.name == t.rule) else { continue };
        if a.created_at >= rule.created_at && !out.contains_key(&rule.name) {
            out.insert(rule.name.clone(), last_fired_of(&a));
        }
    }
    Ok(out)
}
