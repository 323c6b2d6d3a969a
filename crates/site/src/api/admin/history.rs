//! `GET /api/v1/clients/{name}/history?class=hw|sw&since=<RFC 3339>&limit=N`: a client's
//! accepted changes, newest first (what `invsite history` prints).

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use invsync_proto::wire::{HistoryEntry, HistoryQuery};

use super::{client_name, unknown_client};
use crate::api::auth::Admin;
use crate::api::error::ApiError;
use crate::server::AppState;

/// The most entries one request returns, so one call cannot make the site build an unbounded
/// answer.
pub const MAX_LIMIT: usize = 100_000;

pub async fn apply(
    State(state): State<AppState>,
    _: Admin,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<Vec<HistoryEntry>>, ApiError> {
    let Path(raw) = path?;
    let name = client_name(&raw)?;
    let Query(mut query) = query.map_err(|r| ApiError::BadInput(r.body_text()))?;
    query.limit = Some(query.limit.unwrap_or(invsync_store::DEFAULT_HISTORY_LIMIT).min(MAX_LIMIT));
    match state.store.history_query(&name, &query).await? {
        Some(entries) => Ok(Json(entries)),
        None => Err(unknown_client(&name, &state.site_code)),
    }
}
