//! The outbox writer of the SQLite backend: the forwarding switch and appending an accepted
//! change to the outbox, which `queries` calls from inside a report's transaction and
//! `hierarchy` from inside a forwarded change's, so that a change and its outbox entry always
//! commit together. Also the `meta` values of the hierarchy. It leans on neither `queries` nor `hierarchy`.

use invsync_proto::Timestamp;
use rusqlite::{Connection, OptionalExtension, params_from_iter};

use crate::error::StoreError;
use crate::exec::Arg;
use crate::hierarchy::{Entry, FORWARDING, OutboxRow, PROBED_AT, sql};

/// The first column of the first row of one of the core's statements, if it returns a row.
pub(super) fn first_int(
    conn: &Connection,
    sql: &str,
    args: &[Arg<'_>],
) -> Result<Option<i64>, StoreError> {
    let mut st = conn.prepare_cached(sql)?;
    Ok(st
        .query_row(params_from_iter(args), |r| r.get(0))
        .optional()?)
}

/// Runs one of the core's statements with its arguments; how many rows it changed.
pub(super) fn run(conn: &Connection, sql: &str, args: &[Arg<'_>]) -> Result<usize, StoreError> {
    Ok(conn.prepare_cached(sql)?.execute(params_from_iter(args))?)
}

pub(super) fn meta_value(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached(sql::META)?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

pub(super) fn set_meta_value(conn: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    run(conn, sql::SET_META, &[Arg::Text(key), Arg::Text(value)])?;
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
    run(conn, sql::OUTBOX_INSERT, &r.args(e))?;
    Ok(())
}
