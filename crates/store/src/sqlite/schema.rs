//! The SQLite schema, its migrations and how connections are opened and configured.
//!
//! The schema is designed for the storage budget of SPEC section 10 (32 KB per client with
//! 1,500 packages, hardware and history): an item is stored once per site in `items` and a
//! snapshot is a compact list of item ids (see `codec`), so a client costs its own items, its
//! id lists and a few small rows.

use std::fs::OpenOptions;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::queries::{Lite, ready};
use crate::SiteMeta;
use crate::error::StoreError;
use crate::exec;

/// The schema version this program writes; `migrate` brings older files up to it.
pub(super) const SCHEMA_VERSION: i64 = 9;

/// How long a connection waits for another connection's lock (another process's writer, or a
/// checkpoint) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

/// `MIGRATIONS[v]` turns schema version `v` into `v + 1`. Version 0 is an empty file.
const MIGRATIONS: &[&str] = &[
    SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_V6, SCHEMA_V7, SCHEMA_V8,
    SCHEMA_V9,
];

const SCHEMA_V1: &str = r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE clients (
    id          INTEGER PRIMARY KEY,
    uuid        BLOB NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    site_code   TEXT NOT NULL,
    machine_id  TEXT NOT NULL,
    key_hash    BLOB NOT NULL,
    enrolled_at INTEGER NOT NULL,
    last_seen   INTEGER,
    UNIQUE (site_code, name)
);

-- Interned items: one row per distinct (key, attributes) in the site. `h` is the first 8 bytes
-- of the item digest (little-endian, signed; see codec::digest_prefix for why not all 32) and
-- `attrs` the compact form of codec::encode_attrs.
CREATE TABLE items (
    id    INTEGER PRIMARY KEY,
    h     INTEGER NOT NULL,
    key   TEXT NOT NULL,
    attrs BLOB NOT NULL
);
CREATE INDEX items_h ON items (h);

-- The current snapshot per client and class. `items` is the id list of codec::encode_ids and
-- comes last so that reading the small columns never touches its overflow pages.
-- `recent_reports` holds the ids (16 bytes each) of the last few accepted reports, newest first:
-- that is the de-duplication of report ids.
CREATE TABLE snapshots (
    client_id      INTEGER NOT NULL REFERENCES clients (id),
    class          INTEGER NOT NULL,
    version        INTEGER NOT NULL,
    hash           BLOB NOT NULL,
    full_at        INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    recent_reports BLOB NOT NULL,
    items          BLOB NOT NULL,
    PRIMARY KEY (client_id, class)
);

-- One row per item key that an accepted report changed: old_item is NULL for an added item,
-- new_item for a removed one. The key is the key of either item (an item id determines its key),
-- so it is not stored again.
CREATE TABLE history (
    id        INTEGER PRIMARY KEY,
    client_id INTEGER NOT NULL REFERENCES clients (id),
    class     INTEGER NOT NULL,
    at        INTEGER NOT NULL,
    old_item  INTEGER REFERENCES items (id),
    new_item  INTEGER REFERENCES items (id),
    full      INTEGER NOT NULL,
    CHECK (old_item IS NOT NULL OR new_item IS NOT NULL)
);
CREATE INDEX history_client ON history (client_id, id);

-- Resync requests (arg 'hw' or 'sw') and client events (arg 'cycle', 'hinv' or 'sinv').
CREATE TABLE requests (
    id           INTEGER PRIMARY KEY,
    client_id    INTEGER NOT NULL REFERENCES clients (id),
    kind         TEXT NOT NULL CHECK (kind IN ('resync', 'event')),
    arg          TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    picked_up_at INTEGER,
    completed_at INTEGER
);
-- Two requests for the same client, kind and arg while one is pending are one request.
CREATE UNIQUE INDEX requests_pending ON requests (client_id, kind, arg)
    WHERE picked_up_at IS NULL AND completed_at IS NULL;
-- What a check-in delivers: the client's requests not yet complete.
CREATE INDEX requests_open ON requests (client_id, id) WHERE completed_at IS NULL;
-- What `invsite show` lists: a client's requests of one kind, newest first.
CREATE INDEX requests_client ON requests (client_id, kind, id);
"#;

/// Version 2: the hierarchy of SPEC section 6. Clients of sites below this one live in
/// `clients` beside this site's own (`site_code` is the owner; `UNIQUE (site_code, name)` is
/// already the per-site uniqueness a parent needs), so only the outbox, the children and the
/// provenance of resync requests completed elsewhere are new.
const SCHEMA_V2: &str = r#"
-- (No change of table, but of use: `snapshots.recent_reports` of a client of a site below holds
-- 16-byte marks of the last forwarded changes applied, version and hash prefix, instead of report
-- ids; such a client never reports here. See queries::forwarded_mark.)

-- Resync requests completed at another site (the client's owner) and recorded here so that
-- `invsite show` lists them: '<owner code>:<request id at the owner>'. Unique, so a change
-- forwarded twice records them once; NULL for this site's own requests.
ALTER TABLE requests ADD COLUMN origin TEXT;
CREATE UNIQUE INDEX requests_origin ON requests (origin) WHERE origin IS NOT NULL;

-- Changes this site accepted (own clients' reports and changes forwarded by children) that its
-- parent has not acknowledged yet, in acceptance order. Written in the transaction of the
-- change itself, so a change is either stored and queued or neither. AUTOINCREMENT: a sequence
-- number is never reused, so a late acknowledgement of a removed entry cannot remove a newer one.
-- `items` is a codec::encode_ids list: every item of a full snapshot, or the upserted items of a
-- delta (items are never deleted, so the ids stay valid however long the entry waits);
-- `base_version` is NULL for a full snapshot; `removed` (a delta's removed keys) and
-- `completed` (the resync requests the change completed, as RequestView) are JSON arrays.
CREATE TABLE outbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id    INTEGER NOT NULL REFERENCES clients (id),
    class        INTEGER NOT NULL,
    version      INTEGER NOT NULL,
    hash         BLOB NOT NULL,
    full_at      INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    accepted_at  INTEGER NOT NULL,
    base_version INTEGER,
    items        BLOB NOT NULL,
    removed      TEXT,
    completed    TEXT
);
CREATE INDEX outbox_client ON outbox (client_id, class);

-- The children this site issued a token to (the key itself is never stored).
CREATE TABLE child_tokens (
    code       TEXT PRIMARY KEY,
    key_hash   BLOB NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Every site below this one as it last reported itself, and `via`: the direct child it is
-- reached through (the child itself for a child). A code belongs to one branch of the tree.
CREATE TABLE sites (
    code                    TEXT PRIMARY KEY,
    name                    TEXT NOT NULL,
    parent                  TEXT,
    url                     TEXT,
    clients                 INTEGER NOT NULL,
    outbox_depth            INTEGER NOT NULL,
    outbox_oldest           INTEGER,
    last_forwarded          INTEGER,
    accepts_parent_requests INTEGER NOT NULL,
    reported_at             INTEGER NOT NULL,
    via                     TEXT NOT NULL,
    recorded_at             INTEGER NOT NULL
) WITHOUT ROWID;
"#;

/// Version 3: resync requests routed down the tree (`invsync --via-child`). A request for a
/// client of a site below is a row of `requests` like any other, with the owning site it goes to
/// and when it was last handed to the child on the way; a request that came down from above
/// keeps its origin in `origin`.
const SCHEMA_V3: &str = r#"
-- `route`: the owning site a request for a client of a site below was routed to (NULL for a
-- request of this site's own client and for one recorded as completed elsewhere). The request
-- travels down in the answers to the forward batches of the child the owner is reached through;
-- `delivered_at` is when it last did, so that it is handed over again after a while until the
-- full report that completes it comes back up (an answer lost on the way must not lose it).
ALTER TABLE requests ADD COLUMN route TEXT;
ALTER TABLE requests ADD COLUMN delivered_at INTEGER;
-- What a forward batch from a child delivers: the routed requests not yet complete.
CREATE INDEX requests_routed ON requests (route) WHERE route IS NOT NULL AND completed_at IS NULL;

-- `origin` now also names requests that came down from above ('<origin site>:<id there>'),
-- kept at the owner (queued for the agent) and at each site between (routed on). Such a request
-- is its own row even while an identical local one is pending: merged, one of the two origins
-- would never learn that its request completed. The agent answers both with one full report.
DROP INDEX requests_pending;
CREATE UNIQUE INDEX requests_pending ON requests (client_id, kind, arg)
    WHERE picked_up_at IS NULL AND completed_at IS NULL AND origin IS NULL;
"#;

/// Version 4: when a completed resync request went one level up (`invsync --wait` follows a
/// request until then at a site that has a parent).
const SCHEMA_V4: &str = r#"
-- `forwarded_at`: when the parent acknowledged the outbox entry that carried the change completing
-- the request (NULL until then, and at a site without a parent); `forwarded_to`: that parent's
-- code, when this site knew it. Set once, by the first acknowledgement: a later one (an entry
-- sent again after a lost answer) does not move it. Both NULL for existing rows: what was
-- forwarded before this version is not known per request. Adding nullable columns rewrites no row.
ALTER TABLE requests ADD COLUMN forwarded_at INTEGER;
ALTER TABLE requests ADD COLUMN forwarded_to TEXT;
"#;

/// Version 5: indexes for the paged client list (`Store::clients_page`, the console's list of
/// 100,000 clients): each sort reads its page in index order, forwards or backwards, instead of
/// sorting every client; the name sits in each index so a name search filters without reading
/// the table.
const SCHEMA_V5: &str = r#"
CREATE INDEX clients_by_name ON clients (name, site_code);
CREATE INDEX clients_by_last_seen ON clients (last_seen, name, site_code);
-- Sorting by when a class was last updated walks the snapshots of that class in time order.
CREATE INDEX snapshots_by_updated ON snapshots (class, updated_at);
"#;

/// Version 6: the file-share CAP (issue 18). A client says how it reaches the site, so that
/// `invsite cap-sync` knows whose `.cfg` to write and an enrollment knows which record it may
/// take over. Existing clients enrolled over HTTP: they become `0`.
const SCHEMA_V6: &str = r#"
-- `transport`: 0 = http (enrolled over HTTP), 1 = cap (enrolled offline, or has delivered a file
-- through a CAP directory), 2 = imported (an unmanaged record of `invsite import`, with a key
-- hash of zeros, which no key has). A column with a constant default rewrites no row.
ALTER TABLE clients ADD COLUMN transport INTEGER NOT NULL DEFAULT 0;
-- The CAP clients `cap-sync` writes a `.cfg` for, and the imported record an enrollment takes
-- over by machine id. Partial: clients over HTTP, nearly all of them, cost it nothing.
CREATE INDEX clients_offline ON clients (site_code, transport, machine_id) WHERE transport <> 0;
"#;

/// Version 7: administrators with roles and the audit trail (issue 20, items 6 and 7).
const SCHEMA_V7: &str = r#"
-- One row per administrator: the role, the hash of its token's key (the key is never stored),
-- when the token was issued and when it expires (NULL: never; `lifetime_ms` is how long a
-- rotated token works unless the rotation says otherwise).
CREATE TABLE users (
    name        TEXT PRIMARY KEY,
    role        TEXT NOT NULL,
    key_hash    BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    issued_at   INTEGER NOT NULL,
    expires_at  INTEGER,
    lifetime_ms INTEGER
) WITHOUT ROWID;

-- Who did what, when, from where, at which site. Append-only: the trigger below refuses any
-- UPDATE, and only retention pruning deletes (oldest first). `site` is where the action was
-- done; an entry a child forwarded up keeps the child it came through in `via` and its number
-- at that child in `origin_id` (both NULL for this site's own entries), so one forwarded twice
-- is stored once.
CREATE TABLE audit (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    address   TEXT,
    action    TEXT NOT NULL,
    target    TEXT,
    details   TEXT,
    site      TEXT NOT NULL,
    origin_id INTEGER,
    via       TEXT
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_actor ON audit (actor, id);
CREATE UNIQUE INDEX audit_origin ON audit (via, origin_id) WHERE origin_id IS NOT NULL;
CREATE TRIGGER audit_append_only BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit entries are append-only');
END;
"#;

/// Version 8: duplicates and agent versions (issue 20, items 2 and 8). An enrollment that
/// matches an existing client of the site by machine id, or by DMI serial and product UUID,
/// takes that record over (`Store::set_merge_duplicates`); each such takeover is recorded. The
/// agent's version is kept per client, and how far up the tree a completed request travelled.
/// New columns that are nullable or have a constant default rewrite no row.
const SCHEMA_V8: &str = r#"
-- The DMI serial number and product UUID the agent sent when it enrolled (NULL when it sent
-- none, or an older agent enrolled): a reimaged machine has a new machine id but these.
ALTER TABLE clients ADD COLUMN dmi_serial TEXT;
ALTER TABLE clients ADD COLUMN dmi_uuid TEXT;
-- The version of the client's agent, from the User-Agent of its enrollment and check-ins.
ALTER TABLE clients ADD COLUMN agent_version TEXT;
-- What an enrollment looks a machine up by among the site's clients.
CREATE INDEX clients_machine ON clients (site_code, machine_id);
CREATE INDEX clients_hardware ON clients (site_code, dmi_serial, dmi_uuid)
    WHERE dmi_serial IS NOT NULL;
-- Every enrollment that took an existing client's record over: when, the name before and
-- after, and how the machine was recognised ('machine_id' or 'hardware').
CREATE TABLE client_merges (
    id          INTEGER PRIMARY KEY,
    client_id   INTEGER NOT NULL REFERENCES clients (id),
    at          INTEGER NOT NULL,
    old_name    TEXT NOT NULL,
    new_name    TEXT NOT NULL,
    matched_by  TEXT NOT NULL
);
CREATE INDEX client_merges_client ON client_merges (client_id, id);
-- How far up the tree the change completing a request travelled beyond the parent
-- (`forwarded_to`): `hops`, a JSON array of {"site", "at"} nearest first, as the parent's
-- forward answers reported them; `hops_top` true once the top of the tree stored it.
-- `hops_pending` true while a request that came from below (`origin`) has news of its way up that
-- the child it came through has not been told.
ALTER TABLE requests ADD COLUMN hops TEXT;
ALTER TABLE requests ADD COLUMN hops_top INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN hops_pending INTEGER NOT NULL DEFAULT 0;
CREATE INDEX requests_hops_pending ON requests (id) WHERE hops_pending;
"#;

/// Version 9: the client lifecycle (issue 20: delete, stale, retention). A deleted client keeps
/// its row (and its history, for the retention period) as a tombstone; its snapshots and
/// requests go. The retention pruner finds old history by time.
const SCHEMA_V9: &str = r#"
-- `deleted_at`: when the client was deleted (`invsite delete`, or by a site below it); NULL while
-- it lives. A deleted client's `name` becomes '<NAME>~<row id>' (no client name holds a '~'), so
-- the name is free for a new enrollment while `invsite history NAME --deleted` still finds it,
-- and its key hash becomes zeros. Adding a nullable column rewrites no row.
ALTER TABLE clients ADD COLUMN deleted_at INTEGER;
-- The deleted clients the pruner removes once their history is past the retention period.
CREATE INDEX clients_deleted ON clients (deleted_at) WHERE deleted_at IS NOT NULL;
-- `deleted_at` of an outbox entry: a tombstone (the client was deleted at that time), which tells
-- the sites above to forget the client; its snapshot columns are placeholders.
ALTER TABLE outbox ADD COLUMN deleted_at INTEGER;
-- The retention pruner deletes the oldest history in small batches, found by time.
CREATE INDEX history_at ON history (at);
-- The retention pruner deletes requests completed (or cancelled, or expired) long ago.
CREATE INDEX requests_done ON requests (completed_at) WHERE completed_at IS NOT NULL;
"#;

/// Creates a new database file at `path` with the current schema and the site's metadata,
/// refusing if anything exists there. A failed creation removes what it made, so it can be
/// retried.
pub(super) fn create(path: &Path, meta: &SiteMeta) -> Result<Connection, StoreError> {
    // Claim the path atomically first, so that two `init`s cannot both believe they created it.
    match OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(StoreError::AlreadyExists(path.to_path_buf()));
        }
        Err(e) => {
            return Err(StoreError::Database(format!(
                "cannot create {}: {e}",
                path.display()
            )));
        }
    }
    let made = (|| {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        configure_writer(&conn)?;
        migrate(&conn, Some(meta))?;
        Ok(conn)
    })();
    if made.is_err() {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
    made
}

/// Opens an existing database for writing and brings its schema up to date.
pub(super) fn open(path: &Path) -> Result<Connection, StoreError> {
    if !path.exists() {
        return Err(StoreError::NotFound(path.to_path_buf()));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Database(format!("cannot open {}: {e}", path.display())))?;
    configure_writer(&conn)?;
    migrate(&conn, None)?;
    Ok(conn)
}

/// Opens a read-only connection; WAL mode lets it read while the writer writes.
pub(super) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // No memory map (`mmap_size`): SQLite unmaps the whole file whenever a read transaction
    // starts after a commit, and the page faults that follow cost more than the `pread`s they
    // save. Measured at 10,000 agents, a delta took 135 µs of site CPU with a map and 123
    // without, and check-ins were the same (BENCHMARKS.md, session 4).
    rusqlite::vtab::array::load_module(&conn)?;
    // Every read statement of the backend stays prepared (the default keeps only 16).
    conn.set_prepared_statement_cache_capacity(64);
    stable_plans(&conn)?;
    Ok(conn)
}

/// Turns on SQLite's query planner stability guarantee. Without it, SQLite (bundled with
/// STAT4) lets some plans depend on the values bound to a statement, marks such a statement to
/// be planned again whenever a value is bound, and so re-parses and re-plans cached statements
/// at every execution: a profile of the site under check-ins showed a fifth of its CPU time in
/// `sqlite3Reprepare`. Our queries look rows up by keys; one plan per statement is what we want.
fn stable_plans(conn: &Connection) -> Result<(), StoreError> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

fn configure_writer(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL lets the read connections (and other processes such as `invsite show`) read while the
    // writer writes, and makes a commit one sequential append.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Database(format!(
            "could not switch the database to WAL mode (it stays in {mode} mode)"
        )));
    }
    // FULL, not NORMAL: in WAL mode NORMAL does not sync the WAL at each commit, so a write
    // acknowledged to an agent could vanish on power loss, and the agent would never resend it.
    // FULL syncs every commit; group commit spreads that one fsync over a whole batch of writes.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // A burst of writes while readers hold old snapshots can grow the WAL far beyond its usual
    // size; this truncates it back after the next checkpoint instead of keeping the space.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    rusqlite::vtab::array::load_module(conn)?;
    conn.set_prepared_statement_cache_capacity(64);
    stable_plans(conn)?;
    Ok(())
}

/// The schema version of the file, `None` when it has no `meta` table (empty, or not ours).
fn schema_version(conn: &Connection) -> Result<Option<i64>, StoreError> {
    let has_meta: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'meta'",
        [],
        |r| r.get(0),
    )?;
    if has_meta == 0 {
        return Ok(None);
    }
    match ready(exec::recorded_schema_version(&mut Lite(conn)))? {
        Some(v) => Ok(Some(v)),
        None => Err(StoreError::Database(
            "the meta table has no valid schema_version".to_string(),
        )),
    }
}

/// Brings the schema to [`SCHEMA_VERSION`] in one transaction. With `new_site`, the file must
/// be empty and is initialised for that site; without, it must already be an invsync database.
fn migrate(conn: &Connection, new_site: Option<&SiteMeta>) -> Result<(), StoreError> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let from = match (schema_version(conn)?, new_site) {
            (None, Some(_)) => 0,
            (Some(_), Some(_)) => {
                return Err(StoreError::Database(
                    "the new database file is not empty".to_string(),
                ));
            }
            (None, None) => {
                return Err(StoreError::Database(
                    "the file is not an invsync database (it has no meta table)".to_string(),
                ));
            }
            (Some(v), None) if v > SCHEMA_VERSION => {
                return Err(crate::rows::newer_schema(v, SCHEMA_VERSION));
            }
            (Some(v), None) => v,
        };
        for (v, step) in MIGRATIONS.iter().enumerate().skip(from as usize) {
            conn.execute_batch(step)?;
            if new_site.is_none() {
                tracing::info!(from = v, to = v + 1, "Migrated the database schema.");
            }
        }
        if new_site.is_some() || from < SCHEMA_VERSION {
            ready(exec::write_meta(&mut Lite(conn), new_site, SCHEMA_VERSION))?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(_) => {
            let _ = conn.execute_batch("ROLLBACK");
        }
    }
    result
}
