//! Credentials and exposure: rotating the enrollment secret, refusing to start with secrets
//! others can read, and refusing plain HTTP beyond loopback unless asked for.

use std::os::unix::fs::PermissionsExt;

use crate::common::*;

#[test]
fn rotating_the_enrollment_secret_locks_out_the_old_one_but_not_enrolled_clients() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let old = site.secret();
    let agent = Agent::enroll(tmp.path(), &site, "minimal", "early");
    let new = run_ok("invsite", &["enroll-secret", "--rotate", "--data-dir", site.data_dir()]);
    let new = new.lines().find(|l| l.len() == 64).unwrap().to_string();
    assert_ne!(new, old);
    assert_eq!(site.secret(), new);

    let root = fixture_copy("minimal", &tmp.path().join("late"));
    let late = tmp.path().join("agent-late");
    let out = run_expect(
        "invagent",
        &["enroll", "--data-dir", s(&late), "--site", &site.url, "--secret", &old, "--name", "late", "--root", s(&root)],
        2,
    );
    assert!(out.contains("wrong enrollment secret"), "{out}");
    run_ok(
        "invagent",
        &["enroll", "--data-dir", s(&late), "--site", &site.url, "--secret", &new, "--name", "late", "--root", s(&root)],
    );
    // The client enrolled before the rotation keeps working with its own key.
    agent.cycle();
    site.stop();
}

#[test]
fn the_site_refuses_to_start_when_others_can_read_its_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let site = Site::init(tmp.path(), "S01");
    let token = site.dir.join("admin.token");
    assert_eq!(std::fs::metadata(&token).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(&site.dir).unwrap().permissions().mode() & 0o777, 0o700);
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run_expect("invsite", &["serve", "--data-dir", site.data_dir()], 1);
    assert!(out.contains("other users can read") && out.contains("chmod 600"), "{out}");
}

#[test]
fn plain_http_beyond_loopback_needs_insecure_http() {
    let tmp = tempfile::tempdir().unwrap();
    let site = Site::init(tmp.path(), "S01");
    let out = run_expect("invsite", &["serve", "--data-dir", site.data_dir(), "--listen", "0.0.0.0:0"], 2);
    assert!(out.contains("refusing to serve plain HTTP") && out.contains("--insecure-http"), "{out}");
}
