//! The push channel end to end: a connected agent (`invagent run --interval 1h`) acts on
//! `invsync` and `setevnt` at once, reconnects after the site restarts, turns a burst of
//! wake-ups into one cycle, and lets `invagent cycle` run through the daemon; the long-poll
//! answers `wake: false` when its hold time ends.
//!
//! Nothing here times anything: with an hour between the daemon's cycles, a request that
//! completes within the tests' generous bounds was carried by the push channel, which the
//! daemon's log confirms. How fast that is, is a benchmark (BENCHMARKS.md, "Resync round trip").

use serde_json::{Value, json};

use crate::common::*;

/// `invsync CLASS NAME --wait` with a generous timeout; asserts it exits 0 and returns stdout.
fn resync_and_wait(site: &Site, class: &str, name: &str) -> String {
    let o = run(
        "invsync",
        &[
            class,
            name,
            "--data-dir",
            site.data_dir(),
            "--wait",
            "--timeout",
            "60s",
        ],
    );
    assert_eq!(
        code(&o),
        0,
        "invsync --wait failed:\n{}{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// The site's `invsite_connected_agents` gauge: agents whose long-poll is parked right now.
fn connected_agents(site: &Site) -> Option<u64> {
    let mut resp = http().get(&format!("{}/metrics", site.url)).call().ok()?;
    let text = resp.body_mut().read_to_string().ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("invsite_connected_agents "))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn a_connected_agent_completes_a_resync_at_once_and_after_a_site_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let agent = Agent::enroll(tmp.path(), &site, "debian", "pushed");
    let daemon = Daemon::start(&agent);
    wait_until(30, "the agent's long-poll is parked", || {
        connected_agents(&site) == Some(1)
    });

    let out = resync_and_wait(&site, "sw", "PUSHED");
    assert!(
        out.contains("picked up") && out.contains("complete"),
        "{out}"
    );
    assert_eq!(
        daemon.log_text().matches("Cycling.").count(),
        2,
        "the start and the push:\n{}",
        daemon.log_text()
    );
    assert!(
        daemon.log_text().contains("reason=\"push\"") || daemon.log_text().contains("reason=push"),
        "{}",
        daemon.log_text()
    );

    // Cut the channel: the site restarts; the agent reconnects and the next request is carried
    // by the push channel again.
    site.stop();
    site.restart();
    wait_until(60, "the agent reconnects", || {
        daemon.log_text().contains("Push channel connected again")
    });
    wait_until(30, "the agent's long-poll is parked again", || {
        connected_agents(&site) == Some(1)
    });
    let out = resync_and_wait(&site, "hw", "PUSHED");
    assert!(out.contains("complete"), "{out}");
    daemon.stop();
    site.stop();
}

/// Queues a resync through the admin API, as `invsync` does, from a thread of its own.
fn queue_from_thread(
    site: &Site,
    class: &'static str,
    barrier: std::sync::Arc<std::sync::Barrier>,
) -> std::thread::JoinHandle<u16> {
    let (url, token) = (
        format!("{}/api/v1/clients/BURSTY/requests", site.url),
        site.admin_token(),
    );
    std::thread::spawn(move || {
        let agent = http();
        barrier.wait();
        let resp = agent
            .post(&url)
            .header("Authorization", &format!("Bearer {token}"))
            .send_json(json!({ "class": class }))
            .unwrap();
        resp.status().as_u16()
    })
}

#[test]
fn a_burst_of_wake_ups_causes_one_cycle_and_invagent_cycle_goes_through_the_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let agent = Agent::enroll(tmp.path(), &site, "minimal", "bursty");
    let daemon = Daemon::start(&agent);
    wait_until(30, "the agent's long-poll is parked", || {
        connected_agents(&site) == Some(1)
    });
    let before = daemon.cycles();

    // Two requests queued at the same moment (two threads released together), as two admins
    // or a script would: the daemon gathers both wake-ups into one cycle.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let (hw, sw) = (
        queue_from_thread(&site, "hw", barrier.clone()),
        queue_from_thread(&site, "sw", barrier),
    );
    assert_eq!((hw.join().unwrap(), sw.join().unwrap()), (201, 201));
    wait_until(30, "both requests complete", || {
        site.show("BURSTY")["requests"]
            .as_array()
            .is_some_and(|r| r.len() == 2 && r.iter().all(|r| r["state"] == "complete"))
    });
    // A later event proves the daemon has gone past anything the burst could have caused: once
    // it is acknowledged, every cycle of the burst has been logged, and the event's own cycle.
    run_ok(
        "setevnt",
        &["BURSTY", "cycle", "--data-dir", site.data_dir()],
    );
    wait_until(30, "the event is acknowledged", || {
        site.show("BURSTY")["events"][0]["state"] == "complete"
    });
    assert_eq!(
        daemon.cycles() - before,
        2,
        "one cycle for the burst, one for the event:\n{}",
        daemon.log_text()
    );

    // `invagent cycle` asks the daemon instead of racing it.
    let cycles = daemon.cycles();
    let out = agent.cycle();
    assert!(out.contains("hw:") && out.contains("sw:"), "{out}");
    assert_eq!(daemon.cycles(), cycles + 1, "{}", daemon.log_text());
    assert!(daemon.log_text().contains("local"), "{}", daemon.log_text());
    daemon.stop();
    site.stop();
}

/// `POST /cap/v1/wait` at the site `url` as the agent's push thread sends it.
fn long_poll(url: &str, token: &str) -> (u16, Value) {
    // The site holds a long-poll 50 s; the client waits longer than that.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(120)))
        .build()
        .into();
    let mut resp = agent
        .post(&format!("{url}/cap/v1/wait"))
        .header("Authorization", &format!("Bearer {token}"))
        .send_empty()
        .unwrap();
    (
        resp.status().as_u16(),
        resp.body_mut().read_json().unwrap_or(Value::Null),
    )
}

#[test]
fn the_long_poll_answers_wake_true_for_an_instruction_and_false_when_its_hold_time_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let agent = Agent::enroll(tmp.path(), &site, "minimal", "poller");
    let token = agent.token();

    // Woken by a request queued while the poll is parked.
    let url = site.url.clone();
    let parked = {
        let (url, token) = (url.clone(), token.clone());
        std::thread::spawn(move || long_poll(&url, &token))
    };
    wait_until(30, "the long-poll is parked", || {
        connected_agents(&site) == Some(1)
    });
    run_ok("invsync", &["sw", "POLLER", "--data-dir", site.data_dir()]);
    assert_eq!(parked.join().unwrap(), (200, json!({ "wake": true })));

    // Nothing queued (the cycle completes the request): the site answers when its hold time
    // (50 s) ends, and the agent asks again.
    agent.cycle();
    assert_eq!(site.show("POLLER")["requests"][0]["state"], "complete");
    assert_eq!(long_poll(&url, &token), (200, json!({ "wake": false })));
    // Without a client token: refused.
    let status = http()
        .post(&format!("{url}/cap/v1/wait"))
        .send_empty()
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 401);
    site.stop();
}
