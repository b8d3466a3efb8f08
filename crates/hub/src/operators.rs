//! Operators' API tokens: named, with a [`Role`], optionally limited to some apps, optionally
//! expiring, revocable — created, listed and revoked by `perf-hub token …` against `hub.db`
//! (also while a hub runs on it) and verified by the hub on every request, so a revocation
//! takes effect at once.
//!
//! A token is 256 random bits shown once; only its SHA-256 is stored. Looking a token up by
//! its hash in SQL leaks nothing an attacker can use: the hash of a guess says nothing about
//! the hash of the real token. The `--token` of `perf-hub serve` stays as the bootstrap admin.

use crate::store::{now_rfc3339, Db, Store, StoreError, TokenRow};
use perf_protocol::auth::tokens_equal;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

/// What a token may do; each role can do everything of the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Processes, metrics, artifact metadata, analyses, flame graphs, `/metrics`.
    Viewer,
    /// Viewer + commands and downloads of profiles and reports.
    Operator,
    /// Operator + raw heap snapshot downloads (they hold secrets), the audit, tokens.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("{0}")]
    Invalid(String),
    #[error("a token named '{0}' exists already (revoked tokens keep their name)")]
    Exists(String),
    #[error("no token named '{0}'")]
    NoSuchToken(String),
    #[error("random number generator: {0}")]
    Rng(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What `token create` asks for.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub name: String,
    pub role: Role,
    /// Empty: every app.
    pub apps: Vec<String>,
    pub expires_at: Option<SystemTime>,
}

/// A token as `token list` shows it: never the token or its hash.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenInfo {
    pub name: String,
    pub role: String,
    pub apps: Vec<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// Longest token name; names go into audit entries and log lines.
const MAX_NAME: usize = 64;
/// Longest bearer token the hub hashes at all (ours are 64 characters).
pub const MAX_TOKEN_LEN: usize = 256;

/// Hex SHA-256 of a token (or a session id), the form kept in storage.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// `now + days`, or an error for a number of days no clock can hold.
pub fn expiry_in_days(days: u64) -> Result<SystemTime, OperatorError> {
    let too_far = || OperatorError::Invalid(format!("--expires-days {days} is too far in the future"));
    let secs = days.checked_mul(86_400).ok_or_else(too_far)?;
    // RFC 3339 stops at year 9999; a later expiry would not sort as a date.
    if days > 2_000_000 {
        return Err(too_far());
    }
    SystemTime::now().checked_add(Duration::from_secs(secs)).ok_or_else(too_far)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Creates a token and returns it (the only time it is ever seen).
pub fn create(store: &Store, t: NewToken) -> Result<String, OperatorError> {
    if !valid_name(&t.name) {
        return Err(OperatorError::Invalid(format!(
            "token name '{}' must be 1-{MAX_NAME} characters of A-Z a-z 0-9 - _ .",
            t.name
        )));
    }
    let apps: BTreeSet<String> = t.apps.iter().map(|a| a.trim().to_string()).filter(|a| !a.is_empty()).collect();
    if let Some(bad) = apps.iter().find(|a| a.len() > 128) {
        return Err(OperatorError::Invalid(format!("app name '{bad}' is longer than 128 characters")));
    }
    let token = crate::ids::new_secret().map_err(|e| OperatorError::Rng(e.to_string()))?;
    let row = TokenRow {
        name: t.name.clone(),
        hash: hash_secret(&token),
        role: t.role.as_str().to_string(),
        apps: apps.into_iter().collect(),
        created_at: now_rfc3339(),
        expires_at: t.expires_at.map(rfc3339),
        revoked_at: None,
    };
    if !store.insert_token(&row)? {
        return Err(OperatorError::Exists(t.name));
    }
    Ok(token)
}

pub fn list(store: &Store) -> Result<Vec<TokenInfo>, OperatorError> {
    Ok(store
        .list_tokens()?
        .into_iter()
        .map(|r| TokenInfo {
            name: r.name,
            role: r.role,
            apps: r.apps,
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
        })
        .collect())
}

pub fn revoke(store: &Store, name: &str) -> Result<(), OperatorError> {
    if store.revoke_token(name, &now_rfc3339())? {
        Ok(())
    } else {
        Err(OperatorError::NoSuchToken(name.to_string()))
    }
}

/// Who a request acts as, once its token is verified.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// `token:NAME`, or `bootstrap` for the hub's `--token`.
    pub name: String,
    pub role: Role,
    /// The apps it may see; `None`: every app.
    pub apps: Option<BTreeSet<String>>,
    /// The stored hash of its token (a session keeps this to re-check the token each time).
    pub token_hash: String,
}

impl Principal {
    pub fn sees_app(&self, app: &str) -> bool {
        self.apps.as_ref().is_none_or(|apps| apps.contains(app))
    }

    /// The apps as a list for the store's scoped queries (`None`: no scope).
    pub fn app_scope(&self) -> Option<Vec<String>> {
        self.apps.as_ref().map(|a| a.iter().cloned().collect())
    }

    /// The audit actor: which token, from where.
    pub fn actor(&self, ip: std::net::IpAddr) -> String {
        format!("{}@{ip}", self.name)
    }
}

/// Verifies presented tokens for the hub.
pub struct Operators {
    db: Db,
    bootstrap: String,
    bootstrap_hash: String,
}

impl Operators {
    pub fn new(db: Db, bootstrap_token: &str) -> Self {
        Self { db, bootstrap: bootstrap_token.to_string(), bootstrap_hash: hash_secret(bootstrap_token) }
    }

    /// The principal of a presented token; `None` for an unknown, revoked or expired one.
    pub async fn verify(&self, token: &str) -> Result<Option<Principal>, StoreError> {
        if !self.bootstrap.is_empty() && tokens_equal(token, &self.bootstrap) {
            return Ok(Some(self.bootstrap_principal()));
        }
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Ok(None);
        }
        self.verify_hash(&hash_secret(token)).await
    }

    /// As [`Operators::verify`], from a token's stored hash (what a session holds).
    pub async fn verify_hash(&self, hash: &str) -> Result<Option<Principal>, StoreError> {
        if !self.bootstrap.is_empty() && tokens_equal(hash, &self.bootstrap_hash) {
            return Ok(Some(self.bootstrap_principal()));
        }
        let key = hash.to_string();
        let Some(row) = self.db.run(move |s| s.token_by_hash(&key)).await? else { return Ok(None) };
        Ok(usable(row, &now_rfc3339()))
    }

    /// [`create`] on the store's thread (for the API's token routes).
    pub async fn create_token(&self, t: NewToken) -> Result<String, OperatorError> {
        self.db.run(move |s| Ok(create(s, t))).await?
    }

    /// [`list`] on the store's thread.
    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, OperatorError> {
        self.db.run(|s| Ok(list(s))).await?
    }

    /// [`revoke`] on the store's thread.
    pub async fn revoke_token(&self, name: &str) -> Result<(), OperatorError> {
        let name = name.to_string();
        self.db.run(move |s| Ok(revoke(s, &name))).await?
    }

    fn bootstrap_principal(&self) -> Principal {
        Principal { name: "bootstrap".into(), role: Role::Admin, apps: None, token_hash: self.bootstrap_hash.clone() }
    }
}

/// A stored token as a principal, if it is neither revoked nor expired at `now` (RFC 3339
/// strings of one format compare in time order).
fn usable(row: TokenRow, now: &str) -> Option<Principal> {
    if row.revoked_at.is_some() || row.expires_at.as_deref().is_some_and(|e| e <= now) {
        return None;
    }
    let role = Role::parse(&row.role)?;
    let apps = (!row.apps.is_empty()).then(|| row.apps.into_iter().collect());
    Some(Principal { name: format!("token:{}", row.name), role, apps, token_hash: row.hash })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(&dir.path().join("hub.db")).expect("store");
        (dir, s)
    }

    fn new(name: &str, role: Role) -> NewToken {
        NewToken { name: name.into(), role, apps: vec![], expires_at: None }
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert_eq!(Role::parse("operator"), Some(Role::Operator));
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn only_the_hash_is_stored_and_names_are_unique() {
        let (_d, s) = store();
        let token = create(&s, new("ci", Role::Viewer)).expect("create");
        assert_eq!(token.len(), 64);
        let rows = s.list_tokens().expect("list");
        assert_eq!(rows[0].hash, hash_secret(&token));
        assert_ne!(rows[0].hash, token);
        assert!(matches!(create(&s, new("ci", Role::Admin)), Err(OperatorError::Exists(_))));
        assert!(matches!(create(&s, new("a b", Role::Admin)), Err(OperatorError::Invalid(_))));
    }

    #[test]
    fn revoked_expired_and_unknown_roles_are_unusable() {
        let (_d, s) = store();
        create(&s, new("x", Role::Operator)).expect("create");
        let row = s.list_tokens().expect("list").remove(0);
        assert!(usable(row.clone(), &now_rfc3339()).is_some());
        assert!(usable(TokenRow { revoked_at: Some(now_rfc3339()), ..row.clone() }, &now_rfc3339()).is_none());
        let past = rfc3339(SystemTime::now() - Duration::from_secs(1));
        assert!(usable(TokenRow { expires_at: Some(past), ..row.clone() }, &now_rfc3339()).is_none());
        assert!(usable(TokenRow { role: "root".into(), ..row }, &now_rfc3339()).is_none());
        assert!(matches!(revoke(&s, "nope"), Err(OperatorError::NoSuchToken(_))));
    }
}
