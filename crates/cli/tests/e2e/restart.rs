//! Durability: a queued request survives the site server being killed, and a request queued
//! while the server is down is delivered once it runs.

use crate::common::*;

#[test]
fn a_request_survives_sigkill_of_the_site() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let agent = Agent::enroll(tmp.path(), &site, "debian", "durable");
    agent.cycle();
    run_ok("invsync", &["sw", "DURABLE", "--data-dir", site.data_dir()]);
    site.kill();

    site.restart();
    assert_eq!(site.show("DURABLE")["requests"][0]["state"], "pending");
    agent.cycle();
    let v = site.show("DURABLE");
    assert_eq!(v["requests"][0]["state"], "complete", "{v}");
    assert_eq!(v["sw"]["version"], 2);
    site.stop();
}

#[test]
fn a_request_queued_while_the_site_is_down_is_delivered_when_it_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let agent = Agent::enroll(tmp.path(), &site, "minimal", "offline");
    agent.cycle();
    site.stop();

    let out = run_ok("invsync", &["hw", "OFFLINE", "--data-dir", site.data_dir()]);
    assert!(
        out.contains("not running") && out.contains("Queued"),
        "{out}"
    );

    site.restart();
    agent.cycle();
    assert_eq!(site.show("OFFLINE")["requests"][0]["state"], "complete");
    site.stop();
}
