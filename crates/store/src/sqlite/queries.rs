//! Every data statement of the SQLite backend. Functions taking a plain `&Connection` run on
//! a read connection or inside the writer's transaction; those that write are only ever called
//! by writer jobs.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;

use invsync_proto::wire::Event;
use invsync_proto::wire::{
    ClassState, ClientQuery, ClientRequest, ClientSummary, ClientView, EventView, Instruction,
    InstructionKind, PackagePage, PackageQuery, Queued, ReportAck, RequestPage, RequestQuery,
    RequestState, RequestView, SnapshotView, SoftwarePage, SoftwareQuery,
};
use invsync_proto::{Class, ClientName, Digest, Items, SiteCode, Timestamp};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

use super::writer::Batch;
use crate::cache::{CachedItem, FastMap};
use crate::codec::{
    PreparedItem, class_code, class_from_code, decode_attrs, decode_ids, digest_prefix, encode_ids,
};
use crate::error::StoreError;
use crate::plan::{self, Change, Current, ItemSource, Outcome, Plan, ReportInput, Resolver, Slot};
use crate::{ClientAuth, Enrolled, Enrollment, HistoryEntry, HistoryQuery, SiteMeta};
use invsync_proto::inventory::item_digest;

/// How many report ids per client and class are remembered for de-duplication. An agent
/// resends only its latest unacknowledged report, so a handful is plenty; 16 bytes each.
const RECENT_REPORTS: usize = 4;

/// How many forwarded changes per client and class are remembered for de-duplication (see
/// [`SnapshotRow::has_forwarded`]): a child re-sends a whole batch when the answer to it was
/// lost, which may hold several changes of one client and class.
pub(super) const RECENT_FORWARDED: usize = 8;

/// What `recent_reports` remembers of a forwarded change: its version and the first 8 bytes of
/// its hash, 16 bytes like a report id.
pub(super) fn forwarded_mark(version: i64, hash: &Digest) -> [u8; 16] {
    let mut mark = [0u8; 16];
    mark[..8].copy_from_slice(&version.to_le_bytes());
    mark[8..].copy_from_slice(&hash.0[..8]);
    mark
}

/// How many requests and events `client_view` lists.
const VIEW_LIMIT: i64 = 50;

pub(super) fn corrupt(what: &str) -> StoreError {
    StoreError::Database(format!("the database holds an invalid {what}"))
}

pub(super) fn id_array(ids: impl IntoIterator<Item = i64>) -> Rc<Vec<Value>> {
    Rc::new(ids.into_iter().map(Value::Integer).collect())
}

pub(super) fn digest_col(row: &Row<'_>, i: usize) -> Result<Digest, StoreError> {
    Digest::from_slice(row.get_ref(i)?.as_blob()?).ok_or_else(|| corrupt("hash"))
}

pub(super) fn uuid_col(row: &Row<'_>, i: usize) -> Result<Uuid, StoreError> {
    Uuid::from_slice(row.get_ref(i)?.as_blob()?).map_err(|_| corrupt("client id"))
}

pub(super) fn name_col(row: &Row<'_>, i: usize) -> Result<ClientName, StoreError> {
    ClientName::parse(row.get_ref(i)?.as_str()?).map_err(|_| corrupt("client name"))
}

pub(super) fn site_col(row: &Row<'_>, i: usize) -> Result<SiteCode, StoreError> {
    SiteCode::parse(row.get_ref(i)?.as_str()?).map_err(|_| corrupt("site code"))
}

pub(super) fn ts(v: Option<i64>) -> Option<Timestamp> {
    v.map(Timestamp)
}

pub(super) fn state_of(picked_up_at: Option<i64>, completed_at: Option<i64>) -> RequestState {
    match (picked_up_at, completed_at) {
        (_, Some(_)) => RequestState::Complete,
        (Some(_), None) => RequestState::PickedUp,
        (None, None) => RequestState::Pending,
    }
}

// ---------------------------------------------------------------------------------------------
// Site and clients

pub(super) fn site_meta(conn: &Connection) -> Result<SiteMeta, StoreError> {
    let mut st = conn.prepare("SELECT key, value FROM meta")?;
    let rows: HashMap<String, String> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let code = rows
        .get("site_code")
        .and_then(|c| SiteCode::parse(c).ok())
        .ok_or_else(|| corrupt("site code"))?;
    let created_at = rows
        .get("created_at")
        .and_then(|c| c.parse::<i64>().ok())
        .ok_or_else(|| corrupt("creation time"))?;
    Ok(SiteMeta {
        code,
        name: rows.get("site_name").cloned().unwrap_or_default(),
        created_at: Timestamp(created_at),
    })
}

/// The internal row id of a client by its client id, whichever site owns it.
pub(super) fn client_row(conn: &Connection, client_id: Uuid) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT id FROM clients WHERE uuid = ?1")?
        .query_row([client_id.as_bytes().as_slice()], |r| r.get(0))
        .optional()?)
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
    let row: Option<(i64, String)> = conn
        .prepare_cached("SELECT id, site_code FROM clients WHERE uuid = ?1")?
        .query_row(params![client_id.as_bytes().as_slice()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    Ok(row
        .filter(|(_, code)| code == site.as_str())
        .map(|(id, _)| id))
}

/// The internal row id of a client of this site by name.
fn client_row_by_name(
    conn: &Connection,
    site: &SiteCode,
    name: &ClientName,
) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT id FROM clients WHERE site_code = ?1 AND name = ?2")?
        .query_row([site.as_str(), name.as_str()], |r| r.get(0))
        .optional()?)
}

pub(super) fn enroll(
    conn: &Connection,
    site: &SiteCode,
    e: &Enrollment,
) -> Result<Enrolled, StoreError> {
    let holder = conn
        .prepare_cached(
            "SELECT id, uuid, machine_id FROM clients WHERE site_code = ?1 AND name = ?2",
        )?
        .query_row([site.as_str(), e.name.as_str()], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .optional()?;
    match holder {
        None => {
            let client_id = Uuid::new_v4();
            conn.prepare_cached(
                "INSERT INTO clients (uuid, name, site_code, machine_id, key_hash, enrolled_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                client_id.as_bytes().as_slice(),
                e.name.as_str(),
                site.as_str(),
                e.machine_id,
                e.key_hash.0.as_slice(),
                e.now.0
            ])?;
            Ok(Enrolled {
                client_id,
                reenrolled: false,
            })
        }
        Some((row, uuid, machine_id)) => {
            let holder_id = Uuid::from_slice(&uuid).map_err(|_| corrupt("client id"))?;
            if machine_id != e.machine_id {
                return Err(StoreError::NameTaken {
                    name: e.name.clone(),
                    holder_id,
                    holder_machine_id: machine_id,
                });
            }
            // The same machine enrolling again (a reinstalled agent) keeps its id and history;
            // only its key changes, which also revokes the old key.
            conn.prepare_cached("UPDATE clients SET key_hash = ?1 WHERE id = ?2")?
                .execute(params![e.key_hash.0.as_slice(), row])?;
            Ok(Enrolled {
                client_id: holder_id,
                reenrolled: true,
            })
        }
    }
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
    let mut st =
        conn.prepare_cached("SELECT id, name, key_hash, site_code FROM clients WHERE uuid = ?1")?;
    let mut rows = st.query(params![client_id.as_bytes().as_slice()])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    if row.get_ref(3)?.as_str()? != site.as_str() {
        return Ok(None);
    }
    let auth = ClientAuth {
        client_id,
        name: name_col(row, 1)?,
        key_hash: digest_col(row, 2)?,
    };
    Ok(Some((row.get(0)?, auth)))
}

/// Replaces an own client's key hash with 32 zero bytes, which no key hashes to, so its key
/// is refused from the next request on. Returns whether the client exists.
pub(super) fn revoke(
    conn: &Connection,
    site: &SiteCode,
    name: &ClientName,
) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached(
            "UPDATE clients SET key_hash = zeroblob(32) WHERE site_code = ?1 AND name = ?2",
        )?
        .execute(params![site.as_str(), name.as_str()])?;
    Ok(n > 0)
}

pub(super) fn write_last_seen(conn: &Connection, seen: &[(i64, i64)]) -> Result<(), StoreError> {
    let mut st = conn.prepare_cached(
        "UPDATE clients SET last_seen = max(coalesce(last_seen, ?2), ?2) WHERE id = ?1",
    )?;
    for (client, at) in seen {
        st.execute([client, at])?;
    }
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

pub(super) fn open_requests(
    conn: &Connection,
    client: i64,
) -> Result<Vec<OpenRequest>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT id, kind, arg, picked_up_at FROM requests
         WHERE client_id = ?1 AND completed_at IS NULL ORDER BY id",
    )?;
    let mut rows = st.query([client])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let kind = instruction_kind(row.get_ref(1)?.as_str()?, row.get_ref(2)?.as_str()?)
            .ok_or_else(|| corrupt("request kind"))?;
        let picked_up = row.get::<_, Option<i64>>(3)?.is_some();
        out.push(OpenRequest {
            instruction: Instruction { id, kind },
            picked_up,
        });
    }
    Ok(out)
}

pub(super) fn class_states(
    conn: &Connection,
    client: i64,
) -> Result<BTreeMap<Class, ClassState>, StoreError> {
    let mut st =
        conn.prepare_cached("SELECT class, version, hash FROM snapshots WHERE client_id = ?1")?;
    let mut rows = st.query([client])?;
    let mut out = BTreeMap::new();
    while let Some(row) = rows.next()? {
        out.insert(
            class_from_code(row.get(0)?)?,
            ClassState {
                version: row.get(1)?,
                hash: digest_col(row, 2)?,
            },
        );
    }
    Ok(out)
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
    kind: &str,
    arg: &str,
    now: Timestamp,
) -> Result<Queued, StoreError> {
    let client =
        client_row_by_name(conn, site, name)?.ok_or_else(|| StoreError::UnknownClient {
            name: name.to_string(),
        })?;
    // The partial unique index makes "create unless pending" one atomic statement, even
    // against another process queueing the same request at the same moment.
    let created: Option<i64> = conn
        .prepare_cached(
            "INSERT INTO requests (client_id, kind, arg, requested_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (client_id, kind, arg)
                 WHERE picked_up_at IS NULL AND completed_at IS NULL AND origin IS NULL
             DO NOTHING RETURNING id",
        )?
        .query_row(params![client, kind, arg, now.0], |r| r.get(0))
        .optional()?;
    let (id, requested_at, created) = match created {
        Some(id) => (id, now, true),
        None => {
            let (id, at) = conn
                .prepare_cached(
                    "SELECT id, requested_at FROM requests
                     WHERE client_id = ?1 AND kind = ?2 AND arg = ?3
                       AND picked_up_at IS NULL AND completed_at IS NULL AND origin IS NULL",
                )?
                .query_row(params![client, kind, arg], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                })?;
            (id, Timestamp(at), false)
        }
    };
    Ok(Queued {
        id,
        client: name.clone(),
        created,
        state: RequestState::Pending,
        requested_at,
        routed_to: None,
    })
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
    let mut st = conn.prepare_cached(
        "SELECT id, arg, requested_at, picked_up_at, completed_at, origin, route,
                forwarded_at, forwarded_to FROM requests
         WHERE id = ?1 AND kind = 'resync'",
    )?;
    let mut rows = st.query([id])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    Ok(Some(request_view(row)?))
}

/// A resync request from (id, arg, requested_at, picked_up_at, completed_at, origin, route,
/// forwarded_at, forwarded_to).
pub(super) fn request_view(row: &Row<'_>) -> Result<RequestView, StoreError> {
    let class = Class::parse(row.get_ref(1)?.as_str()?).ok_or_else(|| corrupt("request class"))?;
    let (picked, done): (Option<i64>, Option<i64>) = (row.get(3)?, row.get(4)?);
    let site_or_null = |i: usize| -> Result<Option<SiteCode>, StoreError> {
        match row.get_ref(i)?.as_str_or_null()? {
            None => Ok(None),
            Some(code) => Ok(Some(
                SiteCode::parse(code).map_err(|_| corrupt("site code"))?,
            )),
        }
    };
    let (route, forwarded_to) = (site_or_null(6)?, site_or_null(8)?);
    Ok(RequestView {
        id: row.get(0)?,
        class,
        state: state_of(picked, done),
        requested_at: Timestamp(row.get(2)?),
        picked_up_at: ts(picked),
        completed_at: ts(done),
        origin: row.get(5)?,
        route,
        forwarded_at: ts(row.get(7)?),
        forwarded_to,
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

    /// Whether a forwarded change with this version and hash was applied recently. Only the
    /// current version and hash are an exact duplicate, but a child re-sending a batch whose
    /// answer it lost would otherwise set the snapshot back to an older full entry and replay
    /// every change after it, recording their history twice.
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

pub(super) fn snapshot_row(
    conn: &Connection,
    client: i64,
    class: Class,
) -> Result<Option<SnapshotRow>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT version, hash, recent_reports, items FROM snapshots WHERE client_id = ?1 AND class = ?2",
    )?;
    let mut rows = st.query([client, class_code(class)])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    Ok(Some(SnapshotRow {
        version: row.get(0)?,
        hash: digest_col(row, 1)?,
        recent: row.get(2)?,
        items: row.get(3)?,
    }))
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
        let mut st = self
            .0
            .prepare_cached("SELECT id, h, key, attrs FROM items WHERE h IN rarray(?1)")?;
        let mut rows = st.query([id_array(wanted.keys().copied())])?;
        while let Some(row) = rows.next()? {
            let h: i64 = row.get(1)?;
            let (key, attrs) = (row.get_ref(2)?.as_str()?, row.get_ref(3)?.as_blob()?);
            // Comparing the content, not just the 64-bit prefix, means a prefix collision can
            // never make two different items one.
            for &i in wanted.get(&h).into_iter().flatten() {
                if items[i].key == key && items[i].attrs == attrs {
                    out[i] = Some(row.get(0)?);
                }
            }
        }
        Ok(out)
    }

    fn load(&self, ids: &[i64]) -> Result<Vec<CachedItem>, StoreError> {
        let mut found: FastMap<i64, CachedItem> = FastMap::default();
        let mut st = self
            .0
            .prepare_cached("SELECT id, key, attrs FROM items WHERE id IN rarray(?1)")?;
        let mut rows = st.query([id_array(ids.iter().copied())])?;
        while let Some(row) = rows.next()? {
            let key = row.get_ref(1)?.as_str()?;
            let attrs = decode_attrs(row.get_ref(2)?.as_blob()?)?;
            let item = CachedItem {
                key: Arc::from(key),
                digest: item_digest(key, &attrs),
            };
            found.insert(row.get(0)?, item);
        }
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
    {
        let mut st = conn.prepare_cached("SELECT id, key, attrs FROM items WHERE h = ?1")?;
        let mut rows = st.query([h])?;
        while let Some(row) = rows.next()? {
            if row.get_ref(1)?.as_str()? == item.key
                && row.get_ref(2)?.as_blob()? == item.attrs.as_slice()
            {
                return Ok(row.get(0)?);
            }
        }
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

/// When and as which version a change is stored.
pub(super) struct Stamp {
    /// The version the snapshot gets; `None` for one more than the stored one (1 for the first),
    /// as for a report of this site's own client. A forwarded change keeps its owner's number.
    pub version: Option<i64>,
    /// When the change was accepted: the snapshot's `updated_at` and the history rows' time.
    pub at: Timestamp,
    /// The snapshot's `full_at` when the change is a full snapshot.
    pub full_at: Timestamp,
    /// What `recent_reports` remembers of the change for de-duplication, and how many marks it
    /// keeps: report ids for this site's own clients, [`forwarded_mark`]s for forwarded ones (a
    /// client only ever gets one kind, as only own clients report here).
    pub remember: ([u8; 16], usize),
}

/// What a stored change became.
pub(super) struct Written {
    pub version: i64,
    pub full_at: Timestamp,
    /// The item ids an outbox entry of this change records (see the `outbox` table).
    pub body_ids: Vec<u8>,
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
        // A full report that repeats the stored snapshot leaves `items` as it is.
        match (&blob, row) {
            (Some(b), _) => b.clone(),
            (None, Some(r)) => r.items.clone(),
            (None, None) => Vec::new(),
        }
    } else {
        encode_ids(&change.upserts.iter().map(|s| id_of(*s)).collect::<Vec<_>>())
    };
    let class = class_code(input.class);
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
            conn.prepare_cached(
                "INSERT INTO snapshots (client_id, class, version, hash, full_at, updated_at, recent_reports, items)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING version, full_at",
            )?
            .query_row(
                params![
                    client,
                    class,
                    stamp.version.unwrap_or(1),
                    input.hash.0.as_slice(),
                    stamp.full_at.0,
                    stamp.at.0,
                    recent,
                    blob
                ],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?
        }
        Some(row) => conn
            .prepare_cached(
                "UPDATE snapshots SET version = ?1, hash = ?2,
                        full_at = CASE WHEN ?3 THEN ?4 ELSE full_at END, updated_at = ?5,
                        recent_reports = ?6, items = coalesce(?7, items)
                 WHERE client_id = ?8 AND class = ?9 RETURNING version, full_at",
            )?
            .query_row(
                params![
                    stamp.version.unwrap_or(row.version + 1),
                    input.hash.0.as_slice(),
                    full,
                    stamp.full_at.0,
                    stamp.at.0,
                    recent,
                    blob,
                    client,
                    class
                ],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?,
    };
    if !change.history.is_empty() {
        let mut st = conn.prepare_cached(
            "INSERT INTO history (client_id, class, at, old_item, new_item, full)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for h in &change.history {
            st.execute(params![
                client,
                class,
                stamp.at.0,
                h.old,
                h.new.map(id_of),
                full
            ])?;
        }
    }
    if input.class == Class::Sw && batch.software.is_some() {
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
        let sw = crate::software::change(
            client,
            row.map(|r| r.version),
            Some(version),
            removed,
            added,
        )?;
        software_changed(conn, batch, sw)?;
    }
    Ok(Written {
        version,
        full_at: Timestamp(full_at),
        body_ids,
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
        return Ok(ReportAck::Duplicate {
            version: row.version,
            hash: row.hash,
        });
    }
    let change = match replan_if_moved(conn, batch, input, row.as_ref(), Some(planned))? {
        Outcome::Resync(reason) => return Ok(ReportAck::ResyncRequired { reason }),
        Outcome::Write(change) => change,
    };
    let stamp = Stamp {
        version: None,
        at: now,
        full_at: now,
        remember: (*input.report_id.as_bytes(), RECENT_REPORTS),
    };
    let written = write_change(conn, batch, client, input, row.as_ref(), change, &stamp)?;
    let mut completed = Vec::new();
    if input.is_full() && !input.answers.is_empty() {
        // Only this client's resync requests for this class: a report cannot complete another
        // client's request by naming its id.
        let mut st = conn.prepare_cached(
            "UPDATE requests SET completed_at = ?1, picked_up_at = coalesce(picked_up_at, ?1)
             WHERE id IN rarray(?2) AND client_id = ?3 AND kind = 'resync' AND arg = ?4
               AND completed_at IS NULL
             RETURNING id, arg, requested_at, picked_up_at, completed_at, origin, route,
                       forwarded_at, forwarded_to",
        )?;
        let mut rows = st.query(params![
            now.0,
            id_array(input.answers.iter().copied()),
            client,
            input.class.as_str()
        ])?;
        while let Some(r) = rows.next()? {
            completed.push(request_view(r)?);
        }
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
    let mut st = conn.prepare_cached(
        "SELECT c.id, c.name, c.uuid, c.site_code, c.last_seen,
                hw.version, hw.updated_at, sw.version, sw.updated_at,
                (SELECT count(*) FROM requests r WHERE r.client_id = c.id AND r.completed_at IS NULL)
         FROM clients c
         LEFT JOIN snapshots hw ON hw.client_id = c.id AND hw.class = 0
         LEFT JOIN snapshots sw ON sw.client_id = c.id AND sw.class = 1
         ORDER BY c.name, c.site_code",
    )?;
    let mut rows = st.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push((
            row.get(0)?,
            ClientSummary {
                name: name_col(row, 1)?,
                id: uuid_col(row, 2)?,
                site: site_col(row, 3)?,
                last_seen: ts(row.get(4)?),
                hw_version: row.get(5)?,
                hw_updated_at: ts(row.get(6)?),
                sw_version: row.get(7)?,
                sw_updated_at: ts(row.get(8)?),
                pending_requests: row.get(9)?,
            },
        ));
    }
    Ok(out)
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
    let join = match crate::page::sort_class(q.sort) {
        Some(class) => format!("LEFT JOIN snapshots s ON s.client_id = c.id AND s.class = {class}"),
        None => String::new(),
    };
    let order = crate::page::order_by(q.sort, q.descending, "");
    let ids: Vec<i64> = tx
        .prepare_cached(&format!(
            "SELECT c.id FROM clients c {join} WHERE {filter} ORDER BY {order} LIMIT ?3 OFFSET ?4"
        ))?
        .query_map(params![search, site, q.limit, q.offset as i64], |r| {
            r.get(0)
        })?
        .collect::<Result<_, _>>()?;
    let mut st = tx.prepare_cached(
        "SELECT c.id, c.name, c.uuid, c.site_code, c.last_seen,
                hw.version, hw.updated_at, sw.version, sw.updated_at,
                (SELECT count(*) FROM requests r WHERE r.client_id = c.id AND r.completed_at IS NULL)
         FROM clients c
         LEFT JOIN snapshots hw ON hw.client_id = c.id AND hw.class = 0
         LEFT JOIN snapshots sw ON sw.client_id = c.id AND sw.class = 1
         WHERE c.id = ?1",
    )?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let mut rows = st.query([id])?;
        // A client row is never deleted inside this read transaction, so every id is found.
        let Some(row) = rows.next()? else { continue };
        out.push((
            row.get(0)?,
            ClientSummary {
                name: name_col(row, 1)?,
                id: uuid_col(row, 2)?,
                site: site_col(row, 3)?,
                last_seen: ts(row.get(4)?),
                hw_version: row.get(5)?,
                hw_updated_at: ts(row.get(6)?),
                sw_version: row.get(7)?,
                sw_updated_at: ts(row.get(8)?),
                pending_requests: row.get(9)?,
            },
        ));
    }
    drop(st);
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
    let mut requests = Vec::new();
    {
        let mut st = tx.prepare_cached(&format!(
            "SELECT r.id, r.arg, r.requested_at, r.picked_up_at, r.completed_at, r.origin, r.route,
                    r.forwarded_at, r.forwarded_to, c.name, c.site_code
             FROM requests r JOIN clients c ON c.id = r.client_id
             WHERE {filter} ORDER BY r.id DESC LIMIT ?3 OFFSET ?4"
        ))?;
        let mut rows = st.query(params![state, class, q.limit, q.offset as i64])?;
        while let Some(row) = rows.next()? {
            requests.push(ClientRequest {
                client: name_col(row, 9)?,
                site: site_col(row, 10)?,
                request: request_view(row)?,
            });
        }
    }
    tx.commit()?;
    Ok(RequestPage {
        total: total as u64,
        offset: q.offset,
        requests,
    })
}

/// One client of this site by name with its snapshots decoded, plus its internal row id.
pub(super) fn client_view(
    conn: &Connection,
    site: &SiteCode,
    name: &ClientName,
) -> Result<Option<(i64, ClientView)>, StoreError> {
    match client_row_by_name(conn, site, name)? {
        Some(client) => client_view_of(conn, client),
        None => Ok(None),
    }
}

/// Any client this site holds (its own or one of a site below) by client id.
pub(super) fn client_view_by_id(
    conn: &Connection,
    client_id: Uuid,
) -> Result<Option<(i64, ClientView)>, StoreError> {
    match client_row(conn, client_id)? {
        Some(client) => client_view_of(conn, client),
        None => Ok(None),
    }
}

/// The view of the client with internal row id `client`.
fn client_view_of(conn: &Connection, client: i64) -> Result<Option<(i64, ClientView)>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT id, uuid, name, site_code, machine_id, enrolled_at, last_seen
         FROM clients WHERE id = ?1",
    )?;
    let mut rows = st.query([client])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let mut view = ClientView {
        name: name_col(row, 2)?,
        id: uuid_col(row, 1)?,
        site: site_col(row, 3)?,
        machine_id: row.get(4)?,
        enrolled_at: Timestamp(row.get(5)?),
        last_seen: ts(row.get(6)?),
        hw: None,
        sw: None,
        requests: Vec::new(),
        events: Vec::new(),
    };
    drop(rows);

    let mut st = conn.prepare_cached(
        "SELECT class, version, hash, full_at, updated_at, items FROM snapshots WHERE client_id = ?1",
    )?;
    let mut rows = st.query([client])?;
    while let Some(row) = rows.next()? {
        let ids = decode_ids(row.get_ref(5)?.as_blob()?)?;
        let snapshot = SnapshotView {
            version: row.get(1)?,
            hash: digest_col(row, 2)?,
            full_at: Timestamp(row.get(3)?),
            updated_at: Timestamp(row.get(4)?),
            items: load_items(conn, &ids)?,
        };
        match class_from_code(row.get(0)?)? {
            Class::Hw => view.hw = Some(snapshot),
            Class::Sw => view.sw = Some(snapshot),
        }
    }
    drop(rows);

    let mut st = conn.prepare_cached(
        "SELECT id, arg, requested_at, picked_up_at, completed_at, origin, route,
                forwarded_at, forwarded_to FROM requests
         WHERE client_id = ?1 AND kind = ?2 ORDER BY id DESC LIMIT ?3",
    )?;
    let mut rows = st.query(params![client, "resync", VIEW_LIMIT])?;
    while let Some(row) = rows.next()? {
        view.requests.push(request_view(row)?);
    }
    drop(rows);
    let mut rows = st.query(params![client, "event", VIEW_LIMIT])?;
    while let Some(row) = rows.next()? {
        let event = Event::parse(row.get_ref(1)?.as_str()?).ok_or_else(|| corrupt("event"))?;
        let (picked, done): (Option<i64>, Option<i64>) = (row.get(3)?, row.get(4)?);
        view.events.push(EventView {
            id: row.get(0)?,
            event,
            state: state_of(picked, done),
            requested_at: Timestamp(row.get(2)?),
            picked_up_at: ts(picked),
            completed_at: ts(done),
        });
    }
    Ok(Some((client, view)))
}

/// The items with these ids, keyed by item key.
pub(super) fn load_items(conn: &Connection, ids: &[i64]) -> Result<Items, StoreError> {
    let mut st = conn.prepare_cached("SELECT key, attrs FROM items WHERE id IN rarray(?1)")?;
    let mut rows = st.query([id_array(ids.iter().copied())])?;
    let mut items = Items::new();
    while let Some(row) = rows.next()? {
        items.insert(row.get(0)?, decode_attrs(row.get_ref(1)?.as_blob()?)?);
    }
    if items.len() != ids.len() {
        return Err(corrupt("snapshot item list"));
    }
    Ok(items)
}

/// The history of a client of this site by name, newest first.
pub(super) fn history(
    conn: &Connection,
    site: &SiteCode,
    name: &ClientName,
    query: &HistoryQuery,
) -> Result<Option<Vec<HistoryEntry>>, StoreError> {
    match client_row_by_name(conn, site, name)? {
        Some(client) => history_of(conn, client, query).map(Some),
        None => Ok(None),
    }
}

/// The history of any client this site holds by client id, newest first.
pub(super) fn history_by_id(
    conn: &Connection,
    client_id: Uuid,
    query: &HistoryQuery,
) -> Result<Option<Vec<HistoryEntry>>, StoreError> {
    match client_row(conn, client_id)? {
        Some(client) => history_of(conn, client, query).map(Some),
        None => Ok(None),
    }
}

fn history_of(
    conn: &Connection,
    client: i64,
    query: &HistoryQuery,
) -> Result<Vec<HistoryEntry>, StoreError> {
    let limit =
        i64::try_from(query.limit.unwrap_or(crate::DEFAULT_HISTORY_LIMIT)).unwrap_or(i64::MAX);
    let class = query.class.map(class_code);
    let since = query.since.map(|t| t.0);
    let mut st = conn.prepare_cached(
        "SELECT h.at, h.class, coalesce(n.key, o.key), o.attrs, n.attrs, h.full
         FROM history h
         LEFT JOIN items o ON o.id = h.old_item
         LEFT JOIN items n ON n.id = h.new_item
         WHERE h.client_id = ?1
           AND (?3 IS NULL OR h.class = ?3)
           AND (?4 IS NULL OR h.at >= ?4)
         ORDER BY h.id DESC LIMIT ?2",
    )?;
    let mut rows = st.query(params![client, limit, class, since])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let attrs = |i: usize| -> Result<_, StoreError> {
            row.get_ref(i)?
                .as_blob_or_null()?
                .map(decode_attrs)
                .transpose()
        };
        out.push(HistoryEntry {
            at: Timestamp(row.get(0)?),
            class: class_from_code(row.get(1)?)?,
            key: row.get(2)?,
            old: attrs(3)?,
            new: attrs(4)?,
            full: row.get(5)?,
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Software across clients (the index and the pages are in `crate::software`)

/// Offers every stored item to `f`, for a build of the software index.
pub(super) fn all_items(
    conn: &Connection,
    mut f: impl FnMut(i64, &[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut st = conn.prepare_cached("SELECT id, attrs FROM items")?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        f(r.get(0)?, r.get_ref(1)?.as_blob()?)?;
    }
    Ok(())
}

/// Offers the items with these ids to `f`.
pub(super) fn items_by_id(
    conn: &Connection,
    ids: &[i64],
    mut f: impl FnMut(i64, &[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let array = Rc::new(ids.iter().copied().map(Value::from).collect::<Vec<_>>());
    let mut st = conn.prepare_cached("SELECT id, attrs FROM items WHERE id IN rarray(?1)")?;
    let mut rows = st.query([array])?;
    while let Some(r) = rows.next()? {
        f(r.get(0)?, r.get_ref(1)?.as_blob()?)?;
    }
    Ok(())
}

/// Offers every client's software snapshot (row, version, item list) to `f`, by client row:
/// the index then appends each package's holders in order, which is much cheaper than
/// inserting them among others.
pub(super) fn software_lists(
    conn: &Connection,
    mut f: impl FnMut(i64, i64, &[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT client_id, version, items FROM snapshots WHERE class = 1 ORDER BY client_id",
    )?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        f(r.get(0)?, r.get(1)?, r.get_ref(2)?.as_blob()?)?;
    }
    Ok(())
}

/// The rows of the clients owned by `site`.
fn site_rows(conn: &Connection, site: &SiteCode) -> Result<roaring::RoaringBitmap, StoreError> {
    let mut st = conn.prepare_cached("SELECT id FROM clients WHERE site_code = ?1")?;
    let mut rows = st.query([site.as_str()])?;
    let mut out = roaring::RoaringBitmap::new();
    while let Some(r) = rows.next()? {
        let row: i64 = r.get(0)?;
        out.insert(u32::try_from(row).map_err(|_| corrupt("client row"))?);
    }
    Ok(out)
}

fn list_owner(r: &Row<'_>, first: usize) -> Result<crate::software::ListOwner, StoreError> {
    Ok(crate::software::ListOwner {
        name: ClientName::parse(r.get_ref(first)?.as_str()?).map_err(|_| corrupt("client name"))?,
        id: Uuid::from_slice(r.get_ref(first + 1)?.as_blob()?).map_err(|_| corrupt("client id"))?,
        site: SiteCode::parse(r.get_ref(first + 2)?.as_str()?).map_err(|_| corrupt("site code"))?,
    })
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
    if let Some(rows) = holders.rows(crate::software::DIRECT_HOLDERS) {
        let mut owners = FastMap::default();
        let mut st =
            tx.prepare_cached("SELECT name, uuid, site_code FROM clients WHERE id = ?1")?;
        for row in rows {
            let mut found = st.query([row])?;
            // A client removed since the index saw it no longer holds anything.
            if let Some(r) = found.next()? {
                owners.insert(row, list_owner(r, 0)?);
            }
        }
        return Ok(holders.page_from(&owners));
    }
    let mut collect = holders.collector();
    let mut st = tx
        .prepare_cached("SELECT id, name, uuid, site_code FROM clients ORDER BY name, site_code")?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        if !collect.offer(r.get(0)?, &list_owner(r, 1)?) {
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
