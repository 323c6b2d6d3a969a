//! The request bodies of the CAP and site-to-site APIs: JSON, optionally zstd-compressed
//! (`Content-Encoding: zstd`), read only once the caller is known, within the router's body
//! limit (`max_body_bytes`), and decoded within bounds (`decode.rs`).
//!
//! A body is read and decoded only after the caller's credentials were checked: the [`Body`]
//! extractor runs after the route's authenticating extractor, and `POST /cap/v1/report`, which
//! checks the key in the same store read as the report, first vouches for the key
//! ([`crate::api::known_keys`]) before it reads the body at all.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_ENCODING;
use serde::de::DeserializeOwned;

use super::decode;
use super::error::ApiError;
use crate::state::AppState;

/// A request body as sent: read (within `max_body_bytes`) but not decoded.
pub struct RawBody {
    bytes: Bytes,
    zstd: bool,
}

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<RawBody, ApiError> {
        let limits = state.limits;
        let encoding = req
            .headers()
            .get(CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
        let zstd = match encoding.as_deref() {
            None | Some("identity") => false,
            Some("zstd") => true,
            Some(other) => {
                return Err(ApiError::Unsupported(format!(
                    "Content-Encoding {other:?} is not supported; send zstd or no encoding"
                )));
            }
        };
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            // A body that missed the request deadline (the connection is closed after it).
            if let Some(timeout) = super::error::body_timeout(&r) {
                return ApiError::TimedOut(timeout.to_string());
            }
            if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge(format!(
                    "request body is over the limit max_body_bytes ({} bytes)",
                    limits.max_body_bytes
                ))
            } else {
                ApiError::BadInput(format!("cannot read the request body: {}", r.body_text()))
            }
        })?;
        Ok(RawBody { bytes, zstd })
    }
}

impl RawBody {
    /// The body as a `T`, decompressed first when it was sent compressed.
    pub async fn parse<T: DeserializeOwned + Send + 'static>(
        self,
        state: &AppState,
    ) -> Result<T, ApiError> {
        if !self.zstd {
            return decode::parse(&self.bytes);
        }
        state.metrics.body_decoded();
        decode::parse_zstd(&state.decoders, self.bytes, state.limits.max_decoded_bytes).await
    }
}

/// How long a refused request's unread body is read and thrown away at most.
const DISCARD_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads and throws away the body of a request refused before its body was read (up to
/// `max_body_bytes`, for at most [`DISCARD_TIME`]), holding one read buffer at a time: the
/// connection would otherwise close with the body still arriving, and a sender still writing
/// a large body sees its connection reset instead of the refusal.
pub async fn discard(request: Request, state: &AppState) {
    use axum::body::HttpBody;
    let limit = state.limits.max_body_bytes;
    let mut body = std::pin::pin!(request.into_body());
    let read = async {
        let mut seen = 0usize;
        while seen <= limit {
            match std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
                Some(Ok(frame)) => seen += frame.data_ref().map_or(0, |d| d.len()),
                _ => return,
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_TIME, read).await;
}

/// A JSON body of type `T`, decompressed when the sender compressed it. Put it after the
/// route's authenticating extractor: nothing is read before that one accepted the caller.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned + Send + 'static> FromRequest<AppState> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Body<T>, ApiError> {
        Ok(Body(
            RawBody::from_request(req, state)
                .await?
                .parse(state)
                .await?,
        ))
    }
}
