//! `POST /console/clients/{name}/{resync-hw|resync-sw|cycle}`: the client page's buttons. They
//! call the admin API's own functions (`api::admin::requests::queue`, `events::queue`), so a
//! button does exactly what `invsync hw|sw` or `setevnt CLIENT cycle` does, including the
//! refusal for a client owned by another site with the ownership module's explanation. The
//! outcome is a flash message on the client page (post/redirect/get). They need the operator
//! role, checked here whether or not the page showed them (a viewer's page does not).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use invsync_proto::wire::{Event, Role};
use invsync_proto::{Class, SiteCode};
use serde::Deserialize;

use super::ConsoleError;
use super::csrf::Posted;
use super::session::Flash;
use crate::api::admin::{client_name, events, requests};
use crate::api::error::ApiError;
use crate::api::throttle::Peer;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct ActionForm {
    /// The site whose client the page showed, to come back to the same page.
    #[serde(default)]
    site: Option<SiteCode>,
}

pub async fn apply(
    State(state): State<AppState>,
    Peer(peer): Peer,
    path: Result<Path<(String, String)>, PathRejection>,
    posted: Posted<ActionForm>,
) -> Result<Response, ConsoleError> {
    // Checked here whatever the page showed: a viewer's session is refused with 403.
    let actor = posted.session.actor(Role::Operator, peer)?;
    let Path((raw, action)) = path.map_err(|r| ConsoleError::BadInput(r.body_text()))?;
    let name = client_name(&raw)?;
    let result = match action.as_str() {
        "resync-hw" => requests::queue(&state, &actor, &name, Class::Hw, false, None)
            .await
            .map(|q| (q, "hardware resync")),
        "resync-sw" => requests::queue(&state, &actor, &name, Class::Sw, false, None)
            .await
            .map(|q| (q, "software resync")),
        "cycle" => events::queue(&state, &actor, &name, Event::Cycle)
            .await
            .map(|q| (q, "cycle event")),
        other => return Err(ConsoleError::BadInput(format!("unknown action {other:?}"))),
    };
    let flash = match result {
        Ok((q, what)) if q.created => Flash {
            ok: true,
            text: format!("Queued {what} request {} for {name}.", q.id),
        },
        Ok((q, what)) => Flash {
            ok: true,
            text: format!(
                "A {what} request for {name} was already pending: request {}.",
                q.id
            ),
        },
        // Refusals the page explains (another site's client, an unknown one); anything else is
        // an error page with the API's status.
        Err(e @ (ApiError::OtherSite(_) | ApiError::NotFound(_) | ApiError::Conflict(_))) => {
            Flash {
                ok: false,
                text: e.to_string(),
            }
        }
        Err(e) => return Err(e.into()),
    };
    state.console.set_flash(&posted.session.id, flash);
    let back = match posted.form.site {
        Some(site) => format!("/console/clients/{name}?site={site}"),
        None => format!("/console/clients/{name}"),
    };
    Ok((StatusCode::SEE_OTHER, [(LOCATION, back)]).into_response())
}
