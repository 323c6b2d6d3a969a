//! The randomness of the agent's timing: the jitter of the daemon's interval and the splay
//! of its first cycle (`run`), and the spread of the push channel's reconnection backoff
//! (`push`). It is a module of its own because both loops use it and neither should need
//! the other to get it.

use std::time::Duration;

/// `interval` scaled by a factor between 0.9 and 1.1, from `unit` in `[0, 1]`.
pub fn jittered(interval: Duration, unit: f64) -> Duration {
    interval.mul_f64(0.9 + 0.2 * unit.clamp(0.0, 1.0))
}

/// A random number in `[0, 1]`. The jitter does not need to be unpredictable, only different
/// per agent, so if the system's random source fails the loop runs without jitter.
pub fn random_unit() -> f64 {
    let mut buf = [0u8; 8];
    match getrandom::fill(&mut buf) {
        Ok(()) => u64::from_le_bytes(buf) as f64 / u64::MAX as f64,
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        let hour = Duration::from_secs(3600);
        assert_eq!(jittered(hour, 0.0), Duration::from_secs(3240));
        assert_eq!(jittered(hour, 1.0), Duration::from_secs(3960));
        assert_eq!(jittered(hour, 0.5), hour);
        for _ in 0..100 {
            let d = jittered(hour, random_unit());
            assert!(
                d >= Duration::from_secs(3240) && d <= Duration::from_secs(3960),
                "{d:?}"
            );
        }
    }
}
