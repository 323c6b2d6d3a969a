//! Administrators with roles and the audit trail (issue 20, items 6 and 7): user names and
//! roles, a user's personal API token, the bodies of `/api/v1/users` and `/api/v1/audit`, and
//! the actions an audit entry records. A user name is parsed by [`UserName::parse`] at every
//! entry point (command line, admin API, console form), so the rule and its message are one.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::inventory::Digest;
use crate::time::Timestamp;

/// `GET`/`POST /api/v1/users`.
pub const API_USERS: &str = "/api/v1/users";
/// `GET /api/v1/audit`.
pub const API_AUDIT: &str = "/api/v1/audit";

/// The actor of what the site's own admin token did (`invsite admin-token`).
pub const SITE_TOKEN_ACTOR: &str = "site-token";

/// The header a command-line tool on the site server names its local user in
/// (`local:<unix user>`) when it calls the admin API with the site's admin token; the site
/// believes it only with that token, which only a user who can read the data directory has.
pub const ACTOR_HEADER: &str = "invsync-actor";

/// Why a user name, role or token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserNameError {
    #[error(
        "user name {0} is not valid: give 1 to 32 characters of a-z 0-9 '-' '_', starting with a letter"
    )]
    Bad(String),
    #[error("user name {0} is reserved: it names the site's own admin token in the audit")]
    Reserved(String),
}

/// An administrator's name: 1–32 characters of `a–z 0–9 - _`, first a letter, held
/// lower-case (`Alice` is `alice`). `site-token` is reserved for the site's own token.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserName(String);

impl UserName {
    pub const MAX_LEN: usize = 32;

    pub fn parse(raw: &str) -> Result<UserName, UserNameError> {
        let lower = raw.to_ascii_lowercase();
        let shown = format!("{:?}", raw.chars().take(40).collect::<String>());
        let ok = !lower.is_empty()
            && lower.len() <= Self::MAX_LEN
            && lower.as_bytes()[0].is_ascii_lowercase()
            && lower
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !ok {
            return Err(UserNameError::Bad(shown));
        }
        if lower == SITE_TOKEN_ACTOR {
            return Err(UserNameError::Reserved(shown));
        }
        Ok(UserName(lower))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for UserName {
    type Err = UserNameError;
    fn from_str(s: &str) -> Result<UserName, UserNameError> {
        UserName::parse(s)
    }
}

impl Serialize for UserName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for UserName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<UserName, D::Error> {
        let raw = String::deserialize(d)?;
        UserName::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// What a user may do; each role may do what the ones before it may.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything: clients, inventory, history, requests, software, sites, the audit.
    Viewer,
    /// Also queues resync requests and events and cancels requests.
    Operator,
    /// Also deletes clients, manages users and changes the site's configuration.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(raw: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == raw)
            .ok_or_else(|| {
                format!(
                    "role {:?} is not one of viewer, operator, admin",
                    raw.chars().take(40).collect::<String>()
                )
            })
    }

    /// Whether a caller of this role may do what `needed` allows.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::parse(s)
    }
}

/// A user's personal API token, `invu.<name>.<64 hex digits>`: presented as
/// `Authorization: Bearer …` like the site's admin token. The site stores only the hash of the
/// key ([`UserToken::key_hash`]), as it does for client keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserToken {
    pub name: UserName,
    pub key: [u8; 32],
}

impl UserToken {
    const PREFIX: &'static str = "invu.";

    pub fn encode(&self) -> String {
        format!("{}{}.{}", Self::PREFIX, self.name, hex::encode(self.key))
    }

    /// The token, if `raw` has a token's form (it may still be wrong).
    pub fn parse(raw: &str) -> Option<UserToken> {
        let rest = raw.strip_prefix(Self::PREFIX)?;
        let (name, key) = rest.rsplit_once('.')?;
        let name = UserName::parse(name).ok()?;
        let mut k = [0u8; 32];
        hex::decode_to_slice(key, &mut k).ok()?;
        Some(UserToken { name, key: k })
    }

    /// What the site stores instead of the key.
    pub fn key_hash(&self) -> Digest {
        Digest(*blake3::hash(&self.key).as_bytes())
    }
}

/// A user as `invsite user list` and `GET /api/v1/users` show it (never the token).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub name: UserName,
    pub role: Role,
    pub created_at: Timestamp,
    /// When the token was last issued (by `add` or `rotate`).
    pub token_issued_at: Timestamp,
    /// When the token stops working; absent for a token that does not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// True once `expires_at` has passed: the token is refused (401) until rotated.
    pub expired: bool,
}

/// `POST /api/v1/users`: add a user (admin only).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewUserBody {
    /// 1 to 32 characters of a-z 0-9 '-' '_', starting with a letter.
    pub name: String,
    pub role: Role,
    /// How long the token works (`90d`, `12h`, …); absent: it does not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// `POST /api/v1/users/{name}/rotate`: a new token for a user (admin only); the old one stops
/// working at once.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotateBody {
    /// How long the new token works; absent: as long as the user's token did when it was
    /// issued (or for ever, if it did not expire).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// The answer to adding a user or rotating a token: the token, shown this once.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserIssued {
    pub user: UserView,
    /// The personal API token (`Authorization: Bearer …`, or the console's login field). The
    /// site keeps only its hash: it cannot be shown again.
    pub token: String,
}

/// What an audit entry records that someone did.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// A resync request was queued (`invsync`, the console, the API).
    Request,
    /// A pending request was cancelled.
    Cancel,
    /// A client event was queued (`setevnt`, the console's "Cycle now").
    Event,
    /// A client was deleted (retired).
    Delete,
    /// An enrollment took over a duplicate client's record.
    Merge,
    /// A client's key was revoked (`invsite revoke`).
    Revoke,
    /// A user was added.
    UserAdd,
    /// A user was removed.
    UserRemove,
    /// A user's token was rotated.
    UserRotate,
    /// The site's configuration changed (`invsite config`).
    Config,
    /// A console login succeeded.
    Login,
    /// A console login was refused.
    LoginFailed,
}

impl AuditAction {
    pub const ALL: [AuditAction; 12] = [
        AuditAction::Request,
        AuditAction::Cancel,
        AuditAction::Event,
        AuditAction::Delete,
        AuditAction::Merge,
        AuditAction::Revoke,
        AuditAction::UserAdd,
        AuditAction::UserRemove,
        AuditAction::UserRotate,
        AuditAction::Config,
        AuditAction::Login,
        AuditAction::LoginFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Request => "request",
            AuditAction::Cancel => "cancel",
            AuditAction::Event => "event",
            AuditAction::Delete => "delete",
            AuditAction::Merge => "merge",
            AuditAction::Revoke => "revoke",
            AuditAction::UserAdd => "user_add",
            AuditAction::UserRemove => "user_remove",
            AuditAction::UserRotate => "user_rotate",
            AuditAction::Config => "config",
            AuditAction::Login => "login",
            AuditAction::LoginFailed => "login_failed",
        }
    }

    pub fn parse(raw: &str) -> Option<AuditAction> {
        AuditAction::ALL.into_iter().find(|a| a.as_str() == raw)
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One audit entry: who did what, when, from where, at which site.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The entry's number at this site; it grows and is never reused.
    pub id: i64,
    pub at: Timestamp,
    /// A user name, `site-token`, or `local:<unix user>` for a tool run on the site server.
    pub actor: String,
    /// The remote address the action came from (absent for a local tool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub action: AuditAction,
    /// What it was done to: a client name, a request id, a user name, a setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// More about it, in a few words (a class, an event, a role, the values set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    /// The site where it was done: this site, or a site below that forwarded it up.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub site: crate::name::SiteCode,
}

/// `GET /api/v1/audit?since=&user=&limit=`: the newest entries first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuery {
    /// Only entries at or after this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    /// Only entries of this actor (a user name, `site-token` or `local:<unix user>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// At most this many (1 to 1000; 100 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

impl AuditQuery {
    /// Why the store would refuse this query, if it would.
    pub fn problem(&self) -> Option<String> {
        match self.limit {
            Some(l) if l == 0 || l > super::MAX_PAGE_LIMIT => Some(format!(
                "limit {l} is out of range; give 1 to {}",
                super::MAX_PAGE_LIMIT
            )),
            _ => match &self.user {
                Some(u) if u.is_empty() || u.len() > 64 || u.chars().any(|c| c.is_control()) => {
                    Some("user must be 1 to 64 printable characters".to_string())
                }
                _ => None,
            },
        }
    }
}

/// The answer of `GET /api/v1/audit`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    /// Newest first.
    pub entries: Vec<AuditEntry>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_follow_one_rule() {
        assert_eq!(UserName::parse("Alice-2").unwrap().as_str(), "alice-2");
        for bad in ["", "2alice", "a b", "a.b", "é", &"a".repeat(33), "a/b"] {
            assert!(UserName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            UserName::parse("Site-Token"),
            Err(UserNameError::Reserved(_))
        ));
    }

    #[test]
    fn roles_are_ordered_and_parsed() {
        assert!(Role::Admin.allows(Role::Operator));
        assert!(Role::Operator.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Operator));
        assert!(!Role::Operator.allows(Role::Admin));
        assert_eq!(Role::parse("operator"), Ok(Role::Operator));
        assert!(
            Role::parse("root")
                .unwrap_err()
                .contains("viewer, operator, admin")
        );
    }

    #[test]
    fn tokens_round_trip_and_refuse_other_forms() {
        let t = UserToken {
            name: UserName::parse("bob").unwrap(),
            key: [7; 32],
        };
        assert_eq!(UserToken::parse(&t.encode()), Some(t.clone()));
        assert_eq!(UserToken::parse(&hex::encode([7u8; 32])), None);
        assert_eq!(UserToken::parse("invu.bob.zz"), None);
        assert_ne!(t.key_hash().0, [7; 32]);
    }

    #[test]
    fn actions_round_trip() {
        for a in AuditAction::ALL {
            assert_eq!(AuditAction::parse(a.as_str()), Some(a));
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(json, format!("\"{}\"", a.as_str()));
        }
    }
}
