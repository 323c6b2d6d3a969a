//! Who is acting, and the one function that records what they did in the audit trail (issue
//! 20, item 7).
//!
//! A [`Principal`] is who a credential stands for: a user (by name, with the role the site
//! gave it), the site's own admin token (`site-token`, an admin), or a command-line tool run on
//! the site server (`local:<unix user>`, an admin: it can read the data directory, and with it
//! the admin token). An [`Actor`] is a principal at a remote address. The API's extractors
//! (`api/auth.rs`) and the console's session make them; every state-changing handler, console
//! action and `invsite` command then calls [`record`] once its action succeeded, with what it
//! did ([`AuditAction`]), to what (`target`) and a few words more (`details`). The parts being
//! built beside this one (client deletion, duplicate merging) call [`record`] the same way.
//!
//! Recording follows the action rather than sharing its transaction: a failed record is logged
//! at ERROR (an operator must look at a database that refuses writes) and does not undo an
//! action that was done. This module names nothing else of the site, so the session table
//! (`console/session.rs`), which the state holds, can hold principals.

use std::net::IpAddr;

use invsync_proto::Digest;
use invsync_proto::Timestamp;
use invsync_proto::wire::{AuditAction, Role, SITE_TOKEN_ACTOR, UserName};
use invsync_store::{AuditRecord, Store};

/// Who a credential stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The audit's name for them: a user name, `site-token` or `local:<unix user>`.
    pub name: String,
    pub role: Role,
    /// For a user: the name and the hash of the token's key it logged in with, so that a
    /// console session ends when the user is removed, rotated or expires.
    pub user: Option<(UserName, Digest)>,
}

impl Principal {
    /// The site's own admin token; `local` names the site server's user when a local tool
    /// presented it (see [`local_name`]).
    pub fn site_token(local: Option<String>) -> Principal {
        Principal {
            name: local.unwrap_or_else(|| SITE_TOKEN_ACTOR.to_string()),
            role: Role::Admin,
            user: None,
        }
    }

    pub fn user(name: UserName, role: Role, key_hash: Digest) -> Principal {
        Principal {
            name: name.to_string(),
            role,
            user: Some((name, key_hash)),
        }
    }

    /// The refusal's sentence when this principal lacks `needed`, naming the role it needs.
    pub fn lacks(&self, needed: Role) -> Option<String> {
        (!self.role.allows(needed)).then(|| {
            format!(
                "this needs the {needed} role; {} has the {} role (an admin changes roles with `invsite user`)",
                self.name, self.role
            )
        })
    }
}

/// A principal, and where its request came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub principal: Principal,
    pub address: Option<IpAddr>,
}

impl Actor {
    /// A command-line tool run on the site server by the current unix user (`local:<name>`).
    pub fn local() -> Actor {
        Actor {
            principal: Principal::site_token(Some(local_name())),
            address: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.principal.name
    }
}

/// `local:<unix user>`: the user this process runs as, by the password database, else by its
/// uid (`local:uid1000`).
pub fn local_name() -> String {
    // SAFETY: getuid cannot fail and has no preconditions.
    let uid = unsafe { libc::getuid() };
    let name = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let id = fields.nth(1)?;
                (id.parse::<u32>().ok()? == uid).then(|| name.to_string())
            })
        });
    match name {
        Some(n) if is_local_user(&n) => format!("local:{n}"),
        _ => format!("local:uid{uid}"),
    }
}

/// Whether `name` may follow `local:` (a unix user name: letters, digits, `.`, `_`, `-`).
pub fn is_local_user(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The actor a local tool announced in the admin API's actor header (`local:<unix user>`),
/// if it is one; anything else is ignored.
pub fn local_actor_header(raw: &str) -> Option<String> {
    let user = raw.strip_prefix("local:")?;
    is_local_user(user).then(|| raw.to_string())
}

/// Records that `actor` did `action` to `target`: the one way the site writes the audit
/// trail. Call it after the action succeeded. A failure is logged, not returned: the action
/// is done, and the database's refusal of writes is reported by `/healthz` too.
pub async fn record(
    store: &Store,
    actor: &Actor,
    action: AuditAction,
    target: Option<String>,
    details: Option<String>,
) {
    let entry = AuditRecord {
        at: Timestamp::now(),
        actor: actor.principal.name.clone(),
        address: actor.address.map(|a| a.to_string()),
        action,
        target,
        details,
    };
    match store.record_audit(&entry).await {
        Ok(id) => {
            tracing::info!(id, actor = %entry.actor, action = action.as_str(), target = entry.target.as_deref().unwrap_or(""), "Audit.")
        }
        Err(e) => {
            tracing::error!(error = %e, actor = %entry.actor, action = action.as_str(), "Could not record an audit entry.")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_names_are_checked() {
        assert_eq!(
            local_actor_header("local:root").as_deref(),
            Some("local:root")
        );
        assert_eq!(local_actor_header("alice"), None);
        assert_eq!(local_actor_header("local:a b"), None);
        assert_eq!(local_actor_header("local:"), None);
        assert!(local_name().starts_with("local:"));
    }

    #[test]
    fn a_principal_says_which_role_it_lacks() {
        let viewer = Principal::user(
            UserName::parse("vic").unwrap(),
            Role::Viewer,
            Digest([0; 32]),
        );
        let m = viewer.lacks(Role::Operator).unwrap();
        assert!(m.contains("operator role") && m.contains("vic"), "{m}");
        assert_eq!(viewer.lacks(Role::Viewer), None);
        assert_eq!(Principal::site_token(None).lacks(Role::Admin), None);
    }
}
