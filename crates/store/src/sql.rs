//! Statements whose text is the same in both dialects, written once. They use PostgreSQL's
//! `$1` placeholders, which SQLite reads as named parameters numbered in the order they first
//! appear; every statement here therefore names `$1`, `$2`, … in that order, so that binding
//! by position means the same in both (the test below checks it). Statements that differ
//! (id lists: `rarray` against `ANY`, casts, collations) stay in their backend's `queries`.

/// The columns [`crate::rows::request_view`] and [`crate::rows::event_view`] read, in order.
macro_rules! request_cols {
    () => {
        "id, arg, requested_at, picked_up_at, completed_at, origin, route, forwarded_at, forwarded_to"
    };
}
pub(crate) use request_cols;

/// The columns [`crate::rows::client_summary`] reads, from `clients c` and its snapshots, ending
/// before the `WHERE`/`ORDER BY` that each use adds. `$1` is the expiry cutoff: the pending
/// count leaves out what a check-in would no longer deliver (cancelled requests are complete;
/// a resync request made before the cutoff and not picked up has expired; events and requests
/// routed down to a site below do not expire), as `OPEN_REQUESTS` does.
macro_rules! client_summary {
    () => {
        "SELECT c.id, c.name, c.uuid, c.site_code, c.last_seen,
                hw.version, hw.updated_at, sw.version, sw.updated_at,
                (SELECT count(*) FROM requests r WHERE r.client_id = c.id AND r.completed_at IS NULL
                   AND (r.picked_up_at IS NOT NULL OR r.kind <> 'resync' OR r.route IS NOT NULL
                        OR r.requested_at >= $1)),
                CAST(c.transport AS bigint), c.agent_version, coalesce(c.last_seen, c.enrolled_at)
         FROM clients c
         LEFT JOIN snapshots hw ON hw.client_id = c.id AND hw.class = 0
         LEFT JOIN snapshots sw ON sw.client_id = c.id AND sw.class = 1 "
    };
}
pub(crate) use client_summary;

/// The statements of `crate::exec::Exec` whose text differs between the dialects only in a few
/// words, written once and given those words: `in1` and `in2` match `id` against the list of
/// ids bound as `$1` and `$2` (SQLite's `IN rarray($1)`, PostgreSQL's `= ANY($1)`), and
/// `full` names the history's full-report column.
macro_rules! dialect_statements {
    (in1: $in1:literal, in2: $in2:literal, full: $full:literal) => {
        const LOAD_ITEMS: &'static str = concat!("SELECT key, attrs FROM items WHERE id ", $in1);
        const MARK_PICKED_UP: &'static str = concat!(
            "UPDATE requests SET picked_up_at = $1 WHERE id ",
            $in2,
            " AND client_id = $3 AND picked_up_at IS NULL AND completed_at IS NULL"
        );
        const COMPLETE_EVENTS: &'static str = concat!(
            "UPDATE requests SET completed_at = $1, picked_up_at = coalesce(picked_up_at, $1)
             WHERE id ",
            $in2,
            " AND client_id = $3 AND kind = 'event' AND completed_at IS NULL"
        );
        const COMPLETE_ANSWERS: &'static str = concat!(
            "UPDATE requests SET completed_at = $1, picked_up_at = coalesce(picked_up_at, $1)
             WHERE id ",
            $in2,
            " AND client_id = $3 AND kind = 'resync' AND arg = $4 AND completed_at IS NULL
             RETURNING ",
            $crate::sql::request_cols!()
        );
        const HISTORY: &'static str = concat!(
            "SELECT h.at, h.class, coalesce(n.key, o.key), o.attrs, n.attrs, h.",
            $full,
            " FROM history h
             LEFT JOIN items o ON o.id = h.old_item
             LEFT JOIN items n ON n.id = h.new_item
             WHERE h.client_id = $1
               AND (CAST($2 AS smallint) IS NULL OR h.class = $2)
               AND (CAST($3 AS bigint) IS NULL OR h.at >= $3)
             ORDER BY h.id DESC LIMIT $4"
        );
        const CLIENTS_BY_IDS: &'static str =
            concat!($crate::sql::client_summary!(), "WHERE c.id ", $in2);
    };
}
pub(crate) use dialect_statements;

pub(crate) const SITE_META: &str = "SELECT key, value FROM meta";
/// A live client's row by client id (a deleted one is kept only for its history).
pub(crate) const CLIENT_ROW: &str = "SELECT id FROM clients WHERE uuid = $1 AND deleted_at IS NULL";
pub(crate) const CLIENT_ROW_BY_NAME: &str =
    "SELECT id FROM clients WHERE site_code = $1 AND name = $2";
/// Who holds a name: row, client id, machine id, transport (`crate::rows::TRANSPORT_*`) and
/// the DMI serial and product UUID it enrolled with.
pub(crate) const NAME_HOLDER: &str = "SELECT id, uuid, machine_id, CAST(transport AS bigint),
            dmi_serial, dmi_uuid
     FROM clients WHERE site_code = $1 AND name = $2";
/// The newest live client of a site with this machine id, other than imported records (which
/// [`IMPORTED_BY_MACHINE`] finds): row, client id, name, machine id. A deleted client is never
/// taken over: its machine enrolling again is a new client.
pub(crate) const CLIENT_BY_MACHINE: &str = "SELECT id, uuid, name, machine_id FROM clients
     WHERE site_code = $1 AND machine_id = $2 AND transport <> 2 AND deleted_at IS NULL
     ORDER BY id DESC LIMIT 1";
/// The newest client of a site that enrolled with this DMI serial and product UUID (the partial
/// index `clients_hardware` answers it): row, client id, name, machine id.
pub(crate) const CLIENT_BY_HARDWARE: &str = "SELECT id, uuid, name, machine_id FROM clients
     WHERE site_code = $1 AND dmi_serial IS NOT NULL AND dmi_serial = $2 AND dmi_uuid = $3
       AND transport <> 2 AND deleted_at IS NULL
     ORDER BY id DESC LIMIT 1";
/// An existing client's record taken over by an enrollment: the new name, key and machine id;
/// an imported record becomes a client enrolled over HTTP, any other keeps its transport.
pub(crate) const MERGE_INTO: &str = "UPDATE clients SET name = $1, key_hash = $2, machine_id = $3,
            transport = CASE WHEN transport = 2 THEN 0 ELSE transport END
     WHERE id = $4";
/// Records a takeover (`client_merges`).
pub(crate) const RECORD_MERGE: &str =
    "INSERT INTO client_merges (client_id, at, old_name, new_name, matched_by)
     VALUES ($1, $2, $3, $4, $5)";
/// What an enrollment records of the machine and its agent, when it says: the DMI serial and
/// product UUID, and the agent's version.
pub(crate) const ENROLLED_FACTS: &str = "UPDATE clients
     SET dmi_serial = coalesce($1, dmi_serial), dmi_uuid = coalesce($2, dmi_uuid),
         agent_version = coalesce($3, agent_version)
     WHERE id = $4";
/// A client's recorded agent version, by client id.
pub(crate) const AGENT_VERSION: &str = "SELECT agent_version FROM clients WHERE uuid = $1";
pub(crate) const SET_AGENT_VERSION: &str = "UPDATE clients SET agent_version = $1 WHERE uuid = $2";
/// Inserts a client with its transport unless its name was taken meanwhile (then nothing is
/// returned).
pub(crate) const ENROLL: &str =
    "INSERT INTO clients (uuid, name, site_code, machine_id, key_hash, enrolled_at, transport)
     VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (site_code, name) DO NOTHING RETURNING id";
/// Gives a client its new key at enrollment; an imported record taken over becomes a client
/// enrolled over HTTP, any other keeps its transport.
pub(crate) const SET_KEY: &str = "UPDATE clients SET key_hash = $1,
            transport = CASE WHEN transport = 2 THEN 0 ELSE transport END
     WHERE id = $2";
/// The oldest imported record of a site with this machine id (the partial index
/// `clients_offline` answers it: `transport <> 0` is written out so SQLite uses it).
pub(crate) const IMPORTED_BY_MACHINE: &str = "SELECT id, uuid FROM clients
     WHERE site_code = $1 AND transport <> 0 AND transport = 2 AND machine_id = $2
       AND deleted_at IS NULL
     ORDER BY id LIMIT 1";
/// An imported record taken over by an enrollment under another name: the record takes the
/// name and the key and becomes a client enrolled over HTTP, keeping its id and history.
pub(crate) const TAKE_OVER: &str =
    "UPDATE clients SET name = $1, key_hash = $2, transport = 0 WHERE id = $3";
/// The CAP clients of a site (by `clients_offline`, as [`IMPORTED_BY_MACHINE`]).
pub(crate) const CAP_CLIENTS: &str = "SELECT uuid, name FROM clients
     WHERE site_code = $1 AND transport <> 0 AND transport = 1 AND deleted_at IS NULL";
/// What a file-share check-in records: the client uses the CAP, its machine id when it had none
/// (enrolled offline), and the later of its stored last-seen time and `$2`.
pub(crate) const CAP_CHECKIN: &str = "UPDATE clients SET transport = 1,
            machine_id = CASE WHEN machine_id = '' THEN $1 ELSE machine_id END,
            last_seen = CASE WHEN last_seen IS NULL OR last_seen < $2 THEN $2 ELSE last_seen END
     WHERE id = $3";
/// An imported record imported again: it now describes this machine.
pub(crate) const SET_MACHINE_ID: &str = "UPDATE clients SET machine_id = $1 WHERE id = $2";
/// Replaces an own client's key hash (with 32 zero bytes, which no key hashes to).
pub(crate) const REVOKE: &str =
    "UPDATE clients SET key_hash = $1 WHERE site_code = $2 AND name = $3";
/// The requests a check-in hands over: not complete (nor cancelled), and for a resync request
/// not pending since before the expiry cutoff `$2` (`crate::rows::expire`).
pub(crate) const OPEN_REQUESTS: &str = "SELECT id, kind, arg, picked_up_at FROM requests
     WHERE client_id = $1 AND completed_at IS NULL
       AND (picked_up_at IS NOT NULL OR kind <> 'resync' OR requested_at >= $2)
     ORDER BY id";
pub(crate) const CLASS_STATES: &str =
    "SELECT class, version, hash FROM snapshots WHERE client_id = $1";
/// Creates a request unless an identical one is pending: the partial unique index makes
/// "create unless pending" one atomic statement, even against another process queueing the
/// same request at the same moment.
pub(crate) const QUEUE_REQUEST: &str =
    "INSERT INTO requests (client_id, kind, arg, requested_at, route) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (client_id, kind, arg)
         WHERE picked_up_at IS NULL AND completed_at IS NULL AND origin IS NULL
     DO NOTHING RETURNING id";
/// Ends the pending request identical to one being queued when it has expired (made before
/// `$4`), so the new one can be queued: an expired request is recorded as ended at the time it
/// was made, without a pick-up (`crate::rows::state_of`).
pub(crate) const END_EXPIRED: &str = "UPDATE requests SET completed_at = requested_at
     WHERE client_id = $1 AND kind = $2 AND arg = $3
       AND picked_up_at IS NULL AND completed_at IS NULL AND origin IS NULL AND requested_at < $4";
pub(crate) const PENDING_REQUEST: &str = "SELECT id, requested_at FROM requests
     WHERE client_id = $1 AND kind = $2 AND arg = $3
       AND picked_up_at IS NULL AND completed_at IS NULL AND origin IS NULL";
pub(crate) const REQUEST_STATE: &str = concat!(
    "SELECT ",
    request_cols!(),
    " FROM requests WHERE id = $1 AND kind = 'resync'"
);
/// Cancels a pending resync request made at this site (not one routed down to a site below):
/// a cancelled request is one completed without being picked up ([`crate::rows::state_of`]),
/// so every query of open requests (`completed_at IS NULL`) leaves it out.
pub(crate) const CANCEL_REQUEST: &str = "UPDATE requests
     SET completed_at = CASE WHEN $1 > requested_at THEN $1 ELSE requested_at + 1 END
     WHERE id = $2 AND kind = 'resync' AND picked_up_at IS NULL AND completed_at IS NULL
       AND route IS NULL AND requested_at >= $3";
/// One resync request with its client, as [`crate::rows::client_request`] reads it.
pub(crate) const CLIENT_REQUEST: &str =
    "SELECT r.id, r.arg, r.requested_at, r.picked_up_at, r.completed_at, r.origin, r.route,
            r.forwarded_at, r.forwarded_to, c.name, c.site_code
     FROM requests r JOIN clients c ON c.id = r.client_id
     WHERE r.id = $1 AND r.kind = 'resync'";
pub(crate) const SNAPSHOT_ROW: &str = "SELECT version, hash, recent_reports, items FROM snapshots
     WHERE client_id = $1 AND class = $2";
pub(crate) const INSERT_SNAPSHOT: &str = "INSERT INTO snapshots
     (client_id, class, version, hash, full_at, updated_at, recent_reports, items)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING version, full_at";
pub(crate) const UPDATE_SNAPSHOT: &str = "UPDATE snapshots SET version = $1, hash = $2,
            full_at = CASE WHEN $3 THEN $4 ELSE full_at END, updated_at = $5,
            recent_reports = $6, items = coalesce($7, items)
     WHERE client_id = $8 AND class = $9 RETURNING version, full_at";
pub(crate) const CLIENTS: &str = concat!(
    client_summary!(),
    "WHERE c.deleted_at IS NULL ORDER BY c.name, c.site_code"
);
pub(crate) const CLIENT_HEAD: &str =
    "SELECT id, uuid, name, site_code, machine_id, enrolled_at, last_seen,
            CAST(transport AS bigint), agent_version
     FROM clients WHERE id = $1";
/// How far up the tree a request's change travelled beyond the parent
/// (`crate::rows::decode_hops`), and whether the top of the tree stored it.
pub(crate) const REQUEST_HOPS: &str = "SELECT hops, hops_top FROM requests WHERE id = $1";
/// The enrollments that took a client's record over, oldest first (`crate::rows::merge_view`).
pub(crate) const CLIENT_MERGES: &str = "SELECT at, old_name, new_name, matched_by
     FROM client_merges WHERE client_id = $1 ORDER BY id";
pub(crate) const CLIENT_SNAPSHOTS: &str =
    "SELECT class, version, hash, full_at, updated_at, items FROM snapshots WHERE client_id = $1";
/// The newest requests of one kind of a client.
pub(crate) const CLIENT_REQUESTS: &str = concat!(
    "SELECT ",
    request_cols!(),
    " FROM requests WHERE client_id = $1 AND kind = $2 ORDER BY id DESC LIMIT $3"
);
pub(crate) const SOFTWARE_LISTS: &str =
    "SELECT client_id, version, items FROM snapshots WHERE class = 1 ORDER BY client_id";
pub(crate) const SITE_ROWS: &str = "SELECT id FROM clients WHERE site_code = $1";

/// The join and the `ORDER BY` of a page of clients (see `crate::page`; `collate` as there).
pub(crate) fn page_join_and_order(
    q: &invsync_proto::wire::ClientQuery,
    collate: &str,
) -> (String, String) {
    let join = match crate::page::sort_class(q.sort) {
        Some(class) => format!("LEFT JOIN snapshots s ON s.client_id = c.id AND s.class = {class}"),
        None => String::new(),
    };
    (join, crate::page::order_by(q.sort, q.descending, collate))
}

/// A page of resync requests with their clients ([`crate::rows::client_request`]), newest
/// first, under `filter`, with the placeholders of its limit and offset.
pub(crate) fn requests_select(filter: &str, limit: &str, offset: &str) -> String {
    format!(
        "SELECT r.id, r.arg, r.requested_at, r.picked_up_at, r.completed_at, r.origin, r.route,
                r.forwarded_at, r.forwarded_to, c.name, c.site_code
         FROM requests r JOIN clients c ON c.id = r.client_id
         WHERE {filter} ORDER BY r.id DESC LIMIT {limit} OFFSET {offset}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$n` first appears after `$1` … `$n-1`, so that SQLite numbers them as PostgreSQL
    /// does.
    #[test]
    fn placeholders_appear_in_order() {
        for sql in [
            SITE_META,
            CLIENT_ROW,
            CLIENT_ROW_BY_NAME,
            NAME_HOLDER,
            CLIENT_BY_MACHINE,
            CLIENT_BY_HARDWARE,
            MERGE_INTO,
            RECORD_MERGE,
            ENROLLED_FACTS,
            AGENT_VERSION,
            SET_AGENT_VERSION,
            CLIENT_MERGES,
            REQUEST_HOPS,
            ENROLL,
            SET_KEY,
            IMPORTED_BY_MACHINE,
            TAKE_OVER,
            CAP_CLIENTS,
            CAP_CHECKIN,
            SET_MACHINE_ID,
            REVOKE,
            OPEN_REQUESTS,
            CLASS_STATES,
            QUEUE_REQUEST,
            PENDING_REQUEST,
            END_EXPIRED,
            REQUEST_STATE,
            CANCEL_REQUEST,
            CLIENT_REQUEST,
            SNAPSHOT_ROW,
            INSERT_SNAPSHOT,
            UPDATE_SNAPSHOT,
            CLIENTS,
            CLIENT_HEAD,
            CLIENT_SNAPSHOTS,
            CLIENT_REQUESTS,
            SOFTWARE_LISTS,
            SITE_ROWS,
        ] {
            let mut seen = 0;
            for (i, _) in sql.match_indices('$') {
                let n: usize = sql[i + 1..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
                    .parse()
                    .unwrap();
                assert!(n <= seen + 1, "${n} before ${} in {sql}", seen + 1);
                seen = seen.max(n);
            }
        }
    }
}
