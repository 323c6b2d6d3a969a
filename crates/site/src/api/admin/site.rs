//! `GET /api/v1/site`: this site's code and name, and its parent's code and URL at a child site.

use axum::Json;
use axum::extract::State;
use invsync_proto::wire::SiteInfo;

use crate::api::auth::Viewer;
use crate::api::error::ApiError;
use crate::state::AppState;
use invsync_proto::wire::ErrorBody;

#[utoipa::path(
    get,
    path = "/api/v1/site",
    tag = "site",
    summary = "This site's code and name, and its parent's",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "This site", body = SiteInfo),
        (status = 401, description = "No API token, a wrong one, or an expired one", body = ErrorBody),
        (status = 500, description = "Internal error (detail in the site's log)", body = ErrorBody)
    )
)]
pub async fn apply(State(state): State<AppState>, _: Viewer) -> Result<Json<SiteInfo>, ApiError> {
    let meta = state.store.site().await?;
    Ok(Json(SiteInfo {
        code: meta.code,
        name: meta.name,
        parent: state.parent_code().map(|c| c.to_string()),
        parent_url: state.parent_url.clone(),
    }))
}
