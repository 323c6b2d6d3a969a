//! `POST /cap/v1/checkin`: the agent says it is alive and receives its pending instructions
//! and what the site holds of each class.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::Json;
use invsync_proto::wire::{CheckinRequest, CheckinResponse};
use invsync_proto::Timestamp;

use crate::api::auth::Client;
use crate::api::error::ApiError;
use crate::server::AppState;

pub async fn apply(
    State(state): State<AppState>,
    client: Client,
    body: Result<Json<CheckinRequest>, JsonRejection>,
) -> Result<Json<CheckinResponse>, ApiError> {
    let Json(_req) = body?;
    let resp = state.store.checkin(client.id, Timestamp::now()).await?;
    state.metrics.checkin();
    if !resp.instructions.is_empty() {
        tracing::info!(client = %client.name, count = resp.instructions.len(), "Delivered instructions.");
    }
    Ok(Json(resp))
}
