//! What `enroll`, `full`, `delta` and `checkin` share: the arguments, the agents of the
//! agents file as shared cells, and the driver that sends their requests and measures them.
//!
//! A run has two phases:
//!
//! 1. **Prepare.** Builder threads (plain OS threads, outside the tokio runtime) build every
//!    request body — JSON, zstd-compressed where the real agent compresses — into a bounded
//!    queue, `--prebuild` bodies deep. The timed phase starts once the queue is full or every
//!    body is built, so with enough `--prebuild` the load generator only writes bytes while it
//!    is timed. Bodies beyond `--prebuild` are built while the run goes on (`built_during_run`
//!    in the results says how many): the builders then compete with the site for the CPU.
//! 2. **Timed.** `--concurrency` tasks, each on its own keep-alive connection, take the next
//!    body from the queue, send it and judge the answer. The builders produce one agent's
//!    requests in order (round by round), and a task waits for an agent's previous request to
//!    finish before it sends the next, so a delta is never sent before the report it builds on
//!    is acknowledged. After a failed request an agent's later requests are skipped (a delta on
//!    an unknown base could only be refused); once every agent of the phase has failed (the
//!    site is gone), the phase stops.
//!
//! Each agent keeps two records per class (`agents.rs`): the version it builds on, forgotten
//! (0) when a report gets no answer, since the site may have stored it or not; and the
//! highest version the site acknowledged, with its hash, which nothing but a higher
//! acknowledgement changes. `verify` checks the second against the site.
//!
//! Latency is measured per successful request, from writing the request to reading the whole
//! answer; throughput is successful requests per second of the timed phase.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use invsync_proto::Class;
use invsync_proto::exit::Exit;
use invsync_proto::inventory::Digest;
use invsync_proto::wire::{self, CheckinResponse, ClassState, EnrollResponse, ReportAck, SiteInfo};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::agents::{Ack, AgentsFile, Appender, Record};
use crate::http::{Conn, Request};
use crate::site::Site;
use crate::stats::{self, Summary};

/// Distinct error messages kept for the report.
const MAX_ERRORS_SHOWN: usize = 5;
/// zstd level of reports: the agent's (`crates/agent/src/cap.rs`).
pub const ZSTD_LEVEL: i32 = 3;

/// Where the site is, where the agents file is, and how hard to push.
#[derive(Debug, Clone, clap::Args)]
pub struct SiteArgs {
    /// The site, as http://127.0.0.1:PORT (no other host is accepted)
    #[arg(long, value_name = "URL")]
    pub site: String,
    /// The site's data directory, for enroll.secret and admin.token
    #[arg(long, value_name = "DIR")]
    pub site_dir: PathBuf,
    /// The agents file: `enroll` writes it, the other modes read and update it
    #[arg(long, value_name = "FILE")]
    pub agents_file: PathBuf,
    /// Requests in flight at once (one keep-alive connection each)
    #[arg(long, value_name = "C", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,
    /// How long one request may take before it counts as failed
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Give up (exit 6) after this long in all
    #[arg(long, value_name = "DURATION", default_value = "2h", value_parser = humantime::parse_duration)]
    pub time_limit: Duration,
    /// Print the results as one JSON object
    #[arg(long)]
    pub json: bool,
}

/// How much load `full`, `delta` and `checkin` send.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Use the first N agents of the agents file (default: all of them)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub agents: Option<u64>,
    /// Requests per agent, one after the other (default 1; unbounded with --duration alone)
    #[arg(long, value_name = "R", value_parser = clap::value_parser!(u64).range(1..))]
    pub rounds: Option<u64>,
    /// Stop sending after this long (requests in flight finish)
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Request bodies built before the timed phase and kept ready ahead of the senders
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub prebuild: Option<u64>,
    /// Threads building request bodies (default: one per CPU)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=256))]
    pub builders: Option<u64>,
}

impl LoadArgs {
    /// `--rounds`, or 1, or none with `--duration` alone.
    pub fn rounds(&self) -> Option<u64> {
        match (self.rounds, self.duration) {
            (Some(r), _) => Some(r),
            (None, Some(_)) => None,
            (None, None) => Some(1),
        }
    }
}

/// One simulated agent during a run.
#[derive(Debug)]
pub struct Cell {
    pub index: usize,
    pub token: Mutex<String>,
    /// What the site acknowledged; 0: unknown.
    pub hw_version: AtomicI64,
    pub sw_version: AtomicI64,
    pub sw_round: AtomicU64,
    /// The highest acknowledgement of each class (hw, sw); never reset by a failure.
    acks: Mutex<[Option<Ack>; 2]>,
    /// This agent's requests finished in this phase (the next one waits for this).
    done: AtomicU64,
    /// A request of this agent failed; its later ones are skipped.
    broken: AtomicBool,
}

impl Cell {
    pub fn new(r: &Record) -> Cell {
        Cell {
            index: r.index,
            token: Mutex::new(r.token.clone()),
            hw_version: AtomicI64::new(r.hw_version),
            sw_version: AtomicI64::new(r.sw_version),
            sw_round: AtomicU64::new(r.sw_round),
            acks: Mutex::new([r.hw_ack, r.sw_ack]),
            done: AtomicU64::new(0),
            broken: AtomicBool::new(false),
        }
    }

    pub fn record(&self) -> Record {
        let [hw_ack, sw_ack] = *lock(&self.acks);
        Record {
            index: self.index,
            token: lock(&self.token).clone(),
            hw_version: self.hw_version.load(Ordering::SeqCst),
            sw_version: self.sw_version.load(Ordering::SeqCst),
            sw_round: self.sw_round.load(Ordering::SeqCst),
            hw_ack,
            sw_ack,
        }
    }

    /// The site answered `accepted` with `ack` for a report of `class`.
    fn acknowledged(&self, class: Class, ack: Ack) {
        let mut acks = lock(&self.acks);
        let slot = &mut acks[class_slot(class)];
        *slot = Some(Ack::keep(*slot, ack));
    }

    fn version(&self, class: Class) -> &AtomicI64 {
        match class {
            Class::Hw => &self.hw_version,
            Class::Sw => &self.sw_version,
        }
    }

    /// Ready for the next phase.
    fn reset(&self) {
        self.done.store(0, Ordering::SeqCst);
        self.broken.store(false, Ordering::SeqCst);
    }
}

fn class_slot(class: Class) -> usize {
    match class {
        Class::Hw => 0,
        Class::Sw => 1,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One request, built ahead.
pub struct Job {
    /// Position in the cells.
    pub agent: usize,
    /// This agent's n-th request of the phase, from 0.
    pub seq: u64,
    pub path: &'static str,
    /// Presents the agent's token.
    pub auth: bool,
    pub body: Vec<u8>,
    pub zstd: bool,
    pub expect: Expect,
}

/// What a right answer is.
#[derive(Debug, Clone)]
pub enum Expect {
    /// An enrollment answer; its token becomes the agent's.
    Enrolled,
    /// `accepted` with this hash (and this version, when known); `round` is then the agent's.
    Report {
        class: Class,
        version: Option<i64>,
        hash: Digest,
        round: u64,
    },
    /// The site holds exactly these: nothing to send.
    Checkin { hw: ClassState, sw: ClassState },
}

/// Builds the `seq`-th request of the agent at `agent` (a position in the cells).
pub type BuildFn = dyn Fn(&mut Builder, usize, u64) -> Result<Job> + Send + Sync;

/// A builder thread's tools: one zstd context, reused.
pub struct Builder {
    zstd: zstd::bulk::Compressor<'static>,
}

impl Builder {
    /// Compresses a report body as the agent does.
    pub fn compress(&mut self, json: &[u8]) -> Result<Vec<u8>> {
        self.zstd.compress(json).context("compressing a report")
    }
}

/// One phase to run.
pub struct Phase {
    pub mode: &'static str,
    /// Positions in the cells of the agents that take part, in order.
    pub agents: Vec<usize>,
    /// Requests per agent; `None`: until `duration`.
    pub rounds: Option<u64>,
    pub duration: Option<Duration>,
    pub prebuild: usize,
    pub builders: usize,
    pub concurrency: usize,
    pub timeout: Duration,
    pub build: Arc<BuildFn>,
}

/// Failed requests by kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Errors {
    pub total: u64,
    /// The site answered `resync_required` (a delta on the wrong base or with the wrong hash).
    pub refused: u64,
    /// The site answered `duplicate` (a report id it had stored before).
    pub duplicate: u64,
    /// A 4xx or 5xx answer.
    pub http: u64,
    /// No answer: connection refused or broken, or `--timeout` passed.
    pub transport: u64,
    /// An answer other than expected: another version or hash, or a check-in whose classes
    /// differ from what the agent last sent.
    pub mismatch: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Refused,
    Duplicate,
    Http,
    Transport,
    Mismatch,
}

/// Bodies built before the timed phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Prepare {
    pub seconds: f64,
    /// Bodies ready when the timed phase started.
    pub bodies: u64,
    /// Bodies built while the timed phase ran (0: the load generator only sent).
    pub built_during_run: u64,
}

/// What one phase measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Measured {
    /// Requests sent and answered or failed.
    pub requests: u64,
    pub ok: u64,
    /// Requests not sent because an earlier one of the same agent failed.
    pub skipped: u64,
    pub errors: Errors,
    /// The timed phase, wall clock.
    pub seconds: f64,
    /// Successful requests per second of the timed phase.
    pub per_second: f64,
    /// Of successful requests; `null` when there were none.
    pub latency: Option<Summary>,
    /// Mean request body size as sent (compressed where the agent compresses).
    pub body_bytes_mean: f64,
    pub prepare: Prepare,
    /// Agents whose enrollment found them enrolled already (`enroll` resumed).
    pub reenrolled: u64,
    pub error_messages: Vec<String>,
}

/// What the senders share.
struct Shared {
    cells: Arc<Vec<Cell>>,
    timeout: Duration,
    stop: AtomicBool,
    /// Agents taking part, and how many of them have failed: when all have, nothing more can
    /// be sent, and the phase stops instead of skipping the rest of its requests.
    agents: usize,
    broken: AtomicUsize,
    finished: AtomicU64,
    skipped: AtomicU64,
    failed: AtomicU64,
    reenrolled: AtomicU64,
    appender: Option<Mutex<Appender>>,
    errors: Mutex<(Errors, Vec<String>)>,
}

impl Shared {
    fn error(&self, kind: Kind, message: String) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        let mut e = lock(&self.errors);
        e.0.total += 1;
        *match kind {
            Kind::Refused => &mut e.0.refused,
            Kind::Duplicate => &mut e.0.duplicate,
            Kind::Http => &mut e.0.http,
            Kind::Transport => &mut e.0.transport,
            Kind::Mismatch => &mut e.0.mismatch,
        } += 1;
        if e.1.len() < MAX_ERRORS_SHOWN && !e.1.contains(&message) {
            e.1.push(message);
        }
    }
}

pub fn progress(message: String) {
    eprintln!("invsync-loadgen: {message}");
}

/// Runs one phase over `cells`. `appender`: `enroll` appends each enrolled agent's record.
pub async fn run(
    cells: &Arc<Vec<Cell>>,
    phase: Phase,
    appender: Option<Appender>,
    site: &Site,
) -> Result<Measured> {
    for c in cells.iter() {
        c.reset();
    }
    let total = phase.rounds.map(|r| r * phase.agents.len() as u64);
    let target = total.map_or(phase.prebuild as u64, |t| t.min(phase.prebuild as u64));
    let (tx, rx) = mpsc::channel::<Job>(phase.prebuild.max(1));
    let built = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let builders_left = Arc::new(AtomicUsize::new(phase.builders));
    let build_error: Arc<Mutex<Option<anyhow::Error>>> = Arc::new(Mutex::new(None));
    let agents = Arc::new(phase.agents);

    // 1. Prepare.
    let started = Instant::now();
    let mut threads = Vec::new();
    for b in 0..phase.builders {
        let (tx, built, bytes, left, err, agents, build) = (
            tx.clone(),
            built.clone(),
            bytes.clone(),
            builders_left.clone(),
            build_error.clone(),
            agents.clone(),
            phase.build.clone(),
        );
        let (rounds, builders) = (phase.rounds, phase.builders);
        threads.push(std::thread::spawn(move || {
            let outcome = (|| -> Result<()> {
                let mut ctx = Builder {
                    zstd: zstd::bulk::Compressor::new(ZSTD_LEVEL)?,
                };
                let mut seq = 0u64;
                while rounds.is_none_or(|r| seq < r) {
                    for &agent in agents.iter().skip(b).step_by(builders) {
                        let job = build(&mut ctx, agent, seq)?;
                        bytes.fetch_add(job.body.len() as u64, Ordering::Relaxed);
                        // The senders are gone (the run is over): stop quietly.
                        if tx.blocking_send(job).is_err() {
                            return Ok(());
                        }
                        built.fetch_add(1, Ordering::SeqCst);
                    }
                    seq += 1;
                }
                Ok(())
            })();
            if let Err(e) = outcome {
                lock(&err).get_or_insert(e);
            }
            left.fetch_sub(1, Ordering::SeqCst);
        }));
    }
    drop(tx);
    let mut last = Instant::now();
    while built.load(Ordering::SeqCst) < target && builders_left.load(Ordering::SeqCst) > 0 {
        if last.elapsed() >= Duration::from_secs(1) {
            progress(format!(
                "{}: preparing request bodies: {}/{target}",
                phase.mode,
                built.load(Ordering::SeqCst)
            ));
            last = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if let Some(e) = lock(&build_error).take() {
        return Err(e.context("building request bodies"));
    }
    let prepared = built.load(Ordering::SeqCst);
    let prepare = Prepare {
        seconds: started.elapsed().as_secs_f64(),
        bodies: prepared,
        built_during_run: 0,
    };

    // 2. Timed.
    let shared = Arc::new(Shared {
        cells: cells.clone(),
        timeout: phase.timeout,
        stop: AtomicBool::new(false),
        agents: agents.len(),
        broken: AtomicUsize::new(0),
        finished: AtomicU64::new(0),
        skipped: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        reenrolled: AtomicU64::new(0),
        appender: appender.map(Mutex::new),
        errors: Mutex::new((Errors::default(), Vec::new())),
    });
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..phase.concurrency {
        workers.spawn(sender(shared.clone(), rx.clone(), site.addr));
    }
    drop(rx);
    let ticker = {
        let (shared, mode, duration) = (shared.clone(), phase.mode, phase.duration);
        tokio::spawn(async move {
            let mut last = (Instant::now(), 0u64);
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if duration.is_some_and(|d| started.elapsed() >= d) {
                    shared.stop.store(true, Ordering::SeqCst);
                }
                let done = shared.finished.load(Ordering::SeqCst);
                let rate = (done - last.1) as f64 / last.0.elapsed().as_secs_f64();
                last = (Instant::now(), done);
                progress(format!(
                    "{mode}: {done}{} requests, {rate:.0}/s, {} errors",
                    total.map(|t| format!("/{t}")).unwrap_or_default(),
                    shared.failed.load(Ordering::SeqCst)
                ));
                if let Some(a) = &shared.appender {
                    let _ = lock(a).flush();
                }
            }
        })
    };
    // The duration bound is checked more finely than the ticker's second.
    let stopper = phase.duration.map(|d| {
        let shared = shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            shared.stop.store(true, Ordering::SeqCst);
        })
    });
    let mut samples = Vec::new();
    while let Some(joined) = workers.join_next().await {
        samples.extend(joined.context("a sender task panicked")?);
    }
    let seconds = started.elapsed().as_secs_f64();
    ticker.abort();
    if let Some(s) = stopper {
        s.abort();
    }
    for t in threads {
        let _ = t.join();
    }
    if let Some(a) = &shared.appender {
        lock(a).flush()?;
    }
    if let Some(e) = lock(&build_error).take() {
        return Err(e.context("building request bodies"));
    }
    let all_built = built.load(Ordering::SeqCst);
    let (errors, error_messages) = lock(&shared.errors).clone();
    let ok = samples.len() as u64;
    let finished = shared.finished.load(Ordering::SeqCst);
    Ok(Measured {
        requests: finished,
        ok,
        skipped: shared.skipped.load(Ordering::SeqCst),
        errors,
        seconds,
        per_second: ok as f64 / seconds.max(1e-9),
        latency: stats::summarise(&samples),
        body_bytes_mean: bytes.load(Ordering::SeqCst) as f64 / all_built.max(1) as f64,
        prepare: Prepare {
            built_during_run: all_built - prepared,
            ..prepare
        },
        reenrolled: shared.reenrolled.load(Ordering::SeqCst),
        error_messages,
    })
}

/// One sender: takes jobs until the queue is empty or the run stops; returns the latencies
/// of its successful requests.
async fn sender(
    shared: Arc<Shared>,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
    addr: std::net::SocketAddr,
) -> Vec<Duration> {
    let mut samples = Vec::new();
    let mut conn: Option<Conn> = None;
    'jobs: loop {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let job = { rx.lock().await.recv().await };
        let Some(job) = job else { break };
        let cell = &shared.cells[job.agent];
        // This agent's previous request was taken earlier (the queue is in order); wait for it.
        while cell.done.load(Ordering::SeqCst) < job.seq {
            if shared.stop.load(Ordering::SeqCst) {
                break 'jobs;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        if cell.broken.load(Ordering::SeqCst) {
            shared.skipped.fetch_add(1, Ordering::SeqCst);
            cell.done.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        let token = lock(&cell.token).clone();
        let req = Request {
            method: "POST",
            path: job.path,
            bearer: job.auth.then_some(token.as_str()),
            body: Some(&job.body),
            zstd: job.zstd,
        };
        let t0 = Instant::now();
        let answer = async {
            if conn.as_ref().is_none_or(|c| !c.reusable()) {
                conn = Some(Conn::connect_timeout(addr, shared.timeout).await?);
            }
            conn.as_mut()
                .expect("connected above")
                .call(&req, shared.timeout)
                .await
        }
        .await;
        let elapsed = t0.elapsed();
        let verdict = match answer {
            Ok(resp) => judge(&shared, cell, &job, resp.status, &resp.body),
            Err(e) => Err((Kind::Transport, format!("{e:#}"))),
        };
        match verdict {
            Ok(()) => samples.push(elapsed),
            Err((kind, message)) => {
                if !cell.broken.swap(true, Ordering::SeqCst)
                    && shared.broken.fetch_add(1, Ordering::SeqCst) + 1 == shared.agents
                {
                    shared.stop.store(true, Ordering::SeqCst);
                }
                if let Expect::Report { class, .. } = job.expect
                    && kind != Kind::Refused
                {
                    // The site may or may not have stored it, so the agent no longer knows
                    // what to build on. What the site acknowledged before still holds: the
                    // acknowledgement record is left as it is.
                    cell.version(class).store(0, Ordering::SeqCst);
                }
                shared.error(kind, format!("agent {}: {message}", cell.index));
            }
        }
        cell.done.fetch_add(1, Ordering::SeqCst);
        shared.finished.fetch_add(1, Ordering::SeqCst);
    }
    samples
}

/// Whether an answer is the right one; updates the agent on success.
fn judge(
    shared: &Shared,
    cell: &Cell,
    job: &Job,
    status: u16,
    body: &[u8],
) -> Result<(), (Kind, String)> {
    if !(200..300).contains(&status) {
        let message = serde_json::from_slice::<wire::ErrorBody>(body)
            .map(|b| b.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(body).chars().take(200).collect());
        return Err((Kind::Http, format!("{} HTTP {status}: {message}", job.path)));
    }
    let unexpected = |what: &str, e: serde_json::Error| {
        (
            Kind::Mismatch,
            format!(
                "{what}: unexpected answer ({e}): {}",
                String::from_utf8_lossy(body)
            ),
        )
    };
    match &job.expect {
        Expect::Enrolled => {
            let r: EnrollResponse =
                serde_json::from_slice(body).map_err(|e| unexpected("enrollment", e))?;
            *lock(&cell.token) = r.token;
            if r.reenrolled {
                shared.reenrolled.fetch_add(1, Ordering::SeqCst);
            }
            if let Some(a) = &shared.appender {
                lock(a)
                    .push(&cell.record())
                    .map_err(|e| (Kind::Mismatch, format!("{e:#}")))?;
            }
            Ok(())
        }
        Expect::Report {
            class,
            version,
            hash,
            round,
        } => {
            let ack: ReportAck =
                serde_json::from_slice(body).map_err(|e| unexpected("report", e))?;
            match ack {
                ReportAck::Accepted {
                    version: v,
                    hash: h,
                } => {
                    // Whatever the agent expected, the site has now promised to hold this.
                    cell.acknowledged(
                        *class,
                        Ack {
                            version: v,
                            hash: h,
                        },
                    );
                    if h != *hash || version.is_some_and(|e| e != v) {
                        return Err((
                            Kind::Mismatch,
                            format!(
                                "{class} report accepted as version {v} hash {h}; expected version {} hash {hash}",
                                version.map_or("any".to_string(), |e| e.to_string())
                            ),
                        ));
                    }
                    cell.version(*class).store(v, Ordering::SeqCst);
                    if *class == Class::Sw {
                        cell.sw_round.store(*round, Ordering::SeqCst);
                    }
                    Ok(())
                }
                ReportAck::Duplicate { version, .. } => Err((
                    Kind::Duplicate,
                    format!("{class} report taken for a duplicate (version {version})"),
                )),
                ReportAck::ResyncRequired { reason } => Err((
                    Kind::Refused,
                    format!("{class} report refused (resync required): {reason}"),
                )),
            }
        }
        Expect::Checkin { hw, sw } => {
            let r: CheckinResponse =
                serde_json::from_slice(body).map_err(|e| unexpected("check-in", e))?;
            for (class, want) in [(Class::Hw, hw), (Class::Sw, sw)] {
                let got = r.classes.get(&class);
                if got != Some(want) {
                    cell.version(class).store(0, Ordering::SeqCst);
                    return Err((
                        Kind::Mismatch,
                        format!(
                            "check-in: the site holds {class} {}, the agent has version {} hash {}",
                            got.map_or("nothing".to_string(), |g| format!(
                                "version {} hash {}",
                                g.version, g.hash
                            )),
                            want.version,
                            want.hash
                        ),
                    ));
                }
            }
            Ok(())
        }
    }
}

/// The site's code, with the admin token (also checks the token and that a site answers).
pub async fn site_code(site: &Site, timeout: Duration) -> Result<String> {
    let mut admin = Conn::connect_timeout(site.addr, timeout).await?;
    let info: SiteInfo = admin
        .call(
            &Request::get(wire::API_SITE, Some(&site.admin_token)),
            timeout,
        )
        .await?
        .json("asking the site who it is with the admin token")?;
    Ok(info.code.to_string())
}

/// Reads the agents file for `full`, `delta`, `checkin` and `verify`: checks it belongs to
/// this site and holds at least `agents` (`--agents`) agents.
pub async fn load(args: &SiteArgs, agents: Option<u64>) -> Result<(Site, String, AgentsFile)> {
    let site = Site::load(&args.site, &args.site_dir)?;
    let file = AgentsFile::read_existing(&args.agents_file)?;
    let code = site_code(&site, args.timeout).await?;
    if file.header.site != code {
        return Err(Exit::usage(format!(
            "--agents-file {} holds agents of site {}, but {} is site {code}",
            args.agents_file.display(),
            file.header.site,
            site.url()
        ))
        .into());
    }
    if file.agents.is_empty() {
        return Err(Exit::usage(format!(
            "--agents-file {} holds no agents; enroll some with `invsync-loadgen enroll`",
            args.agents_file.display()
        ))
        .into());
    }
    if let Some(n) = agents {
        let n = n as usize;
        if n > file.agents.len() {
            return Err(Exit::usage(format!(
                "--agents {n}: --agents-file {} holds only {} agents; enroll more first",
                args.agents_file.display(),
                file.agents.len()
            ))
            .into());
        }
    }
    Ok((site, code, file))
}

/// Saves the agents' state back into the file (all agents of the file, changed or not).
pub fn save(args: &SiteArgs, file: &mut AgentsFile, cells: &[Cell]) -> Result<()> {
    for (r, c) in file.agents.iter_mut().zip(cells) {
        *r = c.record();
    }
    file.write(&args.agents_file)
}

/// One per CPU unless `--builders` says otherwise.
pub fn builders(load: &LoadArgs) -> usize {
    load.builders.map(|b| b as usize).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    })
}

/// The results every mode prints (`--json`: this object; field names are stable).
#[derive(Debug, Serialize)]
pub struct Results {
    pub mode: &'static str,
    pub site: String,
    pub site_code: String,
    pub agents_file: String,
    pub agents: usize,
    pub packages: usize,
    pub concurrency: u32,
    /// Requests per agent asked for (`null`: until `--duration`).
    pub rounds: Option<u64>,
    pub duration_limit_seconds: Option<f64>,
    pub seed: u64,
    #[serde(flatten)]
    pub measured: Measured,
    /// `full` only: hw full reports sent first to agents without one (not in the figures
    /// above); `null` otherwise.
    pub setup: Option<Measured>,
}

impl Results {
    /// The results of a `full`, `delta` or `checkin` run over the first `agents` agents of
    /// `file`: all but the figures come from the arguments and the agents file's header.
    #[allow(clippy::too_many_arguments)]
    pub fn of_run(
        mode: &'static str,
        a: &SiteArgs,
        l: &LoadArgs,
        site: &Site,
        site_code: String,
        file: &AgentsFile,
        agents: usize,
        measured: Measured,
        setup: Option<Measured>,
    ) -> Results {
        Results {
            mode,
            site: site.url(),
            site_code,
            agents_file: a.agents_file.display().to_string(),
            agents,
            packages: file.header.spec.packages,
            concurrency: a.concurrency,
            rounds: l.rounds(),
            duration_limit_seconds: l.duration.map(|d| d.as_secs_f64()),
            seed: file.header.spec.seed,
            measured,
            setup,
        }
    }

    /// Prints the results, then fails (exit 1) when a request failed.
    pub fn finish(&self, json: bool) -> Result<()> {
        if json {
            invsync_proto::outln!("{}", serde_json::to_string_pretty(self)?)?;
        } else {
            self.print_human()?;
        }
        let failed = self.measured.errors.total + self.setup.as_ref().map_or(0, |s| s.errors.total);
        if failed > 0 {
            return Err(anyhow!(
                "{failed} of {} requests failed",
                self.measured.requests + self.setup.as_ref().map_or(0, |s| s.requests)
            ));
        }
        Ok(())
    }

    fn print_human(&self) -> std::io::Result<()> {
        invsync_proto::outln!(
            "{}: {} agents ({} sw packages each, seed {}) at site {} ({}), {} in flight",
            self.mode,
            self.agents,
            self.packages,
            self.seed,
            self.site_code,
            self.site,
            self.concurrency
        )?;
        if let Some(s) = &self.setup {
            print_measured("setup (hw full reports)", s)?;
        }
        print_measured(self.mode, &self.measured)?;
        Ok(())
    }
}

fn print_measured(what: &str, m: &Measured) -> std::io::Result<()> {
    let p = &m.prepare;
    invsync_proto::outln!(
        "{what}: {} bodies ({:.0} B mean) built in {:.1} s before timing, {} more during the run",
        p.bodies,
        m.body_bytes_mean,
        p.seconds,
        p.built_during_run
    )?;
    invsync_proto::outln!(
        "{what}: {} requests in {:.2} s: {} ok, {:.0}/s; {} errors, {} skipped{}",
        m.requests,
        m.seconds,
        m.ok,
        m.per_second,
        m.errors.total,
        m.skipped,
        if m.reenrolled > 0 {
            format!(", {} re-enrolled", m.reenrolled)
        } else {
            String::new()
        }
    )?;
    if let Some(l) = &m.latency {
        invsync_proto::outln!(
            "{what}: latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms (min {:.2}, mean {:.2})",
            l.p50_ms,
            l.p90_ms,
            l.p99_ms,
            l.max_ms,
            l.min_ms,
            l.mean_ms
        )?;
    }
    let e = &m.errors;
    if e.total > 0 {
        invsync_proto::outln!(
            "{what}: errors: {} refused, {} duplicate, {} http, {} transport, {} mismatch",
            e.refused,
            e.duplicate,
            e.http,
            e.transport,
            e.mismatch
        )?;
        for msg in &m.error_messages {
            invsync_proto::outln!("  error: {msg}")?;
        }
    }
    Ok(())
}
