//! `GET /healthz`: the site answers and its database answers.

use axum::extract::State;

use super::error::ApiError;
use crate::server::AppState;

pub async fn apply(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    state.store.site().await?;
    Ok("ok\n")
}
