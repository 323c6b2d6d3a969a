//! The daemon loop behind `invagent run`: a cycle now, then one every interval with ±10 %
//! jitter, so that a thousand agents started together (after a power cut, say) spread out
//! instead of hitting the site in the same second.
//!
//! A failed cycle is logged and retried at the next tick: a site that is down for an hour must
//! not kill its agents. The loop sleeps in short steps and checks a stop flag owned by the
//! caller, so it holds no global state; the CLI sets the flag from its signal handler, and the
//! site's quickstart from its own thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::cycle::{CycleOptions, cycle};
use crate::error::AgentError;
use crate::state::State;

/// The longest the loop sleeps before looking at the stop flag again.
pub const STOP_POLL: Duration = Duration::from_millis(250);
/// The interval when `--interval` is not given.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);

/// What `invagent run` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    pub cycle: CycleOptions,
    /// Time between the starts of two cycles, before jitter. Must not be zero.
    pub interval: Duration,
}

/// Runs cycles until `stop` is set, then returns after the cycle in progress (if any) ends.
///
/// Fails at once only when the agent cannot work at all: it is not enrolled or its state is
/// unreadable, which no amount of retrying fixes.
pub fn run(opts: &RunOptions, stop: &AtomicBool) -> Result<(), AgentError> {
    State::load(&opts.cycle.data_dir)?;
    tracing::info!(
        data_dir = %opts.cycle.data_dir.display(),
        interval = %humantime::format_duration(opts.interval),
        "Agent started."
    );
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        match cycle(&opts.cycle) {
            Ok(summary) => {
                for line in summary.lines() {
                    tracing::info!(result = %line, "Cycle result.");
                }
            }
            // Retrying cannot fix credentials the site no longer accepts or a state file that
            // cannot be read: those need an operator, so they are errors, not warnings.
            Err(e) if e.needs_operator() => {
                tracing::error!(error = %e, "The cycle failed and will keep failing until an operator acts.");
            }
            Err(e) => {
                tracing::warn!(error = %e, "The cycle failed; the next one retries.");
            }
        }
        let wait = jittered(opts.interval, random_unit());
        tracing::debug!(seconds = wait.as_secs_f64(), "Waiting for the next cycle.");
        sleep_until(started + wait, stop);
    }
    tracing::info!("Agent stopped.");
    Ok(())
}

/// `interval` scaled by a factor between 0.9 and 1.1, from `unit` in `[0, 1]`.
pub fn jittered(interval: Duration, unit: f64) -> Duration {
    interval.mul_f64(0.9 + 0.2 * unit.clamp(0.0, 1.0))
}

/// A random number in `[0, 1]`. The jitter does not need to be unpredictable, only different
/// per agent, so if the system's random source fails the loop runs without jitter.
fn random_unit() -> f64 {
    let mut buf = [0u8; 8];
    match getrandom::fill(&mut buf) {
        Ok(()) => u64::from_le_bytes(buf) as f64 / u64::MAX as f64,
        Err(_) => 0.5,
    }
}

/// Sleeps until `deadline` or until `stop` is set, whichever comes first.
fn sleep_until(deadline: Instant, stop: &AtomicBool) {
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        std::thread::sleep((deadline - now).min(STOP_POLL));
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

    #[test]
    fn sleeping_stops_promptly_when_asked() {
        let stop = AtomicBool::new(true);
        let t = Instant::now();
        sleep_until(t + Duration::from_secs(60), &stop);
        assert!(t.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn run_refuses_an_agent_that_is_not_enrolled() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = RunOptions {
            cycle: CycleOptions {
                data_dir: tmp.path().to_path_buf(),
                root: "/".into(),
            },
            interval: Duration::from_secs(1),
        };
        let err = run(&opts, &AtomicBool::new(false)).unwrap_err();
        assert!(matches!(err, AgentError::NotEnrolled { .. }), "{err:?}");
    }
}
