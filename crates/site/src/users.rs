//! Managing administrators (issue 20, item 6), written once for `invsite user` (straight to the
//! database, as `local:<unix user>`), the admin API's `/api/v1/users` routes and the console's
//! users page: each issues a personal token of 256 random bits, stores only its hash (as for
//! client keys), shows the token once, and records what it did in the audit.

use invsync_proto::Timestamp;
use invsync_proto::wire::{AuditAction, Role, UserIssued, UserName, UserToken, UserView};
use invsync_store::{NewUser, Store, StoreError};

use crate::audit::{self, Actor};

/// The shortest and longest life a token may be given.
const MIN_LIFETIME_SECS: u64 = 1;
const MAX_LIFETIME_SECS: u64 = 100 * 366 * 24 * 3600;

/// Why a user could not be added, rotated or removed.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The name, role or duration given is not valid; nothing was stored.
    #[error("{0}")]
    BadInput(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `--expires 90d`: how long a token works, in milliseconds; a clear sentence otherwise.
pub fn parse_lifetime(raw: &str) -> Result<i64, String> {
    let d = humantime::parse_duration(raw.trim())
        .map_err(|e| format!("--expires {raw:?} is not a duration: {e} (try 90d, 12h, 30min)"))?;
    if d.as_secs() < MIN_LIFETIME_SECS || d.as_secs() > MAX_LIFETIME_SECS {
        return Err(format!(
            "--expires {raw:?} is out of range: give at least 1s and at most 100 years"
        ));
    }
    Ok(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn lifetime(raw: Option<&str>) -> Result<Option<i64>, UserError> {
    raw.map(parse_lifetime)
        .transpose()
        .map_err(UserError::BadInput)
}

/// A fresh token for `name`, and the user row that stores its hash.
fn fresh(name: &UserName, role: Role, lifetime_ms: Option<i64>) -> (String, NewUser) {
    let token = UserToken {
        name: name.clone(),
        key: crate::secret::random_bytes(),
    };
    let user = NewUser {
        name: name.clone(),
        role,
        key_hash: token.key_hash(),
        now: Timestamp::now(),
        lifetime_ms,
    };
    (token.encode(), user)
}

fn expiry_words(v: &UserView) -> String {
    match v.expires_at {
        Some(t) => format!("expires {}", t.rfc3339()),
        None => "does not expire".to_string(),
    }
}

/// Adds a user: its token, shown this once.
pub async fn add(
    store: &Store,
    actor: &Actor,
    raw_name: &str,
    role: Role,
    expires: Option<&str>,
) -> Result<UserIssued, UserError> {
    let name = UserName::parse(raw_name).map_err(|e| UserError::BadInput(e.to_string()))?;
    let (token, user) = fresh(&name, role, lifetime(expires)?);
    let view = store.add_user(&user).await?;
    let details = format!("role {role}, token {}", expiry_words(&view));
    audit::record(
        store,
        actor,
        AuditAction::UserAdd,
        Some(name.to_string()),
        Some(details),
    )
    .await;
    Ok(UserIssued { user: view, token })
}

/// Gives a user a new token (the old one stops working at once); without `expires`, it works
/// as long as the old one did when it was issued.
pub async fn rotate(
    store: &Store,
    actor: &Actor,
    raw_name: &str,
    expires: Option<&str>,
) -> Result<UserIssued, UserError> {
    let name = UserName::parse(raw_name).map_err(|e| UserError::BadInput(e.to_string()))?;
    let lifetime = lifetime(expires)?;
    // The role is the stored one: a rotation never changes it.
    let (token, user) = fresh(&name, Role::Viewer, lifetime);
    let view = store.rotate_user(&user, lifetime.is_none()).await?;
    audit::record(
        store,
        actor,
        AuditAction::UserRotate,
        Some(name.to_string()),
        Some(format!("new token {}", expiry_words(&view))),
    )
    .await;
    Ok(UserIssued { user: view, token })
}

/// Removes a user: its token stops working at once, and its console sessions end at their
/// next page. Its audit entries stay.
pub async fn remove(store: &Store, actor: &Actor, raw_name: &str) -> Result<UserName, UserError> {
    let name = UserName::parse(raw_name).map_err(|e| UserError::BadInput(e.to_string()))?;
    store.remove_user(&name).await?;
    audit::record(
        store,
        actor,
        AuditAction::UserRemove,
        Some(name.to_string()),
        None,
    )
    .await;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_are_durations_within_bounds() {
        assert_eq!(parse_lifetime("90d"), Ok(90 * 24 * 3600 * 1000));
        assert_eq!(parse_lifetime("1h"), Ok(3600 * 1000));
        for bad in ["", "soon", "0s", "-1d", "1000years"] {
            let e = parse_lifetime(bad).unwrap_err();
            assert!(e.starts_with("--expires"), "{bad}: {e}");
        }
    }
}
