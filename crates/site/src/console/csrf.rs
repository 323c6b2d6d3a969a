//! CSRF protection for every console form. A session has a random token; each POST must carry
//! it in the hidden form field `csrf`, or, for htmx requests, in the `X-CSRF-Token` (or
//! `HX-CSRF-Token`) header, compared in constant time. [`Posted`] is the only way a console
//! handler reads a form, so no POST handler can forget the check. The login form, before any
//! session exists, uses a double-submit cookie instead (see `login.rs`).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::ConsoleError;
use super::session::Session;
use crate::secret::ct_eq;
use crate::state::AppState;

/// The headers an htmx request may carry the token in.
const HEADERS: [&str; 2] = ["x-csrf-token", "hx-csrf-token"];

#[derive(Deserialize)]
struct Field {
    csrf: Option<String>,
}

/// The token a request presents: a header first (htmx), else the form field.
fn presented(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let header = HEADERS
        .iter()
        .find_map(|h| headers.get(*h)?.to_str().ok().map(str::to_string));
    header.or_else(|| serde_urlencoded::from_bytes::<Field>(body).ok()?.csrf)
}

/// Whether `given` is `expected`, in time that does not depend on how much of it matched.
pub fn valid(given: Option<&str>, expected: &str) -> bool {
    given.is_some_and(|g| ct_eq(g.as_bytes(), expected.as_bytes()))
}

/// A form posted in a live session with its CSRF token: no session answers with the login
/// page, a missing or wrong token with 403, before the handler runs.
pub struct Posted<T> {
    pub session: Session,
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<AppState> for Posted<T> {
    type Rejection = ConsoleError;

    async fn from_request(req: Request, state: &AppState) -> Result<Posted<T>, ConsoleError> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, state).await?;
        let req = Request::from_parts(parts, body);
        let headers = req.headers().clone();
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| ConsoleError::BadInput("the form could not be read".to_string()))?;
        if !valid(presented(&headers, &bytes).as_deref(), &session.csrf) {
            return Err(ConsoleError::Forbidden(
                "this form was refused: it did not carry this session's CSRF token. \
                 Reload the page and submit it again"
                    .to_string(),
            ));
        }
        let form = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| ConsoleError::BadInput(format!("invalid form: {e}")))?;
        Ok(Posted { session, form })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_from_header_or_field() {
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h, b"csrf=abc&x=1").as_deref(), Some("abc"));
        assert_eq!(presented(&h, b"x=1"), None);
        h.insert("x-csrf-token", "def".parse().unwrap());
        assert_eq!(presented(&h, b"csrf=abc").as_deref(), Some("def"));
        assert!(valid(Some("abc"), "abc"));
        assert!(!valid(Some("abd"), "abc"));
        assert!(!valid(None, "abc"));
    }
}
