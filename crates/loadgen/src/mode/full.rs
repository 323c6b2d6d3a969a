//! `full`: full sw reports, as an agent sends on its first cycle or for a resync: by default
//! 1,500 packages, ~200 KB of JSON, ~25 KB zstd-compressed.
//!
//! 1. **Setup** (not in the figures): agents of the file with no hw snapshot at the site send
//!    a full hw report first (about 40 items), so that `checkin` later finds both classes.
//! 2. **Timed**: each agent sends `--rounds` full sw reports of its current snapshot (round 0
//!    after enrollment, or the round its deltas reached), one after the other; the site takes
//!    each as a new version. Each must be `accepted` with the hash the agent computed (and the
//!    next version, when the agent knows the one before).
//!
//! Afterwards the agents file holds every agent's new versions: the known snapshot `delta` and
//! `checkin` build on. Bodies are built ahead (`--prebuild`, default 4,000 ≈ 100 MB at 1,500
//! packages); a larger fleet's bodies are also built during the run (`built_during_run`).
//!
//! Results (`--json`): the fields of every mode (crate documentation), with `mode` `"full"`,
//! `requests` the sw reports sent, and `setup` the hw reports' own figures (or `null`).

use std::sync::Arc;

use anyhow::Result;
use invsync_proto::Class;
use invsync_proto::Snapshot;
use invsync_proto::wire::{self, Report, ReportBody};
use uuid::Uuid;

use super::drive::{self, Cell, Expect, Job, LoadArgs, Phase, Results, SiteArgs};
use crate::inventory::Fleet;

/// Full sw bodies built ahead by default: about 100 MB at 1,500 packages.
const DEFAULT_PREBUILD: usize = 4_000;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub site: SiteArgs,
    #[command(flatten)]
    pub load: LoadArgs,
}

pub async fn apply(args: Args) -> Result<()> {
    let (a, l) = (&args.site, &args.load);
    let (site, code, mut file) = drive::load(a, l.agents).await?;
    let n = l.agents.map_or(file.agents.len(), |n| n as usize);
    let fleet = Arc::new(Fleet::new(file.header.spec));
    let cells: Arc<Vec<Cell>> = Arc::new(file.agents.iter().map(Cell::new).collect());
    let builders = drive::builders(l);

    // 1. hw full reports where the site has none.
    let without_hw: Vec<usize> = (0..n).filter(|&i| file.agents[i].hw_version == 0).collect();
    let setup = if without_hw.is_empty() {
        None
    } else {
        drive::progress(format!(
            "full: {} agents have no hw snapshot yet: sending those first",
            without_hw.len()
        ));
        let build = {
            let (cells, fleet) = (cells.clone(), fleet.clone());
            move |b: &mut drive::Builder, agent: usize, seq: u64| -> Result<Job> {
                let items = fleet.hw_items(cells[agent].index);
                let hash = Snapshot::new(items.clone()).hash();
                let report = Report {
                    report_id: Uuid::new_v4(),
                    class: Class::Hw,
                    hash,
                    body: ReportBody::Full { items },
                    answers: Vec::new(),
                };
                Ok(Job {
                    agent,
                    seq,
                    path: wire::CAP_REPORT,
                    auth: true,
                    body: b.compress(&serde_json::to_vec(&report)?)?,
                    zstd: true,
                    expect: Expect::Report {
                        class: Class::Hw,
                        version: None,
                        hash,
                        round: 0,
                    },
                })
            }
        };
        let m = drive::run(
            &cells,
            Phase {
                mode: "full (hw setup)",
                prebuild: without_hw.len(),
                agents: without_hw,
                rounds: Some(1),
                duration: None,
                builders,
                concurrency: a.concurrency as usize,
                timeout: a.timeout,
                build: Arc::new(build),
            },
            None,
            &site,
        )
        .await?;
        Some(m)
    };

    // 2. Timed sw full reports.
    let rounds = l.rounds();
    drive::progress(format!(
        "full: {n} agents × {} full sw reports of {} packages, {} at a time",
        rounds.map_or("unbounded".to_string(), |r| r.to_string()),
        file.header.spec.packages,
        a.concurrency
    ));
    let start: Vec<(i64, u64)> = file
        .agents
        .iter()
        .map(|r| (r.sw_version, r.sw_round))
        .collect();
    let build = {
        let (cells, fleet) = (cells.clone(), fleet.clone());
        move |b: &mut drive::Builder, agent: usize, seq: u64| -> Result<Job> {
            let (version, round) = start[agent];
            let state = fleet.sw(cells[agent].index, round);
            let (json, hash) = state.full_report_json(Uuid::new_v4());
            Ok(Job {
                agent,
                seq,
                path: wire::CAP_REPORT,
                auth: true,
                body: b.compress(&json)?,
                zstd: true,
                expect: Expect::Report {
                    class: Class::Sw,
                    version: (version > 0).then_some(version + seq as i64 + 1),
                    hash,
                    round,
                },
            })
        }
    };
    let measured = drive::run(
        &cells,
        Phase {
            mode: "full",
            agents: (0..n).collect(),
            rounds,
            duration: l.duration,
            prebuild: l.prebuild.map_or(DEFAULT_PREBUILD, |p| p as usize),
            builders,
            concurrency: a.concurrency as usize,
            timeout: a.timeout,
            build: Arc::new(build),
        },
        None,
        &site,
    )
    .await?;
    drive::save(a, &mut file, &cells)?;
    Results::of_run("full", a, l, &site, code, &file, n, measured, setup).finish(a.json)
}
