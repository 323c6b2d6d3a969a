//! `POST /cap/v1/wait`: the push channel. A connected agent keeps this request open; the site
//! answers `{"wake": true}` as soon as an instruction is queued for the client, `{"wake":
//! false}` after the hold time (the agent asks again at once) or when the site shuts down.

use axum::Json;
use axum::extract::State;
use invsync_proto::wire::WaitResponse;

use crate::api::auth::Client;
use crate::hub::Woken;
use crate::state::AppState;

/// How long one long-poll is held. Below common proxy and NAT idle timeouts (60 s and more),
/// so a quiet connection is renewed before something in between cuts it.
pub const HOLD: std::time::Duration = std::time::Duration::from_secs(50);

pub async fn apply(State(state): State<AppState>, client: Client) -> Json<WaitResponse> {
    let woken = state.hub.wait(&client.name, HOLD).await;
    if woken == Woken::Instruction {
        tracing::debug!(client = %client.name, "Woke a connected agent.");
    }
    Json(WaitResponse {
        wake: woken == Woken::Instruction,
    })
}
