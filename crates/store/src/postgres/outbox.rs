//! The outbox writer of the PostgreSQL backend: the forwarding switch and appending an
//! accepted change to the outbox, which `queries` calls inside a report's transaction and
//! `hierarchy` inside a forwarded change's, so that a change and its outbox entry always
//! commit together. Also the `meta` values of the hierarchy, the tree's advisory lock, and how
//! this backend's rows read as the core's [`Cols`]. It leans on neither `queries` nor
//! `hierarchy`.

use invsync_proto::{Class, Timestamp};
use sqlx::PgConnection;

use super::schema::{LOCK_CLASS, LOCK_TOPOLOGY};
use crate::codec::class_code;
use crate::error::StoreError;
use crate::hierarchy::{Entry, FORWARDING, OutboxRow, PROBED_AT, sql};

/// The stored code of a class (`smallint`).
pub(super) fn class_col(class: Class) -> i16 {
    class_code(class) as i16
}

pub(super) async fn meta_value(
    conn: &mut PgConnection,
    key: &str,
) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
        .bind(key)
        .fetch_optional(conn)
        .await?)
}

pub(super) async fn set_meta_value(
    conn: &mut PgConnection,
    key: &str,
    value: &str,
) -> Result<(), StoreError> {
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

/// Records the time of a write probe: the smallest write that goes through a whole commit.
pub(super) async fn set_probe_time(
    conn: &mut PgConnection,
    now: Timestamp,
) -> Result<(), StoreError> {
    set_meta_value(conn, PROBED_AT, &now.rfc3339()).await
}

/// Takes the tree lock until the transaction ends: exclusive to change the tree (child tokens,
/// site statuses), shared to rely on it (applying a forwarded change), so a change is checked
/// against a stable tree.
pub(super) async fn lock_topology(
    conn: &mut PgConnection,
    exclusive: bool,
) -> Result<(), StoreError> {
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

/// Whether accepted changes go into the outbox; read in each writing transaction, so a switch
/// made by another process counts at once.
pub(super) async fn forwarding(conn: &mut PgConnection) -> Result<bool, StoreError> {
    Ok(meta_value(conn, FORWARDING).await?.as_deref() == Some("1"))
}

pub(super) async fn set_forwarding(conn: &mut PgConnection, on: bool) -> Result<(), StoreError> {
    set_meta_value(conn, FORWARDING, if on { "1" } else { "0" }).await
}

/// Appends a change to the outbox.
pub(super) async fn enqueue(
    conn: &mut PgConnection,
    e: &Entry<'_>,
    accepted_at: Timestamp,
) -> Result<(), StoreError> {
    let r = OutboxRow::of(e, accepted_at)?;
    sqlx::query(sql::OUTBOX_INSERT)
        .bind(e.client)
        .bind(class_col(e.input.class))
        .bind(r.version)
        .bind(r.hash.0.as_slice())
        .bind(r.full_at)
        .bind(r.updated_at)
        .bind(r.accepted_at)
        .bind(r.base_version)
        .bind(e.body_ids)
        .bind(r.removed)
        .bind(r.completed)
        .execute(conn)
        .await?;
    Ok(())
}
