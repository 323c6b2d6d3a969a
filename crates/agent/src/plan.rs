//! Deciding what to report: a pure function of the agent's state, what the site says it holds,
//! and what was just collected (SPEC section 5). No I/O happens here, so every case is a unit
//! test.
//!
//! A full report goes out when a resync was requested (answering every pending request of the
//! class), when the site holds nothing, when the site's version or hash differ from what the
//! agent recorded as acknowledged (a restored site database, a wiped agent), or when the
//! inventory changed. Otherwise nothing is sent, which is what keeps an idle cycle to a
//! check-in. A changed inventory whose base the site agrees on is where a delta belongs;
//! [`changed_body`] is the one place that chooses the body for that case.

use std::collections::BTreeMap;
use std::fmt;

use invsync_proto::inventory::{hash_of_digests, item_digest};
use invsync_proto::wire::{ClassState, Report, ReportBody};
use invsync_proto::{Class, Digest, Items, Snapshot};

use crate::state::{AckedSnapshot, State};

/// Why a report is being sent; shown in the cycle's summary and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanReason {
    /// Resync instructions for this class are pending.
    Requested,
    /// The site holds no snapshot of this class.
    SiteHasNone,
    /// The agent has no acknowledged snapshot (first cycle, or the site asked for a resync).
    NothingAcknowledged,
    /// The site's version and hash differ from what the agent recorded as acknowledged.
    SiteDiffers { site: ClassState },
    /// The collected inventory differs from the acknowledged one.
    Changed,
    /// The site answered the previous report with "resync required".
    SiteAsked,
}

impl fmt::Display for PlanReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanReason::Requested => f.write_str("a resync was requested"),
            PlanReason::SiteHasNone => f.write_str("the site holds no snapshot"),
            PlanReason::NothingAcknowledged => f.write_str("nothing acknowledged yet"),
            PlanReason::SiteDiffers { site } => {
                write!(
                    f,
                    "the site holds version {} with another hash",
                    site.version
                )
            }
            PlanReason::Changed => f.write_str("the inventory changed"),
            PlanReason::SiteAsked => f.write_str("the site asked for a full report"),
        }
    }
}

/// A report to send, before it gets its report id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedReport {
    pub class: Class,
    /// The snapshot hash after the report is applied: the hash of the collected items.
    pub hash: Digest,
    pub body: ReportBody,
    /// The resync instruction ids this report answers.
    pub answers: Vec<i64>,
    pub reason: PlanReason,
}

impl PlannedReport {
    /// The report as sent, with a fresh report id.
    pub fn into_report(self) -> Report {
        Report {
            report_id: uuid::Uuid::new_v4(),
            class: self.class,
            hash: self.hash,
            body: self.body,
            answers: self.answers,
        }
    }
}

/// Decides whether to report `class`, given the site's view from the check-in (`site`) and the
/// items just collected.
pub fn plan(
    state: &State,
    site: &BTreeMap<Class, ClassState>,
    class: Class,
    items: &Items,
) -> Option<PlannedReport> {
    let full = |reason: PlanReason| Some(full_report(state, class, items, reason));
    if !state.pending_resyncs(class).is_empty() {
        return full(PlanReason::Requested);
    }
    let Some(site_state) = site.get(&class) else {
        return full(PlanReason::SiteHasNone);
    };
    let Some(acked) = state.acked.get(&class) else {
        return full(PlanReason::NothingAcknowledged);
    };
    if site_state.version != acked.version || site_state.hash != acked.hash {
        return full(PlanReason::SiteDiffers { site: *site_state });
    }
    let hash = snapshot_hash(items);
    if hash != acked.hash {
        return Some(PlannedReport {
            class,
            hash,
            body: changed_body(acked, items),
            answers: Vec::new(),
            reason: PlanReason::Changed,
        });
    }
    None
}

/// A full report of `items`, answering every pending resync of the class: whatever made it
/// necessary, a full report is what a resync request waits for.
pub fn full_report(
    state: &State,
    class: Class,
    items: &Items,
    reason: PlanReason,
) -> PlannedReport {
    let answers = state.pending_resyncs(class);
    let reason = if answers.is_empty() {
        reason
    } else {
        PlanReason::Requested
    };
    PlannedReport {
        class,
        hash: snapshot_hash(items),
        body: ReportBody::Full {
            items: items.clone(),
        },
        answers,
        reason,
    }
}

/// The body of a report for an inventory that changed against a base the site agrees on: a
/// delta (items added or changed, whole, and keys removed) against the acknowledged snapshot,
/// unless the delta would touch more than half of the items, where a full report is about as
/// large and lets the site skip the merge.
pub fn changed_body(acked: &AckedSnapshot, items: &Items) -> ReportBody {
    let delta = invsync_proto::inventory::diff(&acked.items, items);
    if (delta.upsert.len() + delta.remove.len()) * 2 > items.len().max(1) {
        return ReportBody::Full {
            items: items.clone(),
        };
    }
    ReportBody::Delta {
        base_version: acked.version,
        delta,
    }
}

/// The items the site holds once it has accepted `report`: the report's own items for a full
/// report, the acknowledged base with the delta applied for a delta. `None` when a delta's
/// base is not the acknowledged snapshot (the agent then cannot know the result, and forgets
/// its record so the next cycle sends a full report).
pub fn items_after(report: &Report, acked: Option<&AckedSnapshot>) -> Option<Items> {
    match &report.body {
        ReportBody::Full { items } => Some(items.clone()),
        ReportBody::Delta {
            base_version,
            delta,
        } => {
            let base = acked.filter(|a| a.version == *base_version)?;
            let mut snapshot = Snapshot::new(base.items.clone());
            snapshot.apply(delta);
            Some(snapshot.items)
        }
    }
}

/// The snapshot hash of `items`, without cloning them into a [`Snapshot`].
pub fn snapshot_hash(items: &Items) -> Digest {
    let digests: Vec<Digest> = items.iter().map(|(k, a)| item_digest(k, a)).collect();
    hash_of_digests(&digests)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::PendingResync;
    use invsync_proto::inventory::Delta;
    use invsync_proto::{ClientName, SiteCode, Timestamp};

    fn items(pairs: &[(&str, &str)]) -> Items {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    [("version".to_string(), v.to_string())].into(),
                )
            })
            .collect()
    }

    fn state() -> State {
        State::new(
            "http://site",
            uuid::Uuid::nil(),
            "tok",
            ClientName::parse("web01").unwrap(),
            SiteCode::parse("S01").unwrap(),
        )
    }

    /// A state that has `acked` acknowledged as version 4 of sw, and the site agreeing.
    fn agreed(acked: &Items) -> (State, BTreeMap<Class, ClassState>) {
        let mut s = state();
        let hash = snapshot_hash(acked);
        s.acked.insert(
            Class::Sw,
            AckedSnapshot {
                version: 4,
                hash,
                items: acked.clone(),
            },
        );
        let site = [(Class::Sw, ClassState { version: 4, hash })].into();
        (s, site)
    }

    /// The agent's hash is the contract's snapshot hash (SPEC 4), pinned to a value computed
    /// outside this code base (Python's compact `json.dumps` and the `blake3` package): a site
    /// would refuse every report if the two ever differed.
    #[test]
    fn hash_is_the_contracts_snapshot_hash() {
        let i = items(&[("dpkg/bash/amd64", "5.2"), ("dpkg/zsh/amd64", "5.9")]);
        assert_eq!(
            snapshot_hash(&i).to_hex(),
            "244f18aa9dd9229edc3101346282e650c573253d5c138a3c108fdf429e6f46d4"
        );
        // The empty snapshot is BLAKE3 of nothing.
        assert_eq!(
            snapshot_hash(&Items::new()).to_hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    #[test]
    fn nothing_changed_sends_nothing() {
        let i = items(&[("dpkg/bash/amd64", "5.2")]);
        let (s, site) = agreed(&i);
        assert_eq!(plan(&s, &site, Class::Sw, &i), None);
    }

    #[test]
    fn pending_resync_sends_full_answering_every_pending_id_of_the_class() {
        let i = items(&[("dpkg/bash/amd64", "5.2")]);
        let (mut s, site) = agreed(&i);
        for (id, class) in [(5, Class::Sw), (6, Class::Hw), (9, Class::Sw)] {
            s.resyncs.push(PendingResync {
                id,
                class,
                received_at: Timestamp(0),
            });
        }
        let p = plan(&s, &site, Class::Sw, &i).expect("a report");
        assert_eq!(p.reason, PlanReason::Requested);
        assert_eq!(p.answers, vec![5, 9]);
        assert_eq!(p.body, ReportBody::Full { items: i.clone() });
        assert_eq!(p.hash, snapshot_hash(&i));
    }

    #[test]
    fn site_without_a_snapshot_gets_a_full_report() {
        let i = items(&[("dpkg/bash/amd64", "5.2")]);
        let (s, _) = agreed(&i);
        let p = plan(&s, &BTreeMap::new(), Class::Sw, &i).expect("a report");
        assert_eq!(p.reason, PlanReason::SiteHasNone);
        assert!(p.body.is_full() && p.answers.is_empty());
        // A fresh agent against a fresh site, likewise.
        let p = plan(&state(), &BTreeMap::new(), Class::Hw, &Items::new()).unwrap();
        assert_eq!(p.reason, PlanReason::SiteHasNone);
    }

    #[test]
    fn site_with_another_version_or_hash_gets_a_full_report() {
        let i = items(&[("dpkg/bash/amd64", "5.2")]);
        let (s, mut site) = agreed(&i);
        // A restored site database: older version, same hash.
        let older = ClassState {
            version: 3,
            hash: snapshot_hash(&i),
        };
        site.insert(Class::Sw, older);
        let p = plan(&s, &site, Class::Sw, &i).expect("a report");
        assert_eq!(p.reason, PlanReason::SiteDiffers { site: older });
        assert!(p.body.is_full());
        // Same version, another hash.
        let other = ClassState {
            version: 4,
            hash: snapshot_hash(&Items::new()),
        };
        site.insert(Class::Sw, other);
        assert_eq!(
            plan(&s, &site, Class::Sw, &i).unwrap().reason,
            PlanReason::SiteDiffers { site: other }
        );
        // A wiped agent: the site has a snapshot, the agent none.
        let (_, site) = agreed(&i);
        let p = plan(&state(), &site, Class::Sw, &i).unwrap();
        assert_eq!(p.reason, PlanReason::NothingAcknowledged);
    }

    #[test]
    fn changed_inventory_is_reported_with_the_new_hash() {
        let old = items(&[("dpkg/bash/amd64", "5.2")]);
        let new = items(&[("dpkg/bash/amd64", "5.3")]);
        let (s, site) = agreed(&old);
        let p = plan(&s, &site, Class::Sw, &new).expect("a report");
        assert_eq!(p.reason, PlanReason::Changed);
        assert_eq!(p.hash, snapshot_hash(&new));
        assert_eq!(p.body, ReportBody::Full { items: new });
        assert!(p.answers.is_empty());
    }

    #[test]
    fn a_small_change_is_sent_as_a_delta_against_the_acknowledged_version() {
        let old = items(&[
            ("a", "1"),
            ("b", "1"),
            ("c", "1"),
            ("d", "1"),
            ("e", "1"),
            ("g", "1"),
            ("h", "1"),
        ]);
        let new = items(&[
            ("a", "1"),
            ("b", "2"),
            ("d", "1"),
            ("e", "1"),
            ("f", "1"),
            ("g", "1"),
            ("h", "1"),
        ]);
        let (s, site) = agreed(&old);
        let p = plan(&s, &site, Class::Sw, &new).expect("a report");
        assert_eq!(p.reason, PlanReason::Changed);
        assert_eq!(p.hash, snapshot_hash(&new));
        let ReportBody::Delta {
            base_version,
            delta,
        } = &p.body
        else {
            panic!("expected a delta, got {:?}", p.body)
        };
        assert_eq!(*base_version, 4);
        assert_eq!(delta.upsert, items(&[("b", "2"), ("f", "1")]));
        assert_eq!(delta.remove, vec!["c".to_string()]);
        // What the site ends up holding is exactly the new inventory.
        let mut applied = Snapshot::new(old.clone());
        applied.apply(delta);
        assert_eq!(applied.items, new);
    }

    #[test]
    fn a_change_of_most_items_is_sent_in_full() {
        let old = items(&[("a", "1"), ("b", "1"), ("c", "1")]);
        let new = items(&[("a", "2"), ("b", "2"), ("c", "1")]);
        let (s, site) = agreed(&old);
        let p = plan(&s, &site, Class::Sw, &new).expect("a report");
        assert_eq!(p.body, ReportBody::Full { items: new });
    }

    #[test]
    fn items_after_applies_deltas_to_the_acknowledged_base_only() {
        let old = items(&[("a", "1"), ("b", "1")]);
        let new = items(&[("a", "2"), ("c", "1")]);
        let acked = AckedSnapshot {
            version: 4,
            hash: snapshot_hash(&old),
            items: old.clone(),
        };
        let delta: Delta = Snapshot::new(old).diff(&Snapshot::new(new.clone()));
        let mut report = PlannedReport {
            class: Class::Sw,
            hash: snapshot_hash(&new),
            body: ReportBody::Delta {
                base_version: 4,
                delta,
            },
            answers: vec![],
            reason: PlanReason::Changed,
        }
        .into_report();
        assert_eq!(items_after(&report, Some(&acked)), Some(new.clone()));
        assert_eq!(items_after(&report, None), None);
        report.body = ReportBody::Full { items: new.clone() };
        assert_eq!(items_after(&report, None), Some(new));
    }
}
