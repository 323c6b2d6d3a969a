//! Duplicates and agent versions (issue 20, items 2 and 8) against real sites and agents: a
//! renamed machine (same machine id) and a reimaged one (a new machine id, the same DMI serial
//! and product UUID) stay one client with their old names in `invsite show`, and the parent
//! sees the rename; `invsite config --merge-duplicates false` makes a second record; a name
//! held by another machine is refused; the agent's version is shown and older agents flagged
//! by `--min-agent-version`; bad settings are refused with exit 2.

use serde_json::Value;

use crate::common::*;

/// `invagent enroll` of an existing agent directory under another name (the machine renamed).
fn enroll_as(site: &Site, dir: &std::path::Path, root: &std::path::Path, name: &str) -> String {
    let secret = site.secret();
    run_ok(
        "invagent",
        &[
            "enroll",
            "--data-dir",
            s(dir),
            "--site",
            &site.url,
            "--secret",
            &secret,
            "--name",
            name,
            "--root",
            s(root),
        ],
    )
}

fn names(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect()
}

crate::on_each_db!(a_renamed_and_a_reimaged_machine_stay_one_client);
fn a_renamed_and_a_reimaged_machine_stay_one_client(db: Db) {
    let tmp = tempfile::tempdir().unwrap();
    let mut parent = Site::init_on(tmp.path(), "P01", db, &[]);
    parent.start();
    let mut site = Site::init_child_on(tmp.path(), "C01", &parent, db);
    site.start();
    let web = Agent::enroll(tmp.path(), &site, "debian", "web1");
    web.cycle();
    let first = site.show("web1");
    let id = first["id"].as_str().unwrap().to_string();
    assert_eq!(first["agent_version"], env!("CARGO_PKG_VERSION"), "{first}");
    assert_eq!(first["agent_outdated"], false, "{first}");
    wait_until(15, "the parent holds WEB1", || {
        try_show(&parent, "WEB1", &[]).is_some()
    });

    // Renamed: the same machine id under a new name takes the record over.
    let out = enroll_as(&site, &web.dir, &web.root, "web1-new");
    assert!(out.contains("WEB1-NEW"), "{out}");
    web.cycle();
    let renamed = site.show("web1-new");
    assert_eq!(renamed["id"], id.as_str(), "{renamed}");
    assert_eq!(names(&renamed["former_names"]), ["WEB1"], "{renamed}");
    assert_eq!(
        renamed["merges"][0]["matched_by"], "machine_id",
        "{renamed}"
    );
    assert_eq!(renamed["merges"][0]["old_name"], "WEB1", "{renamed}");
    assert_eq!(renamed["hw"]["version"], 2, "history goes on: {renamed}");
    run_expect(
        "invsite",
        &["show", "web1", "--data-dir", site.data_dir()],
        4,
    );
    let text = run_ok_stdout(
        "invsite",
        &["show", "web1-new", "--data-dir", site.data_dir()],
    );
    assert!(text.contains("formerly named WEB1"), "{text}");
    let mut console = crate::console::Console::new(&site);
    console.login(&site.admin_token());
    let page = console.get("/console/clients/WEB1-NEW");
    assert!(
        page.body.contains(r#"<td id="former-names">WEB1</td>"#),
        "{}",
        page.body
    );
    assert_eq!(site.clients().as_array().unwrap().len(), 1);
    // The parent sees the rename: the same client under its new name.
    wait_until(15, "the parent sees the new name", || {
        try_show(&parent, "WEB1-NEW", &[]).is_some_and(|v| v["id"] == id.as_str())
    });
    assert!(try_show(&parent, "WEB1", &[]).is_none());

    // Reimaged: a new machine id and a new agent directory, the same DMI serial and UUID.
    std::fs::write(
        web.root.join("etc/machine-id"),
        "feedfacefeedfacefeedfacefeedface\n",
    )
    .unwrap();
    let reimaged = tmp.path().join("agent-reimaged");
    enroll_as(&site, &reimaged, &web.root, "web1-re");
    let v = site.show("web1-re");
    assert_eq!(v["id"], id.as_str(), "{v}");
    assert_eq!(v["machine_id"], "feedfacefeedfacefeedfacefeedface", "{v}");
    assert_eq!(names(&v["former_names"]), ["WEB1", "WEB1-NEW"], "{v}");
    assert_eq!(v["merges"][1]["matched_by"], "hardware", "{v}");
    assert_eq!(site.clients().as_array().unwrap().len(), 1);
    // The old agent directory's key no longer works.
    let out = run(
        "invagent",
        &["cycle", "--data-dir", s(&web.dir), "--root", s(&web.root)],
    );
    assert_ne!(code(&out), 0, "the replaced key still works");
}

crate::on_each_db!(merging_off_names_of_other_machines_and_agent_versions);
fn merging_off_names_of_other_machines_and_agent_versions(db: Db) {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init_on(tmp.path(), "S01", db, &[]);
    let dir = site.data_dir().to_string();
    // Bad input: exit 2, naming the argument, and nothing changes.
    for (flag, bad) in [
        ("--min-agent-version", "notaversion"),
        ("--min-agent-version", "1.2.3.4"),
        ("--merge-duplicates", "maybe"),
    ] {
        let out = run_expect("invsite", &["config", flag, bad, "--data-dir", &dir], 2);
        assert!(out.contains(flag), "{flag} {bad}: {out}");
    }
    let shown = run_ok_stdout("invsite", &["config", "--data-dir", &dir]);
    assert!(shown.contains("merge-duplicates on"), "{shown}");
    assert!(shown.contains("min-agent-version none"), "{shown}");

    let shown = run_ok_stdout(
        "invsite",
        &["config", "--merge-duplicates", "false", "--data-dir", &dir],
    );
    assert!(shown.contains("merge-duplicates off"), "{shown}");
    site.start();
    let web = Agent::enroll(tmp.path(), &site, "debian", "web1");
    let first = site.show("web1")["id"].clone();
    enroll_as(&site, &web.dir, &web.root, "web1b");
    let second = site.show("web1b")["id"].clone();
    assert_ne!(first, second, "merging off: a second record");
    assert_eq!(site.clients().as_array().unwrap().len(), 2);

    // Another machine asking for a taken name is refused, naming the holder, with or without
    // merging.
    let other = Agent::enroll(tmp.path(), &site, "minimal", "other1");
    let secret = site.secret();
    let refused = |site: &Site| {
        run_expect(
            "invagent",
            &[
                "enroll",
                "--data-dir",
                s(&other.dir),
                "--site",
                &site.url,
                "--secret",
                &secret,
                "--name",
                "web1",
                "--root",
                s(&other.root),
            ],
            2,
        )
    };
    let out = refused(&site);
    assert!(out.contains("WEB1"), "{out}");
    run_ok(
        "invsite",
        &["config", "--merge-duplicates", "true", "--data-dir", &dir],
    );
    site.stop();
    site.restart();
    refused(&site);
    assert!(site.show("other1")["id"].is_string());
    assert_eq!(site.clients().as_array().unwrap().len(), 3);

    // Agent versions: every client shows its agent's; an older one than the minimum is flagged.
    run_ok(
        "invsite",
        &["config", "--min-agent-version", "999.0", "--data-dir", &dir],
    );
    site.stop();
    site.restart();
    web.cycle();
    let listed = site.clients();
    let web1 = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "WEB1")
        .unwrap();
    assert_eq!(web1["agent_version"], env!("CARGO_PKG_VERSION"), "{web1}");
    assert_eq!(web1["agent_outdated"], true, "{web1}");
    assert_eq!(site.show("web1")["agent_outdated"], true);
    let text = run_ok_stdout("invsite", &["clients", "--data-dir", &dir]);
    assert!(
        text.contains("AGENT") && text.contains("(outdated)"),
        "{text}"
    );
    let mut console = crate::console::Console::new(&site);
    console.login(&site.admin_token());
    let list = console.get("/console/clients");
    assert!(list.body.contains("(outdated)"), "{}", list.body);
    let page = console.get("/console/clients/WEB1");
    assert!(
        page.body.contains(&format!(
            r#"<td id="agent-version">{} <strong class="outdated">"#,
            env!("CARGO_PKG_VERSION")
        )),
        "{}",
        page.body
    );
    let mut resp = http()
        .get(&format!("{}/api/v1/clients/WEB1", site.url))
        .header("Authorization", &format!("Bearer {}", site.admin_token()))
        .call()
        .unwrap();
    let api: Value = resp.body_mut().read_json().unwrap();
    assert_eq!(api["agent_version"], env!("CARGO_PKG_VERSION"), "{api}");
    assert_eq!(api["agent_outdated"], true, "{api}");
    run_ok(
        "invsite",
        &["config", "--min-agent-version", "none", "--data-dir", &dir],
    );
    site.stop();
    site.restart();
    assert_eq!(site.show("web1")["agent_outdated"], false);
}
