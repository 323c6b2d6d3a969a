//! `GET /metrics`: the site's counters and gauges ([`crate::metrics`], where each metric is
//! explained) in the Prometheus text format, with the gauges read from the store and the push
//! hub at scrape time. Public, like `/healthz`: it holds only counts.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use invsync_proto::Timestamp;

use super::error::ApiError;
use crate::state::AppState;

/// `GET /metrics`.
pub async fn apply(State(state): State<AppState>) -> Result<Response, ApiError> {
    let now = Timestamp::now();
    let outbox = state.store.outbox_stats().await?;
    let age = outbox
        .oldest
        .map_or(0.0, |t| (now.millis() - t.millis()).max(0) as f64 / 1000.0);
    state
        .metrics
        .set_store_write_errors(state.store.write_errors_total());
    state
        .metrics
        .set_clients_stale(state.store.stale_count().await?);
    let page = state
        .metrics
        .render(state.hub.connected(), outbox.depth, age);
    Ok((
        [(
            CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        page,
    )
        .into_response())
}
