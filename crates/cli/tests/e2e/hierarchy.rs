//! SPEC section 6 end to end: grandchild, child and parent sites on 127.0.0.1:0, changes
//! forwarded up in order through durable outboxes, ownership shown at every level, `invsync`
//! refusing another site's client with exit 5, and nothing lost when a parent is down or a
//! child is killed.

use serde_json::Value;

use crate::common::*;

fn version_at(site: &Site, name: &str, class: &str, extra: &[&str]) -> Option<i64> {
    try_show(site, name, extra).and_then(|v| v[class]["version"].as_i64())
}

fn history_keys(site: &Site, name: &str, extra: &[&str]) -> Vec<(String, Value, Value)> {
    let mut args = vec!["history", name, "--data-dir", site.data_dir(), "--json"];
    args.extend_from_slice(extra);
    let out = run_ok("invsite", &args);
    let v: Value = serde_json::from_str(&out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["key"].as_str().unwrap().to_string(),
                h["old"].clone(),
                h["new"].clone(),
            )
        })
        .collect()
}

crate::on_each_db!(three_levels_forward_in_order_and_refuse_requests_for_other_sites_clients => three_levels);

fn three_levels(db: Db) {
    let tmp = tempfile::tempdir().unwrap();
    let mut parent = Site::init_on(tmp.path(), "P01", db, &[]);
    parent.start();
    let mut child = Site::init_child_on(tmp.path(), "C01", &parent, db);
    child.start();
    let mut grand = Site::init_child_on(tmp.path(), "G01", &child, db);
    grand.start();

    let agent = Agent::enroll(tmp.path(), &grand, "debian", "web01");
    agent.cycle();
    wait_until(15, "the parent holds WEB01's full reports", || {
        version_at(&parent, "WEB01", "sw", &[]) == Some(1)
    });
    let at_parent = try_show(&parent, "WEB01", &[]).unwrap();
    let at_grand = grand.show("WEB01");
    assert_eq!(at_parent["site"], "G01", "the owner is the grandchild");
    assert_eq!(at_parent["id"], at_grand["id"]);
    assert_eq!(at_parent["sw"]["hash"], at_grand["sw"]["hash"]);
    assert_eq!(at_parent["hw"]["hash"], at_grand["hw"]["hash"]);
    assert_eq!(try_show(&child, "WEB01", &[]).unwrap()["site"], "G01");
    // The agent's version travels up with the client's record, through the middle site.
    assert_eq!(
        at_grand["agent_version"],
        env!("CARGO_PKG_VERSION"),
        "{at_grand}"
    );
    assert_eq!(
        at_parent["agent_version"], at_grand["agent_version"],
        "{at_parent}"
    );

    // A delta travels up with the owner's version numbers.
    agent.set_version("bash", "5.2.15-9");
    agent.cycle();
    wait_until(15, "the delta reaches the parent", || {
        version_at(&parent, "WEB01", "sw", &[]) == Some(2)
    });
    assert_eq!(
        try_show(&parent, "WEB01", &[]).unwrap()["sw"]["items"]["dpkg/bash/amd64"]["version"],
        "5.2.15-9"
    );
    assert_eq!(
        history_keys(&parent, "WEB01", &[]),
        history_keys(&grand, "WEB01", &[])
    );

    // invsync at the parent and at the child refuses, naming the owner, its URL and the command.
    for site in [&parent, &child] {
        let out = run_expect(
            "invsync",
            &["hw", "WEB01", "--data-dir", site.data_dir()],
            5,
        );
        assert!(out.contains("G01") && out.contains(&grand.url), "{out}");
        assert!(out.contains("invsync hw WEB01"), "{out}");
        let out = run_expect(
            "setevnt",
            &["WEB01", "cycle", "--data-dir", site.data_dir()],
            5,
        );
        assert!(out.contains("G01"), "{out}");
    }

    // At the owning site it works, and the new full report reaches the top.
    let hw_full_at = try_show(&parent, "WEB01", &[]).unwrap()["hw"]["full_at"].clone();
    run_ok("invsync", &["hw", "WEB01", "--data-dir", grand.data_dir()]);
    agent.cycle();
    wait_until(15, "the resync's full report reaches the parent", || {
        try_show(&parent, "WEB01", &[]).is_some_and(|v| v["hw"]["full_at"] != hw_full_at)
    });
    let top = try_show(&parent, "WEB01", &[]).unwrap();
    assert_eq!(top["hw"]["version"], 2);
    let requests = top["requests"].as_array().unwrap();
    assert!(
        requests
            .iter()
            .any(|r| r["class"] == "hw" && r["state"] == "complete"),
        "the completed request is visible at the parent: {top}"
    );

    // The tree of sites as the parent sees it.
    let sites: Value = serde_json::from_str(&run_ok(
        "invsite",
        &["sites", "--data-dir", parent.data_dir(), "--json"],
    ))
    .unwrap();
    assert_eq!(sites["site"]["code"], "P01");
    let below = sites["below"].as_array().unwrap();
    let codes: Vec<&str> = below.iter().map(|s| s["code"].as_str().unwrap()).collect();
    assert_eq!(codes, vec!["C01", "G01"]);
    assert_eq!(below[1]["parent"], "C01");
    assert_eq!(below[1]["clients"], 1);
    let text = run_ok("invsite", &["sites", "--data-dir", parent.data_dir()]);
    assert!(
        text.contains("P01") && text.contains("  C01") && text.contains("    G01"),
        "{text}"
    );

    grand.stop();
    child.stop();
    parent.stop();
}

#[test]
fn a_parent_that_was_down_receives_every_change_in_order_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut parent = Site::init(tmp.path(), "P01");
    parent.start();
    let mut child = Site::init_child(tmp.path(), "C01", &parent);
    child.start();
    let agent = Agent::enroll(tmp.path(), &child, "debian", "db01");
    agent.cycle();
    wait_until(15, "the first reports reach the parent", || {
        version_at(&parent, "DB01", "sw", &[]) == Some(1)
    });

    parent.stop();
    agent.add_package("one", "1");
    agent.cycle();
    agent.set_version("tar", "1.35-2");
    agent.cycle();
    agent.remove_package("gzip");
    agent.cycle();
    assert_eq!(child.show("DB01")["sw"]["version"], 4);
    let sites: Value = serde_json::from_str(&run_ok(
        "invsite",
        &["sites", "--data-dir", child.data_dir(), "--json"],
    ))
    .unwrap();
    assert_eq!(
        sites["site"]["outbox_depth"], 3,
        "three changes wait for the parent"
    );

    parent.restart();
    wait_until(40, "the parent catches up", || {
        version_at(&parent, "DB01", "sw", &[]) == Some(4)
    });
    assert_eq!(
        try_show(&parent, "DB01", &[]).unwrap()["sw"]["hash"],
        child.show("DB01")["sw"]["hash"]
    );
    let up = history_keys(&parent, "DB01", &[]);
    assert_eq!(
        up,
        history_keys(&child, "DB01", &[]),
        "every change arrived, in order, none twice"
    );
    assert_eq!(up.len(), 3);
    child.stop();
    parent.stop();
}

#[test]
fn a_child_killed_while_forwarding_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut parent = Site::init(tmp.path(), "P01");
    parent.start();
    let mut child = Site::init_child(tmp.path(), "C01", &parent);
    child.start();
    let agents: Vec<Agent> = (0..4)
        .map(|i| Agent::enroll(tmp.path(), &child, "debian", &format!("app{i}")))
        .collect();
    for (i, a) in agents.iter().enumerate() {
        a.cycle();
        a.set_version("sed", &format!("4.9-{}", i + 10));
        a.cycle();
    }
    // Killed at once: whatever was in flight is either acknowledged or still in the outbox.
    child.kill();
    child.restart();
    for (i, _) in agents.iter().enumerate() {
        let name = format!("APP{i}");
        wait_until(30, "the parent holds every client's latest version", || {
            version_at(&parent, &name, "sw", &[]) == Some(2)
        });
        assert_eq!(
            try_show(&parent, &name, &[]).unwrap()["sw"]["hash"],
            child.show(&name)["sw"]["hash"]
        );
        assert_eq!(
            history_keys(&parent, &name, &[]),
            history_keys(&child, &name, &[])
        );
    }
    child.stop();
    parent.stop();
}

#[test]
fn names_are_unique_per_site_only_and_codes_per_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let mut parent = Site::init(tmp.path(), "P01");
    parent.start();
    let mut c1 = Site::init_child(tmp.path(), "C01", &parent);
    c1.start();
    let mut c2 = Site::init_child(tmp.path(), "C02", &parent);
    c2.start();
    Agent::enroll(tmp.path(), &c1, "debian", "web01").cycle();
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    Agent::enroll(&other, &c2, "alpine", "web01").cycle();
    wait_until(15, "both WEB01s reach the parent", || {
        run(
            "invsite",
            &["clients", "--data-dir", parent.data_dir(), "--json"],
        )
        .stdout
        .len()
            > 10
            && parent.clients().as_array().unwrap().len() == 2
    });
    let clients = parent.clients();
    let sites: Vec<&str> = clients
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["site"].as_str().unwrap())
        .collect();
    assert_eq!(sites, vec!["C01", "C02"]);
    let out = run_expect(
        "invsite",
        &["show", "WEB01", "--data-dir", parent.data_dir()],
        2,
    );
    assert!(
        out.contains("C01") && out.contains("C02") && out.contains("--site"),
        "{out}"
    );
    let one = try_show(&parent, "WEB01", &["--site", "C02"]).unwrap();
    assert_eq!(one["site"], "C02");
    assert_eq!(
        one["sw"]["items"]
            .as_object()
            .unwrap()
            .keys()
            .next()
            .unwrap()
            .split('/')
            .next(),
        Some("apk")
    );
    let out = run_expect(
        "invsync",
        &["sw", "WEB01", "--data-dir", parent.data_dir()],
        5,
    );
    assert!(out.contains("C01") && out.contains("C02"), "{out}");

    // Codes: the parent's own code, a wrong token and a token for another code are refused.
    run_expect(
        "invsite",
        &["child-token", "P01", "--data-dir", parent.data_dir()],
        2,
    );
    let token = parent.child_token("C03");
    let wrong_code = tmp.path().join("wrong-code");
    let out = run_expect(
        "invsite",
        &[
            "init",
            "--data-dir",
            s(&wrong_code),
            "--site-code",
            "C04",
            "--parent",
            &parent.url,
            "--parent-token",
            &token,
        ],
        2,
    );
    assert!(out.contains("issued for site C03"), "{out}");
    let forged = format!("C03.{}", "0".repeat(64));
    let out = run_expect(
        "invsite",
        &[
            "init",
            "--data-dir",
            s(&wrong_code),
            "--site-code",
            "C03",
            "--parent",
            &parent.url,
            "--parent-token",
            &forged,
        ],
        2,
    );
    assert!(out.contains("refused"), "{out}");
    assert!(
        !wrong_code.join("config.json").exists(),
        "a refused init creates nothing"
    );
    // A site below C02 may not take a code already used through C01.
    let mut dup_site = Site::init_child(&tmp.path().join("dup"), "C01", &c2);
    dup_site.start();
    Agent::enroll(&tmp.path().join("dupagent"), &dup_site, "minimal", "x1").cycle();
    // C02 accepts its child, but the parent refuses a second C01 in its tree: nothing of it
    // appears there. The absence means something only once C02 has forwarded X1's reports and
    // had the parent's answer, which empties C02's outbox (a refused change is dropped).
    wait_until(30, "C02 holds X1's reports", || {
        version_at(&c2, "X1", "hw", &[]) == Some(1) && version_at(&c2, "X1", "sw", &[]) == Some(1)
    });
    wait_until(30, "C02 has forwarded everything it holds", || {
        let v: Value = serde_json::from_str(&run_ok(
            "invsite",
            &["sites", "--data-dir", c2.data_dir(), "--json"],
        ))
        .unwrap();
        v["site"]["outbox_depth"] == 0
    });
    assert!(try_show(&parent, "X1", &[]).is_none());
    assert_eq!(
        try_show(&parent, "WEB01", &["--site", "C02"]).unwrap()["site"],
        "C02",
        "C02's own client still arrived"
    );
    dup_site.stop();
    c1.stop();
    c2.stop();
    parent.stop();
}

/// `invsite init` of a child site of `parent` that queues resync requests its parent routes
/// down (`--accept-parent-requests`).
fn init_accepting_child(tmp: &std::path::Path, code: &str, parent: &Site) -> Site {
    let token = parent.child_token(code);
    Site::init_on(
        tmp,
        code,
        Db::Sqlite,
        &[
            "--parent",
            &parent.url,
            "--parent-token",
            &token,
            "--accept-parent-requests",
        ],
    )
}

/// The resync requests `invsite show` lists for a client at a site (empty while it holds none).
fn requests_at(site: &Site, name: &str) -> Vec<Value> {
    try_show(site, name, &[])
        .and_then(|v| v["requests"].as_array().cloned())
        .unwrap_or_default()
}

fn find_request(list: &[Value], f: impl Fn(&Value) -> bool) -> Option<Value> {
    list.iter().find(|r| f(r)).cloned()
}

#[test]
fn invsync_via_child_routes_a_request_down_to_the_owner_and_both_sites_see_it_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let mut parent = Site::init(tmp.path(), "P01");
    parent.start();
    // C01 does not accept requests from its parent (the default); G01 below it does.
    let mut child = Site::init_child(tmp.path(), "C01", &parent);
    child.start();
    let mut grand = init_accepting_child(tmp.path(), "G01", &child);
    grand.start();
    let web = Agent::enroll(tmp.path(), &grand, "debian", "web01");
    web.cycle();
    let db = Agent::enroll(tmp.path(), &child, "minimal", "db01");
    db.cycle();
    wait_until(15, "the parent holds both clients", || {
        version_at(&parent, "WEB01", "hw", &[]) == Some(1)
            && version_at(&parent, "DB01", "hw", &[]) == Some(1)
    });
    let sites: Value = serde_json::from_str(&run_ok(
        "invsite",
        &["sites", "--data-dir", parent.data_dir(), "--json"],
    ))
    .unwrap();
    let accepts: Vec<(&str, bool)> = sites["below"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["code"].as_str().unwrap(),
                s["accepts_parent_requests"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(accepts, vec![("C01", false), ("G01", true)]);

    // Without --via-child nothing changes: exit 5. With it, the request is routed to G01.
    run_expect(
        "invsync",
        &["hw", "WEB01", "--data-dir", parent.data_dir()],
        5,
    );
    let out = run_ok(
        "invsync",
        &[
            "hw",
            "WEB01",
            "--via-child",
            "--data-dir",
            parent.data_dir(),
        ],
    );
    assert!(
        out.contains("Routed") && out.contains("owning site G01"),
        "{out}"
    );
    let at_top = find_request(&requests_at(&parent, "WEB01"), |r| r["route"] == "G01")
        .expect("the routed request at the parent");
    assert_eq!(at_top["state"], "pending");
    let id = at_top["id"].as_i64().unwrap();
    let origin = format!("P01:{id}");
    let again: Value = serde_json::from_str(&run_ok(
        "invsync",
        &[
            "hw",
            "WEB01",
            "--via-child",
            "--json",
            "--data-dir",
            parent.data_dir(),
        ],
    ))
    .unwrap();
    assert_eq!(
        (again["id"].as_i64(), &again["created"], &again["routed_to"]),
        (Some(id), &Value::from(false), &Value::from("G01"))
    );

    // The forwarders carry it down two levels (heartbeats every 2 s): the owner queues it.
    wait_until(15, "the request reaches the owning site G01", || {
        find_request(&requests_at(&grand, "WEB01"), |r| {
            r["origin"] == origin.as_str()
        })
        .is_some()
    });
    let at_owner = find_request(&requests_at(&grand, "WEB01"), |r| {
        r["origin"] == origin.as_str()
    })
    .unwrap();
    assert_eq!(
        (&at_owner["class"], &at_owner["state"]),
        (&Value::from("hw"), &Value::from("pending"))
    );
    let on_the_way = find_request(&requests_at(&child, "WEB01"), |r| {
        r["origin"] == origin.as_str()
    })
    .expect("routed on at C01");
    assert_eq!(on_the_way["route"], "G01");

    // The agent answers it; the full report completes it at G01, then at C01 and P01.
    let cycle = web.cycle();
    assert!(
        cycle.contains(&format!("answers request {}", at_owner["id"])),
        "{cycle}"
    );
    let done_at_owner = find_request(&requests_at(&grand, "WEB01"), |r| {
        r["origin"] == origin.as_str()
    })
    .unwrap();
    assert_eq!(done_at_owner["state"], "complete");
    wait_until(15, "the request completes at the parent", || {
        find_request(&requests_at(&parent, "WEB01"), |r| r["id"] == id)
            .is_some_and(|r| r["state"] == "complete")
    });
    let done_at_top = find_request(&requests_at(&parent, "WEB01"), |r| r["id"] == id).unwrap();
    assert_eq!(
        done_at_top["completed_at"], done_at_owner["completed_at"],
        "the owner's times"
    );
    assert_eq!(done_at_top["picked_up_at"], done_at_owner["picked_up_at"]);
    assert_eq!(
        requests_at(&parent, "WEB01")
            .iter()
            .filter(|r| r["class"] == "hw")
            .count(),
        1,
        "completed in place at the parent, not recorded twice"
    );
    wait_until(15, "the request completes at the middle site", || {
        find_request(&requests_at(&child, "WEB01"), |r| {
            r["origin"] == origin.as_str()
        })
        .is_some_and(|r| r["state"] == "complete")
    });
    let text = run_ok(
        "invsite",
        &["show", "WEB01", "--data-dir", parent.data_dir()],
    );
    assert!(
        text.contains(&format!(
            "request {id}: hw resync complete (routed to site G01)"
        )),
        "{text}"
    );

    // --wait follows a routed request at the site where invsync ran until it completes there.
    let waiting = bin("invsync")
        .args([
            "sw",
            "WEB01",
            "--via-child",
            "--site",
            "G01",
            "--wait",
            "--timeout",
            "30s",
            "--data-dir",
            parent.data_dir(),
        ])
        .env_remove("INVSITE_DIR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(15, "the sw request reaches G01", || {
        find_request(&requests_at(&grand, "WEB01"), |r| {
            r["class"] == "sw"
                && r["state"] == "pending"
                && r["origin"].as_str().is_some_and(|o| o.starts_with("P01:"))
        })
        .is_some()
    });
    web.cycle();
    let out = finish_within(waiting, 120, "invsync --wait --timeout 30s");
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "stdout:\n{o}\nstderr:\n{e}");
    assert!(
        o.contains("Routed") && o.contains("complete at") && o.contains("stored at site P01"),
        "{o}"
    );

    // An owner that did not accept requests from its parent: exit 5 and how to enable it.
    let out = run_expect(
        "invsync",
        &["hw", "DB01", "--via-child", "--data-dir", parent.data_dir()],
        5,
    );
    assert!(
        out.contains("C01")
            && out.contains("--accept-parent-requests")
            && out.contains("invsync hw DB01"),
        "{out}"
    );
    assert!(
        requests_at(&parent, "DB01").is_empty(),
        "nothing was queued"
    );
    // --site needs --via-child; a site that holds no such client is an unknown client.
    run_expect(
        "invsync",
        &[
            "hw",
            "WEB01",
            "--site",
            "G01",
            "--data-dir",
            parent.data_dir(),
        ],
        2,
    );
    run_expect(
        "invsync",
        &[
            "hw",
            "WEB01",
            "--via-child",
            "--site",
            "C01",
            "--data-dir",
            parent.data_dir(),
        ],
        4,
    );

    // At the owning site --via-child is a plain request.
    let out = run_ok(
        "invsync",
        &["hw", "WEB01", "--via-child", "--data-dir", grand.data_dir()],
    );
    assert!(
        out.contains("Queued a hardware") && !out.contains("Routed"),
        "{out}"
    );
    let own = find_request(&requests_at(&grand, "WEB01"), |r| r["state"] == "pending")
        .expect("queued at G01");
    assert!(
        own.get("origin").is_none() && own.get("route").is_none(),
        "{own}"
    );

    // Turned on for an existing site, C01 takes requests for its own clients once restarted.
    child.stop();
    let out = run_ok(
        "invsite",
        &[
            "config",
            "--accept-parent-requests",
            "true",
            "--data-dir",
            child.data_dir(),
        ],
    );
    assert!(out.contains("accept-parent-requests on"), "{out}");
    child.restart();
    wait_until(15, "the parent learns that C01 accepts requests", || {
        let v: Value = serde_json::from_str(&run_ok(
            "invsite",
            &["sites", "--data-dir", parent.data_dir(), "--json"],
        ))
        .unwrap();
        v["below"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["code"] == "C01" && s["accepts_parent_requests"] == true)
    });
    let out = run_ok(
        "invsync",
        &["hw", "DB01", "--via-child", "--data-dir", parent.data_dir()],
    );
    assert!(out.contains("owning site C01"), "{out}");
    wait_until(15, "the request reaches C01", || {
        find_request(&requests_at(&child, "DB01"), |r| {
            r["state"] == "pending" && r["origin"].is_string()
        })
        .is_some()
    });
    db.cycle();
    wait_until(15, "the request completes at the parent", || {
        find_request(&requests_at(&parent, "DB01"), |r| r["route"] == "C01")
            .is_some_and(|r| r["state"] == "complete")
    });

    grand.stop();
    child.stop();
    parent.stop();
}

/// Starts `invsync` with these arguments in the background, its output captured.
fn spawn_invsync(args: &[&str]) -> std::process::Child {
    bin("invsync")
        .args(args)
        .env_remove("INVSITE_DIR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a background `invsync` and returns its exit code, stdout and stderr.
fn finish(child: std::process::Child) -> (Option<i32>, String, String) {
    let out = finish_within(child, 120, "invsync in the background");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn invsync_wait_at_a_child_site_follows_the_request_until_its_parent_holds_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut parent = Site::init(tmp.path(), "P01");
    parent.start();
    let mut child = Site::init_child(tmp.path(), "C01", &parent);
    child.start();
    let agent = Agent::enroll(tmp.path(), &child, "debian", "web01");
    agent.cycle();
    wait_until(15, "the parent holds WEB01", || {
        version_at(&parent, "WEB01", "sw", &[]) == Some(1)
    });

    // Queued, picked up and complete at C01, then acknowledged by P01: exit 0.
    let waiting = spawn_invsync(&[
        "sw",
        "WEB01",
        "--wait",
        "--timeout",
        "30s",
        "--data-dir",
        child.data_dir(),
    ]);
    wait_until(15, "the sw request is queued at C01", || {
        find_request(&requests_at(&child, "WEB01"), |r| {
            r["class"] == "sw" && r["state"] == "pending"
        })
        .is_some()
    });
    agent.cycle();
    let (code, o, e) = finish(waiting);
    assert_eq!(code, Some(0), "stdout:\n{o}\nstderr:\n{e}");
    assert!(
        o.contains("picked up by WEB01")
            && o.contains("complete at")
            && o.contains("stored at site C01"),
        "{o}"
    );
    // Forwarded to P01, which has no parent: the top of the tree has it, the last step.
    let last = o.lines().last().unwrap_or_default();
    assert!(
        last.contains("the top of the tree has it: site P01"),
        "reaching the top is the last step: {o}"
    );
    let forwarded = o
        .lines()
        .find(|l| l.contains("forwarded to site P01 at "))
        .unwrap_or_else(|| panic!("no forwarding line: {o}"));

    // The request records it; `invsite show` says it; the parent holds the completed request.
    let req = find_request(&requests_at(&child, "WEB01"), |r| r["class"] == "sw").unwrap();
    assert_eq!(req["forwarded_to"], "P01", "{req}");
    let at = req["forwarded_at"]
        .as_str()
        .expect("a forwarding time")
        .to_string();
    assert!(forwarded.ends_with(&at), "{forwarded} / {at}");
    assert_eq!(req["reached_top"], true, "{req}");
    let text = run_ok(
        "invsite",
        &["show", "WEB01", "--data-dir", child.data_dir()],
    );
    assert!(
        text.contains("complete, requested") && text.contains(&format!(", forwarded to P01 {at}")),
        "{text}"
    );
    let above = find_request(&requests_at(&parent, "WEB01"), |r| r["class"] == "sw")
        .expect("the request at P01");
    assert_eq!(above["state"], "complete");
    assert!(
        above.get("forwarded_at").is_none(),
        "P01 has no parent: {above}"
    );

    // With the parent down the report is stored at C01 but not acknowledged: exit 6, saying so.
    parent.stop();
    let waiting = spawn_invsync(&[
        "hw",
        "WEB01",
        "--wait",
        "--timeout",
        "8s",
        "--data-dir",
        child.data_dir(),
    ]);
    wait_until(15, "the hw request is queued at C01", || {
        find_request(&requests_at(&child, "WEB01"), |r| {
            r["class"] == "hw" && r["state"] == "pending"
        })
        .is_some()
    });
    agent.cycle();
    let (code, o, e) = finish(waiting);
    assert_eq!(code, Some(6), "stdout:\n{o}\nstderr:\n{e}");
    assert!(
        o.contains("complete at") && !o.contains("forwarded to"),
        "{o}"
    );
    assert!(
        e.contains("stored here at site C01") && e.contains("not yet acknowledged by the parent"),
        "{e}"
    );

    // The outbox kept it: once the parent is back, the request is marked forwarded.
    parent.restart();
    wait_until(45, "the hw request is forwarded once P01 is back", || {
        find_request(&requests_at(&child, "WEB01"), |r| r["class"] == "hw")
            .is_some_and(|r| r["forwarded_to"] == "P01")
    });
    child.stop();
    parent.stop();
}

/// `GET /api/v1/site` with the site's admin token.
fn site_info(site: &Site) -> Value {
    let mut resp = http()
        .get(&format!("{}/api/v1/site", site.url))
        .header("Authorization", &format!("Bearer {}", site.admin_token()))
        .call()
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.body_mut().read_json().unwrap()
}

#[test]
fn the_site_api_names_a_child_sites_parent() {
    let tmp = tempfile::tempdir().unwrap();
    let mut parent = Site::init(tmp.path(), "P01");
    parent.start();
    let mut child = Site::init_child(tmp.path(), "C01", &parent);
    child.start();

    // The child learns its parent's code on first contact, which its forwarder makes at start.
    wait_until(30, "the child's site API names its parent", || {
        site_info(&child)["parent"] == "P01"
    });
    let info = site_info(&child);
    assert_eq!(info["code"], "C01", "{info}");
    assert_eq!(info["parent_url"], parent.url.as_str(), "{info}");
    // A top-level site has neither.
    let top = site_info(&parent);
    assert_eq!(top["code"], "P01", "{top}");
    assert!(
        top.get("parent").is_none() && top.get("parent_url").is_none(),
        "{top}"
    );
    child.stop();
    parent.stop();
}
