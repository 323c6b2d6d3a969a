//! The admin API's routes in one list, and its OpenAPI 3.1 document derived from the code
//! (utoipa): `GET /api/v1/openapi.json`. The router registers exactly [`routes`], and a test
//! checks that each of them is in the document with its method, so the two cannot drift apart.
//!
//! The document needs no token: it describes the API and holds no data (SECURITY.md).

use std::sync::OnceLock;

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::{MethodFilter, MethodRouter, on};
use invsync_proto::wire::{self, Role};
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

use super::admin;
use crate::state::AppState;

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// One route of the admin API.
pub struct ApiRoute {
    pub path: &'static str,
    pub method: Method,
    /// The role it needs (`None`: no token, the document itself). The handler's extractor
    /// enforces it; the document states it as `x-invsync-role` for the tests and clients.
    pub role: Option<Role>,
    pub handler: MethodRouter<AppState>,
}

fn route<H, T>(path: &'static str, method: Method, role: Role, handler: H) -> ApiRoute
where
    H: Handler<T, AppState>,
    T: 'static,
{
    ApiRoute {
        role: Some(role),
        ..open_route(path, method, handler)
    }
}

/// A route that needs no token.
fn open_route<H, T>(path: &'static str, method: Method, handler: H) -> ApiRoute
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("a method axum routes");
    ApiRoute {
        path,
        method,
        role: None,
        handler: on(filter, handler),
    }
}

/// Every `/api/v1` route, with its method and handler; each handler carries its
/// `#[utoipa::path]`, listed in [`ApiDoc`].
pub fn routes() -> Vec<ApiRoute> {
    use Role::{Admin, Operator, Viewer};
    vec![
        route(wire::API_SITE, Method::GET, Viewer, admin::site::apply),
        route(wire::API_SITES, Method::GET, Viewer, admin::sites::apply),
        route(
            wire::API_CLIENTS,
            Method::GET,
            Viewer,
            admin::clients::apply,
        ),
        route(
            "/api/v1/clients/{name}",
            Method::GET,
            Viewer,
            admin::client::apply,
        ),
        route(
            "/api/v1/clients/{name}",
            Method::DELETE,
            Admin,
            admin::client_delete::apply,
        ),
        route(
            "/api/v1/clients/{name}/requests",
            Method::POST,
            Operator,
            admin::requests::apply,
        ),
        route(
            "/api/v1/clients/{name}/events",
            Method::POST,
            Operator,
            admin::events::apply,
        ),
        route(
            "/api/v1/clients/{name}/history",
            Method::GET,
            Viewer,
            admin::history::apply,
        ),
        route(
            "/api/v1/requests",
            Method::GET,
            Viewer,
            admin::request_list::apply,
        ),
        route(
            "/api/v1/requests/{id}",
            Method::GET,
            Viewer,
            admin::request_state::apply,
        ),
        route(
            "/api/v1/requests/{id}",
            Method::DELETE,
            Operator,
            admin::request_cancel::apply,
        ),
        route(
            "/api/v1/software",
            Method::GET,
            Viewer,
            admin::software::holders,
        ),
        route(
            "/api/v1/software/packages",
            Method::GET,
            Viewer,
            admin::software::packages,
        ),
        route(wire::API_AUDIT, Method::GET, Viewer, admin::audit::apply),
        route(wire::API_USERS, Method::GET, Admin, admin::users::list),
        route(wire::API_USERS, Method::POST, Admin, admin::users::add),
        route(
            "/api/v1/users/{name}",
            Method::DELETE,
            Admin,
            admin::users::remove,
        ),
        route(
            "/api/v1/users/{name}/rotate",
            Method::POST,
            Admin,
            admin::users::rotate,
        ),
        open_route(OPENAPI_PATH, Method::GET, apply),
    ]
}

/// The router of [`routes`].
pub fn router() -> Router<AppState> {
    routes()
        .into_iter()
        .fold(Router::new(), |r, route| r.route(route.path, route.handler))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "invsync site admin API",
        description = "What `invsync`, `setevnt`, `invsite` and the web console do, with an API token as `Authorization: Bearer <token>`: the site's admin token (`invsite admin-token`, an admin) or a user's personal token (`invsite user add`). Each operation names the role it needs in `x-invsync-role` (viewer < operator < admin) and answers 403 to a lower one. Every error is an `ErrorBody` with one sentence.",
    ),
    paths(
        admin::site::apply,
        admin::sites::apply,
        admin::clients::apply,
        admin::client::apply,
        admin::requests::apply,
        admin::events::apply,
        admin::history::apply,
        admin::request_list::apply,
        admin::request_state::apply,
        admin::request_cancel::apply,
        admin::client_delete::apply,
        admin::software::holders,
        admin::software::packages,
        admin::audit::apply,
        admin::users::list,
        admin::users::add,
        admin::users::remove,
        admin::users::rotate,
        apply,
    ),
    components(schemas(
        invsync_proto::ClientName,
        invsync_proto::SiteCode,
        invsync_proto::Timestamp,
        invsync_proto::Digest,
        invsync_proto::Class,
        wire::ErrorBody,
        wire::SiteInfo,
        wire::SitesView,
        wire::SiteStatus,
        wire::ClientPage,
        wire::ClientSummary,
        wire::ClientSort,
        wire::Transport,
        wire::ClientView,
        wire::MergeView,
        wire::MatchedBy,
        wire::SnapshotView,
        wire::RequestView,
        wire::Hop,
        wire::RequestState,
        wire::EventView,
        wire::Event,
        wire::HistoryEntry,
        wire::ResyncRequestBody,
        wire::EventRequestBody,
        wire::Queued,
        wire::Cancelled,
        wire::Deleted,
        wire::RequestPage,
        wire::ClientRequest,
        wire::SoftwarePage,
        wire::SoftwareHolder,
        wire::PackagePage,
        wire::PackageSummary,
        wire::VersionCount,
        admin::software::Format,
        wire::Role,
        wire::UserView,
        wire::NewUserBody,
        wire::RotateBody,
        wire::UserIssued,
        wire::AuditAction,
        wire::AuditEntry,
        wire::AuditPage,
    )),
    modifiers(&BearerToken, &RateLimited, &Roles),
)]
pub struct ApiDoc;

/// The `admin_token` security scheme every operation but the document's own names.
struct BearerToken;

impl utoipa::Modify for BearerToken {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The 429 of every operation that needs the admin token: answered instead of 401 to an address
/// over its budget of failed credential checks (`api::throttle`), so one place documents it
/// for all of them.
struct RateLimited;

impl utoipa::Modify for RateLimited {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
        use utoipa::openapi::{Content, Header, Ref, RefOr, ResponseBuilder};
        let seconds = Schema::Object(ObjectBuilder::new().schema_type(Type::Integer).build());
        let response = ResponseBuilder::new()
            .description(
                "A wrong admin token from an address that presented too many lately (the site's \
                 `auth_failures_per_minute`); a right token is always served",
            )
            .content(
                "application/json",
                Content::new(Some(Ref::from_schema_name("ErrorBody"))),
            )
            .header("Retry-After", Header::new(RefOr::T(seconds)))
            .build();
        for item in doc.paths.paths.values_mut() {
            for op in [&mut item.get, &mut item.post, &mut item.delete]
                .into_iter()
                .flatten()
            {
                if op.security.is_some() {
                    op.responses
                        .responses
                        .insert("429".to_string(), RefOr::T(response.clone()));
                }
            }
        }
    }
}

/// The role each operation needs, from [`routes`]: stated as `x-invsync-role`, in the summary,
/// and with the 403 a token of a lower role gets.
struct Roles;

impl utoipa::Modify for Roles {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::extensions::Extensions;
        use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
        for r in routes() {
            let Some(role) = r.role else { continue };
            let Some(item) = doc.paths.paths.get_mut(r.path) else {
                continue;
            };
            let op = match r.method {
                Method::GET => item.get.as_mut(),
                Method::POST => item.post.as_mut(),
                Method::DELETE => item.delete.as_mut(),
                _ => None,
            };
            let Some(op) = op else { continue };
            let ext = op.extensions.get_or_insert_with(Extensions::default);
            ext.insert("x-invsync-role".to_string(), role.as_str().into());
            if role != Role::Viewer {
                let response = ResponseBuilder::new()
                    .description(format!(
                        "The token's role is below {role}; the message names the role needed"
                    ))
                    .content(
                        "application/json",
                        Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                    )
                    .build();
                op.responses
                    .responses
                    .insert("403".to_string(), RefOr::T(response));
            }
        }
    }
}

/// The document as JSON, built once: it depends on the code only.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = ApiDoc::openapi();
        doc.info.version = env!("CARGO_PKG_VERSION").to_string();
        doc.to_json().expect("the OpenAPI document serialises")
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "site",
    summary = "This document (no token needed: it describes the API and holds no data)",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json"))
)]
pub async fn apply() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_api_route_is_in_the_document_with_its_method_and_nothing_else_is() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        assert!(
            doc["openapi"].as_str().unwrap().starts_with("3.1"),
            "{}",
            doc["openapi"]
        );
        assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
        assert_eq!(
            doc["components"]["securitySchemes"]["admin_token"]["scheme"],
            "bearer"
        );
        let paths = doc["paths"].as_object().unwrap();
        let mut documented = 0;
        for (path, item) in paths {
            documented += item.as_object().unwrap().len();
            assert!(path.starts_with("/api/v1/"), "{path}");
        }
        let routes = routes();
        assert_eq!(documented, routes.len(), "operations documented vs routed");
        for r in &routes {
            let op = &paths
                .get(r.path)
                .unwrap_or_else(|| panic!("{} is not documented", r.path))
                [r.method.as_str().to_lowercase()];
            assert!(op.is_object(), "{} {} is not documented", r.method, r.path);
            let security = &op["security"];
            let role = r.role.map(|role| serde_json::json!(role.as_str()));
            assert_eq!(
                op["x-invsync-role"],
                role.unwrap_or(serde_json::Value::Null),
                "{} {}",
                r.method,
                r.path
            );
            if r.path == OPENAPI_PATH {
                assert!(security.is_null(), "the document needs no token");
            } else {
                assert_eq!(
                    security[0]["admin_token"],
                    serde_json::json!([]),
                    "{} {}",
                    r.method,
                    r.path
                );
                let responses = op["responses"].as_object().unwrap();
                for status in ["401", "429", "500"] {
                    let body = &responses[status]["content"]["application/json"]["schema"]["$ref"];
                    assert_eq!(
                        body, "#/components/schemas/ErrorBody",
                        "{} {} {status}",
                        r.method, r.path
                    );
                }
            }
        }
        // Every schema a document refers to is in it.
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let text = document();
        for part in text.split("\"#/components/schemas/").skip(1) {
            let name = &part[..part.find('"').unwrap()];
            assert!(
                schemas.contains_key(name),
                "{name} is referred to but not defined"
            );
        }
    }
}
