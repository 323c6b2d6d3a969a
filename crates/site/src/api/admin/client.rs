//! `GET /api/v1/clients/{name}[?site=CODE]`: one client this site holds (its own, or one of a
//! site below) with its snapshots and requests (the JSON of `invsite show`).

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use invsync_proto::wire::ClientView;

use super::client_name;
use crate::api::auth::Admin;
use crate::api::error::ApiError;
use crate::server::AppState;

pub async fn apply(
    State(state): State<AppState>,
    _: Admin,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<SiteQuery>, QueryRejection>,
) -> Result<Json<ClientView>, ApiError> {
    let Path(raw) = path?;
    let name = client_name(&raw)?;
    let Query(q) = query.map_err(|r| ApiError::BadInput(r.body_text()))?;
    let view = crate::ownership::view(&state.store, &state.site_code, &name, q.site.as_ref()).await?;
    Ok(Json(view))
}

/// `?site=CODE`: which site's client, when several sites below this one hold the name.
#[derive(Debug, serde::Deserialize)]
pub struct SiteQuery {
    pub site: Option<invsync_proto::SiteCode>,
}
