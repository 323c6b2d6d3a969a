//! SPEC section 5 end to end: changes travel as deltas against the acknowledged version with
//! an end-to-end hash check, every accepted change lands in history, a duplicated report is
//! stored once, a delta against the wrong base stores nothing, and a restored site database or
//! a wiped agent heal themselves in one cycle.

use serde_json::{Value, json};

use crate::common::*;

fn keys(history: &[Value]) -> Vec<(String, bool, bool)> {
    history
        .iter()
        .map(|h| {
            (
                h["key"].as_str().unwrap().to_string(),
                h["old"].is_null(),
                h["new"].is_null(),
            )
        })
        .collect()
}

crate::on_each_db!(added_changed_and_removed_packages_arrive_as_one_delta_each_with_history => deltas_with_history);

fn deltas_with_history(db: Db) {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init_on(tmp.path(), "S01", db, &[]);
    site.start();
    let agent = Agent::enroll(tmp.path(), &site, "debian", "deltas");
    agent.cycle();
    let v1 = site.show("DELTAS");
    let full_at = v1["sw"]["full_at"].clone();
    assert_eq!(v1["sw"]["version"], 1);
    assert!(
        site.history("DELTAS", &[]).is_empty(),
        "the first snapshot is not a change"
    );

    agent.add_package("newpkg", "1.0-1");
    let out = agent.cycle();
    assert!(out.contains("sw: sent delta"), "{out}");
    assert!(out.contains("hw: unchanged"), "{out}");
    let v = site.show("DELTAS");
    assert_eq!(v["sw"]["version"], 2);
    assert_eq!(v["sw"]["full_at"], full_at, "a delta does not move full_at");
    assert_ne!(v["sw"]["updated_at"], full_at);
    assert_eq!(v["sw"]["items"]["dpkg/newpkg/amd64"]["version"], "1.0-1");

    agent.set_version("bash", "5.2.15-3");
    agent.cycle();
    agent.remove_package("gzip");
    agent.cycle();
    let v = site.show("DELTAS");
    assert_eq!(v["sw"]["version"], 4);
    assert_eq!(v["hw"]["version"], 1, "nothing changed in hardware");
    assert_eq!(v["sw"]["full_at"], full_at);
    assert!(v["sw"]["items"].get("dpkg/gzip/amd64").is_none());
    assert_eq!(v["sw"]["items"]["dpkg/bash/amd64"]["version"], "5.2.15-3");
    // The site's snapshot is exactly what the agent collects, hash and all.
    let local = agent.inventory("sw");
    assert_eq!(v["sw"]["items"], local["items"]);
    assert_eq!(v["sw"]["hash"], local["hash"]);

    let history = site.history("DELTAS", &["--class", "sw"]);
    assert_eq!(
        keys(&history),
        vec![
            ("dpkg/gzip/amd64".to_string(), false, true),
            ("dpkg/bash/amd64".to_string(), false, false),
            ("dpkg/newpkg/amd64".to_string(), true, false),
        ],
        "newest first: removed, changed, added"
    );
    assert!(
        history
            .iter()
            .all(|h| h["full"] == false && h["class"] == "sw")
    );
    assert_eq!(history[1]["old"]["version"], "5.2.15-2+b8");
    assert_eq!(history[1]["new"]["version"], "5.2.15-3");
    assert!(site.history("DELTAS", &["--class", "hw"]).is_empty());
    assert!(
        site.history("DELTAS", &["--since", "2099-01-01T00:00:00Z"])
            .is_empty()
    );
    assert_eq!(site.history("DELTAS", &["--since", "1h"]).len(), 3);
    let text = run_ok(
        "invsite",
        &["history", "DELTAS", "--data-dir", site.data_dir()],
    );
    assert!(
        text.contains("~ dpkg/bash/amd64  version: 5.2.15-2+b8 -> 5.2.15-3"),
        "{text}"
    );
    assert!(
        text.contains("- dpkg/gzip/amd64") && text.contains("+ dpkg/newpkg/amd64"),
        "{text}"
    );
    run_expect(
        "invsite",
        &["history", "NOBODY", "--data-dir", site.data_dir()],
        4,
    );
    run_expect(
        "invsite",
        &[
            "history",
            "DELTAS",
            "--data-dir",
            site.data_dir(),
            "--since",
            "whenever",
        ],
        2,
    );
    site.stop();
}

/// Posts a report as an agent would (plain JSON; the site also reads zstd).
fn post_report(site: &Site, token: &str, report: &Value) -> (u16, Value) {
    let mut resp = http()
        .post(&format!("{}/cap/v1/report", site.url))
        .header("Authorization", &format!("Bearer {token}"))
        .send_json(report)
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_json().unwrap())
}

crate::on_each_db!(a_duplicated_report_is_stored_once_and_a_wrong_base_stores_nothing => duplicates_and_wrong_bases);

fn duplicates_and_wrong_bases(db: Db) {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init_on(tmp.path(), "S01", db, &[]);
    site.start();
    let agent = Agent::enroll(tmp.path(), &site, "debian", "dupes");
    agent.cycle();
    let token = agent.token();
    let before = site.show("DUPES");
    let hash = before["sw"]["hash"].clone();
    let items = before["sw"]["items"].clone();

    // The same full report twice: stored once, acknowledged twice.
    let report = json!({ "report_id": "6f1e1a3c-0000-4000-8000-000000000001", "class": "sw",
                         "hash": hash, "kind": "full", "items": items });
    let (status, ack) = post_report(&site, &token, &report);
    assert_eq!(
        (status, ack["status"].as_str()),
        (200, Some("accepted")),
        "{ack}"
    );
    assert_eq!(ack["version"], 2);
    let (status, ack) = post_report(&site, &token, &report);
    assert_eq!(
        (status, ack["status"].as_str()),
        (200, Some("duplicate")),
        "{ack}"
    );
    assert_eq!(ack["version"], 2);
    assert_eq!(site.show("DUPES")["sw"]["version"], 2);

    // A delta against a base the site does not hold: resync required, nothing stored.
    let delta = json!({ "report_id": "6f1e1a3c-0000-4000-8000-000000000002", "class": "sw",
                        "hash": hash, "kind": "delta", "base_version": 1,
                        "delta": { "remove": ["dpkg/bash/amd64"] } });
    let (_, ack) = post_report(&site, &token, &delta);
    assert_eq!(ack["status"], "resync_required", "{ack}");
    // The right base but a hash that is not what applying the delta gives: also refused.
    let mut wrong_hash = delta.clone();
    wrong_hash["report_id"] = json!("6f1e1a3c-0000-4000-8000-000000000003");
    wrong_hash["base_version"] = json!(2);
    let (_, ack) = post_report(&site, &token, &wrong_hash);
    assert_eq!(ack["status"], "resync_required", "{ack}");
    assert!(ack["reason"].as_str().unwrap().contains("hash"), "{ack}");
    // A full report whose hash does not match its items is bad input.
    let mut bad_full = report.clone();
    bad_full["report_id"] = json!("6f1e1a3c-0000-4000-8000-000000000004");
    bad_full["items"]["dpkg/bash/amd64"]["version"] = json!("6.0");
    let (status, _) = post_report(&site, &token, &bad_full);
    assert_eq!(status, 400);
    let after = site.show("DUPES");
    assert_eq!(after["sw"]["version"], 2);
    assert_eq!(after["sw"]["items"], items);
    assert!(
        site.history("DUPES", &[]).is_empty(),
        "no refused report left history"
    );

    // A zstd bomb is refused as too large and stores nothing.
    let bomb = zstd_bomb();
    let resp = http()
        .post(&format!("{}/cap/v1/report", site.url))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Encoding", "zstd")
        .header("Content-Type", "application/json")
        .send(&bomb[..])
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(site.show("DUPES")["sw"]["version"], 2);

    // The site is at version 2 (the report posted above) while the agent acknowledged version 1:
    // its next cycle sends the same items in full, and the site agrees with it from then on.
    assert_eq!(
        agent.cycle_summary(),
        [
            "hw: unchanged (version 1)",
            "sw: sent full report (the site holds version 2 with another hash), site now at version 3"
        ]
    );
    let v = site.show("DUPES");
    assert_eq!(
        (v["sw"]["version"].as_i64(), &v["sw"]["items"]),
        (Some(3), &items)
    );
    assert!(
        site.history("DUPES", &[]).is_empty(),
        "the same items again are no change"
    );
    assert_eq!(
        agent.cycle_summary(),
        ["hw: unchanged (version 1)", "sw: unchanged (version 3)"]
    );
    site.stop();
}

/// 100 MB of spaces inside a JSON string, compressed to a few kilobytes.
fn zstd_bomb() -> Vec<u8> {
    let mut json = b"{\"pad\":\"".to_vec();
    json.resize(100 << 20, b' ');
    json.extend_from_slice(b"\"}");
    zstd::bulk::compress(&json, 19).unwrap()
}

#[test]
fn a_restored_site_database_heals_in_one_cycle() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let agent = Agent::enroll(tmp.path(), &site, "debian", "restored");
    agent.cycle();
    site.stop();
    let backup = tmp.path().join("backup");
    copy_dir(&site.dir, &backup);

    site.restart();
    agent.add_package("later", "2.0");
    agent.set_version("tar", "1.35-1");
    agent.cycle();
    assert_eq!(site.show("RESTORED")["sw"]["version"], 2);
    site.stop();

    // Restore yesterday's backup: the site is back at version 1 and knows nothing of the change.
    std::fs::remove_dir_all(&site.dir).unwrap();
    copy_dir(&backup, &site.dir);
    // A plain copy leaves the directory open to others; the site refuses to start like that.
    std::fs::set_permissions(
        &site.dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    site.restart();
    assert_eq!(site.show("RESTORED")["sw"]["version"], 1);

    let out = agent.cycle();
    assert!(out.contains("sw: sent full report"), "{out}");
    let v = site.show("RESTORED");
    let local = agent.inventory("sw");
    assert_eq!(
        v["sw"]["items"], local["items"],
        "the site's snapshot equals the agent's exactly"
    );
    assert_eq!(v["sw"]["hash"], local["hash"]);
    assert_eq!(v["hw"]["hash"], agent.inventory("hw")["hash"]);
    // The next cycle has nothing to send.
    let out = agent.cycle();
    assert!(
        out.contains("sw: unchanged") && out.contains("hw: unchanged"),
        "{out}"
    );
    site.stop();
}

#[test]
fn a_wiped_agent_reenrolls_as_the_same_client_and_history_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let agent = Agent::enroll(tmp.path(), &site, "debian", "wiped");
    agent.cycle();
    agent.set_version("sed", "4.9-2");
    agent.cycle();
    let id = site.show("WIPED")["id"].clone();
    assert_eq!(site.history("WIPED", &[]).len(), 1);

    std::fs::remove_dir_all(&agent.dir).unwrap();
    agent.set_version("grep", "3.8-6");
    let secret = site.secret();
    let out = run_ok(
        "invagent",
        &[
            "enroll",
            "--data-dir",
            s(&agent.dir),
            "--site",
            &site.url,
            "--secret",
            &secret,
            "--name",
            "wiped",
            "--root",
            s(&agent.root),
        ],
    );
    assert!(out.contains("re-enrolled"), "the same machine: {out}");
    let out = agent.cycle();
    assert!(out.contains("sw: sent full report"), "{out}");
    let v = site.show("WIPED");
    assert_eq!(v["id"], id, "same client id");
    assert_eq!(v["sw"]["version"], 3);
    assert_eq!(v["sw"]["items"], agent.inventory("sw")["items"]);
    let history = site.history("WIPED", &["--class", "sw"]);
    assert_eq!(
        keys(&history)[0],
        ("dpkg/grep/amd64".to_string(), false, false)
    );
    assert_eq!(
        history[0]["full"], true,
        "the full report recorded its difference"
    );
    assert_eq!(history.len(), 2, "history continues");
    site.stop();
}
