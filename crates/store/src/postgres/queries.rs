//! The PostgreSQL executor of the store's statements apart from the hierarchy's
//! (`hierarchy`): a connection runs the reads and small writes written once for both backends
//! in `crate::exec` (its `Exec` implementation binds their parameters), and the functions here
//! the statements only this backend has (batched item interning, the report's transaction),
//! while what the rows mean is decided in `crate::rows`. Each function
//! takes the connection (or transaction) it runs on; those that write a report run inside the
//! report's transaction, after the client's lock (`lock_client`) was taken.
//!
//! Statements are runtime queries with binds: sqlx prepares each on first use per connection
//! and keeps it prepared, so the hot paths (check-in, report) pay no parsing.

use std::sync::Arc;

use invsync_proto::wire::ReportAck;
use invsync_proto::{Class, ClientName, Digest, SiteCode, Timestamp};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::cache::{CachedItem, FastMap, ItemCache};
use crate::codec::{PreparedItem, class_code, class_from_code};
use crate::error::StoreError;
use crate::exec::{self, Arg, Exec};
pub(super) use crate::exec::{client_row, load_items, queue_pending, snapshot_row};
use crate::plan::{self, Change, Current, Outcome, ReportInput, Resolver};
use crate::prefetch::{self, Lookups, Prefetched};
use crate::rows::{self, Cols, WriteSet};
pub(super) use crate::rows::{SnapshotRow, Stamp, Written, corrupt};
use crate::sql;

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

/// Binds `args` to a statement in order, each as PostgreSQL stores it (`Arg`'s `Encode`, in
/// `outbox.rs`).
fn bind<'q>(mut q: PgQuery<'q>, args: &[Arg<'q>]) -> PgQuery<'q> {
    for a in args {
        q = q.bind(*a);
    }
    q
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

impl Exec for PgConnection {
    type Row<'r> = PgRow;

    sql::dialect_statements!(in1: "= ANY($1)", in2: "= ANY($2)", full: "full_report");
    const STRPOS: &'static str = "strpos";
    const COLLATE: &'static str = r#" COLLATE "C""#;

    async fn all<T>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
        f: impl FnMut(&PgRow) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let found = bind(sqlx::query(sql), args).fetch_all(self).await?;
        found.iter().map(f).collect()
    }

    async fn first<T>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
        f: impl FnOnce(&PgRow) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let found = bind(sqlx::query(sql), args).fetch_optional(self).await?;
        found.as_ref().map(f).transpose()
    }

    async fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        let done = bind(sqlx::query(sql), args).execute(self).await?;
        Ok(done.rows_affected())
    }
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

// ---------------------------------------------------------------------------------------------
// Snapshots and items

/// Plans a report against `current`: the lookups first (async, batched; see
/// `crate::prefetch`), then `plan::plan` with no database access.
pub(super) async fn plan_report(
    conn: &mut PgConnection,
    cache: &ItemCache,
    input: &ReportInput,
    current: Option<&Current>,
) -> Result<Outcome, StoreError> {
    // A stale report needs no item lookups (`plan::plan` checks it again, for nothing).
    if let Some(reason) = plan::stale(input, current) {
        return Ok(Outcome::Resync(reason));
    }
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
    let first = row.is_none();
    let (version, full_at) =
        exec::write_snapshot(&mut *conn, client, input, first, &set, stamp).await?;
    let class = cls(input.class);
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
        full_at,
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
    let client = exec::own_client_row(&mut *conn, site, client_id)
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
    let completed = exec::complete_answers(&mut *conn, client, input, now).await?;
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
               WHERE deleted_at IS NULL AND ($1::text IS NULL
                  OR (name COLLATE "C", site_code COLLATE "C") > ($1::text COLLATE "C", $2::text COLLATE "C"))
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
    let owners = found
        .iter()
        .map(|r| Ok((r.int(0)?, rows::list_owner(r, 1)?)));
    owners.collect()
}
