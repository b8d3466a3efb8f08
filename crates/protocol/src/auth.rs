//! Challenge–response authentication of agents: the hub sends a random nonce, the agent answers
//! with HMAC-SHA256(app secret, context) — the secret itself never crosses the wire, and a
//! captured answer is useless for another nonce.
//!
//! The other way round (mutual authentication): the agent puts its own random `hub_nonce` in
//! its hello, and the hub, once the agent's answer verified, proves with [`hub_proof`] that it
//! knows the same secret. An agent obeys no command before [`verify_hub_proof`] passed, so a
//! fake hub (DNS or ARP spoofing, a wrong address) can't order a heap snapshot. The two MACs
//! have distinct domain labels and both nonces in them, so neither answer can stand for the other.

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

/// Domain-separated message the hub MACs: both nonces, so the proof is fresh for the agent
/// (its nonce) and can't be replayed from another handshake of the hub (the hub's nonce).
fn hub_proof_input(hub_nonce: &str, nonce: &str, app: &str, instance_id: &str) -> String {
    format!("perf-hub-proof-v1\n{hub_nonce}\n{nonce}\n{app}\n{instance_id}")
}

/// The hub's proof that it knows the app secret, hex-encoded: answers the agent's `hub_nonce`
/// (from its hello) within the handshake whose challenge was `nonce`.
pub fn hub_proof(secret: &str, hub_nonce: &str, nonce: &str, app: &str, instance_id: &str) -> String {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(hub_proof_input(hub_nonce, nonce, app, instance_id).as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The agent's check of a hub's proof, in constant time.
pub fn verify_hub_proof(
    secret: &str,
    hub_nonce: &str,
    nonce: &str,
    app: &str,
    instance_id: &str,
    proof_hex: &str,
) -> bool {
    let Ok(proof) = hex::decode(proof_hex) else {
        return false;
    };
    let Ok(mut mac) = <HmacSha256 as Mac>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(hub_proof_input(hub_nonce, nonce, app, instance_id).as_bytes());
    mac.verify_slice(&proof).is_ok()
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
    fn hub_proof_verifies_only_for_the_same_secret_and_handshake() {
        let p = hub_proof("s3cret", "hubnonce", "nonce1", "orders", "inst");
        assert!(verify_hub_proof("s3cret", "hubnonce", "nonce1", "orders", "inst", &p));
        assert!(!verify_hub_proof("other", "hubnonce", "nonce1", "orders", "inst", &p));
        assert!(!verify_hub_proof("s3cret", "hubnonce2", "nonce1", "orders", "inst", &p));
        assert!(!verify_hub_proof("s3cret", "hubnonce", "nonce2", "orders", "inst", &p));
        assert!(!verify_hub_proof("s3cret", "hubnonce", "nonce1", "billing", "inst", &p));
        assert!(!verify_hub_proof("s3cret", "hubnonce", "nonce1", "orders", "inst2", &p));
        assert!(!verify_hub_proof("s3cret", "hubnonce", "nonce1", "orders", "inst", ""));
        assert!(!verify_hub_proof("s3cret", "hubnonce", "nonce1", "orders", "inst", "not hex"));
        assert!(!verify_hub_proof("s3cret", "hubnonce", "nonce1", "orders", "inst", &p[..62]));
    }

    #[test]
    fn hub_proof_and_agent_answer_are_not_interchangeable() {
        // Same secret and strings in both: the domain labels keep the two MACs apart, so a hub
        // can't echo the agent's own answer (or the other way round) as a proof.
        let agent_answer = auth_mac("s3cret", "n", "orders", "inst");
        let proof = hub_proof("s3cret", "n", "n", "orders", "inst");
        assert_ne!(agent_answer, proof);
        assert!(!verify_hub_proof("s3cret", "n", "n", "orders", "inst", &agent_answer));
        assert!(!verify_mac("s3cret", "n", "orders", "inst", &proof));
    }

    #[test]
    fn token_compare() {
        assert!(tokens_equal("abc", "abc"));
        assert!(!tokens_equal("abc", "abd"));
        assert!(!tokens_equal("abc", "abcd"));
    }
}
