//! PEP 440's version order, as `packaging.version.Version` implements it (pip's order).
//!
//! A version is `[N!]N(.N)*[{a|b|rc}N][.postN][.devN][+local]`, read with the spellings
//! PEP 440 normalises (`1.0-alpha1`, `1.0c1`, `1.0-5`, `1.0.r1`, a leading `v`, any case).
//! The epoch comes first, then the release with its trailing zeros ignored (`1.0 == 1`); a
//! pre-release is below its release, a dev release below its pre-releases (`1.0.dev0 <
//! 1.0a1`), a post release above; a local label (`+ubuntu1`) is above the same version
//! without one, its segments compared numerically when digits (above letters) and
//! case-insensitively otherwise.
//!
//! A version PEP 440 cannot read (`french toast`) sorts before every valid one, as
//! `packaging`'s former `LegacyVersion` did, and among such versions in dpkg's order.

use std::cmp::Ordering;

use super::compare_digits;

/// A parsed version's comparison key. Numbers are kept as their digits without leading zeros,
/// so that no length of number overflows.
#[derive(Debug, PartialEq, Eq)]
struct Key<'a> {
    epoch: &'a str,
    release: Vec<&'a str>,
    /// `(rank, number)` with `a` 0, `b` 1, `rc` 2.
    pre: Option<(u8, &'a str)>,
    post: Option<&'a str>,
    dev: Option<&'a str>,
    local: Option<Vec<String>>,
}

/// Compares two versions in PEP 440's order (unreadable ones first, in dpkg's order).
pub fn compare(a: &str, b: &str) -> Ordering {
    let (la, lb) = (a.trim().to_ascii_lowercase(), b.trim().to_ascii_lowercase());
    match (parse(&la), parse(&lb)) {
        (Some(ka), Some(kb)) => compare_keys(&ka, &kb),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => super::compare(a, b),
    }
}

/// Whether PEP 440 can read `v`.
pub fn is_valid(v: &str) -> bool {
    parse(&v.trim().to_ascii_lowercase()).is_some()
}

fn strip_zeros(d: &str) -> &str {
    d.trim_start_matches('0')
}

/// A reader over the lowercased text.
struct Cursor<'a> {
    s: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.at..]
    }

    fn digits(&mut self) -> Option<&'a str> {
        let n = self.rest().bytes().take_while(u8::is_ascii_digit).count();
        (n > 0).then(|| {
            let d = &self.rest()[..n];
            self.at += n;
            strip_zeros(d)
        })
    }

    fn eat(&mut self, word: &str) -> bool {
        let ok = self.rest().starts_with(word);
        if ok {
            self.at += word.len();
        }
        ok
    }

    fn sep(&mut self) -> bool {
        self.eat("-") || self.eat("_") || self.eat(".")
    }

    /// `[sep]label[sep][digits]` for the first of `labels` that matches (longest spellings
    /// first); the number is `""` (zero) when absent. Nothing is consumed when no label matches.
    fn labelled(&mut self, labels: &[(&str, u8)]) -> Option<(u8, &'a str)> {
        let start = self.at;
        self.sep();
        for (label, rank) in labels {
            if self.eat(label) {
                let before_sep = self.at;
                self.sep();
                let n = match self.digits() {
                    Some(n) => n,
                    None => {
                        // A separator with no number after it belongs to what follows.
                        self.at = before_sep;
                        ""
                    }
                };
                return Some((*rank, n));
            }
        }
        self.at = start;
        None
    }
}

fn parse(s: &str) -> Option<Key<'_>> {
    let mut c = Cursor { s, at: 0 };
    c.eat("v");
    let mut epoch = "";
    let first = c.digits()?;
    let mut release = Vec::new();
    if c.eat("!") {
        epoch = first;
        release.push(c.digits()?);
    } else {
        release.push(first);
    }
    while c.rest().starts_with('.') && c.rest()[1..].starts_with(|ch: char| ch.is_ascii_digit()) {
        c.at += 1;
        release.push(c.digits()?);
    }
    while release.last().is_some_and(|r| r.is_empty()) {
        release.pop();
    }
    let pre = c.labelled(&[
        ("alpha", 0),
        ("a", 0),
        ("beta", 1),
        ("b", 1),
        ("preview", 2),
        ("pre", 2),
        ("rc", 2),
        ("c", 2),
    ]);
    let post =
        if c.rest().starts_with('-') && c.rest()[1..].starts_with(|ch: char| ch.is_ascii_digit()) {
            c.at += 1;
            c.digits()
        } else {
            c.labelled(&[("post", 0), ("rev", 0), ("r", 0)])
                .map(|(_, n)| n)
        };
    let dev = c.labelled(&[("dev", 0)]).map(|(_, n)| n);
    let local = if c.eat("+") {
        let segs: Vec<String> = c
            .rest()
            .split(['-', '_', '.'])
            .map(str::to_string)
            .collect();
        if segs
            .iter()
            .any(|s| s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            return None;
        }
        c.at = s.len();
        Some(segs)
    } else {
        None
    };
    if !c.rest().is_empty() {
        return None;
    }
    Some(Key {
        epoch,
        release,
        pre,
        post,
        dev,
        local,
    })
}

/// Where the pre-release part puts a version: a dev release of the release itself sorts
/// below all its pre-releases, no pre-release above them.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum PreRank<'a> {
    DevOfRelease,
    Pre(u8, Num<'a>),
    None,
}

/// A number as digits without leading zeros.
#[derive(PartialEq, Eq)]
struct Num<'a>(&'a str);

impl Ord for Num<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_digits(self.0, other.0)
    }
}

impl PartialOrd for Num<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn pre_rank<'a>(k: &Key<'a>) -> PreRank<'a> {
    match (k.pre, k.post, k.dev) {
        (None, None, Some(_)) => PreRank::DevOfRelease,
        (None, _, _) => PreRank::None,
        (Some((rank, n)), _, _) => PreRank::Pre(rank, Num(n)),
    }
}

/// One local segment: letters below numbers.
fn compare_local(a: &str, b: &str) -> Ordering {
    let numeric = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
    match (numeric(a), numeric(b)) {
        (true, true) => compare_digits(strip_zeros(a), strip_zeros(b)),
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.cmp(b),
    }
}

fn compare_keys(a: &Key<'_>, b: &Key<'_>) -> Ordering {
    let release = || {
        let mut o = Ordering::Equal;
        for (x, y) in a.release.iter().zip(&b.release) {
            o = compare_digits(x, y);
            if o != Ordering::Equal {
                return o;
            }
        }
        if o == Ordering::Equal {
            o = a.release.len().cmp(&b.release.len());
        }
        o
    };
    let local = || match (&a.local, &b.local) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => x
            .iter()
            .zip(y)
            .map(|(p, q)| compare_local(p, q))
            .find(|o| *o != Ordering::Equal)
            .unwrap_or_else(|| x.len().cmp(&y.len())),
    };
    compare_digits(a.epoch, b.epoch)
        .then_with(release)
        .then_with(|| pre_rank(a).cmp(&pre_rank(b)))
        .then_with(|| a.post.map(Num).cmp(&b.post.map(Num)))
        // No dev part is above any dev part.
        .then_with(|| (a.dev.is_none(), a.dev.map(Num)).cmp(&(b.dev.is_none(), b.dev.map(Num))))
        .then_with(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_usual_spellings() {
        assert!(is_valid("1.0") && is_valid("v2!1.0rc1.post2.dev3+ubuntu.1"));
        assert!(!is_valid("french toast") && !is_valid("1.0+") && !is_valid("1..0"));
        assert_eq!(compare("1.0", "1.0.0"), Ordering::Equal);
        assert_eq!(compare("1.0rc1", "1.0"), Ordering::Less);
        assert_eq!(compare("french toast", "0.0.dev0"), Ordering::Less);
    }
}
