//! The parts of a paged client list ([`crate::Store::clients_page`]) both backends share: which
//! snapshot class a sort joins and the `ORDER BY` that the indexes of SQLite schema v5 and
//! PostgreSQL schema v2 serve.
//!
//! Both databases read a sorted page straight from an index in the sort's order (forwards for
//! ascending, backwards for descending) instead of sorting every client, which is what keeps a
//! page of a 100,000-client site in milliseconds. The tie-breakers (name, then site code) run in
//! the same direction as the key for the same reason: an index read backwards reverses them all.

use invsync_proto::wire::ClientSort;
#[cfg(doc)]
use invsync_proto::wire::RequestState;

/// The snapshot class (`snapshots.class`) a sort orders by, if any; joined as `s`.
pub(crate) fn sort_class(sort: ClientSort) -> Option<i64> {
    match sort {
        ClientSort::HwUpdated => Some(0),
        ClientSort::SwUpdated => Some(1),
        ClientSort::Name | ClientSort::LastSeen => None,
    }
}

/// A request's state as SQL computes it from its times, the way `state_of` and `expire` do in
/// `crate::rows`, so a list can filter on it: `'pending'`, `'picked_up'`, `'complete'`,
/// `'cancelled'` or `'expired'` ([`RequestState::as_str`]). `$2` is the expiry cutoff (requests
/// made before it and not picked up have expired).
pub(crate) const REQUEST_STATE_SQL: &str = "CASE \
     WHEN r.completed_at IS NOT NULL AND r.picked_up_at IS NULL \
          AND r.completed_at = r.requested_at THEN 'expired' \
     WHEN r.completed_at IS NOT NULL AND r.picked_up_at IS NULL THEN 'cancelled' \
     WHEN r.completed_at IS NOT NULL THEN 'complete' \
     WHEN r.picked_up_at IS NOT NULL THEN 'picked_up' \
     WHEN r.requested_at < $2 AND r.route IS NULL THEN 'expired' ELSE 'pending' END";

/// The `ORDER BY` list over `c` (clients) and `s` (the joined snapshot). `collate` is appended
/// to the text columns (PostgreSQL's `COLLATE "C"`, so names sort byte-wise as in SQLite).
/// Missing times sort first ascending and last descending (oldest): SQLite's order for NULL,
/// spelled out for PostgreSQL, whose default is the opposite.
pub(crate) fn order_by(sort: ClientSort, descending: bool, collate: &str) -> String {
    let (dir, nulls) = if descending {
        ("DESC", "NULLS LAST")
    } else {
        ("ASC", "NULLS FIRST")
    };
    let ties = format!("c.name{collate} {dir}, c.site_code{collate} {dir}");
    match sort {
        ClientSort::Name => ties,
        ClientSort::LastSeen => format!("c.last_seen {dir} {nulls}, {ties}"),
        ClientSort::HwUpdated | ClientSort::SwUpdated => {
            format!("s.updated_at {dir} {nulls}, {ties}")
        }
    }
}
