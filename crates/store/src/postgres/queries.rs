//! The PostgreSQL executor of the store's statements apart from the hierarchy's
//! (`hierarchy`): it fetches rows and executes writes, while what the rows mean is decided in
//! `crate::rows` and the statements both dialects share are in `crate::sql`. Each function
//! takes the connection (or transaction) it runs on; those that write a report run inside the
//! report's transaction, after the client's lock (`lock_client`) was taken.
//!
//! Statements are runtime queries with binds: sqlx prepares each on first use per connection
//! and keeps it prepared, so the hot paths (check-in, report) pay no parsing.

use std::collections::BTreeMap;
use std::sync::Arc;

use invsync_proto::wire::{
    ClassState, ClientPage, ClientQuery, ClientSummary, ClientView, InstructionKind, Queued,
    ReportAck, RequestPage, RequestQuery, RequestView,
};
use invsync_proto::{Class, ClientName, Digest, Items, SiteCode, Timestamp};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::cache::{CachedItem, FastMap, ItemCache};
use crate::codec::{PreparedItem, class_code, class_from_code, decode_attrs};
use crate::error::StoreError;
use crate::last_seen::LastSeen;
use crate::plan::{self, Change, Current, Outcome, ReportInput, Resolver};
use crate::prefetch::{self, Lookups, Prefetched};
use crate::rows::{self, ClientKey, Cols, OpenRequest, WriteSet};
pub(super) use crate::rows::{SnapshotRow, Stamp, Written, corrupt};
use crate::sql;
use crate::{ClientAuth, Enrolled, Enrollment, HistoryEntry, HistoryQuery, SiteMeta};

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

impl Cols for PgRow {
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        Ok(self.try_get(i)?)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(i)?)
    }
    fn text(&self, i: usize) -> Result<&str, StoreError> {
        Ok(self.try_get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<&str>, StoreError> {
        Ok(self.try_get(i)?)
    }
    fn blob(&self, i: usize) -> Result<&[u8], StoreError> {
        Ok(self.try_get(i)?)
    }
    fn opt_blob(&self, i: usize) -> Result<Option<&[u8]>, StoreError> {
        Ok(self.try_get(i)?)
    }
    fn flag(&self, i: usize) -> Result<bool, StoreError> {
        Ok(self.try_get(i)?)
    }
    fn class(&self, i: usize) -> Result<Class, StoreError> {
        class_from_code(i64::from(self.try_get::<i16, _>(i)?))
    }
    fn uuid(&self, i: usize) -> Result<Uuid, StoreError> {
        Ok(self.try_get::<PgUuid, _>(i)?.0)
    }
}

/// Decodes every row with `f`.
fn each<T>(
    rows: &[PgRow],
    f: impl FnMut(&PgRow) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    rows.iter().map(f).collect()
}

pub(super) fn uuid_col(row: &PgRow, i: usize) -> Result<Uuid, StoreError> {
    row.uuid(i)
}

/// The stored code of a class (`smallint`).
pub(super) fn cls(c: Class) -> i16 {
    class_code(c) as i16
}

pub(super) fn name_col(row: &PgRow, i: usize) -> Result<ClientName, StoreError> {
    row.name(i)
}

pub(super) fn site_col(row: &PgRow, i: usize) -> Result<SiteCode, StoreError> {
    row.site(i)
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
    let pairs: Vec<(String, String)> = sqlx::query_as(sql::SITE_META).fetch_all(conn).await?;
    rows::site_meta(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// The internal row id of a client by its client id, whichever site owns it.
pub(super) async fn client_row(
    conn: &mut PgConnection,
    client_id: Uuid,
) -> Result<Option<i64>, StoreError> {
    Ok(sqlx::query_scalar(sql::CLIENT_ROW)
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
    Ok(sqlx::query_scalar(sql::CLIENT_ROW_BY_NAME)
        .bind(site.as_str())
        .bind(name.as_str())
        .fetch_optional(conn)
        .await?)
}

pub(super) async fn enroll(
    conn: &mut PgConnection,
    site: &SiteCode,
    e: &Enrollment,
) -> Result<Enrolled, StoreError> {
    // Two enrollments of one free name at once: the insert of the second finds the first's row
    // (ON CONFLICT waits for it to commit) and the loop then treats it as the holder.
    for _ in 0..3 {
        let holder: Option<(i64, PgUuid, String)> = sqlx::query_as(sql::NAME_HOLDER)
            .bind(site.as_str())
            .bind(e.name.as_str())
            .fetch_optional(&mut *conn)
            .await?;
        match holder {
            None => {
                let client_id = Uuid::new_v4();
                let inserted: Option<i64> = sqlx::query_scalar(sql::ENROLL)
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
                let enrolled = rows::reenrollment(e, holder_id, machine_id)?;
                sqlx::query(sql::SET_KEY)
                    .bind(e.key_hash.0.as_slice())
                    .bind(row)
                    .execute(&mut *conn)
                    .await?;
                return Ok(enrolled);
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
        name: row.name(0)?,
        key_hash: row.digest(1)?,
    }))
}

/// Replaces an own client's key hash with 32 zero bytes, which no key hashes to.
pub(super) async fn revoke(
    conn: &mut PgConnection,
    site: &SiteCode,
    name: &ClientName,
) -> Result<bool, StoreError> {
    let n = sqlx::query(sql::REVOKE)
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

pub(super) async fn open_requests(
    conn: &mut PgConnection,
    client: i64,
) -> Result<Vec<OpenRequest>, StoreError> {
    let found = sqlx::query(sql::OPEN_REQUESTS)
        .bind(client)
        .fetch_all(conn)
        .await?;
    each(&found, rows::open_request)
}

pub(super) async fn class_states(
    conn: &mut PgConnection,
    client: i64,
) -> Result<BTreeMap<Class, ClassState>, StoreError> {
    let found = sqlx::query(sql::CLASS_STATES)
        .bind(client)
        .fetch_all(conn)
        .await?;
    Ok(each(&found, rows::class_state)?.into_iter().collect())
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
    kind: &InstructionKind,
    now: Timestamp,
) -> Result<Queued, StoreError> {
    let client = client_row_by_name(&mut *conn, site, name).await?;
    let client = client.ok_or_else(|| rows::unknown_client(name))?;
    let (kind, arg) = rows::kind_and_arg(kind);
    let (id, requested_at, created) = queue_pending(conn, client, kind, arg, None, now).await?;
    Ok(rows::queued(name, id, requested_at, created))
}

/// Creates a request unless an identical one is pending ([`sql::QUEUE_REQUEST`]); the id,
/// request time and whether it was created.
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
        let created: Option<i64> = sqlx::query_scalar(sql::QUEUE_REQUEST)
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
        let pending: Option<(i64, i64)> = sqlx::query_as(sql::PENDING_REQUEST)
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

pub(super) async fn request_state(
    conn: &mut PgConnection,
    id: i64,
) -> Result<Option<RequestView>, StoreError> {
    let row = sqlx::query(sql::REQUEST_STATE)
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(rows::request_view).transpose()
}

// ---------------------------------------------------------------------------------------------
// Snapshots and items

pub(super) async fn snapshot_row(
    conn: &mut PgConnection,
    client: i64,
    class: Class,
) -> Result<Option<SnapshotRow>, StoreError> {
    let row = sqlx::query(sql::SNAPSHOT_ROW)
        .bind(client)
        .bind(cls(class))
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(SnapshotRow::of).transpose()
}

/// Plans a report against `current`: the lookups first (async, batched; see
/// `crate::prefetch`), then `plan::plan` with no database access.
pub(super) async fn plan_report(
    conn: &mut PgConnection,
    cache: &ItemCache,
    input: &ReportInput,
    current: Option<&Current>,
) -> Result<Outcome, StoreError> {
    let mut pre = Prefetched::default();
    let lookups = prefetch::lookups(input, current);
    let items = match &lookups {
        Lookups::None => &[][..],
        Lookups::Full(items) | Lookups::Delta(items, _) => items,
    };
    let missing = pre.ids_from_cache(cache, items);
    if !missing.is_empty() {
        let rows = sqlx::query_as("SELECT id, digest FROM items WHERE digest = ANY($1)")
            .bind(&missing)
            .fetch_all(&mut *conn)
            .await?;
        pre.learn_ids(cache, items, rows)?;
    }
    let ids = match lookups {
        Lookups::None => Vec::new(),
        Lookups::Full(_) => pre.gone(current),
        Lookups::Delta(_, ids) => ids.to_vec(),
    };
    let missing = pre.items_from_cache(cache, &ids);
    if !missing.is_empty() {
        let rows = sqlx::query_as("SELECT id, key, attrs FROM items WHERE id = ANY($1)")
            .bind(&missing)
            .fetch_all(&mut *conn)
            .await?;
        pre.learn_items(cache, rows)?;
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

/// Writes an accepted change: interns its new items, writes the snapshot and the history rows,
/// each in one statement. The one path of both own reports and forwarded changes.
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
    let set = WriteSet::new(input, row, &change, &new_ids, stamp)?;
    let class = cls(input.class);
    let hash = input.hash.0.as_slice();
    let (version, full_at): (i64, i64) = match row {
        None => {
            sqlx::query_as(sql::INSERT_SNAPSHOT)
                .bind(client)
                .bind(class)
                .bind(set.version)
                .bind(hash)
                .bind(stamp.full_at.0)
                .bind(stamp.at.0)
                .bind(&set.recent)
                .bind(&set.blob)
                .fetch_one(&mut *conn)
                .await?
        }
        Some(_) => {
            sqlx::query_as(sql::UPDATE_SNAPSHOT)
                .bind(set.version)
                .bind(hash)
                .bind(set.full)
                .bind(stamp.full_at.0)
                .bind(stamp.at.0)
                .bind(&set.recent)
                .bind(&set.blob)
                .bind(client)
                .bind(class)
                .fetch_one(&mut *conn)
                .await?
        }
    };
    if !set.history.is_empty() {
        let (old, new): (Vec<Option<i64>>, Vec<Option<i64>>) = set.history.iter().copied().unzip();
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
        .bind(set.full)
        .bind(&old)
        .bind(&new)
        .execute(&mut *conn)
        .await?;
    }
    if let Some(changes) = &mut inserted.software
        && let Some(sw) = set.software(input, client, row, version)?
    {
        changes.push(sw);
    }
    Ok(Written {
        version,
        full_at: Timestamp(full_at),
        body_ids: set.body_ids,
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
        .ok_or_else(|| rows::unknown_id(client_id))?;
    let row = snapshot_row(&mut *conn, client, input.class).await?;
    if let Some(row) = &row
        && row.has_report(input.report_id)
    {
        return Ok((client, row.duplicate()));
    }
    let current = row.as_ref().map(SnapshotRow::current).transpose()?;
    let change = match plan_report(&mut *conn, cache, input, current.as_ref()).await? {
        Outcome::Resync(reason) => return Ok((client, ReportAck::ResyncRequired { reason })),
        Outcome::Write(change) => change,
    };
    let stamp = Stamp::report(input, now);
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
        let found = sqlx::query(&format!(
            "UPDATE requests SET completed_at = $1, picked_up_at = coalesce(picked_up_at, $1)
             WHERE id = ANY($2) AND client_id = $3 AND kind = 'resync' AND arg = $4
               AND completed_at IS NULL
             RETURNING {}",
            sql::REQUEST_COLS
        ))
        .bind(now.0)
        .bind(&input.answers)
        .bind(client)
        .bind(input.class.as_str())
        .fetch_all(&mut *conn)
        .await?;
        completed = each(&found, rows::request_view)?;
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
    let found = sqlx::query(sql::CLIENTS).fetch_all(conn).await?;
    let clients = each(&found, rows::client_summary)?;
    Ok(rows::with_last_seen(last_seen, clients))
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
    let found = sqlx::query(&sql::requests_select(&filter, "$3", "$4"))
        .bind(&state)
        .bind(&class)
        .bind(i64::from(q.limit))
        .bind(q.offset as i64)
        .fetch_all(&mut *conn)
        .await?;
    Ok(RequestPage {
        total: total as u64,
        offset: q.offset,
        requests: each(&found, rows::client_request)?,
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
    let (join, order) = sql::page_join_and_order(q, r#" COLLATE "C""#);
    let ids: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT c.id FROM clients c {join} WHERE {filter} ORDER BY {order} LIMIT $3 OFFSET $4"
    ))
    .bind(&search)
    .bind(&site)
    .bind(i64::from(q.limit))
    .bind(q.offset as i64)
    .fetch_all(&mut *conn)
    .await?;
    let found = sqlx::query(concat!(sql::client_summary!(), "WHERE c.id = ANY($1)"))
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
    let mut by_id: FastMap<i64, ClientSummary> =
        each(&found, rows::client_summary)?.into_iter().collect();
    // In the page's order; a row is never deleted inside the caller's transaction.
    let page = ids.iter().filter_map(|id| Some((*id, by_id.remove(id)?)));
    Ok(ClientPage {
        total: total as u64,
        offset: q.offset,
        clients: rows::with_last_seen(last_seen, page),
    })
}

/// The internal row id of the client `key` names.
async fn row_of(
    conn: &mut PgConnection,
    site: &SiteCode,
    key: &ClientKey,
) -> Result<Option<i64>, StoreError> {
    match key {
        ClientKey::Name(name) => client_row_by_name(conn, site, name).await,
        ClientKey::Id(id) => client_row(conn, *id).await,
    }
}

pub(super) async fn client_view(
    conn: &mut PgConnection,
    site: &SiteCode,
    key: &ClientKey,
    last_seen: &LastSeen,
) -> Result<Option<ClientView>, StoreError> {
    match row_of(&mut *conn, site, key).await? {
        Some(client) => client_view_of(conn, client, last_seen).await,
        None => Ok(None),
    }
}

async fn client_view_of(
    conn: &mut PgConnection,
    client: i64,
    last_seen: &LastSeen,
) -> Result<Option<ClientView>, StoreError> {
    let head = sqlx::query(sql::CLIENT_HEAD)
        .bind(client)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(mut view) = head.as_ref().map(rows::client_head).transpose()? else {
        return Ok(None);
    };
    view.last_seen = last_seen.overlay(client, view.last_seen);
    let snaps = sqlx::query(sql::CLIENT_SNAPSHOTS)
        .bind(client)
        .fetch_all(&mut *conn)
        .await?;
    for (class, ids, mut snapshot) in each(&snaps, rows::snapshot_view)? {
        snapshot.items = load_items(&mut *conn, &ids).await?;
        rows::place_snapshot(&mut view, class, snapshot);
    }
    let mut listed = Vec::new();
    for kind in ["resync", "event"] {
        listed.push(
            sqlx::query(sql::CLIENT_REQUESTS)
                .bind(client)
                .bind(kind)
                .bind(rows::VIEW_LIMIT)
                .fetch_all(&mut *conn)
                .await?,
        );
    }
    view.requests = each(&listed[0], rows::request_view)?;
    view.events = each(&listed[1], rows::event_view)?;
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
    key: &ClientKey,
    query: &HistoryQuery,
) -> Result<Option<Vec<HistoryEntry>>, StoreError> {
    match row_of(&mut *conn, site, key).await? {
        Some(client) => history_of(conn, client, query).await.map(Some),
        None => Ok(None),
    }
}

async fn history_of(
    conn: &mut PgConnection,
    client: i64,
    query: &HistoryQuery,
) -> Result<Vec<HistoryEntry>, StoreError> {
    let found = sqlx::query(
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
    .bind(rows::history_limit(query))
    .bind(query.class.map(cls))
    .bind(query.since.map(|t| t.0))
    .fetch_all(conn)
    .await?;
    each(&found, rows::history_entry)
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
    let mut found =
        sqlx::query("SELECT id, attrs FROM items WHERE $1::bigint[] IS NULL OR id = ANY($1)")
            .bind(ids)
            .fetch(&mut *conn);
    while let Some(r) = found.try_next().await? {
        f(r.int(0)?, r.blob(1)?)?;
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
    let mut found = sqlx::query(sql::SOFTWARE_LISTS).fetch(&mut *conn);
    while let Some(r) = found.try_next().await? {
        f(r.int(0)?, r.int(1)?, r.blob(2)?)?;
    }
    Ok(())
}

/// The rows of the clients owned by `site`.
pub(super) async fn site_rows(
    conn: &mut PgConnection,
    site: &SiteCode,
) -> Result<roaring::RoaringBitmap, StoreError> {
    let found: Vec<i64> = sqlx::query_scalar(sql::SITE_ROWS)
        .bind(site.as_str())
        .fetch_all(&mut *conn)
        .await?;
    found.into_iter().map(rows::index_row).collect()
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
    ids: &[i64],
) -> Result<FastMap<i64, crate::software::ListOwner>, StoreError> {
    let found = sqlx::query("SELECT id, name, uuid, site_code FROM clients WHERE id = ANY($1)")
        .bind(ids)
        .fetch_all(&mut *conn)
        .await?;
    each(&found, |r| Ok((r.int(0)?, rows::list_owner(r, 1)?))).map(|o| o.into_iter().collect())
}
