//! The SQL of the hierarchy (SPEC section 6) on PostgreSQL: the outbox, the children's tokens,
//! the sites below this one, applying forwarded changes and the resync requests routed down
//! the tree. The rules are the store's `hierarchy` module's; this one fetches the rows they
//! need and writes what they decide, under PostgreSQL's locks:
//!
//! * changes to the tree (child tokens, site statuses) take an exclusive advisory lock, and
//!   applying a forwarded change takes it shared, so a change is checked against a stable tree
//!   (`outbox::lock_topology`);
//! * a forwarded change takes its client's lock (`queries::lock_client`), like a report.

use invsync_proto::wire::{
    ClientRecord, Deleted, DownRequest, ForwardOutcome, Forwarded, Owner, Queued, RequestView,
    SiteStatus,
};
use invsync_proto::{Class, ClientName, Digest, SiteCode, Timestamp};
use sqlx::PgConnection;
use uuid::Uuid;

use super::outbox::{
    args, class_col, enqueue, first_int, forwarding, lock_topology, meta_value, run, set_meta_value,
};
use super::queries::{self, Inserted, PgUuid, load_items, snapshot_row};
use super::schema::{LOCK_CLASS, LOCK_DELIVERY};
use crate::cache::ItemCache;
use crate::codec::decode_ids;
use crate::error::StoreError;
use crate::exec::Arg;
use crate::hierarchy::{
    self as core, Acked, ChildToken, Completion, Delivery, ForwardMeta, LAST_FORWARDED, RouteDown,
    SiteReport, TakeDown, Target, Tree, sql,
};
use crate::lifecycle;
use crate::plan::{Outcome, ReportInput};
use crate::rows::{self, Cols};
use crate::{DownAccepted, OutboxStats};

// ---------------------------------------------------------------------------------------------
// The outbox

/// The oldest `limit` outbox entries, oldest first, with their bodies rebuilt from the items.
pub(super) async fn outbox_batch(
    conn: &mut PgConnection,
    limit: usize,
) -> Result<Vec<Forwarded>, StoreError> {
    let rows = sqlx::query(sql::OUTBOX_BATCH)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *conn)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let items = load_items(&mut *conn, &decode_ids(row.blob(12)?)?).await?;
        out.push(core::forwarded(row, items)?);
    }
    Ok(out)
}

/// Removes acknowledged entries and marks the requests the `stored` ones completed as
/// forwarded (see the SQLite backend's `outbox_done`).
pub(super) async fn outbox_done(
    conn: &mut PgConnection,
    own: &SiteCode,
    acked: &Acked,
) -> Result<(), StoreError> {
    let carried: Vec<(i64, Option<String>)> =
        sqlx::query_as("DELETE FROM outbox WHERE seq = ANY($1) RETURNING client_id, completed")
            .bind(&acked.stored)
            .fetch_all(&mut *conn)
            .await?;
    if !acked.refused.is_empty() {
        sqlx::query("DELETE FROM outbox WHERE seq = ANY($1)")
            .bind(&acked.refused)
            .execute(&mut *conn)
            .await?;
    }
    for (client, raw) in carried {
        if raw.is_some() {
            let completed = core::decode_completed(raw.as_deref())?;
            mark_forwarded(&mut *conn, own, client, &completed, acked).await?;
        }
    }
    set_meta_value(conn, LAST_FORWARDED, &acked.now.0.to_string()).await
}

/// Marks the resync requests one acknowledged change completed as forwarded, found as
/// `record_completed` found them; the first acknowledgement counts.
async fn mark_forwarded(
    conn: &mut PgConnection,
    own: &SiteCode,
    client: i64,
    completed: &[RequestView],
    acked: &Acked,
) -> Result<(), StoreError> {
    let owner: Option<String> = sqlx::query_scalar("SELECT site_code FROM clients WHERE id = $1")
        .bind(client)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(owner) = owner else { return Ok(()) };
    for found in core::forwarded_targets(own, &owner, completed) {
        let (sql, args) = core::forwarded_args(acked, client, &found);
        run(&mut *conn, sql, &args).await?;
    }
    Ok(())
}

/// Replaces every outbox entry of a client and class with one full entry of its current
/// snapshot (`core::resync_entry`). Runs under the client's lock.
pub(super) async fn outbox_resync(
    conn: &mut PgConnection,
    client_id: Uuid,
    class: Class,
) -> Result<bool, StoreError> {
    queries::lock_client(&mut *conn, client_id).await?;
    let Some(client) = queries::client_row(&mut *conn, client_id).await? else {
        return Ok(false);
    };
    let code = class_col(class);
    let dropped: Vec<(i64, Option<String>)> = sqlx::query_as(
        "SELECT accepted_at, completed FROM outbox WHERE client_id = $1 AND class = $2 ORDER BY seq",
    )
    .bind(client)
    .bind(code)
    .fetch_all(&mut *conn)
    .await?;
    let (accepted_at, completed) = core::resync_entry(&dropped)?;
    let (client, class) = (Arg::Int(client), Arg::Class(class));
    run(&mut *conn, sql::OUTBOX_DROP, &[client, class]).await?;
    let (at, done) = (Arg::OptInt(accepted_at), Arg::OptText(completed.as_deref()));
    let appended = run(conn, sql::OUTBOX_RESYNC, &[at, done, client, class]).await?;
    Ok(appended == 1)
}

pub(super) async fn outbox_stats(conn: &mut PgConnection) -> Result<OutboxStats, StoreError> {
    let (depth, oldest): (i64, Option<i64>) =
        sqlx::query_as("SELECT count(*), min(accepted_at) FROM outbox")
            .fetch_one(&mut *conn)
            .await?;
    let last = meta_value(conn, LAST_FORWARDED).await?;
    Ok(OutboxStats {
        depth,
        oldest: oldest.map(Timestamp),
        last_forwarded: core::last_forwarded(last.as_deref())?,
    })
}

// ---------------------------------------------------------------------------------------------
// Children and the sites below

/// Where `code` stands in the tree (see the SQLite backend's `tree_of`).
async fn tree_of(conn: &mut PgConnection, code: &str) -> Result<Tree, StoreError> {
    let found = sqlx::query_as_with(sql::TREE_OF, args(&[Arg::Text(code)])?);
    Ok(found.fetch_one(conn).await?)
}

pub(super) async fn set_child_token(
    conn: &mut PgConnection,
    own: &SiteCode,
    token: &ChildToken,
) -> Result<(), StoreError> {
    let code = &token.code;
    if let Some(e) = core::child_token_conflict(own, code, None) {
        return Err(e);
    }
    lock_topology(&mut *conn, true).await?;
    let (recorded, _) = tree_of(&mut *conn, code.as_str()).await?;
    if let Some(e) = core::child_token_conflict(own, code, recorded.as_deref()) {
        return Err(e);
    }
    run(conn, sql::CHILD_TOKEN_UPSERT, &token.args()).await?;
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
    row.as_ref().map(|r| r.digest(0)).transpose()
}

async fn code_conflict(
    conn: &mut PgConnection,
    own: &SiteCode,
    via: &SiteCode,
    code: &SiteCode,
) -> Result<Option<StoreError>, StoreError> {
    let tree = tree_of(conn, code.as_str()).await?;
    Ok(core::code_conflict(own, via, code, tree))
}

/// Records what `via` reported; all or nothing (an error rolls the transaction back).
pub(super) async fn record_site_status(
    conn: &mut PgConnection,
    own: &SiteCode,
    report: &SiteReport,
) -> Result<(), StoreError> {
    let (via, now) = (&report.via, report.now);
    lock_topology(&mut *conn, true).await?;
    if let Some(e) = code_conflict(&mut *conn, own, via, via).await? {
        return Err(e);
    }
    for s in &report.statuses {
        if let Some(e) = code_conflict(&mut *conn, own, via, &s.code).await? {
            return Err(e);
        }
        run(&mut *conn, sql::SITE_UPSERT, &core::site_args(s, via, now)).await?;
    }
    Ok(())
}

pub(super) async fn sites(conn: &mut PgConnection) -> Result<Vec<SiteStatus>, StoreError> {
    let rows = sqlx::query(sql::SITES).fetch_all(conn).await?;
    rows.iter().map(core::site_status).collect()
}

pub(super) async fn site_via(
    conn: &mut PgConnection,
    code: &SiteCode,
) -> Result<Option<SiteCode>, StoreError> {
    core::site_via(code, tree_of(conn, code.as_str()).await?)
}

/// How many clients this site owns itself (a child's status counts them).
pub(super) async fn own_clients(
    conn: &mut PgConnection,
    own: &SiteCode,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM clients WHERE site_code = $1 AND deleted_at IS NULL",
    )
    .bind(own.as_str())
    .fetch_one(conn)
    .await?)
}

pub(super) async fn find_clients(
    conn: &mut PgConnection,
    name: &ClientName,
) -> Result<Vec<Owner>, StoreError> {
    let rows = sqlx::query(sql::FIND_CLIENTS)
        .bind(name.as_str())
        .fetch_all(conn)
        .await?;
    rows.iter().map(core::owner).collect()
}

// ---------------------------------------------------------------------------------------------
// Applying forwarded changes

async fn delete_client(
    conn: &mut PgConnection,
    inserted: &mut Inserted,
    client: i64,
) -> Result<(), StoreError> {
    if let Some(changes) = &mut inserted.software
        && let Some(row) = snapshot_row(&mut *conn, client, Class::Sw).await?
    {
        let removed = decode_ids(&row.items)?;
        let change = crate::software::change(client, Some(row.version), None, removed, Vec::new());
        changes.push(change?);
    }
    for sql in sql::DELETE_CLIENT {
        sqlx::query(sql).bind(client).execute(&mut *conn).await?;
    }
    Ok(())
}

/// The row of a forwarded client (see the SQLite backend's `ensure_client`).
async fn ensure_client(
    conn: &mut PgConnection,
    inserted: &mut Inserted,
    record: &ClientRecord,
) -> Result<i64, StoreError> {
    let (stale_args, upsert) = core::client_args(record);
    let stale: Option<(i64, PgUuid)> = sqlx::query_as_with(sql::STALE_CLIENT, args(&stale_args)?)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some((row, PgUuid(old))) = stale {
        delete_client(&mut *conn, inserted, row).await?;
        core::log_stale(record, old);
    }
    let row = first_int(conn, sql::ENSURE_CLIENT, &upsert).await?;
    row.ok_or_else(|| rows::corrupt("client row"))
}

/// Records the resync requests a forwarded change completed at the owner (see the SQLite
/// backend's `record_completed`).
async fn record_completed(
    conn: &mut PgConnection,
    client: i64,
    done: &[Completion<'_>],
) -> Result<(), StoreError> {
    for c in done {
        let (sql, args) = c.args(client);
        let n = run(&mut *conn, sql, &args).await?;
        if let Target::Here(id) = c.target {
            core::log_completed_here(id, n);
        } else if n == 0 {
            run(&mut *conn, sql::COMPLETE_NEW, &c.new_args(client)).await?;
        }
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
    let (reached, _) = tree_of(&mut *conn, meta.client.site.as_str()).await?;
    let known: Option<(i64, String)> =
        sqlx::query_as_with(sql::CLIENT_SITE, args(&[Arg::Uuid(meta.client.id)])?)
            .fetch_optional(&mut *conn)
            .await?;
    let held_by = known.as_ref().map(|(_, site)| site.as_str());
    if let Some(refused) = core::refusal(own, via, meta, reached.as_deref(), held_by) {
        return Ok(refused);
    }
    let row = match known {
        Some((client, _)) => snapshot_row(&mut *conn, client, input.class).await?,
        None => None,
    };
    if let Some(dup) = core::resent(meta, input, row.as_ref()) {
        return Ok(dup);
    }
    let current = row.as_ref().map(|r| r.current()).transpose()?;
    let change = match queries::plan_report(&mut *conn, cache, input, current.as_ref()).await? {
        Outcome::Resync(reason) => return Ok(meta.resync(reason)),
        Outcome::Write(change) => change,
    };
    let client = ensure_client(&mut *conn, inserted, &meta.client).await?;
    let (stamp, row) = (meta.stamp(input), row.as_ref());
    let written =
        queries::write_change(&mut *conn, inserted, client, input, row, change, &stamp).await?;
    record_completed(&mut *conn, client, &core::completions(own, meta)).await?;
    if forwarding(&mut *conn).await? {
        let applied = (written.version, written.full_at);
        let entry = meta.entry(client, input, applied, &written.body_ids);
        enqueue(&mut *conn, &entry, now).await?;
    }
    Ok(ForwardOutcome::Applied { seq: meta.seq })
}

// ---------------------------------------------------------------------------------------------
// Requests routed down the tree

async fn client_owner(
    conn: &mut PgConnection,
    client_id: Uuid,
) -> Result<Option<(i64, ClientName, SiteCode)>, StoreError> {
    let row = sqlx::query(sql::CLIENT_OWNER)
        .bind(PgUuid(client_id))
        .fetch_optional(conn)
        .await?;
    row.map(|row| Ok((row.int(0)?, row.name(1)?, row.site(2)?)))
        .transpose()
}

pub(super) async fn queue_routed(
    conn: &mut PgConnection,
    own: &SiteCode,
    route: &RouteDown,
) -> Result<Queued, StoreError> {
    let (client_id, class, now) = (route.client, route.class, route.now);
    let found = client_owner(&mut *conn, client_id).await?;
    let (client, name, owner) = route.client(own, found)?;
    let to = Some(owner.as_str());
    let (id, requested_at, created) =
        queries::queue_pending(conn, client, "resync", class.as_str(), to, now).await?;
    let queued = core::routed_queued(id, name, owner, requested_at, created);
    route.log(&queued);
    Ok(queued)
}

/// The routed requests due for the child `delivery.via`, marked delivered, in one
/// transaction under the delivery lock (two batches of one child at once deliver each once).
pub(super) async fn deliver_routed(
    conn: &mut PgConnection,
    own: &SiteCode,
    delivery: &Delivery,
) -> Result<Vec<DownRequest>, StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(LOCK_CLASS)
        .bind(LOCK_DELIVERY)
        .execute(&mut *conn)
        .await?;
    let rows = sqlx::query(sql::ROUTED_DUE)
        .bind(delivery.via.as_str())
        .bind(delivery.due.0)
        .fetch_all(&mut *conn)
        .await?;
    let (ids, out): (Vec<i64>, Vec<DownRequest>) = rows
        .iter()
        .map(|row| core::routed(row, own))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .unzip();
    if !ids.is_empty() {
        sqlx::query("UPDATE requests SET delivered_at = $1 WHERE id = ANY($2)")
            .bind(delivery.now.0)
            .bind(&ids)
            .execute(&mut *conn)
            .await?;
    }
    Ok(out)
}

/// Takes in a request the parent routed down (`core::down_route`), once per origin.
pub(super) async fn accept_down(
    conn: &mut PgConnection,
    own: &SiteCode,
    take: &TakeDown,
) -> Result<DownAccepted, StoreError> {
    let req = &take.req;
    let found = client_owner(&mut *conn, req.client).await?;
    let (client, name, route) = match core::down_route(own, req, found, take.accept_own) {
        Ok(taken) => taken,
        Err(answer) => return Ok(answer),
    };
    let origin = req.origin();
    let created = first_int(
        &mut *conn,
        sql::ACCEPT_DOWN,
        &take.args(client, &origin, route.as_ref()),
    )
    .await?;
    let id = match created {
        Some(id) => id,
        None => first_int(conn, sql::BY_ORIGIN, &[Arg::Text(&origin)])
            .await?
            .ok_or_else(|| rows::corrupt("request origin"))?,
    };
    Ok(core::down_accepted(id, name, route, created.is_some()))
}

// ---------------------------------------------------------------------------------------------
// Deleting clients (`crate::lifecycle`)

/// Turns client row `client` into a tombstone (see the SQLite backend's `retire`), inside the
/// transaction `conn`, which holds the client's lock.
async fn retire(
    conn: &mut PgConnection,
    inserted: &mut Inserted,
    client: i64,
    deleted_at: Timestamp,
    now: Timestamp,
) -> Result<(), StoreError> {
    if let Some(changes) = &mut inserted.software
        && let Some(row) = snapshot_row(&mut *conn, client, Class::Sw).await?
    {
        let removed = decode_ids(&row.items)?;
        let change = crate::software::change(client, Some(row.version), None, removed, Vec::new());
        changes.push(change?);
    }
    for sql in lifecycle::sql::RETIRE {
        sqlx::query(sql).bind(client).execute(&mut *conn).await?;
    }
    let mark = lifecycle::mark_args(client, deleted_at);
    run(&mut *conn, lifecycle::sql::MARK_DELETED, &mark).await?;
    if forwarding(&mut *conn).await? {
        let empty = crate::codec::encode_ids(&[]);
        let args = lifecycle::tombstone_args(client, deleted_at, now, &empty);
        run(&mut *conn, lifecycle::sql::TOMBSTONE, &args).await?;
    }
    Ok(())
}

/// Deletes this site's live client `name` at `now` (see the SQLite backend's `delete_own`).
pub(super) async fn delete_own(
    conn: &mut PgConnection,
    inserted: &mut Inserted,
    own: &SiteCode,
    name: &ClientName,
    now: Timestamp,
) -> Result<Deleted, StoreError> {
    let by = [Arg::Text(own.as_str()), Arg::Text(name.as_str())];
    let found: Option<(i64, PgUuid)> =
        sqlx::query_as_with(lifecycle::sql::LIVE_BY_NAME, args(&by)?)
            .fetch_optional(&mut *conn)
            .await?;
    let Some((_, PgUuid(id))) = found else {
        return Err(lifecycle::unknown(name));
    };
    // The client's lock, as a report takes it, then the row again under it: a report that
    // committed meanwhile is deleted with the rest.
    queries::lock_client(&mut *conn, id).await?;
    let found: Option<(i64, PgUuid)> =
        sqlx::query_as_with(lifecycle::sql::LIVE_BY_NAME, args(&by)?)
            .fetch_optional(&mut *conn)
            .await?;
    let Some((client, _)) = found else {
        return Err(lifecycle::unknown(name));
    };
    retire(&mut *conn, inserted, client, now, now).await?;
    Ok(Deleted {
        client: name.clone(),
        id,
        site: own.clone(),
        deleted_at: now,
    })
}

/// Applies a tombstone forwarded by `via` (see the SQLite backend's `apply_tombstone`).
#[allow(clippy::too_many_arguments)]
pub(super) async fn apply_tombstone(
    conn: &mut PgConnection,
    inserted: &mut Inserted,
    own: &SiteCode,
    via: &SiteCode,
    meta: &ForwardMeta,
    deleted_at: Timestamp,
    now: Timestamp,
) -> Result<ForwardOutcome, StoreError> {
    lock_topology(&mut *conn, false).await?;
    queries::lock_client(&mut *conn, meta.client.id).await?;
    let (reached, _) = tree_of(&mut *conn, meta.client.site.as_str()).await?;
    let known: Option<(i64, String, Option<i64>)> =
        sqlx::query_as_with(lifecycle::sql::BY_ID, args(&[Arg::Uuid(meta.client.id)])?)
            .fetch_optional(&mut *conn)
            .await?;
    let held_by = known.as_ref().map(|(_, site, _)| site.as_str());
    if let Some(refused) = core::refusal(own, via, meta, reached.as_deref(), held_by) {
        return Ok(refused);
    }
    match known {
        Some((client, _, None)) => {
            retire(&mut *conn, inserted, client, deleted_at, now).await?;
            core::log_forgotten(meta);
            Ok(ForwardOutcome::Applied { seq: meta.seq })
        }
        Some((_, _, Some(_))) => Ok(ForwardOutcome::Duplicate { seq: meta.seq }),
        None => Ok(ForwardOutcome::Applied { seq: meta.seq }),
    }
}
