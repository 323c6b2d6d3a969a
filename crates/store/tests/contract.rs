//! The contract of `Store`, run against every backend that `common::stores` returns: what the
//! site and the command-line tools rely on, independent of the database behind it.

mod common;

use std::collections::BTreeMap;

use common::*;
use invsync_proto::wire::{Event, InstructionKind, ReportAck, ReportBody, RequestState};
use invsync_proto::{Class, Items, Snapshot, Timestamp};
use invsync_store::{Authenticated, Enrollment, StoreError};

on_each_backend!(
    #[tokio::test]
    enrollment_issues_ids_keeps_them_for_the_same_machine_and_refuses_another
);
async fn enrollment_issues_ids_keeps_them_for_the_same_machine_and_refuses_another() {
    for f in stores().await {
        let s = &f.store;
        let first = Enrollment {
            name: name("web01"),
            machine_id: "m-1".into(),
            key_hash: key_hash(1),
            now: Timestamp(10),
            hardware: None,
            agent_version: None,
        };
        let a = s.enroll(&first).await.unwrap();
        assert!(!a.reenrolled, "{}", f.backend);

        // The same machine again: same id, new key.
        let again = Enrollment {
            key_hash: key_hash(2),
            now: Timestamp(20),
            ..first.clone()
        };
        let b = s.enroll(&again).await.unwrap();
        assert_eq!(b.client_id, a.client_id, "{}", f.backend);
        assert!(b.reenrolled);
        let auth = s
            .client_auth(a.client_id)
            .await
            .unwrap()
            .expect("known client");
        assert_eq!(auth.key_hash, key_hash(2), "re-enrolling replaces the key");
        assert_eq!(auth.name.as_str(), "WEB01");

        // Another machine under the same name is refused, naming the holder.
        let other = Enrollment {
            machine_id: "m-2".into(),
            ..first.clone()
        };
        let err = s.enroll(&other).await.unwrap_err();
        match &err {
            StoreError::NameTaken {
                name,
                holder_id,
                holder_machine_id,
            } => {
                assert_eq!(name.as_str(), "WEB01");
                assert_eq!(*holder_id, a.client_id);
                assert_eq!(holder_machine_id, "m-1");
            }
            other => panic!("{}: expected NameTaken, got {other:?}", f.backend),
        }
        let msg = err.to_string();
        assert!(
            msg.contains("WEB01") && msg.contains(&a.client_id.to_string()) && msg.contains("m-1"),
            "{msg}"
        );
        assert_eq!(
            s.client_auth(a.client_id).await.unwrap().unwrap().key_hash,
            key_hash(2),
            "refusal changed nothing"
        );

        // Another name is another client.
        let c = s
            .enroll(&Enrollment {
                name: name("web02"),
                machine_id: "m-2".into(),
                ..first
            })
            .await
            .unwrap();
        assert_ne!(c.client_id, a.client_id);
        assert!(s.client_auth(uuid::Uuid::new_v4()).await.unwrap().is_none());
        assert_eq!(s.site().await.unwrap(), site());
    }
}

on_each_backend!(
    #[tokio::test]
    checkin_delivers_requests_until_complete_and_marks_them_picked_up
);
async fn checkin_delivers_requests_until_complete_and_marks_them_picked_up() {
    for f in stores().await {
        let s = &f.store;
        let id = enroll(s, "cli1").await;
        let empty = s.checkin(id, Timestamp(100)).await.unwrap();
        assert!(
            empty.instructions.is_empty() && empty.classes.is_empty(),
            "{}",
            f.backend
        );

        let r = s
            .request_resync(&name("cli1"), Class::Sw, Timestamp(200))
            .await
            .unwrap();
        assert!(r.created);
        assert_eq!(r.state, RequestState::Pending);
        let e = s
            .request_event(&name("cli1"), Event::Hinv, Timestamp(210))
            .await
            .unwrap();
        assert!(e.created);

        let got = s.checkin(id, Timestamp(300)).await.unwrap();
        let kinds: Vec<_> = got.instructions.iter().map(|i| (i.id, i.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                (r.id, InstructionKind::Resync { class: Class::Sw }),
                (e.id, InstructionKind::Event { event: Event::Hinv })
            ],
            "{}: oldest first",
            f.backend
        );
        let state = s.request_state(r.id).await.unwrap().unwrap();
        assert_eq!(state.state, RequestState::PickedUp);
        assert_eq!(state.picked_up_at, Some(Timestamp(300)));
        assert_eq!(state.requested_at, Timestamp(200));

        // A lost response loses nothing: the next check-in delivers them again, and the
        // pick-up time stays the first one.
        let again = s.checkin(id, Timestamp(400)).await.unwrap();
        assert_eq!(again.instructions.len(), 2);
        assert_eq!(
            s.request_state(r.id).await.unwrap().unwrap().picked_up_at,
            Some(Timestamp(300))
        );

        // Completing the event leaves only the resync.
        s.complete_events(id, &[e.id], Timestamp(500))
            .await
            .unwrap();
        let left = s.checkin(id, Timestamp(600)).await.unwrap();
        assert_eq!(
            left.instructions.iter().map(|i| i.id).collect::<Vec<_>>(),
            vec![r.id]
        );

        let view = s.client_view(&name("cli1")).await.unwrap().unwrap();
        assert_eq!(
            view.last_seen,
            Some(Timestamp(600)),
            "a check-in sets last_seen at once"
        );
        assert_eq!(view.events[0].state, RequestState::Complete);
        assert_eq!(view.events[0].completed_at, Some(Timestamp(500)));

        let unknown = s
            .checkin(uuid::Uuid::new_v4(), Timestamp(700))
            .await
            .unwrap_err();
        assert!(
            matches!(unknown, StoreError::UnknownClient { .. }),
            "{unknown:?}"
        );
    }
}

on_each_backend!(
    #[tokio::test]
    last_seen_times_reach_other_handles_after_a_flush_and_survive_a_reopen
);
async fn last_seen_times_reach_other_handles_after_a_flush_and_survive_a_reopen() {
    for f in stores().await {
        let id = enroll(&f.store, "cli1").await;
        f.store.checkin(id, Timestamp(5_000)).await.unwrap();
        f.store.checkin(id, Timestamp(4_000)).await.unwrap();
        f.store.flush().await.unwrap();
        // Another process reads the database, not this one's memory.
        let other = f.second_handle().await;
        let seen = |v: Option<invsync_proto::wire::ClientView>| v.unwrap().last_seen;
        assert_eq!(
            seen(other.client_view(&name("cli1")).await.unwrap()),
            Some(Timestamp(5_000)),
            "{}: the later time wins and is written by flush",
            f.backend
        );
        drop(other);
        let f = f.reopen().await;
        assert_eq!(
            seen(f.store.client_view(&name("cli1")).await.unwrap()),
            Some(Timestamp(5_000)),
            "{}",
            f.backend
        );
    }
}

on_each_backend!(
    #[tokio::test]
    identical_pending_requests_are_one_request_until_picked_up
);
async fn identical_pending_requests_are_one_request_until_picked_up() {
    for f in stores().await {
        let s = &f.store;
        let id = enroll(s, "cli1").await;
        enroll(s, "cli2").await;
        let a = s
            .request_resync(&name("cli1"), Class::Hw, Timestamp(100))
            .await
            .unwrap();
        let b = s
            .request_resync(&name("CLI1"), Class::Hw, Timestamp(150))
            .await
            .unwrap();
        assert_eq!(b.id, a.id, "{}", f.backend);
        assert!(a.created && !b.created);
        assert_eq!(
            b.requested_at,
            Timestamp(100),
            "the standing request keeps its time"
        );

        // Another class, another client or an event is another request.
        let sw = s
            .request_resync(&name("cli1"), Class::Sw, Timestamp(160))
            .await
            .unwrap();
        let other = s
            .request_resync(&name("cli2"), Class::Hw, Timestamp(160))
            .await
            .unwrap();
        let ev = s
            .request_event(&name("cli1"), Event::Cycle, Timestamp(160))
            .await
            .unwrap();
        let ev2 = s
            .request_event(&name("cli1"), Event::Cycle, Timestamp(170))
            .await
            .unwrap();
        assert!(sw.created && other.created && ev.created && !ev2.created);
        assert_eq!(ev2.id, ev.id);
        let ids = [a.id, sw.id, other.id, ev.id];
        assert_eq!(
            ids.iter().collect::<std::collections::BTreeSet<_>>().len(),
            4
        );

        // Once picked up, a new request is a new one.
        s.checkin(id, Timestamp(200)).await.unwrap();
        let c = s
            .request_resync(&name("cli1"), Class::Hw, Timestamp(300))
            .await
            .unwrap();
        assert!(c.created);
        assert_ne!(c.id, a.id);

        let err = s
            .request_resync(&name("nosuch"), Class::Hw, Timestamp(300))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            StoreError::UnknownClient {
                name: "NOSUCH".into()
            }
        );
        assert_eq!(err.to_string(), "unknown client NOSUCH");
        let err = s
            .request_event(&name("nosuch"), Event::Cycle, Timestamp(300))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::UnknownClient { .. }));
    }
}

on_each_backend!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    concurrent_identical_requests_are_one_request
);
/// Many concurrent callers queueing the same request still get one request.
async fn concurrent_identical_requests_are_one_request() {
    for f in stores().await {
        enroll(&f.store, "cli1").await;
        let mut tasks = Vec::new();
        for i in 0..50 {
            let s = f.store.clone();
            tasks.push(tokio::spawn(async move {
                s.request_resync(&name("cli1"), Class::Sw, Timestamp(100 + i))
                    .await
                    .unwrap()
            }));
        }
        let mut ids = std::collections::BTreeSet::new();
        let mut created = 0;
        for t in tasks {
            let q = t.await.unwrap();
            ids.insert(q.id);
            created += usize::from(q.created);
        }
        assert_eq!((ids.len(), created), (1, 1), "{}", f.backend);
    }
}

on_each_backend!(
    #[tokio::test]
    full_reports_version_the_snapshot_and_record_only_differences
);
async fn full_reports_version_the_snapshot_and_record_only_differences() {
    for f in stores().await {
        let s = &f.store;
        let id = enroll(s, "cli1").await;
        let mut v1 = Items::new();
        for i in 0..20 {
            let (k, a) = package(&format!("pkg{i}"), "1.0", 100);
            v1.insert(k, a);
        }
        let ack = s
            .store_report(id, &full(Class::Sw, &v1), Timestamp(1_000))
            .await
            .unwrap();
        let h1 = Snapshot::new(v1.clone()).hash();
        assert_eq!(
            ack,
            ReportAck::Accepted {
                version: 1,
                hash: h1
            },
            "{}",
            f.backend
        );
        assert!(
            s.history(&name("cli1"), 100)
                .await
                .unwrap()
                .unwrap()
                .is_empty(),
            "the first snapshot is not a change"
        );

        // Change one, remove one, add one.
        let mut v2 = v1.clone();
        let (k, a) = package("pkg3", "2.0", 100);
        v2.insert(k, a);
        v2.remove("dpkg/pkg7/amd64");
        let (k, a) = package("newpkg", "1.0", 5);
        v2.insert(k, a);
        let ack = s
            .store_report(id, &full(Class::Sw, &v2), Timestamp(2_000))
            .await
            .unwrap();
        let h2 = Snapshot::new(v2.clone()).hash();
        assert_eq!(
            ack,
            ReportAck::Accepted {
                version: 2,
                hash: h2
            }
        );

        let history = s.history(&name("cli1"), 100).await.unwrap().unwrap();
        fn version(a: &Option<invsync_proto::inventory::Attrs>) -> Option<&str> {
            a.as_ref().map(|a| a["version"].as_str())
        }
        let rows: BTreeMap<&str, (Option<&str>, Option<&str>)> = history
            .iter()
            .map(|h| (h.key.as_str(), (version(&h.old), version(&h.new))))
            .collect();
        assert_eq!(
            rows,
            BTreeMap::from([
                ("dpkg/newpkg/amd64", (None, Some("1.0"))),
                ("dpkg/pkg3/amd64", (Some("1.0"), Some("2.0"))),
                ("dpkg/pkg7/amd64", (Some("1.0"), None)),
            ]),
            "{}",
            f.backend
        );
        assert!(
            history
                .iter()
                .all(|h| h.full && h.class == Class::Sw && h.at == Timestamp(2_000))
        );

        let view = s.client_view(&name("cli1")).await.unwrap().unwrap();
        let sw = view.sw.expect("sw snapshot");
        assert_eq!(
            (sw.version, sw.hash, sw.full_at, sw.updated_at),
            (2, h2, Timestamp(2_000), Timestamp(2_000))
        );
        assert_eq!(sw.items, v2);
        assert!(view.hw.is_none());

        // The same content again is a new version without history.
        let ack = s
            .store_report(id, &full(Class::Sw, &v2), Timestamp(3_000))
            .await
            .unwrap();
        assert_eq!(
            ack,
            ReportAck::Accepted {
                version: 3,
                hash: h2
            }
        );
        assert_eq!(
            s.history(&name("cli1"), 100).await.unwrap().unwrap().len(),
            3
        );
        let sw = s
            .client_view(&name("cli1"))
            .await
            .unwrap()
            .unwrap()
            .sw
            .unwrap();
        assert_eq!((sw.full_at, sw.items), (Timestamp(3_000), v2));
    }
}

on_each_backend!(
    #[tokio::test]
    a_full_report_with_a_wrong_hash_stores_nothing
);
async fn a_full_report_with_a_wrong_hash_stores_nothing() {
    for f in stores().await {
        let s = &f.store;
        let id = enroll(s, "cli1").await;
        let items = hw_items("A1");
        s.store_report(id, &full(Class::Hw, &items), Timestamp(1_000))
            .await
            .unwrap();
        let mut bad = full(Class::Hw, &hw_items("B2"));
        bad.hash = Snapshot::new(items.clone()).hash();
        let err = s
            .store_report(id, &bad, Timestamp(2_000))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::BadReport(_)),
            "{}: {err:?}",
            f.backend
        );
        let hw = s
            .client_view(&name("cli1"))
            .await
            .unwrap()
            .unwrap()
            .hw
            .unwrap();
        assert_eq!((hw.version, hw.items), (1, items), "nothing was stored");

        // The report id of a refused report is not remembered: fixed, it is accepted.
        let fixed = full(Class::Hw, &hw_items("B2"));
        let fixed = invsync_proto::wire::Report {
            report_id: bad.report_id,
            ..fixed
        };
        let ack = s.store_report(id, &fixed, Timestamp(3_000)).await.unwrap();
        assert!(
            matches!(ack, ReportAck::Accepted { version: 2, .. }),
            "{ack:?}"
        );
    }
}

on_each_backend!(
    #[tokio::test]
    deltas_apply_only_to_the_right_base_and_hash
);
async fn deltas_apply_only_to_the_right_base_and_hash() {
    for f in stores().await {
        let s = &f.store;
        let id = enroll(s, "cli1").await;
        let v1 = hw_items("A1");
        s.store_report(id, &full(Class::Hw, &v1), Timestamp(1_000))
            .await
            .unwrap();

        let mut v2 = v1.clone();
        v2.insert(
            "disk/sda".into(),
            attrs(&[("model", "SSD"), ("size_bytes", "1000")]),
        );
        v2.get_mut("memory")
            .unwrap()
            .insert("total_bytes".into(), "34359738368".into());
        let ack = s
            .store_report(id, &delta(Class::Hw, 1, &v1, &v2), Timestamp(2_000))
            .await
            .unwrap();
        let h2 = Snapshot::new(v2.clone()).hash();
        assert_eq!(
            ack,
            ReportAck::Accepted {
                version: 2,
                hash: h2
            },
            "{}",
            f.backend
        );
        let hw = s
            .client_view(&name("cli1"))
            .await
            .unwrap()
            .unwrap()
            .hw
            .unwrap();
        assert_eq!(
            (hw.version, hw.full_at, hw.updated_at),
            (2, Timestamp(1_000), Timestamp(2_000))
        );
        assert_eq!(hw.items, v2);
        let history = s.history(&name("cli1"), 10).await.unwrap().unwrap();
        assert_eq!(
            history.iter().map(|h| h.key.as_str()).collect::<Vec<_>>(),
            ["memory", "disk/sda"]
        );
        assert!(history.iter().all(|h| !h.full));

        // A delta against an old version: refused, saying so, nothing stored.
        let mut v3 = v2.clone();
        v3.remove("disk/sda");
        match s
            .store_report(id, &delta(Class::Hw, 1, &v2, &v3), Timestamp(3_000))
            .await
            .unwrap()
        {
            ReportAck::ResyncRequired { reason } => assert!(reason.contains("version"), "{reason}"),
            other => panic!("{}: {other:?}", f.backend),
        }
        // A delta whose result does not have the reported hash: refused, nothing stored.
        let mut wrong = delta(Class::Hw, 2, &v2, &v3);
        wrong.hash = Snapshot::new(v1.clone()).hash();
        match s.store_report(id, &wrong, Timestamp(3_000)).await.unwrap() {
            ReportAck::ResyncRequired { reason } => assert!(reason.contains("hash"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // A delta for a class the site holds nothing of.
        match s
            .store_report(
                id,
                &delta(Class::Sw, 0, &Items::new(), &v1),
                Timestamp(3_000),
            )
            .await
            .unwrap()
        {
            ReportAck::ResyncRequired { reason } => {
                assert!(reason.contains("no sw snapshot"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        let hw = s
            .client_view(&name("cli1"))
            .await
            .unwrap()
            .unwrap()
            .hw
            .unwrap();
        assert_eq!(
            (hw.version, hw.updated_at, hw.items),
            (2, Timestamp(2_000), v2.clone())
        );
        assert_eq!(
            s.history(&name("cli1"), 10).await.unwrap().unwrap().len(),
            2
        );
        let states = s.checkin(id, Timestamp(4_000)).await.unwrap().classes;
        assert_eq!(states[&Class::Hw].version, 2);
        assert_eq!(states[&Class::Hw].hash, h2);
        assert!(!states.contains_key(&Class::Sw));

        // The right delta still applies afterwards.
        let ack = s
            .store_report(id, &delta(Class::Hw, 2, &v2, &v3), Timestamp(5_000))
            .await
            .unwrap();
        assert!(
            matches!(ack, ReportAck::Accepted { version: 3, .. }),
            "{ack:?}"
        );
    }
}

on_each_backend!(
    #[tokio::test]
    the_same_report_twice_is_stored_once
);
async fn the_same_report_twice_is_stored_once() {
    for f in stores().await {
        let s = &f.store;
        let id = enroll(s, "cli1").await;
        let v1 = hw_items("A1");
        let r1 = full(Class::Hw, &v1);
        s.store_report(id, &r1, Timestamp(1_000)).await.unwrap();
        let h1 = Snapshot::new(v1.clone()).hash();
        assert_eq!(
            s.store_report(id, &r1, Timestamp(1_500)).await.unwrap(),
            ReportAck::Duplicate {
                version: 1,
                hash: h1
            },
            "{}",
            f.backend
        );
        let mut v2 = v1.clone();
        v2.remove("cpu");
        let d = delta(Class::Hw, 1, &v1, &v2);
        let h2 = Snapshot::new(v2.clone()).hash();
        assert_eq!(
            s.store_report(id, &d, Timestamp(2_000)).await.unwrap(),
            ReportAck::Accepted {
                version: 2,
                hash: h2
            }
        );
        assert_eq!(
            s.store_report(id, &d, Timestamp(2_500)).await.unwrap(),
            ReportAck::Duplicate {
                version: 2,
                hash: h2
            }
        );
        // The first report again, after another was accepted, is still a duplicate with the
        // current state.
        assert_eq!(
            s.store_report(id, &r1, Timestamp(3_000)).await.unwrap(),
            ReportAck::Duplicate {
                version: 2,
                hash: h2
            }
        );
        let hw = s
            .client_view(&name("cli1"))
            .await
            .unwrap()
            .unwrap()
            .hw
            .unwrap();
        assert_eq!((hw.version, hw.updated_at), (2, Timestamp(2_000)));
        assert_eq!(
            s.history(&name("cli1"), 10).await.unwrap().unwrap().len(),
            1
        );
    }
}

on_each_backend!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    concurrent_copies_of_one_report_are_accepted_once
);
/// Concurrent duplicates of one report: exactly one is accepted.
async fn concurrent_copies_of_one_report_are_accepted_once() {
    for f in stores().await {
        let id = enroll(&f.store, "cli1").await;
        let r = full(Class::Sw, &hw_items("X"));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (s, r) = (f.store.clone(), r.clone());
            tasks.push(tokio::spawn(async move {
                s.store_report(id, &r, Timestamp(1_000)).await.unwrap()
            }));
        }
        let mut accepted = 0;
        for t in tasks {
            match t.await.unwrap() {
                ReportAck::Accepted { version, .. } => {
                    assert_eq!(version, 1);
                    accepted += 1;
                }
                ReportAck::Duplicate { version, .. } => assert_eq!(version, 1),
                other => panic!("{}: {other:?}", f.backend),
            }
        }
        assert_eq!(accepted, 1, "{}", f.backend);
    }
}

on_each_backend!(
    #[tokio::test]
    a_full_report_completes_only_its_own_clients_requests_for_its_class
);
async fn a_full_report_completes_only_its_own_clients_requests_for_its_class() {
    for f in stores().await {
        let s = &f.store;
        let a = enroll(s, "cli1").await;
        enroll(s, "cli2").await;
        let mine = s
            .request_resync(&name("cli1"), Class::Sw, Timestamp(100))
            .await
            .unwrap();
        let mine_hw = s
            .request_resync(&name("cli1"), Class::Hw, Timestamp(100))
            .await
            .unwrap();
        let theirs = s
            .request_resync(&name("cli2"), Class::Sw, Timestamp(100))
            .await
            .unwrap();
        let event = s
            .request_event(&name("cli1"), Event::Sinv, Timestamp(100))
            .await
            .unwrap();
        s.checkin(a, Timestamp(200)).await.unwrap();

        let mut r = full(Class::Sw, &hw_items("A"));
        r.answers = vec![mine.id, mine_hw.id, theirs.id, event.id, 999_999];
        s.store_report(a, &r, Timestamp(300)).await.unwrap();

        let done = s.request_state(mine.id).await.unwrap().unwrap();
        assert_eq!(done.state, RequestState::Complete, "{}", f.backend);
        assert_eq!(
            (done.requested_at, done.picked_up_at, done.completed_at),
            (Timestamp(100), Some(Timestamp(200)), Some(Timestamp(300)))
        );
        assert_eq!(
            s.request_state(mine_hw.id).await.unwrap().unwrap().state,
            RequestState::PickedUp,
            "other class"
        );
        assert_eq!(
            s.request_state(theirs.id).await.unwrap().unwrap().state,
            RequestState::Pending,
            "other client"
        );
        assert!(
            s.request_state(event.id).await.unwrap().is_none(),
            "request_state is for resync requests"
        );
        let view = s.client_view(&name("cli1")).await.unwrap().unwrap();
        assert_eq!(
            view.events[0].state,
            RequestState::PickedUp,
            "a report does not complete events"
        );

        // A request answered without having been picked up (the agent saw it some other way)
        // gets a pick-up time too.
        let fresh = s
            .request_resync(&name("cli1"), Class::Sw, Timestamp(400))
            .await
            .unwrap();
        let mut r = full(Class::Sw, &hw_items("B"));
        r.answers = vec![fresh.id];
        s.store_report(a, &r, Timestamp(500)).await.unwrap();
        let st = s.request_state(fresh.id).await.unwrap().unwrap();
        assert_eq!(
            (st.picked_up_at, st.completed_at),
            (Some(Timestamp(500)), Some(Timestamp(500)))
        );

        // A delta does not complete requests.
        let later = s
            .request_resync(&name("cli1"), Class::Sw, Timestamp(600))
            .await
            .unwrap();
        let mut d = delta(Class::Sw, 2, &hw_items("B"), &hw_items("C"));
        d.answers = vec![later.id];
        assert!(matches!(d.body, ReportBody::Delta { .. }));
        s.store_report(a, &d, Timestamp(700)).await.unwrap();
        assert_eq!(
            s.request_state(later.id).await.unwrap().unwrap().state,
            RequestState::Pending
        );
    }
}

on_each_backend!(
    #[tokio::test]
    events_complete_only_for_their_own_client
);
async fn events_complete_only_for_their_own_client() {
    for f in stores().await {
        let s = &f.store;
        let a = enroll(s, "cli1").await;
        let b = enroll(s, "cli2").await;
        let ea = s
            .request_event(&name("cli1"), Event::Cycle, Timestamp(100))
            .await
            .unwrap();
        let eb = s
            .request_event(&name("cli2"), Event::Cycle, Timestamp(100))
            .await
            .unwrap();
        let ra = s
            .request_resync(&name("cli1"), Class::Hw, Timestamp(100))
            .await
            .unwrap();
        // Client a acknowledges b's event and its own resync request: neither is completed.
        s.complete_events(a, &[eb.id, ra.id], Timestamp(200))
            .await
            .unwrap();
        assert_eq!(
            s.checkin(b, Timestamp(300))
                .await
                .unwrap()
                .instructions
                .len(),
            1,
            "{}",
            f.backend
        );
        assert_eq!(
            s.checkin(a, Timestamp(300))
                .await
                .unwrap()
                .instructions
                .len(),
            2
        );
        s.complete_events(a, &[ea.id], Timestamp(400))
            .await
            .unwrap();
        let left: Vec<i64> = s
            .checkin(a, Timestamp(500))
            .await
            .unwrap()
            .instructions
            .iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(left, vec![ra.id]);
        let err = s
            .complete_events(uuid::Uuid::new_v4(), &[ea.id], Timestamp(600))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::UnknownClient { .. }));
    }
}

on_each_backend!(
    #[tokio::test]
    data_survives_closing_and_reopening
);
async fn data_survives_closing_and_reopening() {
    for f in stores().await {
        let id = enroll(&f.store, "cli1").await;
        let items = hw_items("A1");
        f.store
            .store_report(id, &full(Class::Hw, &items), Timestamp(1_000))
            .await
            .unwrap();
        let q = f
            .store
            .request_resync(&name("cli1"), Class::Sw, Timestamp(1_100))
            .await
            .unwrap();
        f.store.checkin(id, Timestamp(1_200)).await.unwrap();
        let backend = f.backend.clone();
        let f = f.reopen().await;
        let s = &f.store;
        let view = s
            .client_view(&name("cli1"))
            .await
            .unwrap()
            .expect("client survives");
        assert_eq!(view.id, id, "{backend}");
        assert_eq!(
            view.last_seen,
            Some(Timestamp(1_200)),
            "pending last-seen times are written on close"
        );
        let hw = view.hw.unwrap();
        assert_eq!((hw.version, hw.items), (1, items.clone()));
        assert_eq!(view.requests[0].id, q.id);
        assert_eq!(view.requests[0].state, RequestState::PickedUp);
        // And it keeps working: a delta against the stored version applies.
        let mut v2 = items.clone();
        v2.remove("cpu");
        let ack = s
            .store_report(id, &delta(Class::Hw, 1, &items, &v2), Timestamp(2_000))
            .await
            .unwrap();
        assert!(
            matches!(ack, ReportAck::Accepted { version: 2, .. }),
            "{ack:?}"
        );
        assert_eq!(s.site().await.unwrap(), site());
    }
}

on_each_backend!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    many_concurrent_reports_all_succeed
);
/// Group commit: many reports in flight at once all succeed and all are durable.
async fn many_concurrent_reports_all_succeed() {
    for f in stores().await {
        let mut ids = Vec::new();
        for i in 0..200 {
            ids.push(enroll(&f.store, &format!("c{i:03}")).await);
        }
        let mut tasks = Vec::new();
        for (i, id) in ids.iter().copied().enumerate() {
            let s = f.store.clone();
            tasks.push(tokio::spawn(async move {
                let mut items = Items::new();
                for p in 0..100 {
                    // Half the packages are shared by every client, half are the client's own.
                    let (k, a) = if p % 2 == 0 {
                        package(&format!("shared{p}"), "1.0", 10)
                    } else {
                        package(&format!("own{i}-{p}"), "1.0", 10)
                    };
                    items.insert(k, a);
                }
                let r = full(Class::Sw, &items);
                (
                    s.store_report(id, &r, Timestamp(1_000)).await.unwrap(),
                    items,
                )
            }));
        }
        let mut expected = Vec::new();
        for t in tasks {
            let (ack, items) = t.await.unwrap();
            assert!(
                matches!(ack, ReportAck::Accepted { version: 1, .. }),
                "{}: {ack:?}",
                f.backend
            );
            expected.push(items);
        }
        let clients = f.store.clients().await.unwrap();
        assert_eq!(clients.len(), 200);
        assert!(clients.iter().all(|c| c.sw_version == Some(1)));
        let view = f.store.client_view(&name("c123")).await.unwrap().unwrap();
        assert_eq!(view.sw.unwrap().items, expected[123]);
    }
}

on_each_backend!(
    #[tokio::test]
    clients_and_client_view_show_what_is_stored
);
async fn clients_and_client_view_show_what_is_stored() {
    for f in stores().await {
        let s = &f.store;
        let b = enroll(s, "zeta").await;
        let a = enroll(s, "alpha").await;
        s.store_report(a, &full(Class::Hw, &hw_items("A")), Timestamp(1_000))
            .await
            .unwrap();
        let mut sw = Items::new();
        let (k, v) = package("bash", "5.2", 1_000);
        sw.insert(k, v);
        s.store_report(a, &full(Class::Sw, &sw), Timestamp(1_100))
            .await
            .unwrap();
        s.request_resync(&name("zeta"), Class::Hw, Timestamp(1_200))
            .await
            .unwrap();
        s.request_event(&name("zeta"), Event::Cycle, Timestamp(1_200))
            .await
            .unwrap();
        s.checkin(b, Timestamp(1_300)).await.unwrap();

        let list = s.clients().await.unwrap();
        assert_eq!(
            list.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["ALPHA", "ZETA"],
            "{}",
            f.backend
        );
        let (ca, cb) = (&list[0], &list[1]);
        assert_eq!(
            (ca.id, ca.site.as_str(), ca.last_seen),
            (a, "S01", Some(Timestamp(1_100)))
        );
        assert_eq!(
            (
                ca.hw_version,
                ca.hw_updated_at,
                ca.sw_version,
                ca.sw_updated_at
            ),
            (
                Some(1),
                Some(Timestamp(1_000)),
                Some(1),
                Some(Timestamp(1_100))
            )
        );
        assert_eq!((ca.pending_requests, cb.pending_requests), (0, 2));
        assert_eq!(
            (cb.id, cb.hw_version, cb.sw_version, cb.last_seen),
            (b, None, None, Some(Timestamp(1_300)))
        );

        let v = s.client_view(&name("alpha")).await.unwrap().unwrap();
        assert_eq!(
            (
                v.name.as_str(),
                v.id,
                v.site.as_str(),
                v.machine_id.as_str()
            ),
            ("ALPHA", a, "S01", "alpha-machine")
        );
        assert_eq!(v.enrolled_at, Timestamp(2_000));
        assert_eq!(v.hw.unwrap().items, hw_items("A"));
        assert_eq!(v.sw.unwrap().items, sw);
        assert!(v.requests.is_empty() && v.events.is_empty());

        // Newest first.
        s.checkin(b, Timestamp(1_400)).await.unwrap();
        s.request_resync(&name("zeta"), Class::Hw, Timestamp(1_500))
            .await
            .unwrap();
        let z = s.client_view(&name("zeta")).await.unwrap().unwrap();
        let reqs: Vec<_> = z
            .requests
            .iter()
            .map(|r| (r.class, r.state, r.requested_at))
            .collect();
        assert_eq!(
            reqs,
            [
                (Class::Hw, RequestState::Pending, Timestamp(1_500)),
                (Class::Hw, RequestState::PickedUp, Timestamp(1_200))
            ]
        );
        assert_eq!(z.events.len(), 1);
        assert_eq!(z.events[0].event, Event::Cycle);
        assert!(s.client_view(&name("nobody")).await.unwrap().is_none());
        assert!(s.history(&name("nobody"), 5).await.unwrap().is_none());
    }
}

on_each_backend!(
    #[tokio::test]
    reports_from_unknown_clients_are_refused
);
async fn reports_from_unknown_clients_are_refused() {
    for f in stores().await {
        let err = f
            .store
            .store_report(
                uuid::Uuid::new_v4(),
                &full(Class::Hw, &hw_items("A")),
                Timestamp(1),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::UnknownClient { .. }),
            "{}: {err:?}",
            f.backend
        );
    }
}

on_each_backend!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    two_handles_on_one_database_cooperate
);
/// Two handles on one database (as the server and `invsync` in another process have) see each
/// other's writes, and the partial unique index keeps pending requests single across them.
async fn two_handles_on_one_database_cooperate() {
    for f in stores().await {
        let id = enroll(&f.store, "cli1").await;
        let other = f.second_handle().await;
        let a = other
            .request_resync(&name("cli1"), Class::Hw, Timestamp(100))
            .await
            .unwrap();
        let b = f
            .store
            .request_resync(&name("cli1"), Class::Hw, Timestamp(110))
            .await
            .unwrap();
        assert_eq!(
            (a.id, a.created, b.created),
            (b.id, true, false),
            "{}",
            f.backend
        );
        let got = f.store.checkin(id, Timestamp(200)).await.unwrap();
        assert_eq!(got.instructions.len(), 1);

        // Reports through both handles at once: versions advance without loss.
        let v1 = hw_items("A");
        f.store
            .store_report(id, &full(Class::Hw, &v1), Timestamp(300))
            .await
            .unwrap();
        let mut v2 = v1.clone();
        v2.remove("cpu");
        let ack = other
            .store_report(id, &delta(Class::Hw, 1, &v1, &v2), Timestamp(400))
            .await
            .unwrap();
        assert!(
            matches!(ack, ReportAck::Accepted { version: 2, .. }),
            "{ack:?}"
        );
        let hw = f
            .store
            .client_view(&name("cli1"))
            .await
            .unwrap()
            .unwrap()
            .hw
            .unwrap();
        assert_eq!((hw.version, hw.items), (2, v2));
    }
}

on_each_backend!(
    #[tokio::test]
    revoking_replaces_the_key_hash_with_one_no_key_has_and_keeps_the_inventory
);
async fn revoking_replaces_the_key_hash_with_one_no_key_has_and_keeps_the_inventory() {
    for f in stores().await {
        let s = &f.store;
        let e = Enrollment {
            name: name("web01"),
            machine_id: "m-1".into(),
            key_hash: key_hash(1),
            now: Timestamp(10),
            hardware: None,
            agent_version: None,
        };
        let id = s.enroll(&e).await.unwrap().client_id;
        s.revoke(&name("web01")).await.unwrap();
        let auth = s.client_auth(id).await.unwrap().expect("the client stays");
        assert_eq!(auth.key_hash.0, [0u8; 32], "{}", f.backend);
        assert!(s.client_view(&name("web01")).await.unwrap().is_some());
        assert!(matches!(
            s.revoke(&name("nobody")).await,
            Err(StoreError::UnknownClient { .. })
        ));
        // Enrolling again (with the secret, checked by the site) issues a working key.
        let again = Enrollment {
            key_hash: key_hash(3),
            now: Timestamp(20),
            ..e
        };
        assert_eq!(s.enroll(&again).await.unwrap().client_id, id);
        assert_eq!(
            s.client_auth(id).await.unwrap().unwrap().key_hash,
            key_hash(3)
        );
    }
}

on_each_backend!(
    #[tokio::test]
    client_pages_filter_sort_count_and_refuse_bad_limits
);
async fn client_pages_filter_sort_count_and_refuse_bad_limits() {
    use invsync_proto::wire::{ClientPage, ClientQuery, ClientSort};
    fn names(p: &ClientPage) -> Vec<&str> {
        p.clients.iter().map(|c| c.name.as_str()).collect()
    }
    for f in stores().await {
        let s = &f.store;
        let b = f.backend.as_str();
        // Names chosen so byte order differs from a natural-language collation ('-' < '0').
        let web1 = enroll(s, "web-1").await;
        let web01 = enroll(s, "web01").await;
        let db = enroll(s, "db1").await;
        let _never = enroll(s, "mail").await;
        s.checkin(web1, Timestamp(5_000)).await.unwrap();
        s.checkin(web01, Timestamp(3_000)).await.unwrap();
        s.checkin(db, Timestamp(4_000)).await.unwrap();
        // Sorting by last seen reads the stored times: written within a second, or now.
        s.flush().await.unwrap();
        s.store_report(db, &full(Class::Hw, &hw_items("D")), Timestamp(6_000))
            .await
            .unwrap();
        s.store_report(web01, &full(Class::Hw, &hw_items("W")), Timestamp(7_000))
            .await
            .unwrap();
        s.request_resync(&name("mail"), Class::Sw, Timestamp(8_000))
            .await
            .unwrap();

        let page = |q: ClientQuery| async move { s.clients_page(&q).await.unwrap() };
        let all = page(ClientQuery::default()).await;
        assert_eq!(names(&all), ["DB1", "MAIL", "WEB-1", "WEB01"], "{b}");
        assert_eq!((all.total, all.offset), (4, 0), "{b}");
        // The page holds what the unpaged list holds.
        assert_eq!(all.clients, s.clients().await.unwrap(), "{b}");
        assert_eq!(all.clients[1].pending_requests, 1, "{b}");

        let q = |sort, descending| ClientQuery {
            sort,
            descending,
            ..ClientQuery::default()
        };
        assert_eq!(
            names(&page(q(ClientSort::Name, true)).await),
            ["WEB01", "WEB-1", "MAIL", "DB1"],
            "{b}"
        );
        // Never seen / never reported counts as oldest: first ascending, last descending.
        assert_eq!(
            names(&page(q(ClientSort::LastSeen, false)).await),
            ["MAIL", "WEB01", "DB1", "WEB-1"],
            "{b}"
        );
        assert_eq!(
            names(&page(q(ClientSort::LastSeen, true)).await),
            ["WEB-1", "DB1", "WEB01", "MAIL"],
            "{b}"
        );
        assert_eq!(
            names(&page(q(ClientSort::HwUpdated, false)).await),
            ["MAIL", "WEB-1", "DB1", "WEB01"],
            "{b}"
        );
        assert_eq!(
            names(&page(q(ClientSort::HwUpdated, true)).await),
            ["WEB01", "DB1", "WEB-1", "MAIL"],
            "{b}"
        );
        assert_eq!(
            names(&page(q(ClientSort::SwUpdated, false)).await),
            ["DB1", "MAIL", "WEB-1", "WEB01"],
            "{b}"
        );

        // A case-insensitive substring, with the total of all matches and a window of them.
        let web = page(ClientQuery {
            search: Some("eB".into()),
            limit: 1,
            offset: 1,
            ..ClientQuery::default()
        })
        .await;
        assert_eq!(
            (web.total, web.offset, names(&web)),
            (2, 1, vec!["WEB01"]),
            "{b}"
        );
        let past = page(ClientQuery {
            search: Some("web".into()),
            offset: 9,
            ..ClientQuery::default()
        })
        .await;
        assert_eq!((past.total, past.clients.len()), (2, 0), "{b}");
        let none = page(ClientQuery {
            search: Some("%".into()),
            ..ClientQuery::default()
        })
        .await;
        assert_eq!(none.total, 0, "no wildcard: {b}");
        let empty = page(ClientQuery {
            search: Some(String::new()),
            ..ClientQuery::default()
        })
        .await;
        assert_eq!(empty.total, 4, "an empty search is none: {b}");
        // The site filter.
        let own = page(ClientQuery {
            site: Some("s01".parse().unwrap()),
            ..ClientQuery::default()
        })
        .await;
        assert_eq!(own.total, 4, "{b}");
        let other = page(ClientQuery {
            site: Some("X99".parse().unwrap()),
            ..ClientQuery::default()
        })
        .await;
        assert_eq!((other.total, other.clients.len()), (0, 0), "{b}");

        for limit in [0, 1_001] {
            let err = s
                .clients_page(&ClientQuery {
                    limit,
                    ..ClientQuery::default()
                })
                .await
                .unwrap_err();
            assert!(
                matches!(&err, StoreError::Refused(m) if m.contains("limit must be 1 to 1000")),
                "{b}: {err:?}"
            );
        }
        assert_eq!(
            page(ClientQuery {
                limit: 1_000,
                ..ClientQuery::default()
            })
            .await
            .total,
            4
        );
        let err = s
            .clients_page(&ClientQuery {
                offset: u64::MAX,
                ..ClientQuery::default()
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Refused(_)), "{b}");
    }
}

on_each_backend!(
    #[tokio::test]
    request_pages_list_resync_requests_of_every_client_newest_first
);
async fn request_pages_list_resync_requests_of_every_client_newest_first() {
    use invsync_proto::wire::RequestQuery;
    for f in stores().await {
        let s = &f.store;
        let b = f.backend.as_str();
        let a = enroll(s, "alpha").await;
        enroll(s, "beta").await;
        let first = s
            .request_resync(&name("alpha"), Class::Hw, Timestamp(1_000))
            .await
            .unwrap();
        s.request_resync(&name("beta"), Class::Sw, Timestamp(1_100))
            .await
            .unwrap();
        // An event is not a resync request and is never listed.
        s.request_event(&name("beta"), Event::Cycle, Timestamp(1_150))
            .await
            .unwrap();
        // alpha picks its request up, then answers it; then a new one is pending.
        s.checkin(a, Timestamp(1_200)).await.unwrap();
        let mut report = full(Class::Hw, &hw_items("A"));
        report.answers = vec![first.id];
        s.store_report(a, &report, Timestamp(1_300)).await.unwrap();
        s.request_resync(&name("alpha"), Class::Sw, Timestamp(1_400))
            .await
            .unwrap();
        s.checkin(a, Timestamp(1_500)).await.unwrap();

        let page = |q: RequestQuery| async move { s.requests_page(&q).await.unwrap() };
        let list = |p: &invsync_proto::wire::RequestPage| {
            p.requests
                .iter()
                .map(|r| {
                    (
                        r.client.as_str().to_string(),
                        r.request.class,
                        r.request.state,
                    )
                })
                .collect::<Vec<_>>()
        };
        let all = page(RequestQuery::default()).await;
        assert_eq!(all.total, 3, "{b}");
        assert_eq!(
            list(&all),
            [
                ("ALPHA".to_string(), Class::Sw, RequestState::PickedUp),
                ("BETA".to_string(), Class::Sw, RequestState::Pending),
                ("ALPHA".to_string(), Class::Hw, RequestState::Complete),
            ],
            "{b}"
        );
        assert_eq!(all.requests[2].site.as_str(), "S01");
        assert_eq!(
            all.requests[2].request.completed_at,
            Some(Timestamp(1_300)),
            "{b}"
        );
        for (state, expected) in [
            (RequestState::Pending, "BETA"),
            (RequestState::PickedUp, "ALPHA"),
            (RequestState::Complete, "ALPHA"),
        ] {
            let p = page(RequestQuery {
                state: Some(state),
                ..RequestQuery::default()
            })
            .await;
            assert_eq!(
                (p.total, p.requests[0].client.as_str()),
                (1, expected),
                "{b} {state:?}"
            );
        }
        let sw = page(RequestQuery {
            class: Some(Class::Sw),
            limit: 1,
            offset: 1,
            ..RequestQuery::default()
        })
        .await;
        assert_eq!(
            (sw.total, sw.offset, list(&sw)),
            (
                2,
                1,
                vec![("BETA".to_string(), Class::Sw, RequestState::Pending)]
            ),
            "{b}"
        );
        let err = s
            .requests_page(&RequestQuery {
                limit: 0,
                ..RequestQuery::default()
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Refused(_)), "{b}");
    }
}

on_each_backend!(
    #[tokio::test]
    checkin_with_key_checks_the_key_in_the_same_read_and_does_nothing_for_a_refused_one
);
async fn checkin_with_key_checks_the_key_in_the_same_read_and_does_nothing_for_a_refused_one() {
    for f in stores().await {
        let s = &f.store;
        let id = enroll(s, "cli1").await;
        let r = s
            .request_resync(&name("cli1"), Class::Hw, Timestamp(2_100))
            .await
            .unwrap();

        // A wrong key and an unknown id are the same refusal, and pick nothing up.
        let wrong = s
            .checkin_with_key(id, &key_hash(9), Timestamp(2_200))
            .await
            .unwrap();
        assert_eq!(wrong, Authenticated::Unknown, "{}", f.backend);
        let unknown = s
            .checkin_with_key(uuid::Uuid::new_v4(), &key_hash(1), Timestamp(2_200))
            .await
            .unwrap();
        assert_eq!(unknown, Authenticated::Unknown);
        assert_eq!(
            s.request_state(r.id).await.unwrap().unwrap().state,
            RequestState::Pending,
            "{}",
            f.backend
        );

        // The right key: the same answer as a check-in, and the request is picked up.
        match s
            .checkin_with_key(id, &key_hash(1), Timestamp(2_300))
            .await
            .unwrap()
        {
            Authenticated::Client(auth, resp) => {
                assert_eq!((auth.client_id, auth.name.as_str()), (id, "CLI1"));
                assert_eq!(resp.instructions.len(), 1, "{}", f.backend);
                assert_eq!(resp.instructions[0].id, r.id);
            }
            other => panic!("{}: expected the client, got {other:?}", f.backend),
        }
        let state = s.request_state(r.id).await.unwrap().unwrap();
        assert_eq!(
            (state.state, state.picked_up_at),
            (RequestState::PickedUp, Some(Timestamp(2_300)))
        );

        // A revoked key is told apart (the site says so), whatever key is presented.
        s.revoke(&name("cli1")).await.unwrap();
        for key in [key_hash(1), key_hash(0)] {
            match s
                .checkin_with_key(id, &key, Timestamp(2_400))
                .await
                .unwrap()
            {
                Authenticated::Revoked(auth) => assert_eq!(auth.client_id, id),
                other => panic!("{}: expected a revoked key, got {other:?}", f.backend),
            }
        }
    }
}

/// A report as the site receives it: its JSON read into prepared items.
fn incoming(report: &invsync_proto::wire::Report) -> invsync_store::IncomingReport {
    serde_json::from_str(&serde_json::to_string(report).unwrap()).unwrap()
}

on_each_backend!(
    #[tokio::test]
    a_report_with_a_key_is_stored_only_for_the_right_key_and_a_bad_one_is_refused_after_it
);
async fn a_report_with_a_key_is_stored_only_for_the_right_key_and_a_bad_one_is_refused_after_it() {
    for f in stores().await {
        let s = &f.store;
        let b = f.backend;
        let id = enroll(s, "cli1").await;
        let items: Items = [package("a", "1", 1), package("b", "2", 2)]
            .into_iter()
            .collect();
        let report = full(Class::Sw, &items);

        // A wrong key and an unknown id are refused alike, and store nothing.
        let wrong = s
            .store_incoming_with_key(id, &key_hash(9), incoming(&report), Timestamp(3_000))
            .await
            .unwrap();
        assert_eq!(wrong, Authenticated::Unknown, "{b}");
        let unknown = s
            .store_incoming_with_key(
                uuid::Uuid::new_v4(),
                &key_hash(1),
                incoming(&report),
                Timestamp(3_000),
            )
            .await
            .unwrap();
        assert_eq!(unknown, Authenticated::Unknown, "{b}");
        let sw = async |s: &invsync_store::Store| {
            s.client_view(&name("cli1")).await.unwrap().unwrap().sw
        };
        assert!(sw(s).await.is_none(), "{b}: stored under a wrong key");

        // A full report whose items do not hash to its hash: refused as bad, but only for the
        // right key; a wrong key hears only that the key is wrong.
        let mut bad = report.clone();
        bad.hash = invsync_proto::Digest([7; 32]);
        let e = s
            .store_incoming_with_key(id, &key_hash(1), incoming(&bad), Timestamp(3_000))
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::BadReport(_)), "{b}: {e}");
        let refused = s
            .store_incoming_with_key(id, &key_hash(9), incoming(&bad), Timestamp(3_000))
            .await
            .unwrap();
        assert_eq!(refused, Authenticated::Unknown, "{b}");

        // The right key: stored, as `store_report` would have.
        match s
            .store_incoming_with_key(id, &key_hash(1), incoming(&report), Timestamp(3_100))
            .await
            .unwrap()
        {
            Authenticated::Client(auth, ReportAck::Accepted { version, hash }) => {
                assert_eq!((auth.client_id, version, hash), (id, 1, report.hash), "{b}");
            }
            other => panic!("{b}: expected an accepted report, got {other:?}"),
        }
        assert_eq!(sw(s).await.unwrap().items, items, "{b}");

        // A revoked key is told apart, and stores nothing either.
        s.revoke(&name("cli1")).await.unwrap();
        let next = full(Class::Sw, &[package("a", "1", 1)].into_iter().collect());
        match s
            .store_incoming_with_key(id, &key_hash(1), incoming(&next), Timestamp(3_200))
            .await
            .unwrap()
        {
            Authenticated::Revoked(auth) => assert_eq!(auth.client_id, id, "{b}"),
            other => panic!("{b}: expected a revoked key, got {other:?}"),
        }
        assert_eq!(sw(s).await.unwrap().items, items, "{b}");
    }
}

/// A package page as `name clients [version:clients …]` lines.
fn summary(p: &invsync_proto::wire::PackagePage) -> Vec<String> {
    p.packages
        .iter()
        .map(|p| {
            let v: Vec<String> = p
                .versions
                .iter()
                .map(|v| format!("{}:{}", v.version, v.clients))
                .collect();
            format!("{} {} [{}]", p.name, p.clients, v.join(" "))
        })
        .collect()
}

/// Installed packages as a sw inventory: (name, version, arch) each.
fn packages(list: &[(&str, &str, &str)]) -> Items {
    list.iter()
        .map(|(n, v, a)| {
            let attrs = attrs(&[
                ("name", n),
                ("version", v),
                ("arch", a),
                ("source", "dpkg"),
                ("size_bytes", "1"),
            ]);
            (format!("dpkg/{n}/{a}"), attrs)
        })
        .collect()
}

on_each_backend!(
    #[tokio::test]
    versions_compare_by_the_rules_of_their_package_source
);
async fn versions_compare_by_the_rules_of_their_package_source() {
    use invsync_proto::version::VersionRange;
    use invsync_proto::wire::{PackageQuery, SoftwareQuery};
    let sourced = |source: &str, version: &str| -> Items {
        let a = attrs(&[
            ("name", "tool"),
            ("version", version),
            ("arch", "x86_64"),
            ("source", source),
        ]);
        [(format!("{source}/tool/x86_64"), a)].into_iter().collect()
    };
    for f in stores().await {
        let s = &f.store;
        let be = f.backend;
        for (client, source, version) in [
            ("rpm1", "rpm", "1.0^git1"),
            ("rpm2", "rpm", "1.0.1"),
            ("apk1", "apk", "1.0_rc1"),
            ("apk2", "apk", "1.0"),
            ("deb1", "dpkg", "1.0^git1"),
        ] {
            let id = enroll(s, client).await;
            s.store_report(
                id,
                &full(Class::Sw, &sourced(source, version)),
                Timestamp(2_100),
            )
            .await
            .unwrap();
        }
        let query = |range: &str| SoftwareQuery {
            name: "tool".into(),
            version: Some(VersionRange::parse(range).unwrap()),
            site: None,
            limit: 100,
            offset: 0,
        };
        let rows = |p: &invsync_proto::wire::SoftwarePage| -> Vec<String> {
            p.holders
                .iter()
                .map(|h| format!("{} {} {}", h.client, h.source, h.version))
                .collect()
        };
        // rpm's `1.0^git1` is a snapshot after 1.0, before 1.0.1; dpkg's `^` is just a
        // character, above `.`; apk's `1.0_rc1` is before 1.0.
        let below = s.software(&query("<1.0.1")).await.unwrap();
        assert_eq!(
            rows(&below),
            ["APK1 apk 1.0_rc1", "APK2 apk 1.0", "RPM1 rpm 1.0^git1"],
            "{be}"
        );
        let released = s.software(&query(">=1.0")).await.unwrap();
        assert_eq!(
            rows(&released),
            [
                "APK2 apk 1.0",
                "DEB1 dpkg 1.0^git1",
                "RPM1 rpm 1.0^git1",
                "RPM2 rpm 1.0.1"
            ],
            "{be}"
        );
        let page = s
            .packages(&PackageQuery {
                search: Some("tool".into()),
                site: None,
                limit: 10,
                offset: 0,
            })
            .await
            .unwrap();
        let versions: Vec<&str> = page.packages[0]
            .versions
            .iter()
            .map(|v| v.version.as_str())
            .collect();
        // By rules (dpkg, rpm, apk), then each by its own order; `1.0^git1` is held from dpkg
        // and rpm, one entry placed by dpkg's rules.
        assert_eq!(versions, ["1.0^git1", "1.0.1", "1.0_rc1", "1.0"], "{be}");
    }
}

on_each_backend!(
    #[tokio::test]
    software_queries_find_the_clients_having_a_package_in_a_version_range
);
async fn software_queries_find_the_clients_having_a_package_in_a_version_range() {
    use invsync_proto::version::VersionRange;
    use invsync_proto::wire::{PackageQuery, SoftwareQuery};
    for f in stores().await {
        let s = &f.store;
        let be = f.backend;
        let one = packages(&[
            ("openssl", "3.0.2-1", "amd64"),
            ("openssl", "3.0.2-1", "i386"),
            ("bash", "5.2-1", "amd64"),
        ]);
        let two = packages(&[("openssl", "3.0.11-1", "amd64"), ("bash", "5.2-1", "amd64")]);
        let three = packages(&[("libssl3", "3.0.2-1", "amd64")]);
        let mut ids = Vec::new();
        for (n, items) in [("cli1", &one), ("cli2", &two), ("cli3", &three)] {
            let id = enroll(s, n).await;
            s.store_report(id, &full(Class::Sw, items), Timestamp(2_100))
                .await
                .unwrap();
            ids.push(id);
        }
        // A hardware item with a name and a version is not a package.
        let mut hw = hw_items("S3");
        hw.insert(
            "os".into(),
            attrs(&[("name", "openssl"), ("version", "1"), ("arch", "x86_64")]),
        );
        s.store_report(ids[2], &full(Class::Hw, &hw), Timestamp(2_100))
            .await
            .unwrap();

        let query = |name: &str, version: Option<&str>| SoftwareQuery {
            name: name.into(),
            version: version.map(|v| VersionRange::parse(v).unwrap()),
            site: None,
            limit: 100,
            offset: 0,
        };
        let rows = |p: &invsync_proto::wire::SoftwarePage| -> Vec<String> {
            p.holders
                .iter()
                .map(|h| format!("{} {} {} {}", h.client, h.version, h.arch, h.source))
                .collect()
        };
        let all = s.software(&query("openssl", None)).await.unwrap();
        assert_eq!(all.total, 3, "{be}");
        assert_eq!(
            rows(&all),
            [
                "CLI1 3.0.2-1 amd64 dpkg",
                "CLI1 3.0.2-1 i386 dpkg",
                "CLI2 3.0.11-1 amd64 dpkg"
            ],
            "{be}"
        );
        assert_eq!(all.holders[2].client_id, ids[1]);
        assert_eq!(all.holders[2].site, site().code);
        // Versions compare as dpkg compares them: 3.0.11 is newer than 3.0.2.
        let new = s
            .software(&query("openssl", Some(">=3.0.5")))
            .await
            .unwrap();
        assert_eq!(rows(&new), ["CLI2 3.0.11-1 amd64 dpkg"], "{be}");
        let old = s.software(&query("openssl", Some("<3.0.5"))).await.unwrap();
        assert_eq!(old.total, 2, "{be}");
        let page = s
            .software(&SoftwareQuery {
                limit: 1,
                offset: 1,
                ..query("openssl", None)
            })
            .await
            .unwrap();
        assert_eq!(
            (page.total, page.offset, rows(&page)),
            (3, 1, vec!["CLI1 3.0.2-1 i386 dpkg".to_string()]),
            "{be}"
        );
        assert_eq!(s.software(&query("nosuch", None)).await.unwrap().total, 0);
        assert_eq!(
            s.software(&query("ssl", None)).await.unwrap().total,
            0,
            "names match exactly"
        );
        let other_site = SoftwareQuery {
            site: Some(invsync_proto::SiteCode::parse("ZZZ").unwrap()),
            ..query("openssl", None)
        };
        assert_eq!(s.software(&other_site).await.unwrap().total, 0, "{be}");

        let pq = |search: Option<&str>| PackageQuery {
            search: search.map(str::to_string),
            site: None,
            limit: 100,
            offset: 0,
        };
        let every = s.packages(&pq(None)).await.unwrap();
        assert_eq!(
            summary(&every),
            [
                "bash 2 [5.2-1:2]",
                "libssl3 1 [3.0.2-1:1]",
                "openssl 2 [3.0.2-1:1 3.0.11-1:1]"
            ],
            "{be}: a client with two architectures of a version counts once"
        );
        assert_eq!(every.total, 3);
        let ssl = s.packages(&pq(Some("SSL"))).await.unwrap();
        assert_eq!(
            summary(&ssl),
            ["libssl3 1 [3.0.2-1:1]", "openssl 2 [3.0.2-1:1 3.0.11-1:1]"],
            "{be}"
        );
        let paged = s
            .packages(&PackageQuery {
                limit: 1,
                offset: 2,
                ..pq(None)
            })
            .await
            .unwrap();
        assert_eq!(
            (paged.total, summary(&paged)),
            (3, vec!["openssl 2 [3.0.2-1:1 3.0.11-1:1]".to_string()])
        );

        // The scans read the current snapshots: an upgrade moves cli1 to the new version.
        let upgraded = packages(&[("openssl", "3.0.11-1", "amd64"), ("bash", "5.2-1", "amd64")]);
        let ack = s
            .store_report(
                ids[0],
                &delta(Class::Sw, 1, &one, &upgraded),
                Timestamp(2_200),
            )
            .await
            .unwrap();
        assert!(matches!(ack, ReportAck::Accepted { .. }), "{ack:?}");
        assert_eq!(
            s.software(&query("openssl", Some("=3.0.11-1")))
                .await
                .unwrap()
                .total,
            2,
            "{be}"
        );
        assert_eq!(
            summary(&s.packages(&pq(Some("openssl"))).await.unwrap()),
            ["openssl 2 [3.0.11-1:2]"],
            "{be}"
        );
    }
}

/// A small deterministic generator (xorshift), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// A random software inventory over a small catalogue, so that clients share packages, hold
/// several versions and architectures of one name, and now and then an item that is not a
/// package.
fn random_software(rng: &mut Rng) -> Items {
    const NAMES: &[&str] = &["bash", "libssl3", "openssl", "LibXML2", "zlib1g", "nano"];
    const VERSIONS: &[&str] = &["1.0-1", "1.2-1", "1.10-1", "2.0~rc1-1", "2.0-1"];
    const ARCHES: &[&str] = &["amd64", "i386"];
    let mut chosen = Vec::new();
    for n in NAMES {
        for a in ARCHES {
            if rng.below(3) == 0 {
                chosen.push((*n, VERSIONS[rng.below(VERSIONS.len())], *a));
            }
        }
    }
    let mut items = packages(&chosen);
    if rng.below(4) == 0 {
        items.insert(
            "cfg/motd".into(),
            attrs(&[("name", "bash"), ("version", "1.0-1")]),
        );
    }
    items
}

/// What the software queries must answer, computed from the inventories themselves.
fn expected_holders(
    model: &BTreeMap<String, Items>,
    name: &str,
    range: Option<&str>,
) -> Vec<String> {
    use invsync_proto::version::{Scheme, VersionRange, compare_across};
    let range = range.map(|r| VersionRange::parse(r).unwrap());
    let mut rows: Vec<(String, String, String, String)> = Vec::new();
    for (client, items) in model {
        for a in items.values() {
            let (Some(n), Some(v), Some(src)) = (a.get("name"), a.get("version"), a.get("source"))
            else {
                continue;
            };
            if n == name
                && range
                    .as_ref()
                    .is_none_or(|r| r.matches_in(Scheme::of(src), v))
            {
                rows.push((client.clone(), v.clone(), a["arch"].clone(), src.clone()));
            }
        }
    }
    rows.sort_by(|x, y| {
        x.0.cmp(&y.0)
            .then_with(|| compare_across(&x.3, &x.1, &y.3, &y.1))
            .then_with(|| x.2.cmp(&y.2))
            .then_with(|| x.3.cmp(&y.3))
    });
    rows.into_iter()
        .map(|(c, v, a, _)| format!("{c} {v} {a}"))
        .collect()
}

fn expected_packages(model: &BTreeMap<String, Items>) -> Vec<String> {
    use std::collections::BTreeSet;
    /// Per package name: its clients, and the clients of each version.
    type Holding<'a> = (BTreeSet<&'a str>, BTreeMap<&'a str, BTreeSet<&'a str>>);
    let mut by_name: BTreeMap<String, Holding<'_>> = BTreeMap::new();
    for (client, items) in model {
        for a in items.values() {
            let (Some(n), Some(v), Some(_)) = (a.get("name"), a.get("version"), a.get("source"))
            else {
                continue;
            };
            let e = by_name.entry(n.clone()).or_default();
            e.0.insert(client);
            e.1.entry(v).or_default().insert(client);
        }
    }
    by_name
        .into_iter()
        .map(|(n, (clients, versions))| {
            let mut v: Vec<(&str, usize)> =
                versions.into_iter().map(|(v, c)| (v, c.len())).collect();
            v.sort_by(|a, b| invsync_proto::version::compare(a.0, b.0));
            let v: Vec<String> = v.into_iter().map(|(v, c)| format!("{v}:{c}")).collect();
            format!("{n} {} [{}]", clients.len(), v.join(" "))
        })
        .collect()
}

async fn check_software(
    s: &invsync_store::Store,
    model: &BTreeMap<String, Items>,
    be: impl std::fmt::Display,
    when: &str,
) {
    use invsync_proto::wire::{PackageQuery, SoftwareQuery};
    for name in [
        "bash", "libssl3", "openssl", "LibXML2", "zlib1g", "nano", "absent",
    ] {
        for range in [None, Some(">=1.2-1"), Some("<2.0-1")] {
            let want = expected_holders(model, name, range);
            let q = SoftwareQuery {
                name: name.into(),
                version: range.map(|r| invsync_proto::version::VersionRange::parse(r).unwrap()),
                site: None,
                limit: 1000,
                offset: 0,
            };
            let got = s.software(&q).await.unwrap();
            let rows: Vec<String> = got
                .holders
                .iter()
                .map(|h| format!("{} {} {}", h.client, h.version, h.arch))
                .collect();
            assert_eq!(
                (got.total as usize, &rows),
                (want.len(), &want),
                "{be} {when}: {name} {range:?}"
            );
            // Every page of three rows is the matching slice.
            for offset in (0..want.len()).step_by(3) {
                let page = s
                    .software(&SoftwareQuery {
                        limit: 3,
                        offset: offset as u64,
                        ..q.clone()
                    })
                    .await
                    .unwrap();
                let rows: Vec<String> = page
                    .holders
                    .iter()
                    .map(|h| format!("{} {} {}", h.client, h.version, h.arch))
                    .collect();
                assert_eq!(
                    rows,
                    want[offset..(offset + 3).min(want.len())],
                    "{be} {when}: {name} {range:?} at {offset}"
                );
            }
        }
    }
    let all = s
        .packages(&PackageQuery {
            search: None,
            site: None,
            limit: 1000,
            offset: 0,
        })
        .await
        .unwrap();
    assert_eq!(summary(&all), expected_packages(model), "{be} {when}");
    let lib = s
        .packages(&PackageQuery {
            search: Some("lib".into()),
            site: None,
            limit: 1,
            offset: 1,
        })
        .await
        .unwrap();
    let want: Vec<String> = expected_packages(model)
        .into_iter()
        .filter(|p| p.split(' ').next().unwrap().to_lowercase().contains("lib"))
        .collect();
    assert_eq!(
        (lib.total as usize, summary(&lib)),
        (want.len(), want.into_iter().skip(1).take(1).collect()),
        "{be} {when}"
    );
}

on_each_backend!(
    #[tokio::test]
    software_queries_agree_with_the_inventories_through_random_changes
);
async fn software_queries_agree_with_the_inventories_through_random_changes() {
    for mut f in stores().await {
        let be = f.backend.clone();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut model: BTreeMap<String, Items> = BTreeMap::new();
        let mut clients: Vec<(String, uuid::Uuid, i64)> = Vec::new();
        for i in 0..8 {
            let n = format!("C{i:02}");
            let id = enroll(&f.store, &n).await;
            let items = random_software(&mut rng);
            f.store
                .store_report(id, &full(Class::Sw, &items), Timestamp(100))
                .await
                .unwrap();
            model.insert(n.clone(), items);
            clients.push((n, id, 1));
        }
        check_software(&f.store, &model, &be, "after the first reports").await;

        // Round 0 changes a live index; round 1 runs while a freshly opened store builds its
        // index (the changes committed after the build's snapshot must still count, and those
        // before it only once); round 2 changes the index that build made.
        for round in 0..3 {
            if round == 1 {
                f = f.reopen().await;
            }
            let s = &f.store;
            let mut reports = Vec::new();
            for (n, id, version) in clients.iter_mut() {
                let old = model[n.as_str()].clone();
                let new = random_software(&mut rng);
                let report = if rng.below(3) == 0 {
                    full(Class::Sw, &new)
                } else {
                    delta(Class::Sw, *version, &old, &new)
                };
                *version += 1;
                model.insert(n.clone(), new);
                reports.push((*id, report));
            }
            let n = format!("N{round}");
            let id = enroll(s, &n).await;
            let items = random_software(&mut rng);
            reports.push((id, full(Class::Sw, &items)));
            model.insert(n.clone(), items);
            clients.push((n, id, 1));
            if round == 1 {
                s.warm_software_index();
            }
            let stored = futures_util::future::join_all(
                reports
                    .iter()
                    .map(|(id, r)| s.store_report(*id, r, Timestamp(200 + round))),
            );
            for ack in stored.await {
                assert!(matches!(ack.unwrap(), ReportAck::Accepted { .. }), "{be}");
            }
            check_software(s, &model, &be, &format!("after round {round}")).await;
        }
        // A store opened afresh builds its index from the database alone.
        let f = f.reopen().await;
        check_software(&f.store, &model, &be, "after reopening").await;
    }
}

on_each_backend!(
    #[tokio::test]
    pages_of_a_package_most_clients_hold_come_in_name_order
);
/// Above `software::DIRECT_HOLDERS` (2,000) holders, a page is found by walking the clients in
/// name order (on PostgreSQL in chunks that start after the previous one) instead of looking
/// every holder up: the pages must be the same slices of the same order.
async fn pages_of_a_package_most_clients_hold_come_in_name_order() {
    use invsync_proto::wire::SoftwareQuery;
    const CLIENTS: usize = 2_100;
    for f in stores().await {
        let s = &f.store;
        let be = &f.backend;
        // Enrolled in another order than their names, so rows and names disagree; every other
        // holder is followed in name order by a client without the package, so a page needs
        // more clients than rows (on PostgreSQL, more than the first chunk holds).
        let order: Vec<usize> = (0..CLIENTS).map(|i| (i * 7919) % CLIENTS).collect();
        for chunk in order.chunks(64) {
            let enrolled = futures_util::future::join_all(chunk.iter().map(|&i| async move {
                if i % 2 == 0 {
                    let other = enroll(s, &format!("H{i:05}A")).await;
                    let list = [("unrelated", "1.0-1", "amd64")];
                    s.store_report(other, &full(Class::Sw, &packages(&list)), Timestamp(100))
                        .await?;
                }
                let id = enroll(s, &format!("H{i:05}")).await;
                let mut list = vec![("common", "1.0-1", "amd64")];
                if i % 10 == 0 {
                    list.push(("common", "1.0-1", "i386"));
                }
                s.store_report(id, &full(Class::Sw, &packages(&list)), Timestamp(100))
                    .await
            }))
            .await;
            for ack in enrolled {
                assert!(matches!(ack.unwrap(), ReportAck::Accepted { .. }), "{be}");
            }
        }
        let mut want = Vec::new();
        for i in 0..CLIENTS {
            want.push(format!("H{i:05} amd64"));
            if i % 10 == 0 {
                want.push(format!("H{i:05} i386"));
            }
        }
        let q = |offset: u64, limit: u32| SoftwareQuery {
            name: "common".into(),
            version: None,
            site: None,
            limit,
            offset,
        };
        let rows = |p: &invsync_proto::wire::SoftwarePage| -> Vec<String> {
            p.holders
                .iter()
                .map(|h| format!("{} {}", h.client, h.arch))
                .collect()
        };
        for (offset, limit) in [
            (0usize, 5u32),
            (1, 3),
            (255, 4),
            (1_000, 7),
            (want.len() - 2, 10),
        ] {
            let page = s.software(&q(offset as u64, limit)).await.unwrap();
            let end = (offset + limit as usize).min(want.len());
            assert_eq!(
                (page.total as usize, rows(&page)),
                (want.len(), want[offset..end].to_vec()),
                "{be}: offset {offset}"
            );
        }
        let every = s.software(&q(0, u32::MAX)).await.unwrap();
        assert_eq!(rows(&every), want, "{be}: every row, as an export asks");
    }
}

on_each_backend!(
    #[tokio::test]
    a_cancelled_request_is_not_delivered_and_only_pending_ones_can_be_cancelled
);
async fn a_cancelled_request_is_not_delivered_and_only_pending_ones_can_be_cancelled() {
    for f in stores().await {
        let s = &f.store;
        let id = enroll(s, "cli1").await;
        let r = s
            .request_resync(&name("cli1"), Class::Sw, Timestamp(100))
            .await
            .unwrap();

        // Pending → cancelled: neither a check-in nor the file-share CAP's `.cfg` hands it over.
        let c = s.cancel_request(r.id, Timestamp(150)).await.unwrap();
        assert_eq!(c.client, name("cli1"), "{}", f.backend);
        assert!(!c.already_cancelled);
        assert_eq!(c.request.state, RequestState::Cancelled);
        assert_eq!(
            (c.request.picked_up_at, c.request.completed_at),
            (None, Some(Timestamp(150)))
        );
        let cfg = s.cfg_view(id).await.unwrap().unwrap();
        assert!(cfg.instructions.is_empty(), "{}: {cfg:?}", f.backend);
        let got = s.checkin(id, Timestamp(200)).await.unwrap();
        assert!(got.instructions.is_empty(), "{}: {got:?}", f.backend);
        let state = s.request_state(r.id).await.unwrap().unwrap();
        assert_eq!(
            (state.state, state.picked_up_at),
            (RequestState::Cancelled, None),
            "the check-in did not pick it up"
        );
        let view = s.client_view(&name("cli1")).await.unwrap().unwrap();
        assert_eq!(view.requests[0].state, RequestState::Cancelled);
        let q = invsync_proto::wire::RequestQuery {
            state: Some(RequestState::Cancelled),
            ..Default::default()
        };
        let page = s.requests_page(&q).await.unwrap();
        assert_eq!(
            page.requests
                .iter()
                .map(|r| r.request.id)
                .collect::<Vec<_>>(),
            vec![r.id]
        );

        // Twice: answered again, unchanged.
        let again = s.cancel_request(r.id, Timestamp(250)).await.unwrap();
        assert!(again.already_cancelled);
        assert_eq!(again.request.completed_at, Some(Timestamp(150)));

        // A report answering it later does not complete it.
        let mut report = full(Class::Sw, &hw_items("A"));
        report.answers = vec![r.id];
        s.store_report(id, &report, Timestamp(260)).await.unwrap();
        assert_eq!(
            s.request_state(r.id).await.unwrap().unwrap().state,
            RequestState::Cancelled
        );

        // A new request of the class is a new one, not the cancelled one.
        let next = s
            .request_resync(&name("cli1"), Class::Sw, Timestamp(300))
            .await
            .unwrap();
        assert!(next.created && next.id != r.id);

        // Picked up: refused, and it completes as usual.
        s.checkin(id, Timestamp(400)).await.unwrap();
        let err = s.cancel_request(next.id, Timestamp(450)).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::NotCancellable(m) if m.contains("picked it up") && m.contains("CLI1")),
            "{}: {err:?}",
            f.backend
        );
        assert_eq!(
            s.request_state(next.id).await.unwrap().unwrap().state,
            RequestState::PickedUp
        );
        let mut report = full(Class::Sw, &hw_items("B"));
        report.answers = vec![next.id];
        s.store_report(id, &report, Timestamp(500)).await.unwrap();
        assert_eq!(
            s.request_state(next.id).await.unwrap().unwrap().state,
            RequestState::Complete
        );
        let err = s.cancel_request(next.id, Timestamp(550)).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::NotCancellable(m) if m.contains("complete")),
            "{err:?}"
        );

        // Unknown ids, and events, which are not resync requests.
        let err = s.cancel_request(999_999, Timestamp(600)).await.unwrap_err();
        assert_eq!(err, StoreError::UnknownRequest { id: 999_999 });
        let e = s
            .request_event(&name("cli1"), Event::Hinv, Timestamp(600))
            .await
            .unwrap();
        let err = s.cancel_request(e.id, Timestamp(650)).await.unwrap_err();
        assert_eq!(err, StoreError::UnknownRequest { id: e.id });
    }
}

on_each_backend!(
    #[tokio::test]
    the_client_list_counts_no_expired_or_cancelled_request
);
async fn the_client_list_counts_no_expired_or_cancelled_request() {
    for f in stores().await {
        let (s, b) = (&f.store, &f.backend);
        s.set_request_expiry(std::time::Duration::from_secs(3600));
        enroll(s, "cli1").await;
        let now = Timestamp::now();
        let old = Timestamp(now.0 - 2 * 3600 * 1000);
        // Expired (made before the expiry, never picked up), cancelled, and one still pending;
        // an old event does not expire.
        s.request_resync(&name("cli1"), Class::Hw, old)
            .await
            .unwrap();
        let cancelled = s
            .request_resync(&name("cli1"), Class::Sw, now)
            .await
            .unwrap();
        s.cancel_request(cancelled.id, now).await.unwrap();
        s.request_resync(&name("cli1"), Class::Sw, now)
            .await
            .unwrap();
        s.request_event(&name("cli1"), Event::Cycle, old)
            .await
            .unwrap();
        let listed = s.clients().await.unwrap();
        assert_eq!(listed[0].pending_requests, 2, "{b}");
        let page = s
            .clients_page(&invsync_proto::wire::ClientQuery::default())
            .await
            .unwrap();
        assert_eq!(page.clients[0].pending_requests, 2, "{b}");
    }
}

on_each_backend!(
    #[tokio::test]
    a_request_not_picked_up_within_the_expiry_expires
);
async fn a_request_not_picked_up_within_the_expiry_expires() {
    for f in stores().await {
        let s = &f.store;
        s.set_request_expiry(std::time::Duration::from_secs(3600));
        let id = enroll(s, "cli1").await;
        let now = Timestamp::now();
        let old = Timestamp(now.0 - 2 * 3600 * 1000);
        let r = s
            .request_resync(&name("cli1"), Class::Hw, old)
            .await
            .unwrap();
        let fresh = s
            .request_resync(&name("cli1"), Class::Sw, now)
            .await
            .unwrap();

        // Read as expired, and handed to nobody.
        let state = s.request_state(r.id).await.unwrap().unwrap();
        assert_eq!(state.state, RequestState::Expired, "{}", f.backend);
        let view = s.client_view(&name("cli1")).await.unwrap().unwrap();
        let states: Vec<_> = view.requests.iter().map(|r| (r.id, r.state)).collect();
        assert_eq!(
            states,
            vec![
                (fresh.id, RequestState::Pending),
                (r.id, RequestState::Expired)
            ]
        );
        let q = |state| invsync_proto::wire::RequestQuery {
            state: Some(state),
            ..Default::default()
        };
        let ids = |page: invsync_proto::wire::RequestPage| {
            page.requests
                .iter()
                .map(|r| r.request.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(s.requests_page(&q(RequestState::Expired)).await.unwrap()),
            vec![r.id]
        );
        assert_eq!(
            ids(s.requests_page(&q(RequestState::Pending)).await.unwrap()),
            vec![fresh.id]
        );
        let cfg = s.cfg_view(id).await.unwrap().unwrap();
        assert_eq!(
            cfg.instructions.iter().map(|i| i.id).collect::<Vec<_>>(),
            vec![fresh.id],
            "{}",
            f.backend
        );
        let got = s.checkin(id, Timestamp::now()).await.unwrap();
        assert_eq!(
            got.instructions.iter().map(|i| i.id).collect::<Vec<_>>(),
            vec![fresh.id]
        );
        assert_eq!(
            s.request_state(r.id).await.unwrap().unwrap().state,
            RequestState::Expired,
            "the check-in did not pick it up"
        );

        // Cancelling an expired request changes nothing.
        let c = s.cancel_request(r.id, Timestamp::now()).await.unwrap();
        assert_eq!(
            (c.request.state, c.already_cancelled),
            (RequestState::Expired, true)
        );

        // A new request of the class is a new one; the expired one stays expired.
        let next = s
            .request_resync(&name("cli1"), Class::Hw, Timestamp::now())
            .await
            .unwrap();
        assert!(next.created && next.id != r.id, "{}: {next:?}", f.backend);
        assert_eq!(
            s.request_state(r.id).await.unwrap().unwrap().state,
            RequestState::Expired
        );
        assert_eq!(
            s.request_state(next.id).await.unwrap().unwrap().state,
            RequestState::Pending
        );
    }
}
