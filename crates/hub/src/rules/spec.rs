//! What a capture rule is and how a request becomes one: the body of `POST /api/rules` (or an
//! entry of the config file's `rules`) is checked field by field into a [`Rule`], with errors an
//! operator can act on (the API answers them `400`).

use crate::api::{command_kind, CommandRequest};
use perf_protocol::CommandKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most rules a hub keeps (each is evaluated on every metrics sample of the processes it matches).
pub const MAX_RULES: usize = 256;
/// Bounds of the fields of a rule.
const MAX_NAME_LEN: usize = 64;
const MAX_APPS: usize = 64;
const MAX_LABELS: usize = 16;
/// From 500 ms: JS beats every 250 ms, so shorter gaps are the loop's normal rhythm.
pub const BLOCKED_MS: std::ops::RangeInclusive<u64> = 500..=3_600_000;
pub const FOR_SECS: std::ops::RangeInclusive<u64> = 1..=3600;
pub const COOLDOWN_SECS: std::ops::RangeInclusive<u64> = 1..=7 * 86_400;
/// Below this an RSS rule would fire on every process.
const MIN_RSS_BYTES: u64 = 1 << 20;
/// Default length of a rule's timed capture.
const DEFAULT_SECONDS: u32 = 10;

/// The `when` of a rule as written: exactly one trigger (`cpu_percent` with its `for_secs`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heap_used_ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_secs: Option<u64>,
}

/// A validated trigger.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trigger {
    /// The event loop has been blocked this long.
    BlockedMs(u64),
    /// Heap used above this share of the heap limit.
    HeapUsedRatio(f64),
    RssBytes(u64),
    /// CPU (user + system, 100 = one core) above `percent` for `for_secs` in a row.
    Cpu {
        percent: f64,
        for_secs: u64,
    },
}

impl When {
    pub fn trigger(&self) -> Result<Trigger, String> {
        let given = [
            self.blocked_ms.is_some(),
            self.heap_used_ratio.is_some(),
            self.rss_bytes.is_some(),
            self.cpu_percent.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err("`when` needs exactly one trigger: blocked_ms, heap_used_ratio, rss_bytes or \
                        cpu_percent (with for_secs)"
                .into());
        }
        if self.for_secs.is_some() && self.cpu_percent.is_none() {
            return Err("for_secs goes with cpu_percent only".into());
        }
        if let Some(ms) = self.blocked_ms {
            return in_range("blocked_ms", ms, BLOCKED_MS).map(Trigger::BlockedMs);
        }
        if let Some(r) = self.heap_used_ratio {
            if !(r.is_finite() && r > 0.0 && r <= 1.0) {
                return Err(format!("heap_used_ratio must be above 0.0 and at most 1.0 (of the heap limit), got {r}"));
            }
            return Ok(Trigger::HeapUsedRatio(r));
        }
        if let Some(b) = self.rss_bytes {
            if b < MIN_RSS_BYTES {
                return Err(format!("rss_bytes must be at least {MIN_RSS_BYTES}, got {b}"));
            }
            return Ok(Trigger::RssBytes(b));
        }
        let percent = self.cpu_percent.unwrap_or_default();
        if !(percent.is_finite() && percent > 0.0 && percent <= 100_000.0) {
            return Err(format!("cpu_percent must be above 0 (100 = one core), got {percent}"));
        }
        let for_secs = self.for_secs.ok_or("cpu_percent needs for_secs (how long the CPU stays above it)")?;
        Ok(Trigger::Cpu { percent, for_secs: in_range("for_secs", for_secs, FOR_SECS)? })
    }
}

fn in_range(name: &str, v: u64, range: std::ops::RangeInclusive<u64>) -> Result<u64, String> {
    if range.contains(&v) {
        Ok(v)
    } else {
        Err(format!("{name} must be between {} and {}, got {v}", range.start(), range.end()))
    }
}

/// Where a rule comes from: the API (stored in `hub.db`, deletable) or the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleSource {
    Api,
    Config,
}

/// A capture rule as stored and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub name: String,
    pub when: When,
    /// The command the rule sends (`{"kind": "cpu_profile", "seconds": 5, ...}`).
    pub capture: CommandKind,
    /// Apps it applies to; empty: every app.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apps: Vec<String>,
    /// Labels a process must carry (all of them); empty: any.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub cooldown_secs: u64,
    pub created_by: String,
    pub created_at: String,
    pub source: RuleSource,
}

impl Rule {
    pub fn trigger(&self) -> Trigger {
        // Validated when the rule was made; a stored rule that no longer parses never fires.
        self.when.trigger().unwrap_or(Trigger::BlockedMs(u64::MAX))
    }

    /// Whether the rule applies to a process of `app` with `labels`.
    pub fn matches(&self, app: &str, labels: &BTreeMap<String, String>) -> bool {
        (self.apps.is_empty() || self.apps.iter().any(|a| a == app))
            && self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// The body of `POST /api/rules` and an entry of the config file's `rules`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    pub when: When,
    #[serde(default)]
    pub capture: Option<CommandRequest>,
    #[serde(default)]
    pub apps: Option<Vec<String>>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub cooldown_secs: Option<u64>,
}

impl RuleSpec {
    /// Checks every field; `default_cooldown_secs` applies when the spec gives none.
    pub fn validate(self, default_cooldown_secs: u64, created_by: &str, source: RuleSource) -> Result<Rule, String> {
        valid_name(&self.name)?;
        let trigger = self.when.trigger()?;
        let capture = match &self.capture {
            Some(req) if req.force => return Err("a rule never forces a capture past the agent's safety checks".into()),
            Some(req) => command_kind(req)?,
            None => default_capture(trigger),
        };
        let apps = self.apps.unwrap_or_default();
        if apps.len() > MAX_APPS || apps.iter().any(|a| a.is_empty() || a.len() > 128) {
            return Err(format!("apps: at most {MAX_APPS} names of 1-128 characters"));
        }
        let labels = self.labels.unwrap_or_default();
        if labels.len() > MAX_LABELS || labels.iter().any(|(k, v)| k.is_empty() || k.len() > 128 || v.len() > 512) {
            return Err(format!("labels: at most {MAX_LABELS}, keys of 1-128 and values of at most 512 characters"));
        }
        let cooldown_secs =
            in_range("cooldown_secs", self.cooldown_secs.unwrap_or(default_cooldown_secs), COOLDOWN_SECS)?;
        Ok(Rule {
            name: self.name,
            when: self.when,
            capture,
            apps,
            labels,
            cooldown_secs,
            created_by: created_by.to_string(),
            created_at: crate::store::now_rfc3339(),
            source,
        })
    }
}

/// What a rule captures when it doesn't say: the CPU for a stall or CPU rule, a heap sampling
/// profile (cheap, no pause, no memory spike: never the cause of an OOM-kill) for a memory rule.
fn default_capture(trigger: Trigger) -> CommandKind {
    match trigger {
        Trigger::BlockedMs(_) | Trigger::Cpu { .. } => {
            CommandKind::CpuProfile { seconds: DEFAULT_SECONDS, interval_us: None }
        }
        Trigger::HeapUsedRatio(_) | Trigger::RssBytes(_) => {
            CommandKind::HeapSampling { seconds: DEFAULT_SECONDS, interval_bytes: None }
        }
    }
}

/// Names appear in URLs and audit actors (`rule:NAME`): a short, plain word.
pub fn valid_name(name: &str) -> Result<(), String> {
    let plain = name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if name.is_empty() || name.len() > MAX_NAME_LEN || !plain {
        return Err(format!("a rule name is 1-{MAX_NAME_LEN} characters of letters, digits, '-', '_' and '.'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Result<Rule, String> {
        let spec: RuleSpec = serde_json::from_value(json).map_err(|e| e.to_string())?;
        spec.validate(300, "token:t", RuleSource::Api)
    }

    #[test]
    fn each_trigger_validates_with_its_default_capture() {
        let r = spec(serde_json::json!({"name": "stall", "when": {"blocked_ms": 1000}})).expect("stall");
        assert_eq!(r.trigger(), Trigger::BlockedMs(1000));
        assert_eq!(r.capture.name(), "cpu_profile");
        assert_eq!(r.cooldown_secs, 300);
        let r = spec(serde_json::json!({"name": "oom", "when": {"heap_used_ratio": 0.8}})).expect("oom");
        assert_eq!(r.capture.name(), "heap_sampling", "a memory rule samples by default");
        let r = spec(serde_json::json!({"name": "rss", "when": {"rss_bytes": 1_u64 << 30}, "cooldown_secs": 60}))
            .expect("rss");
        assert_eq!((r.trigger(), r.cooldown_secs), (Trigger::RssBytes(1 << 30), 60));
        let r = spec(serde_json::json!({"name": "hot", "when": {"cpu_percent": 90, "for_secs": 30},
            "capture": {"kind": "perf_flamegraph", "seconds": 5}, "apps": ["orders"], "labels": {"role": "web"}}))
        .expect("cpu");
        assert_eq!(r.trigger(), Trigger::Cpu { percent: 90.0, for_secs: 30 });
        assert_eq!(r.capture.name(), "perf_flamegraph");
        assert!(r.matches("orders", &BTreeMap::from([("role".into(), "web".into())])));
        assert!(!r.matches("orders", &BTreeMap::new()), "a label it needs is missing");
        assert!(!r.matches("billing", &BTreeMap::from([("role".into(), "web".into())])));
    }

    #[test]
    fn bad_rules_are_refused_with_a_reason() {
        let cases = [
            (serde_json::json!({"name": "x", "when": {}}), "exactly one trigger"),
            (serde_json::json!({"name": "x", "when": {"blocked_ms": 10, "rss_bytes": 1}}), "exactly one trigger"),
            (serde_json::json!({"name": "x", "when": {"blocked_ms": 10}}), "blocked_ms must be between"),
            (serde_json::json!({"name": "x", "when": {"heap_used_ratio": 1.5}}), "heap_used_ratio"),
            (serde_json::json!({"name": "x", "when": {"heap_used_ratio": 0.0}}), "heap_used_ratio"),
            (serde_json::json!({"name": "x", "when": {"rss_bytes": 5}}), "rss_bytes"),
            (serde_json::json!({"name": "x", "when": {"cpu_percent": 90}}), "needs for_secs"),
            (serde_json::json!({"name": "x", "when": {"blocked_ms": 1000, "for_secs": 3}}), "for_secs goes with"),
            (serde_json::json!({"name": "x", "when": {"cpu_percent": 90, "for_secs": 0}}), "for_secs must be"),
            (serde_json::json!({"name": "x y", "when": {"blocked_ms": 1000}}), "rule name"),
            (serde_json::json!({"name": "", "when": {"blocked_ms": 1000}}), "rule name"),
            (serde_json::json!({"name": "x", "when": {"blocked_ms": 1000}, "cooldown_secs": 0}), "cooldown_secs"),
            (
                serde_json::json!({"name": "x", "when": {"blocked_ms": 1000}, "capture": {"kind": "rm"}}),
                "unknown command",
            ),
            (
                serde_json::json!({"name": "x", "when": {"blocked_ms": 1000}, "capture": {"kind": "heap_snapshot", "force": true}}),
                "never forces",
            ),
            (serde_json::json!({"name": "x", "when": {"blocked_ms": 1000}, "apps": [""]}), "apps"),
            (serde_json::json!({"name": "x", "when": {"stalled": 1}}), "unknown field"),
            (serde_json::json!({"name": "x", "when": {"blocked_ms": 1000}, "extra": 1}), "unknown field"),
        ];
        for (json, want) in cases {
            let err = spec(json.clone()).expect_err(&json.to_string());
            assert!(err.contains(want), "{json}: {err}");
        }
    }

    #[test]
    fn a_rule_round_trips_in_the_shape_it_was_written() {
        let r = spec(serde_json::json!({"name": "stall", "when": {"blocked_ms": 1000},
            "capture": {"kind": "cpu_profile", "seconds": 3}}))
        .expect("rule");
        let v = serde_json::to_value(&r).expect("json");
        assert_eq!(v["when"], serde_json::json!({"blocked_ms": 1000}));
        assert_eq!(v["capture"]["kind"], "cpu_profile");
        assert_eq!(v["capture"]["seconds"], 3);
        assert!(v.get("apps").is_none() && v.get("labels").is_none());
        assert_eq!(serde_json::from_value::<Rule>(v).expect("back"), r);
    }
}
