//! End-to-end: a real `invsite serve` on 127.0.0.1:0 and the `invsync-loadgen` binary in
//! each mode, small (20 agents of 50 packages), checking the results and what the site holds;
//! and durability: a site killed (SIGKILL) in the middle of a delta run and restarted still
//! holds every report it acknowledged, by `verify` and by the site's own listing, and
//! `verify` does report what a site that lost data no longer holds.
//!
//! `invsite` is the workspace's binary next to this crate's; it is built (`cargo build -p
//! invsync-cli --bin invsite`) when missing, so `cargo test -p invsync-loadgen` runs alone.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

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

/// The database of a test site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Db {
    Sqlite,
    /// A fresh database next to the one `INVSYNC_TEST_POSTGRES` names.
    Postgres,
}

/// SQLite always; PostgreSQL too when `INVSYNC_TEST_POSTGRES` names a database (`.ci/run`
/// sets it). Without it, says so on stderr.
fn backends() -> Vec<Db> {
    if std::env::var_os("INVSYNC_TEST_POSTGRES").is_some() {
        vec![Db::Sqlite, Db::Postgres]
    } else {
        eprintln!("INVSYNC_TEST_POSTGRES is not set: this test ran on SQLite only");
        vec![Db::Sqlite]
    }
}

/// A PostgreSQL database made for one test site and dropped with it. Its name starts with
/// the run's database name, so `.ci/run` drops it too if this process is killed first.
struct PgDb {
    admin_url: String,
    name: String,
    url: String,
}

impl PgDb {
    fn create() -> PgDb {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let admin_url = std::env::var("INVSYNC_TEST_POSTGRES").unwrap();
        let admin_url = admin_url.split('?').next().unwrap().to_string();
        let (server, base) = admin_url.rsplit_once('/').expect("a URL ending in /DBNAME");
        let name = format!(
            "{base}_lg_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let o = Command::new("psql")
            .args([&admin_url, "-Atqc", &format!("CREATE DATABASE {name}")])
            .output()
            .expect("psql is installed");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let url = format!("{server}/{name}");
        PgDb {
            admin_url,
            name,
            url,
        }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                self.admin_url.as_str(),
                "-Atqc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

/// A fresh site with a running server.
struct Site {
    dir: PathBuf,
    url: String,
    child: Child,
    /// Dropped after the server is killed (`Drop for Site` runs before the fields' drops).
    _pg: Option<PgDb>,
}

impl Site {
    /// `invsite init` in `tmp/site` on SQLite, then `invsite serve`.
    fn start(tmp: &Path) -> Site {
        Site::start_on(tmp, Db::Sqlite)
    }

    /// `invsite init` in `tmp/site` on `db`, then `invsite serve`.
    fn start_on(tmp: &Path, db: Db) -> Site {
        let dir = tmp.join("site");
        let pg = (db == Db::Postgres).then(PgDb::create);
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
                "--db",
                pg.as_ref().map_or("sqlite", |p| p.url.as_str()),
            ],
        );
        assert!(
            o.status.success(),
            "invsite init: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let (child, url) = Site::serve(&dir);
        Site {
            dir,
            url,
            child,
            _pg: pg,
        }
    }

    /// `invsite serve` on an initialised data directory (a new port each time): the server
    /// and its URL.
    fn serve(dir: &Path) -> (Child, String) {
        let mut child = Command::new(invsite())
            .args(["serve", "--data-dir", s(dir)])
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
        (child, url)
    }

    /// Starts the server again after [`Site::kill9`], on another port.
    fn serve_again(&mut self) {
        (self.child, self.url) = Site::serve(&self.dir);
    }

    /// Kills the server with SIGKILL (`Child::kill` on Unix): no shutdown code runs, as in a
    /// crash or an OOM kill.
    fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
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

/// Runs `verify --json` against `site`; returns (exit code, results, stderr).
fn verify(site: &Site, tmp: &Path) -> (i32, Value, String) {
    let (code, out, err) = loadgen(site, tmp, "verify", &["--json"]);
    let v = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("verify: no JSON ({e}), exit {code}: {out}\n{err}"));
    (code, v, err)
}

/// Waits for `child` to exit, at most `bound` (then kills it and fails).
fn wait_bounded(child: &mut Child, bound: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("{what} did not exit within {bound:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The request count of a progress line `invsync-loadgen: delta: N requests, R/s, E errors`
/// with no errors yet: then every one of the N was acknowledged.
fn acknowledged_so_far(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("invsync-loadgen: delta: ")?;
    let (done, rest) = rest.split_once(" requests, ")?;
    rest.ends_with(", 0 errors").then(|| done.parse().ok())?
}

#[test]
fn a_site_killed_in_the_middle_of_a_delta_run_loses_no_acknowledged_report() {
    for db in backends() {
        killed_in_the_middle_of_a_delta_run(db);
    }
}

fn killed_in_the_middle_of_a_delta_run(db: Db) {
    const AGENTS: u64 = 100;
    /// Acknowledged deltas awaited before the kill: the site is then busy storing more.
    const BEFORE_KILL: u64 = 300;
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::start_on(tmp.path(), db);
    json_ok(
        &site,
        tmp.path(),
        "enroll",
        &[
            "--agents",
            &AGENTS.to_string(),
            "--packages",
            "30",
            "--seed",
            "11",
        ],
    );
    json_ok(&site, tmp.path(), "full", &[]);

    // Deltas until the site dies: --duration with no --rounds, far longer than the test waits.
    let file = tmp.path().join("agents");
    let mut lg = Command::new(LOADGEN)
        .args([
            "delta",
            "--site",
            &site.url,
            "--site-dir",
            s(&site.dir),
            "--agents-file",
            s(&file),
            "--concurrency",
            "8",
            "--duration",
            "10m",
            "--prebuild",
            "400",
            "--time-limit",
            "15m",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = lg.stdout.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).unwrap();
        text
    });
    let (tx, lines) = mpsc::channel();
    let stderr = lg.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines.recv_timeout(left).unwrap_or_else(|_| {
            let _ = lg.kill();
            panic!("no {BEFORE_KILL} acknowledged deltas within 60 s; the load generator said:\n{seen:#?}")
        });
        if acknowledged_so_far(&line).is_some_and(|n| n >= BEFORE_KILL) {
            break;
        }
        seen.push(line);
    }
    site.kill9();

    // Every agent's next request fails, and with all of them failed the run stops by itself.
    let status = wait_bounded(&mut lg, Duration::from_secs(60), "the delta run");
    let out = out.join().unwrap();
    assert_eq!(status.code(), Some(1), "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let ok = v["ok"].as_u64().unwrap();
    assert!(ok >= BEFORE_KILL, "{v:#}");
    assert_eq!(v["errors"]["transport"].as_u64(), Some(AGENTS), "{v:#}");
    assert_eq!(v["errors"]["total"].as_u64(), Some(AGENTS), "{v:#}");

    // The agents file kept every acknowledgement through the failures: each accepted delta
    // added one to an agent's acknowledged sw version (1 after `full`), while the version the
    // agent builds on is unknown (0) after its failed request.
    let file = AgentsFile::read(&file).unwrap().unwrap();
    let acked: u64 = file
        .agents
        .iter()
        .map(|a| (a.sw_ack.expect("an acknowledged sw version").version - 1) as u64)
        .sum();
    assert_eq!(acked, ok);
    assert!(file.agents.iter().all(|a| a.sw_version == 0));
    assert!(
        file.agents
            .iter()
            .all(|a| a.hw_ack.map(|h| h.version) == Some(1))
    );

    site.serve_again();
    let (code, v, err) = verify(&site, tmp.path());
    assert_eq!(code, 0, "{v:#}\n{err}");
    assert_eq!(v["mode"], "verify");
    assert_eq!(v["checked"].as_u64(), Some(AGENTS), "{v:#}");
    assert_eq!(v["acknowledged"].as_u64(), Some(2 * AGENTS), "{v:#}");
    assert_eq!(v["lost"].as_u64(), Some(0), "{v:#}");
    assert_eq!(v["unchecked"].as_u64(), Some(0), "{v:#}");
    // A report in flight at the kill may have been stored without its answer: at most one
    // later version per agent.
    let later = v["later"].as_u64().unwrap();
    assert!(later <= AGENTS, "{v:#}");
    assert_eq!(v["held"].as_u64().unwrap() + later, 2 * AGENTS, "{v:#}");

    // The site's own listing agrees on the versions.
    let listed: std::collections::HashMap<String, i64> = site
        .clients()
        .into_iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["sw_version"].as_i64().unwrap(),
            )
        })
        .collect();
    for a in &file.agents {
        let held = listed[&format!("LG{:05}", a.index)];
        let acked = a.sw_ack.unwrap().version;
        assert!(
            held == acked || held == acked + 1,
            "agent {}: site {held}, acknowledged {acked}",
            a.index
        );
    }
}

#[test]
fn verify_lists_what_a_site_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::start(tmp.path());
    json_ok(
        &site,
        tmp.path(),
        "enroll",
        &["--agents", "6", "--packages", "20", "--seed", "5"],
    );
    json_ok(&site, tmp.path(), "full", &[]);
    // A copy of the database as it was after the full reports (the server stopped, so the
    // database file and its WAL agree).
    site.kill9();
    let backup = tmp.path().join("backup");
    std::fs::create_dir(&backup).unwrap();
    let db_files = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("site.db")
            })
            .collect()
    };
    for f in db_files(&site.dir) {
        std::fs::copy(&f, backup.join(f.file_name().unwrap())).unwrap();
    }
    site.serve_again();
    json_ok(&site, tmp.path(), "delta", &["--rounds", "2"]);
    let (code, v, err) = verify(&site, tmp.path());
    assert_eq!(code, 0, "{v:#}\n{err}");
    assert_eq!(
        (v["held"].as_u64(), v["lost"].as_u64()),
        (Some(12), Some(0)),
        "{v:#}"
    );

    // An acknowledgement of hw version 1 with another hash than the site holds is a loss.
    let path = tmp.path().join("agents");
    let original = std::fs::read_to_string(&path).unwrap();
    let mut file = AgentsFile::read(&path).unwrap().unwrap();
    let held_hw = file.agents[1].hw_ack.unwrap();
    let mut other = held_hw;
    other.hash.0[0] ^= 1;
    file.agents[1].hw_ack = Some(other);
    file.write(&path).unwrap();
    let (code, out, _) = loadgen(&site, tmp.path(), "verify", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("1 lost"), "{out}");
    assert!(
        out.contains(&format!(
            "lost: LG00002 hw: acknowledged version 1 hash {}, the site holds version 1 hash {}",
            &other.hash.to_hex()[..16],
            &held_hw.hash.to_hex()[..16]
        )),
        "{out}"
    );
    std::fs::write(&path, original).unwrap();

    // The database restored to before the deltas: every agent's two acknowledged deltas are
    // gone (sw version 1 instead of 3); hw is as acknowledged.
    site.kill9();
    for f in db_files(&site.dir) {
        std::fs::remove_file(f).unwrap();
    }
    for f in db_files(&backup) {
        std::fs::copy(&f, site.dir.join(f.file_name().unwrap())).unwrap();
    }
    site.serve_again();
    let (code, v, err) = verify(&site, tmp.path());
    assert_eq!(code, 1, "{v:#}\n{err}");
    assert!(
        err.contains("6 of 12 acknowledged snapshots are lost"),
        "{err}"
    );
    assert_eq!(
        (v["held"].as_u64(), v["later"].as_u64(), v["lost"].as_u64()),
        (Some(6), Some(0), Some(6)),
        "{v:#}"
    );
    let losses = v["losses"].as_array().unwrap();
    for (i, l) in losses.iter().enumerate() {
        assert_eq!(l["agent"], format!("LG{:05}", i + 1), "{l:#}");
        assert_eq!(l["class"], "sw", "{l:#}");
        assert_eq!(l["acknowledged"]["version"], 3, "{l:#}");
        assert_eq!(l["site"]["version"], 1, "{l:#}");
    }

    // Clients the site does not know at all: everything acknowledged of them is lost.
    let mut file = AgentsFile::read(&path).unwrap().unwrap();
    file.header.prefix = "ZZ".to_string();
    file.write(&path).unwrap();
    let (code, v, _) = verify(&site, tmp.path());
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["lost"].as_u64(), Some(12), "{v:#}");
    assert!(v["losses"][0]["site"].is_null(), "{v:#}");
}

/// The load generator ends quietly when the reader of its output goes away, as the four
/// binaries do (issue 15, item 5).
#[test]
fn a_closed_output_pipe_ends_the_load_generator_quietly() {
    for args in [&["--help"][..], &["--version"], &["full", "--help"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(LOADGEN)
            .args(args)
            .stdout(std::process::Stdio::from(writer))
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
}
