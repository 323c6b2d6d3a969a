//! The agent's end of the push channel: one thread that keeps a long-poll open to the site
//! (`POST /cap/v1/wait`) and turns each wake-up into a trigger for the daemon loop. When the
//! connection fails it retries with exponential backoff and jitter (so a thousand agents do
//! not reconnect to a restarted site in the same second), and after reconnecting it asks for
//! a cycle, because anything queued while it was away woke nobody.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::Duration;

use crate::cap::CapClient;
use crate::jitter::random_unit;
use crate::state::State;
use crate::trigger::Trigger;

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Runs until `stop` is set (checked between long-polls, so it may take up to one hold time
/// to notice) or the daemon loop is gone.
pub fn push_loop(data_dir: std::path::PathBuf, triggers: Sender<Trigger>, stop: Arc<AtomicBool>) {
    let mut backoff = FIRST_BACKOFF;
    let mut disconnected = false;
    // Rebuilt only when the state names another site or token (after a re-enrollment), so
    // the connection is kept alive between long-polls. (A lost connection drops it too, so a
    // replaced CA file is read again then.)
    let mut client: Option<(String, String, CapClient)> = None;
    while !stop.load(Ordering::SeqCst) {
        let result = State::load(&data_dir).and_then(|state| {
            let fresh = client
                .as_ref()
                .is_none_or(|(url, token, _)| url != &state.site_url || token != &state.token);
            if fresh {
                let c =
                    CapClient::for_push(&state.site_url, &state.token, state.ca_cert.as_deref())?;
                client = Some((state.site_url.clone(), state.token.clone(), c));
            }
            let c = &client.as_ref().expect("set above").2;
            if disconnected {
                // A long-poll tells that the site is back only when it ends (up to 50 s);
                // a quick probe tells now, so the catch-up cycle is not delayed.
                c.healthy()?;
                tracing::info!(
                    "Push channel connected again; cycling for anything queued meanwhile."
                );
                disconnected = false;
                if triggers.send(Trigger::Reconnected).is_err() {
                    return Err(crate::error::AgentError::Io {
                        context: "the daemon loop is gone".into(),
                        reason: String::new(),
                    });
                }
            }
            c.wait()
        });
        match result {
            Ok(wake) => {
                backoff = FIRST_BACKOFF;
                if wake && triggers.send(Trigger::Push).is_err() {
                    return;
                }
            }
            Err(e) => {
                // The daemon is stopping (and its site may be stopping with it, as in the
                // quickstart): a channel that ends now is no news.
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                if !disconnected {
                    // WARN: the agent still cycles on its interval; the channel only makes
                    // requests faster.
                    tracing::warn!(error = %e, "Push channel lost; reconnecting with backoff.");
                    disconnected = true;
                }
                client = None;
                let pause = backoff.mul_f64(0.5 + random_unit());
                sleep_or_stop(pause, &stop);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

fn sleep_or_stop(total: Duration, stop: &AtomicBool) {
    let step = Duration::from_millis(100);
    let mut left = total;
    while !left.is_zero() && !stop.load(Ordering::SeqCst) {
        let s = left.min(step);
        std::thread::sleep(s);
        left -= s;
    }
}
