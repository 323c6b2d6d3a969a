//! `invsite import FILE`: one class of inventory taken with `invagent inventory hw|sw --out
//! FILE` on a machine that was never enrolled (the injector of GLPI and OCS). The client is
//! created as an unmanaged, imported record without a key, or updated; an agent that enrolls
//! later from the same machine (same machine id) takes the record over.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Result;
use invsync_proto::Timestamp;
use invsync_proto::exit::{Code, Exit};
use invsync_proto::offline::import::ImportFile;
use invsync_proto::wire::{Report, ReportAck, ReportBody};
use invsync_store::{IncomingReport, StoreError};
use serde::Serialize;

use super::DataDirArg;
use crate::datadir::open_store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The file `invagent inventory hw|sw --out FILE` wrote
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// Print the outcome as JSON
    #[arg(long)]
    pub json: bool,
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
struct Imported {
    client: String,
    class: String,
    client_id: uuid::Uuid,
    created: bool,
    version: i64,
    unchanged: bool,
}

pub async fn apply(args: Args) -> Result<()> {
    let dir = args.data_dir.dir();
    let config = dir.config()?;
    dir.admin_token()?;
    let limit = config.limits.max_decoded_bytes as u64;
    let bad = |reason: String| {
        Exit::new(
            Code::Failure,
            format!("{}: {reason}; nothing was imported", args.file.display()),
        )
    };
    let mut bytes = Vec::new();
    std::fs::File::open(&args.file)
        .and_then(|f| f.take(limit + 1).read_to_end(&mut bytes))
        .map_err(|e| bad(format!("cannot read it: {e}")))?;
    if bytes.len() as u64 > limit {
        return Err(bad(format!(
            "it is over the limit max_decoded_bytes ({limit} bytes)"
        ))
        .into());
    }
    let file = ImportFile::decode(&bytes).map_err(|e| bad(e.to_string()))?;
    let report = Report {
        report_id: uuid::Uuid::new_v4(),
        class: file.class,
        hash: file.hash,
        body: ReportBody::Full { items: file.items },
        answers: Vec::new(),
    };
    // The limits of a report over HTTP, checked on the same measured form.
    let json = serde_json::to_vec(&report)?;
    let incoming: IncomingReport = serde_json::from_slice(&json)
        .map_err(|e| bad(format!("the inventory is not valid: {e}")))?;
    crate::api::cap::report::check_report(&incoming, &config.limits)
        .map_err(|e| bad(e.to_string()))?;
    drop((json, incoming));
    let store = open_store(&dir, &config).await?;
    let imported = store
        .import_unmanaged(&file.name, &file.machine_id, &report, Timestamp::now())
        .await
        .map_err(|e| match e {
            StoreError::NameTaken { .. } | StoreError::BadReport(_) => bad(e.to_string()).into(),
            other => anyhow::Error::new(other),
        })?;
    store.flush().await?;
    let (version, unchanged) = match imported.ack {
        ReportAck::Accepted { version, .. } => (version, false),
        ReportAck::Duplicate { version, .. } => (version, true),
        ReportAck::ResyncRequired { reason } => return Err(bad(reason).into()),
    };
    if args.json {
        let out = Imported {
            client: file.name.to_string(),
            class: file.class.to_string(),
            client_id: imported.client_id,
            created: imported.created,
            version,
            unchanged,
        };
        invsync_proto::outln!("{}", serde_json::to_string_pretty(&out)?)?;
    } else {
        let what = if imported.created {
            "a new imported client"
        } else {
            "an existing client"
        };
        invsync_proto::outln!(
            "Imported the {} inventory of {} ({what}, client id {}), now at version {version}.",
            file.class,
            file.name,
            imported.client_id
        )?;
    }
    Ok(())
}
