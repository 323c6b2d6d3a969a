//! The floor under `invsite cap-sync`'s delta rate on this machine: the file work and the
//! signature every imported delta needs whatever the store does, timed alone. For each of N
//! files of a delta's size (588 bytes): read it from `Inventry.box/`, move it to `done/`, sign
//! a `.cfg`-sized payload with the site's Ed25519 key and replace the client's `.cfg` (the
//! site's own `read`, `to_done` and `replace_file`), on 1 and on 2 threads.
//!
//! Run: `cargo run --release -p invsync-site --example cap_floor -- [N] [DIR]` (N default
//! 10,000; DIR a directory on the file system to measure, default a fresh one under
//! `/var/tmp`). BENCHMARKS.md compares its rate with `bench/cap-sync.sh`'s.

use std::path::Path;
use std::time::Instant;

use invsync_proto::offline::sign::SiteKey;
use invsync_site::offline::CapDir;
use invsync_site::offline::dir::replace_file;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map_or(10_000, |a| a.parse().expect("N is a number"));
    let base = args.next().map_or_else(
        || tempfile::tempdir_in("/var/tmp").expect("a directory under /var/tmp"),
        |d| tempfile::tempdir_in(d).expect("a directory in DIR"),
    );
    let (key, _) = SiteKey::generate().expect("an Ed25519 key");
    let payload = vec![b'x'; 343]; // a .cfg is 407 bytes, 64 of them the signature
    for threads in [1, 2] {
        let root = base.path().join(format!("t{threads}"));
        std::fs::create_dir(&root).unwrap();
        let dir = CapDir::open(&root).expect("a CAP directory");
        let body = vec![7u8; 588];
        let names: Vec<String> = (0..n).map(|i| format!("LG{i:05}-{i:032x}.inv")).collect();
        for name in &names {
            std::fs::write(dir.inbox.join(name), &body).unwrap();
        }
        // Every client has a .cfg already (the steady state), and the spare its first
        // replacement made.
        for i in 0..n {
            let cfg = dir.clidata.join(format!("LG{i:05}.cfg"));
            replace_file(&cfg, &payload).unwrap();
            replace_file(&cfg, &payload).unwrap();
        }
        sync();
        let start = Instant::now();
        std::thread::scope(|s| {
            for t in 0..threads {
                let (dir, names, key, payload) = (&dir, &names, &key, &payload);
                s.spawn(move || {
                    for (i, name) in names.iter().enumerate().skip(t).step_by(threads) {
                        let bytes = dir.read(name, 1 << 20).unwrap().unwrap();
                        assert_eq!(bytes.len(), 588);
                        dir.to_done(name).unwrap();
                        let signature = key.sign(b"invsync .cfg v1", payload);
                        let mut cfg = payload.clone();
                        cfg.extend_from_slice(&signature);
                        replace_file(&dir.clidata.join(format!("LG{i:05}.cfg")), &cfg).unwrap();
                    }
                });
            }
        });
        dir.sync_all();
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{threads} thread(s): {n} files in {secs:.3} s = {:.0} per second ({:.1} µs each)",
            n as f64 / secs,
            secs * 1e6 / n as f64 * threads as f64
        );
    }
    drop_dir(base.path());
}

fn sync() {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
}

fn drop_dir(path: &Path) {
    let _ = std::fs::remove_dir_all(path);
}
