//! `DELETE /api/v1/clients/{name}[?site=CODE]`: delete (retire) one of this site's clients
//! (`invsite delete`), through the site's one deletion ([`crate::lifecycle::delete_client`]).
//! Its key is revoked, its snapshots and pending requests go, and a tombstone in the outbox
//! makes every site above forget it; its history stays for the retention period. Another
//! site's client is refused with 421, naming the owner and the command to run there.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use invsync_proto::wire::{Deleted, ErrorBody};

use super::client::SiteQuery;
use super::client_name;
use crate::api::auth::Admin;
use crate::api::error::ApiError;
use crate::state::AppState;

#[utoipa::path(
    delete,
    path = "/api/v1/clients/{name}",
    tag = "clients",
    summary = "Delete (retire) a client of this site (`invsite delete`)",
    params(("name" = String, Path, description = "The client name (case-insensitive)"), SiteQuery),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The client is deleted; the sites above forget it once the tombstone is forwarded", body = Deleted),
        (status = 400, description = "A malformed or invalid parameter; the message names it", body = ErrorBody),
        (status = 401, description = "No token, or a wrong, expired or revoked one", body = ErrorBody),
        (status = 403, description = "The token's role is not admin", body = ErrorBody),
        (status = 404, description = "No such client at this site or below it", body = ErrorBody),
        (status = 421, description = "The client belongs to another site; delete it there (the message says how)", body = ErrorBody),
        (status = 500, description = "Internal error (detail in the site's log)", body = ErrorBody),
        (status = 503, description = "The database refuses writes; try again later", body = ErrorBody)
    )
)]
pub async fn apply(
    State(state): State<AppState>,
    Admin(actor): Admin,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<SiteQuery>, QueryRejection>,
) -> Result<Json<Deleted>, ApiError> {
    let Path(raw) = path?;
    let name = client_name(&raw)?;
    let Query(q) = query.map_err(|r| ApiError::BadInput(r.body_text()))?;
    let deleted = crate::lifecycle::delete_client(
        &state.store,
        &actor,
        &state.site_code,
        &name,
        q.site.as_ref(),
    )
    .await?;
    // The tombstone is in the outbox: the parent hears of it now rather than at the heartbeat.
    state.forward_wake.notify_one();
    Ok(Json(deleted))
}
