//! `GET /api/v1/sites`: this site and the tree of sites below it, with each one's clients,
//! outbox depth and the age of its last forwarded change (as each last reported it).

use axum::extract::State;
use axum::Json;
use invsync_proto::wire::SitesView;

use crate::api::auth::Admin;
use crate::api::error::ApiError;
use crate::server::AppState;

pub async fn apply(State(state): State<AppState>, _: Admin) -> Result<Json<SitesView>, ApiError> {
    let site = crate::parent::own_status(&state).await?;
    let below = state.store.sites().await?;
    Ok(Json(SitesView { site, below }))
}
