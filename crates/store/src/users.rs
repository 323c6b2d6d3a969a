//! Administrators and the audit trail (issue 20, items 6 and 7), written once over the
//! executor both backends implement ([`crate::exec::Exec`]).
//!
//! A user is a row of `users`: a name, a role, the hash of the key of its personal token (the
//! key itself is never stored, as for client keys), when the token was issued and when it
//! expires. The audit is the table `audit`, append-only: rows are inserted by
//! [`record_audit`] (and by [`record_forwarded_audit`] for entries a child forwarded up), read
//! by [`audit`], and removed only by the retention period's pruning (`Retained::Audit`); a
//! trigger in each schema refuses any `UPDATE` of it, so no code path can rewrite history.

use invsync_proto::wire::{AuditAction, AuditEntry, AuditQuery, Role, UserName, UserView};
use invsync_proto::{Digest, SiteCode, Timestamp};

use crate::error::StoreError;
use crate::exec::{Arg, Exec};
use crate::rows::{Cols, corrupt};

/// How many audit entries a query without a limit returns.
pub const DEFAULT_AUDIT_LIMIT: u32 = 100;

/// A user as the store holds it, with the hash its token must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAuth {
    pub name: UserName,
    pub role: Role,
    pub key_hash: Digest,
    pub expires_at: Option<Timestamp>,
}

impl UserAuth {
    /// Whether the token has expired at `now`.
    pub fn expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|e| e.0 <= now.0)
    }
}

/// A user to add, or a token to issue again: the key's hash, and how long the token works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub name: UserName,
    pub role: Role,
    pub key_hash: Digest,
    pub now: Timestamp,
    /// How long the token works, in milliseconds; `None`: it does not expire.
    pub lifetime_ms: Option<i64>,
}

/// What an audit entry records, before the store numbers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub at: Timestamp,
    pub actor: String,
    pub address: Option<String>,
    pub action: AuditAction,
    pub target: Option<String>,
    pub details: Option<String>,
}

const USER_COLS: &str = "name, role, created_at, issued_at, expires_at";

fn role_of(raw: &str) -> Result<Role, StoreError> {
    Role::parse(raw).map_err(|_| corrupt("role"))
}

fn user_name(raw: &str) -> Result<UserName, StoreError> {
    UserName::parse(raw).map_err(|_| corrupt("user name"))
}

fn user_view(r: &impl Cols, now: Timestamp) -> Result<UserView, StoreError> {
    let expires_at = r.ts(4)?;
    Ok(UserView {
        name: user_name(r.text(0)?)?,
        role: role_of(r.text(1)?)?,
        created_at: r.at(2)?,
        token_issued_at: r.at(3)?,
        expires_at,
        expired: expires_at.is_some_and(|e| e.0 <= now.0),
    })
}

fn expiry(u: &NewUser) -> Option<i64> {
    u.lifetime_ms.map(|ms| u.now.0.saturating_add(ms))
}

pub(crate) async fn add_user(e: &mut impl Exec, u: &NewUser) -> Result<UserView, StoreError> {
    let sql = "INSERT INTO users (name, role, key_hash, created_at, issued_at, expires_at, lifetime_ms) \
               VALUES ($1, $2, $3, $4, $4, $5, $6) ON CONFLICT (name) DO NOTHING RETURNING name";
    let args = [
        Arg::Text(u.name.as_str()),
        Arg::Text(u.role.as_str()),
        Arg::Blob(u.key_hash.0.as_slice()),
        Arg::Int(u.now.0),
        Arg::OptInt(expiry(u)),
        Arg::OptInt(u.lifetime_ms),
    ];
    if e.first(sql, &args, |_| Ok(())).await?.is_none() {
        return Err(StoreError::UserExists(u.name.to_string()));
    }
    user(e, &u.name, u.now)
        .await?
        .ok_or_else(|| StoreError::UnknownUser(u.name.to_string()))
}

/// A new token for an existing user: `u.role` is ignored; without `u.lifetime_ms`, the token
/// works as long as the user's last one did when it was issued.
pub(crate) async fn rotate_user(
    e: &mut impl Exec,
    u: &NewUser,
    keep_lifetime: bool,
) -> Result<UserView, StoreError> {
    // Placeholders numbered in the order they first appear: SQLite binds `$n` by that order.
    let sql = if keep_lifetime {
        "UPDATE users SET key_hash = $1, issued_at = $2, \
         expires_at = CASE WHEN lifetime_ms IS NULL THEN NULL ELSE $2 + lifetime_ms END \
         WHERE name = $3"
    } else {
        "UPDATE users SET key_hash = $1, issued_at = $2, expires_at = $3, lifetime_ms = $4 \
         WHERE name = $5"
    };
    let mut args = vec![Arg::Blob(u.key_hash.0.as_slice()), Arg::Int(u.now.0)];
    if !keep_lifetime {
        args.push(Arg::OptInt(expiry(u)));
        args.push(Arg::OptInt(u.lifetime_ms));
    }
    args.push(Arg::Text(u.name.as_str()));
    if e.execute(sql, &args).await? == 0 {
        return Err(StoreError::UnknownUser(u.name.to_string()));
    }
    user(e, &u.name, u.now)
        .await?
        .ok_or_else(|| StoreError::UnknownUser(u.name.to_string()))
}

pub(crate) async fn remove_user(e: &mut impl Exec, name: &UserName) -> Result<(), StoreError> {
    let sql = "DELETE FROM users WHERE name = $1";
    match e.execute(sql, &[Arg::Text(name.as_str())]).await? {
        0 => Err(StoreError::UnknownUser(name.to_string())),
        _ => Ok(()),
    }
}

pub(crate) async fn user(
    e: &mut impl Exec,
    name: &UserName,
    now: Timestamp,
) -> Result<Option<UserView>, StoreError> {
    let sql = format!("SELECT {USER_COLS} FROM users WHERE name = $1");
    e.first(&sql, &[Arg::Text(name.as_str())], |r| user_view(r, now))
        .await
}

pub(crate) async fn users(e: &mut impl Exec, now: Timestamp) -> Result<Vec<UserView>, StoreError> {
    let sql = format!("SELECT {USER_COLS} FROM users ORDER BY name");
    e.all(&sql, &[], |r| user_view(r, now)).await
}

pub(crate) async fn user_auth(
    e: &mut impl Exec,
    name: &UserName,
) -> Result<Option<UserAuth>, StoreError> {
    let sql = "SELECT name, role, key_hash, expires_at FROM users WHERE name = $1";
    e.first(sql, &[Arg::Text(name.as_str())], |r| {
        Ok(UserAuth {
            name: user_name(r.text(0)?)?,
            role: role_of(r.text(1)?)?,
            key_hash: r.digest(2)?,
            expires_at: r.ts(3)?,
        })
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// The audit trail

const AUDIT_COLS: &str = "id, at, actor, address, action, target, details, site";

fn audit_entry(r: &impl Cols) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        id: r.int(0)?,
        at: r.at(1)?,
        actor: r.text(2)?.to_string(),
        address: r.opt_text(3)?.map(str::to_string),
        action: AuditAction::parse(r.text(4)?).ok_or_else(|| corrupt("audit action"))?,
        target: r.opt_text(5)?.map(str::to_string),
        details: r.opt_text(6)?.map(str::to_string),
        site: r.site(7)?,
    })
}

/// Appends an entry done at this site; its number.
pub(crate) async fn record_audit(
    e: &mut impl Exec,
    site: &SiteCode,
    a: &AuditRecord,
) -> Result<i64, StoreError> {
    let sql = "INSERT INTO audit (at, actor, address, action, target, details, site) \
               VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id";
    let args = [
        Arg::Int(a.at.0),
        Arg::Text(&a.actor),
        Arg::OptText(a.address.as_deref()),
        Arg::Text(a.action.as_str()),
        Arg::OptText(a.target.as_deref()),
        Arg::OptText(a.details.as_deref()),
        Arg::Text(site.as_str()),
    ];
    let id = e.first(sql, &args, |r| r.int(0)).await?;
    id.ok_or_else(|| StoreError::Database("the audit insert returned no id".to_string()))
}

/// Appends the entries a child (`from`) forwarded, each keeping the site it was done at; the
/// child and the entry's number there make an entry forwarded twice be stored once. How many
/// were new.
pub(crate) async fn record_forwarded_audit(
    e: &mut impl Exec,
    from: &SiteCode,
    entries: &[AuditEntry],
) -> Result<u64, StoreError> {
    let sql = "INSERT INTO audit (at, actor, address, action, target, details, site, origin_id, via) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING";
    let mut new = 0;
    for a in entries {
        let args = [
            Arg::Int(a.at.0),
            Arg::Text(&a.actor),
            Arg::OptText(a.address.as_deref()),
            Arg::Text(a.action.as_str()),
            Arg::OptText(a.target.as_deref()),
            Arg::OptText(a.details.as_deref()),
            Arg::Text(a.site.as_str()),
            Arg::Int(a.id),
            Arg::Text(from.as_str()),
        ];
        new += e.execute(sql, &args).await?;
    }
    Ok(new)
}

/// The entries matching `q`, newest first.
pub(crate) async fn audit(
    e: &mut impl Exec,
    q: &AuditQuery,
) -> Result<Vec<AuditEntry>, StoreError> {
    let mut sql = format!("SELECT {AUDIT_COLS} FROM audit WHERE 1 = 1");
    let mut args = Vec::new();
    if let Some(since) = q.since {
        args.push(Arg::Int(since.0));
        sql.push_str(&format!(" AND at >= ${}", args.len()));
    }
    if let Some(user) = &q.user {
        args.push(Arg::Text(user));
        sql.push_str(&format!(" AND actor = ${}", args.len()));
    }
    let limit = q.limit.unwrap_or(DEFAULT_AUDIT_LIMIT);
    args.push(Arg::Int(i64::from(limit)));
    sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", args.len()));
    e.all(&sql, &args, |r| audit_entry(r)).await
}

/// The entries numbered above `after`, oldest first, at most `limit`: what a child forwards
/// to its parent next.
pub(crate) async fn audit_after(
    e: &mut impl Exec,
    after: i64,
    limit: usize,
) -> Result<Vec<AuditEntry>, StoreError> {
    let sql = format!("SELECT {AUDIT_COLS} FROM audit WHERE id > $1 ORDER BY id LIMIT $2");
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    e.all(&sql, &[Arg::Int(after), Arg::Int(limit)], |r| {
        audit_entry(r)
    })
    .await
}

/// The number of the last entry the parent acknowledged (0 before the first).
pub(crate) async fn audit_forwarded(e: &mut impl Exec) -> Result<i64, StoreError> {
    let sql = "SELECT value FROM meta WHERE key = 'audit_forwarded'";
    let raw = e.first(sql, &[], |r| Ok(r.text(0)?.parse().ok())).await?;
    Ok(raw.flatten().unwrap_or(0))
}

/// Records that the parent holds every entry up to `upto`; never moves back.
pub(crate) async fn set_audit_forwarded(e: &mut impl Exec, upto: i64) -> Result<(), StoreError> {
    if upto <= audit_forwarded(e).await? {
        return Ok(());
    }
    let sql = "INSERT INTO meta (key, value) VALUES ('audit_forwarded', $1) \
               ON CONFLICT (key) DO UPDATE SET value = excluded.value";
    e.execute(sql, &[Arg::Text(&upto.to_string())]).await?;
    Ok(())
}
