//! `invsync hw|sw --all`: a resync of every client this site owns, paced by a token bucket so
//! a site-wide resync cannot swamp the site (each request wakes an agent that then sends a full
//! report) or its parent (each full report is forwarded up). A client that already holds a
//! pending request of the class is skipped (and counted), so running it twice queues nothing
//! the second time.

use std::time::{Duration, Instant};

use anyhow::Result;
use invsync_proto::Class;
use invsync_site::access::SiteAccess;

/// Requests per minute, from `--rate` (e.g. `300/min`, `5/s`, or a bare number per minute).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
}

impl Rate {
    pub const DEFAULT: &str = "300/min";

    pub fn parse(raw: &str) -> Result<Rate, String> {
        let bad = || format!("{raw:?} is not a rate like 300/min or 5/s");
        let (n, unit) = match raw.split_once('/') {
            Some((n, unit)) => (n, unit),
            None => (raw, "min"),
        };
        let n: f64 = n.trim().parse().map_err(|_| bad())?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => 1.0,
            "m" | "min" | "minute" => 60.0,
            "h" | "hour" => 3600.0,
            _ => return Err(bad()),
        };
        if !(n.is_finite() && n > 0.0) {
            return Err(format!("{raw:?}: the rate must be above zero"));
        }
        Ok(Rate {
            per_second: n / per,
        })
    }
}

/// A token bucket: up to `burst` requests at once, then one every 1/rate seconds.
pub struct Bucket {
    tokens: f64,
    burst: f64,
    rate: f64,
    last: Instant,
}

impl Bucket {
    pub fn new(rate: Rate, burst: u32) -> Bucket {
        let burst = f64::from(burst.max(1));
        Bucket {
            tokens: burst,
            burst,
            rate: rate.per_second,
            last: Instant::now(),
        }
    }

    /// How long to wait before the next request may go; takes its token.
    pub fn take(&mut self, now: Instant) -> Duration {
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// What `invsync hw|sw --all --json` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub class: Class,
    pub site: invsync_proto::SiteCode,
    /// Clients the site owns.
    pub total: usize,
    /// Requests queued now.
    pub created: usize,
    /// Requests that merged with one that became pending meanwhile.
    pub merged: usize,
    /// Clients skipped because they already held a pending request of the class.
    pub skipped: usize,
}

impl Summary {
    /// One line of JSON: `{"class", "site", "total", "created", "merged", "skipped"}`.
    pub fn json(&self) -> String {
        serde_json::json!({
            "class": self.class,
            "site": self.site,
            "total": self.total,
            "created": self.created,
            "merged": self.merged,
            "skipped": self.skipped,
        })
        .to_string()
    }
}

/// Queues a resync of `class` for every client this site owns that holds no pending request
/// of that class, printing progress (or, with `json`, only the summary).
pub fn apply(site: &mut SiteAccess, class: Class, rate: Rate, json: bool) -> Result<()> {
    let own = site.code().clone();
    let pending: std::collections::HashSet<_> = site
        .pending_requests(class)?
        .into_iter()
        .filter(|r| r.site == own)
        .map(|r| r.client)
        .collect();
    let owned: Vec<_> = site
        .clients(false)?
        .into_iter()
        .filter(|c| c.site == own)
        .collect();
    let total = owned.len();
    let clients: Vec<_> = owned
        .into_iter()
        .filter(|c| !pending.contains(&c.name))
        .collect();
    let skipped = total - clients.len();
    let say = |line: String| -> Result<()> {
        if !json {
            invsync_proto::outln!("{line}")?;
        }
        Ok(())
    };
    let mut summary = Summary {
        class,
        site: own.clone(),
        total,
        created: 0,
        merged: 0,
        skipped,
    };
    if total == 0 {
        say(format!("Site {own} owns no clients; nothing to do."))?;
    }
    if skipped > 0 {
        say(format!(
            "Skipping {skipped} of {total} clients: they already hold a pending {class} resync request."
        ))?;
    }
    if clients.is_empty() {
        if json {
            invsync_proto::outln!("{}", summary.json())?;
        } else if total > 0 {
            say(format!(
                "Queued no {class} resync requests ({skipped} skipped)."
            ))?;
        }
        return Ok(());
    }
    let total = clients.len();
    say(format!(
        "Queuing a {class} resync for {total} clients of site {own} at {:.0}/min (about {}).",
        rate.per_second * 60.0,
        humantime::format_duration(Duration::from_secs((total as f64 / rate.per_second) as u64))
    ))?;
    // A burst of ten lets a small site finish at once; a big one settles to the rate.
    let mut bucket = Bucket::new(rate, 10);
    let (mut created, mut merged) = (0usize, 0usize);
    let started = Instant::now();
    let step = (total / 20).max(1);
    for (i, c) in clients.iter().enumerate() {
        std::thread::sleep(bucket.take(Instant::now()));
        let q = site.request_resync(&c.name, class)?;
        if q.created {
            created += 1;
        } else {
            merged += 1;
        }
        if (i + 1) % step == 0 || i + 1 == total {
            say(format!("  {}/{total} queued", i + 1))?;
        }
    }
    summary.created = created;
    summary.merged = merged;
    if json {
        invsync_proto::outln!("{}", summary.json())?;
        return Ok(());
    }
    say(format!(
        "Queued {created} {class} resync requests ({merged} were already pending, {skipped} skipped) in {}.",
        humantime::format_duration(Duration::from_secs(started.elapsed().as_secs()))
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(Rate::parse("300/min").unwrap().per_second, 5.0);
        assert_eq!(Rate::parse("5/s").unwrap().per_second, 5.0);
        assert_eq!(Rate::parse("120").unwrap().per_second, 2.0);
        for bad in ["", "0/min", "-1/s", "fast", "3/fortnight", "NaN/s"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_bucket_allows_a_burst_then_paces() {
        let mut b = Bucket::new(Rate { per_second: 10.0 }, 3);
        let t = b.last;
        for _ in 0..3 {
            assert_eq!(b.take(t), Duration::ZERO);
        }
        let wait = b.take(t);
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        // After the wait, the next one waits one more interval.
        let wait = b.take(t + Duration::from_millis(100));
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
    }
}
