//! Latency statistics: nearest-rank percentiles over recorded durations.

use std::time::Duration;

use serde::Serialize;

/// Percentiles of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Summary {
    pub count: usize,
    pub min_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// `None` for no samples.
pub fn summarise(samples: &[Duration]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    let total: Duration = sorted.iter().sum();
    Some(Summary {
        count: sorted.len(),
        min_ms: ms(sorted[0]),
        p50_ms: ms(percentile(&sorted, 50.0)),
        p90_ms: ms(percentile(&sorted, 90.0)),
        p99_ms: ms(percentile(&sorted, 99.0)),
        max_ms: ms(sorted[sorted.len() - 1]),
        mean_ms: ms(total / sorted.len() as u32),
    })
}

/// Nearest-rank percentile of sorted samples: the smallest sample with at least `p` % of the
/// samples at or below it.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let s: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let sum = summarise(&s).unwrap();
        assert_eq!(
            (sum.p50_ms, sum.p90_ms, sum.p99_ms, sum.max_ms),
            (50.0, 90.0, 99.0, 100.0)
        );
        let one = summarise(&[Duration::from_millis(7)]).unwrap();
        assert_eq!((one.p50_ms, one.p99_ms), (7.0, 7.0));
        assert!(summarise(&[]).is_none());
    }
}
