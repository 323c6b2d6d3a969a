//! Requests end (issue 20, item 4): `invsync cancel` and `DELETE /api/v1/requests/{id}` against a
//! real site and agent; a cancelled request is never handed to the agent and shows as
//! `cancelled` in `invsite show` and `invsync --wait`. (`invsync --all` skipping clients that
//! hold a pending request is in `seed_flow.rs`.)

use std::process::Stdio;

use serde_json::Value;

use crate::common::*;

fn delete(site: &Site, path: &str) -> (u16, Value) {
    let mut resp = http()
        .delete(&format!("{}{path}", site.url))
        .header("Authorization", &format!("Bearer {}", site.admin_token()))
        .call()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_json().unwrap_or(Value::Null))
}

fn queue(site: &Site, class: &str, client: &str) -> i64 {
    let out = run_ok_stdout(
        "invsync",
        &[class, client, "--json", "--data-dir", site.data_dir()],
    );
    let q: Value = serde_json::from_str(&out).unwrap();
    q["id"].as_i64().unwrap()
}

crate::on_each_db!(a_cancelled_request_is_not_answered_and_shows_as_cancelled);
fn a_cancelled_request_is_not_answered_and_shows_as_cancelled(db: Db) {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init_on(tmp.path(), "S01", db, &[]);
    site.start();
    let web = Agent::enroll(tmp.path(), &site, "debian", "web1");
    let dir = site.data_dir().to_string();

    let id = queue(&site, "hw", "web1");
    let out = run_ok_stdout("invsync", &["cancel", &id.to_string(), "--data-dir", &dir]);
    assert!(
        out.contains(&format!("Cancelled request {id} (hw for WEB1)")),
        "{out}"
    );
    web.cycle();
    let r = &site.show("web1")["requests"][0];
    assert_eq!(
        (r["id"].as_i64(), r["state"].as_str()),
        (Some(id), Some("cancelled")),
        "{r}"
    );
    assert!(
        r["picked_up_at"].is_null(),
        "the agent never received it: {r}"
    );

    // Twice: exit 0, saying so; as JSON too.
    let out = run_ok_stdout("invsync", &["cancel", &id.to_string(), "--data-dir", &dir]);
    assert!(out.contains("was already cancelled"), "{out}");
    let out = run_ok_stdout(
        "invsync",
        &["cancel", &id.to_string(), "--json", "--data-dir", &dir],
    );
    let j: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            j["already_cancelled"].as_bool(),
            j["request"]["state"].as_str(),
            j["client"].as_str()
        ),
        (Some(true), Some("cancelled"), Some("WEB1")),
        "{j}"
    );

    // Complete: exit 1 with a sentence; unknown: exit 4; bad ids: exit 2.
    let done = queue(&site, "sw", "web1");
    web.cycle();
    assert_eq!(site.show("web1")["requests"][0]["state"], "complete");
    let out = run_expect(
        "invsync",
        &["cancel", &done.to_string(), "--data-dir", &dir],
        1,
    );
    assert!(
        out.contains("cannot be cancelled") && out.contains("complete"),
        "{out}"
    );
    let out = run_expect("invsync", &["cancel", "999999", "--data-dir", &dir], 4);
    assert!(out.contains("no request 999999"), "{out}");
    for bad in ["abc", "-3", "0", "1.5"] {
        let out = run_expect("invsync", &["cancel", bad, "--data-dir", &dir], 2);
        assert!(
            out.contains("REQUEST_ID") || out.contains("request id"),
            "{bad}: {out}"
        );
    }

    // `invsync --wait` reports the cancel and exits 1.
    let mut waiting = bin("invsync")
        .args([
            "hw",
            "web1",
            "--wait",
            "--timeout",
            "60s",
            "--data-dir",
            &dir,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Lines::of(waiting.stdout.take().unwrap());
    let first = lines.next_within(30).expect("the queued line");
    let id: i64 = first
        .split("(request ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no request id in {first:?}"));
    run_ok("invsync", &["cancel", &id.to_string(), "--data-dir", &dir]);
    let status = exit_within(&mut waiting, 30, "invsync --wait");
    assert_eq!(status.code(), Some(1));
    let mut printed = Vec::new();
    while let Some(line) = lines.next_within(5) {
        printed.push(line);
    }
    assert!(
        printed
            .iter()
            .any(|l| l.contains(&format!("request {id}: cancelled at"))),
        "{printed:?}"
    );

    // With the server down, the database is changed directly.
    site.stop();
    let id = queue(&site, "sw", "web1");
    run_ok("invsync", &["cancel", &id.to_string(), "--data-dir", &dir]);
    assert_eq!(site.show("web1")["requests"][0]["state"], "cancelled");
}

crate::on_each_db!(the_api_cancels_pending_requests_and_refuses_others);
fn the_api_cancels_pending_requests_and_refuses_others(db: Db) {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init_on(tmp.path(), "S01", db, &[]);
    site.start();
    let web = Agent::enroll(tmp.path(), &site, "debian", "web1");

    let id = queue(&site, "sw", "web1");
    let (status, body) = delete(&site, &format!("/api/v1/requests/{id}"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            body["already_cancelled"].as_bool(),
            body["request"]["state"].as_str()
        ),
        (Some(false), Some("cancelled")),
        "{body}"
    );
    let (status, body) = delete(&site, &format!("/api/v1/requests/{id}"));
    assert_eq!(
        (status, body["already_cancelled"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    let (status, state) = {
        let mut resp = http()
            .get(&format!("{}/api/v1/requests/{id}", site.url))
            .header("Authorization", &format!("Bearer {}", site.admin_token()))
            .call()
            .unwrap();
        (
            resp.status().as_u16(),
            resp.body_mut().read_json::<Value>().unwrap(),
        )
    };
    assert_eq!(
        (status, state["state"].as_str()),
        (200, Some("cancelled")),
        "{state}"
    );

    let done = queue(&site, "hw", "web1");
    web.cycle();
    let (status, body) = delete(&site, &format!("/api/v1/requests/{done}"));
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("complete"),
        "{body}"
    );
    let (status, body) = delete(&site, "/api/v1/requests/999999");
    assert_eq!(status, 404, "{body}");
    for bad in ["abc", "0"] {
        let (status, body) = delete(&site, &format!("/api/v1/requests/{bad}"));
        assert_eq!(status, 400, "{bad}: {body}");
    }
    // Without the admin token: 401.
    let resp = http()
        .delete(&format!("{}/api/v1/requests/{id}", site.url))
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

#[test]
fn a_request_not_picked_up_within_the_configured_expiry_expires() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    let dir = site.data_dir().to_string();
    let out = run_expect(
        "invsite",
        &["config", "--request-expiry", "soon", "--data-dir", &dir],
        2,
    );
    assert!(out.contains("--request-expiry"), "{out}");
    let out = run_ok_stdout(
        "invsite",
        &["config", "--request-expiry", "1s", "--data-dir", &dir],
    );
    assert!(out.contains("request-expiry 1s"), "{out}");
    site.start();
    let web = Agent::enroll(tmp.path(), &site, "debian", "web1");
    let id = queue(&site, "hw", "web1");
    wait_until(30, "the request to expire", || {
        site.show("web1")["requests"][0]["state"] == "expired"
    });
    web.cycle();
    let r = &site.show("web1")["requests"][0];
    assert_eq!(
        (r["id"].as_i64(), r["state"].as_str()),
        (Some(id), Some("expired")),
        "{r}"
    );
    assert!(
        r["picked_up_at"].is_null(),
        "the agent never received it: {r}"
    );
    // A new request is queued anew rather than merged into the expired one.
    let again = queue(&site, "hw", "web1");
    assert_ne!(again, id);
}
