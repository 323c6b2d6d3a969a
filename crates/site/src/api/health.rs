//! `GET /healthz`: whether the site can do its work: it answers, its database answers, and the
//! database takes writes. While the last write the database was given failed (disk full, a
//! read-only file, PostgreSQL down) it answers 503 with the reason, so a load balancer or a
//! monitor stops trusting a site that answers every report with an error. A probe (a tiny
//! write, [`Store::probe_write`]) runs here while the store is unwritable, so a site nobody
//! writes to turns healthy again as soon as space returns, and in the background
//! ([`probe_loop`]) so a site nobody writes to also learns that it cannot.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use invsync_proto::Timestamp;
use invsync_store::Store;

use super::error::ApiError;
use crate::state::AppState;

/// How often the background probe writes while the database takes writes: a site with no
/// traffic learns of a full disk within this time.
const PROBE_HEALTHY: Duration = Duration::from_secs(60);
/// How often it writes while the database refuses them: the site turns healthy again within
/// this time after space returns, even if nobody asks.
const PROBE_FAILING: Duration = Duration::from_secs(10);

pub async fn apply(State(state): State<AppState>) -> Result<Response, ApiError> {
    state.store.site().await?;
    if state.store.write_failure().is_some() {
        // The outcome is recorded by the store; the answer below reads it.
        let _ = state.store.probe_write(Timestamp::now()).await;
    }
    Ok(match state.store.write_failure() {
        None => "ok\n".into_response(),
        Some(f) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "unavailable: the database refuses writes since {} ({}: {}); see the site's log\n",
                f.since.rfc3339(),
                f.operation,
                f.error
            ),
        )
            .into_response(),
    })
}

/// Writes a probe every [`PROBE_HEALTHY`] (every [`PROBE_FAILING`] while writes fail), until
/// the task is dropped.
pub async fn probe_loop(store: Store) {
    loop {
        let wait = if store.write_failure().is_some() {
            PROBE_FAILING
        } else {
            PROBE_HEALTHY
        };
        tokio::time::sleep(wait).await;
        // A failure is logged and counted by the store itself.
        let _ = store.probe_write(Timestamp::now()).await;
    }
}
