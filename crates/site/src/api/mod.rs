//! The HTTP API of a site: routes, the one place errors become status codes (`error.rs`), and
//! the extractors that authenticate callers (`auth.rs`) and read bodies (`body.rs`). One file
//! per handler under `cap/` (agents), `admin/` (administrators) and `site/` (child sites), with
//! `health.rs` and `metrics.rs` for `/healthz` and `/metrics`. `decode.rs`, `known_keys.rs` and
//! `throttle.rs` are parts the site's state (`crate::state`) holds: they name neither the state
//! nor a handler, so the state can name them.

pub mod admin;
pub mod auth;
pub mod body;
pub mod cap;
pub mod decode;
pub mod error;
pub mod export;
pub mod health;
pub mod known_keys;
pub mod metrics;
pub mod openapi;
pub mod plain;
pub mod site;
pub mod throttle;

use axum::Router;
use axum::routing::{get, post};
use invsync_proto::wire;

use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::apply))
        .route("/metrics", get(metrics::apply))
        .route(wire::CAP_ENROLL, post(cap::enroll::apply))
        .route(wire::CAP_CHECKIN, post(cap::checkin::apply))
        .route(wire::CAP_REPORT, post(cap::report::apply))
        .route(wire::CAP_ACK, post(cap::ack::apply))
        .route(wire::SITE_HELLO, post(site::hello::apply))
        .route(wire::SITE_FORWARD, post(site::forward::apply))
        // The admin API: one list of routes, shared with its OpenAPI document.
        .merge(openapi::router())
        .merge(crate::console::router())
        .fallback(error::not_found)
        // Outside the routes and the fallback, so every error response passes it, whatever
        // made it.
        .layer(axum::middleware::map_response_with_state(
            state.metrics.clone(),
            crate::metrics::count_refusals,
        ))
        // The push channel's long-poll is added after the counting layer, so it is not wrapped
        // by it: every connected agent keeps one parked for up to a minute, and the layer's
        // per-request state would be paid once per connected agent (measured ~2 KB, against a
        // budget of 20 KB per idle connection). Its refusals are therefore not in
        // `invsite_requests_refused_total`; an agent refused here is refused at its check-in too.
        .route(wire::CAP_WAIT, post(cap::wait::apply))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.limits.max_body_bytes,
        ))
        .with_state(state)
}
