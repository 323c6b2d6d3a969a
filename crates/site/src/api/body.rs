//! The request-body extractor of the CAP API: JSON, optionally zstd-compressed
//! (`Content-Encoding: zstd`). The size as sent is bounded by the router's body limit and the
//! decompressed size by the site's `max_decoded_bytes`, checked while decompressing, so a small
//! "zstd bomb" cannot make the site allocate more than the limit.

use std::io::Read;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_ENCODING;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::server::AppState;

/// A JSON body of type `T`, decompressed when the agent compressed it.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Body<T>, ApiError> {
        let limits = state.limits;
        let encoding = req
            .headers()
            .get(CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
        let raw = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge(format!(
                    "request body is over the limit max_body_bytes ({} bytes)",
                    limits.max_body_bytes
                ))
            } else {
                ApiError::BadInput(format!("cannot read the request body: {}", r.body_text()))
            }
        })?;
        let value = match encoding.as_deref() {
            None | Some("identity") => parse(&raw)?,
            Some("zstd") => parse(&decode_zstd(&raw, limits.max_decoded_bytes)?)?,
            Some(other) => {
                return Err(ApiError::Unsupported(format!(
                    "Content-Encoding {other:?} is not supported; send zstd or no encoding"
                )));
            }
        };
        Ok(Body(value))
    }
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::BadInput(format!("invalid request body: {e}")))
}

/// Decompresses a zstd body, refusing it as soon as it grows past `limit`.
pub fn decode_zstd(raw: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    thread_local! {
        // A decompression context is ~100 KB that zstd allocates and clears; making one per
        // request was 6% of the site's CPU time under a delta load. One per thread, reused.
        static CONTEXT: std::cell::RefCell<Option<zstd::zstd_safe::DCtx<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    CONTEXT.with_borrow_mut(|slot| {
        let context = match slot {
            Some(c) => c,
            None => slot.insert(
                zstd::zstd_safe::DCtx::try_create()
                    .ok_or_else(|| ApiError::Internal("zstd could not allocate a context".to_string()))?,
            ),
        };
        // A body refused half-way left the context inside its frame.
        context
            .reset(zstd::zstd_safe::ResetDirective::SessionOnly)
            .map_err(|code| ApiError::Internal(format!("zstd reset failed: {}", zstd::zstd_safe::get_error_name(code))))?;
        let decoder = zstd::stream::read::Decoder::with_context(raw, context);
        let mut out = Vec::new();
        // Reading one byte past the limit tells "exactly at the limit" from "over it" without
        // ever holding more than limit + 1 bytes.
        decoder
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| ApiError::BadInput(format!("invalid zstd body: {e}")))?;
        if out.len() > limit {
            return Err(ApiError::TooLarge(format!(
                "request body is over the limit max_decoded_bytes ({limit} bytes) after decompression"
            )));
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bomb() {
        let json = br#"{"a":1}"#;
        let packed = zstd::bulk::compress(json, 3).unwrap();
        assert_eq!(decode_zstd(&packed, 100).unwrap(), json);
        // 10 MB of zeros compresses to a few hundred bytes; a 1 MB limit refuses it.
        let bomb = zstd::bulk::compress(&vec![0u8; 10 << 20], 19).unwrap();
        assert!(bomb.len() < 4096, "{}", bomb.len());
        assert!(matches!(decode_zstd(&bomb, 1 << 20), Err(ApiError::TooLarge(_))));
        assert!(matches!(decode_zstd(b"not zstd", 100), Err(ApiError::BadInput(_))));
        // The thread's context is reused: after a refused bomb and garbage, a good body (and a
        // truncated one, which must not decode as a shorter good one) still decode correctly.
        assert_eq!(decode_zstd(&packed, 100).unwrap(), json);
        assert!(decode_zstd(&packed[..packed.len() - 2], 100).is_err());
        assert_eq!(decode_zstd(&packed, 100).unwrap(), json);
    }
}
