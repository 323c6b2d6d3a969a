//! Measures the bytes an agent cycle puts on the wire (SPEC section 10: a cycle with no change
//! sends ≤ 300 B): a real `invsite serve` on 127.0.0.1, a counting TCP proxy in front of it,
//! and the agent library (`invsync_agent::enroll` / `cycle`) run in this process against the
//! proxy. The agent's root is a fake one in a temporary directory holding a copy of THIS
//! machine's `/var/lib/dpkg/status` (so the software inventory is this machine's real package
//! set) plus an `os-release`, host name `wirebench` and a made-up machine id (so the hardware
//! inventory is only a few items, like a fixture root's). The steps are: enroll; the first cycle
//! (full hw + full sw report); a cycle where nothing changed; a cycle after one package's
//! `Version:` changed (a one-package sw delta). Each row counts the TCP payload each way (HTTP
//! heads and bodies; TCP/IP headers not included), and the uncompressed JSON of the full sw
//! report and of the delta is shown beside the zstd-compressed bodies actually sent.
//!
//! Run it after building the binaries (the site runs as the real `invsite` next to this
//! example's executable; `cargo run --example` does not build or refresh it):
//!
//! ```text
//! cargo build --release -p invsync-cli --bins --examples
//! cargo run --release -p invsync-cli --example wire_bytes [-- [--json] [--verbose]]
//! ```
//!
//! `--json` prints the same figures as JSON; `--verbose` adds, per step, every request and
//! response the proxy saw with the request heads header by header (the enrollment secret and
//! the client key are masked with `x` of the same length, so byte counts stay exact).

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[path = "support/site.rs"]
mod site;

use anyhow::{Context, Result, anyhow, bail};
use invsync_agent::plan::{self, PlanReason, PlannedReport};
use invsync_agent::{ClassOutcome, CycleOptions, CycleSummary, EnrollOptions, ReportKind, State};
use invsync_proto::{Class, Timestamp};
use serde_json::{Value, json};
use site::{Server, run_tool, s, sibling_binary};

/// SPEC section 10: bytes an agent may send (agent → site) in a cycle where nothing changed.
const NO_CHANGE_BUDGET: u64 = 300;
const HOSTNAME: &str = "wirebench";
/// Any 32 hex digits do; a fixed value keeps the enroll request the same size on every run.
const MACHINE_ID: &str = "5eb1c0de5eb1c0de5eb1c0de5eb1c0de";
const USAGE: &str = "usage: wire_bytes [--json] [--verbose]";

fn main() {
    let mut json_out = false;
    let mut verbose = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--json" => json_out = true,
            "--verbose" | "-v" => verbose = true,
            "--help" | "-h" => {
                println!(
                    "{USAGE}\n\nMeasures the bytes an invsync agent cycle puts on the wire; see the top of crates/cli/examples/wire_bytes.rs."
                );
                return;
            }
            other => {
                eprintln!("wire_bytes: unknown argument {other:?}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    match measure() {
        Ok(m) => {
            if json_out {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&m.to_json(verbose))
                        .expect("JSON of plain values")
                );
            } else {
                m.print(verbose);
            }
        }
        Err(e) => {
            eprintln!("wire_bytes: {e:#}");
            std::process::exit(1);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The measurement

struct Measurement {
    measured_at: Timestamp,
    dpkg_packages: usize,
    sw_items: usize,
    hw_items: usize,
    changed: ChangedPackage,
    steps: Vec<Step>,
    full_sw_json: usize,
    full_hw_json: usize,
    delta_json: usize,
    /// The enrollment secret and the client key: masked in `--verbose` output (they belong to a
    /// throw-away site, but output gets pasted into documents).
    secrets: Vec<String>,
}

struct Step {
    name: &'static str,
    up: u64,
    down: u64,
    exchanges: Vec<Exchange>,
    /// What the agent's cycle summary said, to show that the step did what its name says.
    summary: Vec<String>,
}

struct ChangedPackage {
    package: String,
    old: String,
    new: String,
}

fn measure() -> Result<Measurement> {
    let invsite = sibling_binary("invsite")?;
    let tmp = tempfile::Builder::new()
        .prefix("wire_bytes.")
        .tempdir()
        .context("could not create a temporary directory")?;
    let site_dir = tmp.path().join("site");
    let agent_dir = tmp.path().join("agent");
    let root = tmp.path().join("root");

    run_tool(
        &invsite,
        &[
            "init",
            "--data-dir",
            s(&site_dir),
            "--site-code",
            "S01",
            "--listen",
            "127.0.0.1:0",
        ],
    )?;
    let server = Server::start(&invsite, "S01", &site_dir, &tmp.path().join("invsite.log"))?;
    let secret = run_tool(&invsite, &["enroll-secret", "--data-dir", s(&site_dir)])?
        .trim()
        .to_string();
    let result = measure_with(&server, &secret, &agent_dir, &root);
    match &result {
        Ok(_) => server.stop()?,
        Err(_) => {
            // Whatever the site logged is the most useful thing to show beside the error.
            let log = server.stop_and_log();
            if !log.trim().is_empty() {
                eprintln!("invsite serve logged:\n{log}");
            }
        }
    }
    result
}

fn measure_with(
    server: &Server,
    secret: &str,
    agent_dir: &Path,
    root: &Path,
) -> Result<Measurement> {
    let measured_at = Timestamp::now();
    let dpkg_packages = make_root(root)?;
    let proxy = Proxy::start(server.addr)?;

    let mut steps = Vec::new();

    let mark = proxy.mark();
    let enrolled = invsync_agent::enroll(&EnrollOptions {
        data_dir: agent_dir.to_path_buf(),
        site_url: proxy.url(),
        secret: secret.to_string(),
        name: None,
        root: root.to_path_buf(),
    })
    .context("enroll failed")?;
    let mut secrets = vec![secret.to_string()];
    if let Some((_, key)) = enrolled.token.split_once('.') {
        secrets.push(key.to_string());
    }
    steps.push(proxy.step(
        "enroll",
        mark,
        vec![format!(
            "enrolled as {} (site {})",
            enrolled.name, enrolled.site
        )],
    )?);

    let opts = CycleOptions {
        data_dir: agent_dir.to_path_buf(),
        root: root.to_path_buf(),
    };
    let run_cycle = |name: &'static str, expect: &[(Class, Option<ReportKind>)]| -> Result<Step> {
        let mark = proxy.mark();
        let summary =
            invsync_agent::cycle(&opts).with_context(|| format!("{name}: the cycle failed"))?;
        check_cycle(name, &summary, expect)?;
        proxy.step(name, mark, summary.lines())
    };

    steps.push(run_cycle(
        "cycle 1: first (full hw + full sw)",
        &[
            (Class::Hw, Some(ReportKind::Full)),
            (Class::Sw, Some(ReportKind::Full)),
        ],
    )?);
    // The state after the first cycle holds the snapshots the site acknowledged: exactly the
    // items the agent collected and sent, so their full report as JSON is the uncompressed
    // equivalent of what went on the wire.
    let after_first = State::load(agent_dir).context("could not read the agent's state")?;
    let acked = |state: &State, class: Class| {
        state
            .acked
            .get(&class)
            .cloned()
            .ok_or_else(|| anyhow!("the agent recorded no acknowledged {class} snapshot"))
    };
    let sw1 = acked(&after_first, Class::Sw)?;
    let hw1 = acked(&after_first, Class::Hw)?;
    let full_json = |class: Class, items| -> Result<usize> {
        let report = plan::full_report(&after_first, class, items, PlanReason::NothingAcknowledged)
            .into_report();
        Ok(serde_json::to_vec(&report)?.len())
    };
    let full_sw_json = full_json(Class::Sw, &sw1.items)?;
    let full_hw_json = full_json(Class::Hw, &hw1.items)?;

    steps.push(run_cycle(
        "cycle 2: no change",
        &[(Class::Hw, None), (Class::Sw, None)],
    )?);

    let changed = change_one_package(&root.join("var/lib/dpkg/status"))?;
    steps.push(run_cycle(
        "cycle 3: one package changed",
        &[(Class::Hw, None), (Class::Sw, Some(ReportKind::Delta))],
    )?);
    let after_third = State::load(agent_dir).context("could not read the agent's state")?;
    let sw3 = acked(&after_third, Class::Sw)?;
    // The same delta the agent built (against the snapshot acknowledged before the change),
    // serialised as the agent serialises it before compressing.
    let delta_report = PlannedReport {
        class: Class::Sw,
        hash: sw3.hash,
        body: plan::changed_body(&sw1, &sw3.items),
        answers: Vec::new(),
        reason: PlanReason::Changed,
    }
    .into_report();
    let delta_json = serde_json::to_vec(&delta_report)?.len();

    Ok(Measurement {
        measured_at,
        dpkg_packages,
        sw_items: sw1.items.len(),
        hw_items: hw1.items.len(),
        changed,
        steps,
        full_sw_json,
        full_hw_json,
        delta_json,
        secrets,
    })
}

/// Fails unless each class had the outcome the step is named after (`None`: unchanged), so a
/// row never silently measures something else (say, a full report where a delta was meant).
fn check_cycle(
    name: &str,
    summary: &CycleSummary,
    expect: &[(Class, Option<ReportKind>)],
) -> Result<()> {
    let got: Vec<(Class, Option<ReportKind>)> = summary
        .classes
        .iter()
        .map(|c| match c {
            ClassOutcome::Sent(r) => (r.class, Some(r.kind)),
            ClassOutcome::Unchanged { class, .. } => (*class, None),
        })
        .collect();
    if got != expect || !summary.resent.is_empty() {
        bail!(
            "{name}: the agent did not do what this step measures (expected {expect:?}); its summary:\n{summary}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The site and the agent's root

/// Builds the agent's root: this machine's dpkg database, our own identity files. Returns the
/// number of package stanzas in the copied status file.
fn make_root(root: &Path) -> Result<usize> {
    let status = Path::new("/var/lib/dpkg/status");
    let text = fs::read_to_string(status).with_context(|| {
        format!(
            "could not read {} (this measurement needs a Debian-like machine)",
            status.display()
        )
    })?;
    fs::create_dir_all(root.join("var/lib/dpkg"))?;
    fs::create_dir_all(root.join("etc"))?;
    fs::write(root.join("var/lib/dpkg/status"), &text)?;
    let os_release = fs::read_to_string("/etc/os-release")
        .unwrap_or_else(|_| "PRETTY_NAME=\"Debian GNU/Linux\"\nID=debian\n".to_string());
    fs::write(root.join("etc/os-release"), os_release)?;
    fs::write(root.join("etc/hostname"), format!("{HOSTNAME}\n"))?;
    fs::write(root.join("etc/machine-id"), format!("{MACHINE_ID}\n"))?;
    Ok(text.lines().filter(|l| l.starts_with("Package:")).count())
}

/// Appends `+bench1` to the `Version:` of the first installed package in a dpkg status file,
/// as an upgrade would change it.
fn change_one_package(status: &Path) -> Result<ChangedPackage> {
    let text = fs::read_to_string(status)?;
    let mut out = String::with_capacity(text.len() + 8);
    let mut changed = None;
    for stanza in text.split_inclusive("\n\n") {
        let installed = stanza
            .lines()
            .any(|l| l.starts_with("Status:") && l.ends_with(" installed"));
        if changed.is_some() || !installed {
            out.push_str(stanza);
            continue;
        }
        let package = stanza
            .lines()
            .find_map(|l| l.strip_prefix("Package:"))
            .unwrap_or("?")
            .trim()
            .to_string();
        let mut done = None;
        for line in stanza.split_inclusive('\n') {
            match line.strip_prefix("Version:") {
                Some(v) if done.is_none() => {
                    let old = v.trim().to_string();
                    let new = format!("{old}+bench1");
                    out.push_str(&format!("Version: {new}\n"));
                    done = Some((old, new));
                }
                _ => out.push_str(line),
            }
        }
        if let Some((old, new)) = done {
            changed = Some(ChangedPackage { package, old, new });
        }
    }
    let changed = changed.ok_or_else(|| {
        anyhow!(
            "{} holds no installed package with a version",
            status.display()
        )
    })?;
    fs::write(status, out)?;
    Ok(changed)
}

// ---------------------------------------------------------------------------------------------
// The counting proxy

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Up,
    Down,
}

/// Bytes that crossed the proxy, in the order they did, tagged by connection and direction:
/// enough to split a step's traffic back into HTTP requests and responses.
struct Chunk {
    conn: u64,
    dir: Dir,
    bytes: Vec<u8>,
}

/// A TCP proxy on 127.0.0.1 that forwards every connection to the site and counts the bytes
/// each way. It sees what a network between agent and site would carry (HTTP heads included)
/// without touching the agent or the site.
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
    log: Arc<Mutex<Vec<Chunk>>>,
}

struct Mark {
    up: u64,
    down: u64,
    chunk: usize,
}

impl Proxy {
    fn start(site: SocketAddr) -> Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").context("could not bind the proxy")?;
        let proxy = Proxy {
            addr: listener.local_addr()?,
            up: Arc::default(),
            down: Arc::default(),
            log: Arc::default(),
        };
        let (up, down, log) = (proxy.up.clone(), proxy.down.clone(), proxy.log.clone());
        // The accept thread lives as long as the process; the example exits after measuring.
        std::thread::spawn(move || {
            for (conn, client) in listener.incoming().enumerate() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(site) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let conn = conn as u64;
                let pipe = |from: &TcpStream, to: &TcpStream, dir, counter: &Arc<AtomicU64>| {
                    let (from, to) = (from.try_clone(), to.try_clone());
                    let (counter, log) = (counter.clone(), log.clone());
                    std::thread::spawn(move || {
                        if let (Ok(from), Ok(to)) = (from, to) {
                            copy_counting(from, to, conn, dir, &counter, &log);
                        }
                    });
                };
                pipe(&client, &server, Dir::Up, &up);
                pipe(&server, &client, Dir::Down, &down);
            }
        });
        Ok(proxy)
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn mark(&self) -> Mark {
        Mark {
            up: self.up.load(Ordering::SeqCst),
            down: self.down.load(Ordering::SeqCst),
            chunk: self.log.lock().expect("proxy log").len(),
        }
    }

    /// The traffic since `mark` as one step. Every byte the agent received was counted before
    /// it was forwarded (and every byte the site answered was counted as sent before the site
    /// could answer), so once the agent's call has returned the counters are complete.
    fn step(&self, name: &'static str, mark: Mark, summary: Vec<String>) -> Result<Step> {
        let now = self.mark();
        let log = self.log.lock().expect("proxy log");
        let mut conns: Vec<u64> = log[mark.chunk..].iter().map(|c| c.conn).collect();
        conns.dedup();
        conns.sort_unstable();
        conns.dedup();
        let mut exchanges = Vec::new();
        for conn in conns {
            let stream = |dir| -> Vec<u8> {
                log[mark.chunk..]
                    .iter()
                    .filter(|c| c.conn == conn && c.dir == dir)
                    .flat_map(|c| c.bytes.iter().copied())
                    .collect()
            };
            let requests = split_messages(&stream(Dir::Up), false);
            let mut responses = split_messages(&stream(Dir::Down), true).into_iter();
            for request in requests {
                exchanges.push(Exchange {
                    request,
                    response: responses.next(),
                });
            }
        }
        Ok(Step {
            name,
            up: now.up - mark.up,
            down: now.down - mark.down,
            exchanges,
            summary,
        })
    }
}

fn copy_counting(
    mut from: TcpStream,
    mut to: TcpStream,
    conn: u64,
    dir: Dir,
    counter: &AtomicU64,
    log: &Mutex<Vec<Chunk>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Counted before forwarding: see `Proxy::step`.
        counter.fetch_add(n as u64, Ordering::SeqCst);
        log.lock().expect("proxy log").push(Chunk {
            conn,
            dir,
            bytes: buf[..n].to_vec(),
        });
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    // Pass the half-close on, so each side sees the other finish.
    let _ = to.shutdown(Shutdown::Write);
}

// ---------------------------------------------------------------------------------------------
// Splitting traffic into HTTP/1.1 messages

struct Message {
    /// The head as sent, request or status line first, ending with the empty line.
    head: String,
    /// Body bytes on the wire, chunked framing included.
    body: Vec<u8>,
}

impl Message {
    fn first_line(&self) -> &str {
        self.head.lines().next().unwrap_or("")
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn len(&self) -> usize {
        self.head.len() + self.body.len()
    }

    /// The body as text when it is small readable JSON (check-ins, acks, enroll); `None` for
    /// compressed report bodies.
    fn text_body(&self) -> Option<String> {
        if self.header("content-encoding").is_some() || self.body.len() > 2048 {
            return None;
        }
        let text = std::str::from_utf8(&self.body).ok()?;
        (!text.is_empty()).then(|| text.to_string())
    }
}

struct Exchange {
    request: Message,
    response: Option<Message>,
}

/// Splits one direction of one connection into messages: the head up to the empty line, then
/// a body of `Content-Length` bytes or chunked; a response with neither runs to the end (204
/// and 304 have none).
fn split_messages(mut data: &[u8], responses: bool) -> Vec<Message> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let Some(end) = data
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| p + 4)
        else {
            out.push(Message {
                head: String::from_utf8_lossy(data).into_owned(),
                body: Vec::new(),
            });
            break;
        };
        let head = String::from_utf8_lossy(&data[..end]).into_owned();
        let mut msg = Message {
            head,
            body: Vec::new(),
        };
        let rest = &data[end..];
        let status = msg
            .first_line()
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok());
        let body_len = if let Some(n) = msg
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
        {
            n.min(rest.len())
        } else if msg
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            chunked_len(rest)
        } else if responses && !matches!(status, Some(204) | Some(304)) {
            rest.len()
        } else {
            0
        };
        msg.body = rest[..body_len].to_vec();
        data = &rest[body_len..];
        out.push(msg);
    }
    out
}

/// The length of a chunked body including its framing and trailer.
fn chunked_len(data: &[u8]) -> usize {
    let mut at = 0;
    loop {
        let Some(eol) = data[at..].windows(2).position(|w| w == b"\r\n") else {
            return data.len();
        };
        let size_text = String::from_utf8_lossy(&data[at..at + eol]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        at += eol + 2;
        if size == 0 {
            // Trailer lines, then the empty line.
            loop {
                let Some(eol) = data[at..].windows(2).position(|w| w == b"\r\n") else {
                    return data.len();
                };
                at += eol + 2;
                if eol == 0 {
                    return at;
                }
            }
        }
        at = (at + size + 2).min(data.len());
    }
}

// ---------------------------------------------------------------------------------------------
// Output

impl Measurement {
    /// `text` with every secret replaced by as many `x`, so byte counts stay exact.
    fn redact(&self, text: &str) -> String {
        self.secrets
            .iter()
            .filter(|s| !s.is_empty())
            .fold(text.to_string(), |t, s| {
                t.replace(s.as_str(), &"x".repeat(s.len()))
            })
    }

    fn no_change(&self) -> &Step {
        self.steps
            .iter()
            .find(|s| s.name.contains("no change"))
            .expect("the no-change step")
    }

    /// The largest report body (zstd-compressed) sent in step `step`: the sw report, which
    /// dwarfs the hw one, in the first cycle; the only report, the delta, in the third.
    fn largest_report_body(&self, step: usize) -> Option<usize> {
        self.steps
            .get(step)?
            .exchanges
            .iter()
            .filter(|e| {
                e.request
                    .first_line()
                    .contains(invsync_proto::wire::CAP_REPORT)
            })
            .map(|e| e.request.body.len())
            .max()
    }

    fn print(&self, verbose: bool) {
        println!("Bytes on the wire per agent step, counted at a TCP proxy on 127.0.0.1");
        println!(
            "(TCP payload: HTTP/1.1 heads + bodies; TCP/IP headers not included). Measured {}.",
            self.measured_at
        );
        println!(
            "Agent root: this machine's /var/lib/dpkg/status ({} packages -> {} sw items) + os-release,",
            self.dpkg_packages, self.sw_items
        );
        println!(
            "host name `{HOSTNAME}` and a made-up machine id ({} hw item{}, as for a fixture root).",
            self.hw_items,
            if self.hw_items == 1 { "" } else { "s" }
        );
        println!();
        println!(
            "{:<36} {:>8} {:>14} {:>14}",
            "step", "requests", "agent->site B", "site->agent B"
        );
        for step in &self.steps {
            println!(
                "{:<36} {:>8} {:>14} {:>14}",
                step.name,
                step.exchanges.len(),
                step.up,
                step.down
            );
        }
        println!();
        let full_body = self.largest_report_body(1);
        let delta_body = self.largest_report_body(3);
        println!(
            "full sw report: {} B of JSON uncompressed, {} B zstd-compressed body on the wire",
            self.full_sw_json,
            opt(full_body)
        );
        println!(
            "full hw report: {} B of JSON uncompressed",
            self.full_hw_json
        );
        println!(
            "one-package sw delta ({} {} -> {}): {} B of JSON uncompressed, {} B zstd-compressed body",
            self.changed.package,
            self.changed.old,
            self.changed.new,
            self.delta_json,
            opt(delta_body)
        );
        let nc = self.no_change();
        let verdict = if nc.up <= NO_CHANGE_BUDGET {
            "within budget"
        } else {
            "OVER budget"
        };
        println!(
            "no-change budget (SPEC 10): <= {NO_CHANGE_BUDGET} B agent->site; measured {} B: {verdict}",
            nc.up
        );
        if nc.up > NO_CHANGE_BUDGET || verbose {
            println!();
            println!("{}: requests (head + body = total, agent->site):", nc.name);
            for e in &nc.exchanges {
                println!(
                    "  {:<32} {:>4} + {:>4} = {:>4} B",
                    e.request.first_line(),
                    e.request.head.len(),
                    e.request.body.len(),
                    e.request.len()
                );
            }
            if !verbose {
                println!("(run with --verbose for the request heads header by header)");
            }
        }
        if verbose {
            for step in &self.steps {
                println!();
                println!(
                    "== {} ({} B agent->site, {} B site->agent)",
                    step.name, step.up, step.down
                );
                for line in &step.summary {
                    println!("   agent: {line}");
                }
                for e in &step.exchanges {
                    self.print_exchange(e);
                }
            }
        }
    }

    fn to_json(&self, verbose: bool) -> Value {
        let steps: Vec<Value> = self
            .steps
            .iter()
            .map(|s| {
                let requests: Vec<Value> = s
                    .exchanges
                    .iter()
                    .map(|e| {
                        let mut v = json!({
                            "request": e.request.first_line(),
                            "request_head_bytes": e.request.head.len(),
                            "request_body_bytes": e.request.body.len(),
                            "response": e.response.as_ref().map(|r| r.first_line()),
                            "response_head_bytes": e.response.as_ref().map(|r| r.head.len()),
                            "response_body_bytes": e.response.as_ref().map(|r| r.body.len()),
                        });
                        if verbose {
                            let redact = |t: Option<String>| t.map(|t| self.redact(&t));
                            v["request_head"] = json!(self.redact(&e.request.head));
                            v["request_body"] = json!(redact(e.request.text_body()));
                            v["response_head"] = json!(e.response.as_ref().map(|r| r.head.clone()));
                            v["response_body"] =
                                json!(redact(e.response.as_ref().and_then(Message::text_body)));
                        }
                        v
                    })
                    .collect();
                json!({
                    "step": s.name,
                    "agent_to_site_bytes": s.up,
                    "site_to_agent_bytes": s.down,
                    "requests": requests,
                    "agent_summary": s.summary,
                })
            })
            .collect();
        let nc = self.no_change();
        json!({
            "measured_at": self.measured_at,
            "counted": "TCP payload at a proxy on 127.0.0.1: HTTP/1.1 heads + bodies, no TCP/IP headers",
            "root": {
                "dpkg_status": "copy of this machine's /var/lib/dpkg/status",
                "dpkg_packages": self.dpkg_packages,
                "sw_items": self.sw_items,
                "hw_items": self.hw_items,
                "hostname": HOSTNAME,
            },
            "changed_package": {
                "package": self.changed.package,
                "old_version": self.changed.old,
                "new_version": self.changed.new,
            },
            "steps": steps,
            "full_sw_report": {
                "json_bytes": self.full_sw_json,
                "zstd_body_bytes": self.largest_report_body(1),
            },
            "full_hw_report": { "json_bytes": self.full_hw_json },
            "one_package_delta": {
                "json_bytes": self.delta_json,
                "zstd_body_bytes": self.largest_report_body(3),
            },
            "no_change_budget": {
                "limit_bytes": NO_CHANGE_BUDGET,
                "agent_to_site_bytes": nc.up,
                "within": nc.up <= NO_CHANGE_BUDGET,
            },
        })
    }
}

impl Measurement {
    fn print_exchange(&self, e: &Exchange) {
        let r = &e.request;
        println!(
            "-> {}  ({} B head + {} B body = {} B)",
            r.first_line(),
            r.head.len(),
            r.body.len(),
            r.len()
        );
        for line in self.redact(&r.head).split_inclusive("\r\n") {
            let shown = line.trim_end_matches("\r\n");
            if shown.is_empty() {
                println!("     {:>4} B  (empty line ending the head)", line.len());
            } else {
                println!("     {:>4} B  {shown}", line.len());
            }
        }
        match r.text_body() {
            Some(body) => println!("     {:>4} B  body: {}", r.body.len(), self.redact(&body)),
            None if !r.body.is_empty() => println!(
                "     {:>4} B  body ({})",
                r.body.len(),
                r.header("content-encoding").unwrap_or("binary")
            ),
            None => {}
        }
        if let Some(resp) = &e.response {
            println!(
                "<- {}  ({} B head + {} B body = {} B)",
                resp.first_line(),
                resp.head.len(),
                resp.body.len(),
                resp.len()
            );
            for line in resp.head.lines().skip(1).filter(|l| !l.is_empty()) {
                println!("     {line}");
            }
            if let Some(body) = resp.text_body() {
                println!("     body: {}", self.redact(&body));
            }
        }
    }
}

fn opt(n: Option<usize>) -> String {
    n.map_or_else(|| "?".to_string(), |n| n.to_string())
}
