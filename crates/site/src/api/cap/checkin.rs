//! `POST /cap/v1/checkin`: the agent says it is alive and receives its pending instructions
//! and what the site holds of each class.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use invsync_proto::Timestamp;
use invsync_proto::wire::{CheckinRequest, CheckinResponse};

use crate::api::auth::ClientCredentials;
use crate::api::error::ApiError;
use crate::api::plain::Plain;
use crate::state::AppState;

pub async fn apply(
    State(state): State<AppState>,
    token: ClientCredentials,
    plain: Result<Plain, ApiError>,
    headers: axum::http::HeaderMap,
    body: Result<Json<CheckinRequest>, JsonRejection>,
) -> Result<Json<CheckinResponse>, ApiError> {
    let read = match (plain, body) {
        (Ok(Plain), Ok(Json(req))) => Ok(req),
        (Err(encoded), _) => Err(encoded),
        (Ok(Plain), Err(rejection)) => Err(rejection.into()),
    };
    let _req = match read {
        Ok(req) => req,
        Err(refused) => {
            // A refused body stores nothing, but a caller without a valid token is told that
            // first, as the `Client` extractor does on every other CAP route.
            token.check(&state).await?;
            return Err(refused);
        }
    };
    // The credentials are checked in the same read as the check-in itself.
    let found = state
        .store
        .checkin_with_key(token.client_id, &token.key_hash, Timestamp::now())
        .await?;
    let (client, mut resp) = token.accept(&state, found)?;
    if let Some(version) = super::agent_version(&headers) {
        // Written only when it changed; a failure to record it is no reason to refuse the
        // check-in (the next one tries again).
        if let Err(e) = state.store.note_agent_version(client.id, &version).await {
            tracing::warn!(client = %client.name, error = %e, "Could not record the agent's version.");
        }
    }
    resp.agent_interval_secs = state.agent_interval_secs;
    state.metrics.checkin();
    if !resp.instructions.is_empty() {
        tracing::info!(client = %client.name, count = resp.instructions.len(), "Delivered instructions.");
    }
    Ok(Json(resp))
}
