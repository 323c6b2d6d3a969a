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
    page["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect()
}

crate::on_each_db!(the_client_list_is_paged_searched_sorted_and_refuses_bad_queries);
fn the_client_list_is_paged_searched_sorted_and_refuses_bad_queries(db: Db) {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init_on(tmp.path(), "S01", db, &[]);
    site.start();
    // Enrolled web1, web2, db1 (the insertion order); first inventories (hw_updated, sw_updated)
    // in the order web1, db1, web2; last seen in the order web2, db1, web1. Each sort's order
    // then differs from name order, insertion order and their reverses, so a sort the site
    // ignored, or applied backwards, fails.
    let agents: Vec<Agent> = ["web1", "web2", "db1"]
        .iter()
        .map(|n| Agent::enroll(tmp.path(), &site, "debian", n))
        .collect();
    let [web1, web2, db1] = [&agents[0], &agents[1], &agents[2]];
    for a in [web1, db1, web2] {
        a.cycle();
    }
    for a in [web2, db1, web1] {
        assert!(
            a.cycle().contains("hw: unchanged"),
            "a second cycle changes no update time"
        );
    }

    let (status, all) = get(&site, "/api/v1/clients");
    assert_eq!(status, 200, "{all}");
    assert_eq!(
        (all["total"].as_u64(), all["offset"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(names(&all), ["DB1", "WEB1", "WEB2"]);
    assert!(all["clients"][0]["hw_version"].as_i64().is_some(), "{all}");

    let (_, page) = get(
        &site,
        "/api/v1/clients?search=We&sort=name&desc=true&limit=1&offset=1",
    );
    assert_eq!(
        (page["total"].as_u64(), names(&page)),
        (Some(2), vec!["WEB1"])
    );
    let (_, page) = get(&site, "/api/v1/clients?sort=name&desc=true");
    assert_eq!(names(&page), ["WEB2", "WEB1", "DB1"]);
    for (query, want) in [
        ("sort=hw_updated", ["WEB1", "DB1", "WEB2"]),
        ("sort=hw_updated&desc=true", ["WEB2", "DB1", "WEB1"]),
        ("sort=sw_updated", ["WEB1", "DB1", "WEB2"]),
        ("sort=sw_updated&desc=true", ["WEB2", "DB1", "WEB1"]),
    ] {
        let (_, page) = get(&site, &format!("/api/v1/clients?{query}"));
        assert_eq!(names(&page), want, "{query}: {page}");
    }
    // The site writes last-seen times to the database about once a second, and sorts by what
    // it wrote: wait (bounded) for the order rather than for a time.
    for (query, want) in [
        ("site=s01&sort=last_seen", ["WEB2", "DB1", "WEB1"]),
        ("sort=last_seen&desc=true", ["WEB1", "DB1", "WEB2"]),
    ] {
        wait_until(30, &format!("{query} lists {want:?}"), || {
            names(&get(&site, &format!("/api/v1/clients?{query}")).1) == want
        });
        let (_, page) = get(&site, &format!("/api/v1/clients?{query}"));
        assert_eq!(page["total"], 3, "{page}");
    }

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

crate::on_each_db!(the_request_list_shows_resync_requests_of_every_client_and_refuses_bad_queries);
fn the_request_list_shows_resync_requests_of_every_client_and_refuses_bad_queries(db: Db) {
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
    assert_eq!(
        (first["client"].as_str(), first["site"].as_str()),
        (Some("DB1"), Some("S01")),
        "{all}"
    );
    assert_eq!(
        (
            first["request"]["class"].as_str(),
            first["request"]["state"].as_str()
        ),
        (Some("sw"), Some("pending"))
    );
    let (_, done) = get(&site, "/api/v1/requests?state=complete&class=hw&limit=5");
    assert_eq!(
        (
            done["total"].as_u64(),
            done["requests"][0]["client"].as_str()
        ),
        (Some(1), Some("WEB1")),
        "{done}"
    );

    for (query, says) in [
        ("state=lost", "unknown variant `lost`"),
        ("class=fw", "class"),
        ("limit=0", "limit must be 1 to 1000"),
        ("limit=5000", "limit must be 1 to 1000"),
    ] {
        let (status, body) = get(&site, &format!("/api/v1/requests?{query}"));
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["error"].as_str().unwrap_or_default().contains(says),
            "{query}: {body}"
        );
    }
}

#[test]
fn the_openapi_document_is_served_without_a_token() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let mut resp = http()
        .get(&format!("{}/api/v1/openapi.json", site.url))
        .call()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let doc: Value = resp.body_mut().read_json().unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{doc}");
    assert!(
        doc["paths"]["/api/v1/clients"]["get"]["parameters"].is_array(),
        "{doc}"
    );
    // Everything else under /api/v1 still needs the token.
    let resp = http()
        .get(&format!("{}/api/v1/clients", site.url))
        .call()
        .unwrap();
    assert_eq!(resp.status(), 401);
}

/// `GET <path>` with the admin token: the status, the content type and the body as text.
fn get_text(site: &Site, path: &str) -> (u16, String, String) {
    let mut resp = http()
        .get(&format!("{}{path}", site.url))
        .header("Authorization", &format!("Bearer {}", site.admin_token()))
        .call()
        .unwrap();
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (
        status,
        ctype,
        resp.body_mut().read_to_string().unwrap_or_default(),
    )
}

crate::on_each_db!(software_lists_the_clients_having_a_package_in_a_version_range_as_json_and_csv);
fn software_lists_the_clients_having_a_package_in_a_version_range_as_json_and_csv(db: Db) {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init_on(tmp.path(), "S01", db, &[]);
    site.start();
    // Three agents from one fixture root; two of them upgrade or add a package.
    let web1 = Agent::enroll(tmp.path(), &site, "debian", "web1");
    let web2 = Agent::enroll(tmp.path(), &site, "debian", "web2");
    let db1 = Agent::enroll(tmp.path(), &site, "debian", "db1");
    web1.add_package("invsync-probe", "1.9-1");
    web2.add_package("invsync-probe", "1.10-1");
    db1.add_package("invsync-other", "1.0");
    for a in [&web1, &web2, &db1] {
        a.cycle();
    }

    let (status, all) = get(&site, "/api/v1/software?name=invsync-probe");
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["total"], 2, "{all}");
    let rows: Vec<(&str, &str)> = all["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["client"].as_str().unwrap(),
                h["version"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, [("WEB1", "1.9-1"), ("WEB2", "1.10-1")]);
    assert_eq!(all["holders"][0]["source"], "dpkg");
    assert_eq!(all["holders"][0]["site"], "S01");

    // dpkg's order: 1.10 is newer than 1.9.
    let (_, new) = get(
        &site,
        "/api/v1/software?name=invsync-probe&version=%3E%3D1.10",
    );
    assert_eq!(
        (new["total"].as_u64(), new["holders"][0]["client"].as_str()),
        (Some(1), Some("WEB2")),
        "{new}"
    );
    let (_, range) = get(
        &site,
        "/api/v1/software?name=invsync-probe&version=%3E1.0,%3C1.10",
    );
    assert_eq!(
        (
            range["total"].as_u64(),
            range["holders"][0]["client"].as_str()
        ),
        (Some(1), Some("WEB1")),
        "{range}"
    );

    // A package every agent of the fixture has.
    let (_, pkgs) = get(&site, "/api/v1/software/packages?search=INVSYNC");
    let summary: Vec<(&str, u64)> = pkgs["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["clients"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [("invsync-other", 1), ("invsync-probe", 2)],
        "{pkgs}"
    );
    let (_, every) = get(&site, "/api/v1/software/packages?limit=1000");
    let first = &every["packages"][0];
    assert!(every["total"].as_u64().unwrap() > 2, "{every}");
    assert!(
        first["versions"][0]["clients"].as_u64().unwrap() >= 1,
        "{first}"
    );

    // CSV exports: every row, a header, quoted where needed.
    let (status, ctype, csv) = get_text(&site, "/api/v1/software?name=invsync-probe&format=csv");
    assert_eq!(
        (status, ctype.as_str()),
        (200, "text/csv; charset=utf-8"),
        "{csv}"
    );
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "client,client_id,site,name,version,arch,source");
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(
        lines[1].starts_with("WEB1,") && lines[1].ends_with(",S01,invsync-probe,1.9-1,amd64,dpkg"),
        "{csv}"
    );
    let (_, _, pcsv) = get_text(&site, "/api/v1/software/packages?search=probe&format=csv");
    assert_eq!(
        pcsv,
        "name,clients,version,version_clients\r\ninvsync-probe,2,1.9-1,1\r\ninvsync-probe,2,1.10-1,1\r\n"
    );

    for (query, says) in [
        ("/api/v1/software", "name must name a package"),
        (
            "/api/v1/software?name=bash&version=%3E%3D",
            "names no version",
        ),
        (
            "/api/v1/software?name=bash&version=1%202",
            "is not a version",
        ),
        (
            "/api/v1/software?name=bash&limit=0",
            "limit must be 1 to 1000",
        ),
        (
            "/api/v1/software?name=bash&format=xml",
            "unknown variant `xml`",
        ),
        (
            "/api/v1/software/packages?limit=5000",
            "limit must be 1 to 1000",
        ),
        ("/api/v1/software/packages?site=TOOLONG", "site code"),
    ] {
        let (status, body) = get(&site, query);
        assert_eq!(status, 400, "{query}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{query}: {error}");
    }
    // Without the admin token: refused, nothing listed.
    let status = http()
        .get(&format!("{}/api/v1/software?name=bash", site.url))
        .call()
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 401);
}
