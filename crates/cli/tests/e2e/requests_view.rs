//! Requests in view (issue 20, item 8): `invsync --wait` at the owning site follows a request
//! past the first hop, up a tree of three sites, until the top has the full report; `invsite
//! show` at each site lists how far up it went.

use serde_json::Value;

use crate::common::*;

crate::on_each_db!(invsync_wait_follows_a_request_to_the_top_of_the_tree);
fn invsync_wait_follows_a_request_to_the_top_of_the_tree(db: Db) {
    let tmp = tempfile::tempdir().unwrap();
    let mut top = Site::init_on(tmp.path(), "P01", db, &[]);
    top.start();
    let mut middle = Site::init_child_on(tmp.path(), "C01", &top, db);
    middle.start();
    let mut owner = Site::init_child_on(tmp.path(), "G01", &middle, db);
    owner.start();
    let agent = Agent::enroll(tmp.path(), &owner, "minimal", "web01");
    agent.cycle();
    wait_until(30, "the top holds WEB01", || {
        try_show(&top, "WEB01", &[]).is_some()
    });

    let mut waiting = bin("invsync")
        .args([
            "hw",
            "web01",
            "--wait",
            "--timeout",
            "60s",
            "--data-dir",
            owner.data_dir(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Lines::of(waiting.stdout.take().unwrap());
    let first = lines.next_within(30).expect("the queued line");
    assert!(first.starts_with("Queued"), "{first}");
    agent.cycle();
    let out = finish_within(waiting, 120, "invsync --wait");
    let mut shown = vec![first];
    while let Some(line) = lines.next_within(5) {
        shown.push(line);
    }
    let text = shown.join("\n");
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
    let at = |needle: &str| {
        shown
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in:\n{text}"))
    };
    // In order: complete at the owner, acknowledged by the middle site, stored at the top,
    // and the top has it.
    let steps = [
        at("complete at"),
        at("forwarded to site C01 at "),
        at("stored at site P01 at "),
        at("the top of the tree has it: site P01"),
    ];
    assert!(steps.is_sorted(), "{text}");
    assert_eq!(steps[3], shown.len() - 1, "the last line: {text}");

    // `invsite show --json` at the owner records the way up.
    let shown = owner.show("web01");
    let req: &Value = shown["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["class"] == "hw")
        .unwrap();
    assert_eq!(req["forwarded_to"], "C01", "{req}");
    assert_eq!(req["hops"][0]["site"], "P01", "{req}");
    assert_eq!(req["reached_top"], true, "{req}");
    let text = run_ok_stdout(
        "invsite",
        &["show", "web01", "--data-dir", owner.data_dir()],
    );
    assert!(text.contains(", then P01 "), "{text}");
}
