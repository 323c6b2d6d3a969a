//! One cycle of the agent (the original client's component manager cycle, SPEC sections 1
//! and 5): re-send what the site has not acknowledged, check in for instructions, collect each
//! class, send what changed or was asked for, and acknowledge the wake-up events acted on.
//!
//! The order is chosen so a crash or a network failure at any point loses nothing: new
//! instructions are saved before they are acted on, a report is put in the outbox and saved
//! before it is sent (and re-sent with the same report id, which the site de-duplicates), and
//! an acknowledgement is recorded only after the site has given it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use invsync_proto::wire::{
    AckRequest, CheckinRequest, ClassState, Instruction, InstructionKind, Report, ReportAck,
    ReportBody,
};
use invsync_proto::{Class, Items, Timestamp};

use crate::cap::CapClient;
use crate::error::AgentError;
use crate::offline::files::forget_cap_copy;
use crate::offline::summary::CapSummary;
use crate::plan::{self, PlanReason};
use crate::state::{AckedSnapshot, PendingEvent, PendingResync, State, StateLock};

/// What a cycle needs: where the state is and what root the collectors read through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleOptions {
    pub data_dir: PathBuf,
    pub root: PathBuf,
}

/// Whether a report held the whole snapshot or the changes against the acknowledged one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    Full,
    Delta,
}

impl ReportKind {
    pub fn of(body: &ReportBody) -> ReportKind {
        if body.is_full() {
            ReportKind::Full
        } else {
            ReportKind::Delta
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::Full => "full",
            ReportKind::Delta => "delta",
        }
    }
}

/// A report the site acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentReport {
    pub class: Class,
    pub kind: ReportKind,
    /// The site's version of the class after the report.
    pub version: i64,
    /// The resync instruction ids it answered.
    pub answers: Vec<i64>,
    /// Why it was built; `None` for a report re-sent from the outbox.
    pub reason: Option<PlanReason>,
    /// True when the site had already stored this report id.
    pub duplicate: bool,
}

/// What became of one class in a cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassOutcome {
    Sent(SentReport),
    /// Nothing to send: the site holds what was collected, at this version.
    Unchanged {
        class: Class,
        version: Option<i64>,
    },
}

/// What a cycle did, for the CLI to print and the daemon to log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CycleSummary {
    /// Instructions received for the first time in this cycle.
    pub instructions: Vec<Instruction>,
    /// Reports from earlier cycles re-sent from the outbox and acknowledged.
    pub resent: Vec<SentReport>,
    /// One outcome per class, in [`Class::ALL`] order.
    pub classes: Vec<ClassOutcome>,
    /// Event instruction ids acknowledged to the site.
    pub acked_events: Vec<i64>,
    /// The interval between cycles the site asks its agents for, when it sets one.
    pub site_interval: Option<std::time::Duration>,
    /// What the cycle did through a file-share CAP directory, when it went through one.
    pub cap: Option<CapSummary>,
}

impl CycleSummary {
    /// One line per fact, e.g. `sw: sent full report, site now at version 2 (answers request
    /// 5)` or `hw: unchanged (version 1)`.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        out.extend(self.cap.as_ref().and_then(CapSummary::fallback_line));
        for i in &self.instructions {
            out.push(match i.kind {
                InstructionKind::Resync { class } => {
                    format!("received request {}: resync {class}", i.id)
                }
                InstructionKind::Event { event } => {
                    format!("received event {}: {}", i.id, event.as_str())
                }
            });
        }
        for r in &self.resent {
            out.push(sent_line(r, "re-sent queued"));
        }
        for c in &self.classes {
            out.push(match c {
                ClassOutcome::Sent(r) => sent_line(r, "sent"),
                ClassOutcome::Unchanged {
                    class,
                    version: Some(v),
                } => {
                    format!("{class}: unchanged (version {v})")
                }
                ClassOutcome::Unchanged {
                    class,
                    version: None,
                } => format!("{class}: unchanged"),
            });
        }
        if let Some(cap) = &self.cap {
            out.extend(cap.lines());
        }
        if !self.acked_events.is_empty() {
            let s = if self.acked_events.len() == 1 {
                ""
            } else {
                "s"
            };
            out.push(format!(
                "acknowledged event{s} {}",
                join_ids(&self.acked_events)
            ));
        }
        out
    }
}

/// The [`CycleSummary::lines`], one per line, for callers that print the summary whole.
impl std::fmt::Display for CycleSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.lines().join("\n"))
    }
}

fn sent_line(r: &SentReport, verb: &str) -> String {
    let mut line = format!("{}: {verb} {} report", r.class, r.kind.as_str());
    // A request is already named by the answers; other reasons say why a report went out.
    if let Some(reason) = r.reason.filter(|r| *r != PlanReason::Requested) {
        let _ = write!(line, " ({reason})");
    }
    if r.duplicate {
        let _ = write!(line, ", the site already had it at version {}", r.version);
    } else {
        let _ = write!(line, ", site now at version {}", r.version);
    }
    if !r.answers.is_empty() {
        let s = if r.answers.len() == 1 { "" } else { "s" };
        let _ = write!(line, " (answers request{s} {})", join_ids(&r.answers));
    }
    line
}

fn join_ids(ids: &[i64]) -> String {
    ids.iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs one cycle. An error leaves the state consistent: whatever was not acknowledged is
/// still in the outbox or among the pending instructions for the next cycle.
pub fn cycle(opts: &CycleOptions) -> Result<CycleSummary, AgentError> {
    let dir = opts.data_dir.as_path();
    if !State::path(dir).exists() {
        return Err(AgentError::NotEnrolled {
            data_dir: dir.to_path_buf(),
        });
    }
    let _lock = StateLock::acquire(dir)?;
    let mut state = State::load(dir)?;
    if !state.has_network() {
        // Enrolled from a file: only a CAP directory reaches the site (`fallback::cycle_via`).
        return Err(AgentError::NeedsCapDir);
    }
    network_cycle(opts, &mut state)
}

/// [`cycle`] with the data directory locked and the state loaded: the cycle over HTTP.
pub(crate) fn network_cycle(
    opts: &CycleOptions,
    state: &mut State,
) -> Result<CycleSummary, AgentError> {
    let dir = opts.data_dir.as_path();
    let cap = CapClient::new(
        &state.site_url,
        Some(&state.token),
        state.ca_cert.as_deref(),
    )?;
    let mut summary = CycleSummary::default();

    // 1. Reports an earlier cycle could not deliver go first, so the site's view is current
    //    before it is compared with ours.
    for report in state.outbox.clone() {
        match deliver(&cap, state, dir, &report, None)? {
            Delivery::Stored(sent) => summary.resent.push(sent),
            // The class was forgotten; step 3 sends it in full.
            Delivery::ResyncRequired(_) => {}
        }
    }

    // 2. Check in, and keep every new instruction before acting on it.
    // The body stays empty: the agent's version already travels in its User-Agent header,
    // and a no-change cycle has a budget of 300 bytes (SPEC section 10).
    let checkin = cap.checkin(&CheckinRequest::default())?;
    summary.instructions = record_instructions(state, &checkin.instructions, Timestamp::now());
    summary.site_interval = checkin
        .agent_interval_secs
        .filter(|s| *s > 0)
        .map(std::time::Duration::from_secs);
    if !summary.instructions.is_empty() {
        state.save(dir)?;
    }

    // 3 and 4. Collect and report each class. `hinv`/`sinv`/`cycle` events need nothing
    //    more: a cycle runs both inventories anyway.
    for class in Class::ALL {
        let items = crate::collect::collect_class(&opts.root, state, class);
        let outcome = report_class(&cap, state, dir, &checkin.classes, class, &items)?;
        summary.classes.push(outcome);
    }

    // 5. Tell the site which wake-up events were acted on.
    let done: Vec<i64> = state.events.iter().map(|e| e.id).collect();
    if !done.is_empty() {
        cap.ack(&AckRequest { done: done.clone() })?;
        state.events.retain(|e| !done.contains(&e.id));
        state.save(dir)?;
        tracing::info!(events = ?done, "Acknowledged events to the site.");
        summary.acked_events = done;
    }
    Ok(summary)
}

/// Adds instructions not seen before to the state (the site repeats an instruction until it
/// completes) and returns them.
pub(crate) fn record_instructions(
    state: &mut State,
    received: &[Instruction],
    now: Timestamp,
) -> Vec<Instruction> {
    let mut new = Vec::new();
    for i in received {
        if state.knows_instruction(i.id) || new.iter().any(|n: &Instruction| n.id == i.id) {
            continue;
        }
        match i.kind {
            InstructionKind::Resync { class } => {
                tracing::info!(id = i.id, class = %class, "Received a resync request.");
                state.resyncs.push(PendingResync {
                    id: i.id,
                    class,
                    received_at: now,
                });
            }
            InstructionKind::Event { event } => {
                tracing::info!(id = i.id, event = event.as_str(), "Received an event.");
                state.events.push(PendingEvent {
                    id: i.id,
                    event,
                    received_at: now,
                });
            }
        }
        new.push(i.clone());
    }
    new
}

/// Plans, queues and sends one class's report; after a "resync required" answer, sends one
/// full report more.
fn report_class(
    cap: &CapClient,
    state: &mut State,
    dir: &Path,
    site: &BTreeMap<Class, ClassState>,
    class: Class,
    items: &Items,
) -> Result<ClassOutcome, AgentError> {
    let Some(planned) = plan::plan(state, site, class, items) else {
        let version = state.acked.get(&class).map(|a| a.version);
        tracing::debug!(class = %class, version, "Inventory unchanged.");
        return Ok(ClassOutcome::Unchanged { class, version });
    };
    let reason = planned.reason;
    let report = queue(state, dir, planned.into_report())?;
    let reason_again = match deliver(cap, state, dir, &report, Some(reason))? {
        Delivery::Stored(sent) => return Ok(ClassOutcome::Sent(sent)),
        Delivery::ResyncRequired(r) => r,
    };
    let planned = plan::full_report(state, class, items, PlanReason::SiteAsked);
    let reason = planned.reason;
    let report = queue(state, dir, planned.into_report())?;
    match deliver(cap, state, dir, &report, Some(reason))? {
        Delivery::Stored(sent) => Ok(ClassOutcome::Sent(sent)),
        Delivery::ResyncRequired(again) => {
            tracing::debug!(class = %class, first = %reason_again, "The site refused two reports in a row.");
            Err(AgentError::ResyncLoop {
                class,
                reason: again,
            })
        }
    }
}

/// Puts a report in the outbox and saves the state, so that it is re-sent if the agent dies
/// or the network fails before the site acknowledges it.
fn queue(state: &mut State, dir: &Path, report: Report) -> Result<Report, AgentError> {
    state.outbox.push(report.clone());
    state.save(dir)?;
    Ok(report)
}

enum Delivery {
    Stored(SentReport),
    /// The site stored nothing and wants a full report; the class's acknowledged snapshot has
    /// been forgotten.
    ResyncRequired(String),
}

/// Sends a report that is in the outbox and applies the site's answer to the state. A network
/// failure leaves the report in the outbox and returns the error.
fn deliver(
    cap: &CapClient,
    state: &mut State,
    dir: &Path,
    report: &Report,
    reason: Option<PlanReason>,
) -> Result<Delivery, AgentError> {
    let class = report.class;
    let ack = match cap.report(report) {
        Ok(ack) => ack,
        Err(e @ AgentError::Refused { .. }) => {
            // The site will never store this report, and keeping it would block every later
            // cycle; forgetting the class makes the next cycle send a fresh full report.
            tracing::warn!(class = %class, report_id = %report.report_id, error = %e, "The site refused a report; dropping it.");
            state.outbox.retain(|r| r.report_id != report.report_id);
            forget_cap_copy(state, report.report_id);
            state.acked.remove(&class);
            state.save(dir)?;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    state.outbox.retain(|r| r.report_id != report.report_id);
    // Settled over HTTP: a copy written to a CAP directory earlier is not needed any more.
    forget_cap_copy(state, report.report_id);
    let (version, hash, duplicate) = match ack {
        ReportAck::Accepted { version, hash } => (version, hash, false),
        ReportAck::Duplicate { version, hash } => (version, hash, true),
        ReportAck::ResyncRequired { reason } => {
            tracing::info!(class = %class, reason = %reason, "The site stored nothing and asks for a full report.");
            state.acked.remove(&class);
            state.save(dir)?;
            return Ok(Delivery::ResyncRequired(reason));
        }
    };
    match plan::items_after(report, state.acked.get(&class)) {
        Some(items) if hash == report.hash => {
            state.acked.insert(
                class,
                AckedSnapshot {
                    version,
                    hash,
                    items,
                },
            );
        }
        _ => {
            // The site holds something other than what we sent (or we cannot tell what): keep
            // no record, so the next cycle compares nothing and sends a full report.
            tracing::warn!(class = %class, version, site_hash = %hash, report_hash = %report.hash, "The site acknowledged a snapshot other than the one sent; the next cycle sends a full report.");
            state.acked.remove(&class);
        }
    }
    state.resyncs.retain(|r| !report.answers.contains(&r.id));
    state.save(dir)?;
    tracing::info!(class = %class, version, duplicate, answers = ?report.answers, "Site acknowledged the report.");
    Ok(Delivery::Stored(SentReport {
        class,
        kind: ReportKind::of(&report.body),
        version,
        answers: report.answers.clone(),
        reason,
        duplicate,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use invsync_proto::wire::Event;
    use invsync_proto::{ClientName, SiteCode};

    #[test]
    fn instructions_are_recorded_once() {
        let mut s = State::new(
            "http://site",
            uuid::Uuid::nil(),
            "tok",
            ClientName::parse("web01").unwrap(),
            SiteCode::parse("S01").unwrap(),
        );
        let got = vec![
            Instruction {
                id: 5,
                kind: InstructionKind::Resync { class: Class::Sw },
            },
            Instruction {
                id: 6,
                kind: InstructionKind::Event { event: Event::Hinv },
            },
            Instruction {
                id: 5,
                kind: InstructionKind::Resync { class: Class::Sw },
            },
        ];
        assert_eq!(record_instructions(&mut s, &got, Timestamp(1)).len(), 2);
        assert_eq!(record_instructions(&mut s, &got, Timestamp(2)), vec![]);
        assert_eq!(s.pending_resyncs(Class::Sw), vec![5]);
        assert_eq!(s.events.len(), 1);
        assert_eq!(s.resyncs[0].received_at, Timestamp(1));
    }

    #[test]
    fn summary_lines_read_as_sentences() {
        let summary = CycleSummary {
            instructions: vec![Instruction {
                id: 5,
                kind: InstructionKind::Resync { class: Class::Sw },
            }],
            resent: vec![],
            site_interval: None,
            classes: vec![
                ClassOutcome::Unchanged {
                    class: Class::Hw,
                    version: Some(1),
                },
                ClassOutcome::Sent(SentReport {
                    class: Class::Sw,
                    kind: ReportKind::Full,
                    version: 2,
                    answers: vec![5],
                    reason: Some(PlanReason::Requested),
                    duplicate: false,
                }),
            ],
            acked_events: vec![7],
            cap: None,
        };
        assert_eq!(
            summary.lines(),
            vec![
                "received request 5: resync sw",
                "hw: unchanged (version 1)",
                "sw: sent full report, site now at version 2 (answers request 5)",
                "acknowledged event 7",
            ]
        );
    }
}
