//! The store's rules over rows, written once for both backends, the way `plan` is: a backend
//! fetches rows (through [`Cols`], which each backend implements for its own row type) and
//! executes the statements; everything decided from those rows lives here as pure functions:
//! how a row becomes a view (clients, requests, events, snapshots, history), request and event
//! states, what a check-in answers, what an enrollment finds, the de-duplication marks of a
//! snapshot and the write set of an accepted change. A rule fixed here is fixed for SQLite and
//! PostgreSQL alike.

use std::collections::BTreeMap;

use invsync_proto::wire::{
    CheckinResponse, ClassState, ClientSummary, ClientView, Event, EventView, HardwareId, Hop,
    Instruction, InstructionKind, MatchedBy, MergeView, Queued, ReportAck, RequestState,
    RequestView, SnapshotView, Transport,
};
use invsync_proto::{Class, ClientName, Digest, SiteCode, Timestamp};
use uuid::Uuid;

use crate::codec::{decode_attrs, decode_ids, encode_ids};
use crate::error::StoreError;
use crate::plan::{Change, Current, ReportInput, Slot};
use crate::{Enrolled, Enrollment, HistoryEntry, Merged, SiteMeta};

/// How many report ids per client and class are remembered for de-duplication. An agent
/// resends only its latest unacknowledged report, so a handful is plenty; 16 bytes each.
pub(crate) const RECENT_REPORTS: usize = 4;

/// How many forwarded changes per client and class are remembered for de-duplication (see
/// [`SnapshotRow::has_forwarded`]): a child re-sends a whole batch when the answer to it was
/// lost, which may hold several changes of one client and class.
pub(crate) const RECENT_FORWARDED: usize = 8;

/// How many requests and events a client view lists.
pub(crate) const VIEW_LIMIT: i64 = 50;

pub(crate) fn corrupt(what: &str) -> StoreError {
    StoreError::Database(format!("the database holds an invalid {what}"))
}

/// The columns of one fetched row, as each backend reads its own row type. The typed readers
/// built on these (a digest, a client name, a site code) are the same for both.
pub(crate) trait Cols {
    fn int(&self, i: usize) -> Result<i64, StoreError>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError>;
    fn text(&self, i: usize) -> Result<&str, StoreError>;
    fn opt_text(&self, i: usize) -> Result<Option<&str>, StoreError>;
    fn blob(&self, i: usize) -> Result<&[u8], StoreError>;
    fn opt_blob(&self, i: usize) -> Result<Option<&[u8]>, StoreError>;
    fn flag(&self, i: usize) -> Result<bool, StoreError>;
    /// A class column (an integer in SQLite, a `smallint` in PostgreSQL).
    fn class(&self, i: usize) -> Result<Class, StoreError>;
    /// A client id column (16 bytes in SQLite, a `uuid` in PostgreSQL).
    fn uuid(&self, i: usize) -> Result<Uuid, StoreError>;

    fn digest(&self, i: usize) -> Result<Digest, StoreError> {
        Digest::from_slice(self.blob(i)?).ok_or_else(|| corrupt("hash"))
    }
    /// A client name. A deleted client's stored name is `<NAME>~<row id>` (the lifecycle module),
    /// which frees the name for a new enrollment; it reads back as the name it had.
    fn name(&self, i: usize) -> Result<ClientName, StoreError> {
        let raw = self.text(i)?;
        let name = raw.split_once('~').map_or(raw, |(name, _)| name);
        ClientName::parse(name).map_err(|_| corrupt("client name"))
    }
    fn site(&self, i: usize) -> Result<SiteCode, StoreError> {
        SiteCode::parse(self.text(i)?).map_err(|_| corrupt("site code"))
    }
    fn opt_site(&self, i: usize) -> Result<Option<SiteCode>, StoreError> {
        self.opt_text(i)?
            .map(|c| SiteCode::parse(c).map_err(|_| corrupt("site code")))
            .transpose()
    }
    fn ts(&self, i: usize) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.opt_int(i)?.map(Timestamp))
    }
    fn at(&self, i: usize) -> Result<Timestamp, StoreError> {
        Ok(Timestamp(self.int(i)?))
    }
}

/// What `recent_reports` remembers of a forwarded change: its version and the first 8 bytes of
/// its hash, 16 bytes like a report id.
pub(crate) fn forwarded_mark(version: i64, hash: &Digest) -> [u8; 16] {
    let mut mark = [0u8; 16];
    mark[..8].copy_from_slice(&version.to_le_bytes());
    mark[8..].copy_from_slice(&hash.0[..8]);
    mark
}

/// A request's state from its times. A request is completed only after it was picked up (a
/// report answering it, or the owning site's completion forwarded up, sets both), so one
/// ended without a pick-up time was cancelled (`CANCEL_REQUEST` in `crate::sql`, ended after
/// it was made) or expired (`END_EXPIRED`, ended at the time it was made, when an identical
/// request replaced it).
pub(crate) fn state_of(
    requested_at: i64,
    picked_up_at: Option<i64>,
    completed_at: Option<i64>,
) -> RequestState {
    match (picked_up_at, completed_at) {
        (None, Some(at)) if at == requested_at => RequestState::Expired,
        (None, Some(_)) => RequestState::Cancelled,
        (_, Some(_)) => RequestState::Complete,
        (Some(_), None) => RequestState::PickedUp,
        (None, None) => RequestState::Pending,
    }
}

/// The state of a request as read at a time whose expiry cutoff is `cutoff`: a pending
/// request made before it has expired. A request routed down to a site below is left to the
/// owning site, which holds it for the agent.
pub(crate) fn expire(view: &mut RequestView, cutoff: i64) {
    if view.state == RequestState::Pending && view.route.is_none() && view.requested_at.0 < cutoff {
        view.state = RequestState::Expired;
    }
}

/// The answer to a cancel of request `id` (`changed`: whether this call cancelled it), or
/// why it was not cancelled, from the request as read after the attempt.
pub(crate) fn cancel_answer(
    id: i64,
    found: Option<invsync_proto::wire::ClientRequest>,
    changed: bool,
    cutoff: i64,
) -> Result<invsync_proto::wire::Cancelled, StoreError> {
    let Some(mut found) = found else {
        return Err(StoreError::UnknownRequest { id });
    };
    expire(&mut found.request, cutoff);
    let r = &found.request;
    let at = |t: Option<Timestamp>| t.map(|t| t.rfc3339()).unwrap_or_else(|| "-".to_string());
    match r.state {
        RequestState::Cancelled | RequestState::Expired => Ok(invsync_proto::wire::Cancelled {
            client: found.client,
            site: found.site,
            request: found.request,
            already_cancelled: !changed,
        }),
        RequestState::Pending => match &r.route {
            Some(owner) => Err(StoreError::OtherSite(format!(
                "request {id} was routed to {}'s owning site {owner}, which holds it for the agent; \
                 cancel it there: `invsite show {}` at {owner} lists its id, then `invsync cancel ID`",
                found.client, found.client
            ))),
            // Made pending again between the update and the read cannot happen: nothing
            // clears a pick-up or completion time.
            None => Err(StoreError::Database(format!(
                "request {id} stayed pending after it was cancelled"
            ))),
        },
        RequestState::PickedUp => Err(StoreError::NotCancellable(format!(
            "request {id} cannot be cancelled: {} picked it up at {}; it completes as usual when the client's full report arrives",
            found.client,
            at(r.picked_up_at)
        ))),
        RequestState::Complete => Err(StoreError::NotCancellable(format!(
            "request {id} cannot be cancelled: it is already complete (at {})",
            at(r.completed_at)
        ))),
    }
}

pub(crate) fn instruction_kind(kind: &str, arg: &str) -> Option<InstructionKind> {
    match kind {
        "resync" => Class::parse(arg).map(|class| InstructionKind::Resync { class }),
        "event" => Event::parse(arg).map(|event| InstructionKind::Event { event }),
        _ => None,
    }
}

/// The site's identity from the `meta` table's key and value pairs.
pub(crate) fn site_meta<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<SiteMeta, StoreError> {
    let pairs: BTreeMap<&str, &str> = pairs.into_iter().collect();
    let code = pairs
        .get("site_code")
        .and_then(|c| SiteCode::parse(c).ok())
        .ok_or_else(|| corrupt("site code"))?;
    let created_at = pairs
        .get("created_at")
        .and_then(|c| c.parse::<i64>().ok())
        .ok_or_else(|| corrupt("creation time"))?;
    Ok(SiteMeta {
        code,
        name: pairs.get("site_name").unwrap_or(&"").to_string(),
        created_at: Timestamp(created_at),
    })
}

/// The `meta` rows of a new site's database, whose schema is `version`.
pub(crate) fn new_site_meta(meta: &SiteMeta, version: i64) -> [(&'static str, String); 4] {
    [
        ("site_code", meta.code.as_str().to_string()),
        ("site_name", meta.name.clone()),
        ("created_at", meta.created_at.0.to_string()),
        ("schema_version", version.to_string()),
    ]
}

/// Refuses a database whose schema version `found` is newer than the `known` one.
pub(crate) fn newer_schema(found: i64, known: i64) -> StoreError {
    StoreError::Database(format!(
        "the database has schema version {found}, newer than the {known} this program knows; run a newer invsync"
    ))
}

/// An enrollment whose name a client already holds (its id and machine id): the same machine
/// enrolling again (a reinstalled agent) keeps its id and history, and only its key changes,
/// which also revokes the old key; another machine is refused.
pub(crate) fn reenrollment(
    e: &Enrollment,
    holder_id: Uuid,
    machine_id: String,
) -> Result<Enrolled, StoreError> {
    if machine_id != e.machine_id {
        return Err(name_taken(&e.name, holder_id, machine_id));
    }
    Ok(Enrolled {
        client_id: holder_id,
        reenrolled: true,
        merged: None,
    })
}

/// A client of this site an enrollment may concern, found by its name, its machine id or its
/// hardware.
pub(crate) struct Known {
    pub row: i64,
    pub client_id: Uuid,
    pub name: ClientName,
    pub machine_id: String,
}

/// Where an enrollment goes, decided by [`enroll_to`].
pub(crate) enum EnrollTo {
    /// A free name and no record of this machine to take over: a new client.
    New,
    /// An existing record: the same machine again under its name (`merged` is `None`), or a
    /// record of this machine that the enrollment takes over.
    Existing { row: i64, enrolled: Enrolled },
}

/// Where an enrollment goes (`crate::Store::enroll`), from the client holding the name (with
/// the hardware it enrolled with), the newest client with the enrolling machine id and, when
/// none has it, the newest with the enrolling hardware (both looked up only when `merge`):
/// * the name's holder with the same machine id: the same machine again;
/// * the name's holder with another machine id: refused, unless merging, no client has the new
///   machine id, and the holder enrolled with the same DMI serial and product UUID (a reimaged
///   machine under its old name), which takes it over;
/// * a free name: the client with this machine id, else the one with this hardware, is taken
///   over when merging (a renamed or reimaged machine); else a new client.
pub(crate) fn enroll_to(
    en: &Enrollment,
    holder: Option<(Known, Option<HardwareId>)>,
    by_machine: Option<Known>,
    by_hardware: Option<Known>,
    merge: bool,
) -> Result<EnrollTo, StoreError> {
    let take_over = |k: Known, matched_by| EnrollTo::Existing {
        row: k.row,
        enrolled: Enrolled {
            client_id: k.client_id,
            reenrolled: true,
            merged: Some(Merged {
                old_name: k.name,
                old_machine_id: k.machine_id,
                matched_by,
            }),
        },
    };
    if let Some((h, hardware)) = holder {
        if h.machine_id == en.machine_id {
            let enrolled = reenrollment(en, h.client_id, h.machine_id)?;
            return Ok(EnrollTo::Existing {
                row: h.row,
                enrolled,
            });
        }
        let same_hardware = hardware.is_some() && hardware == en.hardware;
        if merge && by_machine.is_none() && same_hardware {
            return Ok(take_over(h, MatchedBy::Hardware));
        }
        return Err(name_taken(&en.name, h.client_id, h.machine_id));
    }
    if !merge {
        return Ok(EnrollTo::New);
    }
    Ok(match (by_machine, by_hardware) {
        (Some(k), _) => take_over(k, MatchedBy::MachineId),
        (None, Some(k)) => take_over(k, MatchedBy::Hardware),
        (None, None) => EnrollTo::New,
    })
}

/// The refusal of a name another machine holds (enrollment, offline enrollment, import).
pub(crate) fn name_taken(name: &ClientName, holder_id: Uuid, machine_id: String) -> StoreError {
    StoreError::NameTaken {
        name: name.clone(),
        holder_id,
        holder_machine_id: machine_id,
    }
}

/// What a queued request of a client by name is, as the one who queued it sees it.
pub(crate) fn queued(name: &ClientName, id: i64, requested_at: Timestamp, created: bool) -> Queued {
    Queued {
        id,
        client: name.clone(),
        created,
        state: RequestState::Pending,
        requested_at,
        routed_to: None,
    }
}

/// The `kind` and `arg` columns of a request for `kind`.
pub(crate) fn kind_and_arg(kind: &InstructionKind) -> (&'static str, &'static str) {
    match kind {
        InstructionKind::Resync { class } => ("resync", class.as_str()),
        InstructionKind::Event { event } => ("event", event.as_str()),
    }
}

/// How a view names a client: this site's own client by name, or any client this site holds
/// (its own or one of a site below) by client id.
#[derive(Debug, Clone)]
pub(crate) enum ClientKey {
    Name(ClientName),
    Id(Uuid),
}

pub(crate) fn unknown_client(name: &ClientName) -> StoreError {
    StoreError::UnknownClient {
        name: name.to_string(),
    }
}

pub(crate) fn unknown_id(client_id: Uuid) -> StoreError {
    StoreError::UnknownClient {
        name: client_id.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Check-in

/// A request not yet complete, as a check-in delivers it.
pub(crate) struct OpenRequest {
    pub instruction: Instruction,
    pub picked_up: bool,
}

/// A row of (id, kind, arg, picked_up_at).
pub(crate) fn open_request(row: &impl Cols) -> Result<OpenRequest, StoreError> {
    let kind =
        instruction_kind(row.text(1)?, row.text(2)?).ok_or_else(|| corrupt("request kind"))?;
    Ok(OpenRequest {
        instruction: Instruction {
            id: row.int(0)?,
            kind,
        },
        picked_up: row.opt_int(3)?.is_some(),
    })
}

/// A row of (class, version, hash).
pub(crate) fn class_state(row: &impl Cols) -> Result<(Class, ClassState), StoreError> {
    let state = ClassState {
        version: row.int(1)?,
        hash: row.digest(2)?,
    };
    Ok((row.class(0)?, state))
}

/// What a check-in answers from the client's open requests and class states, and the requests
/// it picks up now (those not picked up before).
pub(crate) fn checkin_response(
    open: Vec<OpenRequest>,
    classes: BTreeMap<Class, ClassState>,
) -> (CheckinResponse, Vec<i64>) {
    let to_pick = open
        .iter()
        .filter(|r| !r.picked_up)
        .map(|r| r.instruction.id)
        .collect();
    let response = CheckinResponse {
        instructions: open.into_iter().map(|r| r.instruction).collect(),
        classes,
        // The site adds its setting; the database does not hold it.
        agent_interval_secs: None,
    };
    (response, to_pick)
}

/// Logs what became of an agent's report.
pub(crate) fn log_ack(client_id: Uuid, ack: &ReportAck) {
    match ack {
        ReportAck::ResyncRequired { reason } => {
            tracing::debug!(%client_id, reason = %reason, "Refused a report; the client must send a full one.")
        }
        ReportAck::Duplicate { version, .. } => {
            tracing::debug!(%client_id, version, "Ignored a report that was stored before.")
        }
        ReportAck::Accepted { version, .. } => {
            tracing::debug!(%client_id, version, "Stored a report.")
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Views

/// A resync request from a row of `crate::sql::request_cols!`.
pub(crate) fn request_view(row: &impl Cols) -> Result<RequestView, StoreError> {
    let class = Class::parse(row.text(1)?).ok_or_else(|| corrupt("request class"))?;
    let (picked, done) = (row.opt_int(3)?, row.opt_int(4)?);
    let requested_at = row.at(2)?;
    Ok(RequestView {
        id: row.int(0)?,
        class,
        state: state_of(requested_at.0, picked, done),
        requested_at,
        picked_up_at: picked.map(Timestamp),
        completed_at: done.map(Timestamp),
        origin: row.opt_text(5)?.map(str::to_string),
        route: row.opt_site(6)?,
        forwarded_at: row.ts(7)?,
        forwarded_to: row.opt_site(8)?,
        // Read apart (`crate::sql::REQUEST_HOPS`) where a view shows them.
        hops: Vec::new(),
        reached_top: false,
    })
}

/// The sites above the parent that stored a request's change, from `requests.hops` (JSON).
pub(crate) fn decode_hops(raw: Option<&str>) -> Result<Vec<Hop>, StoreError> {
    match raw {
        None => Ok(Vec::new()),
        Some(raw) => serde_json::from_str(raw).map_err(|_| corrupt("request hops")),
    }
}

pub(crate) fn encode_hops(hops: &[Hop]) -> Result<String, StoreError> {
    serde_json::to_string(hops).map_err(|e| StoreError::Database(format!("request hops: {e}")))
}

/// A resync request with its client, from a row of [`crate::sql::requests_select`].
pub(crate) fn client_request(
    row: &impl Cols,
) -> Result<invsync_proto::wire::ClientRequest, StoreError> {
    Ok(invsync_proto::wire::ClientRequest {
        client: row.name(9)?,
        site: row.site(10)?,
        request: request_view(row)?,
    })
}

/// An event from a row of `crate::sql::request_cols!`.
pub(crate) fn event_view(row: &impl Cols) -> Result<EventView, StoreError> {
    let event = Event::parse(row.text(1)?).ok_or_else(|| corrupt("event"))?;
    let (picked, done) = (row.opt_int(3)?, row.opt_int(4)?);
    let requested_at = row.at(2)?;
    Ok(EventView {
        id: row.int(0)?,
        event,
        state: state_of(requested_at.0, picked, done),
        requested_at,
        picked_up_at: picked.map(Timestamp),
        completed_at: done.map(Timestamp),
    })
}

/// A client of the list, with its internal row id (for the last-seen overlay), from a row of
/// `crate::sql::client_summary!`.
pub(crate) fn client_summary(
    row: &impl Cols,
    stale: &StaleRule,
) -> Result<(i64, ClientSummary), StoreError> {
    let site = row.site(3)?;
    let stale = stale.is_stale(&site, row.int(12)?);
    let summary = ClientSummary {
        name: row.name(1)?,
        id: row.uuid(2)?,
        site,
        last_seen: row.ts(4)?,
        hw_version: row.opt_int(5)?,
        hw_updated_at: row.ts(6)?,
        sw_version: row.opt_int(7)?,
        sw_updated_at: row.ts(8)?,
        pending_requests: row.int(9)?,
        transport: transport(row.int(10)?)?,
        agent_version: row.opt_text(11)?.map(str::to_string),
        agent_outdated: false,
        stale,
    };
    Ok((row.int(0)?, summary))
}

/// How a list tells stale clients (`invsite config --stale-after`): a client of this site
/// (`own`) last seen, or never seen and enrolled, before `before`. A client of a site below is
/// never stale here: only its own site sees its check-ins.
#[derive(Debug, Clone)]
pub(crate) struct StaleRule {
    pub own: SiteCode,
    pub before: i64,
}

impl StaleRule {
    /// Whether a client owned by `site` whose last contact (last seen, else enrolled) was at
    /// `last_contact` is stale.
    pub fn is_stale(&self, site: &SiteCode, last_contact: i64) -> bool {
        site == &self.own && last_contact < self.before
    }
}

/// The clients of a list, with the last-seen times not yet written laid over the stored ones.
pub(crate) fn with_last_seen(
    last_seen: &crate::last_seen::LastSeen,
    clients: impl IntoIterator<Item = (i64, ClientSummary)>,
    stale: &StaleRule,
) -> Vec<ClientSummary> {
    clients
        .into_iter()
        .map(|(row, mut c)| {
            c.last_seen = last_seen.overlay(row, c.last_seen);
            // A check-in held in memory, not yet written, may make the client fresh again.
            if c.stale && c.last_seen.is_some_and(|t| t.0 >= stale.before) {
                c.stale = false;
            }
            c
        })
        .collect()
}

/// A client view without snapshots, requests and events, from a row of
/// [`crate::sql::CLIENT_HEAD`].
pub(crate) fn client_head(row: &impl Cols) -> Result<ClientView, StoreError> {
    Ok(ClientView {
        name: row.name(2)?,
        id: row.uuid(1)?,
        site: row.site(3)?,
        machine_id: row.text(4)?.to_string(),
        enrolled_at: row.at(5)?,
        last_seen: row.ts(6)?,
        hw: None,
        sw: None,
        requests: Vec::new(),
        events: Vec::new(),
        transport: transport(row.int(7)?)?,
        agent_version: row.opt_text(8)?.map(str::to_string),
        agent_outdated: false,
        former_names: Vec::new(),
        merges: Vec::new(),
        stale: false,
    })
}

/// One enrollment that took a client's record over, from a row of [`crate::sql::CLIENT_MERGES`].
pub(crate) fn merge_view(row: &impl Cols) -> Result<MergeView, StoreError> {
    let matched_by = MatchedBy::parse(row.text(3)?).ok_or_else(|| corrupt("merge match"))?;
    Ok(MergeView {
        at: row.at(0)?,
        old_name: row.name(1)?,
        new_name: row.name(2)?,
        matched_by,
    })
}

/// The names a client had before, oldest first and each once, from its merges: a name it was
/// given back later is not a former name.
pub(crate) fn former_names(current: &ClientName, merges: &[MergeView]) -> Vec<ClientName> {
    let mut names: Vec<ClientName> = Vec::new();
    for m in merges {
        if &m.old_name != current && !names.contains(&m.old_name) {
            names.push(m.old_name.clone());
        }
    }
    names
}

/// `clients.transport` of a client enrolled over HTTP (and of a client of a site below).
pub(crate) const TRANSPORT_HTTP: i64 = 0;
/// `clients.transport` of a client that uses a file-share CAP directory.
pub(crate) const TRANSPORT_CAP: i64 = 1;
/// `clients.transport` of an unmanaged record made by `invsite import`.
pub(crate) const TRANSPORT_IMPORTED: i64 = 2;

/// A client's transport from its `clients.transport` code.
pub(crate) fn transport(code: i64) -> Result<Transport, StoreError> {
    match code {
        TRANSPORT_HTTP => Ok(Transport::Http),
        TRANSPORT_CAP => Ok(Transport::Cap),
        TRANSPORT_IMPORTED => Ok(Transport::Imported),
        _ => Err(corrupt("client transport")),
    }
}

/// A snapshot of a client view from a row of [`crate::sql::CLIENT_SNAPSHOTS`]: its class, its
/// item ids, and the view, whose items the backend then loads by those ids.
pub(crate) fn snapshot_view(
    row: &impl Cols,
) -> Result<(Class, Vec<i64>, SnapshotView), StoreError> {
    let view = SnapshotView {
        version: row.int(1)?,
        hash: row.digest(2)?,
        full_at: row.at(3)?,
        updated_at: row.at(4)?,
        items: Default::default(),
    };
    Ok((row.class(0)?, decode_ids(row.blob(5)?)?, view))
}

/// Puts a snapshot into its place in a client view.
pub(crate) fn place_snapshot(view: &mut ClientView, class: Class, snapshot: SnapshotView) {
    match class {
        Class::Hw => view.hw = Some(snapshot),
        Class::Sw => view.sw = Some(snapshot),
    }
}

/// A history entry from a row of (at, class, key, old attrs, new attrs, full).
pub(crate) fn history_entry(row: &impl Cols) -> Result<HistoryEntry, StoreError> {
    let attrs = |i: usize| row.opt_blob(i)?.map(decode_attrs).transpose();
    Ok(HistoryEntry {
        at: row.at(0)?,
        class: row.class(1)?,
        key: row.text(2)?.to_string(),
        old: attrs(3)?,
        new: attrs(4)?,
        full: row.flag(5)?,
    })
}

/// The limit of a history query as a statement's parameter.
pub(crate) fn history_limit(query: &crate::HistoryQuery) -> i64 {
    i64::try_from(query.limit.unwrap_or(crate::DEFAULT_HISTORY_LIMIT)).unwrap_or(i64::MAX)
}

/// A holder of a software list from (name, uuid, site_code) starting at column `first`.
pub(crate) fn list_owner(
    row: &impl Cols,
    first: usize,
) -> Result<crate::software::ListOwner, StoreError> {
    Ok(crate::software::ListOwner {
        name: row.name(first)?,
        id: row.uuid(first + 1)?,
        site: row.site(first + 2)?,
    })
}

/// A client row number as the software index keeps it.
pub(crate) fn index_row(row: i64) -> Result<u32, StoreError> {
    u32::try_from(row).map_err(|_| corrupt("client row"))
}

// ---------------------------------------------------------------------------------------------
// Snapshots and the write set of a change

/// A `snapshots` row as reports need it.
pub(crate) struct SnapshotRow {
    pub version: i64,
    pub hash: Digest,
    recent: Vec<u8>,
    /// The item id list (`codec::encode_ids`).
    pub items: Vec<u8>,
}

impl SnapshotRow {
    /// From a row of (version, hash, recent_reports, items).
    pub fn of(row: &impl Cols) -> Result<SnapshotRow, StoreError> {
        Ok(SnapshotRow {
            version: row.int(0)?,
            hash: row.digest(1)?,
            recent: row.blob(2)?.to_vec(),
            items: row.blob(3)?.to_vec(),
        })
    }

    pub fn has_report(&self, report_id: Uuid) -> bool {
        self.recent
            .chunks_exact(16)
            .any(|c| c == report_id.as_bytes())
    }

    /// The answer to a report this snapshot already holds.
    pub fn duplicate(&self) -> ReportAck {
        ReportAck::Duplicate {
            version: self.version,
            hash: self.hash,
        }
    }

    pub fn current(&self) -> Result<Current, StoreError> {
        Ok(Current {
            version: self.version,
            hash: self.hash,
            ids: decode_ids(&self.items)?,
        })
    }

    /// Whether a forwarded change with this version and hash was applied recently. Only the
    /// current version and hash are an exact duplicate, but a child re-sending a batch whose
    /// answer it lost would otherwise set the snapshot back to an older full entry and replay
    /// every change after it, recording their history twice.
    pub fn has_forwarded(&self, version: i64, hash: &Digest) -> bool {
        let mark = forwarded_mark(version, hash);
        self.recent.chunks_exact(16).any(|c| c == mark)
    }

    /// The recent marks with `mark` first, at most `keep`.
    fn recent_with(&self, mark: &[u8; 16], keep: usize) -> Vec<u8> {
        let mut out = mark.to_vec();
        for c in self.recent.chunks_exact(16).take(keep - 1) {
            out.extend_from_slice(c);
        }
        out
    }
}

/// When and as which version a change is stored.
pub(crate) struct Stamp {
    /// The version the snapshot gets; `None` for one more than the stored one (1 for the first),
    /// as for a report of this site's own client. A forwarded change keeps its owner's number.
    pub version: Option<i64>,
    /// When the change was accepted: the snapshot's `updated_at` and the history rows' time.
    pub at: Timestamp,
    /// The snapshot's `full_at` when the change is a full snapshot.
    pub full_at: Timestamp,
    /// What `recent_reports` remembers of the change for de-duplication, and how many marks it
    /// keeps: report ids for this site's own clients, [`forwarded_mark`]s for forwarded ones (a
    /// client only ever gets one kind, as only own clients report here).
    pub remember: ([u8; 16], usize),
}

impl Stamp {
    /// The stamp of a report of this site's own client, accepted `now`.
    pub fn report(input: &ReportInput, now: Timestamp) -> Stamp {
        Stamp {
            version: None,
            at: now,
            full_at: now,
            remember: (*input.report_id.as_bytes(), RECENT_REPORTS),
        }
    }
}

/// What a stored change became.
pub(crate) struct Written {
    pub version: i64,
    pub full_at: Timestamp,
    /// The item ids an outbox entry of this change records (see the `outbox` table).
    pub body_ids: Vec<u8>,
}

/// Everything an accepted change writes, once its new items have ids: the snapshot row's
/// values, the history rows, and what the outbox and the software index learn of it.
pub(crate) struct WriteSet {
    /// The snapshot's new item list; `None` when a full report repeats the stored one.
    pub ids: Option<Vec<i64>>,
    /// `ids` encoded for the `items` column.
    pub blob: Option<Vec<u8>>,
    /// The item ids an outbox entry of the change records.
    pub body_ids: Vec<u8>,
    /// The new `recent_reports`.
    pub recent: Vec<u8>,
    /// The version the snapshot gets.
    pub version: i64,
    pub full: bool,
    /// (old item, new item) per history row, in order.
    pub history: Vec<(Option<i64>, Option<i64>)>,
}

impl WriteSet {
    /// `new_ids` are the ids the change's new items were interned as, in order.
    pub fn new(
        input: &ReportInput,
        row: Option<&SnapshotRow>,
        change: &Change,
        new_ids: &[i64],
        stamp: &Stamp,
    ) -> Result<WriteSet, StoreError> {
        let id_of = |s: &Slot| match *s {
            Slot::Known(id) => id,
            Slot::New(i) => new_ids[i],
        };
        let ids: Option<Vec<i64>> = change
            .items
            .as_ref()
            .map(|slots| slots.iter().map(id_of).collect());
        let blob = ids.as_deref().map(encode_ids);
        let full = input.is_full();
        let body_ids = if full {
            // A full report that repeats the stored snapshot leaves `items` as it is.
            match (&blob, row) {
                (Some(b), _) => b.clone(),
                (None, Some(r)) => r.items.clone(),
                (None, None) => Vec::new(),
            }
        } else {
            encode_ids(&change.upserts.iter().map(id_of).collect::<Vec<_>>())
        };
        let (mark, keep) = &stamp.remember;
        let (recent, version) = match row {
            Some(r) => (
                r.recent_with(mark, *keep),
                stamp.version.unwrap_or(r.version + 1),
            ),
            None if blob.is_none() => {
                return Err(StoreError::Database(
                    "a first snapshot without items".to_string(),
                ));
            }
            None => (mark.to_vec(), stamp.version.unwrap_or(1)),
        };
        let history = change
            .history
            .iter()
            .map(|h| (h.old, h.new.as_ref().map(id_of)))
            .collect();
        Ok(WriteSet {
            ids,
            blob,
            body_ids,
            recent,
            version,
            full,
            history,
        })
    }

    /// The change of a software snapshot for the software index (`None` for another class),
    /// once the snapshot of `client` went from `row` to `version`.
    pub fn software(
        &self,
        input: &ReportInput,
        client: i64,
        row: Option<&SnapshotRow>,
        version: i64,
    ) -> Result<Option<crate::software::SwChange>, StoreError> {
        if input.class != Class::Sw {
            return Ok(None);
        }
        // A first snapshot has no history rows: everything in it is added.
        let (removed, added) = match row {
            None => (Vec::new(), self.ids.clone().unwrap_or_default()),
            Some(_) => (
                self.history.iter().filter_map(|h| h.0).collect(),
                self.history.iter().filter_map(|h| h.1).collect(),
            ),
        };
        crate::software::change(
            client,
            row.map(|r| r.version),
            Some(version),
            removed,
            added,
        )
        .map(Some)
    }
}
