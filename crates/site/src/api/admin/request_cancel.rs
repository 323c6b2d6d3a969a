//! `DELETE /api/v1/requests/{id}`: cancel a resync request that is still pending (`invsync
//! cancel`), so its agent never receives it. Cancelling one already cancelled (or expired)
//! answers it again; one already picked up completes as usual (409); one routed down to a site
//! below is cancelled there (421).

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use invsync_proto::Timestamp;
use invsync_proto::wire::{AuditAction, Cancelled, ErrorBody};

use crate::api::auth::Operator;
use crate::api::error::ApiError;
use crate::audit::{self, Actor};
use crate::state::AppState;

#[utoipa::path(
    delete,
    path = "/api/v1/requests/{id}",
    tag = "requests",
    summary = "Cancel a pending resync request (`invsync cancel`)",
    params(("id" = i64, Path, description = "The request id at this site")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The request is cancelled (`already_cancelled`: it was before, or it expired)", body = Cancelled),
        (status = 400, description = "A malformed or invalid parameter; the message names it", body = ErrorBody),
        (status = 401, description = "No API token, a wrong one, or an expired one", body = ErrorBody),
        (status = 404, description = "No such request at this site", body = ErrorBody),
        (status = 409, description = "The request was already picked up or is complete; it completes as usual", body = ErrorBody),
        (status = 421, description = "The request was routed down to the client's owning site; cancel it there", body = ErrorBody),
        (status = 500, description = "Internal error (detail in the site's log)", body = ErrorBody),
        (status = 503, description = "The database refuses writes; try again later", body = ErrorBody)
    )
)]
pub async fn apply(
    State(state): State<AppState>,
    Operator(actor): Operator,
    path: Result<Path<i64>, PathRejection>,
) -> Result<Json<Cancelled>, ApiError> {
    let Path(id) = path?;
    if id < 1 {
        return Err(ApiError::BadInput(format!(
            "{id} is not a request id (a whole number above zero)"
        )));
    }
    let cancelled = state.store.cancel_request(id, Timestamp::now()).await?;
    record(&state, &actor, id, &cancelled).await;
    Ok(Json(cancelled))
}

/// Records a cancel in the audit: the API's and the console's, so both say the same.
pub async fn record(state: &AppState, actor: &Actor, id: i64, cancelled: &Cancelled) {
    let already = if cancelled.already_cancelled {
        " (already cancelled)"
    } else {
        ""
    };
    audit::record(
        &state.store,
        actor,
        AuditAction::Cancel,
        Some(id.to_string()),
        Some(format!(
            "{} request of {}{already}",
            cancelled.request.class, cancelled.client
        )),
    )
    .await;
}
