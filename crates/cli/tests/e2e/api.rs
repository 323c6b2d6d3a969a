//! The admin REST API under `/api/v1` end to end: the paged client list, the request list and
//! the OpenAPI document, against a real `invsite serve` with real agents; bad query strings are
//! refused with 400 and a sentence naming the problem.

use serde_json::Value;

use crate::common::*;

/// `GET <path>` with the admin token: the status and the JSON body.
fn get(site: &Site, path: &str) -> (u16, Value) {
    let mut resp = http()
        .get(&format!("{}{path}", site.url))
        .header("Authorization", &format!("Bearer {}", site.admin_token()))
        .call()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_json().unwrap_or(Value::Null))
}

fn names(page: &Value) -> Vec<&str> {
    page["clients"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect()
}

#[test]
fn the_client_list_is_paged_searched_sorted_and_refuses_bad_queries() {
    for db in Db::all() {
        let tmp = tempfile::tempdir().unwrap();
        let mut site = Site::init_on(tmp.path(), "S01", db, &[]);
        site.start();
        for name in ["web1", "web2", "db1"] {
            Agent::enroll(tmp.path(), &site, "debian", name).cycle();
        }

        let (status, all) = get(&site, "/api/v1/clients");
        assert_eq!(status, 200, "{all}");
        assert_eq!((all["total"].as_u64(), all["offset"].as_u64()), (Some(3), Some(0)));
        assert_eq!(names(&all), ["DB1", "WEB1", "WEB2"]);
        assert!(all["clients"][0]["hw_version"].as_i64().is_some(), "{all}");

        let (_, page) = get(&site, "/api/v1/clients?search=We&sort=name&desc=true&limit=1&offset=1");
        assert_eq!((page["total"].as_u64(), names(&page)), (Some(2), vec!["WEB1"]));
        let (_, own) = get(&site, "/api/v1/clients?site=s01&sort=last_seen");
        assert_eq!(own["total"], 3);
        let (_, hw) = get(&site, "/api/v1/clients?sort=hw_updated&desc=true");
        assert_eq!(hw["total"], 3);

        for (query, says) in [
            ("sort=size", "unknown variant `size`"),
            ("limit=0", "limit must be 1 to 1000"),
            ("limit=1001", "limit must be 1 to 1000"),
            ("limit=-1", "limit"),
            ("offset=x", "offset"),
            ("offset=18446744073709551615", "offset must be at most"),
            ("desc=maybe", "desc"),
            ("site=TOOLONG", "site code"),
        ] {
            let (status, body) = get(&site, &format!("/api/v1/clients?{query}"));
            assert_eq!(status, 400, "{query}: {body}");
            let error = body["error"].as_str().unwrap_or_default();
            assert!(error.contains(says), "{query}: {error}");
        }

        // `invsite clients` pages through the API and still prints every client.
        let listed = site.clients();
        assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");
    }
}

#[test]
fn the_request_list_shows_resync_requests_of_every_client_and_refuses_bad_queries() {
    for db in Db::all() {
        let tmp = tempfile::tempdir().unwrap();
        let mut site = Site::init_on(tmp.path(), "S01", db, &[]);
        site.start();
        let web = Agent::enroll(tmp.path(), &site, "debian", "web1");
        Agent::enroll(tmp.path(), &site, "debian", "db1");
        run_ok("invsync", &["hw", "web1", "--data-dir", site.data_dir()]);
        web.cycle();
        run_ok("invsync", &["sw", "db1", "--data-dir", site.data_dir()]);

        let (status, all) = get(&site, "/api/v1/requests");
        assert_eq!(status, 200, "{all}");
        assert_eq!(all["total"], 2, "{all}");
        let first = &all["requests"][0];
        assert_eq!((first["client"].as_str(), first["site"].as_str()), (Some("DB1"), Some("S01")), "{all}");
        assert_eq!((first["request"]["class"].as_str(), first["request"]["state"].as_str()), (Some("sw"), Some("pending")));
        let (_, done) = get(&site, "/api/v1/requests?state=complete&class=hw&limit=5");
        assert_eq!((done["total"].as_u64(), done["requests"][0]["client"].as_str()), (Some(1), Some("WEB1")), "{done}");

        for (query, says) in [
            ("state=lost", "unknown variant `lost`"),
            ("class=fw", "class"),
            ("limit=0", "limit must be 1 to 1000"),
            ("limit=5000", "limit must be 1 to 1000"),
        ] {
            let (status, body) = get(&site, &format!("/api/v1/requests?{query}"));
            assert_eq!(status, 400, "{query}: {body}");
            assert!(body["error"].as_str().unwrap_or_default().contains(says), "{query}: {body}");
        }
    }
}

#[test]
fn the_openapi_document_is_served_without_a_token() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let mut resp = http().get(&format!("{}/api/v1/openapi.json", site.url)).call().unwrap();
    assert_eq!(resp.status(), 200);
    let doc: Value = resp.body_mut().read_json().unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{doc}");
    assert!(doc["paths"]["/api/v1/clients"]["get"]["parameters"].is_array(), "{doc}");
    // Everything else under /api/v1 still needs the token.
    let resp = http().get(&format!("{}/api/v1/clients", site.url)).call().unwrap();
    assert_eq!(resp.status(), 401);
}
