//! The SQL of the hierarchy (SPEC section 6) on SQLite: the outbox a child drains to its
//! parent, the children's tokens, the sites known below this one, applying the changes a child
//! forwards and the resync requests routed down the tree. The rules are the store's
//! `hierarchy` module's; this one fetches the rows they need and writes what they decide. Like
//! `queries`, functions that write are only called by writer jobs, so an accepted change and
//! its outbox entry always share one transaction.

use invsync_proto::wire::{
    ClientRecord, Deleted, DownRequest, ForwardOutcome, Forwarded, Owner, Queued, RequestView,
    SiteStatus,
};
use invsync_proto::{Class, ClientName, Digest, SiteCode, Timestamp};
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use uuid::Uuid;

use super::outbox::{enqueue, first_int, forwarding, meta_value, run, set_meta_value};
use super::queries::{self, SnapshotRow, id_array, load_items, snapshot_row};
use super::writer::Batch;
use crate::codec::{class_code, decode_ids};
use crate::error::StoreError;
use crate::exec::Arg;
use crate::hierarchy::{
    self as core, Acked, ChildToken, Completion, Delivery, ForwardMeta, LAST_FORWARDED, RouteDown,
    SiteReport, TakeDown, Target, Tree, sql,
};
use crate::lifecycle;
use crate::plan::{Outcome, Plan, ReportInput};
use crate::rows::{self, Cols};
use crate::{DownAccepted, OutboxStats};

// ---------------------------------------------------------------------------------------------
// The outbox

/// The oldest `limit` outbox entries, oldest first, with their bodies rebuilt from the items.
pub(super) fn outbox_batch(conn: &Connection, limit: usize) -> Result<Vec<Forwarded>, StoreError> {
    let mut st = conn.prepare_cached(sql::OUTBOX_BATCH)?;
    let mut rows = st.query([i64::try_from(limit).unwrap_or(i64::MAX)])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let items = load_items(conn, &decode_ids(row.blob(12)?)?)?;
        out.push(core::forwarded(row, items)?);
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
    acked: &Acked,
) -> Result<(), StoreError> {
    // Read while deleting: an entry's completed requests exist nowhere else once it is gone.
    // Most entries complete none (NULL), so this decodes next to nothing.
    let mut carried: Vec<(i64, Vec<RequestView>)> = Vec::new();
    {
        let mut st = conn.prepare_cached(
            "DELETE FROM outbox WHERE seq IN rarray(?1) RETURNING client_id, completed",
        )?;
        let mut rows = st.query([id_array(acked.stored.iter().copied())])?;
        while let Some(row) = rows.next()? {
            if let Some(raw) = row.opt_text(1)? {
                carried.push((row.int(0)?, core::decode_completed(Some(raw))?));
            }
        }
    }
    if !acked.refused.is_empty() {
        conn.prepare_cached("DELETE FROM outbox WHERE seq IN rarray(?1)")?
            .execute([id_array(acked.refused.iter().copied())])?;
    }
    for (client, completed) in &carried {
        mark_forwarded(conn, own, *client, completed, acked)?;
    }
    set_meta_value(conn, LAST_FORWARDED, &acked.now.0.to_string())
}

/// Marks the resync requests one acknowledged change completed as forwarded, found as
/// `record_completed` found them (`core::target`). The first acknowledgement counts: an entry
/// acknowledged again (a batch resent after a lost answer) moves nothing, and a view naming
/// another request (forged or stale) marks nothing.
fn mark_forwarded(
    conn: &Connection,
    own: &SiteCode,
    client: i64,
    completed: &[RequestView],
    acked: &Acked,
) -> Result<(), StoreError> {
    let Some(owner) = conn
        .prepare_cached("SELECT site_code FROM clients WHERE id = ?1")?
        .query_row([client], |r| r.get::<_, String>(0))
        .optional()?
    else {
        return Ok(());
    };
    for found in core::forwarded_targets(own, &owner, completed) {
        let (sql, args) = core::forwarded_args(acked, client, &found);
        run(conn, sql, &args)?;
    }
    Ok(())
}

/// Replaces every outbox entry of a client and class with one full entry of its current
/// snapshot, at the end of the outbox (`core::resync_entry`).
pub(super) fn outbox_resync(
    conn: &Connection,
    client_id: Uuid,
    class: Class,
) -> Result<bool, StoreError> {
    let Some(client) = queries::client_row(conn, client_id)? else {
        return Ok(false);
    };
    let code = class_code(class);
    let dropped = conn
        .prepare_cached(
            "SELECT accepted_at, completed FROM outbox WHERE client_id = ?1 AND class = ?2 ORDER BY seq",
        )?
        .query_map(params![client, code], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    let (accepted_at, completed) = core::resync_entry(&dropped)?;
    let (client, class) = (Arg::Int(client), Arg::Class(class));
    run(conn, sql::OUTBOX_DROP, &[client, class])?;
    let (at, done) = (Arg::OptInt(accepted_at), Arg::OptText(completed.as_deref()));
    let appended = run(conn, sql::OUTBOX_RESYNC, &[at, done, client, class])?;
    Ok(appended == 1)
}

pub(super) fn outbox_stats(conn: &Connection) -> Result<OutboxStats, StoreError> {
    let (depth, oldest): (i64, Option<i64>) = conn
        .prepare_cached("SELECT count(*), min(accepted_at) FROM outbox")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(OutboxStats {
        depth,
        oldest: oldest.map(Timestamp),
        last_forwarded: core::last_forwarded(meta_value(conn, LAST_FORWARDED)?.as_deref())?,
    })
}

// ---------------------------------------------------------------------------------------------
// Children and the sites below

/// Where `code` stands in the tree (`sql::TREE_OF`): the child it is reached through, and
/// whether it is a child with a token.
fn tree_of(conn: &Connection, code: &str) -> Result<Tree, StoreError> {
    let mut st = conn.prepare_cached(sql::TREE_OF)?;
    Ok(st.query_row([code], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

pub(super) fn set_child_token(
    conn: &Connection,
    own: &SiteCode,
    token: &ChildToken,
) -> Result<(), StoreError> {
    let code = &token.code;
    let (recorded, _) = tree_of(conn, code.as_str())?;
    if let Some(e) = core::child_token_conflict(own, code, recorded.as_deref()) {
        return Err(e);
    }
    run(conn, sql::CHILD_TOKEN_UPSERT, &token.args())?;
    Ok(())
}

pub(super) fn child_key_hash(
    conn: &Connection,
    code: &SiteCode,
) -> Result<Option<Digest>, StoreError> {
    let mut st = conn.prepare_cached("SELECT key_hash FROM child_tokens WHERE code = ?1")?;
    let mut rows = st.query([code.as_str()])?;
    rows.next()?.map(|row| row.digest(0)).transpose()
}

fn code_conflict(
    conn: &Connection,
    own: &SiteCode,
    via: &SiteCode,
    code: &SiteCode,
) -> Result<Option<StoreError>, StoreError> {
    let tree = tree_of(conn, code.as_str())?;
    Ok(core::code_conflict(own, via, code, tree))
}

/// Records what `via` reported of itself and of the sites below it; all or nothing (the writer
/// job fails as a whole, which undoes its savepoint).
pub(super) fn record_site_status(
    conn: &Connection,
    own: &SiteCode,
    report: &SiteReport,
) -> Result<(), StoreError> {
    let (via, now) = (&report.via, report.now);
    if let Some(e) = code_conflict(conn, own, via, via)? {
        return Err(e);
    }
    for s in &report.statuses {
        if let Some(e) = code_conflict(conn, own, via, &s.code)? {
            return Err(e);
        }
        run(conn, sql::SITE_UPSERT, &core::site_args(s, via, now))?;
    }
    Ok(())
}

pub(super) fn sites(conn: &Connection) -> Result<Vec<SiteStatus>, StoreError> {
    let mut st = conn.prepare_cached(sql::SITES)?;
    let mut rows = st.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(core::site_status(row)?);
    }
    Ok(out)
}

pub(super) fn site_via(conn: &Connection, code: &SiteCode) -> Result<Option<SiteCode>, StoreError> {
    core::site_via(code, tree_of(conn, code.as_str())?)
}

/// How many clients this site owns itself (a child's status counts them).
pub(super) fn own_clients(conn: &Connection, own: &SiteCode) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM clients WHERE site_code = ?1 AND deleted_at IS NULL")?
        .query_row([own.as_str()], |r| r.get(0))?)
}

/// Every client of that name this site holds, with its owner and the owner's URL where known.
pub(super) fn find_clients(conn: &Connection, name: &ClientName) -> Result<Vec<Owner>, StoreError> {
    let mut st = conn.prepare_cached(sql::FIND_CLIENTS)?;
    let mut rows = st.query([name.as_str()])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(core::owner(row)?);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Applying forwarded changes

/// A forwarded change on its way to the writer, planned by the reading half or not.
pub(super) struct ForwardJob {
    pub via: SiteCode,
    pub meta: ForwardMeta,
    pub input: ReportInput,
    pub planned: Option<Plan>,
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
    job: &ForwardJob,
) -> Result<Verdict, StoreError> {
    let (via, meta, input) = (&job.via, &job.meta, &job.input);
    let (reached, _) = tree_of(conn, meta.client.site.as_str())?;
    let known: Option<(i64, String)> = conn
        .prepare_cached(sql::CLIENT_SITE)?
        .query_row([Arg::Uuid(meta.client.id)], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let held_by = known.as_ref().map(|(_, site)| site.as_str());
    if let Some(refused) = core::refusal(own, via, meta, reached.as_deref(), held_by) {
        return Ok(Verdict::Answer(refused));
    }
    let row = match known {
        Some((client, _)) => snapshot_row(conn, client, input.class)?,
        None => None,
    };
    if let Some(dup) = core::resent(meta, input, row.as_ref()) {
        return Ok(Verdict::Answer(dup));
    }
    Ok(Verdict::Proceed(row))
}

/// Removes a client and everything stored of it.
fn delete_client(conn: &Connection, batch: &mut Batch<'_>, client: i64) -> Result<(), StoreError> {
    if batch.software.is_some()
        && let Some(row) = snapshot_row(conn, client, Class::Sw)?
    {
        let removed = decode_ids(&row.items)?;
        let change = crate::software::change(client, Some(row.version), None, removed, Vec::new())?;
        queries::software_changed(conn, batch, change)?;
    }
    for sql in sql::DELETE_CLIENT {
        conn.prepare_cached(sql)?.execute([client])?;
    }
    Ok(())
}

/// The row of a forwarded client, created or brought up to date from its record
/// (`sql::ENSURE_CLIENT`). A client of another id holding the same name at the same owner is a
/// stale record (the owner re-created its client) and is removed first, since names are unique
/// per owning site.
fn ensure_client(
    conn: &Connection,
    batch: &mut Batch<'_>,
    record: &ClientRecord,
) -> Result<i64, StoreError> {
    let (stale_args, upsert) = core::client_args(record);
    let stale: Option<(i64, Vec<u8>)> = conn
        .prepare_cached(sql::STALE_CLIENT)?
        .query_row(params_from_iter(stale_args), |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some((row, uuid)) = stale {
        delete_client(conn, batch, row)?;
        let old = Uuid::from_slice(&uuid).map_err(|_| rows::corrupt("client id"))?;
        core::log_stale(record, old);
    }
    let row = first_int(conn, sql::ENSURE_CLIENT, &upsert)?;
    row.ok_or_else(|| rows::corrupt("client row"))
}

/// Records the resync requests a forwarded change completed at the owner (`core::target`):
/// a request made here and routed down completes in place, with the owner's times; one routed
/// on through here (a row holding that origin) completes likewise; any other is recorded as a
/// complete request of the client, once per origin, so a change forwarded twice records it
/// once.
fn record_completed(conn: &Connection, client: i64, done: &[Completion]) -> Result<(), StoreError> {
    for c in done {
        let (sql, args) = c.args(client);
        let n = run(conn, sql, &args)?;
        if let Target::Here(id) = c.target {
            core::log_completed_here(id, n as u64);
        } else if n == 0 {
            run(conn, sql::COMPLETE_NEW, &c.new_args(client))?;
        }
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
    job: ForwardJob,
    now: Timestamp,
) -> Result<ForwardOutcome, StoreError> {
    let own = batch.shared.site.code.clone();
    let row = match check_forwarded(conn, &own, &job)? {
        Verdict::Answer(outcome) => return Ok(outcome),
        Verdict::Proceed(row) => row,
    };
    let (meta, input) = (&job.meta, &job.input);
    let change = match queries::replan_if_moved(conn, batch, input, row.as_ref(), job.planned)? {
        Outcome::Resync(reason) => return Ok(meta.resync(reason)),
        Outcome::Write(change) => change,
    };
    let client = ensure_client(conn, batch, &meta.client)?;
    let stamp = meta.stamp(input);
    let written = queries::write_change(conn, batch, client, input, row.as_ref(), change, &stamp)?;
    record_completed(conn, client, &core::completions(&own, meta))?;
    if forwarding(conn)? {
        let applied = (written.version, written.full_at);
        let entry = meta.entry(client, input, applied, &written.body_ids);
        enqueue(conn, &entry, now)?;
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
    let mut st = conn.prepare_cached(sql::CLIENT_OWNER)?;
    let mut rows = st.query([client_id.as_bytes().as_slice()])?;
    rows.next()?
        .map(|row| Ok((row.int(0)?, row.name(1)?, row.site(2)?)))
        .transpose()
}

/// Queues a resync request for a client of a site below, to be routed down to its owner, unless
/// an identical routed request is still pending here. It stays pending until the full report
/// that completes it at the owner is forwarded up: this site cannot see the owner's agent pick it
/// up.
pub(super) fn queue_routed(
    conn: &Connection,
    own: &SiteCode,
    route: &RouteDown,
) -> Result<Queued, StoreError> {
    let (client_id, class, now) = (route.client, route.class, route.now);
    let found = client_owner(conn, client_id)?;
    let (client, name, owner) = route.client(own, found)?;
    let (kind, arg) = (Arg::Text("resync"), Arg::Text(class.as_str()));
    let args = [
        Arg::Int(client),
        kind,
        arg,
        Arg::Int(now.0),
        Arg::Text(owner.as_str()),
    ];
    let (id, requested_at, created) = match first_int(conn, crate::sql::QUEUE_REQUEST, &args)? {
        Some(id) => (id, now, true),
        None => {
            let mut st = conn.prepare_cached(crate::sql::PENDING_REQUEST)?;
            let row = st.query_row(params_from_iter(&args[..3]), |r| Ok((r.get(0)?, r.get(1)?)));
            let (id, at) = row?;
            (id, Timestamp(at), false)
        }
    };
    let queued = core::routed_queued(id, name, owner, requested_at, created);
    route.log(&queued);
    Ok(queued)
}

/// The routed requests not yet complete whose owner is reached through the child `via` and that
/// were not delivered since `due` (never, or at or before that time), with their row ids here.
pub(super) fn routed_due(
    conn: &Connection,
    own: &SiteCode,
    delivery: &Delivery,
) -> Result<Vec<(i64, DownRequest)>, StoreError> {
    let mut st = conn.prepare_cached(sql::ROUTED_DUE)?;
    let mut rows = st.query(params![delivery.via.as_str(), delivery.due.0])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(core::routed(row, own)?);
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

/// Takes in a request the parent routed down (`core::down_route`), once per origin.
pub(super) fn accept_down(
    conn: &Connection,
    own: &SiteCode,
    take: &TakeDown,
) -> Result<DownAccepted, StoreError> {
    let req = &take.req;
    let found = client_owner(conn, req.client)?;
    let (client, name, route) = match core::down_route(own, req, found, take.accept_own) {
        Ok(taken) => taken,
        Err(answer) => return Ok(answer),
    };
    let origin = req.origin();
    let created = first_int(
        conn,
        sql::ACCEPT_DOWN,
        &take.args(client, &origin, route.as_ref()),
    )?;
    let id = match created {
        Some(id) => id,
        None => first_int(conn, sql::BY_ORIGIN, &[Arg::Text(&origin)])?
            .ok_or_else(|| rows::corrupt("request origin"))?,
    };
    Ok(core::down_accepted(id, name, route, created.is_some()))
}

// ---------------------------------------------------------------------------------------------
// Deleting clients (`crate::lifecycle`)

/// Turns client row `client` into a tombstone deleted at `deleted_at`: its packages leave the
/// software index, its snapshots, requests and outbox entries go, and, when this site forwards,
/// a tombstone entry tells the parent to forget it.
fn retire(
    conn: &Connection,
    batch: &mut Batch<'_>,
    client: i64,
    deleted_at: Timestamp,
    now: Timestamp,
) -> Result<(), StoreError> {
    if batch.software.is_some()
        && let Some(row) = snapshot_row(conn, client, Class::Sw)?
    {
        let removed = decode_ids(&row.items)?;
        let change = crate::software::change(client, Some(row.version), None, removed, Vec::new())?;
        queries::software_changed(conn, batch, change)?;
    }
    for sql in lifecycle::sql::RETIRE {
        conn.prepare_cached(sql)?.execute([client])?;
    }
    run(
        conn,
        lifecycle::sql::MARK_DELETED,
        &lifecycle::mark_args(client, deleted_at),
    )?;
    if forwarding(conn)? {
        let empty = crate::codec::encode_ids(&[]);
        let args = lifecycle::tombstone_args(client, deleted_at, now, &empty);
        run(conn, lifecycle::sql::TOMBSTONE, &args)?;
    }
    Ok(())
}

/// Deletes this site's live client `name` at `now`.
pub(super) fn delete_own(
    conn: &Connection,
    batch: &mut Batch<'_>,
    name: &ClientName,
    now: Timestamp,
) -> Result<Deleted, StoreError> {
    let site = batch.shared.site.code.clone();
    let found: Option<(i64, Vec<u8>)> = conn
        .prepare_cached(lifecycle::sql::LIVE_BY_NAME)?
        .query_row(params![site.as_str(), name.as_str()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let Some((client, uuid)) = found else {
        return Err(lifecycle::unknown(name));
    };
    retire(conn, batch, client, now, now)?;
    Ok(Deleted {
        client: name.clone(),
        id: Uuid::from_slice(&uuid).map_err(|_| rows::corrupt("client id"))?,
        site,
        deleted_at: now,
    })
}

/// Applies a tombstone forwarded by `via` (`meta` describes it): the client is forgotten here
/// as at its owner, and the tombstone goes on up when this site forwards. The owner must be
/// reached through `via` (as for any forwarded change); a client this site never held, or
/// holds deleted already, changes nothing.
pub(super) fn apply_tombstone(
    conn: &Connection,
    batch: &mut Batch<'_>,
    via: &SiteCode,
    meta: &ForwardMeta,
    deleted_at: Timestamp,
    now: Timestamp,
) -> Result<ForwardOutcome, StoreError> {
    let own = batch.shared.site.code.clone();
    let (reached, _) = tree_of(conn, meta.client.site.as_str())?;
    let known: Option<(i64, String, Option<i64>)> = conn
        .prepare_cached(lifecycle::sql::BY_ID)?
        .query_row([Arg::Uuid(meta.client.id)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let held_by = known.as_ref().map(|(_, site, _)| site.as_str());
    if let Some(refused) = core::refusal(&own, via, meta, reached.as_deref(), held_by) {
        return Ok(refused);
    }
    match known {
        Some((client, _, None)) => {
            retire(conn, batch, client, deleted_at, now)?;
            core::log_forgotten(meta);
            Ok(ForwardOutcome::Applied { seq: meta.seq })
        }
        Some((_, _, Some(_))) => Ok(ForwardOutcome::Duplicate { seq: meta.seq }),
        None => Ok(ForwardOutcome::Applied { seq: meta.seq }),
    }
}
