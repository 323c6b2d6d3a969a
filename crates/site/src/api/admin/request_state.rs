//! `GET /api/v1/requests/{id}`: where one resync request stands (for `invsync --wait`).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::Json;
use invsync_proto::wire::RequestView;

use crate::api::auth::Admin;
use crate::api::error::ApiError;
use crate::server::AppState;

pub async fn apply(
    State(state): State<AppState>,
    _: Admin,
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
