//! `GET /api/v1/sites`: this site and the tree of sites below it, with each one's clients,
//! outbox depth and the age of its last forwarded change (as each last reported it).

use axum::Json;
use axum::extract::State;
use invsync_proto::wire::SitesView;

use crate::api::auth::Viewer;
use crate::api::error::ApiError;
use crate::state::AppState;
use invsync_proto::wire::ErrorBody;

#[utoipa::path(
    get,
    path = "/api/v1/sites",
    tag = "site",
    summary = "This site and every site below it",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The tree of sites", body = SitesView),
        (status = 401, description = "No API token, a wrong one, or an expired one", body = ErrorBody),
        (status = 500, description = "Internal error (detail in the site's log)", body = ErrorBody)
    )
)]
pub async fn apply(State(state): State<AppState>, _: Viewer) -> Result<Json<SitesView>, ApiError> {
    let site = crate::parent::own_status(&state).await?;
    let below = state.store.sites().await?;
    Ok(Json(SitesView { site, below }))
}
