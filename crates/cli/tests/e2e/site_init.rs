//! `invsite init` is all or nothing (issue 15, item 4): it builds the site in a staging
//! directory and renames it into place, so a crash after a parent accepted the child leaves no
//! half-made site, and running `init` again with the same token works. The crash is a debug
//! build's failpoint (`INVSITE_FAILPOINT`, see `invsync_site::failpoint`), which aborts the
//! process as `kill -9` would.

use crate::common::*;

/// Runs `invsite init` of child C01 below `parent` with a failpoint that aborts it.
fn crashed_child_init(dir: &std::path::Path, parent: &Site, token: &str, failpoint: &str) {
    let out = bin("invsite")
        .args([
            "init",
            "--data-dir",
            s(dir),
            "--site-code",
            "C01",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--parent", &parent.url, "--parent-token", token])
        .env("INVSITE_FAILPOINT", failpoint)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        None,
        "init should have aborted at {failpoint}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("The parent site P01"),
        "the parent accepted the child first: {}",
        stdout(&out)
    );
}

#[test]
fn a_child_init_that_crashes_after_the_parent_accepted_it_can_be_run_again() {
    let tmp = tempfile::tempdir().unwrap();
    let mut parent = Site::init(tmp.path(), "P01");
    parent.start();
    let token = parent.child_token("C01");
    let dir = tmp.path().join("site-C01");

    for failpoint in ["init-after-store", "init-before-commit"] {
        crashed_child_init(&dir, &parent, &token, failpoint);
        // Nothing at the data directory: not a site, and nothing a second init refuses.
        assert!(
            !dir.exists(),
            "{failpoint}: the crash left {:?}",
            std::fs::read_dir(&dir).map(|d| d.count())
        );
        let out = run_expect("invsite", &["clients", "--data-dir", s(&dir)], 3);
        assert!(out.contains("runs only on a site server"), "{out}");
    }

    // The same command, with the same token, now works; the staging directory the crash left
    // is cleared, and the child forwards to the parent.
    let mut child = Site::init_child(tmp.path(), "C01", &parent);
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("init-partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    child.start();
    let agent = Agent::enroll(tmp.path(), &child, "debian", "web01");
    agent.cycle();
    wait_until(30, "the parent holds WEB01 from C01", || {
        try_show(&parent, "WEB01", &[])
            .is_some_and(|v| v["site"] == "C01" && v["sw"]["version"] == 1)
    });
}

#[test]
fn init_takes_a_new_or_empty_directory_and_refuses_anything_else() {
    let tmp = tempfile::tempdir().unwrap();
    // An empty directory made in advance (by a package's StateDirectory, say) is fine, and
    // keeps its place.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    run_ok(
        "invsite",
        &[
            "init",
            "--data-dir",
            s(&empty),
            "--site-code",
            "S01",
            "--listen",
            "127.0.0.1:0",
        ],
    );
    run_ok("invsite", &["clients", "--data-dir", s(&empty)]);
    // A second init over a site is refused.
    let out = run_expect(
        "invsite",
        &["init", "--data-dir", s(&empty), "--site-code", "S02"],
        2,
    );
    assert!(out.contains("already holds a site"), "{out}");
    // A directory with something in it but no site (an older version's failed init left
    // site.db alone) is refused with what is there, and nothing is touched.
    let used = tmp.path().join("used");
    std::fs::create_dir(&used).unwrap();
    std::fs::write(used.join("site.db"), b"precious").unwrap();
    let out = run_expect(
        "invsite",
        &["init", "--data-dir", s(&used), "--site-code", "S03"],
        2,
    );
    assert!(
        out.contains("is not empty") && out.contains("site.db"),
        "{out}"
    );
    assert_eq!(std::fs::read(used.join("site.db")).unwrap(), b"precious");
    assert_eq!(std::fs::read_dir(&used).unwrap().count(), 1);
    // A file where the directory should be.
    let file = tmp.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let out = run_expect(
        "invsite",
        &["init", "--data-dir", s(&file), "--site-code", "S04"],
        2,
    );
    assert!(out.contains("not a directory"), "{out}");
}
