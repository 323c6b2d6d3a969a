//! `verify`: whether the site still holds every report it acknowledged to the agents of the
//! agents file, so that a run that killed or restarted the site proves (or disproves) that
//! no acknowledged report was lost.
//!
//! The agents file keeps, per agent and class, the highest version the site answered
//! `accepted` for and the hash it acknowledged (`agents.rs`); a request that got no answer
//! leaves that record as it was. For each agent with such a record, `verify` asks the admin
//! API (`GET /api/v1/clients/{name}`, the admin token from `--site-dir`) what the site holds,
//! and judges each acknowledged class ([`judge`]):
//!
//! * the site's version is higher: **later** (a report whose answer never arrived, which the
//!   site may or may not have stored, or one sent after); fine;
//! * the same version with the same hash: **held**; fine;
//! * a lower version, the same version with another hash, no snapshot of the class, or no
//!   such client: **lost**.
//!
//! It prints a summary and every loss, and exits 1 when anything was lost or the site could
//! not be asked about an agent (nothing is proven then), 0 otherwise. It sends no report and
//! changes nothing at the site. The admin API answers with each snapshot's items, so at 1,500
//! packages an agent costs the site one snapshot read and ~200 KB of JSON.
//!
//! Results (`--json`, one object): `mode` (`"verify"`), `site`, `site_code`, `agents_file`,
//! `agents` (in the file), `checked` (agents with an acknowledgement, asked about),
//! `acknowledged` (class snapshots judged), `held`, `later`, `lost` (counts), `losses` (each:
//! `agent`, `class`, `acknowledged` {`version`, `hash`}, `site` {`version`, `hash`} or `null`),
//! `unchecked` (agents the site could not be asked about), `error_messages` (up to 5),
//! `seconds`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use invsync_proto::inventory::Digest;
use invsync_proto::wire;
use invsync_proto::{Class, ClientName};
use serde::{Deserialize, Serialize};

use super::drive::{self, SiteArgs};
use crate::agents::{Ack, Record};
use crate::http::{Conn, Request};
use crate::sim;
use crate::site::Site;

/// Distinct error messages kept for the report.
const MAX_ERRORS_SHOWN: usize = 5;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub site: SiteArgs,
}

/// A version and hash, acknowledged by the site or held by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snap {
    pub version: i64,
    pub hash: Digest,
}

impl From<Ack> for Snap {
    fn from(a: Ack) -> Snap {
        Snap {
            version: a.version,
            hash: a.hash,
        }
    }
}

/// What the site holds of one acknowledged class, against the acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The acknowledged version with the acknowledged hash.
    Held,
    /// A later version.
    Later,
    /// Less than was acknowledged.
    Lost,
}

/// The rule: the site must hold the acknowledged version or a later one, and at the
/// acknowledged version the acknowledged hash. `held` is `None` when the site has no
/// snapshot of the class (or no such client).
pub fn judge(acknowledged: Ack, held: Option<Snap>) -> Verdict {
    match held {
        Some(h) if h.version > acknowledged.version => Verdict::Later,
        Some(h) if h.version == acknowledged.version && h.hash == acknowledged.hash => {
            Verdict::Held
        }
        _ => Verdict::Lost,
    }
}

/// One lost acknowledged report.
#[derive(Debug, Clone, Serialize)]
pub struct Loss {
    pub agent: String,
    pub class: Class,
    pub acknowledged: Snap,
    /// What the site holds of the class; `null`: nothing (or no such client).
    pub site: Option<Snap>,
}

/// The part of `GET /api/v1/clients/{name}` that `verify` reads (the items are skipped).
#[derive(Debug, Deserialize)]
struct Held {
    hw: Option<Snap>,
    sw: Option<Snap>,
}

impl Held {
    fn of(&self, class: Class) -> Option<Snap> {
        match class {
            Class::Hw => self.hw,
            Class::Sw => self.sw,
        }
    }
}

/// The results (`--json`: this object; field names are stable).
#[derive(Debug, Serialize)]
pub struct Results {
    pub mode: &'static str,
    pub site: String,
    pub site_code: String,
    pub agents_file: String,
    pub agents: usize,
    pub checked: u64,
    pub acknowledged: u64,
    pub held: u64,
    pub later: u64,
    pub lost: u64,
    pub losses: Vec<Loss>,
    pub unchecked: u64,
    pub error_messages: Vec<String>,
    pub seconds: f64,
}

/// What the checkers share.
struct Shared {
    site: Site,
    timeout: Duration,
    /// Agents with an acknowledgement, with their names.
    todo: Vec<(ClientName, Record)>,
    next: AtomicUsize,
    tally: Mutex<Tally>,
}

#[derive(Default)]
struct Tally {
    checked: u64,
    acknowledged: u64,
    held: u64,
    later: u64,
    losses: Vec<(usize, Loss)>,
    unchecked: u64,
    errors: Vec<String>,
}

pub async fn apply(args: Args) -> Result<()> {
    let a = &args.site;
    let (site, code, file) = drive::load(a, None).await?;
    let mut todo = Vec::new();
    for r in &file.agents {
        if r.hw_ack.is_some() || r.sw_ack.is_some() {
            todo.push((sim::agent_name(&file.header.prefix, r.index)?, r.clone()));
        }
    }
    drive::progress(format!(
        "verify: {} of the {} agents in {} have acknowledged reports; asking site {code} at {}, {} at a time",
        todo.len(),
        file.agents.len(),
        a.agents_file.display(),
        site.url(),
        a.concurrency
    ));
    let started = Instant::now();
    let shared = Arc::new(Shared {
        site: site.clone(),
        timeout: a.timeout,
        todo,
        next: AtomicUsize::new(0),
        tally: Mutex::new(Tally::default()),
    });
    let mut checkers = tokio::task::JoinSet::new();
    for _ in 0..(a.concurrency as usize).min(shared.todo.len()) {
        checkers.spawn(checker(shared.clone()));
    }
    while let Some(joined) = checkers.join_next().await {
        joined.map_err(|e| anyhow!("a verify task panicked: {e}"))?;
    }
    let mut tally = std::mem::take(&mut *shared.tally.lock().unwrap_or_else(|p| p.into_inner()));
    tally.losses.sort_by_key(|(index, l)| (*index, l.class));
    let results = Results {
        mode: "verify",
        site: site.url(),
        site_code: code,
        agents_file: a.agents_file.display().to_string(),
        agents: file.agents.len(),
        checked: tally.checked,
        acknowledged: tally.acknowledged,
        held: tally.held,
        later: tally.later,
        lost: tally.losses.len() as u64,
        losses: tally.losses.into_iter().map(|(_, l)| l).collect(),
        unchecked: tally.unchecked,
        error_messages: tally.errors,
        seconds: started.elapsed().as_secs_f64(),
    };
    results.finish(a.json)
}

/// Takes the next agent until none is left, and judges what the site holds of it.
async fn checker(shared: Arc<Shared>) {
    let mut conn: Option<Conn> = None;
    loop {
        let i = shared.next.fetch_add(1, Ordering::SeqCst);
        let Some((name, record)) = shared.todo.get(i) else {
            return;
        };
        let path = format!("{}/{name}", wire::API_CLIENTS);
        let answer = ask(&shared, &mut conn, &path).await;
        let mut t = shared.tally.lock().unwrap_or_else(|p| p.into_inner());
        let held = match answer {
            Ok(held) => held,
            Err(e) => {
                t.unchecked += 1;
                let message = format!("{name}: {e:#}");
                if t.errors.len() < MAX_ERRORS_SHOWN && !t.errors.contains(&message) {
                    t.errors.push(message);
                }
                continue;
            }
        };
        t.checked += 1;
        for class in Class::ALL {
            let Some(ack) = record.ack(class) else {
                continue;
            };
            t.acknowledged += 1;
            let site = held.as_ref().and_then(|h| h.of(class));
            match judge(ack, site) {
                Verdict::Held => t.held += 1,
                Verdict::Later => t.later += 1,
                Verdict::Lost => t.losses.push((
                    record.index,
                    Loss {
                        agent: name.to_string(),
                        class,
                        acknowledged: ack.into(),
                        site,
                    },
                )),
            }
        }
    }
}

/// What the site holds of one client; `None` when it has no such client (404). A keep-alive
/// connection the site closed meanwhile is opened again once.
async fn ask(shared: &Shared, conn: &mut Option<Conn>, path: &str) -> Result<Option<Held>> {
    let req = Request::get(path, Some(&shared.site.admin_token));
    let mut retried = false;
    let resp = loop {
        let reused = conn.as_ref().is_some_and(Conn::reusable);
        if !reused {
            *conn = Some(Conn::connect_timeout(shared.site.addr, shared.timeout).await?);
        }
        let c = conn.as_mut().expect("connected above");
        match c.call(&req, shared.timeout).await {
            Ok(resp) => break resp,
            Err(_) if reused && !retried => retried = true,
            Err(e) => return Err(e),
        }
    };
    if resp.status == 404 {
        return Ok(None);
    }
    resp.json(&format!("GET {path}")).map(Some)
}

impl Results {
    /// Prints the results, then fails (exit 1) when a report was lost or an agent could not
    /// be checked.
    pub fn finish(&self, json: bool) -> Result<()> {
        if json {
            invsync_proto::outln!("{}", serde_json::to_string_pretty(self)?)?;
        } else {
            self.print_human()?;
        }
        if self.lost > 0 {
            return Err(anyhow!(
                "{} of {} acknowledged snapshots are lost at site {}",
                self.lost,
                self.acknowledged,
                self.site_code
            ));
        }
        if self.unchecked > 0 {
            return Err(anyhow!(
                "the site could not be asked about {} of the agents, so nothing is proven for them",
                self.unchecked
            ));
        }
        Ok(())
    }

    fn print_human(&self) -> std::io::Result<()> {
        invsync_proto::outln!(
            "verify: {} of {} agents checked at site {} ({}) in {:.1} s: {} acknowledged snapshots, {} held as acknowledged, {} later at the site, {} lost{}",
            self.checked,
            self.agents,
            self.site_code,
            self.site,
            self.seconds,
            self.acknowledged,
            self.held,
            self.later,
            self.lost,
            if self.unchecked > 0 {
                format!(", {} agents not checked", self.unchecked)
            } else {
                String::new()
            }
        )?;
        for l in &self.losses {
            let a = &l.acknowledged;
            let site = l
                .site
                .map_or(format!("the site holds no {} snapshot", l.class), |s| {
                    format!(
                        "the site holds version {} hash {}",
                        s.version,
                        short(&s.hash)
                    )
                });
            invsync_proto::outln!(
                "lost: {} {}: acknowledged version {} hash {}, {site}",
                l.agent,
                l.class,
                a.version,
                short(&a.hash)
            )?;
        }
        for msg in &self.error_messages {
            invsync_proto::outln!("  error: {msg}")?;
        }
        Ok(())
    }
}

/// The first 16 hex digits of a hash: enough to tell two apart in a person's reading; the
/// JSON has all of them.
fn short(h: &Digest) -> String {
    h.to_hex()[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(version: i64, h: u8) -> Ack {
        Ack {
            version,
            hash: Digest([h; 32]),
        }
    }

    fn snap(version: i64, h: u8) -> Option<Snap> {
        Some(ack(version, h).into())
    }

    #[test]
    fn the_rule() {
        assert_eq!(judge(ack(4, 1), snap(4, 1)), Verdict::Held);
        // A report whose answer was lost may have been stored: a later version is fine, and
        // its hash says nothing about the acknowledged one.
        assert_eq!(judge(ack(4, 1), snap(5, 2)), Verdict::Later);
        assert_eq!(judge(ack(4, 1), snap(3, 1)), Verdict::Lost);
        assert_eq!(judge(ack(4, 1), snap(4, 2)), Verdict::Lost);
        assert_eq!(judge(ack(4, 1), None), Verdict::Lost);
    }
}
