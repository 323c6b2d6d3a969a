//! The SQLite executor of the store's statements: [`Lite`] runs the reads and small writes
//! written once for both backends in `crate::exec`, and the functions here the statements
//! only this backend has (item interning by digest prefix, the history rows, the software
//! pages), while what the rows mean is decided in `crate::rows`. Functions taking a plain
//! `&Connection` run on a read connection or inside the writer's transaction; those that write
//! are only ever called by writer jobs.

use std::rc::Rc;
use std::sync::Arc;

use invsync_proto::inventory::item_digest;
use invsync_proto::wire::{PackagePage, PackageQuery, ReportAck, SoftwarePage, SoftwareQuery};
use invsync_proto::{Class, ClientName, Items, SiteCode, Timestamp};
use rusqlite::types::{Null, ToSqlOutput, Value};
use rusqlite::{Connection, OptionalExtension, Params, Row, params};
use rusqlite::{ToSql, params_from_iter};
use uuid::Uuid;

use super::writer::Batch;
use crate::cache::{CachedItem, FastMap};
use crate::codec::{PreparedItem, class_code, class_from_code, decode_attrs, digest_prefix};
use crate::error::StoreError;
use crate::exec::{self, Arg, Exec};
use crate::plan::{self, Change, ItemSource, Outcome, Plan, ReportInput, Resolver};
use crate::rows::{self, Cols, WriteSet};
pub(super) use crate::rows::{SnapshotRow, Stamp, Written, corrupt};
use crate::sql;

impl Cols for Row<'_> {
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        Ok(self.get(i)?)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.get(i)?)
    }
    fn text(&self, i: usize) -> Result<&str, StoreError> {
        Ok(self.get_ref(i)?.as_str()?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<&str>, StoreError> {
        Ok(self.get_ref(i)?.as_str_or_null()?)
    }
    fn blob(&self, i: usize) -> Result<&[u8], StoreError> {
        Ok(self.get_ref(i)?.as_blob()?)
    }
    fn opt_blob(&self, i: usize) -> Result<Option<&[u8]>, StoreError> {
        Ok(self.get_ref(i)?.as_blob_or_null()?)
    }
    fn flag(&self, i: usize) -> Result<bool, StoreError> {
        Ok(self.get(i)?)
    }
    fn class(&self, i: usize) -> Result<Class, StoreError> {
        class_from_code(self.get(i)?)
    }
    fn uuid(&self, i: usize) -> Result<Uuid, StoreError> {
        Uuid::from_slice(self.blob(i)?).map_err(|_| corrupt("client id"))
    }
}

/// The SQLite executor of `crate::exec`: each statement runs at once on the connection, so
/// its futures are ready when first polled ([`ready`]).
pub(crate) struct Lite<'c>(pub &'c Connection);

/// Drives a future of [`Lite`] (or of a function of `crate::exec` over it), which never waits.
pub(crate) fn ready<T>(f: impl Future<Output = T>) -> T {
    futures_util::FutureExt::now_or_never(f).expect("SQLite statements never wait")
}

impl ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Arg::Int(v) => (*v).into(),
            Arg::OptInt(v) => v.map_or(ToSqlOutput::from(Null), ToSqlOutput::from),
            Arg::Flag(v) => (*v).into(),
            Arg::Text(v) => (*v).into(),
            Arg::OptText(v) => v.map_or(ToSqlOutput::from(Null), ToSqlOutput::from),
            Arg::Blob(v) => (*v).into(),
            Arg::OptBlob(v) => v.map_or(ToSqlOutput::from(Null), ToSqlOutput::from),
            Arg::Uuid(v) => v.as_bytes().as_slice().into(),
            Arg::Class(v) => class_code(*v).into(),
            Arg::OptClass(v) => v.map_or(ToSqlOutput::from(Null), |c| class_code(c).into()),
            // As `rusqlite::vtab::array::Array` binds itself, under the type name `rarray` reads.
            Arg::Ids(ids) => ToSqlOutput::from_rc(id_array(ids.iter().copied()), c"rarray"),
        })
    }
}

impl Exec for Lite<'_> {
    type Row<'r> = Row<'r>;

    sql::dialect_statements!(in1: "IN rarray($1)", in2: "IN rarray($2)", full: "full");
    const STRPOS: &'static str = "instr";
    const COLLATE: &'static str = "";

    async fn all<T>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
        f: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        all(self.0, sql, params_from_iter(args), f)
    }

    async fn first<T>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
        f: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        first(self.0, sql, params_from_iter(args), f)
    }

    async fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        let n = self
            .0
            .prepare_cached(sql)?
            .execute(params_from_iter(args))?;
        Ok(n as u64)
    }
}

/// Runs a cached statement and decodes every row with `f`.
fn all<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    mut f: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut st = conn.prepare_cached(sql)?;
    let mut rows = st.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(f(row)?);
    }
    Ok(out)
}

/// Runs a cached statement and decodes its first row with `f`, if there is one.
fn first<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    f: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let mut st = conn.prepare_cached(sql)?;
    let mut rows = st.query(params)?;
    rows.next()?.map(f).transpose()
}

pub(super) fn id_array(ids: impl IntoIterator<Item = i64>) -> Rc<Vec<Value>> {
    Rc::new(ids.into_iter().map(Value::Integer).collect())
}

// ---------------------------------------------------------------------------------------------
// Site and clients

/// The internal row id of a client by its client id, whichever site owns it.
pub(super) fn client_row(conn: &Connection, client_id: Uuid) -> Result<Option<i64>, StoreError> {
    ready(exec::client_row(&mut Lite(conn), client_id))
}

pub(super) fn snapshot_row(
    conn: &Connection,
    client: i64,
    class: Class,
) -> Result<Option<SnapshotRow>, StoreError> {
    ready(exec::snapshot_row(&mut Lite(conn), client, class))
}

/// The items with these ids, keyed by item key.
pub(super) fn load_items(conn: &Connection, ids: &[i64]) -> Result<Items, StoreError> {
    ready(exec::load_items(&mut Lite(conn), ids))
}

// ---------------------------------------------------------------------------------------------
// Check-in and requests

// ---------------------------------------------------------------------------------------------
// Snapshots and items

/// Item lookups on one connection, in one statement per batch of items.
pub(super) struct SqlItems<'c>(pub &'c Connection);

impl ItemSource for SqlItems<'_> {
    fn find(&self, items: &[&PreparedItem]) -> Result<Vec<Option<i64>>, StoreError> {
        let mut wanted: FastMap<i64, Vec<usize>> = FastMap::default();
        for (i, item) in items.iter().enumerate() {
            wanted
                .entry(digest_prefix(&item.digest))
                .or_default()
                .push(i);
        }
        let mut out = vec![None; items.len()];
        let sql = "SELECT id, h, key, attrs FROM items WHERE h IN rarray(?1)";
        all(self.0, sql, [id_array(wanted.keys().copied())], |row| {
            let (h, key, attrs) = (row.int(1)?, row.text(2)?, row.blob(3)?);
            // Comparing the content, not just the 64-bit prefix, means a prefix collision can
            // never make two different items one.
            for &i in wanted.get(&h).into_iter().flatten() {
                if items[i].key == key && items[i].attrs == attrs {
                    out[i] = Some(row.int(0)?);
                }
            }
            Ok(())
        })?;
        Ok(out)
    }

    fn load(&self, ids: &[i64]) -> Result<Vec<CachedItem>, StoreError> {
        let sql = "SELECT id, key, attrs FROM items WHERE id IN rarray(?1)";
        let found: FastMap<i64, CachedItem> =
            all(self.0, sql, [id_array(ids.iter().copied())], |row| {
                let key = row.text(1)?;
                let attrs = decode_attrs(row.blob(2)?)?;
                let item = CachedItem {
                    key: Arc::from(key),
                    digest: item_digest(key, &attrs),
                };
                Ok((row.int(0)?, item))
            })?
            .into_iter()
            .collect();
        ids.iter()
            .map(|id| {
                found
                    .get(id)
                    .cloned()
                    .ok_or_else(|| corrupt("item reference"))
            })
            .collect()
    }
}

/// Offers `f` the item id of every item of every current snapshot of these clients of the
/// site (by name), with repeats.
pub(super) fn snapshot_item_ids(
    conn: &Connection,
    site: &SiteCode,
    clients: &[ClientName],
    mut f: impl FnMut(i64),
) -> Result<(), StoreError> {
    let sql = "SELECT s.items FROM clients c JOIN snapshots s ON s.client_id = c.id
               WHERE c.site_code = ?1 AND c.name IN rarray(?2)";
    let names = Rc::new(
        clients
            .iter()
            .map(|n| Value::Text(n.as_str().to_string()))
            .collect::<Vec<_>>(),
    );
    all(conn, sql, params![site.as_str(), names], |row| {
        crate::codec::for_each_id(row.blob(0)?, &mut f)
    })?;
    Ok(())
}

/// The id of a stored item equal to `item`, inserting it if there is none.
pub(super) fn intern_item(
    conn: &Connection,
    batch: &mut Batch<'_>,
    item: &PreparedItem,
) -> Result<i64, StoreError> {
    let h = digest_prefix(&item.digest);
    let same = all(
        conn,
        "SELECT id, key, attrs FROM items WHERE h = ?1",
        [h],
        |r| {
            Ok(
                (r.text(1)? == item.key && r.blob(2)? == item.attrs.as_slice())
                    .then_some(r.int(0)?),
            )
        },
    )?;
    if let Some(id) = same.into_iter().flatten().next() {
        return Ok(id);
    }
    conn.prepare_cached("INSERT INTO items (h, key, attrs) VALUES (?1, ?2, ?3)")?
        .execute(params![h, item.key, item.attrs])?;
    let id = conn.last_insert_rowid();
    batch.inserted.push((
        id,
        CachedItem {
            key: Arc::from(item.key.as_str()),
            digest: item.digest,
        },
    ));
    Ok(id)
}

/// Writes an accepted change: interns its new items, writes the snapshot and the history rows.
/// The one path by which both reports of this site's clients and changes forwarded by children
/// reach the database.
pub(super) fn write_change(
    conn: &Connection,
    batch: &mut Batch<'_>,
    client: i64,
    input: &ReportInput,
    row: Option<&SnapshotRow>,
    change: Change,
    stamp: &Stamp,
) -> Result<Written, StoreError> {
    let mut new_ids = Vec::with_capacity(change.new_items.len());
    for item in &change.new_items {
        new_ids.push(intern_item(conn, batch, item)?);
    }
    let set = WriteSet::new(input, row, &change, &new_ids, stamp)?;
    let (version, full_at) = ready(exec::write_snapshot(
        &mut Lite(conn),
        client,
        input,
        row.is_none(),
        &set,
        stamp,
    ))?;
    let class = class_code(input.class);
    if !set.history.is_empty() {
        let mut st = conn.prepare_cached(
            "INSERT INTO history (client_id, class, at, old_item, new_item, full)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for (old, new) in &set.history {
            st.execute(params![client, class, stamp.at.0, old, new, set.full])?;
        }
    }
    if batch.software.is_some()
        && let Some(sw) = set.software(input, client, row, version)?
    {
        software_changed(conn, batch, sw)?;
    }
    Ok(Written {
        version,
        full_at,
        body_ids: set.body_ids,
    })
}

/// Records a change of a client's software snapshot for the software index, describing the
/// items it adds that the index does not know (read back in this transaction, which is where
/// items interned just now are visible).
pub(super) fn software_changed(
    conn: &Connection,
    batch: &mut Batch<'_>,
    mut change: crate::software::SwChange,
) -> Result<(), StoreError> {
    let Some(changes) = &mut batch.software else {
        return Ok(());
    };
    for id in batch.shared.software.to_describe(&change.added) {
        let attrs: Vec<u8> = conn
            .prepare_cached("SELECT attrs FROM items WHERE id = ?1")?
            .query_row([id], |r| r.get(0))?;
        change
            .described
            .push((id, crate::software::Package::from_stored(&attrs)?));
    }
    changes.push(change);
    Ok(())
}

/// Applies a planned report of this site's own client inside the writer's transaction: the
/// authoritative duplicate and base checks, then the item, snapshot, history and request writes,
/// and the outbox entry when this site forwards to a parent.
pub(super) fn apply_report(
    conn: &Connection,
    batch: &mut Batch<'_>,
    client: i64,
    input: &ReportInput,
    planned: Option<Plan>,
    now: Timestamp,
) -> Result<ReportAck, StoreError> {
    let row = snapshot_row(conn, client, input.class)?;
    if let Some(row) = &row
        && row.has_report(input.report_id)
    {
        return Ok(row.duplicate());
    }
    // No snapshot: a first report, or a client deleted since the report was planned (its
    // snapshots went with it), which must not get one back. Only this rare case pays the read.
    if row.is_none() {
        let deleted: Option<bool> = conn
            .prepare_cached(crate::lifecycle::sql::IS_DELETED)?
            .query_row([client], |r| r.get(0))
            .optional()?;
        if deleted != Some(false) {
            return Err(StoreError::UnknownClient {
                name: format!("client row {client}"),
            });
        }
    }
    let change = match replan_if_moved(conn, batch, input, row.as_ref(), planned)? {
        Outcome::Resync(reason) => return Ok(ReportAck::ResyncRequired { reason }),
        Outcome::Write(change) => change,
    };
    let stamp = Stamp::report(input, now);
    let written = write_change(conn, batch, client, input, row.as_ref(), change, &stamp)?;
    let completed = ready(exec::complete_answers(&mut Lite(conn), client, input, now))?;
    if super::outbox::forwarding(conn)? {
        super::outbox::enqueue(
            conn,
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
        )?;
    }
    Ok(ReportAck::Accepted {
        version: written.version,
        hash: input.hash,
    })
}

/// The plan to write: `planned` when the snapshot is still the one it was made against, else a
/// new plan against the snapshot as it is now (another change for this client and class was
/// stored after the plan was made, or no plan was made beforehand).
pub(super) fn replan_if_moved(
    conn: &Connection,
    batch: &Batch<'_>,
    input: &ReportInput,
    row: Option<&SnapshotRow>,
    planned: Option<Plan>,
) -> Result<Outcome, StoreError> {
    if let Some(planned) = planned
        && row.map(|r| (r.version, r.hash)) == planned.base
    {
        return Ok(planned.outcome);
    }
    let current = row.map(SnapshotRow::current).transpose()?;
    let resolver = Resolver {
        cache: &batch.shared.cache,
        db: &SqlItems(conn),
        fill_cache: false,
    };
    Ok(plan::plan(input, current.as_ref(), &resolver)?.outcome)
}

// ---------------------------------------------------------------------------------------------
// Views

// ---------------------------------------------------------------------------------------------
// Software across clients (the index and the pages are in `crate::software`)

/// Offers the stored items (those with these ids, or all for `None`) to `f`, for the software
/// index.
pub(super) fn items_for_index(
    conn: &Connection,
    ids: Option<&[i64]>,
    mut f: impl FnMut(i64, &[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut offer = |r: &Row<'_>| f(r.int(0)?, r.blob(1)?);
    match ids {
        None => all(conn, "SELECT id, attrs FROM items", [], offer)?,
        Some(ids) => {
            let sql = "SELECT id, attrs FROM items WHERE id IN rarray(?1)";
            all(conn, sql, [id_array(ids.iter().copied())], &mut offer)?
        }
    };
    Ok(())
}

/// Offers every client's software snapshot (row, version, item list) to `f`, by client row:
/// the index then appends each package's holders in order, which is much cheaper than
/// inserting them among others.
pub(super) fn software_lists(
    conn: &Connection,
    mut f: impl FnMut(i64, i64, &[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    all(conn, sql::SOFTWARE_LISTS, [], |r| {
        f(r.int(0)?, r.int(1)?, r.blob(2)?)
    })?;
    Ok(())
}

pub(super) fn software(
    conn: &Connection,
    index: &crate::software::SoftwareIndex,
    q: &SoftwareQuery,
) -> Result<SoftwarePage, StoreError> {
    // One read transaction: the site's clients and the holders' names belong together.
    let tx = conn.unchecked_transaction()?;
    let site = q
        .site
        .as_ref()
        .map(|s| ready(exec::site_rows(&mut Lite(&tx), s)))
        .transpose()?;
    let holders = index.read(|ix| crate::software::Holders::find(ix, q, site.as_ref()))?;
    if let Some(direct) = holders.rows(crate::software::DIRECT_HOLDERS) {
        let mut owners = FastMap::default();
        let sql = "SELECT name, uuid, site_code FROM clients WHERE id = ?1";
        for row in direct {
            // A client removed since the index saw it no longer holds anything.
            if let Some(owner) = first(&tx, sql, [row], |r| rows::list_owner(r, 0))? {
                owners.insert(row, owner);
            }
        }
        return Ok(holders.page_from(&owners));
    }
    let mut collect = holders.collector();
    let mut st = tx
        .prepare_cached("SELECT id, name, uuid, site_code FROM clients WHERE deleted_at IS NULL ORDER BY name, site_code")?;
    let mut found = st.query([])?;
    while let Some(r) = found.next()? {
        if !collect.offer(r.int(0)?, &rows::list_owner(r, 1)?) {
            break;
        }
    }
    Ok(collect.finish())
}

pub(super) fn packages(
    conn: &Connection,
    index: &crate::software::SoftwareIndex,
    q: &PackageQuery,
) -> Result<PackagePage, StoreError> {
    let site = q
        .site
        .as_ref()
        .map(|s| ready(exec::site_rows(&mut Lite(conn), s)))
        .transpose()?;
    index.read(|ix| crate::software::packages_page(ix, q, site.as_ref()))
}
