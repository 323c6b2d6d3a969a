//! The web console (`/console/…`): server-rendered pages (askama templates in
//! `crates/site/templates/console/`) with a vendored htmx for partial updates; every page works
//! without JavaScript. One file per page; `session.rs` holds the login sessions and `csrf.rs`
//! the form check. Handlers call the same functions as the admin API (`api/admin/…`,
//! `ownership`), so the console can do nothing the API cannot, and refuses alike.

pub mod assets;
pub mod audit;
pub mod cancel;
pub mod client;
pub mod clients;
pub mod csrf;
pub mod delete;
pub mod login;
pub mod overview;
pub mod queue;
pub mod session;
pub mod software;
pub mod users;

use askama::Template;
use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use invsync_proto::{SiteCode, Timestamp};

use crate::api::error::ApiError;
use crate::audit::Actor;
use crate::state::AppState;
use invsync_proto::wire::Role;
use session::{Flash, Session};

pub const LOGIN_PATH: &str = "/console/login";

/// The console page of a client: `/console/clients/{name}`, with `?site=` for a client of a
/// site below this one (a name may be held by several sites below; the site tells them apart).
pub fn client_href(name: &invsync_proto::ClientName, site: &SiteCode, own: &SiteCode) -> String {
    if site == own {
        format!("/console/clients/{name}")
    } else {
        format!("/console/clients/{name}?site={site}")
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(overview::apply))
        .route(LOGIN_PATH, get(login::form).post(login::apply))
        .route("/console/logout", post(login::logout))
        .route("/console/clients", get(clients::apply))
        .route("/console/clients/{name}", get(client::apply))
        .route(
            "/console/clients/{name}/delete",
            get(delete::confirm).post(delete::apply),
        )
        .route("/console/clients/{name}/{action}", post(queue::apply))
        .route("/console/audit", get(audit::apply))
        .route("/console/users", get(users::list).post(users::add))
        .route("/console/users/{name}/{action}", post(users::act))
        .route(
            "/console/clients/{name}/requests/{id}/cancel",
            post(cancel::apply),
        )
        .route("/console/software", get(software::list))
        .route("/console/software.csv", get(software::list_csv))
        .route("/console/software.json", get(software::list_json))
        .route("/console/software/{name}", get(software::package))
        .route(
            "/console/software/{name}/export.csv",
            get(software::package_csv),
        )
        .route(
            "/console/software/{name}/export.json",
            get(software::package_json),
        )
        .route("/console/assets/htmx.min.js", get(assets::htmx))
        .route("/console/assets/console.css", get(assets::css))
        .layer(axum::middleware::from_fn(headers))
}

/// Pages are never cached (they hold inventories and the CSRF token), never framed
/// (clickjacking), and load scripts and styles from the site only.
///
/// An htmx request (search while typing) whose session ended gets `HX-Redirect` instead of the
/// 303: the browser would follow a 303 inside the request and htmx would swap the login page
/// into the table.
async fn headers(req: Request, next: Next) -> Response {
    let htmx = req.headers().contains_key("hx-request");
    let mut resp = next.run(req).await;
    if htmx
        && resp.status() == StatusCode::SEE_OTHER
        && resp
            .headers()
            .get(LOCATION)
            .is_some_and(|l| l == LOGIN_PATH)
    {
        *resp.status_mut() = StatusCode::OK;
        resp.headers_mut().remove(LOCATION);
        resp.headers_mut()
            .insert("hx-redirect", HeaderValue::from_static(LOGIN_PATH));
    }
    let h = resp.headers_mut();
    if !h.contains_key(CACHE_CONTROL) {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    resp
}

/// Why a console request was not answered with its page.
#[derive(Debug)]
pub enum ConsoleError {
    /// No live session: 303 to the login page.
    LoginNeeded,
    /// 403: a form without this session's CSRF token, or a failed login.
    Forbidden(String),
    /// 400: a malformed form or query.
    BadInput(String),
    /// What the admin API would answer, with its status, as a page.
    Api(ApiError),
}

impl From<ApiError> for ConsoleError {
    fn from(e: ApiError) -> ConsoleError {
        ConsoleError::Api(e)
    }
}

impl From<invsync_store::StoreError> for ConsoleError {
    fn from(e: invsync_store::StoreError) -> ConsoleError {
        ConsoleError::Api(e.into())
    }
}

impl From<crate::ownership::OwnershipError> for ConsoleError {
    fn from(e: crate::ownership::OwnershipError) -> ConsoleError {
        ConsoleError::Api(e.into())
    }
}

impl From<askama::Error> for ConsoleError {
    fn from(e: askama::Error) -> ConsoleError {
        ConsoleError::Api(ApiError::Internal(format!("rendering a console page: {e}")))
    }
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage<'a> {
    status: u16,
    message: &'a str,
}

fn error_page(status: StatusCode, message: &str) -> String {
    ErrorPage {
        status: status.as_u16(),
        message,
    }
    .render()
    .unwrap_or_else(|_| "error".to_string())
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        match self {
            ConsoleError::LoginNeeded => {
                (StatusCode::SEE_OTHER, [(LOCATION, LOGIN_PATH)]).into_response()
            }
            ConsoleError::Forbidden(m) => (
                StatusCode::FORBIDDEN,
                Html(error_page(StatusCode::FORBIDDEN, &m)),
            )
                .into_response(),
            ConsoleError::BadInput(m) => (
                StatusCode::BAD_REQUEST,
                Html(error_page(StatusCode::BAD_REQUEST, &m)),
            )
                .into_response(),
            ConsoleError::Api(e) => {
                // The status (and the refusal `/metrics` counts) come from `api/error.rs`, the one
                // mapping; only the body becomes a page.
                let message = e.to_string();
                let mut resp = e.into_response();
                let page = error_page(resp.status(), &message);
                *resp.body_mut() = Body::from(page);
                resp.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                resp.headers_mut()
                    .remove(axum::http::header::CONTENT_LENGTH);
                resp
            }
        }
    }
}

/// The console's pages need a live session: a request without one is sent to the login form.
impl FromRequestParts<AppState> for Session {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Session, ConsoleError> {
        let session = session::cookie_value(&parts.headers, session::SESSION_COOKIE)
            .and_then(|id| state.console.touch(id))
            .ok_or(ConsoleError::LoginNeeded)?;
        // A user's session lasts only while the user holds the token it logged in with: one
        // removed, rotated or expired since is logged out at its next page.
        if let Some((name, key_hash)) = &session.principal.user {
            let current = state.store.user_auth(name).await?;
            let valid = current.is_some_and(|u| {
                u.key_hash.ct_eq(key_hash)
                    && !u.expired(Timestamp::now())
                    && u.role == session.principal.role
            });
            if !valid {
                state.console.remove(&session.id);
                return Err(ConsoleError::LoginNeeded);
            }
        }
        // A browser with a valid session no longer counts against its address's bound on
        // unauthenticated connections.
        crate::connections::mark_authenticated(&parts.extensions);
        Ok(session)
    }
}

/// What every page's frame shows: the site, who is logged in with which role (which decides
/// the buttons and links a page shows), the logout form's token, a flash message.
pub struct Chrome {
    pub site: SiteCode,
    pub csrf: String,
    pub flash: Option<Flash>,
    pub who: String,
    pub role: Role,
    /// The role may queue requests and events (operator and admin): the buttons are shown.
    pub can_queue: bool,
    /// The role may manage users (admin): the users page is linked.
    pub is_admin: bool,
}

impl Chrome {
    pub fn new(state: &AppState, session: &Session) -> Chrome {
        let role = session.principal.role;
        Chrome {
            site: state.site_code.clone(),
            csrf: session.csrf.clone(),
            flash: state.console.take_flash(&session.id),
            who: session.principal.name.clone(),
            role,
            can_queue: role.allows(Role::Operator),
            is_admin: role.allows(Role::Admin),
        }
    }
}

impl Session {
    /// The session's principal at the request's address, for the audit; refused with the
    /// API's 403 (naming the role needed) when its role is below `needed`. Every console action
    /// checks it server-side, whether or not the page showed the button.
    pub fn actor(
        &self,
        needed: Role,
        address: Option<std::net::IpAddr>,
    ) -> Result<Actor, ConsoleError> {
        if let Some(refusal) = self.principal.lacks(needed) {
            return Err(ConsoleError::Api(ApiError::Forbidden(refusal)));
        }
        Ok(Actor {
            principal: self.principal.clone(),
            address,
        })
    }
}

/// Renders a page.
pub fn render(page: &impl Template) -> Result<Html<String>, ConsoleError> {
    Ok(Html(page.render()?))
}

/// A time as shown on pages: RFC 3339, or "never".
pub fn when(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "never".to_string(), |t| t.rfc3339())
}

/// How long ago a time was, roughly ("4 min ago"), for freshness columns.
pub fn ago(t: Option<Timestamp>) -> String {
    let Some(t) = t else {
        return "never".to_string();
    };
    let secs = (Timestamp::now().millis() - t.millis()).max(0) / 1000;
    match secs {
        0..60 => format!("{secs} s ago"),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86400 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86400),
    }
}
