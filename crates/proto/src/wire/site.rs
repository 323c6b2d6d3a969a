//! The site-to-site API (`/site/v1/…`): a child site says hello to its parent and forwards the
//! changes it accepted, with its status; the parent's answers carry requests routed down. A child
//! presents `Authorization: Bearer <child token>`, where the token is `<child site code>.<64 hex
//! digits>` (see [`ChildToken`]), issued by the parent's `invsite child-token CODE`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::admin::RequestView;
use super::cap::ReportBody;
use crate::inventory::{Class, Digest};
use crate::name::{ClientName, SiteCode};
use crate::time::Timestamp;

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
    /// The client's agent version as its owning site last stored it, so that the sites above
    /// show and flag it too; absent when the agent never said (a CAP or imported client) and
    /// from a site of an earlier release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
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
    /// A tombstone: the client was deleted at its owning site at this time (`invsite delete`),
    /// and every site above forgets it. The snapshot fields are placeholders then (an empty
    /// full `hw` snapshot of version 0); the owner sends nothing more of this client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<Timestamp>,
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
    /// Audit entries the parent has not acknowledged yet, oldest first (this site's own and
    /// those its children forwarded), so that the audit of every site above shows who did what
    /// at which site.
    #[serde(default = "Vec::new", skip_serializing_if = "Vec::is_empty")]
    pub audit: Vec<super::AuditEntry>,
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
    /// The number (at the sender) of the last audit entry of the batch the parent took in:
    /// the sender sends only later ones from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_upto: Option<i64>,
    /// How far up the tree the changes that completed requests of the sites below have
    /// travelled since last told: the sites above this one that stored them, so that `invsync
    /// --wait` at the owning site sees the change reach the top.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hops: Vec<HopReport>,
}

/// What a site tells a child about one request completed below it: the request (its origin,
/// `<owner code>:<id at the owner>`, as both sites know it), the sites above the answering site
/// that stored the change, nearest first, and whether the top of the tree has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HopReport {
    pub request: String,
    #[serde(default)]
    pub hops: Vec<crate::wire::Hop>,
    #[serde(default)]
    pub top: bool,
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
