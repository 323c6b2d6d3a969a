//! Duplicates and agent versions (issue 20, items 2 and 8), against every backend: an
//! enrollment of a machine the site already holds a client of takes that record over (by
//! machine id; by DMI serial and product UUID when the machine id is new), keeping the client's
//! id and history and recording the old name; merging can be turned off; a name held by another
//! machine is still refused; the agent's version is recorded and older ones flagged; the
//! migration from the previous schema version.

mod common;

use common::*;
use invsync_proto::wire::{HardwareId, MatchedBy};
use invsync_proto::{AgentVersion, Class, Timestamp};
use invsync_store::{Enrollment, Store, StoreError};

fn enrollment(raw: &str, machine: &str, hardware: Option<(&str, &str)>) -> Enrollment {
    Enrollment {
        name: name(raw),
        machine_id: machine.to_string(),
        key_hash: key_hash(7),
        now: Timestamp(5_000),
        hardware: hardware.map(|(serial, uuid)| HardwareId {
            serial: serial.to_string(),
            uuid: uuid.to_string(),
        }),
        agent_version: Some("0.1.0".to_string()),
    }
}

async fn client_count(s: &Store) -> usize {
    s.clients().await.unwrap().len()
}

on_each_backend!(
    #[tokio::test]
    a_renamed_machine_keeps_its_client_history_and_old_name
);
async fn a_renamed_machine_keeps_its_client_history_and_old_name() {
    for f in stores().await {
        let (s, b) = (&f.store, &f.backend);
        let first = s.enroll(&enrollment("pc1", "m-1", None)).await.unwrap();
        let id = first.client_id;
        s.store_report(id, &full(Class::Hw, &hw_items("A")), Timestamp(6_000))
            .await
            .unwrap();
        s.store_report(id, &full(Class::Hw, &hw_items("B")), Timestamp(7_000))
            .await
            .unwrap();
        let renamed = s
            .enroll(&Enrollment {
                key_hash: key_hash(8),
                now: Timestamp(8_000),
                ..enrollment("pc1-new", "m-1", None)
            })
            .await
            .unwrap();
        assert_eq!(renamed.client_id, id, "{b}");
        assert!(renamed.reenrolled, "{b}");
        let merged = renamed.merged.expect("a merge");
        assert_eq!(merged.old_name, name("pc1"), "{b}");
        assert_eq!(merged.matched_by, MatchedBy::MachineId, "{b}");
        assert_eq!(client_count(s).await, 1, "{b}");
        assert!(s.client_view(&name("pc1")).await.unwrap().is_none(), "{b}");
        let view = s.client_view(&name("pc1-new")).await.unwrap().unwrap();
        assert_eq!(view.id, id, "{b}");
        assert_eq!(view.former_names, vec![name("pc1")], "{b}");
        assert_eq!(view.merges.len(), 1, "{b}");
        assert_eq!(view.merges[0].at, Timestamp(8_000), "{b}");
        assert_eq!(view.merges[0].new_name, name("pc1-new"), "{b}");
        assert_eq!(view.hw.as_ref().unwrap().version, 2, "{b}");
        let history = s.history(&name("pc1-new"), 100).await.unwrap().unwrap();
        assert!(
            !history.is_empty(),
            "the history stays with the client: {b}"
        );
        // The new key authenticates; the old one no longer does.
        let auth = s.client_auth(id).await.unwrap().unwrap();
        assert_eq!(auth.key_hash, key_hash(8), "{b}");
        assert_eq!(auth.name, name("pc1-new"), "{b}");
        // The old name is free again, for another machine.
        let other = s.enroll(&enrollment("pc1", "m-9", None)).await.unwrap();
        assert_ne!(other.client_id, id, "{b}");
        assert!(other.merged.is_none(), "{b}");
    }
}

on_each_backend!(
    #[tokio::test]
    a_reimaged_machine_is_recognised_by_its_hardware
);
async fn a_reimaged_machine_is_recognised_by_its_hardware() {
    for f in stores().await {
        let (s, b) = (&f.store, &f.backend);
        let hw = Some(("SER-1", "4c4c4544-0001"));
        let id = s
            .enroll(&enrollment("lab1", "m-old", hw))
            .await
            .unwrap()
            .client_id;
        // Reimaged under a new name: a new machine id, the same serial and UUID (its case as
        // another kernel reports it).
        let again = s
            .enroll(&enrollment(
                "lab1-b",
                "m-new",
                Some(("SER-1", "4C4C4544-0001")),
            ))
            .await
            .unwrap();
        assert_eq!(again.client_id, id, "{b}");
        let merged = again.merged.expect("a merge");
        assert_eq!(merged.matched_by, MatchedBy::Hardware, "{b}");
        assert_eq!(merged.old_machine_id, "m-old", "{b}");
        let view = s.client_view(&name("lab1-b")).await.unwrap().unwrap();
        assert_eq!(view.machine_id, "m-new", "{b}");
        assert_eq!(view.former_names, vec![name("lab1")], "{b}");
        // Reimaged again, keeping its name: the name's holder has the same hardware.
        let kept = s
            .enroll(&enrollment("lab1-b", "m-newer", hw))
            .await
            .unwrap();
        assert_eq!(kept.client_id, id, "{b}");
        assert_eq!(kept.merged.unwrap().old_name, name("lab1-b"), "{b}");
        let view = s.client_view(&name("lab1-b")).await.unwrap().unwrap();
        assert_eq!(view.machine_id, "m-newer", "{b}");
        assert_eq!(view.merges.len(), 2, "{b}");
        assert_eq!(view.former_names, vec![name("lab1")], "{b}");
        assert_eq!(client_count(s).await, 1, "{b}");
        // Only both values together identify a machine: the same serial with another UUID
        // (or a placeholder serial) is another machine.
        let other = s
            .enroll(&enrollment("lab2", "m-2", Some(("SER-1", "other-uuid"))))
            .await
            .unwrap();
        assert_ne!(other.client_id, id, "{b}");
        let placeholder = Some(("To Be Filled By O.E.M.", "4c4c4544-0001"));
        let p1 = s
            .enroll(&enrollment("lab3", "m-3", placeholder))
            .await
            .unwrap();
        let p2 = s
            .enroll(&enrollment("lab4", "m-4", placeholder))
            .await
            .unwrap();
        assert_ne!(p1.client_id, p2.client_id, "{b}");
        assert_eq!(client_count(s).await, 4, "{b}");
    }
}

on_each_backend!(
    #[tokio::test]
    merging_off_makes_a_second_record_and_other_machines_are_refused
);
async fn merging_off_makes_a_second_record_and_other_machines_are_refused() {
    for f in stores().await {
        let (s, b) = (&f.store, &f.backend);
        let hw = Some(("SER-2", "uuid-2"));
        let id = s
            .enroll(&enrollment("pc1", "m-1", hw))
            .await
            .unwrap()
            .client_id;
        // A name held by another machine (another machine id, other or no hardware) is refused
        // as before, and nothing changes.
        for holder_hw in [None, Some(("SER-3", "uuid-3"))] {
            let err = s
                .enroll(&enrollment("pc1", "m-2", holder_hw))
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::NameTaken { .. }), "{b}: {err}");
        }
        // The same hardware under a taken name whose machine id some other client holds: that
        // client is the machine, so the name is refused.
        s.enroll(&enrollment("pc2", "m-5", None)).await.unwrap();
        let err = s.enroll(&enrollment("pc1", "m-5", hw)).await.unwrap_err();
        assert!(matches!(err, StoreError::NameTaken { .. }), "{b}: {err}");
        assert_eq!(client_count(s).await, 2, "{b}");
        s.set_merge_duplicates(false);
        let second = s.enroll(&enrollment("pc1-new", "m-1", hw)).await.unwrap();
        assert_ne!(second.client_id, id, "{b}");
        assert!(second.merged.is_none(), "{b}");
        assert_eq!(client_count(s).await, 3, "{b}");
        // The same machine under its own name still re-enrolls.
        let again = s.enroll(&enrollment("pc1", "m-1", hw)).await.unwrap();
        assert_eq!(again.client_id, id, "{b}");
        assert!(again.merged.is_none(), "{b}");
        assert!(
            s.client_view(&name("pc1"))
                .await
                .unwrap()
                .unwrap()
                .former_names
                .is_empty(),
            "{b}"
        );
    }
}

on_each_backend!(
    #[tokio::test]
    agent_versions_are_recorded_and_older_ones_flagged
);
async fn agent_versions_are_recorded_and_older_ones_flagged() {
    for f in stores().await {
        let (s, b) = (&f.store, &f.backend);
        let id = s
            .enroll(&enrollment("pc1", "m-1", None))
            .await
            .unwrap()
            .client_id;
        let summary = &s.clients().await.unwrap()[0];
        assert_eq!(summary.agent_version.as_deref(), Some("0.1.0"), "{b}");
        assert!(!summary.agent_outdated, "{b}");
        s.set_min_agent_version(Some("0.2".parse::<AgentVersion>().unwrap()));
        assert!(s.clients().await.unwrap()[0].agent_outdated, "{b}");
        let view = s.client_view(&name("pc1")).await.unwrap().unwrap();
        assert!(view.agent_outdated, "{b}");
        // A newer agent checks in: recorded, no longer flagged, and seen by another handle
        // (so it was written, not only remembered).
        s.note_agent_version(id, "0.2.1").await.unwrap();
        s.note_agent_version(id, "0.2.1").await.unwrap();
        s.flush().await.unwrap();
        let other = f.second_handle().await;
        let seen = &other.clients().await.unwrap()[0];
        assert_eq!(seen.agent_version.as_deref(), Some("0.2.1"), "{b}");
        assert!(!s.clients().await.unwrap()[0].agent_outdated, "{b}");
        let page = s
            .clients_page(&invsync_proto::wire::ClientQuery::default())
            .await
            .unwrap();
        assert_eq!(
            page.clients[0].agent_version.as_deref(),
            Some("0.2.1"),
            "{b}"
        );
        s.set_min_agent_version(None);
        s.note_agent_version(id, "0.1.5").await.unwrap();
        assert!(!s.clients().await.unwrap()[0].agent_outdated, "{b}");
    }
}

on_each_backend!(
    #[tokio::test]
    a_database_of_the_previous_schema_version_gains_merges_and_agent_versions
);
async fn a_database_of_the_previous_schema_version_gains_merges_and_agent_versions() {
    for f in stores().await {
        let b = f.backend.clone();
        enroll(&f.store, "web1").await;
        // What the previous version (SQLite 7, PostgreSQL 4) had: none of version 8's
        // columns, indexes or table (nor version 9's).
        let (lite, pg) = back_to(7, 4);
        let f = f.reopen_after(&lite, &pg).await;
        let s = &f.store;
        let old = &s.clients().await.unwrap()[0];
        assert_eq!(old.agent_version, None, "{b}");
        let renamed = s
            .enroll(&enrollment("web1-new", "web1-machine", None))
            .await
            .unwrap();
        assert_eq!(renamed.client_id, old.id, "{b}");
        let view = s.client_view(&name("web1-new")).await.unwrap().unwrap();
        assert_eq!(view.former_names, vec![name("web1")], "{b}");
        assert_eq!(view.agent_version.as_deref(), Some("0.1.0"), "{b}");
    }
}

// Regression: a deleted client's row stays (for its history) with its machine id and DMI
// identity; the machine enrolling again took that deleted record over, and its next cycle was
// refused as an unknown client.
on_each_backend!(
    #[tokio::test]
    a_deleted_client_is_never_taken_over
);
async fn a_deleted_client_is_never_taken_over() {
    for f in stores().await {
        let (s, b) = (&f.store, &f.backend);
        let hw = Some(("SER-1", "UUID-1"));
        let old = s.enroll(&enrollment("pc1", "m-1", hw)).await.unwrap();
        s.delete_client(&name("pc1"), Timestamp(6_000))
            .await
            .unwrap();
        for (raw, machine) in [("pc1", "m-1"), ("pc2", "m-2")] {
            let again = s.enroll(&enrollment(raw, machine, hw)).await.unwrap();
            assert_ne!(again.client_id, old.client_id, "{b}: {raw}");
            assert!(again.merged.is_none(), "{b}: {raw}");
            s.delete_client(&name(raw), Timestamp(7_000)).await.unwrap();
        }
        assert_eq!(client_count(s).await, 0, "{b}");
    }
}
