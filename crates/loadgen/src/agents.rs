//! The agents file: who `enroll` enrolled and what the site acknowledged since, so that a run
//! of 250,000 agents enrolls once and `full`, `delta` and `checkin` build on each other.
//!
//! Text, one line per agent after a header line, about 120 bytes an agent:
//!
//! ```text
//! invsync-loadgen-agents 1 site=S1 prefix=LG seed=42 packages=1500 changes=3
//! 1 <client token> <hw version> <sw version> <sw round>
//! ```
//!
//! * The header fixes the fleet ([`FleetSpec`]): every agent's inventory follows from it, the
//!   agent's index and its round, so nothing else of the inventory is kept.
//! * A version is what the site acknowledged for that class; 0 means none is known (not sent
//!   yet, or the last report's outcome is unknown): `full` sends one, `delta` and `checkin`
//!   refuse to start until it has.
//! * The round is which of the agent's software snapshots the site holds (0 after `full`'s
//!   first report; each accepted delta adds one).
//!
//! `enroll` appends lines as agents enroll, so an interrupted enrollment resumes; readers keep
//! the last line of an index. Every mode rewrites the whole file (sorted) through a temporary
//! file and a rename, so a crash leaves the old file or the new one.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use invsync_proto::exit::Exit;
use invsync_proto::wire::ClientToken;

use crate::inventory::FleetSpec;

const MAGIC: &str = "invsync-loadgen-agents";
const FORMAT: u32 = 1;

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
        if words.next()? != MAGIC || words.next()?.parse::<u32>().ok()? != FORMAT {
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
    fn line(&self) -> String {
        format!(
            "{} {} {} {} {}\n",
            self.index, self.token, self.hw_version, self.sw_version, self.sw_round
        )
    }

    fn parse(line: &str) -> Option<Record> {
        let w: Vec<&str> = line.split_whitespace().collect();
        let [index, token, hw, sw, round] = w.as_slice() else {
            return None;
        };
        ClientToken::parse(token)?;
        let r = Record {
            index: index.parse().ok().filter(|&i| i >= 1)?,
            token: token.to_string(),
            hw_version: hw.parse().ok().filter(|&v| v >= 0)?,
            sw_version: sw.parse().ok().filter(|&v| v >= 0)?,
            sw_round: round.parse().ok()?,
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
                    format!("not an agents file (its first line should start with `{MAGIC} {FORMAT}`); `invsync-loadgen enroll` writes one"),
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
                        "line {} is not `<index> <client token> <hw version> <sw version> <sw round>`",
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
        fs::remove_dir_all(&dir).unwrap();
    }
}
