//! Measures a full hardware and software inventory of this machine (or of `--root DIR`), the
//! agent's budget in SPEC 10 (≤ 20 ms, ≤ 10 MB peak RSS). Run it in a release build:
//! `cargo run --release -p invsync-collect --example collect_timing [ROOT] [RUNS]`, under
//! `/usr/bin/time -v` for the peak RSS.

use std::path::PathBuf;
use std::time::Instant;

use invsync_collect::collect;
use invsync_proto::{Class, Snapshot};

fn main() {
    let mut args = std::env::args().skip(1);
    let root = PathBuf::from(args.next().unwrap_or_else(|| "/".into()));
    let runs: usize = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20)
        .max(1);
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        let hw = collect(Class::Hw, &root);
        let sw = collect(Class::Sw, &root);
        times.push(start.elapsed());
        last = Some((hw, sw));
    }
    let (hw, sw) = last.expect("at least one run");
    // The first run reads files the page cache may not hold yet; later ones show steady state.
    let first = times[0];
    times.sort();
    println!(
        "root {}: hw {} items, sw {} items, {} warnings; hash hw {} sw {}",
        root.display(),
        hw.items.len(),
        sw.items.len(),
        hw.warnings.len() + sw.warnings.len(),
        Snapshot::new(hw.items).hash(),
        Snapshot::new(sw.items).hash()
    );
    println!(
        "hw + sw over {runs} runs: first {:?}, min {:?}, median {:?}, max {:?}",
        first,
        times[0],
        times[times.len() / 2],
        times[times.len() - 1]
    );
}
