//! Software across clients (issue 8). `GET /console/software?q=&offset=`: every package some
//! client of this site (or a site below it) has, searched by name, with how many clients have
//! each version. `GET /console/software/{name}?version=&offset=`: the clients having one
//! package, optionally only in a version range such as `>=3.0,<3.1`; a malformed range is
//! answered 400 with the form kept and the parser's sentence beside it, so it can be fixed in
//! place.
//!
//! The exports of either list, every row and not only the page shown, live next to the pages
//! under the session cookie's `Path=/console`, so they need the console login and not the
//! admin token: `GET /console/software.csv?q=` and `/console/software.json?q=` for the package
//! list, `GET /console/software/{name}/export.csv?version=` and `…/export.json` for one
//! package's clients. They cannot be taken for a package page: `software.csv` is a sibling of
//! `/console/software`, not below it, and a package name never holds a `/`, so
//! `/console/software/{name}` and `…/{name}/export.csv` never match the same path (a package
//! named `export.csv` is still its own page).
//!
//! Parameters are checked, and CSV written, by the admin API's functions (`api/admin/software`):
//! the console accepts and exports exactly what `GET /api/v1/software…` does. Both lists are
//! answered from the store's in-memory software index, so a page costs milliseconds however
//! many clients the site holds.

use askama::Template;
use axum::Extension;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use invsync_proto::wire::{PackagePage, SoftwarePage};
use serde::Deserialize;

use super::session::Session;
use super::{Chrome, ConsoleError, render};
use crate::api::admin::software::{Format, HolderParams, PackageParams};
use crate::api::error::ApiError;
use crate::api::export::{download, holders_csv, packages_csv};
use crate::state::AppState;

/// Packages, or clients, per page.
const PAGE: u32 = 50;

/// The query string of the package list and its exports.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    offset: u64,
}

/// The query string of a package page and its exports.
#[derive(Debug, Default, Deserialize)]
pub struct PackageQuery {
    #[serde(default)]
    version: String,
    #[serde(default)]
    offset: u64,
}

#[derive(Template)]
#[template(path = "console/software.html")]
struct SoftwarePageView {
    chrome: Chrome,
    q: String,
    total: u64,
    first: u64,
    last: u64,
    prev: Option<String>,
    next: Option<String>,
    csv: String,
    json: String,
    rows: Vec<PackageRow>,
}

struct PackageRow {
    name: String,
    href: String,
    clients: u64,
    versions: Vec<VersionLink>,
}

struct VersionLink {
    version: String,
    /// The package page narrowed to this version; `None` when the version cannot be written
    /// as a range (a comma or a space in it).
    href: Option<String>,
    clients: u64,
}

#[derive(Template)]
#[template(path = "console/package.html")]
struct PackageView {
    chrome: Chrome,
    name: String,
    /// `/console/software/{name}`, encoded.
    base: String,
    version: String,
    /// Why the range cannot be used; the list is not shown then.
    error: Option<String>,
    total: u64,
    first: u64,
    last: u64,
    prev: Option<String>,
    next: Option<String>,
    csv: String,
    json: String,
    rows: Vec<HolderRow>,
}

struct HolderRow {
    client: String,
    href: String,
    site: String,
    version: String,
    arch: String,
    source: String,
}

/// A path segment with everything but unreserved characters (and `+`, common in package
/// names) percent-encoded. dpkg names need none of it; rpm and apk names are less strict, and
/// a `?`, `#` or `/` in one must not end the path.
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `path` with the non-empty, non-zero parameters as a query string.
fn link(path: &str, params: &[(&str, String)]) -> String {
    let kept: Vec<&(&str, String)> = params
        .iter()
        .filter(|(_, v)| !v.is_empty() && v != "0")
        .collect();
    if kept.is_empty() {
        return path.to_string();
    }
    format!(
        "{path}?{}",
        serde_urlencoded::to_string(kept).unwrap_or_default()
    )
}

/// The "1–50 shown" numbers and the previous and next page links of a page of `shown` rows.
fn paging(
    offset: u64,
    shown: u64,
    total: u64,
    at: impl Fn(u64) -> String,
) -> (u64, u64, Option<String>, Option<String>) {
    let first = if shown == 0 { 0 } else { offset + 1 };
    let prev = (offset > 0).then(|| at(offset.saturating_sub(PAGE as u64)));
    let next = (offset + shown < total).then(|| at(offset + shown));
    (first, offset + shown, prev, next)
}

fn package_params(q: &str, offset: u64, format: Format) -> PackageParams {
    PackageParams {
        search: Some(q.to_string()),
        site: None,
        // An export asks for no limit: `into_query` makes a CSV without one every row.
        limit: (format == Format::Json).then_some(PAGE),
        offset: Some(offset),
        format: Some(format),
    }
}

fn holder_params(name: &str, version: &str, offset: u64, format: Format) -> HolderParams {
    HolderParams {
        name: Some(name.to_string()),
        version: Some(version.to_string()),
        site: None,
        limit: (format == Format::Json).then_some(PAGE),
        offset: Some(offset),
        format: Some(format),
    }
}

pub async fn list(
    State(state): State<AppState>,
    session: Session,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Html<String>, ConsoleError> {
    let Query(lq) = query.map_err(|r| ConsoleError::BadInput(r.body_text()))?;
    let q = lq.q.trim().to_string();
    let (pq, _) = package_params(&q, lq.offset, Format::Json).into_query()?;
    let page = state.store.packages(&pq).await?;
    let shown = page.packages.len() as u64;
    let (first, last, prev, next) = paging(lq.offset, shown, page.total, |o| {
        link(
            "/console/software",
            &[("q", q.clone()), ("offset", o.to_string())],
        )
    });
    let rows = page
        .packages
        .into_iter()
        .map(|p| {
            let base = format!("/console/software/{}", segment(&p.name));
            PackageRow {
                versions: p
                    .versions
                    .into_iter()
                    .map(|v| VersionLink {
                        href: (!v.version.contains(|c: char| c == ',' || c.is_whitespace()))
                            .then(|| link(&base, &[("version", format!("={}", v.version))])),
                        version: v.version,
                        clients: v.clients,
                    })
                    .collect(),
                href: base,
                name: p.name,
                clients: p.clients,
            }
        })
        .collect();
    let export = |ext: &str| link(&format!("/console/software.{ext}"), &[("q", q.clone())]);
    let view = SoftwarePageView {
        chrome: Chrome::new(&state, &session),
        csv: export("csv"),
        json: export("json"),
        q,
        total: page.total,
        first,
        last,
        prev,
        next,
        rows,
    };
    render(&view)
}

pub async fn package(
    State(state): State<AppState>,
    session: Session,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<PackageQuery>, QueryRejection>,
) -> Result<Response, ConsoleError> {
    let Path(name) = path.map_err(|r| ConsoleError::BadInput(r.body_text()))?;
    let Query(pq) = query.map_err(|r| ConsoleError::BadInput(r.body_text()))?;
    let version = pq.version.trim().to_string();
    let base = format!("/console/software/{}", segment(&name));
    let export = |ext: &str| {
        link(
            &format!("{base}/export.{ext}"),
            &[("version", version.clone())],
        )
    };
    let mut view = PackageView {
        chrome: Chrome::new(&state, &session),
        name: name.clone(),
        csv: export("csv"),
        json: export("json"),
        base: base.clone(),
        version: version.clone(),
        error: None,
        total: 0,
        first: 0,
        last: 0,
        prev: None,
        next: None,
        rows: Vec::new(),
    };
    let sq = match holder_params(&name, &version, pq.offset, Format::Json).into_query() {
        Ok((sq, _)) => sq,
        Err(e @ ApiError::BadInput(_)) => {
            // The page again, with what was typed still in the box and the sentence saying
            // what is wrong with it; the refusal is counted as the API's would be.
            let refusal = e.refusal();
            view.error = Some(e.to_string());
            return Ok(
                (StatusCode::BAD_REQUEST, Extension(refusal), render(&view)?).into_response(),
            );
        }
        Err(e) => return Err(e.into()),
    };
    let page = state.store.software(&sq).await?;
    let shown = page.holders.len() as u64;
    let (first, last, prev, next) = paging(pq.offset, shown, page.total, |o| {
        link(
            &base,
            &[("version", version.clone()), ("offset", o.to_string())],
        )
    });
    view.rows = page
        .holders
        .into_iter()
        .map(|h| HolderRow {
            href: super::client_href(&h.client, &h.site, &state.site_code),
            client: h.client.to_string(),
            site: h.site.to_string(),
            version: h.version,
            arch: h.arch,
            source: h.source,
        })
        .collect();
    (view.total, view.first, view.last, view.prev, view.next) =
        (page.total, first, last, prev, next);
    Ok(render(&view)?.into_response())
}

/// `GET /console/software.csv`: every package of the list the page shows.
pub async fn list_csv(
    State(state): State<AppState>,
    _: Session,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ConsoleError> {
    let page = all_packages(&state, query).await?;
    Ok(packages_csv("packages.csv", page))
}

/// `GET /console/software.json`: the same as JSON, as `GET /api/v1/software/packages` answers.
pub async fn list_json(
    State(state): State<AppState>,
    _: Session,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ConsoleError> {
    let page = all_packages(&state, query).await?;
    json_download("packages.json", &page)
}

/// `GET /console/software/{name}/export.csv`: every client of the package page.
pub async fn package_csv(
    State(state): State<AppState>,
    _: Session,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<PackageQuery>, QueryRejection>,
) -> Result<Response, ConsoleError> {
    let (name, page) = all_holders(&state, path, query).await?;
    Ok(holders_csv(&format!("{name}.csv"), page))
}

/// `GET /console/software/{name}/export.json`: the same as JSON, as `GET /api/v1/software`
/// answers.
pub async fn package_json(
    State(state): State<AppState>,
    _: Session,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<PackageQuery>, QueryRejection>,
) -> Result<Response, ConsoleError> {
    let (name, page) = all_holders(&state, path, query).await?;
    json_download(&format!("{name}.json"), &page)
}

async fn all_packages(
    state: &AppState,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<PackagePage, ConsoleError> {
    let Query(lq) = query.map_err(|r| ConsoleError::BadInput(r.body_text()))?;
    // Asked as a CSV export whatever the answer's format: that is what means "every row".
    let (pq, _) = package_params(lq.q.trim(), 0, Format::Csv).into_query()?;
    Ok(state.store.packages(&pq).await?)
}

async fn all_holders(
    state: &AppState,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<PackageQuery>, QueryRejection>,
) -> Result<(String, SoftwarePage), ConsoleError> {
    let Path(name) = path.map_err(|r| ConsoleError::BadInput(r.body_text()))?;
    let Query(pq) = query.map_err(|r| ConsoleError::BadInput(r.body_text()))?;
    let (sq, _) = holder_params(&name, pq.version.trim(), 0, Format::Csv).into_query()?;
    let page = state.store.software(&sq).await?;
    Ok((name, page))
}

/// A JSON download, an attachment with a safe file name made from the caller's.
fn json_download(file: &str, body: &impl serde::Serialize) -> Result<Response, ConsoleError> {
    let json = serde_json::to_string(body)
        .map_err(|e| ApiError::Internal(format!("writing an export: {e}")))?;
    Ok(download(file, "application/json", json.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_stay_one_path_segment() {
        assert_eq!(segment("libstdc++6"), "libstdc++6");
        assert_eq!(segment("a/b?c#d e"), "a%2Fb%3Fc%23d%20e");
    }

    #[test]
    fn links_keep_only_what_is_set() {
        assert_eq!(
            link(
                "/console/software",
                &[("q", String::new()), ("offset", "0".into())]
            ),
            "/console/software"
        );
        assert_eq!(
            link("/x", &[("version", ">=3.0,<3.1".into())]),
            "/x?version=%3E%3D3.0%2C%3C3.1"
        );
    }
}
