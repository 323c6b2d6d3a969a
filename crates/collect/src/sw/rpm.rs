//! Packages installed by rpm (Fedora, RHEL, SUSE), from the rpm database under
//! `var/lib/rpm` or `usr/lib/sysimage/rpm`.
//!
//! The rpm database is a Berkeley DB, NDB or SQLite file depending on the distribution and
//! its age, so it is read by running `rpm --root <root> --dbpath <dir> -qa --qf …`, the one
//! place where a collector runs a program: reading three database formats is not worth the
//! code when the tool that knows them is on every rpm system. When the database is there but
//! no `rpm` program is on `PATH`, or `rpm` fails, the warning says that rpm packages were not
//! read and why. `%{EPOCHNUM}` prints `0` for a package without an epoch; that `0:` is dropped
//! so that the version is written the way rpm itself writes it.

use std::path::{Path, PathBuf};
use std::process::Command;

use invsync_proto::Items;

use super::add_package;
use crate::read::Reader;

/// Where the rpm database lives: the newer location first, as current distributions keep it
/// there and leave `var/lib/rpm` as a link to it.
pub(crate) const DB_DIRS: [&str; 2] = ["usr/lib/sysimage/rpm", "var/lib/rpm"];

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
    let Some(rpm) = find_in_path("rpm") else {
        r.warn(&format!(
            "rpm packages were not read: an rpm database is at {db} but no rpm program is on PATH"
        ));
        return true;
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
            for rec in parse_query(&text) {
                add_package(items, "rpm", rec.name, &rec.version, rec.arch, rec.size);
            }
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
        }
        Err(e) => {
            r.warn(&format!(
                "rpm packages were not read: cannot run {}: {}",
                rpm.display(),
                crate::read::io_message(&e)
            ));
        }
    }
    true
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn database_without_rpm_program_is_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("var/lib/rpm")).unwrap();
        let mut r = Reader::new(dir.path(), "sw");
        let mut items = Items::new();
        // An empty directory is not a database.
        assert!(!collect(&mut r, &mut items));
        std::fs::write(dir.path().join("var/lib/rpm/rpmdb.sqlite"), b"").unwrap();
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
