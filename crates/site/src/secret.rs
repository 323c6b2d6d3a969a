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

/// Compares two byte strings in time that depends only on their lengths, so that a wrong
/// token reveals nothing about how much of it was right.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

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
