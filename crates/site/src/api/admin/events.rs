//! `POST /api/v1/clients/{name}/events`: queue a Set Client Event wake-up (what `setevnt` does).

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use invsync_proto::wire::{AuditAction, Event, EventRequestBody, Queued};
use invsync_proto::{ClientName, Timestamp};
use invsync_store::StoreError;

use super::client_name;
use crate::api::auth::Operator;
use crate::api::error::ApiError;
use crate::audit::{self, Actor};
use crate::state::AppState;
use invsync_proto::wire::ErrorBody;

#[utoipa::path(
    post,
    path = "/api/v1/clients/{name}/events",
    tag = "requests",
    summary = "Queue a Set Client Event wake-up (`setevnt`)",
    params(("name" = String, Path, description = "The client name (case-insensitive)")),
    request_body = EventRequestBody,
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "Queued", body = Queued),
        (status = 200, description = "An identical event was pending and stands for this one", body = Queued),
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
    body: Result<Json<EventRequestBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Queued>), ApiError> {
    let Path(raw) = path?;
    let name = client_name(&raw)?;
    let Json(req) = body?;
    let queued = queue(&state, &actor, &name, req.event).await?;
    let status = if queued.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(queued)))
}

/// Queues a client event as this endpoint does (the ownership module's explanation for another
/// site's client; wakes the agent; records it in the audit as `actor`'s). The console's "Cycle
/// now" button calls this too.
pub async fn queue(
    state: &AppState,
    actor: &Actor,
    name: &ClientName,
    event: Event,
) -> Result<Queued, ApiError> {
    let queued = match state
        .store
        .request_event(name, event, Timestamp::now())
        .await
    {
        Err(StoreError::UnknownClient { .. }) => {
            let command = format!("setevnt {name} {}", event.as_str());
            return Err(
                crate::ownership::not_own(&state.store, &state.site_code, name, &command)
                    .await
                    .into(),
            );
        }
        other => other?,
    };
    tracing::info!(client = %name, event = event.as_str(), id = queued.id, created = queued.created, "Queued a client event.");
    let pending = if queued.created {
        ""
    } else {
        " (already pending)"
    };
    audit::record(
        &state.store,
        actor,
        AuditAction::Event,
        Some(queued.client.to_string()),
        Some(format!("{}, id {}{pending}", event.as_str(), queued.id)),
    )
    .await;
    // Wake the agent if it is connected; a request merged into a pending one wakes it too,
    // which costs nothing and helps after a lost wake-up.
    state.hub.wake(&queued.client);
    Ok(queued)
}
