//! A CAP directory on disk, as the site sees it: `Clidata.box/` (the `.cfg` files it writes),
//! `Inventry.box/` (the `.inv` files agents drop), `Inventry.box/done/` and
//! `Inventry.box/bad/` (where imported and refused files go, the latter beside a `.reason`).
//!
//! The directory is shared with whoever can write to it (the agents, a sync tool, removable
//! media), so nothing in it is trusted: the four directories must be real directories (not
//! symlinks that could send the site's writes elsewhere), files are opened without following
//! symlinks and must be regular files of bounded size, and only names that
//! `offline::parse_inv_file_name` accepts are read at all (no `/`, no `..`, no hidden
//! temporary files an agent is still writing).

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use invsync_proto::ClientName;
use invsync_proto::offline::cfg::{MAX_REFUSED, Refused};
use invsync_proto::offline::{BAD_DIR, CLIDATA_BOX, DONE_DIR, INVENTRY_BOX, parse_inv_file_name};
use uuid::Uuid;

/// The paths of one CAP directory, checked.
#[derive(Debug, Clone)]
pub struct CapDir {
    pub root: PathBuf,
    pub clidata: PathBuf,
    pub inbox: PathBuf,
    pub done: PathBuf,
    pub bad: PathBuf,
}

/// Why a CAP directory cannot be used; the sentence says which path and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DirError(pub String);

/// One `.inv` waiting in `Inventry.box`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub file: String,
    pub client: ClientName,
    pub id: Uuid,
}

/// What listing `Inventry.box` found.
#[derive(Debug, Default)]
pub struct Listing {
    pub waiting: Vec<Waiting>,
    /// `.inv` names that are not regular files (symlinks, directories, devices): refused
    /// without being opened.
    pub not_files: Vec<Waiting>,
}

/// How a move out of `Inventry.box` went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    Moved,
    /// The file was gone: another `cap-sync` moved it first.
    Gone,
}

impl CapDir {
    /// Checks the directory and creates the four directories it needs where they are missing.
    /// `root` itself must exist: a mount point that is not mounted must not become an empty
    /// directory the site writes into.
    pub fn open(root: &Path) -> Result<CapDir, DirError> {
        match fs::metadata(root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(DirError(format!(
                    "the CAP directory {} is not a directory",
                    root.display()
                )));
            }
            Err(e) => {
                return Err(DirError(format!(
                    "cannot use the CAP directory {}: {e}; create it (or mount the share) first",
                    root.display()
                )));
            }
        }
        let inbox = root.join(INVENTRY_BOX);
        let dir = CapDir {
            root: root.to_path_buf(),
            clidata: root.join(CLIDATA_BOX),
            done: inbox.join(DONE_DIR),
            bad: inbox.join(BAD_DIR),
            inbox,
        };
        for path in [&dir.clidata, &dir.inbox, &dir.done, &dir.bad] {
            real_dir(path)?;
        }
        Ok(dir)
    }

    /// The `.inv` files in `Inventry.box`, in no particular order. Other names are left alone.
    pub fn list(&self) -> Result<Listing, DirError> {
        let entries = fs::read_dir(&self.inbox)
            .map_err(|e| DirError(format!("cannot list {}: {e}", self.inbox.display())))?;
        let mut listing = Listing::default();
        for entry in entries {
            let entry = entry
                .map_err(|e| DirError(format!("cannot list {}: {e}", self.inbox.display())))?;
            let Some(file) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Some((client, id)) = parse_inv_file_name(&file) else {
                continue;
            };
            let waiting = Waiting { file, client, id };
            // `file_type` does not follow symlinks.
            match entry.file_type() {
                Ok(t) if t.is_file() => listing.waiting.push(waiting),
                Ok(_) => listing.not_files.push(waiting),
                // Gone since it was listed: another run took it.
                Err(_) => {}
            }
        }
        Ok(listing)
    }

    /// Reads a waiting file whole, refusing a symlink, a non-regular file or one over `limit`
    /// bytes. `Ok(None)`: the file is gone (another run took it).
    pub fn read(&self, file: &str, limit: u64) -> Result<Option<Vec<u8>>, String> {
        let path = self.inbox.join(file);
        let opened = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path);
        let mut f = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err("it is a symbolic link; only regular files are imported".to_string());
            }
            Err(e) => return Err(format!("it cannot be read: {e}")),
        };
        let meta = f
            .metadata()
            .map_err(|e| format!("it cannot be read: {e}"))?;
        if !meta.is_file() {
            return Err("it is not a regular file".to_string());
        }
        if meta.len() > limit {
            return Err(format!(
                "it is {} bytes; the limit max_body_bytes is {limit}",
                meta.len()
            ));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        // Bounded again while reading: the file may grow after the size was read.
        (&mut f)
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("it cannot be read: {e}"))?;
        if bytes.len() as u64 > limit {
            return Err(format!(
                "it grew past the limit max_body_bytes ({limit} bytes) while it was read"
            ));
        }
        Ok(Some(bytes))
    }

    /// Moves an imported file to `done/`.
    pub fn to_done(&self, file: &str) -> Result<Moved, String> {
        move_file(&self.inbox.join(file), &self.done.join(file))
    }

    /// Moves the file to `bad/`, then writes `<file>.reason` beside it. The move comes first
    /// so that a file another run took meanwhile gets no reason it does not deserve; a run
    /// killed between the two leaves a refused file without its reason, which
    /// [`CapDir::refused`] still lists (with a sentence saying the reason was lost).
    pub fn to_bad(&self, file: &str, reason: &str) -> Result<Moved, String> {
        if move_file(&self.inbox.join(file), &self.bad.join(file))? == Moved::Gone {
            return Ok(Moved::Gone);
        }
        let reason_path = self.bad.join(format!("{file}.reason"));
        write_atomic(&reason_path, format!("{reason}\n").as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", reason_path.display()))?;
        Ok(Moved::Moved)
    }

    /// The clients that have a `.cfg` in `Clidata.box`: the clients of this directory.
    pub fn cfg_clients(&self) -> HashSet<ClientName> {
        let Ok(entries) = fs::read_dir(&self.clidata) else {
            return HashSet::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let file = e.file_name();
                let stem = file.to_str()?.strip_suffix(".cfg")?;
                let name = ClientName::parse(stem).ok()?;
                (name.as_str() == stem).then_some(name)
            })
            .collect()
    }

    /// Per client, the refused reports in `bad/`, newest first, at most [`MAX_REFUSED`] each:
    /// what the `.cfg` tells the agent. An administrator who deletes a file from `bad/` takes it
    /// off the list.
    pub fn refused(&self) -> HashMap<ClientName, Vec<Refused>> {
        let mut found: HashMap<ClientName, Vec<(SystemTime, String, Uuid)>> = HashMap::new();
        let Ok(entries) = fs::read_dir(&self.bad) else {
            return HashMap::new();
        };
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Some((client, id)) = parse_inv_file_name(&name) else {
                continue;
            };
            let when = entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            found
                .entry(client)
                .or_default()
                .push((when, name.clone(), id));
        }
        found
            .into_iter()
            .map(|(client, mut files)| {
                files.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
                files.truncate(MAX_REFUSED);
                let refused = files
                    .into_iter()
                    .map(|(_, name, id)| Refused {
                        report_id: id,
                        reason: read_reason(&self.bad.join(format!("{name}.reason"))),
                    })
                    .collect();
                (client, refused)
            })
            .collect()
    }

    /// Makes the renames and new files of a run durable with one `syncfs` of the directory's
    /// file system at the end, rather than an fsync per file: at 10,000 files an fsync each
    /// was most of a run's time. A crash before it can put a file back in `Inventry.box`
    /// (the next run finds its report already stored) or leave a `.cfg` empty or old (the
    /// agent ignores one whose signature fails, and the next run rewrites it, since only a
    /// `.cfg` that reads back as this site's counts as unchanged).
    pub fn sync_all(&self) {
        if let Ok(d) = File::open(&self.root) {
            // SAFETY: syncfs takes a file descriptor this function keeps open for the call.
            let _ = unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&d)) };
        }
    }
}

/// A `.reason` file's sentence, bounded (the directory is shared: a huge one is cut).
fn read_reason(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(f) = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        let _ = f.take(1024).read_to_string(&mut text);
    }
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        "refused by the site (its reason was not written)".to_string()
    } else {
        line.chars().filter(|c| !c.is_control()).collect()
    }
}

/// Creates `path` if missing and refuses anything there but a real directory.
fn real_dir(path: &Path) -> Result<(), DirError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(m) if m.file_type().is_symlink() => Err(DirError(format!(
            "{} is a symbolic link; the site writes only into real directories of the CAP \
             directory (replace it with a directory)",
            path.display()
        ))),
        Ok(_) => Err(DirError(format!(
            "{} is not a directory; move it away",
            path.display()
        ))),
        Err(e) if e.kind() == ErrorKind::NotFound => match fs::create_dir(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => real_dir(path),
            Err(e) => Err(DirError(format!("cannot create {}: {e}", path.display()))),
        },
        Err(e) => Err(DirError(format!("cannot use {}: {e}", path.display()))),
    }
}

fn move_file(from: &Path, to: &Path) -> Result<Moved, String> {
    match fs::rename(from, to) {
        Ok(()) => Ok(Moved::Moved),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Moved::Gone),
        Err(e) => Err(format!(
            "cannot move {} to {}: {e}",
            from.display(),
            to.display()
        )),
    }
}

/// Writes a file through a temporary name unique to this process and renames it into place,
/// so a reader (an agent, another run) never sees half of it. The temporary name starts with
/// `.`, which no reader of the directory looks at. It is created new (`O_EXCL`): whoever can
/// write to the share could otherwise plant a hard link there and have the site overwrite the
/// file it points to. A leftover of a killed run with the same process id is removed first
/// (removing a link never touches what it points to).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = hidden_beside(path, &format!("{}.tmp", std::process::id()));
    let create = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o644)
            .open(&tmp)
    };
    let mut f = match create() {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            fs::remove_file(&tmp)?;
            create()?
        }
        other => other?,
    };
    // Not synced here: `CapDir::sync_all` flushes the whole run at once.
    f.write_all(bytes)?;
    drop(f);
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// `dir/.<name>.<suffix>` for `dir/<name>`.
fn hidden_beside(path: &Path, suffix: &str) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.join(format!(".{name}.{suffix}"))
}

/// Replaces the content of `path` (a `.cfg`, rewritten at every run that changes it) so that a
/// reader sees the old file or the new one whole, as [`write_atomic`] does, but at a fraction of
/// its cost where the file system can swap two names (`renameat2(RENAME_EXCHANGE)`: ext4, XFS,
/// btrfs, tmpfs): the new content is written into a spare file kept beside it
/// (`.<name>.spare`), and the two names are swapped, so the spare then holds the old content
/// for the next write. A rename over an existing file costs a new inode, the old one's release
/// (with a discard on SSD-backed mounts) and, on ext4, an immediate writeback of the new
/// file's blocks; measured here, 5,000 replacements per second that way against 43,000 by
/// swapping, which is what lets `cap-sync` write a `.cfg` per client at the rate it imports
/// deltas. Where swapping is not supported (NFS, SMB), or the file does not exist yet, the
/// spare is renamed into place instead.
///
/// The spare is in a shared directory, so it is trusted no more than anything else there: it
/// must be a regular file with one link, owned by this user (a planted link or someone else's
/// file is removed and a new spare made), and it is locked while written, so two runs writing
/// one client's `.cfg` at once take turns (a run that waited re-checks that the name is still
/// its file: the other run's swap made it the live `.cfg`).
pub fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::{FileExt, MetadataExt};

    let spare = hidden_beside(path, "spare");
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    for _ in 0..8 {
        // Opened without O_CREAT first: creating takes the directory's lock exclusively even
        // when the file exists, and every other file of the run waits for it.
        let open = |create: bool| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(create)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .mode(0o644)
                .open(&spare)
        };
        let f = match open(false) {
            Err(e) if e.kind() == ErrorKind::NotFound => match open(true) {
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                other => other?,
            },
            // A symbolic link (not followed) or a directory planted as the spare: removed
            // where it can be, else written around.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::EISDIR)) => {
                if fs::remove_file(&spare).is_err() {
                    break;
                }
                continue;
            }
            other => other?,
        };
        let meta = f.metadata()?;
        if !meta.is_file() || meta.nlink() != 1 || meta.uid() != me {
            drop(f);
            fs::remove_file(&spare)?;
            continue;
        }
        // SAFETY: flock takes a descriptor `f` keeps open for the call.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // Still the spare? Another run's swap may have made this inode the live `.cfg`.
        match fs::symlink_metadata(&spare) {
            Ok(now) if now.ino() == meta.ino() && now.dev() == meta.dev() => {}
            _ => continue,
        }
        f.write_all_at(bytes, 0)?;
        if meta.len() > bytes.len() as u64 {
            f.set_len(bytes.len() as u64)?;
        }
        // Not synced here: `CapDir::sync_all` flushes the whole run at once.
        return match exchange(&spare, path) {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOENT | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
                ) =>
            {
                fs::rename(&spare, path)
            }
            Err(e) => Err(e),
        };
    }
    // Someone keeps planting the spare, or planted what cannot be removed: a temporary file
    // of this process then, as on a file system that cannot swap.
    write_atomic(path, bytes)
}

/// Swaps two names atomically (`renameat2(RENAME_EXCHANGE)`).
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let a = CString::new(a.as_os_str().as_bytes())?;
    let b = CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both paths are NUL-terminated strings that outlive the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_creates_the_boxes_and_refuses_symlinked_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CapDir::open(tmp.path()).unwrap();
        for p in [&dir.clidata, &dir.inbox, &dir.done, &dir.bad] {
            assert!(p.is_dir(), "{}", p.display());
        }
        let missing = CapDir::open(&tmp.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("create it (or mount the share) first"),
            "{missing}"
        );

        let other = tempfile::tempdir().unwrap();
        let evil = tempfile::tempdir().unwrap();
        fs::create_dir(other.path().join(INVENTRY_BOX)).unwrap();
        std::os::unix::fs::symlink(evil.path(), other.path().join(INVENTRY_BOX).join(DONE_DIR))
            .unwrap();
        let err = CapDir::open(other.path()).unwrap_err().to_string();
        assert!(err.contains("is a symbolic link"), "{err}");
    }

    #[test]
    fn reading_refuses_symlinks_and_oversized_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CapDir::open(tmp.path()).unwrap();
        let id = Uuid::new_v4();
        let name = format!("WEB01-{id}.inv");
        fs::write(dir.inbox.join(&name), b"0123456789").unwrap();
        assert_eq!(dir.read(&name, 10).unwrap().unwrap(), b"0123456789");
        assert!(
            dir.read(&name, 9)
                .unwrap_err()
                .contains("max_body_bytes is 9")
        );
        assert_eq!(
            dir.read(&format!("WEB01-{}.inv", Uuid::new_v4()), 10),
            Ok(None)
        );

        let secret = tmp.path().join("secret");
        fs::write(&secret, b"site secret").unwrap();
        let link = format!("WEB02-{id}.inv");
        std::os::unix::fs::symlink(&secret, dir.inbox.join(&link)).unwrap();
        assert!(dir.read(&link, 100).unwrap_err().contains("symbolic link"));
        let listing = dir.list().unwrap();
        assert_eq!(listing.waiting.len(), 1);
        assert_eq!(listing.not_files.len(), 1);
        assert_eq!(listing.not_files[0].file, link);
    }

    #[test]
    fn replacing_swaps_in_whole_files_and_keeps_a_spare() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("PLC01.cfg");
        let spare = tmp.path().join(".PLC01.cfg.spare");
        // The first write has nothing to swap with: the spare becomes the file.
        replace_file(&path, b"first, a longer content").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"first, a longer content");
        replace_file(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        // On a file system that swaps names (tmp directories here do), the old content waits
        // in the spare; a shorter new content is not followed by the old one's tail.
        if spare.exists() {
            assert_eq!(fs::read(&spare).unwrap(), b"first, a longer content");
        }
        replace_file(&path, b"third").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"third");
        let names: Vec<String> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names
                .iter()
                .all(|n| n == "PLC01.cfg" || n == ".PLC01.cfg.spare"),
            "{names:?}"
        );
    }

    #[test]
    fn a_planted_spare_or_temporary_file_never_sends_a_write_elsewhere() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let path = tmp.path().join("PLC01.cfg");
        fs::write(&path, b"old").unwrap();

        // A hard link as the spare: removed, a new spare made, the linked file untouched.
        fs::hard_link(&victim, tmp.path().join(".PLC01.cfg.spare")).unwrap();
        replace_file(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::read(&victim).unwrap(), b"precious");

        // A symbolic link as the spare: not followed.
        let _ = fs::remove_file(tmp.path().join(".PLC01.cfg.spare"));
        std::os::unix::fs::symlink(&victim, tmp.path().join(".PLC01.cfg.spare")).unwrap();
        replace_file(&path, b"newer").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"newer");
        assert_eq!(fs::read(&victim).unwrap(), b"precious");

        // A directory as the spare: written around, the directory left alone.
        let _ = fs::remove_file(tmp.path().join(".PLC01.cfg.spare"));
        fs::create_dir(tmp.path().join(".PLC01.cfg.spare")).unwrap();
        fs::write(tmp.path().join(".PLC01.cfg.spare/keep"), b"x").unwrap();
        replace_file(&path, b"newest").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"newest");
        assert!(tmp.path().join(".PLC01.cfg.spare/keep").is_file());
        fs::remove_dir_all(tmp.path().join(".PLC01.cfg.spare")).unwrap();

        // A hard link at this process's temporary name: removed, not written through.
        let reason = tmp.path().join("x.inv.reason");
        let planted = tmp
            .path()
            .join(format!(".x.inv.reason.{}.tmp", std::process::id()));
        fs::hard_link(&victim, &planted).unwrap();
        write_atomic(&reason, b"why\n").unwrap();
        assert_eq!(fs::read(&reason).unwrap(), b"why\n");
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert!(!planted.exists());
    }

    #[test]
    fn refused_files_are_listed_per_client_newest_first() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CapDir::open(tmp.path()).unwrap();
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        for (id, reason) in [(a, "first"), (b, "second")] {
            let file = format!("WEB01-{}.inv", id.hyphenated());
            fs::write(dir.inbox.join(&file), b"x").unwrap();
            assert_eq!(dir.to_bad(&file, reason), Ok(Moved::Moved));
            assert_eq!(dir.to_bad(&file, reason), Ok(Moved::Gone));
            // Modification times a second apart, whatever the file system's resolution.
            let when = SystemTime::UNIX_EPOCH
                + std::time::Duration::from_secs(if id == a { 100 } else { 200 });
            let f = File::options()
                .write(true)
                .open(dir.bad.join(&file))
                .unwrap();
            f.set_modified(when).unwrap();
        }
        let refused = dir.refused();
        let web01 = &refused[&ClientName::parse("WEB01").unwrap()];
        assert_eq!(
            web01
                .iter()
                .map(|r| (r.report_id, r.reason.as_str()))
                .collect::<Vec<_>>(),
            vec![(b, "second"), (a, "first")]
        );

        // A run killed between the move and the reason: still listed, and said so.
        let c = Uuid::from_u128(3);
        fs::write(dir.bad.join(format!("WEB02-{}.inv", c.hyphenated())), b"x").unwrap();
        let refused = dir.refused();
        assert_eq!(
            refused[&ClientName::parse("WEB02").unwrap()],
            vec![Refused {
                report_id: c,
                reason: "refused by the site (its reason was not written)".to_string()
            }]
        );
    }
}
