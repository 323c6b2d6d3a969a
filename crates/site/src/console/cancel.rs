//! `POST /console/clients/{name}/requests/{id}/cancel`: the client page's button that cancels a
//! pending resync request. It calls what `DELETE /api/v1/requests/{id}` calls
//! (`Store::cancel_request`), so it does what `invsync cancel` does; the outcome, or the refusal
//! (picked up, complete, routed to a site below, unknown), is a flash message on the client
//! page (post/redirect/get).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use invsync_proto::wire::Role;
use invsync_proto::{SiteCode, Timestamp};
use serde::Deserialize;

use super::ConsoleError;
use super::csrf::Posted;
use super::session::Flash;
use crate::api::admin::client_name;
use crate::api::error::ApiError;
use crate::api::throttle::Peer;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct CancelForm {
    /// The site whose client the page showed, to come back to the same page.
    #[serde(default)]
    site: Option<SiteCode>,
}

pub async fn apply(
    State(state): State<AppState>,
    Peer(peer): Peer,
    path: Result<Path<(String, String)>, PathRejection>,
    posted: Posted<CancelForm>,
) -> Result<Response, ConsoleError> {
    // Checked here whatever the page showed: a viewer's session is refused with 403.
    let actor = posted.session.actor(Role::Operator, peer)?;
    let Path((raw, raw_id)) = path.map_err(|r| ConsoleError::BadInput(r.body_text()))?;
    let name = client_name(&raw)?;
    let id = match raw_id.parse::<i64>() {
        Ok(id) if id > 0 => id,
        _ => {
            return Err(ConsoleError::BadInput(format!(
                "{raw_id:?} is not a request id (a whole number above zero)"
            )));
        }
    };
    let result = state
        .store
        .cancel_request(id, Timestamp::now())
        .await
        .map_err(ApiError::from);
    if let Ok(c) = &result {
        crate::api::admin::request_cancel::record(&state, &actor, id, c).await;
    }
    let flash = match result {
        Ok(c) if c.already_cancelled => Flash {
            ok: true,
            text: format!("Request {id} was already {}.", c.request.state.as_str()),
        },
        Ok(c) => Flash {
            ok: true,
            text: format!(
                "Cancelled request {id} ({} for {}).",
                c.request.class, c.client
            ),
        },
        // Refusals the page explains; anything else is an error page with the API's status.
        Err(e @ (ApiError::OtherSite(_) | ApiError::NotFound(_) | ApiError::Conflict(_))) => {
            Flash {
                ok: false,
                text: e.to_string(),
            }
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(client = %name, id, ok = flash.ok, "Console: cancel a request.");
    state.console.set_flash(&posted.session.id, flash);
    let back = match posted.form.site {
        Some(site) => format!("/console/clients/{name}?site={site}"),
        None => format!("/console/clients/{name}"),
    };
    Ok((StatusCode::SEE_OTHER, [(LOCATION, back)]).into_response())
}
