//! Every data statement of the PostgreSQL backend apart from the hierarchy's (`hierarchy`):
//! clients, requests, snapshots, items, reports and the views. Each function takes the
//! connection (or transaction) it runs on; those that write a report run inside the report's
//! transaction, after the client's lock (`lock_client`) was taken.
//!
//! Statements are runtime queries with binds: sqlx prepares each on first use per connection
//! and keeps it prepared, so the hot paths (check-in, report) pay no parsing.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use invsync_proto::inventory::item_digest;
use invsync_proto::wire::{
    ClassState, ClientPage, ClientQuery, ClientRequest, ClientSummary, ClientView, Event,
    EventView, Instruction, InstructionKind, Queued, ReportAck, RequestPage, RequestQuery,
    RequestState, RequestView, SnapshotView,
};
use invsync_proto::{Class, ClientName, Digest, Items, SiteCode, Timestamp};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::cache::{CachedItem, FastMap, ItemCache};
use crate::codec::{
    PreparedItem, class_code, class_from_code, decode_attrs, decode_ids, encode_ids,
};
use crate::error::StoreError;
use crate::last_seen::LastSeen;
use crate::plan::{
    self, Change, Current, InputBody, ItemSource, Outcome, ReportInput, Resolver, Slot,
};
use crate::{ClientAuth, Enrolled, Enrollment, HistoryEntry, HistoryQuery, SiteMeta};

/// How many report ids per client and class are remembered for de-duplication (as SQLite).
const RECENT_REPORTS: usize = 4;

/// How many forwarded changes per client and class are remembered for de-duplication.
pub(super) const RECENT_FORWARDED: usize = 8;

/// How many requests and events `client_view` lists.
const VIEW_LIMIT: i64 = 50;

/// What a writing transaction hands on once it committed: the items it interned, for the cache,
/// and the changes of software snapshots, for the software index (`None` while the index is
/// neither built nor being built).
pub(super) struct Inserted {
    pub items: Vec<(i64, CachedItem)>,
    pub software: Option<Vec<crate::software::SwChange>>,
}

impl Inserted {
    pub fn new(index: &crate::software::SoftwareIndex) -> Inserted {
        Inserted {
            items: Vec::new(),
            software: index.collecting().then(Vec::new),
        }
    }
}

/// What `recent_reports` remembers of a forwarded change: its version and the first 8 bytes of
/// its hash, 16 bytes like a report id (the SQLite backend's format).
pub(super) fn forwarded_mark(version: i64, hash: &Digest) -> [u8; 16] {
    let mut mark = [0u8; 16];
    mark[..8].copy_from_slice(&version.to_le_bytes());
    mark[8..].copy_from_slice(&hash.0[..8]);
    mark
}

/// A client id as PostgreSQL's `uuid` type (16 bytes in the binary protocol). sqlx's own
/// `uuid` feature would do the same, but enabling it makes Cargo resolve sqlx's optional SQLite
/// driver, whose bundled SQLite clashes with rusqlite's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PgUuid(pub Uuid);

impl sqlx::Type<sqlx::Postgres> for PgUuid {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        // 2950 is the fixed object id of the built-in `uuid` type.
        sqlx::postgres::PgTypeInfo::with_oid(sqlx::postgres::types::Oid(2950))
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for PgUuid {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        buf.extend_from_slice(self.0.as_bytes());
        Ok(sqlx::encode::IsNull::No)
    }
}

impl sqlx::Decode<'_, sqlx::Postgres> for PgUuid {
    fn decode(value: sqlx::postgres::PgValueRef<'_>) -> Result<PgUuid, sqlx::error::BoxDynError> {
        Ok(PgUuid(Uuid::from_slice(value.as_bytes()?)?))
    }
}

pub(super) fn uuid_col(row: &PgRow, i: usize) -> Result<Uuid, StoreError> {
    Ok(row.try_get::<PgUuid, _>(i)?.0)
}

pub(super) fn corrupt(what: &str) -> StoreError {
    StoreError::Database(format!("the database holds an invalid {what}"))
}

/// The stored code of a class (`smallint`).
pub(super) fn cls(c: Class) -> i16 {
    class_code(c) as i16
}

pub(super) fn class_col(row: &PgRow, i: usize) -> Result<Class, StoreError> {
    class_from_code(i64::from(row.try_get::<i16, _>(i)?))
}

pub(super) fn digest_col(row: &PgRow, i: usize) -> Result<Digest, StoreError> {
    Digest::from_slice(row.try_get::<&[u8], _>(i)?).ok_or_else(|| corrupt("hash"))
}

pub(super) fn name_col(row: &PgRow, i: usize) -> Result<ClientName, StoreError> {
    ClientName::parse(row.try_get::<&str, _>(i)?).map_err(|_| corrupt("client name"))
}

pub(super) fn site_col(row: &PgRow, i: usize) -> Result<SiteCode, StoreError> {
    SiteCode::parse(row.try_get::<&str, _>(i)?).map_err(|_| corrupt("site code"))
}

pub(super) fn site_opt_col(row: &PgRow, i: usize) -> Result<Option<SiteCode>, StoreError> {
    match row.try_get::<Option<&str>, _>(i)? {
        None => Ok(None),
        Some(c) => Ok(Some(SiteCode::parse(c).map_err(|_| corrupt("site code"))?)),
    }
}

pub(super) fn ts_col(row: &PgRow, i: usize) -> Result<Option<Timestamp>, StoreError> {
    Ok(row.try_get::<Option<i64>, _>(i)?.map(Timestamp))
}

pub(super) fn state_of(picked_up_at: Option<i64>, completed_at: Option<i64>) -> RequestState {
    match (picked_up_at, completed_at) {
        (_, Some(_)) => RequestState::Complete,
        (Some(_), None) => RequestState::PickedUp,
        (None, None) => RequestState::Pending,
    }
}

/// Serialises the writes of one client (reports, forwarded changes, outbox rebuilds) until the
/// transaction ends: each is planned against the snapshot it then reads, which no other
/// transaction can move meanwhile. Keyed by the client id, so it also covers a forwarded client
/// that has no row yet. Other clients' writes run in parallel.
pub(super) async fn lock_client(conn: &mut PgConnection, client: Uuid) -> Result<(), StoreError> {
    let key = i64::from_le_bytes(client.as_bytes()[..8].try_into().expect("16 bytes"));
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(key)
        .execute(conn)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Site and clients

pub(super) async fn site_meta(conn: &mut PgConnection) -> Result<SiteMeta, StoreError> {
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT key, value FROM meta")
        .fetch_all(conn)
        .await?;
    let get = |k: &str| {
        rows.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let code = get("site_code")
        .and_then(|c| SiteCode::parse(c).ok())
        .ok_or_else(|| corrupt("site code"))?;
    let created_at = get("created_at")
        .and_then(|c| c.parse::<i64>().ok())
        .ok_or_else(|| corrupt("creation time"))?;
    Ok(SiteMeta {
        code,
        name: get("site_name").unwrap_or_default().to_string(),
        created_at: Timestamp(created_at),
    })
}

/// The internal row id of a client by its client id, whichever site owns it.
pub(super) async fn client_row(
    conn: &mut PgConnection,
    client_id: Uuid,
) -> Result<Option<i64>, StoreError> {
    Ok(sqlx::query_scalar("SELECT id FROM clients WHERE uuid = $1")
        .bind(PgUuid(client_id))
        .fetch_optional(conn)
        .await?)
}

/// The internal row id of a client of this site by its client id (see the SQLite backend's
/// `own_client_row` for why agents' operations only find own clients).
pub(super) async fn own_client_row(
    conn: &mut PgConnection,
    site: &SiteCode,
    client_id: Uuid,
) -> Result<Option<i64>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT id FROM clients WHERE uuid = $1 AND site_code = $2")
            .bind(PgUuid(client_id))
            .bind(site.as_str())
            .fetch_optional(conn)
            .await?,
    )
}

async fn client_row_by_name(
    conn: &mut PgConnection,
    site: &SiteCode,
    name: &ClientName,
) -> Result<Option<i64>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT id FROM clients WHERE site_code = $1 AND name = $2")
            .bind(site.as_str())
            .bind(name.as_str())
            .fetch_optional(conn)
            .await?,
    )
}

pub(super) async fn enroll(
    conn: &mut PgConnection,
    site: &SiteCode,
    e: &Enrollment,
) -> Result<Enrolled, StoreError> {
    // Two enrollments of one free name at once: the insert of the second finds the first's row
    // (ON CONFLICT waits for it to commit) and the loop then treats it as the holder.
    for _ in 0..3 {
        let holder: Option<(i64, PgUuid, String)> = sqlx::query_as(
            "SELECT id, uuid, machine_id FROM clients WHERE site_code = $1 AND name = $2",
        )
        .bind(site.as_str())
        .bind(e.name.as_str())
        .fetch_optional(&mut *conn)
        .await?;
        match holder {
            None => {
                let client_id = Uuid::new_v4();
                let inserted: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO clients (uuid, name, site_code, machine_id, key_hash, enrolled_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (site_code, name) DO NOTHING RETURNING id",
                )
                .bind(PgUuid(client_id))
                .bind(e.name.as_str())
                .bind(site.as_str())
                .bind(&e.machine_id)
                .bind(e.key_hash.0.as_slice())
                .bind(e.now.0)
                .fetch_optional(&mut *conn)
                .await?;
                if inserted.is_some() {
                    return Ok(Enrolled {
                        client_id,
                        reenrolled: false,
                    });
                }
            }
            Some((row, PgUuid(holder_id), machine_id)) => {
                if machine_id != e.machine_id {
                    return Err(StoreError::NameTaken {
                        name: e.name.clone(),
                        holder_id,
                        holder_machine_id: machine_id,
                    });
                }
                // The same machine enrolling again keeps its id and history; only its key
                // changes, which also revokes the old key.
                sqlx::query("UPDATE clients SET key_hash = $1 WHERE id = $2")
                    .bind(e.key_hash.0.as_slice())
                    .bind(row)
                    .execute(&mut *conn)
                    .await?;
                return Ok(Enrolled {
                    client_id: holder_id,
                    reenrolled: true,
                });
            }
        }
    }
    Err(StoreError::Database(format!(
        "could not enroll {}: the name kept changing hands",
        e.name
    )))
}

/// Only this site's own clients can authenticate (forwarded clients have a zero key hash and
/// are not looked up here at all).
pub(super) async fn client_auth(
    conn: &mut PgConnection,
    site: &SiteCode,
    client_id: Uuid,
) -> Result<Option<ClientAuth>, StoreError> {
    let row = sqlx::query("SELECT name, key_hash FROM clients WHERE uuid = $1 AND site_code = $2")
        .bind(PgUuid(client_id))
        .bind(site.as_str())
        .fetch_optional(conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(ClientAuth {
        client_id,
        name: name_col(&row, 0)?,
        key_hash: digest_col(&row, 1)?,
    }))
}

/// Replaces an own client's key hash with 32 zero bytes, which no key hashes to.
pub(super) async fn revoke(
    conn: &mut PgConnection,
    site: &SiteCode,
    name: &ClientName,
) -> Result<bool, StoreError> {
    let n = sqlx::query("UPDATE clients SET key_hash = $1 WHERE site_code = $2 AND name = $3")
        .bind(vec![0u8; 32])
        .bind(site.as_str())
        .bind(name.as_str())
        .execute(conn)
        .await?
        .rows_affected();
    Ok(n > 0)
}

/// Writes last-seen times (client row id, milliseconds) in one statement, later times winning.
pub(super) async fn write_last_seen(
    conn: &mut PgConnection,
    times: &[(i64, i64)],
) -> Result<(), StoreError> {
    let ids: Vec<i64> = times.iter().map(|(c, _)| *c).collect();
    let at: Vec<i64> = times.iter().map(|(_, t)| *t).collect();
    sqlx::query(
        "UPDATE clients SET last_seen = greatest(coalesce(clients.last_seen, t.at), t.at)
         FROM UNNEST($1::bigint[], $2::bigint[]) AS t (id, at)
         WHERE clients.id = t.id",
    )
    .bind(&ids)
    .bind(&at)
    .execute(conn)
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Check-in and requests

/// A request not yet complete, as a check-in delivers it.
pub(super) struct OpenRequest {
    pub instruction: Instruction,
    pub picked_up: bool,
}

fn instruction_kind(kind: &str, arg: &str) -> Option<InstructionKind> {
    match kind {
        "resync" => Class::parse(arg).map(|class| InstructionKind::Resync { class }),
        "event" => Event::parse(arg).map(|event| InstructionKind::Event { event }),
        _ => None,
    }
}

pub(super) async fn open_requests(
    conn: &mut PgConnection,
    client: i64,
) -> Result<Vec<OpenRequest>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, kind, arg, picked_up_at FROM requests
         WHERE client_id = $1 AND completed_at IS NULL ORDER BY id",
    )
    .bind(client)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let kind = instruction_kind(row.try_get(1)?, row.try_get(2)?)
                .ok_or_else(|| corrupt("request kind"))?;
            Ok(OpenRequest {
                instruction: Instruction {
                    id: row.try_get(0)?,
                    kind,
                },
                picked_up: row.try_get::<Option<i64>, _>(3)?.is_some(),
            })
        })
        .collect()
}

pub(super) async fn class_states(
    conn: &mut PgConnection,
    client: i64,
) -> Result<BTreeMap<Class, ClassState>, StoreError> {
    let rows = sqlx::query("SELECT class, version, hash FROM snapshots WHERE client_id = $1")
        .bind(client)
        .fetch_all(conn)
        .await?;
    let mut out = BTreeMap::new();
    for row in &rows {
        out.insert(
            class_col(row, 0)?,
            ClassState {
                version: row.try_get(1)?,
                hash: digest_col(row, 2)?,
            },
        );
    }
    Ok(out)
}

pub(super) async fn mark_picked_up(
    conn: &mut PgConnection,
    client: i64,
    ids: &[i64],
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE requests SET picked_up_at = $1
         WHERE id = ANY($2) AND client_id = $3 AND picked_up_at IS NULL AND completed_at IS NULL",
    )
    .bind(now.0)
    .bind(ids)
    .bind(client)
    .execute(conn)
    .await?;
    Ok(())
}

/// Queues a resync request or an event unless an identical one is still pending.
pub(super) async fn queue_request(
    conn: &mut PgConnection,
    site: &SiteCode,
    name: &ClientName,
    kind: &str,
    arg: &str,
    now: Timestamp,
) -> Result<Queued, StoreError> {
    let client = client_row_by_name(&mut *conn, site, name)
        .await?
        .ok_or_else(|| StoreError::UnknownClient {
            name: name.to_string(),
        })?;
    let (id, requested_at, created) = queue_pending(conn, client, kind, arg, None, now).await?;
    Ok(Queued {
        id,
        client: name.clone(),
        created,
        state: RequestState::Pending,
        requested_at,
        routed_to: None,
    })
}

/// Creates a request unless an identical one is pending (the partial unique index makes that
/// one atomic statement, even against another site process); the id, request time and whether
/// it was created.
pub(super) async fn queue_pending(
    conn: &mut PgConnection,
    client: i64,
    kind: &str,
    arg: &str,
    route: Option<&str>,
    now: Timestamp,
) -> Result<(i64, Timestamp, bool), StoreError> {
    // The pending request found by the insert may be picked up before the select sees it; then
    // a new one can be created, hence the second round.
    for _ in 0..3 {
        let created: Option<i64> = sqlx::query_scalar(
            "INSERT INTO requests (client_id, kind, arg, requested_at, route)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (client_id, kind, arg)
                 WHERE picked_up_at IS NULL AND completed_at IS NULL AND origin IS NULL
             DO NOTHING RETURNING id",
        )
        .bind(client)
        .bind(kind)
        .bind(arg)
        .bind(now.0)
        .bind(route)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(id) = created {
            return Ok((id, now, true));
        }
        let pending: Option<(i64, i64)> = sqlx::query_as(
            "SELECT id, requested_at FROM requests
             WHERE client_id = $1 AND kind = $2 AND arg = $3
               AND picked_up_at IS NULL AND completed_at IS NULL AND origin IS NULL",
        )
        .bind(client)
        .bind(kind)
        .bind(arg)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some((id, at)) = pending {
            return Ok((id, Timestamp(at), false));
        }
    }
    Err(StoreError::Database(
        "could not queue the request: the pending one kept changing".to_string(),
    ))
}

pub(super) async fn complete_events(
    conn: &mut PgConnection,
    client: i64,
    ids: &[i64],
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE requests SET completed_at = $1, picked_up_at = coalesce(picked_up_at, $1)
         WHERE id = ANY($2) AND client_id = $3 AND kind = 'event' AND completed_at IS NULL",
    )
    .bind(now.0)
    .bind(ids)
    .bind(client)
    .execute(conn)
    .await?;
    Ok(())
}

/// The columns `request_view` reads, in its order.
pub(super) const REQUEST_COLS: &str =
    "id, arg, requested_at, picked_up_at, completed_at, origin, route, forwarded_at, forwarded_to";

pub(super) async fn request_state(
    conn: &mut PgConnection,
    id: i64,
) -> Result<Option<RequestView>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {REQUEST_COLS} FROM requests WHERE id = $1 AND kind = 'resync'"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(request_view).transpose()
}

/// A resync request from the columns of [`REQUEST_COLS`].
pub(super) fn request_view(row: &PgRow) -> Result<RequestView, StoreError> {
    let class = Class::parse(row.try_get(1)?).ok_or_else(|| corrupt("request class"))?;
    let (picked, done): (Option<i64>, Option<i64>) = (row.try_get(3)?, row.try_get(4)?);
    Ok(RequestView {
        id: row.try_get(0)?,
        class,
        state: state_of(picked, done),
        requested_at: Timestamp(row.try_get(2)?),
        picked_up_at: picked.map(Timestamp),
        completed_at: done.map(Timestamp),
        origin: row.try_get(5)?,
        route: site_opt_col(row, 6)?,
        forwarded_at: ts_col(row, 7)?,
        forwarded_to: site_opt_col(row, 8)?,
    })
}

// ---------------------------------------------------------------------------------------------
// Snapshots and items

/// A `snapshots` row as reports need it.
pub(super) struct SnapshotRow {
    pub version: i64,
    pub hash: Digest,
    recent: Vec<u8>,
    /// The item id list (`codec::encode_ids`).
    pub items: Vec<u8>,
}

impl SnapshotRow {
    pub fn has_report(&self, report_id: Uuid) -> bool {
        self.recent
            .chunks_exact(16)
            .any(|c| c == report_id.as_bytes())
    }

    pub fn current(&self) -> Result<Current, StoreError> {
        Ok(Current {
            version: self.version,
            hash: self.hash,
            ids: decode_ids(&self.items)?,
        })
    }

    /// Whether a forwarded change with this version and hash was applied recently (see the
    /// SQLite backend's `SnapshotRow::has_forwarded`).
    pub fn has_forwarded(&self, version: i64, hash: &Digest) -> bool {
        let mark = forwarded_mark(version, hash);
        self.recent.chunks_exact(16).any(|c| c == mark)
    }

    /// The recent marks with `mark` first, at most `keep`.
    fn recent_with(&self, mark: &[u8; 16], keep: usize) -> Vec<u8> {
        let mut out = mark.to_vec();
        for c in self.recent.chunks_exact(16).take(keep - 1) {
            out.extend_from_slice(c);
        }
        out
    }
}

pub(super) async fn snapshot_row(
    conn: &mut PgConnection,
    client: i64,
    class: Class,
) -> Result<Option<SnapshotRow>, StoreError> {
    let row = sqlx::query(
        "SELECT version, hash, recent_reports, items FROM snapshots
         WHERE client_id = $1 AND class = $2",
    )
    .bind(client)
    .bind(cls(class))
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(SnapshotRow {
        version: row.try_get(0)?,
        hash: digest_col(&row, 1)?,
        recent: row.try_get(2)?,
        items: row.try_get(3)?,
    }))
}

/// The item lookups one plan needs, made beforehand in at most two statements.
///
/// `plan::plan` asks its `ItemSource` synchronously; here every lookup it can ask is answered
/// in advance (see the module documentation of `postgres`), from the shared cache where it
/// knows the item and from the database in one batched statement for the rest. Planning then
/// runs against this alone, with no database access.
#[derive(Default)]
pub(super) struct Prefetched {
    by_digest: FastMap<Digest, i64>,
    by_id: FastMap<i64, CachedItem>,
}

impl ItemSource for Prefetched {
    fn find(&self, items: &[&PreparedItem]) -> Result<Vec<Option<i64>>, StoreError> {
        Ok(items
            .iter()
            .map(|i| self.by_digest.get(&i.digest).copied())
            .collect())
    }

    fn load(&self, ids: &[i64]) -> Result<Vec<CachedItem>, StoreError> {
        ids.iter()
            .map(|id| {
                self.by_id
                    .get(id)
                    .cloned()
                    .ok_or_else(|| corrupt("item reference"))
            })
            .collect()
    }
}

impl Prefetched {
    /// Finds the ids of these items: the cache's, then one statement for the others. What the
    /// database answers enters the cache: items are committed before anyone can read them.
    async fn fetch_ids(
        &mut self,
        conn: &mut PgConnection,
        cache: &ItemCache,
        items: &[PreparedItem],
    ) -> Result<(), StoreError> {
        let known = cache.ids(items.iter().map(|i| &i.digest));
        let mut missing: Vec<&[u8]> = Vec::new();
        for (item, id) in items.iter().zip(known) {
            match id {
                Some(id) => {
                    self.by_digest.insert(item.digest, id);
                }
                None => missing.push(item.digest.0.as_slice()),
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let rows: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT id, digest FROM items WHERE digest = ANY($1)")
                .bind(&missing)
                .fetch_all(conn)
                .await?;
        let mut learned = Vec::with_capacity(rows.len());
        let by_digest: FastMap<Digest, &PreparedItem> =
            items.iter().map(|i| (i.digest, i)).collect();
        for (id, raw) in rows {
            let digest = Digest::from_slice(&raw).ok_or_else(|| corrupt("item digest"))?;
            self.by_digest.insert(digest, id);
            if let Some(item) = by_digest.get(&digest) {
                learned.push((
                    id,
                    CachedItem {
                        key: Arc::from(item.key.as_str()),
                        digest,
                    },
                ));
            }
        }
        cache.insert(learned);
        Ok(())
    }

    /// Loads the keys and digests of these item ids: the cache's, then one statement.
    async fn fetch_items(
        &mut self,
        conn: &mut PgConnection,
        cache: &ItemCache,
        ids: &[i64],
    ) -> Result<(), StoreError> {
        let mut missing = Vec::new();
        for (id, item) in ids.iter().zip(cache.items(ids)) {
            match item {
                Some(item) => {
                    self.by_id.insert(*id, item);
                }
                None => missing.push(*id),
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let rows: Vec<(i64, String, Vec<u8>)> =
            sqlx::query_as("SELECT id, key, attrs FROM items WHERE id = ANY($1)")
                .bind(&missing)
                .fetch_all(conn)
                .await?;
        let mut learned = Vec::with_capacity(rows.len());
        for (id, key, attrs) in rows {
            let attrs = decode_attrs(&attrs)?;
            let item = CachedItem {
                digest: item_digest(&key, &attrs),
                key: Arc::from(key),
            };
            self.by_id.insert(id, item.clone());
            learned.push((id, item));
        }
        cache.insert(learned);
        Ok(())
    }
}

/// Plans a report against `current`: the lookups first (async, batched), then `plan::plan`
/// with no database access.
pub(super) async fn plan_report(
    conn: &mut PgConnection,
    cache: &ItemCache,
    input: &ReportInput,
    current: Option<&Current>,
) -> Result<Outcome, StoreError> {
    let mut pre = Prefetched::default();
    match (&input.body, current) {
        // A re-sent unchanged snapshot needs no lookups (plan_full's shortcut).
        (InputBody::Full { .. }, Some(c)) if c.hash == input.hash => {}
        (InputBody::Full { items }, _) => {
            pre.fetch_ids(&mut *conn, cache, items).await?;
            if let Some(c) = current {
                // plan_full loads the stored items the report no longer has.
                let kept: HashSet<i64> = pre.by_digest.values().copied().collect();
                let gone: Vec<i64> = c
                    .ids
                    .iter()
                    .copied()
                    .filter(|id| !kept.contains(id))
                    .collect();
                pre.fetch_items(&mut *conn, cache, &gone).await?;
            }
        }
        // plan_delta refuses these before any lookup.
        (InputBody::Delta { .. }, None) => {}
        (InputBody::Delta { base_version, .. }, Some(c)) if c.version != *base_version => {}
        (InputBody::Delta { upsert, .. }, Some(c)) => {
            pre.fetch_ids(&mut *conn, cache, upsert).await?;
            pre.fetch_items(&mut *conn, cache, &c.ids).await?;
        }
    }
    // An empty cache in front of the prefetched answers: every lookup the plan makes goes to
    // them, so it sees exactly what was fetched even if the shared cache starts afresh meanwhile.
    let empty = ItemCache::with_capacity(0);
    let resolver = Resolver {
        cache: &empty,
        db: &pre,
        fill_cache: false,
    };
    Ok(plan::plan(input, current, &resolver)?.outcome)
}

/// Interns items in two statements whatever their number: insert those not yet stored, then
/// read every id back by digest. Inserting in digest order makes concurrent reports that share
/// new items wait for each other in one order, never in a cycle.
pub(super) async fn intern_items(
    conn: &mut PgConnection,
    items: &[PreparedItem],
    inserted: &mut Inserted,
) -> Result<Vec<i64>, StoreError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let digests: Vec<&[u8]> = items.iter().map(|i| i.digest.0.as_slice()).collect();
    let keys: Vec<&str> = items.iter().map(|i| i.key.as_str()).collect();
    let attrs: Vec<&[u8]> = items.iter().map(|i| i.attrs.as_slice()).collect();
    sqlx::query(
        "INSERT INTO items (digest, key, attrs)
         SELECT d, k, a FROM UNNEST($1::bytea[], $2::text[], $3::bytea[]) AS t (d, k, a)
         ORDER BY d
         ON CONFLICT (digest) DO NOTHING",
    )
    .bind(&digests)
    .bind(&keys)
    .bind(&attrs)
    .execute(&mut *conn)
    .await?;
    let rows: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT id, digest FROM items WHERE digest = ANY($1)")
            .bind(&digests)
            .fetch_all(&mut *conn)
            .await?;
    let ids: FastMap<Digest, i64> = rows
        .into_iter()
        .filter_map(|(id, d)| Digest::from_slice(&d).map(|d| (d, id)))
        .collect();
    items
        .iter()
        .map(|item| {
            let id = *ids
                .get(&item.digest)
                .ok_or_else(|| corrupt("item table (an interned item is missing)"))?;
            inserted.items.push((
                id,
                CachedItem {
                    key: Arc::from(item.key.as_str()),
                    digest: item.digest,
                },
            ));
            Ok(id)
        })
        .collect()
}

/// When and as which version a change is stored (as the SQLite backend's `Stamp`).
pub(super) struct Stamp {
    pub version: Option<i64>,
    pub at: Timestamp,
    pub full_at: Timestamp,
    pub remember: ([u8; 16], usize),
}

/// What a stored change became.
pub(super) struct Written {
    pub version: i64,
    pub full_at: Timestamp,
    /// The item ids an outbox entry of this change records.
    pub body_ids: Vec<u8>,
}

/// Writes an accepted change: interns its new items, writes the snapshot and the history rows,
/// each in one statement. The one path of both own reports and forwarded changes.
#[allow(clippy::too_many_arguments)]
pub(super) async fn write_change(
    conn: &mut PgConnection,
    inserted: &mut Inserted,
    client: i64,
    input: &ReportInput,
    row: Option<&SnapshotRow>,
    change: Change,
    stamp: &Stamp,
) -> Result<Written, StoreError> {
    let new_ids = intern_items(&mut *conn, &change.new_items, inserted).await?;
    let id_of = |s: Slot| match s {
        Slot::Known(id) => id,
        Slot::New(i) => new_ids[i],
    };
    let ids: Option<Vec<i64>> = change
        .items
        .map(|slots| slots.into_iter().map(id_of).collect());
    let blob = ids.as_deref().map(encode_ids);
    let full = input.is_full();
    let body_ids = if full {
        match (&blob, row) {
            (Some(b), _) => b.clone(),
            (None, Some(r)) => r.items.clone(),
            (None, None) => Vec::new(),
        }
    } else {
        encode_ids(&change.upserts.iter().map(|s| id_of(*s)).collect::<Vec<_>>())
    };
    let class = cls(input.class);
    let (mark, keep) = &stamp.remember;
    let recent = match row {
        Some(r) => r.recent_with(mark, *keep),
        None => mark.to_vec(),
    };
    let (version, full_at): (i64, i64) = match row {
        None => {
            let blob = blob.ok_or_else(|| {
                StoreError::Database("a first snapshot without items".to_string())
            })?;
            sqlx::query_as(
                "INSERT INTO snapshots (client_id, class, version, hash, full_at, updated_at, recent_reports, items)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING version, full_at",
            )
            .bind(client)
            .bind(class)
            .bind(stamp.version.unwrap_or(1))
            .bind(input.hash.0.as_slice())
            .bind(stamp.full_at.0)
            .bind(stamp.at.0)
            .bind(&recent)
            .bind(&blob)
            .fetch_one(&mut *conn)
            .await?
        }
        Some(row) => {
            sqlx::query_as(
                "UPDATE snapshots SET version = $1, hash = $2,
                        full_at = CASE WHEN $3 THEN $4 ELSE full_at END, updated_at = $5,
                        recent_reports = $6, items = coalesce($7, items)
                 WHERE client_id = $8 AND class = $9 RETURNING version, full_at",
            )
            .bind(stamp.version.unwrap_or(row.version + 1))
            .bind(input.hash.0.as_slice())
            .bind(full)
            .bind(stamp.full_at.0)
            .bind(stamp.at.0)
            .bind(&recent)
            .bind(&blob)
            .bind(client)
            .bind(class)
            .fetch_one(&mut *conn)
            .await?
        }
    };
    if !change.history.is_empty() {
        let old: Vec<Option<i64>> = change.history.iter().map(|h| h.old).collect();
        let new: Vec<Option<i64>> = change.history.iter().map(|h| h.new.map(id_of)).collect();
        // WITH ORDINALITY keeps the rows' order, so their ids follow it as SQLite's do.
        sqlx::query(
            "INSERT INTO history (client_id, class, at, old_item, new_item, full_report)
             SELECT $1, $2, $3, o, n, $4
             FROM UNNEST($5::bigint[], $6::bigint[]) WITH ORDINALITY AS t (o, n, i)
             ORDER BY i",
        )
        .bind(client)
        .bind(class)
        .bind(stamp.at.0)
        .bind(full)
        .bind(&old)
        .bind(&new)
        .execute(&mut *conn)
        .await?;
    }
    if input.class == Class::Sw
        && let Some(changes) = &mut inserted.software
    {
        // A first snapshot has no history rows: everything in it is added.
        let (removed, added) = match (row, ids) {
            (None, ids) => (Vec::new(), ids.unwrap_or_default()),
            (Some(_), _) => (
                change.history.iter().filter_map(|h| h.old).collect(),
                change
                    .history
                    .iter()
                    .filter_map(|h| h.new.map(id_of))
                    .collect(),
            ),
        };
        changes.push(crate::software::change(
            client,
            row.map(|r| r.version),
            Some(version),
            removed,
            added,
        )?);
    }
    Ok(Written {
        version,
        full_at: Timestamp(full_at),
        body_ids,
    })
}

/// Stores a report of this site's own client, inside the transaction `conn`: takes the
/// client's lock, then the duplicate check, the plan against the snapshot as it now is (nobody
/// can move it until the commit), and the writes.
pub(super) async fn apply_report(
    conn: &mut PgConnection,
    cache: &ItemCache,
    site: &SiteCode,
    client_id: Uuid,
    input: &ReportInput,
    now: Timestamp,
    inserted: &mut Inserted,
) -> Result<(i64, ReportAck), StoreError> {
    lock_client(&mut *conn, client_id).await?;
    let client = own_client_row(&mut *conn, site, client_id)
        .await?
        .ok_or_else(|| StoreError::UnknownClient {
            name: client_id.to_string(),
        })?;
    let row = snapshot_row(&mut *conn, client, input.class).await?;
    if let Some(row) = &row
        && row.has_report(input.report_id)
    {
        return Ok((
            client,
            ReportAck::Duplicate {
                version: row.version,
                hash: row.hash,
            },
        ));
    }
    let current = row.as_ref().map(SnapshotRow::current).transpose()?;
    let change = match plan_report(&mut *conn, cache, input, current.as_ref()).await? {
        Outcome::Resync(reason) => return Ok((client, ReportAck::ResyncRequired { reason })),
        Outcome::Write(change) => change,
    };
    let stamp = Stamp {
        version: None,
        at: now,
        full_at: now,
        remember: (*input.report_id.as_bytes(), RECENT_REPORTS),
    };
    let written = write_change(
        &mut *conn,
        inserted,
        client,
        input,
        row.as_ref(),
        change,
        &stamp,
    )
    .await?;
    let mut completed = Vec::new();
    if input.is_full() && !input.answers.is_empty() {
        // Only this client's resync requests for this class.
        let rows = sqlx::query(&format!(
            "UPDATE requests SET completed_at = $1, picked_up_at = coalesce(picked_up_at, $1)
             WHERE id = ANY($2) AND client_id = $3 AND kind = 'resync' AND arg = $4
               AND completed_at IS NULL
             RETURNING {REQUEST_COLS}"
        ))
        .bind(now.0)
        .bind(&input.answers)
        .bind(client)
        .bind(input.class.as_str())
        .fetch_all(&mut *conn)
        .await?;
        for r in &rows {
            completed.push(request_view(r)?);
        }
        completed.sort_by_key(|r| r.id);
    }
    if super::outbox::forwarding(&mut *conn).await? {
        super::outbox::enqueue(
            &mut *conn,
            &crate::hierarchy::Entry {
                client,
                input,
                version: written.version,
                full_at: written.full_at,
                updated_at: now,
                body_ids: &written.body_ids,
                completed: &completed,
            },
            now,
        )
        .await?;
    }
    Ok((
        client,
        ReportAck::Accepted {
            version: written.version,
            hash: input.hash,
        },
    ))
}

// ---------------------------------------------------------------------------------------------
// Views

pub(super) async fn clients(
    conn: &mut PgConnection,
    last_seen: &LastSeen,
) -> Result<Vec<ClientSummary>, StoreError> {
    let rows = sqlx::query(
        "SELECT c.id, c.name, c.uuid, c.site_code, c.last_seen,
                hw.version, hw.updated_at, sw.version, sw.updated_at,
                (SELECT count(*) FROM requests r WHERE r.client_id = c.id AND r.completed_at IS NULL)
         FROM clients c
         LEFT JOIN snapshots hw ON hw.client_id = c.id AND hw.class = 0
         LEFT JOIN snapshots sw ON sw.client_id = c.id AND sw.class = 1
         ORDER BY c.name, c.site_code",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(ClientSummary {
                name: name_col(row, 1)?,
                id: uuid_col(row, 2)?,
                site: site_col(row, 3)?,
                last_seen: last_seen.overlay(row.try_get(0)?, ts_col(row, 4)?),
                hw_version: row.try_get(5)?,
                hw_updated_at: ts_col(row, 6)?,
                sw_version: row.try_get(7)?,
                sw_updated_at: ts_col(row, 8)?,
                pending_requests: row.try_get(9)?,
            })
        })
        .collect()
}

/// One page of resync requests ([`crate::Store::requests_page`]), newest first, and how many
/// match.
pub(super) async fn requests_page(
    conn: &mut PgConnection,
    q: &RequestQuery,
) -> Result<RequestPage, StoreError> {
    let state = q.state.map(|s| s.as_str().to_string());
    let class = q.class.map(|c| c.to_string());
    let filter = format!(
        "r.kind = 'resync' AND ($1::text IS NULL OR ({}) = $1) AND ($2::text IS NULL OR r.arg = $2)",
        crate::page::REQUEST_STATE_SQL
    );
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM requests r WHERE {filter}"))
        .bind(&state)
        .bind(&class)
        .fetch_one(&mut *conn)
        .await?;
    let rows = sqlx::query(&format!(
        "SELECT r.id, r.arg, r.requested_at, r.picked_up_at, r.completed_at, r.origin, r.route,
                r.forwarded_at, r.forwarded_to, c.name, c.site_code
         FROM requests r JOIN clients c ON c.id = r.client_id
         WHERE {filter} ORDER BY r.id DESC LIMIT $3 OFFSET $4"
    ))
    .bind(&state)
    .bind(&class)
    .bind(i64::from(q.limit))
    .bind(q.offset as i64)
    .fetch_all(&mut *conn)
    .await?;
    let requests = rows
        .iter()
        .map(|row| {
            Ok(ClientRequest {
                client: name_col(row, 9)?,
                site: site_col(row, 10)?,
                request: request_view(row)?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(RequestPage {
        total: total as u64,
        offset: q.offset,
        requests,
    })
}

/// One page of clients ([`crate::Store::clients_page`]): the page's ids from one
/// index-ordered statement, then the rows of those ids (at most a thousand) in one statement, so
/// the per-client subqueries run for the page only, never for the skipped offset.
pub(super) async fn clients_page(
    conn: &mut PgConnection,
    q: &ClientQuery,
    last_seen: &LastSeen,
) -> Result<ClientPage, StoreError> {
    let search = q.search_upper();
    let site = q.site.as_ref().map(|s| s.as_str().to_string());
    let filter =
        "($1::text IS NULL OR strpos(c.name, $1) > 0) AND ($2::text IS NULL OR c.site_code = $2)";
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM clients c WHERE {filter}"))
        .bind(&search)
        .bind(&site)
        .fetch_one(&mut *conn)
        .await?;
    let join = match crate::page::sort_class(q.sort) {
        Some(class) => format!("LEFT JOIN snapshots s ON s.client_id = c.id AND s.class = {class}"),
        None => String::new(),
    };
    let order = crate::page::order_by(q.sort, q.descending, r#" COLLATE "C""#);
    let ids: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT c.id FROM clients c {join} WHERE {filter} ORDER BY {order} LIMIT $3 OFFSET $4"
    ))
    .bind(&search)
    .bind(&site)
    .bind(i64::from(q.limit))
    .bind(q.offset as i64)
    .fetch_all(&mut *conn)
    .await?;
    let rows = sqlx::query(
        "SELECT c.id, c.name, c.uuid, c.site_code, c.last_seen,
                hw.version, hw.updated_at, sw.version, sw.updated_at,
                (SELECT count(*) FROM requests r WHERE r.client_id = c.id AND r.completed_at IS NULL)
         FROM clients c
         LEFT JOIN snapshots hw ON hw.client_id = c.id AND hw.class = 0
         LEFT JOIN snapshots sw ON sw.client_id = c.id AND sw.class = 1
         WHERE c.id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut by_id = std::collections::HashMap::with_capacity(rows.len());
    for row in &rows {
        let id: i64 = row.try_get(0)?;
        by_id.insert(
            id,
            ClientSummary {
                name: name_col(row, 1)?,
                id: uuid_col(row, 2)?,
                site: site_col(row, 3)?,
                last_seen: last_seen.overlay(id, ts_col(row, 4)?),
                hw_version: row.try_get(5)?,
                hw_updated_at: ts_col(row, 6)?,
                sw_version: row.try_get(7)?,
                sw_updated_at: ts_col(row, 8)?,
                pending_requests: row.try_get(9)?,
            },
        );
    }
    // In the page's order; a row is never deleted inside the caller's transaction.
    let clients = ids.iter().filter_map(|id| by_id.remove(id)).collect();
    Ok(ClientPage {
        total: total as u64,
        offset: q.offset,
        clients,
    })
}

pub(super) async fn client_view(
    conn: &mut PgConnection,
    site: &SiteCode,
    name: &ClientName,
    last_seen: &LastSeen,
) -> Result<Option<ClientView>, StoreError> {
    match client_row_by_name(&mut *conn, site, name).await? {
        Some(client) => client_view_of(conn, client, last_seen).await,
        None => Ok(None),
    }
}

pub(super) async fn client_view_by_id(
    conn: &mut PgConnection,
    client_id: Uuid,
    last_seen: &LastSeen,
) -> Result<Option<ClientView>, StoreError> {
    match client_row(&mut *conn, client_id).await? {
        Some(client) => client_view_of(conn, client, last_seen).await,
        None => Ok(None),
    }
}

async fn client_view_of(
    conn: &mut PgConnection,
    client: i64,
    last_seen: &LastSeen,
) -> Result<Option<ClientView>, StoreError> {
    let row = sqlx::query(
        "SELECT id, uuid, name, site_code, machine_id, enrolled_at, last_seen
         FROM clients WHERE id = $1",
    )
    .bind(client)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let mut view = ClientView {
        name: name_col(&row, 2)?,
        id: uuid_col(&row, 1)?,
        site: site_col(&row, 3)?,
        machine_id: row.try_get(4)?,
        enrolled_at: Timestamp(row.try_get(5)?),
        last_seen: last_seen.overlay(client, ts_col(&row, 6)?),
        hw: None,
        sw: None,
        requests: Vec::new(),
        events: Vec::new(),
    };
    let snaps = sqlx::query(
        "SELECT class, version, hash, full_at, updated_at, items FROM snapshots WHERE client_id = $1",
    )
    .bind(client)
    .fetch_all(&mut *conn)
    .await?;
    for row in &snaps {
        let ids = decode_ids(row.try_get(5)?)?;
        let snapshot = SnapshotView {
            version: row.try_get(1)?,
            hash: digest_col(row, 2)?,
            full_at: Timestamp(row.try_get(3)?),
            updated_at: Timestamp(row.try_get(4)?),
            items: load_items(&mut *conn, &ids).await?,
        };
        match class_col(row, 0)? {
            Class::Hw => view.hw = Some(snapshot),
            Class::Sw => view.sw = Some(snapshot),
        }
    }
    let listed = format!(
        "SELECT {REQUEST_COLS} FROM requests
         WHERE client_id = $1 AND kind = $2 ORDER BY id DESC LIMIT $3"
    );
    let rows = sqlx::query(&listed)
        .bind(client)
        .bind("resync")
        .bind(VIEW_LIMIT)
        .fetch_all(&mut *conn)
        .await?;
    for row in &rows {
        view.requests.push(request_view(row)?);
    }
    let rows = sqlx::query(&listed)
        .bind(client)
        .bind("event")
        .bind(VIEW_LIMIT)
        .fetch_all(&mut *conn)
        .await?;
    for row in &rows {
        let event = Event::parse(row.try_get(1)?).ok_or_else(|| corrupt("event"))?;
        let (picked, done): (Option<i64>, Option<i64>) = (row.try_get(3)?, row.try_get(4)?);
        view.events.push(EventView {
            id: row.try_get(0)?,
            event,
            state: state_of(picked, done),
            requested_at: Timestamp(row.try_get(2)?),
            picked_up_at: picked.map(Timestamp),
            completed_at: done.map(Timestamp),
        });
    }
    Ok(Some(view))
}

/// The items with these ids, keyed by item key.
pub(super) async fn load_items(conn: &mut PgConnection, ids: &[i64]) -> Result<Items, StoreError> {
    let rows: Vec<(String, Vec<u8>)> =
        sqlx::query_as("SELECT key, attrs FROM items WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(conn)
            .await?;
    let mut items = Items::new();
    for (key, attrs) in rows {
        items.insert(key, decode_attrs(&attrs)?);
    }
    if items.len() != ids.len() {
        return Err(corrupt("snapshot item list"));
    }
    Ok(items)
}

pub(super) async fn history(
    conn: &mut PgConnection,
    site: &SiteCode,
    name: &ClientName,
    query: &HistoryQuery,
) -> Result<Option<Vec<HistoryEntry>>, StoreError> {
    match client_row_by_name(&mut *conn, site, name).await? {
        Some(client) => history_of(conn, client, query).await.map(Some),
        None => Ok(None),
    }
}

pub(super) async fn history_by_id(
    conn: &mut PgConnection,
    client_id: Uuid,
    query: &HistoryQuery,
) -> Result<Option<Vec<HistoryEntry>>, StoreError> {
    match client_row(&mut *conn, client_id).await? {
        Some(client) => history_of(conn, client, query).await.map(Some),
        None => Ok(None),
    }
}

async fn history_of(
    conn: &mut PgConnection,
    client: i64,
    query: &HistoryQuery,
) -> Result<Vec<HistoryEntry>, StoreError> {
    let limit =
        i64::try_from(query.limit.unwrap_or(crate::DEFAULT_HISTORY_LIMIT)).unwrap_or(i64::MAX);
    let rows = sqlx::query(
        "SELECT h.at, h.class, coalesce(n.key, o.key), o.attrs, n.attrs, h.full_report
         FROM history h
         LEFT JOIN items o ON o.id = h.old_item
         LEFT JOIN items n ON n.id = h.new_item
         WHERE h.client_id = $1
           AND ($3::smallint IS NULL OR h.class = $3)
           AND ($4::bigint IS NULL OR h.at >= $4)
         ORDER BY h.id DESC LIMIT $2",
    )
    .bind(client)
    .bind(limit)
    .bind(query.class.map(cls))
    .bind(query.since.map(|t| t.0))
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let attrs = |i: usize| -> Result<_, StoreError> {
                row.try_get::<Option<&[u8]>, _>(i)?
                    .map(decode_attrs)
                    .transpose()
            };
            Ok(HistoryEntry {
                at: Timestamp(row.try_get(0)?),
                class: class_col(row, 1)?,
                key: row.try_get(2)?,
                old: attrs(3)?,
                new: attrs(4)?,
                full: row.try_get(5)?,
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Software across clients (the index and the pages are in `crate::software`)

/// Offers the stored items (those with these ids, or all for `None`) to `f`, streaming them.
pub(super) async fn items_for_index(
    conn: &mut PgConnection,
    ids: Option<&[i64]>,
    mut f: impl FnMut(i64, &[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    use futures_util::TryStreamExt;
    let mut rows =
        sqlx::query("SELECT id, attrs FROM items WHERE $1::bigint[] IS NULL OR id = ANY($1)")
            .bind(ids)
            .fetch(&mut *conn);
    while let Some(r) = rows.try_next().await? {
        f(r.try_get(0)?, r.try_get::<&[u8], _>(1)?)?;
    }
    Ok(())
}

/// Offers every client's software snapshot (row, version, item list) to `f`, streaming them by
/// client row (the snapshots' primary key), so the index appends each package's holders.
pub(super) async fn software_lists(
    conn: &mut PgConnection,
    mut f: impl FnMut(i64, i64, &[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    use futures_util::TryStreamExt;
    let mut rows = sqlx::query(
        "SELECT client_id, version, items FROM snapshots WHERE class = $1 ORDER BY client_id",
    )
    .bind(cls(Class::Sw))
    .fetch(&mut *conn);
    while let Some(r) = rows.try_next().await? {
        f(r.try_get(0)?, r.try_get(1)?, r.try_get::<&[u8], _>(2)?)?;
    }
    Ok(())
}

/// The rows of the clients owned by `site`.
pub(super) async fn site_rows(
    conn: &mut PgConnection,
    site: &SiteCode,
) -> Result<roaring::RoaringBitmap, StoreError> {
    let rows: Vec<i64> = sqlx::query_scalar("SELECT id FROM clients WHERE site_code = $1")
        .bind(site.as_str())
        .fetch_all(&mut *conn)
        .await?;
    rows.into_iter()
        .map(|r| u32::try_from(r).map_err(|_| corrupt("client row")))
        .collect()
}

/// Offers the clients in name order, then site, to `f` until it returns false. They are read
/// in chunks, each starting after the last client of the one before (on the `clients_by_name`
/// index), because a single query would send every client over the connection even when the
/// first page is full after a hundred: the rest must be read off the socket before the next
/// statement. The first chunk is `wanted` clients (a page can need no more clients than its
/// offset and limit add up to), and each next one twice the last, up to 16,384, so an export
/// of every row costs a few queries.
pub(super) async fn clients_by_name(
    conn: &mut PgConnection,
    wanted: u64,
    mut f: impl FnMut(i64, &crate::software::ListOwner) -> bool,
) -> Result<(), StoreError> {
    const MAX_CHUNK: i64 = 16_384;
    let mut after: Option<(String, String)> = None;
    let mut chunk = i64::try_from(wanted)
        .unwrap_or(MAX_CHUNK)
        .clamp(256, MAX_CHUNK);
    loop {
        let rows = sqlx::query(
            r#"SELECT id, name, uuid, site_code FROM clients
               WHERE $1::text IS NULL
                  OR (name COLLATE "C", site_code COLLATE "C") > ($1::text COLLATE "C", $2::text COLLATE "C")
               ORDER BY name COLLATE "C", site_code COLLATE "C" LIMIT $3"#,
        )
        .bind(after.as_ref().map(|a| a.0.as_str()))
        .bind(after.as_ref().map(|a| a.1.as_str()))
        .bind(chunk)
        .fetch_all(&mut *conn)
        .await?;
        for r in &rows {
            let owner = crate::software::ListOwner {
                name: name_col(r, 1)?,
                id: uuid_col(r, 2)?,
                site: site_col(r, 3)?,
            };
            if !f(r.try_get(0)?, &owner) {
                return Ok(());
            }
        }
        match rows.last() {
            Some(last) if rows.len() as i64 == chunk => {
                after = Some((last.try_get(1)?, last.try_get(3)?));
                chunk = (chunk * 2).min(MAX_CHUNK);
            }
            _ => return Ok(()),
        }
    }
}

/// The clients with these internal rows.
pub(super) async fn list_owners(
    conn: &mut PgConnection,
    rows: &[i64],
) -> Result<FastMap<i64, crate::software::ListOwner>, StoreError> {
    let found = sqlx::query("SELECT id, name, uuid, site_code FROM clients WHERE id = ANY($1)")
        .bind(rows)
        .fetch_all(&mut *conn)
        .await?;
    let mut out = FastMap::default();
    for r in &found {
        out.insert(
            r.try_get::<i64, _>(0)?,
            crate::software::ListOwner {
                name: name_col(r, 1)?,
                id: uuid_col(r, 2)?,
                site: site_col(r, 3)?,
            },
        );
    }
    Ok(out)
}
