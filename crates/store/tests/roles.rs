//! The contract of administrators with roles and of the audit trail (issue 20, items 6 and 7),
//! on every backend: users are added, listed, rotated and removed with only their key's hash
//! stored; tokens expire; audit entries are appended, filtered, forwarded once and pruned only
//! by age, and the database itself refuses to change one.

mod common;

use common::*;
use invsync_proto::wire::{AuditAction, AuditEntry, AuditQuery, Role, UserName};
use invsync_proto::{Digest, SiteCode, Timestamp};
use invsync_store::{AuditRecord, NewUser, Retained, StoreError};

fn user(name: &str) -> UserName {
    UserName::parse(name).unwrap()
}

fn new_user(name: &str, role: Role, key: u8, now: i64, lifetime_ms: Option<i64>) -> NewUser {
    NewUser {
        name: user(name),
        role,
        key_hash: Digest([key; 32]),
        now: Timestamp(now),
        lifetime_ms,
    }
}

fn record(at: i64, actor: &str, action: AuditAction, target: &str) -> AuditRecord {
    AuditRecord {
        at: Timestamp(at),
        actor: actor.to_string(),
        address: Some("192.0.2.7".to_string()),
        action,
        target: Some(target.to_string()),
        details: None,
    }
}

on_each_backend!(
    #[tokio::test]
    users_are_added_listed_rotated_and_removed
);
async fn users_are_added_listed_rotated_and_removed() {
    for f in stores().await {
        let s = &f.store;
        let be = &f.backend;
        let alice = s
            .add_user(&new_user("alice", Role::Operator, 1, 1_000, Some(500)))
            .await
            .unwrap();
        assert_eq!(alice.role, Role::Operator, "{be}");
        assert_eq!(alice.expires_at, Some(Timestamp(1_500)), "{be}");
        assert!(!alice.expired, "{be}");
        s.add_user(&new_user("bob", Role::Viewer, 2, 1_000, None))
            .await
            .unwrap();

        // A taken name is refused and changes nothing.
        let err = s
            .add_user(&new_user("alice", Role::Admin, 9, 2_000, None))
            .await
            .unwrap_err();
        assert_eq!(err, StoreError::UserExists("alice".to_string()), "{be}");
        let auth = s.user_auth(&user("alice")).await.unwrap().unwrap();
        assert_eq!(auth.role, Role::Operator, "{be}");
        assert_eq!(auth.key_hash, Digest([1; 32]), "{be}");
        assert!(!auth.expired(Timestamp(1_499)), "{be}");
        assert!(auth.expired(Timestamp(1_500)), "{be}");

        let listed = s.users(Timestamp(1_600)).await.unwrap();
        let names: Vec<&str> = listed.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["alice", "bob"], "{be}");
        assert!(listed[0].expired && !listed[1].expired, "{be}");

        // Rotation keeps the lifetime unless told otherwise, and replaces the key.
        let rotated = s
            .rotate_user(&new_user("alice", Role::Viewer, 3, 2_000, None), true)
            .await
            .unwrap();
        assert_eq!(
            rotated.role,
            Role::Operator,
            "{be}: rotation keeps the role"
        );
        assert_eq!(rotated.expires_at, Some(Timestamp(2_500)), "{be}");
        assert_eq!(rotated.token_issued_at, Timestamp(2_000), "{be}");
        let auth = s.user_auth(&user("alice")).await.unwrap().unwrap();
        assert_eq!(auth.key_hash, Digest([3; 32]), "{be}");
        let forever = s
            .rotate_user(&new_user("alice", Role::Viewer, 4, 3_000, None), false)
            .await
            .unwrap();
        assert_eq!(forever.expires_at, None, "{be}");

        assert_eq!(
            s.rotate_user(&new_user("carol", Role::Viewer, 5, 3_000, None), true)
                .await
                .unwrap_err(),
            StoreError::UnknownUser("carol".to_string()),
            "{be}"
        );
        s.remove_user(&user("bob")).await.unwrap();
        assert_eq!(s.user_auth(&user("bob")).await.unwrap(), None, "{be}");
        assert_eq!(
            s.remove_user(&user("bob")).await.unwrap_err(),
            StoreError::UnknownUser("bob".to_string()),
            "{be}"
        );
        assert_eq!(s.users(Timestamp(3_000)).await.unwrap().len(), 1, "{be}");
    }
}

on_each_backend!(
    #[tokio::test]
    the_audit_lists_filters_and_prunes_by_age_only
);
async fn the_audit_lists_filters_and_prunes_by_age_only() {
    for f in stores().await {
        let s = &f.store;
        let be = &f.backend;
        let a = s
            .record_audit(&record(100, "alice", AuditAction::Request, "CLI1"))
            .await
            .unwrap();
        let b = s
            .record_audit(&record(200, "site-token", AuditAction::Cancel, "7"))
            .await
            .unwrap();
        let c = s
            .record_audit(&AuditRecord {
                address: None,
                details: Some("--request-expiry 7d".to_string()),
                ..record(300, "local:root", AuditAction::Config, "request_expiry")
            })
            .await
            .unwrap();
        assert!(a < b && b < c, "{be}: numbers grow");

        let all = s.audit(&AuditQuery::default()).await.unwrap();
        let ids: Vec<i64> = all.iter().map(|e| e.id).collect();
        assert_eq!(ids, [c, b, a], "{be}: newest first");
        assert_eq!(all[2].actor, "alice");
        assert_eq!(all[2].address.as_deref(), Some("192.0.2.7"));
        assert_eq!(all[2].action, AuditAction::Request);
        assert_eq!(all[2].target.as_deref(), Some("CLI1"));
        assert_eq!(all[2].site, SiteCode::parse("S01").unwrap());
        assert_eq!(all[0].address, None);
        assert_eq!(all[0].details.as_deref(), Some("--request-expiry 7d"));

        let since = AuditQuery {
            since: Some(Timestamp(200)),
            ..AuditQuery::default()
        };
        assert_eq!(s.audit(&since).await.unwrap().len(), 2, "{be}");
        let by_alice = AuditQuery {
            user: Some("alice".to_string()),
            ..AuditQuery::default()
        };
        assert_eq!(s.audit(&by_alice).await.unwrap(), vec![all[2].clone()]);
        let one = AuditQuery {
            limit: Some(1),
            ..AuditQuery::default()
        };
        assert_eq!(s.audit(&one).await.unwrap().len(), 1, "{be}");
        let bad = AuditQuery {
            limit: Some(0),
            ..AuditQuery::default()
        };
        assert!(matches!(s.audit(&bad).await, Err(StoreError::Refused(_))));

        // The database itself refuses to rewrite an entry.
        let refused = f
            .try_sql(
                "UPDATE audit SET actor = 'mallory'",
                "UPDATE audit SET actor = 'mallory'",
            )
            .await
            .unwrap_err();
        assert!(refused.contains("append-only"), "{be}: {refused}");
        assert_eq!(s.audit(&by_alice).await.unwrap().len(), 1, "{be}");

        // Pruning removes only entries older than the cutoff, oldest first, in batches.
        assert_eq!(
            s.prune(Retained::Audit, Timestamp(250), 1).await.unwrap(),
            1,
            "{be}"
        );
        assert_eq!(
            s.prune(Retained::Audit, Timestamp(250), 1).await.unwrap(),
            1,
            "{be}"
        );
        assert_eq!(
            s.prune(Retained::Audit, Timestamp(250), 1).await.unwrap(),
            0,
            "{be}"
        );
        let left = s.audit(&AuditQuery::default()).await.unwrap();
        assert_eq!(left.iter().map(|e| e.id).collect::<Vec<_>>(), [c], "{be}");
    }
}

on_each_backend!(
    #[tokio::test]
    audit_entries_go_up_once_with_their_site_and_actor
);
async fn audit_entries_go_up_once_with_their_site_and_actor() {
    for f in stores_at("C01").await {
        let child = &f.store;
        let be = &f.backend;
        for at in [10, 20, 30] {
            child
                .record_audit(&record(at, "alice", AuditAction::Request, "CLI1"))
                .await
                .unwrap();
        }
        let batch = child.audit_to_forward(2).await.unwrap();
        assert_eq!(batch.len(), 2, "{be}");
        child.audit_forwarded_upto(batch[1].id).await.unwrap();
        let rest = child.audit_to_forward(10).await.unwrap();
        assert_eq!(rest.len(), 1, "{be}");
        assert!(rest[0].id > batch[1].id, "{be}");
        // An older acknowledgement (a late answer) does not move the mark back.
        child.audit_forwarded_upto(batch[0].id).await.unwrap();
        assert_eq!(child.audit_to_forward(10).await.unwrap(), rest, "{be}");

        // The parent (here the same kind of store, site S01) stores them once, as done at C01.
        let parent = second_site(be).await;
        let from = SiteCode::parse("C01").unwrap();
        let mut sent: Vec<AuditEntry> = batch.clone();
        sent.extend(rest.clone());
        assert_eq!(
            parent
                .store
                .record_forwarded_audit(&from, &sent)
                .await
                .unwrap(),
            3
        );
        assert_eq!(
            parent
                .store
                .record_forwarded_audit(&from, &sent)
                .await
                .unwrap(),
            0
        );
        let held = parent.store.audit(&AuditQuery::default()).await.unwrap();
        assert_eq!(held.len(), 3, "{be}");
        assert!(
            held.iter().all(|e| e.site == from && e.actor == "alice"),
            "{be}"
        );
        // Held entries go further up from the parent, as its own do.
        assert_eq!(
            parent.store.audit_to_forward(10).await.unwrap().len(),
            3,
            "{be}"
        );
    }
}

/// A store of site S01 on the same backend as the fixture labelled `backend`.
async fn second_site(backend: &str) -> Fixture {
    stores()
        .await
        .into_iter()
        .find(|f| f.backend == backend)
        .expect("a store of the same backend")
}

on_each_backend!(
    #[tokio::test]
    a_database_of_the_previous_schema_version_gains_users_and_the_audit
);
async fn a_database_of_the_previous_schema_version_gains_users_and_the_audit() {
    for f in stores().await {
        let be = f.backend.clone();
        enroll(&f.store, "web1").await;
        // What version 6 (PostgreSQL 3) had: no users, no audit, nothing of the later steps.
        let (lite, pg) = back_to(6, 3);
        let f = f.reopen_after(&lite, &pg).await;
        let s = &f.store;
        assert_eq!(s.clients().await.unwrap().len(), 1, "{be}");
        s.add_user(&new_user("alice", Role::Admin, 1, 10, None))
            .await
            .unwrap();
        s.record_audit(&record(20, "alice", AuditAction::Request, "WEB1"))
            .await
            .unwrap();
        let refused = f
            .try_sql(
                "UPDATE audit SET actor = 'x'",
                "UPDATE audit SET actor = 'x'",
            )
            .await
            .unwrap_err();
        assert!(refused.contains("append-only"), "{be}: {refused}");
        let f = f.reopen().await;
        assert_eq!(f.store.users(Timestamp(30)).await.unwrap().len(), 1, "{be}");
        assert_eq!(
            f.store.audit(&AuditQuery::default()).await.unwrap().len(),
            1,
            "{be}"
        );
    }
}
