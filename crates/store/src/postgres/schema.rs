//! The PostgreSQL schema, its migrations, and creating or opening a site's database.
//!
//! The tables mirror the SQLite schema at its version 4 (see `sqlite::schema` for what each
//! column means), in PostgreSQL's own types: `bigint` ids (identity columns, whose values are
//! never reused, which the outbox's sequence numbers and the item cache rely on), `uuid` client
//! ids, `bytea` hashes and codec blobs, `smallint` class codes, `boolean` flags and `bigint`
//! milliseconds since the epoch for every time (the unit `Timestamp` and the codec use, so no
//! conversion can lose precision). The schema lives in the connection's current schema
//! (`search_path`), so one database can hold several sites in separate schemas.
//!
//! One difference from SQLite: items are looked up by their full 32-byte digest, which is
//! unique. Concurrent transactions intern items with `INSERT … ON CONFLICT (digest) DO
//! NOTHING`, which needs a unique key; the SQLite backend, with its single writer, gets by with
//! an 8-byte prefix and a content comparison.
//!
//! Migrations: `MIGRATIONS[v]` turns PostgreSQL schema version `v` into `v + 1`; a new version
//! appends a step. The version is the `schema_version` row of `meta`. PostgreSQL numbers its
//! versions on its own: version 1 here is SQLite's version 4, version 2 SQLite's version 5,
//! version 3 SQLite's version 6, version 4 SQLite's version 7, version 5 SQLite's version 8,
//! version 6 SQLite's version 9.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use crate::SiteMeta;
use crate::error::StoreError;
use crate::exec;
use crate::redact::redact_url;

/// The schema version this program writes.
pub(super) const SCHEMA_VERSION: i64 = 6;

/// The tables of the schema: finding any of them means the database holds (part of) a site.
pub(super) const TABLES: &[&str] = &[
    "meta",
    "clients",
    "items",
    "snapshots",
    "history",
    "requests",
    "outbox",
    "child_tokens",
    "sites",
    "users",
    "audit",
    "client_merges",
];

const MIGRATIONS: &[&str] = &[
    SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_V6,
];

/// Version 4: administrators with roles and the audit trail, as SQLite's version 7 (see there).
/// The trigger function lives in the connection's current schema, beside the tables.
const SCHEMA_V4: &str = r#"
CREATE TABLE users (
    name        text PRIMARY KEY,
    role        text NOT NULL,
    key_hash    bytea NOT NULL,
    created_at  bigint NOT NULL,
    issued_at   bigint NOT NULL,
    expires_at  bigint,
    lifetime_ms bigint
);
CREATE TABLE audit (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        bigint NOT NULL,
    actor     text NOT NULL,
    address   text,
    action    text NOT NULL,
    target    text,
    details   text,
    site      text NOT NULL,
    origin_id bigint,
    via       text
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_actor ON audit (actor, id);
CREATE UNIQUE INDEX audit_origin ON audit (via, origin_id) WHERE origin_id IS NOT NULL;
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'audit entries are append-only';
END
$fn$;
CREATE TRIGGER audit_append_only BEFORE UPDATE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
"#;

/// Version 5: duplicates and agent versions, as SQLite's version 8 (see there).
const SCHEMA_V5: &str = r#"
ALTER TABLE clients ADD COLUMN dmi_serial text;
ALTER TABLE clients ADD COLUMN dmi_uuid text;
ALTER TABLE clients ADD COLUMN agent_version text;
CREATE INDEX clients_machine ON clients (site_code, machine_id);
CREATE INDEX clients_hardware ON clients (site_code, dmi_serial, dmi_uuid)
    WHERE dmi_serial IS NOT NULL;
CREATE TABLE client_merges (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_id   bigint NOT NULL REFERENCES clients (id),
    at          bigint NOT NULL,
    old_name    text NOT NULL,
    new_name    text NOT NULL,
    matched_by  text NOT NULL
);
CREATE INDEX client_merges_client ON client_merges (client_id, id);
ALTER TABLE requests ADD COLUMN hops text;
ALTER TABLE requests ADD COLUMN hops_top boolean NOT NULL DEFAULT false;
ALTER TABLE requests ADD COLUMN hops_pending boolean NOT NULL DEFAULT false;
CREATE INDEX requests_hops_pending ON requests (id) WHERE hops_pending;
"#;

/// Version 6: the client lifecycle, as SQLite's version 9 (see there): tombstones of deleted
/// clients in `clients` and in the outbox, and history found by time for the retention pruner.
const SCHEMA_V6: &str = r#"
ALTER TABLE clients ADD COLUMN deleted_at bigint;
CREATE INDEX clients_deleted ON clients (deleted_at) WHERE deleted_at IS NOT NULL;
ALTER TABLE outbox ADD COLUMN deleted_at bigint;
CREATE INDEX history_at ON history (at);
CREATE INDEX requests_done ON requests (completed_at) WHERE completed_at IS NOT NULL;
"#;

/// Version 3: how a client reaches the site, as SQLite's version 6 (see there). `integer`, read
/// through a cast to `bigint` in the statements both dialects share.
const SCHEMA_V3: &str = r#"
ALTER TABLE clients ADD COLUMN transport integer NOT NULL DEFAULT 0;
CREATE INDEX clients_offline ON clients (site_code, transport, machine_id) WHERE transport <> 0;
"#;

/// Version 2: indexes for the paged client list (`Store::clients_page`), as SQLite's version 5:
/// each sort reads its page in index order, forwards or backwards. Names are ordered with
/// `COLLATE "C"` (byte order, as SQLite), which the database's own collation need not be;
/// missing times sort first ascending (`NULLS FIRST`), so a backward scan gives the descending
/// order with them last, as SQLite does.
const SCHEMA_V2: &str = r#"
CREATE INDEX clients_by_name ON clients (name COLLATE "C", site_code COLLATE "C");
CREATE INDEX clients_by_last_seen ON clients (last_seen NULLS FIRST, name COLLATE "C", site_code COLLATE "C");
CREATE INDEX snapshots_by_updated ON snapshots (class, updated_at NULLS FIRST);
"#;

/// Every advisory lock of this backend uses this first key (the two-key form), so that they
/// cannot meet the locks of another program using the same database.
pub(super) const LOCK_CLASS: i32 = 0x1A5C;
/// Second keys under [`LOCK_CLASS`].
pub(super) const LOCK_SCHEMA: i32 = 1;
pub(super) const LOCK_TOPOLOGY: i32 = 2;
pub(super) const LOCK_DELIVERY: i32 = 3;

const SCHEMA_V1: &str = r#"
CREATE TABLE meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE clients (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uuid        uuid NOT NULL UNIQUE,
    name        text NOT NULL,
    site_code   text NOT NULL,
    machine_id  text NOT NULL,
    key_hash    bytea NOT NULL,
    enrolled_at bigint NOT NULL,
    last_seen   bigint,
    UNIQUE (site_code, name)
);
-- find_clients looks clients up by name alone, across owners.
CREATE INDEX clients_name ON clients (name);

-- Interned items: one row per distinct (key, attributes) in the site; `digest` is the item's
-- BLAKE3 digest and `attrs` the compact form of codec::encode_attrs.
CREATE TABLE items (
    id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    digest bytea NOT NULL UNIQUE,
    key    text NOT NULL,
    attrs  bytea NOT NULL
);

CREATE TABLE snapshots (
    client_id      bigint NOT NULL REFERENCES clients (id),
    class          smallint NOT NULL,
    version        bigint NOT NULL,
    hash           bytea NOT NULL,
    full_at        bigint NOT NULL,
    updated_at     bigint NOT NULL,
    recent_reports bytea NOT NULL,
    items          bytea NOT NULL,
    PRIMARY KEY (client_id, class)
);

-- `full_report` (SQLite: `full`, a reserved word here): whether a full report made the change.
CREATE TABLE history (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_id bigint NOT NULL REFERENCES clients (id),
    class     smallint NOT NULL,
    at        bigint NOT NULL,
    old_item  bigint REFERENCES items (id),
    new_item  bigint REFERENCES items (id),
    full_report boolean NOT NULL,
    CHECK (old_item IS NOT NULL OR new_item IS NOT NULL)
);
CREATE INDEX history_client ON history (client_id, id);

CREATE TABLE requests (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_id    bigint NOT NULL REFERENCES clients (id),
    kind         text NOT NULL CHECK (kind IN ('resync', 'event')),
    arg          text NOT NULL,
    requested_at bigint NOT NULL,
    picked_up_at bigint,
    completed_at bigint,
    origin       text,
    route        text,
    delivered_at bigint,
    forwarded_at bigint,
    forwarded_to text
);
CREATE UNIQUE INDEX requests_pending ON requests (client_id, kind, arg)
    WHERE picked_up_at IS NULL AND completed_at IS NULL AND origin IS NULL;
CREATE UNIQUE INDEX requests_origin ON requests (origin) WHERE origin IS NOT NULL;
CREATE INDEX requests_open ON requests (client_id, id) WHERE completed_at IS NULL;
CREATE INDEX requests_client ON requests (client_id, kind, id);
CREATE INDEX requests_routed ON requests (route) WHERE route IS NOT NULL AND completed_at IS NULL;

-- `seq` is an identity: a sequence number is never reused.
CREATE TABLE outbox (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_id    bigint NOT NULL REFERENCES clients (id),
    class        smallint NOT NULL,
    version      bigint NOT NULL,
    hash         bytea NOT NULL,
    full_at      bigint NOT NULL,
    updated_at   bigint NOT NULL,
    accepted_at  bigint NOT NULL,
    base_version bigint,
    items        bytea NOT NULL,
    removed      text,
    completed    text
);
CREATE INDEX outbox_client ON outbox (client_id, class);

CREATE TABLE child_tokens (
    code       text PRIMARY KEY,
    key_hash   bytea NOT NULL,
    created_at bigint NOT NULL
);

CREATE TABLE sites (
    code                    text PRIMARY KEY,
    name                    text NOT NULL,
    parent                  text,
    url                     text,
    clients                 bigint NOT NULL,
    outbox_depth            bigint NOT NULL,
    outbox_oldest           bigint,
    last_forwarded          bigint,
    accepts_parent_requests boolean NOT NULL,
    reported_at             bigint NOT NULL,
    via                     text NOT NULL,
    recorded_at             bigint NOT NULL
);
-- routed_due selects the codes reached through one child.
CREATE INDEX sites_via ON sites (via);
"#;

/// How many connections the pool keeps at most. A transaction spends most of its time waiting
/// for round trips and for its commit to reach the disk, so far more connections than cores are
/// busy at once, and PostgreSQL flushes the commits of all of them together: with 4 connections
/// deltas ran at a few hundred per second, bound by one WAL flush per handful of commits. The
/// bound keeps server processes (each several megabytes) in check.
fn max_connections() -> u32 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (cores * 16).clamp(16, 64) as u32
}

fn connect_error(url: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::PgConnect {
        url: redact_url(url),
        reason: e.to_string(),
    }
}

fn options(url: &str) -> Result<PgConnectOptions, StoreError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(connect_error(
            url,
            "not a PostgreSQL URL (expected postgres://user@host:port/database)",
        ));
    }
    PgConnectOptions::from_str(url).map_err(|e| connect_error(url, e))
}

/// Connects a single connection first, so that a wrong URL or a server that is down fails at
/// once with the server's reason instead of a pool time-out.
async fn connect(url: &str) -> Result<(PgConnectOptions, PgConnection), StoreError> {
    let opts = options(url)?;
    let conn = PgConnection::connect_with(&opts)
        .await
        .map_err(|e| connect_error(url, e))?;
    Ok((opts, conn))
}

pub(super) fn pool(opts: PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max_connections())
        .min_connections(0)
        .connect_lazy_with(opts)
}

/// The invsync tables present in the connection's current schema.
async fn present_tables(conn: &mut PgConnection) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = current_schema() AND table_name = ANY($1)
         ORDER BY table_name",
    )
    .bind(TABLES)
    .fetch_all(conn)
    .await?)
}

/// The schema version recorded in `meta`, `None` when there is no `meta` table.
async fn schema_version(
    conn: &mut PgConnection,
) -> Result<Option<Result<i64, String>>, StoreError> {
    if !present_tables(&mut *conn)
        .await?
        .iter()
        .any(|t| t == "meta")
    {
        return Ok(None);
    }
    // Another application's `meta` table is not ours: reading it as ours would fail with a
    // database error instead of saying what is wrong.
    let ours: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = 'meta'
           AND column_name IN ('key', 'value') AND data_type = 'text'",
    )
    .fetch_one(&mut *conn)
    .await?;
    if ours != 2 {
        return Ok(Some(Err(
            "its meta table is not invsync's (it has no text columns key and value)".to_string(),
        )));
    }
    let recorded = exec::recorded_schema_version(conn).await?;
    Ok(Some(recorded.ok_or_else(|| {
        "its meta table has no valid schema_version".to_string()
    })))
}

/// Creates the schema for `meta` in the (empty) database at `url`.
pub(super) async fn create(url: &str, meta: &SiteMeta) -> Result<PgPool, StoreError> {
    let (opts, mut conn) = connect(url).await?;
    let mut tx = conn.begin().await?;
    // Two `init`s at once: the second waits here and then finds the first one's tables.
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(LOCK_CLASS)
        .bind(LOCK_SCHEMA)
        .execute(&mut *tx)
        .await?;
    let present = present_tables(&mut tx).await?;
    if !present.is_empty() {
        return Err(StoreError::PgNotEmpty {
            url: redact_url(url),
            tables: present.join(", "),
        });
    }
    for step in MIGRATIONS {
        sqlx::raw_sql(step).execute(&mut *tx).await?;
    }
    exec::write_meta(&mut *tx, Some(meta), SCHEMA_VERSION).await?;
    tx.commit().await?;
    let _ = conn.close().await;
    Ok(pool(opts))
}

/// Opens the invsync database at `url`, migrating its schema if it is older.
pub(super) async fn open(url: &str) -> Result<PgPool, StoreError> {
    let (opts, mut conn) = connect(url).await?;
    let mut tx = conn.begin().await?;
    // Two sites opening an old database at once: one migrates, the other then sees the result.
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(LOCK_CLASS)
        .bind(LOCK_SCHEMA)
        .execute(&mut *tx)
        .await?;
    let not_ours = |reason: String| StoreError::PgNotInvsync {
        url: redact_url(url),
        reason,
    };
    let from = match schema_version(&mut tx).await? {
        None => {
            return Err(not_ours(
                "it has no invsync meta table in its current schema (create the site first)"
                    .to_string(),
            ));
        }
        Some(Err(reason)) => return Err(not_ours(reason)),
        Some(Ok(v)) if v > SCHEMA_VERSION => {
            return Err(crate::rows::newer_schema(v, SCHEMA_VERSION));
        }
        Some(Ok(v)) if v < 1 => return Err(not_ours(format!("invalid schema version {v}"))),
        Some(Ok(v)) => v,
    };
    for (v, step) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        sqlx::raw_sql(step).execute(&mut *tx).await?;
        tracing::info!(from = v, to = v + 1, "Migrated the PostgreSQL schema.");
    }
    if from < SCHEMA_VERSION {
        exec::write_meta(&mut *tx, None, SCHEMA_VERSION).await?;
    }
    tx.commit().await?;
    let _ = conn.close().await;
    Ok(pool(opts))
}
