//! `GET /api/v1/clients/{name}/history?class=hw|sw&since=<RFC 3339>&limit=N&site=CODE`: a client's
//! accepted changes, newest first (what `invsite history` prints).

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use invsync_proto::wire::{HistoryEntry, HistoryQuery};

use super::client_name;
use crate::api::auth::Viewer;
use crate::api::error::ApiError;
use crate::state::AppState;
use invsync_proto::wire::ErrorBody;

/// The most entries one request returns, so one call cannot make the site build an unbounded
/// answer.
pub const MAX_LIMIT: usize = 100_000;

#[utoipa::path(
    get,
    path = "/api/v1/clients/{name}/history",
    tag = "clients",
    summary = "A client's accepted item changes, newest first (`invsite history`)",
    params(("name" = String, Path, description = "The client name (case-insensitive)"), Params),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The changes", body = Vec<HistoryEntry>),
        (status = 400, description = "A malformed or invalid parameter; the message names it", body = ErrorBody),
        (status = 401, description = "No API token, a wrong one, or an expired one", body = ErrorBody),
        (status = 404, description = "No such client or request at this site", body = ErrorBody),
        (status = 409, description = "Several sites below hold a client of this name: give `site`", body = ErrorBody),
        (status = 500, description = "Internal error (detail in the site's log)", body = ErrorBody)
    )
)]
pub async fn apply(
    State(state): State<AppState>,
    _: Viewer,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<Params>, QueryRejection>,
) -> Result<Json<Vec<HistoryEntry>>, ApiError> {
    let Path(raw) = path?;
    let name = client_name(&raw)?;
    let Query(q) = query.map_err(|r| ApiError::BadInput(r.body_text()))?;
    let query = HistoryQuery {
        class: q.class,
        since: q.since,
        limit: Some(
            q.limit
                .unwrap_or(invsync_store::DEFAULT_HISTORY_LIMIT)
                .min(MAX_LIMIT),
        ),
    };
    let entries = crate::ownership::history(
        &state.store,
        &state.site_code,
        &name,
        q.site.as_ref(),
        &query,
    )
    .await?;
    Ok(Json(entries))
}

/// The query string: the [`HistoryQuery`] fields and `site` for a name held by several sites.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Params {
    pub class: Option<invsync_proto::Class>,
    pub since: Option<invsync_proto::Timestamp>,
    pub limit: Option<usize>,
    pub site: Option<invsync_proto::SiteCode>,
}
