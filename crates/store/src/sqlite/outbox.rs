//! The outbox writer of the SQLite backend: the forwarding switch and appending an accepted
//! change to the outbox, which `queries` calls from inside a report's transaction and
//! `hierarchy` from inside a forwarded change's, so that a change and its outbox entry always
//! commit together. Also the `meta` values of the hierarchy. It leans on neither `queries` nor `hierarchy`.

use invsync_proto::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

use crate::codec::class_code;
use crate::error::StoreError;
use crate::hierarchy::{Entry, FORWARDING, OutboxRow, PROBED_AT, sql};

pub(super) fn meta_value(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

pub(super) fn set_meta_value(conn: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute([key, value])?;
    Ok(())
}

/// Records the time of a write probe: the smallest write that goes through a whole commit.
pub(super) fn set_probe_time(conn: &Connection, now: Timestamp) -> Result<(), StoreError> {
    set_meta_value(conn, PROBED_AT, &now.rfc3339())
}

/// Whether accepted changes go into the outbox. Read inside each writing transaction rather
/// than cached, so a switch made by another process holding the same file counts at once.
pub(super) fn forwarding(conn: &Connection) -> Result<bool, StoreError> {
    Ok(meta_value(conn, FORWARDING)?.as_deref() == Some("1"))
}

pub(super) fn set_forwarding(conn: &Connection, on: bool) -> Result<(), StoreError> {
    set_meta_value(conn, FORWARDING, if on { "1" } else { "0" })
}

/// Appends a change to the outbox.
pub(super) fn enqueue(
    conn: &Connection,
    e: &Entry<'_>,
    accepted_at: Timestamp,
) -> Result<(), StoreError> {
    let r = OutboxRow::of(e, accepted_at)?;
    conn.prepare_cached(sql::OUTBOX_INSERT)?.execute(params![
        e.client,
        class_code(e.input.class),
        r.version,
        r.hash.0.as_slice(),
        r.full_at,
        r.updated_at,
        r.accepted_at,
        r.base_version,
        e.body_ids,
        r.removed,
        r.completed,
    ])?;
    Ok(())
}
