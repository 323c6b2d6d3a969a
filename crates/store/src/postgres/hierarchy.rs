//! The SQL of the hierarchy (SPEC section 6) on PostgreSQL: the forwarding switch, the outbox,
//! the children's tokens, the sites below this one, applying forwarded changes and the resync
//! requests routed down the tree. The rules are those of the SQLite backend's `hierarchy`
//! module (read its documentation for the why of each); only the SQL and the locking differ:
//!
//! * changes to the tree (child tokens, site statuses) take an exclusive advisory lock, and
//!   applying a forwarded change takes it shared, so a change is checked against a stable tree;
//! * a forwarded change takes its client's lock (`queries::lock_client`), like a report.

use invsync_proto::wire::{
    ClientRecord, DownRequest, ForwardOutcome, Forwarded, Owner, Queued, ReportBody, RequestState,
    RequestView, SiteStatus, split_origin,
};
use invsync_proto::{Class, ClientName, Delta, Digest, SiteCode, Timestamp};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::queries::{
    self, Inserted, PgUuid, SnapshotRow, Stamp, class_col, cls, corrupt, digest_col, load_items,
    name_col, site_col, site_opt_col, snapshot_row, ts_col, uuid_col,
};
use super::schema::{LOCK_CLASS, LOCK_DELIVERY, LOCK_TOPOLOGY};
use crate::cache::ItemCache;
use crate::codec::decode_ids;
use crate::error::StoreError;
use crate::plan::{InputBody, Outcome, ReportInput};
use crate::{DownAccepted, OutboxStats};

/// `meta` keys of this module.
const FORWARDING: &str = "forwarding";
const LAST_FORWARDED: &str = "last_forwarded";

async fn meta_value(conn: &mut PgConnection, key: &str) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
        .bind(key)
        .fetch_optional(conn)
        .await?)
}

async fn set_meta_value(conn: &mut PgConnection, key: &str, value: &str) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO meta (key, value) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(key)
    .bind(value)
    .execute(conn)
    .await?;
    Ok(())
}

/// The `meta` key a write probe sets: its value is the time of the last probe.
const PROBED_AT: &str = "write_probe_at";

/// Records the time of a write probe: the smallest write that goes through a whole commit.
pub(super) async fn set_probe_time(
    conn: &mut PgConnection,
    now: Timestamp,
) -> Result<(), StoreError> {
    set_meta_value(conn, PROBED_AT, &now.rfc3339()).await
}

/// Takes the tree lock until the transaction ends: exclusive to change the tree, shared to
/// rely on it.
async fn lock_topology(conn: &mut PgConnection, exclusive: bool) -> Result<(), StoreError> {
    let sql = if exclusive {
        "SELECT pg_advisory_xact_lock($1, $2)"
    } else {
        "SELECT pg_advisory_xact_lock_shared($1, $2)"
    };
    sqlx::query(sql)
        .bind(LOCK_CLASS)
        .bind(LOCK_TOPOLOGY)
        .execute(conn)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Forwarding switch and outbox

/// Whether accepted changes go into the outbox; read in each writing transaction, so a switch
/// made by another process counts at once.
pub(super) async fn forwarding(conn: &mut PgConnection) -> Result<bool, StoreError> {
    Ok(meta_value(conn, FORWARDING).await?.as_deref() == Some("1"))
}

pub(super) async fn set_forwarding(conn: &mut PgConnection, on: bool) -> Result<(), StoreError> {
    set_meta_value(conn, FORWARDING, if on { "1" } else { "0" }).await
}

/// One accepted change as the outbox records it.
pub(super) struct Entry<'a> {
    pub client: i64,
    pub input: &'a ReportInput,
    pub version: i64,
    pub full_at: Timestamp,
    pub updated_at: Timestamp,
    pub body_ids: &'a [u8],
    pub completed: &'a [RequestView],
}

fn encode_error(e: serde_json::Error) -> StoreError {
    StoreError::Database(format!("cannot encode an outbox entry: {e}"))
}

fn encode_removed(keys: &[String]) -> Result<Option<String>, StoreError> {
    if keys.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(keys).map(Some).map_err(encode_error)
}

fn encode_completed(requests: &[RequestView]) -> Result<Option<String>, StoreError> {
    if requests.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(requests)
        .map(Some)
        .map_err(encode_error)
}

fn decode_removed(raw: Option<&str>) -> Result<Vec<String>, StoreError> {
    raw.map_or(Ok(Vec::new()), |r| {
        serde_json::from_str(r).map_err(|_| corrupt("outbox entry"))
    })
}

fn decode_completed(raw: Option<&str>) -> Result<Vec<RequestView>, StoreError> {
    raw.map_or(Ok(Vec::new()), |r| {
        serde_json::from_str(r).map_err(|_| corrupt("outbox entry"))
    })
}

/// Appends a change to the outbox.
pub(super) async fn enqueue(
    conn: &mut PgConnection,
    e: &Entry<'_>,
    accepted_at: Timestamp,
) -> Result<(), StoreError> {
    let (base_version, removed) = match &e.input.body {
        InputBody::Full { .. } => (None, None),
        InputBody::Delta {
            base_version,
            remove,
            ..
        } => (Some(*base_version), encode_removed(remove)?),
    };
    sqlx::query(
        "INSERT INTO outbox (client_id, class, version, hash, full_at, updated_at, accepted_at,
                             base_version, items, removed, completed)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(e.client)
    .bind(cls(e.input.class))
    .bind(e.version)
    .bind(e.input.hash.0.as_slice())
    .bind(e.full_at.0)
    .bind(e.updated_at.0)
    .bind(accepted_at.0)
    .bind(base_version)
    .bind(e.body_ids)
    .bind(removed)
    .bind(encode_completed(e.completed)?)
    .execute(conn)
    .await?;
    Ok(())
}

/// The oldest `limit` outbox entries, oldest first, with their bodies rebuilt from the items.
pub(super) async fn outbox_batch(
    conn: &mut PgConnection,
    limit: usize,
) -> Result<Vec<Forwarded>, StoreError> {
    let rows = sqlx::query(
        "SELECT o.seq, c.uuid, c.name, c.site_code, c.machine_id, c.enrolled_at,
                o.class, o.version, o.hash, o.full_at, o.updated_at,
                o.base_version, o.items, o.removed, o.completed
         FROM outbox o JOIN clients c ON c.id = o.client_id
         ORDER BY o.seq LIMIT $1",
    )
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let items = load_items(&mut *conn, &decode_ids(row.try_get(12)?)?).await?;
        let body = match row.try_get::<Option<i64>, _>(11)? {
            None => ReportBody::Full { items },
            Some(base_version) => ReportBody::Delta {
                base_version,
                delta: Delta {
                    upsert: items,
                    remove: decode_removed(row.try_get(13)?)?,
                },
            },
        };
        out.push(Forwarded {
            seq: row.try_get(0)?,
            client: ClientRecord {
                id: uuid_col(row, 1)?,
                name: name_col(row, 2)?,
                site: site_col(row, 3)?,
                machine_id: row.try_get(4)?,
                enrolled_at: Timestamp(row.try_get(5)?),
            },
            class: class_col(row, 6)?,
            version: row.try_get(7)?,
            hash: digest_col(row, 8)?,
            full_at: Timestamp(row.try_get(9)?),
            updated_at: Timestamp(row.try_get(10)?),
            body,
            completed: decode_completed(row.try_get(14)?)?,
        });
    }
    Ok(out)
}

/// Removes acknowledged entries and marks the requests the `stored` ones completed as
/// forwarded (see the SQLite backend's `outbox_done`).
pub(super) async fn outbox_done(
    conn: &mut PgConnection,
    own: &SiteCode,
    stored: &[i64],
    refused: &[i64],
    parent: Option<&SiteCode>,
    now: Timestamp,
) -> Result<(), StoreError> {
    if stored.is_empty() && refused.is_empty() {
        return Ok(());
    }
    let carried: Vec<(i64, Option<String>)> =
        sqlx::query_as("DELETE FROM outbox WHERE seq = ANY($1) RETURNING client_id, completed")
            .bind(stored)
            .fetch_all(&mut *conn)
            .await?;
    if !refused.is_empty() {
        sqlx::query("DELETE FROM outbox WHERE seq = ANY($1)")
            .bind(refused)
            .execute(&mut *conn)
            .await?;
    }
    for (client, raw) in carried {
        if let Some(raw) = raw {
            let completed = decode_completed(Some(&raw))?;
            mark_forwarded(&mut *conn, own, client, &completed, parent, now).await?;
        }
    }
    set_meta_value(conn, LAST_FORWARDED, &now.0.to_string()).await
}

/// Marks the resync requests one acknowledged change completed as forwarded, found as
/// `record_completed` found them; the first acknowledgement counts.
async fn mark_forwarded(
    conn: &mut PgConnection,
    own: &SiteCode,
    client: i64,
    completed: &[RequestView],
    parent: Option<&SiteCode>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let owner: Option<String> = sqlx::query_scalar("SELECT site_code FROM clients WHERE id = $1")
        .bind(client)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(owner) = owner else { return Ok(()) };
    let parent = parent.map(SiteCode::as_str);
    for r in completed {
        let origin = r
            .origin
            .clone()
            .unwrap_or_else(|| format!("{owner}:{}", r.id));
        match split_origin(&origin) {
            Some((site, id)) if &site == own => {
                sqlx::query(
                    "UPDATE requests SET forwarded_at = $1, forwarded_to = $2
                     WHERE id = $3 AND client_id = $4 AND kind = 'resync' AND arg = $5
                       AND completed_at IS NOT NULL AND forwarded_at IS NULL",
                )
                .bind(now.0)
                .bind(parent)
                .bind(id)
                .bind(client)
                .bind(r.class.as_str())
                .execute(&mut *conn)
                .await?;
            }
            _ => {
                sqlx::query(
                    "UPDATE requests SET forwarded_at = $1, forwarded_to = $2
                     WHERE origin = $3 AND client_id = $4 AND kind = 'resync' AND arg = $5
                       AND completed_at IS NOT NULL AND forwarded_at IS NULL",
                )
                .bind(now.0)
                .bind(parent)
                .bind(&origin)
                .bind(client)
                .bind(r.class.as_str())
                .execute(&mut *conn)
                .await?;
            }
        }
    }
    Ok(())
}

/// Replaces every outbox entry of a client and class with one full entry of its current
/// snapshot (see the SQLite backend's `outbox_resync`). Runs under the client's lock.
pub(super) async fn outbox_resync(
    conn: &mut PgConnection,
    client_id: Uuid,
    class: Class,
) -> Result<bool, StoreError> {
    queries::lock_client(&mut *conn, client_id).await?;
    let Some(client) = queries::client_row(&mut *conn, client_id).await? else {
        return Ok(false);
    };
    let code = cls(class);
    /// version, hash, full_at, updated_at, items
    type SnapshotCols = (i64, Vec<u8>, i64, i64, Vec<u8>);
    let snapshot: Option<SnapshotCols> = sqlx::query_as(
        "SELECT version, hash, full_at, updated_at, items FROM snapshots
         WHERE client_id = $1 AND class = $2",
    )
    .bind(client)
    .bind(code)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((version, hash, full_at, updated_at, items)) = snapshot else {
        return Ok(false);
    };
    let dropped: Vec<(i64, Option<String>)> = sqlx::query_as(
        "SELECT accepted_at, completed FROM outbox WHERE client_id = $1 AND class = $2 ORDER BY seq",
    )
    .bind(client)
    .bind(code)
    .fetch_all(&mut *conn)
    .await?;
    let mut oldest: Option<i64> = None;
    let mut completed: Vec<RequestView> = Vec::new();
    for (at, raw) in &dropped {
        oldest = Some(oldest.map_or(*at, |o| o.min(*at)));
        for r in decode_completed(raw.as_deref())? {
            if !completed.iter().any(|c| c.id == r.id) {
                completed.push(r);
            }
        }
    }
    sqlx::query("DELETE FROM outbox WHERE client_id = $1 AND class = $2")
        .bind(client)
        .bind(code)
        .execute(&mut *conn)
        .await?;
    let accepted_at = oldest.unwrap_or(updated_at);
    sqlx::query(
        "INSERT INTO outbox (client_id, class, version, hash, full_at, updated_at, accepted_at,
                             base_version, items, removed, completed)
         VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, NULL, $9)",
    )
    .bind(client)
    .bind(code)
    .bind(version)
    .bind(hash)
    .bind(full_at)
    .bind(updated_at)
    .bind(accepted_at)
    .bind(items)
    .bind(encode_completed(&completed)?)
    .execute(&mut *conn)
    .await?;
    Ok(true)
}

pub(super) async fn outbox_stats(conn: &mut PgConnection) -> Result<OutboxStats, StoreError> {
    let (depth, oldest): (i64, Option<i64>) =
        sqlx::query_as("SELECT count(*), min(accepted_at) FROM outbox")
            .fetch_one(&mut *conn)
            .await?;
    let last_forwarded = match meta_value(conn, LAST_FORWARDED).await? {
        None => None,
        Some(v) => Some(Timestamp(
            v.parse().map_err(|_| corrupt("last forwarding time"))?,
        )),
    };
    Ok(OutboxStats {
        depth,
        oldest: oldest.map(Timestamp),
        last_forwarded,
    })
}

// ---------------------------------------------------------------------------------------------
// Children and the sites below

async fn recorded_via(conn: &mut PgConnection, code: &str) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query_scalar("SELECT via FROM sites WHERE code = $1")
        .bind(code)
        .fetch_optional(conn)
        .await?)
}

async fn has_child_token(conn: &mut PgConnection, code: &str) -> Result<bool, StoreError> {
    let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM child_tokens WHERE code = $1")
        .bind(code)
        .fetch_optional(conn)
        .await?;
    Ok(found.is_some())
}

fn own_code_in_use(code: &SiteCode) -> StoreError {
    StoreError::CodeInUse(format!("{code} is this site's own code"))
}

pub(super) async fn set_child_token(
    conn: &mut PgConnection,
    own: &SiteCode,
    code: &SiteCode,
    key_hash: Digest,
    now: Timestamp,
) -> Result<(), StoreError> {
    if code == own {
        return Err(own_code_in_use(code));
    }
    lock_topology(&mut *conn, true).await?;
    if let Some(via) = recorded_via(&mut *conn, code.as_str()).await?
        && via != code.as_str()
    {
        return Err(StoreError::CodeInUse(format!(
            "{code} is already the code of a site reached through child {via}"
        )));
    }
    sqlx::query(
        "INSERT INTO child_tokens (code, key_hash, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (code) DO UPDATE SET key_hash = excluded.key_hash, created_at = excluded.created_at",
    )
    .bind(code.as_str())
    .bind(key_hash.0.as_slice())
    .bind(now.0)
    .execute(conn)
    .await?;
    Ok(())
}

pub(super) async fn child_key_hash(
    conn: &mut PgConnection,
    code: &SiteCode,
) -> Result<Option<Digest>, StoreError> {
    let row = sqlx::query("SELECT key_hash FROM child_tokens WHERE code = $1")
        .bind(code.as_str())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(|r| digest_col(r, 0)).transpose()
}

/// Why `code` cannot be recorded as reached through `via`, if it cannot.
async fn code_conflict(
    conn: &mut PgConnection,
    own: &SiteCode,
    via: &SiteCode,
    code: &SiteCode,
) -> Result<Option<StoreError>, StoreError> {
    if code == own {
        return Ok(Some(own_code_in_use(code)));
    }
    if let Some(other) = recorded_via(&mut *conn, code.as_str()).await?
        && other != via.as_str()
    {
        return Ok(Some(StoreError::CodeInUse(format!(
            "{code} is already the code of a site reached through child {other}, not {via}"
        ))));
    }
    if code != via && has_child_token(conn, code.as_str()).await? {
        return Ok(Some(StoreError::CodeInUse(format!(
            "{code} is a direct child of this site, not a site below {via}"
        ))));
    }
    Ok(None)
}

/// Records what `via` reported; all or nothing (an error rolls the transaction back).
pub(super) async fn record_site_status(
    conn: &mut PgConnection,
    own: &SiteCode,
    via: &SiteCode,
    statuses: &[SiteStatus],
    now: Timestamp,
) -> Result<(), StoreError> {
    lock_topology(&mut *conn, true).await?;
    if let Some(e) = code_conflict(&mut *conn, own, via, via).await? {
        return Err(e);
    }
    for s in statuses {
        if let Some(e) = code_conflict(&mut *conn, own, via, &s.code).await? {
            return Err(e);
        }
        sqlx::query(
            "INSERT INTO sites (code, name, parent, url, clients, outbox_depth, outbox_oldest,
                               last_forwarded, accepts_parent_requests, reported_at, via, recorded_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (code) DO UPDATE SET name = excluded.name, parent = excluded.parent,
                 url = excluded.url, clients = excluded.clients, outbox_depth = excluded.outbox_depth,
                 outbox_oldest = excluded.outbox_oldest, last_forwarded = excluded.last_forwarded,
                 accepts_parent_requests = excluded.accepts_parent_requests,
                 reported_at = excluded.reported_at, via = excluded.via, recorded_at = excluded.recorded_at",
        )
        .bind(s.code.as_str())
        .bind(&s.name)
        .bind(s.parent.as_ref().map(SiteCode::as_str))
        .bind(&s.url)
        .bind(s.clients)
        .bind(s.outbox_depth)
        .bind(s.outbox_oldest.map(|t| t.0))
        .bind(s.last_forwarded.map(|t| t.0))
        .bind(s.accepts_parent_requests)
        .bind(s.reported_at.0)
        .bind(via.as_str())
        .bind(now.0)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub(super) async fn sites(conn: &mut PgConnection) -> Result<Vec<SiteStatus>, StoreError> {
    let rows = sqlx::query(
        "SELECT code, name, parent, url, clients, outbox_depth, outbox_oldest, last_forwarded,
                accepts_parent_requests, reported_at
         FROM sites ORDER BY code",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(SiteStatus {
                code: site_col(row, 0)?,
                name: row.try_get(1)?,
                parent: site_opt_col(row, 2)?,
                url: row.try_get(3)?,
                clients: row.try_get(4)?,
                outbox_depth: row.try_get(5)?,
                outbox_oldest: ts_col(row, 6)?,
                last_forwarded: ts_col(row, 7)?,
                accepts_parent_requests: row.try_get(8)?,
                reported_at: Timestamp(row.try_get(9)?),
            })
        })
        .collect()
}

pub(super) async fn site_via(
    conn: &mut PgConnection,
    code: &SiteCode,
) -> Result<Option<SiteCode>, StoreError> {
    if let Some(via) = recorded_via(&mut *conn, code.as_str()).await? {
        return Ok(Some(
            SiteCode::parse(&via).map_err(|_| corrupt("site code"))?,
        ));
    }
    Ok(has_child_token(conn, code.as_str())
        .await?
        .then(|| code.clone()))
}

pub(super) async fn find_clients(
    conn: &mut PgConnection,
    name: &ClientName,
) -> Result<Vec<Owner>, StoreError> {
    let rows = sqlx::query(
        "SELECT c.uuid, c.name, c.site_code, s.url FROM clients c
         LEFT JOIN sites s ON s.code = c.site_code
         WHERE c.name = $1 ORDER BY c.site_code",
    )
    .bind(name.as_str())
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Owner {
                id: uuid_col(row, 0)?,
                client: name_col(row, 1)?,
                site: site_col(row, 2)?,
                url: row.try_get(3)?,
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Applying forwarded changes

/// A forwarded change apart from its body.
#[derive(Debug, Clone)]
pub(super) struct ForwardMeta {
    pub seq: i64,
    pub client: ClientRecord,
    pub version: i64,
    pub full_at: Timestamp,
    pub updated_at: Timestamp,
    pub completed: Vec<RequestView>,
}

impl ForwardMeta {
    pub fn of(entry: &Forwarded) -> ForwardMeta {
        ForwardMeta {
            seq: entry.seq,
            client: entry.client.clone(),
            version: entry.version,
            full_at: entry.full_at,
            updated_at: entry.updated_at,
            completed: entry.completed.clone(),
        }
    }

    pub fn refused(&self, reason: String) -> ForwardOutcome {
        ForwardOutcome::Refused {
            seq: self.seq,
            reason,
        }
    }

    pub fn resync(&self, class: Class, reason: String) -> ForwardOutcome {
        ForwardOutcome::ResyncRequired {
            seq: self.seq,
            client: self.client.id,
            class,
            reason,
        }
    }
}

async fn route_refusal(
    conn: &mut PgConnection,
    own: &SiteCode,
    via: &SiteCode,
    owner: &SiteCode,
) -> Result<Option<String>, StoreError> {
    if owner == own || via == own {
        return Ok(Some(format!(
            "{owner} is this site's own code; a child cannot forward changes of this site's clients"
        )));
    }
    let reached = recorded_via(conn, owner.as_str()).await?;
    Ok(match reached {
        Some(v) if v == via.as_str() => None,
        Some(v) => Some(format!(
            "site {owner} is reached through child {v}, not {via}; {via} cannot forward its clients"
        )),
        None if owner == via => None,
        None => Some(format!(
            "site {owner} is not known below child {via} (it has not reported itself through {via})"
        )),
    })
}

async fn delete_client(
    conn: &mut PgConnection,
    inserted: &mut Inserted,
    client: i64,
) -> Result<(), StoreError> {
    if let Some(changes) = &mut inserted.software
        && let Some(row) = queries::snapshot_row(&mut *conn, client, Class::Sw).await?
    {
        let removed = crate::codec::decode_ids(&row.items)?;
        changes.push(crate::software::change(
            client,
            Some(row.version),
            None,
            removed,
            Vec::new(),
        )?);
    }
    for sql in [
        "DELETE FROM outbox WHERE client_id = $1",
        "DELETE FROM history WHERE client_id = $1",
        "DELETE FROM requests WHERE client_id = $1",
        "DELETE FROM snapshots WHERE client_id = $1",
        "DELETE FROM clients WHERE id = $1",
    ] {
        sqlx::query(sql).bind(client).execute(&mut *conn).await?;
    }
    Ok(())
}

/// The row of a forwarded client, created or brought up to date (a stale client of another id
/// with the same owner and name is removed first).
async fn ensure_client(
    conn: &mut PgConnection,
    inserted: &mut Inserted,
    record: &ClientRecord,
) -> Result<i64, StoreError> {
    let stale: Option<(i64, PgUuid)> = sqlx::query_as(
        "SELECT id, uuid FROM clients WHERE site_code = $1 AND name = $2 AND uuid <> $3",
    )
    .bind(record.site.as_str())
    .bind(record.name.as_str())
    .bind(PgUuid(record.id))
    .fetch_optional(&mut *conn)
    .await?;
    if let Some((row, PgUuid(old))) = stale {
        delete_client(&mut *conn, inserted, row).await?;
        tracing::info!(
            site = %record.site,
            client = %record.name,
            old_id = %old,
            new_id = %record.id,
            "Replaced a stale client record: its owning site now has another client of that name."
        );
    }
    match queries::client_row(&mut *conn, record.id).await? {
        Some(row) => {
            sqlx::query(
                "UPDATE clients SET name = $1, machine_id = $2, enrolled_at = $3 WHERE id = $4",
            )
            .bind(record.name.as_str())
            .bind(&record.machine_id)
            .bind(record.enrolled_at.0)
            .bind(row)
            .execute(conn)
            .await?;
            Ok(row)
        }
        None => {
            // A key hash of zeros: such a client never authenticates here.
            Ok(sqlx::query_scalar(
                "INSERT INTO clients (uuid, name, site_code, machine_id, key_hash, enrolled_at)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(PgUuid(record.id))
            .bind(record.name.as_str())
            .bind(record.site.as_str())
            .bind(&record.machine_id)
            .bind(vec![0u8; 32])
            .bind(record.enrolled_at.0)
            .fetch_one(conn)
            .await?)
        }
    }
}

/// Records the resync requests a forwarded change completed at the owner (see the SQLite
/// backend's `record_completed`).
async fn record_completed(
    conn: &mut PgConnection,
    own: &SiteCode,
    client: i64,
    owner: &SiteCode,
    completed: &[RequestView],
    at: Timestamp,
) -> Result<(), StoreError> {
    for r in completed {
        let origin = r
            .origin
            .clone()
            .unwrap_or_else(|| format!("{owner}:{}", r.id));
        let done = r.completed_at.unwrap_or(at).0;
        let picked = r.picked_up_at.map(|t| t.0);
        if let Some((site, id)) = split_origin(&origin)
            && &site == own
        {
            let n = sqlx::query(
                "UPDATE requests SET picked_up_at = coalesce($1, $2), completed_at = $2
                 WHERE id = $3 AND client_id = $4 AND kind = 'resync' AND arg = $5
                   AND route IS NOT NULL AND completed_at IS NULL",
            )
            .bind(picked)
            .bind(done)
            .bind(id)
            .bind(client)
            .bind(r.class.as_str())
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if n == 1 {
                tracing::debug!(id, %owner, "A request routed down from this site completed at its owner.");
            }
            continue;
        }
        let relayed = sqlx::query(
            "UPDATE requests SET picked_up_at = coalesce($1, $2), completed_at = $2
             WHERE origin = $3 AND client_id = $4 AND kind = 'resync' AND completed_at IS NULL",
        )
        .bind(picked)
        .bind(done)
        .bind(&origin)
        .bind(client)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if relayed > 0 {
            continue;
        }
        sqlx::query(
            "INSERT INTO requests (client_id, kind, arg, requested_at, picked_up_at, completed_at, origin)
             VALUES ($1, 'resync', $2, $3, $4, $5, $6)
             ON CONFLICT (origin) WHERE origin IS NOT NULL DO NOTHING",
        )
        .bind(client)
        .bind(r.class.as_str())
        .bind(r.requested_at.0)
        .bind(picked)
        .bind(done)
        .bind(&origin)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Applies one forwarded change inside the transaction `conn`: the tree lock (shared) and the
/// client's lock, the checks, the plan against the snapshot as it now is, and the writes.
#[allow(clippy::too_many_arguments)]
pub(super) async fn apply_forwarded(
    conn: &mut PgConnection,
    cache: &ItemCache,
    own: &SiteCode,
    via: &SiteCode,
    meta: &ForwardMeta,
    input: &ReportInput,
    now: Timestamp,
    inserted: &mut Inserted,
) -> Result<ForwardOutcome, StoreError> {
    lock_topology(&mut *conn, false).await?;
    queries::lock_client(&mut *conn, meta.client.id).await?;
    let owner = &meta.client.site;
    if let Some(reason) = route_refusal(&mut *conn, own, via, owner).await? {
        return Ok(meta.refused(reason));
    }
    let known: Option<(i64, String)> =
        sqlx::query_as("SELECT id, site_code FROM clients WHERE uuid = $1")
            .bind(PgUuid(meta.client.id))
            .fetch_optional(&mut *conn)
            .await?;
    let row: Option<SnapshotRow> = match known {
        Some((_, site)) if site != owner.as_str() => {
            return Ok(meta.refused(format!(
                "client {} belongs to site {site}, not {owner}",
                meta.client.id
            )));
        }
        Some((client, _)) => snapshot_row(&mut *conn, client, input.class).await?,
        None => None,
    };
    if let Some(r) = &row
        && ((r.version == meta.version && r.hash == input.hash)
            || r.has_forwarded(meta.version, &input.hash))
    {
        return Ok(ForwardOutcome::Duplicate { seq: meta.seq });
    }
    let current = row.as_ref().map(SnapshotRow::current).transpose()?;
    let change = match queries::plan_report(&mut *conn, cache, input, current.as_ref()).await? {
        Outcome::Resync(reason) => return Ok(meta.resync(input.class, reason)),
        Outcome::Write(change) => change,
    };
    let client = ensure_client(&mut *conn, inserted, &meta.client).await?;
    let stamp = Stamp {
        version: Some(meta.version),
        at: meta.updated_at,
        full_at: meta.full_at,
        remember: (
            queries::forwarded_mark(meta.version, &input.hash),
            queries::RECENT_FORWARDED,
        ),
    };
    let written = queries::write_change(
        &mut *conn,
        inserted,
        client,
        input,
        row.as_ref(),
        change,
        &stamp,
    )
    .await?;
    record_completed(
        &mut *conn,
        own,
        client,
        &meta.client.site,
        &meta.completed,
        meta.updated_at,
    )
    .await?;
    if forwarding(&mut *conn).await? {
        enqueue(
            &mut *conn,
            &Entry {
                client,
                input,
                version: written.version,
                full_at: written.full_at,
                updated_at: meta.updated_at,
                body_ids: &written.body_ids,
                completed: &meta.completed,
            },
            now,
        )
        .await?;
    }
    Ok(ForwardOutcome::Applied { seq: meta.seq })
}

// ---------------------------------------------------------------------------------------------
// Requests routed down the tree

async fn client_owner(
    conn: &mut PgConnection,
    client_id: Uuid,
) -> Result<Option<(i64, ClientName, SiteCode)>, StoreError> {
    let row = sqlx::query("SELECT id, name, site_code FROM clients WHERE uuid = $1")
        .bind(PgUuid(client_id))
        .fetch_optional(conn)
        .await?;
    match row {
        Some(row) => Ok(Some((
            row.try_get(0)?,
            name_col(&row, 1)?,
            site_col(&row, 2)?,
        ))),
        None => Ok(None),
    }
}

pub(super) async fn queue_routed(
    conn: &mut PgConnection,
    own: &SiteCode,
    client_id: Uuid,
    class: Class,
    now: Timestamp,
) -> Result<Queued, StoreError> {
    let Some((client, name, owner)) = client_owner(&mut *conn, client_id).await? else {
        return Err(StoreError::UnknownClient {
            name: client_id.to_string(),
        });
    };
    if &owner == own {
        return Err(StoreError::Refused(format!(
            "{name} is this site's own client; its requests are queued here, not routed"
        )));
    }
    let (id, requested_at, created) = queries::queue_pending(
        conn,
        client,
        "resync",
        class.as_str(),
        Some(owner.as_str()),
        now,
    )
    .await?;
    Ok(Queued {
        id,
        client: name,
        created,
        state: RequestState::Pending,
        requested_at,
        routed_to: Some(owner),
    })
}

/// The routed requests due for the child `via`, marked delivered at `now`, in one
/// transaction under the delivery lock (two batches of one child at once deliver each once).
pub(super) async fn deliver_routed(
    conn: &mut PgConnection,
    own: &SiteCode,
    via: &SiteCode,
    due: Timestamp,
    now: Timestamp,
) -> Result<Vec<DownRequest>, StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(LOCK_CLASS)
        .bind(LOCK_DELIVERY)
        .execute(&mut *conn)
        .await?;
    let rows = sqlx::query(
        "SELECT r.id, r.origin, c.uuid, r.arg FROM requests r JOIN clients c ON c.id = r.client_id
         WHERE r.route IS NOT NULL AND r.completed_at IS NULL
           AND r.route IN (SELECT code FROM sites WHERE via = $1)
           AND (r.delivered_at IS NULL OR r.delivered_at <= $2)
         ORDER BY r.id",
    )
    .bind(via.as_str())
    .bind(due.0)
    .fetch_all(&mut *conn)
    .await?;
    let mut ids = Vec::with_capacity(rows.len());
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: i64 = row.try_get(0)?;
        let (origin_site, origin_id) = match row.try_get::<Option<&str>, _>(1)? {
            None => (own.clone(), id),
            Some(raw) => split_origin(raw).ok_or_else(|| corrupt("request origin"))?,
        };
        let class = Class::parse(row.try_get(3)?).ok_or_else(|| corrupt("request class"))?;
        ids.push(id);
        out.push(DownRequest {
            origin_id,
            origin_site,
            client: uuid_col(row, 2)?,
            class,
        });
    }
    if !ids.is_empty() {
        sqlx::query("UPDATE requests SET delivered_at = $1 WHERE id = ANY($2)")
            .bind(now.0)
            .bind(&ids)
            .execute(&mut *conn)
            .await?;
    }
    Ok(out)
}

pub(super) async fn accept_down(
    conn: &mut PgConnection,
    own: &SiteCode,
    req: &DownRequest,
    accept_own: bool,
    now: Timestamp,
) -> Result<DownAccepted, StoreError> {
    if &req.origin_site == own {
        return Ok(DownAccepted::Refused(format!(
            "the request claims to come from this site {own}"
        )));
    }
    let Some((client, name, owner)) = client_owner(&mut *conn, req.client).await? else {
        return Ok(DownAccepted::UnknownClient);
    };
    let route = if &owner == own {
        if !accept_own {
            return Ok(DownAccepted::NotAccepted);
        }
        None
    } else {
        Some(owner)
    };
    let origin = req.origin();
    let created: Option<i64> = sqlx::query_scalar(
        "INSERT INTO requests (client_id, kind, arg, requested_at, origin, route)
         VALUES ($1, 'resync', $2, $3, $4, $5)
         ON CONFLICT (origin) WHERE origin IS NOT NULL DO NOTHING RETURNING id",
    )
    .bind(client)
    .bind(req.class.as_str())
    .bind(now.0)
    .bind(&origin)
    .bind(route.as_ref().map(SiteCode::as_str))
    .fetch_optional(&mut *conn)
    .await?;
    let (id, created) = match created {
        Some(id) => (id, true),
        None => {
            let id: i64 = sqlx::query_scalar("SELECT id FROM requests WHERE origin = $1")
                .bind(&origin)
                .fetch_one(&mut *conn)
                .await?;
            (id, false)
        }
    };
    Ok(match route {
        None => DownAccepted::Queued {
            id,
            client: name,
            created,
        },
        Some(route) => DownAccepted::Relayed { id, route, created },
    })
}
