//! Packages installed by rpm (Fedora, RHEL, SUSE), from the rpm database under
//! `usr/lib/sysimage/rpm` or `var/lib/rpm`.
//!
//! Since rpm 4.16 (Fedora 33, RHEL 9) the database is SQLite, `rpmdb.sqlite`, whose table
//! `Packages` holds one rpm header blob per installed package. That file is read directly:
//! opened read-only and `immutable` (SQLite then takes no lock and writes no journal or shared
//! memory file under the root), and each header parsed by [`parse_header`] for the six tags
//! the inventory needs. An rpm transaction that is running keeps its newest changes in the
//! write-ahead log, which an immutable reader does not see; rpm checkpoints the log into the
//! database when it closes it (the fixture's log was empty after every `rpm` run), so the
//! next cycle sees them.
//!
//! Older databases (Berkeley DB `Packages` on RHEL 8 and before, NDB `Packages.db` on SUSE)
//! are still read by running `rpm --root <root> --dbpath <dir> -qa --qf …`, the one place where
//! a collector runs a program: those systems are supported for years still, and reading two
//! more database formats is not worth the code when the tool that knows them is on every one
//! of them. When no `rpm` program is on `PATH`, or it fails, the warning says that rpm packages
//! were not read and why.
//!
//! **Install-only packages.** rpm keeps several versions of some packages installed at once
//! (kernels, `gpg-pubkey`). Each installed version is its own item, so that a query for
//! "kernel older than X" sees every one: a name and architecture installed once keeps the key
//! `rpm/<name>/<arch>` like every other source, and one installed several times gives one item
//! per version, `rpm/<name>/<arch>/<[epoch:]version-release>`. The key of a package thus
//! changes when a second version is installed beside it or the last but one is removed; that
//! costs one removal and one addition in a delta, where keying every package by its version
//! would turn every update of any package into the same.
//!
//! Versions are written `[epoch:]version-release` the way rpm writes them: an epoch of 0 is
//! left out. A package without an architecture (`gpg-pubkey`) has the architecture `(none)`,
//! as `rpm -qa --qf %{ARCH}` prints it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use invsync_proto::{Attrs, Items};

use super::{add_each, package_attrs};
use crate::read::Reader;

/// Where the rpm database lives: the newer location first, as current distributions keep it
/// there and leave `var/lib/rpm` as a link to it.
pub(crate) const DB_DIRS: [&str; 2] = ["usr/lib/sysimage/rpm", "var/lib/rpm"];

/// The SQLite database's file name in a database directory.
const SQLITE_DB: &str = "rpmdb.sqlite";

/// The architecture of a package whose header names none, as rpm prints it.
const NO_ARCH: &str = "(none)";

const QUERY_FORMAT: &str = "%{NAME}\\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\\t%{ARCH}\\t%{SIZE}\\n";

/// Adds the installed packages; returns whether an rpm database is there.
pub(crate) fn collect(r: &mut Reader<'_>, items: &mut Items) -> bool {
    // A directory that exists but is empty is what installing the `rpm` tool on a Debian
    // host leaves behind; it is not a database.
    let Some(db) = DB_DIRS
        .iter()
        .find(|d| r.list_dir(d).is_some_and(|names| !names.is_empty()))
    else {
        return false;
    };
    let sqlite = format!("{db}/{SQLITE_DB}");
    let packages = if r.exists(&sqlite) {
        read_sqlite(r, &sqlite)
    } else {
        run_rpm(r, db)
    };
    add_packages(items, packages);
    true
}

/// One installed package, whichever way it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Package {
    name: String,
    /// `[epoch:]version-release`.
    version: String,
    arch: String,
    size: Option<u64>,
}

/// Adds the packages as items, one per installed version (see the module documentation).
/// The same name, architecture and version listed twice (a duplicate entry left by an
/// interrupted transaction) is one item.
fn add_packages(items: &mut Items, packages: Vec<Package>) {
    let mut by_name: BTreeMap<(String, String), Vec<(String, Attrs)>> = BTreeMap::new();
    for p in packages {
        let arch = if p.arch.is_empty() { NO_ARCH } else { &p.arch };
        let mut attrs = package_attrs("rpm", &p.name, &p.version, arch);
        if let Some(s) = p.size {
            attrs.insert("size_bytes".into(), s.to_string());
        }
        by_name
            .entry((p.name, arch.to_string()))
            .or_default()
            .push((p.version, attrs));
    }
    for ((name, arch), copies) in by_name {
        add_each(items, &format!("rpm/{name}/{arch}"), copies);
    }
}

/// Reads every header of an SQLite rpm database. A header that does not parse is skipped
/// with a warning naming its row; a database that cannot be opened or queried is one warning.
fn read_sqlite(r: &mut Reader<'_>, rel: &str) -> Vec<Package> {
    let path = r.path(rel);
    let mut out = Vec::new();
    let mut bad = Vec::new();
    let mut result = Ok(());
    // An rpm transaction checkpointing its log while the database is read (immutable: without
    // locks) can make a read fail; a second try at once usually comes after it, and spares
    // the site a cycle that reports every rpm package gone and the next that brings them back.
    for _ in 0..2 {
        out.clear();
        bad.clear();
        result = query_sqlite(&path, |hnum, parsed| match parsed {
            Ok(p) => out.push(p),
            Err(e) => bad.push((hnum, e)),
        });
        if result.is_ok() {
            break;
        }
    }
    for (hnum, e) in bad {
        r.warn(&format!(
            "rpm package {hnum} in {rel} was skipped: its header is malformed ({e})"
        ));
    }
    if let Err(e) = result {
        r.warn(&format!(
            "rpm packages were not read: {rel} is not a readable rpm database ({e})"
        ));
        return Vec::new();
    }
    out
}

/// Reads the headers of `Packages` in the order rpm added them and hands each to `each`.
///
/// A header holds the package's file list and digests and is often tens of kilobytes, while
/// the tags read here sit in its first kilobyte or two; a Fedora workstation's database is
/// over a hundred megabytes. So each header is read incrementally (SQLite's blob I/O), first
/// its counts and index, then its data up to the last wanted offset plus a little: only those
/// pages are read. A header whose wanted data lies further (never seen in rpm's own output) is
/// read whole.
fn query_sqlite(
    path: &Path,
    mut each: impl FnMut(i64, Result<Package, HeaderError>),
) -> rusqlite::Result<()> {
    use rusqlite::{Connection, MAIN_DB, OpenFlags};
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(sqlite_uri(path), flags)?;
    let hnums: Vec<i64> = conn
        .prepare("SELECT hnum FROM Packages ORDER BY hnum")?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut buf = Vec::new();
    // One blob handle moved from row to row: opening one compiles a statement each time.
    let mut handle = None;
    for hnum in hnums {
        let blob = match handle.as_mut() {
            None => handle.insert(conn.blob_open(MAIN_DB, c"Packages", c"blob", hnum, true)?),
            Some(b) => {
                b.reopen(hnum)?;
                b
            }
        };
        let total = blob.len();
        let read_to = |buf: &mut Vec<u8>, end: usize| -> rusqlite::Result<()> {
            let end = end.min(total);
            let start = buf.len();
            if end > start {
                buf.resize(end, 0);
                blob.read_at_exact(&mut buf[start..], start)?;
            }
            Ok(())
        };
        buf.clear();
        read_to(&mut buf, 8)?;
        let parsed = match counts(&buf, total) {
            Err(e) => Err(e),
            Ok(index_end) => {
                read_to(&mut buf, index_end)?;
                let want = index_end.saturating_add(wanted_end(&buf, index_end));
                read_to(&mut buf, want)?;
                let first = parse_prefix(&buf, total).map(|h| h.package());
                match first {
                    Err(HeaderError::BadEntry { .. }) if buf.len() < total => {
                        read_to(&mut buf, total)?;
                        parse_header(&buf).map(|h| h.package())
                    }
                    other => other,
                }
            }
        };
        each(hnum, parsed);
    }
    Ok(())
}

/// The `file:` URI that opens `path` immutable. The characters a URI gives a meaning to are
/// percent-encoded, so that a root such as `/srv/images/host#2` still names its file.
fn sqlite_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?immutable=1");
    uri
}

/// The rpm header tags the inventory reads (rpm's `lib/rpmtag.h`).
mod tag {
    pub(super) const NAME: u32 = 1000;
    pub(super) const VERSION: u32 = 1001;
    pub(super) const RELEASE: u32 = 1002;
    pub(super) const EPOCH: u32 = 1003;
    pub(super) const SIZE: u32 = 1009;
    pub(super) const ARCH: u32 = 1022;
    /// The 64-bit size, present instead of or beside `SIZE` for packages over 4 GiB.
    pub(super) const LONGSIZE: u32 = 5009;
}

/// The data types of header entries (rpm's `rpmTagType`).
mod kind {
    pub(super) const INT32: u32 = 4;
    pub(super) const INT64: u32 = 5;
    pub(super) const STRING: u32 = 6;
    pub(super) const STRING_ARRAY: u32 = 8;
    pub(super) const I18NSTRING: u32 = 9;
}

/// rpm's own bounds on a header (`hdrblobVerifyInfo`): at most 65,535 entries and 256 MiB of
/// data.
const MAX_ENTRIES: u32 = 0xffff;
const MAX_DATA: u32 = 256 << 20;

/// What an installed package's header says, as read by [`parse_header`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpmHeader<'a> {
    pub name: Cow<'a, str>,
    pub version: Cow<'a, str>,
    pub release: Cow<'a, str>,
    pub epoch: Option<u32>,
    /// `None` for packages without an architecture (`gpg-pubkey`).
    pub arch: Option<Cow<'a, str>>,
    /// The installed size in bytes (`LONGSIZE` when present, else `SIZE`).
    pub size: Option<u64>,
}

impl RpmHeader<'_> {
    /// `[epoch:]version-release`, without an epoch of 0, as rpm writes it.
    pub fn evr(&self) -> String {
        match self.epoch {
            Some(e) if e != 0 => format!("{e}:{}-{}", self.version, self.release),
            _ => format!("{}-{}", self.version, self.release),
        }
    }

    fn package(&self) -> Package {
        Package {
            name: self.name.to_string(),
            version: self.evr(),
            arch: self.arch.as_deref().unwrap_or(NO_ARCH).to_string(),
            size: self.size,
        }
    }
}

/// Why a header blob was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("{0} bytes is too short for an rpm header")]
    TooShort(usize),
    #[error("it declares {entries} entries and {data} bytes of data, beyond rpm's limits")]
    TooLarge { entries: u32, data: u32 },
    #[error("it declares {declared} bytes but is {actual} bytes long")]
    Length { declared: u64, actual: usize },
    #[error(
        "tag {tag} has type {kind}, offset {offset} and count {count}, which its data does not hold"
    )]
    BadEntry {
        tag: u32,
        kind: u32,
        offset: u32,
        count: u32,
    },
    #[error("it has no {0}")]
    Missing(&'static str),
}

/// Parses an rpm header as rpm stores it in its database (`headerExport`): two big-endian
/// 32-bit counts (index entries, data bytes), the index entries of 16 bytes each (tag, type,
/// offset into the data, count), then the data. Only NAME, VERSION, RELEASE, EPOCH, ARCH,
/// SIZE and LONGSIZE are looked at; every one of them is checked against the data (in bounds,
/// strings terminated, integers aligned as rpm aligns them) and anything else is refused with
/// an error, never a panic. NAME, VERSION and RELEASE must be there and not empty.
pub fn parse_header(blob: &[u8]) -> Result<RpmHeader<'_>, HeaderError> {
    parse_prefix(blob, blob.len())
}

/// A header's two counts, checked against rpm's limits and against the blob's length; the
/// end of the index.
fn counts(head: &[u8], total_len: usize) -> Result<usize, HeaderError> {
    if head.len() < 8 {
        return Err(HeaderError::TooShort(head.len()));
    }
    let (entries, data_len) = (be32(head, 0), be32(head, 4));
    if entries == 0 || entries > MAX_ENTRIES || data_len > MAX_DATA {
        return Err(HeaderError::TooLarge {
            entries,
            data: data_len,
        });
    }
    let declared = 8 + u64::from(entries) * 16 + u64::from(data_len);
    if declared != total_len as u64 {
        return Err(HeaderError::Length {
            declared,
            actual: total_len,
        });
    }
    Ok(8 + entries as usize * 16)
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(w)
}

/// Where the data of the tags read here ends at most, judged from the index alone: the
/// largest of their offsets plus room for a string. `head` holds at least the whole index.
fn wanted_end(head: &[u8], index_end: usize) -> usize {
    (8..index_end)
        .step_by(16)
        .filter(|&at| {
            matches!(
                be32(head, at),
                tag::NAME
                    | tag::VERSION
                    | tag::RELEASE
                    | tag::EPOCH
                    | tag::SIZE
                    | tag::ARCH
                    | tag::LONGSIZE
            )
        })
        .map(|at| be32(head, at + 8) as usize)
        .max()
        .map_or(0, |o| o.saturating_add(STRING_ROOM))
}

/// How many bytes past the last wanted offset are read at first: rpm's names, versions,
/// releases and architectures are far shorter.
const STRING_ROOM: usize = 512;

/// Parses a header of `total_len` bytes from `head`, a prefix of it that holds at least the
/// counts and the index. The data of a wanted tag beyond the prefix is a `BadEntry`, as data
/// beyond the header is; the caller reads the whole header then, and only that answer is
/// final.
fn parse_prefix(head: &[u8], total_len: usize) -> Result<RpmHeader<'_>, HeaderError> {
    let index_end = counts(head, total_len)?;
    if head.len() < index_end {
        return Err(HeaderError::TooShort(head.len()));
    }
    let data = &head[index_end..];
    let be32 = |at: usize| be32(head, at);

    let mut name = None;
    let mut version = None;
    let mut release = None;
    let mut epoch = None;
    let mut arch = None;
    let mut size = None;
    let mut long_size = None;
    for at in (8..index_end).step_by(16) {
        let (t, k, offset, count) = (be32(at), be32(at + 4), be32(at + 8), be32(at + 12));
        let bad = HeaderError::BadEntry {
            tag: t,
            kind: k,
            offset,
            count,
        };
        match t {
            tag::NAME => name = Some(string(data, k, offset, count).ok_or(bad)?),
            tag::VERSION => version = Some(string(data, k, offset, count).ok_or(bad)?),
            tag::RELEASE => release = Some(string(data, k, offset, count).ok_or(bad)?),
            tag::ARCH => arch = Some(string(data, k, offset, count).ok_or(bad)?),
            tag::EPOCH => epoch = Some(int(data, k, offset, count).ok_or(bad)? as u32),
            tag::SIZE => size = Some(int(data, k, offset, count).ok_or(bad)?),
            tag::LONGSIZE => long_size = Some(int(data, k, offset, count).ok_or(bad)?),
            _ => {}
        }
    }
    let name = name
        .filter(|s| !s.is_empty())
        .ok_or(HeaderError::Missing("NAME"))?;
    let version = version
        .filter(|s| !s.is_empty())
        .ok_or(HeaderError::Missing("VERSION"))?;
    let release = release
        .filter(|s| !s.is_empty())
        .ok_or(HeaderError::Missing("RELEASE"))?;
    Ok(RpmHeader {
        name,
        version,
        release,
        epoch,
        arch: arch.filter(|s| !s.is_empty()),
        size: long_size.or(size),
    })
}

/// The first string of a string entry: it starts at `offset` and ends at a NUL inside the
/// data. Names and versions are bytes to rpm; invalid UTF-8 is replaced.
fn string(data: &[u8], kind: u32, offset: u32, count: u32) -> Option<Cow<'_, str>> {
    let ok_kind = match kind {
        kind::STRING => count == 1,
        kind::STRING_ARRAY | kind::I18NSTRING => count >= 1,
        _ => false,
    };
    if !ok_kind {
        return None;
    }
    let rest = data.get(offset as usize..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&rest[..end]))
}

/// The first value of an INT32 or INT64 entry, which rpm aligns to its size within the data.
fn int(data: &[u8], kind: u32, offset: u32, count: u32) -> Option<u64> {
    let width = match kind {
        kind::INT32 => 4,
        kind::INT64 => 8,
        _ => return None,
    };
    let offset = offset as usize;
    if count == 0 || !offset.is_multiple_of(width) {
        return None;
    }
    let bytes = data.get(offset..offset.checked_add(width)?)?;
    Some(bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

/// Reads an old (Berkeley DB or NDB) database by running `rpm`.
fn run_rpm(r: &mut Reader<'_>, db: &str) -> Vec<Package> {
    let Some(rpm) = find_in_path("rpm") else {
        r.warn(&format!(
            "rpm packages were not read: an rpm database is at {db} but it is not SQLite and no rpm program is on PATH to read it"
        ));
        return Vec::new();
    };
    let output = Command::new(&rpm)
        .arg("--root")
        .arg(r.path(""))
        .arg("--dbpath")
        .arg(format!("/{db}"))
        .args(["-qa", "--qf", QUERY_FORMAT])
        .stdin(std::process::Stdio::null())
        .output();
    match output {
        Ok(out) if out.status.success() => {
            let text = crate::read::decode(out.stdout);
            parse_query(&text)
                .into_iter()
                .map(|rec| Package {
                    name: rec.name.to_string(),
                    version: rec.version,
                    arch: rec.arch.to_string(),
                    size: rec.size,
                })
                .collect()
        }
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let why = stderr
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no message");
            r.warn(&format!(
                "rpm packages were not read: {} failed ({}): {}",
                rpm.display(),
                out.status,
                why.trim()
            ));
            Vec::new()
        }
        Err(e) => {
            r.warn(&format!(
                "rpm packages were not read: cannot run {}: {}",
                rpm.display(),
                crate::read::io_message(&e)
            ));
            Vec::new()
        }
    }
}

/// The first executable file called `name` in the directories of `PATH`.
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// One line of the query output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpmRecord<'a> {
    pub name: &'a str,
    /// `[epoch:]version-release`, without a `0:` epoch.
    pub version: String,
    pub arch: &'a str,
    pub size: Option<u64>,
}

/// Parses the output of the query (`name\tepoch:version-release\tarch\tsize` a line). Lines
/// with fewer fields or an empty name are skipped.
pub fn parse_query(text: &str) -> Vec<RpmRecord<'_>> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split('\t');
            let name = f.next()?.trim();
            let version = f.next()?.trim();
            let arch = f.next()?.trim();
            let size = f.next().and_then(|s| s.trim().parse().ok());
            if name.is_empty() {
                return None;
            }
            let version = version.strip_prefix("0:").unwrap_or(version).to_string();
            Some(RpmRecord {
                name,
                version,
                arch,
                size,
            })
        })
        .collect()
}

/// Writes rpm headers the way `headerExport` does, for the unit tests; no production code
/// writes headers.
#[cfg(test)]
pub(crate) mod build {
    /// One entry: tag, type, count and its data (already encoded, unaligned).
    pub(crate) struct Entry {
        pub(crate) tag: u32,
        pub(crate) kind: u32,
        pub(crate) count: u32,
        pub(crate) data: Vec<u8>,
    }

    pub(crate) fn string(tag: u32, s: &str) -> Entry {
        let mut data = s.as_bytes().to_vec();
        data.push(0);
        Entry {
            tag,
            kind: super::kind::STRING,
            count: 1,
            data,
        }
    }

    pub(crate) fn int32(tag: u32, v: u32) -> Entry {
        Entry {
            tag,
            kind: super::kind::INT32,
            count: 1,
            data: v.to_be_bytes().to_vec(),
        }
    }

    pub(crate) fn int64(tag: u32, v: u64) -> Entry {
        Entry {
            tag,
            kind: super::kind::INT64,
            count: 1,
            data: v.to_be_bytes().to_vec(),
        }
    }

    /// The exported header: counts, index, data, each integer aligned to its width.
    pub(crate) fn header(entries: &[Entry]) -> Vec<u8> {
        let mut index = Vec::new();
        let mut data: Vec<u8> = Vec::new();
        for e in entries {
            let align = match e.kind {
                super::kind::INT32 => 4,
                super::kind::INT64 => 8,
                _ => 1,
            };
            while !data.len().is_multiple_of(align) {
                data.push(0);
            }
            index.extend_from_slice(&e.tag.to_be_bytes());
            index.extend_from_slice(&e.kind.to_be_bytes());
            index.extend_from_slice(&(data.len() as u32).to_be_bytes());
            index.extend_from_slice(&e.count.to_be_bytes());
            data.extend_from_slice(&e.data);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(&index);
        out.extend_from_slice(&data);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::build::{Entry, header, int32, int64, string};
    use super::*;

    fn kernel(version: &str, release: &str) -> Vec<u8> {
        header(&[
            string(tag::NAME, "kernel-core"),
            string(tag::VERSION, version),
            string(tag::RELEASE, release),
            int32(tag::SIZE, 41000),
            string(tag::ARCH, "x86_64"),
        ])
    }

    #[test]
    fn header_fields() {
        let blob = header(&[
            string(tag::NAME, "openssl-libs"),
            string(tag::VERSION, "3.2.2"),
            string(tag::RELEASE, "3.fc40"),
            int32(tag::EPOCH, 1),
            int32(tag::SIZE, 7_680_519),
            string(tag::ARCH, "x86_64"),
        ]);
        let h = parse_header(&blob).unwrap();
        assert_eq!(h.name, "openssl-libs");
        assert_eq!(h.evr(), "1:3.2.2-3.fc40");
        assert_eq!(h.arch.as_deref(), Some("x86_64"));
        assert_eq!(h.size, Some(7_680_519));

        // No epoch, an epoch of 0, no arch, a 64-bit size beside the 32-bit one.
        let blob = header(&[
            string(tag::NAME, "gpg-pubkey"),
            string(tag::VERSION, "a15b79cc"),
            string(tag::RELEASE, "63d04c2c"),
            int32(tag::EPOCH, 0),
            int32(tag::SIZE, 0),
            int64(tag::LONGSIZE, 5 << 30),
        ]);
        let h = parse_header(&blob).unwrap();
        assert_eq!(h.evr(), "a15b79cc-63d04c2c");
        assert_eq!(h.arch, None);
        assert_eq!(h.size, Some(5 << 30));
        assert_eq!(h.package().arch, "(none)");
    }

    #[test]
    fn header_refusals() {
        assert_eq!(parse_header(b""), Err(HeaderError::TooShort(0)));
        assert_eq!(
            parse_header(&[0, 0, 0, 0, 0, 0, 0, 0]),
            Err(HeaderError::TooLarge {
                entries: 0,
                data: 0
            })
        );
        assert_eq!(
            parse_header(&[0, 1, 0, 0, 0, 0, 0, 0]),
            Err(HeaderError::TooLarge {
                entries: 0x10000,
                data: 0
            })
        );
        let good = kernel("6.9.7", "200.fc40");
        assert!(parse_header(&good).is_ok());
        // Truncated, or with a byte too many.
        let short = &good[..good.len() - 1];
        assert!(matches!(
            parse_header(short),
            Err(HeaderError::Length { .. })
        ));
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(
            parse_header(&long),
            Err(HeaderError::Length { .. })
        ));
        // A string without its terminating NUL at the end of the data.
        let mut unterminated = header(&[string(tag::NAME, "x"), string(tag::VERSION, "1")]);
        let last = unterminated.len() - 1;
        unterminated[last] = b'z';
        assert!(matches!(
            parse_header(&unterminated),
            Err(HeaderError::BadEntry { tag: 1001, .. })
        ));
        // An offset beyond the data.
        let mut beyond = good.clone();
        beyond[8 + 8..8 + 12].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
        assert!(matches!(
            parse_header(&beyond),
            Err(HeaderError::BadEntry { tag: 1000, .. })
        ));
        // A misaligned integer, and an integer of the wrong type.
        let misaligned = header(&[
            string(tag::NAME, "a"),
            Entry {
                tag: tag::SIZE,
                kind: kind::INT32,
                count: 1,
                data: vec![1, 2, 3, 4],
            },
        ]);
        // "a\0" is 2 bytes, so the aligned writer put SIZE at 4; move it to 2.
        let mut m = misaligned.clone();
        m[8 + 16 + 8..8 + 16 + 12].copy_from_slice(&2u32.to_be_bytes());
        assert!(matches!(
            parse_header(&m),
            Err(HeaderError::BadEntry { tag: 1009, .. })
        ));
        let wrong_type = header(&[string(tag::NAME, "a"), string(tag::EPOCH, "1")]);
        assert!(matches!(
            parse_header(&wrong_type),
            Err(HeaderError::BadEntry { tag: 1003, .. })
        ));
        // Required tags missing or empty.
        let no_release = header(&[string(tag::NAME, "a"), string(tag::VERSION, "1")]);
        assert_eq!(
            parse_header(&no_release),
            Err(HeaderError::Missing("RELEASE"))
        );
        let empty_name = header(&[
            string(tag::NAME, ""),
            string(tag::VERSION, "1"),
            string(tag::RELEASE, "1"),
        ]);
        assert_eq!(parse_header(&empty_name), Err(HeaderError::Missing("NAME")));
        assert_eq!(HeaderError::Missing("NAME").to_string(), "it has no NAME");
    }

    #[test]
    fn install_only_packages_are_one_item_per_version() {
        let pkgs = [
            kernel("6.9.7", "200.fc40"),
            kernel("6.8.5", "301.fc40"),
            kernel("6.8.5", "301.fc40"),
        ];
        let mut items = Items::new();
        add_packages(
            &mut items,
            pkgs.iter()
                .map(|b| parse_header(b).unwrap().package())
                .chain([Package {
                    name: "bash".into(),
                    version: "5.2.26-3.fc40".into(),
                    arch: "x86_64".into(),
                    size: None,
                }])
                .collect(),
        );
        let keys: Vec<&str> = items.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "rpm/bash/x86_64",
                "rpm/kernel-core/x86_64/6.8.5-301.fc40",
                "rpm/kernel-core/x86_64/6.9.7-200.fc40",
            ]
        );
        let k = &items["rpm/kernel-core/x86_64/6.9.7-200.fc40"];
        assert_eq!(k["version"], "6.9.7-200.fc40");
        assert_eq!(k["name"], "kernel-core");
        assert_eq!(k["size_bytes"], "41000");
        assert!(!items["rpm/bash/x86_64"].contains_key("size_bytes"));
    }

    #[test]
    fn sqlite_database() {
        let dir = tempfile::tempdir().unwrap();
        let db_dir = dir.path().join("usr/lib/sysimage/rpm");
        std::fs::create_dir_all(&db_dir).unwrap();
        let conn = rusqlite::Connection::open(db_dir.join(SQLITE_DB)).unwrap();
        conn.execute_batch(
            "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL);",
        )
        .unwrap();
        // The last wanted string longer than what is read at first past its offset makes the
        // reader read the whole header.
        let long = "x".repeat(STRING_ROOM * 2);
        let long_arch = header(&[
            string(tag::NAME, "long"),
            string(tag::VERSION, "1"),
            string(tag::RELEASE, "1"),
            string(tag::ARCH, &long),
            Entry {
                tag: 5000,
                kind: 7,
                count: 4096,
                data: vec![0; 4096],
            },
        ]);
        for blob in [
            kernel("6.9.7", "200.fc40"),
            b"garbage".to_vec(),
            kernel("6.8.5", "301.fc40"),
            long_arch,
        ] {
            conn.execute("INSERT INTO Packages (blob) VALUES (?1)", [blob])
                .unwrap();
        }
        drop(conn);
        let before: Vec<String> = std::fs::read_dir(&db_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let mut r = Reader::new(dir.path(), "sw");
        let mut items = Items::new();
        assert!(collect(&mut r, &mut items));
        assert_eq!(items.len(), 3);
        assert_eq!(items[&format!("rpm/long/{long}")]["arch"], long);
        assert_eq!(
            r.into_warnings(),
            [
                "sw: rpm package 2 in usr/lib/sysimage/rpm/rpmdb.sqlite was skipped: its header is malformed (7 bytes is too short for an rpm header)"
            ]
        );
        // Nothing was written beside the database (no journal, no shared memory file).
        let after: Vec<String> = std::fs::read_dir(&db_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(before, after);
    }

    #[test]
    fn not_a_database_is_one_warning() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("var/lib/rpm")).unwrap();
        let mut r = Reader::new(dir.path(), "sw");
        let mut items = Items::new();
        // An empty directory is not a database.
        assert!(!collect(&mut r, &mut items));
        std::fs::write(
            dir.path().join("var/lib/rpm/rpmdb.sqlite"),
            b"not sqlite at all, but long enough to have a header of a hundred bytes or so......",
        )
        .unwrap();
        assert!(collect(&mut r, &mut items));
        let w = r.into_warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with(
                "sw: rpm packages were not read: var/lib/rpm/rpmdb.sqlite is not a readable rpm database ("
            ),
            "{w:?}"
        );
        assert!(items.is_empty());
    }

    #[test]
    fn uri_escapes() {
        assert_eq!(
            sqlite_uri(Path::new("/srv/a b#2?x%/rpmdb.sqlite")),
            "file:/srv/a%20b%232%3Fx%25/rpmdb.sqlite?immutable=1"
        );
    }

    #[test]
    fn query_output() {
        let text = "bash\t0:5.2.26-3.fc40\tx86_64\t8311442\nopenssl-libs\t1:3.2.2-3.fc40\tx86_64\t7680519\n\
                    gpg-pubkey\t0:a15b79cc-63d04c2c\t(none)\t0\n\nshort\tline\n\t0:1-1\tx\t1\nodd\t0:1-1\tnoarch\tbig\n";
        let recs = parse_query(text);
        assert_eq!(recs.len(), 4);
        assert_eq!(
            recs[0],
            RpmRecord {
                name: "bash",
                version: "5.2.26-3.fc40".into(),
                arch: "x86_64",
                size: Some(8311442)
            }
        );
        assert_eq!(recs[1].version, "1:3.2.2-3.fc40");
        assert_eq!(recs[2].arch, "(none)");
        assert_eq!(recs[3].size, None);
        assert!(parse_query("").is_empty());
        assert!(parse_query("\u{fffd}\u{fffd}").is_empty());
    }

    #[test]
    fn old_database_without_rpm_program_is_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("var/lib/rpm")).unwrap();
        std::fs::write(dir.path().join("var/lib/rpm/Packages"), b"").unwrap();
        // PATH is process-wide, so this test does not change it; whether or not rpm is
        // installed here, an empty Berkeley DB file is not read and says so.
        let mut r = Reader::new(dir.path(), "sw");
        let mut items = Items::new();
        assert!(collect(&mut r, &mut items));
        let w = r.into_warnings();
        assert_eq!(w.len(), 1);
        assert!(
            w[0].starts_with("sw: rpm packages were not read: "),
            "{w:?}"
        );
        assert!(items.is_empty());
    }

    #[test]
    fn path_search() {
        assert!(find_in_path("sh").is_some());
        assert!(find_in_path("no-such-program-invsync").is_none());
    }
}
