//! `GET /console/clients/{name}/delete`: the confirmation page of the client page's delete
//! button, naming what goes and what stays; `POST` to the same path (with the session's CSRF
//! token) deletes the client through the site's one deletion
//! ([`crate::lifecycle::delete_client`]), as `invsite delete` and `DELETE
//! /api/v1/clients/{name}` do, and comes back to the client list with a flash message. Only
//! this site's own clients are deleted here; another site's is refused with the ownership
//! module's explanation, as everywhere.

use askama::Template;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{Html, IntoResponse, Response};
use invsync_proto::wire::Role;
use serde::Deserialize;

use super::csrf::Posted;
use super::session::{Flash, Session};
use super::{Chrome, ConsoleError, render, when};
use crate::api::admin::client_name;
use crate::api::error::ApiError;
use crate::api::throttle::Peer;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "console/delete.html")]
struct ConfirmPage {
    chrome: Chrome,
    name: String,
    id: String,
    last_seen: String,
}

/// The confirmation page: what deleting this client does, and the button that does it.
pub async fn confirm(
    State(state): State<AppState>,
    session: Session,
    path: Result<Path<String>, PathRejection>,
) -> Result<Html<String>, ConsoleError> {
    // Only an admin deletes: a lower role is told so before it is asked to confirm.
    session.actor(Role::Admin, None)?;
    let Path(raw) = path.map_err(|r| ConsoleError::BadInput(r.body_text()))?;
    let name = client_name(&raw)?;
    // Resolved as the client page resolves it: exit-5-like refusal for another site's client.
    let own = &state.site_code;
    let view = crate::ownership::view(&state.store, own, &name, Some(own))
        .await
        .map_err(ApiError::from)?;
    render(&ConfirmPage {
        chrome: Chrome::new(&state, &session),
        name: view.name.to_string(),
        id: view.id.to_string(),
        last_seen: when(view.last_seen),
    })
}

/// The confirmed form carries nothing but the CSRF token.
#[derive(Deserialize)]
pub struct DeleteForm {}

/// Deletes the client, then back to the client list with what happened.
pub async fn apply(
    State(state): State<AppState>,
    Peer(peer): Peer,
    path: Result<Path<String>, PathRejection>,
    posted: Posted<DeleteForm>,
) -> Result<Response, ConsoleError> {
    // Checked here whatever the page showed: only an admin deletes.
    let actor = posted.session.actor(Role::Admin, peer)?;
    let Path(raw) = path.map_err(|r| ConsoleError::BadInput(r.body_text()))?;
    let name = client_name(&raw)?;
    let deleted =
        crate::lifecycle::delete_client(&state.store, &actor, &state.site_code, &name, None).await;
    let flash = match deleted {
        Ok(d) => {
            state.forward_wake.notify_one();
            Flash {
                ok: true,
                text: format!(
                    "Deleted {} (client id {}): its history is kept for the retention period \
                     (invsite history {} --deleted).",
                    d.client, d.id, d.client
                ),
            }
        }
        Err(e) => match ApiError::from(e) {
            e @ (ApiError::OtherSite(_) | ApiError::NotFound(_) | ApiError::Conflict(_)) => Flash {
                ok: false,
                text: e.to_string(),
            },
            e => return Err(e.into()),
        },
    };
    state.console.set_flash(&posted.session.id, flash);
    Ok((StatusCode::SEE_OTHER, [(LOCATION, "/console/clients")]).into_response())
}
