//! The one place where errors become HTTP status codes. Handlers return [`ApiError`]; its
//! response is always an `ErrorBody` with one sentence for a person, and internal errors are
//! logged here and never shown to the caller. Each error also names its [`Refusal`], the
//! reason `/metrics` counts it under.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use invsync_proto::NameError;
use invsync_proto::wire::ErrorBody;
use invsync_store::StoreError;

use crate::metrics::Refusal;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or a field is invalid.
    #[error("{0}")]
    BadInput(String),
    /// 401: no credential, or a wrong one.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the caller's role does not allow this; the message names the role it needs.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such client, request or route.
    #[error("{0}")]
    NotFound(String),
    /// 409: the request conflicts with what the site holds (a taken name).
    #[error("{0}")]
    Conflict(String),
    /// 421: the client belongs to another site; the message names it and the command to run
    /// there (`invsync` exits 5).
    #[error("{0}")]
    OtherSite(String),
    /// 413: the body is larger than the site accepts.
    #[error("{0}")]
    TooLarge(String),
    /// 415: a body encoding the site does not read.
    #[error("{0}")]
    Unsupported(String),
    /// 503: the site cannot do it now but will once an operator acts (its database refuses
    /// writes); try again later. The store logged the cause once, at ERROR; the detail is not
    /// shown to the caller.
    #[error("the site cannot store anything now; try again later")]
    Unavailable(String),
    /// 429: the caller's address failed too many credential checks lately
    /// ([`super::throttle`]); `Retry-After` says in how many seconds it may fail again.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
    /// 408: the request did not arrive within the request deadline; its connection is closed.
    #[error("{0}")]
    TimedOut(String),
    /// 501: a request framing the site refuses (a transfer coding other than `chunked`).
    #[error("{0}")]
    NotImplemented(String),
    /// 500: something the caller cannot fix; the detail goes to the log only.
    #[error("internal error")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NameTaken { .. } => ApiError::Conflict(e.to_string()),
            StoreError::UnknownClient { .. } => ApiError::NotFound(e.to_string()),
            StoreError::UnknownRequest { .. } => ApiError::NotFound(e.to_string()),
            StoreError::UnknownUser(_) => ApiError::NotFound(e.to_string()),
            StoreError::UserExists(_) => ApiError::Conflict(e.to_string()),
            StoreError::NotCancellable(_) => ApiError::Conflict(e.to_string()),
            StoreError::OtherSite(_) => ApiError::OtherSite(e.to_string()),
            StoreError::BadReport(_) => ApiError::BadInput(e.to_string()),
            StoreError::CodeInUse(_) => ApiError::Conflict(e.to_string()),
            StoreError::Refused(_) => ApiError::BadInput(e.to_string()),
            StoreError::Unwritable { .. } => ApiError::Unavailable(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<crate::ownership::OwnershipError> for ApiError {
    fn from(e: crate::ownership::OwnershipError) -> ApiError {
        use crate::ownership::OwnershipError as O;
        match e {
            O::Unknown { .. } => ApiError::NotFound(e.to_string()),
            O::Elsewhere { .. } => ApiError::OtherSite(e.to_string()),
            O::Ambiguous { .. } => ApiError::Conflict(e.to_string()),
            O::NotAccepting { .. } => ApiError::OtherSite(e.to_string()),
            O::Store(s) => s.into(),
        }
    }
}

impl From<crate::users::UserError> for ApiError {
    fn from(e: crate::users::UserError) -> ApiError {
        match e {
            crate::users::UserError::BadInput(m) => ApiError::BadInput(m),
            crate::users::UserError::Store(s) => s.into(),
        }
    }
}

impl From<NameError> for ApiError {
    fn from(e: NameError) -> ApiError {
        ApiError::BadInput(e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        if let Some(timeout) = body_timeout(&r) {
            return ApiError::TimedOut(timeout.to_string());
        }
        match r {
            JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::TooLarge("request body is over the limit max_body_bytes".to_string())
            }
            other => ApiError::BadInput(format!("invalid request body: {}", other.body_text())),
        }
    }
}

/// What the request deadline answers: the body did not arrive in time. The connection loop
/// (`crate::http`) makes it when a body misses its deadline; it travels inside axum's rejection
/// as the body's error, and [`body_timeout`] finds it there. The connection is closed after the
/// response, since the rest of the body may still come.
#[derive(Debug, thiserror::Error)]
#[error(
    "the request body did not arrive in time (request_timeout_secs {timeout_secs} s after the head, \
     plus one second per min_body_rate {min_body_rate} bytes received)"
)]
pub struct BodyTimeout {
    pub timeout_secs: u64,
    pub min_body_rate: u64,
}

/// The request deadline's error, when a body read failed because of it (it travels inside
/// axum's rejection, as the body's error).
pub fn body_timeout<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyTimeout> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(t) = e.downcast_ref::<BodyTimeout>() {
            return Some(t);
        }
        next = e.source();
    }
    None
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> ApiError {
        ApiError::BadInput(r.body_text())
    }
}

impl ApiError {
    /// The `reason` label of `invsite_requests_refused_total`: one per variant, so the metric
    /// is derived here, where the status is, and cannot drift from it.
    pub fn refusal(&self) -> Refusal {
        match self {
            ApiError::BadInput(_) => Refusal::BadInput,
            ApiError::Unauthorized(_) => Refusal::Unauthorized,
            ApiError::Forbidden(_) => Refusal::Forbidden,
            ApiError::NotFound(_) => Refusal::NotFound,
            ApiError::Conflict(_) => Refusal::Conflict,
            ApiError::OtherSite(_) => Refusal::OtherSite,
            ApiError::TooLarge(_) => Refusal::TooLarge,
            ApiError::Unsupported(_) => Refusal::Unsupported,
            ApiError::TooManyRequests { .. } => Refusal::RateLimited,
            ApiError::TimedOut(_) => Refusal::TimedOut,
            ApiError::NotImplemented(_) => Refusal::NotImplemented,
            ApiError::Internal(_) => Refusal::Internal,
            ApiError::Unavailable(_) => Refusal::Unavailable,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let refusal = self.refusal();
        let status = match &self {
            ApiError::BadInput(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::OtherSite(_) => StatusCode::MISDIRECTED_REQUEST,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(detail) => {
                tracing::debug!(error = %detail, "Refused a request while the database refuses writes.");
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::TimedOut(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Internal(detail) => {
                // An operator must act: the database or the machine is failing.
                tracing::error!(error = %detail, "A request failed inside the site.");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        if status.is_client_error() {
            tracing::debug!(status = status.as_u16(), error = %self, "Refused a request.");
        }
        let retry_after = match &self {
            ApiError::TooManyRequests {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        };
        // The reason travels with the response to the layer that counts it
        // (`metrics::count_refusals`); this conversion has no state to count in.
        let mut response = (
            status,
            axum::Extension(refusal),
            Json(ErrorBody {
                error: self.to_string(),
            }),
        )
            .into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Unknown routes answer with the same error body as everything else.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(reason: Refusal) -> ApiError {
        let m = "m".to_string();
        match reason {
            Refusal::BadInput => ApiError::BadInput(m),
            Refusal::Unauthorized => ApiError::Unauthorized(m),
            Refusal::Forbidden => ApiError::Forbidden(m),
            Refusal::NotFound => ApiError::NotFound(m),
            Refusal::Conflict => ApiError::Conflict(m),
            Refusal::OtherSite => ApiError::OtherSite(m),
            Refusal::TooLarge => ApiError::TooLarge(m),
            Refusal::Unsupported => ApiError::Unsupported(m),
            Refusal::RateLimited => ApiError::TooManyRequests {
                message: m,
                retry_after_secs: 7,
            },
            Refusal::TimedOut => ApiError::TimedOut(m),
            Refusal::NotImplemented => ApiError::NotImplemented(m),
            Refusal::Internal => ApiError::Internal(m),
            Refusal::Unavailable => ApiError::Unavailable(m),
            Refusal::Other => unreachable!("no ApiError maps to other"),
        }
    }

    #[test]
    fn every_error_response_carries_its_reason() {
        let expected = [
            (Refusal::BadInput, StatusCode::BAD_REQUEST, "bad_input"),
            (
                Refusal::Unauthorized,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
            ),
            (Refusal::Forbidden, StatusCode::FORBIDDEN, "forbidden"),
            (Refusal::NotFound, StatusCode::NOT_FOUND, "not_found"),
            (Refusal::Conflict, StatusCode::CONFLICT, "conflict"),
            (
                Refusal::OtherSite,
                StatusCode::MISDIRECTED_REQUEST,
                "other_site",
            ),
            (
                Refusal::TooLarge,
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
            ),
            (
                Refusal::Unsupported,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported",
            ),
            (
                Refusal::RateLimited,
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
            ),
            (Refusal::TimedOut, StatusCode::REQUEST_TIMEOUT, "timed_out"),
            (
                Refusal::NotImplemented,
                StatusCode::NOT_IMPLEMENTED,
                "not_implemented",
            ),
            (
                Refusal::Internal,
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
            ),
            (
                Refusal::Unavailable,
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
            ),
        ];
        for (reason, status, label) in expected {
            let e = error(reason);
            assert_eq!(e.refusal(), reason);
            let response = e.into_response();
            assert_eq!(response.status(), status);
            assert_eq!(response.extensions().get::<Refusal>(), Some(&reason));
            assert_eq!(reason.as_str(), label);
        }
        // Every reason but `other` came from an ApiError above; `ALL` lists each once.
        assert_eq!(Refusal::ALL.len(), expected.len() + 1);
    }
}
