//! Every binary ends quietly when the reader of its output goes away, as ripgrep does:
//! `invsite clients --json | head -c 10` used to exit 101 with "panicked ... failed printing to
//! stdout: Broken pipe" (issue 15, item 5).

use std::process::Stdio;

use crate::common::*;

/// Runs a binary with stdout a pipe whose reading end is already closed, so its first write
/// fails with `EPIPE` (Rust ignores `SIGPIPE`), and checks it exits 0 with nothing on stderr.
fn closed_stdout(name: &str, args: &[&str]) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = bin(name)
        .args(args)
        .env_remove("INVSITE_DIR")
        .env_remove("INVAGENT_DIR")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(
        code(&out),
        0,
        "{name} {args:?} into a closed pipe exited {:?}: {err}",
        out.status
    );
    assert!(
        err.is_empty(),
        "{name} {args:?} into a closed pipe wrote to stderr: {err}"
    );
}

#[test]
fn a_closed_output_pipe_ends_every_binary_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    site.start();
    let agent = Agent::enroll(tmp.path(), &site, "debian", "PIPED");
    agent.cycle();
    let d = site.data_dir();
    for b in ["invsite", "invagent", "invsync", "setevnt"] {
        closed_stdout(b, &["--help"]);
        closed_stdout(b, &["--version"]);
    }
    closed_stdout("invsite", &["clients", "--data-dir", d, "--json"]);
    closed_stdout("invsite", &["clients", "--data-dir", d]);
    closed_stdout("invsite", &["show", "PIPED", "--data-dir", d, "--json"]);
    closed_stdout("invsite", &["show", "PIPED", "--data-dir", d]);
    closed_stdout("invsite", &["history", "PIPED", "--data-dir", d, "--json"]);
    closed_stdout("invsite", &["sites", "--data-dir", d, "--json"]);
    closed_stdout("invsite", &["config", "--data-dir", d]);
    closed_stdout("invsite", &["admin-token", "--data-dir", d]);
    closed_stdout("invsite", &["enroll-secret", "--data-dir", d]);
    closed_stdout("invsite", &["child-token", "C01", "--data-dir", d]);
    closed_stdout("invsync", &["hw", "PIPED", "--data-dir", d, "--json"]);
    closed_stdout("invsync", &["sw", "PIPED", "--data-dir", d]);
    closed_stdout("setevnt", &["PIPED", "cycle", "--data-dir", d, "--json"]);
    closed_stdout("setevnt", &["PIPED", "hinv", "--data-dir", d]);
    let root = agent.root.to_str().unwrap();
    closed_stdout("invagent", &["inventory", "sw", "--root", root, "--json"]);
    closed_stdout("invagent", &["inventory", "hw", "--root", root]);
    // `invsite init` prints its next steps; dying there once left a half-made site (item 4).
    let fresh = tmp.path().join("fresh");
    closed_stdout(
        "invsite",
        &[
            "init",
            "--data-dir",
            fresh.to_str().unwrap(),
            "--site-code",
            "S02",
            "--listen",
            "127.0.0.1:0",
        ],
    );
    run_ok(
        "invsite",
        &["clients", "--data-dir", fresh.to_str().unwrap()],
    );
}
