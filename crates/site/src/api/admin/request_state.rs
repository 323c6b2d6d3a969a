//! `GET /api/v1/requests/{id}`: where one resync request stands (for `invsync --wait`).

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use invsync_proto::wire::RequestView;

use crate::api::auth::Viewer;
use crate::api::error::ApiError;
use crate::state::AppState;
use invsync_proto::wire::ErrorBody;

#[utoipa::path(
    get,
    path = "/api/v1/requests/{id}",
    tag = "requests",
    summary = "Where one resync request stands (`invsync --wait`)",
    params(("id" = i64, Path, description = "The request id at this site")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The request", body = RequestView),
        (status = 400, description = "A malformed or invalid parameter; the message names it", body = ErrorBody),
        (status = 401, description = "No API token, a wrong one, or an expired one", body = ErrorBody),
        (status = 404, description = "No such client or request at this site", body = ErrorBody),
        (status = 500, description = "Internal error (detail in the site's log)", body = ErrorBody)
    )
)]
pub async fn apply(
    State(state): State<AppState>,
    _: Viewer,
    path: Result<Path<i64>, PathRejection>,
) -> Result<Json<RequestView>, ApiError> {
    let Path(id) = path?;
    state
        .store
        .request_state(id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no request {id} at this site")))
}
