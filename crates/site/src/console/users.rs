//! `GET|POST /console/users` and `POST /console/users/{name}/{remove|rotate}`: the site's
//! administrators, for the admin role only (any other role gets 403 naming it, whether or not
//! its pages linked here). Adding or rotating shows the new token once, on the page that
//! answers the form, never in a flash or a redirect; the work is `crate::users`, as for
//! `invsite user` and the admin API.

use askama::Template;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{Html, IntoResponse, Response};
use invsync_proto::Timestamp;
use invsync_proto::wire::{Role, UserIssued};
use serde::Deserialize;

use super::csrf::Posted;
use super::session::{Flash, Session};
use super::{Chrome, ConsoleError, render, when};
use crate::api::error::ApiError;
use crate::api::throttle::Peer;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "console/users.html")]
struct UsersPage {
    chrome: Chrome,
    users: Vec<Row>,
    /// A token just issued: shown this once.
    issued: Option<Issued>,
}

struct Row {
    name: String,
    role: String,
    created: String,
    expires: String,
    expired: bool,
}

struct Issued {
    name: String,
    token: String,
}

async fn page(
    state: &AppState,
    session: &Session,
    issued: Option<UserIssued>,
) -> Result<Html<String>, ConsoleError> {
    let users = state
        .store
        .users(Timestamp::now())
        .await?
        .into_iter()
        .map(|u| Row {
            name: u.name.to_string(),
            role: u.role.to_string(),
            created: u.created_at.rfc3339(),
            expires: when(u.expires_at),
            expired: u.expired,
        })
        .collect();
    render(&UsersPage {
        chrome: Chrome::new(state, session),
        users,
        issued: issued.map(|i| Issued {
            name: i.user.name.to_string(),
            token: i.token,
        }),
    })
}

pub async fn list(
    State(state): State<AppState>,
    Peer(peer): Peer,
    session: Session,
) -> Result<Html<String>, ConsoleError> {
    session.actor(Role::Admin, peer)?;
    page(&state, &session, None).await
}

#[derive(Deserialize)]
pub struct AddForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    /// Empty: the token does not expire.
    #[serde(default)]
    expires: String,
}

pub async fn add(
    State(state): State<AppState>,
    Peer(peer): Peer,
    posted: Posted<AddForm>,
) -> Result<Response, ConsoleError> {
    let actor = posted.session.actor(Role::Admin, peer)?;
    let f = &posted.form;
    let role = Role::parse(f.role.trim()).map_err(ConsoleError::BadInput)?;
    let expires = Some(f.expires.trim()).filter(|e| !e.is_empty());
    let issued = crate::users::add(&state.store, &actor, f.name.trim(), role, expires)
        .await
        .map_err(ApiError::from)?;
    Ok((
        StatusCode::CREATED,
        page(&state, &posted.session, Some(issued)).await?,
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct ActForm {}

pub async fn act(
    State(state): State<AppState>,
    Peer(peer): Peer,
    path: Result<Path<(String, String)>, PathRejection>,
    posted: Posted<ActForm>,
) -> Result<Response, ConsoleError> {
    let actor = posted.session.actor(Role::Admin, peer)?;
    let Path((name, action)) = path.map_err(|r| ConsoleError::BadInput(r.body_text()))?;
    match action.as_str() {
        "rotate" => {
            let issued = crate::users::rotate(&state.store, &actor, &name, None)
                .await
                .map_err(ApiError::from)?;
            Ok(page(&state, &posted.session, Some(issued))
                .await?
                .into_response())
        }
        "remove" => {
            let removed = crate::users::remove(&state.store, &actor, &name)
                .await
                .map_err(ApiError::from)?;
            let flash = Flash {
                ok: true,
                text: format!("Removed user {removed}: its token no longer works."),
            };
            state.console.set_flash(&posted.session.id, flash);
            Ok((StatusCode::SEE_OTHER, [(LOCATION, "/console/users")]).into_response())
        }
        other => Err(ConsoleError::BadInput(format!("unknown action {other:?}"))),
    }
}
