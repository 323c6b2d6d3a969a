//! JSON bodies and paths of the two HTTP APIs a site serves.
//!
//! * The **CAP API** (`/cap/v1/…`) is what agents talk to: enrol, check in for instructions,
//!   send reports, acknowledge events. Agents authenticate with `Authorization: Bearer
//!   <client token>` where the token is `<client id>.<key hex>` (see [`ClientToken`]).
//! * The **admin API** (`/api/v1/…`) is what `invsync`, `setevnt`, the console and other tools
//!   use, with `Authorization: Bearer <admin token>`.
//!
//! Every error response of either API is an [`ErrorBody`] with a 4xx/5xx status.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::inventory::{Attrs, Class, Delta, Digest, Items};
use crate::name::{ClientName, SiteCode};
use crate::time::Timestamp;

pub const CAP_ENROLL: &str = "/cap/v1/enroll";
pub const CAP_CHECKIN: &str = "/cap/v1/checkin";
pub const CAP_REPORT: &str = "/cap/v1/report";
pub const CAP_ACK: &str = "/cap/v1/ack";
pub const CAP_WAIT: &str = "/cap/v1/wait";
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

/// The body of every error response: one sentence a person can act on.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

// ---------------------------------------------------------------------------------------------
// Credentials

/// A client's credential as the agent presents it: `<client id>.<64 hex digits of key>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientToken {
    pub client_id: Uuid,
    pub key: [u8; 32],
}

impl ClientToken {
    pub fn encode(&self) -> String {
        format!("{}.{}", self.client_id, hex::encode(self.key))
    }

    pub fn parse(raw: &str) -> Option<ClientToken> {
        let (id, key) = raw.split_once('.')?;
        let client_id = Uuid::parse_str(id).ok()?;
        let mut k = [0u8; 32];
        hex::decode_to_slice(key, &mut k).ok()?;
        Some(ClientToken { client_id, key: k })
    }

    /// What the site stores instead of the key.
    pub fn key_hash(&self) -> Digest {
        Digest(*blake3::hash(&self.key).as_bytes())
    }
}

// ---------------------------------------------------------------------------------------------
// CAP API

/// `POST /cap/v1/enroll`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    pub secret: String,
    pub name: ClientName,
    /// The content of `/etc/machine-id` under the agent's root; identifies the machine across
    /// re-installs of the agent.
    pub machine_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub client_id: Uuid,
    /// The client token ([`ClientToken::encode`]); shown once, stored hashed by the site.
    pub token: String,
    pub name: ClientName,
    pub site: SiteCode,
    /// True when this machine was already enrolled under this name and keeps its id.
    pub reenrolled: bool,
}

/// The site's view of one class of a client: the version and hash it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassState {
    pub version: i64,
    pub hash: Digest,
}

/// `POST /cap/v1/checkin`: the agent says it is alive and asks what to do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckinRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckinResponse {
    /// Instructions not yet completed, oldest first. An instruction is delivered again until it
    /// completes, so a lost response loses nothing; the agent de-duplicates by id.
    #[serde(default)]
    pub instructions: Vec<Instruction>,
    /// What the site holds per class; absent for a class it has no snapshot of. An agent whose
    /// own record differs (restored database, wiped agent) sends a full report.
    #[serde(default)]
    pub classes: BTreeMap<Class, ClassState>,
    /// The time between cycles the site asks its agents for (`invsite config
    /// --agent-interval`), in seconds; absent when the site leaves it to them. An agent whose
    /// interval was set on its machine keeps its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_interval_secs: Option<u64>,
}

/// Something the site asks a client to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instruction {
    pub id: i64,
    #[serde(flatten)]
    pub kind: InstructionKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum InstructionKind {
    /// Run this class's inventory and send a full report answering the instruction's id
    /// (the `.cfg` of the original tool).
    Resync { class: Class },
    /// A Set Client Event wake-up.
    Event { event: Event },
}

/// The events of `setevnt CLIENT EVENT`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// Run a cycle now.
    Cycle,
    /// Run the hardware inventory now.
    Hinv,
    /// Run the software inventory now.
    Sinv,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Cycle => "cycle",
            Event::Hinv => "hinv",
            Event::Sinv => "sinv",
        }
    }

    pub fn parse(raw: &str) -> Option<Event> {
        match raw {
            "cycle" => Some(Event::Cycle),
            "hinv" => Some(Event::Hinv),
            "sinv" => Some(Event::Sinv),
            _ => None,
        }
    }
}

/// `POST /cap/v1/report`: one class's inventory, full or as a delta.
///
/// One flat JSON object: `report_id`, `class`, `hash`, `kind` (`full` or `delta`), then
/// `items` for a full report or `base_version` and `delta` for a delta, and `answers`.
/// Deserialization is written by hand (see [`report_de`]); serialization is derived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Unique per report: the same report sent twice is stored once.
    pub report_id: Uuid,
    pub class: Class,
    /// The hash the snapshot has after this report is applied.
    pub hash: Digest,
    #[serde(flatten)]
    pub body: ReportBody,
    /// Ids of resync instructions this (full) report answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ReportBody {
    /// The whole snapshot.
    Full { items: Items },
    /// Changes against the version the site last acknowledged.
    Delta { base_version: i64, delta: Delta },
}

impl ReportBody {
    pub fn is_full(&self) -> bool {
        matches!(self, ReportBody::Full { .. })
    }
}

/// A report as received, with its items in whatever form the receiver deserializes them into
/// (`I`, for [`Report`] the maps of [`Items`]): the site reads items straight into the form it
/// hashes and stores, without building maps of strings first. The fields are [`Report`]'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportOf<I> {
    pub report_id: Uuid,
    pub class: Class,
    pub hash: Digest,
    pub body: ReportBodyOf<I>,
    pub answers: Vec<i64>,
}

/// The body of a [`ReportOf`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportBodyOf<I> {
    Full {
        items: I,
    },
    Delta {
        base_version: i64,
        upsert: I,
        remove: Vec<String>,
    },
}

impl<I> ReportBodyOf<I> {
    pub fn is_full(&self) -> bool {
        matches!(self, ReportBodyOf::Full { .. })
    }
}

mod report_de {
    //! A report's hand-written deserializer. The derived one (`#[serde(flatten)]` over an
    //! internally tagged enum) buffers the whole body into serde's generic `Content` tree and
    //! then deserializes that again: profiling the site under full reports of 1,500 packages
    //! put an eighth of its CPU time there. This reads the fields in one pass, in any order,
    //! and accepts exactly what the derived one accepted (unknown fields are ignored).

    use std::fmt;

    use serde::Deserialize;
    use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
    use uuid::Uuid;

    use super::{Report, ReportBody, ReportBodyOf, ReportOf};
    use crate::inventory::{Class, Delta, Digest, Items};

    #[derive(Deserialize)]
    #[serde(field_identifier, rename_all = "snake_case")]
    enum Field {
        ReportId,
        Class,
        Hash,
        Kind,
        Items,
        BaseVersion,
        Delta,
        Answers,
        #[serde(other)]
        Other,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Kind {
        Full,
        Delta,
    }

    fn set<T, E: de::Error>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), E> {
        if slot.is_some() {
            return Err(E::duplicate_field(name));
        }
        *slot = Some(value);
        Ok(())
    }

    struct ReportVisitor<I>(std::marker::PhantomData<I>);

    impl<'de, I: Deserialize<'de> + Default> Visitor<'de> for ReportVisitor<I> {
        type Value = ReportOf<I>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a report object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ReportOf<I>, A::Error> {
            let mut report_id: Option<Uuid> = None;
            let mut class: Option<Class> = None;
            let mut hash: Option<Digest> = None;
            let mut kind: Option<Kind> = None;
            let mut items: Option<I> = None;
            let mut base_version: Option<i64> = None;
            let mut delta: Option<DeltaOf<I>> = None;
            let mut answers: Option<Vec<i64>> = None;
            while let Some(field) = map.next_key::<Field>()? {
                match field {
                    Field::ReportId => set(&mut report_id, map.next_value()?, "report_id")?,
                    Field::Class => set(&mut class, map.next_value()?, "class")?,
                    Field::Hash => set(&mut hash, map.next_value()?, "hash")?,
                    Field::Kind => set(&mut kind, map.next_value()?, "kind")?,
                    Field::Items => set(&mut items, map.next_value()?, "items")?,
                    Field::BaseVersion => {
                        set(&mut base_version, map.next_value()?, "base_version")?
                    }
                    Field::Delta => set(&mut delta, map.next_value()?, "delta")?,
                    Field::Answers => set(&mut answers, map.next_value()?, "answers")?,
                    Field::Other => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            let body = match kind.ok_or_else(|| de::Error::missing_field("kind"))? {
                Kind::Full => ReportBodyOf::Full {
                    items: items.ok_or_else(|| de::Error::missing_field("items"))?,
                },
                Kind::Delta => {
                    let delta = delta.ok_or_else(|| de::Error::missing_field("delta"))?;
                    ReportBodyOf::Delta {
                        base_version: base_version
                            .ok_or_else(|| de::Error::missing_field("base_version"))?,
                        upsert: delta.upsert,
                        remove: delta.remove,
                    }
                }
            };
            Ok(ReportOf {
                report_id: report_id.ok_or_else(|| de::Error::missing_field("report_id"))?,
                class: class.ok_or_else(|| de::Error::missing_field("class"))?,
                hash: hash.ok_or_else(|| de::Error::missing_field("hash"))?,
                body,
                answers: answers.unwrap_or_default(),
            })
        }
    }

    /// The `delta` field of a delta report, with its upserted items as the receiver wants them.
    #[derive(Deserialize)]
    #[serde(bound(deserialize = "I: Deserialize<'de> + Default"))]
    struct DeltaOf<I> {
        #[serde(default)]
        upsert: I,
        #[serde(default)]
        remove: Vec<String>,
    }

    impl<'de, I: Deserialize<'de> + Default> Deserialize<'de> for ReportOf<I> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ReportOf<I>, D::Error> {
            d.deserialize_map(ReportVisitor(std::marker::PhantomData))
        }
    }

    impl<'de> Deserialize<'de> for Report {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Report, D::Error> {
            let r = ReportOf::<Items>::deserialize(d)?;
            let body = match r.body {
                ReportBodyOf::Full { items } => ReportBody::Full { items },
                ReportBodyOf::Delta {
                    base_version,
                    upsert,
                    remove,
                } => ReportBody::Delta {
                    base_version,
                    delta: Delta { upsert, remove },
                },
            };
            Ok(Report {
                report_id: r.report_id,
                class: r.class,
                hash: r.hash,
                body,
                answers: r.answers,
            })
        }
    }
}

/// The site's answer to a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ReportAck {
    /// Stored; the snapshot now has this version and hash.
    Accepted { version: i64, hash: Digest },
    /// This report id was stored before; nothing changed.
    Duplicate { version: i64, hash: Digest },
    /// Stored nothing: send a full report.
    ResyncRequired { reason: String },
}

/// The answer to `POST /cap/v1/wait`, the push channel's long-poll: `wake` is true when an
/// instruction is waiting (cycle now), false when the hold time ran out or the site is
/// shutting down (ask again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitResponse {
    pub wake: bool,
}

/// `POST /cap/v1/ack`: events the agent has acted on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckRequest {
    pub done: Vec<i64>,
}

// ---------------------------------------------------------------------------------------------
// Admin API

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
}

impl Default for ClientQuery {
    fn default() -> ClientQuery {
        ClientQuery {
            search: None,
            site: None,
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
    /// Only versions in this range (dpkg's order, `crate::version`).
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
    /// Its versions, oldest first (dpkg's order).
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
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::PickedUp => "picked_up",
            RequestState::Complete => "complete",
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
    fn instruction_json_shape() {
        let i = Instruction {
            id: 7,
            kind: InstructionKind::Resync { class: Class::Sw },
        };
        assert_eq!(
            serde_json::to_string(&i).unwrap(),
            r#"{"id":7,"type":"resync","class":"sw"}"#
        );
        let e = Instruction {
            id: 8,
            kind: InstructionKind::Event { event: Event::Hinv },
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"id":8,"type":"event","event":"hinv"}"#
        );
    }

    #[test]
    fn token_round_trip() {
        let t = ClientToken {
            client_id: Uuid::new_v4(),
            key: [7u8; 32],
        };
        assert_eq!(ClientToken::parse(&t.encode()), Some(t));
        assert_eq!(ClientToken::parse("nope"), None);
        assert_eq!(ClientToken::parse("x.y"), None);
    }

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
    fn origins_round_trip() {
        let d = DownRequest {
            origin_id: 42,
            origin_site: SiteCode::parse("P01").unwrap(),
            client: Uuid::nil(),
            class: Class::Sw,
        };
        assert_eq!(d.origin(), "P01:42");
        assert_eq!(split_origin(&d.origin()), Some((d.origin_site.clone(), 42)));
        assert_eq!(split_origin("P01"), None);
        assert_eq!(split_origin("P01:x"), None);
        assert_eq!(split_origin("toolong:1"), None);
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

    #[test]
    fn report_json_shape() {
        let r = Report {
            report_id: Uuid::nil(),
            class: Class::Hw,
            hash: crate::Snapshot::default().hash(),
            body: ReportBody::Full {
                items: Items::new(),
            },
            answers: vec![3],
        };
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["kind"], "full");
        assert_eq!(j["answers"][0], 3);
        let back: Report = serde_json::from_value(j).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn report_fields_are_read_in_any_order_and_refusals_name_the_field() {
        let hash = crate::Snapshot::default().hash().to_string();
        let id = "00000000-0000-0000-0000-000000000001";
        // `kind` last, items first, an unknown field ignored (as the derived form did).
        let raw = format!(
            r#"{{"items":{{"dpkg/a":{{"version":"1"}}}},"extra":[1,{{"x":2}}],"class":"sw","hash":"{hash}","report_id":"{id}","kind":"full"}}"#
        );
        let r: Report = serde_json::from_str(&raw).unwrap();
        assert_eq!(r.class, Class::Sw);
        assert!(r.answers.is_empty());
        let ReportBody::Full { items } = &r.body else {
            panic!("{r:?}")
        };
        assert_eq!(items["dpkg/a"]["version"], "1");
        // A delta round-trips.
        let d = Report {
            report_id: Uuid::nil(),
            class: Class::Sw,
            hash: crate::Snapshot::default().hash(),
            body: ReportBody::Delta {
                base_version: 7,
                delta: Delta {
                    upsert: Items::new(),
                    remove: vec!["dpkg/b".to_string()],
                },
            },
            answers: vec![],
        };
        let back: Report = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(back, d);
        // What is refused, and the message says why.
        let refused = |raw: String, says: &str| {
            let err = serde_json::from_str::<Report>(&raw)
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{raw}: {err}");
        };
        let head = format!(r#""report_id":"{id}","class":"sw","hash":"{hash}""#);
        refused(
            format!(r#"{{{head},"items":{{}}}}"#),
            "missing field `kind`",
        );
        refused(
            format!(r#"{{{head},"kind":"full"}}"#),
            "missing field `items`",
        );
        refused(
            format!(r#"{{{head},"kind":"delta","delta":{{}}}}"#),
            "missing field `base_version`",
        );
        refused(
            format!(r#"{{{head},"kind":"partial","items":{{}}}}"#),
            "unknown variant `partial`",
        );
        refused(
            format!(r#"{{{head},"kind":"full","kind":"full","items":{{}}}}"#),
            "duplicate field `kind`",
        );
        refused(
            format!(r#"{{"class":"sw","hash":"{hash}","kind":"full","items":{{}}}}"#),
            "missing field `report_id`",
        );
        refused(
            format!(r#"{{{head},"kind":"full","items":[]}}"#),
            "invalid type",
        );
        refused("[]".to_string(), "invalid type");
    }
}

// ---------------------------------------------------------------------------------------------
// Site-to-site API (`/site/v1/…`): a child site presents `Authorization: Bearer <child token>`,
// where the token is `<child site code>.<64 hex digits>` (see [`ChildToken`]), issued by the
// parent's `invsite child-token CODE`.

pub const SITE_HELLO: &str = "/site/v1/hello";
pub const SITE_FORWARD: &str = "/site/v1/forward";

/// A child site's credential at its parent: the code it was issued for and a 256-bit key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildToken {
    pub code: SiteCode,
    pub key: [u8; 32],
}

impl ChildToken {
    pub fn encode(&self) -> String {
        format!("{}.{}", self.code, hex::encode(self.key))
    }

    pub fn parse(raw: &str) -> Option<ChildToken> {
        let (code, key) = raw.split_once('.')?;
        let code = SiteCode::parse(code).ok()?;
        let mut k = [0u8; 32];
        hex::decode_to_slice(key, &mut k).ok()?;
        Some(ChildToken { code, key: k })
    }

    /// What the parent stores instead of the key.
    pub fn key_hash(&self) -> Digest {
        Digest(*blake3::hash(&self.key).as_bytes())
    }
}

/// What a site says about itself (and what it knows of the sites below it) when it talks to
/// its parent; the parent shows it in `invsite sites`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteStatus {
    pub code: SiteCode,
    pub name: String,
    /// The code of the site it forwards to (absent for the top of the tree).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<SiteCode>,
    /// Where its admin tools and agents reach it, when it announced a URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Clients the site owns.
    pub clients: i64,
    /// Changes accepted but not yet acknowledged by its parent.
    pub outbox_depth: i64,
    /// When the oldest change in the outbox was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox_oldest: Option<Timestamp>,
    /// When its parent last acknowledged a forwarded change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_forwarded: Option<Timestamp>,
    /// Whether it queues resync requests that its parent routes down (`invsync --via-child`).
    #[serde(default)]
    pub accepts_parent_requests: bool,
    /// When this status was reported.
    pub reported_at: Timestamp,
}

/// `POST /site/v1/hello`: a child checks its credential and announces itself. The parent
/// refuses a wrong token, a token issued for another code, and a code already in use in its
/// tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildHello {
    pub status: SiteStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildWelcome {
    /// The parent's own code.
    pub parent: SiteCode,
}

/// A client as its owning site describes it to the sites above.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    pub id: Uuid,
    pub name: ClientName,
    /// The owning site: where the client enrolled.
    pub site: SiteCode,
    pub machine_id: String,
    pub enrolled_at: Timestamp,
}

/// One accepted change, forwarded up: the snapshot of `class` of `client` reached `version`
/// with `hash` through `body` (a delta against `version - 1`'s base, or the full snapshot).
pub type Forwarded = ForwardedOf<ReportBody>;

/// A [`Forwarded`] change with its body in whatever form the receiver reads it into (`B`, for
/// [`Forwarded`] a [`ReportBody`] of maps): a parent site reads the items straight into the
/// form it hashes and stores, as it reads reports. The fields are [`Forwarded`]'s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardedOf<B> {
    /// The sender's outbox sequence number; outcomes refer to it.
    pub seq: i64,
    pub client: ClientRecord,
    pub class: Class,
    pub version: i64,
    pub hash: Digest,
    pub full_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(flatten)]
    pub body: B,
    /// Resync requests (ids at the owning site) this change completed, with their times, so
    /// a resync requested at the owning site is visible above it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub completed: Vec<RequestView>,
}

/// `POST /site/v1/forward`: changes in outbox order, plus the sender's status and what it knows
/// of the sites below it. An empty batch is a heartbeat.
pub type ForwardBatch = ForwardBatchOf<ReportBody>;

/// A [`ForwardBatch`] whose entries' bodies are read into `B` (see [`ForwardedOf`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardBatchOf<B> {
    pub from: SiteStatus,
    #[serde(default)]
    pub below: Vec<SiteStatus>,
    #[serde(default = "Vec::new")]
    pub entries: Vec<ForwardedOf<B>>,
}

/// What the parent did with one forwarded change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ForwardOutcome {
    /// Stored (and queued for the parent's own parent).
    Applied { seq: i64 },
    /// The parent already holds this version with this hash.
    Duplicate { seq: i64 },
    /// The parent's version is not the delta's base (a gap): send the full snapshot of this
    /// client and class.
    ResyncRequired {
        seq: i64,
        client: Uuid,
        class: Class,
        reason: String,
    },
    /// Refused (e.g. an owner code used elsewhere in the tree); stored nothing, and resending
    /// will not help.
    Refused { seq: i64, reason: String },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardResult {
    pub outcomes: Vec<ForwardOutcome>,
    /// Resync requests routed down from above (`invsync --via-child`) for clients owned at or
    /// below the sender.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<DownRequest>,
}

/// A resync request routed down the tree to the owning site. A parent delivers it again (about
/// every 30 s) until the full report that completes it comes back up, so a child must treat a
/// request it already holds (same origin) as a no-op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownRequest {
    /// The id at the site where `invsync --via-child` ran.
    pub origin_id: i64,
    pub origin_site: SiteCode,
    pub client: Uuid,
    pub class: Class,
}

impl DownRequest {
    /// The request's identity across the tree, `<origin site>:<origin id>`, as
    /// [`RequestView::origin`] carries it.
    pub fn origin(&self) -> String {
        format!("{}:{}", self.origin_site, self.origin_id)
    }
}

/// The site and id of an origin `<site code>:<request id>` ([`DownRequest::origin`]).
pub fn split_origin(raw: &str) -> Option<(SiteCode, i64)> {
    let (code, id) = raw.split_once(':')?;
    Some((SiteCode::parse(code).ok()?, id.parse().ok()?))
}

/// Where a client lives when it is not this site's own (`invsync` exit 5, `invsite show`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub client: ClientName,
    pub id: Uuid,
    pub site: SiteCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

pub const API_SITES: &str = "/api/v1/sites";

/// `GET /api/v1/sites` / `invsite sites --json`: this site and every site below it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SitesView {
    pub site: SiteStatus,
    pub below: Vec<SiteStatus>,
}
