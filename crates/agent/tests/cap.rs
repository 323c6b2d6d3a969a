//! The agent against a fake CAP: a thread serving canned answers over real HTTP/1.1 on
//! 127.0.0.1, so enrollment, the cycle, the outbox and the error mapping are tested through
//! the same ureq client the agent uses in production, without a site.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use invsync_agent::cycle::ReportKind;
use invsync_agent::plan::PlanReason;
use invsync_agent::{
    AgentError, ClassOutcome, CycleOptions, EnrollOptions, RunOptions, State, cycle, cycle_via,
    enroll, run,
};
use invsync_proto::offline::sign::{PublicKey, SiteKey};
use invsync_proto::offline::{CLIDATA_BOX, INVENTRY_BOX, inv_file_name};
use invsync_proto::wire::{
    AckRequest, CheckinResponse, ClassState, ClientToken, EnrollRequest, EnrollResponse, ErrorBody,
    Event, Instruction, InstructionKind, Report, ReportAck,
};
use invsync_proto::{Class, ClientName, SiteCode};
use uuid::Uuid;

/// One request as the fake site saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authorization: Option<String>,
    body: String,
}

/// What the fake site holds and how it misbehaves.
#[derive(Default)]
struct FakeSite {
    seen: Vec<Seen>,
    client_id: Option<Uuid>,
    token: Option<String>,
    classes: BTreeMap<Class, ClassState>,
    /// Delivered on every check-in until completed, like the real site.
    instructions: Vec<Instruction>,
    stored: HashSet<Uuid>,
    /// Close the connection without answering `/report`, as a network failure would.
    drop_reports: bool,
    /// Answer this many reports with "resync required".
    resync_required: usize,
    /// Answer enrollments with this status and error.
    refuse_enroll: Option<(u16, String)>,
    /// Answer check-ins with 401.
    unknown_token: bool,
    /// The interval the site asks its agents for, in its check-in answers.
    agent_interval_secs: Option<u64>,
    /// The public half of the site's key, sent in enrollment answers.
    site_public_key: Option<PublicKey>,
}

impl FakeSite {
    fn answer(&mut self, path: &str, body: &str) -> Option<(u16, String)> {
        let json = |v: &dyn erased::Json| v.to_json();
        match path {
            "/cap/v1/enroll" => {
                if let Some((status, error)) = &self.refuse_enroll {
                    return Some((
                        *status,
                        json(&ErrorBody {
                            error: error.clone(),
                        }),
                    ));
                }
                let req: EnrollRequest = serde_json::from_str(body).unwrap();
                let client_id = *self.client_id.get_or_insert_with(Uuid::new_v4);
                let token = ClientToken {
                    client_id,
                    key: [9u8; 32],
                }
                .encode();
                let reenrolled = self.token.is_some();
                self.token = Some(token.clone());
                Some((
                    200,
                    json(&EnrollResponse {
                        client_id,
                        token,
                        name: req.name,
                        site: SiteCode::parse("S01").unwrap(),
                        reenrolled,
                        site_public_key: self.site_public_key,
                    }),
                ))
            }
            "/cap/v1/checkin" if self.unknown_token => Some((
                401,
                json(&ErrorBody {
                    error: "unknown client token".into(),
                }),
            )),
            "/cap/v1/checkin" => Some((
                200,
                json(&CheckinResponse {
                    instructions: self.instructions.clone(),
                    classes: self.classes.clone(),
                    agent_interval_secs: self.agent_interval_secs,
                }),
            )),
            "/cap/v1/report" => {
                if self.drop_reports {
                    return None;
                }
                let report: Report = serde_json::from_str(body).unwrap();
                if self.stored.contains(&report.report_id) {
                    let s = self.classes[&report.class];
                    return Some((
                        200,
                        json(&ReportAck::Duplicate {
                            version: s.version,
                            hash: s.hash,
                        }),
                    ));
                }
                if self.resync_required > 0 {
                    self.resync_required -= 1;
                    return Some((
                        200,
                        json(&ReportAck::ResyncRequired {
                            reason: "gap".into(),
                        }),
                    ));
                }
                assert!(report.body.is_full(), "this agent sends full reports only");
                let version = self.classes.get(&report.class).map_or(0, |s| s.version) + 1;
                self.classes.insert(
                    report.class,
                    ClassState {
                        version,
                        hash: report.hash,
                    },
                );
                self.stored.insert(report.report_id);
                self.instructions
                    .retain(|i| !report.answers.contains(&i.id));
                Some((
                    200,
                    json(&ReportAck::Accepted {
                        version,
                        hash: report.hash,
                    }),
                ))
            }
            "/cap/v1/ack" => {
                let req: AckRequest = serde_json::from_str(body).unwrap();
                self.instructions.retain(|i| !req.done.contains(&i.id));
                Some((204, String::new()))
            }
            other => Some((
                404,
                json(&ErrorBody {
                    error: format!("no route {other}"),
                }),
            )),
        }
    }

    fn paths(&self) -> Vec<&str> {
        self.seen.iter().map(|s| s.path.as_str()).collect()
    }

    fn reports(&self) -> Vec<Report> {
        self.seen
            .iter()
            .filter(|s| s.path == "/cap/v1/report")
            .map(|s| serde_json::from_str(&s.body).unwrap())
            .collect()
    }
}

/// Serialising helper so `answer` can build bodies of different types in one closure.
mod erased {
    pub trait Json {
        fn to_json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> String {
            serde_json::to_string(self).unwrap()
        }
    }
}

/// Starts the fake site on 127.0.0.1:0; it serves until the test process ends.
fn start() -> (String, Arc<Mutex<FakeSite>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let site = Arc::new(Mutex::new(FakeSite::default()));
    let shared = site.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            serve_one(stream, &shared);
        }
    });
    (url, site)
}

/// Reads one HTTP/1.1 request, answers it (or drops the connection) and closes.
fn serve_one(stream: TcpStream, site: &Mutex<FakeSite>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_string();
    let (mut length, mut authorization, mut zstd) = (0usize, None, false);
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().unwrap(),
            "authorization" => authorization = Some(value.trim().to_string()),
            "content-encoding" => zstd = value.trim() == "zstd",
            _ => {}
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).unwrap();
    // Reports arrive zstd-compressed, as the real site reads them.
    let body = if zstd {
        zstd::decode_all(&body[..]).unwrap()
    } else {
        body
    };
    let body = String::from_utf8(body).unwrap();
    let answer = {
        let mut site = site.lock().unwrap();
        site.seen.push(Seen {
            path: path.clone(),
            authorization,
            body: body.clone(),
        });
        site.answer(&path, &body)
    };
    let Some((status, json)) = answer else { return };
    let mut stream = stream;
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        json.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(json.as_bytes());
}

/// A fixture root with a host name and a machine id, and a data directory not yet created.
struct Agent {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    data_dir: PathBuf,
}

impl Agent {
    fn new() -> Agent {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/hostname"), "web01.example.com\n").unwrap();
        std::fs::write(
            root.join("etc/machine-id"),
            "0123456789abcdef0123456789abcdef\n",
        )
        .unwrap();
        let data_dir = tmp.path().join("var/agent");
        Agent {
            _tmp: tmp,
            root,
            data_dir,
        }
    }

    fn enroll_opts(&self, url: &str) -> EnrollOptions {
        EnrollOptions {
            data_dir: self.data_dir.clone(),
            site_url: url.to_string(),
            secret: "s3cret".to_string(),
            name: None,
            root: self.root.clone(),
        }
    }

    fn cycle_opts(&self) -> CycleOptions {
        CycleOptions {
            data_dir: self.data_dir.clone(),
            root: self.root.clone(),
        }
    }

    fn enrolled(url: &str) -> Agent {
        let agent = Agent::new();
        enroll(&agent.enroll_opts(url)).unwrap();
        agent
    }

    fn state(&self) -> State {
        State::load(&self.data_dir).unwrap()
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn enroll_writes_private_state_with_the_credential() {
    let (url, site) = start();
    let agent = Agent::new();
    let resp = enroll(&agent.enroll_opts(&url)).unwrap();
    assert_eq!(resp.name.as_str(), "WEB01", "derived from the host name");
    assert!(!resp.reenrolled);

    let state = agent.state();
    assert_eq!(state.site_url, url.trim_end_matches('/'));
    assert_eq!(state.client_id, resp.client_id);
    assert_eq!(state.token, resp.token);
    assert_eq!(state.site.as_str(), "S01");
    assert!(state.acked.is_empty() && state.outbox.is_empty());
    assert_eq!(mode(&agent.data_dir), 0o700);
    assert_eq!(mode(&State::path(&agent.data_dir)), 0o600);

    let site = site.lock().unwrap();
    assert_eq!(
        site.paths(),
        vec!["/cap/v1/enroll"],
        "no double slash from the trailing '/'"
    );
    assert_eq!(
        site.seen[0].authorization, None,
        "enroll presents the secret, not a token"
    );
    let req: EnrollRequest = serde_json::from_str(&site.seen[0].body).unwrap();
    assert_eq!(req.secret, "s3cret");
    assert_eq!(req.machine_id, "0123456789abcdef0123456789abcdef");
}

#[test]
fn re_enrolling_replaces_credentials_and_forgets_acknowledged_snapshots() {
    let (url, _site) = start();
    let agent = Agent::enrolled(&url);
    cycle(&agent.cycle_opts()).unwrap();
    assert_eq!(agent.state().acked.len(), 2);
    let mut opts = agent.enroll_opts(&url);
    opts.name = Some(ClientName::parse("other").unwrap());
    let resp = enroll(&opts).unwrap();
    assert!(resp.reenrolled);
    let state = agent.state();
    assert_eq!(state.name.as_str(), "OTHER");
    assert!(
        state.acked.is_empty(),
        "the site may hold none of our snapshots"
    );
}

#[test]
fn a_refused_enrollment_maps_to_refused_and_writes_nothing() {
    let (url, site) = start();
    site.lock().unwrap().refuse_enroll =
        Some((409, "client name WEB01 is taken by client 42".into()));
    let agent = Agent::new();
    let err = enroll(&agent.enroll_opts(&url)).unwrap_err();
    match &err {
        AgentError::Refused { status, message } => {
            assert_eq!(*status, 409);
            assert_eq!(message, "client name WEB01 is taken by client 42");
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    assert!(err.to_string().contains("taken by client 42"), "{err}");
    assert!(
        !agent.data_dir.exists(),
        "a refused enrollment wrote nothing"
    );
}

#[test]
fn an_unreachable_site_says_what_to_do() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let agent = Agent::new();
    let err = enroll(&agent.enroll_opts(&format!("http://127.0.0.1:{port}"))).unwrap_err();
    assert!(matches!(err, AgentError::Unreachable { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("could not reach the site at http://127.0.0.1")
            && msg.contains("invsite serve"),
        "{msg}"
    );
}

#[test]
fn a_cycle_answers_a_resync_with_a_full_report_and_acknowledges_events() {
    let (url, site) = start();
    let agent = Agent::enrolled(&url);
    let token = agent.state().token;
    site.lock().unwrap().instructions = vec![
        Instruction {
            id: 5,
            kind: InstructionKind::Resync { class: Class::Sw },
        },
        Instruction {
            id: 6,
            kind: InstructionKind::Event { event: Event::Hinv },
        },
    ];

    let summary = cycle(&agent.cycle_opts()).unwrap();
    assert_eq!(summary.instructions.len(), 2);
    assert_eq!(summary.acked_events, vec![6]);
    let sent: Vec<_> = summary
        .classes
        .iter()
        .map(|c| match c {
            ClassOutcome::Sent(r) => (r.class, r.kind, r.version, r.answers.clone(), r.reason),
            other => panic!("expected a report for every class on a fresh site: {other:?}"),
        })
        .collect();
    assert_eq!(
        sent,
        vec![
            (
                Class::Hw,
                ReportKind::Full,
                1,
                vec![],
                Some(PlanReason::SiteHasNone)
            ),
            (
                Class::Sw,
                ReportKind::Full,
                1,
                vec![5],
                Some(PlanReason::Requested)
            ),
        ]
    );
    let lines = summary.lines();
    assert!(
        lines.contains(
            &"sw: sent full report, site now at version 1 (answers request 5)".to_string()
        ),
        "{lines:?}"
    );

    {
        let site = site.lock().unwrap();
        assert_eq!(
            site.paths(),
            vec![
                "/cap/v1/enroll",
                "/cap/v1/checkin",
                "/cap/v1/report",
                "/cap/v1/report",
                "/cap/v1/ack"
            ]
        );
        for s in &site.seen[1..] {
            assert_eq!(
                s.authorization.as_deref(),
                Some(format!("Bearer {token}").as_str()),
                "{}",
                s.path
            );
        }
        let reports = site.reports();
        assert_eq!(reports[1].class, Class::Sw);
        assert_eq!(reports[1].answers, vec![5]);
        assert!(reports[1].body.is_full());
        assert_eq!(site.seen[4].body, r#"{"done":[6]}"#);
        assert!(site.instructions.is_empty());
    }
    let state = agent.state();
    assert_eq!(state.acked[&Class::Sw].version, 1);
    assert_eq!(
        state.acked[&Class::Sw].hash,
        site.lock().unwrap().classes[&Class::Sw].hash
    );
    assert!(state.resyncs.is_empty() && state.events.is_empty() && state.outbox.is_empty());

    // Nothing changed since: the next cycle is a check-in and nothing else.
    let before = site.lock().unwrap().seen.len();
    let summary = cycle(&agent.cycle_opts()).unwrap();
    assert_eq!(
        summary.classes,
        vec![
            ClassOutcome::Unchanged {
                class: Class::Hw,
                version: Some(1)
            },
            ClassOutcome::Unchanged {
                class: Class::Sw,
                version: Some(1)
            },
        ]
    );
    assert_eq!(
        summary.lines(),
        vec!["hw: unchanged (version 1)", "sw: unchanged (version 1)"]
    );
    let site = site.lock().unwrap();
    assert_eq!(site.paths()[before..], ["/cap/v1/checkin"]);
    assert!(
        site.seen.last().unwrap().body.len() < 100,
        "a no-change cycle sends little"
    );
}

#[test]
fn an_unacknowledged_report_stays_in_the_outbox_and_is_resent_with_its_id() {
    let (url, site) = start();
    let agent = Agent::enrolled(&url);
    site.lock().unwrap().drop_reports = true;

    let err = cycle(&agent.cycle_opts()).unwrap_err();
    assert!(matches!(err, AgentError::Unreachable { .. }), "{err:?}");
    let queued = agent.state().outbox;
    assert_eq!(
        queued.len(),
        1,
        "the first class's report waits in the outbox"
    );
    let queued_id = queued[0].report_id;
    assert_eq!(site.lock().unwrap().reports()[0].report_id, queued_id);

    site.lock().unwrap().drop_reports = false;
    let summary = cycle(&agent.cycle_opts()).unwrap();
    assert_eq!(summary.resent.len(), 1);
    assert_eq!(summary.resent[0].class, queued[0].class);
    {
        let site = site.lock().unwrap();
        let reports = site.reports();
        // enroll, checkin, dropped report; then the re-send comes before the check-in.
        assert_eq!(site.paths()[3..5], ["/cap/v1/report", "/cap/v1/checkin"]);
        assert_eq!(
            reports[1].report_id, queued_id,
            "re-sent with the same report id"
        );
        assert_eq!(site.classes[&queued[0].class].version, 1, "stored once");
    }
    let state = agent.state();
    assert!(state.outbox.is_empty());
    assert_eq!(state.acked.len(), 2);

    // A report the site already stored (its ack was lost) comes back as a duplicate.
    let mut state = agent.state();
    let mut again = queued[0].clone();
    state.acked.clear();
    again.answers.clear();
    state.outbox.push(again);
    state.save(&agent.data_dir).unwrap();
    let summary = cycle(&agent.cycle_opts()).unwrap();
    assert!(summary.resent[0].duplicate);
    assert_eq!(site.lock().unwrap().classes[&queued[0].class].version, 1);
}

#[test]
fn resync_required_is_answered_with_a_full_report_in_the_same_cycle() {
    let (url, site) = start();
    let agent = Agent::enrolled(&url);
    cycle(&agent.cycle_opts()).unwrap();
    // The site lost its database: it holds nothing, and refuses the next report once.
    {
        let mut site = site.lock().unwrap();
        site.classes.clear();
        site.resync_required = 1;
    }
    let before = site.lock().unwrap().reports().len();
    let summary = cycle(&agent.cycle_opts()).unwrap();
    let site = site.lock().unwrap();
    let reports = &site.reports()[before..];
    assert_eq!(reports.len(), 3, "hw refused, hw again, sw");
    assert_eq!(reports[0].class, Class::Hw);
    assert_eq!(reports[1].class, Class::Hw);
    assert_ne!(
        reports[0].report_id, reports[1].report_id,
        "a new report, not a re-send"
    );
    assert!(reports[1].body.is_full());
    match &summary.classes[0] {
        ClassOutcome::Sent(r) => {
            assert_eq!((r.version, r.reason), (1, Some(PlanReason::SiteAsked)))
        }
        other => panic!("{other:?}"),
    }
    assert!(agent.state().outbox.is_empty());
}

#[test]
fn a_site_whose_version_differs_gets_full_reports() {
    let (url, site) = start();
    let agent = Agent::enrolled(&url);
    cycle(&agent.cycle_opts()).unwrap();
    // A restored backup: the site is a version behind the agent's record.
    site.lock()
        .unwrap()
        .classes
        .get_mut(&Class::Sw)
        .unwrap()
        .version = 0;
    let summary = cycle(&agent.cycle_opts()).unwrap();
    match &summary.classes[1] {
        ClassOutcome::Sent(r) => {
            assert!(
                matches!(r.reason, Some(PlanReason::SiteDiffers { .. })),
                "{r:?}"
            );
            assert_eq!(r.version, 1);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        summary.classes[0],
        ClassOutcome::Unchanged {
            class: Class::Hw,
            version: Some(1)
        }
    );
}

#[test]
fn an_unknown_token_tells_the_user_to_enroll_again() {
    let (url, site) = start();
    let agent = Agent::enrolled(&url);
    site.lock().unwrap().unknown_token = true;
    let err = cycle(&agent.cycle_opts()).unwrap_err();
    assert!(matches!(err, AgentError::Unauthorized { .. }), "{err:?}");
    assert!(err.to_string().contains("invagent enroll"), "{err}");
}

#[test]
fn cycle_without_enrollment_says_how_to_enroll() {
    let agent = Agent::new();
    let err = cycle(&agent.cycle_opts()).unwrap_err();
    assert!(matches!(err, AgentError::NotEnrolled { .. }), "{err:?}");
    assert!(
        err.to_string().contains("invagent enroll --data-dir"),
        "{err}"
    );
}

#[test]
fn run_cycles_until_stopped_and_survives_failed_cycles() {
    let (url, site) = start();
    let agent = Agent::enrolled(&url);
    // Every cycle fails at its first report, and the loop keeps going.
    site.lock().unwrap().drop_reports = true;
    let stop = Arc::new(AtomicBool::new(false));
    let opts = RunOptions {
        cycle: agent.cycle_opts(),
        interval: Duration::from_millis(50),
        site_interval_applies: false,
        splay: Duration::ZERO,
    };
    let flag = stop.clone();
    let handle = std::thread::spawn(move || run(&opts, &flag));

    let deadline = Instant::now() + Duration::from_secs(20);
    while site.lock().unwrap().reports().len() < 3 {
        assert!(Instant::now() < deadline, "run did not keep cycling");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let stopped = Instant::now();
    handle.join().unwrap().unwrap();
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "run stopped promptly"
    );
    // Every attempt re-sent the same queued report.
    let reports = site.lock().unwrap().reports();
    assert!(reports.iter().all(|r| r.report_id == reports[0].report_id));
}

fn checkins(site: &Arc<Mutex<FakeSite>>) -> usize {
    site.lock()
        .unwrap()
        .seen
        .iter()
        .filter(|s| s.path == "/cap/v1/checkin")
        .count()
}

/// Runs the daemon loop until `until` holds (or 20 s pass), then stops it.
fn run_until(
    opts: RunOptions,
    site: &Arc<Mutex<FakeSite>>,
    until: impl Fn(usize) -> bool,
) -> usize {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = std::thread::spawn(move || run(&opts, &flag));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !until(checkins(site)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    handle.join().unwrap().unwrap();
    checkins(site)
}

#[test]
fn the_site_sets_the_interval_unless_this_machine_set_one() {
    let (url, site) = start();
    let agent = Agent::enrolled(&url);
    site.lock().unwrap().agent_interval_secs = Some(1);
    // The default interval (an hour) gives way to the site's second.
    let opts = RunOptions {
        cycle: agent.cycle_opts(),
        interval: Duration::from_secs(3600),
        site_interval_applies: true,
        splay: Duration::ZERO,
    };
    assert!(
        run_until(opts.clone(), &site, |n| n >= 3) >= 3,
        "cycles every second, as the site asks"
    );

    // An interval set on this machine stays: after the first cycle, four seconds hold none
    // (the site's interval would have made three or more).
    let before = checkins(&site);
    let opts = RunOptions {
        site_interval_applies: false,
        ..opts
    };
    let started = Instant::now();
    let seen = run_until(opts, &site, |n| {
        n > before && started.elapsed() > Duration::from_secs(4)
    });
    assert_eq!(seen, before + 1, "only the cycle at start");
}

#[test]
fn the_first_cycle_waits_for_the_splay() {
    let (url, site) = start();
    let agent = Agent::enrolled(&url);
    let opts = RunOptions {
        cycle: agent.cycle_opts(),
        interval: Duration::from_secs(3600),
        site_interval_applies: false,
        // Up to a day: the chance that the random wait is under three seconds is 1 in 28,800.
        splay: Duration::from_secs(86_400),
    };
    let started = Instant::now();
    assert_eq!(
        run_until(opts, &site, |_| started.elapsed() > Duration::from_secs(3)),
        0
    );
}

/// A CAP directory with its two boxes, inside the agent's temporary directory.
fn cap_dir(agent: &Agent) -> PathBuf {
    let dir = agent.data_dir.parent().unwrap().join("cap");
    std::fs::create_dir_all(dir.join(CLIDATA_BOX)).unwrap();
    std::fs::create_dir_all(dir.join(INVENTRY_BOX)).unwrap();
    dir
}

/// The names of the files in the CAP directory's `Inventry.box`, sorted.
fn inventry_box(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join(INVENTRY_BOX))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// A URL where nothing listens.
fn closed_port_url() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
}

fn set_site_url(agent: &Agent, url: &str) {
    let mut state = agent.state();
    state.site_url = url.trim_end_matches('/').to_string();
    state.save(&agent.data_dir).unwrap();
}

#[test]
fn an_unreachable_site_falls_back_to_the_cap_and_http_later_settles_and_removes_the_files() {
    let (url, site) = start();
    let (key, _) = SiteKey::generate().unwrap();
    site.lock().unwrap().site_public_key = Some(key.public());
    let agent = Agent::enrolled(&url);
    assert_eq!(
        agent.state().site_public_key,
        Some(key.public()),
        "HTTP enrollment keeps the site's key"
    );
    let cap = cap_dir(&agent);

    set_site_url(&agent, &closed_port_url());
    let summary = cycle_via(&agent.cycle_opts(), Some(&cap)).unwrap();
    assert_eq!(
        summary.lines(),
        vec![
            format!("site unreachable; used the CAP directory {}", cap.display()),
            "no .cfg for this client in the CAP directory yet".to_string(),
            "hw: wrote full report to the CAP directory".to_string(),
            "sw: wrote full report to the CAP directory".to_string(),
        ]
    );
    let state = agent.state();
    assert_eq!(state.outbox.len(), 2, "kept until settled");
    let mut expected: Vec<String> = state
        .outbox
        .iter()
        .map(|r| inv_file_name(&state.name, r.report_id))
        .collect();
    expected.sort();
    assert_eq!(inventry_box(&cap), expected);

    // The site is back: the outbox goes over HTTP with the same ids, and the files the site
    // has not imported are removed.
    set_site_url(&agent, &url);
    let summary = cycle_via(&agent.cycle_opts(), Some(&cap)).unwrap();
    assert_eq!(summary.resent.len(), 2);
    assert!(summary.cap.is_none(), "the network cycle did it all");
    assert_eq!(inventry_box(&cap), Vec::<String>::new());
    let state = agent.state();
    assert!(state.outbox.is_empty() && state.cap.written.is_empty());
    assert_eq!(state.acked.len(), 2);
    let sent: Vec<Uuid> = site
        .lock()
        .unwrap()
        .reports()
        .iter()
        .map(|r| r.report_id)
        .collect();
    let written: Vec<Uuid> = expected
        .iter()
        .map(|f| invsync_proto::offline::parse_inv_file_name(f).unwrap().1)
        .collect();
    let mut sent_sorted = sent.clone();
    sent_sorted.sort();
    let mut written_sorted = written.clone();
    written_sorted.sort();
    assert_eq!(sent_sorted, written_sorted, "the same reports, once each");
}

#[test]
fn a_report_a_failed_network_cycle_queued_is_written_to_the_cap_with_its_id() {
    let (url, site) = start();
    let (key, _) = SiteKey::generate().unwrap();
    site.lock().unwrap().site_public_key = Some(key.public());
    let agent = Agent::enrolled(&url);
    let cap = cap_dir(&agent);
    site.lock().unwrap().drop_reports = true;

    let summary = cycle_via(&agent.cycle_opts(), Some(&cap)).unwrap();
    assert_eq!(
        summary.lines(),
        vec![
            format!("site unreachable; used the CAP directory {}", cap.display()),
            "no .cfg for this client in the CAP directory yet".to_string(),
            "hw: wrote queued full report to the CAP directory".to_string(),
            "sw: wrote full report to the CAP directory".to_string(),
        ]
    );
    let dropped = site.lock().unwrap().reports()[0].report_id;
    let state = agent.state();
    assert_eq!(
        state.outbox[0].report_id, dropped,
        "the queued report keeps its id"
    );
    assert!(inventry_box(&cap).contains(&inv_file_name(&state.name, dropped)));
}

#[test]
fn without_the_sites_key_the_cap_cannot_be_used_and_the_error_says_both() {
    let (url, _site) = start();
    let agent = Agent::enrolled(&url);
    let cap = cap_dir(&agent);
    set_site_url(&agent, &closed_port_url());
    let err = cycle_via(&agent.cycle_opts(), Some(&cap)).unwrap_err();
    assert!(matches!(err, AgentError::Unreachable { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("; and the CAP directory could not be used either (this agent has no public key of its site"),
        "{msg}"
    );
    assert_eq!(inventry_box(&cap), Vec::<String>::new());
    // A site that answers is never bypassed: without --cap-dir the cycle is the network's.
    set_site_url(&agent, &url);
    assert!(
        cycle_via(&agent.cycle_opts(), Some(&cap))
            .unwrap()
            .cap
            .is_none()
    );
}

#[test]
fn a_failing_custom_script_keeps_its_acknowledged_item_across_a_cycle() {
    let (url, site) = start();
    let agent = Agent::enrolled(&url);
    let dir = agent.root.join("etc/invagent/inventory.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = dir.join("rack");
    std::fs::write(&script, "#!/bin/sh\nprintf '{\"rack\": \"B12\"}'\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    cycle(&agent.cycle_opts()).unwrap();
    let first = agent.state().acked[&Class::Hw].clone();
    assert_eq!(
        first.items["custom/rack"].get("rack").map(String::as_str),
        Some("B12")
    );

    // The script now fails: the item it gave last time is still the inventory, so nothing
    // changed and nothing is sent.
    std::fs::write(&script, "#!/bin/sh\necho 'CMDB unreachable' >&2\nexit 1\n").unwrap();
    let before = site.lock().unwrap().reports().len();
    let summary = cycle(&agent.cycle_opts()).unwrap();
    assert_eq!(
        summary.classes[0],
        ClassOutcome::Unchanged {
            class: Class::Hw,
            version: Some(1)
        }
    );
    assert_eq!(site.lock().unwrap().reports().len(), before);
    assert_eq!(agent.state().acked[&Class::Hw], first);
}
