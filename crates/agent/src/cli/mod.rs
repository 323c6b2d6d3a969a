//! The `invagent` command line (SPEC section 7): argument parsing with clap, one file per
//! command, and the single mapping from [`AgentError`] to exit codes. Results go to stdout;
//! logs go to stderr through the subscriber the binary installs.

use std::io::{ErrorKind, Write};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use invsync_proto::exit::{Code, Exit};

use crate::error::AgentError;

pub mod cycle;
pub mod enroll;
pub mod inventory;
pub mod run;

/// The invsync client agent: enrolls this machine at a site, collects its hardware and
/// software inventory, and keeps the site up to date.
#[derive(Debug, Parser)]
#[command(name = "invagent", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Enroll this machine at a site and keep its credential in the data directory.
    Enroll(enroll::EnrollArgs),
    /// Run as a daemon: a cycle soon, then one every interval, until SIGTERM or SIGINT.
    Run(run::RunArgs),
    /// Print the settings `invagent run` would use, and where each came from.
    Config(run::ConfigArgs),
    /// Run one cycle now (check in, send what changed or was asked for), then exit.
    Cycle(cycle::CycleArgs),
    /// Collect one class of inventory and print it; talks to no site.
    Inventory(inventory::InventoryArgs),
}

/// `--data-dir`, shared by the commands that use the agent's state.
#[derive(Debug, Clone, Args)]
pub struct DataDirArg {
    /// The agent's data directory (state and credential); created with mode 0700.
    #[arg(
        long,
        value_name = "DIR",
        env = "INVAGENT_DIR",
        default_value = "/var/lib/invagent"
    )]
    pub data_dir: PathBuf,
}

/// `--root`, shared by the commands that collect inventory.
#[derive(Debug, Clone, Args)]
pub struct RootArg {
    /// The root directory the collectors read through (a fake tree in tests).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
}

/// The clap definition of `invagent`, for the man page and shell completions the packages ship.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// Parses `std::env::args_os()` and runs the command.
pub fn try_main() -> anyhow::Result<()> {
    use clap::{CommandFactory, FromArgMatches};
    // Parsed through the matches, which also tell a value from the command line from one from
    // the environment (`invagent config` says which).
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (m, cli)));
    let (matches, cli) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return usage_or_help(e),
    };
    let sub = matches.subcommand().map(|(_, m)| m);
    match cli.command {
        Command::Enroll(args) => enroll::apply(&args, sub),
        Command::Run(args) => run::apply(&args, sub),
        Command::Config(args) => run::apply_config(&args, sub),
        Command::Cycle(args) => cycle::apply(&args),
        Command::Inventory(args) => inventory::apply(&args),
    }
}

/// `--help` and `--version` are successes printed to stdout; every other clap error is bad
/// usage, exit 2.
fn usage_or_help(e: clap::Error) -> anyhow::Result<()> {
    use clap::error::ErrorKind as K;
    match e.kind() {
        K::DisplayHelp | K::DisplayVersion => {
            e.print()?;
            Ok(())
        }
        _ => Err(Exit::usage(without_control_bytes(e.to_string().trim_end())).into()),
    }
}

/// clap echoes the offending value verbatim; a value like `a\x1b[2J` must not reach the
/// terminal as an escape sequence, so control characters other than line breaks and tabs are
/// shown escaped.
fn without_control_bytes(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The exit code of each agent error (SPEC section 7), in one place: what the user typed was
/// wrong → 2; everything else → 1, with a message that says what to do.
pub fn exit_for(err: AgentError) -> anyhow::Error {
    let code = match &err {
        AgentError::Refused { .. }
        | AgentError::BadSiteUrl { .. }
        | AgentError::NoName { .. }
        | AgentError::BadCaCert { .. }
        | AgentError::NeedsCapDir
        | AgentError::EnrollmentFile { .. } => Code::Usage,
        AgentError::NotEnrolled { .. }
        | AgentError::Unauthorized { .. }
        | AgentError::Unreachable { .. }
        | AgentError::Tls { .. }
        | AgentError::SiteFailed { .. }
        | AgentError::BadResponse { .. }
        | AgentError::ResyncLoop { .. }
        | AgentError::State(_)
        | AgentError::CapDir { .. }
        | AgentError::NoSiteKey
        | AgentError::NoMachineId { .. }
        | AgentError::Io { .. } => Code::Failure,
    };
    Exit::new(code, err.to_string()).into()
}

/// Writes lines to stdout. A closed pipe (`invagent inventory sw | head`) is not an error:
/// the reader has what it wanted.
pub fn print_lines<I, S>(lines: I) -> anyhow::Result<()>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = lines
        .into_iter()
        .try_for_each(|l| writeln!(out, "{}", l.as_ref()))
        .and_then(|()| out.flush());
    match result {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("invagent").chain(args.iter().copied()))
    }

    fn usage_message(args: &[&str]) -> String {
        let err = usage_or_help(parse(args).unwrap_err()).unwrap_err();
        let exit = err.downcast_ref::<Exit>().expect("an Exit");
        assert_eq!(exit.code, Code::Usage);
        exit.message.clone()
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_and_version_are_not_errors() {
        for args in [
            &["--help"][..],
            &["--version"],
            &["cycle", "--help"],
            &["inventory", "--help"],
        ] {
            let e = parse(args).unwrap_err();
            assert!(matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ));
        }
    }

    #[test]
    fn bad_arguments_exit_2_naming_the_argument() {
        assert!(usage_message(&["inventory", "xx"]).contains("<CLASS>"));
        assert!(usage_message(&["run", "--interval", "0s"]).contains("--interval"));
        assert!(usage_message(&["run", "--interval", "soon"]).contains("--interval"));
        let m = usage_message(&[
            "enroll", "--site", "http://s", "--secret", "x", "--name", "a/b",
        ]);
        assert!(m.contains("--name") && m.contains("path separator"), "{m}");
        assert!(usage_message(&["bogus"]).contains("bogus"));
        let m = usage_message(&[
            "enroll",
            "--site",
            "http://s",
            "--secret",
            "x",
            "--name",
            "a\u{1b}[2J",
        ]);
        assert!(!m.contains('\u{1b}') && m.contains("client name"), "{m:?}");
        let m = usage_message(&[
            "enroll", "--site", "http://s", "--secret", "x", "--name", "",
        ]);
        assert!(m.contains("client name is empty"), "{m}");
    }

    #[test]
    fn commands_parse_with_defaults() {
        // SAFETY-free: reading the environment only; INVAGENT_DIR is not set in tests.
        let cli = parse(&["cycle", "--data-dir", "/tmp/a"]).unwrap();
        match cli.command {
            Command::Cycle(a) => {
                assert_eq!(a.data_dir.data_dir, PathBuf::from("/tmp/a"));
                assert_eq!(a.root.root, PathBuf::from("/"));
            }
            other => panic!("{other:?}"),
        }
        let cli = parse(&["run", "--data-dir", "/tmp/a", "--interval", "90m"]).unwrap();
        match cli.command {
            Command::Run(a) => assert_eq!(a.interval, Some(std::time::Duration::from_secs(5400))),
            other => panic!("{other:?}"),
        }
        let cli = parse(&["inventory", "sw", "--json", "--root", "/r"]).unwrap();
        match cli.command {
            Command::Inventory(a) => {
                assert_eq!(a.class, invsync_proto::Class::Sw);
                assert!(a.json);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn enrolling_from_a_file_conflicts_with_the_network_flags() {
        for (flag, value) in [
            ("--site", "http://s"),
            ("--ca-cert", "/ca.pem"),
            ("--name", "web01"),
        ] {
            let m = usage_message(&["enroll", "--from-file", "/f", flag, value]);
            assert!(
                m.contains("cannot be used with") && m.contains("--from-file"),
                "{flag}: {m}"
            );
        }
        match parse(&["enroll", "--from-file", "/f", "--root", "/r"])
            .unwrap()
            .command
        {
            Command::Enroll(a) => {
                assert_eq!(a.from_file, Some(PathBuf::from("/f")));
                assert_eq!((a.site, a.secret), (None, None));
            }
            other => panic!("{other:?}"),
        }
        // --secret typed on the command line is refused too (exit 2); from the environment it
        // is ignored.
        let cli = parse(&["enroll", "--from-file", "/f", "--secret", "x"]).unwrap();
        let Command::Enroll(args) = cli.command else {
            panic!("enroll")
        };
        let err = enroll::apply(&args, None).unwrap_err();
        let exit = err.downcast_ref::<Exit>().expect("an Exit");
        assert_eq!(exit.code, Code::Usage);
        assert!(
            exit.message.starts_with(
                "the argument '--from-file <FILE>' cannot be used with '--secret <S>'"
            ),
            "{}",
            exit.message
        );
        // Without --from-file, --site and --secret are both required.
        let m = usage_message(&["enroll", "--secret", "x"]);
        assert!(m.contains("--site <URL>"), "{m}");
    }

    #[test]
    fn inventory_out_and_cycle_cap_dir_parse() {
        let m = usage_message(&["inventory", "hw", "--name", "KIOSK1"]);
        assert!(m.contains("--out <FILE>"), "{m}");
        let m = usage_message(&["inventory", "hw", "--json", "--out", "/f"]);
        assert!(m.contains("cannot be used with"), "{m}");
        match parse(&["inventory", "sw", "--out", "/f", "--name", "kiosk1"])
            .unwrap()
            .command
        {
            Command::Inventory(a) => {
                assert_eq!(a.out, Some(PathBuf::from("/f")));
                assert_eq!(a.name.unwrap().as_str(), "KIOSK1");
            }
            other => panic!("{other:?}"),
        }
        match parse(&["cycle", "--cap-dir", "/mnt/cap"]).unwrap().command {
            Command::Cycle(a) => assert_eq!(a.cap_dir, Some(PathBuf::from("/mnt/cap"))),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_file_share_caps_refusals_exit_2_when_an_argument_fixes_them() {
        let code = |e: AgentError| exit_for(e).downcast::<Exit>().unwrap().code;
        assert_eq!(code(AgentError::NeedsCapDir), Code::Usage);
        assert_eq!(
            code(AgentError::EnrollmentFile {
                path: "/f".into(),
                reason: "bad".into()
            }),
            Code::Usage
        );
        assert_eq!(
            code(AgentError::CapDir {
                reason: "missing".into()
            }),
            Code::Failure
        );
        assert_eq!(code(AgentError::NoSiteKey), Code::Failure);
    }

    #[test]
    fn refusals_exit_2_and_the_rest_exit_1() {
        let code = |e: AgentError| exit_for(e).downcast::<Exit>().unwrap().code;
        assert_eq!(
            code(AgentError::Refused {
                status: 409,
                message: "taken".into()
            }),
            Code::Usage
        );
        assert_eq!(
            code(AgentError::Unreachable {
                url: "http://s".into(),
                reason: "refused".into()
            }),
            Code::Failure
        );
        assert_eq!(
            code(AgentError::NotEnrolled {
                data_dir: "/a".into()
            }),
            Code::Failure
        );
    }
}
