//! What the packaged systemd units rely on: `invsite serve` tells systemd it is ready
//! (`Type=notify`) once it answers, and that it is stopping on SIGTERM; a binary whose stderr
//! is the journal logs without timestamps of its own, since journald stamps every line.
//! No systemd runs here: the tests play its part, a datagram socket as `$NOTIFY_SOCKET` and a
//! file as the journal stream named by `$JOURNAL_STREAM`.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::time::Duration;

use crate::common::*;

/// A server process killed when the test ends, passing or not, so a failed assertion leaves
/// no server behind holding the test's output open.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Server {
    /// SIGTERM, then whether it exited 0.
    fn terminate(mut self) -> bool {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        self.0.wait().unwrap().success()
    }
}

#[test]
fn serve_notifies_systemd_when_ready_and_when_stopping() {
    let tmp = tempfile::tempdir().unwrap();
    let site = Site::init(tmp.path(), "N01");
    let socket_path = tmp.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    // Generous: a loaded 2-core machine may take a while to start the site.
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();

    let mut child = Server(
        bin("invsite")
            .args(["serve", "--data-dir", site.data_dir()])
            .env("NOTIFY_SOCKET", &socket_path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_string();

    let mut buf = [0u8; 256];
    let n = socket
        .recv(&mut buf)
        .expect("invsite serve sent nothing to $NOTIFY_SOCKET");
    assert_eq!(std::str::from_utf8(&buf[..n]).unwrap().trim(), "READY=1");
    // Ready means answering: the database is open and the listener bound.
    let health = http().get(&format!("{url}/healthz")).call().unwrap();
    assert_eq!(health.status(), 200);

    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let n = socket
        .recv(&mut buf)
        .expect("invsite serve did not say it was stopping");
    assert_eq!(std::str::from_utf8(&buf[..n]).unwrap().trim(), "STOPPING=1");
    assert!(
        child.terminate(),
        "invsite serve did not exit 0 after SIGTERM"
    );
}

/// Runs `invsite serve` with stderr to a file until it has said it is serving, stops it, and
/// returns the log. `journal` is what `$JOURNAL_STREAM` names: the log file itself, another
/// file, or nothing.
fn serve_log(site: &Site, log: &std::path::Path, journal: Option<&std::path::Path>) -> String {
    let file = std::fs::File::create(log).unwrap();
    let mut cmd = bin("invsite");
    cmd.args(["serve", "--data-dir", site.data_dir()])
        .env("RUST_LOG", "info")
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::piped())
        .stderr(file);
    if let Some(path) = journal {
        let m = std::fs::metadata(path).unwrap();
        cmd.env("JOURNAL_STREAM", format!("{}:{}", m.dev(), m.ino()));
    }
    let mut child = Server(cmd.spawn().unwrap());
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    wait_until(60, "the site logs that it serves", || {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains("Serving.")
    });
    assert!(
        child.terminate(),
        "invsite serve did not exit 0 after SIGTERM"
    );
    std::fs::read_to_string(log).unwrap()
}

/// Whether a log line starts with the RFC 3339 timestamp tracing-subscriber writes (`2026-…`).
fn stamped(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 10 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-'
}

#[test]
fn logs_to_the_journal_carry_no_timestamp_of_their_own() {
    let tmp = tempfile::tempdir().unwrap();
    let site = Site::init(tmp.path(), "J01");

    let log = tmp.path().join("journal.log");
    let text = serve_log(&site, &log, Some(&log));
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("Serving.")).collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(
        !text.lines().any(stamped),
        "a line to the journal has its own timestamp:\n{text}"
    );

    // Not the journal: a terminal, a file, or the journal's variable inherited by a process
    // whose stderr went elsewhere. Timestamps stay.
    let plain = serve_log(&site, &tmp.path().join("plain.log"), None);
    assert!(
        plain.lines().any(|l| l.contains("Serving.") && stamped(l)),
        "{plain}"
    );
    let elsewhere = serve_log(&site, &tmp.path().join("elsewhere.log"), Some(&log));
    assert!(
        elsewhere
            .lines()
            .any(|l| l.contains("Serving.") && stamped(l)),
        "{elsewhere}"
    );
}
