//! The SQLite executor of the store's statements: it fetches rows and executes writes, while
//! what the rows mean is decided in `crate::rows` and the statements both dialects share are
//! in `crate::sql`. Functions taking a plain `&Connection` run on a read connection or inside
//! the writer's transaction; those that write are only ever called by writer jobs.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use invsync_proto::inventory::item_digest;
use invsync_proto::wire::{
    ClassState, ClientQuery, ClientSummary, ClientView, InstructionKind, PackagePage, PackageQuery,
    Queued, ReportAck, RequestPage, RequestQuery, RequestState, RequestView, SoftwarePage,
    SoftwareQuery,
};
use invsync_proto::{Class, ClientName, Items, SiteCode, Timestamp};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Params, Row, params};
use uuid::Uuid;

use super::writer::Batch;
use crate::cache::{CachedItem, FastMap};
use crate::codec::{PreparedItem, class_code, class_from_code, decode_attrs, digest_prefix};
use crate::error::StoreError;
use crate::plan::{self, Change, ItemSource, Outcome, Plan, ReportInput, Resolver};
use crate::rows::{self, ClientKey, Cols, OpenRequest, WriteSet};
pub(super) use crate::rows::{SnapshotRow, Stamp, Written, corrupt};
use crate::sql;
use crate::{ClientAuth, Enrolled, Enrollment, HistoryEntry, HistoryQuery, SiteMeta};

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

pub(super) fn site_meta(conn: &Connection) -> Result<SiteMeta, StoreError> {
    let pairs = all(conn, sql::SITE_META, [], |r| {
        Ok((r.text(0)?.to_string(), r.text(1)?.to_string()))
    })?;
    rows::site_meta(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// The internal row id of a client by its client id, whichever site owns it.
pub(super) fn client_row(conn: &Connection, client_id: Uuid) -> Result<Option<i64>, StoreError> {
    first(
        conn,
        sql::CLIENT_ROW,
        [client_id.as_bytes().as_slice()],
        |r| r.int(0),
    )
}

/// The internal row id of a client of this site by its client id. What agents do (check in,
/// report) goes through this: a client a child forwarded belongs to another site, and a report
/// here would give its snapshot versions the owner never had.
pub(super) fn own_client_row(
    conn: &Connection,
    site: &SiteCode,
    client_id: Uuid,
) -> Result<Option<i64>, StoreError> {
    // The site is compared here rather than in SQL: a bound parameter in a condition that no
    // index answers makes SQLite (built with STAT4) look at its value while planning, and then
    // re-plan the cached statement at every execution. That was a fifth of the site's CPU time
    // under a check-in load; `uuid` is unique, so the filter reads no extra row.
    let sql = "SELECT id, site_code FROM clients WHERE uuid = ?1";
    let row = first(conn, sql, [client_id.as_bytes().as_slice()], |r| {
        Ok((r.int(0)?, r.text(1)? == site.as_str()))
    })?;
    Ok(row.filter(|(_, own)| *own).map(|(id, _)| id))
}

/// The internal row id of a client of this site by name.
fn client_row_by_name(
    conn: &Connection,
    site: &SiteCode,
    name: &ClientName,
) -> Result<Option<i64>, StoreError> {
    first(
        conn,
        sql::CLIENT_ROW_BY_NAME,
        [site.as_str(), name.as_str()],
        |r| r.int(0),
    )
}

pub(super) fn enroll(
    conn: &Connection,
    site: &SiteCode,
    e: &Enrollment,
) -> Result<Enrolled, StoreError> {
    let holder = first(
        conn,
        sql::NAME_HOLDER,
        [site.as_str(), e.name.as_str()],
        |r| Ok((r.int(0)?, r.uuid(1)?, r.text(2)?.to_string())),
    )?;
    let Some((row, holder_id, machine_id)) = holder else {
        // The single writer runs enrollments one at a time: the name is still free.
        let client_id = Uuid::new_v4();
        let values = params![
            client_id.as_bytes().as_slice(),
            e.name.as_str(),
            site.as_str(),
            e.machine_id,
            e.key_hash.0.as_slice(),
            e.now.0
        ];
        first(conn, sql::ENROLL, values, |r| r.int(0))?;
        return Ok(Enrolled {
            client_id,
            reenrolled: false,
        });
    };
    let enrolled = rows::reenrollment(e, holder_id, machine_id)?;
    conn.prepare_cached(sql::SET_KEY)?
        .execute(params![e.key_hash.0.as_slice(), row])?;
    Ok(enrolled)
}

/// Only this site's own clients can authenticate: a client forwarded by a child is stored with a
/// key hash of zeros, and is not looked up here at all, so no key can ever match it.
pub(super) fn client_auth(
    conn: &Connection,
    site: &SiteCode,
    client_id: Uuid,
) -> Result<Option<ClientAuth>, StoreError> {
    Ok(client_credentials(conn, site, client_id)?.map(|(_, auth)| auth))
}

/// The internal row and the credentials of a client of this site, in one lookup.
pub(super) fn client_credentials(
    conn: &Connection,
    site: &SiteCode,
    client_id: Uuid,
) -> Result<Option<(i64, ClientAuth)>, StoreError> {
    // The site is compared here, not in SQL, for the reason given at `own_client_row`.
    let sql = "SELECT id, name, key_hash, site_code FROM clients WHERE uuid = ?1";
    let found = first(conn, sql, [client_id.as_bytes().as_slice()], |r| {
        if r.text(3)? != site.as_str() {
            return Ok(None);
        }
        let auth = ClientAuth {
            client_id,
            name: r.name(1)?,
            key_hash: r.digest(2)?,
        };
        Ok(Some((r.int(0)?, auth)))
    })?;
    Ok(found.flatten())
}

/// Replaces an own client's key hash with 32 zero bytes, which no key hashes to, so its key
/// is refused from the next request on. Returns whether the client exists.
pub(super) fn revoke(
    conn: &Connection,
    site: &SiteCode,
    name: &ClientName,
) -> Result<bool, StoreError> {
    let n = conn.prepare_cached(sql::REVOKE)?.execute(params![
        [0u8; 32].as_slice(),
        site.as_str(),
        name.as_str()
    ])?;
    Ok(n > 0)
}

// ---------------------------------------------------------------------------------------------
// Check-in and requests

pub(super) fn open_requests(
    conn: &Connection,
    client: i64,
) -> Result<Vec<OpenRequest>, StoreError> {
    all(conn, sql::OPEN_REQUESTS, [client], |r| {
        rows::open_request(r)
    })
}

pub(super) fn class_states(
    conn: &Connection,
    client: i64,
) -> Result<BTreeMap<Class, ClassState>, StoreError> {
    Ok(
        all(conn, sql::CLASS_STATES, [client], |r| rows::class_state(r))?
            .into_iter()
            .collect(),
    )
}

pub(super) fn mark_picked_up(
    conn: &Connection,
    client: i64,
    ids: &[i64],
    now: Timestamp,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE requests SET picked_up_at = ?1
         WHERE id IN rarray(?2) AND client_id = ?3 AND picked_up_at IS NULL AND completed_at IS NULL",
    )?
    .execute(params![now.0, id_array(ids.iter().copied()), client])?;
    Ok(())
}

/// Queues a resync request or an event unless an identical one is still pending.
pub(super) fn queue_request(
    conn: &Connection,
    site: &SiteCode,
    name: &ClientName,
    kind: &InstructionKind,
    now: Timestamp,
) -> Result<Queued, StoreError> {
    let client = client_row_by_name(conn, site, name)?.ok_or_else(|| rows::unknown_client(name))?;
    let (kind, arg) = rows::kind_and_arg(kind);
    let created: Option<i64> = conn
        .prepare_cached(sql::QUEUE_REQUEST)?
        .query_row(params![client, kind, arg, now.0, None::<&str>], |r| {
            r.get(0)
        })
        .optional()?;
    let (id, requested_at, created) = match created {
        Some(id) => (id, now, true),
        None => {
            let (id, at) = conn
                .prepare_cached(sql::PENDING_REQUEST)?
                .query_row(params![client, kind, arg], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                })?;
            (id, Timestamp(at), false)
        }
    };
    Ok(rows::queued(name, id, requested_at, created))
}

pub(super) fn complete_events(
    conn: &Connection,
    client: i64,
    ids: &[i64],
    now: Timestamp,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE requests SET completed_at = ?1, picked_up_at = coalesce(picked_up_at, ?1)
         WHERE id IN rarray(?2) AND client_id = ?3 AND kind = 'event' AND completed_at IS NULL",
    )?
    .execute(params![now.0, id_array(ids.iter().copied()), client])?;
    Ok(())
}

pub(super) fn request_state(conn: &Connection, id: i64) -> Result<Option<RequestView>, StoreError> {
    first(conn, sql::REQUEST_STATE, [id], |r| rows::request_view(r))
}

// ---------------------------------------------------------------------------------------------
// Snapshots and items

pub(super) fn snapshot_row(
    conn: &Connection,
    client: i64,
    class: Class,
) -> Result<Option<SnapshotRow>, StoreError> {
    first(conn, sql::SNAPSHOT_ROW, [client, class_code(class)], |r| {
        SnapshotRow::of(r)
    })
}

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
    let class = class_code(input.class);
    let hash = input.hash.0.as_slice();
    let (version, full_at): (i64, i64) = match (row, &set.blob) {
        (None, blob) => conn.prepare_cached(sql::INSERT_SNAPSHOT)?.query_row(
            params![
                client,
                class,
                set.version,
                hash,
                stamp.full_at.0,
                stamp.at.0,
                set.recent,
                blob
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?,
        (Some(_), blob) => conn.prepare_cached(sql::UPDATE_SNAPSHOT)?.query_row(
            params![
                set.version,
                hash,
                set.full,
                stamp.full_at.0,
                stamp.at.0,
                set.recent,
                blob,
                client,
                class
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?,
    };
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
        full_at: Timestamp(full_at),
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
    planned: Plan,
    now: Timestamp,
) -> Result<ReportAck, StoreError> {
    let row = snapshot_row(conn, client, input.class)?;
    if let Some(row) = &row
        && row.has_report(input.report_id)
    {
        return Ok(row.duplicate());
    }
    let change = match replan_if_moved(conn, batch, input, row.as_ref(), Some(planned))? {
        Outcome::Resync(reason) => return Ok(ReportAck::ResyncRequired { reason }),
        Outcome::Write(change) => change,
    };
    let stamp = Stamp::report(input, now);
    let written = write_change(conn, batch, client, input, row.as_ref(), change, &stamp)?;
    let mut completed = Vec::new();
    if input.is_full() && !input.answers.is_empty() {
        // Only this client's resync requests for this class: a report cannot complete another
        // client's request by naming its id.
        let sql = format!(
            "UPDATE requests SET completed_at = ?1, picked_up_at = coalesce(picked_up_at, ?1)
             WHERE id IN rarray(?2) AND client_id = ?3 AND kind = 'resync' AND arg = ?4
               AND completed_at IS NULL
             RETURNING {}",
            sql::REQUEST_COLS
        );
        let answers = id_array(input.answers.iter().copied());
        completed = all(
            conn,
            &sql,
            params![now.0, answers, client, input.class.as_str()],
            |r| rows::request_view(r),
        )?;
    }
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

/// The client list, sorted by name, with each client's internal row id (for the last-seen
/// overlay).
pub(super) fn clients(conn: &Connection) -> Result<Vec<(i64, ClientSummary)>, StoreError> {
    all(conn, sql::CLIENTS, [], |r| rows::client_summary(r))
}

/// One page of clients ([`crate::Store::clients_page`]), each with its internal row id (for
/// the last-seen overlay), and the number of clients matching the filters. The page's ids come
/// from one index-ordered statement; the rows of the page (at most a thousand) are then read by
/// id, so the per-client subqueries run for the page only, never for the skipped offset.
pub(super) fn clients_page(
    conn: &Connection,
    q: &ClientQuery,
) -> Result<(u64, Vec<(i64, ClientSummary)>), StoreError> {
    // One read transaction: the count and the page see the same committed state.
    let tx = conn.unchecked_transaction()?;
    let search = q.search_upper();
    let site = q.site.as_ref().map(SiteCode::as_str);
    let filter = "(?1 IS NULL OR instr(c.name, ?1) > 0) AND (?2 IS NULL OR c.site_code = ?2)";
    let total: i64 = tx
        .prepare_cached(&format!("SELECT count(*) FROM clients c WHERE {filter}"))?
        .query_row(params![search, site], |r| r.get(0))?;
    let (join, order) = sql::page_join_and_order(q, "");
    let ids = all(
        &tx,
        &format!(
            "SELECT c.id FROM clients c {join} WHERE {filter} ORDER BY {order} LIMIT ?3 OFFSET ?4"
        ),
        params![search, site, q.limit, q.offset as i64],
        |r| r.int(0),
    )?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let by_id = concat!(sql::client_summary!(), "WHERE c.id = $1");
        // A client row is never deleted inside this read transaction, so every id is found.
        out.extend(first(&tx, by_id, [id], |r| rows::client_summary(r))?);
    }
    tx.commit()?;
    Ok((total as u64, out))
}

/// One page of resync requests ([`crate::Store::requests_page`]), newest first (by id, the
/// primary key, read backwards), and how many match.
pub(super) fn requests_page(
    conn: &Connection,
    q: &RequestQuery,
) -> Result<RequestPage, StoreError> {
    let tx = conn.unchecked_transaction()?;
    let state = q.state.map(RequestState::as_str);
    let class = q.class.map(|c| c.to_string());
    let filter = format!(
        "r.kind = 'resync' AND (?1 IS NULL OR ({}) = ?1) AND (?2 IS NULL OR r.arg = ?2)",
        crate::page::REQUEST_STATE_SQL
    );
    let total: i64 = tx
        .prepare_cached(&format!("SELECT count(*) FROM requests r WHERE {filter}"))?
        .query_row(params![state, class], |r| r.get(0))?;
    let requests = all(
        &tx,
        &sql::requests_select(&filter, "?3", "?4"),
        params![state, class, q.limit, q.offset as i64],
        |r| rows::client_request(r),
    )?;
    tx.commit()?;
    Ok(RequestPage {
        total: total as u64,
        offset: q.offset,
        requests,
    })
}

/// The internal row id of the client `key` names.
fn row_of(conn: &Connection, site: &SiteCode, key: &ClientKey) -> Result<Option<i64>, StoreError> {
    match key {
        ClientKey::Name(name) => client_row_by_name(conn, site, name),
        ClientKey::Id(id) => client_row(conn, *id),
    }
}

/// A client with its snapshots decoded, plus its internal row id.
pub(super) fn client_view(
    conn: &Connection,
    site: &SiteCode,
    key: &ClientKey,
) -> Result<Option<(i64, ClientView)>, StoreError> {
    match row_of(conn, site, key)? {
        Some(client) => client_view_of(conn, client),
        None => Ok(None),
    }
}

/// The view of the client with internal row id `client`.
fn client_view_of(conn: &Connection, client: i64) -> Result<Option<(i64, ClientView)>, StoreError> {
    let Some(mut view) = first(conn, sql::CLIENT_HEAD, [client], |r| rows::client_head(r))? else {
        return Ok(None);
    };
    for (class, ids, mut snapshot) in all(conn, sql::CLIENT_SNAPSHOTS, [client], |r| {
        rows::snapshot_view(r)
    })? {
        snapshot.items = load_items(conn, &ids)?;
        rows::place_snapshot(&mut view, class, snapshot);
    }
    let listed = |kind: &'static str| (client, kind, rows::VIEW_LIMIT);
    view.requests = all(conn, sql::CLIENT_REQUESTS, listed("resync"), |r| {
        rows::request_view(r)
    })?;
    view.events = all(conn, sql::CLIENT_REQUESTS, listed("event"), |r| {
        rows::event_view(r)
    })?;
    Ok(Some((client, view)))
}

/// The items with these ids, keyed by item key.
pub(super) fn load_items(conn: &Connection, ids: &[i64]) -> Result<Items, StoreError> {
    let sql = "SELECT key, attrs FROM items WHERE id IN rarray(?1)";
    let items: Items = all(conn, sql, [id_array(ids.iter().copied())], |r| {
        Ok((r.text(0)?.to_string(), decode_attrs(r.blob(1)?)?))
    })?
    .into_iter()
    .collect();
    if items.len() != ids.len() {
        return Err(corrupt("snapshot item list"));
    }
    Ok(items)
}

/// The history of a client, newest first.
pub(super) fn history(
    conn: &Connection,
    site: &SiteCode,
    key: &ClientKey,
    query: &HistoryQuery,
) -> Result<Option<Vec<HistoryEntry>>, StoreError> {
    match row_of(conn, site, key)? {
        Some(client) => history_of(conn, client, query).map(Some),
        None => Ok(None),
    }
}

fn history_of(
    conn: &Connection,
    client: i64,
    query: &HistoryQuery,
) -> Result<Vec<HistoryEntry>, StoreError> {
    let class = query.class.map(class_code);
    let since = query.since.map(|t| t.0);
    let sql = "SELECT h.at, h.class, coalesce(n.key, o.key), o.attrs, n.attrs, h.full
         FROM history h
         LEFT JOIN items o ON o.id = h.old_item
         LEFT JOIN items n ON n.id = h.new_item
         WHERE h.client_id = ?1
           AND (?3 IS NULL OR h.class = ?3)
           AND (?4 IS NULL OR h.at >= ?4)
         ORDER BY h.id DESC LIMIT ?2";
    let limit = rows::history_limit(query);
    all(conn, sql, params![client, limit, class, since], |r| {
        rows::history_entry(r)
    })
}

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

/// The rows of the clients owned by `site`.
fn site_rows(conn: &Connection, site: &SiteCode) -> Result<roaring::RoaringBitmap, StoreError> {
    all(conn, sql::SITE_ROWS, [site.as_str()], |r| {
        rows::index_row(r.int(0)?)
    })
    .map(|found| found.into_iter().collect())
}

pub(super) fn software(
    conn: &Connection,
    index: &crate::software::SoftwareIndex,
    q: &SoftwareQuery,
) -> Result<SoftwarePage, StoreError> {
    // One read transaction: the site's clients and the holders' names belong together.
    let tx = conn.unchecked_transaction()?;
    let site = q.site.as_ref().map(|s| site_rows(&tx, s)).transpose()?;
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
        .prepare_cached("SELECT id, name, uuid, site_code FROM clients ORDER BY name, site_code")?;
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
    let site = q.site.as_ref().map(|s| site_rows(conn, s)).transpose()?;
    index.read(|ix| crate::software::packages_page(ix, q, site.as_ref()))
}
