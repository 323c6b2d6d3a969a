//! The push channel end to end: a connected agent (`invagent run --interval 1h`) acts on
//! `invsync` and `setevnt` within a second, reconnects after the site restarts, turns a burst
//! of wake-ups into one cycle, and lets `invagent cycle` run through the daemon.

use std::time::{Duration, Instant};

use crate::common::*;

fn timed_wait(site: &Site, class: &str, name: &str, timeout: &str) -> (Duration, String) {
    let t = Instant::now();
    let o = run("invsync", &[class, name, "--data-dir", site.data_dir(), "--wait", "--timeout", timeout]);
    let elapsed = t.elapsed();
    assert_eq!(code(&o), 0, "invsync --wait failed:\n{}{}", stdout(&o), stderr(&o));
    (elapsed, stdout(&o))
}

#[test]
fn a_connected_agent_completes_a_resync_within_a_second_and_after_a_site_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let agent = Agent::enroll(tmp.path(), &site, "debian", "pushed");
    let daemon = Daemon::start(&agent);
    // Give the push channel a moment to park its first long-poll.
    std::thread::sleep(Duration::from_millis(300));

    let (elapsed, out) = timed_wait(&site, "sw", "PUSHED", "10s");
    assert!(out.contains("picked up") && out.contains("complete"), "{out}");
    assert!(elapsed < Duration::from_secs(1), "the resync took {elapsed:?} with an agent connected");
    assert!(daemon.log_text().contains("reason=\"push\"") || daemon.log_text().contains("reason=push"), "{}", daemon.log_text());

    // Cut the channel: the site restarts; the agent reconnects and the next request is fast again.
    site.stop();
    site.restart();
    wait_until(20, "the agent reconnects", || daemon.log_text().contains("Push channel connected again"));
    let (elapsed, _) = timed_wait(&site, "hw", "PUSHED", "20s");
    assert!(elapsed < Duration::from_secs(2), "after reconnecting the resync took {elapsed:?}");
    daemon.stop();
    site.stop();
}

#[test]
fn a_burst_of_wake_ups_causes_one_cycle_and_invagent_cycle_goes_through_the_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let agent = Agent::enroll(tmp.path(), &site, "minimal", "bursty");
    let daemon = Daemon::start(&agent);
    std::thread::sleep(Duration::from_millis(300));
    let before = daemon.cycles();

    run_ok("invsync", &["hw", "BURSTY", "--data-dir", site.data_dir()]);
    run_ok("invsync", &["sw", "BURSTY", "--data-dir", site.data_dir()]);
    wait_until(10, "both requests complete", || {
        site.show("BURSTY")["requests"].as_array().is_some_and(|r| r.len() == 2 && r.iter().all(|r| r["state"] == "complete"))
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(daemon.cycles() - before, 1, "two wake-ups in a burst, one cycle:\n{}", daemon.log_text());

    // setevnt reaches the connected agent too.
    run_ok("setevnt", &["BURSTY", "cycle", "--data-dir", site.data_dir()]);
    wait_until(10, "the event is acknowledged", || site.show("BURSTY")["events"][0]["state"] == "complete");

    // `invagent cycle` asks the daemon instead of racing it.
    let cycles = daemon.cycles();
    let out = agent.cycle();
    assert!(out.contains("hw:") && out.contains("sw:"), "{out}");
    assert_eq!(daemon.cycles(), cycles + 1, "{}", daemon.log_text());
    assert!(daemon.log_text().contains("local"), "{}", daemon.log_text());
    daemon.stop();
    site.stop();
}
