//! `invsite serve --cap-dir DIR`: the runs of `cap-sync` inside the server. A run starts when
//! a file arrives in `Inventry.box` (its modification time changes: a rename into it changes
//! it, on local disks and on the network file systems that report it), when a request or event
//! is queued for a client (the push channel's wake-up, so a `.cfg` says it within a second or
//! so), and at least every [`FULL_EVERY`] whatever happens, for shares whose modification
//! times do not change or cannot be trusted. Polling a directory's modification time every
//! [`POLL`] costs one `stat`: no watcher dependency, and it works on every file system.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use super::CapDir;
use super::sync::{SyncContext, run};

/// How often `Inventry.box`'s modification time is looked at.
pub const POLL: Duration = Duration::from_secs(1);
/// The longest time between two runs.
pub const FULL_EVERY: Duration = Duration::from_secs(60);

/// Runs until `shutdown` turns true. `woken` is notified when a request is queued.
pub async fn serve(
    ctx: SyncContext,
    dir: CapDir,
    woken: std::sync::Arc<tokio::sync::Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut seen: Option<SystemTime> = None;
    let mut last_run: Option<Instant> = None;
    loop {
        let changed = mtime(&dir.inbox);
        let due = last_run.is_none_or(|t| t.elapsed() >= FULL_EVERY);
        if due || changed != seen {
            seen = changed;
            last_run = Some(Instant::now());
            match run(&ctx, &dir).await {
                Ok(summary) if summary.imported.is_empty() && summary.refused.is_empty() => {
                    tracing::debug!(
                        written = summary.written.len(),
                        "Synchronized the CAP directory."
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(dir = %dir.root.display(), error = %e, "Could not synchronize the CAP directory; trying again in a minute.");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            // A queued request: write the `.cfg` files now rather than at the next minute.
            _ = woken.notified() => { last_run = None; }
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
