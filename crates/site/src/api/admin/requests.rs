//! `POST /api/v1/clients/{name}/requests`: queue a resync request (what `invsync` does). A
//! second request for the same client and class while one is pending is the same request;
//! the answer says so with `created: false`.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use invsync_proto::wire::{Queued, ResyncRequestBody};
use invsync_proto::Timestamp;
use invsync_store::StoreError;

use super::client_name;
use crate::api::auth::Admin;
use crate::api::error::ApiError;
use crate::server::AppState;

pub async fn apply(
    State(state): State<AppState>,
    _: Admin,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<ResyncRequestBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Queued>), ApiError> {
    let Path(raw) = path?;
    let name = client_name(&raw)?;
    let Json(req) = body?;
    let queued = match state.store.request_resync(&name, req.class, Timestamp::now()).await {
        Err(StoreError::UnknownClient { .. }) => {
            let command = format!("invsync {} {name}", req.class);
            return Err(crate::ownership::not_own(&state.store, &state.site_code, &name, &command).await.into());
        }
        other => other?,
    };
    tracing::info!(client = %name, class = %req.class, id = queued.id, created = queued.created, "Queued a resync request.");
    let status = if queued.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(queued)))
}
