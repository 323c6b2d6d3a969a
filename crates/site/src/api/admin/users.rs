//! `/api/v1/users`: the site's administrators (admin role only). `GET` lists them (never their
//! tokens); `POST` adds one and answers its personal token, shown this once;
//! `DELETE /api/v1/users/{name}` removes one (its token stops working at once);
//! `POST /api/v1/users/{name}/rotate` issues a new token. The work is `crate::users`, which
//! `invsite user` and the console's users page call too, and which records each change in the
//! audit.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use invsync_proto::Timestamp;
use invsync_proto::wire::{ErrorBody, NewUserBody, RotateBody, UserIssued, UserView};

use crate::api::auth::Admin;
use crate::api::error::ApiError;
use crate::state::AppState;

#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "users",
    summary = "The site's administrators and their roles (admin role)",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every user, sorted by name", body = Vec<UserView>),
        (status = 401, description = "No API token, a wrong one, or an expired one", body = ErrorBody),
        (status = 500, description = "Internal error (detail in the site's log)", body = ErrorBody)
    )
)]
pub async fn list(
    State(state): State<AppState>,
    _: Admin,
) -> Result<Json<Vec<UserView>>, ApiError> {
    Ok(Json(state.store.users(Timestamp::now()).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "users",
    summary = "Add a user with a role; answers its personal token, shown this once (admin role)",
    request_body = NewUserBody,
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "Added; the token is in the answer", body = UserIssued),
        (status = 400, description = "A bad name, role or duration; the message names it", body = ErrorBody),
        (status = 401, description = "No API token, a wrong one, or an expired one", body = ErrorBody),
        (status = 409, description = "A user of this name exists", body = ErrorBody),
        (status = 413, description = "The body is over the site's limit", body = ErrorBody),
        (status = 500, description = "Internal error (detail in the site's log)", body = ErrorBody),
        (status = 503, description = "The database refuses writes; try again later", body = ErrorBody)
    )
)]
pub async fn add(
    State(state): State<AppState>,
    Admin(actor): Admin,
    body: Result<Json<NewUserBody>, JsonRejection>,
) -> Result<(StatusCode, Json<UserIssued>), ApiError> {
    let Json(b) = body?;
    let issued =
        crate::users::add(&state.store, &actor, &b.name, b.role, b.expires.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(issued)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/users/{name}",
    tag = "users",
    summary = "Remove a user; its token stops working at once (admin role)",
    params(("name" = String, Path, description = "The user name")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Removed; the user as it was", body = UserView),
        (status = 400, description = "A malformed or invalid parameter; the message names it", body = ErrorBody),
        (status = 401, description = "No API token, a wrong one, or an expired one", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 500, description = "Internal error (detail in the site's log)", body = ErrorBody),
        (status = 503, description = "The database refuses writes; try again later", body = ErrorBody)
    )
)]
pub async fn remove(
    State(state): State<AppState>,
    Admin(actor): Admin,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<UserView>, ApiError> {
    let Path(raw) = path?;
    let before = state.store.users(Timestamp::now()).await?;
    let name = crate::users::remove(&state.store, &actor, &raw).await?;
    before
        .into_iter()
        .find(|u| u.name == name)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("unknown user {name}")))
}

#[utoipa::path(
    post,
    path = "/api/v1/users/{name}/rotate",
    tag = "users",
    summary = "Issue a user a new token; the old one stops working at once (admin role)",
    params(("name" = String, Path, description = "The user name")),
    request_body = RotateBody,
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The new token, shown this once", body = UserIssued),
        (status = 400, description = "A bad name or duration; the message names it", body = ErrorBody),
        (status = 401, description = "No API token, a wrong one, or an expired one", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 413, description = "The body is over the site's limit", body = ErrorBody),
        (status = 500, description = "Internal error (detail in the site's log)", body = ErrorBody),
        (status = 503, description = "The database refuses writes; try again later", body = ErrorBody)
    )
)]
pub async fn rotate(
    State(state): State<AppState>,
    Admin(actor): Admin,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<RotateBody>, JsonRejection>,
) -> Result<Json<UserIssued>, ApiError> {
    let Path(raw) = path?;
    let Json(b) = body?;
    let issued = crate::users::rotate(&state.store, &actor, &raw, b.expires.as_deref()).await?;
    Ok(Json(issued))
}
