//! Console sign-in sessions: a random session id in an HttpOnly cookie stands for the token
//! an operator signed in with.
//!
//! Kept in memory only (a hub restart signs everyone out), by the SHA-256 of the id — a dump
//! of the hub's memory or logs can't replay one — and bounded: at most [`MAX_SESSIONS`] at
//! once (the least recently used one goes first), each ending after [`IDLE_TIMEOUT`] unused.
//! A session holds the hash of its token, not a role: the token is verified again on every
//! request, so revoking it ends its sessions too.

use crate::operators::hash_secret;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sessions kept at most.
pub const MAX_SESSIONS: usize = 10_000;
/// A session unused for this long has ended.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(12 * 3600);

struct Session {
    token_hash: String,
    last_used: Instant,
}

#[derive(Default)]
pub struct Sessions {
    by_id_hash: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Starts a session for the token with this hash; returns the session id (for the cookie).
    pub fn create(&self, token_hash: &str) -> Result<String, getrandom::Error> {
        let id = crate::ids::new_secret()?;
        if let Ok(mut map) = self.by_id_hash.lock() {
            let now = Instant::now();
            if map.len() >= MAX_SESSIONS {
                map.retain(|_, s| now.duration_since(s.last_used) < IDLE_TIMEOUT);
            }
            if map.len() >= MAX_SESSIONS {
                let oldest = map.iter().min_by_key(|(_, s)| s.last_used).map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    map.remove(&k);
                }
            }
            map.insert(hash_secret(&id), Session { token_hash: token_hash.to_string(), last_used: now });
        }
        Ok(id)
    }

    /// The token hash of a live session (and marks it used), `None` for an unknown or idle one.
    pub fn token_hash(&self, id: &str) -> Option<String> {
        let mut map = self.by_id_hash.lock().ok()?;
        let key = hash_secret(id);
        let now = Instant::now();
        match map.get_mut(&key) {
            Some(s) if now.duration_since(s.last_used) < IDLE_TIMEOUT => {
                s.last_used = now;
                Some(s.token_hash.clone())
            }
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends a session (sign-out).
    pub fn end(&self, id: &str) {
        if let Ok(mut map) = self.by_id_hash.lock() {
            map.remove(&hash_secret(id));
        }
    }

    pub fn len(&self) -> usize {
        self.by_id_hash.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_bounded_and_end() {
        let s = Sessions::default();
        let first = s.create("h0").expect("rng");
        for i in 1..=MAX_SESSIONS {
            s.create(&format!("h{i}")).expect("rng");
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert_eq!(s.token_hash(&first), None, "the least recently used went first");
        let id = s.create("mine").expect("rng");
        assert_eq!(s.token_hash(&id).as_deref(), Some("mine"));
        s.end(&id);
        assert_eq!(s.token_hash(&id), None);
    }
}
