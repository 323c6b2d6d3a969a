//! `cap-files`: the `.inv` files a fleet of agents would drop in a file-share CAP directory,
//! for measuring `invsite cap-sync` (`bench/cap-sync.sh`). No site is contacted: the agents
//! of the agents file (enrolled by `enroll`) write straight into `--cap-dir DIR/Inventry.box`,
//! each file authenticated with the agent's key as `invagent` writes it.
//!
//! `--kind full` writes one full sw report per agent (its current round, ~1,500 packages);
//! `--kind delta` one sw delta per agent against the version the file says the site holds
//! (`full` first). The agents file is then updated as if the site had taken every file (the
//! next version, round and hash), so `invsync-loadgen verify` against the site after the
//! import lists every file the site did not store.
//!
//! Results (`--json`): `mode` (`"cap-files"`), `kind`, `files`, `bytes` (all files),
//! `bytes_mean`, `seconds` (building and writing).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use invsync_proto::exit::Exit;
use invsync_proto::offline::inv::{InvHeader, InvReport, encode};
use invsync_proto::offline::{INVENTRY_BOX, inv_file_name, mac_key};
use invsync_proto::wire::ClientToken;
use invsync_proto::{Class, Timestamp};
use serde::Serialize;
use uuid::Uuid;

use crate::agents::{Ack, AgentsFile, Record};
use crate::inventory::Fleet;
use crate::sim::agent_name;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Full,
    Delta,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The agents file `enroll` wrote
    #[arg(long, value_name = "FILE")]
    pub agents_file: PathBuf,
    /// The CAP directory (its Inventry.box is created if missing)
    #[arg(long, value_name = "DIR")]
    pub cap_dir: PathBuf,
    /// What each agent writes: a full sw report, or a sw delta
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// Use the first N agents of the agents file (default: all of them)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub agents: Option<u64>,
    /// Print the results as one JSON object
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Results {
    mode: &'static str,
    kind: &'static str,
    files: usize,
    bytes: u64,
    bytes_mean: u64,
    seconds: f64,
}

pub fn apply(args: Args) -> Result<()> {
    let mut file = AgentsFile::read_existing(&args.agents_file)?;
    let n = args
        .agents
        .map_or(file.agents.len(), |n| (n as usize).min(file.agents.len()));
    if args.kind == Kind::Delta
        && let Some(r) = file.agents[..n].iter().find(|r| r.sw_version == 0)
    {
        return Err(Exit::usage(format!(
            "agent {} has no known sw snapshot; write --kind full files and import them first",
            r.index
        ))
        .into());
    }
    let inbox = args.cap_dir.join(INVENTRY_BOX);
    std::fs::create_dir_all(&inbox)
        .with_context(|| format!("cannot create {}", inbox.display()))?;
    let fleet = Fleet::new(file.header.spec);
    let prefix = file.header.prefix.clone();
    let started = Instant::now();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = n.div_ceil(threads).max(1);
    let bytes: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = file.agents[..n]
            .chunks_mut(chunk)
            .map(|records| {
                let (fleet, prefix, inbox) = (&fleet, prefix.as_str(), inbox.as_path());
                s.spawn(move || -> Result<u64> {
                    let mut zstd = zstd::bulk::Compressor::new(3)?;
                    let mut total = 0;
                    for r in records {
                        total += write_one(r, fleet, prefix, inbox, args.kind, &mut zstd)?;
                    }
                    Ok(total)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a writer thread panicked"))
            .sum::<Result<u64>>()
    })?;
    let seconds = started.elapsed().as_secs_f64();
    file.write(&args.agents_file)?;
    let results = Results {
        mode: "cap-files",
        kind: match args.kind {
            Kind::Full => "full",
            Kind::Delta => "delta",
        },
        files: n,
        bytes,
        bytes_mean: bytes / n.max(1) as u64,
        seconds,
    };
    if args.json {
        invsync_proto::outln!("{}", serde_json::to_string(&results)?)?;
    } else {
        invsync_proto::outln!(
            "cap-files: wrote {} {} files ({} bytes, {} on average) in {:.2} s",
            results.files,
            results.kind,
            results.bytes,
            results.bytes_mean,
            seconds
        )?;
    }
    Ok(())
}

/// Writes one agent's file as `invagent` does (temporary name, then rename) and records the
/// version the site will hold once it takes it.
fn write_one(
    r: &mut Record,
    fleet: &Fleet,
    prefix: &str,
    inbox: &Path,
    kind: Kind,
    zstd: &mut zstd::bulk::Compressor<'_>,
) -> Result<u64> {
    let token = ClientToken::parse(&r.token).context("a token in the agents file")?;
    let name = agent_name(prefix, r.index)?;
    let id = Uuid::new_v4();
    let (json, hash, not_past, round) = match kind {
        Kind::Full => {
            let state = fleet.sw(r.index, r.sw_round);
            let (json, hash) = state.full_report_json(id);
            (json, hash, Some(r.sw_version), r.sw_round)
        }
        Kind::Delta => {
            let mut report = fleet.delta(r.index, r.sw_round, r.sw_version);
            report.report_id = id;
            (
                serde_json::to_vec(&report)?,
                report.hash,
                None,
                r.sw_round + 1,
            )
        }
    };
    let header = InvHeader {
        client: name.clone(),
        client_id: token.client_id,
        file_id: id,
        written_at: Timestamp::now(),
        machine_id: String::new(),
        agent_version: None,
        report: Some(InvReport {
            class: Class::Sw,
            bytes: json.len() as u64,
            not_past,
        }),
        seen: Vec::new(),
        done_events: Vec::new(),
    };
    let body = zstd.compress(&json)?;
    let bytes = encode(&header, &body, &mac_key(&token.key_hash()));
    let final_name = inv_file_name(&name, id);
    let tmp = inbox.join(format!(".{final_name}.tmp"));
    std::fs::write(&tmp, &bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, inbox.join(&final_name))?;
    r.sw_version += 1;
    r.sw_round = round;
    r.sw_ack = Some(Ack::keep(
        r.sw_ack,
        Ack {
            version: r.sw_version,
            hash,
        },
    ));
    Ok(bytes.len() as u64)
}
