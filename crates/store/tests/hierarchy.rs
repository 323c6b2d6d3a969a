//! The contract of the hierarchy (SPEC section 6), run against every backend: a child's outbox
//! (what goes in, in which order, what comes out and when it leaves), a parent's children and
//! the sites below it, and applying forwarded changes with the owner's version numbers, gaps,
//! duplicates, forged owners, one name at several sites and stale clients, up to a chain of
//! three sites; and resync requests routed down to the owning site (`invsync --via-child`),
//! delivered in the answers to forward batches and completed at every site on the way back up.

mod common;

use common::*;
use invsync_proto::wire::{
    ClientRecord, DownRequest, ForwardOutcome, Forwarded, Owner, ReportAck, ReportBody,
    RequestState, RequestView, SiteStatus,
};
use invsync_proto::{Class, Digest, Items, SiteCode, Snapshot, Timestamp};
use invsync_store::{DownAccepted, HistoryQuery, Store, StoreError};
use uuid::Uuid;

fn code(raw: &str) -> SiteCode {
    SiteCode::parse(raw).unwrap()
}

fn hash_of(items: &Items) -> Digest {
    Snapshot::new(items.clone()).hash()
}

/// A software inventory of `n` packages, the first `bumped` of them upgraded.
fn sw(n: usize, bumped: usize) -> Items {
    (0..n)
        .map(|i| {
            let version = if i < bumped { "2.0-1" } else { "1.0-1" };
            package(&format!("pkg{i}"), version, 1_000 + i as u64)
        })
        .collect()
}

fn record(id: Uuid, raw_name: &str, owner: &str) -> ClientRecord {
    ClientRecord {
        id,
        name: name(raw_name),
        site: code(owner),
        machine_id: format!("{raw_name}-machine"),
        enrolled_at: Timestamp(500),
        agent_version: None,
    }
}

fn fwd_full(
    seq: i64,
    client: &ClientRecord,
    class: Class,
    version: i64,
    items: &Items,
    at: i64,
) -> Forwarded {
    Forwarded {
        seq,
        client: client.clone(),
        class,
        version,
        hash: hash_of(items),
        full_at: Timestamp(at),
        updated_at: Timestamp(at),
        body: ReportBody::Full {
            items: items.clone(),
        },
        completed: vec![],
        deleted: None,
    }
}

/// A delta from `from` (version `version - 1`) to `to` (version `version`).
#[allow(clippy::too_many_arguments)]
fn fwd_delta(
    seq: i64,
    client: &ClientRecord,
    class: Class,
    version: i64,
    from: &Items,
    to: &Items,
    full_at: i64,
    at: i64,
) -> Forwarded {
    Forwarded {
        seq,
        client: client.clone(),
        class,
        version,
        hash: hash_of(to),
        full_at: Timestamp(full_at),
        updated_at: Timestamp(at),
        body: ReportBody::Delta {
            base_version: version - 1,
            delta: Snapshot::new(from.clone()).diff(&Snapshot::new(to.clone())),
        },
        completed: vec![],
        deleted: None,
    }
}

/// The entry claiming another resulting hash.
fn with_hash(mut e: Forwarded, hash: Digest) -> Forwarded {
    e.hash = hash;
    e
}

fn status(raw: &str, parent: Option<&str>, url: Option<&str>) -> SiteStatus {
    SiteStatus {
        code: code(raw),
        name: format!("Site {raw}"),
        parent: parent.map(code),
        url: url.map(str::to_string),
        clients: 1,
        outbox_depth: 0,
        outbox_oldest: None,
        last_forwarded: None,
        accepts_parent_requests: false,
        reported_at: Timestamp(900),
    }
}

/// A parent P01 with children C01 (which has G01 below it) and C02.
async fn parent() -> Vec<Fixture> {
    let mut out = Vec::new();
    for f in stores_at("P01").await {
        let s = &f.store;
        s.set_child_token(&code("C01"), key_hash(1), Timestamp(100))
            .await
            .unwrap();
        s.set_child_token(&code("C02"), key_hash(2), Timestamp(100))
            .await
            .unwrap();
        s.record_site_status(
            &code("C01"),
            &[
                status("C01", Some("P01"), Some("http://c01.example:8080")),
                status("G01", Some("C01"), None),
            ],
            Timestamp(1_000),
        )
        .await
        .unwrap();
        s.record_site_status(
            &code("C02"),
            &[status("C02", Some("P01"), None)],
            Timestamp(1_000),
        )
        .await
        .unwrap();
        out.push(f);
    }
    out
}

async fn accepted(s: &Store, id: Uuid, report: &invsync_proto::wire::Report, at: i64) -> i64 {
    match s.store_report(id, report, Timestamp(at)).await.unwrap() {
        ReportAck::Accepted { version, .. } => version,
        other => panic!("expected the report to be accepted, got {other:?}"),
    }
}

async fn apply(s: &Store, via: &str, e: &Forwarded) -> ForwardOutcome {
    s.apply_forwarded(&code(via), e, Timestamp(10_000))
        .await
        .unwrap()
}

fn seqs(batch: &[Forwarded]) -> Vec<i64> {
    batch.iter().map(|e| e.seq).collect()
}

// ---------------------------------------------------------------------------------------------
// The outbox

on_each_backend!(
    #[tokio::test]
    without_forwarding_reports_queue_nothing
);
async fn without_forwarding_reports_queue_nothing() {
    for f in stores().await {
        let s = &f.store;
        assert!(
            !s.forwarding().await.unwrap(),
            "{}: off by default",
            f.backend
        );
        let id = enroll(s, "web01").await;
        accepted(s, id, &full(Class::Hw, &hw_items("SN1")), 3_000).await;
        assert!(s.outbox_batch(100).await.unwrap().is_empty());
        let stats = s.outbox_stats().await.unwrap();
        assert_eq!(
            (stats.depth, stats.oldest, stats.last_forwarded),
            (0, None, None)
        );
    }
}

on_each_backend!(
    #[tokio::test]
    with_forwarding_each_accepted_report_is_queued_in_order_as_accepted
);
async fn with_forwarding_each_accepted_report_is_queued_in_order_as_accepted() {
    for f in stores().await {
        let s = &f.store;
        s.set_forwarding(true).await.unwrap();
        assert!(s.forwarding().await.unwrap());
        let id = enroll(s, "web01").await;
        let (hw1, hw2) = (hw_items("SN1"), hw_items("SN2"));
        let r1 = full(Class::Hw, &hw1);
        let r2 = full(Class::Sw, &sw(5, 0));
        let r3 = delta(Class::Hw, 1, &hw1, &hw2);
        assert_eq!(accepted(s, id, &r1, 3_000).await, 1);
        assert_eq!(accepted(s, id, &r2, 3_100).await, 1);
        assert_eq!(accepted(s, id, &r3, 3_200).await, 2);

        // Neither a duplicate, a refused delta nor a bad report is a change.
        let dup = s.store_report(id, &r3, Timestamp(3_300)).await.unwrap();
        assert!(matches!(dup, ReportAck::Duplicate { .. }), "{dup:?}");
        let stale = delta(Class::Hw, 1, &hw1, &hw_items("SN3"));
        let refused = s.store_report(id, &stale, Timestamp(3_300)).await.unwrap();
        assert!(
            matches!(refused, ReportAck::ResyncRequired { .. }),
            "{refused:?}"
        );
        let mut bad = full(Class::Hw, &hw_items("SN4"));
        bad.hash = hash_of(&hw1);
        assert!(s.store_report(id, &bad, Timestamp(3_300)).await.is_err());

        // A full report answering a resync request carries the completed request.
        let req = s
            .request_resync(&name("web01"), Class::Sw, Timestamp(3_400))
            .await
            .unwrap();
        s.checkin(id, Timestamp(3_450)).await.unwrap();
        let mut r4 = full(Class::Sw, &sw(5, 2));
        r4.answers = vec![req.id];
        assert_eq!(accepted(s, id, &r4, 3_500).await, 2);

        let batch = s.outbox_batch(100).await.unwrap();
        assert_eq!(batch.len(), 4, "{}: {batch:#?}", f.backend);
        let expected_client = ClientRecord {
            id,
            name: name("web01"),
            site: code("S01"),
            machine_id: "web01-machine".to_string(),
            enrolled_at: Timestamp(2_000),
            agent_version: None,
        };
        let expected: Vec<(Class, i64, Digest, i64, i64, &ReportBody)> = vec![
            (Class::Hw, 1, r1.hash, 3_000, 3_000, &r1.body),
            (Class::Sw, 1, r2.hash, 3_100, 3_100, &r2.body),
            (Class::Hw, 2, r3.hash, 3_000, 3_200, &r3.body),
            (Class::Sw, 2, r4.hash, 3_500, 3_500, &r4.body),
        ];
        for (e, (class, version, hash, full_at, updated_at, body)) in batch.iter().zip(&expected) {
            assert_eq!(e.client, expected_client);
            assert_eq!(
                (e.class, e.version, e.hash, e.full_at.0, e.updated_at.0),
                (*class, *version, *hash, *full_at, *updated_at),
                "entry {}",
                e.seq
            );
            assert_eq!(&e.body, *body, "entry {} has the body as accepted", e.seq);
        }
        assert!(batch[..3].iter().all(|e| e.completed.is_empty()));
        assert_eq!(
            batch[3].completed,
            vec![RequestView {
                id: req.id,
                class: Class::Sw,
                state: RequestState::Complete,
                requested_at: Timestamp(3_400),
                picked_up_at: Some(Timestamp(3_450)),
                completed_at: Some(Timestamp(3_500)),
                origin: None,
                route: None,
                forwarded_at: None,
                forwarded_to: None,
                hops: Vec::new(),
                reached_top: false,
            }]
        );
        assert!(
            batch.windows(2).all(|w| w[0].seq < w[1].seq),
            "oldest first: {:?}",
            seqs(&batch)
        );
        assert_eq!(
            seqs(&s.outbox_batch(2).await.unwrap()),
            seqs(&batch[..2]),
            "a limit takes the oldest"
        );
        let stats = s.outbox_stats().await.unwrap();
        assert_eq!((stats.depth, stats.oldest), (4, Some(Timestamp(3_000))));
    }
}

on_each_backend!(
    #[tokio::test]
    acknowledged_entries_leave_the_outbox_and_set_the_forwarding_time
);
async fn acknowledged_entries_leave_the_outbox_and_set_the_forwarding_time() {
    for f in stores().await {
        let s = &f.store;
        s.set_forwarding(true).await.unwrap();
        let id = enroll(s, "web01").await;
        accepted(s, id, &full(Class::Hw, &hw_items("SN1")), 3_000).await;
        accepted(s, id, &full(Class::Sw, &sw(3, 0)), 3_100).await;
        accepted(s, id, &full(Class::Sw, &sw(3, 1)), 3_200).await;
        let batch = s.outbox_batch(100).await.unwrap();

        s.outbox_done(&[batch[0].seq, batch[1].seq], &[], None, Timestamp(9_000))
            .await
            .unwrap();
        assert_eq!(
            seqs(&s.outbox_batch(100).await.unwrap()),
            vec![batch[2].seq],
            "{}",
            f.backend
        );
        let stats = s.outbox_stats().await.unwrap();
        assert_eq!(
            (stats.depth, stats.oldest, stats.last_forwarded),
            (1, Some(Timestamp(3_200)), Some(Timestamp(9_000)))
        );

        // Acknowledging again or nothing changes nothing.
        s.outbox_done(&[batch[0].seq], &[], None, Timestamp(9_100))
            .await
            .unwrap();
        s.outbox_done(&[], &[], None, Timestamp(9_200))
            .await
            .unwrap();
        assert_eq!(s.outbox_stats().await.unwrap().depth, 1);
        s.outbox_done(&[batch[2].seq], &[], None, Timestamp(9_300))
            .await
            .unwrap();
        let stats = s.outbox_stats().await.unwrap();
        assert_eq!(
            (stats.depth, stats.oldest, stats.last_forwarded),
            (0, None, Some(Timestamp(9_300)))
        );

        // Sequence numbers are never reused, even once the outbox was empty.
        accepted(s, id, &full(Class::Sw, &sw(3, 2)), 3_300).await;
        let next = s.outbox_batch(100).await.unwrap();
        assert!(next[0].seq > batch[2].seq, "{next:?}");
    }
}

on_each_backend!(
    #[tokio::test]
    a_resync_replaces_a_client_and_class_with_one_full_entry_at_the_end
);
async fn a_resync_replaces_a_client_and_class_with_one_full_entry_at_the_end() {
    for f in stores().await {
        let s = &f.store;
        s.set_forwarding(true).await.unwrap();
        let id = enroll(s, "web01").await;
        let other = enroll(s, "web02").await;
        let (hw1, hw2) = (hw_items("SN1"), hw_items("SN2"));
        let req = s
            .request_resync(&name("web01"), Class::Hw, Timestamp(2_500))
            .await
            .unwrap();
        s.checkin(id, Timestamp(2_600)).await.unwrap();
        let mut r1 = full(Class::Hw, &hw1);
        r1.answers = vec![req.id];
        accepted(s, id, &r1, 3_000).await;
        accepted(s, id, &full(Class::Sw, &sw(3, 0)), 3_100).await;
        accepted(s, id, &delta(Class::Hw, 1, &hw1, &hw2), 3_200).await;
        accepted(s, id, &delta(Class::Sw, 1, &sw(3, 0), &sw(3, 1)), 3_300).await;
        let before = s.outbox_batch(100).await.unwrap();

        s.outbox_resync(id, Class::Hw).await.unwrap();
        let after = s.outbox_batch(100).await.unwrap();
        assert_eq!(
            after[..2]
                .iter()
                .map(|e| (e.seq, e.class))
                .collect::<Vec<_>>(),
            vec![(before[1].seq, Class::Sw), (before[3].seq, Class::Sw)],
            "{}: the other class keeps its entries and order",
            f.backend
        );
        assert_eq!(after.len(), 3);
        let e = &after[2];
        assert!(e.seq > before[3].seq, "the full entry goes to the end");
        assert_eq!(
            (e.class, e.version, e.hash, e.full_at, e.updated_at),
            (
                Class::Hw,
                2,
                hash_of(&hw2),
                Timestamp(3_000),
                Timestamp(3_200)
            )
        );
        assert_eq!(e.body, ReportBody::Full { items: hw2.clone() });
        assert_eq!(
            e.completed.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![req.id],
            "the requests the dropped entries completed still travel"
        );
        assert_eq!(
            s.outbox_stats().await.unwrap().oldest,
            Some(Timestamp(3_000)),
            "the replacement has waited as long as what it replaces"
        );

        // Nothing to resend: no snapshot of the class, or an unknown client.
        s.outbox_resync(other, Class::Hw).await.unwrap();
        s.outbox_resync(Uuid::new_v4(), Class::Sw).await.unwrap();
        assert_eq!(seqs(&s.outbox_batch(100).await.unwrap()), seqs(&after));
    }
}

/// A report answering a resync request of `client`'s `class`, stored at `at`: the request's id.
async fn answered(
    s: &Store,
    client: Uuid,
    raw_name: &str,
    class: Class,
    items: &Items,
    at: i64,
) -> i64 {
    let req = s
        .request_resync(&name(raw_name), class, Timestamp(at - 100))
        .await
        .unwrap();
    s.checkin(client, Timestamp(at - 50)).await.unwrap();
    let mut report = full(class, items);
    report.answers = vec![req.id];
    accepted(s, client, &report, at).await;
    req.id
}

async fn forwarded_state(
    s: &Store,
    id: i64,
) -> (RequestState, Option<Timestamp>, Option<SiteCode>) {
    let r = s.request_state(id).await.unwrap().unwrap();
    (r.state, r.forwarded_at, r.forwarded_to)
}

on_each_backend!(
    #[tokio::test]
    an_acknowledged_change_marks_the_requests_it_completed_as_forwarded_once
);
async fn an_acknowledged_change_marks_the_requests_it_completed_as_forwarded_once() {
    for f in stores().await {
        let s = &f.store;
        s.set_forwarding(true).await.unwrap();
        let id = enroll(s, "web01").await;
        let p01 = code("P01");
        let sw_req = answered(s, id, "web01", Class::Sw, &sw(3, 0), 3_000).await;
        let hw_req = answered(s, id, "web01", Class::Hw, &hw_items("SN1"), 3_100).await;
        assert_eq!(
            forwarded_state(s, sw_req).await,
            (RequestState::Complete, None, None),
            "{}: complete here, waiting in the outbox",
            f.backend
        );
        let batch = s.outbox_batch(100).await.unwrap();
        assert_eq!(batch[0].completed[0].forwarded_at, None);

        // The parent stores the sw change and refuses the hw one: only the first went up.
        s.outbox_done(
            &[batch[0].seq],
            &[batch[1].seq],
            Some(&p01),
            Timestamp(9_000),
        )
        .await
        .unwrap();
        assert_eq!(s.outbox_stats().await.unwrap().depth, 0);
        assert_eq!(
            forwarded_state(s, sw_req).await,
            (
                RequestState::Complete,
                Some(Timestamp(9_000)),
                Some(p01.clone())
            )
        );
        assert_eq!(
            forwarded_state(s, hw_req).await.1,
            None,
            "refused: not forwarded"
        );
        let view = s.client_view(&name("web01")).await.unwrap().unwrap();
        let listed = view.requests.iter().find(|r| r.id == sw_req).unwrap();
        assert_eq!(
            (listed.forwarded_at, listed.forwarded_to.clone()),
            (Some(Timestamp(9_000)), Some(p01.clone()))
        );
        // Acknowledged again (a resent batch): the first time stands.
        s.outbox_done(&[batch[0].seq], &[], Some(&p01), Timestamp(9_500))
            .await
            .unwrap();
        assert_eq!(forwarded_state(s, sw_req).await.1, Some(Timestamp(9_000)));

        // A gap at the parent: the entry that completed the request is replaced by a full one,
        // which still marks it once acknowledged.
        let resynced = answered(s, id, "web01", Class::Hw, &hw_items("SN2"), 4_000).await;
        accepted(
            s,
            id,
            &delta(Class::Hw, 2, &hw_items("SN2"), &hw_items("SN3")),
            4_100,
        )
        .await;
        s.outbox_resync(id, Class::Hw).await.unwrap();
        let batch = s.outbox_batch(100).await.unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(forwarded_state(s, resynced).await.1, None);
        s.outbox_done(&seqs(&batch), &[], Some(&p01), Timestamp(9_800))
            .await
            .unwrap();
        assert_eq!(
            forwarded_state(s, resynced).await,
            (
                RequestState::Complete,
                Some(Timestamp(9_800)),
                Some(p01.clone())
            )
        );

        // Without the parent's code (not learnt yet) the time is still recorded.
        let unnamed = answered(s, id, "web01", Class::Sw, &sw(3, 1), 5_000).await;
        let batch = s.outbox_batch(100).await.unwrap();
        s.outbox_done(&seqs(&batch), &[], None, Timestamp(9_900))
            .await
            .unwrap();
        assert_eq!(
            forwarded_state(s, unnamed).await,
            (RequestState::Complete, Some(Timestamp(9_900)), None)
        );
    }
}

on_each_backend!(
    #[tokio::test]
    a_parent_marks_the_requests_of_clients_below_by_origin_not_by_id
);
async fn a_parent_marks_the_requests_of_clients_below_by_origin_not_by_id() {
    for f in parent().await {
        let s = &f.store;
        s.set_forwarding(true).await.unwrap();
        let t01 = code("T01");
        // An own request and, at C01, a request of a client of C01 with the same number.
        let own = enroll(s, "own01").await;
        let mine = answered(s, own, "own01", Class::Hw, &hw_items("SN9"), 3_100).await;
        let rec = record(Uuid::new_v4(), "web01", "C01");
        let at_owner = RequestView {
            id: mine,
            class: Class::Hw,
            state: RequestState::Complete,
            requested_at: Timestamp(3_000),
            picked_up_at: Some(Timestamp(3_050)),
            completed_at: Some(Timestamp(3_200)),
            origin: None,
            route: None,
            forwarded_at: None,
            forwarded_to: None,
            hops: Vec::new(),
            reached_top: false,
        };
        let e = Forwarded {
            completed: vec![at_owner],
            ..fwd_full(1, &rec, Class::Hw, 1, &hw_items("SN1"), 3_200)
        };
        assert_eq!(
            apply(s, "C01", &e).await,
            ForwardOutcome::Applied { seq: 1 }
        );
        // And a request made here, routed down to C01 and completed there.
        let routed = s
            .queue_routed_request(rec.id, Class::Sw, Timestamp(3_300))
            .await
            .unwrap();
        let e = Forwarded {
            completed: vec![RequestView {
                id: 77,
                class: Class::Sw,
                origin: Some(format!("P01:{}", routed.id)),
                ..e.completed[0].clone()
            }],
            ..fwd_full(2, &rec, Class::Sw, 1, &sw(3, 0), 3_400)
        };
        assert_eq!(
            apply(s, "C01", &e).await,
            ForwardOutcome::Applied { seq: 2 }
        );
        let batch = s.outbox_batch(100).await.unwrap();
        assert_eq!(batch.len(), 3, "{}: {batch:#?}", f.backend);

        // This site's parent T01 stores the two changes of C01's client, not yet the own one.
        s.outbox_done(
            &[batch[1].seq, batch[2].seq],
            &[],
            Some(&t01),
            Timestamp(9_000),
        )
        .await
        .unwrap();
        let below = s.client_view_by_id(rec.id).await.unwrap().unwrap().requests;
        let copy = below.iter().find(|r| r.class == Class::Hw).unwrap();
        assert_eq!(copy.origin, Some(format!("C01:{mine}")));
        assert_eq!(
            (copy.forwarded_at, copy.forwarded_to.clone()),
            (Some(Timestamp(9_000)), Some(t01.clone()))
        );
        assert_eq!(
            forwarded_state(s, routed.id).await,
            (
                RequestState::Complete,
                Some(Timestamp(9_000)),
                Some(t01.clone())
            ),
            "the routed request completed in place is found by its origin naming this site"
        );
        assert_eq!(
            forwarded_state(s, mine).await,
            (RequestState::Complete, None, None),
            "the own request of the same number is another request"
        );
        s.outbox_done(&[batch[0].seq], &[], Some(&t01), Timestamp(9_100))
            .await
            .unwrap();
        assert_eq!(forwarded_state(s, mine).await.1, Some(Timestamp(9_100)));
    }
}

on_each_backend!(
    #[tokio::test]
    the_outbox_and_the_switch_survive_reopening
);
async fn the_outbox_and_the_switch_survive_reopening() {
    for f in stores().await {
        let s = &f.store;
        s.set_forwarding(true).await.unwrap();
        let id = enroll(s, "web01").await;
        let hw1 = hw_items("SN1");
        accepted(s, id, &full(Class::Hw, &hw1), 3_000).await;
        accepted(s, id, &delta(Class::Hw, 1, &hw1, &hw_items("SN2")), 3_100).await;
        accepted(s, id, &full(Class::Sw, &sw(4, 0)), 3_200).await;
        let first = s.outbox_batch(1).await.unwrap();
        s.outbox_done(&seqs(&first), &[], None, Timestamp(5_000))
            .await
            .unwrap();
        let before = s.outbox_batch(100).await.unwrap();
        assert_eq!(before.len(), 2);

        let f = f.reopen().await;
        let s = &f.store;
        assert!(s.forwarding().await.unwrap(), "{}", f.backend);
        assert_eq!(s.outbox_batch(100).await.unwrap(), before);
        assert_eq!(
            s.outbox_stats().await.unwrap().last_forwarded,
            Some(Timestamp(5_000))
        );
        s.set_forwarding(false).await.unwrap();
        let f = f.reopen().await;
        assert!(!f.store.forwarding().await.unwrap());
        assert_eq!(
            f.store.outbox_batch(100).await.unwrap(),
            before,
            "turning forwarding off keeps what is queued"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Children and the sites below

on_each_backend!(
    #[tokio::test]
    child_tokens_refuse_codes_in_use
);
async fn child_tokens_refuse_codes_in_use() {
    for f in stores_at("P01").await {
        let s = &f.store;
        let err = s
            .set_child_token(&code("P01"), key_hash(1), Timestamp(10))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::CodeInUse(m) if m.contains("P01")),
            "{}: {err:?}",
            f.backend
        );
        assert!(err.to_string().contains("own code"), "{err}");
        assert_eq!(s.child_key_hash(&code("P01")).await.unwrap(), None);

        s.set_child_token(&code("C01"), key_hash(1), Timestamp(10))
            .await
            .unwrap();
        assert_eq!(
            s.child_key_hash(&code("C01")).await.unwrap(),
            Some(key_hash(1))
        );
        s.set_child_token(&code("C01"), key_hash(2), Timestamp(20))
            .await
            .unwrap();
        assert_eq!(
            s.child_key_hash(&code("C01")).await.unwrap(),
            Some(key_hash(2)),
            "a new token replaces the old key"
        );
        assert_eq!(s.child_key_hash(&code("C09")).await.unwrap(), None);

        s.record_site_status(
            &code("C01"),
            &[
                status("C01", Some("P01"), None),
                status("G01", Some("C01"), None),
            ],
            Timestamp(30),
        )
        .await
        .unwrap();
        let err = s
            .set_child_token(&code("G01"), key_hash(3), Timestamp(40))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::CodeInUse(m) if m.contains("G01") && m.contains("C01")),
            "{err:?}"
        );
        assert_eq!(s.child_key_hash(&code("G01")).await.unwrap(), None);
    }
}

on_each_backend!(
    #[tokio::test]
    site_statuses_are_recorded_per_branch_and_refused_all_or_nothing
);
async fn site_statuses_are_recorded_per_branch_and_refused_all_or_nothing() {
    for f in parent().await {
        let s = &f.store;
        let sites = s.sites().await.unwrap();
        assert_eq!(
            sites,
            vec![
                status("C01", Some("P01"), Some("http://c01.example:8080")),
                status("C02", Some("P01"), None),
                status("G01", Some("C01"), None),
            ],
            "{}",
            f.backend
        );
        for (c, via) in [
            ("C01", Some("C01")),
            ("G01", Some("C01")),
            ("C02", Some("C02")),
        ] {
            assert_eq!(s.site_via(&code(c)).await.unwrap(), via.map(code), "{c}");
        }
        assert_eq!(s.site_via(&code("X99")).await.unwrap(), None);
        s.set_child_token(&code("C03"), key_hash(3), Timestamp(10))
            .await
            .unwrap();
        assert_eq!(
            s.site_via(&code("C03")).await.unwrap(),
            Some(code("C03")),
            "a child that has not reported yet is reached through itself"
        );

        // G01 belongs to C01's branch; C02 claiming it is refused, and C02's own status in the
        // same call is not stored either.
        let mut c02 = status("C02", Some("P01"), None);
        c02.clients = 42;
        let err = s
            .record_site_status(
                &code("C02"),
                &[c02.clone(), status("G01", Some("C02"), None)],
                Timestamp(2_000),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::CodeInUse(m) if m.contains("G01") && m.contains("C01")),
            "{err:?}"
        );
        assert_eq!(
            s.sites().await.unwrap(),
            sites,
            "nothing of a refused call is stored"
        );

        for bad in [
            vec![c02.clone(), status("P01", Some("C02"), None)],
            vec![status("C01", Some("P01"), None)],
            vec![c02.clone(), status("C03", Some("C02"), None)],
        ] {
            let err = s
                .record_site_status(&code("C02"), &bad, Timestamp(2_000))
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::CodeInUse(_)), "{bad:?}: {err:?}");
        }
        assert_eq!(s.sites().await.unwrap(), sites);

        // A new report of the same branch updates it.
        s.record_site_status(&code("C02"), &[c02.clone()], Timestamp(2_000))
            .await
            .unwrap();
        assert_eq!(s.sites().await.unwrap()[1], c02);
    }
}

// ---------------------------------------------------------------------------------------------
// Applying forwarded changes

on_each_backend!(
    #[tokio::test]
    forwarded_changes_apply_in_order_with_the_owners_versions
);
async fn forwarded_changes_apply_in_order_with_the_owners_versions() {
    for f in parent().await {
        let s = &f.store;
        let rec = record(Uuid::new_v4(), "web01", "C01");
        let (hw1, hw2, hw3) = (hw_items("SN1"), hw_items("SN2"), hw_items("SN3"));
        let entries = [
            fwd_full(11, &rec, Class::Hw, 7, &hw1, 4_000),
            fwd_delta(12, &rec, Class::Hw, 8, &hw1, &hw2, 4_000, 4_100),
            fwd_delta(13, &rec, Class::Hw, 9, &hw2, &hw3, 4_000, 4_200),
            fwd_full(14, &rec, Class::Sw, 3, &sw(4, 0), 4_300),
        ];
        for e in &entries {
            assert_eq!(
                apply(s, "C01", e).await,
                ForwardOutcome::Applied { seq: e.seq },
                "{}",
                f.backend
            );
        }
        let view = s.client_view_by_id(rec.id).await.unwrap().expect("held");
        assert_eq!(
            (&view.name, &view.site, &view.machine_id, view.enrolled_at),
            (&rec.name, &code("C01"), &rec.machine_id, rec.enrolled_at)
        );
        let hw = view.hw.expect("hw snapshot");
        assert_eq!(
            (hw.version, hw.hash, hw.full_at, hw.updated_at),
            (9, hash_of(&hw3), Timestamp(4_000), Timestamp(4_200))
        );
        assert_eq!(hw.items, hw3);
        assert_eq!(view.sw.expect("sw snapshot").version, 3);

        let history = s
            .history_by_id(rec.id, &HistoryQuery::default())
            .await
            .unwrap()
            .expect("known client");
        assert_eq!(
            history
                .iter()
                .map(|h| (h.at.0, h.key.as_str(), h.full))
                .collect::<Vec<_>>(),
            vec![(4_200, "system", false), (4_100, "system", false)],
            "the deltas' changes, at the owner's times; none for first snapshots"
        );

        let listed = s.clients().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (
                listed[0].id,
                &listed[0].site,
                listed[0].hw_version,
                listed[0].sw_version
            ),
            (rec.id, &code("C01"), Some(9), Some(3))
        );

        // Another site's client is not this site's: no name look-up, no credentials, no reports.
        assert!(s.client_view(&name("web01")).await.unwrap().is_none());
        assert!(s.history(&name("web01"), 10).await.unwrap().is_none());
        assert!(s.client_auth(rec.id).await.unwrap().is_none());
        let err = s
            .store_report(rec.id, &full(Class::Hw, &hw1), Timestamp(5_000))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::UnknownClient { .. }), "{err:?}");
        let err = s.checkin(rec.id, Timestamp(5_000)).await.unwrap_err();
        assert!(matches!(err, StoreError::UnknownClient { .. }), "{err:?}");
        assert!(matches!(
            s.request_resync(&name("web01"), Class::Hw, Timestamp(5_000))
                .await,
            Err(StoreError::UnknownClient { .. })
        ));
        assert!(
            s.outbox_batch(10).await.unwrap().is_empty(),
            "a parent that does not forward queues nothing"
        );
    }
}

on_each_backend!(
    #[tokio::test]
    a_gap_asks_for_a_full_snapshot_and_stores_nothing
);
async fn a_gap_asks_for_a_full_snapshot_and_stores_nothing() {
    for f in parent().await {
        let s = &f.store;
        let rec = record(Uuid::new_v4(), "web01", "C01");
        let (hw1, hw2, hw3) = (hw_items("SN1"), hw_items("SN2"), hw_items("SN3"));
        apply(s, "C01", &fwd_full(1, &rec, Class::Hw, 1, &hw1, 4_000)).await;

        let gap = fwd_delta(3, &rec, Class::Hw, 3, &hw2, &hw3, 4_000, 4_200);
        let wrong_hash = with_hash(
            fwd_delta(4, &rec, Class::Hw, 2, &hw1, &hw2, 4_000, 4_100),
            hash_of(&hw3),
        );
        let new_client = record(Uuid::new_v4(), "web02", "C01");
        let no_snapshot = fwd_delta(5, &new_client, Class::Hw, 2, &hw1, &hw2, 4_000, 4_100);
        for e in [&gap, &wrong_hash, &no_snapshot] {
            match apply(s, "C01", e).await {
                ForwardOutcome::ResyncRequired {
                    seq,
                    client,
                    class,
                    reason,
                } => {
                    assert_eq!((seq, client, class), (e.seq, e.client.id, Class::Hw));
                    assert!(!reason.is_empty());
                }
                other => panic!(
                    "{}: expected a resync for {}, got {other:?}",
                    f.backend, e.seq
                ),
            }
        }
        let hw = s
            .client_view_by_id(rec.id)
            .await
            .unwrap()
            .unwrap()
            .hw
            .unwrap();
        assert_eq!((hw.version, hw.hash), (1, hash_of(&hw1)));
        assert!(
            s.client_view_by_id(new_client.id).await.unwrap().is_none(),
            "a refused delta creates no client"
        );
        assert!(
            s.history_by_id(rec.id, &HistoryQuery::default())
                .await
                .unwrap()
                .unwrap()
                .is_empty()
        );
    }
}

on_each_backend!(
    #[tokio::test]
    the_same_change_forwarded_twice_is_a_duplicate
);
async fn the_same_change_forwarded_twice_is_a_duplicate() {
    for f in parent().await {
        let s = &f.store;
        let rec = record(Uuid::new_v4(), "web01", "G01");
        let (hw1, hw2) = (hw_items("SN1"), hw_items("SN2"));
        let e1 = fwd_full(1, &rec, Class::Hw, 1, &hw1, 4_000);
        let e2 = fwd_delta(2, &rec, Class::Hw, 2, &hw1, &hw2, 4_000, 4_100);
        assert_eq!(
            apply(s, "C01", &e1).await,
            ForwardOutcome::Applied { seq: 1 }
        );
        assert_eq!(
            apply(s, "C01", &e2).await,
            ForwardOutcome::Applied { seq: 2 }
        );
        let again = Forwarded {
            seq: 7,
            ..e2.clone()
        };
        assert_eq!(
            apply(s, "C01", &again).await,
            ForwardOutcome::Duplicate { seq: 7 },
            "{}",
            f.backend
        );
        let history = s
            .history_by_id(rec.id, &HistoryQuery::default())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(history.len(), 1, "a duplicate records no history");

        // A full snapshot the parent already holds is a duplicate too, and so is a change it
        // applied recently: a child re-sending a batch whose answer it lost sets nothing back.
        let full_again = fwd_full(8, &rec, Class::Hw, 2, &hw2, 4_100);
        assert_eq!(
            apply(s, "C01", &full_again).await,
            ForwardOutcome::Duplicate { seq: 8 }
        );
        let hw3 = hw_items("SN3");
        apply(
            s,
            "C01",
            &fwd_delta(9, &rec, Class::Hw, 3, &hw2, &hw3, 4_000, 4_200),
        )
        .await;
        for replayed in [&e1, &e2] {
            assert_eq!(
                apply(s, "C01", replayed).await,
                ForwardOutcome::Duplicate { seq: replayed.seq }
            );
        }
        let hw = s
            .client_view_by_id(rec.id)
            .await
            .unwrap()
            .unwrap()
            .hw
            .unwrap();
        assert_eq!((hw.version, hw.hash), (3, hash_of(&hw3)));
        assert_eq!(
            s.history_by_id(rec.id, &HistoryQuery::default())
                .await
                .unwrap()
                .unwrap()
                .len(),
            2
        );

        // An older version with another hash is new (the owner's database was restored and its
        // agent sent a full report): taken with the owner's number.
        let hw9 = hw_items("SN9");
        let restored = fwd_full(10, &rec, Class::Hw, 2, &hw9, 4_500);
        assert_eq!(
            apply(s, "C01", &restored).await,
            ForwardOutcome::Applied { seq: 10 }
        );
        let hw = s
            .client_view_by_id(rec.id)
            .await
            .unwrap()
            .unwrap()
            .hw
            .unwrap();
        assert_eq!(
            (hw.version, hw.hash, hw.full_at),
            (2, hash_of(&hw9), Timestamp(4_500))
        );
    }
}

on_each_backend!(
    #[tokio::test]
    changes_of_clients_outside_the_childs_branch_are_refused
);
async fn changes_of_clients_outside_the_childs_branch_are_refused() {
    for f in parent().await {
        let s = &f.store;
        let hw1 = hw_items("SN1");
        let legit = record(Uuid::new_v4(), "web01", "C01");
        apply(s, "C01", &fwd_full(1, &legit, Class::Hw, 1, &hw1, 4_000)).await;

        let mut wrong_hash = fwd_full(
            6,
            &record(Uuid::new_v4(), "web06", "C01"),
            Class::Hw,
            1,
            &hw1,
            4_000,
        );
        wrong_hash.hash = hash_of(&hw_items("other"));
        let cases = [
            (
                "C01",
                fwd_full(
                    2,
                    &record(Uuid::new_v4(), "web02", "G09"),
                    Class::Hw,
                    1,
                    &hw1,
                    4_000,
                ),
                "G09",
            ),
            (
                "C01",
                fwd_full(
                    3,
                    &record(Uuid::new_v4(), "web03", "P01"),
                    Class::Hw,
                    1,
                    &hw1,
                    4_000,
                ),
                "P01",
            ),
            (
                "C02",
                fwd_full(
                    4,
                    &record(Uuid::new_v4(), "web04", "G01"),
                    Class::Hw,
                    1,
                    &hw1,
                    4_000,
                ),
                "G01",
            ),
            (
                "C01",
                fwd_full(
                    5,
                    &record(Uuid::new_v4(), "web05", "C02"),
                    Class::Hw,
                    1,
                    &hw1,
                    4_000,
                ),
                "C02",
            ),
            ("C01", wrong_hash, "hash"),
            // A known client id forwarded under another owner.
            (
                "C01",
                fwd_full(
                    7,
                    &record(legit.id, "web01", "G01"),
                    Class::Hw,
                    2,
                    &hw_items("SN2"),
                    4_100,
                ),
                "C01",
            ),
        ];
        for (via, e, named) in &cases {
            match apply(s, via, e).await {
                ForwardOutcome::Refused { seq, reason } => {
                    assert_eq!(seq, e.seq);
                    assert!(reason.contains(named), "{}: {reason}", f.backend);
                }
                other => panic!(
                    "{}: expected entry {} refused, got {other:?}",
                    f.backend, e.seq
                ),
            }
        }
        let listed = s.clients().await.unwrap();
        assert_eq!(
            listed.iter().map(|c| c.id).collect::<Vec<_>>(),
            vec![legit.id],
            "refused changes store nothing"
        );
        let hw = s
            .client_view_by_id(legit.id)
            .await
            .unwrap()
            .unwrap()
            .hw
            .unwrap();
        assert_eq!(hw.version, 1);
    }
}

on_each_backend!(
    #[tokio::test]
    one_name_at_two_sites_is_two_clients
);
async fn one_name_at_two_sites_is_two_clients() {
    for f in parent().await {
        let s = &f.store;
        let own = enroll(s, "web01").await;
        let a = record(Uuid::new_v4(), "web01", "C01");
        let b = record(Uuid::new_v4(), "web01", "C02");
        let hw1 = hw_items("SN1");
        assert_eq!(
            apply(s, "C01", &fwd_full(1, &a, Class::Hw, 1, &hw1, 4_000)).await,
            ForwardOutcome::Applied { seq: 1 }
        );
        assert_eq!(
            apply(s, "C02", &fwd_full(1, &b, Class::Hw, 4, &hw1, 4_000)).await,
            ForwardOutcome::Applied { seq: 1 }
        );

        let owners = s.find_clients(&name("web01")).await.unwrap();
        assert_eq!(
            owners,
            vec![
                Owner {
                    client: name("web01"),
                    id: a.id,
                    site: code("C01"),
                    url: Some("http://c01.example:8080".into())
                },
                Owner {
                    client: name("web01"),
                    id: b.id,
                    site: code("C02"),
                    url: None
                },
                Owner {
                    client: name("web01"),
                    id: own,
                    site: code("P01"),
                    url: None
                },
            ],
            "{}",
            f.backend
        );
        assert!(s.find_clients(&name("web09")).await.unwrap().is_empty());
        let listed = s.clients().await.unwrap();
        assert_eq!(
            listed
                .iter()
                .map(|c| (c.site.as_str(), c.id))
                .collect::<Vec<_>>(),
            vec![("C01", a.id), ("C02", b.id), ("P01", own)],
            "sorted by name, then site"
        );
        assert_eq!(
            s.client_view(&name("web01")).await.unwrap().unwrap().id,
            own
        );
        assert_eq!(
            s.client_view_by_id(b.id)
                .await
                .unwrap()
                .unwrap()
                .hw
                .unwrap()
                .version,
            4
        );
    }
}

on_each_backend!(
    #[tokio::test]
    a_stale_client_is_replaced_and_a_renamed_one_follows
);
async fn a_stale_client_is_replaced_and_a_renamed_one_follows() {
    for f in parent().await {
        let s = &f.store;
        let (hw1, hw2) = (hw_items("SN1"), hw_items("SN2"));
        let old = record(Uuid::new_v4(), "web01", "C01");
        apply(s, "C01", &fwd_full(1, &old, Class::Hw, 1, &hw1, 4_000)).await;
        apply(
            s,
            "C01",
            &fwd_delta(2, &old, Class::Hw, 2, &hw1, &hw2, 4_000, 4_100),
        )
        .await;

        // The owner re-created its client: same owner and name, new id.
        let new = record(Uuid::new_v4(), "web01", "C01");
        assert_eq!(
            apply(s, "C01", &fwd_full(3, &new, Class::Hw, 1, &hw2, 5_000)).await,
            ForwardOutcome::Applied { seq: 3 },
            "{}",
            f.backend
        );
        assert!(s.client_view_by_id(old.id).await.unwrap().is_none());
        assert!(
            s.history_by_id(old.id, &HistoryQuery::default())
                .await
                .unwrap()
                .is_none()
        );
        let owners = s.find_clients(&name("web01")).await.unwrap();
        assert_eq!(
            owners.iter().map(|o| o.id).collect::<Vec<_>>(),
            vec![new.id]
        );

        // The same name at another site is not stale.
        let elsewhere = record(Uuid::new_v4(), "web01", "G01");
        apply(
            s,
            "C01",
            &fwd_full(4, &elsewhere, Class::Hw, 1, &hw1, 5_000),
        )
        .await;
        assert_eq!(s.find_clients(&name("web01")).await.unwrap().len(), 2);

        // A known id under a new name is renamed, and its agent version is stored.
        let renamed = ClientRecord {
            name: name("web02"),
            agent_version: Some("0.3.1".to_string()),
            ..new.clone()
        };
        assert_eq!(
            apply(
                s,
                "C01",
                &fwd_delta(5, &renamed, Class::Hw, 2, &hw2, &hw1, 5_000, 5_100)
            )
            .await,
            ForwardOutcome::Applied { seq: 5 }
        );
        let view = s.client_view_by_id(new.id).await.unwrap().unwrap();
        assert_eq!(view.name, name("web02"));
        assert_eq!(
            view.agent_version.as_deref(),
            Some("0.3.1"),
            "{}",
            f.backend
        );
        assert_eq!(s.find_clients(&name("web01")).await.unwrap().len(), 1);

        // A record without one (a child of an earlier release) or with something that is not
        // a version keeps the stored one.
        let long = format!("invagent/0.4.0 {}", "x".repeat(10_000));
        for (seq, said) in [(6, None), (7, Some(long))] {
            let record = ClientRecord {
                agent_version: said,
                ..renamed.clone()
            };
            let (from, to) = if seq == 6 { (&hw1, &hw2) } else { (&hw2, &hw1) };
            let e = fwd_delta(
                seq,
                &record,
                Class::Hw,
                seq - 3,
                from,
                to,
                5_000,
                5_000 + seq,
            );
            assert_eq!(
                apply(s, "C01", &e).await,
                ForwardOutcome::Applied { seq },
                "{}",
                f.backend
            );
        }
        let view = s.client_view_by_id(new.id).await.unwrap().unwrap();
        assert_eq!(
            view.agent_version.as_deref(),
            Some("0.3.1"),
            "{}",
            f.backend
        );
    }
}

on_each_backend!(
    #[tokio::test]
    requests_completed_at_the_owner_are_listed_once
);
async fn requests_completed_at_the_owner_are_listed_once() {
    for f in parent().await {
        let s = &f.store;
        let rec = record(Uuid::new_v4(), "web01", "C01");
        let (hw1, hw2) = (hw_items("SN1"), hw_items("SN2"));
        let done = RequestView {
            id: 5,
            class: Class::Hw,
            state: RequestState::Complete,
            requested_at: Timestamp(3_000),
            picked_up_at: Some(Timestamp(3_100)),
            completed_at: Some(Timestamp(3_200)),
            origin: None,
            route: None,
            forwarded_at: None,
            forwarded_to: None,
            hops: Vec::new(),
            reached_top: false,
        };
        let e1 = Forwarded {
            completed: vec![done.clone()],
            ..fwd_full(1, &rec, Class::Hw, 1, &hw1, 3_200)
        };
        assert_eq!(
            apply(s, "C01", &e1).await,
            ForwardOutcome::Applied { seq: 1 }
        );
        // Forwarded again: as a duplicate, and inside a later full snapshot (a resync at the
        // child moves completed requests to the new entry).
        assert_eq!(
            apply(
                s,
                "C01",
                &Forwarded {
                    seq: 2,
                    ..e1.clone()
                }
            )
            .await,
            ForwardOutcome::Duplicate { seq: 2 }
        );
        let e3 = Forwarded {
            completed: vec![done.clone()],
            ..fwd_full(3, &rec, Class::Hw, 2, &hw2, 3_300)
        };
        assert_eq!(
            apply(s, "C01", &e3).await,
            ForwardOutcome::Applied { seq: 3 }
        );

        let view = s.client_view_by_id(rec.id).await.unwrap().unwrap();
        assert_eq!(view.requests.len(), 1, "{}: {:?}", f.backend, view.requests);
        let r = &view.requests[0];
        assert_eq!(
            (
                r.class,
                r.state,
                r.requested_at,
                r.picked_up_at,
                r.completed_at
            ),
            (
                Class::Hw,
                RequestState::Complete,
                Timestamp(3_000),
                Some(Timestamp(3_100)),
                Some(Timestamp(3_200))
            )
        );
        assert_eq!(s.clients().await.unwrap()[0].pending_requests, 0);

        // The same request id at another owner is another request.
        let other = record(Uuid::new_v4(), "web01", "C02");
        let e4 = Forwarded {
            completed: vec![done.clone()],
            ..fwd_full(1, &other, Class::Hw, 1, &hw1, 3_200)
        };
        apply(s, "C02", &e4).await;
        assert_eq!(
            s.client_view_by_id(other.id)
                .await
                .unwrap()
                .unwrap()
                .requests
                .len(),
            1
        );
    }
}

on_each_backend!(
    #[tokio::test]
    a_forwarding_parent_queues_what_it_applies_and_nothing_else
);
async fn a_forwarding_parent_queues_what_it_applies_and_nothing_else() {
    for f in parent().await {
        let s = &f.store;
        s.set_forwarding(true).await.unwrap();
        let rec = record(Uuid::new_v4(), "web01", "G01");
        let (hw1, hw2) = (hw_items("SN1"), hw_items("SN2"));
        let done = RequestView {
            id: 9,
            class: Class::Hw,
            state: RequestState::Complete,
            requested_at: Timestamp(3_000),
            picked_up_at: None,
            completed_at: Some(Timestamp(3_200)),
            origin: None,
            route: None,
            forwarded_at: None,
            forwarded_to: None,
            hops: Vec::new(),
            reached_top: false,
        };
        let e1 = Forwarded {
            completed: vec![done],
            ..fwd_full(21, &rec, Class::Hw, 5, &hw1, 3_200)
        };
        let e2 = fwd_delta(22, &rec, Class::Hw, 6, &hw1, &hw2, 3_200, 3_300);
        apply(s, "C01", &e1).await;
        apply(s, "C01", &e2).await;
        apply(
            s,
            "C01",
            &Forwarded {
                seq: 23,
                ..e2.clone()
            },
        )
        .await; // duplicate
        apply(
            s,
            "C01",
            &fwd_delta(24, &rec, Class::Hw, 9, &hw1, &hw2, 3_200, 3_300),
        )
        .await; // gap
        apply(s, "C02", &fwd_full(25, &rec, Class::Hw, 7, &hw1, 3_400)).await; // refused

        let queued = s.outbox_batch(10).await.unwrap();
        assert_eq!(queued.len(), 2, "{}: {queued:#?}", f.backend);
        for (q, e) in queued.iter().zip([&e1, &e2]) {
            assert_eq!(
                Forwarded {
                    seq: q.seq,
                    ..e.clone()
                },
                *q,
                "the same client record, version, hash, times, body and completed requests"
            );
        }
    }
}

on_each_backend!(
    #[tokio::test]
    a_grandchilds_client_reaches_the_top_with_its_owner_version_and_hash
);
async fn a_grandchilds_client_reaches_the_top_with_its_owner_version_and_hash() {
    for ((g, c), p) in stores_at("G01")
        .await
        .into_iter()
        .zip(stores_at("C01").await)
        .zip(stores_at("P01").await)
    {
        let (g, c, p) = (&g.store, &c.store, &p.store);
        g.set_forwarding(true).await.unwrap();
        c.set_forwarding(true).await.unwrap();

        // The grandchild's own client: reports, and a resync requested there.
        let id = enroll(g, "web01").await;
        let (hw1, hw2) = (hw_items("SN1"), hw_items("SN2"));
        accepted(g, id, &full(Class::Hw, &hw1), 3_000).await;
        accepted(g, id, &delta(Class::Hw, 1, &hw1, &hw2), 3_100).await;
        let req = g
            .request_resync(&name("web01"), Class::Sw, Timestamp(3_150))
            .await
            .unwrap();
        g.checkin(id, Timestamp(3_160)).await.unwrap();
        let mut sw_full = full(Class::Sw, &sw(6, 0));
        sw_full.answers = vec![req.id];
        accepted(g, id, &sw_full, 3_200).await;
        accepted(g, id, &delta(Class::Sw, 1, &sw(6, 0), &sw(6, 3)), 3_300).await;

        // The child applies what the grandchild forwards …
        c.set_child_token(&code("G01"), key_hash(7), Timestamp(100))
            .await
            .unwrap();
        c.record_site_status(
            &code("G01"),
            &[status("G01", Some("C01"), None)],
            Timestamp(3_400),
        )
        .await
        .unwrap();
        let from_g = g.outbox_batch(100).await.unwrap();
        assert_eq!(from_g.len(), 4);
        for e in &from_g {
            assert_eq!(
                apply(c, "G01", e).await,
                ForwardOutcome::Applied { seq: e.seq }
            );
        }
        g.outbox_done(&seqs(&from_g), &[], None, Timestamp(3_500))
            .await
            .unwrap();
        assert_eq!(g.outbox_stats().await.unwrap().depth, 0);

        // … and forwards it on to the parent, which learned that G01 is below C01.
        p.set_child_token(&code("C01"), key_hash(8), Timestamp(100))
            .await
            .unwrap();
        let below = c.sites().await.unwrap();
        let mut statuses = vec![status("C01", Some("P01"), None)];
        statuses.extend(below);
        p.record_site_status(&code("C01"), &statuses, Timestamp(3_600))
            .await
            .unwrap();
        let from_c = c.outbox_batch(100).await.unwrap();
        assert_eq!(
            from_c
                .iter()
                .map(|e| (&e.client, e.class, e.version, e.hash, &e.body))
                .collect::<Vec<_>>(),
            from_g
                .iter()
                .map(|e| (&e.client, e.class, e.version, e.hash, &e.body))
                .collect::<Vec<_>>(),
            "the child forwards the changes as the owner made them"
        );
        for e in &from_c {
            assert_eq!(
                apply(p, "C01", e).await,
                ForwardOutcome::Applied { seq: e.seq }
            );
        }
        c.outbox_done(&seqs(&from_c), &[], None, Timestamp(3_700))
            .await
            .unwrap();

        let at_owner = g.client_view(&name("web01")).await.unwrap().unwrap();
        let at_top = p
            .client_view_by_id(id)
            .await
            .unwrap()
            .expect("the parent holds it");
        assert_eq!(at_top.site, code("G01"));
        assert_eq!(
            (&at_top.name, &at_top.machine_id, at_top.enrolled_at),
            (&at_owner.name, &at_owner.machine_id, at_owner.enrolled_at)
        );
        assert_eq!(
            at_top.hw, at_owner.hw,
            "same version, hash, times and items"
        );
        assert_eq!(at_top.sw, at_owner.sw);
        assert_eq!(at_top.hw.as_ref().unwrap().version, 2);
        let r = &at_top.requests;
        assert_eq!(
            r.len(),
            1,
            "the resync requested at the owner is visible at the top"
        );
        let owner_req = &at_owner.requests[0];
        assert_eq!(
            (
                r[0].class,
                r[0].state,
                r[0].requested_at,
                r[0].picked_up_at,
                r[0].completed_at
            ),
            (
                owner_req.class,
                owner_req.state,
                owner_req.requested_at,
                owner_req.picked_up_at,
                owner_req.completed_at
            )
        );
        assert_eq!(
            p.find_clients(&name("web01"))
                .await
                .unwrap()
                .iter()
                .map(|o| o.site.clone())
                .collect::<Vec<_>>(),
            vec![code("G01")]
        );
        assert_eq!(p.site_via(&code("G01")).await.unwrap(), Some(code("C01")));
        assert_eq!(
            p.history_by_id(id, &HistoryQuery::default())
                .await
                .unwrap()
                .unwrap()
                .len(),
            g.history(&name("web01"), 100).await.unwrap().unwrap().len(),
            "the same history"
        );
    }
}

on_each_backend!(
    #[tokio::test]
    a_batch_applies_exactly_as_one_entry_at_a_time
);
async fn a_batch_applies_exactly_as_one_entry_at_a_time() {
    let a = record(Uuid::new_v4(), "web01", "C01");
    let b = record(Uuid::new_v4(), "db01", "G01");
    let renewed = record(Uuid::new_v4(), "web01", "C01");
    let (hw1, hw2, hw3) = (hw_items("SN1"), hw_items("SN2"), hw_items("SN3"));
    let entries = vec![
        fwd_full(1, &a, Class::Hw, 1, &hw1, 4_000),
        fwd_delta(2, &a, Class::Hw, 2, &hw1, &hw2, 4_000, 4_100),
        fwd_delta(3, &a, Class::Hw, 3, &hw2, &hw3, 4_000, 4_200),
        fwd_full(4, &b, Class::Sw, 5, &sw(4, 0), 4_300),
        Forwarded {
            seq: 5,
            ..fwd_delta(2, &a, Class::Hw, 2, &hw1, &hw2, 4_000, 4_100)
        },
        fwd_delta(6, &a, Class::Hw, 9, &hw1, &hw2, 4_000, 4_400),
        with_hash(fwd_full(7, &b, Class::Hw, 1, &hw1, 4_500), hash_of(&hw2)),
        fwd_full(
            8,
            &record(Uuid::new_v4(), "x01", "G09"),
            Class::Hw,
            1,
            &hw1,
            4_500,
        ),
        fwd_delta(9, &b, Class::Sw, 6, &sw(4, 0), &sw(4, 2), 4_300, 4_600),
        // The owner re-created web01: the old client goes, and its later delta finds nothing.
        fwd_full(10, &renewed, Class::Hw, 1, &hw3, 4_700),
        fwd_delta(11, &a, Class::Hw, 4, &hw3, &hw1, 4_000, 4_800),
    ];
    for (one, all) in parent().await.into_iter().zip(parent().await) {
        let mut singly = Vec::new();
        for e in &entries {
            singly.push(apply(&one.store, "C01", e).await);
        }
        let batched = all
            .store
            .apply_forwarded_batch(&code("C01"), &entries, Timestamp(10_000))
            .await
            .unwrap();
        assert_eq!(batched, singly, "{}", one.backend);
        let kinds: Vec<&str> = batched
            .iter()
            .map(|o| match o {
                ForwardOutcome::Applied { .. } => "applied",
                ForwardOutcome::Duplicate { .. } => "duplicate",
                ForwardOutcome::ResyncRequired { .. } => "resync",
                ForwardOutcome::Refused { .. } => "refused",
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "applied",
                "applied",
                "applied",
                "applied",
                "duplicate",
                "resync",
                "refused",
                "refused",
                "applied",
                "applied",
                "resync"
            ]
        );
        let (x, y) = (
            one.store.clients().await.unwrap(),
            all.store.clients().await.unwrap(),
        );
        assert_eq!(x, y);
        assert_eq!(
            x.iter().map(|c| c.id).collect::<Vec<_>>(),
            vec![b.id, renewed.id]
        );
        for id in [b.id, renewed.id] {
            assert_eq!(
                one.store.client_view_by_id(id).await.unwrap(),
                all.store.client_view_by_id(id).await.unwrap()
            );
        }
        assert!(
            all.store
                .apply_forwarded_batch(&code("C01"), &[], Timestamp(1))
                .await
                .unwrap()
                .is_empty()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Resync requests routed down the tree (`invsync --via-child`)

fn down(origin: &str, origin_id: i64, client: Uuid, class: Class) -> DownRequest {
    DownRequest {
        origin_id,
        origin_site: code(origin),
        client,
        class,
    }
}

/// Hands everything in `from`'s outbox to `to` as the direct child `via` and acknowledges it as
/// stored by `to`.
async fn forward_all(from: &Store, to: &Store, via: &str, at: i64) {
    let batch = from.outbox_batch(1_000).await.unwrap();
    for e in &batch {
        let outcome = to
            .apply_forwarded(&code(via), e, Timestamp(at))
            .await
            .unwrap();
        assert!(
            matches!(
                outcome,
                ForwardOutcome::Applied { .. } | ForwardOutcome::Duplicate { .. }
            ),
            "{outcome:?}"
        );
    }
    let parent = to.site().await.unwrap().code;
    from.outbox_done(&seqs(&batch), &[], Some(&parent), Timestamp(at))
        .await
        .unwrap();
}

/// Holds forwarded hw snapshots of web01 (owned by G01, reached through C01), db01 (owned by C01)
/// and app01 (owned by C02) at the parent of [`parent`].
async fn parent_with_clients(s: &Store) -> (Uuid, Uuid, Uuid) {
    let (web, db, app) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let hw = hw_items("SN1");
    for (id, n, owner, via) in [
        (web, "web01", "G01", "C01"),
        (db, "db01", "C01", "C01"),
        (app, "app01", "C02", "C02"),
    ] {
        let e = fwd_full(1, &record(id, n, owner), Class::Hw, 1, &hw, 3_000);
        assert_eq!(apply(s, via, &e).await, ForwardOutcome::Applied { seq: 1 });
    }
    (web, db, app)
}

on_each_backend!(
    #[tokio::test]
    a_routed_request_is_one_while_pending_and_only_for_clients_below
);
async fn a_routed_request_is_one_while_pending_and_only_for_clients_below() {
    for f in parent().await {
        let s = &f.store;
        let (web, _, _) = parent_with_clients(s).await;
        let q = s
            .queue_routed_request(web, Class::Hw, Timestamp(5_000))
            .await
            .unwrap();
        assert_eq!(
            (&q.client, q.created, q.state, q.requested_at, &q.routed_to),
            (
                &name("web01"),
                true,
                RequestState::Pending,
                Timestamp(5_000),
                &Some(code("G01"))
            ),
            "{}",
            f.backend
        );
        let again = s
            .queue_routed_request(web, Class::Hw, Timestamp(5_100))
            .await
            .unwrap();
        assert_eq!(
            (again.id, again.created, again.requested_at),
            (q.id, false, Timestamp(5_000))
        );
        let sw = s
            .queue_routed_request(web, Class::Sw, Timestamp(5_200))
            .await
            .unwrap();
        assert!(sw.created && sw.id != q.id);

        let state = s.request_state(q.id).await.unwrap().expect("known id");
        assert_eq!(
            (state.state, state.route.clone(), state.origin.clone()),
            (RequestState::Pending, Some(code("G01")), None)
        );
        let view = s.client_view_by_id(web).await.unwrap().unwrap();
        assert_eq!(view.requests.len(), 2);
        assert!(view.requests.iter().all(|r| r.route == Some(code("G01"))));
        assert_eq!(s.clients().await.unwrap()[2].pending_requests, 2);

        // This site's own client is queued the usual way; an unknown id is unknown.
        let own = enroll(s, "own01").await;
        assert!(matches!(
            s.queue_routed_request(own, Class::Hw, Timestamp(5_300))
                .await,
            Err(StoreError::Refused(_))
        ));
        assert!(matches!(
            s.queue_routed_request(Uuid::new_v4(), Class::Hw, Timestamp(5_300))
                .await,
            Err(StoreError::UnknownClient { .. })
        ));
        // Routed requests never reach an agent here: the client does not check in here.
        let err = s.checkin(web, Timestamp(5_400)).await.unwrap_err();
        assert!(matches!(err, StoreError::UnknownClient { .. }), "{err:?}");
    }
}

on_each_backend!(
    #[tokio::test]
    routed_requests_go_to_the_owners_branch_and_again_until_complete
);
async fn routed_requests_go_to_the_owners_branch_and_again_until_complete() {
    for f in parent().await {
        let s = &f.store;
        let (web, db, app) = parent_with_clients(s).await;
        let t = 10_000;
        let q_web = s
            .queue_routed_request(web, Class::Hw, Timestamp(t))
            .await
            .unwrap();
        let q_db = s
            .queue_routed_request(db, Class::Sw, Timestamp(t))
            .await
            .unwrap();
        let q_app = s
            .queue_routed_request(app, Class::Hw, Timestamp(t))
            .await
            .unwrap();

        let to_c01 = s
            .deliver_routed_requests(&code("C01"), Timestamp(t + 100))
            .await
            .unwrap();
        assert_eq!(
            to_c01,
            vec![
                down("P01", q_web.id, web, Class::Hw),
                down("P01", q_db.id, db, Class::Sw)
            ],
            "{}: the child's own client and the one of the site below it",
            f.backend
        );
        let to_c02 = s
            .deliver_routed_requests(&code("C02"), Timestamp(t + 100))
            .await
            .unwrap();
        assert_eq!(to_c02, vec![down("P01", q_app.id, app, Class::Hw)]);
        assert!(
            s.deliver_routed_requests(&code("G01"), Timestamp(t + 100))
                .await
                .unwrap()
                .is_empty(),
            "G01 is no direct child of this site"
        );

        // Delivered once per period, then again while not complete.
        let soon = Timestamp(t + 100 + invsync_store::REDELIVER_AFTER_MS - 1);
        assert!(
            s.deliver_routed_requests(&code("C01"), soon)
                .await
                .unwrap()
                .is_empty()
        );
        let later = t + 100 + invsync_store::REDELIVER_AFTER_MS;
        assert_eq!(
            s.deliver_routed_requests(&code("C01"), Timestamp(later))
                .await
                .unwrap(),
            to_c01
        );

        // The owner's full report answering the web01 request completes it here: only the other
        // one is delivered again.
        let done = RequestView {
            id: 77,
            class: Class::Hw,
            state: RequestState::Complete,
            requested_at: Timestamp(t + 200),
            picked_up_at: Some(Timestamp(t + 300)),
            completed_at: Some(Timestamp(t + 400)),
            origin: Some(format!("P01:{}", q_web.id)),
            route: None,
            forwarded_at: None,
            forwarded_to: None,
            hops: Vec::new(),
            reached_top: false,
        };
        let e = Forwarded {
            completed: vec![done],
            ..fwd_full(
                2,
                &record(web, "web01", "G01"),
                Class::Hw,
                2,
                &hw_items("SN2"),
                t + 400,
            )
        };
        assert_eq!(
            apply(s, "C01", &e).await,
            ForwardOutcome::Applied { seq: 2 }
        );
        let state = s.request_state(q_web.id).await.unwrap().unwrap();
        assert_eq!(
            (state.state, state.picked_up_at, state.completed_at),
            (
                RequestState::Complete,
                Some(Timestamp(t + 300)),
                Some(Timestamp(t + 400))
            )
        );
        assert_eq!(
            s.client_view_by_id(web)
                .await
                .unwrap()
                .unwrap()
                .requests
                .len(),
            1,
            "completed in place, not recorded a second time"
        );
        let much_later = Timestamp(later + 2 * invsync_store::REDELIVER_AFTER_MS);
        assert_eq!(
            s.deliver_routed_requests(&code("C01"), much_later)
                .await
                .unwrap(),
            vec![down("P01", q_db.id, db, Class::Sw)]
        );
    }
}

on_each_backend!(
    #[tokio::test]
    only_the_owners_branch_completes_a_routed_request_of_its_client
);
async fn only_the_owners_branch_completes_a_routed_request_of_its_client() {
    for f in parent().await {
        let s = &f.store;
        let (web, db, _) = parent_with_clients(s).await;
        let q = s
            .queue_routed_request(web, Class::Hw, Timestamp(5_000))
            .await
            .unwrap();
        // db01's change names web01's request: it is db01's, not web01's, so it changes nothing
        // of that request (and records nothing under this site's origin either).
        let forged = RequestView {
            id: 1,
            class: Class::Hw,
            state: RequestState::Complete,
            requested_at: Timestamp(5_100),
            picked_up_at: None,
            completed_at: Some(Timestamp(5_200)),
            origin: Some(format!("P01:{}", q.id)),
            route: None,
            forwarded_at: None,
            forwarded_to: None,
            hops: Vec::new(),
            reached_top: false,
        };
        let e = Forwarded {
            completed: vec![forged.clone()],
            ..fwd_full(
                2,
                &record(db, "db01", "C01"),
                Class::Hw,
                2,
                &hw_items("SN2"),
                5_200,
            )
        };
        assert_eq!(
            apply(s, "C01", &e).await,
            ForwardOutcome::Applied { seq: 2 }
        );
        assert_eq!(
            s.request_state(q.id).await.unwrap().unwrap().state,
            RequestState::Pending,
            "{}",
            f.backend
        );
        assert!(
            s.client_view_by_id(db)
                .await
                .unwrap()
                .unwrap()
                .requests
                .is_empty()
        );
        // A sw report cannot complete an hw request either.
        let e = Forwarded {
            completed: vec![RequestView {
                class: Class::Sw,
                ..forged
            }],
            ..fwd_full(
                3,
                &record(web, "web01", "G01"),
                Class::Sw,
                1,
                &sw(3, 0),
                5_300,
            )
        };
        assert_eq!(
            apply(s, "C01", &e).await,
            ForwardOutcome::Applied { seq: 3 }
        );
        assert_eq!(
            s.request_state(q.id).await.unwrap().unwrap().state,
            RequestState::Pending
        );
    }
}

on_each_backend!(
    #[tokio::test]
    an_owner_queues_a_down_request_once_and_only_when_it_accepts_them
);
async fn an_owner_queues_a_down_request_once_and_only_when_it_accepts_them() {
    for f in stores_at("G01").await {
        let s = &f.store;
        s.set_forwarding(true).await.unwrap();
        let id = enroll(s, "web01").await;
        let req = down("P01", 5, id, Class::Hw);
        assert_eq!(
            s.accept_down_request(&req, false, Timestamp(3_000))
                .await
                .unwrap(),
            DownAccepted::NotAccepted,
            "{}",
            f.backend
        );
        assert!(
            s.client_view(&name("web01"))
                .await
                .unwrap()
                .unwrap()
                .requests
                .is_empty()
        );

        let DownAccepted::Queued {
            id: rid,
            client,
            created,
        } = s
            .accept_down_request(&req, true, Timestamp(3_000))
            .await
            .unwrap()
        else {
            panic!("expected the request to be queued");
        };
        assert!(created);
        assert_eq!(client, name("web01"));
        assert_eq!(
            s.accept_down_request(&req, true, Timestamp(3_100))
                .await
                .unwrap(),
            DownAccepted::Queued {
                id: rid,
                client: name("web01"),
                created: false
            },
            "delivered again: the same request"
        );
        // A request made here while it is pending is a request of its own: each origin learns
        // when its request completes.
        let local = s
            .request_resync(&name("web01"), Class::Hw, Timestamp(3_200))
            .await
            .unwrap();
        assert!(local.created && local.id != rid);

        let checkin = s.checkin(id, Timestamp(3_300)).await.unwrap();
        let ids: Vec<i64> = checkin.instructions.iter().map(|i| i.id).collect();
        assert_eq!(ids, vec![rid, local.id]);
        let mut report = full(Class::Hw, &hw_items("SN1"));
        report.answers = ids;
        accepted(s, id, &report, 3_400).await;

        let view = s.client_view(&name("web01")).await.unwrap().unwrap();
        assert!(
            view.requests
                .iter()
                .all(|r| r.state == RequestState::Complete)
        );
        let entry = &s.outbox_batch(10).await.unwrap()[0];
        let origins: Vec<Option<String>> =
            entry.completed.iter().map(|r| r.origin.clone()).collect();
        assert_eq!(
            origins,
            vec![Some("P01:5".to_string()), None],
            "the origin travels up with the completed request"
        );
        assert_eq!(
            s.accept_down_request(&req, true, Timestamp(3_500))
                .await
                .unwrap(),
            DownAccepted::Queued {
                id: rid,
                client: name("web01"),
                created: false
            },
            "a late re-delivery does not queue it again"
        );
        assert!(
            s.checkin(id, Timestamp(3_600))
                .await
                .unwrap()
                .instructions
                .is_empty()
        );

        // Unknown clients and requests claiming to come from this very site store nothing.
        assert_eq!(
            s.accept_down_request(
                &down("P01", 6, Uuid::new_v4(), Class::Sw),
                true,
                Timestamp(3_700)
            )
            .await
            .unwrap(),
            DownAccepted::UnknownClient
        );
        assert!(matches!(
            s.accept_down_request(&down("G01", 7, id, Class::Sw), true, Timestamp(3_700))
                .await
                .unwrap(),
            DownAccepted::Refused(_)
        ));
        assert_eq!(
            s.client_view(&name("web01"))
                .await
                .unwrap()
                .unwrap()
                .requests
                .len(),
            2
        );
    }
}

on_each_backend!(
    #[tokio::test]
    a_routed_request_travels_down_two_levels_and_completes_at_every_site_on_the_way_up
);
async fn a_routed_request_travels_down_two_levels_and_completes_at_every_site_on_the_way_up() {
    for ((g, c), p) in stores_at("G01")
        .await
        .into_iter()
        .zip(stores_at("C01").await)
        .zip(stores_at("P01").await)
    {
        let (g, c, p) = (&g.store, &c.store, &p.store);
        g.set_forwarding(true).await.unwrap();
        c.set_forwarding(true).await.unwrap();
        c.set_child_token(&code("G01"), key_hash(7), Timestamp(100))
            .await
            .unwrap();
        c.record_site_status(
            &code("G01"),
            &[status("G01", Some("C01"), None)],
            Timestamp(1_000),
        )
        .await
        .unwrap();
        p.set_child_token(&code("C01"), key_hash(8), Timestamp(100))
            .await
            .unwrap();
        let mut statuses = vec![status("C01", Some("P01"), None)];
        statuses.extend(c.sites().await.unwrap());
        p.record_site_status(&code("C01"), &statuses, Timestamp(1_000))
            .await
            .unwrap();

        let id = enroll(g, "web01").await;
        accepted(g, id, &full(Class::Hw, &hw_items("SN1")), 2_000).await;
        forward_all(g, c, "G01", 2_100).await;
        forward_all(c, p, "C01", 2_200).await;

        // Asked at the top, routed through the child, queued at the owner.
        let q = p
            .queue_routed_request(id, Class::Hw, Timestamp(3_000))
            .await
            .unwrap();
        let to_c = p
            .deliver_routed_requests(&code("C01"), Timestamp(3_100))
            .await
            .unwrap();
        assert_eq!(to_c, vec![down("P01", q.id, id, Class::Hw)]);
        let DownAccepted::Relayed {
            id: relay,
            route,
            created: true,
        } = c
            .accept_down_request(&to_c[0], false, Timestamp(3_150))
            .await
            .unwrap()
        else {
            panic!("expected the child to route it on");
        };
        assert_eq!(route, code("G01"));
        assert_eq!(
            c.accept_down_request(&to_c[0], false, Timestamp(3_160))
                .await
                .unwrap(),
            DownAccepted::Relayed {
                id: relay,
                route: code("G01"),
                created: false
            }
        );
        let to_g = c
            .deliver_routed_requests(&code("G01"), Timestamp(3_200))
            .await
            .unwrap();
        assert_eq!(to_g, to_c, "the origin stays the site that asked");
        let DownAccepted::Queued { id: at_owner, .. } = g
            .accept_down_request(&to_g[0], true, Timestamp(3_250))
            .await
            .unwrap()
        else {
            panic!("expected the owner to queue it");
        };

        // The agent answers; the report travels up.
        g.checkin(id, Timestamp(3_300)).await.unwrap();
        let mut report = full(Class::Hw, &hw_items("SN2"));
        report.answers = vec![at_owner];
        accepted(g, id, &report, 3_400).await;
        forward_all(g, c, "G01", 3_500).await;
        forward_all(c, p, "C01", 3_600).await;

        let owner_view = g.client_view(&name("web01")).await.unwrap().unwrap();
        let owner_req = &owner_view.requests[0];
        assert_eq!(
            (owner_req.state, owner_req.origin.as_deref()),
            (
                RequestState::Complete,
                Some(format!("P01:{}", q.id).as_str())
            )
        );
        for (site, list) in [
            (
                "C01",
                c.client_view_by_id(id).await.unwrap().unwrap().requests,
            ),
            (
                "P01",
                p.client_view_by_id(id).await.unwrap().unwrap().requests,
            ),
        ] {
            assert_eq!(
                list.len(),
                1,
                "{site}: one request, completed in place: {list:?}"
            );
            assert_eq!(
                (list[0].state, list[0].picked_up_at, list[0].completed_at),
                (
                    RequestState::Complete,
                    owner_req.picked_up_at,
                    owner_req.completed_at
                ),
                "{site}: the owner's times"
            );
            assert_eq!(list[0].route, Some(code("G01")));
        }
        assert_eq!(
            p.request_state(q.id).await.unwrap().unwrap().state,
            RequestState::Complete
        );
        // Each site records its own hop up: the owner when C01 stored the report, C01 (its
        // routed-on copy, found by origin) when P01 stored it; P01 has no parent.
        let forwarded = |r: &RequestView| (r.forwarded_at, r.forwarded_to.clone());
        assert_eq!(
            forwarded(owner_req),
            (Some(Timestamp(3_500)), Some(code("C01")))
        );
        assert_eq!(
            forwarded(&c.request_state(relay).await.unwrap().unwrap()),
            (Some(Timestamp(3_600)), Some(code("P01")))
        );
        assert_eq!(
            forwarded(&p.request_state(q.id).await.unwrap().unwrap()),
            (None, None)
        );
        let much_later = Timestamp(10_000 + invsync_store::REDELIVER_AFTER_MS);
        assert!(
            p.deliver_routed_requests(&code("C01"), much_later)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            c.deliver_routed_requests(&code("G01"), much_later)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

on_each_backend!(
    #[tokio::test]
    software_queries_follow_forwarded_clients_and_forget_replaced_ones
);
async fn software_queries_follow_forwarded_clients_and_forget_replaced_ones() {
    use invsync_proto::wire::{PackageQuery, SoftwareQuery};
    let q = |site: Option<&str>| SoftwareQuery {
        name: "nano".into(),
        version: None,
        site: site.map(|c| SiteCode::parse(c).unwrap()),
        limit: 100,
        offset: 0,
    };
    let rows = |p: &invsync_proto::wire::SoftwarePage| -> Vec<String> {
        p.holders
            .iter()
            .map(|h| format!("{} {} {}", h.client, h.site, h.version))
            .collect()
    };
    for f in parent().await {
        let s = &f.store;
        let be = f.backend.clone();
        // The index is built first, so that what follows changes a live one.
        assert_eq!(s.software(&q(None)).await.unwrap().total, 0);
        let sw1: Items = [package("nano", "7.2-1", 1)].into_iter().collect();
        let old = record(Uuid::new_v4(), "web01", "C01");
        apply(s, "C01", &fwd_full(1, &old, Class::Sw, 1, &sw1, 4_000)).await;
        let below = record(Uuid::new_v4(), "db01", "G01");
        apply(s, "C01", &fwd_full(2, &below, Class::Sw, 3, &sw1, 4_000)).await;
        assert_eq!(
            rows(&s.software(&q(None)).await.unwrap()),
            ["DB01 G01 7.2-1", "WEB01 C01 7.2-1"],
            "{be}"
        );
        assert_eq!(
            rows(&s.software(&q(Some("C01"))).await.unwrap()),
            ["WEB01 C01 7.2-1"],
            "{be}"
        );
        let pq = |site: &str| PackageQuery {
            search: None,
            site: Some(SiteCode::parse(site).unwrap()),
            limit: 10,
            offset: 0,
        };
        let g01 = s.packages(&pq("G01")).await.unwrap();
        assert_eq!((g01.total, g01.packages[0].clients), (1, 1), "{be}");
        assert_eq!(
            s.packages(&pq("P01")).await.unwrap().total,
            0,
            "{be}: no client of this site has it"
        );

        // The owner re-created web01 with another version: the old client's package goes.
        let new = record(Uuid::new_v4(), "web01", "C01");
        let sw2: Items = [package("nano", "7.2-2", 1)].into_iter().collect();
        assert_eq!(
            apply(s, "C01", &fwd_full(3, &new, Class::Sw, 1, &sw2, 5_000)).await,
            ForwardOutcome::Applied { seq: 3 },
            "{be}"
        );
        let page = s.software(&q(None)).await.unwrap();
        assert_eq!(rows(&page), ["DB01 G01 7.2-1", "WEB01 C01 7.2-2"], "{be}");
        assert_eq!(page.holders[1].client_id, new.id, "{be}");
        // And a store opened afresh agrees.
        let f = f.reopen().await;
        assert_eq!(
            rows(&f.store.software(&q(None)).await.unwrap()),
            ["DB01 G01 7.2-1", "WEB01 C01 7.2-2"],
            "{be}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// How far up a completed request travelled (`invsync --wait` past the first hop)

on_each_backend!(
    #[tokio::test]
    the_way_up_of_a_completed_request_is_told_down_to_its_owner_once
);
async fn the_way_up_of_a_completed_request_is_told_down_to_its_owner_once() {
    for ((g, c), p) in stores_at("G01")
        .await
        .into_iter()
        .zip(stores_at("C01").await)
        .zip(stores_at("P01").await)
    {
        let b = g.backend.clone();
        let (g, c, p) = (&g.store, &c.store, &p.store);
        g.set_forwarding(true).await.unwrap();
        c.set_forwarding(true).await.unwrap();
        c.set_child_token(&code("G01"), key_hash(7), Timestamp(100))
            .await
            .unwrap();
        c.record_site_status(
            &code("G01"),
            &[status("G01", Some("C01"), None)],
            Timestamp(100),
        )
        .await
        .unwrap();
        p.set_child_token(&code("C01"), key_hash(8), Timestamp(100))
            .await
            .unwrap();
        p.record_site_status(
            &code("C01"),
            &[
                status("C01", Some("P01"), None),
                status("G01", Some("C01"), None),
            ],
            Timestamp(100),
        )
        .await
        .unwrap();

        // A resync requested and completed at the owner G01.
        let id = enroll(g, "web01").await;
        let req = g
            .request_resync(&name("web01"), Class::Sw, Timestamp(3_000))
            .await
            .unwrap();
        g.checkin(id, Timestamp(3_010)).await.unwrap();
        let mut answer = full(Class::Sw, &sw(3, 0));
        answer.answers = vec![req.id];
        accepted(g, id, &answer, 3_020).await;
        let state = |s: &Store, id| {
            let s = s.clone();
            async move { s.request_state(id).await.unwrap().unwrap() }
        };

        // G01 -> C01: C01 has a parent, so it has nothing to tell until P01 acknowledges.
        forward_all(g, c, "G01", 4_000).await;
        assert!(
            c.deliver_hops(&code("G01")).await.unwrap().is_empty(),
            "{b}"
        );
        let r = state(g, req.id).await;
        assert_eq!(r.forwarded_to, Some(code("C01")), "{b}");
        assert!(r.hops.is_empty() && !r.reached_top, "{b}: {r:?}");

        // C01 -> P01, the top: P01 tells C01 (the top has it), C01 tells G01 (P01 stored it at
        // the time of P01's acknowledgement, and that is the top).
        forward_all(c, p, "C01", 5_000).await;
        let from_p = p.deliver_hops(&code("C01")).await.unwrap();
        let origin = format!("G01:{}", req.id);
        assert_eq!(from_p.len(), 1, "{b}: {from_p:?}");
        assert_eq!(
            (
                from_p[0].request.as_str(),
                from_p[0].hops.len(),
                from_p[0].top
            ),
            (origin.as_str(), 0, true),
            "{b}"
        );
        assert!(
            p.deliver_hops(&code("C01")).await.unwrap().is_empty(),
            "told once: {b}"
        );
        // Another child is told nothing of requests outside its branch.
        assert!(
            p.deliver_hops(&code("C02")).await.unwrap().is_empty(),
            "{b}"
        );
        c.record_hops(&from_p).await.unwrap();
        let from_c = c.deliver_hops(&code("G01")).await.unwrap();
        assert_eq!(from_c.len(), 1, "{b}: {from_c:?}");
        assert_eq!(from_c[0].request, origin, "{b}");
        assert_eq!(from_c[0].hops.len(), 1, "{b}");
        assert_eq!(from_c[0].hops[0].site, Some(code("P01")), "{b}");
        assert_eq!(from_c[0].hops[0].at, Timestamp(5_000), "{b}");
        assert!(from_c[0].top, "{b}");
        g.record_hops(&from_c).await.unwrap();
        let r = state(g, req.id).await;
        assert_eq!(r.hops, from_c[0].hops, "{b}");
        assert!(r.reached_top, "{b}");
        // The owner's own request has no child to tell; a report naming no request changes
        // nothing.
        assert!(
            g.deliver_hops(&code("X01")).await.unwrap().is_empty(),
            "{b}"
        );
        let mut stray = from_c.clone();
        stray[0].request = "G01:999999".to_string();
        g.record_hops(&stray).await.unwrap();
        let view = g.client_view(&name("web01")).await.unwrap().unwrap();
        assert!(view.requests[0].reached_top, "{b}");
    }
}
