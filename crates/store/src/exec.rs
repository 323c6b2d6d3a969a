//! One executor interface for both backends ([`Exec`]), and the reads and small writes that
//! are the same in both dialects but for the driver, written once over it: a backend only
//! binds [`Arg`]s, runs a statement and hands its rows to a decoder of `crate::rows`. The
//! PostgreSQL connection runs them with sqlx; the SQLite connection runs them at once, so its
//! futures are ready when first polled and the SQLite backend drives them with
//! `sqlite::ready`, on whichever thread it reads or writes on. The few statements whose text
//! differs between the dialects (id lists, casts, a column name) are the executor's constants.

use std::collections::BTreeMap;
use std::future::Future;

use invsync_proto::wire::{
    ClassState, ClientPage, ClientQuery, ClientSummary, ClientView, HardwareId, InstructionKind,
    Queued, RequestPage, RequestQuery, RequestState, RequestView,
};
use invsync_proto::{Class, ClientName, Digest, Items, SiteCode, Timestamp};
use uuid::Uuid;

use crate::cache::FastMap;
use crate::codec::decode_attrs;
use crate::error::StoreError;
use crate::last_seen::LastSeen;
use crate::plan::ReportInput;
use crate::rows::{self, ClientKey, Cols, OpenRequest, SnapshotRow, Stamp, WriteSet, corrupt};
use crate::sql;
use crate::{ClientAuth, Enrolled, Enrollment, HistoryEntry, HistoryQuery, SiteMeta};

/// A statement's parameter, bound by each backend as its dialect stores the type.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg<'a> {
    Int(i64),
    OptInt(Option<i64>),
    Flag(bool),
    Text(&'a str),
    OptText(Option<&'a str>),
    Blob(&'a [u8]),
    OptBlob(Option<&'a [u8]>),
    /// A client id (16 bytes in SQLite, a `uuid` in PostgreSQL).
    Uuid(Uuid),
    /// A class (an integer in SQLite, a `smallint` in PostgreSQL).
    Class(Class),
    OptClass(Option<Class>),
    /// A list of ids (`rarray` in SQLite, a `bigint[]` in PostgreSQL).
    Ids(&'a [i64]),
}

/// Runs statements on one connection (or transaction) and decodes their rows.
pub(crate) trait Exec {
    type Row<'r>: Cols;

    // The statements written once in `sql::dialect_statements!`: the items with the ids of
    // `$1`, and the client rows of those ids; marking picked up, completing events and
    // completing the resync requests a report answers (ids in `$2`); a client's history.
    const LOAD_ITEMS: &'static str;
    const CLIENTS_BY_IDS: &'static str;
    const MARK_PICKED_UP: &'static str;
    const COMPLETE_EVENTS: &'static str;
    const COMPLETE_ANSWERS: &'static str;
    const HISTORY: &'static str;
    /// The function that finds a string in another (`instr`, `strpos`).
    const STRPOS: &'static str;
    /// What names are sorted with (see `crate::page::order_by`).
    const COLLATE: &'static str;

    /// Every row of `sql`, each decoded by `f`.
    fn all<T>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
        f: impl FnMut(&Self::Row<'_>) -> Result<T, StoreError>,
    ) -> impl Future<Output = Result<Vec<T>, StoreError>>;

    /// The first row of `sql` decoded by `f`, if there is one.
    fn first<T>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
        f: impl FnOnce(&Self::Row<'_>) -> Result<T, StoreError>,
    ) -> impl Future<Output = Result<Option<T>, StoreError>>;

    /// Runs a statement that returns no rows; how many rows it changed.
    fn execute(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<u64, StoreError>>;
}

// ---------------------------------------------------------------------------------------------
// Site, schema and clients

/// The schema version the `meta` table records; `None` when it records no valid one.
pub(crate) async fn recorded_schema_version(e: &mut impl Exec) -> Result<Option<i64>, StoreError> {
    let sql = "SELECT value FROM meta WHERE key = 'schema_version'";
    let raw = e.first(sql, &[], |r| Ok(r.text(0)?.parse().ok())).await?;
    Ok(raw.flatten())
}

/// Writes the `meta` rows of a new site (`new_site`) whose schema is `version`, or, without,
/// records that an existing database's schema was migrated to `version`.
pub(crate) async fn write_meta(
    e: &mut impl Exec,
    new_site: Option<&SiteMeta>,
    version: i64,
) -> Result<(), StoreError> {
    let Some(meta) = new_site else {
        let sql = "UPDATE meta SET value = $1 WHERE key = 'schema_version'";
        e.execute(sql, &[Arg::Text(&version.to_string())]).await?;
        return Ok(());
    };
    for (key, value) in rows::new_site_meta(meta, version) {
        let sql = "INSERT INTO meta (key, value) VALUES ($1, $2)";
        e.execute(sql, &[Arg::Text(key), Arg::Text(&value)]).await?;
    }
    Ok(())
}

pub(crate) async fn site_meta(e: &mut impl Exec) -> Result<SiteMeta, StoreError> {
    let pairs = e
        .all(sql::SITE_META, &[], |r| {
            Ok((r.text(0)?.to_string(), r.text(1)?.to_string()))
        })
        .await?;
    rows::site_meta(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// The internal row id of a client by its client id, whichever site owns it.
pub(crate) async fn client_row(
    e: &mut impl Exec,
    client_id: Uuid,
) -> Result<Option<i64>, StoreError> {
    e.first(sql::CLIENT_ROW, &[Arg::Uuid(client_id)], |r| r.int(0))
        .await
}

/// The internal row id of a client of this site by its client id. What agents do (check in,
/// report) goes through this: a client a child forwarded belongs to another site, and a report
/// here would give its snapshot versions the owner never had.
pub(crate) async fn own_client_row(
    e: &mut impl Exec,
    site: &SiteCode,
    client_id: Uuid,
) -> Result<Option<i64>, StoreError> {
    // The site is compared here rather than in SQL: a bound parameter in a condition that no
    // index answers makes SQLite (built with STAT4) look at its value while planning, and then
    // re-plan the cached statement at every execution. That was a fifth of the site's CPU time
    // under a check-in load; `uuid` is unique, so the filter reads no extra row.
    // A deleted client is no longer one (`crate::lifecycle`): a report or check-in racing its
    // deletion finds nothing here, under the client's lock in PostgreSQL.
    let sql = "SELECT id, site_code FROM clients WHERE uuid = $1 AND deleted_at IS NULL";
    let row = e
        .first(sql, &[Arg::Uuid(client_id)], |r| {
            Ok((r.int(0)?, r.text(1)? == site.as_str()))
        })
        .await?;
    Ok(row.filter(|(_, own)| *own).map(|(id, _)| id))
}

/// The internal row id of a client of this site by name.
pub(crate) async fn client_row_by_name(
    e: &mut impl Exec,
    site: &SiteCode,
    name: &ClientName,
) -> Result<Option<i64>, StoreError> {
    let args = [Arg::Text(site.as_str()), Arg::Text(name.as_str())];
    e.first(sql::CLIENT_ROW_BY_NAME, &args, |r| r.int(0)).await
}

/// The internal row id of the client `key` names.
async fn row_of(
    e: &mut impl Exec,
    site: &SiteCode,
    key: &ClientKey,
) -> Result<Option<i64>, StoreError> {
    match key {
        ClientKey::Name(name) => client_row_by_name(e, site, name).await,
        ClientKey::Id(id) => client_row(e, *id).await,
    }
}

pub(crate) async fn enroll(
    e: &mut impl Exec,
    site: &SiteCode,
    en: &Enrollment,
    merge: bool,
) -> Result<Enrolled, StoreError> {
    // Hardware that identifies no machine (a firmware placeholder) is not recorded or matched.
    let en = &Enrollment {
        hardware: en.hardware.as_ref().and_then(|h| h.checked()),
        ..en.clone()
    };
    // Two enrollments of one free name at once (PostgreSQL runs them in parallel; SQLite's
    // single writer never does): the insert of the second finds the first's row (ON CONFLICT
    // waits for it to commit) and the loop then treats it as the holder.
    let by_name = [Arg::Text(site.as_str()), Arg::Text(en.name.as_str())];
    for _ in 0..3 {
        let holder = name_holder(e, &by_name).await?;
        if holder.is_none() {
            // A machine that was imported (`invsite import`) and now enrolls under a name of
            // its own takes its record over, so its inventory and history stay one client.
            if let Some((row, taken)) = take_over_imported(e, site, en).await? {
                enrolled_facts(e, row, en).await?;
                return Ok(taken);
            }
        }
        let by_machine = match merge {
            true => known_client(e, sql::CLIENT_BY_MACHINE, site, &[&en.machine_id]).await?,
            false => None,
        };
        let by_hardware = match (&en.hardware, merge && by_machine.is_none()) {
            (Some(h), true) => {
                let hw = [h.serial.as_str(), h.uuid.as_str()];
                known_client(e, sql::CLIENT_BY_HARDWARE, site, &hw).await?
            }
            _ => None,
        };
        let holder = holder.map(|h| {
            let known = rows::Known {
                row: h.row,
                client_id: h.client_id,
                name: en.name.clone(),
                machine_id: h.machine_id,
            };
            (known, h.hardware)
        });
        match rows::enroll_to(en, holder, by_machine, by_hardware, merge)? {
            rows::EnrollTo::New => {
                let client_id = Uuid::new_v4();
                let values = [
                    Arg::Uuid(client_id),
                    Arg::Text(en.name.as_str()),
                    Arg::Text(site.as_str()),
                    Arg::Text(&en.machine_id),
                    Arg::Blob(en.key_hash.0.as_slice()),
                    Arg::Int(en.now.0),
                    Arg::Int(rows::TRANSPORT_HTTP),
                ];
                let Some(row) = e.first(sql::ENROLL, &values, |r| r.int(0)).await? else {
                    continue;
                };
                enrolled_facts(e, row, en).await?;
                return Ok(Enrolled {
                    client_id,
                    reenrolled: false,
                    merged: None,
                });
            }
            rows::EnrollTo::Existing { row, enrolled } => {
                match &enrolled.merged {
                    // The same machine enrolling again, or taking over its imported record of
                    // the same name (`SET_KEY` makes that one a client over HTTP).
                    None => {
                        let args = [Arg::Blob(en.key_hash.0.as_slice()), Arg::Int(row)];
                        e.execute(sql::SET_KEY, &args).await?;
                    }
                    Some(m) => take_over(e, row, en, m).await?,
                }
                enrolled_facts(e, row, en).await?;
                return Ok(enrolled);
            }
        }
    }
    Err(StoreError::Database(format!(
        "could not enroll {}: the name kept changing hands",
        en.name
    )))
}

/// Gives an existing client's record to the enrolling machine: its name, key and machine id,
/// and a row of `client_merges` saying so. The record's id, snapshots, history and requests
/// stay; the old key no longer authenticates. A parent learns the new name with the client's
/// next forwarded change (each carries the client's record), which the enrolled agent's first
/// full report makes.
async fn take_over(
    e: &mut impl Exec,
    row: i64,
    en: &Enrollment,
    m: &crate::Merged,
) -> Result<(), StoreError> {
    let args = [
        Arg::Text(en.name.as_str()),
        Arg::Blob(en.key_hash.0.as_slice()),
        Arg::Text(&en.machine_id),
        Arg::Int(row),
    ];
    e.execute(sql::MERGE_INTO, &args).await?;
    let args = [
        Arg::Int(row),
        Arg::Int(en.now.0),
        Arg::Text(m.old_name.as_str()),
        Arg::Text(en.name.as_str()),
        Arg::Text(m.matched_by.as_str()),
    ];
    e.execute(sql::RECORD_MERGE, &args).await?;
    tracing::debug!(old = %m.old_name, new = %en.name, matched_by = m.matched_by.as_str(), "An enrollment took over the record of the same machine.");
    Ok(())
}

/// Records what an enrollment said of the machine and its agent (hardware, agent version).
async fn enrolled_facts(e: &mut impl Exec, row: i64, en: &Enrollment) -> Result<(), StoreError> {
    let hw = en.hardware.as_ref();
    let args = [
        Arg::OptText(hw.map(|h| h.serial.as_str())),
        Arg::OptText(hw.map(|h| h.uuid.as_str())),
        Arg::OptText(en.agent_version.as_deref()),
        Arg::Int(row),
    ];
    e.execute(sql::ENROLLED_FACTS, &args).await?;
    Ok(())
}

/// The client of this site a lookup by machine id or hardware finds (`sql::CLIENT_BY_*`).
async fn known_client(
    e: &mut impl Exec,
    sql: &str,
    site: &SiteCode,
    values: &[&str],
) -> Result<Option<rows::Known>, StoreError> {
    let mut args = vec![Arg::Text(site.as_str())];
    args.extend(values.iter().map(|v| Arg::Text(v)));
    e.first(sql, &args, |r| {
        Ok(rows::Known {
            row: r.int(0)?,
            client_id: r.uuid(1)?,
            name: r.name(2)?,
            machine_id: r.text(3)?.to_string(),
        })
    })
    .await
}

/// A client's recorded agent version, by client id.
pub(crate) async fn agent_version(
    e: &mut impl Exec,
    client_id: Uuid,
) -> Result<Option<String>, StoreError> {
    let found = e
        .first(sql::AGENT_VERSION, &[Arg::Uuid(client_id)], |r| {
            Ok(r.opt_text(0)?.map(str::to_string))
        })
        .await?;
    Ok(found.flatten())
}

pub(crate) async fn set_agent_version(
    e: &mut impl Exec,
    client_id: Uuid,
    version: &str,
) -> Result<(), StoreError> {
    let args = [Arg::Text(version), Arg::Uuid(client_id)];
    e.execute(sql::SET_AGENT_VERSION, &args).await?;
    Ok(())
}

/// The client holding a name of this site.
pub(crate) struct Holder {
    pub row: i64,
    pub client_id: Uuid,
    pub machine_id: String,
    /// `crate::rows::TRANSPORT_*`.
    pub transport: i64,
    /// The DMI serial and product UUID it enrolled with, if any.
    pub hardware: Option<HardwareId>,
}

/// Who holds the name in `by_name` (site code, name).
async fn name_holder(
    e: &mut impl Exec,
    by_name: &[Arg<'_>; 2],
) -> Result<Option<Holder>, StoreError> {
    e.first(sql::NAME_HOLDER, by_name, |r| {
        Ok(Holder {
            row: r.int(0)?,
            client_id: r.uuid(1)?,
            machine_id: r.text(2)?.to_string(),
            transport: r.int(3)?,
            hardware: match (r.opt_text(4)?, r.opt_text(5)?) {
                (Some(serial), Some(uuid)) => Some(HardwareId {
                    serial: serial.to_string(),
                    uuid: uuid.to_string(),
                }),
                _ => None,
            },
        })
    })
    .await
}

/// Renames the imported record of this machine (if there is one) to the enrolling name and
/// gives it the new key: an agent enrolling with a free name takes over what `invsite import`
/// recorded for its machine.
async fn take_over_imported(
    e: &mut impl Exec,
    site: &SiteCode,
    en: &Enrollment,
) -> Result<Option<(i64, Enrolled)>, StoreError> {
    // An empty machine id identifies no machine.
    if en.machine_id.is_empty() {
        return Ok(None);
    }
    let args = [Arg::Text(site.as_str()), Arg::Text(&en.machine_id)];
    let found = e
        .first(sql::IMPORTED_BY_MACHINE, &args, |r| {
            Ok((r.int(0)?, r.uuid(1)?))
        })
        .await?;
    let Some((row, client_id)) = found else {
        return Ok(None);
    };
    let args = [
        Arg::Text(en.name.as_str()),
        Arg::Blob(en.key_hash.0.as_slice()),
        Arg::Int(row),
    ];
    e.execute(sql::TAKE_OVER, &args).await?;
    tracing::info!(%client_id, name = %en.name, "An enrolling agent took over the record imported for its machine.");
    Ok(Some((
        row,
        Enrolled {
            client_id,
            reenrolled: true,
            merged: None,
        },
    )))
}

/// Creates a client enrolled offline (`invsite offline-enroll`): transport cap, no machine id
/// until its first file-share check-in. A taken name is refused as enrollment refuses it.
pub(crate) async fn enroll_offline(
    e: &mut impl Exec,
    site: &SiteCode,
    name: &ClientName,
    key_hash: &Digest,
    now: Timestamp,
) -> Result<Enrolled, StoreError> {
    let by_name = [Arg::Text(site.as_str()), Arg::Text(name.as_str())];
    if let Some(holder) = name_holder(e, &by_name).await? {
        return Err(rows::name_taken(name, holder.client_id, holder.machine_id));
    }
    let client_id = Uuid::new_v4();
    let values = [
        Arg::Uuid(client_id),
        Arg::Text(name.as_str()),
        Arg::Text(site.as_str()),
        Arg::Text(""),
        Arg::Blob(key_hash.0.as_slice()),
        Arg::Int(now.0),
        Arg::Int(rows::TRANSPORT_CAP),
    ];
    if e.first(sql::ENROLL, &values, |r| r.int(0)).await?.is_some() {
        return Ok(Enrolled {
            client_id,
            reenrolled: false,
            merged: None,
        });
    }
    // Taken between the look and the insert (PostgreSQL only): refused all the same.
    match name_holder(e, &by_name).await? {
        Some(holder) => Err(rows::name_taken(name, holder.client_id, holder.machine_id)),
        None => Err(StoreError::Database(format!(
            "could not enroll {name}: the name kept changing hands"
        ))),
    }
}

/// The record `invsite import` stores an inventory for ([`crate::Store::import_unmanaged`]):
/// its row, its client id and whether it was created now.
pub(crate) struct ImportTarget {
    pub row: i64,
    pub client_id: Uuid,
    pub created: bool,
}

/// Finds or creates the record an imported inventory of `machine_id` named `name` goes to: a
/// new imported record, the imported record of that name (now of this machine), or the
/// enrolled client of that name when it is the same machine; another machine's name is
/// refused with `NameTaken`.
pub(crate) async fn import_target(
    e: &mut impl Exec,
    site: &SiteCode,
    name: &ClientName,
    machine_id: &str,
    now: Timestamp,
) -> Result<ImportTarget, StoreError> {
    let by_name = [Arg::Text(site.as_str()), Arg::Text(name.as_str())];
    for _ in 0..3 {
        let Some(holder) = name_holder(e, &by_name).await? else {
            let client_id = Uuid::new_v4();
            let values = [
                Arg::Uuid(client_id),
                Arg::Text(name.as_str()),
                Arg::Text(site.as_str()),
                Arg::Text(machine_id),
                Arg::Blob(&[0u8; 32]),
                Arg::Int(now.0),
                Arg::Int(rows::TRANSPORT_IMPORTED),
            ];
            if let Some(row) = e.first(sql::ENROLL, &values, |r| r.int(0)).await? {
                return Ok(ImportTarget {
                    row,
                    client_id,
                    created: true,
                });
            }
            continue;
        };
        if holder.transport == rows::TRANSPORT_IMPORTED {
            if holder.machine_id != machine_id {
                let args = [Arg::Text(machine_id), Arg::Int(holder.row)];
                e.execute(sql::SET_MACHINE_ID, &args).await?;
            }
        } else if holder.machine_id != machine_id {
            return Err(rows::name_taken(name, holder.client_id, holder.machine_id));
        }
        return Ok(ImportTarget {
            row: holder.row,
            client_id: holder.client_id,
            created: false,
        });
    }
    Err(StoreError::Database(format!(
        "could not import {name}: the name kept changing hands"
    )))
}

/// The clients of this site that use a file-share CAP directory, sorted by name.
pub(crate) async fn cap_clients(
    e: &mut impl Exec,
    site: &SiteCode,
) -> Result<Vec<(Uuid, ClientName)>, StoreError> {
    let args = [Arg::Text(site.as_str())];
    let mut found = e
        .all(sql::CAP_CLIENTS, &args, |r| Ok((r.uuid(0)?, r.name(1)?)))
        .await?;
    // Sorted here: the two databases need not collate names alike.
    found.sort_by(|a, b| a.1.as_str().cmp(b.1.as_str()));
    Ok(found)
}

/// What a check-in of this own client would answer, with nothing marked and no time recorded;
/// `None` for an id that is not a client of this site.
pub(crate) async fn cfg_view(
    e: &mut impl Exec,
    site: &SiteCode,
    client_id: Uuid,
    cutoff: i64,
) -> Result<Option<invsync_proto::wire::CheckinResponse>, StoreError> {
    let Some(client) = own_client_row(e, site, client_id).await? else {
        return Ok(None);
    };
    Ok(Some(checkin_read(e, client, cutoff).await?.0))
}

/// The row of an own client whose file-share check-in `c` would change nothing but its
/// last-seen time: it picked nothing up, finished no event, and its record already says cap
/// and has its machine id. Such a check-in (every delta's file carries one) then needs no
/// write of its own: the time goes where HTTP check-ins put theirs ([`crate::last_seen`]).
pub(crate) async fn cap_seen_only(
    e: &mut impl Exec,
    site: &SiteCode,
    client_id: Uuid,
    c: &crate::CapCheckin,
) -> Result<Option<i64>, StoreError> {
    if !c.seen.is_empty() || !c.done_events.is_empty() {
        return Ok(None);
    }
    // The site compared here, not in SQL: see `own_client_row`.
    let sql = "SELECT id, site_code, transport, machine_id FROM clients WHERE uuid = $1";
    let row = e
        .first(sql, &[Arg::Uuid(client_id)], |r| {
            let quiet = r.text(1)? == site.as_str()
                && r.int(2)? == rows::TRANSPORT_CAP
                && !r.text(3)?.is_empty();
            Ok((r.int(0)?, quiet))
        })
        .await?;
    Ok(row.filter(|(_, quiet)| *quiet).map(|(id, _)| id))
}

/// Records a file-share check-in ([`crate::Store::cap_checkin`]); the caller runs it in one
/// transaction.
pub(crate) async fn cap_checkin<E: Exec>(
    e: &mut E,
    site: &SiteCode,
    client_id: Uuid,
    c: &crate::CapCheckin,
    now: Timestamp,
) -> Result<(), StoreError> {
    let client = own_client_row(e, site, client_id).await?;
    let client = client.ok_or_else(|| rows::unknown_id(client_id))?;
    // A clock ahead of the site's cannot put the time in the future, and an old file put back
    // cannot move it backwards.
    let seen = Timestamp(c.seen_at.0.min(now.0));
    let args = [Arg::Text(&c.machine_id), Arg::Int(seen.0), Arg::Int(client)];
    e.execute(sql::CAP_CHECKIN, &args).await?;
    if !c.seen.is_empty() {
        mark_picked_up(e, client, &c.seen, now).await?;
    }
    if !c.done_events.is_empty() {
        complete_events(e, client, &c.done_events, now).await?;
    }
    Ok(())
}

/// The internal row and the credentials of a client of this site, in one lookup. Only this
/// site's own clients can authenticate: a client forwarded by a child is stored with a key hash
/// of zeros, and is not found here at all, so no key can ever match it.
pub(crate) async fn client_credentials(
    e: &mut impl Exec,
    site: &SiteCode,
    client_id: Uuid,
) -> Result<Option<(i64, ClientAuth)>, StoreError> {
    // The site is compared here, not in SQL, for the reason given at `own_client_row`.
    let sql = "SELECT id, name, key_hash, site_code, deleted_at FROM clients WHERE uuid = $1";
    let found = e
        .first(sql, &[Arg::Uuid(client_id)], |r| {
            if r.text(3)? != site.as_str() {
                return Ok(None);
            }
            let auth = ClientAuth {
                client_id,
                name: r.name(1)?,
                key_hash: r.digest(2)?,
                deleted_at: r.ts(4)?,
            };
            Ok(Some((r.int(0)?, auth)))
        })
        .await?;
    Ok(found.flatten())
}

/// Replaces an own client's key hash with 32 zero bytes, which no key hashes to, so its key
/// is refused from the next request on. Returns whether the client exists.
pub(crate) async fn revoke(
    e: &mut impl Exec,
    site: &SiteCode,
    name: &ClientName,
) -> Result<bool, StoreError> {
    let args = [
        Arg::Blob(&[0u8; 32]),
        Arg::Text(site.as_str()),
        Arg::Text(name.as_str()),
    ];
    Ok(e.execute(sql::REVOKE, &args).await? > 0)
}

// ---------------------------------------------------------------------------------------------
// Check-in and requests

/// What a check-in reads once the client is known: its open requests (and which of them it
/// picks up now) and the site's version and hash per class. Resync requests pending since
/// before `cutoff` have expired and are left out.
pub(crate) async fn checkin_read(
    e: &mut impl Exec,
    client: i64,
    cutoff: i64,
) -> Result<(invsync_proto::wire::CheckinResponse, Vec<i64>), StoreError> {
    let args = [Arg::Int(client)];
    let open_args = [Arg::Int(client), Arg::Int(cutoff)];
    let open: Vec<OpenRequest> = e
        .all(sql::OPEN_REQUESTS, &open_args, |r| rows::open_request(r))
        .await?;
    let classes: BTreeMap<Class, ClassState> = e
        .all(sql::CLASS_STATES, &args, |r| rows::class_state(r))
        .await?
        .into_iter()
        .collect();
    Ok(rows::checkin_response(open, classes))
}

pub(crate) async fn mark_picked_up<E: Exec>(
    e: &mut E,
    client: i64,
    ids: &[i64],
    now: Timestamp,
) -> Result<(), StoreError> {
    let args = [Arg::Int(now.0), Arg::Ids(ids), Arg::Int(client)];
    e.execute(E::MARK_PICKED_UP, &args).await?;
    Ok(())
}

pub(crate) async fn complete_events<E: Exec>(
    e: &mut E,
    client: i64,
    ids: &[i64],
    now: Timestamp,
) -> Result<(), StoreError> {
    let args = [Arg::Int(now.0), Arg::Ids(ids), Arg::Int(client)];
    e.execute(E::COMPLETE_EVENTS, &args).await?;
    Ok(())
}

/// Completes the resync requests a full report answers: only this client's, for this class,
/// so a report cannot complete another client's request by naming its id. In id order.
pub(crate) async fn complete_answers<E: Exec>(
    e: &mut E,
    client: i64,
    input: &ReportInput,
    now: Timestamp,
) -> Result<Vec<RequestView>, StoreError> {
    if !input.is_full() || input.answers.is_empty() {
        return Ok(Vec::new());
    }
    let args = [
        Arg::Int(now.0),
        Arg::Ids(&input.answers),
        Arg::Int(client),
        Arg::Text(input.class.as_str()),
    ];
    let mut completed = e
        .all(E::COMPLETE_ANSWERS, &args, |r| rows::request_view(r))
        .await?;
    completed.sort_by_key(|r| r.id);
    Ok(completed)
}

/// Queues a resync request or an event unless an identical one is still pending.
pub(crate) async fn queue_request(
    e: &mut impl Exec,
    site: &SiteCode,
    name: &ClientName,
    kind: &InstructionKind,
    now: Timestamp,
    cutoff: i64,
) -> Result<Queued, StoreError> {
    let client = client_row_by_name(e, site, name).await?;
    let client = client.ok_or_else(|| rows::unknown_client(name))?;
    let (kind, arg) = rows::kind_and_arg(kind);
    if kind == "resync" {
        // An identical request that expired no longer stands for this one.
        let args = [
            Arg::Int(client),
            Arg::Text(kind),
            Arg::Text(arg),
            Arg::Int(cutoff),
        ];
        e.execute(sql::END_EXPIRED, &args).await?;
    }
    let (id, requested_at, created) = queue_pending(e, client, kind, arg, None, now).await?;
    Ok(rows::queued(name, id, requested_at, created))
}

/// Creates a request unless an identical one is pending ([`sql::QUEUE_REQUEST`]); the id,
/// request time and whether it was created.
pub(crate) async fn queue_pending(
    e: &mut impl Exec,
    client: i64,
    kind: &str,
    arg: &str,
    route: Option<&str>,
    now: Timestamp,
) -> Result<(i64, Timestamp, bool), StoreError> {
    let (c, k, a) = (Arg::Int(client), Arg::Text(kind), Arg::Text(arg));
    // The pending request found by the insert may be picked up before the select sees it (in
    // PostgreSQL, where writes run in parallel); then a new one can be created, hence the
    // second round.
    for _ in 0..3 {
        let values = [c, k, a, Arg::Int(now.0), Arg::OptText(route)];
        if let Some(id) = e.first(sql::QUEUE_REQUEST, &values, |r| r.int(0)).await? {
            return Ok((id, now, true));
        }
        let pending = e
            .first(sql::PENDING_REQUEST, &[c, k, a], |r| {
                Ok((r.int(0)?, r.at(1)?))
            })
            .await?;
        if let Some((id, at)) = pending {
            return Ok((id, at, false));
        }
    }
    Err(StoreError::Database(
        "could not queue the request: the pending one kept changing".to_string(),
    ))
}

pub(crate) async fn request_state(
    e: &mut impl Exec,
    id: i64,
) -> Result<Option<RequestView>, StoreError> {
    let found = e
        .first(sql::REQUEST_STATE, &[Arg::Int(id)], |r| {
            rows::request_view(r)
        })
        .await?;
    let Some(view) = found else {
        return Ok(None);
    };
    let mut views = [view];
    fill_hops(e, &mut views).await?;
    let [view] = views;
    Ok(Some(view))
}

/// Cancels a pending resync request of this site ([`crate::Store::cancel_request`]): requests
/// made before `cutoff` have expired and stay so.
pub(crate) async fn cancel_request(
    e: &mut impl Exec,
    id: i64,
    now: Timestamp,
    cutoff: i64,
) -> Result<invsync_proto::wire::Cancelled, StoreError> {
    let args = [Arg::Int(now.0), Arg::Int(id), Arg::Int(cutoff)];
    let changed = e.execute(sql::CANCEL_REQUEST, &args).await? > 0;
    let found = e
        .first(sql::CLIENT_REQUEST, &[Arg::Int(id)], |r| {
            rows::client_request(r)
        })
        .await?;
    rows::cancel_answer(id, found, changed, cutoff)
}

// ---------------------------------------------------------------------------------------------
// Snapshots

pub(crate) async fn snapshot_row(
    e: &mut impl Exec,
    client: i64,
    class: Class,
) -> Result<Option<SnapshotRow>, StoreError> {
    let args = [Arg::Int(client), Arg::Class(class)];
    e.first(sql::SNAPSHOT_ROW, &args, |r| SnapshotRow::of(r))
        .await
}

/// Writes the snapshot row of an accepted change (inserted for a first snapshot, else
/// updated); its version and `full_at` as stored.
pub(crate) async fn write_snapshot(
    e: &mut impl Exec,
    client: i64,
    input: &ReportInput,
    first: bool,
    set: &WriteSet,
    stamp: &Stamp,
) -> Result<(i64, Timestamp), StoreError> {
    let (class, hash) = (Arg::Class(input.class), Arg::Blob(input.hash.0.as_slice()));
    let (recent, blob) = (Arg::Blob(&set.recent), Arg::OptBlob(set.blob.as_deref()));
    let (full_at, at) = (Arg::Int(stamp.full_at.0), Arg::Int(stamp.at.0));
    let written = if first {
        let args = [
            Arg::Int(client),
            class,
            Arg::Int(set.version),
            hash,
            full_at,
            at,
            recent,
            blob,
        ];
        let row = e.first(sql::INSERT_SNAPSHOT, &args, |r| Ok((r.int(0)?, r.at(1)?)));
        row.await?
    } else {
        let args = [
            Arg::Int(set.version),
            hash,
            Arg::Flag(set.full),
            full_at,
            at,
            recent,
            blob,
            Arg::Int(client),
            class,
        ];
        let row = e.first(sql::UPDATE_SNAPSHOT, &args, |r| Ok((r.int(0)?, r.at(1)?)));
        row.await?
    };
    written.ok_or_else(|| corrupt("snapshot row (not written)"))
}

// ---------------------------------------------------------------------------------------------
// Views

/// The client list, sorted by name, with the last-seen times not yet written laid over.
pub(crate) async fn clients(
    e: &mut impl Exec,
    last_seen: &LastSeen,
    cutoff: i64,
    stale: &rows::StaleRule,
) -> Result<Vec<ClientSummary>, StoreError> {
    let found = e
        .all(sql::CLIENTS, &[Arg::Int(cutoff)], |r| {
            rows::client_summary(r, stale)
        })
        .await?;
    Ok(rows::with_last_seen(last_seen, found, stale))
}

/// One page of clients ([`crate::Store::clients_page`]): the page's ids from one
/// index-ordered statement, then the rows of those ids (at most a thousand) in one statement, so
/// the per-client subqueries run for the page only, never for the skipped offset. The caller
/// runs it in one read transaction, so that the count and the page belong together.
pub(crate) async fn clients_page<E: Exec>(
    e: &mut E,
    q: &ClientQuery,
    last_seen: &LastSeen,
    cutoff: i64,
    stale: &rows::StaleRule,
) -> Result<ClientPage, StoreError> {
    let search = q.search_upper();
    // Stale (`$3`: only stale clients; `$5`: only the others) as `StaleRule` has it: a client
    // of this site (`$4`) last seen, or never seen and enrolled, before the cutoff.
    let filter = format!(
        "c.deleted_at IS NULL
         AND (CAST($1 AS text) IS NULL OR {f}(c.name, $1) > 0)
         AND (CAST($2 AS text) IS NULL OR c.site_code = $2)
         AND (CAST($3 AS bigint) IS NULL
              OR (coalesce(c.last_seen, c.enrolled_at) < $3 AND c.site_code = $4))
         AND (CAST($5 AS bigint) IS NULL
              OR c.site_code <> $4 OR coalesce(c.last_seen, c.enrolled_at) >= $5)",
        f = E::STRPOS
    );
    let before = |wanted: bool| (q.stale == Some(wanted)).then_some(stale.before);
    let by = [
        Arg::OptText(search.as_deref()),
        Arg::OptText(q.site.as_ref().map(SiteCode::as_str)),
        Arg::OptInt(before(true)),
        Arg::Text(stale.own.as_str()),
        Arg::OptInt(before(false)),
    ];
    let count = format!("SELECT count(*) FROM clients c WHERE {filter}");
    let total = e.first(&count, &by, |r| r.int(0)).await?.unwrap_or(0);
    let (join, order) = sql::page_join_and_order(q, E::COLLATE);
    let page = format!(
        "SELECT c.id FROM clients c {join} WHERE {filter} ORDER BY {order} LIMIT $6 OFFSET $7"
    );
    let args = [
        by[0],
        by[1],
        by[2],
        by[3],
        by[4],
        Arg::Int(q.limit.into()),
        Arg::Int(q.offset as i64),
    ];
    let ids = e.all(&page, &args, |r| r.int(0)).await?;
    let found = e
        .all(
            E::CLIENTS_BY_IDS,
            &[Arg::Int(cutoff), Arg::Ids(&ids)],
            |r| rows::client_summary(r, stale),
        )
        .await?;
    let mut by_id: FastMap<i64, ClientSummary> = found.into_iter().collect();
    // In the page's order; a row is never deleted inside the caller's transaction.
    let rows = ids.iter().filter_map(|id| Some((*id, by_id.remove(id)?)));
    Ok(ClientPage {
        total: total as u64,
        offset: q.offset,
        clients: rows::with_last_seen(last_seen, rows, stale),
    })
}

/// One page of resync requests ([`crate::Store::requests_page`]), newest first (by id, the
/// primary key, read backwards), and how many match; in one read transaction, as above.
pub(crate) async fn requests_page<E: Exec>(
    e: &mut E,
    q: &RequestQuery,
    cutoff: i64,
) -> Result<RequestPage, StoreError> {
    let filter = format!(
        "r.kind = 'resync' AND (CAST($1 AS text) IS NULL OR $1 = ({s}))
         AND (CAST($3 AS text) IS NULL OR r.arg = $3)",
        s = crate::page::REQUEST_STATE_SQL
    );
    let by = [
        Arg::OptText(q.state.map(RequestState::as_str)),
        Arg::Int(cutoff),
        Arg::OptText(q.class.map(Class::as_str)),
    ];
    let count = format!("SELECT count(*) FROM requests r WHERE {filter}");
    let total = e.first(&count, &by, |r| r.int(0)).await?.unwrap_or(0);
    let args = [
        by[0],
        by[1],
        by[2],
        Arg::Int(q.limit.into()),
        Arg::Int(q.offset as i64),
    ];
    let select = sql::requests_select(&filter, "$4", "$5");
    let mut requests = e.all(&select, &args, |r| rows::client_request(r)).await?;
    for r in &mut requests {
        rows::expire(&mut r.request, cutoff);
    }
    Ok(RequestPage {
        total: total as u64,
        offset: q.offset,
        requests,
    })
}

/// A client with its snapshots decoded and its newest requests and events, with the
/// last-seen time not yet written laid over; in one read transaction, so that they belong
/// together.
pub(crate) async fn client_view(
    e: &mut impl Exec,
    site: &SiteCode,
    key: &ClientKey,
    last_seen: &LastSeen,
) -> Result<Option<ClientView>, StoreError> {
    let Some(client) = row_of(e, site, key).await? else {
        return Ok(None);
    };
    let by_row = [Arg::Int(client)];
    let head = e.first(sql::CLIENT_HEAD, &by_row, |r| rows::client_head(r));
    let Some(mut view) = head.await? else {
        return Ok(None);
    };
    view.last_seen = last_seen.overlay(client, view.last_seen);
    view.merges = e
        .all(sql::CLIENT_MERGES, &by_row, |r| rows::merge_view(r))
        .await?;
    view.former_names = rows::former_names(&view.name, &view.merges);
    let snapshots = e.all(sql::CLIENT_SNAPSHOTS, &by_row, |r| rows::snapshot_view(r));
    for (class, ids, mut snapshot) in snapshots.await? {
        snapshot.items = load_items(e, &ids).await?;
        rows::place_snapshot(&mut view, class, snapshot);
    }
    let listed = |kind| {
        [
            Arg::Int(client),
            Arg::Text(kind),
            Arg::Int(rows::VIEW_LIMIT),
        ]
    };
    view.requests = e
        .all(sql::CLIENT_REQUESTS, &listed("resync"), |r| {
            rows::request_view(r)
        })
        .await?;
    view.events = e
        .all(sql::CLIENT_REQUESTS, &listed("event"), |r| {
            rows::event_view(r)
        })
        .await?;
    fill_hops(e, &mut view.requests).await?;
    Ok(Some(view))
}

/// How far up the tree the changes completing these requests travelled beyond the parent
/// (only a forwarded request has travelled).
pub(crate) async fn fill_hops(
    e: &mut impl Exec,
    requests: &mut [RequestView],
) -> Result<(), StoreError> {
    for r in requests.iter_mut().filter(|r| r.forwarded_at.is_some()) {
        let found = e
            .first(sql::REQUEST_HOPS, &[Arg::Int(r.id)], |row| {
                Ok((rows::decode_hops(row.opt_text(0)?)?, row.flag(1)?))
            })
            .await?;
        if let Some((hops, top)) = found {
            r.hops = hops;
            r.reached_top = top;
        }
    }
    Ok(())
}

/// The items with these ids, keyed by item key.
pub(crate) async fn load_items<E: Exec>(e: &mut E, ids: &[i64]) -> Result<Items, StoreError> {
    let items: Items = e
        .all(E::LOAD_ITEMS, &[Arg::Ids(ids)], |r| {
            Ok((r.text(0)?.to_string(), decode_attrs(r.blob(1)?)?))
        })
        .await?
        .into_iter()
        .collect();
    if items.len() != ids.len() {
        return Err(corrupt("snapshot item list"));
    }
    Ok(items)
}

/// The history of a client, newest first; `None` for an unknown client.
pub(crate) async fn history<E: Exec>(
    e: &mut E,
    site: &SiteCode,
    key: &ClientKey,
    query: &HistoryQuery,
) -> Result<Option<Vec<HistoryEntry>>, StoreError> {
    let Some(client) = row_of(e, site, key).await? else {
        return Ok(None);
    };
    let args = [
        Arg::Int(client),
        Arg::OptClass(query.class),
        Arg::OptInt(query.since.map(|t| t.0)),
        Arg::Int(rows::history_limit(query)),
    ];
    let found = e.all(E::HISTORY, &args, |r| rows::history_entry(r)).await?;
    Ok(Some(found))
}

/// The rows of the clients owned by `site`, for the software index.
pub(crate) async fn site_rows(
    e: &mut impl Exec,
    site: &SiteCode,
) -> Result<roaring::RoaringBitmap, StoreError> {
    let args = [Arg::Text(site.as_str())];
    let found = e.all(sql::SITE_ROWS, &args, |r| rows::index_row(r.int(0)?));
    Ok(found.await?.into_iter().collect())
}
