//! The admin API (`/api/v1/…`), what `invsync`, `setevnt`, `invsite`'s tools, the console and
//! other programs use, with `Authorization: Bearer <admin token>`: the site, its clients and
//! their inventory, requests and events, software across clients, the sites below.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::cap::Event;
use crate::inventory::{Attrs, Class, Digest, Items};
use crate::name::{ClientName, SiteCode};
use crate::time::Timestamp;

pub const API_SITE: &str = "/api/v1/site";
pub const API_CLIENTS: &str = "/api/v1/clients";

/// `/api/v1/clients/{name}`.
pub fn api_client(name: &ClientName) -> String {
    format!("{API_CLIENTS}/{name}")
}
/// `/api/v1/clients/{name}/requests`: POST a [`ResyncRequestBody`].
pub fn api_client_requests(name: &ClientName) -> String {
    format!("{API_CLIENTS}/{name}/requests")
}
/// `/api/v1/clients/{name}/events`: POST an [`EventRequestBody`].
pub fn api_client_events(name: &ClientName) -> String {
    format!("{API_CLIENTS}/{name}/events")
}

/// `GET /api/v1/site`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteInfo {
    pub code: SiteCode,
    pub name: String,
    /// The parent site's code, once this site has reached its parent since it started (the
    /// parent tells its code on first contact); absent at a top-level site and until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The parent's URL from this site's configuration (`invsite init --parent`): a child site
    /// says it is one even before it has reached its parent. Absent at a top-level site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_url: Option<String>,
}

/// One line of `invsite clients` / `GET /api/v1/clients`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientSummary {
    pub name: ClientName,
    pub id: Uuid,
    pub site: SiteCode,
    pub last_seen: Option<Timestamp>,
    pub hw_version: Option<i64>,
    pub hw_updated_at: Option<Timestamp>,
    pub sw_version: Option<i64>,
    pub sw_updated_at: Option<Timestamp>,
    pub pending_requests: i64,
    /// How the client reaches its site; `http` when an older site does not say.
    #[serde(default)]
    pub transport: Transport,
    /// The version of the client's agent (from the `User-Agent` of its last enrollment or
    /// check-in over HTTP); `null` until one was seen, and for a client of a site below.
    #[serde(default)]
    pub agent_version: Option<String>,
    /// Whether that version is older than `invsite config --min-agent-version`.
    #[serde(default)]
    pub agent_outdated: bool,
    /// Not seen for longer than the site's `invsite config --stale-after` (default 30 days):
    /// a client of this site whose last check-in (or, never seen, its enrollment) is older.
    /// Always false for a client of a site below, whose check-ins only its own site sees.
    #[serde(default)]
    pub stale: bool,
}

/// How a client reaches its site. A client of a site below is shown as `http`: the hierarchy's
/// protocol does not carry the transport, and its own site knows better.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Enrolled over HTTP, and checks in over HTTP.
    #[default]
    Http,
    /// Enrolled offline (`invsite offline-enroll`), or has delivered at least one file through a
    /// file-share CAP directory: its instructions are written to its `.cfg` file.
    Cap,
    /// An unmanaged record made by `invsite import` from an inventory file: it has no key, and
    /// an agent enrolling later with the same machine id takes it over.
    Imported,
}

impl Transport {
    /// The lowercase word the JSON and the tools use.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::Cap => "cap",
            Transport::Imported => "imported",
        }
    }
}

/// The most clients one page holds ([`ClientQuery::limit`]).
pub const MAX_PAGE_LIMIT: u32 = 1_000;
/// The page size when none is given.
pub const DEFAULT_PAGE_LIMIT: u32 = 100;

/// What to sort a client list by. A client never seen, or without a snapshot of the class,
/// counts as the oldest: first in ascending order, last in descending order. Ties are broken
/// by name and then site code, in the same direction, so pages never overlap.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientSort {
    #[default]
    Name,
    LastSeen,
    HwUpdated,
    SwUpdated,
}

/// One page of the clients a site holds (`GET /api/v1/clients`, the console's client list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientQuery {
    /// Only clients whose name contains this, ignoring case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<String>,
    /// Only clients owned by this site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<SiteCode>,
    #[serde(default)]
    pub sort: ClientSort,
    #[serde(default)]
    pub descending: bool,
    /// At most this many clients, 1 to [`MAX_PAGE_LIMIT`].
    pub limit: u32,
    /// Skip this many clients of the sorted list first.
    #[serde(default)]
    pub offset: u64,
    /// `true`: only stale clients (see [`ClientSummary::stale`]); `false`: only the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale: Option<bool>,
}

impl Default for ClientQuery {
    fn default() -> ClientQuery {
        ClientQuery {
            search: None,
            site: None,
            stale: None,
            sort: ClientSort::Name,
            descending: false,
            limit: DEFAULT_PAGE_LIMIT,
            offset: 0,
        }
    }
}

impl ClientQuery {
    /// Why the query cannot be answered, in one sentence; `None` when it can.
    pub fn problem(&self) -> Option<String> {
        if self.limit == 0 || self.limit > MAX_PAGE_LIMIT {
            return Some(format!(
                "limit must be 1 to {MAX_PAGE_LIMIT}, not {}",
                self.limit
            ));
        }
        // Databases count offsets in signed 64 bits.
        if self.offset > i64::MAX as u64 {
            return Some(format!("offset must be at most {}", i64::MAX));
        }
        None
    }

    /// The search as the stored names spell it (upper case), `None` for no or an empty search.
    /// Names are ASCII and stored upper-cased, so an upper-cased substring search is the
    /// case-insensitive one, on every database.
    pub fn search_upper(&self) -> Option<String> {
        self.search
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(str::to_uppercase)
    }
}

/// `GET /api/v1/clients`: one page of clients, and how many match the query in all.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientPage {
    /// Clients matching the search and site filter, over all pages.
    pub total: u64,
    pub offset: u64,
    pub clients: Vec<ClientSummary>,
}

/// `GET /api/v1/software`: which clients have a package, optionally only in a version range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoftwareQuery {
    /// The package name as its package manager spells it (the `name` attribute), exactly.
    pub name: String,
    /// Only versions in this range, each compared by its package source's rules
    /// (`crate::version::compare_in`).
    pub version: Option<crate::version::VersionRange>,
    /// Only clients owned by this site.
    pub site: Option<SiteCode>,
    /// At most this many rows, 1 to [`MAX_PAGE_LIMIT`].
    pub limit: u32,
    /// Skip this many rows (sorted by client name, then version) first.
    pub offset: u64,
}

impl SoftwareQuery {
    /// Why the query cannot be answered, in one sentence; `None` when it can.
    pub fn problem(&self) -> Option<String> {
        if self.name.trim().is_empty() {
            return Some("name must name a package (e.g. name=openssl)".to_string());
        }
        if self.name.len() > 256 || self.name.chars().any(char::is_control) {
            return Some("name must be at most 256 bytes without control characters".to_string());
        }
        page_problem(self.limit, self.offset)
    }
}

/// Why a page's limit or offset cannot be used, if it cannot.
fn page_problem(limit: u32, offset: u64) -> Option<String> {
    if limit == 0 || limit > MAX_PAGE_LIMIT {
        return Some(format!("limit must be 1 to {MAX_PAGE_LIMIT}, not {limit}"));
    }
    // Databases count offsets in signed 64 bits.
    if offset > i64::MAX as u64 {
        return Some(format!("offset must be at most {}", i64::MAX));
    }
    None
}

/// One client having one installed package.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoftwareHolder {
    pub client: ClientName,
    pub client_id: Uuid,
    /// The site that owns the client.
    pub site: SiteCode,
    pub name: String,
    pub version: String,
    /// Empty when the item has no `arch` attribute.
    pub arch: String,
    /// The package manager (`dpkg`, `rpm`, `apk`).
    pub source: String,
}

/// `GET /api/v1/software`: one page of the clients having a package, and how many rows match
/// in all.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoftwarePage {
    pub total: u64,
    pub offset: u64,
    pub holders: Vec<SoftwareHolder>,
}

/// `GET /api/v1/software/packages`: which packages to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageQuery {
    /// Only packages whose name contains this, ignoring case; all when `None`.
    pub search: Option<String>,
    /// Only clients owned by this site count.
    pub site: Option<SiteCode>,
    /// At most this many packages, 1 to [`MAX_PAGE_LIMIT`].
    pub limit: u32,
    /// Skip this many packages (sorted by name) first.
    pub offset: u64,
}

impl PackageQuery {
    /// Why the query cannot be answered, in one sentence; `None` when it can.
    pub fn problem(&self) -> Option<String> {
        if self
            .search
            .as_ref()
            .is_some_and(|s| s.len() > 256 || s.chars().any(char::is_control))
        {
            return Some("search must be at most 256 bytes without control characters".to_string());
        }
        page_problem(self.limit, self.offset)
    }
}

/// How many clients have one version of a package.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionCount {
    pub version: String,
    pub clients: u64,
}

/// A package across the clients of this site and the sites below it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageSummary {
    pub name: String,
    /// Clients having any version of it (for any architecture or source).
    pub clients: u64,
    /// Its versions, oldest first (each by its source's order, `crate::version::compare_across`).
    pub versions: Vec<VersionCount>,
}

/// `GET /api/v1/software/packages`: one page of packages, and how many match in all.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackagePage {
    pub total: u64,
    pub offset: u64,
    pub packages: Vec<PackageSummary>,
}

/// `GET /api/v1/requests`: which resync requests to list, across clients, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<RequestState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<Class>,
    /// At most this many, 1 to [`MAX_PAGE_LIMIT`].
    pub limit: u32,
    #[serde(default)]
    pub offset: u64,
}

impl Default for RequestQuery {
    fn default() -> RequestQuery {
        RequestQuery {
            state: None,
            class: None,
            limit: DEFAULT_PAGE_LIMIT,
            offset: 0,
        }
    }
}

impl RequestQuery {
    /// Why the query cannot be answered, in one sentence; `None` when it can.
    pub fn problem(&self) -> Option<String> {
        ClientQuery {
            limit: self.limit,
            offset: self.offset,
            ..ClientQuery::default()
        }
        .problem()
    }
}

/// A resync request with the client it is for.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRequest {
    pub client: ClientName,
    /// The client's owning site.
    pub site: SiteCode,
    pub request: RequestView,
}

/// `GET /api/v1/requests`: one page of resync requests and how many match in all.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestPage {
    pub total: u64,
    pub offset: u64,
    pub requests: Vec<ClientRequest>,
}

/// One class of `invsite show --json`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotView {
    pub version: i64,
    pub hash: Digest,
    /// When the last full report was stored.
    pub full_at: Timestamp,
    /// When the last report (full or delta) was stored.
    pub updated_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, BTreeMap<String, String>>))]
    pub items: Items,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    Pending,
    PickedUp,
    Complete,
    /// Cancelled while pending (`invsync cancel`, `DELETE /api/v1/requests/{id}`): the agent
    /// never receives it.
    Cancelled,
    /// Not picked up within the site's request expiry (`invsite config --request-expiry`):
    /// the agent no longer receives it.
    Expired,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::PickedUp => "picked_up",
            RequestState::Complete => "complete",
            RequestState::Cancelled => "cancelled",
            RequestState::Expired => "expired",
        }
    }
}

/// A resync request as `invsite show` lists it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestView {
    pub id: i64,
    pub class: Class,
    pub state: RequestState,
    pub requested_at: Timestamp,
    pub picked_up_at: Option<Timestamp>,
    pub completed_at: Option<Timestamp>,
    /// Where the request was made when not here, as `<site code>:<request id there>`: the
    /// site where `invsync --via-child` ran for a request routed down to this site (or
    /// through it), or the owning site for a request completed there and recorded here. A
    /// site above the owner uses it to complete its own routed request when the full report
    /// that answers it is forwarded up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The owning site a request made for a client of a site below was routed down to
    /// (`invsync --via-child`); such a request stays pending here until the full report that
    /// completes it at the owner is forwarded up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<SiteCode>,
    /// When the parent of this site acknowledged the change that completed the request (the
    /// full report answering it, or the forwarded change carrying it up): from then on the
    /// request is visible one level up. Absent while the change waits in the outbox, and at a
    /// site without a parent. Each site records its own hop; the sites further up show theirs
    /// in `invsite show` there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded_at: Option<Timestamp>,
    /// The parent that acknowledged it, when this site knew its code (after its first contact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded_to: Option<SiteCode>,
    /// The sites above the parent that stored the change, each with when it did, nearest
    /// first, as the parent's forward answers reported them (`invsync --wait` follows them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hops: Vec<Hop>,
    /// Whether the top of the tree (a site without a parent) has stored the change: the parent
    /// or the last of `hops`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reached_top: bool,
}

/// A site above that stored the change completing a request, and when (its parent's
/// acknowledgement of the change, or its own storing when it is the top).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hop {
    /// The site's code; absent when the site below it did not know it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<SiteCode>,
    pub at: Timestamp,
}

/// A Set Client Event wake-up as `invsite show` lists it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventView {
    pub id: i64,
    pub event: Event,
    pub state: RequestState,
    pub requested_at: Timestamp,
    pub picked_up_at: Option<Timestamp>,
    pub completed_at: Option<Timestamp>,
}

/// `invsite show CLIENT --json` / `GET /api/v1/clients/{name}` (SPEC section 7).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientView {
    pub name: ClientName,
    pub id: Uuid,
    /// The owning site.
    pub site: SiteCode,
    pub machine_id: String,
    pub enrolled_at: Timestamp,
    pub last_seen: Option<Timestamp>,
    pub hw: Option<SnapshotView>,
    pub sw: Option<SnapshotView>,
    pub requests: Vec<RequestView>,
    pub events: Vec<EventView>,
    /// How the client reaches its site; `http` when an older site does not say.
    #[serde(default)]
    pub transport: Transport,
    /// The version of the client's agent, as in [`ClientSummary::agent_version`].
    #[serde(default)]
    pub agent_version: Option<String>,
    /// Whether that version is older than `invsite config --min-agent-version`.
    #[serde(default)]
    pub agent_outdated: bool,
    /// The names this client had before an enrollment took its record over (a renamed
    /// machine), oldest first.
    #[serde(default)]
    pub former_names: Vec<ClientName>,
    /// Every enrollment that took this client's record over, oldest first.
    #[serde(default)]
    pub merges: Vec<MergeView>,
    /// Not seen for longer than the site's `--stale-after` ([`ClientSummary::stale`]).
    #[serde(default)]
    pub stale: bool,
}

/// An enrollment that took an existing client's record over instead of creating a second one
/// (`invsite config --merge-duplicates`): the same client id, history and requests, a new key,
/// and the name the enrolling machine asked for.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeView {
    pub at: Timestamp,
    pub old_name: ClientName,
    pub new_name: ClientName,
    pub matched_by: MatchedBy,
}

/// How an enrollment was recognised as an existing client's machine.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchedBy {
    /// The same `/etc/machine-id` (a renamed machine, or a reinstalled agent).
    MachineId,
    /// A new machine id with the same DMI serial number and product UUID (a reimaged machine).
    Hardware,
}

impl MatchedBy {
    /// The word the JSON and the tools use.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchedBy::MachineId => "machine_id",
            MatchedBy::Hardware => "hardware",
        }
    }

    /// The value stored in the database.
    pub fn parse(raw: &str) -> Option<MatchedBy> {
        match raw {
            "machine_id" => Some(MatchedBy::MachineId),
            "hardware" => Some(MatchedBy::Hardware),
            _ => None,
        }
    }
}

/// One accepted change of one item of a client (SPEC section 5: time, client, class, item,
/// old, new), as `invsite history` and `GET /api/v1/clients/{name}/history` list it. `old` is
/// `None` for an added item, `new` for a removed one.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: Timestamp,
    pub class: Class,
    pub key: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<BTreeMap<String, String>>))]
    pub old: Option<Attrs>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<BTreeMap<String, String>>))]
    pub new: Option<Attrs>,
    /// Whether a full report (rather than a delta) made the change.
    pub full: bool,
}

/// Which history entries to list (query string of `GET /api/v1/clients/{name}/history`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HistoryQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<Class>,
    /// Only changes at or after this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    /// At most this many entries, newest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// `GET /api/v1/clients/{name}/history`.
pub fn api_client_history(name: &ClientName) -> String {
    format!("{API_CLIENTS}/{name}/history")
}

/// `DELETE /api/v1/requests/{id}`: the request after it was cancelled.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancelled {
    pub client: ClientName,
    /// The client's owning site (this site).
    pub site: SiteCode,
    /// The request, in state `cancelled`.
    pub request: RequestView,
    /// True when it was cancelled before this call (cancelling is idempotent).
    pub already_cancelled: bool,
}

/// `DELETE /api/v1/clients/{name}` (`invsite delete`): the client that was deleted. Its key is
/// revoked, its snapshots and requests are gone, and the sites above forget it once the
/// tombstone is forwarded; its history stays for the retention period (`invsite history NAME
/// --deleted`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    pub client: ClientName,
    pub id: Uuid,
    /// The client's owning site (this site).
    pub site: SiteCode,
    pub deleted_at: Timestamp,
}

/// `POST /api/v1/clients/{name}/requests`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResyncRequestBody {
    pub class: Class,
    /// For a client owned by a site below this one: route the request down to the owning
    /// site (`invsync --via-child`) instead of refusing it, if that site accepts requests from
    /// its parent. For this site's own client it changes nothing.
    #[serde(default)]
    pub via_child: bool,
    /// With `via_child`: the owning site's code, when sites below hold several clients of
    /// that name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<SiteCode>,
}

/// `POST /api/v1/clients/{name}/events`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRequestBody {
    pub event: Event,
}

/// The answer to a resync or event request.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queued {
    pub id: i64,
    pub client: ClientName,
    /// False when an identical request was already pending: that request stands for both.
    pub created: bool,
    pub state: RequestState,
    pub requested_at: Timestamp,
    /// The owning site a resync request was routed down to (`invsync --via-child`); absent
    /// for a request queued for this site's own client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routed_to: Option<SiteCode>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resync_request_body_defaults_to_a_plain_request() {
        let b: ResyncRequestBody = serde_json::from_str(r#"{"class":"hw"}"#).unwrap();
        assert_eq!(
            b,
            ResyncRequestBody {
                class: Class::Hw,
                via_child: false,
                site: None
            }
        );
    }

    #[test]
    fn forwarding_fields_of_a_request_view_are_optional_on_the_wire() {
        // Older sites send completed requests without them; a request not yet forwarded adds
        // nothing to what `invsite show --json` printed before.
        let old = r#"{"id":5,"class":"hw","state":"complete","requested_at":"2025-01-01T00:00:00.000Z",
                      "picked_up_at":null,"completed_at":"2025-01-01T00:00:01.000Z"}"#;
        let mut v: RequestView = serde_json::from_str(old).unwrap();
        assert_eq!((v.forwarded_at, v.forwarded_to.clone()), (None, None));
        assert!(!serde_json::to_string(&v).unwrap().contains("forwarded"));
        v.forwarded_at = Some(Timestamp(1_735_689_602_000));
        v.forwarded_to = Some(SiteCode::parse("P01").unwrap());
        let j = serde_json::to_value(&v).unwrap();
        assert_eq!(
            (&j["forwarded_at"], &j["forwarded_to"]),
            (&"2025-01-01T00:00:02.000Z".into(), &"P01".into())
        );
        assert_eq!(serde_json::from_value::<RequestView>(j).unwrap(), v);
    }
}
