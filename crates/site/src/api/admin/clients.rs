//! `GET /api/v1/clients`: every client of this site, sorted by name.

use axum::extract::State;
use axum::Json;
use invsync_proto::wire::ClientSummary;

use crate::api::auth::Admin;
use crate::api::error::ApiError;
use crate::server::AppState;

pub async fn apply(State(state): State<AppState>, _: Admin) -> Result<Json<Vec<ClientSummary>>, ApiError> {
    Ok(Json(state.store.clients().await?))
}
