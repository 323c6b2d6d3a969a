//! `POST /cap/v1/ack`: the agent acted on these event instructions; they are complete.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use invsync_proto::Timestamp;
use invsync_proto::wire::AckRequest;

use crate::api::auth::Client;
use crate::api::error::ApiError;
use crate::state::AppState;

pub async fn apply(
    State(state): State<AppState>,
    client: Client,
    body: Result<Json<AckRequest>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(req) = body?;
    if req.done.len() > 10_000 {
        return Err(ApiError::BadInput(
            "too many ids in one acknowledgement".to_string(),
        ));
    }
    state
        .store
        .complete_events(client.id, &req.done, Timestamp::now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
