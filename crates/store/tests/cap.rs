//! The store's part of the file-share CAP (issue 18), run against every backend as the
//! contract tests are: a client's transport, the `.cfg` view that marks nothing, file-share
//! check-ins, offline enrollment, the stale guard of reports read from a directory, imports of
//! machines that were never enrolled and the enrollments that take them over, and the schema
//! migration that adds the transport.

mod common;

use common::*;
use invsync_proto::wire::{
    ClientSummary, Event, InstructionKind, Report, ReportAck, RequestState, Transport,
};
use invsync_proto::{Class, Digest, Items, Snapshot, Timestamp};
use invsync_store::{Authenticated, CapCheckin, Enrollment, Imported, Store, StoreError};
use uuid::Uuid;

/// A report as the site receives it: its JSON read into prepared items.
fn incoming(report: &Report) -> invsync_store::IncomingReport {
    serde_json::from_str(&serde_json::to_string(report).unwrap()).unwrap()
}

/// Software items `a`…: one package per name, version 1.
fn packages(names: &[&str]) -> Items {
    names.iter().map(|n| package(n, "1", 1)).collect()
}

/// The transport of a client by name, as the client view and the client list show it.
async fn transport_of(s: &Store, raw: &str) -> (Transport, Transport) {
    let view = s
        .client_view(&name(raw))
        .await
        .unwrap()
        .expect("known client");
    let listed: Vec<ClientSummary> = s.clients().await.unwrap();
    let summary = listed
        .iter()
        .find(|c| c.name == name(raw))
        .expect("listed client");
    (view.transport, summary.transport)
}

fn checkin(machine_id: &str, seen_at: i64, seen: &[i64], done_events: &[i64]) -> CapCheckin {
    CapCheckin {
        machine_id: machine_id.to_string(),
        seen_at: Timestamp(seen_at),
        seen: seen.to_vec(),
        done_events: done_events.to_vec(),
    }
}

#[test]
fn a_transport_is_lowercase_json_and_older_json_without_one_reads_as_http() {
    assert_eq!(serde_json::to_string(&Transport::Cap).unwrap(), "\"cap\"");
    assert_eq!(
        serde_json::to_string(&Transport::Imported).unwrap(),
        "\"imported\""
    );
    let old = r#"{"name":"WEB1","id":"2dda9fff-e785-4834-aab6-a5d85974d909","site":"S01",
        "last_seen":null,"hw_version":null,"hw_updated_at":null,"sw_version":null,
        "sw_updated_at":null,"pending_requests":0}"#;
    let read: ClientSummary = serde_json::from_str(old).unwrap();
    assert_eq!(read.transport, Transport::Http);
    let again = serde_json::to_value(&read).unwrap();
    assert_eq!(again["transport"], "http");
}

on_each_backend!(
    #[tokio::test]
    cfg_view_answers_as_a_checkin_would_and_marks_nothing
);
async fn cfg_view_answers_as_a_checkin_would_and_marks_nothing() {
    for f in stores().await {
        let (s, b) = (&f.store, &f.backend);
        let id = enroll(s, "cli1").await;
        let hw = full(Class::Hw, &hw_items("SN1"));
        s.store_report(id, &hw, Timestamp(2_100)).await.unwrap();
        let before = s.client_view(&name("cli1")).await.unwrap().unwrap();
        let r = s
            .request_resync(&name("cli1"), Class::Sw, Timestamp(2_200))
            .await
            .unwrap();
        let e = s
            .request_event(&name("cli1"), Event::Cycle, Timestamp(2_300))
            .await
            .unwrap();

        let view = s.cfg_view(id).await.unwrap().expect("own client");
        let kinds: Vec<_> = view.instructions.iter().map(|i| (i.id, i.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                (r.id, InstructionKind::Resync { class: Class::Sw }),
                (
                    e.id,
                    InstructionKind::Event {
                        event: Event::Cycle
                    }
                ),
            ],
            "{b}"
        );
        assert_eq!(view.classes.len(), 1, "{b}");
        assert_eq!(view.classes[&Class::Hw].version, 1, "{b}");
        assert_eq!(view.classes[&Class::Hw].hash, hw.hash, "{b}");
        assert_eq!(view.agent_interval_secs, None, "{b}");

        // Nothing was marked and no time recorded.
        let state = s.request_state(r.id).await.unwrap().unwrap();
        assert_eq!(
            (state.state, state.picked_up_at),
            (RequestState::Pending, None),
            "{b}"
        );
        let after = s.client_view(&name("cli1")).await.unwrap().unwrap();
        assert_eq!(after.last_seen, before.last_seen, "{b}");
        assert_eq!(after.events[0].picked_up_at, None, "{b}");

        // A check-in after it answers the same and is the one that picks them up.
        let answer = s.checkin(id, Timestamp(3_000)).await.unwrap();
        assert_eq!(answer, view, "{b}");
        let state = s.request_state(r.id).await.unwrap().unwrap();
        assert_eq!(
            (state.state, state.picked_up_at),
            (RequestState::PickedUp, Some(Timestamp(3_000))),
            "{b}"
        );

        assert_eq!(s.cfg_view(Uuid::new_v4()).await.unwrap(), None, "{b}");
    }
}

on_each_backend!(
    #[tokio::test]
    a_cap_checkin_marks_this_clients_seen_requests_completes_its_events_and_records_the_client
);
async fn a_cap_checkin_marks_this_clients_seen_requests_completes_its_events_and_records_the_client()
 {
    for f in stores().await {
        let (s, b) = (&f.store, &f.backend);
        let a = s
            .enroll_offline(&name("off1"), &key_hash(3), Timestamp(1_000))
            .await
            .unwrap()
            .client_id;
        let other = enroll(s, "web1").await;
        let resync = |n: &'static str, class| async move {
            let client = name(n);
            let queued = s.request_resync(&client, class, Timestamp(1_500)).await;
            queued.unwrap().id
        };
        let r1 = resync("off1", Class::Hw).await;
        let r2 = resync("off1", Class::Sw).await;
        let rb = resync("web1", Class::Hw).await;
        let e1 = s
            .request_event(&name("off1"), Event::Hinv, Timestamp(1_600))
            .await
            .unwrap()
            .id;
        let eb = s
            .request_event(&name("web1"), Event::Hinv, Timestamp(1_600))
            .await
            .unwrap()
            .id;

        // The first check-in: r1 and e1 seen, e1 done; the other client's ids are named too.
        let c = checkin("m-off1", 4_000, &[r1, rb, e1], &[e1, eb]);
        s.cap_checkin(a, &c, Timestamp(5_000)).await.unwrap();
        let picked = |id| async move {
            let r = s.request_state(id).await.unwrap().unwrap();
            (r.state, r.picked_up_at)
        };
        assert_eq!(
            picked(r1).await,
            (RequestState::PickedUp, Some(Timestamp(5_000))),
            "{b}"
        );
        assert_eq!(picked(r2).await, (RequestState::Pending, None), "{b}");
        assert_eq!(
            picked(rb).await,
            (RequestState::Pending, None),
            "{b}: another client's id is ignored"
        );
        let view = s.client_view(&name("off1")).await.unwrap().unwrap();
        assert_eq!(view.events.len(), 1, "{b}");
        assert_eq!(
            (
                view.events[0].id,
                view.events[0].state,
                view.events[0].completed_at
            ),
            (e1, RequestState::Complete, Some(Timestamp(5_000))),
            "{b}"
        );
        assert_eq!(view.machine_id, "m-off1", "{b}: filled in once");
        assert_eq!(view.last_seen, Some(Timestamp(4_000)), "{b}");
        assert_eq!(view.transport, Transport::Cap, "{b}");
        let web1 = s.client_view(&name("web1")).await.unwrap().unwrap();
        assert_eq!(web1.events[0].state, RequestState::Pending, "{b}");

        // An old file put back: nothing moves back, the machine id is never overwritten, and a
        // request already picked up keeps its time.
        let old = checkin("m-else", 3_000, &[r1], &[]);
        s.cap_checkin(a, &old, Timestamp(6_000)).await.unwrap();
        let view = s.client_view(&name("off1")).await.unwrap().unwrap();
        assert_eq!(
            (view.machine_id.as_str(), view.last_seen),
            ("m-off1", Some(Timestamp(4_000))),
            "{b}"
        );
        assert_eq!(
            picked(r1).await,
            (RequestState::PickedUp, Some(Timestamp(5_000))),
            "{b}"
        );

        // A clock ahead of the site's: the site's time, not the future.
        let ahead = checkin("m-off1", 99_000, &[], &[]);
        s.cap_checkin(a, &ahead, Timestamp(7_000)).await.unwrap();
        let view = s.client_view(&name("off1")).await.unwrap().unwrap();
        assert_eq!(view.last_seen, Some(Timestamp(7_000)), "{b}");

        // A client enrolled over HTTP that delivers a file uses the CAP from then on; its
        // machine id stays its own.
        assert_eq!(
            transport_of(s, "web1").await,
            (Transport::Http, Transport::Http),
            "{b}"
        );
        let c = checkin("m-else", 7_500, &[rb], &[]);
        s.cap_checkin(other, &c, Timestamp(8_000)).await.unwrap();
        assert_eq!(
            transport_of(s, "web1").await,
            (Transport::Cap, Transport::Cap),
            "{b}"
        );
        let web1 = s.client_view(&name("web1")).await.unwrap().unwrap();
        assert_eq!(web1.machine_id, "web1-machine", "{b}");
        assert_eq!(
            picked(rb).await,
            (RequestState::PickedUp, Some(Timestamp(8_000))),
            "{b}"
        );

        let unknown = Uuid::new_v4();
        let err = s
            .cap_checkin(unknown, &c, Timestamp(8_000))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            StoreError::UnknownClient {
                name: unknown.to_string()
            },
            "{b}"
        );
    }
}

on_each_backend!(
    #[tokio::test]
    offline_enrollment_creates_a_cap_client_and_refuses_a_taken_name
);
async fn offline_enrollment_creates_a_cap_client_and_refuses_a_taken_name() {
    for f in stores().await {
        let (s, b) = (&f.store, &f.backend);
        let off = s
            .enroll_offline(&name("off1"), &key_hash(3), Timestamp(1_000))
            .await
            .unwrap();
        assert!(!off.reenrolled, "{b}");
        let auth = s.client_auth(off.client_id).await.unwrap().unwrap();
        assert_eq!(
            (auth.name.as_str(), auth.key_hash),
            ("OFF1", key_hash(3)),
            "{b}"
        );
        let view = s.client_view(&name("off1")).await.unwrap().unwrap();
        assert_eq!(
            (
                view.machine_id.as_str(),
                view.enrolled_at,
                view.last_seen,
                view.transport
            ),
            ("", Timestamp(1_000), None, Transport::Cap),
            "{b}"
        );
        let web = enroll(s, "web1").await;

        // Taken by a client over HTTP, and by a CAP client: refused as enroll refuses it.
        for (taken, holder, machine) in [("web1", web, "web1-machine"), ("off1", off.client_id, "")]
        {
            let err = s
                .enroll_offline(&name(taken), &key_hash(4), Timestamp(1_100))
                .await
                .unwrap_err();
            assert_eq!(
                err,
                StoreError::NameTaken {
                    name: name(taken),
                    holder_id: holder,
                    holder_machine_id: machine.to_string(),
                },
                "{b}"
            );
        }
        assert_eq!(s.clients().await.unwrap().len(), 2, "{b}: nothing created");
        assert_eq!(
            s.client_auth(web).await.unwrap().unwrap().key_hash,
            key_hash(1),
            "{b}: nothing changed"
        );
        assert_eq!(transport_of(s, "web1").await.0, Transport::Http, "{b}");

        // The CAP clients, by name; clients over HTTP and imported records are not among them.
        let first = s
            .enroll_offline(&name("aaa"), &key_hash(5), Timestamp(1_200))
            .await
            .unwrap();
        let imported = s
            .import_unmanaged(
                &name("imp1"),
                "m-imp",
                &full(Class::Hw, &hw_items("SN9")),
                Timestamp(1_300),
            )
            .await
            .unwrap();
        assert!(imported.created, "{b}");
        assert_eq!(
            s.cap_clients().await.unwrap(),
            vec![
                (first.client_id, name("aaa")),
                (off.client_id, name("off1"))
            ],
            "{b}"
        );
    }
}

on_each_backend!(
    #[tokio::test]
    a_guarded_full_report_is_stale_once_the_site_holds_a_later_version
);
async fn a_guarded_full_report_is_stale_once_the_site_holds_a_later_version() {
    for f in stores().await {
        let (s, b) = (&f.store, &f.backend);
        let id = enroll(s, "cli1").await;
        let key = key_hash(1);
        let guarded = |report: &Report, not_past: Option<i64>, at: i64| {
            s.store_incoming_guarded(id, &key, incoming(report), not_past, Timestamp(at))
        };
        let ack = |found: Authenticated<ReportAck>| match found {
            Authenticated::Client(_, ack) => ack,
            other => panic!("{b}: refused credentials: {other:?}"),
        };
        let (one, two) = (packages(&["a"]), packages(&["a", "b"]));
        let first = full(Class::Sw, &one);
        let second = full(Class::Sw, &two);

        // Accepted while the stored version is at most `not_past` (none stored, then 1).
        let got = ack(guarded(&first, Some(0), 3_000).await.unwrap());
        assert_eq!(
            got,
            ReportAck::Accepted {
                version: 1,
                hash: first.hash
            },
            "{b}"
        );
        let got = ack(guarded(&second, Some(1), 3_100).await.unwrap());
        assert_eq!(
            got,
            ReportAck::Accepted {
                version: 2,
                hash: second.hash
            },
            "{b}"
        );

        // Written when the site held version 1: stale now, and nothing stored.
        let old = full(Class::Sw, &packages(&["z"]));
        let got = ack(guarded(&old, Some(1), 3_200).await.unwrap());
        assert_eq!(
            got,
            ReportAck::ResyncRequired {
                reason: "the full report is stale: it was written when the site held at most \
                         version 1, and the site holds version 2"
                    .to_string()
            },
            "{b}"
        );
        let sw = s.client_view(&name("cli1")).await.unwrap().unwrap().sw;
        let sw = sw.expect("snapshot");
        assert_eq!((sw.version, sw.hash), (2, second.hash), "{b}");

        // The report id is checked first: an exact re-import is a duplicate, not stale.
        let got = ack(guarded(&second, Some(0), 3_300).await.unwrap());
        assert_eq!(
            got,
            ReportAck::Duplicate {
                version: 2,
                hash: second.hash
            },
            "{b}"
        );

        // A delta ignores the guard: its base version guards it.
        let three = packages(&["a", "b", "c"]);
        let d = delta(Class::Sw, 2, &two, &three);
        let got = ack(guarded(&d, Some(0), 3_400).await.unwrap());
        assert_eq!(
            got,
            ReportAck::Accepted {
                version: 3,
                hash: d.hash
            },
            "{b}"
        );
        // Without a guard a full report is stored as over HTTP.
        let got = ack(guarded(&old, None, 3_500).await.unwrap());
        assert_eq!(
            got,
            ReportAck::Accepted {
                version: 4,
                hash: old.hash
            },
            "{b}"
        );
        // A wrong key learns nothing, stale or not.
        let refused = s
            .store_incoming_guarded(
                id,
                &key_hash(9),
                incoming(&first),
                Some(0),
                Timestamp(3_600),
            )
            .await
            .unwrap();
        assert_eq!(refused, Authenticated::Unknown, "{b}");
    }
}

on_each_backend!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    of_two_guarded_full_reports_written_against_the_same_version_exactly_one_is_stored
);
async fn of_two_guarded_full_reports_written_against_the_same_version_exactly_one_is_stored() {
    for f in stores().await {
        let b = &f.backend;
        let s = f.store.clone();
        let id = enroll(&s, "cli1").await;
        let base = full(Class::Sw, &packages(&["a"]));
        s.store_report(id, &base, Timestamp(3_000)).await.unwrap();
        // Two cap-sync processes, each with a store of its own, import two files at once.
        let other = f.second_handle().await;
        for round in 0..5i64 {
            let held = round + 1;
            let x = full(Class::Sw, &packages(&["a", &format!("x{round}")]));
            let y = full(Class::Sw, &packages(&["a", &format!("y{round}")]));
            let at = Timestamp(4_000 + round);
            let key = key_hash(1);
            let (gx, gy) = tokio::join!(
                s.store_incoming_guarded(id, &key, incoming(&x), Some(held), at),
                other.store_incoming_guarded(id, &key, incoming(&y), Some(held), at),
            );
            let acks: Vec<ReportAck> = [gx.unwrap(), gy.unwrap()]
                .into_iter()
                .map(|g| match g {
                    Authenticated::Client(_, ack) => ack,
                    refused => panic!("{b}: {refused:?}"),
                })
                .collect();
            let accepted: Vec<&ReportAck> = acks
                .iter()
                .filter(|a| matches!(a, ReportAck::Accepted { .. }))
                .collect();
            assert_eq!(accepted.len(), 1, "{b}: round {round}: {acks:?}");
            let stale = ReportAck::ResyncRequired {
                reason: format!(
                    "the full report is stale: it was written when the site held at most \
                     version {held}, and the site holds version {}",
                    held + 1
                ),
            };
            assert!(acks.contains(&stale), "{b}: round {round}: {acks:?}");
            let sw = s.client_view(&name("cli1")).await.unwrap().unwrap().sw;
            assert_eq!(sw.map(|v| v.version), Some(held + 1), "{b}");
        }
    }
}

on_each_backend!(
    #[tokio::test]
    an_import_creates_or_updates_an_unmanaged_record_and_never_takes_another_machines_name
);
async fn an_import_creates_or_updates_an_unmanaged_record_and_never_takes_another_machines_name() {
    for f in stores().await {
        let (s, b) = (&f.store, &f.backend);
        s.set_forwarding(true).await.unwrap();

        // Created: imported, no key, the machine id, the report stored as version 1.
        let first = full(Class::Hw, &hw_items("SN1"));
        let got = s
            .import_unmanaged(&name("imp1"), "m-i", &first, Timestamp(1_000))
            .await
            .unwrap();
        let id = got.client_id;
        assert_eq!(
            got,
            Imported {
                client_id: id,
                created: true,
                ack: ReportAck::Accepted {
                    version: 1,
                    hash: first.hash
                },
            },
            "{b}"
        );
        let view = s.client_view(&name("imp1")).await.unwrap().unwrap();
        assert_eq!(
            (view.machine_id.as_str(), view.transport, view.last_seen),
            ("m-i", Transport::Imported, None),
            "{b}"
        );
        assert_eq!(view.hw.map(|h| h.hash), Some(first.hash), "{b}");
        let auth = s.client_auth(id).await.unwrap().unwrap();
        assert_eq!(
            auth.key_hash,
            Digest([0; 32]),
            "{b}: no key authenticates it"
        );
        assert_eq!(
            s.outbox_batch(10).await.unwrap().len(),
            1,
            "{b}: forwarded like a report"
        );

        // Updated: the same record, the next version, history, and the new machine id.
        let second = full(Class::Hw, &hw_items("SN2"));
        let got = s
            .import_unmanaged(&name("imp1"), "m-j", &second, Timestamp(1_100))
            .await
            .unwrap();
        assert_eq!(
            got,
            Imported {
                client_id: id,
                created: false,
                ack: ReportAck::Accepted {
                    version: 2,
                    hash: second.hash
                },
            },
            "{b}"
        );
        let view = s.client_view(&name("imp1")).await.unwrap().unwrap();
        assert_eq!(view.machine_id, "m-j", "{b}");
        let history = s.history(&name("imp1"), 100).await.unwrap().unwrap();
        let (was, now) = (hw_items("SN1"), hw_items("SN2"));
        let mut changed: Vec<&String> = was
            .keys()
            .chain(now.keys())
            .filter(|k| was.get(*k) != now.get(*k))
            .collect();
        changed.sort();
        changed.dedup();
        let mut recorded: Vec<&String> = history.iter().map(|h| &h.key).collect();
        recorded.sort();
        assert_eq!(recorded, changed, "{b}: the history of the second import");

        // An enrolled client of the same machine: stored for it, its transport unchanged.
        let web = enroll(s, "web1").await;
        let sw = full(Class::Sw, &packages(&["a"]));
        let got = s
            .import_unmanaged(&name("web1"), "web1-machine", &sw, Timestamp(1_200))
            .await
            .unwrap();
        assert_eq!(
            got,
            Imported {
                client_id: web,
                created: false,
                ack: ReportAck::Accepted {
                    version: 1,
                    hash: sw.hash
                },
            },
            "{b}"
        );
        assert_eq!(transport_of(s, "web1").await.0, Transport::Http, "{b}");

        // Another machine's name: refused, nothing stored.
        let theirs = full(Class::Sw, &packages(&["evil"]));
        let err = s
            .import_unmanaged(&name("web1"), "m-other", &theirs, Timestamp(1_300))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            StoreError::NameTaken {
                name: name("web1"),
                holder_id: web,
                holder_machine_id: "web1-machine".to_string(),
            },
            "{b}"
        );
        let view = s.client_view(&name("web1")).await.unwrap().unwrap();
        assert_eq!(
            view.sw.map(|v| (v.version, v.hash)),
            Some((1, sw.hash)),
            "{b}"
        );

        // A report whose items do not match its hash: refused before anything is created.
        let mut bad = full(Class::Hw, &hw_items("SN3"));
        bad.hash = Snapshot::new(hw_items("SN4")).hash();
        let err = s
            .import_unmanaged(&name("bad1"), "m-b", &bad, Timestamp(1_400))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::BadReport(_)), "{b}: {err:?}");
        assert_eq!(s.client_view(&name("bad1")).await.unwrap(), None, "{b}");
        let d = delta(Class::Hw, 2, &hw_items("SN2"), &hw_items("SN5"));
        let err = s
            .import_unmanaged(&name("imp1"), "m-j", &d, Timestamp(1_450))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            StoreError::BadReport(
                "an imported inventory must be a full report, not a delta".to_string()
            ),
            "{b}"
        );
        // Without a machine id no enrolling agent could ever take the record over.
        let err = s
            .import_unmanaged(&name("anon1"), " ", &first, Timestamp(1_500))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            StoreError::Refused(
                "the inventory for ANON1 names no machine id; take it again with \
                 `invagent inventory` on the machine itself"
                    .to_string()
            ),
            "{b}"
        );
        assert_eq!(s.clients().await.unwrap().len(), 2, "{b}");
        assert_eq!(s.outbox_batch(10).await.unwrap().len(), 3, "{b}");
    }
}

on_each_backend!(
    #[tokio::test]
    an_enrolling_machine_takes_over_its_imported_record_by_name_or_by_machine_id
);
async fn an_enrolling_machine_takes_over_its_imported_record_by_name_or_by_machine_id() {
    for f in stores().await {
        let (s, b) = (&f.store, &f.backend);
        let import = |raw: &'static str, machine: &'static str, serial: &'static str| async move {
            let report = full(Class::Hw, &hw_items(serial));
            let got = s
                .import_unmanaged(&name(raw), machine, &report, Timestamp(1_000))
                .await
                .unwrap();
            // A second import, so the record has history to keep.
            let again = full(Class::Hw, &hw_items(&format!("{serial}b")));
            s.import_unmanaged(&name(raw), machine, &again, Timestamp(1_100))
                .await
                .unwrap();
            got.client_id
        };
        let enrollment = |raw: &str, machine: &str| Enrollment {
            name: name(raw),
            machine_id: machine.to_string(),
            key_hash: key_hash(5),
            now: Timestamp(2_000),
            hardware: None,
            agent_version: None,
        };

        // (a) The same name and the same machine: the record becomes the client.
        let pc1 = import("pc1", "m-p", "SN1").await;
        let history = s.history(&name("pc1"), 100).await.unwrap().unwrap();
        assert!(!history.is_empty(), "{b}");
        let got = s.enroll(&enrollment("pc1", "m-p")).await.unwrap();
        assert_eq!(
            (got.client_id, got.reenrolled),
            (pc1, true),
            "{b}: same client id"
        );
        assert_eq!(
            s.client_auth(pc1).await.unwrap().unwrap().key_hash,
            key_hash(5),
            "{b}"
        );
        assert_eq!(
            transport_of(s, "pc1").await,
            (Transport::Http, Transport::Http),
            "{b}"
        );
        let view = s.client_view(&name("pc1")).await.unwrap().unwrap();
        assert_eq!(view.hw.map(|h| h.version), Some(2), "{b}: inventory kept");
        assert_eq!(
            s.history(&name("pc1"), 100).await.unwrap().unwrap(),
            history,
            "{b}: history kept"
        );

        // The same name and another machine: refused, the record stays imported.
        let pc2 = import("pc2", "m-q", "SN2").await;
        let err = s.enroll(&enrollment("pc2", "m-r")).await.unwrap_err();
        assert_eq!(
            err,
            StoreError::NameTaken {
                name: name("pc2"),
                holder_id: pc2,
                holder_machine_id: "m-q".to_string(),
            },
            "{b}"
        );
        assert_eq!(transport_of(s, "pc2").await.0, Transport::Imported, "{b}");

        // (b) A free name and the machine of an imported record: the record takes the name.
        let old = import("old-name", "m-t", "SN3").await;
        let history = s.history(&name("old-name"), 100).await.unwrap().unwrap();
        let got = s.enroll(&enrollment("new1", "m-t")).await.unwrap();
        assert_eq!((got.client_id, got.reenrolled), (old, true), "{b}");
        assert_eq!(s.client_view(&name("old-name")).await.unwrap(), None, "{b}");
        let view = s.client_view(&name("new1")).await.unwrap().unwrap();
        assert_eq!(
            (view.id, view.transport, view.machine_id.as_str()),
            (old, Transport::Http, "m-t"),
            "{b}"
        );
        assert_eq!(view.hw.map(|h| h.version), Some(2), "{b}");
        assert_eq!(
            s.history(&name("new1"), 100).await.unwrap().unwrap(),
            history,
            "{b}: history kept"
        );
        let auth = s.client_auth(old).await.unwrap().unwrap();
        assert_eq!(
            (auth.name, auth.key_hash),
            (name("new1"), key_hash(5)),
            "{b}"
        );

        // A new machine with a free name is a new client, as before.
        let fresh = s.enroll(&enrollment("new2", "m-new")).await.unwrap();
        assert!(!fresh.reenrolled && fresh.client_id != old, "{b}");

        // Offline enrollment takes nothing over: an imported name is taken.
        let err = s
            .enroll_offline(&name("pc2"), &key_hash(6), Timestamp(3_000))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NameTaken { holder_id, .. } if holder_id == pc2),
            "{b}"
        );
        assert_eq!(s.clients().await.unwrap().len(), 4, "{b}");
    }
}

on_each_backend!(
    #[tokio::test]
    a_database_of_the_previous_schema_version_opens_and_its_clients_read_as_http
);
async fn a_database_of_the_previous_schema_version_opens_and_its_clients_read_as_http() {
    for f in stores().await {
        let b = f.backend.clone();
        enroll(&f.store, "web1").await;
        // What the version before the file-share CAP (SQLite 5, PostgreSQL 2) had: no
        // transport, no index, and nothing of the later versions.
        let (lite, pg) = back_to(5, 2);
        let undo_cap = "DROP INDEX clients_offline; ALTER TABLE clients DROP COLUMN transport;";
        let f = f
            .reopen_after(&format!("{undo_cap} {lite}"), &format!("{undo_cap} {pg}"))
            .await;
        let s = &f.store;
        assert_eq!(
            transport_of(s, "web1").await,
            (Transport::Http, Transport::Http),
            "{b}"
        );
        // The migrated database takes what the new version adds.
        let off = s
            .enroll_offline(&name("off1"), &key_hash(3), Timestamp(3_000))
            .await
            .unwrap();
        assert_eq!(
            s.cap_clients().await.unwrap(),
            vec![(off.client_id, name("off1"))],
            "{b}"
        );
        let f = f.reopen().await;
        assert_eq!(
            transport_of(&f.store, "off1").await.0,
            Transport::Cap,
            "{b}"
        );
    }
}
