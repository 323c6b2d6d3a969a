//! Credentials and exposure: rotating the enrollment secret, refusing to start with secrets
//! others can read, and refusing plain HTTP beyond loopback unless asked for.

use std::os::unix::fs::PermissionsExt;

use crate::common::*;

#[test]
fn rotating_the_enrollment_secret_locks_out_the_old_one_but_not_enrolled_clients() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let old = site.secret();
    let agent = Agent::enroll(tmp.path(), &site, "minimal", "early");
    let new = run_ok(
        "invsite",
        &["enroll-secret", "--rotate", "--data-dir", site.data_dir()],
    );
    let new = new.lines().find(|l| l.len() == 64).unwrap().to_string();
    assert_ne!(new, old);
    assert_eq!(site.secret(), new);

    let root = fixture_copy("minimal", &tmp.path().join("late"));
    let late = tmp.path().join("agent-late");
    let out = run_expect(
        "invagent",
        &[
            "enroll",
            "--data-dir",
            s(&late),
            "--site",
            &site.url,
            "--secret",
            &old,
            "--name",
            "late",
            "--root",
            s(&root),
        ],
        2,
    );
    assert!(out.contains("wrong enrollment secret"), "{out}");
    run_ok(
        "invagent",
        &[
            "enroll",
            "--data-dir",
            s(&late),
            "--site",
            &site.url,
            "--secret",
            &new,
            "--name",
            "late",
            "--root",
            s(&root),
        ],
    );
    // The client enrolled before the rotation keeps working with its own key.
    agent.cycle();
    site.stop();
}

#[test]
fn the_site_refuses_to_start_when_others_can_read_its_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let site = Site::init(tmp.path(), "S01");
    let token = site.dir.join("admin.token");
    assert_eq!(
        std::fs::metadata(&token).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(&site.dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run_expect("invsite", &["serve", "--data-dir", site.data_dir()], 1);
    assert!(
        out.contains("other users can read") && out.contains("chmod 600"),
        "{out}"
    );
}

#[test]
fn plain_http_beyond_loopback_needs_insecure_http() {
    let tmp = tempfile::tempdir().unwrap();
    let site = Site::init(tmp.path(), "S01");
    let out = run_expect(
        "invsite",
        &[
            "serve",
            "--data-dir",
            site.data_dir(),
            "--listen",
            "0.0.0.0:0",
        ],
        2,
    );
    assert!(
        out.contains("refusing to serve plain HTTP") && out.contains("--insecure-http"),
        "{out}"
    );
}

#[test]
fn a_client_key_reaches_only_its_own_client_and_a_revoked_key_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let a = Agent::enroll(tmp.path(), &site, "minimal", "alpha");
    let b = Agent::enroll(tmp.path(), &site, "debian", "bravo");
    a.cycle();
    b.cycle();
    run_ok("invsync", &["sw", "BRAVO", "--data-dir", site.data_dir()]);
    let bravo_before = site.show("BRAVO");
    let a_token = a.token();
    let b_id = bravo_before["id"].as_str().unwrap().to_string();
    let a_key = a_token.split_once('.').unwrap().1.to_string();
    let http = http();

    // A's key under B's id: refused, so A can neither read B's instructions nor write B's inventory.
    let forged = format!("{b_id}.{a_key}");
    for path in [
        "/cap/v1/checkin",
        "/cap/v1/report",
        "/cap/v1/ack",
        "/cap/v1/wait",
    ] {
        let resp = http
            .post(&format!("{}{path}", site.url))
            .header("Authorization", &format!("Bearer {forged}"))
            .send_json(serde_json::json!({}))
            .unwrap();
        assert_eq!(resp.status(), 401, "{path} accepted A's key for B");
    }
    // A well-formed report (the empty snapshot, hashed right) under A's key and B's id: the
    // key is checked in the same read as the report's plan, and refused there.
    let empty_report = serde_json::json!({ "report_id": "6f1e1a3c-0000-4000-8000-0000000000b1", "class": "sw",
        "hash": "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262", "kind": "full", "items": {} });
    let resp = http
        .post(&format!("{}/cap/v1/report", site.url))
        .header("Authorization", &format!("Bearer {forged}"))
        .send_json(&empty_report)
        .unwrap();
    assert_eq!(
        resp.status(),
        401,
        "a report under A's key for B was not refused"
    );
    // A's own check-in sees only A's (no) instructions, never B's pending request.
    let mut resp = http
        .post(&format!("{}/cap/v1/checkin", site.url))
        .header("Authorization", &format!("Bearer {a_token}"))
        .send_json(serde_json::json!({}))
        .unwrap();
    let checkin: serde_json::Value = resp.body_mut().read_json().unwrap();
    assert_eq!(checkin["instructions"], serde_json::json!([]), "{checkin}");
    // A client token opens neither the admin nor the site-to-site API.
    let resp = http
        .get(&format!("{}/api/v1/clients", site.url))
        .header("Authorization", &format!("Bearer {a_token}"))
        .call()
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = http
        .post(&format!("{}/site/v1/hello", site.url))
        .header("Authorization", &format!("Bearer {a_token}"))
        .send_json(serde_json::json!({}))
        .unwrap();
    assert_eq!(resp.status(), 401);
    let bravo_after = site.show("BRAVO");
    assert_eq!(
        bravo_after["sw"], bravo_before["sw"],
        "B's inventory is untouched"
    );
    assert_eq!(
        bravo_after["requests"][0]["state"], "pending",
        "B's instruction was not picked up by A"
    );

    // Revoked: A's own key stops working at once, with a message that says so.
    let out = run_ok(
        "invsite",
        &["revoke", "ALPHA", "--data-dir", site.data_dir()],
    );
    assert!(out.contains("Revoked"), "{out}");
    let o = run(
        "invagent",
        &["cycle", "--data-dir", s(&a.dir), "--root", s(&a.root)],
    );
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("revoked"), "{}", stderr(&o));
    let mut resp = http
        .post(&format!("{}/cap/v1/report", site.url))
        .header("Authorization", &format!("Bearer {a_token}"))
        .send_json(&empty_report)
        .unwrap();
    assert_eq!(resp.status(), 401);
    let text = resp.body_mut().read_to_string().unwrap();
    assert!(text.contains("revoked"), "{text}");
    run_expect(
        "invsite",
        &["revoke", "NOBODY", "--data-dir", site.data_dir()],
        4,
    );
    // B is unaffected.
    b.cycle();
    site.stop();
}

#[test]
fn a_report_over_the_limits_is_refused_with_the_limit_named_and_stores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let a = Agent::enroll(tmp.path(), &site, "minimal", "limits");
    a.cycle();
    let token = a.token();
    let before = site.show("LIMITS");
    let http = http();
    let post = |body: &serde_json::Value| {
        let mut resp = http
            .post(&format!("{}/cap/v1/report", site.url))
            .header("Authorization", &format!("Bearer {token}"))
            .send_json(body)
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (status, text)
    };
    let mut items = serde_json::Map::new();
    for i in 0..100_001 {
        items.insert(format!("k{i}"), serde_json::json!({}));
    }
    let too_many = serde_json::json!({ "report_id": "6f1e1a3c-0000-4000-8000-0000000000a1", "class": "sw",
        "hash": before["sw"]["hash"], "kind": "full", "items": items });
    let (status, text) = post(&too_many);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("items") && text.contains("100000"), "{text}");
    let long_key = serde_json::json!({ "report_id": "6f1e1a3c-0000-4000-8000-0000000000a2", "class": "sw",
        "hash": before["sw"]["hash"], "kind": "full", "items": { "x".repeat(600): {} } });
    let (status, text) = post(&long_key);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("key"), "{text}");
    // An item key twice in one object: JSON allows it, a map would keep the last one, and the
    // site refuses the report instead of choosing for the sender.
    let raw = format!(
        r#"{{"report_id":"6f1e1a3c-0000-4000-8000-0000000000a3","class":"sw","hash":{},"kind":"full","items":{{"k":{{}},"k":{{"v":"1"}}}}}}"#,
        before["sw"]["hash"]
    );
    let mut resp = http
        .post(&format!("{}/cap/v1/report", site.url))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(raw.as_bytes())
        .unwrap();
    assert_eq!(resp.status(), 400);
    let text = resp.body_mut().read_to_string().unwrap();
    assert!(text.contains(r#"item \"k\" appears twice"#), "{text}");
    // A body over the size limit is refused before it is read.
    let huge = vec![b' '; 17 << 20];
    let resp = http
        .post(&format!("{}/cap/v1/report", site.url))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(&huge[..]);
    assert!(
        resp.map(|r| r.status().as_u16() == 413).unwrap_or(true),
        "an oversized body was not refused"
    );
    assert_eq!(
        site.show("LIMITS")["sw"],
        before["sw"],
        "nothing was stored"
    );
    site.stop();
}

#[test]
fn limits_are_configurable_and_name_themselves_when_they_refuse() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    let out = run_ok(
        "invsite",
        &["config", "--max-items", "20", "--data-dir", site.data_dir()],
    );
    assert!(out.contains("max-items 20"), "{out}");
    run_expect(
        "invsite",
        &["config", "--max-items", "0", "--data-dir", site.data_dir()],
        2,
    );
    site.start();
    // The Debian fixture has 17 hardware items and 23 packages: hw passes, sw is refused.
    let agent = Agent::enroll(tmp.path(), &site, "debian", "bounded");
    let o = run(
        "invagent",
        &[
            "cycle",
            "--data-dir",
            s(&agent.dir),
            "--root",
            s(&agent.root),
        ],
    );
    let text = stdout(&o) + &stderr(&o);
    assert!(text.contains("max_items is 20"), "{text}");
    let v = site.show("BOUNDED");
    assert_eq!(v["hw"]["version"], 1);
    assert!(v["sw"].is_null(), "the refused report stored nothing: {v}");
    site.stop();
}
