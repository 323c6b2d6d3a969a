//! `invsync-loadgen`: simulated agents against a running site, on one tokio runtime.
//!
//! Each mode is a subcommand in its own file under `mode/`. What modes share: the site they
//! talk to (`site.rs`: only `http://127.0.0.1:PORT`, and the secrets from its data
//! directory), a minimal HTTP/1.1 client (`http.rs`), the simulated agent's CAP calls
//! (`sim.rs`), synthetic inventories (`inventory.rs`), process limits and memory readings
//! (`os.rs`), and latency statistics (`stats.rs`).
//!
//! Every mode is bounded in count and in time (`--time-limit`) and exits by itself. Progress
//! goes to stderr, results to stdout (`--json` for machines).
//!
//! # Throughput modes: `enroll`, `full`, `delta`, `checkin`
//!
//! They share an *agents file* (`agents.rs`): `enroll` writes it once (resumably), the others
//! read it and write back what the site acknowledged, so a 250,000-client site is enrolled
//! once and each mode builds on the last. Inventories are synthetic (`inventory.rs`,
//! [`inventory::Fleet`]): ~40 hw items, `--packages` sw packages (1,500 by default) per agent,
//! varied per agent and fixed by the seed in the file's header. Request bodies are built
//! before the timed phase (`mode/drive.rs`), zstd-compressed as the agent sends them.
//!
//! ```text
//! S="--site http://$(cat DIR/serve.addr) --site-dir DIR --agents-file agents.txt"
//! invsync-loadgen enroll  $S --agents 250000 [--packages 1500] [--changes 3] [--seed N] [--prefix LG]
//! invsync-loadgen full    $S [--agents N] [--rounds R | --duration D] [--concurrency C]
//! invsync-loadgen delta   $S [--agents N] [--rounds R | --duration D] [--concurrency C]
//! invsync-loadgen checkin $S [--agents N] [--rounds R | --duration D] [--concurrency C]
//! invsync-loadgen verify  $S [--concurrency C]
//! invsync-loadgen cap-files --agents-file agents.txt --cap-dir CAP --kind full|delta [--agents N]
//! ```
//!
//! `cap-files` writes the agents' reports as the `.inv` files of a file-share CAP directory
//! instead of sending them (`mode/cap_files.rs`), for `invsite cap-sync` to import.
//!
//! Also: `--timeout` (per request, 30 s), `--time-limit` (whole run, 2 h), `--prebuild N`
//! (bodies built ahead), `--builders N` (body-building threads), `--json`. `full` first sends
//! a hw full report to agents that have none (reported apart, as `setup`). `delta` and
//! `checkin` refuse (exit 2) until every agent has a known snapshot (`full` first).
//!
//! Results (`--json`, one object; stable names): `mode`, `site`, `site_code`, `agents_file`,
//! `agents`, `packages`, `concurrency`, `rounds` (per agent; `null`: until `duration`),
//! `duration_limit_seconds`, `seed`; `requests` (answered or failed), `ok`, `skipped` (not
//! sent after an agent's earlier request failed), `errors` {`total`, `refused`
//! (`resync_required`), `duplicate`, `http` (4xx/5xx), `transport` (no answer, timeout),
//! `mismatch` (another version or hash than the agent's)}, `seconds` (timed phase),
//! `per_second` (ok / seconds), `latency` {`count`, `min_ms`, `p50_ms`, `p90_ms`, `p99_ms`,
//! `max_ms`, `mean_ms`} of successful requests or `null`, `body_bytes_mean`, `prepare`
//! {`seconds`, `bodies` (built before timing), `built_during_run`}, `reenrolled` (`enroll`),
//! `error_messages` (up to 5), `setup` (`full`'s hw reports, the same fields, or `null`).
//! Any failed request makes the exit code 1 after the results are printed.
//!
//! # Durability: `verify`
//!
//! The agents file also keeps, per agent and class, the highest version the site acknowledged
//! and its hash; a request that got no answer (the site killed) does not touch it. `verify`
//! asks the site's admin API what it holds of each agent and lists every acknowledged report
//! it no longer holds (a lower version, or the same version with another hash); exit 1 when
//! there is any. Its results have their own fields (`mode/verify.rs`). So a site can be
//! killed in the middle of a `delta` run, restarted, and checked:
//!
//! ```text
//! invsync-loadgen delta $S --duration 60s &   # kill -9 the site meanwhile, restart it
//! invsync-loadgen verify --site http://NEW-ADDRESS --site-dir DIR --agents-file agents.txt
//! ```

pub mod agents;
pub mod http;
pub mod inventory;
pub mod mode;
pub mod os;
pub mod rng;
pub mod sim;
pub mod site;
pub mod stats;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use invsync_proto::exit::{Code, Exit};

#[derive(Debug, Parser)]
#[command(
    name = "invsync-loadgen",
    version,
    about = "Load generator for an invsync site: simulated agents on 127.0.0.1"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Enroll N agents, park N idle push-channel long-polls, measure the site's memory per
    /// idle connection and the resync round trip (request → wake → check-in → full report).
    Connect(mode::connect::Args),
    /// Enroll N agents (resumably) and write them to the agents file the other modes read.
    Enroll(mode::enroll::Args),
    /// Full sw reports (1,500 packages by default) of each agent of the agents file.
    Full(mode::full::Args),
    /// sw deltas (a few packages changed) against the version the site acknowledged last.
    Delta(mode::delta::Args),
    /// No-change check-ins: the site holds exactly what each agent has.
    Checkin(mode::checkin::Args),
    /// Check that the site still holds every report it acknowledged to the agents of the
    /// agents file (after a crash or restart); exit 1 and list them when any is lost.
    Verify(mode::verify::Args),
    /// Write the agents' sw reports as `.inv` files into a file-share CAP directory (for
    /// timing `invsite cap-sync`); no site is contacted.
    CapFiles(mode::cap_files::Args),
}

/// Parses the command line and runs the mode. Usage errors come back as an [`Exit`] with
/// code 2; `--help` and `--version` print and succeed.
pub fn try_main() -> Result<()> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            invsync_proto::out!("{e}")?;
            return Ok(());
        }
        Err(e) => return Err(Exit::usage(e.render().to_string().trim_end().to_string()).into()),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let result = match cli.command {
        Command::Connect(a) => {
            let limit = a.common.time_limit;
            runtime.block_on(bounded(limit, mode::connect::apply(a)))
        }
        Command::Enroll(a) => {
            let limit = a.site.time_limit;
            runtime.block_on(bounded(limit, mode::enroll::apply(a)))
        }
        Command::Full(a) => {
            let limit = a.site.time_limit;
            runtime.block_on(bounded(limit, mode::full::apply(a)))
        }
        Command::Delta(a) => {
            let limit = a.site.time_limit;
            runtime.block_on(bounded(limit, mode::delta::apply(a)))
        }
        Command::Checkin(a) => {
            let limit = a.site.time_limit;
            runtime.block_on(bounded(limit, mode::checkin::apply(a)))
        }
        Command::Verify(a) => {
            let limit = a.site.time_limit;
            runtime.block_on(bounded(limit, mode::verify::apply(a)))
        }
        Command::CapFiles(a) => mode::cap_files::apply(a),
    };
    // Parked long-poll tasks may still be open; do not wait for them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// Runs a mode for at most `limit`.
async fn bounded(
    limit: Duration,
    run: impl std::future::Future<Output = Result<()>>,
) -> Result<()> {
    match tokio::time::timeout(limit, run).await {
        Ok(r) => r,
        Err(_) => Err(Exit::new(
            Code::TimedOut,
            format!("gave up after --time-limit {}", humanise(limit)),
        )
        .into()),
    }
}

/// A duration as a person reads it (`1m 30s`).
pub fn humanise(d: Duration) -> String {
    humantime::format_duration(Duration::from_millis(d.as_millis() as u64)).to_string()
}

/// Prints an error as `invsync-loadgen: <message>` and returns its exit code: the code of an
/// [`Exit`] anywhere in the chain, else 1.
pub fn finish(result: Result<()>) -> ExitCode {
    let Err(err) = result else {
        return ExitCode::SUCCESS;
    };
    // The reader of the output went away (`invsync-loadgen … | head`): it has what it wanted.
    if err.chain().any(invsync_proto::exit::is_broken_pipe) {
        return ExitCode::SUCCESS;
    }
    let exit = err.chain().find_map(|e| e.downcast_ref::<Exit>());
    let code = exit.map(|e| e.code).unwrap_or(Code::Failure);
    if code == Code::Usage && exit.is_some_and(|e| e.message.starts_with("error:")) {
        eprintln!("{}", exit.map(|e| e.message.as_str()).unwrap_or_default());
    } else {
        eprintln!("invsync-loadgen: {err:#}");
    }
    ExitCode::from(code as u8)
}
