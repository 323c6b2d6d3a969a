//! `enroll`: enrolls N simulated agents and writes them to the agents file, which `full`,
//! `delta` and `checkin` then use, so a run of 250,000 agents enrolls once.
//!
//! * Agents are `<prefix>00001`…`<prefix>N`, each with a machine id that follows from
//!   (seed, index), so enrolling an agent again (after an interruption) is the site's
//!   re-enrollment of the same machine, not a second client.
//! * The file fixes the fleet: `--seed`, `--packages` (sw packages per agent, default 1,500) and
//!   `--changes` (packages a delta changes, default 3) are written in its header and every
//!   later mode builds the same inventories from them.
//! * Resumable: with an existing file, only the agents of 1..=N missing from it are enrolled
//!   (the file is appended to as agents enroll); `--seed`, `--packages`, `--changes` and
//!   `--prefix`, when given, must match its header. Enrollment sends no inventory: `full` does.
//!
//! Results (`--json`): the fields of every mode (see the crate documentation): `mode`
//! (`"enroll"`), `requests` (enrollments sent), `ok`, `errors`, `per_second`, `latency`, …,
//! and `reenrolled` (agents the site knew already, from an interrupted run).

use std::sync::Arc;

use anyhow::Result;
use invsync_proto::exit::Exit;
use invsync_proto::wire::{self, EnrollRequest};

use super::drive::{self, Cell, Expect, Job, Phase, Results, SiteArgs};
use crate::agents::{AgentsFile, Appender, Header, Record};
use crate::inventory::FleetSpec;
use crate::rng::Rng;
use crate::sim;
use crate::site::Site;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub site: SiteArgs,
    /// Agents the file should hold when done (those missing are enrolled)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub agents: u64,
    /// Simulated agents are named <PREFIX>00001, <PREFIX>00002, … [default: LG]
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// Software packages per agent [default: 1500]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub packages: Option<u64>,
    /// Packages each delta changes [default: 3]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub changes: Option<u64>,
    /// Seed of the fleet's inventories [default: random, written to the file]
    #[arg(long, value_name = "SEED")]
    pub seed: Option<u64>,
}

/// The machine id of agent `index`: 32 hex digits like `/etc/machine-id`, fixed by the seed.
fn machine_id(seed: u64, prefix: &str, index: usize) -> String {
    let mut rng = Rng::new(seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let salt: u64 = prefix.bytes().fold(0, |h, b| h.wrapping_mul(31) ^ b as u64);
    format!("{:016x}{:016x}", rng.next_u64() ^ salt, rng.next_u64())
}

pub async fn apply(args: Args) -> Result<()> {
    let a = &args.site;
    let site = Site::load(&a.site, &a.site_dir)?;
    let code = drive::site_code(&site, a.timeout).await?;
    let existing = AgentsFile::read(&a.agents_file)?;
    let header = match &existing {
        Some(f) => {
            check_same(&args, &f.header, &code, a)?;
            f.header.clone()
        }
        None => Header {
            site: code.clone(),
            prefix: args.prefix.clone().unwrap_or_else(|| "LG".to_string()),
            spec: FleetSpec {
                seed: args.seed.unwrap_or_else(Rng::random_seed),
                packages: args.packages.unwrap_or(1500) as usize,
                changes: args.changes.unwrap_or(3) as usize,
            },
        },
    };
    let n = args.agents as usize;
    sim::agent_name(&header.prefix, n)?;
    let mut records: Vec<Record> = existing
        .as_ref()
        .map(|f| f.agents.clone())
        .unwrap_or_default();
    let have: std::collections::HashSet<usize> = records.iter().map(|r| r.index).collect();
    let missing: Vec<usize> = (1..=n).filter(|i| !have.contains(i)).collect();
    drive::progress(format!(
        "enroll: site {code} at {}: {} of {n} agents to enroll ({} in the file already), {} at a time",
        site.url(),
        missing.len(),
        have.len(),
        a.concurrency
    ));

    let cells: Arc<Vec<Cell>> = Arc::new(
        missing
            .iter()
            .map(|&index| Cell::new(&Record::enrolled(index, String::new())))
            .collect(),
    );
    let build = {
        let (cells, secret, h) = (cells.clone(), site.enroll_secret.clone(), header.clone());
        move |_: &mut drive::Builder, agent: usize, seq: u64| -> Result<Job> {
            let index = cells[agent].index;
            let req = EnrollRequest {
                secret: secret.clone(),
                name: sim::agent_name(&h.prefix, index)?,
                machine_id: machine_id(h.spec.seed, &h.prefix, index),
                hardware: None,
            };
            Ok(Job {
                agent,
                seq,
                path: wire::CAP_ENROLL,
                auth: false,
                body: serde_json::to_vec(&req)?,
                zstd: false,
                expect: Expect::Enrolled,
            })
        }
    };
    let appender = Appender::open(&a.agents_file, &header, existing.is_some())?;
    let measured = drive::run(
        &cells,
        Phase {
            mode: "enroll",
            agents: (0..cells.len()).collect(),
            rounds: Some(1),
            duration: None,
            prebuild: cells.len().max(1),
            builders: 1,
            concurrency: a.concurrency as usize,
            timeout: a.timeout,
            build: Arc::new(build),
        },
        Some(appender),
        &site,
    )
    .await?;
    records.extend(
        cells
            .iter()
            .map(Cell::record)
            .filter(|r| !r.token.is_empty()),
    );
    records.sort_by_key(|r| r.index);
    let file = AgentsFile {
        header: header.clone(),
        agents: records,
    };
    file.write(&a.agents_file)?;
    Results {
        mode: "enroll",
        site: site.url(),
        site_code: code,
        agents_file: a.agents_file.display().to_string(),
        agents: file.agents.len(),
        packages: header.spec.packages,
        concurrency: a.concurrency,
        rounds: Some(1),
        duration_limit_seconds: None,
        seed: header.spec.seed,
        measured,
        setup: None,
    }
    .finish(a.json)
}

/// An existing file must be of this site, and the flags given must match its header.
fn check_same(args: &Args, h: &Header, code: &str, a: &SiteArgs) -> Result<()> {
    let file = a.agents_file.display();
    let refuse = |what: String| -> Result<()> {
        Err(Exit::usage(format!(
            "--agents-file {file} exists with {what}; give another file to start a new fleet"
        ))
        .into())
    };
    if h.site != code {
        return refuse(format!("agents of site {}, not of site {code}", h.site));
    }
    if let Some(p) = &args.prefix
        && *p != h.prefix
    {
        return refuse(format!("--prefix {}", h.prefix));
    }
    if let Some(s) = args.seed
        && s != h.spec.seed
    {
        return refuse(format!("--seed {}", h.spec.seed));
    }
    if let Some(p) = args.packages
        && p as usize != h.spec.packages
    {
        return refuse(format!("--packages {}", h.spec.packages));
    }
    if let Some(c) = args.changes
        && c as usize != h.spec.changes
    {
        return refuse(format!("--changes {}", h.spec.changes));
    }
    Ok(())
}
