//! [`Plain`]: the check that a request body is sent without a content coding, for the CAP
//! routes that read a small JSON body with axum's `Json` (`/cap/v1/enroll`, `/cap/v1/checkin`).
//! Without it they read a zstd body as JSON and answered 400 "expected value"; a caller that
//! compressed its body is told instead (415) which encodings the route reads. Only reports,
//! large enough to gain from it, accept zstd (`body.rs`).

use axum::extract::FromRequestParts;
use axum::http::header::CONTENT_ENCODING;
use axum::http::request::Parts;

use super::error::ApiError;

/// The request has no `Content-Encoding`, or `identity`.
pub struct Plain;

impl<S: Sync> FromRequestParts<S> for Plain {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Plain, ApiError> {
        let Some(value) = parts.headers.get(CONTENT_ENCODING) else {
            return Ok(Plain);
        };
        let encoding = value.to_str().unwrap_or("?").trim();
        if encoding.eq_ignore_ascii_case("identity") {
            return Ok(Plain);
        }
        let mut shown = encoding.to_string();
        shown.truncate(shown.floor_char_boundary(32));
        Err(ApiError::Unsupported(format!(
            "Content-Encoding {shown:?} is not accepted here; send the JSON body without Content-Encoding \
             (or identity); of the agent's requests only reports accept zstd"
        )))
    }
}
