//! `delta`: sw deltas, as an agent sends when a few packages changed since its last cycle.
//!
//! Each agent sends `--rounds` deltas one after the other. Delta k of an agent takes its
//! software from round r + k to r + k + 1 (`--changes` packages upgraded, installed or removed,
//! fixed at `enroll`), names the version the site acknowledged last as `base_version`, and
//! carries the hash of the result; it must be `accepted` as exactly the next version with that
//! hash. A delta the site refuses (`resync_required`: wrong base or hash) is an error of kind
//! `refused`; in a normal run there are none.
//!
//! Every agent must have a known sw snapshot at the site: run `full` first (exit 2 otherwise).
//! Bodies (~300–600 B compressed) are built ahead, `--prebuild` (default 300,000) of them, so a
//! 250,000-agent round is sent with no building during the run. The agents file then holds
//! each agent's new round and version.
//!
//! Results (`--json`): the fields of every mode (crate documentation), with `mode` `"delta"`.

use std::sync::Arc;

use anyhow::Result;
use invsync_proto::Class;
use invsync_proto::exit::Exit;
use invsync_proto::wire;

use super::drive::{self, Cell, Expect, Job, LoadArgs, Phase, Results, SiteArgs};
use crate::inventory::Fleet;

const DEFAULT_PREBUILD: usize = 300_000;

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
    let unknown = file.agents[..n]
        .iter()
        .filter(|r| r.sw_version == 0)
        .count();
    if unknown > 0 {
        return Err(Exit::usage(format!(
            "{unknown} of the {n} agents in {} have no known sw snapshot at the site (no `full` \
             run yet, or their last report failed); a delta needs one to build on: run \
             `invsync-loadgen full --agents-file {}` first",
            a.agents_file.display(),
            a.agents_file.display()
        ))
        .into());
    }
    let fleet = Arc::new(Fleet::new(file.header.spec));
    let cells: Arc<Vec<Cell>> = Arc::new(file.agents.iter().map(Cell::new).collect());
    let rounds = l.rounds();
    drive::progress(format!(
        "delta: {n} agents × {} deltas of {} packages each, {} at a time",
        rounds.map_or("unbounded".to_string(), |r| r.to_string()),
        file.header.spec.changes,
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
            let base = version + seq as i64;
            let report = fleet.delta(cells[agent].index, round + seq, base);
            Ok(Job {
                agent,
                seq,
                path: wire::CAP_REPORT,
                auth: true,
                body: b.compress(&serde_json::to_vec(&report)?)?,
                zstd: true,
                expect: Expect::Report {
                    class: Class::Sw,
                    version: Some(base + 1),
                    hash: report.hash,
                    round: round + seq + 1,
                },
            })
        }
    };
    let measured = drive::run(
        &cells,
        Phase {
            mode: "delta",
            agents: (0..n).collect(),
            rounds,
            duration: l.duration,
            prebuild: l.prebuild.map_or(DEFAULT_PREBUILD, |p| p as usize),
            builders: drive::builders(l),
            concurrency: a.concurrency as usize,
            timeout: a.timeout,
            build: Arc::new(build),
        },
        None,
        &site,
    )
    .await?;
    drive::save(a, &mut file, &cells)?;
    Results::of_run("delta", a, l, &site, code, &file, n, measured, None).finish(a.json)
}
