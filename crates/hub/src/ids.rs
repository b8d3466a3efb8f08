//! Random identifiers and tokens, and validation of ids that arrive from outside.

/// 128 random bits as 32 lowercase hex characters.
pub fn new_id() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b)?;
    Ok(hex::encode(b))
}

/// 256 random bits as 64 hex characters (nonces, upload tokens, generated operator tokens).
pub fn new_secret() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b)?;
    Ok(hex::encode(b))
}

/// Ids we hand out are hex; anything else from a URL or a frame is refused before it reaches a
/// query or a file path.
pub use perf_protocol::is_valid_id;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_valid() {
        let a = new_id().expect("rng");
        let b = new_id().expect("rng");
        assert_ne!(a, b);
        assert!(is_valid_id(&a));
        assert_eq!(new_secret().expect("rng").len(), 64);
    }

    #[test]
    fn path_tricks_are_invalid() {
        for bad in ["../etc/passwd", "", "abc", "0123456789abcdeg", "a/b/c/d/e/f/g/h"] {
            assert!(!is_valid_id(bad), "{bad}");
        }
    }
}
