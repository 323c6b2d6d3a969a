//! The SQL of the hierarchy (SPEC section 6): the forwarding switch, the outbox a child drains
//! to its parent, the children's tokens, the sites known below this one, and applying the
//! changes a child forwards. Like `queries`, functions that write are only called by writer
//! jobs, so an accepted change and its outbox entry always share one transaction.
//!
//! A parent keeps the clients of every site below it in the same `clients` table as its own,
//! keyed by client id, with `site_code` naming the owner. A site code belongs to one branch of
//! the tree: `sites.via` records the direct child through which each code is reached, and a
//! child may only forward changes of clients owned by itself or by a site below it.

use invsync_proto::wire::{
    ClientRecord, DownRequest, ForwardOutcome, Forwarded, Queued, ReportBody, RequestState,
    RequestView, SiteStatus, split_origin,
};
use invsync_proto::{Class, ClientName, Delta, Digest, SiteCode, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use super::queries::{
    self, SnapshotRow, Stamp, corrupt, digest_col, id_array, load_items, name_col, site_col,
    snapshot_row, ts, uuid_col,
};
use super::writer::Batch;
use crate::codec::{class_code, class_from_code, decode_ids};
use crate::error::StoreError;
use crate::plan::{InputBody, Outcome, Plan, ReportInput};
use crate::{DownAccepted, OutboxStats};

/// `meta` keys of this module.
const FORWARDING: &str = "forwarding";
const LAST_FORWARDED: &str = "last_forwarded";

fn meta_value(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

fn set_meta_value(conn: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute([key, value])?;
    Ok(())
}

/// The `meta` key a write probe sets: its value is the time of the last probe.
const PROBED_AT: &str = "write_probe_at";

/// Records the time of a write probe: the smallest write that goes through a whole commit.
pub(super) fn set_probe_time(conn: &Connection, now: Timestamp) -> Result<(), StoreError> {
    set_meta_value(conn, PROBED_AT, &now.rfc3339())
}

// ---------------------------------------------------------------------------------------------
// Forwarding switch and outbox

/// Whether accepted changes go into the outbox. Read inside each writing transaction rather
/// than cached, so a switch made by another process holding the same file counts at once.
pub(super) fn forwarding(conn: &Connection) -> Result<bool, StoreError> {
    Ok(meta_value(conn, FORWARDING)?.as_deref() == Some("1"))
}

pub(super) fn set_forwarding(conn: &Connection, on: bool) -> Result<(), StoreError> {
    set_meta_value(conn, FORWARDING, if on { "1" } else { "0" })
}

/// One accepted change as the outbox records it.
pub(super) struct Entry<'a> {
    pub client: i64,
    /// The change as accepted: its class, hash and body (base version, removed keys).
    pub input: &'a ReportInput,
    pub version: i64,
    pub full_at: Timestamp,
    pub updated_at: Timestamp,
    /// The item ids of the body (`queries::Written::body_ids`).
    pub body_ids: &'a [u8],
    pub completed: &'a [RequestView],
}

// The JSON columns of the outbox. Written out per type because the store does not depend on
// serde itself, only on serde_json.

fn encode_error(e: serde_json::Error) -> StoreError {
    StoreError::Database(format!("cannot encode an outbox entry: {e}"))
}

/// A delta's removed keys, `NULL` when there are none (most deltas remove nothing).
fn encode_removed(keys: &[String]) -> Result<Option<String>, StoreError> {
    if keys.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(keys).map(Some).map_err(encode_error)
}

/// The requests a change completed, `NULL` when there are none (most changes complete none).
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
pub(super) fn enqueue(
    conn: &Connection,
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
    conn.prepare_cached(
        "INSERT INTO outbox (client_id, class, version, hash, full_at, updated_at, accepted_at,
                             base_version, items, removed, completed)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        e.client,
        class_code(e.input.class),
        e.version,
        e.input.hash.0.as_slice(),
        e.full_at.0,
        e.updated_at.0,
        accepted_at.0,
        base_version,
        e.body_ids,
        removed,
        encode_completed(e.completed)?,
    ])?;
    Ok(())
}

/// The oldest `limit` outbox entries, oldest first, with their bodies rebuilt from the items.
pub(super) fn outbox_batch(conn: &Connection, limit: usize) -> Result<Vec<Forwarded>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT o.seq, c.uuid, c.name, c.site_code, c.machine_id, c.enrolled_at,
                o.class, o.version, o.hash, o.full_at, o.updated_at,
                o.base_version, o.items, o.removed, o.completed
         FROM outbox o JOIN clients c ON c.id = o.client_id
         ORDER BY o.seq LIMIT ?1",
    )?;
    let mut rows = st.query([i64::try_from(limit).unwrap_or(i64::MAX)])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let items = load_items(conn, &decode_ids(row.get_ref(12)?.as_blob()?)?)?;
        let body = match row.get::<_, Option<i64>>(11)? {
            None => ReportBody::Full { items },
            Some(base_version) => ReportBody::Delta {
                base_version,
                delta: Delta {
                    upsert: items,
                    remove: decode_removed(row.get_ref(13)?.as_str_or_null()?)?,
                },
            },
        };
        out.push(Forwarded {
            seq: row.get(0)?,
            client: ClientRecord {
                id: uuid_col(row, 1)?,
                name: name_col(row, 2)?,
                site: site_col(row, 3)?,
                machine_id: row.get(4)?,
                enrolled_at: Timestamp(row.get(5)?),
            },
            class: class_from_code(row.get(6)?)?,
            version: row.get(7)?,
            hash: digest_col(row, 8)?,
            full_at: Timestamp(row.get(9)?),
            updated_at: Timestamp(row.get(10)?),
            body,
            completed: decode_completed(row.get_ref(14)?.as_str_or_null()?)?,
        });
    }
    Ok(out)
}

/// Removes acknowledged entries; an unknown sequence number is ignored (acknowledged twice).
/// The parent stored the changes of `stored` (applied, or already held), so the resync requests
/// they completed are now visible one level up: they are marked forwarded at `now` to `parent`
/// (its code when known). `refused` entries leave the outbox unmarked, since the parent stored
/// nothing of them.
pub(super) fn outbox_done(
    conn: &Connection,
    own: &SiteCode,
    stored: &[i64],
    refused: &[i64],
    parent: Option<&SiteCode>,
    now: Timestamp,
) -> Result<(), StoreError> {
    if stored.is_empty() && refused.is_empty() {
        return Ok(());
    }
    // Read while deleting: an entry's completed requests exist nowhere else once it is gone.
    // Most entries complete none (NULL), so this decodes next to nothing.
    let mut carried: Vec<(i64, Vec<RequestView>)> = Vec::new();
    {
        let mut st = conn.prepare_cached(
            "DELETE FROM outbox WHERE seq IN rarray(?1) RETURNING client_id, completed",
        )?;
        let mut rows = st.query([id_array(stored.iter().copied())])?;
        while let Some(row) = rows.next()? {
            if let Some(raw) = row.get_ref(1)?.as_str_or_null()? {
                carried.push((row.get(0)?, decode_completed(Some(raw))?));
            }
        }
    }
    if !refused.is_empty() {
        conn.prepare_cached("DELETE FROM outbox WHERE seq IN rarray(?1)")?
            .execute([id_array(refused.iter().copied())])?;
    }
    for (client, completed) in &carried {
        mark_forwarded(conn, own, *client, completed, parent, now)?;
    }
    set_meta_value(conn, LAST_FORWARDED, &now.0.to_string())
}

/// Marks the resync requests one acknowledged change completed as forwarded. The views name the
/// requests as the owning site knows them, so they are found here as `record_completed` found
/// them when it recorded them: by row id only for a request made here (no origin at the owner,
/// or an origin naming this site), otherwise by origin. Never by the bare id of another site,
/// which may well be the id of an unrelated request here. The first acknowledgement counts: an
/// entry acknowledged again (a batch resent after a lost answer) moves nothing.
fn mark_forwarded(
    conn: &Connection,
    own: &SiteCode,
    client: i64,
    completed: &[RequestView],
    parent: Option<&SiteCode>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let Some(owner) = conn
        .prepare_cached("SELECT site_code FROM clients WHERE id = ?1")?
        .query_row([client], |r| r.get::<_, String>(0))
        .optional()?
    else {
        return Ok(());
    };
    let parent = parent.map(SiteCode::as_str);
    for r in completed {
        let origin = r
            .origin
            .clone()
            .unwrap_or_else(|| format!("{owner}:{}", r.id));
        // Only complete resync requests of this client and class: a view naming another request
        // (forged or stale) marks nothing.
        match split_origin(&origin) {
            Some((site, id)) if &site == own => conn
                .prepare_cached(
                    "UPDATE requests SET forwarded_at = ?1, forwarded_to = ?2
                     WHERE id = ?3 AND client_id = ?4 AND kind = 'resync' AND arg = ?5
                       AND completed_at IS NOT NULL AND forwarded_at IS NULL",
                )?
                .execute(params![now.0, parent, id, client, r.class.as_str()])?,
            _ => conn
                .prepare_cached(
                    "UPDATE requests SET forwarded_at = ?1, forwarded_to = ?2
                     WHERE origin = ?3 AND client_id = ?4 AND kind = 'resync' AND arg = ?5
                       AND completed_at IS NOT NULL AND forwarded_at IS NULL",
                )?
                .execute(params![now.0, parent, origin, client, r.class.as_str()])?,
        };
    }
    Ok(())
}

/// Replaces every outbox entry of a client and class with one full entry of its current
/// snapshot, at the end of the outbox. The resync requests the dropped entries completed move
/// to the new entry, so the parent still learns of them, and they are marked forwarded when
/// that entry is acknowledged.
pub(super) fn outbox_resync(
    conn: &Connection,
    client_id: Uuid,
    class: Class,
) -> Result<bool, StoreError> {
    let Some(client) = queries::client_row(conn, client_id)? else {
        return Ok(false);
    };
    let code = class_code(class);
    let snapshot = conn
        .prepare_cached(
            "SELECT version, hash, full_at, updated_at, items FROM snapshots
             WHERE client_id = ?1 AND class = ?2",
        )?
        .query_row(params![client, code], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Vec<u8>>(4)?,
            ))
        })
        .optional()?;
    let Some((version, hash, full_at, updated_at, items)) = snapshot else {
        return Ok(false);
    };
    let mut oldest: Option<i64> = None;
    let mut completed: Vec<RequestView> = Vec::new();
    {
        let mut st = conn.prepare_cached(
            "SELECT accepted_at, completed FROM outbox WHERE client_id = ?1 AND class = ?2 ORDER BY seq",
        )?;
        let mut rows = st.query(params![client, code])?;
        while let Some(row) = rows.next()? {
            let at: i64 = row.get(0)?;
            oldest = Some(oldest.map_or(at, |o| o.min(at)));
            for r in decode_completed(row.get_ref(1)?.as_str_or_null()?)? {
                if !completed.iter().any(|c| c.id == r.id) {
                    completed.push(r);
                }
            }
        }
    }
    conn.prepare_cached("DELETE FROM outbox WHERE client_id = ?1 AND class = ?2")?
        .execute(params![client, code])?;
    // The replacement has waited as long as the oldest change it replaces; with none, it stands
    // for the snapshot's last change.
    let accepted_at = oldest.unwrap_or(updated_at);
    conn.prepare_cached(
        "INSERT INTO outbox (client_id, class, version, hash, full_at, updated_at, accepted_at,
                             base_version, items, removed, completed)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, ?8, NULL, ?9)",
    )?
    .execute(params![
        client,
        code,
        version,
        hash,
        full_at,
        updated_at,
        accepted_at,
        items,
        encode_completed(&completed)?,
    ])?;
    Ok(true)
}

pub(super) fn outbox_stats(conn: &Connection) -> Result<OutboxStats, StoreError> {
    let (depth, oldest): (i64, Option<i64>) = conn
        .prepare_cached("SELECT count(*), min(accepted_at) FROM outbox")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let last_forwarded = match meta_value(conn, LAST_FORWARDED)? {
        None => None,
        Some(v) => Some(Timestamp(
            v.parse().map_err(|_| corrupt("last forwarding time"))?,
        )),
    };
    Ok(OutboxStats {
        depth,
        oldest: ts(oldest),
        last_forwarded,
    })
}

// ---------------------------------------------------------------------------------------------
// Children and the sites below

/// The direct child through which `code` is reached according to `sites`, if it reported.
fn recorded_via(conn: &Connection, code: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT via FROM sites WHERE code = ?1")?
        .query_row([code], |r| r.get(0))
        .optional()?)
}

fn has_child_token(conn: &Connection, code: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM child_tokens WHERE code = ?1")?
        .query_row([code], |_| Ok(()))
        .optional()?
        .is_some())
}

fn own_code_in_use(code: &SiteCode) -> StoreError {
    StoreError::CodeInUse(format!("{code} is this site's own code"))
}

pub(super) fn set_child_token(
    conn: &Connection,
    own: &SiteCode,
    code: &SiteCode,
    key_hash: Digest,
    now: Timestamp,
) -> Result<(), StoreError> {
    if code == own {
        return Err(own_code_in_use(code));
    }
    if let Some(via) = recorded_via(conn, code.as_str())?
        && via != code.as_str()
    {
        return Err(StoreError::CodeInUse(format!(
            "{code} is already the code of a site reached through child {via}"
        )));
    }
    conn.prepare_cached(
        "INSERT INTO child_tokens (code, key_hash, created_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (code) DO UPDATE SET key_hash = excluded.key_hash, created_at = excluded.created_at",
    )?
    .execute(params![code.as_str(), key_hash.0.as_slice(), now.0])?;
    Ok(())
}

pub(super) fn child_key_hash(
    conn: &Connection,
    code: &SiteCode,
) -> Result<Option<Digest>, StoreError> {
    let mut st = conn.prepare_cached("SELECT key_hash FROM child_tokens WHERE code = ?1")?;
    let mut rows = st.query([code.as_str()])?;
    match rows.next()? {
        Some(row) => Ok(Some(digest_col(row, 0)?)),
        None => Ok(None),
    }
}

/// Why `code` cannot be recorded as reached through `via`, if it cannot.
fn code_conflict(
    conn: &Connection,
    own: &SiteCode,
    via: &SiteCode,
    code: &SiteCode,
) -> Result<Option<StoreError>, StoreError> {
    if code == own {
        return Ok(Some(own_code_in_use(code)));
    }
    if let Some(other) = recorded_via(conn, code.as_str())?
        && other != via.as_str()
    {
        return Ok(Some(StoreError::CodeInUse(format!(
            "{code} is already the code of a site reached through child {other}, not {via}"
        ))));
    }
    if code != via && has_child_token(conn, code.as_str())? {
        return Ok(Some(StoreError::CodeInUse(format!(
            "{code} is a direct child of this site, not a site below {via}"
        ))));
    }
    Ok(None)
}

/// Records what `via` reported of itself and of the sites below it; all or nothing (the writer
/// job fails as a whole, which undoes its savepoint).
pub(super) fn record_site_status(
    conn: &Connection,
    own: &SiteCode,
    via: &SiteCode,
    statuses: &[SiteStatus],
    now: Timestamp,
) -> Result<(), StoreError> {
    if let Some(e) = code_conflict(conn, own, via, via)? {
        return Err(e);
    }
    let mut st = conn.prepare_cached(
        "INSERT INTO sites (code, name, parent, url, clients, outbox_depth, outbox_oldest,
                           last_forwarded, accepts_parent_requests, reported_at, via, recorded_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (code) DO UPDATE SET name = excluded.name, parent = excluded.parent,
             url = excluded.url, clients = excluded.clients, outbox_depth = excluded.outbox_depth,
             outbox_oldest = excluded.outbox_oldest, last_forwarded = excluded.last_forwarded,
             accepts_parent_requests = excluded.accepts_parent_requests,
             reported_at = excluded.reported_at, via = excluded.via, recorded_at = excluded.recorded_at",
    )?;
    for s in statuses {
        if let Some(e) = code_conflict(conn, own, via, &s.code)? {
            return Err(e);
        }
        st.execute(params![
            s.code.as_str(),
            s.name,
            s.parent.as_ref().map(SiteCode::as_str),
            s.url,
            s.clients,
            s.outbox_depth,
            s.outbox_oldest.map(|t| t.0),
            s.last_forwarded.map(|t| t.0),
            s.accepts_parent_requests,
            s.reported_at.0,
            via.as_str(),
            now.0,
        ])?;
    }
    Ok(())
}

pub(super) fn sites(conn: &Connection) -> Result<Vec<SiteStatus>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT code, name, parent, url, clients, outbox_depth, outbox_oldest, last_forwarded,
                accepts_parent_requests, reported_at
         FROM sites ORDER BY code",
    )?;
    let mut rows = st.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let parent = match row.get_ref(2)?.as_str_or_null()? {
            None => None,
            Some(p) => Some(SiteCode::parse(p).map_err(|_| corrupt("site code"))?),
        };
        out.push(SiteStatus {
            code: site_col(row, 0)?,
            name: row.get(1)?,
            parent,
            url: row.get(3)?,
            clients: row.get(4)?,
            outbox_depth: row.get(5)?,
            outbox_oldest: ts(row.get(6)?),
            last_forwarded: ts(row.get(7)?),
            accepts_parent_requests: row.get(8)?,
            reported_at: Timestamp(row.get(9)?),
        });
    }
    Ok(out)
}

/// The direct child through which `code` is reached: as recorded, or the code itself for a
/// child that holds a token but has not reported yet.
pub(super) fn site_via(conn: &Connection, code: &SiteCode) -> Result<Option<SiteCode>, StoreError> {
    if let Some(via) = recorded_via(conn, code.as_str())? {
        return Ok(Some(
            SiteCode::parse(&via).map_err(|_| corrupt("site code"))?,
        ));
    }
    Ok(has_child_token(conn, code.as_str())?.then(|| code.clone()))
}

/// Every client of that name this site holds, with its owner and the owner's URL where known.
pub(super) fn find_clients(
    conn: &Connection,
    name: &ClientName,
) -> Result<Vec<invsync_proto::wire::Owner>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT c.uuid, c.name, c.site_code, s.url FROM clients c
         LEFT JOIN sites s ON s.code = c.site_code
         WHERE c.name = ?1 ORDER BY c.site_code",
    )?;
    let mut rows = st.query([name.as_str()])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(invsync_proto::wire::Owner {
            id: uuid_col(row, 0)?,
            client: name_col(row, 1)?,
            site: site_col(row, 2)?,
            url: row.get(3)?,
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Applying forwarded changes

/// A forwarded change apart from its body (which travels as a prepared `ReportInput`).
#[derive(Debug, Clone)]
pub(crate) struct ForwardMeta {
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

/// Whether a change of a client owned by `owner` may come through the child `via`: the owner
/// must be that child or a site it reported below it, never this site.
fn route_refusal(
    conn: &Connection,
    own: &SiteCode,
    via: &SiteCode,
    owner: &SiteCode,
) -> Result<Option<String>, StoreError> {
    if owner == own || via == own {
        return Ok(Some(format!(
            "{owner} is this site's own code; a child cannot forward changes of this site's clients"
        )));
    }
    let reached = recorded_via(conn, owner.as_str())?;
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

/// The checks of a forwarded change that need no plan, shared by the reading and the writing
/// half of `apply_forwarded`.
pub(super) enum Verdict {
    Answer(ForwardOutcome),
    /// Go on: the client's stored snapshot of the class, if any.
    Proceed(Option<SnapshotRow>),
}

pub(super) fn check_forwarded(
    conn: &Connection,
    own: &SiteCode,
    via: &SiteCode,
    meta: &ForwardMeta,
    input: &ReportInput,
) -> Result<Verdict, StoreError> {
    let owner = &meta.client.site;
    if let Some(reason) = route_refusal(conn, own, via, owner)? {
        return Ok(Verdict::Answer(meta.refused(reason)));
    }
    let known = conn
        .prepare_cached("SELECT id, site_code FROM clients WHERE uuid = ?1")?
        .query_row([meta.client.id.as_bytes().as_slice()], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })
        .optional()?;
    let row = match known {
        // Client ids are issued by the owner at enrollment; one id under two owners is a forged
        // or corrupt record, and taking it would move a client between branches of the tree.
        Some((_, site)) if site != owner.as_str() => {
            return Ok(Verdict::Answer(meta.refused(format!(
                "client {} belongs to site {site}, not {owner}",
                meta.client.id
            ))));
        }
        Some((client, _)) => snapshot_row(conn, client, input.class)?,
        None => None,
    };
    if let Some(r) = &row
        && ((r.version == meta.version && r.hash == input.hash)
            || r.has_forwarded(meta.version, &input.hash))
    {
        return Ok(Verdict::Answer(ForwardOutcome::Duplicate { seq: meta.seq }));
    }
    Ok(Verdict::Proceed(row))
}

/// Removes a client and everything stored of it.
fn delete_client(conn: &Connection, batch: &mut Batch<'_>, client: i64) -> Result<(), StoreError> {
    if batch.software.is_some()
        && let Some(row) = queries::snapshot_row(conn, client, Class::Sw)?
    {
        let removed = crate::codec::decode_ids(&row.items)?;
        let change = crate::software::change(client, Some(row.version), None, removed, Vec::new())?;
        queries::software_changed(conn, batch, change)?;
    }
    for sql in [
        "DELETE FROM outbox WHERE client_id = ?1",
        "DELETE FROM history WHERE client_id = ?1",
        "DELETE FROM requests WHERE client_id = ?1",
        "DELETE FROM snapshots WHERE client_id = ?1",
        "DELETE FROM clients WHERE id = ?1",
    ] {
        conn.prepare_cached(sql)?.execute([client])?;
    }
    Ok(())
}

/// The row of a forwarded client, created or brought up to date from its record. A client of
/// another id holding the same name at the same owner is a stale record (the owner re-created
/// its client) and is removed first, since names are unique per owning site.
fn ensure_client(
    conn: &Connection,
    batch: &mut Batch<'_>,
    record: &ClientRecord,
) -> Result<i64, StoreError> {
    let id_bytes = record.id.as_bytes().as_slice();
    let stale: Option<(i64, Vec<u8>)> = conn
        .prepare_cached(
            "SELECT id, uuid FROM clients WHERE site_code = ?1 AND name = ?2 AND uuid != ?3",
        )?
        .query_row(
            params![record.site.as_str(), record.name.as_str(), id_bytes],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((row, uuid)) = stale {
        delete_client(conn, batch, row)?;
        let old = Uuid::from_slice(&uuid).map_err(|_| corrupt("client id"))?;
        tracing::info!(
            site = %record.site,
            client = %record.name,
            old_id = %old,
            new_id = %record.id,
            "Replaced a stale client record: its owning site now has another client of that name."
        );
    }
    let existing = queries::client_row(conn, record.id)?;
    match existing {
        Some(row) => {
            conn.prepare_cached(
                "UPDATE clients SET name = ?1, machine_id = ?2, enrolled_at = ?3 WHERE id = ?4",
            )?
            .execute(params![
                record.name.as_str(),
                record.machine_id,
                record.enrolled_at.0,
                row
            ])?;
            Ok(row)
        }
        None => {
            // A key hash of zeros: such a client never authenticates here (`client_auth` only
            // looks at this site's own clients, and no key hashes to zeros).
            conn.prepare_cached(
                "INSERT INTO clients (uuid, name, site_code, machine_id, key_hash, enrolled_at)
                 VALUES (?1, ?2, ?3, ?4, zeroblob(32), ?5)",
            )?
            .execute(params![
                id_bytes,
                record.name.as_str(),
                record.site.as_str(),
                record.machine_id,
                record.enrolled_at.0
            ])?;
            Ok(conn.last_insert_rowid())
        }
    }
}

/// Records the resync requests a forwarded change completed at the owner. A request is known
/// across the tree by its origin (`RequestView::origin`; `<owner>:<id at the owner>` for one made
/// at the owner itself):
/// * a request made here and routed down (origin `<this site>:<id>`) completes in place, with
///   the owner's times;
/// * a request routed on through here (a row holding that origin) completes likewise;
/// * any other is recorded as a complete request of the client, once per origin, so a change
///   forwarded twice records it once.
fn record_completed(
    conn: &Connection,
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
        // A request is forwarded because it completed; without a time it completed with the
        // change that carries it.
        let done = r.completed_at.unwrap_or(at).0;
        let picked = r.picked_up_at.map(|t| t.0);
        if let Some((site, id)) = split_origin(&origin)
            && &site == own
        {
            // Only a routed request of this client and class: a child cannot complete another
            // request of this site by naming its id.
            let n = conn
                .prepare_cached(
                    "UPDATE requests SET picked_up_at = coalesce(?1, ?2), completed_at = ?2
                     WHERE id = ?3 AND client_id = ?4 AND kind = 'resync' AND arg = ?5
                       AND route IS NOT NULL AND completed_at IS NULL",
                )?
                .execute(params![picked, done, id, client, r.class.as_str()])?;
            if n == 1 {
                tracing::debug!(id, %owner, "A request routed down from this site completed at its owner.");
            }
            continue;
        }
        let relayed = conn
            .prepare_cached(
                "UPDATE requests SET picked_up_at = coalesce(?1, ?2), completed_at = ?2
                 WHERE origin = ?3 AND client_id = ?4 AND kind = 'resync' AND completed_at IS NULL",
            )?
            .execute(params![picked, done, origin, client])?;
        if relayed > 0 {
            continue;
        }
        conn.prepare_cached(
            "INSERT INTO requests (client_id, kind, arg, requested_at, picked_up_at, completed_at, origin)
             VALUES (?1, 'resync', ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (origin) WHERE origin IS NOT NULL DO NOTHING",
        )?
        .execute(params![
            client,
            r.class.as_str(),
            r.requested_at.0,
            picked,
            done,
            origin,
        ])?;
    }
    Ok(())
}

/// Applies a forwarded change inside the writer's transaction: the checks again (a plan made
/// beforehand saw committed data that may have moved; without one, the writer plans), then the
/// client, snapshot, history, completed requests and, when this site forwards too, the outbox
/// entry.
pub(super) fn apply_forwarded(
    conn: &Connection,
    batch: &mut Batch<'_>,
    via: &SiteCode,
    meta: &ForwardMeta,
    input: &ReportInput,
    planned: Option<Plan>,
    now: Timestamp,
) -> Result<ForwardOutcome, StoreError> {
    let own = batch.shared.site.code.clone();
    let row = match check_forwarded(conn, &own, via, meta, input)? {
        Verdict::Answer(outcome) => return Ok(outcome),
        Verdict::Proceed(row) => row,
    };
    let change = match queries::replan_if_moved(conn, batch, input, row.as_ref(), planned)? {
        Outcome::Resync(reason) => return Ok(meta.resync(input.class, reason)),
        Outcome::Write(change) => change,
    };
    let client = ensure_client(conn, batch, &meta.client)?;
    let stamp = Stamp {
        version: Some(meta.version),
        at: meta.updated_at,
        full_at: meta.full_at,
        remember: (
            queries::forwarded_mark(meta.version, &input.hash),
            queries::RECENT_FORWARDED,
        ),
    };
    let written = queries::write_change(conn, batch, client, input, row.as_ref(), change, &stamp)?;
    record_completed(
        conn,
        &own,
        client,
        &meta.client.site,
        &meta.completed,
        meta.updated_at,
    )?;
    if forwarding(conn)? {
        enqueue(
            conn,
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
        )?;
    }
    Ok(ForwardOutcome::Applied { seq: meta.seq })
}

// ---------------------------------------------------------------------------------------------
// Requests routed down the tree (`invsync --via-child`)

/// The row id, name and owner of any client this site holds, by client id.
fn client_owner(
    conn: &Connection,
    client_id: Uuid,
) -> Result<Option<(i64, ClientName, SiteCode)>, StoreError> {
    let mut st = conn.prepare_cached("SELECT id, name, site_code FROM clients WHERE uuid = ?1")?;
    let mut rows = st.query([client_id.as_bytes().as_slice()])?;
    match rows.next()? {
        Some(row) => Ok(Some((row.get(0)?, name_col(row, 1)?, site_col(row, 2)?))),
        None => Ok(None),
    }
}

/// Queues a resync request for a client of a site below, to be routed down to its owner, unless
/// an identical routed request is still pending here. It stays pending until the full report
/// that completes it at the owner is forwarded up: this site cannot see the owner's agent pick it
/// up.
pub(super) fn queue_routed(
    conn: &Connection,
    own: &SiteCode,
    client_id: Uuid,
    class: Class,
    now: Timestamp,
) -> Result<Queued, StoreError> {
    let Some((client, name, owner)) = client_owner(conn, client_id)? else {
        return Err(StoreError::UnknownClient {
            name: client_id.to_string(),
        });
    };
    if &owner == own {
        return Err(StoreError::Refused(format!(
            "{name} is this site's own client; its requests are queued here, not routed"
        )));
    }
    let created: Option<i64> = conn
        .prepare_cached(
            "INSERT INTO requests (client_id, kind, arg, requested_at, route)
             VALUES (?1, 'resync', ?2, ?3, ?4)
             ON CONFLICT (client_id, kind, arg)
                 WHERE picked_up_at IS NULL AND completed_at IS NULL AND origin IS NULL
             DO NOTHING RETURNING id",
        )?
        .query_row(
            params![client, class.as_str(), now.0, owner.as_str()],
            |r| r.get(0),
        )
        .optional()?;
    let (id, requested_at, created) = match created {
        Some(id) => (id, now, true),
        None => {
            let (id, at) = conn
                .prepare_cached(
                    "SELECT id, requested_at FROM requests
                     WHERE client_id = ?1 AND kind = 'resync' AND arg = ?2
                       AND picked_up_at IS NULL AND completed_at IS NULL AND origin IS NULL",
                )?
                .query_row(params![client, class.as_str()], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                })?;
            (id, Timestamp(at), false)
        }
    };
    Ok(Queued {
        id,
        client: name,
        created,
        state: RequestState::Pending,
        requested_at,
        routed_to: Some(owner),
    })
}

/// A routed request as it travels down, with its row id here.
pub(super) struct Routed {
    pub id: i64,
    pub down: DownRequest,
}

/// The routed requests not yet complete whose owner is reached through the child `via` and that
/// were not delivered since `due` (never, or at or before that time).
pub(super) fn routed_due(
    conn: &Connection,
    own: &SiteCode,
    via: &SiteCode,
    due: Timestamp,
) -> Result<Vec<Routed>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT r.id, r.origin, c.uuid, r.arg FROM requests r JOIN clients c ON c.id = r.client_id
         WHERE r.route IS NOT NULL AND r.completed_at IS NULL
           AND r.route IN (SELECT code FROM sites WHERE via = ?1)
           AND (r.delivered_at IS NULL OR r.delivered_at <= ?2)
         ORDER BY r.id",
    )?;
    let mut rows = st.query(params![via.as_str(), due.0])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        // A request made here goes down under this site's id; one routed on through here keeps
        // the origin it came with, so the owner's answer finds the site that asked.
        let (origin_site, origin_id) = match row.get_ref(1)?.as_str_or_null()? {
            None => (own.clone(), id),
            Some(raw) => split_origin(raw).ok_or_else(|| corrupt("request origin"))?,
        };
        let class =
            Class::parse(row.get_ref(3)?.as_str()?).ok_or_else(|| corrupt("request class"))?;
        out.push(Routed {
            id,
            down: DownRequest {
                origin_id,
                origin_site,
                client: uuid_col(row, 2)?,
                class,
            },
        });
    }
    Ok(out)
}

/// Records that these routed requests were delivered now.
pub(super) fn mark_delivered(
    conn: &Connection,
    ids: &[i64],
    now: Timestamp,
) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE requests SET delivered_at = ?1 WHERE id IN rarray(?2)")?
        .execute(params![now.0, id_array(ids.iter().copied())])?;
    Ok(())
}

/// Takes in a request the parent routed down: queued for this site's own client when
/// `accept_own`, routed on towards the owner for a client of a site below, once per origin.
pub(super) fn accept_down(
    conn: &Connection,
    own: &SiteCode,
    req: &DownRequest,
    accept_own: bool,
    now: Timestamp,
) -> Result<DownAccepted, StoreError> {
    if &req.origin_site == own {
        // Requests only travel down; one claiming to come from here went round in a circle.
        return Ok(DownAccepted::Refused(format!(
            "the request claims to come from this site {own}"
        )));
    }
    let Some((client, name, owner)) = client_owner(conn, req.client)? else {
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
    let created: Option<i64> = conn
        .prepare_cached(
            "INSERT INTO requests (client_id, kind, arg, requested_at, origin, route)
             VALUES (?1, 'resync', ?2, ?3, ?4, ?5)
             ON CONFLICT (origin) WHERE origin IS NOT NULL DO NOTHING RETURNING id",
        )?
        .query_row(
            params![
                client,
                req.class.as_str(),
                now.0,
                origin,
                route.as_ref().map(SiteCode::as_str)
            ],
            |r| r.get(0),
        )
        .optional()?;
    let (id, created) = match created {
        Some(id) => (id, true),
        None => {
            let id = conn
                .prepare_cached("SELECT id FROM requests WHERE origin = ?1")?
                .query_row([&origin], |r| r.get(0))?;
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
