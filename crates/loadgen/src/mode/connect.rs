//! `connect`: N connected agents, idle, and how fast one of them answers a resync request.
//!
//! 1. Enrolls N simulated agents (`LG00001`…, random machine ids) with `--concurrency`
//!    requests in flight, each followed by one full sw report of a small synthetic inventory,
//!    so the site knows every one of them.
//! 2. With `--site-pid`: lets the site settle and reads its `VmRSS`.
//! 3. Opens N push-channel long-polls (`POST /cap/v1/wait`), one keep-alive TCP connection per
//!    agent, each a task on this process's one tokio runtime; an answer `{"wake":false}` (the
//!    site's 50 s hold ran out) is followed by the next long-poll on the same connection.
//! 4. With `--site-pid`: once all N are sent and `--settle` has passed, reads `VmRSS` again;
//!    (after − before) / N is the site's memory per idle connection.
//! 5. M times, one after the other: picks a random agent, records t0, queues a sw resync
//!    request through the admin API, and lets the agent do what the real one does when its
//!    long-poll answers `wake: true` (`woken_cycle`: check in on a new connection, send a full
//!    report whose `answers` holds the instruction's id). t1 is when the site accepts that
//!    report; the round trip is t1 − t0. Each request's state is then checked (`complete`)
//!    through `GET /api/v1/requests/{id}`, outside the timing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use invsync_proto::Class;
use invsync_proto::exit::Exit;
use invsync_proto::wire::{self, Queued, RequestState, RequestView, SiteInfo, WaitResponse};
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use super::CommonArgs;
use crate::http::{Conn, Request};
use crate::rng::Rng;
use crate::sim::{self, Cycle, SimAgent};
use crate::site::Site;
use crate::stats::{self, Summary};
use crate::{humanise, os};

/// The site holds a long-poll 50 s; an answer later than this means the connection is dead.
const WAIT_TIMEOUT: Duration = Duration::from_secs(75);
/// Reconnections one parked agent attempts after its connection broke.
const MAX_RECONNECTS: usize = 5;
/// File descriptors kept for everything but the N long-polls (enrollment, cycles, admin).
const FD_MARGIN: u64 = 64;
/// Distinct error messages kept for the report.
const MAX_ERRORS_SHOWN: usize = 5;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Simulated agents to enroll and keep connected
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub agents: u64,
    /// Resync round trips to measure, one after the other
    #[arg(long, value_name = "M", default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub requests: u64,
    /// Pause between two resync requests
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// How long one round trip may take before it counts as an error
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub round_trip_timeout: Duration,
    /// The site's process id: measure its memory (VmRSS) per idle connection
    #[arg(long, value_name = "PID")]
    pub site_pid: Option<u32>,
    /// How long to let the site settle before each memory reading
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub settle: Duration,
    /// Seed for picking agents (random by default; printed in the results)
    #[arg(long, value_name = "SEED")]
    pub seed: Option<u64>,
}

/// What a run measured (`--json` prints this).
#[derive(Debug, Serialize)]
struct Results {
    mode: &'static str,
    site: String,
    site_code: String,
    agents: usize,
    sw_items_per_agent: usize,
    concurrency: u32,
    seed: u64,
    enrollment: Enrollment,
    push_channel: PushChannel,
    memory: Option<Memory>,
    resync: Resync,
    loadgen_rss_bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
struct Enrollment {
    agents: usize,
    seconds: f64,
}

#[derive(Debug, Serialize)]
struct PushChannel {
    /// Long-polls sent and parked.
    parked: usize,
    /// Agents whose connection could not be opened.
    failed: usize,
    /// Connections that broke later (each reconnects up to 5 times).
    lost: usize,
    /// Answers `{"wake":false}` followed by a new long-poll.
    repolls: usize,
    /// Answers `{"wake":true}`.
    wakes: usize,
    open_seconds: f64,
    errors: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Memory {
    site_pid: u32,
    rss_before_bytes: u64,
    rss_after_bytes: u64,
    settle_seconds: f64,
    per_connection_bytes: i64,
}

#[derive(Debug, Serialize)]
struct Resync {
    requests: usize,
    completed: usize,
    errors: usize,
    latency: Option<Summary>,
    error_messages: Vec<String>,
}

/// Counters and channels the parked agents share.
struct Shared {
    addr: std::net::SocketAddr,
    timeout: Duration,
    sw_items: usize,
    open: Semaphore,
    parked: AtomicUsize,
    failed: AtomicUsize,
    lost: AtomicUsize,
    repolls: AtomicUsize,
    wakes: AtomicUsize,
    errors: Mutex<Vec<String>>,
    done: mpsc::UnboundedSender<Done>,
}

impl Shared {
    fn error(&self, e: &anyhow::Error) {
        remember(&self.errors, format!("{e:#}"));
    }
}

/// A woken cycle finished.
struct Done {
    agent: usize,
    cycle: Result<Cycle, String>,
}

fn remember(list: &Mutex<Vec<String>>, message: String) {
    let mut list = list.lock().unwrap_or_else(|p| p.into_inner());
    if list.len() < MAX_ERRORS_SHOWN && !list.contains(&message) {
        list.push(message);
    }
}

pub async fn apply(args: Args) -> Result<()> {
    let n = args.agents as usize;
    let common = &args.common;
    let site = Site::load(&common.site, &common.site_dir)?;
    sim::agent_name(&common.prefix, n)?;
    check_fd_limits(n, args.site_pid)?;
    let seed = args.seed.unwrap_or_else(Rng::random_seed);

    let mut admin = Conn::connect_timeout(site.addr, common.timeout).await?;
    let info: SiteInfo = admin
        .call(
            &Request::get(wire::API_SITE, Some(&site.admin_token)),
            common.timeout,
        )
        .await?
        .json("asking the site who it is with the admin token")?;
    progress(format!(
        "site {} at {}: enrolling {n} simulated agents ({} sw items each, {} at a time)",
        info.code,
        site.url(),
        common.items,
        common.concurrency
    ));

    // 1. Enrollment and first full reports.
    let started = Instant::now();
    let agents = enroll_all(&site, common, n).await?;
    let enrollment = Enrollment {
        agents: agents.len(),
        seconds: started.elapsed().as_secs_f64(),
    };
    progress(format!(
        "enrolled {n} agents and stored their first reports in {:.1} s ({:.0}/s)",
        enrollment.seconds,
        n as f64 / enrollment.seconds.max(1e-9)
    ));

    // 2. The site's memory before the long-polls.
    let rss_before = match args.site_pid {
        Some(pid) => {
            progress(format!(
                "letting the site settle for {}",
                humanise(args.settle)
            ));
            tokio::time::sleep(args.settle).await;
            Some(os::vm_rss(pid)?)
        }
        None => None,
    };

    // 3. N parked long-polls.
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        addr: site.addr,
        timeout: common.timeout,
        sw_items: common.items,
        open: Semaphore::new(common.concurrency as usize),
        parked: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        lost: AtomicUsize::new(0),
        repolls: AtomicUsize::new(0),
        wakes: AtomicUsize::new(0),
        errors: Mutex::new(Vec::new()),
        done: done_tx,
    });
    let agents: Vec<Arc<SimAgent>> = agents.into_iter().map(Arc::new).collect();
    let opening = Instant::now();
    let mut parked_set = JoinSet::new();
    for agent in &agents {
        parked_set.spawn(hold(agent.clone(), shared.clone()));
    }
    let mut last = Instant::now();
    loop {
        let (p, f) = (
            shared.parked.load(Ordering::SeqCst),
            shared.failed.load(Ordering::SeqCst),
        );
        if p + f >= n {
            break;
        }
        if last.elapsed() >= Duration::from_secs(1) {
            progress(format!("long-polls open: {p}/{n} ({f} failed)"));
            last = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let open_seconds = opening.elapsed().as_secs_f64();
    progress(format!(
        "{} long-polls parked in {open_seconds:.1} s ({} failed)",
        shared.parked.load(Ordering::SeqCst),
        shared.failed.load(Ordering::SeqCst)
    ));

    // 4. The site's memory with every long-poll parked.
    let memory = match (args.site_pid, rss_before) {
        (Some(pid), Some(before)) => {
            progress(format!(
                "letting the site settle for {}",
                humanise(args.settle)
            ));
            tokio::time::sleep(args.settle).await;
            let after = os::vm_rss(pid)?;
            let parked = shared.parked.load(Ordering::SeqCst).max(1);
            Some(Memory {
                site_pid: pid,
                rss_before_bytes: before,
                rss_after_bytes: after,
                settle_seconds: args.settle.as_secs_f64(),
                per_connection_bytes: (after as i64 - before as i64) / parked as i64,
            })
        }
        _ => None,
    };

    // 5. Resync round trips.
    let mut rng = Rng::new(seed);
    let mut samples = Vec::new();
    let mut rt_errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut error_count = 0usize;
    let requests = args.requests as usize;
    for i in 0..requests {
        let agent = &agents[rng.below(n)];
        match round_trip(&site, &mut admin, agent, &mut done_rx, &args).await {
            Ok(rt) => samples.push(rt),
            Err(e) => {
                error_count += 1;
                remember(&rt_errors, format!("{e:#}"));
            }
        }
        if last.elapsed() >= Duration::from_secs(1) {
            progress(format!(
                "resync round trips: {}/{requests} ({error_count} errors)",
                i + 1
            ));
            last = Instant::now();
        }
        if !args.interval.is_zero() {
            tokio::time::sleep(args.interval).await;
        }
    }
    let loadgen_rss = os::vm_rss(std::process::id()).ok();
    parked_set.shutdown().await;

    let results = Results {
        mode: "connect",
        site: site.url(),
        site_code: info.code.to_string(),
        agents: n,
        sw_items_per_agent: common.items,
        concurrency: common.concurrency,
        seed,
        enrollment,
        push_channel: PushChannel {
            parked: shared.parked.load(Ordering::SeqCst),
            failed: shared.failed.load(Ordering::SeqCst),
            lost: shared.lost.load(Ordering::SeqCst),
            repolls: shared.repolls.load(Ordering::SeqCst),
            wakes: shared.wakes.load(Ordering::SeqCst),
            open_seconds,
            errors: shared
                .errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        },
        memory,
        resync: Resync {
            requests,
            completed: samples.len(),
            errors: error_count,
            latency: stats::summarise(&samples),
            error_messages: std::mem::take(rt_errors.get_mut().unwrap_or_else(|p| p.into_inner())),
        },
        loadgen_rss_bytes: loadgen_rss,
    };
    if common.json {
        invsync_proto::outln!("{}", serde_json::to_string_pretty(&results)?)?;
    } else {
        print_human(&results, &args)?;
    }
    let failed = results.push_channel.failed + results.resync.errors;
    if failed > 0 {
        bail!(
            "{} of {n} long-polls could not be opened and {} of {requests} round trips failed",
            results.push_channel.failed,
            results.resync.errors
        );
    }
    Ok(())
}

/// Raises this process's open-files limit; refuses N above it, and warns when the site's
/// own limit (with `--site-pid`) is below N.
fn check_fd_limits(n: usize, site_pid: Option<u32>) -> Result<()> {
    let lim = os::raise_fd_limit()?;
    let need = n as u64 + FD_MARGIN;
    if need > lim.soft {
        return Err(Exit::usage(format!(
            "--agents {n} needs about {need} open files (one socket per agent and {FD_MARGIN} more), \
             but this process may open at most {} (hard limit {}); raise the hard limit \
             (`ulimit -Hn` as root, or `prlimit --nofile`) or give fewer --agents",
            lim.soft, lim.hard
        ))
        .into());
    }
    if let Some(pid) = site_pid {
        let name = os::comm(pid)?;
        if name != "invsite" {
            progress(format!(
                "warning: process {pid} is {name:?}, not invsite; its memory is measured anyway"
            ));
        }
        if let Some(site_limit) = os::open_files_limit(pid)
            && site_limit < need
        {
            progress(format!(
                "warning: the site (pid {pid}) may open at most {site_limit} files; some of the {n} \
                 connections will be refused. Start it with a higher limit (`ulimit -n`)"
            ));
        }
    }
    Ok(())
}

/// Enrolls agents 1..=n and sends each one's first full sw report, `--concurrency` at a time.
async fn enroll_all(site: &Site, common: &CommonArgs, n: usize) -> Result<Vec<SimAgent>> {
    let next = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..(common.concurrency as usize).min(n) {
        let (next, finished, site, common) =
            (next.clone(), finished.clone(), site.clone(), common.clone());
        workers.spawn(async move {
            let mut mine = Vec::new();
            let mut conn: Option<Conn> = None;
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    return Ok::<_, anyhow::Error>(mine);
                }
                if conn.as_ref().is_none_or(|c| !c.reusable()) {
                    conn = Some(Conn::connect_timeout(site.addr, common.timeout).await?);
                }
                let c = conn.as_mut().expect("connected above");
                let index = i + 1;
                let name = sim::agent_name(&common.prefix, index)?;
                let agent =
                    sim::enroll(c, &site.enroll_secret, index, name, common.timeout).await?;
                agent
                    .send_full(c, Class::Sw, common.items, Vec::new(), common.timeout)
                    .await
                    .with_context(|| format!("first full report of {}", agent.name))?;
                mine.push(agent);
                finished.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    let ticker = {
        let finished = finished.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                progress(format!("enrolled: {}/{n}", finished.load(Ordering::SeqCst)));
            }
        })
    };
    let mut agents = Vec::with_capacity(n);
    let outcome: Result<()> = async {
        while let Some(joined) = workers.join_next().await {
            agents.extend(joined.context("an enrollment task panicked")??);
        }
        Ok(())
    }
    .await;
    ticker.abort();
    outcome?;
    agents.sort_by_key(|a| a.index);
    Ok(agents)
}

/// One parked agent: keeps a long-poll open on one connection until the task is aborted.
async fn hold(agent: Arc<SimAgent>, shared: Arc<Shared>) {
    let mut conn = match open(&agent, &shared).await {
        Ok(c) => {
            shared.parked.fetch_add(1, Ordering::SeqCst);
            c
        }
        Err(e) => {
            shared.failed.fetch_add(1, Ordering::SeqCst);
            shared.error(&e.context(format!("opening the long-poll of {}", agent.name)));
            return;
        }
    };
    let mut reconnects = 0;
    loop {
        let answer = match tokio::time::timeout(WAIT_TIMEOUT, conn.read_response()).await {
            Ok(r) => r.and_then(|r| r.json::<WaitResponse>("long-poll")),
            Err(_) => Err(anyhow!("no answer to a long-poll within {WAIT_TIMEOUT:?}")),
        };
        let next = match answer {
            Ok(WaitResponse { wake }) => {
                if wake {
                    shared.wakes.fetch_add(1, Ordering::SeqCst);
                    // The real agent's push thread hands the wake-up to its daemon loop and
                    // asks again at once; the cycle runs beside it.
                    let (agent, shared) = (agent.clone(), shared.clone());
                    tokio::spawn(async move {
                        let cycle = agent
                            .woken_cycle(shared.addr, shared.sw_items, shared.timeout)
                            .await
                            .map_err(|e| format!("{e:#}"));
                        let _ = shared.done.send(Done {
                            agent: agent.index,
                            cycle,
                        });
                    });
                } else {
                    shared.repolls.fetch_add(1, Ordering::SeqCst);
                }
                if conn.reusable() {
                    conn.send(&agent.wait_request()).await
                } else {
                    Err(anyhow!("the site closed the connection"))
                }
            }
            Err(e) => Err(e),
        };
        if let Err(e) = next {
            shared.lost.fetch_add(1, Ordering::SeqCst);
            shared.error(&e.context(format!("long-poll of {}", agent.name)));
            reconnects += 1;
            if reconnects > MAX_RECONNECTS {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            match open(&agent, &shared).await {
                Ok(c) => conn = c,
                Err(e) => shared.error(&e),
            }
        }
    }
}

/// Connects and sends the first long-poll, `--concurrency` agents at a time.
async fn open(agent: &SimAgent, shared: &Shared) -> Result<Conn> {
    let _permit = shared.open.acquire().await.context("semaphore closed")?;
    let mut conn = Conn::connect_timeout(shared.addr, shared.timeout).await?;
    conn.send(&agent.wait_request()).await?;
    Ok(conn)
}

/// One resync round trip: the admin request, then the agent's woken cycle.
async fn round_trip(
    site: &Site,
    admin: &mut Conn,
    agent: &SimAgent,
    done: &mut mpsc::UnboundedReceiver<Done>,
    args: &Args,
) -> Result<Duration> {
    let timeout = args.common.timeout;
    if !admin.reusable() {
        *admin = Conn::connect_timeout(site.addr, timeout).await?;
    }
    // Cycles of earlier, failed round trips may still report; they are not this one's.
    while done.try_recv().is_ok() {}
    let path = wire::api_client_requests(&agent.name);
    let body = br#"{"class":"sw"}"#;
    let t0 = Instant::now();
    let deadline = t0 + args.round_trip_timeout;
    let queued: Queued = admin
        .call(
            &Request::post(&path, Some(&site.admin_token), body),
            timeout,
        )
        .await?
        .json(&format!("resync request for {}", agent.name))?;
    let t1 = loop {
        let d = match tokio::time::timeout_at(deadline.into(), done.recv()).await {
            Ok(Some(d)) => d,
            Ok(None) => bail!("every parked agent is gone"),
            Err(_) => bail!(
                "request {} for {} not answered within {}",
                queued.id,
                agent.name,
                humanise(args.round_trip_timeout)
            ),
        };
        if d.agent != agent.index {
            continue;
        }
        let cycle = d
            .cycle
            .map_err(|e| anyhow!("cycle of {}: {e}", agent.name))?;
        match cycle.acknowledged_at {
            Some(t1) if cycle.answered.contains(&queued.id) => break t1,
            // A cycle woken by an earlier wake-up that did not see this request yet.
            _ => continue,
        }
    };
    let rt = t1.saturating_duration_since(t0);
    let view: RequestView = admin
        .call(
            &Request::get(
                &format!("/api/v1/requests/{}", queued.id),
                Some(&site.admin_token),
            ),
            timeout,
        )
        .await?
        .json(&format!("state of request {}", queued.id))?;
    if view.state != RequestState::Complete {
        bail!(
            "request {} is {} after its report was accepted",
            queued.id,
            view.state.as_str()
        );
    }
    Ok(rt)
}

fn progress(message: String) {
    eprintln!("invsync-loadgen: {message}");
}

fn print_human(r: &Results, args: &Args) -> std::io::Result<()> {
    invsync_proto::outln!(
        "site {} at {}, {} simulated agents, {} sw items each",
        r.site_code,
        r.site,
        r.agents,
        r.sw_items_per_agent
    )?;
    invsync_proto::outln!(
        "enrollment + first full report: {} agents in {:.1} s ({:.0}/s, {} at a time)",
        r.enrollment.agents,
        r.enrollment.seconds,
        r.enrollment.agents as f64 / r.enrollment.seconds.max(1e-9),
        r.concurrency
    )?;
    let p = &r.push_channel;
    invsync_proto::outln!(
        "push channel: {} long-polls parked in {:.1} s; {} failed, {} lost, {} re-polls, {} wake-ups",
        p.parked,
        p.open_seconds,
        p.failed,
        p.lost,
        p.repolls,
        p.wakes
    )?;
    for e in &p.errors {
        invsync_proto::outln!("  error: {e}")?;
    }
    match &r.memory {
        Some(m) => invsync_proto::outln!(
            "site memory (pid {}, VmRSS, after {:.0} s settling): {} before, {} with {} parked: {} B per idle connection",
            m.site_pid,
            m.settle_seconds,
            mib(m.rss_before_bytes),
            mib(m.rss_after_bytes),
            p.parked,
            m.per_connection_bytes
        )?,
        None => invsync_proto::outln!("site memory: not measured (give --site-pid)")?,
    }
    let s = &r.resync;
    match &s.latency {
        Some(l) => invsync_proto::outln!(
            "resync round trip ({} of {} requests, sequential{}): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms (min {:.1}, mean {:.1}); {} errors",
            s.completed,
            s.requests,
            if args.interval.is_zero() {
                String::new()
            } else {
                format!(", {} apart", humanise(args.interval))
            },
            l.p50_ms,
            l.p90_ms,
            l.p99_ms,
            l.max_ms,
            l.min_ms,
            l.mean_ms,
            s.errors
        )?,
        None => invsync_proto::outln!(
            "resync round trip: no samples ({} requests, {} errors)",
            s.requests,
            s.errors
        )?,
    }
    for e in &s.error_messages {
        invsync_proto::outln!("  error: {e}")?;
    }
    if let Some(b) = r.loadgen_rss_bytes {
        invsync_proto::outln!("load generator: {} resident; seed {}", mib(b), r.seed)?;
    }
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
