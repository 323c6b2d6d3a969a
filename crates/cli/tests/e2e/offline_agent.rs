//! The file-share CAP with the real agent (issue 18): a site with no network path to the agent,
//! where `invsync hw CLIENT --wait` completes through two `cap-sync` runs and one agent cycle;
//! an agent enrolled over HTTP that falls back to the CAP directory while its site is down and
//! gets no report stored twice when it is back; and a one-off inventory imported and then taken
//! over by the agent that enrolls from the same machine.

use std::path::Path;
use std::process::Stdio;

use crate::common::*;
use crate::offline::{cap_dir, cap_sync, offline_agent};

/// `invagent cycle --cap-dir`, asserted to succeed: its summary lines.
fn cap_cycle(data: &Path, root: &Path, cap: &Path) -> Vec<String> {
    let o = run(
        "invagent",
        &[
            "cycle",
            "--data-dir",
            s(data),
            "--root",
            s(root),
            "--cap-dir",
            s(cap),
        ],
    );
    assert_eq!(code(&o), 0, "invagent cycle:\n{}{}", stdout(&o), stderr(&o));
    stdout(&o).lines().map(str::to_string).collect()
}

#[test]
fn invsync_wait_completes_through_two_cap_syncs_and_one_agent_cycle() {
    let tmp = tempfile::tempdir().unwrap();
    // The site never serves: there is no network path between it and the agent at all.
    let site = Site::init(tmp.path(), "S01");
    let cap = cap_dir(tmp.path());
    let (data, root) = offline_agent(&site, tmp.path(), "PLC01");
    let first = cap_cycle(&data, &root, &cap);
    assert_eq!(
        first,
        vec![
            "no .cfg for this client in the CAP directory yet",
            "hw: wrote full report to the CAP directory",
            "sw: wrote full report to the CAP directory",
        ]
    );
    cap_sync(&site, &cap);
    assert_eq!(site.show("PLC01")["sw"]["version"], 1);

    let mut wait = bin("invsync")
        .args([
            "hw",
            "PLC01",
            "--data-dir",
            site.data_dir(),
            "--wait",
            "--timeout",
            "120s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Lines::of(wait.stdout.take().unwrap());
    let queued = lines
        .next_within(30)
        .expect("invsync says it queued the request");
    assert!(
        queued.starts_with("Queued a hardware inventory"),
        "{queued}"
    );

    let out = cap_sync(&site, &cap);
    assert_eq!(out["written"], serde_json::json!(["PLC01.cfg"]));
    let cycle = cap_cycle(&data, &root, &cap);
    assert!(
        cycle
            .iter()
            .any(|l| l.starts_with("received request ") && l.ends_with(": resync hw")),
        "{cycle:?}"
    );
    assert!(
        cycle
            .iter()
            .any(|l| l.starts_with("hw: wrote full report to the CAP directory (answers request ")),
        "{cycle:?}"
    );
    cap_sync(&site, &cap);

    let done = finish_within(wait, 60, "invsync --wait");
    assert!(done.status.success(), "invsync --wait: {}", stderr(&done));
    let mut said = Vec::new();
    while let Some(l) = lines.next_within(5) {
        said.push(l);
    }
    assert!(said.iter().any(|l| l.contains("complete")), "{said:?}");
    let shown = site.show("PLC01");
    assert_eq!(shown["requests"][0]["state"], "complete");
    assert_eq!(shown["hw"]["version"], 2);
    assert_eq!(shown["transport"], "cap");
    // The agent settles its report at the next .cfg.
    let next = cap_cycle(&data, &root, &cap);
    assert!(
        next.iter().any(
            |l| l.starts_with("hw: the site stored report ") && l.ends_with("now at version 2")
        ),
        "{next:?}"
    );
}

#[test]
fn an_agent_falls_back_to_the_cap_while_its_site_is_down_and_nothing_is_stored_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let cap = cap_dir(tmp.path());
    let agent = Agent::enroll(tmp.path(), &site, "debian", "WEB01");
    agent.cycle();
    assert_eq!(site.show("WEB01")["sw"]["version"], 1);

    site.stop();
    agent.add_package("offline-tool", "1.0");
    let cycle = cap_cycle(&agent.dir, &agent.root, &cap);
    assert!(
        cycle
            .iter()
            .any(|l| l.starts_with("site unreachable; used the CAP directory")),
        "{cycle:?}"
    );
    assert!(
        cycle
            .iter()
            .any(|l| l == "sw: wrote delta report to the CAP directory"),
        "{cycle:?}"
    );
    let waiting: Vec<String> = std::fs::read_dir(cap.join("Inventry.box"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".inv"))
        .collect();
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    let kept = tmp.path().join("kept.inv");
    std::fs::copy(cap.join("Inventry.box").join(&waiting[0]), &kept).unwrap();

    // The site comes back before the directory is synchronised: the report goes over HTTP
    // (the outbox still holds it), and its file is taken back.
    site.restart();
    let summary = agent.cycle_summary();
    assert!(
        summary
            .iter()
            .any(|l| l.starts_with("sw: re-sent queued delta report, site now at version 2")),
        "{summary:?}"
    );
    assert!(!cap.join("Inventry.box").join(&waiting[0]).exists());
    let history = site.history("WEB01", &[]).len();

    // The same file arrives anyway (the media was copied before): stored once, nothing changes.
    std::fs::copy(&kept, cap.join("Inventry.box").join(&waiting[0])).unwrap();
    let out = cap_sync(&site, &cap);
    assert_eq!(out["imported"][0]["duplicate"], true, "{out}");
    assert_eq!(site.show("WEB01")["sw"]["version"], 2);
    assert_eq!(site.history("WEB01", &[]).len(), history);
    site.stop();
}

#[test]
fn an_inventory_taken_offline_is_imported_and_taken_over_by_the_agent_enrolling_there() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    let root = fixture_copy("debian", tmp.path());
    let file = tmp.path().join("kiosk-hw.json");
    run_ok(
        "invagent",
        &[
            "inventory",
            "hw",
            "--root",
            s(&root),
            "--out",
            s(&file),
            "--name",
            "KIOSK1",
        ],
    );
    let out = run_ok_stdout(
        "invsite",
        &["import", s(&file), "--data-dir", site.data_dir(), "--json"],
    );
    let imported: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(imported["created"], true);
    assert_eq!(imported["version"], 1);
    let shown = site.show("KIOSK1");
    assert_eq!(shown["transport"], "imported");
    let text = run_ok_stdout(
        "invsite",
        &["show", "KIOSK1", "--data-dir", site.data_dir()],
    );
    assert!(
        text.contains("imported with invsite import: no agent"),
        "{text}"
    );
    assert_eq!(shown["id"], imported["client_id"]);

    // A tampered file: refused, nothing imported.
    let text = std::fs::read_to_string(&file).unwrap();
    let forged = tmp.path().join("forged.json");
    std::fs::write(
        &forged,
        text.replace("KIOSK1", "KIOSK2")
            .replace("\"hash\":\"", "\"hash\":\"00"),
    )
    .unwrap();
    let err = run_expect(
        "invsite",
        &["import", s(&forged), "--data-dir", site.data_dir()],
        1,
    );
    assert!(err.contains("nothing was imported"), "{err}");
    assert!(try_show(&site, "KIOSK2", &[]).is_none());

    // The machine enrolls later under the same name: the record becomes its client.
    site.start();
    let data = tmp.path().join("agent");
    let o = run(
        "invagent",
        &[
            "enroll",
            "--data-dir",
            s(&data),
            "--site",
            &site.url,
            "--secret",
            &site.secret(),
            "--name",
            "KIOSK1",
            "--root",
            s(&root),
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let shown = site.show("KIOSK1");
    assert_eq!(shown["id"], imported["client_id"]);
    assert_eq!(shown["transport"], "http");
    assert_eq!(shown["hw"]["version"], 1);
    site.stop();
}
