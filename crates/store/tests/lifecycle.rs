//! The client lifecycle (issue 20) on every backend: deleting a client (what goes, what stays,
//! the name free again, the software index exact, the tombstone in the outbox and a parent
//! forgetting the client), stale clients in the lists, and the retention pruner.

mod common;

use common::*;
use invsync_proto::wire::{ClientQuery, SoftwareQuery};
use invsync_proto::{Class, Timestamp};
use invsync_store::{Authenticated, Enrollment, Retained, StoreError};

fn openssl() -> SoftwareQuery {
    SoftwareQuery {
        name: "openssl".into(),
        version: None,
        site: None,
        limit: 100,
        offset: 0,
    }
}

fn packages(v: &str) -> invsync_proto::Items {
    [package("openssl", v, 100), package("bash", "5.2", 50)]
        .into_iter()
        .collect()
}

on_each_backend!(
    #[tokio::test]
    delete_revokes_forgets_inventory_keeps_history_and_frees_the_name
);
async fn delete_revokes_forgets_inventory_keeps_history_and_frees_the_name() {
    for f in stores().await {
        let (s, be) = (&f.store, &f.backend);
        let id = enroll(s, "web01").await;
        let other = enroll(s, "web02").await;
        for (client, v) in [(id, "3.0.1"), (other, "3.0.1")] {
            s.store_report(client, &full(Class::Sw, &packages(v)), Timestamp(3_000))
                .await
                .unwrap();
        }
        s.store_report(
            id,
            &delta(Class::Sw, 1, &packages("3.0.1"), &packages("3.0.2")),
            Timestamp(4_000),
        )
        .await
        .unwrap();
        s.request_resync(&name("web01"), Class::Hw, Timestamp(4_100))
            .await
            .unwrap();
        assert_eq!(s.software(&openssl()).await.unwrap().total, 2, "{be}");

        let deleted = s
            .delete_client(&name("web01"), Timestamp(5_000))
            .await
            .unwrap();
        assert_eq!(
            (deleted.client.as_str(), deleted.id, deleted.deleted_at),
            ("WEB01", id, Timestamp(5_000)),
            "{be}"
        );
        // Gone from every view of live clients, and from the software index.
        assert!(
            s.client_view(&name("web01")).await.unwrap().is_none(),
            "{be}"
        );
        assert!(s.client_view_by_id(id).await.unwrap().is_none(), "{be}");
        let listed: Vec<String> = s
            .clients()
            .await
            .unwrap()
            .iter()
            .map(|c| c.name.to_string())
            .collect();
        assert_eq!(listed, ["WEB02"], "{be}");
        let page = s.clients_page(&ClientQuery::default()).await.unwrap();
        assert_eq!(page.total, 1, "{be}");
        assert!(s.find_clients(&name("web01")).await.unwrap().is_empty());
        let holders = s.software(&openssl()).await.unwrap();
        assert_eq!(
            holders
                .holders
                .iter()
                .map(|h| h.client_id)
                .collect::<Vec<_>>(),
            [other],
            "{be}: a deleted client's packages leave the software index"
        );
        assert_eq!(s.own_clients().await.unwrap(), 1, "{be}");
        // Its key is refused, saying it was deleted.
        match s.authenticate_key(id, &key_hash(1)).await.unwrap() {
            Authenticated::Revoked(auth) => {
                assert_eq!(auth.deleted_at, Some(Timestamp(5_000)), "{be}");
                assert_eq!(auth.name.as_str(), "WEB01", "{be}");
            }
            other => panic!("{be}: expected Revoked, got {other:?}"),
        }
        // Its history stays, found by the name it had.
        let kept = s
            .deleted_history(&name("web01"), &Default::default())
            .await
            .unwrap();
        assert_eq!(kept.len(), 1, "{be}");
        assert_eq!((kept[0].id, kept[0].site.as_str()), (id, "S01"), "{be}");
        assert!(
            kept[0]
                .history
                .iter()
                .any(|h| h.key == "dpkg/openssl/amd64"),
            "{be}: {:?}",
            kept[0].history
        );

        // Deleting again, or an unknown client: UnknownClient, nothing changes.
        for raw in ["web01", "nosuch"] {
            let err = s.delete_client(&name(raw), Timestamp(6_000)).await;
            assert!(
                matches!(err, Err(StoreError::UnknownClient { .. })),
                "{be}: {err:?}"
            );
        }
        assert_eq!(s.clients().await.unwrap().len(), 1, "{be}");

        // The name is free: another machine enrolls under it as a new client.
        let again = s
            .enroll(&Enrollment {
                name: name("web01"),
                machine_id: "new-machine".into(),
                key_hash: key_hash(7),
                now: Timestamp(7_000),
                hardware: None,
                agent_version: None,
            })
            .await
            .unwrap();
        assert_ne!(again.client_id, id, "{be}");
        assert!(!again.reenrolled, "{be}");
        assert_eq!(s.clients().await.unwrap().len(), 2, "{be}");
        // Deleted again later: both deleted records keep their history, newest first.
        s.delete_client(&name("web01"), Timestamp(8_000))
            .await
            .unwrap();
        let kept = s
            .deleted_history(&name("web01"), &Default::default())
            .await
            .unwrap();
        assert_eq!(
            kept.iter().map(|d| d.id).collect::<Vec<_>>(),
            [again.client_id, id],
            "{be}"
        );
    }
}

on_each_backend!(
    #[tokio::test]
    a_deleted_clients_tombstone_makes_the_parent_forget_it
);
async fn a_deleted_clients_tombstone_makes_the_parent_forget_it() {
    let children = stores_at("C01").await;
    let parents = stores_at("P01").await;
    for (c, p) in children.iter().zip(parents.iter()) {
        let (child, parent, be) = (&c.store, &p.store, &c.backend);
        let via = invsync_proto::SiteCode::parse("C01").unwrap();
        child.set_forwarding(true).await.unwrap();
        parent.set_forwarding(true).await.unwrap();
        let id = enroll(child, "web01").await;
        child
            .store_report(id, &full(Class::Sw, &packages("1.0")), Timestamp(3_000))
            .await
            .unwrap();
        let batch = child.outbox_batch(100).await.unwrap();
        parent
            .apply_forwarded_batch(&via, &batch, Timestamp(3_100))
            .await
            .unwrap();
        let seqs: Vec<i64> = batch.iter().map(|e| e.seq).collect();
        child
            .outbox_done(&seqs, &[], None, Timestamp(3_200))
            .await
            .unwrap();
        assert!(
            parent.client_view_by_id(id).await.unwrap().is_some(),
            "{be}"
        );
        assert_eq!(parent.software(&openssl()).await.unwrap().total, 1, "{be}");

        // A change not yet forwarded, then the delete: the tombstone replaces it.
        child
            .store_report(
                id,
                &delta(Class::Sw, 1, &packages("1.0"), &packages("1.1")),
                Timestamp(3_500),
            )
            .await
            .unwrap();
        child
            .delete_client(&name("web01"), Timestamp(4_000))
            .await
            .unwrap();
        let batch = child.outbox_batch(100).await.unwrap();
        assert_eq!(batch.len(), 1, "{be}: {batch:?}");
        let tomb = &batch[0];
        assert_eq!(tomb.deleted, Some(Timestamp(4_000)), "{be}");
        assert_eq!(
            (tomb.client.id, tomb.client.name.as_str()),
            (id, "WEB01"),
            "{be}"
        );

        // The parent forgets it and passes the tombstone on; a second time is a duplicate.
        let outcome = parent
            .apply_tombstone(&via, tomb, Timestamp(4_100))
            .await
            .unwrap();
        assert!(
            matches!(outcome, invsync_proto::wire::ForwardOutcome::Applied { .. }),
            "{be}: {outcome:?}"
        );
        assert!(
            parent.client_view_by_id(id).await.unwrap().is_none(),
            "{be}"
        );
        assert!(parent.clients().await.unwrap().is_empty(), "{be}");
        assert_eq!(parent.software(&openssl()).await.unwrap().total, 0, "{be}");
        let up = parent.outbox_batch(100).await.unwrap();
        assert_eq!(
            up.iter().map(|e| e.deleted).collect::<Vec<_>>(),
            [Some(Timestamp(4_000))],
            "{be}: the parent's outbox holds only the tombstone"
        );
        let again = parent
            .apply_tombstone(&via, tomb, Timestamp(4_200))
            .await
            .unwrap();
        assert!(
            matches!(again, invsync_proto::wire::ForwardOutcome::Duplicate { .. }),
            "{be}: {again:?}"
        );
        let kept = parent
            .deleted_history(&name("web01"), &Default::default())
            .await
            .unwrap();
        assert_eq!((kept.len(), kept[0].site.as_str()), (1, "C01"), "{be}");

        // A tombstone from a child the owner is not reached through is refused.
        let wrong = invsync_proto::SiteCode::parse("C02").unwrap();
        let refused = parent
            .apply_tombstone(&wrong, tomb, Timestamp(4_300))
            .await
            .unwrap();
        assert!(
            matches!(refused, invsync_proto::wire::ForwardOutcome::Refused { .. }),
            "{be}: {refused:?}"
        );
    }
}

on_each_backend!(
    #[tokio::test]
    stale_clients_are_flagged_filtered_counted_and_listed_for_deletion
);
async fn stale_clients_are_flagged_filtered_counted_and_listed_for_deletion() {
    for f in stores().await {
        let (s, be) = (&f.store, &f.backend);
        let old = enroll(s, "old1").await;
        enroll(s, "new1").await;
        let now = Timestamp::now();
        // OLD1 checked in long ago (and never since); NEW1 checks in now.
        s.checkin(old, Timestamp(now.0 - 40 * 86_400_000))
            .await
            .unwrap();
        let new_id = s
            .find_clients(&name("new1"))
            .await
            .unwrap()
            .first()
            .unwrap()
            .id;
        s.checkin(new_id, now).await.unwrap();
        s.flush().await.unwrap();
        s.set_stale_after(std::time::Duration::from_secs(30 * 86_400));

        let flags: Vec<(String, bool)> = s
            .clients()
            .await
            .unwrap()
            .iter()
            .map(|c| (c.name.to_string(), c.stale))
            .collect();
        assert_eq!(
            flags,
            [("NEW1".to_string(), false), ("OLD1".to_string(), true)],
            "{be}"
        );
        assert!(s.client_view(&name("old1")).await.unwrap().unwrap().stale);
        assert!(!s.client_view(&name("new1")).await.unwrap().unwrap().stale);
        let only = |stale| ClientQuery {
            stale: Some(stale),
            ..ClientQuery::default()
        };
        let page = s.clients_page(&only(true)).await.unwrap();
        assert_eq!(
            (page.total, page.clients[0].name.as_str()),
            (1, "OLD1"),
            "{be}"
        );
        let page = s.clients_page(&only(false)).await.unwrap();
        assert_eq!(
            (page.total, page.clients[0].name.as_str()),
            (1, "NEW1"),
            "{be}"
        );
        assert_eq!(s.stale_count().await.unwrap(), 1, "{be}");
        let due = s
            .stale_clients(std::time::Duration::from_secs(35 * 86_400), now, 10)
            .await
            .unwrap();
        assert_eq!(due, [name("old1")], "{be}");
        let due = s
            .stale_clients(std::time::Duration::from_secs(45 * 86_400), now, 10)
            .await
            .unwrap();
        assert!(due.is_empty(), "{be}: 40 days unseen is not 45");
        // A longer period: nobody is stale.
        s.set_stale_after(std::time::Duration::from_secs(60 * 86_400));
        assert_eq!(s.stale_count().await.unwrap(), 0, "{be}");
    }
}

on_each_backend!(
    #[tokio::test]
    retention_prunes_old_history_in_batches_and_keeps_recent
);
async fn retention_prunes_old_history_in_batches_and_keeps_recent() {
    for f in stores().await {
        let (s, be) = (&f.store, &f.backend);
        let id = enroll(s, "web01").await;
        let gone = enroll(s, "gone1").await;
        // Versions 1.0 → 1.1 → … → 1.5 at times 10,000 … 15,000: five changes of history.
        let mut prev = packages("1.0");
        s.store_report(id, &full(Class::Sw, &prev), Timestamp(9_000))
            .await
            .unwrap();
        s.store_report(gone, &full(Class::Sw, &prev), Timestamp(9_000))
            .await
            .unwrap();
        for v in 1..=5 {
            let next = packages(&format!("1.{v}"));
            s.store_report(
                id,
                &delta(Class::Sw, v, &prev, &next),
                Timestamp(10_000 + 1_000 * (v - 1)),
            )
            .await
            .unwrap();
            if v == 1 {
                s.store_report(gone, &delta(Class::Sw, 1, &prev, &next), Timestamp(10_000))
                    .await
                    .unwrap();
            }
            prev = next;
        }
        let event = s
            .request_event(
                &name("web01"),
                invsync_proto::wire::Event::Cycle,
                Timestamp(9_500),
            )
            .await
            .unwrap();
        s.complete_events(id, &[event.id], Timestamp(9_600))
            .await
            .unwrap();
        s.delete_client(&name("gone1"), Timestamp(11_000))
            .await
            .unwrap();
        let count = |h: &Option<Vec<invsync_proto::wire::HistoryEntry>>| h.as_ref().unwrap().len();
        assert_eq!(count(&s.history(&name("web01"), 100).await.unwrap()), 5);

        // Before 12,000: the changes at 10,000 and 11,000 go, in batches of one.
        let cutoff = Timestamp(12_000);
        let mut pruned = 0;
        loop {
            let n = s.prune(Retained::History, cutoff, 1).await.unwrap();
            assert!(n <= 1, "{be}: a batch deletes at most its limit");
            if n == 0 {
                break;
            }
            pruned += n;
        }
        assert_eq!(pruned, 3, "{be}: two of WEB01's changes and GONE1's one");
        let left = s.history(&name("web01"), 100).await.unwrap().unwrap();
        assert_eq!(left.len(), 3, "{be}: the recent changes stay");
        assert!(left.iter().all(|h| h.at >= cutoff), "{be}: {left:?}");

        // Ended requests before the cutoff go; the deleted client goes once its history has.
        assert!(
            s.prune(Retained::Requests, cutoff, 100).await.unwrap() >= 1,
            "{be}"
        );
        assert!(
            s.client_view(&name("web01"))
                .await
                .unwrap()
                .unwrap()
                .events
                .is_empty(),
            "{be}"
        );
        assert_eq!(
            s.prune(Retained::DeletedClients, cutoff, 100)
                .await
                .unwrap(),
            1,
            "{be}"
        );
        assert!(
            s.deleted_history(&name("gone1"), &Default::default())
                .await
                .unwrap()
                .is_empty(),
            "{be}"
        );
        // Nothing left to prune: every table answers zero.
        for table in Retained::ALL {
            assert_eq!(s.prune(table, cutoff, 100).await.unwrap(), 0, "{be}");
        }
        assert_eq!(s.clients().await.unwrap().len(), 1, "{be}");
    }
}

// Regression (found by the console's browser test): the stale filter ran in SQL on the stored
// last-seen times, while a check-in of the last second was still only in memory, so a client
// that had just checked in was listed as stale (and its row, with the time laid over, not).
on_each_backend!(
    #[tokio::test]
    a_client_that_just_checked_in_is_not_filtered_as_stale
);
async fn a_client_that_just_checked_in_is_not_filtered_as_stale() {
    for f in stores().await {
        let (s, be) = (&f.store, &f.backend);
        let now = Timestamp::now();
        let old = enroll(s, "old1").await;
        let new = enroll(s, "new1").await;
        s.checkin(old, Timestamp(now.0 - 40 * 86_400_000))
            .await
            .unwrap();
        s.checkin(new, Timestamp(now.0 - 40 * 86_400_000))
            .await
            .unwrap();
        s.flush().await.unwrap();
        s.set_stale_after(std::time::Duration::from_secs(30 * 86_400));
        // NEW1 checks in now: no flush before the list.
        s.checkin(new, now).await.unwrap();
        let page = s
            .clients_page(&ClientQuery {
                stale: Some(true),
                ..ClientQuery::default()
            })
            .await
            .unwrap();
        let names: Vec<String> = page.clients.iter().map(|c| c.name.to_string()).collect();
        assert_eq!(names, ["OLD1"], "{be}");
        assert_eq!(page.total, 1, "{be}");
        let unseen = s
            .stale_clients(std::time::Duration::from_secs(30 * 86_400), now, 10)
            .await
            .unwrap();
        assert_eq!(unseen, [name("old1")], "{be}");
    }
}
