//! `checkin`: the cycle of an agent whose inventory did not change: one `POST /cap/v1/checkin`
//! with the body the agent sends (`{}`), and nothing else, because the site's answer shows it
//! holds exactly the agent's versions and hashes of both classes.
//!
//! Each agent checks in `--rounds` times. An answer whose `classes` differ from what the agent
//! last sent (version or hash, hw or sw) is an error of kind `mismatch` (the real agent would
//! send a full report); in a normal run there are none. Every agent must have known hw and sw
//! snapshots at the site: run `full` first (exit 2 otherwise).
//!
//! Before the timed phase the load generator computes each agent's expected hashes (their
//! time is part of `prepare.seconds`); the bodies themselves are two bytes.
//!
//! Results (`--json`): the fields of every mode (crate documentation), with `mode`
//! `"checkin"`.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use invsync_proto::Snapshot;
use invsync_proto::exit::Exit;
use invsync_proto::wire::{self, ClassState};

use super::drive::{self, Cell, Expect, Job, LoadArgs, Phase, Results, SiteArgs};
use crate::inventory::Fleet;

/// Check-in jobs are tiny and cheap to make; this many is several seconds of load ahead.
const DEFAULT_PREBUILD: usize = 200_000;

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
        .filter(|r| r.sw_version == 0 || r.hw_version == 0)
        .count();
    if unknown > 0 {
        return Err(Exit::usage(format!(
            "{unknown} of the {n} agents in {} have no known hw or sw snapshot at the site (no \
             `full` run yet, or their last report failed); an agent with nothing to compare \
             would send a full report, not a plain check-in: run `invsync-loadgen full \
             --agents-file {}` first",
            a.agents_file.display(),
            a.agents_file.display()
        ))
        .into());
    }
    let fleet = Fleet::new(file.header.spec);
    let builders = drive::builders(l);
    let hashing = Instant::now();
    drive::progress(format!("checkin: computing the hashes of {n} agents"));
    let expected = Arc::new(expected_states(&fleet, &file.agents[..n], builders));
    let hashing = hashing.elapsed().as_secs_f64();

    let cells: Arc<Vec<Cell>> = Arc::new(file.agents.iter().map(Cell::new).collect());
    let rounds = l.rounds();
    drive::progress(format!(
        "checkin: {n} agents × {} check-ins, {} at a time",
        rounds.map_or("unbounded".to_string(), |r| r.to_string()),
        a.concurrency
    ));
    let build = move |_: &mut drive::Builder, agent: usize, seq: u64| -> Result<Job> {
        let (hw, sw) = expected[agent];
        Ok(Job {
            agent,
            seq,
            path: wire::CAP_CHECKIN,
            auth: true,
            // `CheckinRequest::default()`, as the agent's cycle sends it.
            body: b"{}".to_vec(),
            zstd: false,
            expect: Expect::Checkin { hw, sw },
        })
    };
    let mut measured = drive::run(
        &cells,
        Phase {
            mode: "checkin",
            agents: (0..n).collect(),
            rounds,
            duration: l.duration,
            prebuild: l.prebuild.map_or(DEFAULT_PREBUILD, |p| p as usize),
            builders: 1,
            concurrency: a.concurrency as usize,
            timeout: a.timeout,
            build: Arc::new(build),
        },
        None,
        &site,
    )
    .await?;
    measured.prepare.seconds += hashing;
    // Check-ins change nothing, but a mismatch leaves the agent's state unknown.
    drive::save(a, &mut file, &cells)?;
    Results::of_run("checkin", a, l, &site, code, &file, n, measured, None).finish(a.json)
}

/// Per agent, the (hw, sw) versions and hashes the site should hold, on `threads` threads.
fn expected_states(
    fleet: &Fleet,
    agents: &[crate::agents::Record],
    threads: usize,
) -> Vec<(ClassState, ClassState)> {
    let chunk = agents.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        let parts: Vec<_> = agents
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|r| {
                            let hw = Snapshot::new(fleet.hw_items(r.index)).hash();
                            let sw = fleet.sw(r.index, r.sw_round).hash();
                            (
                                ClassState {
                                    version: r.hw_version,
                                    hash: hw,
                                },
                                ClassState {
                                    version: r.sw_version,
                                    hash: sw,
                                },
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().expect("a hashing thread panicked"))
            .collect()
    })
}
