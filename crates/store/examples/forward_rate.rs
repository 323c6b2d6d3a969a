//! Measures how many forwarded changes per second a parent site stores (SPEC section 6): a
//! child store on SQLite accepts reports of many clients with forwarding on, its outbox is
//! drained in batches of 200 (the forwarder's batch), each batch is written as the JSON the
//! forwarder sends, and the parent reads it back and applies it. Only the parent's half is
//! timed: reading the JSON of a batch and `apply_forwarded_batch`, which is what
//! `POST /site/v1/forward` does per batch. The child's half (reading the outbox, writing the
//! JSON) is reported apart.
//!
//! ```text
//! cargo run --release -p invsync-store --example forward_rate [-- CLIENTS DELTAS [POSTGRES_URL]]
//! ```
//!
//! Defaults: 300 clients, each with one full software report of 300 packages and 5 deltas of
//! 3 changed packages after it (1,800 changes). With a PostgreSQL URL the parent runs there
//! (an empty database: the parent's schema is created in it).

use std::time::{Duration, Instant};

use invsync_proto::inventory::Attrs;
use invsync_proto::wire::{ForwardOutcome, Report, ReportBody};
use invsync_proto::{Class, ClientName, Digest, Items, SiteCode, Snapshot, Timestamp};
use invsync_store::{Enrollment, IncomingForwarded, SiteMeta, Store};
use uuid::Uuid;

const BATCH: usize = 200;

fn meta(code: &str) -> SiteMeta {
    SiteMeta {
        code: SiteCode::parse(code).unwrap(),
        name: String::new(),
        created_at: Timestamp(0),
    }
}

fn packages(n: usize, bumped: usize, round: usize) -> Items {
    (0..n)
        .map(|i| {
            let version = if i < bumped {
                format!("2.{round}-1")
            } else {
                "1.0-1".to_string()
            };
            let attrs = Attrs::from([
                ("name".to_string(), format!("package-{i}")),
                ("version".to_string(), version),
                ("arch".to_string(), "amd64".to_string()),
                ("size".to_string(), (1_000 + i).to_string()),
            ]);
            (format!("package-{i}"), attrs)
        })
        .collect()
}

fn report(class: Class, body: ReportBody, hash: Digest) -> Report {
    Report {
        report_id: Uuid::new_v4(),
        class,
        hash,
        body,
        answers: Vec::new(),
    }
}

/// The parent's half of one batch, as `POST /site/v1/forward` does it: read the JSON the
/// forwarder sent with the items straight into prepared form, apply the entries.
async fn parent_apply(
    parent: &Store,
    via: &SiteCode,
    json: &[u8],
    now: Timestamp,
) -> Vec<ForwardOutcome> {
    let entries: Vec<IncomingForwarded> = serde_json::from_slice(json).unwrap();
    parent
        .apply_incoming_forwarded_batch(via, entries, now)
        .await
        .unwrap()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let clients: usize = args.first().map_or(300, |a| a.parse().unwrap());
    let deltas: usize = args.get(1).map_or(5, |a| a.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let child = Store::create_sqlite(&dir.path().join("child.db"), &meta("C01"))
        .await
        .unwrap();
    let parent = match args.get(2) {
        Some(url) => Store::create_postgres(url, &meta("P01")).await.unwrap(),
        None => Store::create_sqlite(&dir.path().join("parent.db"), &meta("P01"))
            .await
            .unwrap(),
    };
    child.set_forwarding(true).await.unwrap();
    let via = SiteCode::parse("C01").unwrap();
    parent
        .set_child_token(&via, Digest([7; 32]), Timestamp(1))
        .await
        .unwrap();

    let n = 300;
    let mut reports = Vec::new();
    for c in 0..clients {
        let enrolled = child
            .enroll(&Enrollment {
                name: ClientName::parse(&format!("host-{c:05}")).unwrap(),
                machine_id: format!("machine-{c}"),
                key_hash: Digest([1; 32]),
                now: Timestamp(10),
                hardware: None,
                agent_version: None,
            })
            .await
            .unwrap();
        let mut before = packages(n, 0, 0);
        let full = report(
            Class::Sw,
            ReportBody::Full {
                items: before.clone(),
            },
            Snapshot::new(before.clone()).hash(),
        );
        reports.push((enrolled.client_id, full));
        for d in 0..deltas {
            let after = packages(n, 3, d + 1);
            let delta = Snapshot::new(before.clone()).diff(&Snapshot::new(after.clone()));
            reports.push((
                enrolled.client_id,
                report(
                    Class::Sw,
                    ReportBody::Delta {
                        base_version: d as i64 + 1,
                        delta,
                    },
                    Snapshot::new(after.clone()).hash(),
                ),
            ));
            before = after;
        }
    }
    // Full reports first, then the deltas in rounds, as agents would send them.
    reports.sort_by_key(|(_, r)| match &r.body {
        ReportBody::Full { .. } => 0,
        ReportBody::Delta { base_version, .. } => *base_version,
    });
    for (id, r) in &reports {
        child.store_report(*id, r, Timestamp(100)).await.unwrap();
    }

    let (mut child_time, mut parent_time) = (Duration::ZERO, Duration::ZERO);
    let (mut changes, mut applied, mut bytes) = (0usize, 0usize, 0usize);
    let now = Timestamp(1_000);
    loop {
        let t0 = Instant::now();
        let batch = child.outbox_batch(BATCH).await.unwrap();
        if batch.is_empty() {
            break;
        }
        let json = serde_json::to_vec(&batch).unwrap();
        let t1 = Instant::now();
        let outcomes = parent_apply(&parent, &via, &json, now).await;
        let t2 = Instant::now();
        child_time += t1 - t0;
        parent_time += t2 - t1;
        changes += outcomes.len();
        bytes += json.len();
        applied += outcomes
            .iter()
            .filter(|o| matches!(o, ForwardOutcome::Applied { .. }))
            .count();
        let seqs: Vec<i64> = batch.iter().map(|e| e.seq).collect();
        child.outbox_done(&seqs, &[], None, now).await.unwrap();
    }
    assert_eq!(applied, changes, "every change applies");
    println!(
        "{} parent: {changes} forwarded changes ({} MB of JSON) in {:.3} s = {:.0} changes/s; child outbox read + encode {:.3} s",
        parent.backend_name(),
        bytes / 1_000_000,
        parent_time.as_secs_f64(),
        changes as f64 / parent_time.as_secs_f64(),
        child_time.as_secs_f64(),
    );
}
