//! Every exit code of SPEC section 7 that a single site can produce, from each tool, with a
//! message a person understands. (Exit 5, a client owned by another site, needs a hierarchy
//! and is tested with it.)

use crate::common::*;

#[test]
fn help_and_version_exit_0() {
    for b in ["invsite", "invagent", "invsync", "setevnt"] {
        let out = run_ok(b, &["--help"]);
        assert!(out.contains("Usage"), "{b} --help: {out}");
        let out = run_ok(b, &["--version"]);
        assert!(
            out.contains(env!("CARGO_PKG_VERSION")),
            "{b} --version: {out}"
        );
    }
}

#[test]
fn bad_usage_exits_2() {
    let out = run_expect("invsync", &["xx", "CLIENT"], 2);
    assert!(out.contains("use hw or sw"), "{out}");
    let out = run_expect("invsync", &["hw"], 2);
    assert!(out.contains("CLIENT"), "{out}");
    let out = run_expect("setevnt", &["CLIENT", "reboot"], 2);
    assert!(out.contains("cycle, hinv or sinv"), "{out}");
    let out = run_expect("invsync", &["hw", "CLIENT", "--timeout", "5s"], 2);
    assert!(out.contains("--wait"), "--timeout without --wait: {out}");
    let out = run_expect(
        "invsync",
        &["hw", "CLIENT", "--wait", "--timeout", "soon"],
        2,
    );
    assert!(out.contains("--timeout"), "{out}");
    let out = run_expect("invagent", &["inventory", "fw"], 2);
    assert!(out.contains("fw"), "{out}");
    let out = run_expect(
        "invagent",
        &["run", "--interval", "0s", "--data-dir", "/nonexistent"],
        2,
    );
    assert!(out.contains("interval"), "{out}");
    let out = run_expect(
        "invsite",
        &["init", "--data-dir", "/tmp/x", "--site-code", "S1"],
        2,
    );
    assert!(out.contains("site code"), "{out}");
    run_expect("invsite", &["frobnicate"], 2);
}

#[test]
fn not_a_site_server_exits_3() {
    let out = run_expect(
        "invsync",
        &["hw", "GOODNAME", "--data-dir", "/nonexistent-site"],
        3,
    );
    assert!(
        out.contains(
            "invsync runs only on a site server: no site data directory at /nonexistent-site"
        ),
        "{out}"
    );
    let out = run_expect(
        "setevnt",
        &["GOODNAME", "cycle", "--data-dir", "/nonexistent-site"],
        3,
    );
    assert!(out.contains("setevnt runs only on a site server"), "{out}");
    run_expect(
        "invsite",
        &["show", "GOODNAME", "--data-dir", "/nonexistent-site"],
        3,
    );
    run_expect(
        "invsite",
        &["clients", "--data-dir", "/nonexistent-site"],
        3,
    );

    // A site directory whose admin token cannot be read is not one this user administers.
    let tmp = tempfile::tempdir().unwrap();
    let site = Site::init(tmp.path(), "S01");
    std::fs::remove_file(site.dir.join("admin.token")).unwrap();
    let out = run_expect(
        "invsync",
        &["hw", "GOODNAME", "--data-dir", site.data_dir()],
        3,
    );
    assert!(out.contains("admin token"), "{out}");
}

#[test]
fn the_data_dir_comes_from_invsite_dir_too() {
    let tmp = tempfile::tempdir().unwrap();
    let site = Site::init(tmp.path(), "S01");
    let o = bin("invsync")
        .args(["hw", "NOBODY"])
        .env("INVSITE_DIR", &site.dir)
        .output()
        .unwrap();
    assert_eq!(
        code(&o),
        4,
        "INVSITE_DIR names a site that has no NOBODY: {}",
        stderr(&o)
    );
}

#[test]
fn unknown_client_exits_4_with_and_without_a_server() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    // Server not running: the tools use the database and still know the client is unknown.
    let out = run_expect(
        "invsync",
        &["sw", "NOBODY", "--data-dir", site.data_dir()],
        4,
    );
    assert!(out.contains("unknown client NOBODY at site S01"), "{out}");
    site.start();
    let out = run_expect(
        "invsync",
        &["sw", "NOBODY", "--data-dir", site.data_dir()],
        4,
    );
    assert!(out.contains("unknown client NOBODY"), "{out}");
    let out = run_expect(
        "setevnt",
        &["NOBODY", "hinv", "--data-dir", site.data_dir()],
        4,
    );
    assert!(out.contains("unknown client NOBODY"), "{out}");
    let out = run_expect(
        "invsite",
        &["show", "NOBODY", "--data-dir", site.data_dir()],
        4,
    );
    assert!(out.contains("unknown client NOBODY"), "{out}");
    assert!(
        site.clients().as_array().unwrap().is_empty(),
        "nothing was stored"
    );
    site.stop();
}

#[test]
fn wait_timeout_exits_6() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let _agent = Agent::enroll(tmp.path(), &site, "minimal", "sleepy");
    let out = run_expect(
        "invsync",
        &[
            "hw",
            "SLEEPY",
            "--data-dir",
            site.data_dir(),
            "--wait",
            "--timeout",
            "1s",
        ],
        6,
    );
    assert!(
        out.contains("timed out") && out.contains("setevnt SLEEPY cycle"),
        "{out}"
    );
    // The request stays queued for the next cycle.
    assert_eq!(site.show("SLEEPY")["requests"][0]["state"], "pending");
    site.stop();
}

#[test]
fn other_failures_exit_1_and_say_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_expect(
        "invagent",
        &[
            "cycle",
            "--data-dir",
            tmp.path().join("nowhere").to_str().unwrap(),
        ],
        1,
    );
    assert!(out.contains("invagent enroll"), "not enrolled: {out}");

    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let agent = Agent::enroll(tmp.path(), &site, "minimal", "lonely");
    site.stop();
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
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("could not reach the site"),
        "{}",
        stderr(&o)
    );

    let out = run_expect(
        "invsite",
        &["init", "--data-dir", site.data_dir(), "--site-code", "S01"],
        2,
    );
    assert!(out.contains("already holds a site"), "{out}");
}
