//! The outbox writer of the PostgreSQL backend: the forwarding switch and appending an
//! accepted change to the outbox, which `queries` calls inside a report's transaction and
//! `hierarchy` inside a forwarded change's, so that a change and its outbox entry always
//! commit together. Also the `meta` values of the hierarchy, the tree's advisory lock, and how
//! every statement argument ([`Arg`]) bind here. It leans on neither `queries` nor
//! `hierarchy`.

use invsync_proto::{Class, Timestamp};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgArguments, PgTypeInfo, types::Oid};
use sqlx::{Arguments, Encode, PgConnection, Postgres, Type};

use super::schema::{LOCK_CLASS, LOCK_TOPOLOGY};
use crate::codec::class_code;
use crate::error::StoreError;
use crate::exec::Arg;
use crate::hierarchy::{Entry, FORWARDING, OutboxRow, PROBED_AT, sql};

impl Type<Postgres> for Arg<'_> {
    fn type_info() -> PgTypeInfo {
        // Each value names its own type (`produces`); this is only the fallback.
        <i64 as Type<Postgres>>::type_info()
    }
}

impl Encode<'_, Postgres> for Arg<'_> {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        match *self {
            Arg::Int(v) => <i64 as Encode<Postgres>>::encode_by_ref(&v, buf),
            Arg::OptInt(v) => <Option<i64> as Encode<Postgres>>::encode_by_ref(&v, buf),
            Arg::Flag(v) => <bool as Encode<Postgres>>::encode_by_ref(&v, buf),
            Arg::Text(v) => <&str as Encode<Postgres>>::encode_by_ref(&v, buf),
            Arg::OptText(v) => <Option<&str> as Encode<Postgres>>::encode_by_ref(&v, buf),
            Arg::Blob(v) => <&[u8] as Encode<Postgres>>::encode_by_ref(&v, buf),
            Arg::Uuid(id) => {
                buf.extend_from_slice(id.as_bytes());
                Ok(IsNull::No)
            }
            Arg::Class(c) => <i16 as Encode<Postgres>>::encode_by_ref(&class_col(c), buf),
            Arg::OptBlob(v) => <Option<&[u8]> as Encode<Postgres>>::encode_by_ref(&v, buf),
            Arg::OptClass(c) => {
                <Option<i16> as Encode<Postgres>>::encode_by_ref(&c.map(class_col), buf)
            }
            Arg::Ids(v) => <&[i64] as Encode<Postgres>>::encode_by_ref(&v, buf),
        }
    }

    fn produces(&self) -> Option<PgTypeInfo> {
        Some(match self {
            Arg::Int(_) | Arg::OptInt(_) => <i64 as Type<Postgres>>::type_info(),
            Arg::Flag(_) => <bool as Type<Postgres>>::type_info(),
            Arg::Text(_) | Arg::OptText(_) => <&str as Type<Postgres>>::type_info(),
            Arg::Blob(_) | Arg::OptBlob(_) => <&[u8] as Type<Postgres>>::type_info(),
            Arg::Ids(_) => <&[i64] as Type<Postgres>>::type_info(),
            // 2950 is the fixed object id of the built-in `uuid` type.
            Arg::Uuid(_) => PgTypeInfo::with_oid(Oid(2950)),
            Arg::Class(_) | Arg::OptClass(_) => <i16 as Type<Postgres>>::type_info(),
        })
    }
}

/// The core's arguments of a statement, for `sqlx::query_with` and its kin.
pub(super) fn args(args: &[Arg<'_>]) -> Result<PgArguments, StoreError> {
    let mut out = PgArguments::default();
    for a in args {
        out.add(*a).map_err(sqlx::Error::Encode)?;
    }
    Ok(out)
}

/// The first column of the first row of one of the core's statements, if it returns a row.
pub(super) async fn first_int(
    conn: &mut PgConnection,
    sql: &str,
    a: &[Arg<'_>],
) -> Result<Option<i64>, StoreError> {
    let found = sqlx::query_scalar_with(sql, args(a)?);
    Ok(found.fetch_optional(conn).await?)
}

/// Runs one of the core's statements with its arguments; how many rows it changed.
pub(super) async fn run(
    conn: &mut PgConnection,
    sql: &str,
    a: &[Arg<'_>],
) -> Result<u64, StoreError> {
    let done = sqlx::query_with(sql, args(a)?).execute(conn).await?;
    Ok(done.rows_affected())
}

/// The stored code of a class (`smallint`).
pub(super) fn class_col(class: Class) -> i16 {
    class_code(class) as i16
}

pub(super) async fn meta_value(
    conn: &mut PgConnection,
    key: &str,
) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query_scalar(sql::META)
        .bind(key)
        .fetch_optional(conn)
        .await?)
}

pub(super) async fn set_meta_value(
    conn: &mut PgConnection,
    key: &str,
    value: &str,
) -> Result<(), StoreError> {
    run(conn, sql::SET_META, &[Arg::Text(key), Arg::Text(value)]).await?;
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
    run(conn, sql::OUTBOX_INSERT, &r.args(e)).await?;
    Ok(())
}
