//! The site's Ed25519 signing key (`cap-signing.key` in the data directory, PKCS#8, mode
//! 0600), which signs the `.cfg` files of a file-share CAP. `invsite init` creates it; a site
//! made before the file-share CAP gets one the first time a command needs it, so upgrading
//! needs no step. Agents learn its public half at enrollment.

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{Context, Result, anyhow};
use invsync_proto::offline::sign::SiteKey;

use crate::datadir::SiteDir;

/// Creates the key in a data directory that has none (`invsite init`'s staging directory).
pub fn create(dir: &SiteDir) -> Result<SiteKey> {
    let (key, doc) =
        SiteKey::generate().map_err(|e| anyhow!("cannot create the site's signing key: {e}"))?;
    crate::datadir::write_private(&dir.signing_key_path(), &doc)?;
    Ok(key)
}

/// The site's key, created now if this data directory has none yet. Two processes doing this
/// at once (a `cap-sync` beside a starting `serve`) end up with the same key: each writes its
/// own to a temporary file and links it into place only if no key is there yet, and whoever
/// loses the race reads the winner's.
pub fn load_or_create(dir: &SiteDir) -> Result<SiteKey> {
    let path = dir.signing_key_path();
    match fs::read(&path) {
        Ok(doc) => {
            return SiteKey::from_pkcs8(&doc)
                .map_err(|e| anyhow!("{} is not usable: {e}", path.display()));
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("cannot read {}", path.display())));
        }
    }
    let (key, doc) =
        SiteKey::generate().map_err(|e| anyhow!("cannot create the site's signing key: {e}"))?;
    let tmp = dir
        .root
        .join(format!(".cap-signing.key.{}", std::process::id()));
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(&doc)?;
        f.sync_all()?;
    }
    let linked = fs::hard_link(&tmp, &path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), public_key = %key.public(), "Created the site's signing key for the file-share CAP.");
            Ok(key)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => load_or_create(dir),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot write {}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_once_and_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SiteDir {
            root: tmp.path().to_path_buf(),
        };
        let first = load_or_create(&dir).unwrap();
        let again = load_or_create(&dir).unwrap();
        assert_eq!(first.public(), again.public());
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.signing_key_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
        fs::write(dir.signing_key_path(), b"junk").unwrap();
        let err = load_or_create(&dir).unwrap_err().to_string();
        assert!(err.contains("is not usable"), "{err}");
    }
}
