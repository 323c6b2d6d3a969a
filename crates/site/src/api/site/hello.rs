//! `POST /site/v1/hello`: a child site checks its credential and announces itself. Refused: a
//! wrong token, a token issued for another code, a code already in use in this site's tree.

use axum::Json;
use axum::extract::State;
use invsync_proto::Timestamp;
use invsync_proto::wire::{ChildHello, ChildWelcome};

use super::check_sender;
use crate::api::auth::Child;
use crate::api::body::Body;
use crate::api::error::ApiError;
use crate::state::AppState;

pub async fn apply(
    State(state): State<AppState>,
    child: Child,
    Body(hello): Body<ChildHello>,
) -> Result<Json<ChildWelcome>, ApiError> {
    check_sender(&child, &hello.status)?;
    state
        .store
        .record_site_status(&child.code, &[hello.status], Timestamp::now())
        .await?;
    tracing::info!(child = %child.code, "A child site connected.");
    Ok(Json(ChildWelcome {
        parent: state.site_code.clone(),
    }))
}
