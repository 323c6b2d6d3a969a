//! SPEC section 7 where no other test held the tools to it: exit 3 from every command that
//! needs a site, the fields of `invsite clients --json` and `setevnt --json`, and the `hinv`
//! and `sinv` events delivered and acknowledged like `cycle`.

use serde_json::Value;

use crate::common::*;

/// Every `invsite` command that works on an existing site, with its other arguments.
const SITE_COMMANDS: &[&[&str]] = &[
    &["invsite", "serve"],
    &["invsite", "enroll-secret"],
    &["invsite", "admin-token"],
    &["invsite", "revoke", "GOODNAME"],
    &["invsite", "child-token", "C01"],
    &["invsite", "config"],
    &["invsite", "config", "--accept-parent-requests", "true"],
    &["invsite", "sites"],
    &["invsite", "clients"],
    &["invsite", "show", "GOODNAME"],
    &["invsite", "history", "GOODNAME"],
    &["invsite", "user", "list"],
    &["invsite", "user", "add", "eve", "--role", "viewer"],
    &["invsite", "user", "rotate", "eve"],
    &["invsite", "user", "remove", "eve"],
    &["invsite", "audit"],
    &["invsync", "hw", "GOODNAME"],
    &["invsync", "sw", "--all"],
    &["invsync", "cancel", "7"],
    &["setevnt", "GOODNAME", "hinv"],
];

#[test]
fn every_command_that_needs_a_site_exits_3_without_one() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for dir in ["/nonexistent-site", s(&empty)] {
        for command in SITE_COMMANDS {
            let mut args = command[1..].to_vec();
            args.extend_from_slice(&["--data-dir", dir]);
            let out = run_expect(command[0], &args, 3);
            assert!(
                out.contains("site server") && out.contains(dir),
                "{command:?} at {dir}: {out}"
            );
        }
    }
    // The same from $INVSITE_DIR.
    for command in SITE_COMMANDS {
        let o = bin(command[0])
            .args(&command[1..])
            .env("INVSITE_DIR", "/nonexistent-site")
            .output()
            .unwrap();
        assert_eq!(code(&o), 3, "{command:?}: {}", stderr(&o));
    }

    // A site whose admin token cannot be read: every command that acts as the administrator
    // refuses with 3. (`enroll-secret` and `config` read only their own files.)
    let site = Site::init(tmp.path(), "S01");
    std::fs::remove_file(site.dir.join("admin.token")).unwrap();
    for command in SITE_COMMANDS
        .iter()
        .filter(|c| !matches!(c[1], "enroll-secret" | "config"))
    {
        let mut args = command[1..].to_vec();
        args.extend_from_slice(&["--data-dir", site.data_dir()]);
        let out = run_expect(command[0], &args, 3);
        assert!(out.contains("admin token"), "{command:?}: {out}");
    }
}

#[test]
fn invsite_clients_json_has_every_field() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let agent = Agent::enroll(tmp.path(), &site, "debian", "web01");
    Agent::enroll(tmp.path(), &site, "minimal", "db01");
    agent.cycle();
    run_ok("invsync", &["sw", "WEB01", "--data-dir", site.data_dir()]);
    let show = site.show("WEB01");

    let clients = site.clients();
    let list = clients.as_array().unwrap();
    let names: Vec<&str> = list.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["DB01", "WEB01"], "in name order");
    let web = list[1].as_object().unwrap();
    let mut keys: Vec<&str> = web.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "agent_outdated",
            "agent_version",
            "hw_updated_at",
            "hw_version",
            "id",
            "last_seen",
            "name",
            "pending_requests",
            "site",
            "stale",
            "sw_updated_at",
            "sw_version",
            "transport"
        ]
    );
    assert_eq!(web["stale"], false, "seen just now");
    assert_eq!(web["id"], show["id"]);
    assert_eq!(web["site"], "S01");
    assert_eq!(web["last_seen"], show["last_seen"]);
    assert_eq!(
        (web["hw_version"].as_i64(), web["sw_version"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(web["hw_updated_at"], show["hw"]["updated_at"]);
    assert_eq!(web["sw_updated_at"], show["sw"]["updated_at"]);
    assert_eq!(web["pending_requests"], 1);
    assert_eq!(web["transport"], "http", "enrolled over HTTP");
    // A client that never reported has no versions or times yet, and says so with nulls.
    let db = &list[0];
    for field in [
        "last_seen",
        "hw_version",
        "hw_updated_at",
        "sw_version",
        "sw_updated_at",
    ] {
        assert!(
            db[field].is_null(),
            "{field} of a client that never reported: {db}"
        );
    }
    assert_eq!(db["pending_requests"], 0);

    // The text form names the same clients.
    let text = run_ok("invsite", &["clients", "--data-dir", site.data_dir()]);
    assert!(text.contains("WEB01") && text.contains("DB01"), "{text}");
    site.stop();
}

/// `setevnt NAME EVENT --json` at a site: the queued event.
fn setevnt_json(site: &Site, name: &str, event: &str) -> Value {
    let out = run_ok(
        "setevnt",
        &[name, event, "--data-dir", site.data_dir(), "--json"],
    );
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("setevnt --json printed no JSON ({e}): {out}"))
}

#[test]
fn setevnt_json_and_the_hinv_and_sinv_events_are_delivered_and_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let agent = Agent::enroll(tmp.path(), &site, "minimal", "web01");
    agent.cycle();

    let hinv = setevnt_json(&site, "web01", "hinv");
    let mut keys: Vec<&str> = hinv
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["client", "created", "id", "requested_at", "state"],
        "{hinv}"
    );
    assert_eq!(
        (
            hinv["client"].as_str(),
            hinv["created"].as_bool(),
            hinv["state"].as_str()
        ),
        (Some("WEB01"), Some(true), Some("pending"))
    );
    let again = setevnt_json(&site, "WEB01", "hinv");
    assert_eq!(
        (&again["id"], again["created"].as_bool()),
        (&hinv["id"], Some(false)),
        "one pending hinv stands for both"
    );
    let sinv = setevnt_json(&site, "WEB01", "sinv");
    assert_ne!(sinv["id"], hinv["id"]);
    assert_eq!(sinv["created"], true);

    let (h, s) = (hinv["id"].as_i64().unwrap(), sinv["id"].as_i64().unwrap());
    assert_eq!(
        agent.cycle_summary(),
        [
            format!("received event {h}: hinv"),
            format!("received event {s}: sinv"),
            "hw: unchanged (version 1)".to_string(),
            "sw: unchanged (version 1)".to_string(),
            format!("acknowledged events {h}, {s}"),
        ]
    );
    let events = site.show("WEB01")["events"].as_array().unwrap().clone();
    let mut seen: Vec<(i64, &str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["id"].as_i64().unwrap(),
                e["event"].as_str().unwrap(),
                e["state"].as_str().unwrap(),
            )
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        [(h, "hinv", "complete"), (s, "sinv", "complete")],
        "{events:?}"
    );
    site.stop();
}
