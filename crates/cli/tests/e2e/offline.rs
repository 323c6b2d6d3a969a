//! The file-share CAP (issue 18) from the site's side: `invsite offline-enroll`, `invsite
//! cap-sync` over `.inv` files written here the way an agent writes them (with the client's
//! key from the enrollment file), every kind of bad file, a run killed half-way, two runs at
//! once, and forwarding to a parent. The agent's side, and the whole flow with the real agent,
//! are in `offline_agent.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use invsync_proto::offline::cfg::Cfg;
use invsync_proto::offline::enrollment::EnrollmentFile;
use invsync_proto::offline::inv::{InvHeader, InvReport, encode};
use invsync_proto::offline::{inv_file_name, mac_key};
use invsync_proto::wire::{ClientToken, Report, ReportBody};
use invsync_proto::{Class, ClientName, Items, Snapshot, Timestamp};
use serde_json::Value;
use uuid::Uuid;

use crate::common::*;

/// A client enrolled with `invsite offline-enroll`, and what writing its files takes.
pub struct OfflineClient {
    pub name: ClientName,
    pub file: EnrollmentFile,
    key: [u8; 32],
}

impl OfflineClient {
    pub fn enroll(site: &Site, tmp: &Path, name: &str) -> OfflineClient {
        let out = tmp.join(format!("{name}.enroll"));
        run_ok(
            "invsite",
            &[
                "offline-enroll",
                name,
                "--data-dir",
                site.data_dir(),
                "--out",
                s(&out),
            ],
        );
        let file = EnrollmentFile::decode(&std::fs::read(&out).unwrap()).unwrap();
        let token = ClientToken::parse(&file.token).unwrap();
        OfflineClient {
            name: ClientName::parse(name).unwrap(),
            key: mac_key(&token.key_hash()),
            file,
        }
    }

    /// The bytes of an `.inv` carrying `report` (or a check-in), as the agent writes them.
    pub fn inv(
        &self,
        report: Option<&Report>,
        not_past: Option<i64>,
        seen: &[i64],
    ) -> (String, Vec<u8>) {
        let id = report.map_or_else(Uuid::new_v4, |r| r.report_id);
        let (body, meta) = match report {
            None => (Vec::new(), None),
            Some(r) => {
                let json = serde_json::to_vec(r).unwrap();
                let meta = InvReport {
                    class: r.class,
                    bytes: json.len() as u64,
                    not_past,
                };
                (zstd::encode_all(&json[..], 3).unwrap(), Some(meta))
            }
        };
        let header = InvHeader {
            client: self.name.clone(),
            client_id: self.file.client_id,
            file_id: id,
            written_at: Timestamp::now(),
            machine_id: "0123456789abcdef0123456789abcdef".to_string(),
            agent_version: None,
            report: meta,
            seen: seen.to_vec(),
            done_events: Vec::new(),
        };
        (
            inv_file_name(&self.name, id),
            encode(&header, &body, &self.key),
        )
    }

    /// Writes an `.inv` into the CAP directory's `Inventry.box`; returns its file name.
    /// The client's first report: a full hw report on version 0. Returns the file's name.
    pub fn drop_first_full(&self, cap: &Path) -> String {
        self.drop_inv(
            cap,
            Some(&full(Class::Hw, hw_items("Xeon"), vec![])),
            Some(0),
            &[],
        )
    }

    pub fn drop_inv(
        &self,
        cap: &Path,
        report: Option<&Report>,
        not_past: Option<i64>,
        seen: &[i64],
    ) -> String {
        let (name, bytes) = self.inv(report, not_past, seen);
        std::fs::write(cap.join("Inventry.box").join(&name), bytes).unwrap();
        name
    }

    /// The client's `.cfg`, checked with the site's public key from the enrollment file.
    pub fn cfg(&self, cap: &Path) -> Cfg {
        let bytes =
            std::fs::read(cap.join("Clidata.box").join(format!("{}.cfg", self.name))).unwrap();
        Cfg::decode(&bytes, &self.file.site_public_key, self.file.client_id).unwrap()
    }
}

/// An agent enrolled from `invsite offline-enroll`'s file: its data directory and root.
pub fn offline_agent(site: &Site, tmp: &Path, name: &str) -> (PathBuf, PathBuf) {
    let file = tmp.join(format!("{name}.enroll"));
    run_ok(
        "invsite",
        &[
            "offline-enroll",
            name,
            "--data-dir",
            site.data_dir(),
            "--out",
            s(&file),
        ],
    );
    let data = tmp.join(format!("agent-{name}"));
    let root = fixture_copy("debian", &tmp.join(format!("roots-{name}")));
    let out = run_ok(
        "invagent",
        &[
            "enroll",
            "--data-dir",
            s(&data),
            "--from-file",
            s(&file),
            "--root",
            s(&root),
        ],
    );
    assert!(out.contains(&format!("enrolled as {name}")), "{out}");
    (data, root)
}

pub fn hw_items(cpu: &str) -> Items {
    let mut items = Items::new();
    items.insert(
        "cpu".into(),
        [("model".to_string(), cpu.to_string())].into(),
    );
    items.insert(
        "os".into(),
        [("name".to_string(), "Debian".to_string())].into(),
    );
    items
}

pub fn full(class: Class, items: Items, answers: Vec<i64>) -> Report {
    Report {
        report_id: Uuid::new_v4(),
        class,
        hash: Snapshot::new(items.clone()).hash(),
        body: ReportBody::Full { items },
        answers,
    }
}

/// `invsite cap-sync DIR --json`, asserted to succeed.
pub fn cap_sync(site: &Site, cap: &Path) -> Value {
    let out = run_ok_stdout(
        "invsite",
        &["cap-sync", s(cap), "--data-dir", site.data_dir(), "--json"],
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("cap-sync printed no JSON ({e}): {out}"))
}

/// A CAP directory with its `Inventry.box`, as an agent's first cycle leaves it.
pub fn cap_dir(tmp: &Path) -> PathBuf {
    let cap = tmp.join("cap");
    std::fs::create_dir_all(cap.join("Inventry.box")).unwrap();
    cap
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn version(site: &Site, name: &str, class: &str) -> Option<i64> {
    site.show(name)[class]["version"].as_i64()
}

fn reason(cap: &Path, file: &str) -> String {
    std::fs::read_to_string(cap.join("Inventry.box/bad").join(format!("{file}.reason")))
        .unwrap_or_else(|e| panic!("no reason for {file}: {e}"))
        .trim()
        .to_string()
}

#[test]
fn offline_enrollment_writes_a_private_file_and_refuses_taken_names() {
    let tmp = tempfile::tempdir().unwrap();
    let site = Site::init(tmp.path(), "S01");
    let c = OfflineClient::enroll(&site, tmp.path(), "PLC01");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(tmp.path().join("PLC01.enroll"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(c.file.site.as_str(), "S01");
    let shown = site.show("PLC01");
    assert_eq!(shown["id"], c.file.client_id.to_string());
    assert_eq!(shown["transport"], "cap");

    // The same name again: refused, and the file it would have written is not left behind.
    let again = tmp.path().join("again.enroll");
    let err = run_expect(
        "invsite",
        &[
            "offline-enroll",
            "PLC01",
            "--data-dir",
            site.data_dir(),
            "--out",
            s(&again),
        ],
        1,
    );
    assert!(err.contains("client name PLC01 is taken"), "{err}");
    assert!(!again.exists());
    // An existing file is never overwritten: it may be another client's key.
    let err = run_expect(
        "invsite",
        &[
            "offline-enroll",
            "PLC02",
            "--data-dir",
            site.data_dir(),
            "--out",
            s(&tmp.path().join("PLC01.enroll")),
        ],
        2,
    );
    assert!(err.contains("exists; give another --out"), "{err}");
    assert_eq!(site.clients().as_array().unwrap().len(), 1);
    // A name the SPEC refuses is refused here too, before anything is written.
    let err = run_expect(
        "invsite",
        &[
            "offline-enroll",
            "../x",
            "--data-dir",
            site.data_dir(),
            "--out",
            s(&again),
        ],
        2,
    );
    assert!(
        err.contains("only A-Z, 0-9, '-' and '_' are allowed"),
        "{err}"
    );
}

#[test]
fn cap_sync_imports_reports_moves_files_and_writes_signed_cfgs() {
    let tmp = tempfile::tempdir().unwrap();
    let site = Site::init(tmp.path(), "S01");
    let cap = cap_dir(tmp.path());
    let c = OfflineClient::enroll(&site, tmp.path(), "PLC01");
    let hw = full(Class::Hw, hw_items("Xeon"), vec![]);
    let file = c.drop_inv(&cap, Some(&hw), Some(0), &[]);
    let checkin = c.drop_inv(&cap, None, None, &[]);

    let out = cap_sync(&site, &cap);
    assert_eq!(out["refused"], serde_json::json!([]));
    let imported: BTreeMap<String, (String, Value)> = out["imported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["file"].as_str().unwrap().to_string(),
                (
                    f["what"].as_str().unwrap().to_string(),
                    f["version"].clone(),
                ),
            )
        })
        .collect();
    assert_eq!(imported[&file], ("hw full".to_string(), Value::from(1)));
    assert_eq!(imported[&checkin], ("check-in".to_string(), Value::Null));
    assert_eq!(out["written"], serde_json::json!(["PLC01.cfg"]));
    assert_eq!(files_in(&cap.join("Inventry.box/done")), {
        let mut v = vec![file.clone(), checkin.clone()];
        v.sort();
        v
    });
    assert_eq!(files_in(&cap.join("Inventry.box")), vec!["bad", "done"]);
    assert_eq!(version(&site, "PLC01", "hw"), Some(1));
    let shown = site.show("PLC01");
    assert_eq!(shown["machine_id"], "0123456789abcdef0123456789abcdef");
    let text = run_ok_stdout("invsite", &["show", "PLC01", "--data-dir", site.data_dir()]);
    assert!(
        text.lines()
            .any(|l| l == "reports through a file-share CAP directory (invsite cap-sync)"),
        "{text}"
    );
    assert!(shown["last_seen"].is_string(), "{shown}");

    let cfg = c.cfg(&cap);
    assert_eq!(cfg.client, c.name);
    let hw_state = cfg.checkin.classes[&Class::Hw];
    assert_eq!((hw_state.version, hw_state.hash), (1, hw.hash));
    assert!(cfg.checkin.instructions.is_empty());

    // Nothing new: the .cfg is left as it is.
    let before = std::fs::read(cap.join("Clidata.box/PLC01.cfg")).unwrap();
    let out = cap_sync(&site, &cap);
    assert_eq!(out["written"], serde_json::json!([]));
    assert_eq!(out["unchanged"], 1);
    assert_eq!(
        std::fs::read(cap.join("Clidata.box/PLC01.cfg")).unwrap(),
        before
    );

    // The text output says the same in sentences. The check-in changes nothing but the
    // client's last-seen time, which the store keeps in memory until it flushes: the run
    // flushes it before it ends, so another process sees it.
    let seen_before = site.show("PLC01")["last_seen"].clone();
    std::thread::sleep(std::time::Duration::from_millis(20));
    c.drop_inv(&cap, None, None, &[]);
    let text = run_ok_stdout(
        "invsite",
        &["cap-sync", s(&cap), "--data-dir", site.data_dir()],
    );
    let last = text.lines().last().unwrap();
    assert_eq!(
        last,
        "cap-sync: imported 1 file, refused 0, wrote 0 .cfg files (1 unchanged)"
    );
    let seen_after = site.show("PLC01")["last_seen"].clone();
    assert!(
        seen_after.as_str() > seen_before.as_str(),
        "{seen_before} then {seen_after}"
    );
}

#[test]
fn a_request_reaches_the_cfg_and_completes_when_the_answer_is_imported() {
    let tmp = tempfile::tempdir().unwrap();
    let site = Site::init(tmp.path(), "S01");
    let cap = cap_dir(tmp.path());
    let c = OfflineClient::enroll(&site, tmp.path(), "PLC01");
    c.drop_first_full(&cap);
    cap_sync(&site, &cap);

    run_ok("invsync", &["hw", "PLC01", "--data-dir", site.data_dir()]);
    let out = cap_sync(&site, &cap);
    assert_eq!(out["written"], serde_json::json!(["PLC01.cfg"]));
    let cfg = c.cfg(&cap);
    assert_eq!(cfg.checkin.instructions.len(), 1);
    let id = cfg.checkin.instructions[0].id;
    // Written into the .cfg is not picked up: the agent has not seen it yet.
    let requests = site.show("PLC01")["requests"].clone();
    assert_eq!(requests[0]["state"], "pending", "{requests}");

    let answer = full(Class::Hw, hw_items("Epyc"), vec![id]);
    c.drop_inv(&cap, Some(&answer), Some(1), &[id]);
    cap_sync(&site, &cap);
    let shown = site.show("PLC01");
    assert_eq!(shown["requests"][0]["state"], "complete", "{shown}");
    assert!(shown["requests"][0]["picked_up_at"].is_string());
    assert_eq!(shown["hw"]["version"], 2);
    assert!(c.cfg(&cap).checkin.instructions.is_empty());
}

#[test]
fn bad_files_go_to_bad_with_their_reason_and_store_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let site = Site::init(tmp.path(), "S01");
    let cap = cap_dir(tmp.path());
    let a = OfflineClient::enroll(&site, tmp.path(), "PLC01");
    let b = OfflineClient::enroll(&site, tmp.path(), "PLC02");
    let first = full(Class::Hw, hw_items("Xeon"), vec![]);
    let first_file = a.drop_inv(&cap, Some(&first), Some(0), &[]);
    cap_sync(&site, &cap);
    let newer = full(Class::Hw, hw_items("Epyc"), vec![]);
    a.drop_inv(&cap, Some(&newer), Some(1), &[]);
    cap_sync(&site, &cap);
    let inbox = cap.join("Inventry.box");
    let other = || full(Class::Hw, hw_items("Forged"), vec![]);
    let mut expected: Vec<(String, String)> = Vec::new();

    // Truncated: the end of the body and the MAC are missing.
    let (name, bytes) = a.inv(Some(&other()), Some(1), &[]);
    std::fs::write(inbox.join(&name), &bytes[..bytes.len() - 10]).unwrap();
    expected.push((name, "not authenticated by PLC01's key".into()));
    // One byte of the body changed.
    let (name, mut bytes) = a.inv(Some(&other()), Some(1), &[]);
    let mid = bytes.len() - 40;
    bytes[mid] ^= 0x40;
    std::fs::write(inbox.join(&name), bytes).unwrap();
    expected.push((name, "not authenticated by PLC01's key".into()));
    // Forged: PLC02's key under PLC01's name and id.
    let (name, bytes) = {
        let mut forger = OfflineClient::enroll(&site, tmp.path(), "PLC03");
        forger.name = a.name.clone();
        forger.file.client_id = a.file.client_id;
        forger.inv(Some(&other()), Some(1), &[])
    };
    std::fs::write(inbox.join(&name), bytes).unwrap();
    expected.push((name, "not authenticated by PLC01's key".into()));
    // PLC02's own, valid file, renamed as PLC01's.
    let (name, bytes) = b.inv(Some(&other()), Some(0), &[]);
    let renamed = name.replacen("PLC02", "PLC01", 1);
    std::fs::write(inbox.join(&renamed), bytes).unwrap();
    expected.push((
        renamed,
        "named for PLC01 and its header is for PLC02".into(),
    ));
    // Not an .inv at all.
    let name = inv_file_name(&a.name, Uuid::new_v4());
    std::fs::write(inbox.join(&name), b"GET / HTTP/1.1\r\n").unwrap();
    expected.push((name, "does not start with `invsync-inv 1`".into()));
    // A zstd bomb: the header declares 100 bytes, the body decodes to 64 MiB of zeros in a
    // frame that does not say its size.
    let (name, _) = a.inv(Some(&other()), Some(1), &[]);
    {
        let id: Uuid = name[6..42].parse().unwrap();
        let zeros = zstd::encode_all(std::io::Read::take(std::io::repeat(0), 64 << 20), 3).unwrap();
        let header = InvHeader {
            client: a.name.clone(),
            client_id: a.file.client_id,
            file_id: id,
            written_at: Timestamp::now(),
            machine_id: String::new(),
            agent_version: None,
            report: Some(InvReport {
                class: Class::Hw,
                bytes: 100,
                not_past: None,
            }),
            seen: vec![],
            done_events: vec![],
        };
        std::fs::write(inbox.join(&name), encode(&header, &zeros, &a.key)).unwrap();
    }
    expected.push((name, "over the limit".into()));
    // A symbolic link to a file of the site's.
    let link = inv_file_name(&a.name, Uuid::new_v4());
    std::os::unix::fs::symlink(site.dir.join("admin.token"), inbox.join(&link)).unwrap();
    expected.push((link.clone(), "not a regular file".into()));
    // An old full report put back after a newer one was imported.
    let (name, bytes) = a.inv(
        Some(&full(Class::Hw, hw_items("Old"), vec![])),
        Some(0),
        &[],
    );
    std::fs::write(inbox.join(&name), bytes).unwrap();
    expected.push((name, "the full report is stale".into()));

    let history_before = site.history("PLC01", &[]).len();
    let out = cap_sync(&site, &cap);
    let refused: BTreeMap<String, String> = out["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["file"].as_str().unwrap().to_string(),
                f["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (file, words) in &expected {
        let said = refused
            .get(file)
            .unwrap_or_else(|| panic!("{file} was not refused: {out}"));
        assert!(
            said.contains(words.as_str()),
            "{file}: {said:?} should say {words:?}"
        );
        assert_eq!(reason(&cap, file), *said);
        assert!(
            cap.join("Inventry.box/bad")
                .join(file)
                .symlink_metadata()
                .is_ok()
        );
    }
    assert_eq!(refused.len(), expected.len(), "{out}");
    // Nothing of any of them was stored: PLC01 is where the two good files put it.
    assert_eq!(version(&site, "PLC01", "hw"), Some(2));
    assert_eq!(site.history("PLC01", &[]).len(), history_before);
    assert_eq!(version(&site, "PLC02", "hw"), None);
    // The symlink's target is untouched and still where it was.
    assert!(site.dir.join("admin.token").is_file());
    // The refusals reach the agent through its .cfg.
    let cfg = a.cfg(&cap);
    let mut listed: Vec<String> = cfg
        .refused
        .iter()
        .map(|r| inv_file_name(&a.name, r.report_id))
        .collect();
    listed.sort();
    let mut files: Vec<String> = expected.iter().map(|(f, _)| f.clone()).collect();
    files.sort();
    assert_eq!(listed, files);

    // The same accepted file put back: it is a duplicate, nothing changes.
    std::fs::copy(
        cap.join("Inventry.box/done").join(&first_file),
        inbox.join(&first_file),
    )
    .unwrap();
    let out = cap_sync(&site, &cap);
    let f = &out["imported"][0];
    assert_eq!(
        (f["file"].as_str().unwrap(), f["duplicate"].as_bool()),
        (first_file.as_str(), Some(true))
    );
    assert_eq!(version(&site, "PLC01", "hw"), Some(2));
}

#[test]
fn the_directories_must_be_real_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let site = Site::init(tmp.path(), "S01");
    let cap = cap_dir(tmp.path());
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::create_dir_all(cap.join("Inventry.box")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, cap.join("Inventry.box/done")).unwrap();
    let err = run_expect(
        "invsite",
        &["cap-sync", s(&cap), "--data-dir", site.data_dir()],
        1,
    );
    assert!(
        err.contains("Inventry.box/done is a symbolic link"),
        "{err}"
    );
    let err = run_expect(
        "invsite",
        &[
            "cap-sync",
            s(&tmp.path().join("not-mounted")),
            "--data-dir",
            site.data_dir(),
        ],
        1,
    );
    assert!(
        err.contains("create it (or mount the share) first"),
        "{err}"
    );
    assert!(!tmp.path().join("not-mounted").exists());
    // Not a site server: exit 3, like every site command.
    run_expect(
        "invsite",
        &[
            "cap-sync",
            s(&cap),
            "--data-dir",
            s(&tmp.path().join("nope")),
        ],
        3,
    );
}

#[test]
fn a_cfg_planted_as_a_symlink_is_replaced_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let site = Site::init(tmp.path(), "S01");
    let cap = cap_dir(tmp.path());
    let c = OfflineClient::enroll(&site, tmp.path(), "PLC01");
    let victim = tmp.path().join("victim");
    std::fs::write(&victim, "keep me").unwrap();
    std::fs::create_dir_all(cap.join("Clidata.box")).unwrap();
    std::os::unix::fs::symlink(&victim, cap.join("Clidata.box/PLC01.cfg")).unwrap();
    c.drop_inv(&cap, None, None, &[]);
    cap_sync(&site, &cap);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    assert!(
        cap.join("Clidata.box/PLC01.cfg")
            .symlink_metadata()
            .unwrap()
            .is_file()
    );
    c.cfg(&cap);
}

#[test]
fn a_run_killed_after_storing_loses_nothing_and_applies_nothing_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let site = Site::init(tmp.path(), "S01");
    let cap = cap_dir(tmp.path());
    let c = OfflineClient::enroll(&site, tmp.path(), "PLC01");
    let file = c.drop_first_full(&cap);
    let o = bin("invsite")
        .args(["cap-sync", s(&cap), "--data-dir", site.data_dir()])
        .env("INVSITE_FAILPOINT", "cap-sync-after-store")
        .output()
        .unwrap();
    assert!(!o.status.success(), "the failpoint did not stop cap-sync");
    // Stored, not moved: the file waits for the next run.
    assert!(cap.join("Inventry.box").join(&file).is_file());
    assert_eq!(version(&site, "PLC01", "hw"), Some(1));
    let history = site.history("PLC01", &[]).len();
    let out = cap_sync(&site, &cap);
    assert_eq!(out["imported"][0]["duplicate"], true, "{out}");
    assert_eq!(version(&site, "PLC01", "hw"), Some(1));
    assert_eq!(site.history("PLC01", &[]).len(), history);
    assert!(cap.join("Inventry.box/done").join(&file).is_file());
}

#[test]
fn two_runs_at_once_import_every_file_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let site = Site::init(tmp.path(), "S01");
    let cap = cap_dir(tmp.path());
    let clients: Vec<OfflineClient> = (1..=6)
        .map(|i| OfflineClient::enroll(&site, tmp.path(), &format!("PLC{i:02}")))
        .collect();
    // Per client: a full report, then four more full reports, each allowed on top of the last.
    let mut written = 0;
    for c in &clients {
        for v in 0..5i64 {
            let r = full(Class::Hw, hw_items(&format!("cpu{v}")), vec![]);
            c.drop_inv(&cap, Some(&r), Some(v), &[]);
            written += 1;
            // Distinct written_at per file, so the import order is the writing order.
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
    let spawn = || {
        bin("invsite")
            .args(["cap-sync", s(&cap), "--data-dir", site.data_dir(), "--json"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (one, two) = (spawn(), spawn());
    let mut imported = 0;
    let mut refused = 0;
    for child in [one, two] {
        let o = finish_within(child, 120, "cap-sync");
        assert!(o.status.success(), "{}", stderr(&o));
        let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
        imported += v["imported"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["duplicate"] == false)
            .count();
        refused += v["refused"].as_array().unwrap().len();
    }
    assert_eq!(refused, 0);
    assert_eq!(imported, written);
    for c in &clients {
        assert_eq!(version(&site, c.name.as_str(), "hw"), Some(5), "{}", c.name);
    }
    assert_eq!(files_in(&cap.join("Inventry.box/done")).len(), written);
    assert_eq!(files_in(&cap.join("Inventry.box")), vec!["bad", "done"]);
}

/// Regression: a run that stored a report and then found the file already moved by a second
/// run (which saw it as a duplicate) reported it as neither imported nor refused, so the two
/// runs' summaries counted one stored report less than there were (CI saw 28 of 30).
#[test]
fn a_report_stored_by_one_run_and_moved_by_another_is_told_by_the_run_that_stored_it() {
    let tmp = tempfile::tempdir().unwrap();
    let site = Site::init(tmp.path(), "S01");
    let cap = cap_dir(tmp.path());
    let c = OfflineClient::enroll(&site, tmp.path(), "PLC01");
    let file = c.drop_first_full(&cap);
    // The first run stores the report, then holds still before it moves the file.
    let slow = bin("invsite")
        .args(["cap-sync", s(&cap), "--data-dir", site.data_dir(), "--json"])
        .env("INVSITE_FAILPOINT", "cap-sync-after-store:sleep:3000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(60, "the first run stores the report", || {
        version(&site, "PLC01", "hw") == Some(1)
    });
    // The second run finds the report already stored and moves the file.
    let out = cap_sync(&site, &cap);
    assert_eq!(out["imported"][0]["duplicate"], true, "{out}");
    assert!(cap.join("Inventry.box/done").join(&file).is_file());
    let o = finish_within(slow, 60, "cap-sync");
    assert!(o.status.success(), "{}", stderr(&o));
    let first: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(first["imported"][0]["file"], file.as_str(), "{first}");
    assert_eq!(first["imported"][0]["duplicate"], false, "{first}");
    assert_eq!(first["imported"][0]["version"], 1, "{first}");
    assert_eq!(version(&site, "PLC01", "hw"), Some(1));
}

#[test]
fn a_child_site_forwards_what_it_imports_to_its_parent() {
    let tmp = tempfile::tempdir().unwrap();
    let mut parent = Site::init(tmp.path(), "P01");
    parent.start();
    let mut child = Site::init_child(tmp.path(), "C01", &parent);
    child.start();
    let cap = cap_dir(tmp.path());
    let c = OfflineClient::enroll(&child, tmp.path(), "PLC01");
    let hw = full(Class::Hw, hw_items("Xeon"), vec![]);
    c.drop_inv(&cap, Some(&hw), Some(0), &[]);
    cap_sync(&child, &cap);
    wait_until(30, "the parent holds PLC01's hw", || {
        try_show(&parent, "PLC01", &[]).is_some_and(|v| v["hw"]["version"] == 1)
    });
    let at_parent = parent.show("PLC01");
    assert_eq!(at_parent["site"], "C01");
    assert_eq!(at_parent["hw"]["hash"], hw.hash.to_hex());
    child.stop();
    parent.stop();
}

#[test]
fn serve_with_a_cap_dir_imports_as_files_arrive_and_writes_cfgs_when_requests_are_queued() {
    let tmp = tempfile::tempdir().unwrap();
    let mut site = Site::init(tmp.path(), "S01");
    let cap = cap_dir(tmp.path());
    let c = OfflineClient::enroll(&site, tmp.path(), "PLC01");
    site.start_with(&["--cap-dir", s(&cap)]);
    c.drop_first_full(&cap);
    wait_until(20, "serve imports the file", || {
        version(&site, "PLC01", "hw") == Some(1)
    });
    run_ok("invsync", &["hw", "PLC01", "--data-dir", site.data_dir()]);
    wait_until(20, "the request reaches the .cfg", || {
        cap.join("Clidata.box/PLC01.cfg").is_file() && c.cfg(&cap).checkin.instructions.len() == 1
    });
    site.stop();
}

#[test]
fn files_over_the_sites_limits_are_refused_before_they_are_decoded() {
    let tmp = tempfile::tempdir().unwrap();
    let site = Site::init(tmp.path(), "S01");
    run_ok(
        "invsite",
        &[
            "config",
            "--data-dir",
            site.data_dir(),
            "--max-body-bytes",
            "4000",
            "--max-decoded-bytes",
            "6000",
        ],
    );
    let cap = cap_dir(tmp.path());
    let c = OfflineClient::enroll(&site, tmp.path(), "PLC01");
    let many = |n: usize, cpu: &str| {
        let mut items = hw_items(cpu);
        for i in 0..n {
            items.insert(
                format!("disk/{i}"),
                [("serial".to_string(), Uuid::new_v4().simple().to_string())].into(),
            );
        }
        full(Class::Hw, items, vec![])
    };
    // Over max-body-bytes as written (random-looking serials do not compress).
    let (big, bytes) = c.inv(Some(&many(400, "big")), Some(0), &[]);
    assert!(bytes.len() > 4000);
    std::fs::write(cap.join("Inventry.box").join(&big), bytes).unwrap();
    // Under it as written, over max-decoded-bytes once decoded (it says so in its header).
    let (wide, bytes) = c.inv(
        Some(&full(
            Class::Hw,
            {
                let mut items = hw_items("wide");
                items.insert("os".into(), [("name".to_string(), "x".repeat(7000))].into());
                items
            },
            vec![],
        )),
        Some(0),
        &[],
    );
    assert!(bytes.len() < 4000);
    std::fs::write(cap.join("Inventry.box").join(&wide), bytes).unwrap();

    let out = cap_sync(&site, &cap);
    assert_eq!(out["imported"], serde_json::json!([]), "{out}");
    assert!(
        reason(&cap, &big).contains("the limit max_body_bytes is 4000"),
        "{}",
        reason(&cap, &big)
    );
    assert!(
        reason(&cap, &wide).contains("the limit max_decoded_bytes is 6000"),
        "{}",
        reason(&cap, &wide)
    );
    assert!(site.show("PLC01")["hw"].is_null());
}

#[test]
fn two_agents_and_two_cap_syncs_working_the_directory_at_once_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let site = Site::init(tmp.path(), "S01");
    let cap = cap_dir(tmp.path());
    let agents: Vec<(PathBuf, PathBuf)> = ["PLC01", "PLC02"]
        .iter()
        .map(|name| offline_agent(&site, tmp.path(), name))
        .collect();
    // Each round: both agents cycle and both cap-syncs run, all four at once; between rounds
    // each agent's software changes.
    for round in 0..4 {
        let mut children = Vec::new();
        for (data, root) in &agents {
            children.push(
                bin("invagent")
                    .args([
                        "cycle",
                        "--data-dir",
                        s(data),
                        "--root",
                        s(root),
                        "--cap-dir",
                        s(&cap),
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap(),
            );
        }
        for _ in 0..2 {
            children.push(
                bin("invsite")
                    .args(["cap-sync", s(&cap), "--data-dir", site.data_dir()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap(),
            );
        }
        for child in children {
            let o = finish_within(child, 120, "a concurrent cycle or cap-sync");
            assert!(o.status.success(), "round {round}: {}", stderr(&o));
        }
        for (_, root) in &agents {
            let status = root.join("var/lib/dpkg/status");
            let mut text = std::fs::read_to_string(&status).unwrap();
            text.push_str(&format!(
                "\nPackage: tool{round}\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.{round}\nDescription: t\n"
            ));
            std::fs::write(&status, text).unwrap();
        }
    }
    // Then quietly: sync, cycle (settles, writes the last change), sync, cycle, sync.
    for _ in 0..3 {
        cap_sync(&site, &cap);
        for (data, root) in &agents {
            run_ok(
                "invagent",
                &[
                    "cycle",
                    "--data-dir",
                    s(data),
                    "--root",
                    s(root),
                    "--cap-dir",
                    s(&cap),
                ],
            );
        }
    }
    cap_sync(&site, &cap);
    assert!(
        files_in(&cap.join("Inventry.box/bad")).is_empty(),
        "{:?}",
        files_in(&cap.join("Inventry.box/bad"))
    );
    for ((data, root), name) in agents.iter().zip(["PLC01", "PLC02"]) {
        // What the site holds is exactly what the machine has now.
        let collected = run_ok_stdout(
            "invagent",
            &["inventory", "sw", "--root", s(root), "--json"],
        );
        let collected: Value = serde_json::from_str(&collected).unwrap();
        let shown = site.show(name);
        assert_eq!(shown["sw"]["hash"], collected["hash"], "{name}");
        let state: Value =
            serde_json::from_str(&std::fs::read_to_string(data.join("state.json")).unwrap())
                .unwrap();
        assert_eq!(
            state["outbox"],
            serde_json::json!([]),
            "{name}: every report settled"
        );
    }
}
