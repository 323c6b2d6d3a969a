//! End-to-end: a real `invsite serve` on 127.0.0.1:0 and the `invsync-loadgen` binary in
//! each mode, small (20 agents of 50 packages), checking the results and what the site holds.
//!
//! `invsite` is the workspace's binary next to this crate's; it is built (`cargo build -p
//! invsync-cli --bin invsite`) when missing, so `cargo test -p invsync-loadgen` runs alone.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

use invsync_loadgen::agents::AgentsFile;
use invsync_loadgen::inventory::Fleet;
use invsync_proto::Snapshot;
use serde_json::Value;

const LOADGEN: &str = env!("CARGO_BIN_EXE_invsync-loadgen");

/// `invsite`, built once per test process if it is not there.
fn invsite() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let bin = Path::new(LOADGEN).with_file_name("invsite");
        if !bin.is_file() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
            let status = Command::new(cargo)
                .args(["build", "-p", "invsync-cli", "--bin", "invsite"])
                .status()
                .expect("running cargo build for invsite");
            assert!(
                status.success(),
                "cargo build -p invsync-cli --bin invsite failed"
            );
        }
        bin
    })
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temporary path")
}

fn run(bin: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env_remove("INVSITE_DIR")
        .output()
        .unwrap()
}

/// A fresh site with a running server.
struct Site {
    dir: PathBuf,
    url: String,
    child: Child,
}

impl Site {
    fn start(tmp: &Path) -> Site {
        let dir = tmp.join("site");
        let o = run(
            invsite(),
            &[
                "init",
                "--data-dir",
                s(&dir),
                "--site-code",
                "LGT",
                "--listen",
                "127.0.0.1:0",
            ],
        );
        assert!(
            o.status.success(),
            "invsite init: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let mut child = Command::new(invsite())
            .args(["serve", "--data-dir", s(&dir)])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .to_string();
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "first line of invsite serve: {line:?}"
        );
        Site { dir, url, child }
    }

    fn clients(&self) -> Vec<Value> {
        let o = run(
            invsite(),
            &["clients", "--data-dir", s(&self.dir), "--json"],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<Value>(&o.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    fn show(&self, name: &str) -> Value {
        let o = run(
            invsite(),
            &["show", name, "--data-dir", s(&self.dir), "--json"],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a mode against `site` with the agents file in `tmp`; returns (exit code, stdout, stderr).
fn loadgen(site: &Site, tmp: &Path, mode: &str, extra: &[&str]) -> (i32, String, String) {
    let file = tmp.join("agents");
    let mut args = vec![
        mode,
        "--site",
        &site.url,
        "--site-dir",
        s(&site.dir),
        "--agents-file",
        s(&file),
        "--concurrency",
        "8",
        "--time-limit",
        "2m",
    ];
    args.extend_from_slice(extra);
    let o = Command::new(LOADGEN).args(&args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Runs a mode with `--json`, asserts success and no errors, returns the results.
fn json_ok(site: &Site, tmp: &Path, mode: &str, extra: &[&str]) -> Value {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let (code, out, err) = loadgen(site, tmp, mode, &args);
    assert_eq!(
        code, 0,
        "{mode} exited {code}\nstdout:\n{out}\nstderr:\n{err}"
    );
    let v: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{mode}: no JSON ({e}): {out}"));
    assert_eq!(v["mode"], mode);
    assert_eq!(v["errors"]["total"], 0, "{v:#}");
    assert_eq!(v["skipped"], 0, "{v:#}");
    assert!(v["per_second"].as_f64().unwrap() > 0.0, "{v:#}");
    for p in ["p50_ms", "p90_ms", "p99_ms", "max_ms"] {
        assert!(v["latency"][p].is_number(), "{p}: {v:#}");
    }
    v
}

fn versions(site: &Site) -> Vec<(String, Value, Value)> {
    let mut v: Vec<_> = site
        .clients()
        .into_iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["hw_version"].clone(),
                c["sw_version"].clone(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn every_mode_against_a_real_site() {
    let tmp = tempfile::tempdir().unwrap();
    let site = Site::start(tmp.path());

    // enroll: 20 agents, resumable (a second run to 25 enrolls only 5).
    let v = json_ok(
        &site,
        tmp.path(),
        "enroll",
        &["--agents", "20", "--packages", "50", "--seed", "7"],
    );
    assert_eq!(
        (
            v["requests"].as_u64(),
            v["ok"].as_u64(),
            v["agents"].as_u64()
        ),
        (Some(20), Some(20), Some(20))
    );
    let v = json_ok(&site, tmp.path(), "enroll", &["--agents", "25"]);
    assert_eq!(
        (v["requests"].as_u64(), v["agents"].as_u64()),
        (Some(5), Some(25))
    );
    let clients = versions(&site);
    assert_eq!(clients.len(), 25);
    assert!(
        clients
            .iter()
            .all(|(_, hw, sw)| hw.is_null() && sw.is_null())
    );

    // delta and checkin before full are refused.
    for mode in ["delta", "checkin"] {
        let (code, _, err) = loadgen(&site, tmp.path(), mode, &[]);
        assert_eq!(code, 2, "{mode}: {err}");
        assert!(err.contains("run `invsync-loadgen full"), "{mode}: {err}");
    }

    // full: hw once (setup), then 2 sw full reports each.
    let v = json_ok(&site, tmp.path(), "full", &["--rounds", "2"]);
    assert_eq!(
        (v["requests"].as_u64(), v["ok"].as_u64()),
        (Some(50), Some(50))
    );
    assert_eq!(v["setup"]["ok"].as_u64(), Some(25));
    assert!(versions(&site).iter().all(|(_, hw, sw)| hw == 1 && sw == 2));

    // delta: 3 rounds of the first 20 agents.
    let v = json_ok(
        &site,
        tmp.path(),
        "delta",
        &["--rounds", "3", "--agents", "20"],
    );
    assert_eq!(
        (v["requests"].as_u64(), v["ok"].as_u64()),
        (Some(60), Some(60))
    );
    for (i, (name, _, sw)) in versions(&site).iter().enumerate() {
        assert_eq!(sw, if i < 20 { 5 } else { 2 }, "{name}");
    }

    // The site holds exactly the generator's snapshot of round 3.
    let file = AgentsFile::read(&tmp.path().join("agents"))
        .unwrap()
        .unwrap();
    assert_eq!((file.agents[0].sw_version, file.agents[0].sw_round), (5, 3));
    let fleet = Fleet::new(file.header.spec);
    let shown = site.show("LG00001");
    let items: invsync_proto::Items = serde_json::from_value(shown["sw"]["items"].clone()).unwrap();
    assert_eq!(items, fleet.sw(1, 3).items());
    assert_eq!(shown["sw"]["hash"], Snapshot::new(items).hash().to_hex());
    let hw: invsync_proto::Items = serde_json::from_value(shown["hw"]["items"].clone()).unwrap();
    assert_eq!(hw, fleet.hw_items(1));

    // checkin: nothing changed, nothing stored.
    let v = json_ok(&site, tmp.path(), "checkin", &["--rounds", "4"]);
    assert_eq!(
        (v["requests"].as_u64(), v["ok"].as_u64()),
        (Some(100), Some(100))
    );
    let after = versions(&site);
    assert!(after.iter().all(|(_, hw, _)| hw == 1));
    assert_eq!(after.iter().filter(|(_, _, sw)| sw == 5).count(), 20);

    // Human-readable output names the figures.
    let (code, out, _) = loadgen(&site, tmp.path(), "checkin", &["--duration", "1s"]);
    assert_eq!(code, 0, "{out}");
    for word in ["requests", "/s", "p50", "p90", "p99", "errors"] {
        assert!(out.contains(word), "{word} in {out}");
    }
}

#[test]
fn a_delta_on_a_stale_base_counts_as_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let site = Site::start(tmp.path());
    json_ok(
        &site,
        tmp.path(),
        "enroll",
        &["--agents", "3", "--packages", "20"],
    );
    json_ok(&site, tmp.path(), "full", &[]);
    // Forget that the site moved on: the next delta names an old base version.
    let path = tmp.path().join("agents");
    let before = std::fs::read_to_string(&path).unwrap();
    json_ok(&site, tmp.path(), "delta", &[]);
    std::fs::write(&path, before).unwrap();
    let (code, out, _) = loadgen(&site, tmp.path(), "delta", &["--json"]);
    assert_eq!(code, 1, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["errors"]["refused"].as_u64(), Some(3), "{v:#}");
    // The site stored nothing for a refused delta, so the agents keep the state they had.
    let file = AgentsFile::read(&path).unwrap().unwrap();
    assert!(file.agents.iter().all(|a| a.sw_version == 1));
}

#[test]
fn refusals() {
    let tmp = tempfile::tempdir().unwrap();
    let site = Site::start(tmp.path());
    let file = tmp.path().join("agents");
    let base = |mode: &'static str, url: &str, extra: &[&str]| -> (i32, String) {
        let mut args = vec![
            mode,
            "--site",
            url,
            "--site-dir",
            s(&site.dir),
            "--agents-file",
            s(&file),
        ];
        args.extend_from_slice(extra);
        let o = Command::new(LOADGEN).args(&args).output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, err) = base("enroll", "http://10.0.0.1:8350", &["--agents", "1"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("only talks to a site on this machine"),
        "{err}"
    );
    let (code, err) = base("full", &site.url, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("enroll agents first"), "{err}");
    std::fs::write(&file, "not an agents file\n").unwrap();
    let (code, err) = base("delta", &site.url, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not an agents file"), "{err}");
    std::fs::remove_file(&file).unwrap();
    let (code, err) = base("enroll", &site.url, &["--agents", "2", "--packages", "10"]);
    assert_eq!(code, 0, "{err}");
    let (code, err) = base("enroll", &site.url, &["--agents", "3", "--packages", "11"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--packages 10"), "{err}");
    let (code, err) = base("full", &site.url, &["--agents", "3"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("holds only 2 agents"), "{err}");
    let (code, err) = base("checkin", &site.url, &["--concurrency", "0"]);
    assert_eq!(code, 2, "{err}");
}
