//! The console's static files, compiled into the binary so the console works offline and
//! needs no CDN: htmx 2.0.11 (`crates/site/assets/htmx.min.js`, from the npm package
//! `htmx.org`, BSD Zero-Clause licence in `htmx.LICENSE`) and the hand-written stylesheet.
//! Served with a long cache lifetime; a new htmx version gets a new file name if browsers must
//! refetch it at once.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;

const HTMX: &[u8] = include_bytes!("../../assets/htmx.min.js");
const CSS: &[u8] = include_bytes!("../../assets/console.css");
const CACHE: &str = "public, max-age=604800";

pub async fn htmx() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (CACHE_CONTROL, CACHE),
        ],
        HTMX,
    )
}

pub async fn css() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (CACHE_CONTROL, CACHE),
        ],
        CSS,
    )
}
