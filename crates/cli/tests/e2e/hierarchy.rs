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
        .map(|h| (h["key"].as_str().unwrap().to_string(), h["old"].clone(), h["new"].clone()))
        .collect()
}

#[test]
fn three_levels_forward_in_order_and_refuse_requests_for_other_sites_clients() {
    let tmp = tempfile::tempdir().unwrap();
    let mut parent = Site::init(tmp.path(), "P01");
    parent.start();
    let mut child = Site::init_child(tmp.path(), "C01", &parent);
    child.start();
    let mut grand = Site::init_child(tmp.path(), "G01", &child);
    grand.start();

    let agent = Agent::enroll(tmp.path(), &grand, "debian", "web01");
    agent.cycle();
    wait_until(15, "the parent holds WEB01's full reports", || version_at(&parent, "WEB01", "sw", &[]) == Some(1));
    let at_parent = try_show(&parent, "WEB01", &[]).unwrap();
    let at_grand = grand.show("WEB01");
    assert_eq!(at_parent["site"], "G01", "the owner is the grandchild");
    assert_eq!(at_parent["id"], at_grand["id"]);
    assert_eq!(at_parent["sw"]["hash"], at_grand["sw"]["hash"]);
    assert_eq!(at_parent["hw"]["hash"], at_grand["hw"]["hash"]);
    assert_eq!(try_show(&child, "WEB01", &[]).unwrap()["site"], "G01");

    // A delta travels up with the owner's version numbers.
    agent.set_version("bash", "5.2.15-9");
    agent.cycle();
    wait_until(15, "the delta reaches the parent", || version_at(&parent, "WEB01", "sw", &[]) == Some(2));
    assert_eq!(try_show(&parent, "WEB01", &[]).unwrap()["sw"]["items"]["dpkg/bash/amd64"]["version"], "5.2.15-9");
    assert_eq!(history_keys(&parent, "WEB01", &[]), history_keys(&grand, "WEB01", &[]));

    // invsync at the parent and at the child refuses, naming the owner, its URL and the command.
    for site in [&parent, &child] {
        let out = run_expect("invsync", &["hw", "WEB01", "--data-dir", site.data_dir()], 5);
        assert!(out.contains("G01") && out.contains(&grand.url), "{out}");
        assert!(out.contains("invsync hw WEB01"), "{out}");
        let out = run_expect("setevnt", &["WEB01", "cycle", "--data-dir", site.data_dir()], 5);
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
        requests.iter().any(|r| r["class"] == "hw" && r["state"] == "complete"),
        "the completed request is visible at the parent: {top}"
    );

    // The tree of sites as the parent sees it.
    let sites: Value = serde_json::from_str(&run_ok("invsite", &["sites", "--data-dir", parent.data_dir(), "--json"])).unwrap();
    assert_eq!(sites["site"]["code"], "P01");
    let below = sites["below"].as_array().unwrap();
    let codes: Vec<&str> = below.iter().map(|s| s["code"].as_str().unwrap()).collect();
    assert_eq!(codes, vec!["C01", "G01"]);
    assert_eq!(below[1]["parent"], "C01");
    assert_eq!(below[1]["clients"], 1);
    let text = run_ok("invsite", &["sites", "--data-dir", parent.data_dir()]);
    assert!(text.contains("P01") && text.contains("  C01") && text.contains("    G01"), "{text}");

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
    wait_until(15, "the first reports reach the parent", || version_at(&parent, "DB01", "sw", &[]) == Some(1));

    parent.stop();
    agent.add_package("one", "1");
    agent.cycle();
    agent.set_version("tar", "1.35-2");
    agent.cycle();
    agent.remove_package("gzip");
    agent.cycle();
    assert_eq!(child.show("DB01")["sw"]["version"], 4);
    let sites: Value = serde_json::from_str(&run_ok("invsite", &["sites", "--data-dir", child.data_dir(), "--json"])).unwrap();
    assert_eq!(sites["site"]["outbox_depth"], 3, "three changes wait for the parent");

    parent.restart();
    wait_until(40, "the parent catches up", || version_at(&parent, "DB01", "sw", &[]) == Some(4));
    assert_eq!(try_show(&parent, "DB01", &[]).unwrap()["sw"]["hash"], child.show("DB01")["sw"]["hash"]);
    let up = history_keys(&parent, "DB01", &[]);
    assert_eq!(up, history_keys(&child, "DB01", &[]), "every change arrived, in order, none twice");
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
    let agents: Vec<Agent> = (0..4).map(|i| Agent::enroll(tmp.path(), &child, "debian", &format!("app{i}"))).collect();
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
        wait_until(30, "the parent holds every client's latest version", || version_at(&parent, &name, "sw", &[]) == Some(2));
        assert_eq!(try_show(&parent, &name, &[]).unwrap()["sw"]["hash"], child.show(&name)["sw"]["hash"]);
        assert_eq!(history_keys(&parent, &name, &[]), history_keys(&child, &name, &[]));
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
        run("invsite", &["clients", "--data-dir", parent.data_dir(), "--json"]).stdout.len() > 10
            && parent.clients().as_array().unwrap().len() == 2
    });
    let clients = parent.clients();
    let sites: Vec<&str> = clients.as_array().unwrap().iter().map(|c| c["site"].as_str().unwrap()).collect();
    assert_eq!(sites, vec!["C01", "C02"]);
    let out = run_expect("invsite", &["show", "WEB01", "--data-dir", parent.data_dir()], 2);
    assert!(out.contains("C01") && out.contains("C02") && out.contains("--site"), "{out}");
    let one = try_show(&parent, "WEB01", &["--site", "C02"]).unwrap();
    assert_eq!(one["site"], "C02");
    assert_eq!(one["sw"]["items"].as_object().unwrap().keys().next().unwrap().split('/').next(), Some("apk"));
    let out = run_expect("invsync", &["sw", "WEB01", "--data-dir", parent.data_dir()], 5);
    assert!(out.contains("C01") && out.contains("C02"), "{out}");

    // Codes: the parent's own code, a wrong token and a token for another code are refused.
    run_expect("invsite", &["child-token", "P01", "--data-dir", parent.data_dir()], 2);
    let token = parent.child_token("C03");
    let wrong_code = tmp.path().join("wrong-code");
    let out = run_expect(
        "invsite",
        &["init", "--data-dir", s(&wrong_code), "--site-code", "C04", "--parent", &parent.url, "--parent-token", &token],
        2,
    );
    assert!(out.contains("issued for site C03"), "{out}");
    let forged = format!("C03.{}", "0".repeat(64));
    let out = run_expect(
        "invsite",
        &["init", "--data-dir", s(&wrong_code), "--site-code", "C03", "--parent", &parent.url, "--parent-token", &forged],
        2,
    );
    assert!(out.contains("refused"), "{out}");
    assert!(!wrong_code.join("config.json").exists(), "a refused init creates nothing");
    // A site below C02 may not take a code already used through C01.
    let mut dup_site = Site::init_child(&tmp.path().join("dup"), "C01", &c2);
    dup_site.start();
    Agent::enroll(&tmp.path().join("dupagent"), &dup_site, "minimal", "x1").cycle();
    // C02 accepts its child, but the parent refuses a second C01 in its tree: nothing of it
    // appears there.
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(try_show(&parent, "X1", &[]).is_none());
    dup_site.stop();
    c1.stop();
    c2.stop();
    parent.stop();
}
