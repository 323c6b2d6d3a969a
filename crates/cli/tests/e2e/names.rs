//! SPEC section 3's name rules at every entry point: the CLI tools, the CAP API and the admin
//! API refuse the same names with a clear message and store nothing.

use crate::common::*;

const BAD_NAMES: &[&str] = &[
    "../x",
    "ABCDEFGHIJKLMNOP",
    "",
    "a b",
    "a\u{7}b",
    "a\u{1b}[2J",
    "WEBé01",
    "-x",
    "a/b",
    "a\\b",
];

#[test]
fn the_cli_tools_refuse_bad_names_with_exit_2_and_store_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let secret = site.secret();
    let root = fixture_copy("minimal", tmp.path());
    for bad in BAD_NAMES {
        // A name that starts with '-' is an option to clap; after `--` (or as `--name=…`) the
        // same name reaches the name rule.
        let hyphen = bad.starts_with('-');
        let dd = site.data_dir();
        let args: Vec<&str> = if hyphen {
            vec!["hw", "--data-dir", dd, "--", bad]
        } else {
            vec!["hw", bad, "--data-dir", dd]
        };
        let out = run_expect("invsync", &args, 2);
        assert!(out.contains("client name"), "invsync {bad:?}: {out}");
        let args: Vec<&str> = if hyphen {
            vec!["--data-dir", dd, "--", bad, "cycle"]
        } else {
            vec![bad, "cycle", "--data-dir", dd]
        };
        let out = run_expect("setevnt", &args, 2);
        assert!(out.contains("client name"), "setevnt {bad:?}: {out}");
        let args: Vec<&str> = if hyphen {
            vec!["show", "--data-dir", dd, "--", bad]
        } else {
            vec!["show", bad, "--data-dir", dd]
        };
        let out = run_expect("invsite", &args, 2);
        assert!(out.contains("client name"), "invsite show {bad:?}: {out}");
        let agent_dir = tmp.path().join("agent");
        let name_arg = format!("--name={bad}");
        let out = run_expect(
            "invagent",
            &[
                "enroll",
                "--data-dir",
                s(&agent_dir),
                "--site",
                &site.url,
                "--secret",
                &secret,
                &name_arg,
                "--root",
                s(&root),
            ],
            2,
        );
        assert!(
            out.contains("client name"),
            "invagent enroll --name {bad:?}: {out}"
        );
        assert!(
            !agent_dir.join("state.json").exists(),
            "a refused enrollment wrote agent state"
        );
    }
    // A message never echoes control bytes back to the terminal.
    let o = run(
        "invsync",
        &["hw", "a\u{1b}[2J", "--data-dir", site.data_dir()],
    );
    assert!(!stderr(&o).contains('\u{1b}'), "{:?}", stderr(&o));
    assert!(site.clients().as_array().unwrap().is_empty());
    site.stop();
}

#[test]
fn the_cap_and_admin_apis_refuse_bad_names_and_store_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let secret = site.secret();
    let token = site.admin_token();
    let http = http();
    for bad in BAD_NAMES {
        let body = serde_json::json!({ "secret": secret, "name": bad, "machine_id": "0123456789abcdef0123456789abcdef" });
        let mut resp = http
            .post(&format!("{}/cap/v1/enroll", site.url))
            .send_json(&body)
            .unwrap();
        assert_eq!(resp.status(), 400, "CAP enroll accepted {bad:?}");
        let err: serde_json::Value = resp.body_mut().read_json().unwrap();
        assert!(
            err["error"].as_str().unwrap().contains("client name"),
            "{err}"
        );
    }
    for bad in [
        "..%2Fx",
        "ABCDEFGHIJKLMNOP",
        "a%20b",
        "a%07b",
        "WEB%C3%A901",
    ] {
        let url = format!("{}/api/v1/clients/{bad}", site.url);
        let resp = http
            .get(&url)
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .unwrap();
        assert_eq!(resp.status(), 400, "admin API accepted {bad:?}");
        let url = format!("{}/api/v1/clients/{bad}/requests", site.url);
        let resp = http
            .post(&url)
            .header("Authorization", &format!("Bearer {token}"))
            .send_json(serde_json::json!({ "class": "hw" }))
            .unwrap();
        assert_eq!(resp.status(), 400, "admin API queued a request for {bad:?}");
    }
    // Wrong credentials are refused before names are even looked at.
    let resp = http
        .get(&format!("{}/api/v1/clients", site.url))
        .call()
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body = serde_json::json!({ "secret": "wrong", "name": "GOOD", "machine_id": "0123456789abcdef0123456789abcdef" });
    let resp = http
        .post(&format!("{}/cap/v1/enroll", site.url))
        .send_json(&body)
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        site.clients().as_array().unwrap().is_empty(),
        "nothing was stored"
    );
    site.stop();
}

#[test]
fn a_second_machine_cannot_take_a_name_and_the_same_machine_keeps_its_id() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let first = Agent::enroll(tmp.path(), &site, "debian", "web01");
    let id = site.show("WEB01")["id"].clone();

    // The same machine (same machine id) enrolling again keeps its client id.
    let secret = site.secret();
    let out = run_ok(
        "invagent",
        &[
            "enroll",
            "--data-dir",
            s(&first.dir),
            "--site",
            &site.url,
            "--secret",
            &secret,
            "--name",
            "WEB01",
            "--root",
            s(&first.root),
        ],
    );
    assert!(out.contains("re-enrolled"), "{out}");
    assert_eq!(site.show("WEB01")["id"], id);

    // Another machine under the same name is refused with a message naming the holder.
    let other_root = fixture_copy("alpine", tmp.path());
    let out = run_expect(
        "invagent",
        &[
            "enroll",
            "--data-dir",
            s(&tmp.path().join("other")),
            "--site",
            &site.url,
            "--secret",
            &secret,
            "--name",
            "web01",
            "--root",
            s(&other_root),
        ],
        2,
    );
    assert!(out.contains("WEB01") && out.contains("taken"), "{out}");
    assert!(
        out.contains(id.as_str().unwrap()),
        "the message names the holder: {out}"
    );
    assert_eq!(site.clients().as_array().unwrap().len(), 1);
    site.stop();
}

#[test]
fn the_site_to_site_api_refuses_bad_names_and_codes_and_stores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut parent = Site::init(tmp.path(), "P01");
    parent.start();
    let token = parent.child_token("C01");
    let http = http();
    let status = |code: &str| {
        serde_json::json!({ "code": code, "name": "child", "clients": 0, "outbox_depth": 0,
                            "reported_at": "2026-11-25T00:00:00.000Z" })
    };
    for bad_code in ["../", "C0", "C001", "c0\u{7}"] {
        let resp = http
            .post(&format!("{}/site/v1/hello", parent.url))
            .header("Authorization", &format!("Bearer {token}"))
            .send_json(serde_json::json!({ "status": status(bad_code) }))
            .unwrap();
        assert_eq!(resp.status(), 400, "hello accepted site code {bad_code:?}");
    }
    for bad in BAD_NAMES {
        let entry = serde_json::json!({
            "seq": 1, "class": "hw", "version": 1, "hash": "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
            "full_at": "2026-11-25T00:00:00.000Z", "updated_at": "2026-11-25T00:00:00.000Z", "kind": "full", "items": {},
            "client": { "id": "6f1e1a3c-0000-4000-8000-000000000001", "name": bad, "site": "C01",
                        "machine_id": "0123456789abcdef0123456789abcdef", "enrolled_at": "2026-11-25T00:00:00.000Z" } });
        let resp = http
            .post(&format!("{}/site/v1/forward", parent.url))
            .header("Authorization", &format!("Bearer {token}"))
            .send_json(serde_json::json!({ "from": status("C01"), "entries": [entry] }))
            .unwrap();
        assert_eq!(resp.status(), 400, "forward accepted client name {bad:?}");
    }
    assert!(
        parent.clients().as_array().unwrap().is_empty(),
        "nothing was stored"
    );
    parent.stop();
}
