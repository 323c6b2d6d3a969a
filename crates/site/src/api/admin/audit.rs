//! `GET /api/v1/audit?since=<RFC 3339>&user=NAME&limit=N`: the audit trail, newest first (every
//! role may read it: see docs/decisions.md). There is no route that changes or removes an
//! entry; only the retention period's pruning removes old ones.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use invsync_proto::Timestamp;
use invsync_proto::wire::{AuditPage, AuditQuery, ErrorBody};

use crate::api::auth::Viewer;
use crate::api::error::ApiError;
use crate::state::AppState;

#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "audit",
    summary = "Who did what, when, from where, at which site: newest first",
    params(Params),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The matching entries, newest first", body = AuditPage),
        (status = 400, description = "A malformed or invalid parameter; the message names it", body = ErrorBody),
        (status = 401, description = "No API token, a wrong one, or an expired one", body = ErrorBody),
        (status = 500, description = "Internal error (detail in the site's log)", body = ErrorBody)
    )
)]
pub async fn apply(
    State(state): State<AppState>,
    _: Viewer,
    query: Result<Query<Params>, QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let Query(p) = query.map_err(|r| ApiError::BadInput(r.body_text()))?;
    let q = AuditQuery {
        since: p.since,
        user: p.user,
        limit: p.limit,
    };
    if let Some(problem) = q.problem() {
        return Err(ApiError::BadInput(problem));
    }
    Ok(Json(AuditPage {
        entries: state.store.audit(&q).await?,
    }))
}

/// The query string; every parameter is optional.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Params {
    /// Only entries at or after this time (RFC 3339).
    pub since: Option<Timestamp>,
    /// Only entries of this actor: a user name, `site-token` or `local:<unix user>`.
    pub user: Option<String>,
    /// Entries at most, 1 to 1000 (default 100).
    pub limit: Option<u32>,
}
