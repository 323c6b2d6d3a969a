//! `invsite quickstart` end to end: it creates a site and enrolls a local agent in the folder it
//! is given, prints the commands to try next, those commands work against it as printed, and
//! Ctrl-C (SIGINT) stops it cleanly with exit 0; run again, it reuses the same site.

use std::process::{Child, Stdio};

use crate::common::*;

/// Starts `invsite quickstart` in `cwd` with the local agent on the `debian` fixture root.
fn start(cwd: &std::path::Path, root: &std::path::Path) -> (Child, Lines) {
    let mut child = bin("invsite")
        .args([
            "quickstart",
            "--dir",
            "qs",
            "--listen",
            "127.0.0.1:0",
            "--interval",
            "1h",
            "--root",
            s(root),
        ])
        .current_dir(cwd)
        .env_remove("INVSITE_DIR")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(cwd.join("quickstart.log"))
                .unwrap(),
        )
        .spawn()
        .unwrap();
    let lines = Lines::of(child.stdout.take().unwrap());
    (child, lines)
}

/// The lines it prints up to and including "Press Ctrl-C to stop.", each within 60 s.
fn until_ready(lines: &mut Lines) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let line = lines.next_within(60).unwrap_or_else(|| {
            panic!(
                "quickstart stopped printing before it was ready:\n{}",
                seen.join("\n")
            )
        });
        let done = line == "Press Ctrl-C to stop.";
        seen.push(line);
        if done {
            return seen;
        }
    }
}

/// SIGINT, as Ctrl-C sends it, and the exit status.
fn interrupt(mut child: Child) -> std::process::ExitStatus {
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    exit_within(&mut child, 60, "invsite quickstart after SIGINT")
}

#[test]
fn quickstart_serves_a_site_whose_printed_commands_work_and_stops_on_ctrl_c() {
    let tmp = tempfile::tempdir().unwrap();
    let root = fixture_copy("debian", tmp.path());
    let (child, mut lines) = start(tmp.path(), &root);
    let out = until_ready(&mut lines);
    let text = out.join("\n");
    assert_eq!(out[0], "Created site S01 on SQLite in qs/site.", "{text}");
    assert!(out[1].starts_with("Serving on http://127.0.0.1:"), "{text}");
    let name = out[2]
        .strip_prefix("Enrolled this machine's agent as ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no enrollment line: {text}"))
        .to_string();
    assert!(
        text.contains("First cycle done:\nhw: sent full report"),
        "{text}"
    );

    // The commands, as printed (two spaces in, a comment after `#`), run from the same folder.
    let commands: Vec<Vec<String>> = out
        .iter()
        .filter_map(|l| l.strip_prefix("  "))
        .map(|l| {
            l.split(" #")
                .next()
                .unwrap()
                .split_whitespace()
                .map(str::to_string)
                .collect()
        })
        .collect();
    assert_eq!(commands.len(), 4, "{text}");
    let tools: Vec<String> = commands
        .iter()
        .map(|c| {
            std::path::Path::new(&c[0])
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        tools,
        ["invsync", "setevnt", "invsite", "invsite"],
        "{text}"
    );
    for command in &commands {
        let started = std::process::Command::new(&command[0])
            .args(&command[1..])
            .current_dir(tmp.path())
            .env_remove("INVSITE_DIR")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{command:?}: {e}"));
        let o = finish_within(started, 120, &command.join(" "));
        assert_eq!(code(&o), 0, "{command:?}:\n{}{}", stdout(&o), stderr(&o));
        if command[1] == "sw" {
            // `invsync sw NAME --wait`: the agent (on its push channel) completes it.
            let last = stdout(&o).lines().last().unwrap_or_default().to_string();
            assert!(
                last.contains("complete at") && last.contains("stored at site S01"),
                "{}",
                stdout(&o)
            );
        }
        if command[1] == "show" {
            assert!(stdout(&o).contains(&name), "{}", stdout(&o));
        }
    }
    // The printed `setevnt … cycle` was acted on.
    let site = Site::existing(tmp.path().join("qs/site"));
    wait_until(60, "the agent acknowledges the cycle event", || {
        try_show(&site, &name, &[]).is_some_and(|v| v["events"][0]["state"] == "complete")
    });
    let status = interrupt(child);
    let log = std::fs::read_to_string(tmp.path().join("quickstart.log")).unwrap();
    assert!(
        status.success(),
        "invsite quickstart exited {status} after SIGINT:\n{log}"
    );
    // The agent stops before its site, so nothing on the way out is a warning (it used to log
    // "Push channel lost" as the server went first).
    assert!(!log.contains("WARN") && !log.contains("ERROR"), "{log}");

    // Run again, it reuses the site and the client.
    let (child, mut lines) = start(tmp.path(), &root);
    let again = until_ready(&mut lines);
    assert_eq!(
        again[0],
        "Using the site in qs/site.",
        "{}",
        again.join("\n")
    );
    assert!(
        again[2].starts_with(&format!("Enrolled this machine's agent as {name} ")),
        "{}",
        again.join("\n")
    );
    assert!(interrupt(child).success());
}
