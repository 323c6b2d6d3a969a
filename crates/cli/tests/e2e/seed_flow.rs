//! The seed's whole flow at one site: init, serve, enroll, cycle, `invsync sw` and `invsync
//! hw`, another cycle, and both requests complete with new full reports stored.

use crate::common::*;

crate::on_each_db!(invsync_hw_and_sw_complete_after_the_next_cycle => hw_and_sw_resyncs_complete);

fn hw_and_sw_resyncs_complete(db: Db) {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init_on(tmp.path(), "S01", db, &[]);
    site.start();
    let agent = Agent::enroll(tmp.path(), &site, "debian", "smsntcli8");

    let out = agent.cycle();
    assert!(
        out.contains("sw") && out.contains("hw"),
        "cycle said: {out}"
    );
    let v = site.show("SMSNTCLI8");
    assert_eq!(v["name"], "SMSNTCLI8");
    assert_eq!(v["site"], "S01");
    assert!(v["last_seen"].is_string(), "{v}");
    assert_eq!(v["hw"]["version"], 1);
    assert_eq!(v["sw"]["version"], 1);
    let sw_full_at_1 = v["sw"]["full_at"].as_str().unwrap().to_string();
    // The fixture's dpkg database has installed, held and removed packages: only the first two count.
    let sw_items = v["sw"]["items"].as_object().unwrap();
    assert!(
        sw_items.keys().any(|k| k.starts_with("dpkg/")),
        "{sw_items:?}"
    );
    assert!(v["hw"]["items"]["os"]["name"].is_string(), "{}", v["hw"]);
    assert_eq!(v["hw"]["hash"].as_str().unwrap().len(), 64);

    // The seed's syntax, exactly.
    let out = run_ok(
        "invsync",
        &["sw", "SMSNTCLI8", "--data-dir", site.data_dir()],
    );
    assert!(
        out.contains("Queued a software inventory resynchronization request for SMSNTCLI8"),
        "{out}"
    );
    let again = run_ok(
        "invsync",
        &["sw", "smsntcli8", "--data-dir", site.data_dir(), "--json"],
    );
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(
        again["created"], false,
        "a second request while one is pending is the same request"
    );
    let said = run_ok(
        "invsync",
        &["sw", "SMSNTCLI8", "--data-dir", site.data_dir()],
    );
    assert!(said.contains("already pending"), "{said}");
    run_ok(
        "invsync",
        &["hw", "SMSNTCLI8", "--data-dir", site.data_dir()],
    );

    let v = site.show("SMSNTCLI8");
    let requests = v["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 2, "{v}");
    assert!(
        requests.iter().all(|r| r["state"] == "pending"),
        "{requests:?}"
    );

    // Full reports carry second-resolution differences at most; make the new full_at distinct.
    std::thread::sleep(std::time::Duration::from_millis(5));
    agent.cycle();
    let v = site.show("SMSNTCLI8");
    let requests = v["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 2);
    for r in requests {
        assert_eq!(r["state"], "complete", "{r}");
        for t in ["requested_at", "picked_up_at", "completed_at"] {
            let t = r[t]
                .as_str()
                .unwrap_or_else(|| panic!("{t} missing in {r}"));
            assert!(
                t.ends_with('Z') && t.len() == 24,
                "not RFC 3339 UTC with milliseconds: {t}"
            );
        }
    }
    assert_eq!(
        v["hw"]["version"], 2,
        "the hw resync stored a new full report"
    );
    assert_eq!(
        v["sw"]["version"], 2,
        "the sw resync stored a new full report"
    );
    assert_ne!(v["sw"]["full_at"].as_str().unwrap(), sw_full_at_1);
    site.stop();
}

#[test]
fn setevnt_is_delivered_and_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S02");
    site.start();
    let agent = Agent::enroll(tmp.path(), &site, "minimal", "web01");
    let out = run_ok(
        "setevnt",
        &["WEB01", "cycle", "--data-dir", site.data_dir()],
    );
    assert!(out.contains("Queued event cycle for WEB01"), "{out}");
    let out = run_ok(
        "setevnt",
        &["WEB01", "cycle", "--data-dir", site.data_dir()],
    );
    assert!(out.contains("already pending"), "{out}");
    assert_eq!(site.show("WEB01")["events"][0]["state"], "pending");
    agent.cycle();
    let v = site.show("WEB01");
    assert_eq!(v["events"].as_array().unwrap().len(), 1);
    assert_eq!(v["events"][0]["state"], "complete", "{v}");
    // A minimal root still inventories: what it could not read are warnings, not failures.
    assert_eq!(v["hw"]["version"], 1);
    site.stop();
}

#[test]
fn invagent_inventory_prints_the_contract_json() {
    let tmp = tempfile::tempdir().unwrap();
    let root = fixture_copy("debian", tmp.path());
    let out = run_ok(
        "invagent",
        &["inventory", "sw", "--root", s(&root), "--json"],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["class"], "sw");
    assert_eq!(v["hash"].as_str().unwrap().len(), 64);
    assert!(
        v["items"]
            .as_object()
            .unwrap()
            .values()
            .all(|i| i["source"] == "dpkg")
    );
    assert!(v["warnings"].is_array());
    let hw = run_ok(
        "invagent",
        &["inventory", "hw", "--root", s(&root), "--json"],
    );
    let hw: serde_json::Value = serde_json::from_str(&hw).unwrap();
    assert_eq!(hw["class"], "hw");
    assert!(hw["items"]["cpu"]["threads"].is_string(), "{hw}");
}

#[test]
fn invsync_wait_follows_the_request_to_completion() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S03");
    site.start();
    let agent = Agent::enroll(tmp.path(), &site, "debian", "waiter");
    agent.cycle();
    let waiting = bin("invsync")
        .args([
            "hw",
            "WAITER",
            "--data-dir",
            site.data_dir(),
            "--wait",
            "--timeout",
            "30s",
        ])
        .env_remove("INVSITE_DIR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The request is queued before the agent cycles, so --wait sees it pending first.
    wait_until(30, "the request is queued", || {
        site.show("WAITER")["requests"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    });
    agent.cycle();
    let out = finish_within(waiting, 120, "invsync --wait --timeout 30s");
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    // Every line, in order, with the times the site recorded: queued, picked up, complete.
    let r = &site.show("WAITER")["requests"][0];
    let (id, at) = (&r["id"], |t: &str| {
        r[t].as_str()
            .unwrap_or_else(|| panic!("no {t} in {r}"))
            .to_string()
    });
    let want = [
        format!("Queued a hardware inventory resynchronization request for WAITER (request {id})."),
        "The client applies it at its next cycle; to make that happen now: setevnt WAITER cycle"
            .to_string(),
        format!(
            "request {id}: queued at {}, waiting for WAITER to pick it up",
            at("requested_at")
        ),
        format!(
            "request {id}: picked up by WAITER at {}",
            at("picked_up_at")
        ),
        format!(
            "request {id}: complete at {}: the full report is stored at site S03",
            at("completed_at")
        ),
    ];
    assert_eq!(text.lines().collect::<Vec<_>>(), want, "{text}");
    site.stop();
}

#[test]
fn invsync_all_queues_every_own_client_at_a_paced_rate() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S04");
    site.start();
    for name in ["all1", "all2", "all3"] {
        Agent::enroll(tmp.path(), &site, "minimal", name);
    }
    let out = run_ok(
        "invsync",
        &[
            "sw",
            "--all",
            "--rate",
            "600/min",
            "--data-dir",
            site.data_dir(),
        ],
    );
    assert!(out.contains("for 3 clients of site S04"), "{out}");
    assert!(
        out.contains("3/3 queued")
            && out.contains("Queued 3 sw resync requests (0 were already pending, 0 skipped)"),
        "{out}"
    );
    for name in ["ALL1", "ALL2", "ALL3"] {
        assert_eq!(site.show(name)["requests"][0]["state"], "pending");
    }
    // Run twice: every client already holds a pending request of the class, so all are
    // skipped and the run says so.
    let out = run_ok("invsync", &["sw", "--all", "--data-dir", site.data_dir()]);
    assert!(
        out.contains("Skipping 3 of 3 clients: they already hold a pending sw resync request")
            && out.contains("Queued no sw resync requests (3 skipped)"),
        "{out}"
    );
    let out = run_ok(
        "invsync",
        &["sw", "--all", "--json", "--data-dir", site.data_dir()],
    );
    let summary: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        summary,
        serde_json::json!({"class": "sw", "site": "S04", "total": 3, "created": 0, "merged": 0, "skipped": 3})
    );
    // Only the class asked for counts: hw requests are queued for all three.
    let out = run_ok(
        "invsync",
        &["hw", "--all", "--json", "--data-dir", site.data_dir()],
    );
    let summary: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (&summary["created"], &summary["skipped"]),
        (&3.into(), &0.into()),
        "{summary}"
    );
    run_expect(
        "invsync",
        &["sw", "ALL1", "--all", "--data-dir", site.data_dir()],
        2,
    );
    let out = run_expect(
        "invsync",
        &["sw", "ALL1", "--rate", "5/s", "--data-dir", site.data_dir()],
        2,
    );
    assert!(out.contains("--rate goes with --all"), "{out}");
    let out = run_expect(
        "invsync",
        &["sw", "ALL1", "--site", "C01", "--data-dir", site.data_dir()],
        2,
    );
    assert!(out.contains("--via-child"), "{out}");
    let out = run_expect(
        "invsync",
        &[
            "sw",
            "--all",
            "--rate",
            "fast",
            "--data-dir",
            site.data_dir(),
        ],
        2,
    );
    assert!(out.contains("not a rate"), "{out}");
    site.stop();
}
