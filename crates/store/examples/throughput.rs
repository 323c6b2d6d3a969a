//! Measures the store's throughput against the site budgets of SPEC section 10 on a temporary
//! SQLite database: full software reports (new and unchanged), deltas, and no-change check-ins,
//! each from many concurrent tasks. Run it optimised:
//! `cargo run --release -p invsync-store --example throughput`. With `--forwarding`, the site
//! forwards to a parent, so every accepted report also writes an outbox entry (SPEC section 6).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use invsync_proto::inventory::{Attrs, item_digest};
use invsync_proto::wire::{Report, ReportAck, ReportBody};
use invsync_proto::{Class, ClientName, Delta, Digest, Items, SiteCode, Snapshot, Timestamp};
use invsync_store::{Enrollment, SiteMeta, Store};
use uuid::Uuid;

const CLIENTS: usize = 300;
const TASKS: usize = 64;

fn package(n: usize, version: usize) -> (String, Attrs) {
    let name = format!("libpkg{n}");
    let attrs: Attrs = [
        ("arch", "amd64".to_string()),
        ("name", name.clone()),
        ("size_bytes", (n * 4096).to_string()),
        ("source", "dpkg".to_string()),
        ("version", format!("1.{version}.{n}-1")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    (format!("dpkg/{name}/amd64"), attrs)
}

/// 1,500 packages: 1,350 shared, 150 the client's own.
fn packages(client: usize) -> Items {
    (0..1_350)
        .map(|n| package(n, 1))
        .chain((0..150).map(|n| package(1_000_000 + client * 1_000 + n, 1)))
        .collect()
}

fn full(items: &Items) -> Report {
    Report {
        report_id: Uuid::new_v4(),
        class: Class::Sw,
        hash: Snapshot::new(items.clone()).hash(),
        body: ReportBody::Full {
            items: items.clone(),
        },
        answers: vec![],
    }
}

/// Runs `per_client(i)` for every client from `TASKS` concurrent tasks; returns operations/s.
async fn run<F, Fut>(what: &str, n: usize, f: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let f = Arc::new(f);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (f, next) = (f.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                f(i).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    println!(
        "{what:<40} {n:>7} in {:>6.2} s = {rate:>9.0}/s",
        started.elapsed().as_secs_f64()
    );
    rate
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("site.db");
    let meta = SiteMeta {
        code: SiteCode::parse("S01").unwrap(),
        name: "bench".into(),
        created_at: Timestamp(0),
    };
    let store = Store::create_sqlite(&path, &meta).await.unwrap();
    let forwarding = std::env::args().any(|a| a == "--forwarding");
    store.set_forwarding(forwarding).await.unwrap();
    println!("forwarding to a parent: {forwarding}");
    let mut ids = Vec::new();
    for c in 0..CLIENTS {
        let e = Enrollment {
            name: ClientName::parse(&format!("c{c}")).unwrap(),
            machine_id: format!("m{c}"),
            key_hash: Digest([0; 32]),
            now: Timestamp(1),
            hardware: None,
            agent_version: None,
        };
        ids.push(store.enroll(&e).await.unwrap().client_id);
    }
    let ids = Arc::new(ids);

    // Reports are built before each timed run, so that only the store is measured.
    let reports: Arc<Vec<Report>> = Arc::new((0..CLIENTS).map(|c| full(&packages(c))).collect());
    let (s, i2, r2) = (store.clone(), ids.clone(), reports.clone());
    run("full sw reports, first (1,500 items)", CLIENTS, move |c| {
        let (s, id, r2) = (s.clone(), i2[c], r2.clone());
        async move {
            assert!(matches!(
                s.store_report(id, &r2[c], Timestamp(10)).await.unwrap(),
                ReportAck::Accepted { .. }
            ));
        }
    })
    .await;

    let again: Arc<Vec<Report>> = Arc::new(
        reports
            .iter()
            .map(|r| Report {
                report_id: Uuid::new_v4(),
                ..r.clone()
            })
            .collect(),
    );
    let (s, i2, r2) = (store.clone(), ids.clone(), again.clone());
    run("full sw reports, unchanged", CLIENTS, move |c| {
        let (s, id, r2) = (s.clone(), i2[c], r2.clone());
        async move {
            assert!(matches!(
                s.store_report(id, &r2[c], Timestamp(20)).await.unwrap(),
                ReportAck::Accepted { .. }
            ));
        }
    })
    .await;
    drop(again);

    let changed_items: Vec<Items> = (0..CLIENTS)
        .map(|c| {
            let mut items = packages(c);
            for n in 0..10 {
                let (k, a) = package(n * 100 + c % 100, 2);
                items.insert(k, a);
            }
            items
        })
        .collect();
    let changed: Arc<Vec<Report>> = Arc::new(changed_items.iter().map(full).collect());
    drop(reports);
    let (s, i2, r2) = (store.clone(), ids.clone(), changed.clone());
    run("full sw reports, 10 packages changed", CLIENTS, move |c| {
        let (s, id, r2) = (s.clone(), i2[c], r2.clone());
        async move {
            let ack = s.store_report(id, &r2[c], Timestamp(30)).await.unwrap();
            assert!(
                matches!(ack, ReportAck::Accepted { version: 3, .. }),
                "{ack:?}"
            );
        }
    })
    .await;
    drop(changed);

    // Deltas: each client adds one package per report. The harness keeps each client's item
    // digests so that computing the next hash costs it microseconds, not a whole snapshot.
    struct Client {
        version: i64,
        digests: BTreeMap<String, Digest>,
    }
    let clients: Arc<Vec<tokio::sync::Mutex<Client>>> = Arc::new(
        changed_items
            .iter()
            .map(|items| {
                let digests = items
                    .iter()
                    .map(|(k, a)| (k.clone(), item_digest(k, a)))
                    .collect();
                tokio::sync::Mutex::new(Client {
                    version: 3,
                    digests,
                })
            })
            .collect(),
    );
    drop(changed_items);
    let rounds = 25;
    let (s, i2, cl) = (store.clone(), ids.clone(), clients.clone());
    run("sw deltas (one package each)", CLIENTS * rounds, move |k| {
        let (c, round) = (k % CLIENTS, k / CLIENTS);
        let (s, id, cl) = (s.clone(), i2[c], cl.clone());
        async move {
            let mut client = cl[c].lock().await;
            let (key, a) = package(2_000 + round, 3 + c);
            client.digests.insert(key.clone(), item_digest(&key, &a));
            // The same hash as `hash_of_digests`, over one buffer so the harness stays cheap.
            let mut buf = Vec::with_capacity(client.digests.len() * 32);
            for d in client.digests.values() {
                buf.extend_from_slice(&d.0);
            }
            let hash = Digest(*blake3::hash(&buf).as_bytes());
            let mut delta = Delta::default();
            delta.upsert.insert(key, a);
            let report = Report {
                report_id: Uuid::new_v4(),
                class: Class::Sw,
                hash,
                body: ReportBody::Delta {
                    base_version: client.version,
                    delta,
                },
                answers: vec![],
            };
            match s.store_report(id, &report, Timestamp(40)).await.unwrap() {
                ReportAck::Accepted { version, .. } => client.version = version,
                other => panic!("{other:?}"),
            }
        }
    })
    .await;

    let (s, i2) = (store.clone(), ids.clone());
    run("no-change check-ins", CLIENTS * 100, move |k| {
        let (s, id) = (s.clone(), i2[k % CLIENTS]);
        async move {
            s.checkin(id, Timestamp(50)).await.unwrap();
        }
    })
    .await;

    drop(store);
    let bytes = std::fs::metadata(&path).unwrap().len();
    println!(
        "database file: {bytes} bytes, {} per client",
        bytes / CLIENTS as u64
    );
}
