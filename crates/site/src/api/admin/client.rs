//! `GET /api/v1/clients/{name}`: one client with its snapshots and requests (the JSON of
//! `invsite show`).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::Json;
use invsync_proto::wire::ClientView;

use super::{client_name, unknown_client};
use crate::api::auth::Admin;
use crate::api::error::ApiError;
use crate::server::AppState;

pub async fn apply(
    State(state): State<AppState>,
    _: Admin,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<ClientView>, ApiError> {
    let Path(raw) = path?;
    let name = client_name(&raw)?;
    match state.store.client_view(&name).await? {
        Some(view) => Ok(Json(view)),
        None => Err(unknown_client(&name, state.site_code.as_str())),
    }
}
