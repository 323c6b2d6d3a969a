//! What a cycle through a file-share CAP directory did, as data for tests and the daemon's
//! log, and as the sentences `invagent cycle` prints (`hw: wrote full report to the CAP
//! directory`, `sw: waiting for the site to import report …`).
//!
//! These are plain types with no I/O, apart from the network cycle's summary, which carries
//! one when the cycle went through the CAP directory.

use std::path::PathBuf;

use invsync_proto::Class;
use uuid::Uuid;

use crate::plan::PlanReason;

/// What a cycle did through the CAP directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapSummary {
    /// The CAP directory used.
    pub dir: PathBuf,
    /// Set when the agent has a network site that could not be reached: the sentence why.
    pub fell_back: Option<String>,
    pub cfg: CfgOutcome,
    /// Reports the `.cfg` settled, oldest first.
    pub settled: Vec<Settled>,
    /// What became of each class; a class can have several entries (a queued report written,
    /// then a full report answering a request).
    pub classes: Vec<CapClassOutcome>,
    /// Whether a report-less check-in was written (no report was).
    pub checkin: bool,
}

/// What came of this client's `.cfg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CfgOutcome {
    /// No `.cfg` yet: no instructions, and the site's state unknown.
    Absent,
    /// A file that must not be acted on (forged, altered, another client's, malformed, older
    /// than the last one acted on): `file` is `Clidata.box/<CLIENT>.cfg`.
    Ignored { file: String, reason: String },
    /// The file already acted on: nothing new.
    Same,
    /// A newer file, acted on.
    Acted,
}

/// A report the site's `.cfg` settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// The site holds the report's snapshot at `version`.
    Stored {
        class: Class,
        report_id: Uuid,
        version: i64,
    },
    /// The site refused the report; the class's next report is full.
    Refused {
        class: Class,
        report_id: Uuid,
        reason: String,
    },
}

/// What became of one class in a CAP cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapClassOutcome {
    /// A report was written to `Inventry.box`.
    Wrote {
        class: Class,
        report_id: Uuid,
        full: bool,
        /// The resync instruction ids it answers.
        answers: Vec<i64>,
        /// Why it was built; `None` for a report built earlier (queued in the outbox by a
        /// network cycle that could not deliver it).
        reason: Option<PlanReason>,
    },
    /// A report of this class is still unsettled: no new one until the site imports it.
    Waiting { class: Class, report_id: Uuid },
    /// Nothing to report: what was collected is what the site holds, as far as the agent
    /// knows, at this version.
    Unchanged { class: Class, version: Option<i64> },
}

impl CapSummary {
    /// The sentence that goes before everything else, when the cycle fell back to the CAP
    /// directory.
    pub fn fallback_line(&self) -> Option<String> {
        self.fell_back.as_ref().map(|_| {
            format!(
                "site unreachable; used the CAP directory {}",
                self.dir.display()
            )
        })
    }

    /// One line per fact, in the order they happened.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        match &self.cfg {
            CfgOutcome::Ignored { file, reason } => {
                out.push(format!("ignored {file}: {reason}"));
            }
            CfgOutcome::Absent => {
                out.push("no .cfg for this client in the CAP directory yet".to_string())
            }
            CfgOutcome::Same | CfgOutcome::Acted => {}
        }
        for s in &self.settled {
            out.push(match s {
                Settled::Stored {
                    class,
                    report_id,
                    version,
                } => format!("{class}: the site stored report {report_id}, now at version {version}"),
                Settled::Refused {
                    class,
                    report_id,
                    reason,
                } => format!(
                    "{class}: the site refused report {report_id} ({reason}); the next report is full"
                ),
            });
        }
        for c in &self.classes {
            out.push(match c {
                CapClassOutcome::Wrote {
                    class,
                    full,
                    answers,
                    reason,
                    ..
                } => {
                    let kind = if *full { "full" } else { "delta" };
                    let queued = if reason.is_none() { "queued " } else { "" };
                    let mut line =
                        format!("{class}: wrote {queued}{kind} report to the CAP directory");
                    if !answers.is_empty() {
                        let s = if answers.len() == 1 { "" } else { "s" };
                        let ids: Vec<String> = answers.iter().map(i64::to_string).collect();
                        line.push_str(&format!(" (answers request{s} {})", ids.join(", ")));
                    }
                    line
                }
                CapClassOutcome::Waiting { class, report_id } => {
                    format!("{class}: waiting for the site to import report {report_id}")
                }
                CapClassOutcome::Unchanged {
                    class,
                    version: Some(v),
                } => format!("{class}: unchanged (version {v})"),
                CapClassOutcome::Unchanged {
                    class,
                    version: None,
                } => format!("{class}: unchanged"),
            });
        }
        if self.checkin {
            out.push("wrote a check-in to the CAP directory".to_string());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_as_sentences() {
        let id = Uuid::from_u128(1);
        let summary = CapSummary {
            dir: "/mnt/cap".into(),
            fell_back: Some("connection refused".into()),
            cfg: CfgOutcome::Ignored {
                file: "Clidata.box/WEB01.cfg".into(),
                reason: "bad".into(),
            },
            settled: vec![
                Settled::Stored {
                    class: Class::Hw,
                    report_id: id,
                    version: 3,
                },
                Settled::Refused {
                    class: Class::Sw,
                    report_id: id,
                    reason: "stale".into(),
                },
            ],
            classes: vec![
                CapClassOutcome::Wrote {
                    class: Class::Hw,
                    report_id: id,
                    full: true,
                    answers: vec![5],
                    reason: Some(PlanReason::Requested),
                },
                CapClassOutcome::Wrote {
                    class: Class::Sw,
                    report_id: id,
                    full: false,
                    answers: vec![],
                    reason: None,
                },
                CapClassOutcome::Waiting {
                    class: Class::Sw,
                    report_id: id,
                },
                CapClassOutcome::Unchanged {
                    class: Class::Hw,
                    version: Some(3),
                },
            ],
            checkin: true,
        };
        assert_eq!(
            summary.fallback_line().as_deref(),
            Some("site unreachable; used the CAP directory /mnt/cap")
        );
        let id = id.to_string();
        assert_eq!(
            summary.lines(),
            vec![
                "ignored Clidata.box/WEB01.cfg: bad".to_string(),
                format!("hw: the site stored report {id}, now at version 3"),
                format!("sw: the site refused report {id} (stale); the next report is full"),
                "hw: wrote full report to the CAP directory (answers request 5)".to_string(),
                "sw: wrote queued delta report to the CAP directory".to_string(),
                format!("sw: waiting for the site to import report {id}"),
                "hw: unchanged (version 3)".to_string(),
                "wrote a check-in to the CAP directory".to_string(),
            ]
        );
    }
}
