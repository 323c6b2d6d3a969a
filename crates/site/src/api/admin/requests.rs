//! `POST /api/v1/clients/{name}/requests`: queue a resync request (what `invsync` does). A
//! second request for the same client and class while one is pending is the same request;
//! the answer says so with `created: false`. With `via_child` (`invsync --via-child`), a
//! request for a client of a site below is routed down to its owner instead of refused.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use invsync_proto::wire::{AuditAction, Queued, ResyncRequestBody};
use invsync_proto::{Class, ClientName, SiteCode, Timestamp};
use invsync_store::StoreError;

use super::client_name;
use crate::api::auth::Operator;
use crate::api::error::ApiError;
use crate::audit::{self, Actor};
use crate::state::AppState;
use invsync_proto::wire::ErrorBody;

#[utoipa::path(
    post,
    path = "/api/v1/clients/{name}/requests",
    tag = "requests",
    summary = "Queue a resync request (`invsync`)",
    params(("name" = String, Path, description = "The client name (case-insensitive)")),
    request_body = ResyncRequestBody,
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "Queued", body = Queued),
        (status = 200, description = "An identical request was pending and stands for this one", body = Queued),
        (status = 400, description = "A malformed or invalid parameter; the message names it", body = ErrorBody),
        (status = 401, description = "No API token, a wrong one, or an expired one", body = ErrorBody),
        (status = 404, description = "No such client or request at this site", body = ErrorBody),
        (status = 409, description = "Several sites below hold a client of this name: give `site`", body = ErrorBody),
        (status = 421, description = "The client belongs to another site; the message names it and the command to run there", body = ErrorBody),
        (status = 413, description = "The body is over the site's limit", body = ErrorBody),
        (status = 500, description = "Internal error (detail in the site's log)", body = ErrorBody)
    )
)]
pub async fn apply(
    State(state): State<AppState>,
    Operator(actor): Operator,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<ResyncRequestBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Queued>), ApiError> {
    let Path(raw) = path?;
    let name = client_name(&raw)?;
    let Json(req) = body?;
    if req.site.is_some() && !req.via_child {
        return Err(ApiError::BadInput(
            "`site` names the owning site a request is routed to; it needs `via_child`".to_string(),
        ));
    }
    let queued = queue(
        &state,
        &actor,
        &name,
        req.class,
        req.via_child,
        req.site.as_ref(),
    )
    .await?;
    let status = if queued.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(queued)))
}

/// Queues a resync request as this endpoint does: routed down with `via_child`, else for an own
/// client only, with the ownership module's explanation for another site's client; wakes the
/// agent, counts it and records it in the audit as `actor`'s. The console's buttons call this
/// too, so both refuse, log and audit alike.
pub async fn queue(
    state: &AppState,
    actor: &Actor,
    name: &ClientName,
    class: Class,
    via_child: bool,
    site: Option<&SiteCode>,
) -> Result<Queued, ApiError> {
    let now = Timestamp::now();
    let queued = if via_child {
        crate::ownership::route_resync(&state.store, &state.site_code, name, class, site, now)
            .await?
    } else {
        match state.store.request_resync(name, class, now).await {
            Err(StoreError::UnknownClient { .. }) => {
                let command = format!("invsync {} {name}", class);
                return Err(crate::ownership::not_own(
                    &state.store,
                    &state.site_code,
                    name,
                    &command,
                )
                .await
                .into());
            }
            other => other?,
        }
    };
    match &queued.routed_to {
        Some(owner) => {
            tracing::info!(client = %name, class = %class, id = queued.id, created = queued.created, %owner, "Queued a resync request to route down to the owning site.")
        }
        None => {
            tracing::info!(client = %name, class = %class, id = queued.id, created = queued.created, "Queued a resync request.")
        }
    }
    let details = match &queued.routed_to {
        Some(owner) => format!("{class}, id {}, routed to {owner}", queued.id),
        None if queued.created => format!("{class}, id {}", queued.id),
        None => format!("{class}, id {} (already pending)", queued.id),
    };
    audit::record(
        &state.store,
        actor,
        AuditAction::Request,
        Some(queued.client.to_string()),
        Some(details),
    )
    .await;
    // Wake the agent if it is connected; a request merged into a pending one wakes it too,
    // which costs nothing and helps after a lost wake-up. A routed request's agent is at the
    // owning site (woken there when the request arrives); here the name may even be another
    // client's, one of this site's own.
    if queued.routed_to.is_none() {
        state.hub.wake(&queued.client);
        // A merged request is not a new one; a routed one completes, and is counted, at the
        // owning site.
        if queued.created {
            state.metrics.resync_requested(class);
        }
    }
    Ok(queued)
}
