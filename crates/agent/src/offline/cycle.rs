//! One cycle through a file-share CAP directory (issue 18): read this client's `.cfg`, act on
//! it only when the site signed it and it is newer than the last one acted on, settle the
//! reports it shows stored or refused, then per class write what the network cycle would
//! have sent, as `.inv` files in `Inventry.box`, or a report-less check-in.
//!
//! The guarantees are the network cycle's. A report is queued in the outbox and saved before
//! its file is written, and leaves the outbox only when a `.cfg` (or an HTTP answer) settles
//! it, so nothing is lost; its id is its file name and the site stores a report id once, so
//! nothing is stored twice. There is no acknowledgement per report: a report was stored when
//! the `.cfg`'s state of its class has the report's hash (and the requests it answers are no
//! longer open), refused when the `.cfg` lists it. While a report of a class is unsettled no
//! new one is written (a delta needs a base the site agrees on), except a full report
//! answering a resync request no unsettled report answers.

use std::collections::BTreeMap;
use std::path::Path;

use invsync_proto::offline::cfg::Cfg;
use invsync_proto::offline::inv::{self, InvHeader, InvReport};
use invsync_proto::offline::{inv_file_name, mac_key, parse_inv_file_name};
use invsync_proto::wire::{ClassState, ClientToken, Report};
use invsync_proto::{Class, Timestamp};
use uuid::Uuid;

use crate::cycle::{CycleOptions, CycleSummary, record_instructions};
use crate::enroll::machine_id;
use crate::error::{AgentError, StateError};
use crate::offline::files::{self, CfgRead};
use crate::offline::summary::{CapClassOutcome, CapSummary, CfgOutcome, Settled};
use crate::plan::{self, PlanReason};
use crate::state::{AckedSnapshot, State};

/// Runs one cycle through `cap_dir`, with the data directory locked and the state loaded.
pub fn cap_cycle(
    opts: &CycleOptions,
    cap_dir: &Path,
    state: &mut State,
) -> Result<CycleSummary, AgentError> {
    let data_dir = opts.data_dir.as_path();
    let site_key = state.site_public_key.ok_or(AgentError::NoSiteKey)?;
    let inbox = files::inbox(cap_dir)?;
    let writer = Writer::new(state, opts, inbox)?;
    let mut summary = CycleSummary::default();
    let mut cap = CapSummary {
        dir: cap_dir.to_path_buf(),
        fell_back: None,
        cfg: CfgOutcome::Absent,
        settled: Vec::new(),
        classes: Vec::new(),
        checkin: false,
    };
    // Remembered so that a report the site later acknowledges over HTTP can have its file
    // removed; absolute, because the next cycle may run from another directory.
    state.cap.dir = Some(std::path::absolute(cap_dir).unwrap_or_else(|_| cap_dir.to_path_buf()));

    // a and b. The site's `.cfg`: acted on only when signed, for us, and newer.
    let file = files::cfg_relative(&state.name);
    let cfg = match files::read_cfg(cap_dir, &state.name, &site_key, state.client_id) {
        CfgRead::Absent => {
            tracing::debug!(file = %file, "No .cfg for this client yet; the site's state is unknown.");
            None
        }
        CfgRead::Ignored(reason) => {
            tracing::warn!(file = %file, reason = %reason, "Ignored the site's .cfg; nothing in it is acted on.");
            cap.cfg = CfgOutcome::Ignored { file, reason };
            None
        }
        CfgRead::Read(cfg) => match state.cap.cfg_issued_at {
            Some(last) if cfg.issued_at < last => {
                let reason = format!(
                    "it was issued at {}, before the one acted on last ({}): a replayed or stale file",
                    cfg.issued_at.rfc3339(),
                    last.rfc3339()
                );
                tracing::warn!(file = %file, reason = %reason, "Ignored the site's .cfg; nothing in it is acted on.");
                cap.cfg = CfgOutcome::Ignored { file, reason };
                None
            }
            Some(last) if cfg.issued_at == last => {
                cap.cfg = CfgOutcome::Same;
                Some(cfg)
            }
            _ => {
                act_on(state, &cfg, &mut summary, &mut cap);
                state.cap.cfg_issued_at = Some(cfg.issued_at);
                cap.cfg = CfgOutcome::Acted;
                Some(cfg)
            }
        },
    };
    summary.site_interval = cfg
        .as_ref()
        .and_then(|c| c.checkin.agent_interval_secs)
        .filter(|s| *s > 0)
        .map(std::time::Duration::from_secs);
    state.save(data_dir)?;

    // c. Per class: what is queued goes out first, then what the network cycle would send.
    let mut wrote = false;
    for class in Class::ALL {
        let items = crate::collect::collect_class(&opts.root, state, class);
        let site = site_view(state, cfg.as_ref(), class);
        // Reports a network cycle queued and could not deliver travel this way instead, with
        // the same ids (if the network comes back first, the site recognises them).
        let queued: Vec<Report> = state
            .outbox
            .iter()
            .filter(|r| r.class == class && !state.cap.written.contains(&r.report_id))
            .cloned()
            .collect();
        let wrote_queued = !queued.is_empty();
        for report in queued {
            writer.write_report(state, &report, site)?;
            cap.classes.push(wrote_outcome(&report, None));
            wrote = true;
        }
        let unsettled: Vec<&Report> = state.outbox.iter().filter(|r| r.class == class).collect();
        let planned = if let Some(last) = unsettled.last() {
            let answered: Vec<i64> = unsettled
                .iter()
                .flat_map(|r| r.answers.iter().copied())
                .collect();
            if state
                .pending_resyncs(class)
                .iter()
                .all(|id| answered.contains(id))
            {
                let report_id = last.report_id;
                tracing::info!(class = %class, report_id = %report_id, "Waiting for the site to import the report before writing another.");
                // Just written, it needs no second line saying it waits.
                if !wrote_queued {
                    cap.classes
                        .push(CapClassOutcome::Waiting { class, report_id });
                }
                continue;
            }
            plan::full_report(state, class, &items, PlanReason::Requested)
        } else {
            let view: BTreeMap<Class, ClassState> = site.map(|s| (class, s)).into_iter().collect();
            match plan::plan(state, &view, class, &items) {
                Some(planned) => planned,
                None => {
                    let version = site.map(|s| s.version);
                    tracing::debug!(class = %class, version, "Inventory unchanged.");
                    cap.classes
                        .push(CapClassOutcome::Unchanged { class, version });
                    continue;
                }
            }
        };
        let reason = planned.reason;
        let report = planned.into_report();
        // Queued and saved before the file exists: a crash in between leaves a queued report
        // that the next cycle writes, never a file the agent does not know about.
        state.outbox.push(report.clone());
        state.save(data_dir)?;
        writer.write_report(state, &report, site)?;
        cap.classes.push(wrote_outcome(&report, Some(reason)));
        wrote = true;
    }

    // d. A cycle that wrote no report still tells the site it is alive and what it has seen.
    if !wrote {
        writer.write_checkin(state)?;
        cap.checkin = true;
    }
    summary.cap = Some(cap);
    Ok(summary)
}

fn wrote_outcome(report: &Report, reason: Option<PlanReason>) -> CapClassOutcome {
    CapClassOutcome::Wrote {
        class: report.class,
        report_id: report.report_id,
        full: report.body.is_full(),
        answers: report.answers.clone(),
        reason,
    }
}

/// What the agent takes the site to hold for `class`: the `.cfg`'s state, unless the `.cfg`
/// has none or an older one than the agent's own acknowledged snapshot (a `.cfg` written
/// before the last HTTP answer); then the acknowledged one.
fn site_view(state: &State, cfg: Option<&Cfg>, class: Class) -> Option<ClassState> {
    let acked = state.acked.get(&class).map(|a| ClassState {
        version: a.version,
        hash: a.hash,
    });
    let from_cfg = cfg.and_then(|c| c.checkin.classes.get(&class)).copied();
    match (from_cfg, acked) {
        (Some(site), Some(acked)) if site.version < acked.version => Some(acked),
        (Some(site), _) => Some(site),
        (None, acked) => acked,
    }
}

/// Acts on a `.cfg` newer than the last one: records its instructions, settles the reports it
/// shows refused or stored, and finishes the events it no longer lists.
fn act_on(state: &mut State, cfg: &Cfg, summary: &mut CycleSummary, cap: &mut CapSummary) {
    summary.instructions = record_instructions(state, &cfg.checkin.instructions, Timestamp::now());
    let open: Vec<i64> = cfg.checkin.instructions.iter().map(|i| i.id).collect();

    for refused in &cfg.refused {
        let id = refused.report_id;
        if !state.cap.written.contains(&id) {
            continue;
        }
        state.cap.written.retain(|w| *w != id);
        let Some(class) = state
            .outbox
            .iter()
            .find(|r| r.report_id == id)
            .map(|r| r.class)
        else {
            continue;
        };
        tracing::warn!(class = %class, report_id = %id, reason = %refused.reason, "The site refused a report from the CAP directory; the next report of its class is full.");
        state.outbox.retain(|r| r.report_id != id);
        // The site holds something other than what the agent assumed: forget it, so the next
        // report is full.
        state.acked.remove(&class);
        cap.settled.push(Settled::Refused {
            class,
            report_id: id,
            reason: refused.reason.clone(),
        });
    }

    for class in Class::ALL {
        let Some(site) = cfg.checkin.classes.get(&class) else {
            continue;
        };
        // A report stored after the acknowledged snapshot left the site at a later version;
        // a `.cfg` at or below it was written before (the inventory may have come back to an
        // older hash), and shows nothing stored.
        if state
            .acked
            .get(&class)
            .is_some_and(|a| site.version <= a.version)
        {
            continue;
        }
        let written: Vec<Report> = state
            .outbox
            .iter()
            .filter(|r| r.class == class && state.cap.written.contains(&r.report_id))
            .cloned()
            .collect();
        // The last report the site shows stored: its hash is the site's, and none of the
        // requests it answers is still open (the site completes them when it stores it).
        let Some(last) = written
            .iter()
            .rposition(|r| r.hash == site.hash && r.answers.iter().all(|a| !open.contains(a)))
        else {
            continue;
        };
        let stored = &written[last];
        match plan::items_after(stored, state.acked.get(&class)) {
            Some(items) => {
                state.acked.insert(
                    class,
                    AckedSnapshot {
                        version: site.version,
                        hash: site.hash,
                        items,
                    },
                );
            }
            None => {
                tracing::warn!(class = %class, report_id = %stored.report_id, "The site stored a delta whose base this agent no longer holds; the next report is full.");
                state.acked.remove(&class);
            }
        }
        // Earlier reports of the class are settled with it: the site either stored them
        // before or will refuse them as stale.
        for r in &written[..=last] {
            state.outbox.retain(|o| o.report_id != r.report_id);
            state.cap.written.retain(|w| *w != r.report_id);
            state
                .resyncs
                .retain(|p| !r.answers.contains(&p.id) || open.contains(&p.id));
            tracing::info!(class = %class, report_id = %r.report_id, version = site.version, "The site stored a report from the CAP directory.");
            cap.settled.push(Settled::Stored {
                class,
                report_id: r.report_id,
                version: site.version,
            });
        }
    }

    // An event listed as done in a file the agent wrote, and no longer open at the site, is
    // finished.
    let done: Vec<i64> = state
        .events
        .iter()
        .filter(|e| state.cap.events_written.contains(&e.id) && !open.contains(&e.id))
        .map(|e| e.id)
        .collect();
    state.events.retain(|e| !done.contains(&e.id));
    let events = state.events.clone();
    state
        .cap
        .events_written
        .retain(|id| events.iter().any(|e| e.id == *id));
    summary.acked_events = done;
}

/// What every file of this cycle needs: where it goes, the MAC key, who writes it.
struct Writer<'a> {
    data_dir: &'a Path,
    inbox: std::path::PathBuf,
    mac: [u8; 32],
    machine_id: String,
}

impl<'a> Writer<'a> {
    fn new(
        state: &State,
        opts: &'a CycleOptions,
        inbox: std::path::PathBuf,
    ) -> Result<Writer<'a>, AgentError> {
        let data_dir = opts.data_dir.as_path();
        let token = ClientToken::parse(&state.token).ok_or_else(|| StateError::Corrupt {
            path: State::path(data_dir),
            data_dir: data_dir.to_path_buf(),
            reason: "its client token is malformed".to_string(),
        })?;
        let machine = machine_id(&opts.root, data_dir);
        machine.keep(data_dir)?;
        Ok(Writer {
            data_dir,
            inbox,
            mac: mac_key(&token.key_hash()),
            machine_id: machine.id,
        })
    }

    /// Writes `report` (already in the outbox) as an `.inv` and records it as written.
    fn write_report(
        &self,
        state: &mut State,
        report: &Report,
        site: Option<ClassState>,
    ) -> Result<(), AgentError> {
        // A full report may be applied only while the site is at most at the version the agent
        // believes it holds plus the reports of the class written before this one; past that
        // it is stale (an old file put back), and the site refuses it.
        let earlier = state
            .outbox
            .iter()
            .filter(|r| {
                r.class == report.class
                    && r.report_id != report.report_id
                    && state.cap.written.contains(&r.report_id)
            })
            .count() as i64;
        let not_past = report
            .body
            .is_full()
            .then(|| site.map_or(0, |s| s.version) + earlier);
        let json = serde_json::to_vec(report).map_err(|e| AgentError::Io {
            context: "could not encode a report".to_string(),
            reason: e.to_string(),
        })?;
        let body = zstd::bulk::compress(&json, 3).map_err(|e| AgentError::Io {
            context: "could not compress a report".to_string(),
            reason: e.to_string(),
        })?;
        let report_part = InvReport {
            class: report.class,
            bytes: json.len() as u64,
            not_past,
        };
        self.write(state, report.report_id, Some(report_part), &body)?;
        state.cap.written.push(report.report_id);
        state.save(self.data_dir)?;
        tracing::info!(class = %report.class, report_id = %report.report_id, full = report.body.is_full(), "Wrote a report to the CAP directory.");
        Ok(())
    }

    /// Writes a report-less check-in and removes the previous one if the site has not
    /// imported it yet: only the newest check-in says anything.
    fn write_checkin(&self, state: &mut State) -> Result<(), AgentError> {
        let id = Uuid::new_v4();
        self.write(state, id, None, b"")?;
        let name = inv_file_name(&state.name, id);
        let previous = state.cap.last_checkin.replace(name);
        state.save(self.data_dir)?;
        // Only a name this agent could have written is removed, whatever the state says.
        if let Some(previous) = previous
            && parse_inv_file_name(&previous).is_some_and(|(n, _)| n == state.name)
        {
            files::remove_inv(&self.inbox, &previous);
        }
        tracing::info!(file_id = %id, "Wrote a check-in to the CAP directory.");
        Ok(())
    }

    /// Writes one `.inv` for file `id` and records what its header told the site.
    fn write(
        &self,
        state: &mut State,
        id: Uuid,
        report: Option<InvReport>,
        body: &[u8],
    ) -> Result<(), AgentError> {
        let now = Timestamp::now();
        // The site imports a client's files in `written_at` order: each file is later than the
        // one before, even within a millisecond or after the clock stepped back.
        let written_at = match state.cap.last_written_at {
            Some(last) if now.0 <= last.0 => Timestamp(last.0 + 1),
            _ => now,
        };
        let done_events: Vec<i64> = state.events.iter().map(|e| e.id).collect();
        let mut seen: Vec<i64> = state.resyncs.iter().map(|r| r.id).collect();
        seen.extend(&done_events);
        seen.sort_unstable();
        let header = InvHeader {
            client: state.name.clone(),
            client_id: state.client_id,
            file_id: id,
            written_at,
            machine_id: self.machine_id.clone(),
            agent_version: Some(crate::AGENT_VERSION.to_string()),
            report,
            seen,
            done_events: done_events.clone(),
        };
        let bytes = inv::encode(&header, body, &self.mac);
        files::write_inv(&self.inbox, &inv_file_name(&state.name, id), &bytes)?;
        state.cap.last_written_at = Some(written_at);
        for id in done_events {
            if !state.cap.events_written.contains(&id) {
                state.cap.events_written.push(id);
            }
        }
        Ok(())
    }
}
