//! `GET /api/v1/clients/{name}[?site=CODE]`: one client this site holds (its own, or one of a
//! site below) with its snapshots and requests (the JSON of `invsite show`).

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use invsync_proto::wire::ClientView;

use super::client_name;
use crate::api::auth::Viewer;
use crate::api::error::ApiError;
use crate::state::AppState;
use invsync_proto::wire::ErrorBody;

#[utoipa::path(
    get,
    path = "/api/v1/clients/{name}",
    tag = "clients",
    summary = "One client with its snapshots and requests (`invsite show`)",
    params(("name" = String, Path, description = "The client name (case-insensitive)"), SiteQuery),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The client", body = ClientView),
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
    query: Result<Query<SiteQuery>, QueryRejection>,
) -> Result<Json<ClientView>, ApiError> {
    let Path(raw) = path?;
    let name = client_name(&raw)?;
    let Query(q) = query.map_err(|r| ApiError::BadInput(r.body_text()))?;
    let view =
        crate::ownership::view(&state.store, &state.site_code, &name, q.site.as_ref()).await?;
    Ok(Json(view))
}

/// `?site=CODE`: which site's client, when several sites below this one hold the name.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SiteQuery {
    pub site: Option<invsync_proto::SiteCode>,
}
