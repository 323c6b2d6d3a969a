//! The daemon loop behind `invagent run`: a cycle now, then one every interval with ±10 %
//! jitter, so that a thousand agents started together (after a power cut, say) spread out
//! instead of hitting the site in the same second.
//!
//! A failed cycle is logged and retried at the next tick: a site that is down for an hour must
//! not kill its agents. The loop sleeps in short steps and checks a stop flag owned by the
//! caller, so it holds no global state; the CLI sets the flag from its signal handler, and the
//! quickstart (`invsite quickstart`, in the cli crate) from its own thread.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use crate::cycle::CycleOptions;
use crate::error::AgentError;
use crate::fallback::cycle_via;
use crate::jitter::{jittered, random_unit};
use crate::push;
use crate::state::State;
use crate::trigger::{self, Trigger};

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
    /// Whether the interval the site sends in its check-in answers replaces `interval`: yes
    /// when `interval` is the default, no when it was set on this machine.
    pub site_interval_applies: bool,
    /// The first cycle waits a random time up to this (a push or a local trigger comes first),
    /// so that a fleet that boots at once does not reach its site at once.
    pub splay: Duration,
}

/// After a trigger, how long the loop gathers further triggers before it cycles: two wake-ups
/// in a burst (two `invsync` runs one after the other) cause one cycle, not two.
pub const COALESCE: Duration = Duration::from_millis(100);

/// Runs cycles until `stop` is set, then returns after the cycle in progress (if any) ends:
/// one at start, one every interval, and one soon after each trigger (a push-channel wake-up,
/// a reconnection, or `invagent cycle` on this machine).
///
/// Fails at once only when the agent cannot work at all: it is not enrolled or its state is
/// unreadable, which no amount of retrying fixes.
pub fn run(opts: &RunOptions, stop: &AtomicBool) -> Result<(), AgentError> {
    run_via(opts, None, stop)
}

/// [`run`] with a file-share CAP directory: each cycle goes through it when the agent has no
/// network site (enrolled from an enrollment file) or its site is unreachable. The push
/// channel is only for a network site.
pub fn run_via(
    opts: &RunOptions,
    cap_dir: Option<&Path>,
    stop: &AtomicBool,
) -> Result<(), AgentError> {
    let state = State::load(&opts.cycle.data_dir)?;
    if !state.has_network() && cap_dir.is_none() {
        return Err(AgentError::NeedsCapDir);
    }
    tracing::info!(
        data_dir = %opts.cycle.data_dir.display(),
        interval = %humantime::format_duration(opts.interval),
        cap_dir = ?cap_dir,
        "Agent started."
    );
    let (tx, rx) = mpsc::channel::<Trigger>();
    // The helper threads get a flag of their own: `stop` is borrowed, and the push thread may
    // sit in a long-poll for a while after the loop has returned.
    let threads_stop = Arc::new(AtomicBool::new(false));
    if state.has_network() {
        let (dir, tx, flag) = (
            opts.cycle.data_dir.clone(),
            tx.clone(),
            threads_stop.clone(),
        );
        std::thread::Builder::new()
            .name("push".into())
            .spawn(move || push::push_loop(dir, tx, flag))
            .map_err(|e| AgentError::Io {
                context: "could not start the push-channel thread".into(),
                reason: e.to_string(),
            })?;
    }
    let local = {
        let (dir, tx, flag) = (opts.cycle.data_dir.clone(), tx, threads_stop.clone());
        std::thread::Builder::new().name("trigger".into()).spawn(move || {
            if let Err(e) = trigger::serve(&dir, tx, flag) {
                tracing::warn!(error = %e, "Could not open the local trigger socket; `invagent cycle` will run its own cycle.");
            }
        })
    };

    let first_wait = opts.splay.mul_f64(random_unit());
    if !first_wait.is_zero() {
        tracing::info!(
            seconds = first_wait.as_secs(),
            "Waiting a random time (the splay) before the first cycle."
        );
    }
    let mut next = Instant::now() + first_wait;
    let mut interval = opts.interval;
    let mut reason = "start";
    while !stop.load(Ordering::SeqCst) {
        let mut locals = Vec::new();
        let Some(why) = wait_for_turn(&rx, next, stop, &mut locals) else {
            break;
        };
        reason = if why == "interval" && reason == "start" {
            "start"
        } else {
            why
        };
        if why != "interval" {
            // Gather the rest of a burst of triggers into this one cycle.
            std::thread::sleep(COALESCE);
            while let Ok(t) = rx.try_recv() {
                if let Trigger::Local(stream) = t {
                    locals.push(stream);
                }
            }
        }
        let started = Instant::now();
        tracing::info!(reason, "Cycling.");
        let result = cycle_via(&opts.cycle, cap_dir);
        match &result {
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
        if opts.site_interval_applies
            && let Ok(summary) = &result
            && let Some(site) = summary.site_interval
            && site != interval
        {
            tracing::info!(interval = %humantime::format_duration(site), "The site sets the interval between cycles.");
            interval = site;
        }
        let answer = result.map(|s| s.lines()).map_err(|e| e.to_string());
        for stream in locals {
            trigger::reply(stream, &answer);
        }
        let wait = jittered(interval, random_unit());
        tracing::debug!(seconds = wait.as_secs_f64(), "Waiting for the next cycle.");
        next = started + wait;
        reason = "interval";
    }
    threads_stop.store(true, Ordering::SeqCst);
    if let Ok(handle) = local {
        let _ = handle.join();
    }
    tracing::info!("Agent stopped.");
    Ok(())
}

/// Waits until `next` or a trigger, checking `stop` every [`STOP_POLL`]. Returns why the
/// loop should cycle, or `None` when it should stop.
fn wait_for_turn(
    rx: &mpsc::Receiver<Trigger>,
    next: Instant,
    stop: &AtomicBool,
    locals: &mut Vec<std::os::unix::net::UnixStream>,
) -> Option<&'static str> {
    loop {
        if stop.load(Ordering::SeqCst) {
            return None;
        }
        let now = Instant::now();
        if now >= next {
            return Some("interval");
        }
        match rx.recv_timeout((next - now).min(STOP_POLL)) {
            Ok(Trigger::Push) => return Some("push"),
            Ok(Trigger::Reconnected) => return Some("reconnected"),
            Ok(Trigger::Local(stream)) => {
                locals.push(stream);
                return Some("local");
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // Both helper threads are gone: only the interval is left.
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep((next - now).min(STOP_POLL))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_stops_promptly_and_reports_triggers() {
        let (tx, rx) = mpsc::channel();
        let mut locals = Vec::new();
        let stop = AtomicBool::new(true);
        let t = Instant::now();
        assert_eq!(
            wait_for_turn(&rx, t + Duration::from_secs(60), &stop, &mut locals),
            None
        );
        assert!(t.elapsed() < Duration::from_secs(1));
        let stop = AtomicBool::new(false);
        tx.send(Trigger::Push).unwrap();
        assert_eq!(
            wait_for_turn(&rx, t + Duration::from_secs(60), &stop, &mut locals),
            Some("push")
        );
        assert_eq!(
            wait_for_turn(&rx, Instant::now(), &stop, &mut locals),
            Some("interval")
        );
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
            site_interval_applies: true,
            splay: Duration::ZERO,
        };
        let err = run(&opts, &AtomicBool::new(false)).unwrap_err();
        assert!(matches!(err, AgentError::NotEnrolled { .. }), "{err:?}");
    }
}
