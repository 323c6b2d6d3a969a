//! Who is calling: extractors that authenticate a request once per route group, so handlers
//! never check credentials themselves. [`Viewer`], [`Operator`] and [`Admin`] need an API token
//! (the site's admin token, or a user's) whose role is at least theirs and yield the
//! [`Actor`] the audit names; [`Client`] needs a
//! client token and yields the client it belongs to; [`Child`] needs a child site's token and
//! yields the child's code. Every wrong credential counts against its address's budget
//! ([`super::throttle`]), which turns the refusal into 429 once the budget is spent; valid ones
//! (and enrollment, for a valid secret) mark the connection the request came on authenticated,
//! so it no longer counts against its address's bound on unauthenticated connections
//! (`connections.rs`).

use std::net::IpAddr;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use invsync_proto::wire::{self, ChildToken, ClientToken, Role, UserToken};
use invsync_proto::{ClientName, Digest, SiteCode, Timestamp};
use invsync_store::{Authenticated, ClientAuth};
use uuid::Uuid;

use super::error::ApiError;
use super::throttle::Peer;
use crate::audit::{Actor, Principal, local_actor_header};
use crate::connections::{ConnectionHandle, mark_authenticated};
use crate::secret::ct_eq;
use crate::state::AppState;

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(str::trim)
}

/// Who presented an API token, checked against the role a route needs: the site's own admin
/// token is an admin (named `site-token`, or the `local:<unix user>` a tool on the site server
/// announces in [`wire::ACTOR_HEADER`]); a user's token (`invu.<name>.<key>`) has the user's
/// role while it has not expired. A wrong or expired token is 401 and counts against the
/// address's budget; a right one whose role is too low is 403, naming the role needed.
async fn authorize(parts: &Parts, state: &AppState, needed: Role) -> Result<Actor, ApiError> {
    let peer = Peer::of(parts).0;
    let Some(token) = bearer(parts) else {
        return Err(ApiError::Unauthorized(
            "this endpoint needs an API token: the site's admin token or a user's (Authorization: Bearer …)"
                .to_string(),
        ));
    };
    let principal = principal(state, token, parts.headers.get(wire::ACTOR_HEADER))
        .await?
        .map_err(|refusal| {
            state
                .auth_failures
                .refuse(peer, ApiError::Unauthorized(refusal))
        })?;
    mark_authenticated(&parts.extensions);
    if let Some(refusal) = principal.lacks(needed) {
        return Err(ApiError::Forbidden(refusal));
    }
    Ok(Actor {
        principal,
        address: peer,
    })
}

/// Who `token` stands for, or the sentence that refuses it: the API's check, and the console
/// login's. `local` is the actor header a tool on the site server sent, believed only with the
/// site's own token.
pub async fn principal(
    state: &AppState,
    token: &str,
    local: Option<&axum::http::HeaderValue>,
) -> Result<Result<Principal, String>, ApiError> {
    if let Some(t) = UserToken::parse(token) {
        let Some(user) = state.store.user_auth(&t.name).await? else {
            return Ok(Err(WRONG_TOKEN.to_string()));
        };
        if !user.key_hash.ct_eq(&t.key_hash()) {
            return Ok(Err(WRONG_TOKEN.to_string()));
        }
        if user.expired(Timestamp::now()) {
            let when = user.expires_at.map(|t| t.rfc3339()).unwrap_or_default();
            return Ok(Err(format!(
                "the token of user {} expired at {when}; an admin issues a new one with `invsite user rotate {}`",
                user.name, user.name
            )));
        }
        return Ok(Ok(Principal::user(user.name, user.role, user.key_hash)));
    }
    if ct_eq(token.as_bytes(), state.admin_token.as_bytes()) {
        let local = local
            .and_then(|v| v.to_str().ok())
            .and_then(local_actor_header);
        return Ok(Ok(Principal::site_token(local)));
    }
    Ok(Err(WRONG_TOKEN.to_string()))
}

/// The refusal of a token that is neither the site's nor a user's current one.
const WRONG_TOKEN: &str = "wrong API token: give the site's admin token (`invsite admin-token`) or a user's token (`invsite user add`)";

/// A caller whose role may read: any valid token (the viewer role and above).
pub struct Viewer(pub Actor);
/// A caller who may also queue requests and events and cancel requests (operator and above).
pub struct Operator(pub Actor);
/// A caller who may also delete clients, manage users and change configuration (admin).
pub struct Admin(pub Actor);

macro_rules! role_extractor {
    ($ty:ident, $role:expr) => {
        impl FromRequestParts<AppState> for $ty {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &AppState,
            ) -> Result<$ty, ApiError> {
                authorize(parts, state, $role).await.map($ty)
            }
        }
    };
}

role_extractor!(Viewer, Role::Viewer);
role_extractor!(Operator, Role::Operator);
role_extractor!(Admin, Role::Admin);

/// An enrolled client that presented its own token.
pub struct Client {
    pub id: Uuid,
    pub name: ClientName,
}

/// The refusal of a client token that names no client of this site, or the wrong key.
fn unknown_client() -> ApiError {
    ApiError::Unauthorized("unknown or wrong client token; re-enroll the agent".to_string())
}

/// The refusal of a revoked key, or of a deleted client's (`invsite delete`), which says so:
/// the agent shows it and keeps trying at its interval until someone enrolls it again.
fn revoked_client(auth: &ClientAuth) -> ApiError {
    let name = &auth.name;
    match auth.deleted_at {
        Some(at) => ApiError::Unauthorized(format!(
            "client {name} was deleted at this site at {at} (invsite delete): its inventory and requests are gone; to inventory this machine again, enroll it again"
        )),
        None => ApiError::Unauthorized(format!(
            "the key of {name} was revoked at this site; enroll again"
        )),
    }
}

impl Client {
    /// What a request with this client's presented credentials gets, as the store found them.
    pub fn from_store<T>(found: Authenticated<T>) -> Result<(Client, T), ApiError> {
        match found {
            Authenticated::Client(auth, value) => Ok((
                Client {
                    id: auth.client_id,
                    name: auth.name,
                },
                value,
            )),
            Authenticated::Unknown => Err(unknown_client()),
            Authenticated::Revoked(auth) => Err(revoked_client(&auth)),
        }
    }
}

impl FromRequestParts<AppState> for Client {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Client, ApiError> {
        ClientCredentials::from_request_parts(parts, state)
            .await?
            .check(state)
            .await
    }
}

/// A client token, parsed but not yet checked: for a handler that asks the store to check it
/// in the same read as its own work ([`ClientCredentials::accept`] turns the store's answer
/// into a [`Client`] or the same refusals as the [`Client`] extractor).
pub struct ClientCredentials {
    pub client_id: Uuid,
    pub key_hash: Digest,
    /// Where they came from: a wrong key counts against that address's budget.
    pub peer: Option<IpAddr>,
    /// The connection the request came on, marked authenticated once the credentials are
    /// found valid.
    connection: Option<ConnectionHandle>,
}

impl ClientCredentials {
    /// The client these credentials belong to, or the refusal, from a lookup of their own:
    /// the [`Client`] extractor, and a handler that refuses a request before asking the store
    /// for its work (a caller without a valid token is told that first).
    pub async fn check(&self, state: &AppState) -> Result<Client, ApiError> {
        let found = state
            .store
            .authenticate_key(self.client_id, &self.key_hash)
            .await?;
        Ok(self.accept(state, found)?.0)
    }

    /// [`Client::from_store`] for these credentials: a refusal counts against the caller's
    /// address; an accepted key is remembered in the site's
    /// [`KnownKeys`](super::known_keys::KnownKeys) and makes the connection an
    /// authenticated one.
    pub fn accept<T>(
        &self,
        state: &AppState,
        found: Authenticated<T>,
    ) -> Result<(Client, T), ApiError> {
        match Client::from_store(found) {
            Ok(accepted) => {
                state.known_keys.remember(self.client_id, self.key_hash);
                self.authenticated();
                // The request's span (`crate::http`) names the client from here on; a no-op
                // when the span is disabled, as it is under the default filter.
                tracing::Span::current()
                    .record("client_id", tracing::field::display(&self.client_id));
                Ok(accepted)
            }
            Err(refusal) => Err(state.auth_failures.refuse(self.peer, refusal)),
        }
    }

    /// The store found these credentials valid: their connection is an authenticated one.
    pub fn authenticated(&self) {
        if let Some(c) = &self.connection {
            c.authenticated();
        }
    }
}

impl FromRequestParts<AppState> for ClientCredentials {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<ClientCredentials, ApiError> {
        let peer = Peer::of(parts).0;
        let token = match bearer(parts) {
            Some(raw) => ClientToken::parse(raw)
                .ok_or_else(|| state.auth_failures.refuse(peer, unknown_client()))?,
            None => return Err(unknown_client()),
        };
        let connection = parts.extensions.get::<ConnectionHandle>().cloned();
        Ok(ClientCredentials {
            client_id: token.client_id,
            key_hash: token.key_hash(),
            peer,
            connection,
        })
    }
}

/// A child site that presented the token this site issued for its code.
pub struct Child {
    pub code: SiteCode,
}

impl FromRequestParts<AppState> for Child {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Child, ApiError> {
        let refused = || {
            ApiError::Unauthorized(
                "unknown or wrong child-site token; issue one with `invsite child-token CODE` at this site".to_string(),
            )
        };
        let peer = Peer::of(parts).0;
        let Some(raw) = bearer(parts) else {
            return Err(refused());
        };
        let failed = || state.auth_failures.refuse(peer, refused());
        let token = ChildToken::parse(raw).ok_or_else(failed)?;
        let stored = state
            .store
            .child_key_hash(&token.code)
            .await?
            .ok_or_else(failed)?;
        if !token.key_hash().ct_eq(&stored) {
            return Err(failed());
        }
        mark_authenticated(&parts.extensions);
        Ok(Child { code: token.code })
    }
}
