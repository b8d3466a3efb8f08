//! Upload tokens as the hub keeps them: only their SHA-256. The token itself (256 random bits)
//! goes only to the agent that captures the artifact, so a copy of `hub.db` can't authorise an
//! upload. Store migration v5 hashes the plain tokens a hub older than 0.2 left in its records.

use sha2::{Digest, Sha256};

/// How a stored upload token starts once hashed; a token without it was written by an older
/// hub in plain text.
pub const TOKEN_HASH_PREFIX: &str = "sha256:";

/// What the artifact record keeps of an upload token.
pub fn hash_upload_token(token: &str) -> String {
    format!("{TOKEN_HASH_PREFIX}{}", hex::encode(Sha256::digest(token.as_bytes())))
}

/// Whether a stored token is already hashed (an empty one needs nothing either).
pub fn is_hashed(stored: &str) -> bool {
    stored.is_empty() || stored.starts_with(TOKEN_HASH_PREFIX)
}

/// Whether `presented` is the token whose hash is `stored`, in constant time. An empty stored
/// token matches nothing.
pub fn upload_token_matches(stored: &str, presented: &str) -> bool {
    if stored.is_empty() {
        return false;
    }
    let stored = if stored.starts_with(TOKEN_HASH_PREFIX) { stored.to_string() } else { hash_upload_token(stored) };
    perf_protocol::auth::tokens_equal(&stored, &hash_upload_token(presented))
}
