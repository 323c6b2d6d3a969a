//! `GET /api/v1/requests?state=pending|picked_up|complete|cancelled|expired&class=hw|sw&limit=&offset=`: the resync
//! requests of every client this site holds, newest first, each with its client, and how many
//! match in all; `limit` is 1 to 1000 (100 when absent).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use invsync_proto::Class;
use invsync_proto::wire::{DEFAULT_PAGE_LIMIT, RequestPage, RequestQuery, RequestState};

use crate::api::auth::Viewer;
use crate::api::error::ApiError;
use crate::state::AppState;
use invsync_proto::wire::ErrorBody;

#[utoipa::path(
    get,
    path = "/api/v1/requests",
    tag = "requests",
    summary = "Resync requests of every client, newest first",
    params(Params),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "A page of requests and how many match", body = RequestPage),
        (status = 400, description = "A malformed or invalid parameter; the message names it", body = ErrorBody),
        (status = 401, description = "No API token, a wrong one, or an expired one", body = ErrorBody),
        (status = 500, description = "Internal error (detail in the site's log)", body = ErrorBody)
    )
)]
pub async fn apply(
    State(state): State<AppState>,
    _: Viewer,
    query: Result<Query<Params>, QueryRejection>,
) -> Result<Json<RequestPage>, ApiError> {
    let Query(p) = query.map_err(|r| ApiError::BadInput(r.body_text()))?;
    let q = RequestQuery {
        state: p.state,
        class: p.class,
        limit: p.limit.unwrap_or(DEFAULT_PAGE_LIMIT),
        offset: p.offset.unwrap_or(0),
    };
    if let Some(problem) = q.problem() {
        return Err(ApiError::BadInput(problem));
    }
    Ok(Json(state.store.requests_page(&q).await?))
}

/// The query string; every parameter is optional.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Params {
    /// Only requests in this state.
    pub state: Option<RequestState>,
    /// Only requests for this class.
    pub class: Option<Class>,
    /// Requests per page, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// Requests of the list to skip first.
    pub offset: Option<u64>,
}
