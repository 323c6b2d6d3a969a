//! `invsync hw|sw CLIENT`: queue a hardware or software inventory resynchronization request
//! for a client of this site (the original tool's `.cfg` at the CAP). With `--wait` it follows
//! the request until the client's full report is stored and, at a site with a parent, on up the
//! tree: the parent's acknowledgement, then each site above as the forward answers report that
//! it stored the change, until the top of the tree has it. With `--via-child` a request for a client of a site below is routed
//! down to its owning site instead of refused (exit 5).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Parser;
use invsync_proto::exit::{Code, Exit};
use invsync_proto::wire::{Hop, Queued, RequestState, RequestView};
use invsync_proto::{Class, ClientName, SiteCode, Timestamp};

use invsync_site::access::{AccessOptions, SiteAccess};

#[derive(Debug, Parser)]
#[command(
    name = "invsync",
    version,
    about = "Inventory Synchronizer: ask a client to send a full hardware or software inventory",
    after_help = "The client applies the request at its next cycle; `setevnt CLIENT cycle` makes that happen now.\n\
                  `invsync cancel REQUEST_ID` cancels a request that is still pending.\n\
                  Run it on the site server that owns the client."
)]
pub struct Args {
    /// Inventory class: hw (hardware) or sw (software)
    #[arg(value_name = "hw|sw", value_parser = parse_class)]
    pub class: Class,
    /// The client's NetBIOS-style name (1-15 characters of A-Z 0-9 - _)
    #[arg(value_name = "CLIENT", required_unless_present = "all")]
    pub client: Option<ClientName>,
    /// Every client this site owns, paced by --rate, instead of one CLIENT
    #[arg(long, conflicts_with_all = ["client", "wait", "via_child"])]
    pub all: bool,
    /// With --all: how fast to queue (a token bucket), e.g. 300/min or 5/s [default: 300/min]
    #[arg(long, value_name = "RATE", requires = "all", value_parser = crate::all::Rate::parse)]
    pub rate: Option<crate::all::Rate>,
    /// Site data directory [default: $INVSITE_DIR, else /var/lib/invsite]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Wait until the client's full report is stored here and, at a site with a parent, until
    /// the top of the tree has it; prints each step (queued, picked up, complete, forwarded to
    /// the parent, stored at each site above, the top)
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits (e.g. 60s, 5m)
    #[arg(long, value_name = "DURATION", default_value = "60s", requires = "wait", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Print the queued request as JSON (with --all: the counts, `skipped` among them)
    #[arg(long)]
    pub json: bool,
    /// For a client of a site below this one: route the request down to the owning site, which
    /// queues it if it was set up to accept requests from its parent (`invsite init
    /// --accept-parent-requests`); its state then shows at both sites
    #[arg(long)]
    pub via_child: bool,
    /// With --via-child: the owning site, when sites below hold several clients of that name
    #[arg(long, value_name = "CODE", requires = "via_child")]
    pub site: Option<invsync_proto::SiteCode>,
}

pub fn parse_class(raw: &str) -> Result<Class, String> {
    Class::parse(raw).ok_or_else(|| format!("{raw:?} is not an inventory class; use hw or sw"))
}

pub fn parse_timeout(raw: &str) -> Result<Duration, String> {
    humantime::parse_duration(raw).map_err(|e| format!("{e} (e.g. 60s, 5m)"))
}

fn class_words(class: Class) -> &'static str {
    match class {
        Class::Hw => "hardware",
        Class::Sw => "software",
    }
}

/// Parses the command line the way every invsync tool does: `--help`/`--version` print and
/// succeed, anything else wrong exits 2 with clap's message.
pub fn parse<P: Parser>() -> Result<Option<P>> {
    match P::try_parse() {
        Ok(p) => Ok(Some(p)),
        Err(e) if !e.use_stderr() => {
            invsync_proto::out!("{e}")?;
            Ok(None)
        }
        Err(e) => Err(Exit::usage(e.render().to_string().trim_end().to_string()).into()),
    }
}

/// The clap definition of `invsync`, for the man page and shell completions the packages ship.
pub fn command() -> clap::Command {
    <Args as clap::CommandFactory>::command()
}

pub fn try_main() -> Result<()> {
    // `invsync cancel REQUEST_ID` beside the seed's `invsync hw|sw CLIENT`: its own arguments.
    if std::env::args_os().nth(1).is_some_and(|a| a == "cancel") {
        return match parse::<crate::cancel::Args>()? {
            Some(args) => crate::cancel::apply(&args),
            None => Ok(()),
        };
    }
    match parse::<Args>()? {
        Some(args) => apply(&args),
        None => Ok(()),
    }
}

pub fn describe(queued: &Queued, class: Class) -> String {
    let what = format!(
        "{} inventory resynchronization request for {}",
        class_words(class),
        queued.client
    );
    if let Some(owner) = &queued.routed_to {
        return if queued.created {
            format!(
                "Routed a {what} to its owning site {owner} (request {} here).\n\
                 {owner} queues it for the client when its branch next forwards here (within seconds); \
                 the request completes here once the client's full report comes up: invsite show {}",
                queued.id, queued.client
            )
        } else {
            format!(
                "A {what} routed to site {owner} is already pending (request {}, queued {}); this request is the same one.",
                queued.id, queued.requested_at
            )
        };
    }
    if queued.created {
        format!(
            "Queued a {what} (request {}).\nThe client applies it at its next cycle; to make that happen now: setevnt {} cycle",
            queued.id, queued.client
        )
    } else {
        format!(
            "A {what} is already pending (request {}, queued {}); this request is the same one.",
            queued.id, queued.requested_at
        )
    }
}

pub fn apply(args: &Args) -> Result<()> {
    // clap treats a boolean flag as always present, so `requires` on a flag cannot be relied
    // on; these pairs are checked here, before anything is looked up.
    if args.rate.is_some() && !args.all {
        return Err(Exit::usage("--rate goes with --all").into());
    }
    if args.site.is_some() && !args.via_child {
        return Err(Exit::usage("--site goes with --via-child").into());
    }
    let mut site = SiteAccess::open(
        AccessOptions {
            tool: "invsync",
            note_fallback: true,
        },
        args.data_dir.as_deref(),
    )?;
    let Some(client) = &args.client else {
        // clap requires CLIENT unless --all is given.
        let rate = args.rate.unwrap_or_else(|| {
            crate::all::Rate::parse(crate::all::Rate::DEFAULT).expect("a valid default")
        });
        return crate::all::apply(&mut site, args.class, rate, args.json);
    };
    let queued = if args.via_child {
        site.request_resync_via_child(client, args.class, args.site.as_ref())?
    } else {
        site.request_resync(client, args.class)?
    };
    if args.json {
        invsync_proto::outln!("{}", serde_json::to_string(&queued)?)?;
    } else {
        invsync_proto::outln!("{}", describe(&queued, args.class))?;
    }
    if args.wait {
        wait(&mut site, client, queued.id, args.timeout)?;
    }
    Ok(())
}

/// Follows a request, printing each change of state, until it completes or time runs out. At a
/// site with a parent it goes on up the tree: the parent's acknowledgement of the change that
/// completed the request, then each site above as the parent's forward answers report it, until
/// the top of the tree (a site without a parent) has it.
fn wait(site: &mut SiteAccess, client: &ClientName, id: i64, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    let parent_url = site.config.parent.as_ref().map(|p| p.url.clone());
    let mut last: Option<RequestState> = None;
    // How much of the way up was printed: the parent's hop, then `hops` above it.
    let mut forwarded_shown = false;
    let mut hops_shown = 0;
    loop {
        let Some(view) = site.request_state(id)? else {
            return Err(anyhow::anyhow!("request {id} disappeared from the site"));
        };
        // Print every state the request passed through since the last look, so a request that
        // went from queued to complete between two polls still shows its pick-up.
        let passed: &[RequestState] = match (last, view.state) {
            (None, RequestState::Complete) => &[
                RequestState::Pending,
                RequestState::PickedUp,
                RequestState::Complete,
            ],
            (None, RequestState::PickedUp) => &[RequestState::Pending, RequestState::PickedUp],
            (Some(RequestState::Pending), RequestState::Complete) => {
                &[RequestState::PickedUp, RequestState::Complete]
            }
            (Some(a), b) if a == b => &[],
            (_, RequestState::Pending) => &[RequestState::Pending],
            (_, RequestState::PickedUp) => &[RequestState::PickedUp],
            (_, RequestState::Complete) => &[RequestState::Complete],
            (_, RequestState::Cancelled) => &[RequestState::Cancelled],
            (_, RequestState::Expired) => &[RequestState::Expired],
        };
        for state in passed {
            invsync_proto::outln!("{}", progress_line(*state, &view, client, site.code()))?;
        }
        last = Some(view.state);
        if matches!(view.state, RequestState::Cancelled | RequestState::Expired) {
            return Err(Exit::new(
                Code::Failure,
                format!(
                    "request {id} ended {} without being picked up; queue a new one with `invsync {} {client}`",
                    view.state.as_str(),
                    view.class
                ),
            )
            .into());
        }
        let complete = view.state == RequestState::Complete;
        if complete && parent_url.is_none() {
            return Ok(());
        }
        if complete && view.forwarded_at.is_some() {
            if !forwarded_shown {
                invsync_proto::outln!("{}", forwarded_line(&view))?;
                forwarded_shown = true;
            }
            for hop in view.hops.iter().skip(hops_shown) {
                invsync_proto::outln!("{}", hop_line(view.id, hop))?;
                hops_shown += 1;
            }
            if view.reached_top {
                invsync_proto::outln!("{}", top_line(&view))?;
                return Ok(());
            }
        }
        if start.elapsed() >= timeout {
            let waited = humantime::format_duration(timeout);
            let message = match &parent_url {
                Some(_) if forwarded_shown => format!(
                    "timed out after {waited} waiting for request {id} to reach the top of the tree: it got as far \
                     as {}; the sites above report as they store it (`invsite show {client}` there lists it)",
                    furthest(&view)
                ),
                Some(url) if complete => format!(
                    "timed out after {waited} waiting for request {id} to reach the parent site: the full report \
                     is stored here at site {} but not yet acknowledged by the parent ({url}). The outbox keeps it \
                     and forwards it as soon as the parent answers; `invsite sites` shows the outbox",
                    site.code()
                ),
                _ => format!(
                    "timed out after {waited} waiting for request {id}; it stays queued. \
                     Make the client cycle now with `setevnt {client} cycle`, or wait longer with --timeout"
                ),
            };
            return Err(Exit::new(Code::TimedOut, message).into());
        }
        // Cheap enough at 50 ms (one small GET), and a pushed request completes in ~100 ms.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A site above the parent that stored the change.
fn hop_line(id: i64, hop: &Hop) -> String {
    match &hop.site {
        Some(site) => format!("request {id}: stored at site {site} at {}", hop.at),
        None => format!("request {id}: stored one site further up at {}", hop.at),
    }
}

/// The site furthest up known to hold the change, and since when.
fn furthest(view: &RequestView) -> String {
    let (site, at) = match view.hops.last() {
        Some(hop) => (hop.site.as_ref(), Some(hop.at)),
        None => (view.forwarded_to.as_ref(), view.forwarded_at),
    };
    let at = at.map(|t| t.rfc3339()).unwrap_or_else(|| "-".to_string());
    match site {
        Some(site) => format!("site {site} (at {at})"),
        None => format!("the site above (at {at})"),
    }
}

/// The last line of `--wait` at a site with a parent: the top of the tree has the change.
fn top_line(view: &RequestView) -> String {
    format!(
        "request {}: the top of the tree has it: {}",
        view.id,
        furthest(view)
    )
}

/// The line of `--wait` for the parent's acknowledgement (the first hop up).
fn forwarded_line(view: &RequestView) -> String {
    let at = view
        .forwarded_at
        .map(|t| t.rfc3339())
        .unwrap_or_else(|| "-".to_string());
    match &view.forwarded_to {
        Some(parent) => format!("request {}: forwarded to site {parent} at {at}", view.id),
        // The store keeps the parent's code when the forwarder knew it (from its first contact
        // on); without it, all that is known is that the change went up.
        None => format!("request {}: forwarded to the parent site at {at}", view.id),
    }
}

fn progress_line(
    state: RequestState,
    view: &RequestView,
    client: &ClientName,
    site: &SiteCode,
) -> String {
    let id = view.id;
    let at = |t: Option<Timestamp>| t.map(|t| t.rfc3339()).unwrap_or_else(|| "-".to_string());
    match state {
        RequestState::Pending => format!(
            "request {id}: queued at {}, waiting for {client} to pick it up",
            view.requested_at
        ),
        RequestState::PickedUp => format!(
            "request {id}: picked up by {client} at {}",
            at(view.picked_up_at)
        ),
        RequestState::Complete => format!(
            "request {id}: complete at {}: the full report is stored at site {site}",
            at(view.completed_at)
        ),
        RequestState::Cancelled => format!(
            "request {id}: cancelled at {}; {client} will not receive it",
            at(view.completed_at)
        ),
        RequestState::Expired => format!(
            "request {id}: expired, not picked up by {client} within the site's request expiry"
        ),
    }
}
