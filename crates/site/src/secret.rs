//! Random secrets (admin token, enrollment secret, client keys) and constant-time comparison.

/// 32 random bytes from the operating system.
pub fn random_bytes() -> [u8; 32] {
    let mut buf = [0u8; 32];
    // The OS random source failing is not something a site can recover from.
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    buf
}

/// A new 256-bit secret as 64 lower-case hex digits.
pub fn random_hex() -> String {
    hex::encode(random_bytes())
}

/// Constant-time comparison of tokens and secrets: the one the store uses for key hashes too.
pub use invsync_proto::inventory::ct_eq;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_hex() {
        let (a, b) = (random_hex(), random_hex());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn ct_eq_compares() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
