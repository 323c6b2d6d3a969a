//! The hierarchy's rules (SPEC section 6), written once for both backends, the way `plan`
//! holds the rules of a report: pure functions over rows a backend has fetched, deciding what a
//! forwarded change does, which site codes a child may claim, what an outbox row holds and how
//! it reads back, and what becomes of a request routed down the tree. The backends' own
//! `hierarchy` modules only fetch those rows, hand them here and execute what comes back, so a
//! rule fixed here is fixed for both, and the contract tests check one rule, not two copies.
//!
//! A parent keeps the clients of every site below it in the same `clients` table as its own,
//! keyed by client id, with `site_code` naming the owner. A site code belongs to one branch of
//! the tree: `sites.via` records the direct child through which each code is reached, and a
//! child may only forward changes of clients owned by itself or by a site below it.
//!
//! The statements both dialects read alike live here too ([`sql`]): their placeholders are
//! `$N`, which SQLite also takes as positional parameters when each first appears in order.

use invsync_proto::agent_version::AgentVersion;
use invsync_proto::wire::{
    ClientRecord, DownRequest, ForwardOutcome, Forwarded, Hop, HopReport, Owner, Queued,
    ReportBody, ReportBodyOf, RequestState, RequestView, SiteStatus, split_origin,
};
use invsync_proto::{Class, ClientName, Delta, Digest, Items, SiteCode, Timestamp};
use uuid::Uuid;

use crate::DownAccepted;
use crate::error::StoreError;
use crate::exec::{Arg, Exec};
use crate::ingest::PreparedItems;
use crate::plan::{InputBody, ReportInput};
use crate::rows::Stamp;
use crate::rows::{Cols, corrupt};

/// The statements of the hierarchy that read the same in SQLite and PostgreSQL.
pub(crate) mod sql {
    pub const META: &str = "SELECT value FROM meta WHERE key = $1";
    pub const SET_META: &str = "INSERT INTO meta (key, value) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value";
    /// The columns [`super::forwarded`] reads, in its order, the oldest entries first.
    pub const OUTBOX_BATCH: &str =
        "SELECT o.seq, c.uuid, c.name, c.site_code, c.machine_id, c.enrolled_at,
                o.class, o.version, o.hash, o.full_at, o.updated_at,
                o.base_version, o.items, o.removed, o.completed, o.deleted_at, c.agent_version
         FROM outbox o JOIN clients c ON c.id = o.client_id
         ORDER BY o.seq LIMIT $1";
    /// The values are those of [`super::OutboxRow`], in its order.
    pub const OUTBOX_INSERT: &str =
        "INSERT INTO outbox (client_id, class, version, hash, full_at, updated_at, accepted_at,
                             base_version, items, removed, completed)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
    /// Appends one full entry of the snapshot of client `$3` and class `$4`, accepted at `$1`
    /// (or when the snapshot last changed) and carrying the completed requests `$2`.
    pub const OUTBOX_RESYNC: &str =
        "INSERT INTO outbox (client_id, class, version, hash, full_at, updated_at, accepted_at,
                             base_version, items, removed, completed)
         SELECT client_id, class, version, hash, full_at, updated_at, coalesce($1, updated_at),
                NULL, items, NULL, $2
         FROM snapshots WHERE client_id = $3 AND class = $4";
    /// A client's outbox entries of class `$2`, dropped for a full entry when a snapshot exists
    /// to replace them with ([`OUTBOX_RESYNC`]).
    /// A tombstone (`deleted_at`) is never dropped: it is the client's last entry.
    pub const OUTBOX_DROP: &str = "DELETE FROM outbox WHERE client_id = $1 AND class = $2
           AND deleted_at IS NULL AND EXISTS (SELECT 1 FROM snapshots WHERE client_id = $1 AND class = $2)";
    /// The columns [`super::owner`] reads: every client named `$1`, at any site.
    pub const FIND_CLIENTS: &str = "SELECT c.uuid, c.name, c.site_code, s.url FROM clients c
         LEFT JOIN sites s ON s.code = c.site_code
         WHERE c.name = $1 ORDER BY c.site_code";
    /// The columns [`super::site_status`] reads.
    pub const SITES: &str =
        "SELECT code, name, parent, url, clients, outbox_depth, outbox_oldest, last_forwarded,
                accepts_parent_requests, reported_at
         FROM sites ORDER BY code";
    pub const SITE_UPSERT: &str = "INSERT INTO sites (code, name, parent, url, clients, outbox_depth, outbox_oldest,
                           last_forwarded, accepts_parent_requests, reported_at, via, recorded_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (code) DO UPDATE SET name = excluded.name, parent = excluded.parent,
             url = excluded.url, clients = excluded.clients, outbox_depth = excluded.outbox_depth,
             outbox_oldest = excluded.outbox_oldest, last_forwarded = excluded.last_forwarded,
             accepts_parent_requests = excluded.accepts_parent_requests,
             reported_at = excluded.reported_at, via = excluded.via, recorded_at = excluded.recorded_at";
    pub const CHILD_TOKEN_UPSERT: &str = "INSERT INTO child_tokens (code, key_hash, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (code) DO UPDATE SET key_hash = excluded.key_hash, created_at = excluded.created_at";
    /// The columns [`super::routed`] reads: routed requests not yet complete whose owner is
    /// reached through the child `$1`, not delivered since `$2`.
    pub const ROUTED_DUE: &str =
        "SELECT r.id, r.origin, c.uuid, r.arg FROM requests r JOIN clients c ON c.id = r.client_id
         WHERE r.route IS NOT NULL AND r.completed_at IS NULL
           AND r.route IN (SELECT code FROM sites WHERE via = $1)
           AND (r.delivered_at IS NULL OR r.delivered_at <= $2)
         ORDER BY r.id";
    /// Marks one completed request forwarded by its id here ([`super::Target::Here`]).
    pub const FORWARDED_HERE: &str = "UPDATE requests SET forwarded_at = $1, forwarded_to = $2,
             hops_pending = (origin IS NOT NULL)
         WHERE id = $3 AND client_id = $4 AND kind = 'resync' AND arg = $5
           AND completed_at IS NOT NULL AND forwarded_at IS NULL";
    /// Marks one completed request forwarded by its origin ([`super::Target::Origin`]).
    pub const FORWARDED_ORIGIN: &str = "UPDATE requests SET forwarded_at = $1, forwarded_to = $2,
             hops_pending = TRUE
         WHERE origin = $3 AND client_id = $4 AND kind = 'resync' AND arg = $5
           AND completed_at IS NOT NULL AND forwarded_at IS NULL";
    /// Completes a request routed down from this site ([`super::Target::Here`]): only a routed
    /// request of this client and class, so a child cannot complete another request of this
    /// site by naming its id.
    pub const COMPLETE_HERE: &str =
        "UPDATE requests SET picked_up_at = coalesce($1, $2), completed_at = $2
         WHERE id = $3 AND client_id = $4 AND kind = 'resync' AND arg = $5
           AND route IS NOT NULL AND completed_at IS NULL";
    /// Completes a request routed on through this site.
    pub const COMPLETE_RELAYED: &str =
        "UPDATE requests SET picked_up_at = coalesce($1, $2), completed_at = $2, hops_pending = TRUE
         WHERE origin = $3 AND client_id = $4 AND kind = 'resync' AND completed_at IS NULL";
    /// Records a request completed at the owner, once per origin.
    /// A completed request always has a pick-up time (one without is a cancelled one,
    /// `crate::rows::state_of`).
    pub const COMPLETE_NEW: &str = "INSERT INTO requests (client_id, kind, arg, requested_at, picked_up_at, completed_at, origin,
                              hops_pending)
         VALUES ($1, 'resync', $2, $3, coalesce($4, $5), $5, $6, TRUE)
         ON CONFLICT (origin) WHERE origin IS NOT NULL DO NOTHING";
    /// The requests completed below this site whose way up has news the child they came
    /// through (`$1`: the owner itself, or the child it is reached through) was not told
    /// (`super::hop_report` reads them).
    pub const HOPS_DUE: &str = "SELECT r.id, r.origin, r.forwarded_to, r.forwarded_at, r.hops,
                r.hops_top
         FROM requests r JOIN clients c ON c.id = r.client_id
         LEFT JOIN sites s ON s.code = c.site_code
         WHERE r.hops_pending AND r.origin IS NOT NULL AND (c.site_code = $1 OR s.via = $1)";
    pub const HOPS_TOLD: &str = "UPDATE requests SET hops_pending = FALSE WHERE id = $1";
    /// Records what the parent said of a request's way up above it ([`super::Target`]: by id
    /// for a request made here, by origin otherwise); one that came from below has news for the
    /// child it came through.
    pub const HOPS_HERE: &str =
        "UPDATE requests SET hops = $1, hops_top = $2, hops_pending = (origin IS NOT NULL)
         WHERE id = $3 AND kind = 'resync' AND completed_at IS NOT NULL";
    pub const HOPS_ORIGIN: &str =
        "UPDATE requests SET hops = $1, hops_top = $2, hops_pending = TRUE
         WHERE origin = $3 AND kind = 'resync' AND completed_at IS NOT NULL";
    pub const ACCEPT_DOWN: &str =
        "INSERT INTO requests (client_id, kind, arg, requested_at, origin, route)
         VALUES ($1, 'resync', $2, $3, $4, $5)
         ON CONFLICT (origin) WHERE origin IS NOT NULL DO NOTHING RETURNING id";
    /// A client of another id than `$3` holding the name `$2` at the owner `$1`: a stale record.
    pub const STALE_CLIENT: &str =
        "SELECT id, uuid FROM clients WHERE site_code = $1 AND name = $2 AND uuid <> $3";
    /// The row of a forwarded client, created or brought up to date from its record. The key
    /// hash `$5` is zeros: such a client never authenticates here (`client_auth` only looks at
    /// this site's own clients, and no key hashes to zeros). A record without an agent version
    /// (from a site of an earlier release) keeps the one stored.
    pub const ENSURE_CLIENT: &str =
        "INSERT INTO clients (uuid, name, site_code, machine_id, key_hash, enrolled_at,
                             agent_version)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (uuid) DO UPDATE SET name = excluded.name, machine_id = excluded.machine_id,
             enrolled_at = excluded.enrolled_at,
             agent_version = coalesce(excluded.agent_version, clients.agent_version)
         RETURNING id";
    /// The row id, name and owner of any client this site holds, by client id.
    /// Where the site `$1` stands in the tree: the direct child through which it is reached
    /// according to `sites` (if it reported), and whether it is a direct child with a token.
    pub const TREE_OF: &str = "SELECT (SELECT via FROM sites WHERE code = $1),
         EXISTS (SELECT 1 FROM child_tokens WHERE code = $1)";
    /// A client's row id and owner, by client id.
    pub const CLIENT_SITE: &str = "SELECT id, site_code FROM clients WHERE uuid = $1";
    pub const CLIENT_OWNER: &str = "SELECT id, name, site_code FROM clients WHERE uuid = $1";
    pub const BY_ORIGIN: &str = "SELECT id FROM requests WHERE origin = $1";
    /// Everything stored of a client, in an order the foreign keys allow.
    pub const DELETE_CLIENT: [&str; 6] = [
        "DELETE FROM outbox WHERE client_id = $1",
        "DELETE FROM client_merges WHERE client_id = $1",
        "DELETE FROM history WHERE client_id = $1",
        "DELETE FROM requests WHERE client_id = $1",
        "DELETE FROM snapshots WHERE client_id = $1",
        "DELETE FROM clients WHERE id = $1",
    ];
}

/// The arguments of [`sql::SITE_UPSERT`]: the status `s` as `via` reported it at `now`.
pub(crate) fn site_args<'a>(s: &'a SiteStatus, via: &'a SiteCode, now: Timestamp) -> [Arg<'a>; 12] {
    [
        Arg::Text(s.code.as_str()),
        Arg::Text(&s.name),
        Arg::OptText(s.parent.as_ref().map(SiteCode::as_str)),
        Arg::OptText(s.url.as_deref()),
        Arg::Int(s.clients),
        Arg::Int(s.outbox_depth),
        Arg::OptInt(s.outbox_oldest.map(|t| t.0)),
        Arg::OptInt(s.last_forwarded.map(|t| t.0)),
        Arg::Flag(s.accepts_parent_requests),
        Arg::Int(s.reported_at.0),
        Arg::Text(via.as_str()),
        Arg::Int(now.0),
    ]
}

/// The arguments of [`sql::STALE_CLIENT`] and [`sql::ENSURE_CLIENT`] for a forwarded client.
pub(crate) fn client_args(record: &ClientRecord) -> ([Arg<'_>; 3], [Arg<'_>; 7]) {
    const NO_KEY: [u8; 32] = [0; 32];
    let (id, name, site) = (
        Arg::Uuid(record.id),
        record.name.as_str(),
        record.site.as_str(),
    );
    let stale = [Arg::Text(site), Arg::Text(name), id];
    let machine = Arg::Text(&record.machine_id);
    let at = Arg::Int(record.enrolled_at.0);
    let upsert = [
        id,
        Arg::Text(name),
        Arg::Text(site),
        machine,
        Arg::Blob(&NO_KEY),
        at,
        // Stored only when it is a bare version, as the owning site stores it: a child's word
        // is not trusted to be one (nor to be short).
        Arg::OptText(
            record
                .agent_version
                .as_deref()
                .filter(|v| v.parse::<AgentVersion>().is_ok()),
        ),
    ];
    (stale, upsert)
}

impl Target {
    /// The request's id or origin, `$3` of the statements that find it (`sql::FORWARDED_*`,
    /// `sql::COMPLETE_HERE` / `sql::COMPLETE_RELAYED`), and the first of `(here, origin)`
    /// that matches.
    pub fn arg<'a>(
        &'a self,
        (here, origin): (&'static str, &'static str),
    ) -> (&'static str, Arg<'a>) {
        match self {
            Target::Here(id) => (here, Arg::Int(*id)),
            Target::Origin(o) => (origin, Arg::Text(o)),
        }
    }
}

/// The `meta` key of the forwarding switch: "1" when accepted changes go into the outbox.
pub(crate) const FORWARDING: &str = "forwarding";
/// The `meta` key holding when the parent last acknowledged a batch (ms since the epoch).
pub(crate) const LAST_FORWARDED: &str = "last_forwarded";
/// The `meta` key a write probe sets: its value is the time of the last probe.
pub(crate) const PROBED_AT: &str = "write_probe_at";

pub(crate) fn site_code(raw: &str) -> Result<SiteCode, StoreError> {
    SiteCode::parse(raw).map_err(|_| corrupt("site code"))
}

// ---------------------------------------------------------------------------------------------
// Forwarded changes

/// A forwarded change as it travels from a child's outbox to its parent, with its items in
/// whatever form the receiver reads them into: the maps of [`Forwarded`] for callers that build
/// changes themselves, or [`PreparedItems`] for the site, which reads a forward batch straight
/// into the form it hashes and stores, as it reads reports.
pub type IncomingForwarded = invsync_proto::wire::ForwardedOf<PreparedBody>;

/// A forwarded change's body read straight into prepared items (see [`IncomingForwarded`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PreparedBody {
    Full {
        items: PreparedItems,
    },
    Delta {
        base_version: i64,
        delta: PreparedDelta,
    },
}

/// A delta's body in prepared form.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct PreparedDelta {
    #[serde(default)]
    pub upsert: PreparedItems,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// A forwarded change apart from its body (which travels as a prepared `ReportInput`).
#[derive(Debug, Clone)]
pub(crate) struct ForwardMeta {
    pub seq: i64,
    pub client: ClientRecord,
    pub class: Class,
    pub version: i64,
    pub full_at: Timestamp,
    pub updated_at: Timestamp,
    pub completed: Vec<RequestView>,
}

impl ForwardMeta {
    /// How an applied change is stamped: with the owner's version and times, and remembered as
    /// the owner's version and hash, which is how a resent change is recognised.
    pub fn stamp(&self, input: &ReportInput) -> Stamp {
        let mark = crate::rows::forwarded_mark(self.version, &input.hash);
        Stamp {
            version: Some(self.version),
            at: self.updated_at,
            full_at: self.full_at,
            remember: (mark, crate::rows::RECENT_FORWARDED),
        }
    }

    pub fn refused(&self, reason: String) -> ForwardOutcome {
        ForwardOutcome::Refused {
            seq: self.seq,
            reason,
        }
    }

    /// The outbox entry of this change, applied here to the client row `client` as `version`
    /// (`body_ids`: the item ids of its body), for a site that forwards in turn.
    pub fn entry<'a>(
        &'a self,
        client: i64,
        input: &'a ReportInput,
        (version, full_at): (i64, Timestamp),
        body_ids: &'a [u8],
    ) -> Entry<'a> {
        Entry {
            client,
            input,
            version,
            full_at,
            updated_at: self.updated_at,
            body_ids,
            completed: &self.completed,
        }
    }

    pub fn resync(&self, reason: String) -> ForwardOutcome {
        ForwardOutcome::ResyncRequired {
            seq: self.seq,
            client: self.client.id,
            class: self.class,
            reason,
        }
    }
}

/// A forwarded change ready for a backend: its meta and its body prepared once, the way a
/// report is, or the refusal of a body that cannot be (a full body whose items do not hash to
/// its hash).
pub(crate) type ForwardInput = (ForwardMeta, Result<ReportInput, ForwardOutcome>);

/// The identity of a forwarded change, standing where a report has its report id. A change is
/// the state its owner reached: this client's snapshot of this class at this version with this
/// hash. The id is derived from exactly those, so every site on the way computes the same id
/// for the same change without it travelling or being stored, a change resent after a lost
/// answer keeps its id, and two different changes never share one. (The owner's report id
/// would not do: a resynced full snapshot stands for several reports, and children of the
/// previous release do not send it.)
pub(crate) fn change_id(client: Uuid, class: Class, version: i64, hash: &Digest) -> Uuid {
    let mut h = blake3::Hasher::new();
    h.update(b"invsync forwarded change\0");
    h.update(client.as_bytes());
    h.update(class.as_str().as_bytes());
    h.update(&version.to_le_bytes());
    h.update(&hash.0);
    let mut id = [0u8; 16];
    id.copy_from_slice(&h.finalize().as_bytes()[..16]);
    uuid::Builder::from_custom_bytes(id).into_uuid()
}

/// Prepares a forwarded change given with its items as maps.
pub(crate) fn job_of(entry: &Forwarded) -> Result<ForwardInput, StoreError> {
    let body = match &entry.body {
        ReportBody::Full { items } => ReportBodyOf::Full {
            items: crate::codec::prepare_items(items),
        },
        ReportBody::Delta {
            base_version,
            delta,
        } => ReportBodyOf::Delta {
            base_version: *base_version,
            upsert: crate::codec::prepare_items(&delta.upsert),
            remove: delta.remove.clone(),
        },
    };
    job(meta_of(entry), entry.hash, body)
}

/// Prepares a forwarded change read straight into prepared items.
pub(crate) fn incoming_job(entry: IncomingForwarded) -> Result<ForwardInput, StoreError> {
    let meta = meta_of(&entry);
    let body = match entry.body {
        PreparedBody::Full { items } => ReportBodyOf::Full { items: items.items },
        PreparedBody::Delta {
            base_version,
            delta,
        } => ReportBodyOf::Delta {
            base_version,
            upsert: delta.upsert.items,
            remove: delta.remove,
        },
    };
    job(meta, entry.hash, body)
}

pub(crate) fn meta_of<B>(entry: &invsync_proto::wire::ForwardedOf<B>) -> ForwardMeta {
    ForwardMeta {
        seq: entry.seq,
        client: entry.client.clone(),
        class: entry.class,
        version: entry.version,
        full_at: entry.full_at,
        updated_at: entry.updated_at,
        completed: entry.completed.clone(),
    }
}

fn job(
    meta: ForwardMeta,
    hash: Digest,
    body: ReportBodyOf<Vec<crate::codec::PreparedItem>>,
) -> Result<ForwardInput, StoreError> {
    let body = match body {
        ReportBodyOf::Full { items } => match InputBody::full(meta.class, hash, items) {
            Ok(body) => body,
            Err(StoreError::BadReport(reason)) => {
                let refused = meta.refused(reason);
                return Ok((meta, Err(refused)));
            }
            Err(e) => return Err(e),
        },
        ReportBodyOf::Delta {
            base_version,
            upsert,
            remove,
        } => InputBody::Delta {
            base_version,
            upsert,
            remove,
        },
    };
    let input = ReportInput {
        report_id: change_id(meta.client.id, meta.class, meta.version, &hash),
        class: meta.class,
        hash,
        answers: Vec::new(),
        body,
        not_past: None,
    };
    Ok((meta, Ok(input)))
}

/// Why a change of a client owned by `owner` may not come through the child `via`, if it may
/// not: the owner must be that child or a site it reported below it (`reached`: the child
/// `sites.via` records for the owner), never this site.
pub(crate) fn route_refusal(
    own: &SiteCode,
    via: &SiteCode,
    owner: &SiteCode,
    reached: Option<&str>,
) -> Option<String> {
    if owner == own || via == own {
        return Some(format!(
            "{owner} is this site's own code; a child cannot forward changes of this site's clients"
        ));
    }
    match reached {
        Some(v) if v == via.as_str() => None,
        Some(v) => Some(format!(
            "site {owner} is reached through child {v}, not {via}; {via} cannot forward its clients"
        )),
        None if owner == via => None,
        None => Some(format!(
            "site {owner} is not known below child {via} (it has not reported itself through {via})"
        )),
    }
}

/// The refusal of a forwarded change before its snapshot is read: its route (see
/// [`route_refusal`]) or its owner, when this site holds the client under another owner
/// (`held_by`). Client ids are issued by the owner at enrollment; one id under two owners is a
/// forged or corrupt record, and taking it would move a client between branches of the tree.
pub(crate) fn refusal(
    own: &SiteCode,
    via: &SiteCode,
    meta: &ForwardMeta,
    reached: Option<&str>,
    held_by: Option<&str>,
) -> Option<ForwardOutcome> {
    let owner = &meta.client.site;
    if let Some(reason) = route_refusal(own, via, owner, reached) {
        return Some(meta.refused(reason));
    }
    match held_by {
        Some(site) if site != owner.as_str() => Some(meta.refused(format!(
            "client {} belongs to site {site}, not {owner}",
            meta.client.id
        ))),
        _ => None,
    }
}

/// A resent change already stored ([`duplicate`]), judged against the client's stored
/// snapshot of the class, if there is one.
pub(crate) fn resent(
    meta: &ForwardMeta,
    input: &ReportInput,
    row: Option<&crate::rows::SnapshotRow>,
) -> Option<ForwardOutcome> {
    let r = row?;
    let recent = r.has_forwarded(meta.version, &input.hash);
    duplicate(meta, input, r.version, &r.hash, recent)
}

/// Whether the stored snapshot (`version`, `hash`, and whether it recently took a forwarded
/// change of this version and hash) already holds the change: a change resent after a lost
/// answer is a duplicate, not a gap.
pub(crate) fn duplicate(
    meta: &ForwardMeta,
    input: &ReportInput,
    version: i64,
    hash: &Digest,
    forwarded_recently: bool,
) -> Option<ForwardOutcome> {
    ((version == meta.version && *hash == input.hash) || forwarded_recently)
        .then_some(ForwardOutcome::Duplicate { seq: meta.seq })
}

/// Logs a switch of forwarding, with the outcome of the write that made it.
pub(crate) fn log_forwarding(on: bool, set: Result<(), StoreError>) -> Result<(), StoreError> {
    set?;
    tracing::info!(
        on,
        "Set whether accepted changes are forwarded to a parent site."
    );
    Ok(())
}

/// Logs an outbox resync (`Store::outbox_resync`), with whether a full entry was queued.
pub(crate) fn log_resync(client: Uuid, class: Class, queued: bool) -> Result<(), StoreError> {
    tracing::debug!(%client, %class, queued, "Replaced a client's outbox entries of one class with its full snapshot.");
    Ok(())
}

/// Logs what became of a forwarded change and returns the outcome.
pub(crate) fn log_forward(
    via: &SiteCode,
    meta: &ForwardMeta,
    outcome: ForwardOutcome,
) -> ForwardOutcome {
    let (client, owner, version) = (meta.client.id, &meta.client.site, meta.version);
    match &outcome {
        ForwardOutcome::Applied { seq } => {
            tracing::debug!(%via, %owner, %client, seq, version, "Applied a forwarded change.")
        }
        ForwardOutcome::Duplicate { seq } => {
            tracing::debug!(%via, %owner, %client, seq, version, "Ignored a forwarded change that was applied before.")
        }
        ForwardOutcome::ResyncRequired {
            seq, class, reason, ..
        } => {
            tracing::info!(%via, %owner, %client, seq, %class, reason = %reason, "Asked a child for a full snapshot: a forwarded change does not follow what this site holds.")
        }
        ForwardOutcome::Refused { seq, reason } => {
            tracing::warn!(%via, %owner, %client, seq, reason = %reason, "Refused a change forwarded by a child; it is not stored.")
        }
    }
    outcome
}

/// Logs that a client was forgotten: its owning site deleted it and forwarded the tombstone.
pub(crate) fn log_forgotten(meta: &ForwardMeta) {
    tracing::info!(
        client_id = %meta.client.id,
        name = %meta.client.name,
        owner = %meta.client.site,
        "Forgot a client deleted at its owning site."
    );
}

/// Logs that a stale client record was replaced: its owner re-created a client of that name.
pub(crate) fn log_stale(record: &ClientRecord, old: Uuid) {
    tracing::info!(
        site = %record.site,
        client = %record.name,
        old_id = %old,
        new_id = %record.id,
        "Replaced a stale client record: its owning site now has another client of that name."
    );
}

// ---------------------------------------------------------------------------------------------
// What the store's callers ask of the hierarchy, handed to a backend whole

/// A child's token to record (`Store::set_child_token`).
pub(crate) struct ChildToken {
    pub code: SiteCode,
    pub key_hash: Digest,
    pub now: Timestamp,
}

/// What the direct child `via` reported of itself and the sites below it
/// (`Store::record_site_status`).
pub(crate) struct SiteReport {
    pub via: SiteCode,
    pub statuses: Vec<SiteStatus>,
    pub now: Timestamp,
}

/// A resync request to route down to the site owning `client` (`Store::queue_routed_request`).
pub(crate) struct RouteDown {
    pub client: Uuid,
    pub class: Class,
    pub now: Timestamp,
}

impl RouteDown {
    pub fn log(&self, queued: &Queued) {
        tracing::debug!(client = %queued.client, class = %self.class, id = queued.id, created = queued.created, route = ?queued.routed_to, "Queued a request to route down to the owning site.");
    }
}

/// The routed requests to hand to the direct child `via` at `now`
/// (`Store::deliver_routed_requests`): those not delivered since `due`.
#[derive(Clone)]
pub(crate) struct Delivery {
    pub via: SiteCode,
    pub due: Timestamp,
    pub now: Timestamp,
}

impl Delivery {
    /// A request is delivered again when its last delivery is [`crate::REDELIVER_AFTER_MS`]
    /// old: the answer carrying it may have been lost.
    pub fn new(via: &SiteCode, now: Timestamp) -> Delivery {
        Delivery {
            via: via.clone(),
            due: Timestamp(now.0 - crate::REDELIVER_AFTER_MS),
            now,
        }
    }
}

/// A request the parent routed down, to take in (`Store::accept_down_request`).
pub(crate) struct TakeDown {
    pub req: DownRequest,
    pub accept_own: bool,
    pub now: Timestamp,
}

impl ChildToken {
    /// The arguments of [`sql::CHILD_TOKEN_UPSERT`].
    pub fn args(&self) -> [Arg<'_>; 3] {
        let hash = Arg::Blob(&self.key_hash.0);
        [Arg::Text(self.code.as_str()), hash, Arg::Int(self.now.0)]
    }
}

impl TakeDown {
    /// The arguments of [`sql::ACCEPT_DOWN`] for the client row `client`, routed on to `route`.
    pub fn args<'a>(
        &'a self,
        client: i64,
        origin: &'a str,
        route: Option<&'a SiteCode>,
    ) -> [Arg<'a>; 5] {
        let (class, at) = (Arg::Text(self.req.class.as_str()), Arg::Int(self.now.0));
        let route = Arg::OptText(route.map(SiteCode::as_str));
        [Arg::Int(client), class, at, Arg::Text(origin), route]
    }
}

impl RouteDown {
    /// The client to route the request to, from its row here (`found`: row id, name, owner):
    /// one this site holds and does not own itself.
    pub fn client(
        &self,
        own: &SiteCode,
        found: Option<(i64, ClientName, SiteCode)>,
    ) -> Result<(i64, ClientName, SiteCode), StoreError> {
        let Some((client, name, owner)) = found else {
            let name = self.client.to_string();
            return Err(StoreError::UnknownClient { name });
        };
        match own_client_refusal(own, &owner, &name) {
            Some(e) => Err(e),
            None => Ok((client, name, owner)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Site codes, child tokens and the sites below

fn own_code_in_use(code: &SiteCode) -> StoreError {
    StoreError::CodeInUse(format!("{code} is this site's own code"))
}

/// Why `code` cannot get a child token, if it cannot: it is this site's own code, or that of
/// a site reached through another child (`recorded`: the child `sites.via` records for it).
pub(crate) fn child_token_conflict(
    own: &SiteCode,
    code: &SiteCode,
    recorded: Option<&str>,
) -> Option<StoreError> {
    if code == own {
        return Some(own_code_in_use(code));
    }
    match recorded {
        Some(via) if via != code.as_str() => Some(StoreError::CodeInUse(format!(
            "{code} is already the code of a site reached through child {via}"
        ))),
        _ => None,
    }
}

/// Where a site code stands in the tree ([`sql::TREE_OF`]): the child `sites.via` records for
/// it, and whether it is a direct child's code (holds a token).
pub(crate) type Tree = (Option<String>, bool);

/// Why `code` cannot be recorded as reached through `via`, if it cannot.
pub(crate) fn code_conflict(
    own: &SiteCode,
    via: &SiteCode,
    code: &SiteCode,
    (recorded, has_token): Tree,
) -> Option<StoreError> {
    if code == own {
        return Some(own_code_in_use(code));
    }
    if let Some(other) = recorded
        && other != via.as_str()
    {
        return Some(StoreError::CodeInUse(format!(
            "{code} is already the code of a site reached through child {other}, not {via}"
        )));
    }
    if code != via && has_token {
        return Some(StoreError::CodeInUse(format!(
            "{code} is a direct child of this site, not a site below {via}"
        )));
    }
    None
}

/// The direct child through which `code` is reached: as recorded, or the code itself for a
/// child that holds a token but has not reported yet.
pub(crate) fn site_via(
    code: &SiteCode,
    (recorded, has_token): Tree,
) -> Result<Option<SiteCode>, StoreError> {
    match recorded {
        Some(via) => site_code(&via).map(Some),
        None => Ok(has_token.then(|| code.clone())),
    }
}

/// A row of [`sql::SITES`].
pub(crate) fn site_status(row: &impl Cols) -> Result<SiteStatus, StoreError> {
    Ok(SiteStatus {
        code: row.site(0)?,
        name: row.text(1)?.to_string(),
        parent: row.opt_site(2)?,
        url: row.opt_text(3)?.map(str::to_string),
        clients: row.int(4)?,
        outbox_depth: row.int(5)?,
        outbox_oldest: row.ts(6)?,
        last_forwarded: row.ts(7)?,
        accepts_parent_requests: row.flag(8)?,
        reported_at: row.at(9)?,
    })
}

/// A row of [`sql::FIND_CLIENTS`]: a client, its owner and the owner's URL where known.
pub(crate) fn owner(row: &impl Cols) -> Result<Owner, StoreError> {
    Ok(Owner {
        id: row.uuid(0)?,
        client: row.name(1)?,
        site: row.site(2)?,
        url: row.opt_text(3)?.map(str::to_string),
    })
}

// ---------------------------------------------------------------------------------------------
// The outbox

/// One accepted change as the outbox records it.
pub(crate) struct Entry<'a> {
    pub client: i64,
    /// The change as accepted: its class, hash and body (base version, removed keys).
    pub input: &'a ReportInput,
    pub version: i64,
    pub full_at: Timestamp,
    pub updated_at: Timestamp,
    /// The item ids of the body (`codec::encode_ids`).
    pub body_ids: &'a [u8],
    pub completed: &'a [RequestView],
}

/// What the parent's answer to a forward batch settled (`Store::outbox_done`): the entries it
/// `stored` (applied, or already held) and those it `refused`, answered at `now` by `parent`
/// (its code, when known).
pub(crate) struct Acked {
    pub stored: Vec<i64>,
    pub refused: Vec<i64>,
    pub parent: Option<SiteCode>,
    pub now: Timestamp,
}

impl Acked {
    pub fn is_empty(&self) -> bool {
        self.stored.is_empty() && self.refused.is_empty()
    }

    pub fn parent(&self) -> Option<&str> {
        self.parent.as_ref().map(SiteCode::as_str)
    }
}

/// The values of an outbox row, in the order of [`sql::OUTBOX_INSERT`] (after the client).
pub(crate) struct OutboxRow {
    pub version: i64,
    pub hash: Digest,
    pub full_at: i64,
    pub updated_at: i64,
    pub accepted_at: i64,
    /// `NULL` for a full snapshot.
    pub base_version: Option<i64>,
    pub removed: Option<String>,
    pub completed: Option<String>,
}

impl OutboxRow {
    /// The arguments of [`sql::OUTBOX_INSERT`] for the entry `e`.
    pub fn args<'a>(&'a self, e: &'a Entry<'_>) -> [Arg<'a>; 11] {
        [
            Arg::Int(e.client),
            Arg::Class(e.input.class),
            Arg::Int(self.version),
            Arg::Blob(self.hash.0.as_slice()),
            Arg::Int(self.full_at),
            Arg::Int(self.updated_at),
            Arg::Int(self.accepted_at),
            Arg::OptInt(self.base_version),
            Arg::Blob(e.body_ids),
            Arg::OptText(self.removed.as_deref()),
            Arg::OptText(self.completed.as_deref()),
        ]
    }

    /// What the outbox records of an accepted change, accepted at `accepted_at`.
    pub fn of(e: &Entry<'_>, accepted_at: Timestamp) -> Result<OutboxRow, StoreError> {
        let (base_version, removed) = match &e.input.body {
            InputBody::Full { .. } => (None, None),
            InputBody::Delta {
                base_version,
                remove,
                ..
            } => (Some(*base_version), encode_removed(remove)?),
        };
        Ok(OutboxRow {
            version: e.version,
            hash: e.input.hash,
            full_at: e.full_at.0,
            updated_at: e.updated_at.0,
            accepted_at: accepted_at.0,
            base_version,
            removed,
            completed: encode_completed(e.completed)?,
        })
    }
}

// The JSON columns of the outbox. Written out per type because the store does not depend on
// serde's derive for its own types, only on serde_json.

fn encode_error(e: serde_json::Error) -> StoreError {
    StoreError::Database(format!("cannot encode an outbox entry: {e}"))
}

/// A delta's removed keys, `NULL` when there are none (most deltas remove nothing).
fn encode_removed(keys: &[String]) -> Result<Option<String>, StoreError> {
    if keys.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(keys).map(Some).map_err(encode_error)
}

/// The requests a change completed, `NULL` when there are none (most changes complete none).
pub(crate) fn encode_completed(requests: &[RequestView]) -> Result<Option<String>, StoreError> {
    if requests.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(requests)
        .map(Some)
        .map_err(encode_error)
}

fn decode_removed(raw: Option<&str>) -> Result<Vec<String>, StoreError> {
    raw.map_or(Ok(Vec::new()), |r| {
        serde_json::from_str(r).map_err(|_| corrupt("outbox entry"))
    })
}

pub(crate) fn decode_completed(raw: Option<&str>) -> Result<Vec<RequestView>, StoreError> {
    raw.map_or(Ok(Vec::new()), |r| {
        serde_json::from_str(r).map_err(|_| corrupt("outbox entry"))
    })
}

/// A row of [`sql::OUTBOX_BATCH`] with its items (column 12's ids) loaded.
pub(crate) fn forwarded(row: &impl Cols, items: Items) -> Result<Forwarded, StoreError> {
    let body = match row.opt_int(11)? {
        None => ReportBody::Full { items },
        Some(base_version) => ReportBody::Delta {
            base_version,
            delta: Delta {
                upsert: items,
                remove: decode_removed(row.opt_text(13)?)?,
            },
        },
    };
    Ok(Forwarded {
        seq: row.int(0)?,
        client: ClientRecord {
            id: row.uuid(1)?,
            name: row.name(2)?,
            site: row.site(3)?,
            machine_id: row.text(4)?.to_string(),
            enrolled_at: row.at(5)?,
            agent_version: row.opt_text(16)?.map(str::to_string),
        },
        class: row.class(6)?,
        version: row.int(7)?,
        hash: row.digest(8)?,
        full_at: row.at(9)?,
        updated_at: row.at(10)?,
        body,
        completed: decode_completed(row.opt_text(14)?)?,
        deleted: row.ts(15)?,
    })
}

/// What replaces every outbox entry of a client and class (`dropped`: their `accepted_at` and
/// `completed` columns, oldest first) when they give way to one full entry of its snapshot:
/// when it counts as accepted, and the requests it carries on. It has waited as long as the
/// oldest change it replaces (with none, it stands for the snapshot's last change: `None`).
/// The requests the dropped entries completed move to it, once each, so the parent still
/// learns of them, and they are marked forwarded when that entry is acknowledged.
pub(crate) fn resync_entry(
    dropped: &[(i64, Option<String>)],
) -> Result<(Option<i64>, Option<String>), StoreError> {
    let mut completed: Vec<RequestView> = Vec::new();
    for (_, raw) in dropped {
        for r in decode_completed(raw.as_deref())? {
            if !completed.iter().any(|c| c.id == r.id) {
                completed.push(r);
            }
        }
    }
    let accepted_at = dropped.iter().map(|(at, _)| *at).min();
    Ok((accepted_at, encode_completed(&completed)?))
}

/// The time the parent last acknowledged a batch, from its `meta` value.
pub(crate) fn last_forwarded(raw: Option<&str>) -> Result<Option<Timestamp>, StoreError> {
    raw.map(|v| {
        v.parse()
            .map(Timestamp)
            .map_err(|_| corrupt("last forwarding time"))
    })
    .transpose()
}

// ---------------------------------------------------------------------------------------------
// Requests completed at the owner, and requests routed down the tree

/// How a request named in a forwarded change is found here. A request is known across the
/// tree by its origin (`RequestView::origin`; `<owner>:<id at the owner>` for one made at the
/// owner itself): by row id only for a request made here (an origin naming this site), never
/// by the bare id of another site, which may well be the id of an unrelated request here.
pub(crate) enum Target {
    /// A request made here, by its row id.
    Here(i64),
    /// Any other, by its origin.
    Origin(String),
}

/// Where the request `r`, completed at `owner`, is found at the site `own`.
pub(crate) fn target(own: &SiteCode, owner: &str, r: &RequestView) -> Target {
    let origin = r
        .origin
        .clone()
        .unwrap_or_else(|| format!("{owner}:{}", r.id));
    match split_origin(&origin) {
        Some((site, id)) if &site == own => Target::Here(id),
        _ => Target::Origin(origin),
    }
}

/// A request a forwarded change completed at its owner, as this site records it.
pub(crate) struct Completion<'a> {
    pub target: Target,
    pub class: &'a str,
    pub requested_at: i64,
    pub picked_up_at: Option<i64>,
    pub completed_at: i64,
}

impl Completion<'_> {
    /// The statement that completes this request where its [`Target`] finds it, with its
    /// arguments.
    pub fn args(&self, client: i64) -> (&'static str, Vec<Arg<'_>>) {
        let (picked, at) = (Arg::OptInt(self.picked_up_at), Arg::Int(self.completed_at));
        let (sql, found) = self.target.arg((sql::COMPLETE_HERE, sql::COMPLETE_RELAYED));
        let mut args = vec![picked, at, found, Arg::Int(client)];
        if let Target::Here(_) = self.target {
            args.push(Arg::Text(self.class));
        }
        (sql, args)
    }

    /// The arguments of [`sql::COMPLETE_NEW`]: a request found by origin that no row holds.
    pub fn new_args(&self, client: i64) -> [Arg<'_>; 6] {
        let (_, origin) = self.target.arg(("", ""));
        [
            Arg::Int(client),
            Arg::Text(self.class),
            Arg::Int(self.requested_at),
            Arg::OptInt(self.picked_up_at),
            Arg::Int(self.completed_at),
            origin,
        ]
    }
}

/// The statement that marks one completed request of `client` forwarded to the parent, with its
/// arguments (`target` and `class` from [`forwarded_targets`]).
pub(crate) fn forwarded_args<'a>(
    acked: &'a Acked,
    client: i64,
    (target, class): &'a (Target, &'a str),
) -> (&'static str, [Arg<'a>; 5]) {
    let (sql, found) = target.arg((sql::FORWARDED_HERE, sql::FORWARDED_ORIGIN));
    let (now, parent) = (Arg::Int(acked.now.0), Arg::OptText(acked.parent()));
    (
        sql,
        [now, parent, found, Arg::Int(client), Arg::Text(class)],
    )
}

/// The requests the change `meta` completed at its owner, as the site `own` records them. A
/// request is forwarded because it completed; without a time it completed with the change
/// that carries it.
pub(crate) fn completions<'a>(own: &SiteCode, meta: &'a ForwardMeta) -> Vec<Completion<'a>> {
    let owner = meta.client.site.as_str();
    meta.completed
        .iter()
        .map(|r| Completion {
            target: target(own, owner, r),
            class: r.class.as_str(),
            requested_at: r.requested_at.0,
            picked_up_at: r.picked_up_at.map(|t| t.0),
            completed_at: r.completed_at.unwrap_or(meta.updated_at).0,
        })
        .collect()
}

/// Logs that `n` requests matched the routed request `id` made here that a forwarded change
/// completed at its owner (none: it completed before, or names no routed request here).
pub(crate) fn log_completed_here(id: i64, n: u64) {
    if n == 1 {
        tracing::debug!(
            id,
            "A request routed down from this site completed at its owner."
        );
    }
}

/// The requests an acknowledged change of a client owned by `owner` completed, as the site
/// `own` finds them to mark them forwarded, with their classes.
pub(crate) fn forwarded_targets<'a>(
    own: &SiteCode,
    owner: &str,
    completed: &'a [RequestView],
) -> Vec<(Target, &'a str)> {
    completed
        .iter()
        .map(|r| (target(own, owner, r), r.class.as_str()))
        .collect()
}

/// The refusal of routing a request down to `owner` for the client `name`, if it is this
/// site's own client (its requests are queued here).
pub(crate) fn own_client_refusal(
    own: &SiteCode,
    owner: &SiteCode,
    name: &ClientName,
) -> Option<StoreError> {
    (owner == own).then(|| {
        StoreError::Refused(format!(
            "{name} is this site's own client; its requests are queued here, not routed"
        ))
    })
}

/// A row of [`sql::ROUTED_DUE`]: its id here and the request as it travels down. A request
/// made here goes down under this site's id; one routed on through here keeps the origin it
/// came with, so the owner's answer finds the site that asked.
pub(crate) fn routed(row: &impl Cols, own: &SiteCode) -> Result<(i64, DownRequest), StoreError> {
    let id = row.int(0)?;
    let (origin_site, origin_id) = match row.opt_text(1)? {
        None => (own.clone(), id),
        Some(raw) => split_origin(raw).ok_or_else(|| corrupt("request origin"))?,
    };
    let class = Class::parse(row.text(3)?).ok_or_else(|| corrupt("request class"))?;
    Ok((
        id,
        DownRequest {
            origin_id,
            origin_site,
            client: row.uuid(2)?,
            class,
        },
    ))
}

/// What a request the parent routed down becomes, once the client is looked up (`found`: its
/// row, name and owner): `Ok` with the row, the name and the route to queue it under (`None`:
/// for this site's own client, else routed on towards the owner), or `Err` with the answer
/// when it is not queued.
pub(crate) fn down_route(
    own: &SiteCode,
    req: &DownRequest,
    found: Option<(i64, ClientName, SiteCode)>,
    accept_own: bool,
) -> Result<(i64, ClientName, Option<SiteCode>), DownAccepted> {
    if &req.origin_site == own {
        // Requests only travel down; one claiming to come from here went round in a circle.
        return Err(DownAccepted::Refused(format!(
            "the request claims to come from this site {own}"
        )));
    }
    match found {
        None => Err(DownAccepted::UnknownClient),
        Some((client, name, owner)) if &owner == own => {
            if accept_own {
                Ok((client, name, None))
            } else {
                Err(DownAccepted::NotAccepted)
            }
        }
        Some((client, name, owner)) => Ok((client, name, Some(owner))),
    }
}

/// The answer to queueing a request routed down to `owner` as `id` (`created`: new, not one
/// already pending).
pub(crate) fn routed_queued(
    id: i64,
    name: ClientName,
    owner: SiteCode,
    requested_at: Timestamp,
    created: bool,
) -> Queued {
    Queued {
        id,
        client: name,
        created,
        state: RequestState::Pending,
        requested_at,
        routed_to: Some(owner),
    }
}

/// The answer for a request taken in as `id` (`created`: new, not one of the same origin).
pub(crate) fn down_accepted(
    id: i64,
    name: ClientName,
    route: Option<SiteCode>,
    created: bool,
) -> DownAccepted {
    match route {
        None => DownAccepted::Queued {
            id,
            client: name,
            created,
        },
        Some(route) => DownAccepted::Relayed { id, route, created },
    }
}

// ---------------------------------------------------------------------------------------------
// How far up the tree a completed request travelled (`invsync --wait` past the first hop)

/// What this site tells a child about a request completed below it, from a row of
/// [`sql::HOPS_DUE`]: the parent that stored the change (when it did) and the sites above it
/// that the parent reported, and whether the top has it (this site is the top when it has no
/// parent: `has_parent` false).
pub(crate) fn hop_report(
    row: &impl Cols,
    has_parent: bool,
) -> Result<(i64, HopReport), StoreError> {
    let mut hops = Vec::new();
    if let Some(at) = row.ts(3)? {
        hops.push(Hop {
            site: row.opt_site(2)?,
            at,
        });
    }
    hops.extend(crate::rows::decode_hops(row.opt_text(4)?)?);
    let report = HopReport {
        request: row.text(1)?.to_string(),
        hops,
        top: !has_parent || row.flag(5)?,
    };
    Ok((row.int(0)?, report))
}

/// The requests completed below this site with news of their way up for the child `via`.
pub(crate) async fn hops_due(
    e: &mut impl Exec,
    via: &SiteCode,
) -> Result<Vec<(i64, HopReport)>, StoreError> {
    let has_parent = e
        .first(sql::META, &[Arg::Text(FORWARDING)], |r| {
            Ok(r.text(0)? == "1")
        })
        .await?
        .unwrap_or(false);
    let due = e
        .all(sql::HOPS_DUE, &[Arg::Text(via.as_str())], |r| {
            hop_report(r, has_parent)
        })
        .await?;
    // A request completed here that has not gone further up has nothing to tell yet; it stays
    // due until its parent acknowledges the change (which marks it again).
    Ok(due
        .into_iter()
        .filter(|(_, r)| r.top || !r.hops.is_empty())
        .collect())
}

/// [`hops_due`], marked told: what the answer to the child's forward batch carries. A report
/// lost with its answer is not sent again until the request's way up changes again; `invsync
/// --wait` then times out at the owning site although the change went up (each site's `invsite
/// show` still lists its own hop).
pub(crate) async fn deliver_hops(
    e: &mut impl Exec,
    via: &SiteCode,
) -> Result<Vec<HopReport>, StoreError> {
    let due = hops_due(e, via).await?;
    let mut out = Vec::with_capacity(due.len());
    for (id, report) in due {
        e.execute(sql::HOPS_TOLD, &[Arg::Int(id)]).await?;
        out.push(report);
    }
    Ok(out)
}

/// Records what the parent reported of requests' ways up above it; how many requests it
/// named here. A report naming no request here (one that ended otherwise) changes nothing.
pub(crate) async fn record_hops(
    e: &mut impl Exec,
    own: &SiteCode,
    reports: &[HopReport],
) -> Result<u64, StoreError> {
    let mut found = 0;
    for r in reports {
        let target = match split_origin(&r.request) {
            Some((site, id)) if &site == own => Target::Here(id),
            Some(_) => Target::Origin(r.request.clone()),
            None => continue,
        };
        let hops = crate::rows::encode_hops(&r.hops)?;
        let (sql, at) = target.arg((sql::HOPS_HERE, sql::HOPS_ORIGIN));
        found += e
            .execute(sql, &[Arg::Text(&hops), Arg::Flag(r.top), at])
            .await?;
    }
    Ok(found)
}
