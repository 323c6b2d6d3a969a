//! The client lifecycle (issue 20, items 1, 3 and 5) against real sites and agents: `invsite
//! delete` at a child makes the parent forget the client; the deleted client's agent is told so;
//! deleting another site's client exits 5; stale clients are flagged, filtered and counted, and
//! `--delete-after` deletes them; `--history-retention` prunes history; bad input is refused.

use serde_json::Value;

use crate::common::*;

fn api(site: &Site, method: &str, path: &str) -> (u16, Value) {
    let url = format!("{}{path}", site.url);
    let auth = format!("Bearer {}", site.admin_token());
    let mut resp = match method {
        "DELETE" => http().delete(&url).header("Authorization", &auth).call(),
        _ => http().get(&url).header("Authorization", &auth).call(),
    }
    .unwrap();
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_json().unwrap_or(Value::Null))
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

crate::on_each_db!(delete_at_a_child_and_the_parent_forgets_it => delete_at_child);
fn delete_at_child(db: Db) {
    let tmp = tempfile::tempdir().unwrap();
    let mut parent = Site::init_on(tmp.path(), "P01", db, &[]);
    parent.start();
    let mut child = Site::init_child_on(tmp.path(), "C01", &parent, db);
    child.start();
    let agent = Agent::enroll(tmp.path(), &child, "debian", "web01");
    agent.cycle();
    agent.set_version("bash", "5.2.15-9");
    agent.cycle();
    wait_until(20, "the parent holds WEB01's delta", || {
        try_show(&parent, "WEB01", &[]).and_then(|v| v["sw"]["version"].as_i64()) == Some(2)
    });

    // At the parent the client is another site's: exit 5 naming the owner and the command,
    // through the API too (421); nothing is deleted.
    for extra in [&[][..], &["--site", "C01"][..]] {
        let mut args = vec!["delete", "WEB01", "--data-dir", parent.data_dir()];
        args.extend_from_slice(extra);
        let out = run_expect("invsite", &args, 5);
        assert!(
            out.contains("C01") && out.contains("invsite delete WEB01"),
            "{out}"
        );
    }
    let (status, body) = api(&parent, "DELETE", "/api/v1/clients/WEB01");
    assert_eq!(status, 421, "{body}");
    assert!(try_show(&parent, "WEB01", &[]).is_some());

    // Bad input: unknown client 4, a bad name 2, nothing deleted.
    let dir = child.data_dir().to_string();
    let out = run_expect("invsite", &["delete", "NOSUCH", "--data-dir", &dir], 4);
    assert!(out.contains("unknown client NOSUCH"), "{out}");
    let out = run_expect("invsite", &["delete", "web/01", "--data-dir", &dir], 2);
    assert!(out.contains("CLIENT") || out.contains("name"), "{out}");
    let (status, _) = api(&child, "DELETE", "/api/v1/clients/NOSUCH");
    assert_eq!(status, 404);
    assert_eq!(names(&child.clients()), ["WEB01"]);

    // Deleted at its owner.
    let out = run_ok_stdout(
        "invsite",
        &["delete", "web01", "--data-dir", &dir, "--json"],
    );
    let deleted: Value = serde_json::from_str(&out).unwrap();
    let id = deleted["id"].as_str().unwrap().to_string();
    assert_eq!(
        (deleted["client"].as_str(), deleted["site"].as_str()),
        (Some("WEB01"), Some("C01")),
        "{deleted}"
    );
    assert!(try_show(&child, "WEB01", &[]).is_none());
    assert!(names(&child.clients()).is_empty());
    // The parent forgets it once the tombstone is forwarded.
    wait_until(20, "the parent forgets WEB01", || {
        try_show(&parent, "WEB01", &[]).is_none()
    });
    assert!(names(&parent.clients()).is_empty());
    let (status, page) = api(&parent, "GET", "/api/v1/software?name=bash");
    assert_eq!(
        (status, page["total"].as_u64()),
        (200, Some(0)),
        "the software index forgets its packages: {page}"
    );

    // Its history stays at both sites, shown by `history --deleted`.
    for site in [&child, &parent] {
        let out = run_ok_stdout(
            "invsite",
            &[
                "history",
                "WEB01",
                "--deleted",
                "--json",
                "--data-dir",
                site.data_dir(),
            ],
        );
        let kept: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(kept[0]["id"].as_str(), Some(id.as_str()), "{kept}");
        assert!(
            kept[0]["history"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h["key"] == "dpkg/bash/amd64"),
            "{kept}"
        );
    }
    let out = run_expect(
        "invsite",
        &["history", "WEB02", "--deleted", "--data-dir", &dir],
        4,
    );
    assert!(out.contains("no deleted client WEB02"), "{out}");

    // The agent is told: exit 1, the client was deleted, and how to enroll again.
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
    let said = format!("{}{}", stdout(&o), stderr(&o));
    assert_eq!(code(&o), 1, "{said}");
    assert!(
        said.contains("was deleted") && said.contains("invagent enroll"),
        "{said}"
    );

    // The name is free: the machine enrolls again as a new client, which reaches the parent.
    let renewed = tmp.path().join("agent-renewed");
    run_ok(
        "invagent",
        &[
            "enroll",
            "--data-dir",
            s(&renewed),
            "--site",
            &child.url,
            "--secret",
            &child.secret(),
            "--name",
            "web01",
            "--root",
            s(&agent.root),
        ],
    );
    run_ok(
        "invagent",
        &["cycle", "--data-dir", s(&renewed), "--root", s(&agent.root)],
    );
    let new_id = child.show("WEB01")["id"].as_str().unwrap().to_string();
    assert_ne!(new_id, id);
    wait_until(20, "the parent holds the new WEB01", || {
        try_show(&parent, "WEB01", &[]).is_some_and(|v| v["id"] == new_id.as_str())
    });
}

crate::on_each_db!(the_daemon_of_a_deleted_client_says_so_and_keeps_its_interval => daemon_told);
fn daemon_told(db: Db) {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init_on(tmp.path(), "S01", db, &[]);
    site.start();
    let agent = Agent::enroll(tmp.path(), &site, "debian", "web1");
    let daemon = Daemon::start_with(&agent, &["--interval", "1s", "--splay", "0s"]);
    run_ok(
        "invsite",
        &["delete", "web1", "--data-dir", site.data_dir()],
    );
    wait_until(30, "the daemon logs that its client was deleted", || {
        daemon.log_text().contains("was deleted")
    });
    // It goes on cycling at its interval, each cycle told the same.
    let seen = daemon.cycles();
    wait_until(30, "two more cycles", || daemon.cycles() >= seen + 2);
    let log = daemon.log_text();
    assert!(
        log.contains("invagent enroll"),
        "the log says how to enroll again:\n{log}"
    );
    // No cycle ran between two of its interval's ticks: each is logged once per attempt, and
    // the push channel's refusals are retried with backoff, not in a loop.
    let refusals = log.matches("was deleted").count();
    assert!(
        refusals <= 3 * daemon.cycles() + 10,
        "{refusals} refusals for {} cycles:\n{log}",
        daemon.cycles()
    );
    daemon.stop();
}

crate::on_each_db!(stale_clients_are_flagged_filtered_counted_and_deleted_after => stale);
fn stale(db: Db) {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init_on(tmp.path(), "S01", db, &[]);
    let dir = site.data_dir().to_string();
    // Bad durations are refused with exit 2 and change nothing.
    let config = std::path::Path::new(&dir).join("config.json");
    let before = std::fs::read(&config).unwrap();
    for (flag, bad) in [
        ("--stale-after", "soon"),
        ("--stale-after", "0s"),
        ("--delete-after", "never"),
        ("--history-retention", "forever"),
        ("--history-retention", "500ms"),
    ] {
        let out = run_expect("invsite", &["config", flag, bad, "--data-dir", &dir], 2);
        assert!(out.contains(flag), "{flag} {bad}: {out}");
    }
    assert_eq!(std::fs::read(&config).unwrap(), before, "nothing stored");

    run_ok(
        "invsite",
        &["config", "--stale-after", "1s", "--data-dir", &dir],
    );
    site.start();
    let agent = Agent::enroll(tmp.path(), &site, "debian", "web1");
    agent.cycle();
    // Stale once its check-in is more than a second old (the list's filter reads the stored
    // time, the flag also the one held in memory, so wait for both).
    wait_until(20, "WEB1 is stale", || {
        let listed: Value = serde_json::from_str(&run_ok_stdout(
            "invsite",
            &["clients", "--stale", "--json", "--data-dir", &dir],
        ))
        .unwrap();
        names(&listed) == ["WEB1"] && listed[0]["stale"] == true
    });
    assert_eq!(site.clients()[0]["stale"], true);
    assert_eq!(site.show("web1")["stale"], true);
    let text = run_ok_stdout("invsite", &["clients", "--stale", "--data-dir", &dir]);
    assert!(text.contains("WEB1") && text.contains("stale"), "{text}");
    let (status, page) = api(&site, "GET", "/api/v1/clients?stale=true");
    assert_eq!((status, page["total"].as_u64()), (200, Some(1)), "{page}");
    let (status, page) = api(&site, "GET", "/api/v1/clients?stale=false");
    assert_eq!((status, page["total"].as_u64()), (200, Some(0)), "{page}");
    let (status, _) = api(&site, "GET", "/api/v1/clients?stale=maybe");
    assert_eq!(status, 400);
    let metrics = http()
        .get(&format!("{}/metrics", site.url))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(metrics.contains("invsite_clients_stale 1"), "{metrics}");

    // --delete-after: the serve task deletes it, as `invsite delete` would.
    site.stop();
    run_ok(
        "invsite",
        &["config", "--delete-after", "2s", "--data-dir", &dir],
    );
    let shown = run_ok_stdout("invsite", &["config", "--data-dir", &dir]);
    assert!(
        shown.contains("stale-after 1s") && shown.contains("delete-after 2s"),
        "{shown}"
    );
    site.restart();
    wait_until(30, "the serve task deletes WEB1", || {
        names(&site.clients()).is_empty()
    });
    let out = run_ok_stdout(
        "invsite",
        &["history", "WEB1", "--deleted", "--data-dir", &dir],
    );
    assert!(out.contains("WEB1") && out.contains("deleted at"), "{out}");
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
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("was deleted"), "{}", stderr(&o));
}

crate::on_each_db!(retention_prunes_history_from_the_serve_task => retention);
fn retention(db: Db) {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init_on(tmp.path(), "S01", db, &[]);
    let dir = site.data_dir().to_string();
    site.start();
    let agent = Agent::enroll(tmp.path(), &site, "debian", "web1");
    agent.cycle();
    agent.set_version("bash", "5.2.15-9");
    agent.cycle();
    assert!(!site.history("web1", &[]).is_empty());
    // The default keeps it (400 days); a retention of a second prunes it at the next pass.
    site.stop();
    run_ok(
        "invsite",
        &["config", "--history-retention", "1s", "--data-dir", &dir],
    );
    site.restart();
    wait_until(30, "the serve task prunes WEB1's history", || {
        site.history("web1", &[]).is_empty()
    });
    // The inventory itself stays: only history is pruned.
    assert_eq!(
        site.show("web1")["sw"]["items"]["dpkg/bash/amd64"]["version"],
        "5.2.15-9"
    );
}

#[test]
fn the_console_asks_before_deleting_and_filters_stale_clients() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    let dir = site.data_dir().to_string();
    run_ok(
        "invsite",
        &["config", "--stale-after", "1s", "--data-dir", &dir],
    );
    site.start();
    Agent::enroll(tmp.path(), &site, "debian", "web1").cycle();
    Agent::enroll(tmp.path(), &site, "debian", "web2").cycle();
    let mut console = crate::console::Console::new(&site);
    console.login(&site.admin_token());

    // The client page links to a confirmation page; only its form deletes.
    let page = console.get("/console/clients/WEB1");
    assert!(
        page.body.contains("/console/clients/WEB1/delete"),
        "{}",
        page.body
    );
    let confirm = console.get("/console/clients/WEB1/delete");
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    assert!(
        confirm.body.contains("Delete WEB1?") && confirm.body.contains("--deleted"),
        "{}",
        confirm.body
    );
    assert!(
        try_show(&site, "WEB1", &[]).is_some(),
        "asking deletes nothing"
    );
    let refused = console.post("/console/clients/WEB1/delete", &[], &[]);
    assert_eq!(refused.status, 403, "no CSRF token: {}", refused.body);
    assert!(try_show(&site, "WEB1", &[]).is_some());
    let csrf = crate::console::csrf_of(&confirm.body);
    let done = console.post("/console/clients/WEB1/delete", &[("csrf", &csrf)], &[]);
    assert_eq!(
        (done.status, done.location.as_str()),
        (303, "/console/clients"),
        "{}",
        done.body
    );
    assert!(try_show(&site, "WEB1", &[]).is_none());
    let list = console.get("/console/clients");
    assert!(
        list.body.contains("Deleted WEB1") && !list.body.contains(">WEB1</a>"),
        "{}",
        list.body
    );
    // An unknown client has no confirmation page.
    assert_eq!(console.get("/console/clients/NOSUCH/delete").status, 404);

    // The stale filter.
    wait_until(20, "WEB2 is listed as stale", || {
        let page = console.get("/console/clients?stale=1");
        page.body.contains(">WEB2</a>") && page.body.contains("class=\"stale\"")
    });
    assert_eq!(console.get("/console/clients?stale=maybe").status, 400);
}
