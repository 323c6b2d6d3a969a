//! Helpers for the end-to-end tests: real `invsite` servers on 127.0.0.1:0 started as child
//! processes, real `invagent` cycles against fixture roots, and the admin tools, all run as
//! the built binaries a user would run.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

/// The path of one of the workspace's binaries.
pub fn bin(name: &str) -> StdCommand {
    StdCommand::cargo_bin(name).unwrap_or_else(|e| panic!("binary {name} not built: {e}"))
}

/// Runs a binary to completion and returns its output.
pub fn run(name: &str, args: &[&str]) -> Output {
    bin(name)
        .args(args)
        .env_remove("INVSITE_DIR")
        .env_remove("INVAGENT_DIR")
        .output()
        .unwrap()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs and asserts the exit code, showing both streams when it differs.
pub fn run_ok(name: &str, args: &[&str]) -> String {
    run_expect(name, args, 0)
}

/// What a successful run printed on stdout alone, for a command whose stdout is JSON: stderr
/// may hold log lines (the first run after an upgrade says it migrated the database).
pub fn run_ok_stdout(name: &str, args: &[&str]) -> String {
    let o = run(name, args);
    assert_eq!(
        code(&o),
        0,
        "{name} {args:?} exited {}\nstdout:\n{}\nstderr:\n{}",
        code(&o),
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

pub fn run_expect(name: &str, args: &[&str], expected: i32) -> String {
    let o = run(name, args);
    assert_eq!(
        code(&o),
        expected,
        "{name} {args:?} exited {}\nstdout:\n{}\nstderr:\n{}",
        code(&o),
        stdout(&o),
        stderr(&o)
    );
    stdout(&o) + &stderr(&o)
}

/// A copy of a fixture root under `tests/fixtures`, so a test may change it.
pub fn fixture_copy(name: &str, into: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name);
    let dst = into.join(format!("root-{name}"));
    copy_dir(&src, &dst);
    own_identity(&dst);
    dst
}

/// Gives a fixture copy an identity of its own: a machine id, and a DMI serial number where the
/// fixture has one, derived from where the copy lives. Each copy is another machine, as two
/// agents in a test are two machines; copies sharing the fixture's identity would be taken for
/// one machine enrolling again (`invsite config --merge-duplicates`, on by default). A test of
/// the same machine enrolling again reuses its root, or copies these files across.
pub fn own_identity(root: &Path) {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    root.hash(&mut h);
    let a = h.finish();
    "machine".hash(&mut h);
    let b = h.finish();
    for (file, value) in [
        ("etc/machine-id", format!("{a:016x}{b:016x}\n")),
        (
            "sys/class/dmi/id/product_serial",
            format!("T{:08X}\n", a as u32),
        ),
    ] {
        let path = root.join(file);
        // A link (sysfs-like fixtures) is replaced, never written through into the fixture.
        if std::fs::symlink_metadata(&path).is_ok() {
            std::fs::remove_file(&path).unwrap();
            std::fs::write(&path, value).unwrap();
        }
    }
}

/// Copies a directory tree into `dst` (which may exist: a second tree merges into it), with
/// symbolic links copied as links (sysfs-like fixtures such as `laptop` are relative links).
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap_or_else(|e| panic!("{}: {e}", src.display())) {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_symlink() {
            let _ = std::fs::remove_file(&to);
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &to).unwrap();
        } else if kind.is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
}

/// The database a test site keeps its inventory in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    /// A fresh PostgreSQL database per site, made next to the one `INVSYNC_TEST_POSTGRES` names.
    Postgres,
}

/// Declares `$test` as two tests, `$test::sqlite` and `$test::postgresql`, that run
/// `$body(Db::Sqlite)` and `$body(Db::Postgres)` (`$body` is `$test` when not given). The PostgreSQL one needs `INVSYNC_TEST_POSTGRES`
/// (`.ci/run` sets it); a build without it marks that test ignored with the reason (the
/// `invsync_postgres` cfg of `build.rs`), so a local run shows what it did not cover.
#[macro_export]
macro_rules! on_each_db {
    ($test:ident) => {
        $crate::on_each_db!($test => $test);
    };
    ($test:ident => $body:ident) => {
        mod $test {
            use $crate::common::Db;

            #[test]
            fn sqlite() {
                super::$body(Db::Sqlite)
            }

            #[test]
            #[cfg_attr(not(invsync_postgres), ignore = "INVSYNC_TEST_POSTGRES is not set: PostgreSQL not tested")]
            fn postgresql() {
                super::$body(Db::Postgres)
            }
        }
    };
}

/// A PostgreSQL database made for one test site and dropped with it.
pub struct PgDb {
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl PgDb {
    /// Creates `<run database>_e2e_<pid>_<n>` with `psql`, on the server `INVSYNC_TEST_POSTGRES`
    /// names (the CI run drops every database with its prefix at the end, in case a test
    /// process was killed before its `Drop`).
    pub fn create() -> PgDb {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let admin_url = std::env::var("INVSYNC_TEST_POSTGRES").unwrap_or_else(|_| {
            panic!("INVSYNC_TEST_POSTGRES is not set: this test needs a PostgreSQL database")
        });
        let admin_url = admin_url.split('?').next().unwrap().to_string();
        let (server, base) = admin_url.rsplit_once('/').expect("a URL ending in /DBNAME");
        let name = format!(
            "{base}_e2e_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        psql(&admin_url, &format!("CREATE DATABASE {name}"));
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
        let _ = StdCommand::new("psql")
            .args([
                self.admin_url.as_str(),
                "-Atqc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

/// Runs one SQL statement with `psql` and asserts it worked.
pub fn psql(url: &str, sql: &str) -> String {
    let o = StdCommand::new("psql")
        .args([url, "-Atqc", sql])
        .output()
        .expect("psql is installed");
    assert!(o.status.success(), "psql {sql:?}: {}", stderr(&o));
    stdout(&o)
}

/// A site data directory with, optionally, a running `invsite serve`.
pub struct Site {
    pub dir: PathBuf,
    pub child: Option<Child>,
    pub url: String,
    /// Declared after `child`, so the server is gone before its database is dropped.
    pub pg: Option<PgDb>,
}

impl Site {
    /// `invsite init` in `<tmp>/site-<code>` listening on any free loopback port.
    pub fn init(tmp: &Path, code: &str) -> Site {
        Site::init_on(tmp, code, Db::Sqlite, &[])
    }

    /// A site another command made (the quickstart), for the helpers that read it.
    pub fn existing(dir: PathBuf) -> Site {
        Site {
            dir,
            child: None,
            url: String::new(),
            pg: None,
        }
    }

    /// `invsite init` on the given database, with extra arguments.
    pub fn init_on(tmp: &Path, code: &str, db: Db, extra: &[&str]) -> Site {
        let dir = tmp.join(format!("site-{code}"));
        let pg = (db == Db::Postgres).then(PgDb::create);
        let db_arg = pg.as_ref().map_or("sqlite", |p| p.url.as_str());
        let mut args = vec![
            "init",
            "--data-dir",
            s(&dir),
            "--site-code",
            code,
            "--listen",
            "127.0.0.1:0",
            "--db",
            db_arg,
        ];
        args.extend_from_slice(extra);
        run_ok("invsite", &args);
        Site {
            dir,
            child: None,
            url: String::new(),
            pg,
        }
    }

    /// `invsite init` of a child site of `parent` (which must be running), with a token the
    /// parent issued for `code`.
    pub fn init_child(tmp: &Path, code: &str, parent: &Site) -> Site {
        Site::init_child_on(tmp, code, parent, Db::Sqlite)
    }

    /// `invsite init` of a child site of `parent` on the given database.
    pub fn init_child_on(tmp: &Path, code: &str, parent: &Site, db: Db) -> Site {
        let token = parent.child_token(code);
        Site::init_on(
            tmp,
            code,
            db,
            &["--parent", &parent.url, "--parent-token", &token],
        )
    }

    /// `invsite child-token CODE` at this site.
    pub fn child_token(&self, code: &str) -> String {
        run_ok(
            "invsite",
            &["child-token", code, "--data-dir", self.data_dir()],
        )
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
    }

    pub fn data_dir(&self) -> &str {
        s(&self.dir)
    }

    /// Starts `invsite serve` and waits for the line that names its address.
    pub fn start(&mut self) {
        self.start_with(&[]);
    }

    /// Starts the server again on the address it had, so enrolled agents find it.
    pub fn restart(&mut self) {
        let addr = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, a)| a)
            .to_string();
        self.start_with(&["--listen", &addr]);
    }

    /// Starts `invsite serve` with extra arguments.
    pub fn start_with(&mut self, extra: &[&str]) {
        let mut child = bin("invsite")
            .args(["serve", "--data-dir", self.data_dir()])
            .args(extra)
            // Warnings and errors of the server still show up next to a failing test.
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = Lines::of(child.stdout.take().unwrap());
        // Bounded: a server that never says where it listens fails the test instead of hanging it.
        let line = lines
            .next_within(60)
            .unwrap_or_else(|| panic!("invsite serve printed no address within 60 s"));
        let url = line
            .trim()
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .to_string();
        assert!(
            url.starts_with("http://127.0.0.1:") || url.starts_with("https://127.0.0.1:"),
            "unexpected first line from invsite serve: {line:?}"
        );
        self.url = url;
        self.child = Some(child);
    }

    /// Stops the server with SIGTERM (graceful) and checks it exits 0.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let status = exit_within(&mut child, 60, "invsite serve after SIGTERM");
            assert!(
                status.success(),
                "invsite serve exited {status} after SIGTERM"
            );
        }
    }

    /// Kills the server with SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub fn secret(&self) -> String {
        run_ok("invsite", &["enroll-secret", "--data-dir", self.data_dir()])
            .trim()
            .to_string()
    }

    pub fn admin_token(&self) -> String {
        run_ok("invsite", &["admin-token", "--data-dir", self.data_dir()])
            .trim()
            .to_string()
    }

    /// `invsite show NAME --json`.
    pub fn show(&self, name: &str) -> Value {
        let out = run_ok_stdout(
            "invsite",
            &["show", name, "--data-dir", self.data_dir(), "--json"],
        );
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("show printed no JSON ({e}): {out}"))
    }

    /// `invsite history NAME --json` with extra arguments.
    pub fn history(&self, name: &str, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["history", name, "--data-dir", self.data_dir(), "--json"];
        args.extend_from_slice(extra);
        let out = run_ok("invsite", &args);
        serde_json::from_str::<Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    /// `invsite clients --json`.
    pub fn clients(&self) -> Value {
        let out = run_ok_stdout(
            "invsite",
            &["clients", "--data-dir", self.data_dir(), "--json"],
        );
        serde_json::from_str(&out).unwrap()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An agent data directory with its fixture root.
pub struct Agent {
    pub dir: PathBuf,
    pub root: PathBuf,
}

impl Agent {
    pub fn enroll(tmp: &Path, site: &Site, fixture: &str, name: &str) -> Agent {
        let dir = tmp.join(format!("agent-{name}"));
        let root = fixture_copy(fixture, &tmp.join(format!("roots-{name}")));
        let secret = site.secret();
        run_ok(
            "invagent",
            &[
                "enroll",
                "--data-dir",
                s(&dir),
                "--site",
                &site.url,
                "--secret",
                &secret,
                "--name",
                name,
                "--root",
                s(&root),
            ],
        );
        Agent { dir, root }
    }

    /// The agent's dpkg database under its fixture root.
    pub fn dpkg_status(&self) -> PathBuf {
        self.root.join("var/lib/dpkg/status")
    }

    /// Installs a package in the fixture root's dpkg database.
    pub fn add_package(&self, name: &str, version: &str) {
        let path = self.dpkg_status();
        let mut text = std::fs::read_to_string(&path).unwrap();
        if !text.ends_with("\n\n") {
            text.push('\n');
        }
        text.push_str(&format!(
            "Package: {name}\nStatus: install ok installed\nInstalled-Size: 12\nArchitecture: amd64\nVersion: {version}\nDescription: test package\n\n"
        ));
        std::fs::write(&path, text).unwrap();
    }

    /// Changes a package's version in the fixture root's dpkg database.
    pub fn set_version(&self, name: &str, version: &str) {
        self.edit_paragraph(name, |p| {
            let lines: Vec<String> = p
                .lines()
                .map(|l| {
                    if l.starts_with("Version: ") {
                        format!("Version: {version}")
                    } else {
                        l.to_string()
                    }
                })
                .collect();
            Some(lines.join("\n"))
        });
    }

    /// Removes a package from the fixture root's dpkg database.
    pub fn remove_package(&self, name: &str) {
        self.edit_paragraph(name, |_| None);
    }

    fn edit_paragraph(&self, name: &str, f: impl Fn(&str) -> Option<String>) {
        let path = self.dpkg_status();
        let text = std::fs::read_to_string(&path).unwrap();
        let header = format!("Package: {name}\n");
        let mut found = false;
        let out: Vec<String> = text
            .split("\n\n")
            .filter_map(|p| {
                if p.starts_with(&header) {
                    found = true;
                    f(p)
                } else {
                    Some(p.to_string())
                }
            })
            .collect();
        assert!(found, "no package {name} in {}", path.display());
        std::fs::write(&path, out.join("\n\n")).unwrap();
    }

    /// The client token the agent authenticates with, from its state file.
    pub fn token(&self) -> String {
        let state: Value =
            serde_json::from_str(&std::fs::read_to_string(self.dir.join("state.json")).unwrap())
                .unwrap();
        state["token"].as_str().unwrap().to_string()
    }

    /// `invagent inventory CLASS --json` of this agent's root.
    pub fn inventory(&self, class: &str) -> Value {
        let out = run_ok(
            "invagent",
            &["inventory", class, "--root", s(&self.root), "--json"],
        );
        serde_json::from_str(&out).unwrap()
    }

    pub fn cycle(&self) -> String {
        run_ok(
            "invagent",
            &["cycle", "--data-dir", s(&self.dir), "--root", s(&self.root)],
        )
    }

    /// `invagent cycle`, asserted to succeed: the summary lines it printed on stdout (its log
    /// goes to stderr).
    pub fn cycle_summary(&self) -> Vec<String> {
        let o = run(
            "invagent",
            &["cycle", "--data-dir", s(&self.dir), "--root", s(&self.root)],
        );
        assert_eq!(code(&o), 0, "invagent cycle:\n{}{}", stdout(&o), stderr(&o));
        stdout(&o).lines().map(str::to_string).collect()
    }
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// An HTTP client for calling the APIs directly; errors come back as responses.
pub fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// The lines a child process writes to a pipe, read by a thread of their own so that a test
/// can wait for the next one with a bound. The thread reads to the end, so the child never
/// blocks on (or is killed by) a pipe nobody reads.
pub struct Lines {
    rx: mpsc::Receiver<String>,
}

impl Lines {
    pub fn of(pipe: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                // The test may have stopped listening; the rest is drained all the same.
                let _ = tx.send(line);
            }
        });
        Lines { rx }
    }

    /// The next line, or None when the pipe closed or `secs` seconds passed first.
    pub fn next_within(&mut self, secs: u64) -> Option<String> {
        self.rx.recv_timeout(Duration::from_secs(secs)).ok()
    }
}

/// Waits at most `secs` seconds for a child to exit and returns its output; kills it and
/// panics with `what` when it does not.
pub fn finish_within(mut child: Child, secs: u64, what: &str) -> Output {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what} did not exit within {secs} s\nstdout:\n{}\nstderr:\n{}",
                stdout(&out),
                stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits at most `secs` seconds for a child to exit; kills it and panics with `what` when it
/// does not.
pub fn exit_within(child: &mut Child, secs: u64, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `f` every 50 ms until it returns true or `secs` seconds pass; panics with `what`.
pub fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {secs} s waiting until {what}");
}

/// `invsite show NAME --json` at a site, or None while the site does not hold the client.
pub fn try_show(site: &Site, name: &str, extra: &[&str]) -> Option<Value> {
    let mut args = vec!["show", name, "--data-dir", site.data_dir(), "--json"];
    args.extend_from_slice(extra);
    let o = run("invsite", &args);
    if code(&o) != 0 {
        return None;
    }
    serde_json::from_slice(&o.stdout).ok()
}

/// `invagent run` as a daemon, its log in a file the test can read.
pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    pub fn start(agent: &Agent) -> Daemon {
        Daemon::start_with(agent, &["--interval", "1h", "--splay", "0s"])
    }

    /// `invagent run` with these flags besides `--data-dir` and `--root`.
    pub fn start_with(agent: &Agent, flags: &[&str]) -> Daemon {
        let log = agent.dir.with_extension("log");
        let child = bin("invagent")
            .args(["run", "--data-dir", s(&agent.dir), "--root", s(&agent.root)])
            .args(flags)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let d = Daemon { child, log };
        wait_until(10, "the daemon's first cycle", || {
            d.log_text().contains("Cycle result.")
        });
        d
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn cycles(&self) -> usize {
        self.log_text().matches("Cycling.").count()
    }

    pub fn stop(mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = exit_within(&mut self.child, 60, "invagent run after SIGTERM");
        assert!(
            status.success(),
            "invagent run exited {status} after SIGTERM:\n{}",
            self.log_text()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
