//! The agents file: who `enroll` enrolled and what the site acknowledged since, so that a run
//! of 250,000 agents enrolls once, `full`, `delta` and `checkin` build on each other, and
//! `verify` can check afterwards that the site still holds every report it acknowledged.
//!
//! Text, one line per agent after a header line, about 260 bytes an agent:
//!
//! ```text
//! invsync-loadgen-agents 2 site=S1 prefix=LG seed=42 packages=1500 changes=3
//! 1 <client token> <hw version> <sw version> <sw round> <hw ack> <sw ack>
//! ```
//!
//! * The header fixes the fleet ([`FleetSpec`]): every agent's inventory follows from it, the
//!   agent's index and its round, so nothing else of the inventory is kept.
//! * A version is what the agent builds on: the version the site acknowledged last for that
//!   class, or 0 when none is known (not sent yet, or the last report got no answer, so the
//!   site may hold it or not): `full` sends one, `delta` and `checkin` refuse to start until
//!   it has.
//! * The round is which of the agent's software snapshots the site holds (0 after `full`'s
//!   first report; each accepted delta adds one).
//! * An ack ([`Ack`], `<version>:<hash hex>`, or `-` for none) is the highest version the site
//!   answered `accepted` for that class, with the hash it acknowledged. Unlike the version
//!   above it is never forgotten: a report that got no answer leaves it as it was, because
//!   the acknowledgement before it still holds. It is what `verify` checks, so it must never
//!   claim more than the site acknowledged.
//!
//! Format 1 files (written before acks were kept: five fields a line) are read with no acks,
//! and written back as format 2.
//!
//! `enroll` appends lines as agents enroll, so an interrupted enrollment resumes; readers keep
//! the last line of an index. Every mode rewrites the whole file (sorted) through a temporary
//! file and a rename, so a crash leaves the old file or the new one.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use invsync_proto::Class;
use invsync_proto::exit::Exit;
use invsync_proto::inventory::Digest;
use invsync_proto::wire::ClientToken;

use crate::inventory::FleetSpec;

const MAGIC: &str = "invsync-loadgen-agents";
/// The format written; 1 (no acks) is still read.
const FORMAT: u32 = 2;

/// The header: the site the agents belong to and the fleet they form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The site's code (`GET /api/v1/site`), to refuse running against another site.
    pub site: String,
    pub prefix: String,
    pub spec: FleetSpec,
}

/// One enrolled agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `LG00001` is 1.
    pub index: usize,
    pub token: String,
    pub hw_version: i64,
    pub sw_version: i64,
    pub sw_round: u64,
    /// The highest hw version the site acknowledged, kept across failed requests.
    pub hw_ack: Option<Ack>,
    /// The highest sw version the site acknowledged, kept across failed requests.
    pub sw_ack: Option<Ack>,
}

/// The site answered `accepted` with this version and hash for one class of an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub version: i64,
    pub hash: Digest,
}

impl Ack {
    /// The file's form: `<version>:<hash hex>`, or `-` for none.
    fn field(ack: Option<Ack>) -> String {
        ack.map_or("-".to_string(), |a| format!("{}:{}", a.version, a.hash))
    }

    fn parse_field(raw: &str) -> Option<Option<Ack>> {
        if raw == "-" {
            return Some(None);
        }
        let (version, hash) = raw.split_once(':')?;
        Some(Some(Ack {
            version: version.parse().ok().filter(|&v| v >= 1)?,
            hash: Digest::from_hex(hash)?,
        }))
    }

    /// Of two acknowledgements of a class, the one to keep: the higher version. At an equal
    /// version the first one stays: a site that acknowledges a version twice with other
    /// hashes lost the first, and `verify` must still see the one it acknowledged first.
    pub fn keep(old: Option<Ack>, new: Ack) -> Ack {
        match old {
            Some(o) if o.version >= new.version => o,
            _ => new,
        }
    }
}

/// The whole file, records sorted by index.
#[derive(Debug, Clone)]
pub struct AgentsFile {
    pub header: Header,
    pub agents: Vec<Record>,
}

impl Header {
    fn line(&self) -> String {
        format!(
            "{MAGIC} {FORMAT} site={} prefix={} seed={} packages={} changes={}\n",
            self.site, self.prefix, self.spec.seed, self.spec.packages, self.spec.changes
        )
    }

    fn parse(line: &str) -> Option<Header> {
        let mut words = line.split_whitespace();
        if words.next()? != MAGIC || !(1..=FORMAT).contains(&words.next()?.parse::<u32>().ok()?) {
            return None;
        }
        let mut fields = BTreeMap::new();
        for w in words {
            let (k, v) = w.split_once('=')?;
            fields.insert(k, v);
        }
        Some(Header {
            site: fields.get("site")?.to_string(),
            prefix: fields.get("prefix")?.to_string(),
            spec: FleetSpec {
                seed: fields.get("seed")?.parse().ok()?,
                packages: fields.get("packages")?.parse().ok()?,
                changes: fields.get("changes")?.parse().ok()?,
            },
        })
    }
}

impl Record {
    /// A newly enrolled agent: nothing sent, nothing acknowledged.
    pub fn enrolled(index: usize, token: String) -> Record {
        Record {
            index,
            token,
            hw_version: 0,
            sw_version: 0,
            sw_round: 0,
            hw_ack: None,
            sw_ack: None,
        }
    }

    /// What the site acknowledged of `class`.
    pub fn ack(&self, class: Class) -> Option<Ack> {
        match class {
            Class::Hw => self.hw_ack,
            Class::Sw => self.sw_ack,
        }
    }

    fn line(&self) -> String {
        format!(
            "{} {} {} {} {} {} {}\n",
            self.index,
            self.token,
            self.hw_version,
            self.sw_version,
            self.sw_round,
            Ack::field(self.hw_ack),
            Ack::field(self.sw_ack)
        )
    }

    fn parse(line: &str) -> Option<Record> {
        let w: Vec<&str> = line.split_whitespace().collect();
        // Format 1 had no acks: what it acknowledged is unknown, so nothing is claimed.
        let (index, token, hw, sw, round, hw_ack, sw_ack) = match w.as_slice() {
            [index, token, hw, sw, round] => (index, token, hw, sw, round, None, None),
            [index, token, hw, sw, round, hw_ack, sw_ack] => (
                index,
                token,
                hw,
                sw,
                round,
                Ack::parse_field(hw_ack)?,
                Ack::parse_field(sw_ack)?,
            ),
            _ => return None,
        };
        ClientToken::parse(token)?;
        let r = Record {
            index: index.parse().ok().filter(|&i| i >= 1)?,
            token: token.to_string(),
            hw_version: hw.parse().ok().filter(|&v| v >= 0)?,
            sw_version: sw.parse().ok().filter(|&v| v >= 0)?,
            sw_round: round.parse().ok()?,
            hw_ack,
            sw_ack,
        };
        Some(r)
    }
}

/// A bad agents file is a usage error (exit 2): the user named the wrong file.
fn bad(path: &Path, why: impl std::fmt::Display) -> anyhow::Error {
    Exit::usage(format!("--agents-file {}: {why}", path.display())).into()
}

impl AgentsFile {
    /// Reads and checks the file; `Ok(None)` when it does not exist.
    pub fn read(path: &Path) -> Result<Option<AgentsFile>> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(bad(path, format!("cannot read it: {e}"))),
        };
        let mut lines = text.lines();
        let header = lines
            .next()
            .and_then(Header::parse)
            .ok_or_else(|| {
                bad(
                    path,
                    format!("not an agents file (its first line should start with `{MAGIC} {FORMAT}` or `{MAGIC} 1`); `invsync-loadgen enroll` writes one"),
                )
            })?;
        let mut by_index = BTreeMap::new();
        for (n, line) in lines.enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let r = Record::parse(line).ok_or_else(|| {
                bad(
                    path,
                    format!(
                        "line {} is not `<index> <client token> <hw version> <sw version> <sw round> <hw ack> <sw ack>`",
                        n + 2
                    ),
                )
            })?;
            // An interrupted enrollment resumed: the later line wins.
            by_index.insert(r.index, r);
        }
        Ok(Some(AgentsFile {
            header,
            agents: by_index.into_values().collect(),
        }))
    }

    /// Reads a file that must exist (for `full`, `delta`, `checkin`).
    pub fn read_existing(path: &Path) -> Result<AgentsFile> {
        AgentsFile::read(path)?.ok_or_else(|| {
            bad(
                path,
                "no such file; enroll agents first with `invsync-loadgen enroll --agents-file FILE`",
            )
        })
    }

    /// Writes the whole file atomically (temporary file, then rename).
    pub fn write(&self, path: &Path) -> Result<()> {
        let tmp = tmp_path(path);
        let write = || -> std::io::Result<()> {
            let mut w = BufWriter::new(fs::File::create(&tmp)?);
            w.write_all(self.header.line().as_bytes())?;
            for r in &self.agents {
                w.write_all(r.line().as_bytes())?;
            }
            w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            fs::rename(&tmp, path)
        };
        write().with_context(|| format!("cannot write the agents file {}", path.display()))
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Appends records as agents enroll, so an interrupted `enroll` loses at most the last
/// second's (those agents are enrolled again, under the same machine id, on resumption).
pub struct Appender {
    out: BufWriter<fs::File>,
}

impl Appender {
    /// Opens `path` for appending, writing `header` first when the file is new.
    pub fn open(path: &Path, header: &Header, existing: bool) -> Result<Appender> {
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open the agents file {}", path.display()))?;
        let mut out = BufWriter::new(file);
        if !existing {
            out.write_all(header.line().as_bytes())?;
        }
        Ok(Appender { out })
    }

    pub fn push(&mut self, r: &Record) -> Result<()> {
        self.out
            .write_all(r.line().as_bytes())
            .context("cannot append to the agents file")
    }

    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().context("cannot write the agents file")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "67e55044-10b1-426f-9247-bb680e5fe0c8.0000000000000000000000000000000000000000000000000000000000000001";

    #[test]
    fn round_trip_and_resumed_lines() {
        let dir = std::env::temp_dir().join(format!("lg-agents-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("agents");
        let header = Header {
            site: "S1".into(),
            prefix: "LG".into(),
            spec: FleetSpec {
                seed: 7,
                packages: 1500,
                changes: 3,
            },
        };
        let rec = |index, sw_version| Record {
            index,
            token: TOKEN.into(),
            hw_version: 1,
            sw_version,
            sw_round: 2,
            hw_ack: Some(Ack {
                version: 1,
                hash: Digest([7; 32]),
            }),
            sw_ack: (sw_version > 0).then_some(Ack {
                version: sw_version,
                hash: Digest([9; 32]),
            }),
        };
        let mut a = Appender::open(&path, &header, false).unwrap();
        a.push(&rec(2, 0)).unwrap();
        a.push(&rec(1, 0)).unwrap();
        a.push(&rec(2, 5)).unwrap();
        a.flush().unwrap();
        drop(a);
        let f = AgentsFile::read(&path).unwrap().unwrap();
        assert_eq!(f.header, header);
        assert_eq!(f.agents, vec![rec(1, 0), rec(2, 5)]);
        f.write(&path).unwrap();
        assert_eq!(AgentsFile::read(&path).unwrap().unwrap().agents, f.agents);

        fs::write(&path, "hello\n").unwrap();
        let e = AgentsFile::read(&path).unwrap_err();
        assert!(format!("{e:#}").contains("not an agents file"), "{e:#}");
        fs::write(&path, format!("{}1 nottoken 0 0 0\n", header.line())).unwrap();
        let e = AgentsFile::read(&path).unwrap_err();
        assert!(format!("{e:#}").contains("line 2"), "{e:#}");
        assert!(AgentsFile::read(&dir.join("missing")).unwrap().is_none());

        // A format-1 file (no acks) still reads, claiming nothing acknowledged.
        fs::write(
            &path,
            format!(
                "{MAGIC} 1 site=S1 prefix=LG seed=7 packages=1500 changes=3\n3 {TOKEN} 1 4 2\n"
            ),
        )
        .unwrap();
        let f = AgentsFile::read(&path).unwrap().unwrap();
        assert_eq!(f.header, header);
        assert_eq!(
            (
                f.agents[0].sw_version,
                f.agents[0].hw_ack,
                f.agents[0].sw_ack
            ),
            (4, None, None)
        );
        fs::write(&path, format!("{}1 {TOKEN} 1 1 0 1:zz -\n", header.line())).unwrap();
        let e = AgentsFile::read(&path).unwrap_err();
        assert!(format!("{e:#}").contains("line 2"), "{e:#}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_highest_acknowledgement_is_kept() {
        let ack = |version, h| Ack {
            version,
            hash: Digest([h; 32]),
        };
        assert_eq!(Ack::keep(None, ack(3, 1)), ack(3, 1));
        assert_eq!(Ack::keep(Some(ack(3, 1)), ack(4, 2)), ack(4, 2));
        // A lower version (a site that lost data and took a full report again) does not
        // erase what was acknowledged, nor does an equal version with another hash.
        assert_eq!(Ack::keep(Some(ack(4, 2)), ack(2, 3)), ack(4, 2));
        assert_eq!(Ack::keep(Some(ack(4, 2)), ack(4, 5)), ack(4, 2));
    }
}
