//! Measures the forwarding lag of a site hierarchy (SPEC section 6; BENCHMARKS.md "Forwarding
//! lag"): how long after a child site has stored an agent's change that change is visible at
//! its parent. Real `invsite serve` processes run on 127.0.0.1 (a parent `P01` and a child
//! `C01` of it; with `--levels 3` also a grandchild `G01` of `C01`), and the agent library
//! (`invsync_agent::enroll` / `cycle`) runs in this process, enrolled at the lowest site. Its
//! root is a temporary directory holding a copy of THIS machine's `/var/lib/dpkg/status` plus
//! an `os-release`, host name `lagbench` and a made-up machine id (as in `wire_bytes`).
//!
//! After the first cycle (full hw + sw reports, waited for at the top site but not counted),
//! each run changes one package's `Version:` in the root's dpkg status and runs a cycle: `t0`
//! is taken just before the cycle starts, `t1` when it returns (the lowest site has stored the
//! sw delta and acknowledged it). Then the TOP site's admin API, `GET /api/v1/clients/{name}`
//! with its admin token, is polled every 2 ms (a poll starts 2 ms after the previous one
//! started, or at once when that one took longer) until its `sw.version` is the version the
//! lowest site acknowledged; `t2` is when that answer arrived (its `sw.hash` is checked too).
//! Reported, as p50/p90/p99/max over the runs (nearest rank): `t2 - t1` (stored at the lowest
//! site → visible at the top) and `t2 - t0` (cycle start → visible at the top), plus the cycle
//! itself (`t1 - t0`) and the time one poll took, which bounds how precise `t2` is. The lag of
//! the first cycle's full reports is shown as one sample.
//!
//! Run it after building the binaries (the sites run as the real `invsite` next to this
//! example's executable; `cargo run --example` does not build or refresh it):
//!
//! ```text
//! cargo build --release -p invsync-cli --bins --examples
//! cargo run --release -p invsync-cli --example forward_lag [-- [--levels 2|3] [--runs N] [--probe view|list] [--json]]
//! ```
//!
//! `--levels` defaults to 2 (agent at `C01`, polled at `P01`); `--levels 3` puts the agent at
//! `G01` (`G01` → `C01` → `P01`). `--runs` defaults to 50. `--probe list` polls
//! `GET /api/v1/clients` (one summary line per client, no items) instead of the client's whole
//! view: with 754 items a view takes a few milliseconds to build and send, as long as the lag
//! itself, so the cheaper poll gives a sharper `t2` and takes less CPU from the top site (the
//! hash is then checked with one view fetched after `t2`). `--json` prints the figures and every
//! sample as JSON. Every wait is bounded (`--timeout SECS`, default 30, per wait); the servers
//! are stopped with SIGTERM at the end, lowest site first.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[path = "support/site.rs"]
mod site;

use anyhow::{Context, Result, anyhow, bail};
use invsync_agent::{ClassOutcome, CycleOptions, EnrollOptions, ReportKind, State};
use invsync_proto::{Class, Timestamp};
use serde_json::{Value, json};
use site::{Server, run_tool, s, sibling_binary};

const HOSTNAME: &str = "lagbench";
/// Any 32 hex digits do.
const MACHINE_ID: &str = "1a6be4c01a6be4c01a6be4c01a6be4c0";
const POLL_EVERY: Duration = Duration::from_millis(2);
const USAGE: &str =
    "usage: forward_lag [--levels 2|3] [--runs N] [--probe view|list] [--timeout SECS] [--json]";

/// What the top site is polled with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// `GET /api/v1/clients/{name}`: the client's whole view, items included (the default).
    View,
    /// `GET /api/v1/clients`: one summary line per client with its sw version, no items; a
    /// cheaper poll, so `t2` is more precise and the polls take less from the site.
    List,
}

impl Probe {
    fn request(self, name: &str) -> String {
        match self {
            Probe::View => format!("GET /api/v1/clients/{name}"),
            Probe::List => "GET /api/v1/clients".to_string(),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Probe::View => "view",
            Probe::List => "list",
        }
    }
}

struct Args {
    levels: usize,
    runs: usize,
    probe: Probe,
    timeout: Duration,
    json: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        levels: 2,
        runs: 50,
        probe: Probe::View,
        timeout: Duration::from_secs(30),
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> Result<String, String> {
            it.next().ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--json" => args.json = true,
            "--levels" => {
                args.levels = match value("--levels")?.as_str() {
                    "2" => 2,
                    "3" => 3,
                    other => return Err(format!("--levels must be 2 or 3, not {other:?}")),
                }
            }
            "--probe" => {
                args.probe = match value("--probe")?.as_str() {
                    "view" => Probe::View,
                    "list" => Probe::List,
                    other => return Err(format!("--probe must be view or list, not {other:?}")),
                }
            }
            "--runs" => {
                let v = value("--runs")?;
                args.runs = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=100_000).contains(n))
                    .ok_or_else(|| {
                        format!("--runs must be a number from 1 to 100000, not {v:?}")
                    })?;
            }
            "--timeout" => {
                let v = value("--timeout")?;
                let secs: u64 = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=3600).contains(n))
                    .ok_or_else(|| format!("--timeout must be 1 to 3600 seconds, not {v:?}"))?;
                args.timeout = Duration::from_secs(secs);
            }
            "--help" | "-h" => {
                println!(
                    "{USAGE}\n\nMeasures how long a change stored at a child site takes to be visible at the top site; see the top of crates/cli/examples/forward_lag.rs."
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("forward_lag: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    match measure(&args) {
        Ok(m) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&m.to_json()).expect("JSON of plain values")
                );
            } else {
                m.print();
            }
        }
        Err(e) => {
            eprintln!("forward_lag: {e:#}");
            std::process::exit(1);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The measurement

struct Measurement {
    measured_at: Timestamp,
    levels: usize,
    probe: Probe,
    /// Site codes from the top down; the agent is enrolled at the last.
    chain: Vec<&'static str>,
    client: String,
    dpkg_packages: usize,
    sw_items: usize,
    changed_package: String,
    /// The first cycle (full hw + sw reports): (t1 - t0, t2 - t1).
    first: (Duration, Duration),
    runs: Vec<Run>,
}

/// One change: its timestamps relative to `t0`, and how the top site was polled.
struct Run {
    version: i64,
    /// t1 - t0: the cycle.
    cycle: Duration,
    /// t2 - t1: stored at the lowest site → visible at the top.
    lag: Duration,
    /// Polls of the top site after t1, the last one included.
    polls: u32,
    /// How long the successful poll took (request sent → answer parsed).
    last_poll: Duration,
}

impl Run {
    /// t2 - t0.
    fn total(&self) -> Duration {
        self.cycle + self.lag
    }
}

fn measure(args: &Args) -> Result<Measurement> {
    let invsite = sibling_binary("invsite")?;
    let tmp = tempfile::Builder::new()
        .prefix("forward_lag.")
        .tempdir()
        .context("could not create a temporary directory")?;
    let chain: Vec<&'static str> = ["P01", "C01", "G01"][..args.levels].to_vec();

    // Sites from the top down, each started before its child is initialised (init --parent
    // talks to the parent). Kept in that order; stopped in reverse.
    let mut servers: Vec<Server> = Vec::new();
    let result = (|| -> Result<Measurement> {
        let mut parent_url: Option<String> = None;
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (i, code) in chain.iter().enumerate() {
            let dir = tmp.path().join(format!("site-{code}"));
            let mut init = vec![
                "init".to_string(),
                "--data-dir".into(),
                s(&dir).into(),
                "--site-code".into(),
                code.to_string(),
                "--listen".into(),
                "127.0.0.1:0".into(),
            ];
            if let Some(url) = &parent_url {
                let above = &dirs[i - 1];
                let token = run_tool(&invsite, &["child-token", code, "--data-dir", s(above)])?
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                init.extend([
                    "--parent".into(),
                    url.clone(),
                    "--parent-token".into(),
                    token,
                ]);
            }
            let init: Vec<&str> = init.iter().map(String::as_str).collect();
            run_tool(&invsite, &init)?;
            let server = Server::start(
                &invsite,
                code,
                &dir,
                &tmp.path().join(format!("invsite-{code}.log")),
            )?;
            parent_url = Some(server.url());
            servers.push(server);
            dirs.push(dir);
        }
        let top_dir = &dirs[0];
        let low_dir = dirs.last().expect("at least two sites");
        let admin_token = run_tool(&invsite, &["admin-token", "--data-dir", s(top_dir)])?
            .trim()
            .to_string();
        let secret = run_tool(&invsite, &["enroll-secret", "--data-dir", s(low_dir)])?
            .trim()
            .to_string();
        let top = TopSite {
            probe: args.probe,
            url: servers[0].url(),
            token: admin_token,
            http: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(10)))
                .build()
                .into(),
        };
        measure_with(
            args,
            &chain,
            &servers.last().expect("at least two sites").url(),
            &secret,
            &top,
            tmp.path(),
        )
    })();
    // Lowest site first, so no child logs its parent as unreachable on the way down.
    let mut stop_errors = Vec::new();
    while let Some(server) = servers.pop() {
        match &result {
            Ok(_) => {
                if let Err(e) = server.stop() {
                    stop_errors.push(format!("{e:#}"));
                }
            }
            Err(_) => {
                let code = server.code;
                let log = server.stop_and_log();
                if !log.trim().is_empty() {
                    eprintln!("invsite serve ({code}) logged:\n{log}");
                }
            }
        }
    }
    let m = result?;
    if !stop_errors.is_empty() {
        bail!("{}", stop_errors.join("\n"));
    }
    Ok(m)
}

fn measure_with(
    args: &Args,
    chain: &[&'static str],
    low_url: &str,
    secret: &str,
    top: &TopSite,
    tmp: &Path,
) -> Result<Measurement> {
    let measured_at = Timestamp::now();
    let root = tmp.join("root");
    let agent_dir = tmp.join("agent");
    let low = *chain.last().expect("at least two sites");
    let mut status = DpkgStatus::make_root(&root)?;

    let enrolled = invsync_agent::enroll(&EnrollOptions {
        data_dir: agent_dir.clone(),
        site_url: low_url.to_string(),
        secret: secret.to_string(),
        name: None,
        root: root.clone(),
    })
    .context("enroll failed")?;
    let name = enrolled.name.to_string();
    let opts = CycleOptions {
        data_dir: agent_dir.clone(),
        root: root.clone(),
    };

    // The first cycle: full reports, forwarded up like any change. One sample, shown apart.
    let t0 = Instant::now();
    let (version, _) = cycle_sw(&opts, ReportKind::Full, "the first cycle")?;
    let t1 = Instant::now();
    let hash = acked_sw_hash(&agent_dir)?;
    let (t2, _, _) = top.wait_for(&name, low, version, &hash, args.timeout)?;
    let first = (t1 - t0, t2 - t1);
    let sw_items = State::load(&agent_dir)
        .context("could not read the agent's state")?
        .acked
        .get(&Class::Sw)
        .map_or(0, |a| a.items.len());

    let mut runs = Vec::with_capacity(args.runs);
    for k in 1..=args.runs {
        status.set_version(k)?;
        let t0 = Instant::now();
        let (version, _) = cycle_sw(&opts, ReportKind::Delta, &format!("run {k}"))?;
        let t1 = Instant::now();
        let hash = acked_sw_hash(&agent_dir)?;
        let (t2, polls, last_poll) = top
            .wait_for(&name, low, version, &hash, args.timeout)
            .with_context(|| format!("run {k}"))?;
        runs.push(Run {
            version,
            cycle: t1 - t0,
            lag: t2 - t1,
            polls,
            last_poll,
        });
    }

    Ok(Measurement {
        measured_at,
        levels: args.levels,
        probe: args.probe,
        chain: chain.to_vec(),
        client: name,
        dpkg_packages: status.packages,
        sw_items,
        changed_package: status.package.clone(),
        first,
        runs,
    })
}

/// Runs one cycle and returns the sw version the lowest site acknowledged, failing unless the
/// sw class was sent as `kind` (so a run never silently measures something else).
fn cycle_sw(opts: &CycleOptions, kind: ReportKind, what: &str) -> Result<(i64, String)> {
    let summary =
        invsync_agent::cycle(opts).with_context(|| format!("{what}: the cycle failed"))?;
    let sent = summary.classes.iter().find_map(|c| match c {
        ClassOutcome::Sent(r) if r.class == Class::Sw && r.kind == kind && !r.duplicate => {
            Some(r.version)
        }
        _ => None,
    });
    match sent {
        Some(v) => Ok((v, summary.to_string())),
        None => bail!(
            "{what}: the agent did not send a {} sw report; its summary:\n{summary}",
            kind.as_str()
        ),
    }
}

fn acked_sw_hash(agent_dir: &Path) -> Result<String> {
    let state = State::load(agent_dir).context("could not read the agent's state")?;
    let acked = state
        .acked
        .get(&Class::Sw)
        .ok_or_else(|| anyhow!("the agent recorded no acknowledged sw snapshot"))?;
    // The hash as the admin API shows it: lower-case hex.
    Ok(acked.hash.to_hex())
}

/// The top site's admin API.
struct TopSite {
    probe: Probe,
    url: String,
    token: String,
    http: ureq::Agent,
}

impl TopSite {
    /// One GET of the admin API; `None` on 404.
    fn get(&self, path: &str) -> Result<Option<Value>> {
        let mut resp = self
            .http
            .get(&format!("{}{path}", self.url))
            .header("Authorization", &format!("Bearer {}", self.token))
            .call()
            .with_context(|| format!("GET {path} at the top site failed"))?;
        let status = resp.status().as_u16();
        if status == 404 {
            // Read the body so the connection is reused.
            let _ = resp.body_mut().read_to_string();
            return Ok(None);
        }
        if status != 200 {
            let body = resp.body_mut().read_to_string().unwrap_or_default();
            bail!("GET {path} at the top site answered {status}: {body}");
        }
        let value = resp
            .body_mut()
            .read_json()
            .with_context(|| format!("the top site's answer to GET {path} is not JSON"))?;
        Ok(Some(value))
    }

    /// `GET /api/v1/clients/{name}`: the client's sw version and hash, or `None` while the
    /// site does not hold the client (404) or its sw snapshot.
    fn view(&self, name: &str) -> Result<Option<(i64, Option<String>)>> {
        let Some(view) = self.get(&format!("/api/v1/clients/{name}"))? else {
            return Ok(None);
        };
        let sw = &view["sw"];
        Ok(sw["version"]
            .as_i64()
            .map(|v| (v, sw["hash"].as_str().map(str::to_string))))
    }

    /// `GET /api/v1/clients`: the sw version in the line of the client `name` owned by `site`.
    fn list(&self, name: &str, site: &str) -> Result<Option<(i64, Option<String>)>> {
        let Some(page) = self.get(&format!("/api/v1/clients?search={name}&limit=1000"))? else {
            bail!("GET /api/v1/clients answered 404");
        };
        let line = page["clients"]
            .as_array()
            .ok_or_else(|| anyhow!("GET /api/v1/clients did not answer a page of clients"))?
            .iter()
            .find(|c| c["name"] == name && c["site"] == site);
        Ok(line
            .and_then(|c| c["sw_version"].as_i64())
            .map(|v| (v, None)))
    }

    /// Polls every `POLL_EVERY` until the top site's sw version is `version`; returns when the
    /// answer that showed it arrived, how many polls it took and how long the last one took.
    /// The hash shown with that version must be `hash`.
    fn wait_for(
        &self,
        name: &str,
        site: &str,
        version: i64,
        hash: &str,
        timeout: Duration,
    ) -> Result<(Instant, u32, Duration)> {
        let deadline = Instant::now() + timeout;
        let mut polls = 0u32;
        loop {
            let start = Instant::now();
            let got = match self.probe {
                Probe::View => self.view(name)?,
                Probe::List => self.list(name, site)?,
            };
            let arrived = Instant::now();
            polls += 1;
            if let Some((v, h)) = &got
                && *v >= version
            {
                // The list has no hashes: the view is fetched once more, outside the timing.
                let h = match h {
                    Some(h) => h.clone(),
                    None => self
                        .view(name)?
                        .and_then(|(_, h)| h)
                        .ok_or_else(|| anyhow!("the top site shows no sw hash for {name}"))?,
                };
                if *v != version || h != hash {
                    bail!(
                        "the top site shows sw version {v} hash {h}, expected version {version} hash {hash}"
                    );
                }
                return Ok((arrived, polls, arrived - start));
            }
            if arrived >= deadline {
                bail!(
                    "sw version {version} of {name} was not visible at the top site after {} s (it shows {got:?})",
                    timeout.as_secs()
                );
            }
            let next = start + POLL_EVERY;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The sites and the agent's root

/// The agent root's dpkg status file, with the `Version:` of its first installed package
/// rewritten for each run.
struct DpkgStatus {
    path: PathBuf,
    /// The file's text before and after the first installed package's version.
    before: String,
    after: String,
    package: String,
    version: String,
    packages: usize,
}

impl DpkgStatus {
    /// Builds the agent's root: this machine's dpkg database, our own identity files.
    fn make_root(root: &Path) -> Result<DpkgStatus> {
        let status = Path::new("/var/lib/dpkg/status");
        let text = fs::read_to_string(status).with_context(|| {
            format!(
                "could not read {} (this measurement needs a Debian-like machine)",
                status.display()
            )
        })?;
        fs::create_dir_all(root.join("var/lib/dpkg"))?;
        fs::create_dir_all(root.join("etc"))?;
        let path = root.join("var/lib/dpkg/status");
        fs::write(&path, &text)?;
        let os_release = fs::read_to_string("/etc/os-release")
            .unwrap_or_else(|_| "PRETTY_NAME=\"Debian GNU/Linux\"\nID=debian\n".to_string());
        fs::write(root.join("etc/os-release"), os_release)?;
        fs::write(root.join("etc/hostname"), format!("{HOSTNAME}\n"))?;
        fs::write(root.join("etc/machine-id"), format!("{MACHINE_ID}\n"))?;
        let packages = text.lines().filter(|l| l.starts_with("Package:")).count();

        // The first installed stanza with a version: where its version's value starts and ends.
        let mut at = 0;
        for stanza in text.split_inclusive("\n\n") {
            let installed = stanza
                .lines()
                .any(|l| l.starts_with("Status:") && l.ends_with(" installed"));
            let package = stanza
                .lines()
                .find_map(|l| l.strip_prefix("Package:"))
                .map(|p| p.trim().to_string());
            if let (true, Some(package)) = (installed, package) {
                let mut line_at = at;
                for line in stanza.split_inclusive('\n') {
                    if let Some(v) = line.strip_prefix("Version:") {
                        let version = v.trim().to_string();
                        let start = line_at + "Version:".len() + (v.len() - v.trim_start().len());
                        let end = start + version.len();
                        return Ok(DpkgStatus {
                            path,
                            before: text[..start].to_string(),
                            after: text[end..].to_string(),
                            package,
                            version,
                            packages,
                        });
                    }
                    line_at += line.len();
                }
            }
            at += stanza.len();
        }
        bail!(
            "{} holds no installed package with a version",
            status.display()
        )
    }

    /// Sets the package's version to `<original>+lag<k>`: one changed sw item per run.
    fn set_version(&mut self, k: usize) -> Result<()> {
        let text = format!("{}{}+lag{k}{}", self.before, self.version, self.after);
        fs::write(&self.path, text)
            .with_context(|| format!("could not write {}", self.path.display()))
    }
}

// ---------------------------------------------------------------------------------------------
// Output

/// Nearest-rank percentiles of a sample.
struct Stats {
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
    min: Duration,
    mean: Duration,
}

impl Stats {
    fn of(mut v: Vec<Duration>) -> Stats {
        assert!(!v.is_empty(), "at least one run");
        v.sort_unstable();
        let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Stats {
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: *v.last().expect("non-empty"),
            min: v[0],
            mean: v.iter().sum::<Duration>() / v.len() as u32,
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "p50_ms": ms(self.p50),
            "p90_ms": ms(self.p90),
            "p99_ms": ms(self.p99),
            "max_ms": ms(self.max),
            "min_ms": ms(self.min),
            "mean_ms": ms(self.mean),
        })
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

impl Measurement {
    fn top(&self) -> &str {
        self.chain[0]
    }

    fn low(&self) -> &str {
        self.chain.last().expect("at least two sites")
    }

    fn rows(&self) -> Vec<(String, &'static str, Stats)> {
        let col = |f: fn(&Run) -> Duration| Stats::of(self.runs.iter().map(f).collect());
        vec![
            (
                format!(
                    "stored at {} -> visible at {} (t2-t1)",
                    self.low(),
                    self.top()
                ),
                "lag",
                col(|r| r.lag),
            ),
            (
                format!("cycle start -> visible at {} (t2-t0)", self.top()),
                "cycle_start_to_visible",
                col(Run::total),
            ),
            (
                "agent cycle, for reference (t1-t0)".to_string(),
                "cycle",
                col(|r| r.cycle),
            ),
            (
                format!("one poll of {} (the successful one)", self.top()),
                "last_poll",
                col(|r| r.last_poll),
            ),
        ]
    }

    fn print(&self) {
        println!(
            "Forwarding lag, {} levels: agent at {}, change visible at {} ({}). Measured {}.",
            self.levels,
            self.low(),
            self.top(),
            self.chain
                .iter()
                .rev()
                .copied()
                .collect::<Vec<_>>()
                .join(" -> "),
            self.measured_at
        );
        println!(
            "Agent root: this machine's /var/lib/dpkg/status ({} packages -> {} sw items); each run changes",
            self.dpkg_packages, self.sw_items
        );
        println!(
            "the version of `{}` (a one-package sw delta); {} runs; {} polled every {} ms with {}.",
            self.changed_package,
            self.runs.len(),
            self.top(),
            POLL_EVERY.as_millis(),
            self.probe.request(&self.client)
        );
        println!();
        println!(
            "{:<46} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "ms", "p50", "p90", "p99", "max", "min", "mean"
        );
        for (label, _, st) in self.rows() {
            println!(
                "{:<46} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                label,
                ms(st.p50),
                ms(st.p90),
                ms(st.p99),
                ms(st.max),
                ms(st.min),
                ms(st.mean)
            );
        }
        let polls: u32 = self.runs.iter().map(|r| r.polls).sum();
        println!();
        println!(
            "polls per run: mean {:.1}, max {}",
            polls as f64 / self.runs.len() as f64,
            self.runs.iter().map(|r| r.polls).max().unwrap_or(0)
        );
        println!(
            "first cycle (full hw + sw reports, {} sw items), one sample: cycle {:.2} ms, stored at {} -> visible at {} {:.2} ms",
            self.sw_items,
            ms(self.first.0),
            self.low(),
            self.top(),
            ms(self.first.1)
        );
    }

    fn to_json(&self) -> Value {
        let mut figures = serde_json::Map::new();
        for (_, key, st) in self.rows() {
            figures.insert(key.to_string(), st.to_json());
        }
        json!({
            "measured_at": self.measured_at,
            "levels": self.levels,
            "sites_top_down": self.chain,
            "agent_site": self.low(),
            "polled_site": self.top(),
            "client": self.client,
            "poll_every_ms": POLL_EVERY.as_millis() as u64,
            "probe": self.probe.as_str(),
            "poll_request": self.probe.request(&self.client),
            "root": {
                "dpkg_status": "copy of this machine's /var/lib/dpkg/status",
                "dpkg_packages": self.dpkg_packages,
                "sw_items": self.sw_items,
                "hostname": HOSTNAME,
            },
            "changed_package": self.changed_package,
            "runs": self.runs.len(),
            "percentiles": "nearest rank",
            "figures": figures,
            "first_cycle": {
                "what": "full hw + sw reports",
                "cycle_ms": ms(self.first.0),
                "lag_ms": ms(self.first.1),
            },
            "samples": self.runs.iter().map(|r| json!({
                "sw_version": r.version,
                "cycle_ms": ms(r.cycle),
                "lag_ms": ms(r.lag),
                "cycle_start_to_visible_ms": ms(r.total()),
                "polls": r.polls,
                "last_poll_ms": ms(r.last_poll),
            })).collect::<Vec<_>>(),
        })
    }
}
