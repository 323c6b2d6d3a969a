//! `GET|POST /console/login` and `POST /console/logout`. The login form takes the site's admin
//! token (`invsite admin-token`) or a user's personal token (`invsite user add`), checked as the
//! API checks them (`api::auth::principal`); the session then has that token's role. Each login,
//! and each refused one, is recorded in the audit. Before a
//! session exists, the form is protected against login CSRF by a double-submit cookie: a random
//! value both in an `HttpOnly; SameSite=Strict` cookie and in the form, which another origin can
//! neither read nor set.

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::ConsoleError;
use super::csrf::{Posted, valid};
use super::session::{LOGIN_COOKIE, SESSION_COOKIE, cookie_value};
use crate::api::error::ApiError;
use crate::api::throttle::Peer;
use crate::audit::{self, Actor, Principal};
use crate::state::AppState;
use invsync_proto::wire::{AuditAction, Role, UserToken};

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage<'a> {
    site: &'a str,
    csrf: &'a str,
    error: Option<&'a str>,
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

/// How long the login form stays usable, in seconds.
const LOGIN_FORM_SECS: u64 = 3600;

fn login_page(
    state: &AppState,
    status: StatusCode,
    error: Option<&str>,
) -> Result<Response, ConsoleError> {
    let csrf = crate::secret::random_hex();
    let page = LoginPage {
        site: state.site_code.as_str(),
        csrf: &csrf,
        error,
    }
    .render()?;
    let cookie = state
        .console
        .cookie(LOGIN_COOKIE, &csrf, Some(LOGIN_FORM_SECS));
    Ok((status, [(SET_COOKIE, cookie)], Html(page)).into_response())
}

pub async fn form(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ConsoleError> {
    // Already logged in: nothing to do here.
    if cookie_value(&headers, SESSION_COOKIE)
        .and_then(|id| state.console.touch(id))
        .is_some()
    {
        return Ok((StatusCode::SEE_OTHER, [(LOCATION, "/console/")]).into_response());
    }
    login_page(&state, StatusCode::OK, None)
}

pub async fn apply(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let form: LoginForm = serde_urlencoded::from_bytes(&body)
        .map_err(|e| ConsoleError::BadInput(format!("invalid login form: {e}")))?;
    let expected = cookie_value(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !valid(Some(&form.csrf), expected) {
        return Err(ConsoleError::Forbidden(
            "this login form was refused: it did not come from this site's login page (CSRF check). \
             Open the login page again"
                .to_string(),
        ));
    }
    let token = form.token.trim();
    let found = crate::api::auth::principal(&state, token, None).await?;
    let principal = match found {
        Ok(p) => p,
        Err(wrong) => {
            // Counted like the API's wrong tokens; past the address's budget the answer is the
            // API's 429 (with `Retry-After`) as a page, not the form again.
            let refusal = state
                .auth_failures
                .refuse(peer, ApiError::Unauthorized(wrong.clone()));
            // The audit names whom the token claimed to be, never the token.
            let claimed = UserToken::parse(token)
                .map(|t| t.name.to_string())
                .unwrap_or_else(|| "unknown".to_string());
            let actor = Actor {
                principal: Principal {
                    name: claimed,
                    role: Role::Viewer,
                    user: None,
                },
                address: peer,
            };
            audit::record(
                &state.store,
                &actor,
                AuditAction::LoginFailed,
                None,
                Some(wrong.clone()),
            )
            .await;
            if let ApiError::TooManyRequests { .. } = refusal {
                return Err(refusal.into());
            }
            tracing::info!("Refused a console login with a wrong token.");
            return login_page(&state, StatusCode::FORBIDDEN, Some(&wrong));
        }
    };
    let actor = Actor {
        principal: principal.clone(),
        address: peer,
    };
    audit::record(
        &state.store,
        &actor,
        AuditAction::Login,
        None,
        Some(format!("console, role {}", principal.role)),
    )
    .await;
    let id = state.console.create(principal);
    tracing::info!("Console login.");
    let mut resp = (StatusCode::SEE_OTHER, [(LOCATION, "/console/")]).into_response();
    let h = resp.headers_mut();
    h.append(
        SET_COOKIE,
        state
            .console
            .cookie(SESSION_COOKIE, &id, None)
            .parse()
            .expect("a cookie is a header value"),
    );
    h.append(
        SET_COOKIE,
        state
            .console
            .cookie(LOGIN_COOKIE, "", Some(0))
            .parse()
            .expect("a cookie is a header value"),
    );
    Ok(resp)
}

#[derive(Deserialize)]
pub struct Empty {}

pub async fn logout(State(state): State<AppState>, posted: Posted<Empty>) -> Response {
    state.console.remove(&posted.session.id);
    let cookie = state.console.cookie(SESSION_COOKIE, "", Some(0));
    (
        StatusCode::SEE_OTHER,
        [
            (LOCATION, super::LOGIN_PATH.to_string()),
            (SET_COOKIE, cookie),
        ],
    )
        .into_response()
}
