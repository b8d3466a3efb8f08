//! Challenge–response authentication of agents: the hub sends a random nonce, the agent answers
//! with HMAC-SHA256(app secret, context) — the secret itself never crosses the wire, and a
//! captured answer is useless for another nonce.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Domain-separated message that is MACed, binding the answer to this app and process.
fn mac_input(nonce: &str, app: &str, instance_id: &str) -> String {
    format!("perf-agent-auth-v1\n{nonce}\n{app}\n{instance_id}")
}

/// The agent's answer to a challenge, hex-encoded.
pub fn auth_mac(secret: &str, nonce: &str, app: &str, instance_id: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(mac_input(nonce, app, instance_id).as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Checks an answer in constant time.
pub fn verify_mac(secret: &str, nonce: &str, app: &str, instance_id: &str, answer_hex: &str) -> bool {
    let Ok(answer) = hex::decode(answer_hex) else {
        return false;
    };
    let Ok(mut mac) = <HmacSha256 as Mac>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(mac_input(nonce, app, instance_id).as_bytes());
    mac.verify_slice(&answer).is_ok()
}

/// Constant-time comparison for bearer and upload tokens.
pub fn tokens_equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn right_secret_verifies_wrong_does_not() {
        let m = auth_mac("s3cret", "nonce1", "orders", "inst");
        assert!(verify_mac("s3cret", "nonce1", "orders", "inst", &m));
        assert!(!verify_mac("other", "nonce1", "orders", "inst", &m));
        assert!(!verify_mac("s3cret", "nonce2", "orders", "inst", &m));
        assert!(!verify_mac("s3cret", "nonce1", "billing", "inst", &m));
        assert!(!verify_mac("s3cret", "nonce1", "orders", "inst", "zz-not-hex"));
        assert!(!m.contains("s3cret"));
    }

    #[test]
    fn token_compare() {
        assert!(tokens_equal("abc", "abc"));
        assert!(!tokens_equal("abc", "abd"));
        assert!(!tokens_equal("abc", "abcd"));
    }
}
