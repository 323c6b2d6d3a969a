//! Which way a cycle reaches the site: over HTTP (`cycle.rs`), through a file-share CAP
//! directory (`offline/cycle.rs`), or over HTTP first and, when the site cannot be reached at
//! all, through the CAP directory instead.
//!
//! Only an unreachable site falls back: a site that answers, even with a refusal or a failure,
//! has decided something, and the CAP directory would only repeat the question more slowly. An
//! agent enrolled from an enrollment file has no network site and always uses the CAP
//! directory. Without a CAP directory the network cycle is exactly `cycle::cycle`.

use std::path::Path;

use crate::cycle::{CycleOptions, CycleSummary, network_cycle};
use crate::error::AgentError;
use crate::offline::cycle::cap_cycle;
use crate::state::{State, StateLock};

/// Runs one cycle, through `cap_dir` when the agent has no network site or its site is
/// unreachable.
pub fn cycle_via(opts: &CycleOptions, cap_dir: Option<&Path>) -> Result<CycleSummary, AgentError> {
    let dir = opts.data_dir.as_path();
    if !State::path(dir).exists() {
        return Err(AgentError::NotEnrolled {
            data_dir: dir.to_path_buf(),
        });
    }
    let _lock = StateLock::acquire(dir)?;
    let mut state = State::load(dir)?;
    if !state.has_network() {
        let cap_dir = cap_dir.ok_or(AgentError::NeedsCapDir)?;
        return cap_cycle(opts, cap_dir, &mut state);
    }
    let Some(cap_dir) = cap_dir else {
        return network_cycle(opts, &mut state);
    };
    match network_cycle(opts, &mut state) {
        Err(AgentError::Unreachable { url, reason }) => {
            tracing::info!(url = %url, cap_dir = %cap_dir.display(), reason = %reason, "The site is unreachable; this cycle goes through the CAP directory instead.");
            // The network cycle saved what it did as it went; continue from the saved state.
            let mut state = State::load(dir)?;
            match cap_cycle(opts, cap_dir, &mut state) {
                Ok(mut summary) => {
                    if let Some(cap) = summary.cap.as_mut() {
                        cap.fell_back = Some(reason);
                    }
                    Ok(summary)
                }
                Err(e) => Err(AgentError::Unreachable {
                    url,
                    reason: format!(
                        "{reason}; and the CAP directory could not be used either ({e})"
                    ),
                }),
            }
        }
        other => other,
    }
}
