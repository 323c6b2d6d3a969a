//! `invsite offline-enroll CLIENT --out FILE`: enroll a client that will never reach the site
//! over the network. The client is created now with a fresh key; FILE (mode 0600) carries the
//! key, the site's code and the site's public key to the machine, where `invagent enroll
//! --from-file FILE` enrolls without any network. The client then reports through a
//! file-share CAP directory (`invagent cycle --cap-dir DIR`, `invsite cap-sync DIR`).

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::{Context, Result};
use invsync_proto::exit::{Code, Exit};
use invsync_proto::offline::enrollment::{ENROLLMENT_FORMAT, EnrollmentFile};
use invsync_proto::wire::ClientToken;
use invsync_proto::{ClientName, Timestamp};
use invsync_store::StoreError;

use super::DataDirArg;
use crate::datadir::open_store;
use crate::secret::random_bytes;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Client name
    #[arg(value_name = "CLIENT")]
    pub client: ClientName,
    /// Where to write the enrollment file (it must not exist; mode 0600)
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    pub data_dir: DataDirArg,
}

pub async fn apply(args: Args) -> Result<()> {
    let dir = args.data_dir.dir();
    let config = dir.config()?;
    dir.admin_token()?;
    let key = crate::signing::load_or_create(&dir)?;
    // The file is claimed before the client is created, so a path that cannot be written
    // fails before the site holds a client whose key nobody has.
    let mut file = match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&args.out)
    {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            return Err(Exit::usage(format!(
                "{} exists; give another --out, or remove it first",
                args.out.display()
            ))
            .into());
        }
        Err(e) => {
            return Err(Exit::new(
                Code::Failure,
                format!("cannot write {}: {e}", args.out.display()),
            )
            .into());
        }
    };
    let enrolled = async {
        let store = open_store(&dir, &config).await?;
        let secret = random_bytes();
        let key_hash = ClientToken {
            client_id: uuid::Uuid::nil(),
            key: secret,
        }
        .key_hash();
        let now = Timestamp::now();
        let enrolled = store.enroll_offline(&args.client, &key_hash, now).await;
        let enrolled = enrolled.map_err(|e| match e {
            StoreError::NameTaken { .. } => Exit::new(
                Code::Failure,
                format!("{e}; choose another name (`invsite clients` lists the names in use)"),
            )
            .into(),
            other => anyhow::Error::new(other),
        })?;
        let token = ClientToken {
            client_id: enrolled.client_id,
            key: secret,
        };
        anyhow::Ok(EnrollmentFile {
            format: ENROLLMENT_FORMAT,
            client_id: enrolled.client_id,
            token: token.encode(),
            name: args.client.clone(),
            site: config.site_code.clone(),
            site_public_key: key.public(),
            created_at: now,
        })
    }
    .await;
    let enrollment = match enrolled {
        Ok(e) => e,
        Err(e) => {
            drop(file);
            let _ = fs::remove_file(&args.out);
            return Err(e);
        }
    };
    file.write_all(&enrollment.encode())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    invsync_proto::outln!(
        "Enrolled {} at site {} (client id {}) for a file-share CAP.\n\
         Carry {} to the machine and run there:\n  \
         invagent enroll --from-file {} --data-dir /var/lib/invagent\n\
         The file holds the client's key: destroy it once the machine is enrolled.",
        enrollment.name,
        enrollment.site,
        enrollment.client_id,
        args.out.display(),
        args.out.display()
    )?;
    Ok(())
}
