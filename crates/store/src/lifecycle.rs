//! The client lifecycle (issue 20), written once for both backends: deleting a client, the
//! tombstone that tells the sites above to forget it, stale clients, and the retention pruner.
//!
//! A deleted client keeps its `clients` row as a tombstone, so its history stays readable
//! (`invsite history NAME --deleted`) for the retention period: `deleted_at` is set, the key
//! hash becomes zeros (no key hashes to them), and the name becomes `<NAME>~<row id>`. No client
//! name holds a `~`, so the name is free for a new enrollment at once, every lookup by name
//! misses the tombstone without a condition of its own, and [`crate::rows::Cols::name`] reads
//! the stored name back as the name it had. Its snapshots (and with them its packages in the
//! software index), its requests and its outbox entries go in the same transaction; when the
//! site forwards, one tombstone entry takes the outbox entries' place, so the parent, which
//! applies entries in order, forgets the client after every change it had of it, and passes
//! the tombstone on up.
//!
//! The pruner deletes, table by table ([`Retained`]), rows older than the retention period in
//! small batches, each its own short write, so that a year of history at 100,000 clients never
//! holds SQLite's one writer for long. A deleted client's row goes once its history has been
//! pruned (its history is all older than its deletion) and its tombstone has left the outbox.

use invsync_proto::{ClientName, SiteCode, Timestamp};
use uuid::Uuid;

use crate::exec::{Arg, Exec};
use crate::rows::Cols;
use crate::{HistoryEntry, HistoryQuery, StoreError};

/// The statements of the lifecycle, alike in both dialects.
pub(crate) mod sql {
    /// What goes when a client is deleted (by row id `$1`), in an order the foreign keys
    /// allow; the row itself stays as a tombstone ([`MARK_DELETED`]).
    pub const RETIRE: [&str; 3] = [
        "DELETE FROM outbox WHERE client_id = $1",
        "DELETE FROM requests WHERE client_id = $1",
        "DELETE FROM snapshots WHERE client_id = $1",
    ];
    /// Turns a client's row into a tombstone at `$1`: key hash `$2` (zeros), the name freed.
    pub const MARK_DELETED: &str = "UPDATE clients SET deleted_at = $1, key_hash = $2,
            name = name || '~' || CAST(id AS text)
     WHERE id = $3 AND deleted_at IS NULL";
    /// The outbox entry that tells the parent to forget client `$1`, deleted at `$3`: an empty
    /// full `hw` snapshot of version 0 stands in for the change (see `wire::ForwardedOf::deleted`).
    pub const TOMBSTONE: &str = "INSERT INTO outbox (client_id, class, version, hash, full_at,
            updated_at, accepted_at, base_version, items, removed, completed, deleted_at)
     VALUES ($1, 0, 0, $2, $3, $3, $4, NULL, $5, NULL, NULL, $3)";
    /// A live client of site `$1` named `$2`: its row and client id.
    pub const LIVE_BY_NAME: &str =
        "SELECT id, uuid FROM clients WHERE site_code = $1 AND name = $2 AND deleted_at IS NULL";
    /// Any client by client id: its row, owner and deletion time.
    pub const BY_ID: &str = "SELECT id, site_code, deleted_at FROM clients WHERE uuid = $1";
    /// The deleted clients that were named `$1`, at any site, the latest deletion first.
    pub const DELETED_BY_NAME: &str = "SELECT id, uuid, site_code, deleted_at FROM clients
     WHERE deleted_at IS NOT NULL AND name = CAST($1 AS text) || '~' || CAST(id AS text)
     ORDER BY deleted_at DESC, id DESC";
    /// Whether client row `$1` is deleted (no row: `NULL`).
    pub const IS_DELETED: &str =
        "SELECT CASE WHEN deleted_at IS NULL THEN 0 ELSE 1 END FROM clients WHERE id = $1";
    /// Site `$1`'s live clients not seen (nor enrolled) since `$2`, at most `$3`, oldest row
    /// first.
    pub const STALE_NAMES: &str = "SELECT name FROM clients
     WHERE site_code = $1 AND deleted_at IS NULL AND coalesce(last_seen, enrolled_at) < $2
     ORDER BY id LIMIT $3";
    /// How many of site `$1`'s live clients were not seen since `$2`.
    pub const STALE_COUNT: &str = "SELECT count(*) FROM clients
     WHERE site_code = $1 AND deleted_at IS NULL AND coalesce(last_seen, enrolled_at) < $2";
}

/// The tables the retention pruner keeps within the retention period, pruned in this order
/// ([`Retained::ALL`]); a table that keeps rows for the retention period is one more variant
/// here with its statement in [`Retained::prune_sql`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retained {
    /// Item changes older than the retention period.
    History,
    /// Requests and events that ended (complete, cancelled) before the retention period.
    Requests,
    /// The takeover records (`client_merges`) of clients deleted before the retention period.
    Merges,
    /// Audit entries older than the retention period (issue 20, item 7).
    Audit,
    /// Deleted clients whose history is gone and whose tombstone left the outbox.
    DeletedClients,
}

impl Retained {
    /// Every pruned table, in the order the pruner takes them: a deleted client's row goes
    /// after its history and requests.
    pub const ALL: [Retained; 5] = [
        Retained::History,
        Retained::Requests,
        Retained::Merges,
        Retained::Audit,
        Retained::DeletedClients,
    ];

    /// The table's name, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Retained::History => "history",
            Retained::Requests => "requests",
            Retained::Merges => "client_merges",
            Retained::Audit => "audit",
            Retained::DeletedClients => "deleted_clients",
        }
    }

    /// Deletes at most `$2` rows older than `$1`, the oldest first, through an index on the
    /// time, so each batch reads only what it deletes.
    pub(crate) fn prune_sql(self) -> &'static str {
        match self {
            Retained::History => {
                "DELETE FROM history WHERE id IN
                   (SELECT id FROM history WHERE at < $1 ORDER BY at LIMIT $2)"
            }
            Retained::Requests => {
                "DELETE FROM requests WHERE id IN
                   (SELECT id FROM requests
                    WHERE completed_at IS NOT NULL AND completed_at < $1
                    ORDER BY completed_at LIMIT $2)"
            }
            Retained::Merges => {
                "DELETE FROM client_merges WHERE id IN
                   (SELECT m.id FROM client_merges m JOIN clients c ON c.id = m.client_id
                    WHERE c.deleted_at IS NOT NULL AND c.deleted_at < $1
                    ORDER BY m.id LIMIT $2)"
            }
            // Append-only otherwise: the trigger refuses updates, and this is its one delete.
            Retained::Audit => {
                "DELETE FROM audit WHERE id IN
                   (SELECT id FROM audit WHERE at < $1 ORDER BY at LIMIT $2)"
            }
            Retained::DeletedClients => {
                "DELETE FROM clients WHERE id IN
                   (SELECT c.id FROM clients c
                    WHERE c.deleted_at IS NOT NULL AND c.deleted_at < $1
                      AND NOT EXISTS (SELECT 1 FROM history h WHERE h.client_id = c.id)
                      AND NOT EXISTS (SELECT 1 FROM requests r WHERE r.client_id = c.id)
                      AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.client_id = c.id)
                      AND NOT EXISTS (SELECT 1 FROM client_merges m WHERE m.client_id = c.id)
                    ORDER BY c.deleted_at LIMIT $2)"
            }
        }
    }
}

/// The arguments of [`sql::TOMBSTONE`] for client row `client` deleted at `deleted_at`,
/// accepted into the outbox at `now`; `empty` is the encoded empty id list.
pub(crate) fn tombstone_args<'a>(
    client: i64,
    deleted_at: Timestamp,
    now: Timestamp,
    empty: &'a [u8],
) -> [Arg<'a>; 5] {
    [
        Arg::Int(client),
        Arg::Blob(&REVOKED_HASH),
        Arg::Int(deleted_at.0),
        Arg::Int(now.0),
        Arg::Blob(empty),
    ]
}

/// The key hash of a deleted client: zeros, which no key hashes to ([`crate::ClientAuth`]).
pub(crate) const REVOKED_HASH: [u8; 32] = [0u8; 32];

/// The arguments of [`sql::MARK_DELETED`].
pub(crate) fn mark_args(client: i64, deleted_at: Timestamp) -> [Arg<'static>; 3] {
    [
        Arg::Int(deleted_at.0),
        Arg::Blob(&REVOKED_HASH),
        Arg::Int(client),
    ]
}

/// A deleted client as `invsite history NAME --deleted` lists it: who it was and its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedHistory {
    pub name: ClientName,
    pub id: Uuid,
    pub site: SiteCode,
    pub deleted_at: Timestamp,
    pub history: Vec<HistoryEntry>,
}

/// The deleted clients once named `name` (at any site this one holds), the latest deletion
/// first, each with its history as `query` selects it.
pub(crate) async fn deleted_history<E: Exec>(
    e: &mut E,
    name: &ClientName,
    query: &HistoryQuery,
) -> Result<Vec<DeletedHistory>, StoreError> {
    let found = e
        .all(sql::DELETED_BY_NAME, &[Arg::Text(name.as_str())], |r| {
            Ok((r.int(0)?, r.uuid(1)?, r.site(2)?, r.at(3)?))
        })
        .await?;
    let mut out = Vec::with_capacity(found.len());
    for (row, id, site, deleted_at) in found {
        let args = [
            Arg::Int(row),
            Arg::OptClass(query.class),
            Arg::OptInt(query.since.map(|t| t.0)),
            Arg::Int(crate::rows::history_limit(query)),
        ];
        let history = e
            .all(E::HISTORY, &args, |r| crate::rows::history_entry(r))
            .await?;
        out.push(DeletedHistory {
            name: name.clone(),
            id,
            site,
            deleted_at,
            history,
        });
    }
    Ok(out)
}

/// Up to `limit` names of this site's live clients not seen since `before`.
pub(crate) async fn stale_names(
    e: &mut impl Exec,
    own: &SiteCode,
    before: i64,
    limit: i64,
) -> Result<Vec<ClientName>, StoreError> {
    let args = [Arg::Text(own.as_str()), Arg::Int(before), Arg::Int(limit)];
    e.all(sql::STALE_NAMES, &args, |r| r.name(0)).await
}

/// How many of this site's live clients were not seen since `before`.
pub(crate) async fn stale_count(
    e: &mut impl Exec,
    own: &SiteCode,
    before: i64,
) -> Result<i64, StoreError> {
    let args = [Arg::Text(own.as_str()), Arg::Int(before)];
    Ok(e.first(sql::STALE_COUNT, &args, |r| r.int(0))
        .await?
        .unwrap_or(0))
}

/// One batch of the pruner: at most `limit` rows of `table` older than `cutoff`; how many went.
pub(crate) async fn prune(
    e: &mut impl Exec,
    table: Retained,
    cutoff: i64,
    limit: i64,
) -> Result<u64, StoreError> {
    e.execute(table.prune_sql(), &[Arg::Int(cutoff), Arg::Int(limit)])
        .await
}

/// Why a delete found nothing to delete: no live client of that name at this site.
pub(crate) fn unknown(name: &ClientName) -> StoreError {
    StoreError::UnknownClient {
        name: name.to_string(),
    }
}
