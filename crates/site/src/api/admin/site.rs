//! `GET /api/v1/site`: this site's code and name.

use axum::extract::State;
use axum::Json;
use invsync_proto::wire::SiteInfo;

use crate::api::auth::Admin;
use crate::api::error::ApiError;
use crate::server::AppState;

pub async fn apply(State(state): State<AppState>, _: Admin) -> Result<Json<SiteInfo>, ApiError> {
    let meta = state.store.site().await?;
    Ok(Json(SiteInfo { code: meta.code, name: meta.name, parent: None }))
}
