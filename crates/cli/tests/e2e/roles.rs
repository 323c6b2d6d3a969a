//! Administrators with roles and the audit trail (issue 20, items 6 and 7) against real sites:
//! `invsite user` refuses bad input and stores nothing; a walk over the OpenAPI document checks
//! every admin API route with a token of each role (a viewer is refused 403 on every
//! state-changing route, an operator on the admin ones, naming the role needed); expired,
//! removed and rotated tokens are refused 401; the audit lists each action with its actor,
//! through `invsite audit` and `GET /api/v1/audit`; and a child's audit reaches its parent's.

use serde_json::Value;

use crate::common::*;

/// `invsite user add NAME --role ROLE [extra]`: the token it printed.
fn add_user(site: &Site, name: &str, role: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "user",
        "add",
        name,
        "--role",
        role,
        "--data-dir",
        site.data_dir(),
    ];
    args.extend_from_slice(extra);
    let token = run_ok_stdout("invsite", &args).trim().to_string();
    assert!(token.starts_with(&format!("invu.{name}.")), "{token}");
    token
}

/// Calls the admin API with `token`: status and JSON body (`Null` when none).
fn call(
    site: &Site,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let url = format!("{}{path}", site.url);
    let agent = http();
    let auth = token.map(|t| format!("Bearer {t}"));
    let resp = match (method, body) {
        ("GET", _) => {
            let mut r = agent.get(&url);
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.call()
        }
        ("DELETE", _) => {
            let mut r = agent.delete(&url);
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.call()
        }
        ("POST", b) => {
            let mut r = agent.post(&url).header("Content-Type", "application/json");
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.send(serde_json::to_vec(b.unwrap_or(&serde_json::json!({}))).unwrap())
        }
        other => panic!("no such method {other:?}"),
    };
    let mut resp = resp.unwrap();
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_json().unwrap_or(Value::Null))
}

fn audit(site: &Site, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["audit", "--json", "--data-dir", site.data_dir()];
    args.extend_from_slice(extra);
    serde_json::from_str(&run_ok_stdout("invsite", &args)).unwrap()
}

const ROLES: [&str; 3] = ["viewer", "operator", "admin"];

fn rank(role: &str) -> usize {
    ROLES.iter().position(|r| *r == role).unwrap()
}

crate::on_each_db!(every_route_checks_the_role_it_needs);
fn every_route_checks_the_role_it_needs(db: Db) {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init_on(tmp.path(), "S01", db, &[]);
    let dir = site.data_dir().to_string();

    // Bad input to `invsite user` exits 2 with the reason and stores nothing.
    for (args, reason) in [
        (vec!["add", "2bad", "--role", "viewer"], "user name"),
        (vec!["add", "a b", "--role", "viewer"], "user name"),
        (vec!["add", "site-token", "--role", "viewer"], "reserved"),
        (
            vec!["add", "eve", "--role", "root"],
            "viewer, operator, admin",
        ),
        (vec!["add", "eve"], "--role"),
        (
            vec!["add", "eve", "--role", "admin", "--expires", "soon"],
            "--expires",
        ),
        (
            vec!["add", "eve", "--role", "admin", "--expires", "0s"],
            "--expires",
        ),
        (vec!["rotate", "eve", "--expires=-1d"], "--expires"),
        (vec!["remove", "Not/A/Name"], "user name"),
    ] {
        let mut full = vec!["user"];
        full.extend(args.iter().copied());
        full.extend(["--data-dir", dir.as_str()]);
        let out = run_expect("invsite", &full, 2);
        assert!(out.contains(reason), "{args:?}: {out}");
    }
    let listed: Vec<Value> = serde_json::from_str(&run_ok_stdout(
        "invsite",
        &["user", "list", "--json", "--data-dir", &dir],
    ))
    .unwrap();
    assert!(listed.is_empty(), "nothing stored: {listed:?}");
    assert!(audit(&site, &[]).is_empty(), "nothing audited");

    site.start();
    let tokens: Vec<(&str, String)> = ROLES
        .iter()
        .map(|role| (*role, add_user(&site, &format!("u-{role}"), role, &[])))
        .collect();
    // A name is taken once.
    let out = run_expect(
        "invsite",
        &[
            "user",
            "add",
            "u-admin",
            "--role",
            "viewer",
            "--data-dir",
            &dir,
        ],
        1,
    );
    assert!(out.contains("exists already"), "{out}");

    // Walk every operation of the document, each with a token of each role and with none.
    let (status, doc) = call(&site, "GET", "/api/v1/openapi.json", None, None);
    assert_eq!(status, 200);
    let mut checked = 0;
    let mut refused_to_viewer = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let method = method.to_uppercase();
            let Some(needed) = op["x-invsync-role"].as_str() else {
                assert_eq!(
                    path, "/api/v1/openapi.json",
                    "only the document needs no token"
                );
                continue;
            };
            if method != "GET" {
                assert_ne!(
                    needed, "viewer",
                    "{method} {path} changes state: a viewer may not"
                );
            }
            // Values that reach no real client, request or user, so an allowed call changes
            // nothing; a refusal comes before any of that is looked at.
            let concrete = path.replace("{name}", "nobody").replace("{id}", "999999");
            let (status, body) = call(&site, &method, &concrete, None, None);
            assert_eq!(status, 401, "{method} {path} without a token: {body}");
            for (role, token) in &tokens {
                let (status, body) = call(&site, &method, &concrete, Some(token), None);
                if rank(role) < rank(needed) {
                    assert_eq!(status, 403, "{role} on {method} {path}: {body}");
                    let m = body["error"].as_str().unwrap();
                    assert!(m.contains(&format!("the {needed} role")), "{m}");
                    if *role == "viewer" {
                        refused_to_viewer += 1;
                    }
                } else {
                    assert!(
                        status != 401 && status != 403,
                        "{role} on {method} {path} answered {status}: {body}"
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 3 * 17, "every route was walked: {checked}");
    let state_changing = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|i| i.as_object().unwrap().keys())
        .filter(|m| *m != "get")
        .count();
    assert!(state_changing >= 6, "{state_changing}");
    assert_eq!(
        refused_to_viewer,
        state_changing + 1,
        "a viewer is refused every state-changing route (and the user list)"
    );

    // Expired, removed and rotated tokens are refused 401; a wrong one too.
    let brief = add_user(&site, "brief", "admin", &["--expires", "1s"]);
    wait_until(20, "the brief token expires", || {
        call(&site, "GET", "/api/v1/site", Some(&brief), None).0 == 401
    });
    let (_, body) = call(&site, "GET", "/api/v1/site", Some(&brief), None);
    assert!(
        body["error"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    let viewer = &tokens[0].1;
    let rotated = run_ok_stdout(
        "invsite",
        &["user", "rotate", "u-viewer", "--data-dir", &dir],
    );
    let rotated = rotated.trim();
    assert_eq!(
        call(&site, "GET", "/api/v1/site", Some(viewer), None).0,
        401
    );
    assert_eq!(
        call(&site, "GET", "/api/v1/site", Some(rotated), None).0,
        200
    );
    run_ok(
        "invsite",
        &["user", "remove", "u-viewer", "--data-dir", &dir],
    );
    assert_eq!(
        call(&site, "GET", "/api/v1/site", Some(rotated), None).0,
        401
    );
    let forged = format!("invu.u-admin.{}", "0".repeat(64));
    assert_eq!(
        call(&site, "GET", "/api/v1/site", Some(&forged), None).0,
        401
    );
    // The site's own token stays an admin.
    let (status, users) = call(
        &site,
        "GET",
        "/api/v1/users",
        Some(&site.admin_token()),
        None,
    );
    assert_eq!(status, 200);
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["brief", "u-admin", "u-operator"]);
    assert_eq!(users[0]["expired"], true);
}

crate::on_each_db!(the_audit_lists_each_action_with_its_actor);
fn the_audit_lists_each_action_with_its_actor(db: Db) {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init_on(tmp.path(), "S01", db, &[]);
    site.start();
    let dir = site.data_dir().to_string();
    let _web = Agent::enroll(tmp.path(), &site, "debian", "web1");
    let oscar = add_user(&site, "oscar", "operator", &[]);
    let adele = add_user(&site, "adele", "admin", &["--expires", "90d"]);

    // An operator queues and cancels, but may not manage users.
    let (status, q) = call(
        &site,
        "POST",
        "/api/v1/clients/web1/requests",
        Some(&oscar),
        Some(&serde_json::json!({"class": "hw"})),
    );
    assert_eq!(status, 201, "{q}");
    let id = q["id"].as_i64().unwrap();
    let (status, e) = call(
        &site,
        "POST",
        "/api/v1/clients/web1/events",
        Some(&oscar),
        Some(&serde_json::json!({"event": "cycle"})),
    );
    assert_eq!(status, 201, "{e}");
    // The local-user header is believed only with the site's own token: a user stays itself.
    let resp = http()
        .post(format!("{}/api/v1/clients/web1/events", site.url))
        .header("Authorization", format!("Bearer {oscar}"))
        .header("invsync-actor", "local:root")
        .header("Content-Type", "application/json")
        .send(r#"{"event":"cycle"}"#)
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "merged into the pending event");
    let (status, _) = call(
        &site,
        "DELETE",
        &format!("/api/v1/requests/{id}"),
        Some(&oscar),
        None,
    );
    assert_eq!(status, 200);
    let body = serde_json::json!({"name": "mallory", "role": "admin"});
    let (status, refused) = call(&site, "POST", "/api/v1/users", Some(&oscar), Some(&body));
    assert_eq!(status, 403, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("the admin role"),
        "{refused}"
    );

    // An admin manages users through the API; a bad one is refused with 400, nothing stored.
    let (status, added) = call(&site, "POST", "/api/v1/users", Some(&adele), Some(&body));
    assert_eq!(status, 201, "{added}");
    assert!(
        added["token"]
            .as_str()
            .unwrap()
            .starts_with("invu.mallory.")
    );
    for bad in [
        serde_json::json!({"name": "Bad Name", "role": "viewer"}),
        serde_json::json!({"name": "ok", "role": "root"}),
        serde_json::json!({"name": "ok", "role": "viewer", "expires": "whenever"}),
    ] {
        let (status, b) = call(&site, "POST", "/api/v1/users", Some(&adele), Some(&bad));
        assert_eq!(status, 400, "{bad}: {b}");
    }
    let (status, _) = call(&site, "DELETE", "/api/v1/users/mallory", Some(&adele), None);
    assert_eq!(status, 200);

    // Local tools on the site server act as `local:<unix user>`, through the running server
    // and without it.
    run_ok("invsync", &["hw", "web1", "--data-dir", &dir]);
    run_ok("setevnt", &["web1", "hinv", "--data-dir", &dir]);
    run_ok(
        "invsite",
        &["config", "--request-expiry", "7d", "--data-dir", &dir],
    );
    site.stop();
    run_ok("invsync", &["sw", "web1", "--data-dir", &dir]);
    run_ok("invsite", &["revoke", "web1", "--data-dir", &dir]);

    let entries = audit(&site, &[]);
    let seen: Vec<(String, String, String)> = entries
        .iter()
        .rev()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
                e["target"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let local = seen
        .iter()
        .find(|(_, a, _)| a == "config")
        .map(|(who, _, _)| who.clone())
        .expect("the config change is audited");
    assert!(local.starts_with("local:"), "{local}");
    let want: Vec<(String, String, String)> = [
        (local.as_str(), "user_add", "oscar"),
        (local.as_str(), "user_add", "adele"),
        ("oscar", "request", "WEB1"),
        ("oscar", "event", "WEB1"),
        ("oscar", "event", "WEB1"),
        ("oscar", "cancel", id.to_string().as_str()),
        ("adele", "user_add", "mallory"),
        ("adele", "user_remove", "mallory"),
        (local.as_str(), "request", "WEB1"),
        (local.as_str(), "event", "WEB1"),
        (local.as_str(), "config", "request_expiry_secs"),
        (local.as_str(), "request", "WEB1"),
        (local.as_str(), "revoke", "WEB1"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(seen, want);
    // From where: the API's caller's address; a local tool without a server has none.
    assert_eq!(entries.last().unwrap()["address"], Value::Null);
    let by_oscar = &entries[entries.len() - 3];
    assert!(
        entries[entries.len() - 5]["details"]
            .as_str()
            .unwrap()
            .contains("already pending"),
        "{entries:?}"
    );
    assert_eq!(by_oscar["actor"], "oscar");
    assert_eq!(by_oscar["address"], "127.0.0.1", "{by_oscar}");
    assert_eq!(by_oscar["site"], "S01");
    assert!(
        by_oscar["details"].as_str().unwrap().contains("hw"),
        "{by_oscar}"
    );

    // Filters, on the command line and the API (which every role may read).
    let only = audit(&site, &["--user", "oscar"]);
    assert_eq!(only.len(), 4, "{only:?}");
    assert!(audit(&site, &["--since", "2999-01-01T00:00:00Z"]).is_empty());
    assert_eq!(audit(&site, &["--since", "1h"]).len(), entries.len());
    let out = run_expect(
        "invsite",
        &["audit", "--since", "yesterday", "--data-dir", &dir],
        2,
    );
    assert!(out.contains("--since"), "{out}");
    let text = run_ok_stdout("invsite", &["audit", "--data-dir", &dir]);
    assert!(text.contains("ACTOR") && text.contains("oscar"), "{text}");
    site.start();
    let viewer = add_user(&site, "vera", "viewer", &[]);
    let (status, page) = call(
        &site,
        "GET",
        "/api/v1/audit?user=oscar&limit=2",
        Some(&viewer),
        None,
    );
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["entries"].as_array().unwrap().len(), 2);
    let (status, _) = call(&site, "GET", "/api/v1/audit?limit=0", Some(&viewer), None);
    assert_eq!(status, 400);
}

crate::on_each_db!(a_childs_audit_reaches_its_parent_with_actor_and_site);
fn a_childs_audit_reaches_its_parent_with_actor_and_site(db: Db) {
    let tmp = tempfile::tempdir().unwrap();
    let mut parent = Site::init_on(tmp.path(), "P01", db, &[]);
    parent.start();
    let mut child = Site::init_child_on(tmp.path(), "C01", &parent, db);
    child.start();
    let _web = Agent::enroll(tmp.path(), &child, "debian", "web1");
    let oscar = add_user(&child, "oscar", "operator", &[]);
    let (status, _) = call(
        &child,
        "POST",
        "/api/v1/clients/web1/requests",
        Some(&oscar),
        Some(&serde_json::json!({"class": "sw"})),
    );
    assert_eq!(status, 201);
    wait_until(30, "the child's audit reaches the parent", || {
        audit(&parent, &["--user", "oscar"]).len() == 1
    });
    let at_parent = &audit(&parent, &["--user", "oscar"])[0];
    assert_eq!(at_parent["site"], "C01", "{at_parent}");
    assert_eq!(at_parent["action"], "request");
    assert_eq!(at_parent["target"], "WEB1");
    assert_eq!(at_parent["address"], "127.0.0.1");
    // Sent once: a later batch does not repeat it.
    let (status, _) = call(
        &child,
        "POST",
        "/api/v1/clients/web1/events",
        Some(&oscar),
        Some(&serde_json::json!({"event": "cycle"})),
    );
    assert_eq!(status, 201);
    wait_until(30, "the second entry reaches the parent", || {
        audit(&parent, &["--user", "oscar"]).len() == 2
    });
    let both = audit(&parent, &["--user", "oscar"]);
    assert_eq!(both[0]["action"], "event");
    assert_eq!(both[1]["action"], "request");
    // The parent's own entries name its own site.
    let local = audit(&child, &["--user", "oscar"]);
    assert_eq!(local.len(), 2);
    assert!(local.iter().all(|e| e["site"] == "C01"));
}
