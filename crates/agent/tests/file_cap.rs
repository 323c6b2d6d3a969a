//! The agent's side of the file-share CAP (issue 18) against a temporary CAP directory: the
//! tests play the site by signing `.cfg` files with a test site key and by reading back the
//! `.inv` files the agent writes (MAC checked with the client's key, the body decompressed to
//! the report), so every rule of the cycle is checked on the files themselves.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use invsync_agent::offline::enroll::FileEnrollOptions;
use invsync_agent::offline::import::{ImportOptions, import_file, write_import_file};
use invsync_agent::{
    AgentError, CycleOptions, CycleSummary, State, cycle, cycle_via, enroll_from_file,
};
use invsync_proto::offline::cfg::{CFG_FORMAT, Cfg, Refused};
use invsync_proto::offline::enrollment::{ENROLLMENT_FORMAT, EnrollmentFile};
use invsync_proto::offline::import::ImportFile;
use invsync_proto::offline::inv::{InvFile, InvHeader};
use invsync_proto::offline::sign::SiteKey;
use invsync_proto::offline::{CLIDATA_BOX, INVENTRY_BOX, mac_key, parse_inv_file_name};
use invsync_proto::wire::{
    CheckinResponse, ClassState, ClientToken, Event, Instruction, InstructionKind, Report,
    ReportBody,
};
use invsync_proto::{Class, ClientName, SiteCode, Timestamp};
use uuid::Uuid;

const MACHINE_ID: &str = "0123456789abcdef0123456789abcdef";

/// An agent enrolled from an enrollment file, its root, its CAP directory and the site's key.
struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    data_dir: PathBuf,
    cap_dir: PathBuf,
    enrollment: PathBuf,
    key: SiteKey,
    token: ClientToken,
    name: ClientName,
}

/// A dpkg database with these (package, version) pairs installed.
fn dpkg_status(packages: &[(&str, &str)]) -> String {
    packages
        .iter()
        .map(|(p, v)| {
            format!(
                "Package: {p}\nStatus: install ok installed\nArchitecture: amd64\nVersion: {v}\n\n"
            )
        })
        .collect()
}

const PACKAGES: [(&str, &str); 4] = [
    ("bash", "5.2"),
    ("coreutils", "9.1"),
    ("libc6", "2.36"),
    ("zsh", "5.9"),
];

impl Fixture {
    /// Everything ready, not yet enrolled.
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
        std::fs::write(root.join("etc/hostname"), "plc07.plant\n").unwrap();
        std::fs::write(root.join("etc/machine-id"), format!("{MACHINE_ID}\n")).unwrap();
        std::fs::write(root.join("var/lib/dpkg/status"), dpkg_status(&PACKAGES)).unwrap();
        let cap_dir = tmp.path().join("cap");
        std::fs::create_dir_all(cap_dir.join(CLIDATA_BOX)).unwrap();
        std::fs::create_dir_all(cap_dir.join(INVENTRY_BOX)).unwrap();
        let (key, _) = SiteKey::generate().unwrap();
        let token = ClientToken {
            client_id: Uuid::new_v4(),
            key: [7; 32],
        };
        let name = ClientName::parse("PLC07").unwrap();
        let enrollment = tmp.path().join("PLC07.enroll");
        let file = EnrollmentFile {
            format: ENROLLMENT_FORMAT,
            client_id: token.client_id,
            token: token.encode(),
            name: name.clone(),
            site: SiteCode::parse("S01").unwrap(),
            site_public_key: key.public(),
            created_at: Timestamp(1),
        };
        std::fs::write(&enrollment, file.encode()).unwrap();
        std::fs::set_permissions(&enrollment, std::fs::Permissions::from_mode(0o600)).unwrap();
        Fixture {
            data_dir: tmp.path().join("var/agent"),
            _tmp: tmp,
            root,
            cap_dir,
            enrollment,
            key,
            token,
            name,
        }
    }

    fn enrolled() -> Fixture {
        let f = Fixture::new();
        enroll_from_file(&f.enroll_opts(&f.enrollment)).unwrap();
        f
    }

    fn enroll_opts(&self, file: &Path) -> FileEnrollOptions {
        FileEnrollOptions {
            data_dir: self.data_dir.clone(),
            file: file.to_path_buf(),
            root: self.root.clone(),
        }
    }

    fn opts(&self) -> CycleOptions {
        CycleOptions {
            data_dir: self.data_dir.clone(),
            root: self.root.clone(),
        }
    }

    fn cycle(&self) -> CycleSummary {
        cycle_via(&self.opts(), Some(&self.cap_dir)).unwrap()
    }

    fn state(&self) -> State {
        State::load(&self.data_dir).unwrap()
    }

    fn set_packages(&self, packages: &[(&str, &str)]) {
        std::fs::write(self.root.join("var/lib/dpkg/status"), dpkg_status(packages)).unwrap();
    }

    fn cfg(&self, issued_at: i64, checkin: CheckinResponse, refused: Vec<Refused>) -> Cfg {
        Cfg {
            format: CFG_FORMAT,
            site: SiteCode::parse("S01").unwrap(),
            client: self.name.clone(),
            client_id: self.token.client_id,
            issued_at: Timestamp(issued_at),
            checkin,
            refused,
        }
    }

    fn cfg_path(&self) -> PathBuf {
        self.cap_dir.join(CLIDATA_BOX).join("PLC07.cfg")
    }

    fn put_cfg(&self, cfg: &Cfg) {
        std::fs::write(self.cfg_path(), cfg.encode(&self.key)).unwrap();
    }

    /// Every `.inv` in `Inventry.box`, oldest `written_at` first: MAC checked with the
    /// client's key, the body decoded to its report.
    fn invs(&self) -> Vec<Inv> {
        let mac = mac_key(&self.token.key_hash());
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.cap_dir.join(INVENTRY_BOX)).unwrap() {
            let entry = entry.unwrap();
            let file = entry.file_name().into_string().unwrap();
            assert!(!file.starts_with('.'), "a temporary file was left: {file}");
            let (name, id) = parse_inv_file_name(&file).expect("an .inv file name");
            assert_eq!(name, self.name);
            let bytes = std::fs::read(entry.path()).unwrap();
            let inv = InvFile::parse(&bytes).unwrap();
            inv.verify(&mac).unwrap();
            assert_eq!(inv.header.file_id, id, "the file is named by its id");
            let report = inv.header.report.map(|r| {
                let json = zstd::decode_all(inv.body).unwrap();
                assert_eq!(r.bytes, json.len() as u64);
                let report: Report = serde_json::from_slice(&json).unwrap();
                assert_eq!(report.report_id, id);
                assert_eq!(report.class, r.class);
                report
            });
            out.push(Inv {
                header: inv.header.clone(),
                report,
            });
        }
        out.sort_by_key(|i| i.header.written_at);
        out
    }

    fn reports(&self) -> Vec<(InvHeader, Report)> {
        self.invs()
            .into_iter()
            .filter_map(|i| i.report.map(|r| (i.header, r)))
            .collect()
    }

    fn checkins(&self) -> Vec<InvHeader> {
        self.invs()
            .into_iter()
            .filter(|i| i.report.is_none())
            .map(|i| i.header)
            .collect()
    }

    /// Moves every `.inv` away, as `cap-sync` does once it has imported them.
    fn import_all(&self) {
        for entry in std::fs::read_dir(self.cap_dir.join(INVENTRY_BOX)).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
    }
}

struct Inv {
    header: InvHeader,
    report: Option<Report>,
}

/// The check-in answer a site holding these reports' snapshots at `version` gives.
fn holding(reports: &[(&Report, i64)], instructions: Vec<Instruction>) -> CheckinResponse {
    CheckinResponse {
        instructions,
        classes: reports
            .iter()
            .map(|(r, v)| {
                (
                    r.class,
                    ClassState {
                        version: *v,
                        hash: r.hash,
                    },
                )
            })
            .collect(),
        agent_interval_secs: None,
    }
}

#[test]
fn enrolling_from_a_file_keeps_the_credential_and_the_site_key_and_no_site_url() {
    let f = Fixture::new();
    let resp = enroll_from_file(&f.enroll_opts(&f.enrollment)).unwrap();
    assert_eq!(resp.name, f.name);
    assert_eq!(resp.client_id, f.token.client_id);
    let state = f.state();
    assert!(!state.has_network());
    assert_eq!(state.site_url, "");
    assert_eq!(state.token, f.token.encode());
    assert_eq!(state.site.as_str(), "S01");
    assert_eq!(state.site_public_key, Some(f.key.public()));
    assert!(state.acked.is_empty() && state.outbox.is_empty());
    assert_eq!(
        std::fs::metadata(State::path(&f.data_dir))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // Without a CAP directory there is no way to the site.
    for err in [
        cycle(&f.opts()).unwrap_err(),
        cycle_via(&f.opts(), None).unwrap_err(),
    ] {
        assert!(matches!(err, AgentError::NeedsCapDir), "{err:?}");
        assert!(
            err.to_string().contains("give it with --cap-dir DIR"),
            "{err}"
        );
    }

    // Enrolling again replaces the state entirely.
    f.cycle();
    assert_eq!(f.state().outbox.len(), 2);
    enroll_from_file(&f.enroll_opts(&f.enrollment)).unwrap();
    assert!(f.state().outbox.is_empty() && f.state().cap.written.is_empty());
}

#[test]
fn an_unusable_enrollment_file_is_refused_and_nothing_is_written() {
    let f = Fixture::new();
    let dir = f.enrollment.parent().unwrap();
    let cases: Vec<(PathBuf, String)> = {
        let malformed = dir.join("malformed");
        std::fs::write(&malformed, b"{\"format\":1").unwrap();
        let large = dir.join("large");
        std::fs::write(&large, vec![b' '; 70_000]).unwrap();
        let missing = dir.join("missing");
        vec![
            (
                malformed.clone(),
                format!(
                    "cannot enroll from {}: the file is truncated or not a enrollment file: not JSON: EOF while parsing an object at line 1 column 11",
                    malformed.display()
                ),
            ),
            (
                large.clone(),
                format!(
                    "cannot enroll from {}: it is 70000 bytes, and an enrollment file is at most 65536; is it the file `invsite offline-enroll` wrote?",
                    large.display()
                ),
            ),
            (
                missing.clone(),
                format!(
                    "cannot enroll from {}: it cannot be read: No such file or directory (os error 2)",
                    missing.display()
                ),
            ),
            (
                dir.to_path_buf(),
                format!(
                    "cannot enroll from {}: it is not a regular file",
                    dir.display()
                ),
            ),
        ]
    };
    for (path, expected) in cases {
        let err = enroll_from_file(&f.enroll_opts(&path)).unwrap_err();
        assert!(matches!(err, AgentError::EnrollmentFile { .. }), "{err:?}");
        assert_eq!(err.to_string(), expected);
        assert!(!f.data_dir.exists(), "a refused enrollment wrote nothing");
    }

    // A file other users can read is used (the warning goes to the log).
    std::fs::set_permissions(&f.enrollment, std::fs::Permissions::from_mode(0o644)).unwrap();
    enroll_from_file(&f.enroll_opts(&f.enrollment)).unwrap();
    assert_eq!(f.state().client_id, f.token.client_id);
}

#[test]
fn the_cap_cycle_reports_settles_and_sends_deltas_on_the_right_base() {
    let f = Fixture::enrolled();

    // 1. No .cfg yet: both classes go out in full.
    let summary = f.cycle();
    let reports = f.reports();
    assert_eq!(reports.len(), 2);
    let (hw_header, hw) = &reports[0];
    let (sw_header, sw) = &reports[1];
    assert_eq!((hw.class, sw.class), (Class::Hw, Class::Sw));
    assert!(hw.body.is_full() && sw.body.is_full());
    assert_eq!(hw_header.client, f.name);
    assert_eq!(hw_header.client_id, f.token.client_id);
    assert_eq!(hw_header.machine_id, MACHINE_ID);
    assert_eq!(hw_header.report.unwrap().not_past, Some(0));
    assert!(hw_header.written_at < sw_header.written_at);
    assert!(hw_header.seen.is_empty() && hw_header.done_events.is_empty());
    assert_eq!(
        summary.lines(),
        vec![
            "no .cfg for this client in the CAP directory yet",
            "hw: wrote full report to the CAP directory",
            "sw: wrote full report to the CAP directory",
        ]
    );
    let state = f.state();
    assert_eq!(
        state.cap.written,
        vec![hw.report_id, sw.report_id],
        "written, and kept until settled"
    );
    assert_eq!(state.outbox, vec![hw.clone(), sw.clone()]);

    // 2. The site has not imported them: nothing new, a check-in instead.
    let summary = f.cycle();
    assert_eq!(
        summary.lines(),
        vec![
            "no .cfg for this client in the CAP directory yet".to_string(),
            format!("hw: waiting for the site to import report {}", hw.report_id),
            format!("sw: waiting for the site to import report {}", sw.report_id),
            "wrote a check-in to the CAP directory".to_string(),
        ]
    );
    assert_eq!(f.reports().len(), 2);
    assert_eq!(f.checkins().len(), 1);

    // 3. The site imported both and says so: settled, nothing to send, one check-in.
    f.import_all();
    f.put_cfg(&f.cfg(1_000, holding(&[(hw, 1), (sw, 1)], vec![]), vec![]));
    let summary = f.cycle();
    assert_eq!(
        summary.lines(),
        vec![
            format!(
                "hw: the site stored report {}, now at version 1",
                hw.report_id
            ),
            format!(
                "sw: the site stored report {}, now at version 1",
                sw.report_id
            ),
            "hw: unchanged (version 1)".to_string(),
            "sw: unchanged (version 1)".to_string(),
            "wrote a check-in to the CAP directory".to_string(),
        ]
    );
    let state = f.state();
    assert!(state.outbox.is_empty() && state.cap.written.is_empty());
    assert_eq!(state.acked[&Class::Sw].version, 1);
    assert_eq!(state.acked[&Class::Sw].hash, sw.hash);
    let first = f.checkins();
    assert_eq!(first.len(), 1);

    // 4. Nothing changed: the same .cfg is nothing new, and the new check-in replaces the old.
    let summary = f.cycle();
    assert_eq!(
        summary.lines(),
        vec![
            "hw: unchanged (version 1)",
            "sw: unchanged (version 1)",
            "wrote a check-in to the CAP directory",
        ]
    );
    let second = f.checkins();
    assert_eq!(second.len(), 1, "unimported check-ins do not pile up");
    assert_ne!(second[0].file_id, first[0].file_id);
    assert!(second[0].report.is_none() && f.reports().is_empty());

    // 5. One package changed: a delta against version 1.
    let mut packages = PACKAGES.to_vec();
    packages[0] = ("bash", "5.3");
    f.set_packages(&packages);
    let summary = f.cycle();
    assert_eq!(
        summary.lines(),
        vec![
            "hw: unchanged (version 1)",
            "sw: wrote delta report to the CAP directory",
        ]
    );
    let reports = f.reports();
    assert_eq!(reports.len(), 1);
    let (header, delta) = &reports[0];
    let ReportBody::Delta {
        base_version,
        delta: d,
    } = &delta.body
    else {
        panic!("expected a delta, got {:?}", delta.body)
    };
    assert_eq!(*base_version, 1);
    assert_eq!(d.upsert.len(), 1);
    assert!(d.remove.is_empty());
    assert_eq!(
        header.report.unwrap().not_past,
        None,
        "a delta carries its base"
    );
    assert_eq!(
        f.checkins().len(),
        1,
        "the last check-in stays when a report is written"
    );

    // 6. The site stored the delta: the acknowledged snapshot is the new inventory at 2.
    f.import_all();
    f.put_cfg(&f.cfg(2_000, holding(&[(hw, 1), (delta, 2)], vec![]), vec![]));
    let summary = f.cycle();
    assert_eq!(
        summary.lines()[0],
        format!(
            "sw: the site stored report {}, now at version 2",
            delta.report_id
        )
    );
    let state = f.state();
    assert_eq!(state.acked[&Class::Sw].version, 2);
    assert_eq!(state.acked[&Class::Sw].hash, delta.hash);
    let collected = invsync_collect::collect(Class::Sw, &f.root);
    assert_eq!(state.acked[&Class::Sw].items, collected.items);
}

#[test]
fn a_resync_gets_a_full_report_answering_it_even_while_another_waits() {
    let f = Fixture::enrolled();
    f.cycle();
    let reports = f.reports();
    let (hw, sw) = (&reports[0].1, &reports[1].1);
    f.import_all();
    f.put_cfg(&f.cfg(1_000, holding(&[(hw, 1), (sw, 1)], vec![]), vec![]));
    f.cycle();

    // A change: a delta is written and waits for the site.
    let mut packages = PACKAGES.to_vec();
    packages[3] = ("zsh", "5.9.1");
    f.set_packages(&packages);
    f.cycle();
    let delta = f.reports().pop().unwrap().1;
    assert!(!delta.body.is_full());

    // The site has not imported it and asks for a resync of sw, and sends a wake-up event.
    let instructions = vec![
        Instruction {
            id: 5,
            kind: InstructionKind::Resync { class: Class::Sw },
        },
        Instruction {
            id: 6,
            kind: InstructionKind::Event { event: Event::Hinv },
        },
    ];
    f.put_cfg(&f.cfg(
        2_000,
        holding(&[(hw, 1), (sw, 1)], instructions.clone()),
        vec![],
    ));
    let summary = f.cycle();
    assert_eq!(
        summary.lines(),
        vec![
            "received request 5: resync sw",
            "received event 6: hinv",
            "hw: unchanged (version 1)",
            "sw: wrote full report to the CAP directory (answers request 5)",
        ]
    );
    let reports = f.reports();
    assert_eq!(reports.len(), 2, "the delta and the full report");
    let (header, full) = reports.last().unwrap();
    assert!(full.body.is_full());
    assert_eq!(full.answers, vec![5]);
    assert_eq!(header.seen, vec![5, 6]);
    assert_eq!(header.done_events, vec![6]);
    assert_eq!(
        header.report.unwrap().not_past,
        Some(2),
        "the site holds 1, and the delta before it may make it 2"
    );

    // Both unsettled and the resync answered: nothing more.
    let summary = f.cycle();
    assert_eq!(
        summary.lines()[1],
        format!(
            "sw: waiting for the site to import report {}",
            full.report_id
        )
    );

    // The site imported both (the delta to 2, the full report to 3), completing 5 and 6.
    f.import_all();
    f.put_cfg(&f.cfg(3_000, holding(&[(hw, 1), (full, 3)], vec![]), vec![]));
    let summary = f.cycle();
    assert_eq!(
        summary.lines(),
        vec![
            format!(
                "sw: the site stored report {}, now at version 3",
                delta.report_id
            ),
            format!(
                "sw: the site stored report {}, now at version 3",
                full.report_id
            ),
            "hw: unchanged (version 1)".to_string(),
            "sw: unchanged (version 3)".to_string(),
            "wrote a check-in to the CAP directory".to_string(),
            "acknowledged event 6".to_string(),
        ]
    );
    let state = f.state();
    assert!(state.resyncs.is_empty() && state.events.is_empty());
    assert!(state.outbox.is_empty() && state.cap.written.is_empty());
    assert!(state.cap.events_written.is_empty());
    assert_eq!(f.checkins()[0].done_events, Vec::<i64>::new());
}

#[test]
fn a_refused_report_is_dropped_and_the_next_one_is_full() {
    let f = Fixture::enrolled();
    f.cycle();
    let reports = f.reports();
    let (hw, sw) = (&reports[0].1, &reports[1].1);
    f.import_all();
    f.put_cfg(&f.cfg(1_000, holding(&[(hw, 1), (sw, 1)], vec![]), vec![]));
    f.cycle();

    let mut packages = PACKAGES.to_vec();
    packages[1] = ("coreutils", "9.4");
    f.set_packages(&packages);
    f.cycle();
    let delta = f.reports().pop().unwrap().1;
    f.import_all();
    // The site refused it (its base is not what the site holds).
    f.put_cfg(&f.cfg(
        2_000,
        holding(&[(hw, 1), (sw, 1)], vec![]),
        vec![Refused {
            report_id: delta.report_id,
            reason: "resync required: the delta's base is version 1 and the site holds 4".into(),
        }],
    ));
    let summary = f.cycle();
    assert_eq!(
        summary.lines(),
        vec![
            format!(
                "sw: the site refused report {} (resync required: the delta's base is version 1 and the site holds 4); the next report is full",
                delta.report_id
            ),
            "hw: unchanged (version 1)".to_string(),
            "sw: wrote full report to the CAP directory".to_string(),
        ]
    );
    let (header, full) = f.reports().pop().unwrap();
    assert!(full.body.is_full());
    assert_ne!(full.report_id, delta.report_id);
    assert_eq!(header.report.unwrap().not_past, Some(1));
    let state = f.state();
    assert_eq!(state.outbox, vec![full]);
    assert!(!state.acked.contains_key(&Class::Sw));
}

#[test]
fn forged_altered_foreign_and_older_cfgs_are_ignored() {
    let f = Fixture::enrolled();
    f.cycle();
    let reports = f.reports();
    let (hw, sw) = (&reports[0].1, &reports[1].1);
    let resync = vec![Instruction {
        id: 9,
        kind: InstructionKind::Resync { class: Class::Hw },
    }];
    let file = "ignored Clidata.box/PLC07.cfg";

    // Signed by another key.
    let (forger, _) = SiteKey::generate().unwrap();
    let cfg = f.cfg(1_000, holding(&[(hw, 1), (sw, 1)], resync.clone()), vec![]);
    std::fs::write(f.cfg_path(), cfg.encode(&forger)).unwrap();
    let bad_signature = format!(
        "{file}: the file does not carry a valid signature of site S01: it was altered, or written by someone else"
    );
    assert_eq!(f.cycle().lines()[0], bad_signature);

    // Altered after signing: a later issued_at.
    let text = String::from_utf8(cfg.encode(&f.key)).unwrap();
    let altered = text.replace(&Timestamp(1_000).rfc3339(), &Timestamp(9_000).rfc3339());
    assert_ne!(altered, text);
    std::fs::write(f.cfg_path(), altered).unwrap();
    assert_eq!(f.cycle().lines()[0], bad_signature);

    // Signed by the site, for another client.
    let mut other = cfg.clone();
    other.client = ClientName::parse("PLC08").unwrap();
    other.client_id = Uuid::from_u128(8);
    f.put_cfg(&other);
    assert_eq!(
        f.cycle().lines()[0],
        format!(
            "{file}: the file is for PLC08 ({}), not {}",
            Uuid::from_u128(8),
            f.token.client_id
        )
    );

    // Nothing in them was acted on.
    let state = f.state();
    assert!(state.resyncs.is_empty() && state.cap.cfg_issued_at.is_none());
    assert_eq!(state.outbox.len(), 2, "nothing settled");

    // The genuine file is acted on; an older genuine one put back afterwards is not.
    f.put_cfg(&f.cfg(2_000, holding(&[(hw, 1), (sw, 1)], vec![]), vec![]));
    f.cycle();
    assert_eq!(f.state().cap.cfg_issued_at, Some(Timestamp(2_000)));
    f.put_cfg(&cfg);
    let summary = f.cycle();
    assert_eq!(
        summary.lines()[0],
        format!(
            "{file}: it was issued at {}, before the one acted on last ({}): a replayed or stale file",
            Timestamp(1_000).rfc3339(),
            Timestamp(2_000).rfc3339()
        )
    );
    assert!(summary.instructions.is_empty());
    assert!(f.state().resyncs.is_empty());
}

#[test]
fn a_missing_cap_dir_is_an_error_naming_it_and_a_missing_inventry_box_is_made() {
    let f = Fixture::enrolled();
    std::fs::remove_dir(f.cap_dir.join(INVENTRY_BOX)).unwrap();
    cycle_via(&f.opts(), Some(&f.cap_dir)).unwrap();
    assert!(f.cap_dir.join(INVENTRY_BOX).is_dir());

    let unmounted = f.cap_dir.join("not-mounted");
    let queued = f.state().outbox.len();
    let err = cycle_via(&f.opts(), Some(&unmounted)).unwrap_err();
    assert!(matches!(err, AgentError::CapDir { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "cannot use the CAP directory: {} does not exist or is not a directory; mount the share (or insert the media), or create the directory",
            unmounted.display()
        )
    );
    assert!(!unmounted.exists());
    assert_eq!(f.state().outbox.len(), queued, "nothing more was queued");
}

#[test]
fn inventory_out_writes_a_private_import_file() {
    let f = Fixture::new();
    let out = f.root.parent().unwrap().join("plc07-sw.json");
    let opts = ImportOptions {
        class: Class::Sw,
        root: f.root.clone(),
        name: None,
    };
    let file = import_file(&opts).unwrap();
    write_import_file(&out, &file).unwrap();
    let read = ImportFile::decode(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(read, file);
    assert_eq!(read.name.as_str(), "PLC07");
    assert_eq!(read.machine_id, MACHINE_ID);
    assert_eq!(read.class, Class::Sw);
    assert_eq!(read.items.len(), 4);
    assert_eq!(
        read.hash,
        invsync_proto::Snapshot::new(read.items.clone()).hash()
    );
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let named = import_file(&ImportOptions {
        name: Some(ClientName::parse("KIOSK1").unwrap()),
        ..opts.clone()
    })
    .unwrap();
    assert_eq!(named.name.as_str(), "KIOSK1");

    std::fs::remove_file(f.root.join("etc/machine-id")).unwrap();
    let err = import_file(&opts).unwrap_err();
    assert!(matches!(err, AgentError::NoMachineId { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(&format!(
            "no machine id in {}: an import file needs the id",
            f.root.join("etc/machine-id").display()
        )),
        "{err}"
    );
}

#[test]
fn the_daemon_cycles_through_the_cap_directory_and_needs_one() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use invsync_agent::{RunOptions, run, run_via};

    let f = Fixture::enrolled();
    let opts = RunOptions {
        cycle: f.opts(),
        interval: Duration::from_millis(50),
        site_interval_applies: false,
        splay: Duration::ZERO,
    };
    let err = run(&opts, &AtomicBool::new(false)).unwrap_err();
    assert!(matches!(err, AgentError::NeedsCapDir), "{err:?}");

    let stop = Arc::new(AtomicBool::new(false));
    let (flag, cap_dir, daemon_opts) = (stop.clone(), f.cap_dir.clone(), opts.clone());
    let handle = std::thread::spawn(move || run_via(&daemon_opts, Some(&cap_dir), &flag));
    // The first cycle writes both reports, the next ones a check-in each (replacing the last).
    let deadline = Instant::now() + Duration::from_secs(20);
    let written = || {
        std::fs::read_dir(f.cap_dir.join(INVENTRY_BOX))
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name().into_string().unwrap();
                name.ends_with(".inv") && !name.starts_with('.')
            })
            .count()
    };
    // Two reports and at least one check-in; a check-in replaced meanwhile counts once.
    while written() < 3 {
        assert!(
            Instant::now() < deadline,
            "the daemon did not cycle through the CAP"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::SeqCst);
    handle.join().unwrap().unwrap();
    assert_eq!(f.reports().len(), 2);
    assert_eq!(f.checkins().len(), 1);
}

#[test]
fn a_cfg_at_or_below_the_acknowledged_version_settles_nothing() {
    let f = Fixture::enrolled();
    f.cycle();
    let reports = f.reports();
    let (hw, sw) = (&reports[0].1, &reports[1].1);
    f.import_all();
    f.put_cfg(&f.cfg(1_000, holding(&[(hw, 1), (sw, 1)], vec![]), vec![]));
    f.cycle();

    let mut packages = PACKAGES.to_vec();
    packages[2] = ("libc6", "2.37");
    f.set_packages(&packages);
    f.cycle();
    let delta = f.reports().pop().unwrap().1;
    // A newer file whose sw state has the delta's hash but the acknowledged version: not a
    // sign that the delta was stored (a stored delta leaves the site at version 2).
    f.put_cfg(&f.cfg(2_000, holding(&[(hw, 1), (&delta, 1)], vec![]), vec![]));
    let summary = f.cycle();
    assert_eq!(
        summary.lines(),
        vec![
            "hw: unchanged (version 1)".to_string(),
            format!(
                "sw: waiting for the site to import report {}",
                delta.report_id
            ),
            "wrote a check-in to the CAP directory".to_string(),
        ]
    );
    assert_eq!(f.state().outbox, vec![delta]);
}
