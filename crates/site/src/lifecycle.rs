//! The client lifecycle at the site (issue 20): the one function that deletes a client, which
//! every entry point calls (`invsite delete` without a running server, `DELETE
//! /api/v1/clients/{name}`, the console's confirmed button, and the delete-after task), so
//! whatever must happen at each deletion (the audit record) is added in one place; and the
//! maintenance task of `invsite serve` that deletes clients unseen for longer than
//! `invsite config --delete-after` and prunes what is older than `--history-retention`.
//!
//! The pruner works in batches of [`PRUNE_BATCH`] rows, each its own short write: SQLite's one
//! writer commits them between the reports it is given, so a year of history is pruned without
//! holding writes up, and the storage per client stays bounded whatever the uptime.

use std::sync::Arc;
use std::time::Duration;

use invsync_proto::wire::{AuditAction, Deleted, Role};
use invsync_proto::{ClientName, SiteCode, Timestamp};
use invsync_store::{Retained, Store, StoreError};
use tokio::sync::Notify;

use crate::audit::{self, Actor, Principal};
use crate::ownership::{self, OwnershipError};

/// How long history is kept unless the site says otherwise (`invsite config
/// --history-retention`): 400 days, a year and a bit, so a year-on-year comparison still works.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(400 * 24 * 3600);

/// Rows one prune batch deletes at most: a few milliseconds of SQLite's writer.
pub const PRUNE_BATCH: usize = 1_000;

/// Clients one pass of the delete-after task deletes at most, each its own write; the next
/// pass takes the rest.
const DELETE_BATCH: usize = 1_000;

/// The longest the maintenance task sleeps between passes.
const MAX_PASS_INTERVAL: Duration = Duration::from_secs(3600);

/// Deletes a client of this site (`own`) by name: the one deletion of the site. `site` names
/// the owning site when the administrator gave `--site`; another site's client, or a name only
/// sites below hold, is refused as `invsync` refuses it (exit 5, with the command to run at the
/// owner), an unknown name is exit 4. The deletion itself, with what goes and what stays, is
/// the store's ([`Store::delete_client`]). A deletion done is recorded in the audit as
/// `actor`'s.
pub async fn delete_client(
    store: &Store,
    actor: &Actor,
    own: &SiteCode,
    name: &ClientName,
    site: Option<&SiteCode>,
) -> Result<Deleted, OwnershipError> {
    let command = format!("invsite delete {name}");
    if let Some(code) = site.filter(|code| *code != own) {
        let elsewhere = ownership::not_own(store, own, name, &command).await;
        return Err(match elsewhere {
            OwnershipError::Unknown { .. } => OwnershipError::Unknown {
                name: name.clone(),
                site: code.clone(),
            },
            other => other,
        });
    }
    match store.delete_client(name, Timestamp::now()).await {
        Ok(deleted) => {
            audit::record(
                store,
                actor,
                AuditAction::Delete,
                Some(deleted.client.to_string()),
                Some(format!("client id {}", deleted.id)),
            )
            .await;
            Ok(deleted)
        }
        Err(StoreError::UnknownClient { .. }) => {
            Err(ownership::not_own(store, own, name, &command).await)
        }
        Err(e) => Err(e.into()),
    }
}

/// The lifecycle settings of a running site, from its configuration.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Delete clients unseen for this long (`--delete-after`); `None`: never.
    pub delete_after: Option<Duration>,
    /// Prune what is older than this (`--history-retention`).
    pub retention: Duration,
}

impl Settings {
    /// How long the task waits between passes: at most an hour, and short enough that a
    /// client is deleted, or a row pruned, within half its period of being due.
    pub fn pass_interval(&self) -> Duration {
        let mut every = MAX_PASS_INTERVAL.min(self.retention / 2);
        if let Some(d) = self.delete_after {
            every = every.min(d / 2);
        }
        every.max(Duration::from_secs(1))
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub deleted: usize,
    pub pruned: u64,
}

/// The maintenance task of `invsite serve`: a pass at once and then every
/// [`Settings::pass_interval`] until `stop` is notified. A failed pass is logged and tried
/// again at the next one.
pub async fn maintain(
    store: Store,
    own: SiteCode,
    settings: Settings,
    forward_wake: Arc<Notify>,
    stop: Arc<Notify>,
) {
    let every = settings.pass_interval();
    loop {
        match pass(&store, &own, &settings, Timestamp::now()).await {
            Ok(done) if done.deleted > 0 => {
                // The tombstones are in the outbox: the parent hears of them now.
                forward_wake.notify_one();
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "The lifecycle pass failed; it runs again later."),
        }
        tokio::select! {
            _ = stop.notified() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// One pass at `now`: deletes this site's clients unseen for longer than `delete_after` (when
/// set), then prunes every retained table past the retention period.
pub async fn pass(
    store: &Store,
    own: &SiteCode,
    settings: &Settings,
    now: Timestamp,
) -> Result<Pass, StoreError> {
    let mut done = Pass::default();
    if let Some(after) = settings.delete_after {
        for name in store.stale_clients(after, now, DELETE_BATCH).await? {
            match delete_client(store, &policy_actor(), own, &name, None).await {
                Ok(deleted) => {
                    done.deleted += 1;
                    tracing::info!(client = %deleted.client, client_id = %deleted.id, after = %humantime::format_duration(after), "Deleted a client not seen for longer than --delete-after.");
                }
                // Deleted (or seen and enrolled anew) since it was listed: nothing to do.
                Err(OwnershipError::Unknown { .. } | OwnershipError::Elsewhere { .. }) => {}
                Err(OwnershipError::Store(e)) => return Err(e),
                Err(e) => {
                    tracing::warn!(client = %name, error = %e, "Could not delete a stale client.")
                }
            }
        }
    }
    let retention_ms = i64::try_from(settings.retention.as_millis()).unwrap_or(i64::MAX);
    let cutoff = Timestamp(now.0.saturating_sub(retention_ms));
    for table in Retained::ALL {
        done.pruned += prune_table(store, table, cutoff).await?;
    }
    Ok(done)
}

/// Who deletes a client by `--delete-after`, in the audit: the site's own policy, which an
/// admin set with `invsite config`.
fn policy_actor() -> Actor {
    Actor {
        principal: Principal {
            name: "policy:delete-after".to_string(),
            role: Role::Admin,
            user: None,
        },
        address: None,
    }
}

/// Prunes one table's rows older than `cutoff`, batch after batch, until a batch finds fewer
/// than [`PRUNE_BATCH`]; between batches the task yields, so the site's other work goes first.
pub async fn prune_table(
    store: &Store,
    table: Retained,
    cutoff: Timestamp,
) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let n = store.prune(table, cutoff, PRUNE_BATCH).await?;
        total += n;
        if n < PRUNE_BATCH as u64 {
            break;
        }
        tokio::task::yield_now().await;
    }
    if total > 0 {
        tracing::info!(table = table.as_str(), rows = total, before = %cutoff.rfc3339(), "Pruned rows older than the retention period.");
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_come_twice_per_period_within_an_hour_and_a_second() {
        let day = Duration::from_secs(86_400);
        let s = Settings {
            delete_after: None,
            retention: DEFAULT_RETENTION,
        };
        assert_eq!(s.pass_interval(), MAX_PASS_INTERVAL);
        let s = Settings {
            delete_after: Some(Duration::from_secs(4)),
            retention: 400 * day,
        };
        assert_eq!(s.pass_interval(), Duration::from_secs(2));
        let s = Settings {
            delete_after: None,
            retention: Duration::from_secs(1),
        };
        assert_eq!(s.pass_interval(), Duration::from_secs(1));
    }
}
